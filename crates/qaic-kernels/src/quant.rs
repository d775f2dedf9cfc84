//! Integer kernels for quantised models: u8/i8 GEMM with i32 accumulation, ONNX
//! `MatMulInteger`, `ConvInteger`, and the requantisation used by `QLinearMatMul` /
//! `QLinearConv`.
//!
//! These are the correct scalar references (the interpreter and the simulator must agree
//! with them bit for bit). Vectorised int8 micro-kernels (AVX2 `vpmaddubsw`, AVX-512 VNNI)
//! will plug in behind [`gemm_i8`] without changing its contract.

use crate::conv::{ConvParams, Geo3};
use crate::threads::{parallel_for, SendPtr};
use crate::util::{check_len, numel};
use crate::KernelError;

/// An 8-bit integer element (`u8` or `i8`).
pub trait Int8: Copy + Send + Sync + std::fmt::Debug + 'static {
    fn to_i32(self) -> i32;
}
impl Int8 for u8 {
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}
impl Int8 for i8 {
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
}

/// Zero points: one for the whole operand, or one per row of A / per column of B.
#[derive(Clone, Copy, Debug)]
pub enum ZeroPoint<'a, T> {
    Scalar(T),
    PerChannel(&'a [T]),
}

impl<T: Int8> ZeroPoint<'_, T> {
    #[inline(always)]
    fn at(&self, i: usize) -> i32 {
        match self {
            ZeroPoint::Scalar(z) => z.to_i32(),
            ZeroPoint::PerChannel(z) => z[i].to_i32(),
        }
    }
    fn check(&self, n: usize, what: &str) -> Result<(), KernelError> {
        match self {
            ZeroPoint::PerChannel(z) if z.len() != n => {
                Err(KernelError::invalid("int8 gemm", format!("{what} zero point has {} values, expected 1 or {n}", z.len())))
            }
            _ => Ok(()),
        }
    }
}

/// `C[i][j] = sum_p (A[i][p] - a_zp[i]) * (B[p][j] - b_zp[j])` with i32 accumulation
/// (wrapping on overflow, like the hardware). Row-major with leading dimensions
/// `lda`, `ldb`, `ldc`; `a_zp` is per row of A, `b_zp` per column of B.
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8<A: Int8, B: Int8>(
    m: usize,
    n: usize,
    k: usize,
    a: &[A],
    lda: usize,
    a_zp: ZeroPoint<A>,
    b: &[B],
    ldb: usize,
    b_zp: ZeroPoint<B>,
    c: &mut [i32],
    ldc: usize,
) -> Result<(), KernelError> {
    a_zp.check(m, "A")?;
    b_zp.check(n, "B")?;
    let fits = |len: usize, rows: usize, cols: usize, ld: usize| rows == 0 || cols == 0 || (ld >= cols && (rows - 1) * ld + cols <= len);
    if !fits(a.len(), m, k, lda) || !fits(b.len(), k, n, ldb) || !fits(c.len(), m, n, ldc) {
        return Err(KernelError::invalid("int8 gemm", format!("{m}x{n}x{k} with leading dims {lda}/{ldb}/{ldc} does not fit the slices")));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    // B with its zero point removed, once (i16 is exact for u8/i8 differences).
    let mut bz = vec![0i16; k * n];
    for p in 0..k {
        for j in 0..n {
            bz[p * n + j] = (b[p * ldb + j].to_i32() - b_zp.at(j)) as i16;
        }
    }
    let cp = SendPtr(c.as_mut_ptr());
    let row = |i: usize| {
        // SAFETY: row i of C is written by this item only.
        let ci = unsafe { std::slice::from_raw_parts_mut(cp.get().add(i * ldc), n) };
        ci.fill(0);
        let zp = a_zp.at(i);
        for p in 0..k {
            let av = a[i * lda + p].to_i32() - zp;
            if av == 0 {
                continue;
            }
            for (cv, &bv) in ci.iter_mut().zip(&bz[p * n..(p + 1) * n]) {
                *cv = cv.wrapping_add(av * bv as i32);
            }
        }
    };
    if m * n * k >= 1 << 16 {
        parallel_for(m, row);
    } else {
        (0..m).for_each(row);
    }
    Ok(())
}

/// ONNX `MatMulInteger` (NumPy matmul broadcasting of batch dims): `a_zp` is a scalar or
/// one value per row of A's matrices, `b_zp` a scalar or one per column of B.
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer<A: Int8, B: Int8>(
    a: &[A],
    a_shape: &[usize],
    a_zp: ZeroPoint<A>,
    b: &[B],
    b_shape: &[usize],
    b_zp: ZeroPoint<B>,
    out: &mut [i32],
) -> Result<Vec<usize>, KernelError> {
    let oshape = crate::gemm::matmul_shape(a_shape, b_shape)?;
    check_len("matmul_integer", "A", a.len(), a_shape)?;
    check_len("matmul_integer", "B", b.len(), b_shape)?;
    check_len("matmul_integer", "output", out.len(), &oshape)?;
    let a2: Vec<usize> = if a_shape.len() == 1 { vec![1, a_shape[0]] } else { a_shape.to_vec() };
    let b2: Vec<usize> = if b_shape.len() == 1 { vec![b_shape[0], 1] } else { b_shape.to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let ob = qaic_tensor::broadcast(ab, bb).ok_or_else(|| KernelError::invalid("matmul_integer", format!("batch dims {ab:?} and {bb:?} do not broadcast")))?;
    let sa = crate::util::broadcast_strides(ab, &ob)?;
    let sb = crate::util::broadcast_strides(bb, &ob)?;
    let mut offs = Vec::new();
    crate::util::for_each_offset(&ob, [&sa, &sb], |o| offs.push(o));
    for (bi, [oa, obb]) in offs.into_iter().enumerate() {
        gemm_i8(m, n, k, &a[oa * m * k..], k, a_zp, &b[obb * k * n..], n, b_zp, &mut out[bi * m * n..(bi + 1) * m * n], n)?;
    }
    Ok(oshape)
}

/// ONNX `ConvInteger`: `x` `[N, C, spatial...]` with scalar zero point, `w` `[M, C/group, k...]`
/// with a scalar or per-output-channel zero point; i32 output. Padding contributes the
/// zero point (i.e. nothing after subtraction).
#[allow(clippy::too_many_arguments)]
pub fn conv_integer<X: Int8, W: Int8>(
    p: &ConvParams,
    x: &[X],
    x_shape: &[usize],
    x_zp: X,
    w: &[W],
    w_shape: &[usize],
    w_zp: ZeroPoint<W>,
    out: &mut [i32],
) -> Result<Vec<usize>, KernelError> {
    check_len("conv_integer", "input", x.len(), x_shape)?;
    check_len("conv_integer", "weights", w.len(), w_shape)?;
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(KernelError::invalid("conv_integer", format!("input {x_shape:?} and weights {w_shape:?} ranks")));
    }
    let (n, c, m, grp) = (x_shape[0], x_shape[1], w_shape[0], p.group);
    if grp == 0 || c % grp != 0 || m % grp != 0 || w_shape[1] != c / grp || p.kernel != w_shape[2..] {
        return Err(KernelError::invalid("conv_integer", format!("input {x_shape:?}, weights {w_shape:?}, group {grp}, kernel {:?} do not agree", p.kernel)));
    }
    w_zp.check(m, "weight")?;
    let os = p.output_spatial(&x_shape[2..], false)?;
    let mut oshape = vec![n, m];
    oshape.extend_from_slice(&os);
    check_len("conv_integer", "output", out.len(), &oshape)?;
    let g = Geo3::new("conv_integer", p, &x_shape[2..], &os)?;
    let (cg, mg, is, osz, ks) = (c / grp, m / grp, g.isize(), g.osize(), g.ksize());
    let kdim = cg * ks;
    let xz = x_zp.to_i32();
    let wz: Vec<i32> = (0..m).map(|o| w_zp.at(o)).collect();
    let mut xi = vec![0i32; cg * is];
    let mut col = vec![0i32; kdim * osz];
    for b in 0..n {
        for gi in 0..grp {
            for (d, s) in xi.iter_mut().zip(&x[(b * c + gi * cg) * is..(b * c + (gi + 1) * cg) * is]) {
                *d = s.to_i32() - xz;
            }
            crate::conv::im2col(&g, &xi, cg, &mut col, true);
            for oc in 0..mg {
                let o = gi * mg + oc;
                let dst = &mut out[(b * m + o) * osz..(b * m + o + 1) * osz];
                dst.fill(0);
                for r in 0..kdim {
                    let wv = w[o * kdim + r].to_i32() - wz[o];
                    if wv == 0 {
                        continue;
                    }
                    for (d, &cv) in dst.iter_mut().zip(&col[r * osz..(r + 1) * osz]) {
                        *d = d.wrapping_add(wv * cv);
                    }
                }
            }
        }
    }
    Ok(oshape)
}

/// Requantises i32 accumulators: `y = saturate(round_half_even(acc * multiplier[ch]) + zp)`
/// into u8 or i8, where `ch = (index / inner) % multiplier.len()` (one multiplier, or one
/// per channel with `inner` elements per channel). This is the output stage of
/// `QLinearConv` (`multiplier = x_scale * w_scale / y_scale`, bias already added to `acc`)
/// and `QLinearMatMul`.
pub fn requantize<Y: Requant>(acc: &[i32], multiplier: &[f32], inner: usize, zp: Y, out: &mut [Y]) -> Result<(), KernelError> {
    if acc.len() != out.len() || multiplier.is_empty() || inner == 0 {
        return Err(KernelError::invalid("requantize", format!("{} accumulators, {} outputs, {} multipliers", acc.len(), out.len(), multiplier.len())));
    }
    let nm = multiplier.len();
    for (i, (o, &a)) in out.iter_mut().zip(acc).enumerate() {
        let s = multiplier[if nm == 1 { 0 } else { (i / inner) % nm }];
        let v = (a as f32 * s).round_ties_even() + zp.to_f32();
        *o = Y::saturate(v);
    }
    Ok(())
}

/// Output element of [`requantize`].
pub trait Requant: Copy {
    fn to_f32(self) -> f32;
    fn saturate(v: f32) -> Self;
}
impl Requant for u8 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn saturate(v: f32) -> Self {
        v.clamp(0.0, 255.0) as u8
    }
}
impl Requant for i8 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn saturate(v: f32) -> Self {
        v.clamp(-128.0, 127.0) as i8
    }
}

/// Number of elements of a shape (re-exported helper for callers sizing outputs).
pub fn elements(shape: &[usize]) -> usize {
    numel(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_integer_onnx_example() {
        // The example of the ONNX MatMulInteger operator documentation.
        let a: [u8; 12] = [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0];
        let b: [u8; 6] = [1, 4, 2, 5, 3, 6];
        let mut out = [0i32; 8];
        let sh = matmul_integer(&a, &[4, 3], ZeroPoint::Scalar(12u8), &b, &[3, 2], ZeroPoint::Scalar(0u8), &mut out).unwrap();
        assert_eq!(sh, vec![4, 2]);
        assert_eq!(out, [-38, -83, -44, -98, -50, -113, -56, -128]);
        let r = matmul_integer(&a, &[4, 3], ZeroPoint::PerChannel(&[1u8, 2]), &b, &[3, 2], ZeroPoint::Scalar(0u8), &mut out);
        assert!(r.is_err(), "per-row zero point needs 4 values");
    }

    #[test]
    fn conv_integer_matches_float_conv() {
        let x: Vec<u8> = (0..2 * 3 * 5 * 5).map(|v| (v * 37 % 251) as u8).collect();
        let w: Vec<i8> = (0..4 * 3 * 3 * 3).map(|v| ((v * 13 % 255) - 127) as i8).collect();
        let p = ConvParams { pads: vec![1, 1, 1, 1], strides: vec![2, 1], ..ConvParams::new(&[3, 3]) };
        let wz = [1i8, -2, 0, 3];
        let mut out = vec![0i32; 2 * 4 * 3 * 5];
        conv_integer(&p, &x, &[2, 3, 5, 5], 100u8, &w, &[4, 3, 3, 3], ZeroPoint::PerChannel(&wz), &mut out).unwrap();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32 - 100.0).collect();
        let wf: Vec<f32> = w.iter().enumerate().map(|(i, &v)| v as f32 - wz[i / 27] as f32).collect();
        let mut of = vec![0f32; out.len()];
        let k = crate::Kernels::for_isa(crate::Isa::Scalar).unwrap();
        k.conv(&p, &xf, &[2, 3, 5, 5], &wf, &[4, 3, 3, 3], None, crate::gemm::Activation::None, &mut of).unwrap();
        for (a, b) in out.iter().zip(&of) {
            assert_eq!(*a as f32, *b);
        }
        let mut q = vec![0u8; out.len()];
        requantize(&out, &[0.001], 1, 128u8, &mut q).unwrap();
        for (qv, &a) in q.iter().zip(&out) {
            assert_eq!(*qv, ((a as f32 * 0.001).round_ties_even() + 128.0).clamp(0.0, 255.0) as u8);
        }
    }
}
