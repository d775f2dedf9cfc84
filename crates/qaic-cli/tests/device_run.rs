//! The virtual AIC100 end to end: `qaic-exec` compiles a model to `programqpc.bin`,
//! `qaic-qpc validate` accepts it, `qaic-runner` runs it on the simulator; results equal the
//! interpreter's; the Stats block has the vendor's exact shape; bad QPCs and options are refused.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{err, f32_bytes, ok, read_f32};

use std::process::{Command, Output};

/// y = Relu(Conv(x, W, B)), x [batch, 2, 6, 6], W [4, 2, 3, 3], pads 1.
fn model() -> String {
    let w: Vec<String> = (0..72).map(|i| format!("{:.4}", ((i * 37 % 23) as f32 - 11.0) / 20.0)).collect();
    let b: Vec<String> = (0..4).map(|i| format!("{:.2}", i as f32 * 0.1 - 0.15)).collect();
    format!(
        r#"
ir_version: 8
opset_import {{ domain: "" version: 13 }}
graph {{
  name: "convnet"
  node {{ input: "x" input: "W" input: "B" output: "c" op_type: "Conv" name: "conv0"
         attribute {{ name: "pads" ints: 1 ints: 1 ints: 1 ints: 1 type: INTS }} }}
  node {{ input: "c" output: "y" op_type: "Relu" name: "relu0" }}
  initializer {{ dims: 4 dims: 2 dims: 3 dims: 3 data_type: 1 name: "W" {} }}
  initializer {{ dims: 4 data_type: 1 name: "B" {} }}
  input {{ name: "x" type {{ tensor_type {{ elem_type: 1 shape {{ dim {{ dim_param: "batch" }} dim {{ dim_value: 2 }} dim {{ dim_value: 6 }} dim {{ dim_value: 6 }} }} }} }} }}
  output {{ name: "y" type {{ tensor_type {{ elem_type: 1 }} }} }}
}}
"#,
        w.iter().map(|v| format!("float_data: {v}")).collect::<Vec<_>>().join(" "),
        b.iter().map(|v| format!("float_data: {v}")).collect::<Vec<_>>().join(" ")
    )
}


struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.onnxtxt"), model()).unwrap();
        let x: Vec<f32> = (0..144).map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0).collect();
        std::fs::write(dir.path().join("x.bin"), f32_bytes(&x)).unwrap();
        std::fs::write(dir.path().join("list.txt"), "x.bin\n").unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin).args(args).current_dir(self.dir.path()).env_remove("RUST_LOG").output().unwrap()
    }
    fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["-m=net.onnxtxt".to_string(), "-onnx-define-symbol=batch,2".to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run(env!("CARGO_BIN_EXE_qaic-exec"), &a)
    }
    fn runner(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_qaic-runner"), args)
    }
    fn compile(&self, dir: &str, extra: &[&str]) {
        let mut a = vec!["-aic-hw", "-aic-hw-version=2.0", "-aic-num-cores=4", "-compile-only"];
        let bd = format!("-aic-binary-dir={dir}");
        a.push(&bd);
        a.extend_from_slice(extra);
        let out = ok(&self.exec(&a));
        assert!(out.contains(&format!("Generated binary is present at {dir}")), "{out}");
    }
    /// The interpreter's output for x.bin.
    fn reference(&self) -> Vec<f32> {
        ok(&self.exec(&["-run-on-interpreter", "-input-list-file=list.txt", "-write-output-dir=ref"]));
        read_f32(&self.dir.path().join("ref/y-activation-0-inf-0.bin"))
    }
}


fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{x} vs {y}");
    }
}

/// Checks the two last lines: host line (no `Inf/Sec`), then the vendor's Stats block.
fn check_stats(out: &str, count: u64, batch: u64) {
    let lines: Vec<&str> = out.lines().collect();
    let n = lines.len();
    assert!(n >= 3, "{out}");
    assert!(lines[n - 3].starts_with("Host wall time: ") && !lines[n - 3].contains("Inf/Sec"), "{out}");
    assert_eq!(lines[n - 2], " ---- Stats ----");
    let t: Vec<&str> = lines[n - 1].split(' ').collect();
    assert_eq!(t.len(), 8, "{}", lines[n - 1]);
    assert_eq!((t[0], t[1], t[2], t[4], t[5], t[6]), ("InferenceCnt", count.to_string().as_str(), "TotalDuration", "BatchSize", batch.to_string().as_str(), "Inf/Sec"));
    let us: u64 = t[3].strip_suffix("us").unwrap().parse().unwrap();
    assert!(us > 0);
    let rate: f64 = t[7].parse().unwrap();
    assert_eq!(t[7].split('.').nth(1).map(str::len), Some(3));
    let want = count as f64 * 1e6 / us as f64 * batch as f64;
    assert!((rate - want).abs() < 1e-3 + 1e-9 * want, "{rate} vs {want}");
}

#[test]
fn compile_validate_and_run_with_the_runner() {
    let f = Fixture::new();
    f.compile("qpc", &[]);
    assert!(f.dir.path().join("qpc/programqpc.bin").is_file());
    let v = ok(&f.run(env!("CARGO_BIN_EXE_qaic-qpc"), &["validate", "-i", "qpc/programqpc.bin"]));
    assert!(v.contains("Number of NSP required: 4"), "{v}");
    let want = f.reference();
    // Both spellings of every option.
    for (i, args) in [
        &["-t", "qpc/", "-i", "x.bin", "-n", "3", "--write-output-dir", "out"][..],
        &["--test-data=qpc", "--input-file", "x.bin", "--num-iter=3", "-write-output-dir=out", "-d", "0", "-a", "2"][..],
    ]
    .into_iter()
    .enumerate()
    {
        let out = ok(&f.runner(args));
        assert!(out.starts_with("Input file: x.bin\nWriting file:out/y-activation-0-inf-0.bin\n"), "{out}");
        check_stats(&out, 3, 2);
        assert_close(&read_f32(&f.dir.path().join("out/y-activation-0-inf-0.bin")), &want);
        if i == 1 {
            // Two instances on disjoint cores: same work in about half the simulated time.
            assert!(out.contains("InferenceCnt 3"));
        }
    }
}

#[test]
fn instances_raise_throughput_until_cores_run_out() {
    let f = Fixture::new();
    f.compile("qpc", &[]);
    let rate = |a: &str| -> f64 {
        let out = ok(&f.runner(&["-t", "qpc", "-n", "8", "-a", a, "--stats-json", "s.json"]));
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(f.dir.path().join("s.json")).unwrap()).unwrap();
        assert_eq!(j["schema"], "qaic-rs.runner-stats");
        assert_eq!(j["version"], 1);
        assert_eq!(j["instances"].as_u64(), Some(a.parse().unwrap()));
        out.lines().rfind(|l| l.contains("Inf/Sec")).unwrap().rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (r1, r2, r4) = (rate("1"), rate("2"), rate("4"));
    assert!(r2 > 1.8 * r1 && r4 > 1.8 * r2, "{r1} {r2} {r4}");
    // 5 instances × 4 cores = 20 > 16.
    let e = err(&f.runner(&["-t", "qpc", "-n", "1", "-a", "5"]));
    assert!(e.contains("5 instance(s) of a 4-core network need 20 cores") && e.contains("has 16"), "{e}");
}

#[test]
fn exec_compiles_and_simulates_by_default() {
    let f = Fixture::new();
    let want = f.reference();
    let out = ok(&f.exec(&["-aic-num-cores=2", "-input-list-file=list.txt", "-write-output-dir=sim", "-ddr-stats", "-num-iter=2", "-aic-perf-metrics", "-time-passes"]));
    assert!(out.contains("AIC MAC estimate: ") && out.contains("VTCM0Size: ") && out.contains("Pass codegen"), "{out}");
    assert!(out.contains("c01: DDR traffic  read:"), "{out}");
    check_stats(&out, 2, 2);
    assert_close(&read_f32(&f.dir.path().join("sim/y-activation-0-inf-0.bin")), &want);
}

#[test]
fn qpcs_are_byte_identical_across_runs_and_compile_threads() {
    let f = Fixture::new();
    f.compile("a", &["-compile-threads=1"]);
    f.compile("b", &["-compile-threads=3"]);
    f.compile("c", &["-compile-threads=3"]);
    let r = |d: &str| std::fs::read(f.dir.path().join(d).join("programqpc.bin")).unwrap();
    assert_eq!(r("a"), r("b"));
    assert_eq!(r("b"), r("c"));
}

#[test]
fn the_program_reads_its_constants_from_the_qpc() {
    let f = Fixture::new();
    f.compile("qpc", &[]);
    let path = f.dir.path().join("qpc/programqpc.bin");
    let base = ok(&f.runner(&["-t", "qpc", "-i", "x.bin", "-n", "1", "--write-output-dir", "o1"]));
    let mut bytes = std::fs::read(&path).unwrap();
    let off = {
        let q = qaic_qpc::Qpc::from_bytes(&bytes).unwrap();
        q.segment_info("constants.bin").unwrap().data_offset() as usize
    };
    bytes[off + 3] ^= 0x40; // high byte of the first weight
    std::fs::write(&path, &bytes).unwrap();
    ok(&f.runner(&["-t", "qpc", "-i", "x.bin", "-n", "1", "--write-output-dir", "o2"]));
    let _ = base;
    assert_ne!(read_f32(&f.dir.path().join("o1/y-activation-0-inf-0.bin")), read_f32(&f.dir.path().join("o2/y-activation-0-inf-0.bin")));
}

#[test]
fn bad_qpcs_inputs_and_options_are_refused() {
    let f = Fixture::new();
    f.compile("qpc", &[]);
    // Wrong input size: names the file, the input and the sizes; writes nothing.
    std::fs::write(f.p("short.bin"), [0u8; 10]).unwrap();
    let e = err(&f.runner(&["-t", "qpc", "-i", "short.bin", "--write-output-dir", "none"]));
    assert!(e.contains("short.bin") && e.contains("input `x`") && e.contains("needs 576"), "{e}");
    assert!(!f.dir.path().join("none").exists());
    // Wrong number of inputs.
    let e = err(&f.runner(&["-t", "qpc", "-i", "x.bin", "-i", "x.bin"]));
    assert!(e.contains("1 input(s)") && e.contains("2 -i file(s)"), "{e}");
    // Device id.
    let e = err(&f.runner(&["-t", "qpc", "-d", "3"]));
    assert!(e.contains("invalid device id 3"), "{e}");
    // Missing and corrupt QPCs.
    let e = err(&f.runner(&["-t", "nowhere"]));
    assert!(e.contains("nowhere"), "{e}");
    let good = std::fs::read(f.dir.path().join("qpc/programqpc.bin")).unwrap();
    std::fs::create_dir_all(f.dir.path().join("bad")).unwrap();
    std::fs::write(f.dir.path().join("bad/programqpc.bin"), &good[..good.len() / 2]).unwrap();
    let e = err(&f.runner(&["-t", "bad"]));
    assert!(e.contains("bad/programqpc.bin"), "{e}");
    // A vendor (Hexagon) network.elf without our note.
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 1; // ELFCLASS32, as the vendor's Hexagon ELFs
    elf[5] = 1;
    elf[6] = 1;
    elf[18] = 164; // EM_QDSP6
    let q = qaic_qpc::Qpc::from_bytes(&good).unwrap();
    let mut w = qaic_qpc::QpcWriter::new();
    for s in q.segments() {
        let data = if s.name() == "network.elf" { elf.clone() } else { q.data(s).to_vec() };
        w.add_bytes(s.name(), data);
    }
    w.static_size("constants.bin", q.segment_info("constants.bin").unwrap().static_size());
    std::fs::create_dir_all(f.dir.path().join("vendor")).unwrap();
    w.write(f.dir.path().join("vendor/programqpc.bin")).unwrap();
    let e = err(&f.runner(&["-t", "vendor"]));
    assert!(e.contains("vendor program the simulator cannot run"), "{e}");
    // Options.
    let e = err(&f.exec(&["-aic-num-cores=17"]));
    assert!(e.contains("allowed 1 to 16"), "{e}");
    let e = err(&f.exec(&["-compile-only", "-run-on-interpreter"]));
    assert!(e.contains("cannot be used together"), "{e}");
    let e = err(&f.exec(&["-aic-num-cores=2", "-mos=2", "-vtcm-working-set-limit-ratio=0", "-compile-only"]));
    assert!(e.contains("-vtcm-working-set-limit-ratio"), "{e}");
    let e = err(&f.exec(&["-convert-to-quantize", "-compile-only"]));
    assert!(e.contains("-run-on-interpreter"), "{e}");
}

#[test]
fn trace_profiles_have_a_track_per_core_unit_and_dma_engine() {
    let f = Fixture::new();
    f.compile("qpc", &[]);
    std::fs::create_dir_all(f.dir.path().join("prof")).unwrap();
    let out = ok(&f.runner(&["-t", "qpc", "-n", "3", "--aic-profiling-type", "trace", "--aic-profiling-start-iter=1", "--aic-profiling-num-samples", "2", "--aic-profiling-out-dir", "prof"]));
    assert!(out.contains("Writing file:prof/aic-profiling-program-0-trace.json\n"), "{out}");
    check_stats(&out, 3, 2);
    let check = |path: &str, samples: usize| {
        let j: serde_json::Value = serde_json::from_slice(&std::fs::read(f.dir.path().join(path)).unwrap()).unwrap();
        let ev = j["traceEvents"].as_array().unwrap();
        let names = |what: &str| -> Vec<String> { ev.iter().filter(|e| e["name"] == what).map(|e| e["args"]["name"].as_str().unwrap().to_string()).collect() };
        let procs = names("process_name");
        assert_eq!(procs, ["HOST_PROC", "Process 0", "Process 1", "Process 2", "Process 3"]);
        assert!(names("thread_name").iter().filter(|n| *n == "t5 DMAIssue").count() == 4);
        let spans: Vec<&serde_json::Value> = ev.iter().filter(|e| e["ph"] == "X").collect();
        assert_eq!(spans.iter().filter(|e| e["cat"] == "inference").count(), samples);
        for core in 1..=4 {
            assert!(spans.iter().any(|e| e["pid"] == core && e["cat"] == "op"), "core {core} has no op");
            assert!(spans.iter().any(|e| e["pid"] == core && e["cat"] == "dma" && e["tid"] == 5), "core {core} has no DMA");
        }
    };
    check("prof/aic-profiling-program-0-trace.json", 2);
    std::fs::create_dir_all(f.dir.path().join("prof2")).unwrap();
    let out = ok(&f.exec(&["-aic-num-cores=4", "-aic-profiling-type=trace", "-aic-profiling-out-dir=prof2", "-num-iter=2"]));
    assert!(out.contains("Writing file:prof2/aic-profiling-program-0-trace.json\n"), "{out}");
    check("prof2/aic-profiling-program-0-trace.json", 1);
    let e = err(&f.runner(&["-t", "qpc", "--aic-profiling-type", "latency"]));
    assert!(e.starts_with("not supported yet: -aic-profiling-type=latency"), "{e}");
    let e = err(&f.exec(&["-run-on-interpreter", "-aic-profiling-type=trace"]));
    assert!(e.starts_with("not supported yet:"), "{e}");
}
