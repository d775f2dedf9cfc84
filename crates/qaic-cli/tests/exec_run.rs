//! qaic-exec end to end: `-m=model -run-on-interpreter` with list files, JSON inputs, random
//! inputs, output writing, intermediate outputs and errors, on a tiny text-format ONNX model.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{err, f32_bytes, ok, read_f32};

use std::path::Path;
use std::process::Output;

/// out/r = Relu(x + y); x is [batch, 3], y is [1, 3]; `s` is the intermediate sum.
const MODEL: &str = r#"
ir_version: 8
opset_import { domain: "" version: 13 }
graph {
  name: "tiny"
  node { input: "x" input: "y" output: "s" op_type: "Add" name: "add0" }
  node { input: "s" output: "out/r" op_type: "Relu" name: "relu0" }
  input { name: "x" type { tensor_type { elem_type: 1 shape { dim { dim_param: "batch" } dim { dim_value: 3 } } } } }
  input { name: "y" type { tensor_type { elem_type: 1 shape { dim { dim_value: 1 } dim { dim_value: 3 } } } } }
  output { name: "out/r" type { tensor_type { elem_type: 1 } } }
}
"#;


struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.onnxtxt"), MODEL).unwrap();
        std::fs::write(dir.path().join("x.bin"), f32_bytes(&[-1.0, 2.0, -3.0, 4.0, 5.0, -6.0])).unwrap();
        std::fs::write(dir.path().join("x1.bin"), f32_bytes(&[10.0, 10.0, 10.0, 10.0, 10.0, 10.0])).unwrap();
        std::fs::write(dir.path().join("y.bin"), f32_bytes(&[1.0, 1.0, 1.0])).unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn exec(&self, args: &[&str]) -> Output {
        let model = format!("-m={}", self.p("tiny.onnxtxt"));
        std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
            .arg(model)
            .arg("-run-on-interpreter")
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
}


#[test]
fn list_file_run_writes_outputs_and_intermediates() {
    let f = Fixture::new();
    std::fs::write(f.p("list.txt"), "# two inferences\nx.bin,y.bin\nx1.bin y.bin\n").unwrap();
    let out = f.p("out");
    let o = f.exec(&[
        &format!("-input-list-file={}", f.p("list.txt")),
        "-onnx-define-symbol=batch,2",
        &format!("-write-output-dir={out}"),
        "-output-node-name=s",
        "-num-iter",
        "4",
    ]);
    let stdout = ok(&o);
    assert!(stdout.contains(&format!("Input file: {}\n", f.p("x.bin"))), "{stdout}");
    assert!(stdout.contains(&format!("Writing file:{out}/out_r-activation-0-inf-0.bin\n")), "{stdout}");
    assert!(stdout.contains(&format!("Writing file:{out}/s-activation-0-inf-1.bin\n")), "{stdout}");
    assert!(stdout.contains("Ran 4 inference(s) on the interpreter\n"));
    let timing = stdout.lines().last().unwrap();
    let ms = timing
        .strip_prefix("Host wall time per inference (median): ")
        .and_then(|r| r.strip_suffix(" ms"))
        .expect("timing line");
    assert!(ms.parse::<f64>().unwrap() >= 0.0);
    assert!(!stdout.contains("Inf/Sec"));
    let dir = Path::new(&out);
    assert_eq!(read_f32(&dir.join("out_r-activation-0-inf-0.bin")), vec![0.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
    assert_eq!(read_f32(&dir.join("s-activation-0-inf-0.bin")), vec![0.0, 3.0, -2.0, 5.0, 6.0, -5.0]);
    assert_eq!(read_f32(&dir.join("out_r-activation-0-inf-1.bin")), vec![11.0; 6]);
    // 4 iterations over 2 lines: files only for the two distinct input sets
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 4);
}

#[test]
fn random_and_json_inputs() {
    let f = Fixture::new();
    let o = f.exec(&["-batchsize=1", "-use-random-input-data=gaussian", "-random-seed=7", "-dump-input-buffers"]);
    let stdout = ok(&o);
    assert!(stdout.starts_with("Using bounded gaussian random inputs (seed 7)\n"), "{stdout}");
    assert!(stdout.contains("Writing file:./x-input-inf-0.bin\n"), "{stdout}");
    assert_eq!(std::fs::read(f.p("x-input-inf-0.bin")).unwrap().len(), 12);
    // the same seed gives the same inputs
    let first = std::fs::read(f.p("y-input-inf-0.bin")).unwrap();
    ok(&f.exec(&["-batchsize=1", "-use-random-input-data=gaussian", "-random-seed=7", "-dump-input-buffers"]));
    assert_eq!(std::fs::read(f.p("y-input-inf-0.bin")).unwrap(), first);

    let json = r#"{"IO-files": [[
        {"path": "y.bin", "io-direction": "in", "map-to": "y", "data-type": "float", "dims": [1, 3]},
        {"path": "x.bin", "io-diretion": ["in"], "map-to": "x", "elem-size": 4, "dims": [2, 3]} ]]}"#;
    std::fs::write(f.p("io.json"), json).unwrap();
    let out = f.p("jout");
    ok(&f.exec(&[&format!("-json-input-file={}", f.p("io.json")), &format!("-write-output-dir={out}")]));
    assert_eq!(read_f32(&Path::new(&out).join("out_r-activation-0-inf-0.bin")), vec![0.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
}

#[test]
fn input_errors_name_the_problem_and_write_nothing() {
    let f = Fixture::new();
    let out = f.p("out");
    // x bound to batch 1 needs 12 bytes; x.bin has 24
    std::fs::write(f.p("l1.txt"), "x.bin,y.bin\n").unwrap();
    let e = err(&f.exec(&[&format!("-input-list-file={}", f.p("l1.txt")), "-batchsize=1", &format!("-write-output-dir={out}")]));
    assert!(e.contains("input `x`") && e.contains("expected 12 bytes") && e.contains("got 24 bytes"), "{e}");
    assert!(!Path::new(&out).exists());
    // one file missing on line 3
    std::fs::write(f.p("l2.txt"), "x.bin,y.bin\n\nx.bin\n").unwrap();
    let e = err(&f.exec(&[&format!("-input-list-file={}", f.p("l2.txt")), "-onnx-define-symbol=batch,2", &format!("-write-output-dir={out}")]));
    assert!(e.contains("l2.txt:3: 1 file(s) given, the model has 2 input(s) (x, y)"), "{e}");
    assert!(!Path::new(&out).exists());
    // random inputs need every dimension bound
    let e = err(&f.exec(&[]));
    assert!(e.contains("input `x`") && e.contains("-onnx-define-symbol"), "{e}");
    // unknown intermediate name
    let e = err(&f.exec(&["-batchsize=1", "-output-node-name=nope"]));
    assert!(e.contains("no tensor named `nope`"), "{e}");
    // missing model file
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
        .args(["-m=/nonexistent/model.onnx", "-run-on-interpreter"])
        .output()
        .unwrap();
    assert!(err(&o).contains("/nonexistent/model.onnx"));
}

/// `-always-expand-onnx-functions` replaces a schema-function op (HardSwish, opset 14) by its
/// primitive body; the outputs stay the same.
#[test]
fn always_expand_onnx_functions_expands_schema_functions() {
    let f = Fixture::new();
    let model = r#"
ir_version: 8
opset_import { domain: "" version: 14 }
graph {
  name: "hs"
  node { input: "x" output: "y" op_type: "HardSwish" name: "hs0" }
  input { name: "x" type { tensor_type { elem_type: 1 shape { dim { dim_value: 2 } dim { dim_value: 3 } } } } }
  output { name: "y" type { tensor_type { elem_type: 1 } } }
}
"#;
    std::fs::write(f.p("hs.onnxtxt"), model).unwrap();
    std::fs::write(f.p("list.txt"), "x.bin\n").unwrap();
    let run = |extra: &[&str], out: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"));
        cmd.arg(format!("-m={}", f.p("hs.onnxtxt")))
            .arg("-run-on-interpreter")
            .arg(format!("-input-list-file={}", f.p("list.txt")))
            .arg(format!("-write-output-dir={}", f.p(out)))
            .args(extra)
            .current_dir(f.dir.path())
            .env_remove("RUST_LOG");
        cmd.output().unwrap()
    };
    let plain = run(&["-vv"], "plain");
    ok(&plain);
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("expanded"));
    let expanded = run(&["-always-expand-onnx-functions", "-vv"], "expanded");
    ok(&expanded);
    let log = String::from_utf8_lossy(&expanded.stderr);
    assert!(log.contains("expanded 1 function call(s)"), "{log}");
    let a = read_f32(Path::new(&f.p("plain/y-activation-0-inf-0.bin")));
    let b = read_f32(Path::new(&f.p("expanded/y-activation-0-inf-0.bin")));
    let want: Vec<f32> = [-1.0f32, 2.0, -3.0, 4.0, 5.0, -6.0].iter().map(|&x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0).collect();
    for ((a, b), w) in a.iter().zip(&b).zip(&want) {
        assert!((a - w).abs() <= 1e-6 && (b - w).abs() <= 1e-6, "{a} {b} {w}");
    }
}

/// Bad model files and bad options through the command line: a clear error naming the problem,
/// a non-zero exit, and no output folder left behind.
#[test]
fn bad_models_and_options_leave_no_output() {
    let f = Fixture::new();
    let out = f.p("out");
    let ext = |location: &str| {
        format!(
            r#"ir_version: 8
opset_import {{ domain: "" version: 13 }}
graph {{
  name: "ext"
  node {{ input: "x" input: "w" output: "y" op_type: "Add" }}
  initializer {{ name: "w" data_type: 1 dims: 3 data_location: EXTERNAL external_data {{ key: "location" value: "{location}" }} }}
  input {{ name: "x" type {{ tensor_type {{ elem_type: 1 shape {{ dim {{ dim_value: 3 }} }} }} }} }}
  output {{ name: "y" type {{ tensor_type {{ elem_type: 1 }} }} }}
}}
"#
        )
    };
    std::fs::write(f.p("short.bin"), [0u8; 4]).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.onnx", Vec::new(), "empty.onnx"),
        // field 1 (ir_version... as bytes) claims 16383 bytes that are not there
        ("truncated.onnx", vec![0x3a, 0xff, 0x7f, 0x01], "truncated.onnx"),
        ("malformed.onnxtxt", b"ir_version: 8\ngraph { node { op_type: \"Relu\" \n".to_vec(), "malformed.onnxtxt"),
        ("escaping.onnxtxt", ext("../w.bin").into_bytes(), "../w.bin"),
        ("missing.onnxtxt", ext("absent.bin").into_bytes(), "absent.bin"),
        ("beyond.onnxtxt", ext("short.bin").into_bytes(), "short.bin"),
    ];
    for (name, bytes, mention) in cases {
        std::fs::write(f.p(name), bytes).unwrap();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
            .arg(format!("-m={}", f.p(name)))
            .args(["-run-on-interpreter", "-use-random-input-data=uniform", &format!("-write-output-dir={out}")])
            .current_dir(f.dir.path())
            .output()
            .unwrap();
        let e = err(&o);
        assert!(e.contains(mention), "{name}: {e}");
        assert!(!Path::new(&out).exists(), "{name}: output folder left behind");
    }
    for (args, mention) in [
        (&["-onnx-defin-symbol=batch,1"][..], "Invalid option -onnx-defin-symbol"),
        (&["-aic-num-cores=17"][..], "out of range"),
        (&["-num-iter=0"][..], "-num-iter"),
    ] {
        let mut all = vec!["-batchsize=1".to_string(), format!("-write-output-dir={out}")];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let e = err(&f.exec(&all));
        assert!(e.contains(mention), "{args:?}: {e}");
        assert!(!Path::new(&out).exists(), "{args:?}: output folder left behind");
    }
}
