//! ONNX `Cast` between every pair of element types (opset 19-25 semantics; ground truth is
//! the ONNX reference implementation and the ONNX backend test data).
//!
//! - float -> integer: truncation toward zero, then (out of range) the low bits are kept, as
//!   for integer -> integer ("discard higher bits", two's complement); NaN gives 0.
//! - integer -> float and float -> float: round to nearest even.
//! - float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ): round to nearest even; `saturate` clamps
//!   out-of-range values and infinities to the largest finite value, otherwise they become
//!   NaN (or infinity for E5M2), per the tables of the Cast specification.
//! - float4 E2M1: round to nearest even, always saturating (it has no infinity or NaN; NaN
//!   encodes as 0x8, matching the ONNX test data).
//! - float8 E8M0: power of two, rounding `up` (default), `nearest` or `down`, saturating or not.
//! - int4/uint4/int2/uint2: packed little end first (low nibble / low bit pair first).
//! - bool: zero is false, everything else (NaN included) true; true is 1.
//! - strings: numbers print like NumPy `astype(str)` (shortest round-trip digits,
//!   `1e-05` style exponents); parsing accepts plain and scientific notation and
//!   (case-insensitively) `INF`, `+INF`, `-INF`, `NaN`.

use bytes::Bytes;
use half::{bf16, f16};
use qaic_tensor::{DType, Tensor};

use crate::KernelError;

/// Rounding of conversions to float8 E8M0 (ONNX `round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum E8M0Rounding {
    #[default]
    Up,
    Nearest,
    Down,
}

/// Attributes of ONNX `Cast`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CastOptions {
    /// ONNX `saturate` (default true; affects float8 targets).
    pub saturate: bool,
    /// ONNX `round_mode` (affects E8M0 targets).
    pub round_mode: E8M0Rounding,
}

impl Default for CastOptions {
    fn default() -> Self {
        CastOptions { saturate: true, round_mode: E8M0Rounding::Up }
    }
}

/// A decoded element.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Val {
    F(f64),
    I(i128),
}

/// Layout of a small float format.
#[derive(Clone, Copy)]
struct Mini {
    man: i32,
    bias: i32,
    /// Largest finite value.
    max: f64,
    /// No negative zero, NaN is 0x80 (the FNUZ formats).
    uz: bool,
}

fn mini(d: DType) -> Option<Mini> {
    Some(match d {
        DType::F8E4M3FN => Mini { man: 3, bias: 7, max: 448.0, uz: false },
        DType::F8E4M3FNUZ => Mini { man: 3, bias: 8, max: 240.0, uz: true },
        DType::F8E5M2 => Mini { man: 2, bias: 15, max: 57344.0, uz: false },
        DType::F8E5M2FNUZ => Mini { man: 2, bias: 16, max: 57344.0, uz: true },
        DType::F4E2M1 => Mini { man: 1, bias: 1, max: 6.0, uz: false },
        _ => return None,
    })
}

/// Round half to even of a non-negative f64 to an integer-valued f64.
fn rne(x: f64) -> f64 {
    x.round_ties_even()
}

/// Encodes `v` into a small float `d` (float8 or float4). Returns the code (4-bit codes in
/// the low bits).
fn encode_mini(v: f64, d: DType, saturate: bool) -> u8 {
    let Some(f) = mini(d) else { return 0 };
    let ebits = if d == DType::F4E2M1 { 2 } else if f.man == 3 { 4 } else { 5 };
    let total = 1 + ebits + f.man;
    let sign_bit: u8 = 1 << (total - 1);
    let neg = v.is_sign_negative();
    let nan_code = match d {
        DType::F8E4M3FN => 0x7f | if neg { 0x80 } else { 0 },
        DType::F8E5M2 => 0x7e | if neg { 0x80 } else { 0 },
        DType::F4E2M1 => 0x8,
        _ => 0x80,
    };
    let max_code: u8 = match d {
        DType::F8E4M3FN => 0x7e,
        DType::F8E5M2 => 0x7b,
        DType::F4E2M1 => 0x7,
        _ => 0x7f,
    };
    let sat = saturate || d == DType::F4E2M1;
    let overflow = |neg: bool| -> u8 {
        if sat {
            max_code | if neg { sign_bit } else { 0 }
        } else if d == DType::F8E5M2 {
            0x7c | if neg { 0x80 } else { 0 }
        } else if d == DType::F8E4M3FN {
            0x7f | if neg { 0x80 } else { 0 }
        } else {
            0x80
        }
    };
    if v.is_nan() {
        return nan_code;
    }
    if v.is_infinite() {
        return overflow(neg);
    }
    let a = v.abs();
    let emin = 1 - f.bias; // exponent of the smallest normal
    let e = if a > 0.0 { a.log2().floor() as i32 } else { emin };
    // log2 can be off by one near powers of two: fix up exactly.
    let e = if a > 0.0 && 2f64.powi(e) > a { e - 1 } else if a > 0.0 && 2f64.powi(e + 1) <= a { e + 1 } else { e };
    let q = 2f64.powi(e.max(emin) - f.man);
    let r = rne(a / q) * q;
    if r > f.max {
        return overflow(neg);
    }
    let signed = |code: u8| -> u8 {
        if neg && !(f.uz && code == 0) { code | sign_bit } else { code }
    };
    if r == 0.0 {
        return signed(0);
    }
    let min_normal = 2f64.powi(emin);
    if r < min_normal {
        return signed((r / 2f64.powi(emin - f.man)) as u8);
    }
    let mut er = r.log2().floor() as i32;
    if 2f64.powi(er) > r {
        er -= 1;
    }
    let mant = ((r / 2f64.powi(er) - 1.0) * 2f64.powi(f.man)) as u8;
    signed((((er + f.bias) as u8) << f.man) | mant)
}

/// Decodes a small float code (float8 or float4) into f64.
fn decode_mini(code: u8, d: DType) -> f64 {
    let Some(f) = mini(d) else { return 0.0 };
    let ebits = if d == DType::F4E2M1 { 2 } else if f.man == 3 { 4 } else { 5 };
    let total = 1 + ebits + f.man;
    let code = code & ((1u16 << total) - 1) as u8;
    let sign_bit = 1u8 << (total - 1);
    let neg = code & sign_bit != 0;
    let mag = code & !sign_bit;
    match d {
        DType::F8E4M3FN if mag == 0x7f => return f64::NAN,
        DType::F8E5M2 if mag > 0x7c => return f64::NAN,
        DType::F8E5M2 if mag == 0x7c => return if neg { f64::NEG_INFINITY } else { f64::INFINITY },
        DType::F8E4M3FNUZ | DType::F8E5M2FNUZ if code == 0x80 => return f64::NAN,
        _ => {}
    }
    let exp = (mag >> f.man) as i32;
    let man = (mag & ((1 << f.man) - 1)) as f64;
    let v = if exp == 0 {
        man * 2f64.powi(1 - f.bias - f.man)
    } else {
        (1.0 + man / 2f64.powi(f.man)) * 2f64.powi(exp - f.bias)
    };
    if neg { -v } else { v }
}

/// f32 -> float8/float4 code (see the module doc for the rules).
pub fn f32_to_small_float(v: f32, to: DType, saturate: bool) -> Result<u8, KernelError> {
    if mini(to).is_none() {
        return Err(KernelError::invalid("cast", format!("{to} is not a float8/float4 type")));
    }
    Ok(encode_mini(v as f64, to, saturate))
}

/// float8/float4 code -> f32.
pub fn small_float_to_f32(code: u8, from: DType) -> Result<f32, KernelError> {
    if mini(from).is_none() {
        return Err(KernelError::invalid("cast", format!("{from} is not a float8/float4 type")));
    }
    Ok(decode_mini(code, from) as f32)
}

fn encode_e8m0(v: f64, saturate: bool, mode: E8M0Rounding) -> u8 {
    // Works on the f32 bit pattern, as the ONNX reference does.
    let bits = (v as f32).to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let round_up = match mode {
        E8M0Rounding::Up => bits & 0x7f_ffff != 0,
        E8M0Rounding::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1f_ffff != 0;
            g && (r || s || exp > 0)
        }
        E8M0Rounding::Down => false,
    };
    let inc = round_up && !(saturate && exp == 0xfe);
    (exp + inc as u32) as u8
}

fn decode_e8m0(code: u8) -> f64 {
    if code == 0xff { f64::NAN } else { 2f64.powi(code as i32 - 127) }
}

/// Formats like NumPy `astype(str)`: shortest round-trip digits; scientific notation below
/// 1e-4 or from 10^`sci_from` on.
fn format_float(v: f64, shortest: String, sci_from: i32) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `shortest` is Rust's `{:e}` output: "-1.2345e8" / "1e-5" / "0e0".
    let (mant, exp) = shortest.split_once('e').unwrap_or((&shortest, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    if v != 0.0 && (exp < -4 || exp >= sci_from) {
        let (h, t) = digits.split_at(1);
        let m = if t.is_empty() { h.to_string() } else { format!("{h}.{t}") };
        return format!("{sign}{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let n = digits.len() as i32;
    let s = if exp >= n - 1 {
        format!("{digits}{}.0", "0".repeat((exp - (n - 1)) as usize))
    } else if exp >= 0 {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    format!("{sign}{s}")
}

fn parse_string(s: &[u8], to_int: bool) -> Result<Val, KernelError> {
    let t = std::str::from_utf8(s).map_err(|_| KernelError::invalid("cast", "string is not UTF-8".into()))?.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Ok(Val::F(f64::INFINITY)),
        "-inf" | "-infinity" => return Ok(Val::F(f64::NEG_INFINITY)),
        "nan" | "+nan" | "-nan" => return Ok(Val::F(f64::NAN)),
        "true" => return Ok(Val::I(1)),
        "false" => return Ok(Val::I(0)),
        _ => {}
    }
    if to_int && let Ok(i) = t.parse::<i128>() {
        return Ok(Val::I(i));
    }
    t.parse::<f64>()
        .map(Val::F)
        .map_err(|_| KernelError::invalid("cast", format!("cannot convert string {t:?} to a number")))
}

fn read<const N: usize>(b: &[u8], i: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[i * N..(i + 1) * N]);
    a
}

fn decode(b: &[u8], d: DType, i: usize) -> Val {
    use DType::*;
    match d {
        F32 => Val::F(f32::from_le_bytes(read(b, i)) as f64),
        F64 => Val::F(f64::from_le_bytes(read(b, i))),
        F16 => Val::F(f16::from_le_bytes(read(b, i)).to_f64()),
        BF16 => Val::F(bf16::from_le_bytes(read(b, i)).to_f64()),
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ => Val::F(decode_mini(b[i], d)),
        F4E2M1 => Val::F(decode_mini(nibble(b, i), d)),
        F8E8M0 => Val::F(decode_e8m0(b[i])),
        I8 => Val::I(b[i] as i8 as i128),
        U8 => Val::I(b[i] as i128),
        Bool => Val::I((b[i] != 0) as i128),
        I16 => Val::I(i16::from_le_bytes(read(b, i)) as i128),
        U16 => Val::I(u16::from_le_bytes(read(b, i)) as i128),
        I32 => Val::I(i32::from_le_bytes(read(b, i)) as i128),
        U32 => Val::I(u32::from_le_bytes(read(b, i)) as i128),
        I64 => Val::I(i64::from_le_bytes(read(b, i)) as i128),
        U64 => Val::I(u64::from_le_bytes(read(b, i)) as i128),
        U4 => Val::I(nibble(b, i) as i128),
        I4 => Val::I((((nibble(b, i) << 4) as i8) >> 4) as i128),
        U2 => Val::I(crumb(b, i) as i128),
        I2 => Val::I((((crumb(b, i) << 6) as i8) >> 6) as i128),
        String | Complex64 | Complex128 => Val::I(0),
    }
}

fn nibble(b: &[u8], i: usize) -> u8 {
    (b[i / 2] >> (4 * (i % 2))) & 0xf
}
fn crumb(b: &[u8], i: usize) -> u8 {
    (b[i / 4] >> (2 * (i % 4))) & 0x3
}

/// Integer value of `v` for integer targets: truncation toward zero (NaN -> 0), saturated to
/// i128; the caller keeps the low bits.
fn to_int(v: Val) -> i128 {
    match v {
        Val::I(i) => i,
        Val::F(f) => f.trunc() as i128,
    }
}

fn to_f64(v: Val) -> f64 {
    match v {
        Val::F(f) => f,
        Val::I(i) => i as f64,
    }
}

/// Encodes into `out` (already sized) at element `i`.
fn encode(v: Val, d: DType, opts: &CastOptions, out: &mut [u8], i: usize) {
    use DType::*;
    let put = |out: &mut [u8], bytes: &[u8]| out[i * bytes.len()..(i + 1) * bytes.len()].copy_from_slice(bytes);
    match d {
        // i64 -> f32 must round once, not through f64.
        F32 => put(out, &(match v { Val::F(f) => f as f32, Val::I(x) => x as f32 }).to_le_bytes()),
        F64 => put(out, &to_f64(v).to_le_bytes()),
        F16 => put(out, &(match v { Val::F(f) => f16::from_f64(f), Val::I(x) => f16::from_f32(x as f32) }).to_le_bytes()),
        BF16 => put(out, &(match v { Val::F(f) => bf16::from_f64(f), Val::I(x) => bf16::from_f32(x as f32) }).to_le_bytes()),
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ => out[i] = encode_mini(to_f64(v), d, opts.saturate),
        F8E8M0 => out[i] = encode_e8m0(to_f64(v), opts.saturate, opts.round_mode),
        F4E2M1 => set_nibble(out, i, encode_mini(to_f64(v), d, opts.saturate)),
        Bool => {
            out[i] = match v {
                Val::F(f) => (f != 0.0) as u8,
                Val::I(x) => (x != 0) as u8,
            }
        }
        I8 | U8 => out[i] = to_int(v) as u8,
        I16 | U16 => put(out, &(to_int(v) as u16).to_le_bytes()),
        I32 | U32 => put(out, &(to_int(v) as u32).to_le_bytes()),
        I64 | U64 => put(out, &(to_int(v) as u64).to_le_bytes()),
        I4 | U4 => set_nibble(out, i, (to_int(v) as u8) & 0xf),
        I2 | U2 => {
            let c = (to_int(v) as u8) & 0x3;
            out[i / 4] = (out[i / 4] & !(0x3 << (2 * (i % 4)))) | (c << (2 * (i % 4)));
        }
        String | Complex64 | Complex128 => {}
    }
}

fn set_nibble(out: &mut [u8], i: usize, c: u8) {
    let sh = 4 * (i % 2);
    out[i / 2] = (out[i / 2] & !(0xf << sh)) | ((c & 0xf) << sh);
}

fn to_string(v: Val, from: DType) -> Vec<u8> {
    match (v, from) {
        (Val::I(x), DType::Bool) => if x != 0 { "True" } else { "False" }.as_bytes().to_vec(),
        (Val::I(x), _) => x.to_string().into_bytes(),
        (Val::F(f), DType::F64) => format_float(f, format!("{f:e}"), 16).into_bytes(),
        (Val::F(f), DType::F16 | DType::BF16) => format_float(f, format!("{:e}", f as f32), 4).into_bytes(),
        (Val::F(f), _) => format_float(f, format!("{:e}", f as f32), 8).into_bytes(),
    }
}

/// ONNX `Cast` of a whole tensor. Complex types are not supported (ONNX Cast excludes them).
///
/// ```
/// use qaic_kernels::cast::{cast, CastOptions};
/// use qaic_tensor::{DType, Tensor};
/// let t = Tensor::from_vec(vec![3], vec![1.7f32, -2.9, 300.0]).unwrap();
/// let i = cast(&t, DType::I8, &CastOptions::default()).unwrap();
/// assert_eq!(i.as_slice::<i8>().unwrap(), &[1, -2, 44]); // truncation, then low 8 bits
/// ```
pub fn cast(x: &Tensor, to: DType, opts: &CastOptions) -> Result<Tensor, KernelError> {
    let from = x.dtype();
    for d in [from, to] {
        if matches!(d, DType::Complex64 | DType::Complex128) {
            return Err(KernelError::unsupported("cast", format!("{d} tensors")));
        }
    }
    let shape = x.shape().to_vec();
    let n = x.len();
    if from == to {
        return Ok(x.clone());
    }
    let tensor_err = |e: qaic_tensor::TensorError| KernelError::invalid("cast", e.to_string());
    if let Some(t) = fast_cast(x, to)? {
        return Ok(t);
    }
    let get: Box<dyn Fn(usize) -> Result<Val, KernelError> + '_> = if from == DType::String {
        let s = x.strings().map_err(tensor_err)?;
        let int_target = to.is_int() || to == DType::Bool;
        Box::new(move |i| parse_string(&s[i], int_target))
    } else {
        let b = x.raw_bytes().map_err(tensor_err)?;
        Box::new(move |i| Ok(decode(b, from, i)))
    };
    if to == DType::String {
        let v = (0..n).map(|i| get(i).map(|v| to_string(v, from))).collect::<Result<Vec<_>, _>>()?;
        return Tensor::from_strings(shape, v).map_err(tensor_err);
    }
    let mut out = vec![0u8; to.storage_bytes(n)];
    for i in 0..n {
        encode(get(i)?, to, opts, &mut out, i);
    }
    Tensor::from_bytes(to, shape, Bytes::from(out)).map_err(tensor_err)
}

/// Typed loops for frequent pairs whose Rust `as` matches ONNX semantics exactly.
fn fast_cast(x: &Tensor, to: DType) -> Result<Option<Tensor>, KernelError> {
    use DType::*;
    let e = |e: qaic_tensor::TensorError| KernelError::invalid("cast", e.to_string());
    let shape = x.shape().to_vec();
    macro_rules! map {
        ($s:ty, $f:expr) => {{
            let v = x.view::<$s>().map_err(e)?;
            Tensor::from_vec(shape, v.iter().map(|&a| $f(a)).collect::<Vec<_>>()).map_err(e)?
        }};
    }
    Ok(Some(match (x.dtype(), to) {
        // Vectorised f16 conversions (F16C / AVX-512), the same bits as `half`'s.
        (F32, F16) => {
            let v = x.view::<f32>().map_err(e)?;
            let mut h = vec![f16::ZERO; v.len()];
            crate::quant::f32_to_f16(&v, &mut h)?;
            Tensor::from_vec(shape, h).map_err(e)?
        }
        (F16, F32) => {
            let v = x.view::<f16>().map_err(e)?;
            let mut f = vec![0f32; v.len()];
            crate::quant::f16_to_f32(&v, &mut f)?;
            Tensor::from_vec(shape, f).map_err(e)?
        }
        (F32, BF16) => map!(f32, bf16::from_f32),
        (BF16, F32) => map!(bf16, |a: bf16| a.to_f32()),
        (F32, F64) => map!(f32, |a: f32| a as f64),
        (F64, F32) => map!(f64, |a: f64| a as f32),
        (I64, F32) => map!(i64, |a: i64| a as f32),
        (I32, F32) => map!(i32, |a: i32| a as f32),
        (I64, I32) => map!(i64, |a: i64| a as i32),
        (I32, I64) => map!(i32, |a: i32| a as i64),
        (Bool, F32) => map!(bool, |a: bool| a as u8 as f32),
        (U8, F32) => map!(u8, |a: u8| a as f32),
        (I8, F32) => map!(i8, |a: i8| a as f32),
        (F32, Bool) => map!(f32, |a: f32| a != 0.0),
        (I64, Bool) => map!(i64, |a: i64| a != 0),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32t(v: &[f32]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn float8_matches_onnx_test_data() {
        // test_cast_no_saturate_FLOAT_to_FLOAT8E4M3FN from the ONNX backend tests.
        let x = [0.478_925_47, 0.480_336_67, 0.499_684_87, 0.819_105_45, 0.470_312_48, 0.722_903_8, 1e6, 1e-7, f32::NAN, f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, -1e-7, 1e-7, -1e6];
        let o = cast(&f32t(&x), DType::F8E4M3FN, &CastOptions { saturate: false, ..Default::default() }).unwrap();
        assert_eq!(o.raw_bytes().unwrap(), &[0x2f, 0x2f, 0x30, 0x35, 0x2f, 0x34, 0x7f, 0x00, 0x7f, 0x7f, 0x7f, 0xff, 0x80, 0x00, 0xff]);
        let o = cast(&f32t(&x), DType::F8E4M3FN, &CastOptions::default()).unwrap();
        assert_eq!(&o.raw_bytes().unwrap()[6..12], &[0x7e, 0x00, 0x7f, 0x7e, 0x7e, 0xfe]);
        let o = cast(&f32t(&[f32::NAN, f32::INFINITY, -0.0, 1e6]), DType::F8E4M3FNUZ, &CastOptions { saturate: false, ..Default::default() }).unwrap();
        assert_eq!(o.raw_bytes().unwrap(), &[0x80, 0x80, 0x00, 0x80]);
        let o = cast(&f32t(&[f32::NAN, f32::INFINITY, 1e6, -1e6]), DType::F8E5M2, &CastOptions { saturate: false, ..Default::default() }).unwrap();
        assert_eq!(o.raw_bytes().unwrap(), &[0x7e, 0x7c, 0x7c, 0xfc]);
        // Every code round-trips through f32.
        for d in [DType::F8E4M3FN, DType::F8E4M3FNUZ, DType::F8E5M2, DType::F8E5M2FNUZ] {
            for c in 0..=255u8 {
                let v = small_float_to_f32(c, d).unwrap();
                if v.is_nan() {
                    continue;
                }
                let back = f32_to_small_float(v, d, false).unwrap();
                assert!(back == c || (v == 0.0 && back & 0x7f == 0), "{d} code {c:#x} -> {v} -> {back:#x}");
            }
        }
    }

    #[test]
    fn float4_int4_int2_e8m0_match_onnx_test_data() {
        let x = [0.48, 0.25, 1.05, -3.5, -8.0, 9.0, 1e6, 1e-7, f32::NAN, f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, -4.0, 0.01, -0.0];
        let o = cast(&f32t(&x), DType::F4E2M1, &CastOptions::default()).unwrap();
        assert_eq!(o.raw_bytes().unwrap(), &[0x01, 0xe2, 0x7f, 0x07, 0x78, 0xf7, 0x0e, 0x08]);
        let r: Vec<f32> = (-9..16).map(|v| v as f32).collect();
        let want = [0x87, 0xa9, 0xcb, 0xed, 0x0f, 0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f];
        assert_eq!(cast(&f32t(&r), DType::I4, &CastOptions::default()).unwrap().raw_bytes().unwrap(), &want);
        assert_eq!(cast(&f32t(&r), DType::U4, &CastOptions::default()).unwrap().raw_bytes().unwrap(), &want);
        let r2: Vec<f32> = (-3..4).map(|v| v as f32).collect();
        assert_eq!(cast(&f32t(&r2), DType::I2, &CastOptions::default()).unwrap().raw_bytes().unwrap(), &[0x39, 0x39]);
        let i4 = cast(&f32t(&r), DType::I4, &CastOptions::default()).unwrap();
        let back = cast(&i4, DType::I8, &CastOptions::default()).unwrap();
        assert_eq!(&back.as_slice::<i8>().unwrap()[..3], &[7, -8, -7]);
        let e = [0.0, 0.124, 0.25, 0.5, 1.1, 2.0, 4.0, 8.0];
        assert_eq!(cast(&f32t(&e), DType::F8E8M0, &CastOptions::default()).unwrap().raw_bytes().unwrap(), &[0x00, 0x7c, 0x7d, 0x7e, 0x80, 0x80, 0x81, 0x82]);
        let b = cast(&f32t(&e), DType::F8E8M0, &CastOptions::default()).unwrap();
        assert_eq!(cast(&b, DType::F32, &CastOptions::default()).unwrap().as_slice::<f32>().unwrap()[1], 0.125);
    }

    #[test]
    fn numbers_strings_and_ints() {
        let x = [1.0f32 / 3.0, 1e-6, 0.1, 123_456_789.0, 1e20, 1.5e-7, f32::NAN, f32::INFINITY, -0.0, 10_000_000.0, 5.0];
        let s = cast(&f32t(&x), DType::String, &CastOptions::default()).unwrap();
        let got: Vec<String> = s.strings().unwrap().iter().map(|b| String::from_utf8(b.clone()).unwrap()).collect();
        assert_eq!(got, ["0.33333334", "1e-06", "0.1", "1.2345679e+08", "1e+20", "1.5e-07", "nan", "inf", "-0.0", "10000000.0", "5.0"]);
        let st = Tensor::from_strings(vec![5], ["3.5", "-INF", "nan", "1e-5", "+inf"].iter().map(|s| s.as_bytes().to_vec()).collect()).unwrap();
        let f = cast(&st, DType::F32, &CastOptions::default()).unwrap();
        let f = f.as_slice::<f32>().unwrap();
        assert_eq!((f[0], f[1], f[3], f[4]), (3.5, f32::NEG_INFINITY, 1e-5, f32::INFINITY));
        assert!(f[2].is_nan());
        let bad = Tensor::from_strings(vec![1], vec![b"hello".to_vec()]).unwrap();
        assert!(cast(&bad, DType::F32, &CastOptions::default()).is_err());
        let i = cast(&Tensor::from_vec(vec![3], vec![300i32, -1, 65536]).unwrap(), DType::U8, &CastOptions::default()).unwrap();
        assert_eq!(i.as_slice::<u8>().unwrap(), &[44, 255, 0]);
        let u = cast(&Tensor::from_vec(vec![2], vec![-1i64, 5]).unwrap(), DType::U64, &CastOptions::default()).unwrap();
        assert_eq!(u.as_slice::<u64>().unwrap(), &[u64::MAX, 5]);
        let b = cast(&f32t(&[0.0, f32::NAN, -2.0]), DType::Bool, &CastOptions::default()).unwrap();
        assert_eq!(b.as_slice::<bool>().unwrap(), &[false, true, true]);
        let h = cast(&f32t(&[1.0 + 1.0 / 4096.0]), DType::BF16, &CastOptions::default()).unwrap();
        assert_eq!(h.as_slice::<bf16>().unwrap()[0].to_f32(), 1.0);
        // Every pair of non-complex types converts without error.
        let src = f32t(&[0.0, 1.0, -2.5, 7.0]);
        for a in DType::ALL.iter().filter(|d| !matches!(d, DType::Complex64 | DType::Complex128)) {
            let ta = cast(&src, *a, &CastOptions::default()).unwrap();
            for b in DType::ALL.iter().filter(|d| !matches!(d, DType::Complex64 | DType::Complex128)) {
                let tb = cast(&ta, *b, &CastOptions::default()).unwrap();
                assert_eq!(tb.shape(), &[4], "{a} -> {b}");
            }
        }
        assert!(matches!(cast(&src, DType::Complex64, &CastOptions::default()), Err(KernelError::Unsupported { .. })));
    }
}
