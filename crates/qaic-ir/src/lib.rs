//! # qaic-ir
//!
//! The intermediate representation of qaic-rs: a [`Graph`] of typed values ([`ValueData`],
//! [`ValueType`] with symbolic shapes) and ops ([`Node`]); a verifier ([`Graph::verify`]);
//! topological sorting and pruning; shape inference; and a text form that prints and parses
//! back (used by golden tests).
//!
//! Ops are identified by ONNX domain and op type, versioned by the graph's opset imports: the
//! IR's op set *is* ONNX's, like tract's inference-level model. Loaders translate formats into it
//! faithfully; later passes (precision, partitioning, codegen) work on it and lower it.
//!
//! Depends only on `qaic-tensor`. Must never depend on a loader, the interpreter or a device.

mod compare;
mod graph;
mod infer;
mod parse;
mod passes;
mod text;
mod verify;

pub use graph::{Attr, Graph, Node, NodeId, ValueData, ValueId, ValueType};
pub use infer::{bind_symbols, infer_shapes, Bindings, InferReport};
pub use parse::{parse, ParseError};
pub use passes::GraphStats;
pub use text::PrintOptions;

/// Errors of IR construction and checking.
#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error("graph `{graph}`: {msg}")]
    Invalid { graph: String, msg: String },
    #[error("graph has a cycle through node `{node}`")]
    Cycle { node: String },
    /// Shape inference found inputs no output shape fits, or a declared type that contradicts
    /// the inferred one.
    #[error("node `{node}` ({op}): {msg}")]
    Infer { node: String, op: String, msg: String },
    /// A symbol binding that is not `name,value`.
    #[error("bad symbol binding `{spec}`: expected `name,value` with a non-negative integer value")]
    BadBinding { spec: String },
    /// A rename or other edit that would break an invariant.
    #[error("{0}")]
    Edit(String),
}
