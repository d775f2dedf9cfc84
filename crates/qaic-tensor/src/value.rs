//! Runtime values of the interpreter: tensors, sequences of tensors, and optionals.

use crate::Tensor;

/// A value flowing through a graph at run time.
#[derive(Clone, Debug)]
pub enum Value {
    Tensor(Tensor),
    /// ONNX `seq(tensor)`. The element type is kept for empty sequences.
    Sequence { elem: crate::DType, items: Vec<Tensor> },
    /// ONNX `optional(T)`; `None` is an empty optional.
    Optional(Option<Box<Value>>),
}

impl Value {
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

impl From<Tensor> for Value {
    fn from(t: Tensor) -> Self {
        Value::Tensor(t)
    }
}
