//! qaic-exec / qaic-compile command-line behaviour: help, detailed help, version, unknown
//! options, refusals of options whose feature has not landed, and value range errors.

use std::path::Path;
use std::process::{Command, Output};

fn exec(args: &[&str]) -> Output {
    run_in(env!("CARGO_BIN_EXE_qaic-exec"), args, None)
}

fn run_in(bin: &str, args: &[&str], dir: Option<&Path>) -> Output {
    let mut c = Command::new(bin);
    c.args(args).env_remove("RUST_LOG");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    c.output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_spellings_list_options() {
    for h in ["-h", "-help", "--help", "--usage"] {
        let o = exec(&[h]);
        assert!(o.status.success(), "{h}: {}", stderr(&o));
        let s = stdout(&o);
        assert!(s.contains("USAGE: qaic-exec [options]"), "{h}");
        for opt in ["-aic-num-cores=<int>", "-m, -model=<path>", "-input-list-file=<path>", "-convert-to-fp16", "-h, -help, --help"] {
            assert!(s.contains(opt), "{h}: help lacks {opt}");
        }
        assert!(s.contains("[not supported yet]"));
    }
    // Help wins even after other options.
    assert!(exec(&["-m=x.onnx", "-h"]).status.success());
}

#[test]
fn detailed_help_shows_defaults_ranges_and_status() {
    let o = exec(&["-u"]);
    assert!(o.status.success());
    let s = stdout(&o);
    let block = |name: &str| -> String {
        let start = s.find(&format!("\n  -{name}")).unwrap_or_else(|| panic!("-u lacks -{name}"));
        let rest = &s[start + 3..];
        rest[..rest.find("\n  -").unwrap_or(rest.len())].to_string()
    };
    assert!(block("io-crc-stride").contains("default: 256"));
    assert!(block("aic-num-cores").contains("values: 1 to 16"));
    assert!(block("size-split-granularity").contains("values: 512 to 2048"));
    assert!(block("aic-depth-first-mem").contains("one of 16, 20, 24, 28, 32"));
    assert!(block("aic-hw-version").contains("one of 2.0, ai100, ai200"));
    assert!(block("onnx-define-symbol").contains("may be given several times"));
    assert!(block("mxfp6-matmul").contains("status: not supported yet"));
    assert!(!block("use-producer-dma").contains("status: not supported yet"));
    assert!(block("aic-hw").contains("virtual AIC100"));
    assert!(block("host-preproc").contains("(the default)"));
    assert!(block("m=").contains("aliases: -model"));
}

#[test]
fn qaic_compile_is_the_same_program() {
    let o = run_in(env!("CARGO_BIN_EXE_qaic-compile"), &["-h"], None);
    assert!(o.status.success());
    assert!(stdout(&o).contains("USAGE: qaic-compile [options]"));
    let o = run_in(env!("CARGO_BIN_EXE_qaic-compile"), &["-version"], None);
    assert!(stdout(&o).starts_with("qaic-compile (qaic-rs) version "));
}

#[test]
fn version_lines() {
    let o = exec(&["-version"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), format!("qaic-exec (qaic-rs) version {}\n", env!("CARGO_PKG_VERSION")));
    let o = exec(&["-version-extended"]);
    let s = stdout(&o);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 2);
    let sha = lines[1].strip_prefix("commit ").expect("second line names the commit");
    assert!(sha == "unknown" || (sha.len() >= 7 && sha.chars().all(|c| c.is_ascii_hexdigit())), "{sha}");
}

#[test]
fn unknown_option_exact_text_and_suggestion() {
    let o = exec(&["-m=model.onnx", "-retained-stat"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o),
        "Invalid option -retained-stat. Use -h, -help, or --help for list of options.\nDid you mean -retained-state?\n"
    );
    let o = exec(&["--aic-num-core=4"]);
    assert_eq!(
        stderr(&o),
        "Invalid option --aic-num-core. Use -h, -help, or --help for list of options.\nDid you mean -aic-num-cores?\n"
    );
    // Nothing close: no suggestion line.
    let o = exec(&["-qqqqqqqqqqqqqqqqqq"]);
    assert_eq!(stderr(&o), "Invalid option -qqqqqqqqqqqqqqqqqq. Use -h, -help, or --help for list of options.\n");
    assert!(!o.status.success());
}

#[test]
fn unsupported_features_are_refused_by_name() {
    for (args, opt) in [
        (&["-m=m.onnx", "-run-on-interpreter", "-mxint8"][..], "-mxint8"),
        (&["-m=m.onnx", "-mxfp6-matmul"][..], "-mxfp6-matmul"),
        (&["-m=m.onnx", "-retained-state"][..], "-retained-state"),
        (&["-m=m.onnx", "-network-specialization-config=s.json"][..], "-network-specialization-config"),
        (&["-m=m.onnx", "-dump-custom-IO-config-template=io.yaml", "-input-list-file=l.txt"][..], "-dump-custom-IO-config-template"),
    ] {
        let o = exec(args);
        assert!(!o.status.success(), "{args:?}");
        let e = stderr(&o);
        assert_eq!(e.lines().next(), Some(format!("not supported yet: {opt}").as_str()), "{args:?}: {e}");
    }
    // -aic-hw-version=ai200 parses, but the virtual device has no model of it.
    let o = exec(&["-m=m.onnx", "-aic-hw-version=ai200", "-compile-only"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no device model yet"), "{}", stderr(&o));
}

#[test]
fn value_errors_are_clear() {
    let cases: &[(&[&str], &str)] = &[
        (&["-aic-num-cores=17"], "value `17` for option -aic-num-cores is out of range: allowed 1 to 16"),
        (&["-aic-num-cores=0"], "allowed 1 to 16"),
        (&["-size-split-granularity=4096"], "-size-split-granularity is out of range: allowed 512 to 2048"),
        (&["-vtcm-working-set-limit-ratio=1.5"], "-vtcm-working-set-limit-ratio is out of range: allowed 0 to 1"),
        (&["-allocator-dealloc-delay=11"], "-allocator-dealloc-delay is out of range: allowed 0 to 10"),
        (&["-percentile-calibration-value=80"], "-percentile-calibration-value is out of range: allowed 90 to 100"),
        (&["-aic-enable-depth-first", "-aic-depth-first-mem=18"], "expected one of 16, 20, 24, 28, 32"),
        (&["-aic-depth-first-mem=16"], "option -aic-depth-first-mem needs -aic-enable-depth-first"),
        (&["-aic-hw-version=3.0"], "expected one of 2.0, ai100, ai200"),
        (&["-num-iter=abc"], "invalid value `abc` for option -num-iter: expected an integer"),
        (&["-num-iter"], "option -num-iter needs a value"),
        (&["-use-random-input-data=poisson"], "expected one of uniform, gaussian"),
        (&["-aic-pmu-events=1,2,3,4,5,6,7,8,9"], "at most 8 items"),
        (&["-aic-hw", "-run-on-interpreter"], "options -aic-hw and -run-on-interpreter cannot be used together"),
        (&["-m=x.onnx", "-run-on-interpreter", "-onnx-define-symbol=batch"], "NAME,VALUE"),
        (&["-run-on-interpreter"], "needs a model: -m=<model file>"),
        (&["model.onnx"], "unexpected argument `model.onnx`"),
    ];
    for (args, want) in cases {
        let o = exec(args);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?}: expected `{want}` in `{e}`");
    }
    // Accepted spellings: space-separated values, old hw version, repeated last-wins.
    let o = exec(&["-num-iter", "100", "-aic-hw-version=2.0", "-mos=1", "-mos=1,4", "-h"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn operators_supported_writes_the_interpreter_list() {
    let d = tempfile::tempdir().unwrap();
    let o = run_in(env!("CARGO_BIN_EXE_qaic-exec"), &["-operators-supported=onnx"], Some(d.path()));
    let file = d.path().join("OnnxSupportedOperators.txt");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&file).expect("the list was written");
    let ops: Vec<&str> = text.lines().collect();
    for op in ["Add", "Conv", "MatMul", "Relu", "Softmax"] {
        assert!(ops.contains(&op), "{op} missing from the list");
    }
    assert!(ops.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    assert_eq!(stdout(&o), "Writing file:./OnnxSupportedOperators.txt\n");
    let o = run_in(env!("CARGO_BIN_EXE_qaic-exec"), &["-operators-supported=caffe2"], Some(d.path()));
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("not supported yet: -operators-supported=caffe2"));
    assert!(!d.path().join("Caffe2SupportedOperators.txt").exists());
}
