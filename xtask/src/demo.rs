//! `cargo xtask demo [MODEL]`: runs qaic-exec's reference interpreter on a real model and writes its outputs.
//!
//! MODEL is `light_resnet50_rand` (default; built by `zoo-models`), a zoo model name (its calib sample 00 is
//! the input), or a path to an .onnx file (no input list: qaic-exec decides).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{self, BenchArgs};
use crate::cmd;
use crate::paths::Paths;

pub fn run(p: &Paths, model: &str) -> Result<()> {
    let (model_path, inputs, stem) = if model.ends_with(".onnx") || model.contains('/') {
        let path = std::path::absolute(PathBuf::from(model))?;
        if !path.is_file() {
            bail!("model file {} not found", path.display());
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        (path, None, stem)
    } else {
        // Same preparation as the benchmark: builds light_resnet50_rand if needed, writes the inputs.
        let args = BenchArgs {
            models: vec![model.to_string()],
            min_runs: 0,
            min_seconds: 0.0,
            num_iter: 1,
            sim_cores: Vec::new(),
        };
        let r = bench::ort_side(p, &args, true)?
            .into_iter()
            .next()
            .context("ort_bench.py returned no model")?;
        (r.model_path, Some(r.inputs), model.to_string())
    };
    let exec = bench::build_qaic_exec(p)?;
    let out_dir = p.data.join("demo").join(&stem);
    if out_dir.exists() {
        fs::remove_dir_all(&out_dir).with_context(|| format!("clearing {}", out_dir.display()))?;
    }
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut c = Command::new(&exec);
    c.arg(format!("-m={}", model_path.display()))
        .arg("-run-on-interpreter");
    if let Some(inputs) = &inputs {
        let list = out_dir.with_file_name(format!("{stem}.inputs.txt"));
        bench::write_input_list(&list, inputs)?;
        c.arg(format!("-input-list-file={}", list.display()));
    }
    c.arg(format!("-write-output-dir={}", out_dir.display()));
    cmd::run(&mut c).context("qaic-exec did not run the model (its own message is above)")?;
    let mut written: Vec<(String, u64)> = Vec::new();
    for e in fs::read_dir(&out_dir).with_context(|| format!("listing {}", out_dir.display()))? {
        let e = e?;
        written.push((
            e.file_name().to_string_lossy().into_owned(),
            e.metadata()?.len(),
        ));
    }
    if written.is_empty() {
        bail!(
            "qaic-exec exited 0 but wrote nothing into {}",
            out_dir.display()
        );
    }
    written.sort();
    println!("demo: outputs of {} in {}:", stem, out_dir.display());
    for (name, len) in written {
        println!("  {name} ({len} bytes)");
    }
    Ok(())
}
