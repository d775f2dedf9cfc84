//! Errors of the ONNX front end. Every message names the file and, where there is one, the
//! tensor, node or field at fault.

use std::fmt;
use std::path::PathBuf;

/// An error loading or translating an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be opened, mapped or read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds no bytes.
    #[error("{}: file is empty (expected an ONNX {what})", path.display())]
    Empty { path: PathBuf, what: &'static str },
    /// Binary protobuf decoding failed (truncated or corrupt file, or not an ONNX file).
    #[error("{origin}: not a valid ONNX {what} (truncated or corrupt protobuf?): {source}")]
    Decode {
        origin: String,
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// Protobuf text format (`.onnxtxt`) parsing failed.
    #[error("{origin}: protobuf text format error: {msg}")]
    Text { origin: String, msg: String },
    /// The model is well-formed protobuf but not a valid model (missing graph, bad reference...).
    #[error("{origin}: {msg}")]
    Invalid { origin: String, msg: String },
    /// A tensor (initializer, attribute, `Constant` value, `.pb` file) is malformed.
    #[error("{origin}: tensor `{tensor}`: {msg}")]
    Tensor { origin: String, tensor: String, msg: String },
    /// A tensor's external data is missing, escapes the model folder or is too short.
    #[error("{origin}: tensor `{tensor}`: external data: {msg}")]
    ExternalData { origin: String, tensor: String, msg: String },
    /// A feature of the format that qaic-onnx does not implement.
    #[error("{origin}: not supported yet: {msg}")]
    NotSupported { origin: String, msg: String },
    /// `-onnx-define-symbol` / `-batchsize` problems, or dims left unbound.
    #[error("{origin}: {msg}")]
    Symbols { origin: String, msg: String },
    /// Operators that the consumer (the interpreter) does not support; lists all of them.
    #[error("{0}")]
    Unsupported(UnsupportedOps),
    /// A bug in qaic-onnx itself (for example, its embedded protobuf descriptor is unusable).
    #[error("internal error in qaic-onnx: {0}")]
    Internal(String),
}

impl OnnxError {
    pub(crate) fn invalid(origin: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::Invalid { origin: origin.to_string(), msg: msg.into() }
    }
    pub(crate) fn tensor(origin: &str, tensor: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::Tensor { origin: origin.to_string(), tensor: tensor.to_string(), msg: msg.into() }
    }
    pub(crate) fn external(origin: &str, tensor: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::ExternalData { origin: origin.to_string(), tensor: tensor.to_string(), msg: msg.into() }
    }
    pub(crate) fn not_supported(origin: &str, msg: impl Into<String>) -> OnnxError {
        OnnxError::NotSupported { origin: origin.to_string(), msg: msg.into() }
    }
}

/// One node whose operator is not supported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    /// Operator domain as written in the model (`""` is the default ONNX domain).
    pub domain: String,
    pub op_type: String,
    /// The opset version in force for the domain, if the model imports it.
    pub opset: Option<i64>,
    /// Node name (`<op> -> <first output>` when the node is unnamed).
    pub node: String,
    /// Path of enclosing nodes for nodes in subgraphs (`loop1/body`), empty at top level.
    pub scope: String,
}

/// Every unsupported node of a model, not only the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedOps {
    /// The model file (or another label) the nodes come from.
    pub origin: String,
    pub nodes: Vec<UnsupportedNode>,
}

impl fmt::Display for UnsupportedOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} node(s) use unsupported operators:", self.origin, self.nodes.len())?;
        for n in &self.nodes {
            let domain = if n.domain.is_empty() { "ai.onnx" } else { n.domain.as_str() };
            let opset = match n.opset {
                Some(v) => v.to_string(),
                None => "not imported".to_string(),
            };
            write!(f, "\n  {} (domain {domain}, opset {opset}) in node \"{}\"", n.op_type, n.node)?;
            if !n.scope.is_empty() {
                write!(f, " inside {}", n.scope)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for UnsupportedOps {}
