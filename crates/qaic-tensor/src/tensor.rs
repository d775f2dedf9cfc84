//! Tensors: an element type, a concrete shape and storage that is either owned or a slice of a
//! larger buffer (typically the memory-mapped model file), never copied unless asked.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::dtype::{DType, Element};
use crate::shape::num_elements;
use crate::TensorError;

/// Backing storage of a tensor.
#[derive(Clone)]
pub enum Storage {
    /// Packed little-endian elements. May borrow a memory map (then possibly unaligned).
    Raw(Bytes),
    /// Strings (ONNX `STRING` tensors hold arbitrary bytes).
    Strings(Arc<[Vec<u8>]>),
}

/// A dense tensor with a concrete shape. Cloning is cheap (storage is shared).
#[derive(Clone)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    storage: Storage,
}

/// Owner that keeps a typed `Vec<T>` alive behind a `Bytes`, so owned storage is aligned for `T`.
struct VecOwner<T: Element>(Vec<T>);
impl<T: Element> Drop for VecOwner<T> {
    fn drop(&mut self) {
        crate::recycle::recycle(std::mem::take(&mut self.0));
    }
}
impl<T: Element> AsRef<[u8]> for VecOwner<T> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: Element types are plain data; any initialised T is valid as bytes.
        unsafe {
            std::slice::from_raw_parts(self.0.as_ptr() as *const u8, std::mem::size_of_val(self.0.as_slice()))
        }
    }
}

impl Tensor {
    /// A tensor owning `data` (moved, not copied).
    ///
    /// ```
    /// use qaic_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    /// assert_eq!(t.as_slice::<f32>().unwrap()[3], 4.0);
    /// ```
    pub fn from_vec<T: Element>(shape: Vec<usize>, data: Vec<T>) -> Result<Tensor, TensorError> {
        let n = num_elements(&shape).ok_or(TensorError::Overflow)?;
        if n != data.len() {
            return Err(TensorError::SizeMismatch { dtype: T::DTYPE, shape, expected: n, got: data.len() });
        }
        Ok(Tensor { dtype: T::DTYPE, shape, storage: Storage::Raw(Bytes::from_owner(VecOwner(data))) })
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor { dtype: T::DTYPE, shape: vec![], storage: Storage::Raw(Bytes::from_owner(VecOwner(vec![v]))) }
    }

    /// A tensor over packed little-endian bytes (e.g. a slice of a memory-mapped model file).
    /// The size must match the shape exactly; booleans are normalised to 0/1 (a copy only when
    /// a byte other than 0 or 1 is present).
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: Bytes) -> Result<Tensor, TensorError> {
        if dtype == DType::String {
            return Err(TensorError::NotRaw);
        }
        let n = num_elements(&shape).ok_or(TensorError::Overflow)?;
        let need = dtype.storage_bytes(n);
        if bytes.len() != need {
            return Err(TensorError::ByteSizeMismatch { dtype, shape, expected: need, got: bytes.len() });
        }
        let bytes = if dtype == DType::Bool && bytes.iter().any(|&b| b > 1) {
            Bytes::from(bytes.iter().map(|&b| (b != 0) as u8).collect::<Vec<u8>>())
        } else {
            bytes
        };
        Ok(Tensor { dtype, shape, storage: Storage::Raw(bytes) })
    }

    /// A string tensor.
    pub fn from_strings(shape: Vec<usize>, data: Vec<Vec<u8>>) -> Result<Tensor, TensorError> {
        let n = num_elements(&shape).ok_or(TensorError::Overflow)?;
        if n != data.len() {
            return Err(TensorError::SizeMismatch { dtype: DType::String, shape, expected: n, got: data.len() });
        }
        Ok(Tensor { dtype: DType::String, shape, storage: Storage::Strings(data.into()) })
    }

    /// A zero-filled tensor (empty strings for `String`).
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = num_elements(&shape).ok_or(TensorError::Overflow)?;
        if dtype == DType::String {
            return Tensor::from_strings(shape, vec![Vec::new(); n]);
        }
        let nbytes = dtype.storage_bytes(n);
        // u64 words keep the buffer 8-byte aligned for every element type.
        let words = vec![0u64; nbytes.div_ceil(8)];
        let b = Bytes::from_owner(VecOwner(words)).slice(0..nbytes);
        Ok(Tensor { dtype, shape, storage: Storage::Raw(b) })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Same data, another shape with the same number of elements (no copy).
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = num_elements(&shape).ok_or(TensorError::Overflow)?;
        if n != self.len() {
            return Err(TensorError::SizeMismatch { dtype: self.dtype, shape, expected: self.len(), got: n });
        }
        Ok(Tensor { dtype: self.dtype, shape, storage: self.storage.clone() })
    }

    /// The raw little-endian bytes (not for string tensors).
    pub fn raw_bytes(&self) -> Result<&[u8], TensorError> {
        match &self.storage {
            Storage::Raw(b) => Ok(b),
            Storage::Strings(_) => Err(TensorError::NotRaw),
        }
    }

    /// The shared byte buffer (cheap clone; not for string tensors).
    pub fn bytes(&self) -> Result<Bytes, TensorError> {
        match &self.storage {
            Storage::Raw(b) => Ok(b.clone()),
            Storage::Strings(_) => Err(TensorError::NotRaw),
        }
    }

    pub fn strings(&self) -> Result<&[Vec<u8>], TensorError> {
        match &self.storage {
            Storage::Strings(s) => Ok(s),
            Storage::Raw(_) => Err(TensorError::WrongDType { expected: DType::String, got: self.dtype }),
        }
    }

    /// Whether the storage is suitably aligned to be viewed as `T` without copying.
    pub fn is_aligned_for<T: Element>(&self) -> bool {
        match &self.storage {
            Storage::Raw(b) => (b.as_ptr() as usize) % std::mem::align_of::<T>() == 0,
            Storage::Strings(_) => false,
        }
    }

    /// Borrow the elements as `&[T]`. Fails on a dtype mismatch or unaligned storage
    /// (call [`Tensor::aligned`] first, or use [`Tensor::view`]).
    pub fn as_slice<T: Element>(&self) -> Result<&[T], TensorError> {
        if T::DTYPE != self.dtype {
            return Err(TensorError::WrongDType { expected: T::DTYPE, got: self.dtype });
        }
        let b = self.raw_bytes()?;
        if (b.as_ptr() as usize) % std::mem::align_of::<T>() != 0 {
            return Err(TensorError::Unaligned);
        }
        // SAFETY: dtype matches T, length was checked at construction, alignment just checked,
        // and Element types accept every stored byte pattern.
        Ok(unsafe { std::slice::from_raw_parts(b.as_ptr() as *const T, self.len()) })
    }

    /// The elements as `T`: borrowed when aligned, copied otherwise.
    pub fn view<T: Element>(&self) -> Result<Cow<'_, [T]>, TensorError> {
        match self.as_slice::<T>() {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(TensorError::Unaligned) => {
                let b = self.raw_bytes()?;
                let mut v: Vec<T> = Vec::with_capacity(self.len());
                // SAFETY: copying exactly len * size_of::<T>() bytes into fresh, aligned storage.
                unsafe {
                    std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr() as *mut u8, b.len());
                    v.set_len(self.len());
                }
                Ok(Cow::Owned(v))
            }
            Err(e) => Err(e),
        }
    }

    /// This tensor with storage aligned for its element type (a copy only when it was not).
    pub fn aligned(self) -> Tensor {
        let align = match self.dtype.size_of() {
            Some(s) => s.min(8),
            None => 1,
        };
        match &self.storage {
            Storage::Raw(b) if (b.as_ptr() as usize) % align != 0 => {
                let mut words = vec![0u64; b.len().div_ceil(8)];
                bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..b.len()].copy_from_slice(b);
                let nb = b.len();
                Tensor {
                    dtype: self.dtype,
                    shape: self.shape,
                    storage: Storage::Raw(Bytes::from_owner(VecOwner(words)).slice(0..nb)),
                }
            }
            _ => self,
        }
    }

    /// Copy the elements out as `Vec<T>`.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        Ok(self.view::<T>()?.into_owned())
    }

    /// Whether both tensors hold the same dtype, shape and bytes.
    pub fn bitwise_eq(&self, other: &Tensor) -> bool {
        if self.dtype != other.dtype || self.shape != other.shape {
            return false;
        }
        match (&self.storage, &other.storage) {
            (Storage::Raw(a), Storage::Raw(b)) => a == b,
            (Storage::Strings(a), Storage::Strings(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_bytes_view_copies() {
        let v: Vec<u8> = (0..17).collect();
        let b = Bytes::from(v).slice(1..17);
        let t = Tensor::from_bytes(DType::F32, vec![4], b).unwrap();
        let view = t.view::<f32>().unwrap();
        assert_eq!(view.len(), 4);
        let t2 = t.clone().aligned();
        assert!(t2.is_aligned_for::<f32>());
        assert!(t.bitwise_eq(&t2));
    }

    #[test]
    fn size_checks() {
        assert!(Tensor::from_vec(vec![3], vec![1i64, 2]).is_err());
        assert!(Tensor::from_bytes(DType::I4, vec![3], Bytes::from_static(&[0, 0])).is_ok());
        assert!(Tensor::from_bytes(DType::I4, vec![3], Bytes::from_static(&[0])).is_err());
        let b = Tensor::from_bytes(DType::Bool, vec![2], Bytes::from_static(&[0, 7])).unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[false, true]);
        let z = Tensor::zeros(DType::F64, vec![2, 3]).unwrap();
        assert_eq!(z.as_slice::<f64>().unwrap(), &[0.0; 6]);
    }
}
