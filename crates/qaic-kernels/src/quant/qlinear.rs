//! Quantized convolution and matrix product with Glow's output stage, on 8-bit operands whose
//! element types are known only at run time (the interpreter's and the simulator's case).
//!
//! `y = saturate(round_half_away(fl32(float(acc + bias[c]) * multiplier[c])) + y_zp)` where
//! `acc` is the exact i32 sum of `(x - x_zp)(w - w_zp[c])` and `c` the output channel
//! (convolution) or column (matrix product); see [`super::requantize_glow`]. The accumulation
//! is exact integer arithmetic, so every path and every split of the work gives the same bits.

use super::{conv_integer_packed, gemm_packed, requantize_glow, IntPath, PackedA, PackedB, PackedConvWeights, QInt, ZeroPoint};
use crate::conv::{ConvParams, Geo3};
use crate::dispatch::multiversion;
use crate::KernelError;

/// Element type of an 8-bit quantized operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Q8 {
    I8,
    U8,
}

impl Q8 {
    fn range(self) -> (i32, i32) {
        match self {
            Q8::I8 => (-128, 127),
            Q8::U8 => (0, 255),
        }
    }
}

fn as_i8(b: &[u8]) -> &[i8] {
    // SAFETY: i8 and u8 have the same size and alignment; every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(b.as_ptr() as *const i8, b.len()) }
}

fn as_i8_mut(b: &mut [u8]) -> &mut [i8] {
    // SAFETY: as in `as_i8`.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr() as *mut i8, b.len()) }
}

/// The output stage shared by both ops: per-channel bias (accumulator units), multiplier and
/// output zero point.
#[derive(Clone, Debug)]
struct Stage {
    bias: Vec<i32>,
    mult: Vec<f32>,
    y: Q8,
    y_zp: i32,
}

impl Stage {
    fn new(op: &'static str, channels: usize, bias: &[i32], mult: &[f32], y: Q8, y_zp: i32) -> Result<Stage, KernelError> {
        if bias.len() != channels || mult.len() != channels {
            return Err(KernelError::invalid(op, format!("{} biases and {} multipliers for {channels} channels", bias.len(), mult.len())));
        }
        let (lo, hi) = y.range();
        if y_zp < lo || y_zp > hi {
            return Err(KernelError::invalid(op, format!("output zero point {y_zp} outside {lo}..={hi}")));
        }
        Ok(Stage { bias: bias.to_vec(), mult: mult.to_vec(), y, y_zp })
    }
    fn apply(&self, acc: &[i32], inner: usize, out: &mut [u8]) -> Result<(), KernelError> {
        match self.y {
            Q8::I8 => requantize_glow(acc, &self.bias, &self.mult, inner, self.y_zp as i8, as_i8_mut(out)),
            Q8::U8 => requantize_glow(acc, &self.bias, &self.mult, inner, self.y_zp as u8, out),
        }
    }
}

fn check_zp(op: &'static str, t: Q8, zp: i32, what: &str) -> Result<(), KernelError> {
    let (lo, hi) = t.range();
    if zp < lo || zp > hi {
        return Err(KernelError::invalid(op, format!("{what} zero point {zp} outside {lo}..={hi}")));
    }
    Ok(())
}

/// A quantized convolution with packed weights (Glow's `QConv`; ONNX attribute conventions).
///
/// ```
/// use qaic_kernels::{conv::ConvParams, quant::{IntPath, QConvGlow, Q8}};
/// // One 1x1 filter of weight 2 (zero point 0) on a 1x1x2x2 int8 input with zero point 1;
/// // multiplier 0.25 and bias 1: y = round((2 * (x - 1) + 1) * 0.25).
/// let conv = QConvGlow::new(IntPath::current(), ConvParams::new(&[1, 1]), Q8::I8, 1, Q8::I8, &[2],
///     &[1, 1, 1, 1], &[0], &[1], &[0.25], Q8::I8, 0).unwrap();
/// let x = [1i8, 2, 3, 9].map(|v| v as u8);
/// let mut y = vec![0u8; 4];
/// assert_eq!(conv.run(&x, &[1, 1, 2, 2], &mut y).unwrap(), vec![1, 1, 2, 2]);
/// assert_eq!(y, [0, 1, 1, 4]); // 0.25, 0.75, 1.25, 4.25 rounded (half away from zero)
/// ```
#[derive(Clone, Debug)]
pub struct QConvGlow {
    params: ConvParams,
    x: Q8,
    x_zp: i32,
    w: ConvWeights,
    stage: Stage,
}

/// Weights as the convolution reads them.
#[derive(Clone, Debug)]
enum ConvWeights {
    /// im2col GEMM operand, per group.
    Packed(PackedConvWeights),
    /// Depthwise (one input and one output channel per group): `w - w_zp` per channel and
    /// tap, read by a direct loop (an im2col GEMM with one column per group is ~10x slower).
    Depthwise { w: Vec<i32>, shape: Vec<usize> },
    /// 1x1, unit stride, no padding, one group: `out[m][s] = W[m][:] · x[:][s]` with the
    /// weights as the packed left operand and each input image as the right one, which needs
    /// no im2col and writes the output layout directly.
    Pointwise { a: PackedA, wt: Q8, shape: Vec<usize> },
}

impl ConvWeights {
    fn shape(&self) -> &[usize] {
        match self {
            ConvWeights::Packed(p) => p.shape(),
            ConvWeights::Depthwise { shape, .. } | ConvWeights::Pointwise { shape, .. } => shape,
        }
    }
}

/// One depthwise plane: `acc[o] = Σ_taps (x - x_zp) · wc[tap]`, padding taps skipped.
#[inline(always)]
fn dw_plane_body<const FMA: bool, X: QInt>(xp: &[X], acc: &mut [i32], wc: &[i32], g: &Geo3, x_zp: i32) {
    acc.fill(0);
    let mut tap = 0;
    for k0 in 0..g.k[0] {
        let (l0, h0) = g.valid_range(0, k0);
        for k1 in 0..g.k[1] {
            let (l1, h1) = g.valid_range(1, k1);
            for k2 in 0..g.k[2] {
                let wv = wc[tap];
                tap += 1;
                if wv == 0 {
                    continue;
                }
                let (l2, h2) = g.valid_range(2, k2);
                if l2 >= h2 {
                    continue;
                }
                for o0 in l0..h0 {
                    let i0 = o0 * g.s[0] + k0 * g.d[0] - g.pb[0];
                    for o1 in l1..h1 {
                        let i1 = o1 * g.s[1] + k1 * g.d[1] - g.pb[1];
                        let row = &xp[(i0 * g.i[1] + i1) * g.i[2]..(i0 * g.i[1] + i1 + 1) * g.i[2]];
                        let dst = &mut acc[(o0 * g.o[1] + o1) * g.o[2]..][l2..h2];
                        let first = l2 * g.s[2] + k2 * g.d[2] - g.pb[2];
                        if g.s[2] == 1 {
                            for (d, &v) in dst.iter_mut().zip(&row[first..first + (h2 - l2)]) {
                                *d = d.wrapping_add((v.to_i32() - x_zp).wrapping_mul(wv));
                            }
                        } else {
                            for (j, d) in dst.iter_mut().enumerate() {
                                let v = row[first + j * g.s[2]].to_i32();
                                *d = d.wrapping_add((v - x_zp).wrapping_mul(wv));
                            }
                        }
                    }
                }
            }
        }
    }
}
multiversion!(fn dw_plane<X: QInt>(xp: &[X], acc: &mut [i32], wc: &[i32], g: &Geo3, x_zp: i32) => dw_plane_body);

/// Depthwise i32 accumulation: `out[b][c][o] = Σ_taps (x - x_zp)(w[c][tap])` with `w` already
/// offset by its zero point; taps in the padding contribute nothing (they read the zero point).
fn depthwise_acc<X: QInt>(p: &ConvParams, x: &[X], x_shape: &[usize], x_zp: i32, w: &[i32], os: &[usize], out: &mut [i32]) -> Result<(), KernelError> {
    let g = Geo3::new("qconv", p, &x_shape[2..], os)?;
    let isa = super::qdq::checked_isa(IntPath::current())?;
    let (n, c) = (x_shape[0], x_shape[1]);
    let (is, osz, ks) = (g.isize(), g.osize(), g.ksize());
    let op = crate::threads::SendPtr(out.as_mut_ptr());
    crate::threads::parallel_for(n * c, |plane| {
        let ch = plane % c;
        // SAFETY: each plane index writes its own `osz` outputs.
        let acc = unsafe { std::slice::from_raw_parts_mut(op.get().add(plane * osz), osz) };
        dw_plane(isa, &x[plane * is..(plane + 1) * is], acc, &w[ch * ks..(ch + 1) * ks], &g, x_zp);
    });
    Ok(())
}

impl QConvGlow {
    /// Packs `w` (`[M, C/group, k...]`, raw 8-bit values of type `wt`, zero point per output
    /// channel) for inputs of type `x` with zero point `x_zp`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: IntPath,
        params: ConvParams,
        x: Q8,
        x_zp: i32,
        wt: Q8,
        w: &[u8],
        w_shape: &[usize],
        w_zp: &[i32],
        bias: &[i32],
        mult: &[f32],
        y: Q8,
        y_zp: i32,
    ) -> Result<QConvGlow, KernelError> {
        const OP: &str = "qconv";
        check_zp(OP, x, x_zp, "input")?;
        let m = *w_shape.first().ok_or_else(|| KernelError::invalid(OP, "weights without a shape".to_string()))?;
        if w_zp.len() != m {
            return Err(KernelError::invalid(OP, format!("{} weight zero points for {m} channels", w_zp.len())));
        }
        for &z in w_zp {
            check_zp(OP, wt, z, "weight")?;
        }
        let stage = Stage::new(OP, m, bias, mult, y, y_zp)?;
        fn pack<X: QInt, W: QInt>(path: IntPath, w: &[W], s: &[usize], zp: &[i32], g: usize) -> Result<PackedConvWeights, KernelError> {
            let zp: Vec<W> = zp.iter().map(|&z| W::from_i32(z)).collect();
            PackedConvWeights::new::<X, W>(path, w, s, ZeroPoint::PerChannel(&zp), g)
        }
        let g = params.group;
        let depthwise = g > 1 && g == m && w_shape.get(1) == Some(&1) && w_shape.len() <= 5;
        let pointwise = g == 1
            && w_shape.len() >= 3
            && w_shape[2..].iter().all(|&k| k == 1)
            && params.strides.iter().all(|&v| v == 1)
            && params.pads.iter().all(|&v| v == 0);
        let weights = if pointwise {
            let c = w_shape[1];
            if w.len() != m * c {
                return Err(KernelError::invalid(OP, format!("{} weights for shape {w_shape:?}", w.len())));
            }
            // The layout of a left operand depends only on the right operand's type and the
            // path: an empty right operand gives it.
            fn pack_a<W: QInt, X: QInt>(path: IntPath, w: &[W], m: usize, c: usize, zp: &[i32]) -> Result<PackedA, KernelError> {
                let layout = PackedB::new::<W, X>(path, c, 0, &[] as &[X], 1, 1, ZeroPoint::Scalar(X::default()))?;
                let zp: Vec<W> = zp.iter().map(|&z| W::from_i32(z)).collect();
                PackedA::new(&layout, m, w, c, ZeroPoint::PerChannel(&zp))
            }
            let a = match (x, wt) {
                (Q8::I8, Q8::I8) => pack_a::<i8, i8>(path, as_i8(w), m, c, w_zp)?,
                (Q8::I8, Q8::U8) => pack_a::<u8, i8>(path, w, m, c, w_zp)?,
                (Q8::U8, Q8::I8) => pack_a::<i8, u8>(path, as_i8(w), m, c, w_zp)?,
                (Q8::U8, Q8::U8) => pack_a::<u8, u8>(path, w, m, c, w_zp)?,
            };
            ConvWeights::Pointwise { a, wt, shape: w_shape.to_vec() }
        } else if depthwise {
            let ks: usize = w_shape[2..].iter().product();
            if w.len() != m * ks {
                return Err(KernelError::invalid(OP, format!("{} weights for shape {w_shape:?}", w.len())));
            }
            let wv: Vec<i32> = w
                .iter()
                .enumerate()
                .map(|(i, &b)| match wt {
                    Q8::I8 => b as i8 as i32,
                    Q8::U8 => b as i32,
                } - w_zp[i / ks.max(1)])
                .collect();
            ConvWeights::Depthwise { w: wv, shape: w_shape.to_vec() }
        } else {
            ConvWeights::Packed(match (x, wt) {
                (Q8::I8, Q8::I8) => pack::<i8, i8>(path, as_i8(w), w_shape, w_zp, g)?,
                (Q8::I8, Q8::U8) => pack::<i8, u8>(path, w, w_shape, w_zp, g)?,
                (Q8::U8, Q8::I8) => pack::<u8, i8>(path, as_i8(w), w_shape, w_zp, g)?,
                (Q8::U8, Q8::U8) => pack::<u8, u8>(path, w, w_shape, w_zp, g)?,
            })
        };
        Ok(QConvGlow { params, x, x_zp, w: weights, stage })
    }

    /// The output shape for an input shape.
    pub fn output_shape(&self, x_shape: &[usize]) -> Result<Vec<usize>, KernelError> {
        if x_shape.len() < 3 {
            return Err(KernelError::invalid("qconv", format!("input {x_shape:?} has no spatial axes")));
        }
        let mut s = vec![x_shape[0], self.w.shape()[0]];
        if self.params.kernel.len() != x_shape.len() - 2 {
            return Err(KernelError::invalid("qconv", format!("input {x_shape:?} for a {}-d kernel", self.params.kernel.len())));
        }
        s.extend(self.params.output_spatial(&x_shape[2..], false)?);
        Ok(s)
    }

    /// Runs on `x` (raw 8-bit values) into `out` (sized for [`QConvGlow::output_shape`]);
    /// returns the output shape.
    pub fn run(&self, x: &[u8], x_shape: &[usize], out: &mut [u8]) -> Result<Vec<usize>, KernelError> {
        let shape = self.output_shape(x_shape)?;
        let n: usize = shape.iter().product();
        if out.len() != n {
            return Err(KernelError::invalid("qconv", format!("output of {} values, expected {n}", out.len())));
        }
        let mut acc = vec![0i32; n];
        match &self.w {
            ConvWeights::Packed(w) => {
                match self.x {
                    Q8::I8 => conv_integer_packed(&self.params, as_i8(x), x_shape, self.x_zp as i8, w, &mut acc)?,
                    Q8::U8 => conv_integer_packed(&self.params, x, x_shape, self.x_zp as u8, w, &mut acc)?,
                };
            }
            ConvWeights::Pointwise { a, wt, shape: ws } => {
                let c = ws[1];
                if x_shape[1] != c || x.len() != x_shape.iter().product::<usize>() {
                    return Err(KernelError::invalid("qconv", format!("input {x_shape:?} for weights {ws:?}")));
                }
                let (m, is) = (ws[0], x_shape[2..].iter().product::<usize>());
                for b in 0..x_shape[0] {
                    let img = &x[b * c * is..(b + 1) * c * is];
                    let zp = self.x_zp;
                    let pb = match (*wt, self.x) {
                        (Q8::I8, Q8::I8) => PackedB::new::<i8, i8>(IntPath::current(), c, is, as_i8(img), is, 1, ZeroPoint::Scalar(zp as i8))?,
                        (Q8::I8, Q8::U8) => PackedB::new::<i8, u8>(IntPath::current(), c, is, img, is, 1, ZeroPoint::Scalar(zp as u8))?,
                        (Q8::U8, Q8::I8) => PackedB::new::<u8, i8>(IntPath::current(), c, is, as_i8(img), is, 1, ZeroPoint::Scalar(zp as i8))?,
                        (Q8::U8, Q8::U8) => PackedB::new::<u8, u8>(IntPath::current(), c, is, img, is, 1, ZeroPoint::Scalar(zp as u8))?,
                    };
                    gemm_packed(a, &pb, &mut acc[b * m * is..(b + 1) * m * is], is, 1)?;
                }
            }
            ConvWeights::Depthwise { w, shape: ws } => {
                if x_shape.len() != ws.len() || x_shape[1] != ws[0] || self.params.kernel != ws[2..] {
                    return Err(KernelError::invalid("qconv", format!("input {x_shape:?} and depthwise weights {ws:?} do not agree")));
                }
                if x.len() != x_shape.iter().product::<usize>() {
                    return Err(KernelError::invalid("qconv", format!("{} inputs for shape {x_shape:?}", x.len())));
                }
                match self.x {
                    Q8::I8 => depthwise_acc(&self.params, as_i8(x), x_shape, self.x_zp, w, &shape[2..], &mut acc)?,
                    Q8::U8 => depthwise_acc(&self.params, x, x_shape, self.x_zp, w, &shape[2..], &mut acc)?,
                }
            }
        }
        let inner: usize = shape[2..].iter().product();
        self.stage.apply(&acc, inner.max(1), out)?;
        Ok(shape)
    }
}

/// A quantized matrix product `x [..., K] × w [K, N]` with packed constant weights.
///
/// ```
/// use qaic_kernels::quant::{IntPath, QMatMulGlow, Q8};
/// // x = [[3, 5]] (u8, zero point 1), w = [[1], [2]] (i8): acc = 2 + 8 = 10; y = 10 * 0.5 = 5.
/// let mm = QMatMulGlow::new(IntPath::current(), Q8::U8, 1, Q8::I8, &[1, 2], 2, 1, &[0], &[0], &[0.5], Q8::U8, 0).unwrap();
/// let mut y = vec![0u8; 1];
/// assert_eq!(mm.run(&[3, 5], &[1, 2], &mut y).unwrap(), vec![1, 1]);
/// assert_eq!(y, [5]);
/// ```
#[derive(Clone, Debug)]
pub struct QMatMulGlow {
    x: Q8,
    x_zp: i32,
    w: PackedB,
    stage: Stage,
}

impl QMatMulGlow {
    /// Packs row-major `w` `[k, n]` (raw 8-bit values of type `wt`, zero point per column).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: IntPath,
        x: Q8,
        x_zp: i32,
        wt: Q8,
        w: &[u8],
        k: usize,
        n: usize,
        w_zp: &[i32],
        bias: &[i32],
        mult: &[f32],
        y: Q8,
        y_zp: i32,
    ) -> Result<QMatMulGlow, KernelError> {
        const OP: &str = "qmatmul";
        check_zp(OP, x, x_zp, "input")?;
        if w.len() != k * n || w_zp.len() != n {
            return Err(KernelError::invalid(OP, format!("{} weights and {} zero points for [{k}, {n}]", w.len(), w_zp.len())));
        }
        for &z in w_zp {
            check_zp(OP, wt, z, "weight")?;
        }
        let stage = Stage::new(OP, n, bias, mult, y, y_zp)?;
        fn pack<X: QInt, W: QInt>(path: IntPath, w: &[W], k: usize, n: usize, zp: &[i32]) -> Result<PackedB, KernelError> {
            let zp: Vec<W> = zp.iter().map(|&z| W::from_i32(z)).collect();
            PackedB::new::<X, W>(path, k, n, w, n, 1, ZeroPoint::PerChannel(&zp))
        }
        let packed = match (x, wt) {
            (Q8::I8, Q8::I8) => pack::<i8, i8>(path, as_i8(w), k, n, w_zp)?,
            (Q8::I8, Q8::U8) => pack::<i8, u8>(path, w, k, n, w_zp)?,
            (Q8::U8, Q8::I8) => pack::<u8, i8>(path, as_i8(w), k, n, w_zp)?,
            (Q8::U8, Q8::U8) => pack::<u8, u8>(path, w, k, n, w_zp)?,
        };
        Ok(QMatMulGlow { x, x_zp, w: packed, stage })
    }

    /// The output shape for an input shape (`[..., K]` → `[..., N]`).
    pub fn output_shape(&self, x_shape: &[usize]) -> Result<Vec<usize>, KernelError> {
        match x_shape.last() {
            Some(&k) if k == self.w.k() => {
                let mut s = x_shape.to_vec();
                *s.last_mut().unwrap_or(&mut 0) = self.w.n();
                Ok(s)
            }
            _ => Err(KernelError::invalid("qmatmul", format!("input {x_shape:?} does not end in K = {}", self.w.k()))),
        }
    }

    /// Runs on `x` (raw 8-bit values) into `out`; returns the output shape.
    pub fn run(&self, x: &[u8], x_shape: &[usize], out: &mut [u8]) -> Result<Vec<usize>, KernelError> {
        let shape = self.output_shape(x_shape)?;
        let (k, n) = (self.w.k(), self.w.n());
        let m: usize = x_shape[..x_shape.len() - 1].iter().product();
        if x.len() != m * k || out.len() != m * n {
            return Err(KernelError::invalid("qmatmul", format!("{} inputs and {} outputs for {m}x{k}x{n}", x.len(), out.len())));
        }
        let pa = match self.x {
            Q8::I8 => PackedA::new(&self.w, m, as_i8(x), k, ZeroPoint::Scalar(self.x_zp as i8))?,
            Q8::U8 => PackedA::new(&self.w, m, x, k, ZeroPoint::Scalar(self.x_zp as u8))?,
        };
        let mut acc = vec![0i32; m * n];
        gemm_packed(&pa, &self.w, &mut acc, n, 1)?;
        self.stage.apply(&acc, 1, out)?;
        Ok(shape)
    }
}
