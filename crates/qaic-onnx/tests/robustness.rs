//! Untrusted bytes never panic the loader: random truncations and byte flips of a valid binary
//! model, and random edits of a text-format model, give a graph or an error.

mod common;

use bytes::Bytes;
use common::*;
use prost::Message;
use proptest::prelude::*;
use qaic_onnx::{LoadOptions, OnnxFile};

fn sample_model() -> Vec<u8> {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(f32_tensor("w", &[2, 4], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]));
    g.node.push(node("Add", "add", &["y", "w"], &["z"]));
    g.node[1].attribute.push(attr_int("axis", 1));
    g.output = vec![output("z")];
    m.encode_to_vec()
}

fn try_load(bytes: Vec<u8>) {
    let dir = std::env::temp_dir();
    if let Ok(f) = OnnxFile::from_bytes(Bytes::from(bytes), "fuzz.onnx", &dir) {
        let _ = qaic_onnx::to_graph(f, &LoadOptions::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn truncated_or_flipped_bytes(cut in 0usize..400, flips in proptest::collection::vec((0usize..400, any::<u8>()), 0..6)) {
        let mut b = sample_model();
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        b.truncate(cut.min(b.len()));
        try_load(b);
    }

    #[test]
    fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        try_load(b);
    }

    #[test]
    fn edited_text_format(cut in 0usize..200, junk in "[ -~\n]{0,8}") {
        let text = "ir_version: 8\nopset_import { version: 13 }\ngraph {\n  node { input: \"x\" output: \"y\" op_type: \"Relu\" }\n  input { name: \"x\" type { tensor_type { elem_type: 1 shape { dim { dim_value: 2 } } } } }\n  output { name: \"y\" }\n}\n";
        let cut = cut.min(text.len());
        let edited = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.onnxtxt");
        std::fs::write(&p, edited).unwrap();
        let _ = qaic_onnx::load(&p, &LoadOptions::default());
    }
}
