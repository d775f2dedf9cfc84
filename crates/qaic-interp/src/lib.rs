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
