//! ONNX backend node tests on the virtual AIC100: every case is compiled to a QPC for 2 cores
//! (`qaic-exec`'s device pipeline, in process), reloaded from the QPC bytes, run on the
//! simulator with the case's first input set, and compared with the reference interpreter on
//! the same inputs (|sim − interp| ≤ 1e-4 · max(1, |interp|), the simulator's documented float
//! tolerance; exact for integer outputs).
//!
//! Outcomes: `unsupported` (the code generator refuses an operator or a graph input/output,
//! listing them all — the device does not support the case's ops or I/O types), `compile` (other compile errors: unknown shapes,
//! tiling, ...), `input` (test data the QPC cannot take), `run` (the simulator failed),
//! `mismatch`, `pass`. The counts are printed, written to
//! `target/conformance/device-results.tsv`, and the number of passing cases must not fall
//! below [`MIN_PASS`] (docs/virtual-aic100.md states the measured figures).
//!
//! Data: `QAIC_ONNX_NODE_TESTS`, else `target/onnx-node-tests`, else skipped.
//! `QAIC_CONFORMANCE_FILTER=<substring>` runs a subset (no floor then).

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use qaic_compiler::exec_options::{parse_exec_command, ExecCommand, Tool};
use qaic_tensor::{Tensor, Value};

/// Cases that must pass: 293 measured on 2026-12-02 (docs/virtual-aic100.md) with the pinned
/// onnx 1.22.0 node tests. Every other case must be refused as unsupported (checked below), so
/// this floor catches cases that silently move from passing to refused.
const MIN_PASS: usize = 293;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Pass,
    Unsupported(String),
    Compile(String),
    Input(String),
    Run(String),
    Mismatch(String),
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Unsupported(_) => "unsupported",
            Outcome::Compile(_) => "compile",
            Outcome::Input(_) => "input",
            Outcome::Run(_) => "run",
            Outcome::Mismatch(_) => "mismatch",
        }
    }
    fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Unsupported(s) | Outcome::Compile(s) | Outcome::Input(s) | Outcome::Run(s) | Outcome::Mismatch(s) => s,
        }
    }
}

fn tensor(v: &Value) -> Option<&Tensor> {
    match v {
        Value::Tensor(t) => Some(t),
        Value::Optional(Some(b)) => tensor(b),
        _ => None,
    }
}

/// The simulator's output bytes (`dtype`, `shape`) against the interpreter's tensor.
fn close(dtype: qaic_tensor::DType, shape: &[usize], got: &[u8], want: &Tensor) -> Result<(), String> {
    if dtype != want.dtype() || shape != want.shape() {
        return Err(format!("{} {shape:?} vs interpreter {} {:?}", dtype.name(), want.dtype().name(), want.shape()));
    }
    if dtype == qaic_tensor::DType::F32 {
        let w = want.view::<f32>().map_err(|e| e.to_string())?;
        for (i, (c, &b)) in got.chunks_exact(4).zip(w.iter()).enumerate() {
            let a = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * b.abs().max(1.0);
            if !same {
                return Err(format!("element {i}: {a} vs interpreter {b}"));
            }
        }
        Ok(())
    } else if want.raw_bytes().map_err(|e| e.to_string())? == got {
        Ok(())
    } else {
        Err("output bytes differ".into())
    }
}

fn run_case(case: &Path) -> Outcome {
    let model = case.join("model.onnx");
    let args = [format!("-m={}", model.display()), "-aic-num-cores=2".to_string()];
    let cfg = match parse_exec_command(Tool::Exec, &args) {
        Ok(ExecCommand::Run(c)) => c,
        other => return Outcome::Compile(format!("options: {other:?}")),
    };
    let out = match qaic_compiler::device::compile(&cfg) {
        Ok(o) => o,
        Err(e) => {
            let m = e.to_string();
            return if m.contains("not supported by the AIC100 code generator") { Outcome::Unsupported(m) } else { Outcome::Compile(m) };
        }
    };
    let qpc = match qaic_runtime::LoadedQpc::from_bytes(&out.qpc, "programqpc.bin", &qaic_runtime::LoadOptions::default()) {
        Ok(q) => q,
        Err(e) => return Outcome::Compile(format!("load: {e}")),
    };
    let graph = match qaic_onnx::load(&model, &qaic_onnx::LoadOptions::default()) {
        Ok(g) => g,
        Err(e) => return Outcome::Compile(format!("load: {e}")),
    };
    let input_types: Vec<Option<qaic_ir::ValueType>> = graph.inputs.iter().map(|i| graph.value(*i).ty.clone()).collect();
    let input_names: Vec<String> = graph.inputs.iter().map(|i| graph.value(*i).name.clone()).collect();
    let output_names: Vec<String> = graph.outputs.iter().map(|i| graph.value(*i).name.clone()).collect();
    let set = case.join("test_data_set_0");
    let mut values = Vec::new();
    for (i, p) in common::numbered(&set, "input_").iter().enumerate() {
        match common::read_pb(p, input_types.get(i).cloned().flatten().as_ref()) {
            Ok(v) => values.push(v),
            Err(e) => return Outcome::Input(format!("reading {}: {e}", p.display())),
        }
    }
    // QPC inputs by name, in descriptor order.
    let mut bytes: Vec<Vec<u8>> = Vec::new();
    for io in qpc.inputs() {
        let Some(k) = input_names.iter().position(|n| *n == io.name) else { return Outcome::Input(format!("QPC input `{}` is not a graph input", io.name)) };
        let Some(t) = values.get(k).and_then(tensor) else { return Outcome::Input(format!("no tensor data for input `{}`", io.name)) };
        if t.dtype() != io.dtype || t.shape() != io.shape.as_slice() {
            return Outcome::Input(format!("input `{}`: data {} {:?}, QPC {} {:?}", io.name, t.dtype().name(), t.shape(), io.dtype.name(), io.shape));
        }
        match t.raw_bytes() {
            Ok(b) => bytes.push(b.to_vec()),
            Err(e) => return Outcome::Input(e.to_string()),
        }
    }
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let (outs, _) = match qpc.run(&refs) {
        Ok(r) => r,
        Err(e) => return Outcome::Run(e.to_string()),
    };
    let plan = match qaic_interp::Plan::new(graph) {
        Ok(p) => p,
        Err(e) => return Outcome::Compile(format!("interpreter: {e}")),
    };
    let want = match plan.run(values) {
        Ok(v) => v,
        Err(e) => return Outcome::Run(format!("interpreter: {e}")),
    };
    for (o, b) in qpc.outputs().iter().zip(outs) {
        let Some(k) = output_names.iter().position(|n| *n == o.name) else { return Outcome::Mismatch(format!("QPC output `{}` is not a graph output", o.name)) };
        let Some(w) = want.get(k).and_then(tensor) else { return Outcome::Mismatch(format!("interpreter gave no tensor for `{}`", o.name)) };
        if let Err(e) = close(o.dtype, &o.shape, &b, w) {
            return Outcome::Mismatch(format!("output `{}`: {e}", o.name));
        }
    }
    Outcome::Pass
}

#[test]
fn onnx_node_tests_on_the_virtual_device() {
    let Some(root) = common::data_dir("QAIC_ONNX_NODE_TESTS", common::repo_root().join("target/onnx-node-tests")) else {
        return;
    };
    let filter = std::env::var("QAIC_CONFORMANCE_FILTER").ok();
    let todo: Vec<PathBuf> = common::node_cases(&root)
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.file_name().is_some_and(|n| n.to_string_lossy().contains(f))))
        .collect();
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = todo.get(i) else { break };
                let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let outcome = std::panic::catch_unwind(|| run_case(case)).unwrap_or_else(|p| {
                    let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    Outcome::Run(format!("PANIC: {}", msg.unwrap_or_default()))
                });
                results.lock().unwrap().push((name, outcome));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort();
    let count = |s: &str| results.iter().filter(|(_, o)| o.status() == s).count();
    let supported = results.len() - count("unsupported");
    eprintln!(
        "device conformance: {} cases; {} refused as unsupported; of the {supported} whose ops and I/O the device supports: {} pass, {} compile errors, {} input, {} run errors, {} mismatches",
        results.len(),
        count("unsupported"),
        count("pass"),
        count("compile"),
        count("input"),
        count("run"),
        count("mismatch")
    );
    let mut tsv = String::from("case\tstatus\treason\n");
    for (n, o) in &results {
        tsv.push_str(&format!("{n}\t{}\t{}\n", o.status(), o.reason().replace(['\t', '\n'], " ")));
    }
    if filter.is_none() {
        let dir = common::repo_root().join("target/conformance");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("device-results.tsv"), tsv).unwrap();
    }
    let panics: Vec<&String> = results.iter().filter(|(_, o)| o.reason().starts_with("PANIC")).map(|(n, _)| n).collect();
    assert!(panics.is_empty(), "cases panicked (must be errors instead): {panics:?}");
    if filter.is_none() {
        assert!(count("pass") >= MIN_PASS, "only {} cases pass on the device (floor {MIN_PASS})", count("pass"));
        // A case the device supports compiles, runs and matches; anything else is refused at
        // compile time with its unsupported ops or I/O listed.
        let other: Vec<(&String, &str)> = results.iter().filter(|(_, o)| !matches!(o.status(), "pass" | "unsupported")).map(|(n, o)| (n, o.status())).collect();
        assert!(other.is_empty(), "cases neither passing nor refused as unsupported: {other:?}");
    }
}
