//! Every ONNX node test case of the pass list, run through `qaic-exec` as a user would: inputs
//! as raw little-endian files on an `-input-list-file` line (or, when the model leaves input
//! dimensions open, a `-json-input-file` giving `dims`), outputs read back from
//! `-write-output-dir`, compared as in the library-path conformance test.
//!
//! Cases whose inputs or outputs are sequences or optionals cannot be expressed as raw files;
//! they are counted and listed, not run.

mod common;

use std::path::Path;
use std::process::Command;

use qaic_ir::ValueType;
use qaic_tensor::{Tensor, Value};

fn run_case(case: &Path, tmp: &Path) -> Result<bool, String> {
    let model = case.join("model.onnx");
    let graph = qaic_onnx::load(&model, &qaic_onnx::LoadOptions::default()).map_err(|e| e.to_string())?;
    let tensor_only = |ids: &[qaic_ir::ValueId]| {
        ids.iter().all(|i| !matches!(graph.value(*i).ty, Some(ValueType::Sequence(_)) | Some(ValueType::Optional(_)) | Some(ValueType::Map(..))))
    };
    let inputs: Vec<qaic_ir::ValueId> = graph.inputs.iter().copied().filter(|i| graph.value(*i).constant.is_none()).collect();
    if !tensor_only(&inputs) || !tensor_only(&graph.outputs) {
        return Ok(false);
    }
    let set = case.join("test_data_set_0");
    let mut files = Vec::new();
    let mut dims = Vec::new();
    let mut all_concrete = true;
    for (k, p) in common::numbered(&set, "input_").iter().enumerate() {
        let Value::Tensor(t) = common::read_pb(p, None).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        if t.dtype() == qaic_tensor::DType::String || t.dtype().size_of().is_none() {
            return Ok(false);
        }
        let f = tmp.join(format!("input_{k}.raw"));
        std::fs::write(&f, t.raw_bytes().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let declared = inputs.get(k).and_then(|i| graph.value(*i).ty.as_ref()).and_then(|t| t.tensor_shape()).and_then(|s| s.concrete());
        all_concrete &= declared.as_deref() == Some(t.shape());
        files.push(f);
        dims.push(t.shape().to_vec());
    }
    let out_dir = tmp.join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qaic-exec"));
    cmd.arg(format!("-m={}", model.display())).arg("-run-on-interpreter").arg(format!("-write-output-dir={}", out_dir.display()));
    if files.is_empty() {
        // A model without inputs runs once on nothing.
    } else if all_concrete {
        let list = tmp.join("list.txt");
        let line = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(",");
        std::fs::write(&list, line + "\n").map_err(|e| e.to_string())?;
        cmd.arg(format!("-input-list-file={}", list.display()));
    } else {
        let entries: Vec<serde_json::Value> = files
            .iter()
            .zip(&dims)
            .map(|(f, d)| serde_json::json!({"path": f.display().to_string(), "dims": d, "io-direction": "in"}))
            .collect();
        let json = tmp.join("io.json");
        std::fs::write(&json, serde_json::json!({"IO-files": [entries]}).to_string()).map_err(|e| e.to_string())?;
        cmd.arg(format!("-json-input-file={}", json.display()));
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("qaic-exec failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    for (k, p) in common::numbered(&set, "output_").iter().enumerate() {
        let Value::Tensor(want) = common::read_pb(p, None).map_err(|e| e.to_string())? else { return Ok(false) };
        let name = &graph.value(graph.outputs[k]).name;
        let file = out_dir.join(format!("{}-activation-0-inf-0.bin", name.replace('/', "_")));
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let got = Tensor::from_bytes(want.dtype(), want.shape().to_vec(), bytes.into()).map_err(|e| format!("output `{name}`: {e}"))?;
        common::compare_tensor(&got, &want, 1e-3, 1e-5).map_err(|e| format!("output `{name}`: {e}"))?;
    }
    Ok(true)
}

#[test]
fn pass_list_through_qaic_exec() {
    let Some(root) = common::data_dir("QAIC_ONNX_NODE_TESTS", common::repo_root().join("target/onnx-node-tests")) else {
        return;
    };
    let listed = common::read_pass_list();
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut ran = 0;
    for name in &listed {
        let case = root.join(name);
        let tmp = tempfile::tempdir().expect("temp dir");
        match run_case(&case, tmp.path()) {
            Ok(true) => ran += 1,
            Ok(false) => skipped.push(name.clone()),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "conformance through qaic-exec: {ran} of {} listed cases run and pass; {} use sequences/optionals/strings and have no raw-file form: {}",
        listed.len(),
        skipped.len(),
        skipped.join(" ")
    );
    assert!(failures.is_empty(), "{} case(s) fail through qaic-exec:\n{}", failures.len(), failures.join("\n"));
}
