//! # qaic-interp
//!
//! The reference interpreter of qaic-rs: it turns a [`qaic_ir::Graph`] into a [`Plan`] of
//! prepared kernels (one per node, built once, with constant inputs pre-processed) and runs it
//! on [`qaic_tensor::Value`]s. Ops are registered in a [`Registry`] by ONNX domain, op type and
//! opset; unsupported nodes are all reported at plan time. An observer hook sees every value a
//! run produces (intermediate outputs, quantization profiling).
//!
//! Depends on `qaic-tensor`, `qaic-kernels` and `qaic-ir`. Must never depend on a loader, a
//! device model or the simulator.

mod error;
pub mod ops;
mod optimize;
mod plan;
mod registry;

pub use error::{InterpError, OpError, Unsupported};
pub use plan::{Observer, Plan, PlanOptions};
pub use registry::{BuildCtx, Builder, Kernel, NoScope, OpDef, Registry, RunCtx, Scope};

/// Applies the interpreter's rewrites that leave plain ONNX ops — a `Mul`/`Add` of a scalar or
/// per-channel constant after a `Conv` folded into its weights and bias, written-out
/// HardSwish (`x * Clip(x + 3, 0, 6) / 6`) recognised as `HardSwish` — so that another
/// executor of the graph computes what the interpreter computes. Graph outputs are kept.
///
/// ```
/// let mut g = qaic_ir::Graph::new("empty");
/// qaic_interp::simplify_graph(&mut g);
/// assert!(g.nodes.is_empty());
/// ```
pub fn simplify_graph(graph: &mut qaic_ir::Graph) {
    optimize::simplify(graph, &PlanOptions::default());
}
