//! The simulator half of `cargo xtask bench`: for every benchmark model the virtual AIC100
//! accepts, the simulator's median host wall time per inference next to the interpreter's,
//! measured in the same run (issue 9 target: simulator ≤ 1.5× the interpreter).
//!
//! Per model: interpreter, simulator at each `--sim-cores` value, interpreter again; the
//! interpreter figure is the mean of its two medians, so load drift during the model's
//! measurements affects both sides alike. Models codegen refuses (unsupported operators) are
//! listed as refused. light_resnet50_rand is measured twice: float32, and int8 (a profile
//! dumped from the same inputs, `-load-profile -enable-channelwise` on both sides). Symbolic
//! input dimensions are bound from the zoo manifest's reference shapes (the device compiles
//! static shapes), else `-batchsize` from the input's first axis.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::bench::{OrtResult, parse_host_median_ms, write_input_list};
use crate::cmd;

/// The line the simulator target prints: `Host wall time: X s for N inference(s) on the
/// simulator (median Y ms per inference)`.
const SIM_MARKER: &str = "on the simulator (median ";

/// One model × core count.
#[derive(Serialize, Debug)]
pub struct SimRow {
    pub model: String,
    pub cores: u32,
    pub interp_ms: Option<f64>,
    pub sim_ms: Option<f64>,
    pub ratio_sim_over_interp: Option<f64>,
    /// Predicted device time per inference (µs) from the Stats block.
    pub predicted_us: Option<f64>,
    /// Compile refusal or run failure.
    pub error: Option<String>,
}

/// Reads `Y` from the simulator's host wall time line.
pub fn parse_sim_median_ms(stdout: &str) -> Option<f64> {
    stdout.lines().rev().find_map(|l| {
        let rest = &l[l.find(SIM_MARKER)? + SIM_MARKER.len()..];
        let num = rest.split_whitespace().next()?;
        num.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    })
}

/// Predicted µs per inference from ` ---- Stats ----`'s `InferenceCnt N TotalDuration Tus`.
pub fn parse_predicted_us(stdout: &str) -> Option<f64> {
    let l = stdout.lines().find(|l| l.starts_with("InferenceCnt "))?;
    let w: Vec<&str> = l.split_whitespace().collect();
    let n: f64 = w.get(1)?.parse().ok()?;
    let t: f64 = w.get(3)?.strip_suffix("us")?.parse().ok()?;
    (n > 0.0).then_some(t / n)
}

/// Shape of a `.npy` file (from its header).
fn npy_shape(path: &Path) -> Result<Vec<u64>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let head = String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned();
    let s = head.find("'shape':").with_context(|| format!("{}: no shape in the npy header", path.display()))?;
    let rest = &head[s..];
    let (o, c) = (rest.find('(').context("npy shape")?, rest.find(')').context("npy shape")?);
    Ok(rest[o + 1..c].split(',').filter_map(|t| t.trim().parse().ok()).collect())
}

/// `-onnx-define-symbol` options binding the model's symbolic input dimensions.
fn symbol_args(shared: Option<&Path>, model: &str, inputs: &[PathBuf]) -> Result<Vec<String>> {
    let manifest = shared.map(|s| s.join("zoo/manifest.json")).filter(|p| p.is_file());
    let entry = match manifest {
        Some(m) => {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&m)?)?;
            v.get(model).cloned()
        }
        None => None,
    };
    let mut args = Vec::new();
    match entry.as_ref().and_then(|e| e["inputs"].as_array()) {
        Some(ins) => {
            for (inp, file) in ins.iter().zip(inputs) {
                let shape = npy_shape(file)?;
                for (d, v) in inp["shape"].as_array().into_iter().flatten().zip(&shape) {
                    if let Some(sym) = d.as_str() {
                        let a = format!("-onnx-define-symbol={sym},{v}");
                        if !args.contains(&a) {
                            args.push(a);
                        }
                    }
                }
            }
        }
        None => {
            if let Some(f) = inputs.first() {
                args.push(format!("-batchsize={}", npy_shape(f)?.first().copied().unwrap_or(1)));
            }
        }
    }
    Ok(args)
}

fn run_exec(c: &mut Command) -> Result<String> {
    println!("$ {}", cmd::describe(c));
    let out = c.stdin(Stdio::null()).output().with_context(|| format!("cannot start `{}`", cmd::describe(c)))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        bail!("{last}");
    }
    Ok(stdout)
}

/// Models also measured quantized (int8, per-channel, profiled on the benchmark inputs): the
/// device issue's calibration model, so the simulator's speed on integer programs is measured
/// too.
const INT8_MODELS: &[&str] = &["light_resnet50_rand"];

/// Measures every model of `ort` (its prepared inputs) on the interpreter and the simulator,
/// and the models of [`INT8_MODELS`] once more quantized.
pub fn measure(exec: &Path, shared: Option<&Path>, ort: &[OrtResult], num_iter: u32, cores: &[u32], work: &Path) -> Result<Vec<SimRow>> {
    let mut rows = Vec::new();
    for r in ort {
        let list = work.join(format!("{}.sim-inputs.txt", r.model));
        write_input_list(&list, &r.inputs)?;
        let symbols = symbol_args(shared, &r.model, &r.inputs)?;
        let mut variants: Vec<(String, Result<Vec<String>>)> = vec![(r.model.clone(), Ok(Vec::new()))];
        if INT8_MODELS.contains(&r.model.as_str()) {
            let profile = work.join(format!("{}.profile.yaml", r.model));
            let mut c = Command::new(exec);
            c.arg(format!("-m={}", r.model_path.display())).arg(format!("-input-list-file={}", list.display())).arg("-run-on-interpreter").arg(format!("-dump-profile={}", profile.display()));
            let args = run_exec(&mut c).map(|_| vec![format!("-load-profile={}", profile.display()), "-enable-channelwise".to_string()]);
            variants.push((format!("{} (int8)", r.model), args));
        }
        for (name, extra) in variants {
            println!("bench: simulator vs interpreter on {name} ...");
            let extra = match extra {
                Ok(e) => e,
                Err(e) => {
                    rows.extend(cores.iter().map(|&n| SimRow { model: name.clone(), cores: n, interp_ms: None, sim_ms: None, ratio_sim_over_interp: None, predicted_us: None, error: Some(format!("profiling: {e:#}")) }));
                    continue;
                }
            };
            let base = |c: &mut Command| {
                c.arg(format!("-m={}", r.model_path.display()))
                    .arg(format!("-input-list-file={}", list.display()))
                    .arg(format!("-num-iter={num_iter}"))
                    .args(&extra);
            };
            let interp = || -> Option<f64> {
                let mut c = Command::new(exec);
                base(&mut c);
                c.arg("-run-on-interpreter");
                run_exec(&mut c).ok().and_then(|o| parse_host_median_ms(&o))
            };
            let before = interp();
            let mut sims = Vec::new();
            for &n in cores {
                let mut c = Command::new(exec);
                base(&mut c);
                c.args(&symbols).arg(format!("-aic-num-cores={n}"));
                sims.push((n, run_exec(&mut c)));
            }
            let after = interp();
            let interp_ms = match (before, after) {
                (Some(a), Some(b)) => Some((a + b) / 2.0),
                (a, b) => a.or(b),
            };
            for (n, s) in sims {
                let (sim_ms, predicted_us, error) = match s {
                    Ok(o) => (parse_sim_median_ms(&o), parse_predicted_us(&o), None),
                    Err(e) => (None, None, Some(format!("{e:#}"))),
                };
                rows.push(SimRow {
                    model: name.clone(),
                    cores: n,
                    interp_ms,
                    sim_ms,
                    ratio_sim_over_interp: match (sim_ms, interp_ms) {
                        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                        _ => None,
                    },
                    predicted_us,
                    error,
                });
            }
        }
    }
    Ok(rows)
}

pub fn table(rows: &[SimRow]) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.d$}"));
    let mut s = String::new();
    let _ = writeln!(s, "\n{:<22} {:>5} {:>12} {:>12} {:>10} {:>14}", "model", "cores", "interp ms", "sim ms", "sim/interp", "predicted µs");
    for r in rows {
        if let Some(e) = &r.error {
            let short: String = e.chars().take(90).collect();
            let _ = writeln!(s, "{:<22} {:>5} {:>12} {:>12}  {short}", r.model, r.cores, f(r.interp_ms, 3), "refused");
            continue;
        }
        let ratio = r.ratio_sim_over_interp.map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
        let _ = writeln!(s, "{:<22} {:>5} {:>12} {:>12} {:>10} {:>14}", r.model, r.cores, f(r.interp_ms, 3), f(r.sim_ms, 3), ratio, f(r.predicted_us, 1));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sim_lines() {
        let out = "Host wall time: 0.277 s for 10 inference(s) on the simulator (median 21.469 ms per inference)\n ---- Stats ----\nInferenceCnt 10 TotalDuration 16025us BatchSize 1 Inf/Sec 624.025\n";
        assert_eq!(parse_sim_median_ms(out), Some(21.469));
        assert_eq!(parse_predicted_us(out), Some(1602.5));
        assert_eq!(parse_sim_median_ms("Host wall time per inference (median): 3 ms"), None);
    }
}
