//! Shared helpers of the end-to-end tests: locating data, comparing tensors.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qaic_tensor::{DType, Tensor, Value};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// A data folder named by `var`. When the variable is set the folder must exist (CI sets it);
/// when unset, `fallback` is used if present, else `None` (a developer's plain `cargo test`).
pub fn data_dir(var: &str, fallback: PathBuf) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.is_dir(), "{var}={} is not a folder: run `cargo xtask test` to prepare the data", p.display());
            Some(p)
        }
        None if fallback.is_dir() => Some(fallback),
        None => {
            eprintln!("{var} is not set and {} does not exist: skipping (run `cargo xtask test`)", fallback.display());
            None
        }
    }
}

/// The shared folder (`QAIC_SHARED`, else `<repo>/../shared`).
pub fn shared_dir() -> Option<PathBuf> {
    data_dir("QAIC_SHARED", repo_root().join("../shared"))
}

/// Compares `got` with `want`: shapes and types equal; floats within `atol + rtol*|want|`
/// (NaN matches NaN, infinities must match exactly); everything else exact.
pub fn compare_tensor(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("type {} (expected {})", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!("shape {:?} (expected {:?})", got.shape(), want.shape()));
    }
    let floats = |t: &Tensor| -> Option<Vec<f64>> {
        Some(match t.dtype() {
            DType::F32 => t.view::<f32>().ok()?.iter().map(|&v| v as f64).collect(),
            DType::F64 => t.view::<f64>().ok()?.to_vec(),
            DType::F16 => t.view::<half::f16>().ok()?.iter().map(|v| v.to_f64()).collect(),
            DType::BF16 => t.view::<half::bf16>().ok()?.iter().map(|v| v.to_f64()).collect(),
            _ => return None,
        })
    };
    if let (Some(g), Some(w)) = (floats(got), floats(want)) {
        let mut worst: Option<(usize, f64, f64)> = None;
        let mut bad = 0usize;
        for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
            let ok = if a.is_nan() || b.is_nan() {
                a.is_nan() && b.is_nan()
            } else if a.is_infinite() || b.is_infinite() {
                a == b
            } else {
                (a - b).abs() <= atol + rtol * b.abs()
            };
            if !ok {
                bad += 1;
                if worst.is_none_or(|(_, wa, wb)| (a - b).abs() > (wa - wb).abs() || wa.is_nan()) {
                    worst = Some((i, a, b));
                }
            }
        }
        return match worst {
            None => Ok(()),
            Some((i, a, b)) => Err(format!("{bad} of {} values differ; worst at {i}: {a} vs {b}", g.len())),
        };
    }
    if got.dtype() == DType::String {
        return if got.strings().ok() == want.strings().ok() { Ok(()) } else { Err("strings differ".into()) };
    }
    if got.raw_bytes().ok() == want.raw_bytes().ok() {
        Ok(())
    } else {
        let (g, w) = (got.raw_bytes().unwrap_or(&[]), want.raw_bytes().unwrap_or(&[]));
        let first = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
        Err(format!("values differ (first differing byte {first})"))
    }
}

/// Compares run-time values (tensors, sequences, optionals).
pub fn compare_value(got: &Value, want: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    match (got, want) {
        (Value::Tensor(g), Value::Tensor(w)) => compare_tensor(g, w, rtol, atol),
        (Value::Sequence { items: g, .. }, Value::Sequence { items: w, .. }) => {
            if g.len() != w.len() {
                return Err(format!("sequence of {} (expected {})", g.len(), w.len()));
            }
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                compare_tensor(a, b, rtol, atol).map_err(|e| format!("item {i}: {e}"))?;
            }
            Ok(())
        }
        (Value::Optional(g), Value::Optional(w)) => match (g, w) {
            (None, None) => Ok(()),
            (Some(a), Some(b)) => compare_value(a, b, rtol, atol),
            _ => Err(format!("optional presence differs (got {}, expected {})", g.is_some(), w.is_some())),
        },
        // An optional holding a value compares equal to the bare value (the test data stores either).
        (Value::Optional(Some(a)), b) => compare_value(a, b, rtol, atol),
        (a, Value::Optional(Some(b))) => compare_value(a, b, rtol, atol),
        _ => Err("kind of value differs (tensor / sequence / optional)".into()),
    }
}

/// `<prefix><N>.pb` files of a test-data folder, in N order.
pub fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
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

/// Reads a test-data `.pb` file as the kind of value the model declares for it.
pub fn read_pb(p: &Path, ty: Option<&qaic_ir::ValueType>) -> Result<Value, qaic_onnx::OnnxError> {
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

/// ONNX node test case folders (those with a model.onnx), sorted.
pub fn node_cases(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("node test folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    v.sort();
    v
}

/// The checked-in list of ONNX node test cases that pass.
pub fn pass_list_path() -> PathBuf {
    repo_root().join("tests/conformance/pass-list.txt")
}


/// Names in the pass list (comments and blank lines skipped).
pub fn read_pass_list() -> BTreeSet<String> {
    std::fs::read_to_string(pass_list_path())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Little-endian bytes of f32 values (a raw input file).
#[allow(dead_code)]
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The f32 values of a raw little-endian output file.
#[allow(dead_code)]
pub fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The stdout of a command that must succeed (else both streams in the panic message).
#[allow(dead_code)]
pub fn ok(o: &std::process::Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The stderr of a command that must fail.
#[allow(dead_code)]
pub fn err(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).into_owned()
}
