//! `-write-output-dir`: one raw little-endian file per output per inference.
//!
//! Names follow the vendor runner: `<name>-activation-<k>-inf-<N>.bin` where `<name>` is the
//! output name with every `/` replaced by `_`, `<k>` the activation (instance) index — always
//! 0 for qaic-exec — and `<N>` the 0-based inference number. Intermediate tensors requested
//! with `-output-node-name` use the same rule. The printed path is `<dir>/<file>` with the
//! directory exactly as the user gave it (the vendor prints `Writing file:./x-activation-0-inf-0.bin`
//! for `.`). Every file is written to a temporary name and renamed.

use std::path::Path;

use qaic_tensor::Tensor;

use crate::fsutil::{write_atomic, FileError};

/// Errors writing outputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("output `{name}`: {message}")]
    Tensor { name: String, message: String },
    #[error("output directory {dir}: {message}")]
    Dir { dir: String, message: String },
}

/// `/` → `_`, as the vendor does for buffer names in file names.
pub fn sanitize(name: &str) -> String {
    name.replace('/', "_")
}

/// `<dir>/<file>` as a string, with `dir` exactly as given.
pub fn join_dir(dir: &str, file: &str) -> String {
    format!("{dir}/{file}")
}

/// File name of output `name` for inference `inf` of activation `activation`.
///
/// ```
/// assert_eq!(qaic_compiler::outputs::output_file_name("logits", 0, 3), "logits-activation-0-inf-3.bin");
/// assert_eq!(qaic_compiler::outputs::output_file_name("/model/out:0", 0, 0), "_model_out:0-activation-0-inf-0.bin");
/// ```
pub fn output_file_name(name: &str, activation: u32, inf: u64) -> String {
    format!("{}-activation-{activation}-inf-{inf}.bin", sanitize(name))
}

/// Writes the raw bytes of each `(name, tensor)` into `dir` for inference `inf`, in the given
/// order (model outputs first, then intermediates), and returns the printed paths. Creates
/// `dir` if it is missing. Fails before writing anything if a tensor has no raw bytes
/// (string tensors), so no partial set of files is left for an inference.
pub fn write_outputs(dir: &str, inf: u64, outputs: &[(&str, &Tensor)]) -> Result<Vec<String>, OutputError> {
    let mut payloads = Vec::with_capacity(outputs.len());
    for (name, t) in outputs {
        let bytes = t
            .raw_bytes()
            .map_err(|e| OutputError::Tensor { name: (*name).to_string(), message: e.to_string() })?;
        payloads.push((join_dir(dir, &output_file_name(name, 0, inf)), bytes));
    }
    let d = Path::new(dir);
    if !d.is_dir() {
        std::fs::create_dir_all(d).map_err(|e| OutputError::Dir { dir: dir.to_string(), message: e.to_string() })?;
    }
    let mut written = Vec::new();
    for (path, bytes) in payloads {
        write_atomic(Path::new(&path), bytes)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bytes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("out").display().to_string();
        let a = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]).unwrap();
        let b = Tensor::from_vec(vec![1], vec![7i64]).unwrap();
        let w = write_outputs(&dir, 4, &[("logits", &a), ("gpu_0/res2_0", &b)]).unwrap();
        assert_eq!(w, vec![format!("{dir}/logits-activation-0-inf-4.bin"), format!("{dir}/gpu_0_res2_0-activation-0-inf-4.bin")]);
        let raw = std::fs::read(&w[0]).unwrap();
        assert_eq!(raw, [1.0f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
        assert_eq!(std::fs::read(&w[1]).unwrap(), 7i64.to_le_bytes());
    }

    #[test]
    fn string_outputs_fail_before_writing() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let a = Tensor::from_vec(vec![1], vec![1u8]).unwrap();
        let s = Tensor::from_strings(vec![1], vec![b"x".to_vec()]).unwrap();
        let e = write_outputs(&dir, 0, &[("a", &a), ("s", &s)]).unwrap_err();
        assert!(e.to_string().starts_with("output `s`"));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
