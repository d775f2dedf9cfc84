//! Integer kernels for quantised models and fp16 conversion: int8/int16 GEMM with i32
//! accumulation ([`gemm_i8`], [`PackedB`] + [`gemm_packed`]), ONNX `MatMulInteger`
//! ([`matmul_integer`]), `ConvInteger` ([`conv_integer`], [`conv_integer_packed`]),
//! quantize / dequantize / requantize ([`quantize`], [`dequantize`], [`requantize`]) and
//! f16 <-> f32 slices ([`f16_to_f32`], [`f32_to_f16`]).
//!
//! Every kernel has a scalar and SIMD implementations chosen by [`IntPath`] (AVX-512 VNNI,
//! AVX-VNNI, AVX-512BW, AVX2, scalar; `QAIC_KERNELS` forces one). **All paths give the same
//! bits**: integer sums are exact modulo 2^32 (wrapping like the hardware), and the float
//! steps (quantize, requantize, f16 rounding) are the same IEEE operations in the same order.
//! The interpreter and the simulator call these functions, so both compute the same numbers.
//!
//! ```
//! use qaic_kernels::quant::{gemm_i8, requantize, ZeroPoint};
//! // (2x3 u8, zero point 128) x (3x2 i8): i32 accumulators, then back to u8.
//! let a = [130u8, 128, 126, 138, 128, 118];
//! let b = [1i8, 0, 0, 1, -1, 2];
//! let mut acc = [0i32; 4];
//! gemm_i8(2, 2, 3, &a, 3, ZeroPoint::Scalar(128u8), &b, 2, ZeroPoint::Scalar(0i8), &mut acc, 2).unwrap();
//! assert_eq!(acc, [4, -4, 20, -20]);
//! let mut y = [0u8; 4];
//! requantize(&acc, &[0.5], 1, 100u8, &mut y).unwrap();
//! assert_eq!(y, [102, 98, 110, 90]);
//! ```

mod fp16;
mod igemm;
mod path;
mod qdq;
mod qlinear;
#[cfg(test)]
mod tests;

pub use fp16::{f16_to_f32, f16_to_f32_with, f32_to_f16, f32_to_f16_with};
pub use igemm::{gemm_packed, PackedA, PackedB};
pub use path::IntPath;
pub use qlinear::{QConvGlow, QMatMulGlow, Q8};
pub use qdq::{dequantize, dequantize_with, quantize, quantize_with, requantize_glow_with, requantize_with, QuantizeRounding};

use crate::conv::{ConvParams, Geo3};
use crate::util::{check_len, numel};
use crate::KernelError;

/// An integer element the integer kernels read and write: `u8`, `i8`, `u16`, `i16`.
pub trait QInt: Copy + Send + Sync + Default + std::fmt::Debug + 'static {
    /// Width in bits.
    const BITS: u32;
    /// Whether the type is signed.
    const SIGNED: bool;
    /// Smallest value.
    const MIN: i32;
    /// Largest value.
    const MAX: i32;
    /// The value as i32.
    fn to_i32(self) -> i32;
    /// `v` (already in range) as this type.
    fn from_i32(v: i32) -> Self;
}

macro_rules! qint {
    ($t:ty, $bits:expr, $signed:expr) => {
        impl QInt for $t {
            const BITS: u32 = $bits;
            const SIGNED: bool = $signed;
            const MIN: i32 = <$t>::MIN as i32;
            const MAX: i32 = <$t>::MAX as i32;
            #[inline(always)]
            fn to_i32(self) -> i32 {
                self as i32
            }
            #[inline(always)]
            fn from_i32(v: i32) -> Self {
                v as $t
            }
        }
    };
}
qint!(u8, 8, false);
qint!(i8, 8, true);
qint!(u16, 16, false);
qint!(i16, 16, true);

/// An 8-bit integer element (`u8` or `i8`).
pub trait Int8: QInt {}
impl Int8 for u8 {}
impl Int8 for i8 {}

/// Zero points: one for the whole operand, or one per row of A / per column of B.
#[derive(Clone, Copy, Debug)]
pub enum ZeroPoint<'a, T> {
    Scalar(T),
    PerChannel(&'a [T]),
}

impl<T: QInt> ZeroPoint<'_, T> {
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
/// `lda`, `ldb`, `ldc`; `a_zp` is per row of A, `b_zp` per column of B. Any mix of `u8`,
/// `i8`, `u16`, `i16` operands. Runs on [`IntPath::current`]; B is packed per call (pack
/// constant weights once with [`PackedB`] and call [`gemm_packed`] instead).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8<A: QInt, B: QInt>(
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
    gemm_i8_with(IntPath::current(), m, n, k, a, lda, a_zp, b, ldb, b_zp, c, ldc)
}

/// [`gemm_i8`] on an explicit path (which must be available).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_with<A: QInt, B: QInt>(
    path: IntPath,
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
    qdq::checked_isa(path)?;
    a_zp.check(m, "A")?;
    b_zp.check(n, "B")?;
    let fits = |len: usize, rows: usize, cols: usize, ld: usize| rows == 0 || cols == 0 || (ld >= cols && (rows - 1) * ld + cols <= len);
    if !fits(a.len(), m, k, lda) || !fits(b.len(), k, n, ldb) || !fits(c.len(), m, n, ldc) {
        return Err(KernelError::invalid("int8 gemm", format!("{m}x{n}x{k} with leading dims {lda}/{ldb}/{ldc} does not fit the slices")));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let pb = PackedB::new::<A, B>(path, k, n, b, ldb, 1, b_zp)?;
    let pa = PackedA::new(&pb, m, a, lda, a_zp)?;
    gemm_packed(&pa, &pb, c, ldc, 1)
}

/// The plain triple loop [`gemm_i8`] must equal (tests and documentation of the contract).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_reference<A: QInt, B: QInt>(
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
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i32;
            for p in 0..k {
                let d = (a[i * lda + p].to_i32() - a_zp.at(i)).wrapping_mul(b[p * ldb + j].to_i32() - b_zp.at(j));
                s = s.wrapping_add(d);
            }
            c[i * ldc + j] = s;
        }
    }
}

/// ONNX `MatMulInteger` (NumPy matmul broadcasting of batch dims): `a_zp` is a scalar or
/// one value per row of A's matrices, `b_zp` a scalar or one per column of B.
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer<A: QInt, B: QInt>(
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

/// Weights of an integer convolution packed once per group for [`conv_integer_packed`]
/// (the transposed `[C/group · k..., M/group]` right operand of the im2col GEMM).
#[derive(Clone, Debug)]
pub struct PackedConvWeights {
    groups: Vec<PackedB>,
    w_shape: Vec<usize>,
    group: usize,
}

impl PackedConvWeights {
    /// Packs `w` `[M, C/group, k...]` with a scalar or per-output-channel zero point, for
    /// inputs of element type `X`.
    pub fn new<X: QInt, W: QInt>(path: IntPath, w: &[W], w_shape: &[usize], w_zp: ZeroPoint<W>, group: usize) -> Result<PackedConvWeights, KernelError> {
        check_len("conv_integer", "weights", w.len(), w_shape)?;
        if w_shape.len() < 3 || group == 0 || !w_shape[0].is_multiple_of(group) {
            return Err(KernelError::invalid("conv_integer", format!("weights {w_shape:?} with group {group}")));
        }
        let m = w_shape[0];
        w_zp.check(m, "weight")?;
        let (mg, kdim) = (m / group, numel(&w_shape[1..]));
        let groups = (0..group)
            .map(|gi| {
                let zp = match w_zp {
                    ZeroPoint::Scalar(z) => ZeroPoint::Scalar(z),
                    ZeroPoint::PerChannel(z) => ZeroPoint::PerChannel(&z[gi * mg..(gi + 1) * mg]),
                };
                // B[r][o] = w[(gi·mg + o)·kdim + r]: row stride 1, column stride kdim.
                PackedB::new::<X, W>(path, kdim, mg, &w[gi * mg * kdim..], 1, kdim, zp)
            })
            .collect::<Result<_, _>>()?;
        Ok(PackedConvWeights { groups, w_shape: w_shape.to_vec(), group })
    }

    /// The weight shape `[M, C/group, k...]`.
    pub fn shape(&self) -> &[usize] {
        &self.w_shape
    }
}

/// ONNX `ConvInteger`: `x` `[N, C, spatial...]` (1 to 3 spatial axes) with scalar zero point,
/// `w` `[M, C/group, k...]` with a scalar or per-output-channel zero point; i32 output
/// `[N, M, out...]`. Padding reads as the input zero point (contributes nothing). Weights are
/// packed per call; pack them once with [`PackedConvWeights`] for [`conv_integer_packed`].
///
/// ```
/// use qaic_kernels::{conv::ConvParams, quant::{conv_integer, ZeroPoint}};
/// // 1x1x3x3 input (zero point 1), one 2x2 filter of ones: sums of (x - 1) over 2x2 windows.
/// let x = [2u8, 3, 4, 5, 6, 7, 8, 9, 10];
/// let mut out = [0i32; 4];
/// let shape = conv_integer(&ConvParams::new(&[2, 2]), &x, &[1, 1, 3, 3], 1u8, &[1i8; 4], &[1, 1, 2, 2],
///                          ZeroPoint::Scalar(0i8), &mut out).unwrap();
/// assert_eq!((shape, out), (vec![1, 1, 2, 2], [12, 16, 24, 28]));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn conv_integer<X: QInt, W: QInt>(
    p: &ConvParams,
    x: &[X],
    x_shape: &[usize],
    x_zp: X,
    w: &[W],
    w_shape: &[usize],
    w_zp: ZeroPoint<W>,
    out: &mut [i32],
) -> Result<Vec<usize>, KernelError> {
    let packed = PackedConvWeights::new::<X, W>(IntPath::current(), w, w_shape, w_zp, p.group)?;
    conv_integer_packed(p, x, x_shape, x_zp, &packed, out)
}

/// [`conv_integer`] with weights packed by [`PackedConvWeights::new`] (`p.group` must be the
/// group count they were packed with).
pub fn conv_integer_packed<X: QInt>(p: &ConvParams, x: &[X], x_shape: &[usize], x_zp: X, w: &PackedConvWeights, out: &mut [i32]) -> Result<Vec<usize>, KernelError> {
    check_len("conv_integer", "input", x.len(), x_shape)?;
    let w_shape = &w.w_shape;
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(KernelError::invalid("conv_integer", format!("input {x_shape:?} and weights {w_shape:?} ranks")));
    }
    let (n, c, m, grp) = (x_shape[0], x_shape[1], w_shape[0], p.group);
    if grp != w.group || c % grp != 0 || w_shape[1] != c / grp || p.kernel != w_shape[2..] {
        return Err(KernelError::invalid("conv_integer", format!("input {x_shape:?}, weights {w_shape:?}, group {grp}, kernel {:?} do not agree", p.kernel)));
    }
    let os = p.output_spatial(&x_shape[2..], false)?;
    let mut oshape = vec![n, m];
    oshape.extend_from_slice(&os);
    check_len("conv_integer", "output", out.len(), &oshape)?;
    let g = Geo3::new("conv_integer", p, &x_shape[2..], &os)?;
    let (cg, mg, is, osz) = (c / grp, m / grp, g.isize(), g.osize());
    if osz == 0 || mg == 0 {
        return Ok(oshape);
    }
    let xz = x_zp;
    for b in 0..n {
        for (gi, pb) in w.groups.iter().enumerate() {
            let xb = &x[(b * c + gi * cg) * is..(b * c + (gi + 1) * cg) * is];
            // Row s of A: the receptive field of output position s in weight order
            // (channel, kd, kh, kw); taps in the padding read the zero point.
            let fill = |s: usize, row: &mut [X]| {
                let (o0, o1, o2) = (s / (g.o[1] * g.o[2]), (s / g.o[2]) % g.o[1], s % g.o[2]);
                let mut idx = 0;
                for ch in 0..cg {
                    let plane = &xb[ch * is..(ch + 1) * is];
                    for k0 in 0..g.k[0] {
                        let i0 = (o0 * g.s[0] + k0 * g.d[0]) as isize - g.pb[0] as isize;
                        for k1 in 0..g.k[1] {
                            let i1 = (o1 * g.s[1] + k1 * g.d[1]) as isize - g.pb[1] as isize;
                            let inside01 = i0 >= 0 && (i0 as usize) < g.i[0] && i1 >= 0 && (i1 as usize) < g.i[1];
                            let base = if inside01 { (i0 as usize * g.i[1] + i1 as usize) * g.i[2] } else { 0 };
                            for k2 in 0..g.k[2] {
                                let i2 = (o2 * g.s[2] + k2 * g.d[2]) as isize - g.pb[2] as isize;
                                row[idx] = if inside01 && i2 >= 0 && (i2 as usize) < g.i[2] { plane[base + i2 as usize] } else { xz };
                                idx += 1;
                            }
                        }
                    }
                }
            };
            let pa = PackedA::from_rows::<X>(pb, osz, vec![xz.to_i32()], fill)?;
            let base = (b * m + gi * mg) * osz;
            gemm_packed(&pa, pb, &mut out[base..base + mg * osz], 1, osz)?;
        }
    }
    Ok(oshape)
}

/// Requantises i32 accumulators: `y = saturate(round_half_even(acc * multiplier[ch]) + zp)`
/// into u8 or i8, where `ch = (index / inner) % multiplier.len()` (one multiplier, or one
/// per channel with `inner` elements per channel). This is the output stage of
/// `QLinearConv` (`multiplier = x_scale * w_scale / y_scale`, bias already added to `acc`)
/// and `QLinearMatMul`.
///
/// Works for `u8`, `i8`, `u16`, `i16` outputs; a NaN product (infinite multiplier times 0)
/// gives 0. Runs on [`IntPath::current`]; same bits on every path.
pub fn requantize<Y: QInt>(acc: &[i32], multiplier: &[f32], inner: usize, zp: Y, out: &mut [Y]) -> Result<(), KernelError> {
    requantize_with(IntPath::current(), acc, multiplier, inner, zp, out)
}

/// Glow's output stage of a quantized convolution or fully-connected layer (the reference
/// Interpreter's, `fwdFullyConnectedInstQuantizedImpl`):
/// `y = saturate(round_half_away(fl32(float(acc + bias[ch]) * multiplier[ch])) + zp)` with
/// `ch = (index / inner) % multiplier.len()`, where `bias` is already in accumulator units
/// (one value, or one per channel) and `multiplier = fl32(fl32(w_scale * x_scale) / y_scale)`.
/// The i32 addition wraps like the hardware. Runs on [`IntPath::current`]; same bits on every
/// path.
///
/// ```
/// use qaic_kernels::quant::requantize_glow;
/// let mut y = [0i8; 4];
/// // 2.5 rounds away from zero (ONNX's ties-to-even `requantize` would give 2).
/// requantize_glow(&[5, -5, 300, 1], &[0], &[0.5], 1, 0i8, &mut y).unwrap();
/// assert_eq!(y, [3, -3, 127, 1]);
/// ```
pub fn requantize_glow<Y: QInt>(acc: &[i32], bias: &[i32], multiplier: &[f32], inner: usize, zp: Y, out: &mut [Y]) -> Result<(), KernelError> {
    requantize_glow_with(IntPath::current(), acc, bias, multiplier, inner, zp, out)
}

/// Number of elements of a shape (re-exported helper for callers sizing outputs).
pub fn elements(shape: &[usize]) -> usize {
    numel(shape)
}
