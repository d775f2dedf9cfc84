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
pub enum Outcome {
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

/// Runs one case; also returns the op types its model uses (for the per-op report).
pub fn run_case(case: &Path) -> (Vec<String>, Outcome) {
    let mut ops = Vec::new();
    let outcome = run_case_inner(case, &mut ops);
    (ops, outcome)
}

fn run_case_inner(case: &Path, ops: &mut Vec<String>) -> Outcome {
    let model_path = case.join("model.onnx");
    let graph = match qaic_onnx::load(&model_path, &qaic_onnx::LoadOptions::default()) {
        Ok(g) => g,
        Err(e) => return Outcome::Unsupported(format!("load: {e}")),
    };
    for n in &graph.nodes {
        let op = n.qualified_op();
        if !ops.contains(&op) {
            ops.push(op);
        }
    }
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
        for (i, p) in common::numbered(&set, "input_").iter().enumerate() {
            match common::read_pb(p, input_types.get(i).cloned().flatten().as_ref()) {
                Ok(v) => inputs.push(v),
                Err(e) => return Outcome::Error(format!("reading {}: {e}", p.display())),
            }
        }
        let outputs = match plan.run(inputs) {
            Ok(o) => o,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let expected = common::numbered(&set, "output_");
        if expected.len() != outputs.len() {
            return Outcome::Mismatch(format!("{} outputs, expected {}", outputs.len(), expected.len()));
        }
        for (i, (got, p)) in outputs.iter().zip(&expected).enumerate() {
            let want: Value = match common::read_pb(p, output_types.get(i).cloned().flatten().as_ref()) {
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

#[test]
fn onnx_node_tests() {
    let Some(root) = common::data_dir("QAIC_ONNX_NODE_TESTS", common::repo_root().join("target/onnx-node-tests")) else {
        return;
    };
    let all = common::node_cases(&root);
    assert!(!all.is_empty(), "no cases under {}", root.display());
    let filter = std::env::var("QAIC_CONFORMANCE_FILTER").ok();
    let todo: Vec<PathBuf> = all
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.file_name().is_some_and(|n| n.to_string_lossy().contains(f))))
        .collect();
    let results: Mutex<Vec<(String, Vec<String>, Outcome, Duration)>> = Mutex::new(Vec::new());
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
                let (ops, outcome) = std::panic::catch_unwind(|| run_case(case)).unwrap_or_else(|p| {
                    let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    (Vec::new(), Outcome::Error(format!("PANIC: {}", msg.unwrap_or_default())))
                });
                results.lock().unwrap().push((name, ops, outcome, t.elapsed()));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let out_dir = common::repo_root().join("target/conformance");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut tsv = String::from("case\tstatus\treason\tms\n");
    for (name, _, o, d) in &results {
        let reason = o.reason().replace(['\t', '\n'], " ");
        tsv.push_str(&format!("{name}\t{}\t{reason}\t{}\n", o.status(), d.as_millis()));
    }
    if filter.is_none() {
        std::fs::write(out_dir.join("results.tsv"), tsv).unwrap();
    }

    let passed: BTreeSet<String> =
        results.iter().filter(|(_, _, o, _)| matches!(o, Outcome::Pass)).map(|(n, _, _, _)| n.clone()).collect();
    let panics: Vec<&String> =
        results.iter().filter(|(_, _, o, _)| o.reason().starts_with("PANIC")).map(|(n, _, _, _)| n).collect();
    eprintln!("conformance: {} of {} cases pass", passed.len(), results.len());
    if std::env::var("QAIC_UPDATE_PASS_LIST").is_ok_and(|v| v == "1") && filter.is_none() {
        let mut text = String::from("# ONNX node test cases that pass (onnx==1.22.0). Regenerate: QAIC_UPDATE_PASS_LIST=1 cargo test --release -p qaic-cli --test conformance\n");
        for p in &passed {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(common::pass_list_path(), text).unwrap();
        std::fs::write(common::repo_root().join("docs/conformance.md"), report(&results)).unwrap();
    }
    let listed = common::read_pass_list();
    let regressions: Vec<String> = results
        .iter()
        .filter(|(n, _, o, _)| listed.contains(n) && !matches!(o, Outcome::Pass))
        .map(|(n, _, o, _)| format!("{n}: {} {}", o.status(), o.reason()))
        .collect();
    assert!(panics.is_empty(), "cases panicked (must be errors instead): {panics:?}");
    assert!(regressions.is_empty(), "{} listed case(s) no longer pass:\n{}", regressions.len(), regressions.join("\n"));
}

/// Groups a failure reason: numbers and quoted names removed, first clause kept.
fn reason_group(reason: &str) -> String {
    if reason.contains("unsupported operator(s):") {
        // Group by the unsupported op types themselves.
        let mut ops: Vec<&str> = reason.lines().skip(1).filter_map(|l| l.split_whitespace().next()).collect();
        ops.sort();
        ops.dedup();
        return format!("unsupported operator {}", ops.join(", "));
    }
    let first = reason.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut in_tick = false;
    for ch in first.chars() {
        match ch {
            '`' => {
                in_tick = !in_tick;
                if in_tick {
                    out.push_str("`…`");
                }
            }
            _ if in_tick => {}
            c if c.is_ascii_digit() => {
                if !out.ends_with('N') {
                    out.push('N');
                }
            }
            c => out.push(c),
        }
    }
    out.chars().take(140).collect()
}

/// docs/conformance.md: totals, per-op counts and failures grouped by reason.
fn report(results: &[(String, Vec<String>, Outcome, Duration)]) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;
    let total = results.len();
    let passed = results.iter().filter(|r| matches!(r.2, Outcome::Pass)).count();
    let mut s = String::new();
    let _ = writeln!(s, "# ONNX conformance\n");
    let _ = writeln!(s, "The ONNX backend node tests of `onnx==1.22.0` (`onnx/backend/test/data/node`, fetched by");
    let _ = writeln!(s, "`cargo xtask conformance-data`) through `qaic-onnx` and the reference interpreter, compared with");
    let _ = writeln!(s, "rtol 1e-3 / atol 1e-5 (exact for integers, booleans and strings). Generated by");
    let _ = writeln!(s, "`QAIC_UPDATE_PASS_LIST=1 cargo test --release -p qaic-cli --test conformance`, which also rewrites");
    let _ = writeln!(s, "`tests/conformance/pass-list.txt`; the test fails when a listed case stops passing, and");
    let _ = writeln!(s, "`tests/conformance_cli.rs` runs every listed case again through `qaic-exec` with raw input files.\n");
    let _ = writeln!(s, "**{passed} of {total} cases pass.**\n");
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        *by_status.entry(r.2.status()).or_default() += 1;
    }
    let _ = writeln!(s, "| status | cases |\n|---|---|");
    for (k, v) in &by_status {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in results.iter().filter(|r| !matches!(r.2, Outcome::Pass)) {
        groups.entry(format!("{}: {}", r.2.status(), reason_group(r.2.reason()))).or_default().push(&r.0);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let _ = writeln!(s, "\n## Failures by reason\n\n| cases | reason | examples |\n|---|---|---|");
    for (g, cases) in &groups {
        let ex: Vec<&str> = cases.iter().take(3).copied().collect();
        let _ = writeln!(s, "| {} | {} | {} |", cases.len(), g.replace('|', "\\|"), ex.join(", "));
    }
    let mut per_op: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in results {
        for op in &r.1 {
            let e = per_op.entry(op.as_str()).or_default();
            e.1 += 1;
            if matches!(r.2, Outcome::Pass) {
                e.0 += 1;
            }
        }
    }
    let _ = writeln!(s, "\n## Passes per op\n\nA case counts for every op its model uses (expanded function tests use several).\n\n| op | pass | cases |\n|---|---|---|");
    for (op, (p, n)) in &per_op {
        let _ = writeln!(s, "| {op} | {p} | {n} |");
    }
    let unloaded = results.iter().filter(|r| r.1.is_empty()).count();
    let _ = writeln!(s, "\n{unloaded} case(s) could not be loaded and count for no op.");
    s
}
