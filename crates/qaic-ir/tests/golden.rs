//! Golden tests in the style of Cranelift's filetests: each `tests/golden/*.ir` file holds
//! directives, an input graph in the text form and, after a `# expected:` line, the expected
//! output of the passes it names.
//!
//! Directives (comment lines before the graph):
//! - `# test: <pass>[, <pass>...]` — passes run in order: `roundtrip`, `verify`, `parse-error`,
//!   `infer-shapes`, `eliminate-identities`, `prune`, `remove-unused-values`, `uniquify`,
//!   `stats`, `listing`;
//! - `# bind: name=value[, name=value...]` — symbol bindings for `infer-shapes`.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected sections from the actual output (then
//! review the diff).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use qaic_ir::{infer_shapes, parse, Bindings, Graph, PrintOptions};

const MARKER: &str = "# expected:\n";

struct Case {
    passes: Vec<String>,
    bindings: Bindings,
    input: String,
}

fn read_case(path: &Path, text: &str) -> (Case, Option<String>) {
    let (input, expected) = match text.find(MARKER) {
        Some(i) => (&text[..i], Some(text[i + MARKER.len()..].to_string())),
        None => (text, None),
    };
    let mut passes = Vec::new();
    let mut bindings = Bindings::new();
    for line in input.lines() {
        if let Some(p) = line.strip_prefix("# test:") {
            passes.extend(p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        if let Some(b) = line.strip_prefix("# bind:") {
            for spec in b.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let spec = spec.replacen('=', ",", 1);
                if let Err(e) = bindings.parse_define_symbol(&spec) {
                    panic!("{}: {e}", path.display());
                }
            }
        }
    }
    assert!(!passes.is_empty(), "{}: no `# test:` directive", path.display());
    (Case { passes, bindings, input: input.to_string() }, expected)
}

/// Runs the passes and renders what they produced.
fn run(case: &Case) -> String {
    let mut g: Graph = match parse(&case.input) {
        Ok(g) => g,
        Err(e) => return format!("parse error: {e}\n"),
    };
    let mut out = String::new();
    for pass in &case.passes {
        let r: Result<(), String> = match pass.as_str() {
            "parse-error" => return "parsed without error\n".into(),
            "roundtrip" => {
                let text = g.to_text();
                match parse(&text) {
                    Ok(p) => match g.structural_diff(&p) {
                        None if p.to_text() == text => Ok(()),
                        None => Err("second print differs".into()),
                        Some(d) => Err(format!("reparsed graph differs: {d}")),
                    },
                    Err(e) => Err(format!("printed text does not parse: {e}")),
                }
            }
            "verify" => g.verify().map_err(|e| e.to_string()),
            "infer-shapes" => match infer_shapes(&mut g, &case.bindings) {
                Ok(rep) => {
                    let _ = writeln!(
                        out,
                        "# typed {}; untyped {:?}; no rule for {:?}; declared shape overridden {:?}",
                        rep.typed, rep.untyped, rep.unsupported_ops, rep.overridden
                    );
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
            "eliminate-identities" => g.eliminate_identities().map(|n| {
                let _ = writeln!(out, "# removed {n}");
            }).map_err(|e| e.to_string()),
            "prune" => {
                g.prune(&[]);
                g.remove_unused_values();
                g.verify().map_err(|e| e.to_string())
            }
            "remove-unused-values" => {
                let n = g.remove_unused_values();
                let _ = writeln!(out, "# removed {n}");
                g.verify().map_err(|e| e.to_string())
            }
            "uniquify" => g.uniquify_names().map(|n| {
                let _ = writeln!(out, "# renamed {n}");
            }).map_err(|e| e.to_string()),
            "stats" => return out + &g.stats().to_string(),
            "listing" => return out + &g.to_text_with(&PrintOptions::listing()),
            other => panic!("unknown pass `{other}`"),
        };
        if let Err(e) = r {
            return format!("{out}error in {pass}: {e}\n");
        }
    }
    out + &g.to_text()
}

#[test]
fn golden_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "expected the golden files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable golden file");
        let (case, expected) = read_case(path, &text);
        let actual = run(&case);
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if update {
            let new = format!("{}{MARKER}{actual}", case.input);
            let tmp = path.with_extension("ir.tmp");
            std::fs::write(&tmp, new).expect("write golden");
            std::fs::rename(&tmp, path).expect("rename golden");
            eprintln!("updated {}", path.display());
        } else {
            failures.push(format!(
                "--- {}\n--- expected:\n{}\n--- actual:\n{actual}",
                path.display(),
                expected.as_deref().unwrap_or("(no `# expected:` section)")
            ));
        }
    }
    assert!(failures.is_empty(), "{} golden file(s) differ (UPDATE_GOLDEN=1 rewrites them):\n{}", failures.len(), failures.join("\n"));
}
