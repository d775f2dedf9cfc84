use qaic_tensor::TensorError;

/// Errors of planning and running a graph.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// Every unsupported node of the graph, not just the first.
    #[error("{} unsupported operator(s):\n{}", .0.len(), .0.iter().map(|u| format!("  {u}")).collect::<Vec<_>>().join("\n"))]
    Unsupported(Vec<Unsupported>),
    #[error("node `{node}` ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    #[error("input `{name}`: {msg}")]
    Input { name: String, msg: String },
    #[error("{0}")]
    Graph(#[from] qaic_ir::IrError),
    #[error("{0}")]
    Other(String),
}

/// One node the interpreter cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub op_type: String,
    pub domain: String,
    pub opset: i64,
    pub node: String,
    /// Why (unknown op, opset out of range, unsupported attribute or type, ...).
    pub reason: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = if self.domain.is_empty() { "ai.onnx" } else { &self.domain };
        write!(f, "{} (domain {domain}, opset {}) in node `{}`: {}", self.op_type, self.opset, self.node, self.reason)
    }
}

/// Error inside an op kernel, before the node's name is attached.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Msg(String),
    #[error("{0}")]
    Tensor(#[from] TensorError),
    /// The op cannot run this configuration (reported as unsupported at plan time).
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl From<String> for OpError {
    fn from(s: String) -> Self {
        OpError::Msg(s)
    }
}
impl From<&str> for OpError {
    fn from(s: &str) -> Self {
        OpError::Msg(s.to_string())
    }
}

/// `return Err(op_err!("..."))` shorthand.
#[macro_export]
macro_rules! op_err {
    ($($t:tt)*) => { $crate::OpError::Msg(format!($($t)*)) };
}
