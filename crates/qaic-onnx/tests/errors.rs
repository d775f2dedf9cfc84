//! Bad input gives a clear error (naming the file and what is wrong), never a panic:
//! one test per case.

mod common;

use common::*;
use prost::Message;
use qaic_onnx::{load, LoadOptions, OnnxError, OnnxFile};

fn load_err(path: &std::path::Path) -> String {
    match load(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded but should not have", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("nope.onnx");
    let e = load_err(&p);
    assert!(e.contains("nope.onnx") && e.contains("cannot read"), "{e}");
    assert!(matches!(OnnxFile::read(&p), Err(OnnxError::Io { .. })));
}

#[test]
fn folder_instead_of_file() {
    let d = tempfile::tempdir().unwrap();
    let e = load_err(d.path());
    assert!(e.contains("is a folder"), "{e}");
}

#[test]
fn empty_file() {
    let d = tempfile::tempdir().unwrap();
    for name in ["empty.onnx", "empty.onnxtxt"] {
        let p = d.path().join(name);
        std::fs::write(&p, b"").unwrap();
        let e = load_err(&p);
        assert!(e.contains(name) && e.contains("file is empty"), "{e}");
    }
}

#[test]
fn truncated_protobuf() {
    let d = tempfile::tempdir().unwrap();
    let mut m = relu_model();
    m.graph.as_mut().unwrap().initializer.push(f32_tensor("w", &[64], &[1.0; 64]));
    let bytes = m.encode_to_vec();
    let p = d.path().join("cut.onnx");
    // Cut inside the initializer's raw data.
    std::fs::write(&p, &bytes[..bytes.len() - 40]).unwrap();
    let e = load_err(&p);
    assert!(e.contains("cut.onnx") && e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn corrupt_protobuf() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("corrupt.onnx");
    // Field 7 (graph) with wire type 7, which does not exist.
    std::fs::write(&p, [0x3f, 0x01, 0x02, 0xff, 0xff]).unwrap();
    let e = load_err(&p);
    assert!(e.contains("corrupt.onnx") && e.contains("not a valid ONNX model"), "{e}");
}

#[test]
fn not_an_onnx_file() {
    // Random-looking bytes can be valid protobuf that is nothing like a model.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("other.onnx");
    std::fs::write(&p, [0x08, 0x01]).unwrap(); // ir_version: 1, nothing else
    let e = load_err(&p);
    assert!(e.contains("has no graph"), "{e}");
}

#[test]
fn malformed_onnxtxt() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.onnxtxt");
    std::fs::write(&p, "ir_version: 7\ngraph {\n  node { op_type: \"Relu\" \n  bogus_field: 3\n}\n").unwrap();
    let e = load_err(&p);
    assert!(e.contains("bad.onnxtxt") && e.contains("line 4") && e.contains("bogus_field"), "{e}");

    let p = d.path().join("unterminated.onnxtxt");
    std::fs::write(&p, "ir_version: 7\ngraph {\n  node { op_type: \"Relu\"\n").unwrap();
    let e = load_err(&p);
    assert!(e.contains("unterminated.onnxtxt") && e.contains("end of file"), "{e}");

    let p = d.path().join("binary.onnxtxt");
    std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
    let e = load_err(&p);
    assert!(e.contains("not UTF-8"), "{e}");
}

fn model_with_external(d: &std::path::Path, location: &str, offset: Option<u64>, length: Option<u64>) -> std::path::PathBuf {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(external_tensor("w", &[4], location, offset, length));
    g.node.push(node("Add", "add", &["y", "w"], &["z"]));
    g.output = vec![output("z")];
    write_model(d, "ext.onnx", &m)
}

#[test]
fn external_data_missing() {
    let d = tempfile::tempdir().unwrap();
    let p = model_with_external(d.path(), "weights.bin", None, None);
    let e = load_err(&p);
    assert!(e.contains("tensor `w`") && e.contains("external data") && e.contains("not found"), "{e}");
}

#[test]
fn external_data_escaping_folder() {
    let root = tempfile::tempdir().unwrap();
    let sub = root.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(root.path().join("weights.bin"), [0u8; 16]).unwrap();
    let p = model_with_external(&sub, "../weights.bin", None, None);
    let e = load_err(&p);
    assert!(e.contains("tensor `w`") && e.contains("escapes the model's folder"), "{e}");

    let p = model_with_external(&sub, root.path().join("weights.bin").to_str().unwrap(), None, None);
    let e = load_err(&p);
    assert!(e.contains("absolute path"), "{e}");
}

#[test]
fn external_data_size_beyond_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("weights.bin"), [0u8; 12]).unwrap();
    // Declares 16 bytes, the file has 12.
    let p = model_with_external(d.path(), "weights.bin", Some(0), Some(16));
    let e = load_err(&p);
    assert!(e.contains("tensor `w`") && e.contains("declares 16 bytes") && e.contains("has only 12"), "{e}");
    // No length given: the tensor needs 16 bytes, the file holds 12.
    let p = model_with_external(d.path(), "weights.bin", None, None);
    let e = load_err(&p);
    assert!(e.contains("needs 16 bytes") && e.contains("is 12 bytes"), "{e}");
    // Offset past the end.
    let p = model_with_external(d.path(), "weights.bin", Some(100), None);
    let e = load_err(&p);
    assert!(e.contains("offset 100 is beyond the end"), "{e}");
}

#[test]
fn external_data_ok_is_mapped() {
    let d = tempfile::tempdir().unwrap();
    let vals: Vec<u8> = [0.0f32, 1.0, 2.0, 3.0, 9.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(d.path().join("weights.bin"), &vals).unwrap();
    let p = model_with_external(d.path(), "weights.bin", Some(4), Some(16));
    let g = load(&p, &LoadOptions::default()).unwrap();
    let w = g.value(g.find_value("w").unwrap()).constant.clone().unwrap();
    assert_eq!(w.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 9.0]);
}

#[test]
fn tensor_larger_than_its_data() {
    let d = tempfile::tempdir().unwrap();
    let mut m = relu_model();
    let mut w = f32_tensor("w", &[4], &[1.0, 2.0, 3.0, 4.0]);
    w.dims = vec![8];
    m.graph.as_mut().unwrap().initializer.push(w);
    let p = write_model(d.path(), "short.onnx", &m);
    let e = load_err(&p);
    assert!(e.contains("tensor `w`") && e.contains("needs 32 bytes, got 16"), "{e}");
}

#[test]
fn undefined_value() {
    let d = tempfile::tempdir().unwrap();
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node.push(node("Add", "add", &["y", "nowhere"], &["z"]));
    let p = write_model(d.path(), "undef.onnx", &m);
    let e = load_err(&p);
    assert!(e.contains("node \"add\"") && e.contains("`nowhere`"), "{e}");
}

#[test]
fn cycle_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![node("Add", "a", &["x", "c"], &["b"]), node("Relu", "r", &["b"], &["c"])];
    g.output = vec![output("c")];
    let p = write_model(d.path(), "cycle.onnx", &m);
    let e = load_err(&p);
    assert!(e.contains("cycle"), "{e}");
}
