//! The ONNX protobuf code in `src/generated/` is checked in, so building qaic-onnx needs neither
//! `protoc` nor a build script. This test regenerates it with `protox` + `prost-build` and fails
//! when the checked-in files differ. To regenerate after changing `proto/`:
//!
//! ```text
//! QAIC_REGENERATE_PROTO=1 cargo test -p qaic-onnx --test proto_codegen
//! ```

use std::path::Path;

use prost::Message;

#[test]
fn generated_proto_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = root.join("proto");
    let fds = protox::compile(["onnx/onnx-ml.proto", "onnx/onnx-data.proto"], [&proto_dir])
        .expect("compile proto/onnx/*.proto with protox");

    let tmp = tempfile::tempdir().expect("temp dir");
    prost_build::Config::new()
        // Byte fields (raw_data, string_data) become `bytes::Bytes`, sliced from the input buffer.
        .bytes(["."])
        .out_dir(tmp.path())
        .compile_fds(fds.clone())
        .expect("prost-build");
    let code = std::fs::read_to_string(tmp.path().join("onnx.rs")).expect("generated onnx.rs");

    // The descriptor set that prost-reflect uses to parse protobuf text format; source info
    // (comments, spans) is dropped to keep it small.
    let mut slim = fds;
    for f in &mut slim.file {
        f.source_code_info = None;
    }
    let descriptor = slim.encode_to_vec();

    let gen_dir = root.join("src/generated");
    let code_path = gen_dir.join("onnx.rs");
    let desc_path = gen_dir.join("onnx.fds.bin");
    if std::env::var_os("QAIC_REGENERATE_PROTO").is_some() {
        std::fs::create_dir_all(&gen_dir).expect("create src/generated");
        std::fs::write(&code_path, &code).expect("write onnx.rs");
        std::fs::write(&desc_path, &descriptor).expect("write onnx.fds.bin");
        return;
    }
    let old_code = std::fs::read_to_string(&code_path).unwrap_or_default();
    let old_desc = std::fs::read(&desc_path).unwrap_or_default();
    assert!(
        old_code == code && old_desc == descriptor,
        "src/generated is stale; run: QAIC_REGENERATE_PROTO=1 cargo test -p qaic-onnx --test proto_codegen"
    );
}
