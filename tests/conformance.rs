//! ONNX backend node tests (onnx==1.22.0, `onnx/backend/test/data/node`) through the loader and
//! the reference interpreter.
//!
//! Data: `QAIC_ONNX_NODE_TESTS` (set by `cargo xtask test`; fetched by `cargo xtask
//! conformance-data`), else `target/onnx-node-tests` if present, else skipped.
//! `tests/conformance/pass-list.txt` lists the cases that pass; the test fails if one of them
//! stops passing. `QAIC_UPDATE_PASS_LIST=1` rewrites the list from this run. Every run writes
//! `target/conformance/results.tsv` (case, status, reason) for `cargo xtask conformance-report`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qaic_tensor::Value;

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

/// Outcome of one case.
#[derive(Clone, Debug)]
enum Outcome {
    Pass,
    /// Loading or planning refused the model (unsupported op, bad data).
    Unsupported(String),
    /// Ran but produced an error.
    Error(String),
    /// Ran and produced wrong values.
    Mismatch(String),
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Unsupported(_) => "unsupported",
            Outcome::Error(_) => "error",
            Outcome::Mismatch(_) => "mismatch",
        }
    }
    fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Unsupported(s) | Outcome::Error(s) | Outcome::Mismatch(s) => s,
        }
    }
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_prefix(prefix)?.strip_suffix(".pb")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

pub fn run_case(case: &Path) -> Outcome {
    let model_path = case.join("model.onnx");
    let graph = match qaic_onnx::load(&model_path, &qaic_onnx::LoadOptions::default()) {
        Ok(g) => g,
        Err(e) => return Outcome::Unsupported(format!("load: {e}")),
    };
    let input_types: Vec<Option<qaic_ir::ValueType>> =
        graph.inputs.iter().map(|i| graph.value(*i).ty.clone()).collect();
    let output_types: Vec<Option<qaic_ir::ValueType>> =
        graph.outputs.iter().map(|i| graph.value(*i).ty.clone()).collect();
    let plan = match qaic_interp::Plan::new(graph) {
        Ok(p) => p,
        Err(e) => return Outcome::Unsupported(format!("plan: {e}")),
    };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(case)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    sets.sort();
    for set in sets {
        let mut inputs = Vec::new();
        for (i, p) in numbered(&set, "input_").iter().enumerate() {
            match read_pb(p, input_types.get(i).cloned().flatten().as_ref()) {
                Ok(v) => inputs.push(v),
                Err(e) => return Outcome::Error(format!("reading {}: {e}", p.display())),
            }
        }
        let outputs = match plan.run(inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let expected = numbered(&set, "output_");
        if expected.len() != outputs.len() {
            return Outcome::Mismatch(format!("{} outputs, expected {}", outputs.len(), expected.len()));
        }
        for (i, (got, p)) in outputs.iter().zip(&expected).enumerate() {
            let want: Value = match read_pb(p, output_types.get(i).cloned().flatten().as_ref()) {
                Ok(v) => v,
                Err(e) => return Outcome::Error(format!("reading {}: {e}", p.display())),
            };
            if let Err(e) = common::compare_value(got, &want, RTOL, ATOL) {
                return Outcome::Mismatch(format!("output {i}: {e}"));
            }
        }
    }
    Outcome::Pass
}

/// Reads a test-data `.pb` file as the kind of value the model declares for it.
fn read_pb(p: &Path, ty: Option<&qaic_ir::ValueType>) -> Result<Value, qaic_onnx::OnnxError> {
    use qaic_ir::ValueType;
    use qaic_onnx::PbKind;
    let (kind, elem) = match ty {
        Some(ValueType::Sequence(t)) => (PbKind::Sequence, t.tensor_dtype()),
        Some(ValueType::Optional(t)) => match t.as_ref() {
            ValueType::Sequence(e) => (PbKind::Optional, e.tensor_dtype()),
            t => (PbKind::Optional, t.tensor_dtype()),
        },
        _ => (PbKind::Tensor, None),
    };
    qaic_onnx::read_value_file(p, kind, elem)
}

fn cases(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("node test folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    v.sort();
    v
}

fn pass_list_path() -> PathBuf {
    common::repo_root().join("tests/conformance/pass-list.txt")
}

fn read_pass_list() -> BTreeSet<String> {
    std::fs::read_to_string(pass_list_path())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

#[test]
fn onnx_node_tests() {
    let Some(root) = common::data_dir("QAIC_ONNX_NODE_TESTS", common::repo_root().join("target/onnx-node-tests")) else {
        return;
    };
    let all = cases(&root);
    assert!(!all.is_empty(), "no cases under {}", root.display());
    let filter = std::env::var("QAIC_CONFORMANCE_FILTER").ok();
    let todo: Vec<PathBuf> = all
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.file_name().is_some_and(|n| n.to_string_lossy().contains(f))))
        .collect();
    let results: Mutex<Vec<(String, Outcome, Duration)>> = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = todo.get(i) else { break };
                let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let t = Instant::now();
                // A panic in one case must not hide the others: record it as an error.
                let outcome = std::panic::catch_unwind(|| run_case(case))
                    .unwrap_or_else(|p| {
                        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                        Outcome::Error(format!("PANIC: {}", msg.unwrap_or_default()))
                    });
                results.lock().unwrap().push((name, outcome, t.elapsed()));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let out_dir = common::repo_root().join("target/conformance");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut tsv = String::from("case\tstatus\treason\tms\n");
    for (name, o, d) in &results {
        let reason = o.reason().replace(['\t', '\n'], " ");
        tsv.push_str(&format!("{name}\t{}\t{reason}\t{}\n", o.status(), d.as_millis()));
    }
    if filter.is_none() {
        std::fs::write(out_dir.join("results.tsv"), tsv).unwrap();
    }

    let passed: BTreeSet<String> =
        results.iter().filter(|(_, o, _)| matches!(o, Outcome::Pass)).map(|(n, _, _)| n.clone()).collect();
    let panics: Vec<&String> =
        results.iter().filter(|(_, o, _)| o.reason().starts_with("PANIC")).map(|(n, _, _)| n).collect();
    eprintln!("conformance: {} of {} cases pass", passed.len(), results.len());
    if std::env::var("QAIC_UPDATE_PASS_LIST").is_ok_and(|v| v == "1") && filter.is_none() {
        let mut text = String::from("# ONNX node test cases that pass (onnx==1.22.0). Regenerate: QAIC_UPDATE_PASS_LIST=1 cargo test --release -p qaic-cli --test conformance\n");
        for p in &passed {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(pass_list_path(), text).unwrap();
    }
    let listed = read_pass_list();
    let regressions: Vec<String> = results
        .iter()
        .filter(|(n, o, _)| listed.contains(n) && !matches!(o, Outcome::Pass))
        .map(|(n, o, _)| format!("{n}: {} {}", o.status(), o.reason()))
        .collect();
    assert!(panics.is_empty(), "cases panicked (must be errors instead): {panics:?}");
    assert!(regressions.is_empty(), "{} listed case(s) no longer pass:\n{}", regressions.len(), regressions.join("\n"));
}
