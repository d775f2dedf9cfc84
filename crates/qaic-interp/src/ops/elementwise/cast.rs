//! `Cast` and `CastLike` between every pair of ONNX element types: the standard numeric types,
//! bool, strings, the float8 family (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, E8M0), float4 (E2M1) and
//! packed int4/uint4/int2/uint2.
//!
//! Integers and bools convert exactly through `i128` (wrapping like NumPy `astype`); everything
//! else goes through `f64`, which holds every value of every source type exactly.

use qaic_tensor::{DType, Tensor, bf16, f16};

use super::{KResult, Num, kernel};
use crate::ops::util::{input, out1};
use crate::registry::{BuildCtx, Registry};
use crate::{OpError, op_err};

pub fn register(r: &mut Registry) {
    r.add("Cast", 1, cast_op);
    r.add("CastLike", 15, cast_like);
}

/// How E8M0 rounds mantissas away (`round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundMode {
    Up,
    Down,
    Nearest,
}

fn options(c: &BuildCtx<'_>) -> Result<(bool, RoundMode), OpError> {
    let saturate = c.attr_i("saturate", 1)? != 0;
    let round = match c.attr_s("round_mode", "up")?.as_str() {
        "up" => RoundMode::Up,
        "down" => RoundMode::Down,
        "nearest" => RoundMode::Nearest,
        m => return Err(op_err!("round_mode must be up, down or nearest, got `{m}`")),
    };
    Ok((saturate, round))
}

fn cast_op(c: &BuildCtx<'_>) -> KResult {
    let to = c.attr_i("to", 0)?;
    let to = DType::from_onnx(to as i32).ok_or_else(|| op_err!("attribute `to` = {to} is not an element type"))?;
    if matches!(to, DType::Complex64 | DType::Complex128) {
        return Err(OpError::Unsupported(format!("cast to {to}")));
    }
    let (saturate, round) = options(c)?;
    kernel(move |ins| out1(cast_tensor(input(ins, 0)?, to, saturate, round)?))
}

fn cast_like(c: &BuildCtx<'_>) -> KResult {
    let (saturate, round) = options(c)?;
    kernel(move |ins| out1(cast_tensor(input(ins, 0)?, input(ins, 1)?.dtype(), saturate, round)?))
}

fn int_like(d: DType) -> bool {
    d.is_int() || d == DType::Bool
}

/// Converts `t` to element type `to` with ONNX `Cast` semantics.
pub fn cast_tensor(t: &Tensor, to: DType, saturate: bool, round: RoundMode) -> Result<Tensor, OpError> {
    let from = t.dtype();
    if from == to {
        return Ok(t.clone());
    }
    if matches!(from, DType::Complex64 | DType::Complex128) || matches!(to, DType::Complex64 | DType::Complex128) {
        return Err(op_err!("casts from {from} to {to} are not supported yet"));
    }
    let shape = t.shape().to_vec();
    if to == DType::String {
        let s: Vec<Vec<u8>> = if int_like(from) {
            decode_i128(t)?.iter().map(|v| v.to_string().into_bytes()).collect()
        } else {
            decode_f64(t)?.iter().map(|&v| format_float(v, from).into_bytes()).collect()
        };
        return Ok(Tensor::from_strings(shape, s)?);
    }
    if from == DType::String {
        let strs = t.strings()?;
        if int_like(to) {
            let v: Result<Vec<i128>, OpError> = strs
                .iter()
                .map(|s| {
                    let s = String::from_utf8_lossy(s);
                    s.trim().parse::<i128>().or_else(|_| s.trim().parse::<f64>().map(|f| f as i128)).map_err(|_| {
                        op_err!("cannot parse `{s}` as {to}")
                    })
                })
                .collect();
            return encode_i128(&v?, shape, to);
        }
        let v: Result<Vec<f64>, OpError> = strs
            .iter()
            .map(|s| {
                let s = String::from_utf8_lossy(s);
                s.trim().parse::<f64>().map_err(|_| op_err!("cannot parse `{s}` as {to}"))
            })
            .collect();
        return encode_f64(&v?, shape, to, saturate, round);
    }
    if int_like(from) && int_like(to) {
        return encode_i128(&decode_i128(t)?, shape, to);
    }
    encode_f64(&decode_f64(t)?, shape, to, saturate, round)
}

fn format_float(v: f64, from: DType) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "INF".into() } else { "-INF".into() };
    }
    if from == DType::F64 { format!("{v}") } else { format!("{}", v as f32) }
}

/// Unpacks sub-byte elements (little end first) as raw bit fields.
fn unpack(t: &Tensor, bits: usize) -> Result<Vec<u8>, OpError> {
    let b = t.raw_bytes()?;
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    Ok((0..t.len()).map(|i| (b[i / per] >> ((i % per) * bits)) & mask).collect())
}

fn pack(fields: impl Iterator<Item = u8>, n: usize, bits: usize) -> Vec<u8> {
    let per = 8 / bits;
    let mask = ((1u16 << bits) - 1) as u8;
    let mut out = vec![0u8; (n * bits).div_ceil(8)];
    for (i, f) in fields.enumerate() {
        out[i / per] |= (f & mask) << ((i % per) * bits);
    }
    out
}

fn sign_extend(v: u8, bits: usize) -> i128 {
    let shift = 8 - bits;
    (((v << shift) as i8) >> shift) as i128
}

fn decode_i128(t: &Tensor) -> Result<Vec<i128>, OpError> {
    Ok(match t.dtype() {
        DType::Bool => t.view::<bool>()?.iter().map(|&b| b as i128).collect(),
        DType::I4 => unpack(t, 4)?.into_iter().map(|v| sign_extend(v, 4)).collect(),
        DType::I2 => unpack(t, 2)?.into_iter().map(|v| sign_extend(v, 2)).collect(),
        DType::U4 => unpack(t, 4)?.into_iter().map(|v| v as i128).collect(),
        DType::U2 => unpack(t, 2)?.into_iter().map(|v| v as i128).collect(),
        d => crate::with_int!(d, T => t.view::<T>()?.iter().map(|&v| v as i128).collect(),
            _ => return Err(op_err!("{d} is not an integer type"))),
    })
}

/// Every element as f64 (exact for every type but 64-bit integers beyond 2^53).
pub fn decode_f64(t: &Tensor) -> Result<Vec<f64>, OpError> {
    let d = t.dtype();
    if let Some(fmt) = Mini::of(d) {
        return Ok(match d {
            DType::F4E2M1 => unpack(t, 4)?.into_iter().map(|b| fmt.decode(b)).collect(),
            _ => t.raw_bytes()?.iter().map(|&b| fmt.decode(b)).collect(),
        });
    }
    if d == DType::F8E8M0 {
        return Ok(t.raw_bytes()?.iter().map(|&b| if b == 0xFF { f64::NAN } else { 2f64.powi(b as i32 - 127) }).collect());
    }
    if int_like(d) {
        return Ok(decode_i128(t)?.into_iter().map(|v| v as f64).collect());
    }
    crate::with_num!(d, T => Ok(t.view::<T>()?.iter().map(|&v| v.to_f64()).collect()),
        _ => Err(op_err!("cannot read {d} elements as numbers")))
}

fn encode_i128(v: &[i128], shape: Vec<usize>, to: DType) -> Result<Tensor, OpError> {
    let n = v.len();
    Ok(match to {
        DType::Bool => Tensor::from_vec(shape, v.iter().map(|&x| x != 0).collect())?,
        DType::I4 | DType::U4 => Tensor::from_bytes(to, shape, pack(v.iter().map(|&x| x as u8), n, 4).into())?,
        DType::I2 | DType::U2 => Tensor::from_bytes(to, shape, pack(v.iter().map(|&x| x as u8), n, 2).into())?,
        d => crate::with_int!(d, T => Tensor::from_vec(shape, v.iter().map(|&x| x as T).collect::<Vec<T>>())?,
            _ => return encode_f64(&v.iter().map(|&x| x as f64).collect::<Vec<_>>(), shape, to, true, RoundMode::Up)),
    })
}

/// Float to integer: truncate toward zero, then wrap (NaN and infinities become 0).
fn trunc_i128(x: f64) -> i128 {
    if x.is_finite() { x as i128 } else { 0 }
}

fn encode_f64(v: &[f64], shape: Vec<usize>, to: DType, saturate: bool, round: RoundMode) -> Result<Tensor, OpError> {
    let n = v.len();
    if let Some(fmt) = Mini::of(to) {
        let sat = saturate || to == DType::F4E2M1;
        return Ok(match to {
            DType::F4E2M1 => Tensor::from_bytes(to, shape, pack(v.iter().map(|&x| fmt.encode(x, sat)), n, 4).into())?,
            _ => Tensor::from_bytes(to, shape, v.iter().map(|&x| fmt.encode(x, sat)).collect::<Vec<u8>>().into())?,
        });
    }
    Ok(match to {
        DType::F32 => Tensor::from_vec(shape, v.iter().map(|&x| x as f32).collect())?,
        DType::F64 => Tensor::from_vec(shape, v.to_vec())?,
        DType::F16 => Tensor::from_vec(shape, v.iter().map(|&x| f16::from_f64(x)).collect())?,
        DType::BF16 => Tensor::from_vec(shape, v.iter().map(|&x| bf16::from_f64(x)).collect())?,
        DType::F8E8M0 => {
            Tensor::from_bytes(to, shape, v.iter().map(|&x| e8m0(x as f32, saturate, round)).collect::<Vec<u8>>().into())?
        }
        DType::Bool => Tensor::from_vec(shape, v.iter().map(|&x| x != 0.0).collect())?,
        _ if to.is_int() => return encode_i128(&v.iter().map(|&x| trunc_i128(x)).collect::<Vec<_>>(), shape, to),
        d => return Err(op_err!("casts to {d} are not supported yet")),
    })
}

/// f32 → E8M0 exactly as the ONNX reference (`onnx.numpy_helper.to_float8e8m0`): the sign is
/// dropped and the exponent rounded per `round`.
fn e8m0(x: f32, saturate: bool, round: RoundMode) -> u8 {
    let bits = x.to_bits();
    let mut exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return 0xFF;
    }
    let up = match round {
        RoundMode::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1F_FFFF != 0;
            let lsb = exp > 0;
            g && (r || s || lsb)
        }
        RoundMode::Up => bits & 0x7F_FFFF != 0,
        RoundMode::Down => false,
    };
    if up && !(saturate && exp == 0xFE) {
        exp += 1;
    }
    exp as u8
}

/// A small float format (float8 variants and float4 E2M1).
#[derive(Clone, Copy)]
struct Mini {
    ebits: u32,
    mbits: u32,
    bias: i32,
    max: f64,
    /// E5M2: has infinities.
    inf: bool,
    /// FNUZ: no negative zero, 0x80 is the only NaN.
    uz: bool,
    /// E2M1: no NaN or infinity; NaN encodes as -0 (like ml_dtypes).
    f4: bool,
}

impl Mini {
    fn of(d: DType) -> Option<Mini> {
        let m = |ebits, mbits, bias, max, inf, uz, f4| Some(Mini { ebits, mbits, bias, max, inf, uz, f4 });
        match d {
            DType::F8E4M3FN => m(4, 3, 7, 448.0, false, false, false),
            DType::F8E4M3FNUZ => m(4, 3, 8, 240.0, false, true, false),
            DType::F8E5M2 => m(5, 2, 15, 57344.0, true, false, false),
            DType::F8E5M2FNUZ => m(5, 2, 16, 57344.0, false, true, false),
            DType::F4E2M1 => m(2, 1, 1, 6.0, false, false, true),
            _ => None,
        }
    }

    fn sign_bit(&self) -> u8 {
        1 << (self.ebits + self.mbits)
    }

    fn nan(&self, neg: bool) -> u8 {
        let s = if neg { self.sign_bit() } else { 0 };
        if self.uz {
            0x80
        } else if self.f4 {
            self.sign_bit()
        } else if self.inf {
            s | 0x7E
        } else {
            s | 0x7F
        }
    }

    fn decode(&self, b: u8) -> f64 {
        let neg = b & self.sign_bit() != 0;
        let e = ((b >> self.mbits) & ((1 << self.ebits) - 1) as u8) as i32;
        let m = (b & ((1 << self.mbits) - 1) as u8) as f64;
        if self.uz && b == 0x80 {
            return f64::NAN;
        }
        if !self.uz && !self.f4 {
            if self.inf && e == (1 << self.ebits) - 1 {
                return if m != 0.0 {
                    f64::NAN
                } else if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
            }
            if !self.inf && b & 0x7F == 0x7F {
                return f64::NAN;
            }
        }
        let scale = (1u64 << self.mbits) as f64;
        let v = if e == 0 {
            m / scale * 2f64.powi(1 - self.bias)
        } else {
            (1.0 + m / scale) * 2f64.powi(e - self.bias)
        };
        if neg { -v } else { v }
    }

    fn encode(&self, x: f64, saturate: bool) -> u8 {
        let neg = x.is_sign_negative();
        let s = if neg { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan(neg);
        }
        let mut a = x.abs();
        if saturate && a > self.max {
            a = self.max;
        }
        let overflow = || if self.inf { s | (((1u8 << self.ebits) - 1) << self.mbits) } else { self.nan(neg) };
        if a.is_infinite() {
            return overflow();
        }
        let emin = 1 - self.bias;
        let e = if a == 0.0 { emin } else { log2_floor(a).max(emin) };
        let q = 2f64.powi(e - self.mbits as i32);
        let r = (a / q).round_ties_even() * q;
        if r > self.max {
            return overflow();
        }
        if r == 0.0 {
            return if self.uz { 0 } else { s };
        }
        let e = log2_floor(r);
        let code = if e < emin {
            (r / 2f64.powi(emin - self.mbits as i32)) as u8
        } else {
            let mant = (r / 2f64.powi(e - self.mbits as i32)) as u32 - (1 << self.mbits);
            (((e + self.bias) as u32) << self.mbits | mant) as u8
        };
        s | code
    }
}

fn log2_floor(a: f64) -> i32 {
    ((a.to_bits() >> 52) & 0x7FF) as i32 - 1023
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_round_trips_and_edges() {
        for d in [DType::F8E4M3FN, DType::F8E4M3FNUZ, DType::F8E5M2, DType::F8E5M2FNUZ] {
            let fmt = Mini::of(d).unwrap();
            for b in 0..=255u8 {
                let v = fmt.decode(b);
                if v.is_nan() {
                    continue;
                }
                let back = fmt.encode(v, false);
                assert!(back == b || (v == 0.0 && fmt.uz), "{d}: {b:#x} -> {v} -> {back:#x}");
            }
        }
        let e4 = Mini::of(DType::F8E4M3FN).unwrap();
        assert_eq!(e4.encode(1000.0, false), 0x7F);
        assert_eq!(e4.encode(1000.0, true), 0x7E);
        assert_eq!(e4.encode(f64::NEG_INFINITY, false), 0xFF);
        assert_eq!(Mini::of(DType::F8E5M2).unwrap().encode(1e6, false), 0x7C);
        assert_eq!(Mini::of(DType::F8E5M2).unwrap().encode(1000.0, false), 100);
        assert_eq!(Mini::of(DType::F8E5M2FNUZ).unwrap().encode(1000.0, false), 104);
        let f4 = Mini::of(DType::F4E2M1).unwrap();
        assert_eq!(f4.encode(0.25, true), 0);
        assert_eq!(f4.encode(2.5, true), 4);
        assert_eq!(f4.encode(100.0, true), 7);
        assert_eq!(f4.encode(-0.1, true), 8);
    }

    #[test]
    fn int4_wraps_and_packs() {
        let t = Tensor::from_vec(vec![5], vec![-9f32, -8., 7.6, 8., 15.]).unwrap();
        let y = cast_tensor(&t, DType::I4, true, RoundMode::Up).unwrap();
        assert_eq!(y.raw_bytes().unwrap(), &[0x87, 0x07, 0x0F]);
        let back = cast_tensor(&y, DType::F32, true, RoundMode::Up).unwrap();
        assert_eq!(back.as_slice::<f32>().unwrap(), &[7., -8., 7., -8., -1.]);
        let u2 = cast_tensor(&Tensor::from_vec(vec![3], vec![-3i32, 2, 5]).unwrap(), DType::U2, true, RoundMode::Up).unwrap();
        assert_eq!(u2.raw_bytes().unwrap(), &[0b01_10_01]);
    }

    #[test]
    fn e8m0_rounding() {
        assert_eq!(e8m0(1.0, true, RoundMode::Up), 127);
        assert_eq!(e8m0(1.5, true, RoundMode::Up), 128);
        assert_eq!(e8m0(1.5, true, RoundMode::Down), 127);
        assert_eq!(e8m0(1.75, true, RoundMode::Nearest), 128);
        assert_eq!(e8m0(f32::MAX, true, RoundMode::Up), 254);
        assert_eq!(e8m0(f32::MAX, false, RoundMode::Up), 255);
    }

    #[test]
    fn strings_and_ints() {
        let s = Tensor::from_strings(vec![2], vec![b"1.5".to_vec(), b"-INF".to_vec()]).unwrap();
        let f = cast_tensor(&s, DType::F32, true, RoundMode::Up).unwrap();
        assert_eq!(f.as_slice::<f32>().unwrap(), &[1.5, f32::NEG_INFINITY]);
        let big = Tensor::from_vec(vec![1], vec![i64::MAX]).unwrap();
        let u = cast_tensor(&big, DType::U64, true, RoundMode::Up).unwrap();
        assert_eq!(u.as_slice::<u64>().unwrap(), &[i64::MAX as u64]);
    }
}
