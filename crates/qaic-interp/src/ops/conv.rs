//! Convolutions: Conv, ConvTranspose, ConvInteger, QLinearConv (N-d, groups, dilations,
//! auto_pad). f32 Conv runs on the shared kernels' convolution with weights packed once at plan
//! time; this module resolves the ONNX attributes (auto_pad, defaults) into their parameters.
//! ConvTranspose is GEMM + col2im; the integer forms use an exact i64 im2col reference.

use std::sync::Arc;

use qaic_kernels::conv::{ConvParams, PackedConvWeights};
use qaic_kernels::gemm::{Activation, Mat, MatMut};
use qaic_kernels::Kernels;
use qaic_tensor::{DType, Tensor, Value};

use super::linalg::{from_f32, kernels, to_f32};
use super::quant::{int_tensor, int_values, qrange};
use super::util::{floats_of, input, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("Conv", 1, conv);
    r.add("ConvTranspose", 1, conv_transpose);
    r.add("ConvInteger", 10, conv_integer);
    r.add("QLinearConv", 10, qlinear_conv);
}

/// Geometry attributes shared by convolutions and pools.
#[derive(Clone, Debug, Default)]
pub(crate) struct Geometry {
    pub auto_pad: String,
    pub kernel: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub pads: Option<Vec<i64>>,
}

impl Geometry {
    pub(crate) fn from_ctx(ctx: &BuildCtx<'_>) -> Result<Geometry, OpError> {
        let pos = |name: &str| -> Result<Option<Vec<usize>>, OpError> {
            match ctx.attr_ints(name)? {
                None => Ok(None),
                Some(v) => {
                    if v.iter().any(|&x| x <= 0) {
                        return Err(OpError::Msg(format!("attribute `{name}` must be positive, is {v:?}")));
                    }
                    Ok(Some(v.into_iter().map(|x| x as usize).collect()))
                }
            }
        };
        let pads = ctx.attr_ints("pads")?;
        if let Some(p) = &pads {
            if p.iter().any(|&x| x < 0) {
                return Err(OpError::Msg(format!("pads must not be negative, are {p:?}")));
            }
        }
        Ok(Geometry {
            auto_pad: ctx.attr_s("auto_pad", "NOTSET")?,
            kernel: pos("kernel_shape")?,
            strides: pos("strides")?,
            dilations: pos("dilations")?,
            pads,
        })
    }

    /// Resolved (strides, dilations, pads_begin, pads_end, output sizes) for input spatial
    /// sizes `input` and kernel sizes `kernel`. `ceil` selects ceil_mode (pools).
    pub(crate) fn resolve(&self, input: &[usize], kernel: &[usize], ceil: bool) -> Result<Resolved, OpError> {
        let r = input.len();
        let strides = self.strides.clone().unwrap_or_else(|| vec![1; r]);
        let dil = self.dilations.clone().unwrap_or_else(|| vec![1; r]);
        if strides.len() != r || dil.len() != r || kernel.len() != r {
            return Err(OpError::Msg(format!(
                "kernel {kernel:?}, strides {strides:?} and dilations {dil:?} must all have {r} values"
            )));
        }
        let mut pb = vec![0usize; r];
        let mut pe = vec![0usize; r];
        let mut out = vec![0usize; r];
        for i in 0..r {
            let ek = (kernel[i] - 1) * dil[i] + 1;
            match self.auto_pad.as_str() {
                "NOTSET" | "" => {
                    if let Some(p) = &self.pads {
                        if p.len() != 2 * r {
                            return Err(OpError::Msg(format!("pads must have {} values, has {}", 2 * r, p.len())));
                        }
                        pb[i] = p[i] as usize;
                        pe[i] = p[i + r] as usize;
                    }
                    let span = input[i] + pb[i] + pe[i];
                    if span < ek {
                        return Err(OpError::Msg(format!(
                            "kernel extent {ek} is larger than the padded input {span} on spatial axis {i}"
                        )));
                    }
                    out[i] = if ceil { (span - ek).div_ceil(strides[i]) + 1 } else { (span - ek) / strides[i] + 1 };
                    // A window that starts in the end padding is dropped (ceil_mode rule).
                    if ceil && (out[i] - 1) * strides[i] >= input[i] + pb[i] {
                        out[i] -= 1;
                    }
                }
                "VALID" => {
                    if input[i] < ek {
                        return Err(OpError::Msg(format!("kernel extent {ek} is larger than the input {}", input[i])));
                    }
                    out[i] = (input[i] - ek) / strides[i] + 1;
                }
                "SAME_UPPER" | "SAME_LOWER" => {
                    out[i] = input[i].div_ceil(strides[i]);
                    let total = ((out[i] - 1) * strides[i] + ek).saturating_sub(input[i]);
                    if self.auto_pad == "SAME_UPPER" {
                        pb[i] = total / 2;
                        pe[i] = total - pb[i];
                    } else {
                        pe[i] = total / 2;
                        pb[i] = total - pe[i];
                    }
                }
                other => return Err(OpError::Msg(format!("unknown auto_pad `{other}`"))),
            }
        }
        Ok(Resolved { strides, dil, pb, pe, out })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub strides: Vec<usize>,
    pub dil: Vec<usize>,
    pub pb: Vec<usize>,
    pub pe: Vec<usize>,
    pub out: Vec<usize>,
}

/// im2col for one image of `c` channels: rows are (channel, kernel offset), columns output
/// positions; padding reads as `pad`.
fn im2col<T: Copy>(x: &[T], c: usize, input: &[usize], kernel: &[usize], rs: &Resolved, pad: T, col: &mut [T]) {
    let r = input.len();
    let kprod: usize = kernel.iter().product();
    let npos: usize = rs.out.iter().product();
    let isz: usize = input.iter().product();
    let istr = qaic_tensor::strides(input);
    let mut koff = vec![0usize; r];
    let mut opos = vec![0usize; r];
    for ch in 0..c {
        let xc = &x[ch * isz..(ch + 1) * isz];
        for k in 0..kprod {
            let mut rem = k;
            for d in (0..r).rev() {
                koff[d] = rem % kernel[d];
                rem /= kernel[d];
            }
            let row = &mut col[(ch * kprod + k) * npos..(ch * kprod + k + 1) * npos];
            if r == 2 {
                // Fast path for images: contiguous runs along the width.
                let (oh, ow) = (rs.out[0], rs.out[1]);
                let (ih, iw) = (input[0] as i64, input[1] as i64);
                for y in 0..oh {
                    let iy = (y * rs.strides[0] + koff[0] * rs.dil[0]) as i64 - rs.pb[0] as i64;
                    let dst = &mut row[y * ow..(y + 1) * ow];
                    if iy < 0 || iy >= ih {
                        dst.fill(pad);
                        continue;
                    }
                    let src = &xc[iy as usize * iw as usize..(iy as usize + 1) * iw as usize];
                    let x0 = (koff[1] * rs.dil[1]) as i64 - rs.pb[1] as i64;
                    let s = rs.strides[1] as i64;
                    for (xo, d) in dst.iter_mut().enumerate() {
                        let ix = x0 + xo as i64 * s;
                        *d = if ix >= 0 && ix < iw { src[ix as usize] } else { pad };
                    }
                }
                continue;
            }
            opos.iter_mut().for_each(|v| *v = 0);
            for d in row.iter_mut() {
                let mut off = Some(0usize);
                for dim in 0..r {
                    let p = (opos[dim] * rs.strides[dim] + koff[dim] * rs.dil[dim]) as i64 - rs.pb[dim] as i64;
                    off = match off {
                        Some(o) if p >= 0 && (p as usize) < input[dim] => Some(o + p as usize * istr[dim]),
                        _ => None,
                    };
                }
                *d = off.map(|o| xc[o]).unwrap_or(pad);
                for dim in (0..r).rev() {
                    opos[dim] += 1;
                    if opos[dim] < rs.out[dim] {
                        break;
                    }
                    opos[dim] = 0;
                }
            }
        }
    }
}

struct ConvOp {
    k: &'static Kernels,
    geo: Geometry,
    group: usize,
    /// Weights packed once by the shared kernels, when they are a constant f32 tensor.
    packed: Option<Arc<PackedConvWeights>>,
    /// Activation fused by the plan optimizer (`crate::optimize`).
    act: Activation,
}

/// The activation the plan optimizer fused into a Conv node, if any.
fn fused_activation(ctx: &BuildCtx<'_>) -> Result<Activation, OpError> {
    use crate::optimize::{ACTIVATION, ALPHA, BETA};
    let kind = ctx.attr_s(ACTIVATION, "")?;
    let (alpha, beta) = (ctx.attr_f(ALPHA, 0.0)?, ctx.attr_f(BETA, 0.0)?);
    Ok(match kind.as_str() {
        "" => Activation::None,
        "Relu" => Activation::Relu,
        "LeakyRelu" => Activation::LeakyRelu(alpha),
        "Clip" => Activation::Clip { min: alpha, max: beta },
        "HardSigmoid" => Activation::HardSigmoid { alpha, beta },
        "HardSwish" => Activation::HardSwish,
        other => return Err(OpError::Msg(format!("unknown fused activation `{other}`"))),
    })
}

fn conv(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let k = kernels()?;
    let geo = Geometry::from_ctx(ctx)?;
    let group = ctx.attr_i("group", 1)?;
    if group <= 0 {
        return Err(OpError::Msg(format!("group must be positive, is {group}")));
    }
    let group = group as usize;
    let packed = match ctx.const_input(1) {
        Some(w) if w.dtype() == DType::F32 && w.rank() >= 3 && w.shape()[0] % group == 0 => {
            let wv = w.view::<f32>()?;
            Some(Arc::new(k.pack_conv_weights(&wv, w.shape(), group).map_err(|e| OpError::Msg(e.to_string()))?))
        }
        _ => None,
    };
    Ok(Box::new(ConvOp { k, geo, group, packed, act: fused_activation(ctx)? }))
}

impl Kernel for ConvOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let xt = input(inputs, 0)?;
        let wt = input(inputs, 1)?;
        let bt = opt_input(inputs, 2)?;
        if xt.rank() < 3 || wt.rank() != xt.rank() {
            return Err(OpError::Msg(format!("X {:?} and W {:?} must have the same rank >= 3", xt.shape(), wt.shape())));
        }
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let m = wt.shape()[0];
        let g = self.group;
        if c % g != 0 || m % g != 0 || wt.shape()[1] * g != c {
            return Err(OpError::Msg(format!(
                "X has {c} channels and W is {:?}: incompatible with group {g}",
                wt.shape()
            )));
        }
        let kshape: Vec<usize> = wt.shape()[2..].to_vec();
        if let Some(ks) = &self.geo.kernel {
            if *ks != kshape {
                return Err(OpError::Msg(format!("kernel_shape {ks:?} differs from the weights' {kshape:?}")));
            }
        }
        let sp = &xt.shape()[2..];
        let rs = self.geo.resolve(sp, &kshape, false)?;
        let x: std::borrow::Cow<[f32]> = if xt.dtype() == DType::F32 { xt.view::<f32>()? } else { to_f32(xt)?.into() };
        let bias: Option<Vec<f32>> = bt.map(floats_of).transpose()?;
        if bias.as_ref().is_some_and(|b| b.len() != m) {
            return Err(OpError::Msg(format!("bias has {} values for {m} output channels", bias.as_ref().map_or(0, |b| b.len()))));
        }
        let params = ConvParams {
            kernel: kshape.clone(),
            strides: rs.strides.clone(),
            dilations: rs.dil.clone(),
            pads: rs.pb.iter().chain(&rs.pe).copied().collect(),
            group: g,
        };
        let mut shape = vec![n, m];
        shape.extend(&rs.out);
        let mut out = qaic_tensor::recycle::reuse_vec::<f32>(shape.iter().product());
        let kerr = |e: qaic_kernels::KernelError| OpError::Msg(e.to_string());
        match &self.packed {
            Some(p) => self.k.conv_packed(&params, &x, xt.shape(), p, bias.as_deref(), self.act, &mut out).map_err(kerr)?,
            None => {
                let w: std::borrow::Cow<[f32]> = if wt.dtype() == DType::F32 { wt.view::<f32>()? } else { to_f32(wt)?.into() };
                self.k.conv(&params, &x, xt.shape(), &w, wt.shape(), bias.as_deref(), self.act, &mut out).map_err(kerr)?
            }
        };
        if xt.dtype() == DType::F32 {
            return out1(Tensor::from_vec(shape, out)?);
        }
        out1(from_f32(xt.dtype(), shape, &out)?)
    }
}

struct ConvTransposeOp {
    k: &'static Kernels,
    geo: Geometry,
    group: usize,
    output_padding: Option<Vec<usize>>,
    output_shape: Option<Vec<usize>>,
}

fn conv_transpose(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let group = ctx.attr_i("group", 1)?;
    if group <= 0 {
        return Err(OpError::Msg(format!("group must be positive, is {group}")));
    }
    Ok(Box::new(ConvTransposeOp {
        k: kernels()?,
        geo: Geometry::from_ctx(ctx)?,
        group: group as usize,
        output_padding: ctx.attr_ints("output_padding")?.map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()),
        output_shape: ctx.attr_ints("output_shape")?.map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()),
    }))
}

impl Kernel for ConvTransposeOp {
    fn run(&self, _: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        let kerr = |e: qaic_kernels::KernelError| OpError::Msg(e.to_string());
        let xt = input(inputs, 0)?;
        let wt = input(inputs, 1)?;
        let bias = opt_input(inputs, 2)?.map(floats_of).transpose()?;
        if xt.rank() < 3 || wt.rank() != xt.rank() {
            return Err(OpError::Msg(format!("X {:?} and W {:?} must have the same rank >= 3", xt.shape(), wt.shape())));
        }
        let r = xt.rank() - 2;
        let (n, c) = (xt.shape()[0], xt.shape()[1]);
        let g = self.group;
        if wt.shape()[0] != c || c % g != 0 {
            return Err(OpError::Msg(format!("W {:?} does not match {c} input channels and group {g}", wt.shape())));
        }
        let mg = wt.shape()[1];
        let m = mg * g;
        let kshape: Vec<usize> = wt.shape()[2..].to_vec();
        let sp = &xt.shape()[2..];
        let strides = self.geo.strides.clone().unwrap_or_else(|| vec![1; r]);
        let dil = self.geo.dilations.clone().unwrap_or_else(|| vec![1; r]);
        let opad = self.output_padding.clone().unwrap_or_else(|| vec![0; r]);
        let ext = |i: usize| (kshape[i] - 1) * dil[i] + 1;
        let full = |i: usize| strides[i] * (sp[i] - 1) + opad.get(i).copied().unwrap_or(0) + ext(i);
        let (pb, out_sp): (Vec<i64>, Vec<usize>) = match (&self.geo.pads, self.geo.auto_pad.as_str()) {
            // Pads are derived from the output shape only under SAME_*; otherwise missing pads are
            // zeros and an explicit output_shape just sets the result size (ONNX reference).
            (None, "SAME_UPPER") | (None, "SAME_LOWER") => {
                let os: Vec<usize> = match &self.output_shape {
                    Some(o) => o[o.len() - r..].to_vec(),
                    None => (0..r).map(|i| sp[i] * strides[i]).collect(),
                };
                let pb = qaic_kernels::conv::conv_transpose_same_pads(sp, &kshape, &strides, &dil, &opad, &os, self.geo.auto_pad == "SAME_UPPER")
                    .into_iter()
                    .map(|p| p.0)
                    .collect();
                (pb, os)
            }
            (pads, _) => {
                let p: Vec<i64> = pads.clone().unwrap_or_else(|| vec![0; 2 * r]);
                let os: Vec<usize> = match &self.output_shape {
                    Some(o) => o[o.len() - r..].to_vec(),
                    None => (0..r).map(|i| (full(i) as i64 - p[i] - p[i + r]).max(0) as usize).collect(),
                };
                (p[..r].to_vec(), os)
            }
        };
        let x = to_f32(xt)?;
        let w = to_f32(wt)?;
        let isz: usize = sp.iter().product();
        let osz: usize = out_sp.iter().product();
        let kprod: usize = kshape.iter().product();
        let cg = c / g;
        let rows = mg * kprod;
        let ostr = qaic_tensor::strides(&out_sp);
        let mut out = vec![0f32; n * m * osz];
        let mut cols = vec![0f32; rows * isz];
        for b in 0..n {
            for gi in 0..g {
                // cols[rows, isz] = W[g]^T (rows x cg) * X[b, g] (cg x isz)
                let wg = &w[gi * cg * rows..(gi + 1) * cg * rows];
                let am = Mat::row_major(wg, cg, rows).map_err(kerr)?.t();
                let bm = Mat::row_major(&x[(b * c + gi * cg) * isz..(b * c + (gi + 1) * cg) * isz], cg, isz).map_err(kerr)?;
                let mut cm = MatMut::row_major(&mut cols, rows, isz).map_err(kerr)?;
                self.k.gemm(1.0, am, bm, 0.0, &mut cm).map_err(kerr)?;
                // col2im: scatter-add each (out channel, kernel offset, input position), a
                // strided run along the last spatial axis at a time.
                let mut koff = vec![0usize; r];
                let last = r - 1;
                let (il, sl) = (sp[last], strides[last]);
                let outer_n: usize = sp[..last].iter().product();
                let mut opos = vec![0usize; last];
                for row in 0..rows {
                    let oc = row / kprod;
                    let mut rem = row % kprod;
                    for d in (0..r).rev() {
                        koff[d] = rem % kshape[d];
                        rem /= kshape[d];
                    }
                    let dst = &mut out[(b * m + gi * mg + oc) * osz..(b * m + gi * mg + oc + 1) * osz];
                    let src_row = &cols[row * isz..(row + 1) * isz];
                    // Input positions iw whose output column lies inside [0, out_sp[last]).
                    let shift = (koff[last] * dil[last]) as i64 - pb[last];
                    let lo = if shift < 0 { ((-shift) as usize).div_ceil(sl) } else { 0 }.min(il);
                    let hi = if (out_sp[last] as i64) > shift {
                        ((out_sp[last] as i64 - shift) as usize).div_ceil(sl).min(il)
                    } else {
                        0
                    }
                    .max(lo);
                    opos.iter_mut().for_each(|v| *v = 0);
                    for outer in 0..outer_n {
                        let mut base = Some(0usize);
                        for d in 0..last {
                            let p = (opos[d] * strides[d] + koff[d] * dil[d]) as i64 - pb[d];
                            base = match base {
                                Some(o) if p >= 0 && (p as usize) < out_sp[d] => Some(o + p as usize * ostr[d]),
                                _ => None,
                            };
                        }
                        if let Some(o) = base {
                            let src = &src_row[outer * il..(outer + 1) * il];
                            for iw in lo..hi {
                                let col = (iw as i64 * sl as i64 + shift) as usize;
                                dst[o + col] += src[iw];
                            }
                        }
                        for d in (0..last).rev() {
                            opos[d] += 1;
                            if opos[d] < sp[d] {
                                break;
                            }
                            opos[d] = 0;
                        }
                    }
                }
            }
        }
        if let Some(bv) = bias {
            for b in 0..n {
                for oc in 0..m {
                    for v in &mut out[(b * m + oc) * osz..(b * m + oc + 1) * osz] {
                        *v += bv[oc];
                    }
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend(&out_sp);
        out1(from_f32(xt.dtype(), shape, &out)?)
    }
}

/// [`conv_int`] by the packed SIMD integer kernel (`qaic_kernels::quant`) when both operands
/// are 8/16-bit, the input zero point is a scalar and the weight zero point a scalar or one per
/// output channel; `None` otherwise. Same integers as the general path (i32, wrapping).
fn conv_int_fast(x: &Tensor, w: &Tensor, x_zp: Option<&Tensor>, w_zp: Option<&Tensor>, geo: &Geometry, group: usize) -> Option<Result<super::quant::IntResult, OpError>> {
    use qaic_kernels::quant::{conv_integer_packed, IntPath, PackedConvWeights, ZeroPoint};
    let r = x.rank().checked_sub(2)?;
    if !(1..=3).contains(&r) || w.rank() != x.rank() || x_zp.is_some_and(|z| z.len() != 1 || z.dtype() != x.dtype()) {
        return None;
    }
    let m = w.shape()[0];
    if w_zp.is_some_and(|z| (z.len() != 1 && z.len() != m) || z.dtype() != w.dtype()) {
        return None;
    }
    let kshape: Vec<usize> = w.shape()[2..].to_vec();
    let rs = match geo.resolve(&x.shape()[2..], &kshape, false) {
        Ok(rs) => rs,
        Err(e) => return Some(Err(e)),
    };
    let params = ConvParams {
        kernel: kshape,
        strides: rs.strides.clone(),
        dilations: rs.dil.clone(),
        pads: rs.pb.iter().chain(&rs.pe).copied().collect(),
        group,
    };
    macro_rules! qint {
        ($d:expr, $T:ident, $body:block) => {
            match $d {
                DType::U8 => { type $T = u8; $body }
                DType::I8 => { type $T = i8; $body }
                DType::U16 => { type $T = u16; $body }
                DType::I16 => { type $T = i16; $body }
                _ => None,
            }
        };
    }
    qint!(x.dtype(), X, {
        qint!(w.dtype(), W, {
            let run = || -> Result<super::quant::IntResult, OpError> {
                let kerr = |e: qaic_kernels::KernelError| OpError::Msg(e.to_string());
                let xv = x.view::<X>()?;
                let wv = w.view::<W>()?;
                let xz = match x_zp { Some(z) => z.view::<X>()?[0], None => X::default() };
                let wzv = w_zp.map(|z| z.view::<W>()).transpose()?;
                let wz = match &wzv {
                    Some(z) if z.len() == 1 => ZeroPoint::Scalar(z[0]),
                    Some(z) => ZeroPoint::PerChannel(&z[..]),
                    None => ZeroPoint::Scalar(W::default()),
                };
                let packed = PackedConvWeights::new::<X, W>(IntPath::current(), &wv, w.shape(), wz, group).map_err(kerr)?;
                let mut shape = vec![x.shape()[0], m];
                shape.extend(&rs.out);
                let mut out = vec![0i32; shape.iter().product()];
                let got = conv_integer_packed(&params, &xv, x.shape(), xz, &packed, &mut out).map_err(kerr)?;
                if got != shape {
                    return Err(OpError::Msg(format!("integer convolution output {got:?}, expected {shape:?}")));
                }
                Ok((shape, out))
            };
            Some(run())
        })
    })
}

/// Integer convolution with zero points, i32 accumulation (ConvInteger / QLinearConv core).
#[allow(clippy::too_many_arguments)]
fn conv_int(
    x: &Tensor,
    w: &Tensor,
    x_zp: Option<&Tensor>,
    w_zp: Option<&Tensor>,
    geo: &Geometry,
    group: usize,
) -> Result<(Vec<usize>, Vec<i32>), OpError> {
    if let Some(r) = conv_int_fast(x, w, x_zp, w_zp, geo, group) {
        return r;
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let m = w.shape()[0];
    let g = group;
    let kshape: Vec<usize> = w.shape()[2..].to_vec();
    let sp = &x.shape()[2..];
    let rs = geo.resolve(sp, &kshape, false)?;
    let xz = x_zp.map(int_values).transpose()?.map(|v| v[0]).unwrap_or(0);
    let wz: Vec<i64> = w_zp.map(int_values).transpose()?.unwrap_or_else(|| vec![0]);
    let xv = int_values(x)?;
    let wv = int_values(w)?;
    let isz: usize = sp.iter().product();
    let osz: usize = rs.out.iter().product();
    let kprod: usize = kshape.iter().product();
    let (cg, mg) = (c / g, m / g);
    let kdim = cg * kprod;
    let mut col = vec![0i64; kdim * osz];
    let mut out = vec![0i64; n * m * osz];
    for b in 0..n {
        for gi in 0..g {
            // Padding reads as the input zero point, so it contributes nothing after subtraction.
            im2col(&xv[(b * c + gi * cg) * isz..(b * c + (gi + 1) * cg) * isz], cg, sp, &kshape, &rs, xz, &mut col);
            for oc in 0..mg {
                let mo = gi * mg + oc;
                let z = if wz.len() == 1 { wz[0] } else { wz[mo] };
                let wr = &wv[mo * kdim..(mo + 1) * kdim];
                let dst = &mut out[(b * m + mo) * osz..(b * m + mo + 1) * osz];
                for (kk, &wk) in wr.iter().enumerate() {
                    let wk = wk - z;
                    if wk == 0 {
                        continue;
                    }
                    for (d, &s) in dst.iter_mut().zip(&col[kk * osz..(kk + 1) * osz]) {
                        *d += wk * (s - xz);
                    }
                }
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(&rs.out);
    // i32 accumulation, wrapping like the kernels.
    Ok((shape, out.into_iter().map(|v| v as i32).collect()))
}

fn conv_integer(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let geo = Geometry::from_ctx(ctx)?;
    let group = ctx.attr_i("group", 1)?.max(1) as usize;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let (shape, v) = conv_int(input(inputs, 0)?, input(inputs, 1)?, opt_input(inputs, 2)?, opt_input(inputs, 3)?, &geo, group)?;
        out1(Tensor::from_vec(shape, v)?)
    }))
}

fn qlinear_conv(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let geo = Geometry::from_ctx(ctx)?;
    let group = ctx.attr_i("group", 1)?.max(1) as usize;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let xs = floats_of(input(inputs, 1)?)?[0] as f64;
        let w = input(inputs, 3)?;
        let ws = floats_of(input(inputs, 4)?)?;
        let ys = floats_of(input(inputs, 6)?)?[0] as f64;
        let yz_t = input(inputs, 7)?;
        let yz = int_values(yz_t)?[0] as f64;
        let bias = opt_input(inputs, 8)?.map(int_values).transpose()?;
        let (shape, acc) = conv_int(x, w, Some(input(inputs, 2)?), Some(input(inputs, 5)?), &geo, group)?;
        let (lo, hi) = qrange(yz_t.dtype())?;
        let m = shape[1];
        let osz: usize = shape[2..].iter().product();
        let q: Vec<i64> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let oc = (i / osz) % m;
                let wsc = if ws.len() == 1 { ws[0] } else { ws[oc] } as f64;
                let a = a as i64 + bias.as_ref().map(|b| b[oc]).unwrap_or(0);
                let v = a as f64 * (xs * wsc / ys);
                (v.round_ties_even() + yz).clamp(lo, hi) as i64
            })
            .collect();
        out1(int_tensor(yz_t.dtype(), shape, &q)?)
    }))
}
