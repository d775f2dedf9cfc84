//! Linear quantization ops: QuantizeLinear, DequantizeLinear (per-tensor, per-axis, blocked),
//! DynamicQuantizeLinear, MatMulInteger, QLinearMatMul.

use qaic_tensor::{DType, Tensor, Value};

use super::util::{floats_of, input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("QuantizeLinear", 10, quantize_linear);
    r.add("DequantizeLinear", 10, dequantize_linear);
    r.add("DynamicQuantizeLinear", 11, |_| Ok(Box::new(dynamic_quantize_linear)));
    r.add("MatMulInteger", 10, |_| Ok(Box::new(matmul_integer)));
    r.add("QLinearMatMul", 10, |_| Ok(Box::new(qlinear_matmul)));
}

type Outs = Result<Vec<Option<Value>>, OpError>;

/// Integer range of a quantized type.
pub(crate) fn qrange(d: DType) -> Result<(f64, f64), OpError> {
    Ok(match d {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        DType::U2 => (0.0, 3.0),
        DType::I2 => (-2.0, 1.0),
        d => return Err(OpError::Unsupported(format!("quantized type {d}"))),
    })
}

/// Integer values of any integer tensor (packed sub-byte types unpacked) as i64.
pub(crate) fn int_values(t: &Tensor) -> Result<Vec<i64>, OpError> {
    match t.dtype() {
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            let bits = t.dtype().bits();
            let per = 8 / bits;
            let mask = (1u8 << bits) - 1;
            let signed = t.dtype().is_signed_int();
            let raw = t.raw_bytes()?;
            Ok((0..t.len())
                .map(|i| {
                    let v = (raw[i / per] >> ((i % per) * bits)) & mask;
                    if signed && v & (1 << (bits - 1)) != 0 { v as i64 - (1 << bits) } else { v as i64 }
                })
                .collect())
        }
        _ => ints_of(t),
    }
}

/// Whether `d` is a float8/float4 type (quantized with a float cast, not integer rounding).
fn is_small_float(d: DType) -> bool {
    matches!(d, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F4E2M1)
}

/// Codes of a float8 (one per byte) or float4 (two per byte, low nibble first) tensor.
fn small_float_codes(t: &Tensor) -> Result<Vec<u8>, OpError> {
    let raw = t.raw_bytes()?;
    Ok(if t.dtype() == DType::F4E2M1 { (0..t.len()).map(|i| (raw[i / 2] >> ((i % 2) * 4)) & 0xf).collect() } else { raw.to_vec() })
}

/// Decoded values of a float8/float4 tensor.
fn small_float_values(t: &Tensor) -> Result<Vec<f32>, OpError> {
    small_float_codes(t)?
        .into_iter()
        .map(|c| qaic_kernels::cast::small_float_to_f32(c, t.dtype()).map_err(|e| OpError::Msg(e.to_string())))
        .collect()
}

fn small_float_tensor(d: DType, shape: Vec<usize>, codes: &[u8]) -> Result<Tensor, OpError> {
    let raw: Vec<u8> = if d == DType::F4E2M1 {
        let mut r = vec![0u8; codes.len().div_ceil(2)];
        for (i, &c) in codes.iter().enumerate() {
            r[i / 2] |= (c & 0xf) << ((i % 2) * 4);
        }
        r
    } else {
        codes.to_vec()
    };
    Ok(Tensor::from_bytes(d, shape, bytes::Bytes::from(raw))?)
}

/// Builds an integer tensor of type `d` from values already in range.
pub(crate) fn int_tensor(d: DType, shape: Vec<usize>, v: &[i64]) -> Result<Tensor, OpError> {
    Ok(match d {
        DType::U8 => Tensor::from_vec(shape, v.iter().map(|&x| x as u8).collect())?,
        DType::I8 => Tensor::from_vec(shape, v.iter().map(|&x| x as i8).collect())?,
        DType::U16 => Tensor::from_vec(shape, v.iter().map(|&x| x as u16).collect())?,
        DType::I16 => Tensor::from_vec(shape, v.iter().map(|&x| x as i16).collect())?,
        DType::I32 => Tensor::from_vec(shape, v.iter().map(|&x| x as i32).collect())?,
        DType::I4 | DType::U4 | DType::I2 | DType::U2 => {
            let bits = d.bits();
            let per = 8 / bits;
            let mask = (1u8 << bits) - 1;
            let mut raw = vec![0u8; d.storage_bytes(v.len())];
            for (i, &x) in v.iter().enumerate() {
                raw[i / per] |= ((x as u8) & mask) << ((i % per) * bits);
            }
            Tensor::from_bytes(d, shape, bytes::Bytes::from(raw))?
        }
        d => return Err(OpError::Unsupported(format!("quantized type {d}"))),
    })
}

/// Index into a per-tensor / per-axis / blocked parameter for each element of `shape`.
fn param_index(shape: &[usize], pshape: &[usize], axis: i64, block: i64) -> Result<Vec<usize>, OpError> {
    let n: usize = shape.iter().product();
    let pn: usize = pshape.iter().product();
    if pn == 1 {
        return Ok(vec![0; n]);
    }
    let rank = shape.len();
    let a = norm_axis(axis, rank)?;
    if pshape.len() == 1 && block == 0 {
        if pshape[0] != shape[a] {
            return Err(OpError::Msg(format!("{} per-axis parameters for axis {a} of size {}", pshape[0], shape[a])));
        }
        let inner: usize = shape[a + 1..].iter().product();
        return Ok((0..n).map(|i| (i / inner) % shape[a]).collect());
    }
    // Blocked: parameter shape equals input shape except along `axis`, divided by block size.
    if pshape.len() != rank || block <= 0 {
        return Err(OpError::Msg(format!("parameter shape {pshape:?} does not fit input {shape:?}")));
    }
    let b = block as usize;
    let pstr = qaic_tensor::strides(pshape);
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    for _ in 0..n {
        let mut off = 0;
        for d in 0..rank {
            let pi = if d == a { idx[d] / b } else { idx[d] };
            if pi >= pshape[d] {
                return Err(OpError::Msg(format!("parameter shape {pshape:?} too small for input {shape:?} with block {b}")));
            }
            off += pi * pstr[d];
        }
        out.push(off);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Per-element indices into the scale and zero point (per-tensor, per-axis or blocked) and the
/// zero point's values read with `read` (`default` when it is absent).
fn qparams<Z>(
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    axis: i64,
    block: i64,
    read: fn(&Tensor) -> Result<Vec<Z>, OpError>,
    default: Vec<Z>,
) -> Result<(Vec<usize>, Vec<Z>, Vec<usize>), OpError> {
    let sidx = param_index(x.shape(), scale.shape(), axis, block)?;
    let (zv, zidx) = match zp {
        Some(z) => (read(z)?, param_index(x.shape(), z.shape(), axis, block)?),
        None => (default, vec![0; x.len()]),
    };
    Ok((sidx, zv, zidx))
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 { 2.0 * (v / 2.0).round() } else { r }
}

/// Per-tensor or per-axis f32 scales as `(scales, inner)`: element `i` uses scale
/// `(i / inner) % scales.len()`. `None` for blocked or non-f32 parameters (general path).
fn axis_scales(x: &Tensor, scale: &Tensor, axis: i64, block: i64) -> Option<(Vec<f32>, usize)> {
    if scale.dtype() != DType::F32 || block != 0 || x.is_empty() {
        return None;
    }
    let sv = scale.view::<f32>().ok()?.into_owned();
    if sv.len() == 1 {
        return Some((sv, 1));
    }
    let a = norm_axis(axis, x.rank()).ok()?;
    if scale.rank() != 1 || sv.len() != x.shape()[a] {
        return None;
    }
    Some((sv, x.shape()[a + 1..].iter().product::<usize>().max(1)))
}

/// Zero points of type `Q` matching `n` scales (absent: one zero).
fn axis_zero_points<Q: qaic_tensor::Element + qaic_kernels::quant::QInt>(zp: Option<&Tensor>, n: usize) -> Option<Vec<Q>> {
    match zp {
        None => Some(vec![Q::default()]),
        Some(z) if z.len() == 1 || z.len() == n => Some(z.view::<Q>().ok()?.into_owned()),
        Some(_) => None,
    }
}

/// Runs `$body` with `$Q` bound to the Rust type of an 8/16-bit integer dtype.
macro_rules! with_qint {
    ($d:expr, $Q:ident, $body:block, $other:expr) => {
        match $d {
            DType::U8 => { type $Q = u8; $body }
            DType::I8 => { type $Q = i8; $body }
            DType::U16 => { type $Q = u16; $body }
            DType::I16 => { type $Q = i16; $body }
            _ => $other,
        }
    };
}

/// QuantizeLinear of f32 input to an 8/16-bit type with per-tensor/per-axis f32 scales, by the
/// vectorised kernel (same bits as the general path below). `None`: not this case.
fn quantize_fast(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, target: DType, axis: i64, block: i64) -> Option<Result<Tensor, OpError>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let (sv, inner) = axis_scales(x, scale, axis, block)?;
    with_qint!(target, Q, {
        let zv = axis_zero_points::<Q>(zp, sv.len())?;
        let xv = x.view::<f32>().ok()?;
        let mut out = vec![Q::default(); x.len()];
        Some(
            qaic_kernels::quant::quantize(&xv, &sv, &zv, inner, qaic_kernels::quant::QuantizeRounding::Onnx, &mut out)
                .map_err(|e| OpError::Msg(e.to_string()))
                .and_then(|_| Ok(Tensor::from_vec(x.shape().to_vec(), out)?)),
        )
    }, None)
}

/// DequantizeLinear of an 8/16-bit input with per-tensor/per-axis f32 scales, vectorised.
fn dequantize_fast(x: &Tensor, scale: &Tensor, zp: Option<&Tensor>, axis: i64, block: i64) -> Option<Result<Tensor, OpError>> {
    let (sv, inner) = axis_scales(x, scale, axis, block)?;
    if zp.is_some_and(|z| z.dtype() != x.dtype()) {
        return None;
    }
    with_qint!(x.dtype(), Q, {
        let zv = axis_zero_points::<Q>(zp, sv.len())?;
        let xv = x.view::<Q>().ok()?;
        let mut out = vec![0f32; x.len()];
        Some(
            qaic_kernels::quant::dequantize(&xv, &sv, &zv, inner, &mut out)
                .map_err(|e| OpError::Msg(e.to_string()))
                .and_then(|_| Ok(Tensor::from_vec(x.shape().to_vec(), out)?)),
        )
    }, None)
}

fn quantize_linear(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", 1)?;
    let block = ctx.attr_i("block_size", 0)?;
    let out_dtype = ctx.attr_i("output_dtype", 0)?;
    let saturate = ctx.attr_i("saturate", 1)?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let scale = input(inputs, 1)?;
        let zp = opt_input(inputs, 2)?;
        let target = match (zp, out_dtype) {
            (Some(z), _) => z.dtype(),
            (None, 0) => DType::U8,
            (None, d) => DType::from_onnx(d as i32).ok_or_else(|| OpError::Msg(format!("unknown output_dtype {d}")))?,
        };
        if is_small_float(target) {
            let xv = floats_of(x)?;
            let sv = floats_of(scale)?;
            let (sidx, zv, zidx) = qparams(x, scale, zp, axis, block, small_float_values, vec![0.0])?;
            let codes: Vec<u8> = xv
                .iter()
                .enumerate()
                .map(|(i, &v)| qaic_kernels::cast::f32_to_small_float(v / sv[sidx[i]] + zv[zidx[i]], target, saturate != 0))
                .collect::<Result<_, _>>()
                .map_err(|e| OpError::Msg(e.to_string()))?;
            return out1(small_float_tensor(target, x.shape().to_vec(), &codes)?);
        }
        if let Some(t) = quantize_fast(x, scale, zp, target, axis, block) {
            return out1(t?);
        }
        let (lo, hi) = qrange(target)?;
        let xv: Vec<f64> = match x.dtype() {
            DType::I32 => ints_of(x)?.into_iter().map(|v| v as f64).collect(),
            _ => floats_of(x)?.into_iter().map(|v| v as f64).collect(),
        };
        // Division happens in the scale's precision (f32 for f32 scales), as the reference does.
        let sv = floats_of(scale)?;
        let (sidx, zv, zidx) = qparams(x, scale, zp, axis, block, int_values, vec![0])?;
        let q: Vec<i64> = xv
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let s = sv[sidx[i]];
                let r = if x.dtype() == DType::F32 { round_half_even((v as f32 / s) as f64) } else { round_half_even(v / s as f64) };
                (r + zv[zidx[i]] as f64).clamp(lo, hi) as i64
            })
            .collect();
        out1(int_tensor(target, x.shape().to_vec(), &q)?)
    }))
}

fn dequantize_linear(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", 1)?;
    let block = ctx.attr_i("block_size", 0)?;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let x = input(inputs, 0)?;
        let scale = input(inputs, 1)?;
        let zp = opt_input(inputs, 2)?;
        if is_small_float(x.dtype()) {
            let xv = small_float_values(x)?;
            let sv = floats_of(scale)?;
            let (sidx, zv, zidx) = qparams(x, scale, zp, axis, block, small_float_values, vec![0.0])?;
            let y: Vec<f32> = xv.iter().enumerate().map(|(i, &q)| (q - zv[zidx[i]]) * sv[sidx[i]]).collect();
            return out1(super::linalg::from_f32(scale.dtype(), x.shape().to_vec(), &y)?);
        }
        if !x.dtype().is_int() {
            return Err(OpError::Unsupported(format!("DequantizeLinear of {}", x.dtype())));
        }
        if let Some(t) = dequantize_fast(x, scale, zp, axis, block) {
            return out1(t?);
        }
        let xv = int_values(x)?;
        let sv = floats_of(scale)?;
        let (sidx, zv, zidx) = qparams(x, scale, zp, axis, block, int_values, vec![0])?;
        let y: Vec<f32> = xv.iter().enumerate().map(|(i, &q)| ((q - zv[zidx[i]]) as f32) * sv[sidx[i]]).collect();
        out1(super::linalg::from_f32(scale.dtype(), x.shape().to_vec(), &y)?)
    }))
}

fn dynamic_quantize_linear(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let x = input(inputs, 0)?;
    let xv = floats_of(x)?;
    let (q, scale, zp) = dynamic_quantize_u8(&xv);
    Ok(vec![
        Some(Value::Tensor(Tensor::from_vec(x.shape().to_vec(), q)?)),
        Some(Value::Tensor(Tensor::scalar(scale))),
        Some(Value::Tensor(Tensor::scalar(zp))),
    ])
}

/// ONNX DynamicQuantizeLinear: uint8 with a range that always includes 0.
pub(crate) fn dynamic_quantize_u8(x: &[f32]) -> (Vec<u8>, f32, u8) {
    let mut lo = 0f32;
    let mut hi = 0f32;
    for &v in x {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let scale = (hi - lo) / 255.0;
    let zp = if scale == 0.0 { 0.0 } else { round_half_even(((0.0 - lo) / scale) as f64).clamp(0.0, 255.0) };
    let q = x
        .iter()
        .map(|&v| {
            let r = if scale == 0.0 { 0.0 } else { round_half_even((v / scale) as f64) };
            (r + zp).clamp(0.0, 255.0) as u8
        })
        .collect();
    (q, scale, zp as u8)
}

/// Integer matmul with zero points: i32 result of (A - a_zp) x (B - b_zp), batched NumPy-style.
/// `a_zp` is per-tensor or per-row of A; `b_zp` per-tensor or per-column of B.
pub(crate) fn int_matmul(a: &Tensor, b: &Tensor, a_zp: Option<&Tensor>, b_zp: Option<&Tensor>) -> Result<(Vec<usize>, Vec<i32>), OpError> {
    if let Some(r) = int_matmul_fast(a, b, a_zp, b_zp) {
        return r;
    }
    let shape = qaic_kernels::gemm::matmul_shape(a.shape(), b.shape()).map_err(|e| OpError::Msg(e.to_string()))?;
    let av = int_values(a)?;
    let bv = int_values(b)?;
    let a2: Vec<usize> = if a.rank() == 1 { vec![1, a.shape()[0]] } else { a.shape().to_vec() };
    let b2: Vec<usize> = if b.rank() == 1 { vec![b.shape()[0], 1] } else { b.shape().to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let n = b2[b2.len() - 1];
    let azv = a_zp.map(int_values).transpose()?.unwrap_or_else(|| vec![0]);
    let bzv = b_zp.map(int_values).transpose()?.unwrap_or_else(|| vec![0]);
    let ab = &a2[..a2.len() - 2];
    let bb = &b2[..b2.len() - 2];
    let batch = qaic_tensor::broadcast(ab, bb).ok_or("batch dimensions do not broadcast")?;
    let ia = super::util::broadcast_index(ab, &batch);
    let ib = super::util::broadcast_index(bb, &batch);
    let mut out = vec![0i32; shape.iter().product()];
    for (bi, (&xa, &xb)) in ia.iter().zip(&ib).enumerate() {
        let (ao, bo, oo) = (xa as usize * m * k, xb as usize * k * n, bi * m * n);
        for i in 0..m {
            let az = if azv.len() == 1 { azv[0] } else { azv[i % azv.len()] };
            for j in 0..n {
                let bz = if bzv.len() == 1 { bzv[0] } else { bzv[j % bzv.len()] };
                let mut acc: i64 = 0;
                for p in 0..k {
                    acc += (av[ao + i * k + p] - az) * (bv[bo + p * n + j] - bz);
                }
                out[oo + i * n + j] = acc as i32;
            }
        }
    }
    Ok((shape, out))
}

/// [`int_matmul`] by the SIMD integer GEMM (`qaic_kernels::quant::matmul_integer`) for 8/16-bit
/// operands with scalar, per-row (A) or per-column (B) zero points of the operand's type.
/// Shape and i32 values of an integer matmul or convolution.
pub(crate) type IntResult = (Vec<usize>, Vec<i32>);

fn int_matmul_fast(a: &Tensor, b: &Tensor, a_zp: Option<&Tensor>, b_zp: Option<&Tensor>) -> Option<Result<IntResult, OpError>> {
    use qaic_kernels::quant::ZeroPoint;
    if a.rank() < 2 || b.rank() < 2 {
        return None;
    }
    let (m, n) = (a.shape()[a.rank() - 2], b.shape()[b.rank() - 1]);
    if a_zp.is_some_and(|z| z.dtype() != a.dtype() || (z.len() != 1 && z.len() != m)) || b_zp.is_some_and(|z| z.dtype() != b.dtype() || (z.len() != 1 && z.len() != n)) {
        return None;
    }
    with_qint!(a.dtype(), A, {
        with_qint!(b.dtype(), B, {
            let run = || -> Result<IntResult, OpError> {
                let av = a.view::<A>()?;
                let bv = b.view::<B>()?;
                let azv = a_zp.map(|z| z.view::<A>()).transpose()?;
                let bzv = b_zp.map(|z| z.view::<B>()).transpose()?;
                let za = match &azv { Some(z) if z.len() > 1 => ZeroPoint::PerChannel(&z[..]), Some(z) => ZeroPoint::Scalar(z[0]), None => ZeroPoint::Scalar(A::default()) };
                let zb = match &bzv { Some(z) if z.len() > 1 => ZeroPoint::PerChannel(&z[..]), Some(z) => ZeroPoint::Scalar(z[0]), None => ZeroPoint::Scalar(B::default()) };
                let shape = qaic_kernels::gemm::matmul_shape(a.shape(), b.shape()).map_err(|e| OpError::Msg(e.to_string()))?;
                let mut out = vec![0i32; shape.iter().product()];
                qaic_kernels::quant::matmul_integer(&av, a.shape(), za, &bv, b.shape(), zb, &mut out).map_err(|e| OpError::Msg(e.to_string()))?;
                Ok((shape, out))
            };
            Some(run())
        }, None)
    }, None)
}

fn matmul_integer(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let (shape, out) = int_matmul(input(inputs, 0)?, input(inputs, 1)?, opt_input(inputs, 2)?, opt_input(inputs, 3)?)?;
    out1(Tensor::from_vec(shape, out)?)
}

fn qlinear_matmul(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let a = input(inputs, 0)?;
    let a_scale = floats_of(input(inputs, 1)?)?;
    let a_zp = input(inputs, 2)?;
    let b = input(inputs, 3)?;
    let b_scale = floats_of(input(inputs, 4)?)?;
    let b_zp = input(inputs, 5)?;
    let y_scale = floats_of(input(inputs, 6)?)?;
    let y_zp = input(inputs, 7)?;
    let (shape, acc) = int_matmul(a, b, Some(a_zp), Some(b_zp))?;
    let n = *shape.last().unwrap_or(&1);
    let (lo, hi) = qrange(y_zp.dtype())?;
    let yz = int_values(y_zp)?[0] as f64;
    let q: Vec<i64> = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let bs = if b_scale.len() == 1 { b_scale[0] } else { b_scale[i % n] };
            let s = (a_scale[0] as f64 * bs as f64) / y_scale[0] as f64;
            (round_half_even(v as f64 * s) + yz).clamp(lo, hi) as i64
        })
        .collect();
    out1(int_tensor(y_zp.dtype(), shape, &q)?)
}
