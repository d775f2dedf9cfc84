//! `cargo xtask test`: the project's full test run (what CI runs). Set-up and data first, then
//! `cargo test --workspace --release --no-fail-fast` with the data folders exported to the tests.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::{cmd, conformance, setup, zoo};

/// Test counts summed over every `test result:` line of libtest.
#[derive(Default, Debug, PartialEq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    /// Adds a libtest summary line: `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; ...`.
    pub fn add_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return false;
        };
        let mut seen = false;
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            // "ok. 3 passed" or "FAILED. 3 passed" (first part), "1 failed", "0 ignored" ...
            let (n, what) = match words.as_slice() {
                [_, n, what] | [n, what] => (n, *what),
                _ => continue,
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => continue,
            }
            seen = true;
        }
        seen
    }

    /// The plain closing line: `N passed, N failed, N skipped` (ignored tests count as skipped).
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.ignored
        )
    }
}

/// The environment the tests read their data locations from.
pub fn test_env(p: &Paths) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        ("QAIC_SHARED", p.shared()?.display().to_string()),
        ("QAIC_ONNX_NODE_TESTS", p.node_tests().display().to_string()),
        ("QAIC_ZOO_BUILT", p.zoo_built().display().to_string()),
    ])
}

pub fn run(p: &Paths) -> Result<()> {
    let t0 = Instant::now();
    setup::run()?;
    conformance::run(p)?;
    zoo::run(p)?;
    let env = test_env(p)?;
    println!(
        "test: setup + data ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    for (k, v) in &env {
        println!("test: {k}={v}");
    }

    let t1 = Instant::now();
    let mut c = cmd::cargo();
    // --no-fail-fast: one failing crate must not hide the results (and the count) of the others.
    c.args(["test", "--workspace", "--release", "--no-fail-fast"])
        .current_dir(&p.repo)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let (mut child, lines) = cmd::spawn_lines(&mut c)?;
    let mut counts = Counts::default();
    for line in lines {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        counts.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    let summary = counts.summary();
    write_summary(&p.data, &summary)?;
    println!(
        "test: cargo test took {:.1} s; total {:.1} s",
        t1.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    println!("tests: {summary}");
    if !status.success() {
        bail!("cargo test failed ({status}): {summary}");
    }
    Ok(())
}

/// `target/xtask-test-summary.txt`, read by .ci/run for its closing line.
fn write_summary(data: &Path, summary: &str) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    cmd::write_atomic(
        &data.join("xtask-test-summary.txt"),
        format!("{summary}\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_lines() {
        let mut c = Counts::default();
        assert!(c.add_line("test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"));
        assert!(c.add_line("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s"));
        assert!(!c.add_line("running 4 tests"));
        assert!(!c.add_line("test foo ... ok"));
        assert_eq!(
            c,
            Counts {
                passed: 5,
                failed: 1,
                ignored: 1
            }
        );
        assert_eq!(c.summary(), "5 passed, 1 failed, 1 skipped");
    }
}
