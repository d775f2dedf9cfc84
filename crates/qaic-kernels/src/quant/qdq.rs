//! Element-wise quantize, dequantize and requantize, vectorised per [`IntPath`].
//!
//! The bodies are written once with plain Rust float operations (no fused multiply-add, no
//! reassociation: Rust never contracts `a * b + c`), so the AVX2 and AVX-512 builds made by
//! [`multiversion!`](crate::dispatch) compute exactly what the scalar build computes; only the
//! number of lanes differs.

use super::{IntPath, QInt};
use crate::dispatch::multiversion;
use crate::threads::{num_threads, parallel_for, SendPtr};
use crate::KernelError;

/// How [`quantize`] rounds `x / scale` and adds the zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantizeRounding {
    /// Glow (and `qaic.quant.Quantize`): `clamp(rne(fl32(fl32(x / scale) + zp)))`; the zero
    /// point is added in float32 before rounding.
    Glow,
    /// ONNX `QuantizeLinear`: `clamp(rne(fl32(x / scale)) + zp)`; the zero point is added to
    /// the rounded integer.
    Onnx,
}

/// Elements below which a call runs on the calling thread only.
const PAR_MIN: usize = 1 << 15;

/// Runs `f(lo, hi)` over `[0, n)` split at multiples of `inner` (so every piece holds whole
/// channel runs or a part of one run), in parallel for large `n`.
fn split(n: usize, inner: usize, f: impl Fn(usize, usize) + Sync) {
    if n < PAR_MIN || num_threads() <= 1 {
        f(0, n);
        return;
    }
    let pieces = num_threads() * 2;
    let mut per = n.div_ceil(pieces);
    // Keep piece boundaries on run boundaries when runs are short, so each piece starts a run.
    if inner < per {
        per = per.div_ceil(inner) * inner;
    }
    parallel_for(n.div_ceil(per), |p| f(p * per, ((p + 1) * per).min(n)));
}

/// Calls `run(lo, hi, channel)` for each maximal stretch of `[lo, hi)` with one channel:
/// element `i` belongs to channel `(i / inner) % channels`.
fn for_runs(lo: usize, hi: usize, inner: usize, channels: usize, mut run: impl FnMut(usize, usize, usize)) {
    if channels == 1 {
        run(lo, hi, 0);
        return;
    }
    let mut i = lo;
    while i < hi {
        let end = ((i / inner + 1) * inner).min(hi);
        run(i, end, (i / inner) % channels);
        i = end;
    }
}

fn check_params(op: &'static str, n: usize, out: usize, scales: usize, zps: usize, inner: usize) -> Result<(), KernelError> {
    if n != out || scales == 0 || (zps != 1 && zps != scales) || inner == 0 {
        return Err(KernelError::invalid(op, format!("{n} inputs, {out} outputs, {scales} scales, {zps} zero points, {inner} per channel")));
    }
    Ok(())
}

/// `v as i32` for a finite integral value inside the i32 range. Rust's saturating `as` is
/// lowered to per-lane compare-and-branch code that stops the loops from vectorising; the
/// callers have already clamped to a 16-bit range and replaced NaN, so the plain conversion
/// (`vcvttps2dq`) gives the same result.
#[inline(always)]
fn to_int(v: f32) -> i32 {
    debug_assert!(v.is_finite() && v.abs() <= 65536.0);
    // SAFETY: `v` is finite and within ±65536 (clamped by every caller), so it fits i32.
    unsafe { v.to_int_unchecked::<i32>() }
}

// `max`/`min` rather than `clamp`: `max` deliberately drops NaN operands (handled apart) and
// `clamp` asserts its bounds on every call.
#[allow(clippy::manual_clamp)]
#[inline(always)]
fn quantize_body<const FMA: bool, Q: QInt>(x: &[f32], scale: f32, zp: i32, glow: bool, out: &mut [Q]) {
    let (lo, hi) = (Q::MIN as f32, Q::MAX as f32);
    let z = zp as f32;
    if glow {
        for (o, &v) in out.iter_mut().zip(x) {
            let r = (v / scale + z).round_ties_even();
            // NaN quantizes to 0 (Glow's int64 cast of NaN, then the clamp).
            let r = if r.is_nan() { 0.0 } else { r.max(lo).min(hi) };
            *o = Q::from_i32(to_int(r));
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            // Clamping the rounded quotient to ±2^20 first keeps `+ z` exact in f32 without
            // changing any result (every 16-bit range is far inside).
            let q = (v / scale).round_ties_even();
            let r = q.max(-1048576.0).min(1048576.0) + z;
            // Tested on `q`: `max` drops NaN operands.
            let r = if q.is_nan() { 0.0 } else { r.max(lo).min(hi) };
            *o = Q::from_i32(to_int(r));
        }
    }
}
multiversion!(fn quantize_run<Q: QInt>(x: &[f32], scale: f32, zp: i32, glow: bool, out: &mut [Q]) => quantize_body);

/// Quantizes f32 values: element `i` uses `scale[c]` and `zp[c]` (one zero point, or one per
/// channel) with `c = (i / inner) % scale.len()`, rounding as `rounding` says, saturating to
/// `Q`'s range; NaN gives 0. Same bits on every path.
///
/// ```
/// use qaic_kernels::quant::{quantize, QuantizeRounding};
/// let mut q = [0i8; 4];
/// quantize(&[0.25, 0.75, 1.25, 100.0], &[0.5], &[0i8], 1, QuantizeRounding::Glow, &mut q).unwrap();
/// assert_eq!(q, [0, 2, 2, 127]); // ties to even, saturation (facts sheet V4)
/// ```
pub fn quantize<Q: QInt>(x: &[f32], scale: &[f32], zp: &[Q], inner: usize, rounding: QuantizeRounding, out: &mut [Q]) -> Result<(), KernelError> {
    quantize_with(IntPath::current(), x, scale, zp, inner, rounding, out)
}

/// [`quantize`] on an explicit path (tests compare every path; must be available).
pub fn quantize_with<Q: QInt>(
    path: IntPath,
    x: &[f32],
    scale: &[f32],
    zp: &[Q],
    inner: usize,
    rounding: QuantizeRounding,
    out: &mut [Q],
) -> Result<(), KernelError> {
    check_params("quantize", x.len(), out.len(), scale.len(), zp.len(), inner)?;
    let isa = checked_isa(path)?;
    let glow = rounding == QuantizeRounding::Glow;
    let op = SendPtr(out.as_mut_ptr());
    split(x.len(), inner, |lo, hi| {
        for_runs(lo, hi, inner, scale.len(), |a, b, c| {
            // SAFETY: pieces and runs are disjoint ranges of `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(a), b - a) };
            let z = zp[if zp.len() == 1 { 0 } else { c }].to_i32();
            quantize_run(isa, &x[a..b], scale[c], z, glow, o);
        })
    });
    Ok(())
}

#[inline(always)]
fn dequantize_body<const FMA: bool, Q: QInt>(q: &[Q], scale: f32, zp: i32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(q) {
        // `v - zp` is exact in f32 for 8- and 16-bit values; one rounding in the multiply.
        *o = (v.to_i32() - zp) as f32 * scale;
    }
}
multiversion!(fn dequantize_run<Q: QInt>(q: &[Q], scale: f32, zp: i32, out: &mut [f32]) => dequantize_body);

/// Dequantizes: `out[i] = fl32((q[i] - zp[c]) × scale[c])`, `c = (i / inner) % scale.len()`
/// (ONNX `DequantizeLinear` and Glow `dequantize`).
///
/// ```
/// use qaic_kernels::quant::dequantize;
/// let mut y = [0f32; 3];
/// dequantize(&[0u8, 128, 255], &[0.5], &[128u8], 1, &mut y).unwrap();
/// assert_eq!(y, [-64.0, 0.0, 63.5]);
/// ```
pub fn dequantize<Q: QInt>(q: &[Q], scale: &[f32], zp: &[Q], inner: usize, out: &mut [f32]) -> Result<(), KernelError> {
    dequantize_with(IntPath::current(), q, scale, zp, inner, out)
}

/// [`dequantize`] on an explicit path.
pub fn dequantize_with<Q: QInt>(path: IntPath, q: &[Q], scale: &[f32], zp: &[Q], inner: usize, out: &mut [f32]) -> Result<(), KernelError> {
    check_params("dequantize", q.len(), out.len(), scale.len(), zp.len(), inner)?;
    let isa = checked_isa(path)?;
    let op = SendPtr(out.as_mut_ptr());
    split(q.len(), inner, |lo, hi| {
        for_runs(lo, hi, inner, scale.len(), |a, b, c| {
            // SAFETY: pieces and runs are disjoint ranges of `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(a), b - a) };
            let z = zp[if zp.len() == 1 { 0 } else { c }].to_i32();
            dequantize_run(isa, &q[a..b], scale[c], z, o);
        })
    });
    Ok(())
}

#[allow(clippy::manual_clamp)]
#[inline(always)]
fn requantize_body<const FMA: bool, Q: QInt>(acc: &[i32], mult: f32, zp: i32, out: &mut [Q]) {
    let (lo, hi, z) = (Q::MIN as f32, Q::MAX as f32, zp as f32);
    for (o, &a) in out.iter_mut().zip(acc) {
        let v = (a as f32 * mult).round_ties_even() + z;
        *o = Q::from_i32(to_int(if v.is_nan() { 0.0 } else { v.max(lo).min(hi) }));
    }
}
multiversion!(fn requantize_run<Q: QInt>(acc: &[i32], mult: f32, zp: i32, out: &mut [Q]) => requantize_body);

/// [`super::requantize`] on an explicit path.
pub fn requantize_with<Q: QInt>(path: IntPath, acc: &[i32], multiplier: &[f32], inner: usize, zp: Q, out: &mut [Q]) -> Result<(), KernelError> {
    check_params("requantize", acc.len(), out.len(), multiplier.len(), 1, inner)?;
    let isa = checked_isa(path)?;
    let op = SendPtr(out.as_mut_ptr());
    split(acc.len(), inner, |lo, hi| {
        for_runs(lo, hi, inner, multiplier.len(), |a, b, c| {
            // SAFETY: pieces and runs are disjoint ranges of `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(a), b - a) };
            requantize_run(isa, &acc[a..b], multiplier[c], zp.to_i32(), o);
        })
    });
    Ok(())
}

#[allow(clippy::manual_clamp)]
#[inline(always)]
fn requantize_glow_body<const FMA: bool, Q: QInt>(acc: &[i32], bias: i32, mult: f32, zp: i32, out: &mut [Q]) {
    let (lo, hi, z) = (Q::MIN as f32, Q::MAX as f32, zp as f32);
    for (o, &a) in out.iter_mut().zip(acc) {
        // `round` is half away from zero (C `roundf`, Glow's `std::round`); `+ z` is exact
        // for every value that is not clamped anyway.
        let v = (a.wrapping_add(bias) as f32 * mult).round() + z;
        *o = Q::from_i32(to_int(if v.is_nan() { 0.0 } else { v.max(lo).min(hi) }));
    }
}
multiversion!(fn requantize_glow_run<Q: QInt>(acc: &[i32], bias: i32, mult: f32, zp: i32, out: &mut [Q]) => requantize_glow_body);

/// [`super::requantize_glow`] on an explicit path.
pub fn requantize_glow_with<Q: QInt>(
    path: IntPath,
    acc: &[i32],
    bias: &[i32],
    multiplier: &[f32],
    inner: usize,
    zp: Q,
    out: &mut [Q],
) -> Result<(), KernelError> {
    check_params("requantize_glow", acc.len(), out.len(), multiplier.len(), 1, inner)?;
    if bias.len() != multiplier.len() && bias.len() != 1 {
        return Err(KernelError::invalid("requantize_glow", format!("{} biases for {} multipliers", bias.len(), multiplier.len())));
    }
    let isa = checked_isa(path)?;
    let op = SendPtr(out.as_mut_ptr());
    split(acc.len(), inner, |lo, hi| {
        for_runs(lo, hi, inner, multiplier.len(), |a, b, c| {
            // SAFETY: pieces and runs are disjoint ranges of `out`.
            let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(a), b - a) };
            let bc = if bias.len() == 1 { bias[0] } else { bias[c] };
            requantize_glow_run(isa, &acc[a..b], bc, multiplier[c], zp.to_i32(), o);
        })
    });
    Ok(())
}

/// The f32 vector family to run a path's element-wise loops with, after checking the CPU.
pub(crate) fn checked_isa(path: IntPath) -> Result<crate::Isa, KernelError> {
    if !path.is_available() {
        IntPath::select(path.name())?;
    }
    Ok(path.isa())
}
