//! Developer aid: runs an ONNX model on the interpreter and prints the median time per run,
//! without the `qaic-exec` front end (so the interpreter can be profiled on its own).
//!
//! `QAIC_PROFILE_OPS=1 cargo run --release -p qaic-interp --example profile -- model.onnx [N] in0.raw in1.raw ...`
//!
//! Each raw file holds one input in model-input order; one unknown dimension per input is
//! inferred from the file size.

use std::time::{Duration, Instant};

use qaic_tensor::{Dim, Tensor, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().ok_or("usage: profile model.onnx [iterations] inputs.raw...")?;
    let (iters, files) = match args.get(1).and_then(|a| a.parse::<usize>().ok()) {
        Some(n) => (n, &args[2..]),
        None => (10, &args[1..]),
    };
    let graph = qaic_onnx::load(std::path::Path::new(model), &qaic_onnx::LoadOptions::default())?;
    let mut inputs = Vec::new();
    let feeds: Vec<_> = graph.inputs.iter().filter(|i| graph.value(**i).constant.is_none()).copied().collect();
    if feeds.len() != files.len() {
        return Err(format!("the model takes {} inputs, {} files given", feeds.len(), files.len()).into());
    }
    for (id, file) in feeds.iter().zip(files) {
        let v = graph.value(*id);
        let (dtype, shape) = match &v.ty {
            Some(qaic_ir::ValueType::Tensor { dtype, shape: Some(s) }) => (*dtype, s.clone()),
            _ => return Err(format!("input `{}` has no tensor type", v.name).into()),
        };
        let bytes = std::fs::read(file)?;
        let elem = dtype.size_of().ok_or("sub-byte input")?;
        let known: usize = shape.0.iter().map(|d| if let Dim::Known(k) = d { *k } else { 1 }).product();
        // The last unknown dimension takes what the file holds; other unknown ones are 1.
        let last_unknown = shape.0.iter().rposition(|d| !matches!(d, Dim::Known(_)));
        let dims: Vec<usize> = shape
            .0
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Known(k) => *k,
                _ if Some(i) == last_unknown => bytes.len() / elem / known.max(1),
                _ => 1,
            })
            .collect();
        inputs.push(Value::Tensor(Tensor::from_bytes(dtype, dims, bytes.into())?.aligned()));
    }
    let plan = qaic_interp::Plan::new(graph)?;
    plan.run(inputs.clone())?;
    let mut times: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            plan.run(inputs.clone()).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    times.sort();
    println!("median {:.3} ms over {iters} runs", times[iters / 2].as_secs_f64() * 1e3);
    Ok(())
}
