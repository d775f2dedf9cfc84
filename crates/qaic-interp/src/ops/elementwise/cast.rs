//! `Cast` and `CastLike`, delegating to the shared ONNX cast of `qaic-kernels` (every pair of
//! element types: float8/float4/E8M0 with saturate and round modes, packed int4/int2, strings),
//! plus small element-access helpers other op families use (f64 decoding, 4/2-bit packing).

use qaic_kernels::cast::{CastOptions, E8M0Rounding, cast};
use qaic_tensor::{DType, Tensor};

use super::{KResult, kernel};
use crate::ops::util::{input, out1};
use crate::registry::{BuildCtx, Registry};
use crate::{OpError, op_err};

pub fn register(r: &mut Registry) {
    r.add("Cast", 1, cast_op);
    r.add("CastLike", 15, cast_like);
}

fn options(c: &BuildCtx<'_>) -> Result<CastOptions, OpError> {
    let saturate = c.attr_i("saturate", 1)? != 0;
    let round_mode = match c.attr_s("round_mode", "up")?.as_str() {
        "up" => E8M0Rounding::Up,
        "down" => E8M0Rounding::Down,
        "nearest" => E8M0Rounding::Nearest,
        m => return Err(op_err!("round_mode must be up, down or nearest, got `{m}`")),
    };
    Ok(CastOptions { saturate, round_mode })
}

fn cast_op(c: &BuildCtx<'_>) -> KResult {
    let to = c.attr_i("to", 0)?;
    let to = DType::from_onnx(to as i32).ok_or_else(|| op_err!("attribute `to` = {to} is not an element type"))?;
    if matches!(to, DType::Complex64 | DType::Complex128) {
        return Err(OpError::Unsupported(format!("cast to {to}")));
    }
    let opts = options(c)?;
    kernel(move |ins| out1(cast_with(input(ins, 0)?, to, &opts)?))
}

fn cast_like(c: &BuildCtx<'_>) -> KResult {
    let opts = options(c)?;
    kernel(move |ins| out1(cast_with(input(ins, 0)?, input(ins, 1)?.dtype(), &opts)?))
}

fn cast_with(t: &Tensor, to: DType, opts: &CastOptions) -> Result<Tensor, OpError> {
    cast(t, to, opts).map_err(|e| OpError::Msg(e.to_string()))
}

/// ONNX `Cast` with default options (saturating, E8M0 rounding up).
pub(crate) fn cast_tensor(t: &Tensor, to: DType) -> Result<Tensor, OpError> {
    cast_with(t, to, &CastOptions::default())
}

/// Every element as f64 (exact for every type but 64-bit integers beyond 2^53).
pub(crate) fn decode_f64(t: &Tensor) -> Result<Vec<f64>, OpError> {
    if t.dtype() == DType::F64 {
        return Ok(t.to_vec::<f64>()?);
    }
    if t.dtype() == DType::String {
        return Err(op_err!("expected a numeric tensor, got strings"));
    }
    Ok(cast_tensor(t, DType::F64)?.to_vec::<f64>()?)
}

/// Unpacks sub-byte elements (little end first) as raw bit fields.
pub(crate) fn unpack(t: &Tensor, bits: usize) -> Result<Vec<u8>, OpError> {
    let b = t.raw_bytes()?;
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    Ok((0..t.len()).map(|i| (b[i / per] >> ((i % per) * bits)) & mask).collect())
}

/// Packs bit fields, little end first.
pub(crate) fn pack(fields: impl Iterator<Item = u8>, n: usize, bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = vec![0u8; (n * bits).div_ceil(8)];
    for (i, f) in fields.enumerate() {
        out[i / per] |= (f & mask) << ((i % per) * bits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_decode() {
        let fields = [1u8, 15, 0, 7, 3];
        let p = pack(fields.iter().copied(), 5, 4);
        assert_eq!(p, vec![0xF1, 0x70, 0x03]);
        let t = Tensor::from_bytes(DType::U4, vec![5], p.into()).unwrap();
        assert_eq!(unpack(&t, 4).unwrap(), fields);
        assert_eq!(decode_f64(&t).unwrap(), vec![1.0, 15.0, 0.0, 7.0, 3.0]);
    }
}
