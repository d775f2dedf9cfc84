//! # qaic-quant
//!
//! Precision for qaic-rs, on the IR and the reference interpreter: profile-guided quantization
//! as Glow (qaic-exec's ancestor) does it, plus fp16 and mixed precision.
//!
//! - [`base`]: the formulas (Glow `Quantization/Base`): ranges, quantize/dequantize,
//!   `chooseQuantizationParams`, bias specialization, rowwise, fp16 conversion, histograms.
//! - [`calibration`]: None, KLMinimization (Glow), and the proposed KLMinimizationV2,
//!   Percentile, MSE and SQNR.
//! - [`Profile`]: the profile file (Glow's three-document YAML, keyed by ONNX tensor name, plus
//!   a backward-compatible fourth document with our fingerprint and options).
//! - [`profile_graph`]: profiling on the interpreter in two streaming passes (min/max, then
//!   histograms over the final range): the profile is byte-identical for any input order and
//!   thread count.
//! - [`apply_precision`]: the graph pass that quantizes (QuantizeLinear/DequantizeLinear pairs
//!   with Glow's rounding, integer weights and bias), keeps nodes in float or moves them to
//!   fp16, and reports what it did and why.
//! - [`quantization_report`]: per-tensor SQNR between the float and the quantized run.
//!
//! Depends on `qaic-tensor`, `qaic-ir` and `qaic-interp`. Must never depend on a loader, the
//! compiler driver or a device model, and never reads option strings: the CLI fills
//! [`QuantConfig`] / [`ProfileConfig`].

pub mod base;
pub mod calibration;
mod config;
mod files;
mod integer;
mod ops;
mod prepare;
mod profile;
mod profiler;
mod report;
mod transform;
#[cfg(test)]
mod tests;

pub use config::{
    BiasPrecision, Calibration, Precision, ProfileConfig, QuantConfig, Schema, DEFAULT_HISTOGRAM_BINS,
    DEFAULT_PERCENTILE,
};
pub use files::{ExternalEntry, ExternalQuantization, NodePrecision};
pub use integer::{lower_integer, QCONV_OP, QMATMUL_OP};
pub use ops::{registry, DOMAIN};
pub use prepare::{prepare_graph, Prepared};
pub use profile::{format_exact_f32, graph_fingerprint, Profile, ProfileInfo, TensorProfile};
pub use profiler::{float_values, profile_graph, InputLoader, Progress};
pub use report::{quantization_report, QuantReport, ReportRow};
pub use transform::{apply_precision, is_quantizable, NodeDecision, NodePrecisionKind, PrecisionResult};

/// Errors of profiling and quantization.
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    /// A bad option value or combination.
    #[error("{0}")]
    Config(String),
    /// A user file that cannot be read or parsed.
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// The profile does not fit the graph.
    #[error("{0}")]
    Profile(String),
    /// The interpreter failed on an input.
    #[error("{0}")]
    Run(String),
    /// The graph cannot be transformed.
    #[error("{0}")]
    Graph(String),
}

/// Writes `bytes` to a temporary file next to `path`, then renames it over `path`, so a failed
/// write never leaves a partial file.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), QuantError> {
    use std::io::Write;
    let err = |e: std::io::Error| QuantError::File { path: path.display().to_string(), msg: e.to_string() };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
