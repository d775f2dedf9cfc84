//! Small shape helpers shared by kernels.

use crate::KernelError;

/// Row-major element strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Strides that read a tensor of `shape` as if broadcast to `out` (NumPy rules: `shape` is
/// right-aligned; size-1 and missing dimensions get stride 0).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Result<Vec<usize>, KernelError> {
    if shape.len() > out.len() {
        return Err(KernelError::invalid("broadcast", format!("{shape:?} has more dimensions than {out:?}")));
    }
    let cs = contiguous_strides(shape);
    let off = out.len() - shape.len();
    let mut s = vec![0usize; out.len()];
    for (i, &d) in shape.iter().enumerate() {
        if d == out[off + i] {
            s[off + i] = if d == 1 { 0 } else { cs[i] };
        } else if d != 1 {
            return Err(KernelError::invalid("broadcast", format!("{shape:?} does not broadcast to {out:?}")));
        }
    }
    Ok(s)
}

/// Product of dimensions.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Checks a slice has exactly the number of elements of `shape`.
pub fn check_len(op: &'static str, what: &str, len: usize, shape: &[usize]) -> Result<(), KernelError> {
    let n = numel(shape);
    if len != n {
        return Err(KernelError::invalid(op, format!("{what} has {len} elements but shape {shape:?} needs {n}")));
    }
    Ok(())
}

/// Iterates every multi-index of `shape` in row-major order, calling `f(offsets)` where
/// `offsets[t] = sum(index * strides[t])` for each stride set `t`. Cheap incremental update.
pub fn for_each_offset<const T: usize>(shape: &[usize], strides: [&[usize]; T], mut f: impl FnMut([usize; T])) {
    if shape.contains(&0) {
        return;
    }
    let r = shape.len();
    let mut idx = vec![0usize; r];
    let mut off = [0usize; T];
    loop {
        f(off);
        let mut d = r;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for t in 0..T {
                off[t] += strides[t][d];
            }
            if idx[d] < shape[d] {
                break;
            }
            for t in 0..T {
                off[t] -= strides[t][d] * shape[d];
            }
            idx[d] = 0;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Deterministic pseudo-random data for tests (no external RNG needed).
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in [lo, hi).
        pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        pub fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.f32(-1.0, 1.0)).collect()
        }
    }
    /// Asserts |a - b| <= atol + rtol * |b| elementwise.
    pub fn assert_close(what: &str, a: &[f32], b: &[f32], rtol: f32, atol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let ok = (x - y).abs() <= atol + rtol * y.abs() || (x.is_nan() && y.is_nan()) || x == y;
            assert!(ok, "{what}: element {i}: got {x}, expected {y}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn broadcast_strides_follow_numpy() {
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 4]).unwrap(), vec![0, 1, 0]);
        assert!(broadcast_strides(&[3], &[4]).is_err());
        let mut v = vec![];
        for_each_offset(&[2, 3], [&[3, 1], &[0, 1]], |o| v.push(o));
        assert_eq!(v, vec![[0, 0], [1, 1], [2, 2], [3, 0], [4, 1], [5, 2]]);
    }
}
