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
    r
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
