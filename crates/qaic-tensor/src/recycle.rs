//! Recycling of owned tensor buffers.
//!
//! When a tensor built by [`Tensor::from_vec`](crate::Tensor::from_vec) is dropped, its
//! `Vec` goes to a small per-thread pool instead of back to the allocator. [`reuse_vec`] hands
//! such a buffer out again for an output that a kernel overwrites completely: its contents are
//! stale but initialised, so the caller skips the zero-fill that `vec![0.0; n]` pays on every
//! inference (a `calloc` of recycled heap memory is a `memset`).
//!
//! The pool is bounded (a few buffers per element type and length, [`POOL_BYTES`] per thread)
//! and only keeps buffers of at least [`MIN_BYTES`]; smaller ones are cheap to allocate.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

use crate::Element;

/// Buffers smaller than this are not pooled.
pub const MIN_BYTES: usize = 16 << 10;
/// Most bytes a thread's pool holds.
pub const POOL_BYTES: usize = 64 << 20;
/// Most buffers kept per (element type, length).
const PER_KEY: usize = 4;

#[derive(Default)]
struct Pool {
    lists: HashMap<(TypeId, usize), Vec<Box<dyn Any>>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A `Vec<T>` of length `n` whose contents are unspecified (initialised, possibly stale data
/// of an earlier tensor). Use it only for outputs that are written in full before being read.
///
/// ```
/// let mut v = qaic_tensor::recycle::reuse_vec::<f32>(8);
/// assert_eq!(v.len(), 8);
/// v.fill(1.0);
/// ```
pub fn reuse_vec<T: Element + Default>(n: usize) -> Vec<T> {
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes >= MIN_BYTES {
        let hit = POOL
            .try_with(|p| {
                let mut p = p.try_borrow_mut().ok()?;
                let b = p.lists.get_mut(&(TypeId::of::<T>(), n))?.pop()?;
                p.bytes -= bytes;
                b.downcast::<Vec<T>>().ok()
            })
            .ok()
            .flatten();
        if let Some(v) = hit {
            return *v;
        }
    }
    vec![T::default(); n]
}

/// Offers a buffer to the calling thread's pool; it is freed if the pool is full.
pub(crate) fn recycle<T: Element>(v: Vec<T>) {
    let n = v.len();
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes < MIN_BYTES || v.capacity() != n {
        return;
    }
    // try_with: during thread teardown the pool may already be gone; then just free.
    let _ = POOL.try_with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else { return };
        if p.bytes + bytes > POOL_BYTES {
            return;
        }
        let list = p.lists.entry((TypeId::of::<T>(), n)).or_default();
        if list.len() < PER_KEY {
            list.push(Box::new(v));
            p.bytes += bytes;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn dropped_tensor_buffers_are_reused() {
        let n = MIN_BYTES / 4;
        let t = Tensor::from_vec(vec![n], vec![7.0f32; n]).unwrap();
        let ptr = t.as_slice::<f32>().unwrap().as_ptr();
        drop(t);
        let v = reuse_vec::<f32>(n);
        assert_eq!(v.as_ptr(), ptr);
        assert_eq!(v.len(), n);
        // Another length or type does not match.
        assert_ne!(reuse_vec::<i32>(n).as_ptr() as *const f32, ptr);
        // Small buffers are never pooled.
        let small = Tensor::from_vec(vec![4], vec![1.0f32; 4]).unwrap();
        drop(small);
        assert_eq!(reuse_vec::<f32>(4), vec![0.0; 4]);
    }
}
