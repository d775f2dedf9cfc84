//! What the quantizer knows about ONNX op types: which exist, which have a quantized kernel, and
//! which inputs are weights or biases.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// Whether `op` is an op type the interpreter knows (in any domain): precision lists name ONNX
/// op types, so an unknown name is almost certainly a typo.
pub fn is_known_op_type(op: &str) -> bool {
    static KNOWN: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    KNOWN
        .get_or_init(|| qaic_interp::Registry::standard().supported().into_iter().map(|(_, o, _)| o).collect())
        .contains(op)
}

/// The private op domain of qaic-quant.
pub const DOMAIN: &str = "qaic.quant";

/// `qaic.quant.Quantize(x: f32, scale: f32 scalar, zero_point: T scalar) -> T` with Glow's
/// rounding: `clamp(rne(fl32(fl32(x / scale) + zero_point)), T limits)`. ONNX `QuantizeLinear`
/// rounds `x / scale` before adding the zero point, which differs from Glow when the addition
/// rounds in float32 (e.g. x/scale = 1.5000001, zero point −55).
pub const QUANTIZE_OP: &str = "Quantize";

/// The interpreter registry to run graphs made by this crate: every standard op plus
/// `qaic.quant.Quantize`.
pub fn registry() -> qaic_interp::Registry {
    let mut r = qaic_interp::Registry::standard();
    r.add_in(DOMAIN, QUANTIZE_OP, 1, build_quantize);
    r.add_in(DOMAIN, crate::integer::QCONV_OP, 1, build_qconv);
    r.add_in(DOMAIN, crate::integer::QMATMUL_OP, 1, build_qmatmul);
    r
}

use qaic_interp::{BuildCtx, Kernel, OpError, RunCtx};
use qaic_kernels::quant::{IntPath, QConvGlow, QMatMulGlow, Q8};
use qaic_tensor::{DType, Tensor, Value};

fn q8(d: DType, what: &str) -> Result<Q8, OpError> {
    match d {
        DType::I8 => Ok(Q8::I8),
        DType::U8 => Ok(Q8::U8),
        d => Err(OpError::Msg(format!("{what} of type {d}: only int8 and uint8 are supported"))),
    }
}

fn q8_dtype(q: Q8) -> DType {
    match q {
        Q8::I8 => DType::I8,
        Q8::U8 => DType::U8,
    }
}

/// The constant inputs 1..=6 of QConv / QMatMul: (weights, bias, multiplier, weight zero
/// points, input zero point, output zero point).
struct QConsts<'a> {
    w: &'a Tensor,
    bias: Vec<i32>,
    mult: Vec<f32>,
    w_zp: Vec<i32>,
    x: (Q8, i32),
    y: (Q8, i32),
}

fn qconsts<'a>(ctx: &BuildCtx<'a>) -> Result<QConsts<'a>, OpError> {
    let c = |i: usize, what: &str| ctx.const_input(i).ok_or_else(|| OpError::Msg(format!("input {i} ({what}) must be a constant")));
    let ints = |t: &Tensor, what: &str| crate::integer::int_values(t).map(|v| v.into_iter().map(|x| x as i32).collect::<Vec<i32>>()).ok_or_else(|| OpError::Msg(format!("{what} is not an integer tensor")));
    let w = c(1, "weights")?;
    let bias = c(2, "bias")?;
    if bias.dtype() != DType::I32 {
        return Err(OpError::Msg(format!("bias of type {}: expected int32", bias.dtype())));
    }
    let zp = |i: usize, what: &str| -> Result<(Q8, i32), OpError> {
        let t = c(i, what)?;
        if t.len() != 1 {
            return Err(OpError::Msg(format!("{what} has {} values, expected one", t.len())));
        }
        Ok((q8(t.dtype(), what)?, ints(t, what)?[0]))
    };
    Ok(QConsts {
        w,
        bias: ints(bias, "bias")?,
        mult: c(3, "multiplier")?.to_vec::<f32>()?,
        w_zp: ints(c(4, "weight zero point")?, "weight zero point")?,
        x: zp(5, "input zero point")?,
        y: zp(6, "output zero point")?,
    })
}

fn kerr(e: qaic_kernels::KernelError) -> OpError {
    OpError::Msg(e.to_string())
}

/// Runs a prepared integer op on input 0 (raw 8-bit bytes) into a fresh tensor.
fn run_q8(
    x_type: Q8,
    y_type: Q8,
    inputs: &[Option<&Value>],
    f: impl Fn(&[u8], &[usize], &mut [u8]) -> Result<Vec<usize>, qaic_kernels::KernelError>,
    out_shape: impl Fn(&[usize]) -> Result<Vec<usize>, qaic_kernels::KernelError>,
) -> Result<Vec<Option<Value>>, OpError> {
    let x = inputs.first().copied().flatten().and_then(|v| v.as_tensor()).ok_or_else(|| OpError::Msg("input 0 is missing".into()))?;
    if x.dtype() != q8_dtype(x_type) {
        return Err(OpError::Msg(format!("input of type {}, expected {}", x.dtype(), q8_dtype(x_type))));
    }
    let shape = out_shape(x.shape()).map_err(kerr)?;
    let mut out = vec![0u8; shape.iter().product()];
    f(x.raw_bytes()?, x.shape(), &mut out).map_err(kerr)?;
    Ok(vec![Some(Value::Tensor(Tensor::from_bytes(q8_dtype(y_type), shape, out.into())?))])
}

fn build_qconv(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let k = qconsts(ctx)?;
    let ws = k.w.shape().to_vec();
    if ws.len() < 3 {
        return Err(OpError::Msg(format!("weights {ws:?} have no spatial axes")));
    }
    let r = ws.len() - 2;
    let pos = |name: &str, d: usize| -> Result<Vec<usize>, OpError> {
        match ctx.attr_ints(name)? {
            Some(v) if v.iter().all(|&x| x >= 0) => Ok(v.into_iter().map(|x| x as usize).collect()),
            Some(v) => Err(OpError::Msg(format!("{name} {v:?} has negative values"))),
            None => Ok(vec![d; if name == "pads" { 2 * r } else { r }]),
        }
    };
    let params = qaic_kernels::conv::ConvParams {
        kernel: ctx.attr_ints("kernel_shape")?.map(|v| v.into_iter().map(|x| x.max(0) as usize).collect()).unwrap_or_else(|| ws[2..].to_vec()),
        strides: pos("strides", 1)?,
        dilations: pos("dilations", 1)?,
        pads: pos("pads", 0)?,
        group: ctx.attr_i("group", 1)?.max(1) as usize,
    };
    let conv = QConvGlow::new(
        IntPath::current(),
        params,
        k.x.0,
        k.x.1,
        q8(k.w.dtype(), "weights")?,
        k.w.raw_bytes()?,
        &ws,
        &k.w_zp,
        &k.bias,
        &k.mult,
        k.y.0,
        k.y.1,
    )
    .map_err(kerr)?;
    let (xt, yt) = (k.x.0, k.y.0);
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        run_q8(xt, yt, inputs, |x, s, o| conv.run(x, s, o), |s| conv.output_shape(s))
    }))
}

fn build_qmatmul(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let k = qconsts(ctx)?;
    let ws = k.w.shape().to_vec();
    if ws.len() != 2 {
        return Err(OpError::Msg(format!("weights {ws:?} are not a matrix")));
    }
    let mm = QMatMulGlow::new(
        IntPath::current(),
        k.x.0,
        k.x.1,
        q8(k.w.dtype(), "weights")?,
        k.w.raw_bytes()?,
        ws[0],
        ws[1],
        &k.w_zp,
        &k.bias,
        &k.mult,
        k.y.0,
        k.y.1,
    )
    .map_err(kerr)?;
    let (xt, yt) = (k.x.0, k.y.0);
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        run_q8(xt, yt, inputs, |x, s, o| mm.run(x, s, o), |s| mm.output_shape(s))
    }))
}

fn build_quantize(_: &qaic_interp::BuildCtx<'_>) -> Result<Box<dyn qaic_interp::Kernel>, qaic_interp::OpError> {
    use qaic_interp::OpError;
    use qaic_tensor::{DType, Tensor, Value};
    Ok(Box::new(|_: &qaic_interp::RunCtx<'_>, inputs: &[Option<&Value>]| -> Result<Vec<Option<Value>>, OpError> {
        let arg = |i: usize| -> Result<&Tensor, OpError> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .and_then(|v| v.as_tensor())
                .ok_or_else(|| OpError::Msg(format!("input {i} is missing or not a tensor")))
        };
        let (x, s, z) = (arg(0)?, arg(1)?, arg(2)?);
        let scale = s.view::<f32>()?.first().copied().ok_or_else(|| OpError::Msg("empty scale".into()))?;
        let (q, offset) = match z.dtype() {
            DType::I8 => (crate::base::QType::Int8, z.view::<i8>()?.first().map(|&v| v as i32)),
            DType::U8 => (crate::base::QType::UInt8, z.view::<u8>()?.first().map(|&v| v as i32)),
            DType::I16 => (crate::base::QType::Int16, z.view::<i16>()?.first().map(|&v| v as i32)),
            DType::I32 => (crate::base::QType::Int32, z.view::<i32>()?.first().copied()),
            d => return Err(OpError::Msg(format!("zero point of type {d} is not supported"))),
        };
        let offset = offset.ok_or_else(|| OpError::Msg("empty zero point".into()))?;
        let p = crate::base::QuantParams { scale, offset };
        let xs = x.view::<f32>()?;
        let shape = x.shape().to_vec();
        // 8/16-bit: the vectorised kernel, same formula and bits as `base::quantize`.
        fn fast<Q: qaic_kernels::quant::QInt + qaic_tensor::Element>(xs: &[f32], scale: f32, zp: i32, shape: Vec<usize>) -> Result<Tensor, OpError> {
            let mut out = vec![Q::default(); xs.len()];
            qaic_kernels::quant::quantize(xs, &[scale], &[Q::from_i32(zp)], 1, qaic_kernels::quant::QuantizeRounding::Glow, &mut out)
                .map_err(|e| OpError::Msg(e.to_string()))?;
            Ok(Tensor::from_vec(shape, out)?)
        }
        let t = match q {
            crate::base::QType::Int8 => Some(fast::<i8>(&xs, scale, offset, shape.clone())?),
            crate::base::QType::UInt8 => Some(fast::<u8>(&xs, scale, offset, shape.clone())?),
            crate::base::QType::Int16 => Some(fast::<i16>(&xs, scale, offset, shape.clone())?),
            crate::base::QType::Int32 => None,
        };
        if let Some(t) = t {
            return Ok(vec![Some(Value::Tensor(t))]);
        }
        let vals = xs.iter().map(|&v| crate::base::quantize(v, p, q));
        let t = match q {
            crate::base::QType::Int8 => Tensor::from_vec(shape, vals.map(|v| v as i8).collect())?,
            crate::base::QType::UInt8 => Tensor::from_vec(shape, vals.map(|v| v as u8).collect())?,
            crate::base::QType::Int16 => Tensor::from_vec(shape, vals.map(|v| v as i16).collect())?,
            crate::base::QType::Int32 => Tensor::from_vec(shape, vals.map(|v| v as i32).collect())?,
        };
        Ok(vec![Some(Value::Tensor(t))])
    }))
}
