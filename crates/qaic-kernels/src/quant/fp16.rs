//! f16 <-> f32 slice conversion: the storage side of the fp16 path.
//!
//! The interpreter's fp16 arithmetic is "widen to f32, compute in f32, round the result to
//! f16 (nearest, ties to even) once per op"; these two kernels are the widening and the
//! rounding. F16C (`vcvtph2ps` / `vcvtps2ph` with round-to-nearest-even) and AVX-512F give the
//! same bits as the portable `half` conversion, NaNs included: both quiet a signalling NaN
//! and keep the top payload bits.

use half::f16;

use super::IntPath;
use crate::threads::{num_threads, parallel_for, SendPtr};
use crate::KernelError;

fn check(op: &'static str, a: usize, b: usize) -> Result<(), KernelError> {
    if a != b {
        return Err(KernelError::invalid(op, format!("{a} inputs for {b} outputs")));
    }
    Ok(())
}

/// Splits `[0, n)` into a few pieces for large `n`.
fn pieces(n: usize, f: impl Fn(usize, usize) + Sync) {
    if n < 1 << 16 || num_threads() <= 1 {
        f(0, n);
        return;
    }
    let per = n.div_ceil(num_threads() * 2).div_ceil(64) * 64;
    parallel_for(n.div_ceil(per), |p| f(p * per, ((p + 1) * per).min(n)));
}

/// Widens f16 values to f32 (exact).
///
/// ```
/// use half::f16;
/// let mut y = [0f32; 2];
/// qaic_kernels::quant::f16_to_f32(&[f16::from_f32(1.5), f16::MAX], &mut y).unwrap();
/// assert_eq!(y, [1.5, 65504.0]);
/// ```
pub fn f16_to_f32(x: &[f16], out: &mut [f32]) -> Result<(), KernelError> {
    f16_to_f32_with(IntPath::current(), x, out)
}

/// [`f16_to_f32`] on an explicit path.
pub fn f16_to_f32_with(path: IntPath, x: &[f16], out: &mut [f32]) -> Result<(), KernelError> {
    check("f16_to_f32", x.len(), out.len())?;
    let isa = super::qdq::checked_isa(path)?;
    let op = SendPtr(out.as_mut_ptr());
    pieces(x.len(), |lo, hi| {
        // SAFETY: pieces are disjoint.
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(lo), hi - lo) };
        let x = &x[lo..hi];
        let done = match isa {
            // SAFETY: the path was checked available (F16C comes with every AVX2 CPU we
            // select, and is checked again here).
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx512 => unsafe { x86::widen_avx512(x, o) },
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx2 if is_x86_feature_detected!("f16c") => unsafe { x86::widen_f16c(x, o) },
            _ => 0,
        };
        for (d, s) in o[done..].iter_mut().zip(&x[done..]) {
            *d = s.to_f32();
        }
    });
    Ok(())
}

/// Rounds f32 values to f16 (nearest, ties to even; beyond ±65504 rounds to ±inf as IEEE
/// says; NaN stays NaN).
///
/// ```
/// use half::f16;
/// let mut y = [f16::ZERO; 3];
/// qaic_kernels::quant::f32_to_f16(&[1.0 + 1.0 / 4096.0, 70000.0, -0.0], &mut y).unwrap();
/// assert_eq!(y, [f16::ONE, f16::INFINITY, f16::NEG_ZERO]); // 1 + 2^-12 is a tie: to even
/// ```
pub fn f32_to_f16(x: &[f32], out: &mut [f16]) -> Result<(), KernelError> {
    f32_to_f16_with(IntPath::current(), x, out)
}

/// [`f32_to_f16`] on an explicit path.
pub fn f32_to_f16_with(path: IntPath, x: &[f32], out: &mut [f16]) -> Result<(), KernelError> {
    check("f32_to_f16", x.len(), out.len())?;
    let isa = super::qdq::checked_isa(path)?;
    let op = SendPtr(out.as_mut_ptr());
    pieces(x.len(), |lo, hi| {
        // SAFETY: pieces are disjoint.
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(lo), hi - lo) };
        let x = &x[lo..hi];
        let done = match isa {
            // SAFETY: as in f16_to_f32_with.
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx512 => unsafe { x86::narrow_avx512(x, o) },
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx2 if is_x86_feature_detected!("f16c") => unsafe { x86::narrow_f16c(x, o) },
            _ => 0,
        };
        for (d, s) in o[done..].iter_mut().zip(&x[done..]) {
            *d = f16::from_f32(*s);
        }
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::f16;
    use std::arch::x86_64::*;

    /// Converts whole vectors; returns how many elements it did (the caller does the tail).
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn widen_f16c(x: &[f16], o: &mut [f32]) -> usize {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let n = x.len() / 8 * 8;
            for i in (0..n).step_by(8) {
                let h = _mm_loadu_si128(x.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(o.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            n
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_avx512(x: &[f16], o: &mut [f32]) -> usize {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let n = x.len() / 16 * 16;
            for i in (0..n).step_by(16) {
                let h = _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i);
                _mm512_storeu_ps(o.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
            }
            n
        }
    }

    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn narrow_f16c(x: &[f32], o: &mut [f16]) -> usize {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let n = x.len() / 8 * 8;
            for i in (0..n).step_by(8) {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                // Rounding fixed in the instruction (nearest even), not taken from MXCSR.
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
                _mm_storeu_si128(o.as_mut_ptr().add(i) as *mut __m128i, h);
            }
            n
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn narrow_avx512(x: &[f32], o: &mut [f16]) -> usize {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let n = x.len() / 16 * 16;
            for i in (0..n).step_by(16) {
                let v = _mm512_loadu_ps(x.as_ptr().add(i));
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                _mm256_storeu_si256(o.as_mut_ptr().add(i) as *mut __m256i, h);
            }
            n
        }
    }
}
