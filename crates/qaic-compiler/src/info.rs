//! Informational commands: `-version`, `-version-extended`, `-operators-supported`.

use std::path::{Path, PathBuf};

use crate::exec_options::{Framework, Tool};
use crate::fsutil::{write_atomic, FileError};

/// The qaic-rs version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source commit this build came from, or `unknown` (embedded by build.rs).
pub const GIT_SHA: &str = env!("QAIC_GIT_SHA");

/// The `-version` / `-version-extended` text (one or two lines, no trailing newline).
///
/// ```
/// use qaic_compiler::{info::version_text, Tool};
/// assert!(version_text(Tool::Exec, false).starts_with("qaic-exec (qaic-rs) version "));
/// assert!(version_text(Tool::Compile, true).contains("commit "));
/// ```
pub fn version_text(tool: Tool, extended: bool) -> String {
    let mut s = format!("{} (qaic-rs) version {VERSION}", tool.name());
    if extended {
        s.push_str(&format!("\ncommit {GIT_SHA}"));
    }
    s
}

/// An operator a frontend + interpreter can run.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SupportedOp {
    /// ONNX domain; empty for the default `ai.onnx` domain.
    pub domain: String,
    pub op_type: String,
}

/// Errors of the informational commands.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("not supported yet: -operators-supported={0} (only onnx models can be loaded)")]
    Framework(&'static str),
    #[error(
        "not supported yet: -operators-supported: the interpreter's operator registry is empty"
    )]
    RegistryNotConnected,
    #[error("refusing to write an empty supported-operator list")]
    Empty,
    #[error(transparent)]
    File(#[from] FileError),
}

/// The ONNX operators qaic-rs can load and run: the interpreter's standard registry. Fails
/// rather than report an empty list.
pub fn supported_onnx_ops() -> Result<Vec<SupportedOp>, InfoError> {
    let ops: Vec<SupportedOp> = qaic_interp::Registry::standard()
        .supported()
        .into_iter()
        .map(|(domain, op, _since)| SupportedOp { domain: domain.to_string(), op_type: op.to_string() })
        .collect();
    if ops.is_empty() {
        return Err(InfoError::RegistryNotConnected);
    }
    Ok(ops)
}

/// The file content: one operator per line, sorted, `OpType` for the default domain and
/// `domain:OpType` otherwise (the vendor's format is undocumented).
pub fn supported_operators_text(ops: &[SupportedOp]) -> String {
    let mut lines: Vec<String> = ops
        .iter()
        .map(|o| if o.domain.is_empty() || o.domain == "ai.onnx" { o.op_type.clone() } else { format!("{}:{}", o.domain, o.op_type) })
        .collect();
    lines.sort();
    lines.dedup();
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// `-operators-supported=<framework>`: writes `<Framework>SupportedOperators.txt` into `dir`
/// (the current directory for the CLI) from `ops`, and returns its path.
pub fn write_supported_operators(fw: Framework, dir: &Path, ops: &[SupportedOp]) -> Result<PathBuf, InfoError> {
    if fw != Framework::Onnx {
        let name = match fw {
            Framework::Tensorflow => "tensorflow",
            Framework::Pytorch => "pytorch",
            Framework::Caffe => "caffe",
            Framework::Caffe2 => "caffe2",
            Framework::Onnx => "onnx",
        };
        return Err(InfoError::Framework(name));
    }
    if ops.is_empty() {
        return Err(InfoError::Empty);
    }
    let path = dir.join(fw.supported_operators_file());
    write_atomic(&path, supported_operators_text(ops).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_file() {
        let d = tempfile::tempdir().unwrap();
        let ops = vec![
            SupportedOp { domain: String::new(), op_type: "Relu".into() },
            SupportedOp { domain: "com.microsoft".into(), op_type: "Gelu".into() },
            SupportedOp { domain: "ai.onnx".into(), op_type: "Add".into() },
        ];
        let p = write_supported_operators(Framework::Onnx, d.path(), &ops).unwrap();
        assert!(p.ends_with("OnnxSupportedOperators.txt"));
        assert_eq!(std::fs::read_to_string(p).unwrap(), "Add\nRelu\ncom.microsoft:Gelu\n");
        assert!(matches!(write_supported_operators(Framework::Onnx, d.path(), &[]), Err(InfoError::Empty)));
        assert!(write_supported_operators(Framework::Caffe2, d.path(), &ops).is_err());
    }
}
