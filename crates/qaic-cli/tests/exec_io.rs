//! Input and output files of qaic-exec, through the qaic-compiler functions the binary uses:
//! input list files, JSON input files, .npy files, output naming, and no partial files on errors.

use std::path::{Path, PathBuf};

use qaic_compiler::exec_options::{Distribution, RandomInputs};
use qaic_compiler::inputs::{self, InputSpec, IoDirection};
use qaic_compiler::{npy, outputs};
use qaic_tensor::{DType, Dim, Shape, Tensor};

fn spec(name: &str, dtype: DType, dims: &[usize]) -> InputSpec {
    InputSpec { name: name.into(), dtype, shape: Shape::known(dims) }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn list_file_edge_cases() {
    let d = tempfile::tempdir().unwrap();
    let sub = d.path().join("data");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("x0.bin"), f32_bytes(&[1.0, 2.0])).unwrap();
    std::fs::write(sub.join("m 0.bin"), [1u8, 0]).unwrap();
    std::fs::write(sub.join("x1.bin"), f32_bytes(&[3.0, 4.0])).unwrap();
    let abs = sub.join("x1.bin").display().to_string();
    // comments, blank lines, CRLF, comma + spaces (paths with spaces), whitespace separation,
    // absolute paths, trailing comment lines.
    let text = format!("# inputs for two inferences\r\n\r\n  x0.bin , m 0.bin\r\n\n{abs}\tm0.bin\n# end\n");
    std::fs::write(sub.join("list.txt"), text).unwrap();
    let list = inputs::read_input_list(&sub.join("list.txt")).unwrap();
    assert_eq!(list.inferences.len(), 2);
    assert_eq!(list.inferences[0].line, 3);
    assert_eq!(list.inferences[0].files, vec![sub.join("x0.bin"), sub.join("m 0.bin")]);
    assert_eq!(list.inferences[1].line, 5);
    assert_eq!(list.inferences[1].files[0], PathBuf::from(&abs));
    let specs = [spec("x", DType::F32, &[1, 2]), spec("mask", DType::Bool, &[2])];
    let t = list.load(0, &specs).unwrap();
    assert_eq!(t[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    assert_eq!(t[1].to_vec::<bool>().unwrap(), vec![true, false]);
    // line 5 names a missing file: the error names it
    let e = list.load(1, &specs).unwrap_err().to_string();
    assert!(e.contains("m0.bin"), "{e}");
    // wrong count names the line number and the model inputs
    let e = list.load(0, &specs[..1]).unwrap_err().to_string();
    assert!(e.ends_with("list.txt:3: 2 file(s) given, the model has 1 input(s) (x)"), "{e}");
    // wrong size names the input and both sizes
    let e = list.load(0, &[spec("x", DType::F32, &[1, 3]), specs[1].clone()]).unwrap_err().to_string();
    assert!(e.starts_with("input `x`") && e.contains("expected 12 bytes") && e.contains("got 8 bytes"), "{e}");
    // an empty field is an error with its line
    let e = inputs::parse_input_list("a,b\nc,,d\n", Path::new("/"), "l.txt").unwrap_err().to_string();
    assert!(e.starts_with("l.txt:2: empty file name at position 2"), "{e}");
    // a list without inputs is an error, not zero inferences
    assert!(inputs::parse_input_list("# nothing\n", Path::new("/"), "l.txt").is_err());
}

#[test]
fn json_input_file_schema() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("ids.raw"), [5i64, 6, 7, 8].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    std::fs::write(d.path().join("h.raw"), [0u8; 8]).unwrap();
    let json = r#"{ "IO-files": [
        [ {"path": "ids.raw", "dims": [1, 4], "data-type": "int64_t", "io-diretion": ["in"], "map-to": "input_ids"},
          {"path": "h.raw", "elem-size": 2, "io-direction": "in", "dims": [4], "map-to": "h"},
          {"path": "logits.raw", "io-direction": "out", "data-type": "float"} ],
        [ {"path": "ids.raw", "dims": [2, 2], "elem-size": 8, "map-to": "input_ids"},
          {"path": "h.raw", "data-type": "float16", "map-to": "h"} ]
    ]}"#;
    std::fs::write(d.path().join("io.json"), json).unwrap();
    let j = inputs::read_json_inputs(&d.path().join("io.json")).unwrap();
    assert_eq!(j.inferences.len(), 2);
    assert_eq!(j.inferences[0][0].direction, IoDirection::In);
    assert_eq!(j.inferences[0][2].direction, IoDirection::Out);
    assert_eq!(j.inferences[0][0].path, d.path().join("ids.raw"));
    let specs = [
        InputSpec { name: "input_ids".into(), dtype: DType::I64, shape: Shape(vec![Dim::Sym("b".into()), Dim::Sym("s".into())]) },
        InputSpec { name: "h".into(), dtype: DType::F16, shape: Shape(vec![Dim::Unknown]) },
    ];
    let a = j.load(0, &specs).unwrap();
    assert_eq!(a[0].shape(), &[1, 4]);
    assert_eq!(a[0].to_vec::<i64>().unwrap(), vec![5, 6, 7, 8]);
    let b = j.load(1, &specs).unwrap();
    assert_eq!(b[0].shape(), &[2, 2]);
    assert_eq!(b[1].shape(), &[4]);
    // dims that disagree with the file size
    let bad = r#"{"IO-files": [[{"path": "ids.raw", "dims": [1, 3], "map-to": "input_ids"}, {"path": "h.raw", "map-to": "h"}]]}"#;
    let j = inputs::parse_json_inputs(bad, d.path(), "bad.json").unwrap();
    let e = j.load(0, &specs).unwrap_err().to_string();
    assert!(e.contains("input `input_ids`") && e.contains("expected 24 bytes") && e.contains("got 32 bytes"), "{e}");
    // every data-type name of the reference table, with its size
    for (name, size) in [("int", 4), ("float", 4), ("uint", 4), ("float16", 2), ("uint8_t", 1), ("int8_t", 1),
        ("int16_t", 2), ("uint16_t", 2), ("int64_t", 8), ("uint64_t", 8)] {
        let dt = inputs::json_data_type(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(dt.size_of(), Some(size), "{name}");
    }
    let e = inputs::parse_json_inputs(r#"{"IO-files": [[{"path": "a", "io-direction": "both"}]]}"#, d.path(), "x.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.json: IO-files[0][0]: io-direction"), "{e}");
}

#[test]
fn npy_files() {
    let d = tempfile::tempdir().unwrap();
    let t = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let p = d.path().join("x.npy");
    std::fs::write(&p, npy::to_npy_bytes(&t).unwrap()).unwrap();
    let back = npy::read(&p).unwrap();
    assert!(back.bitwise_eq(&t));
    // as a model input, checked against the declared type and shape
    let sym = InputSpec { name: "x".into(), dtype: DType::F32, shape: Shape(vec![Dim::Sym("n".into()), 3.into()]) };
    assert!(inputs::load_input_file(&p, &sym).unwrap().bitwise_eq(&t));
    let e = inputs::load_input_file(&p, &spec("x", DType::F16, &[2, 3])).unwrap_err().to_string();
    assert!(e.contains("holds f32 but the input is f16"), "{e}");
    // version 2 header, Fortran order refused with the file name
    let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n";
    let mut raw = b"\x93NUMPY\x02\x00".to_vec();
    raw.extend_from_slice(&(header.len() as u32).to_le_bytes());
    raw.extend_from_slice(header.as_bytes());
    raw.extend_from_slice(&[0u8; 24]);
    let f = d.path().join("fortran.npy");
    std::fs::write(&f, raw).unwrap();
    let e = npy::read(&f).unwrap_err().to_string();
    assert!(e.contains("fortran.npy") && e.contains("Fortran-order"), "{e}");
}

#[test]
fn output_names_follow_the_runner() {
    assert_eq!(outputs::output_file_name("logits", 0, 0), "logits-activation-0-inf-0.bin");
    assert_eq!(
        outputs::output_file_name("gpu_0/res2_0_branch2a_1", 0, 7),
        "gpu_0_res2_0_branch2a_1-activation-0-inf-7.bin"
    );
    assert_eq!(outputs::output_file_name("past_key.0_RetainedState", 0, 1), "past_key.0_RetainedState-activation-0-inf-1.bin");
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    let y = Tensor::from_vec(vec![2], vec![1.5f32, -1.0]).unwrap();
    let w = outputs::write_outputs(&dir, 0, &[("out/y", &y)]).unwrap();
    assert_eq!(w, vec![format!("{dir}/out_y-activation-0-inf-0.bin")]);
    assert_eq!(std::fs::read(&w[0]).unwrap(), f32_bytes(&[1.5, -1.0]));
    // only the output file is left (no temporary files)
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}

#[test]
fn no_partial_files_on_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out").display().to_string();
    let ok = Tensor::from_vec(vec![1], vec![1u8]).unwrap();
    let strings = Tensor::from_strings(vec![1], vec![b"s".to_vec()]).unwrap();
    assert!(outputs::write_outputs(&dir, 0, &[("a", &ok), ("s", &strings)]).is_err());
    assert!(!Path::new(&dir).exists() || std::fs::read_dir(&dir).unwrap().count() == 0);
    // a write into a missing parent fails without leaving a temporary file
    let e = qaic_compiler::fsutil::write_atomic(&d.path().join("nope/x.bin"), b"1").unwrap_err();
    assert!(e.to_string().contains("x.bin"));
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn random_inputs_reproduce_from_the_seed() {
    let specs = [spec("pixels", DType::F32, &[1, 3, 4, 4]), spec("token_ids", DType::I64, &[1, 16])];
    let cfg = RandomInputs { distribution: Distribution::Gaussian, unbound: false, seed: 1234 };
    let a = inputs::random_inputs(&specs, &cfg).unwrap();
    let b = inputs::random_inputs(&specs, &cfg).unwrap();
    assert!(a[0].bitwise_eq(&b[0]) && a[1].bitwise_eq(&b[1]));
    assert!(a[1].to_vec::<i64>().unwrap().iter().all(|v| (0..=1).contains(v)));
    let d = tempfile::tempdir().unwrap();
    let dumped = inputs::dump_input_buffers(&d.path().display().to_string(), 0, &specs, &a).unwrap();
    assert_eq!(dumped.len(), 2);
    assert!(dumped[1].ends_with("/token_ids-input-inf-0.bin"));
    assert_eq!(std::fs::read(&dumped[1]).unwrap(), a[1].raw_bytes().unwrap());
}
