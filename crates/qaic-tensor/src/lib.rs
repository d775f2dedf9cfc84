//! # qaic-tensor
//!
//! The bottom data layer of qaic-rs: element types ([`DType`], every ONNX tensor type),
//! declared shapes with symbolic dimensions ([`Shape`], [`Dim`]), dense [`Tensor`]s whose storage
//! is owned or a zero-copy slice of a memory-mapped file, and run-time [`Value`]s (tensors,
//! sequences, optionals).
//!
//! Depends on nothing of ours. Must never know about graphs, devices or file formats.
//!
//! ```
//! use qaic_tensor::{DType, Tensor};
//! let t = Tensor::zeros(DType::F16, vec![2, 3]).unwrap();
//! assert_eq!(t.raw_bytes().unwrap().len(), 12);
//! ```

mod dtype;
pub mod recycle;
mod shape;
mod tensor;
mod value;

pub use dtype::{DType, Element};
pub use half::{bf16, f16};
pub use shape::{broadcast, num_elements, strides, Dim, Shape};
pub use tensor::{Storage, Tensor};
pub use value::Value;

/// Errors of tensor construction and access.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorError {
    #[error("{dtype} tensor of shape {shape:?} needs {expected} elements, got {got}")]
    SizeMismatch { dtype: DType, shape: Vec<usize>, expected: usize, got: usize },
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes, got {got}")]
    ByteSizeMismatch { dtype: DType, shape: Vec<usize>, expected: usize, got: usize },
    #[error("element type mismatch: expected {expected}, tensor is {got}")]
    WrongDType { expected: DType, got: DType },
    #[error("tensor storage is not aligned for its element type")]
    Unaligned,
    #[error("string tensors have no raw byte storage")]
    NotRaw,
    #[error("shape element count overflows")]
    Overflow,
    #[error("unknown element type name `{0}`")]
    UnknownDType(String),
}
