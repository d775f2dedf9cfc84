//! The quantization formulas, in one small module (as Glow's `Quantization/Base`): parameter
//! ranges, quantize/dequantize, `chooseQuantizationParams`, the 32→8 integer requantization
//! transform, bias specialization, rowwise and fused-rowwise parameters, fp16 conversion and
//! histogram binning/rescaling.
//!
//! Every function follows the facts sheet `glow-quantization.md` (§1–§5, §7, §9) to the bit:
//! float32 where Glow computes in `float`, float64 where it uses `double`. Rounding differs by
//! step, as in Glow: quantize rounds ties-to-even, the zero point and integer kernels round
//! half away from zero.

use crate::config::Schema;

/// A quantized element kind (Glow `ElemKind`), with its parameter range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QType {
    Int8,
    UInt8,
    Int16,
    /// Int32 parameters are computed on an int30 range (Glow `getQuantizedRange`).
    Int32,
}

impl QType {
    /// `(qmin, qmax)` used to compute parameters (Int32: [−2^29, 2^29−1]).
    pub fn param_range(self) -> (i64, i64) {
        match self {
            QType::Int8 => (-128, 127),
            QType::UInt8 => (0, 255),
            QType::Int16 => (-32768, 32767),
            QType::Int32 => ((i32::MIN >> 2) as i64, (i32::MAX >> 2) as i64),
        }
    }
    /// Limits of the storage type (what `quantize` clips to).
    pub fn storage_range(self) -> (i64, i64) {
        match self {
            QType::Int8 => (-128, 127),
            QType::UInt8 => (0, 255),
            QType::Int16 => (-32768, 32767),
            QType::Int32 => (i32::MIN as i64, i32::MAX as i64),
        }
    }
    /// The ONNX element type that stores it.
    pub fn dtype(self) -> qaic_tensor::DType {
        match self {
            QType::Int8 => qaic_tensor::DType::I8,
            QType::UInt8 => qaic_tensor::DType::U8,
            QType::Int16 => qaic_tensor::DType::I16,
            QType::Int32 => qaic_tensor::DType::I32,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            QType::Int8 => "Int8",
            QType::UInt8 => "UInt8",
            QType::Int16 => "Int16",
            QType::Int32 => "Int32",
        }
    }
}

/// Glow `TensorQuantizationParams`: `real = scale × (q − offset)`; the offset is the integer
/// representing real 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub offset: i32,
}

/// Round half away from zero (C `round`).
pub fn rha(x: f64) -> f64 {
    x.round()
}

/// Round half away from zero in float32 (C `roundf`).
pub fn rhaf(x: f32) -> f32 {
    x.round()
}

/// Glow `quantize`: `clamp(rne(fl32(fl32(x / scale) + offset)), storage limits)`.
///
/// ```
/// use qaic_quant::base::{quantize, QType, QuantParams};
/// let p = QuantParams { scale: 0.5, offset: 0 };
/// assert_eq!(quantize(0.25, p, QType::Int8), 0); // tie to even
/// assert_eq!(quantize(1.25, p, QType::Int8), 2);
/// ```
pub fn quantize(x: f32, p: QuantParams, q: QType) -> i64 {
    let r = x / p.scale + p.offset as f32;
    let (lo, hi) = q.storage_range();
    // Through f64 then i64 like Glow's int64 cast: no wrap-around before clipping. NaN → 0.
    let v = r.round_ties_even() as f64;
    if v.is_nan() {
        return 0i64.clamp(lo, hi);
    }
    (v.clamp(i64::MIN as f64, i64::MAX as f64) as i64).clamp(lo, hi)
}

/// Glow `dequantize`: `fl32(scale × (float)(q − offset))`.
pub fn dequantize(q: i64, p: QuantParams) -> f32 {
    p.scale * ((q - p.offset as i64) as f32)
}

/// Steps 2–5 of `chooseQuantizationParams`: include zero, apply the schema's range adjustment,
/// clamp to finite. Returns the adjusted range and the schema in effect for this tensor
/// (`symmetric_with_uint8` becomes `symmetric` when the range has negative values).
pub fn adjust_range(min: f32, max: f32, schema: Schema, q: QType) -> (f32, f32, Schema) {
    let (qmin, qmax) = q.param_range();
    let mut min = min.min(0.0);
    let mut max = max.max(0.0);
    let mut schema = schema;
    if schema == Schema::SymmetricWithUint8 && min < 0.0 {
        schema = Schema::Symmetric;
    }
    if matches!(schema, Schema::Symmetric | Schema::SymmetricWithPower2Scale) {
        let rmin = min as f64 / qmin as f64;
        let rmax = max as f64 / qmax as f64;
        if rmin > rmax {
            max = (rmin * qmax as f64) as f32;
        } else {
            min = (rmax * qmin as f64) as f32;
        }
    }
    min = min.max(-f32::MAX);
    max = max.min(f32::MAX);
    (min, max, schema)
}

/// Steps 7–12 of `chooseQuantizationParams`: scale and zero point of an (already adjusted or
/// calibrated) range.
pub fn params_from_range(min: f32, max: f32, schema: Schema, q: QType) -> QuantParams {
    let (qmin, qmax) = q.param_range();
    let (qminf, qmaxf) = (qmin as f64, qmax as f64);
    let mut scale = (max as f64 - min as f64) / (qmaxf - qminf);
    if scale == 0.0 {
        scale = 0.1;
    }
    let zmin = qminf - min as f64 / scale;
    let zmax = qmaxf - max as f64 / scale;
    let emin = qminf.abs() + (min as f64 / scale).abs();
    let emax = qmaxf.abs() + (max as f64 / scale).abs();
    let mut z = if emin < emax { zmin } else { zmax };
    if (max + min).abs() <= f32::EPSILON {
        z = 0.0;
    }
    let offset = if z < qminf {
        qmin
    } else if z > qmaxf {
        qmax
    } else {
        rha(z) as i64
    };
    if schema == Schema::SymmetricWithPower2Scale {
        scale = 2f64.powf(scale.log2().ceil());
    }
    QuantParams { scale: scale as f32, offset: offset as i32 }
}

/// `chooseQuantizationParams` without calibration (min-max).
///
/// ```
/// use qaic_quant::{base::{choose_params, QType}, Schema};
/// let p = choose_params(-2.0, 5.0, Schema::Asymmetric, QType::Int8);
/// assert_eq!((p.scale, p.offset), (0.027450980618596077, -55));
/// ```
pub fn choose_params(min: f32, max: f32, schema: Schema, q: QType) -> QuantParams {
    let (a, b, s) = adjust_range(min, max, schema, q);
    params_from_range(a, b, s, q)
}

/// Glow `QuantizationTransform32To8`: `((((x >> pre) × scale) + rtn) >> post) + offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transform32To8 {
    pub pre: i32,
    pub post: i32,
    pub scale: i32,
    pub offset: i32,
}

impl Transform32To8 {
    /// Applies the transform (arithmetic shifts: ties round toward +∞).
    pub fn apply(&self, x: i32) -> i32 {
        let rtn: i64 = if self.post > 0 { 1i64 << (self.post - 1) } else { 0 };
        let v = ((((x as i64) >> self.pre) * self.scale as i64) + rtn) >> self.post;
        (v + self.offset as i64) as i32
    }
}

/// Glow `quantizeScaleOffset32To8`.
pub fn quantize_scale_offset_32_to_8(scale: f32, offset: i32) -> Transform32To8 {
    let (mant, exp) = frexp(scale);
    if mant == 0.5 {
        // An exact power of two 2^e (frexp gives 0.5 × 2^(e+1)).
        let e = exp - 1;
        if e > 0 {
            return Transform32To8 { pre: 0, post: 0, scale: scale as i32, offset };
        }
        return Transform32To8 { pre: 0, post: -e, scale: 1, offset };
    }
    let mut s = scale;
    let mut post = 0;
    while s < 0.5 || (s < 256.0 && post < 15) {
        s *= 2.0;
        post += 1;
    }
    let mut pre = 0;
    while s < 255.0 && pre < post / 2 {
        s *= 2.0;
        pre += 1;
    }
    Transform32To8 { pre, post, scale: rhaf(s) as i32, offset }
}

/// C `frexp` for positive finite floats: `x = m × 2^e` with `m ∈ [0.5, 1)`.
fn frexp(x: f32) -> (f32, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let mut e = x.abs().log2().floor() as i32 + 1;
    let mut m = x as f64 / 2f64.powi(e);
    // Correct the rare off-by-one of log2 near powers of two.
    if m.abs() >= 1.0 {
        m /= 2.0;
        e += 1;
    } else if m.abs() < 0.5 {
        m *= 2.0;
        e -= 1;
    }
    (m as f32, e)
}

/// Glow `specializeBiasQuantizationParams` (per tensor, §4.2): Int32 bias gets offset 0, and
/// `bias_scale = in_scale × w_scale` whenever that product is at least the profiled bias scale
/// (or the bias is all zero).
pub fn specialize_bias(bias: QuantParams, bias_q: QType, in_scale: f32, w_scale: f32, bias_all_zero: bool) -> QuantParams {
    let mut b = bias;
    if bias_q == QType::Int32 {
        b.offset = 0;
    }
    let product = in_scale * w_scale;
    if product >= b.scale || bias_all_zero {
        b.scale = product;
    }
    b
}

/// Glow `specializeBiasWeightsQuantizationParams` (per channel, §4.3): returns the possibly
/// raised weight scale and the bias params.
pub fn specialize_bias_weights(
    bias: QuantParams,
    bias_q: QType,
    in_scale: f32,
    w: QuantParams,
    bias_all_zero: bool,
) -> (QuantParams, QuantParams) {
    let mut b = bias;
    let mut w = w;
    if bias_q == QType::Int32 {
        b.offset = 0;
    }
    let product = in_scale * w.scale;
    if product >= b.scale || bias_all_zero {
        b.scale = product;
    } else if bias_q == QType::Int32 {
        w.scale = b.scale / in_scale;
        b.scale = in_scale * w.scale;
    }
    (w, b)
}

/// Fused rowwise (§7.2) params and uint8 values of one row: `value = scale × q + offset`.
pub fn fused_rowwise_row(row: &[f32]) -> (f32, f32, Vec<u8>) {
    let min = row.iter().copied().fold(f32::INFINITY, f32::min);
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if row.is_empty() {
        return (1.0, 0.0, Vec::new());
    }
    let scale = if max - min < 1e-10 { 1.0 } else { ((max as f64 - min as f64) / 255.0) as f32 };
    let q = row.iter().map(|&x| rhaf((x - min) / scale).clamp(0.0, 255.0) as u8).collect();
    (scale, min, q)
}

/// float32 → IEEE binary16, round to nearest even (overflow → ±inf), optionally clipped to
/// ±65504 first (§9, PROPOSED for `-convert-to-fp16` constants).
pub fn to_f16(x: f32, clip: bool) -> half::f16 {
    let x = if clip && x.is_finite() { x.clamp(-65504.0, 65504.0) } else if clip && x.is_infinite() { x.signum() * 65504.0 } else { x };
    half::f16::from_f32(x)
}

/// Glow `getBin`: the bin of `x` in `n` bins over `[lo, lo + n·width)`, float32 arithmetic.
pub fn get_bin(x: f32, lo: f32, width: f32, n: usize) -> usize {
    if width == 0.0 || n == 0 {
        return 0;
    }
    // `as usize` saturates (negative and NaN → 0), like the guarded C++ cast.
    (((x - lo) / width) as usize).min(n - 1)
}

/// Glow `rescaleHistogram` (§6.2): moves integer counts of `src` (over [smin, smax]) to the same
/// number of bins over [dmin, dmax]; mass outside the new range is dropped.
pub fn rescale_histogram(src: &[f32], smin: f32, smax: f32, dmin: f32, dmax: f32) -> Vec<f32> {
    let n = src.len();
    if n == 0 || (smin == dmin && smax == dmax) {
        return src.to_vec();
    }
    let sw = (smax - smin) / n as f32;
    let dw = (dmax - dmin) / n as f32;
    let mut dst = vec![0f32; n];
    for (i, &h) in src.iter().enumerate() {
        if h == 0.0 {
            continue;
        }
        let s0 = smin + i as f32 * sw;
        let s1 = smin + (i + 1) as f32 * sw;
        let a = (((s0 - dmin) / dw).floor().max(0.0) as usize).min(n - 1);
        let b = (((s1 - dmin) / dw).ceil().max(0.0) as usize).min(n - 1);
        let mut rem = h;
        for (j, d) in dst.iter_mut().enumerate().take(b + 1).skip(a) {
            let d0 = dmin + j as f32 * dw;
            let d1 = dmin + (j + 1) as f32 * dw;
            let r = ((s1.min(d1) - s0.max(d0)) / sw).clamp(0.0, 1.0);
            let v = rhaf(r * h).min(rem);
            *d += v;
            rem -= v;
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;
    use Schema::*;

    fn p(min: f32, max: f32, s: Schema, q: QType) -> (f32, i32) {
        let r = choose_params(min, max, s, q);
        (r.scale, r.offset)
    }

    #[test]
    fn v1_int8_params() {
        let rows: [(f32, f32, [(f32, i32); 4]); 6] = [
            (0.0, 6.0, [(0.0235294122248888, -128), (0.04724409431219101, 0), (0.0235294122248888, -128), (0.0625, 0)]),
            (-3.0, 3.0, [(0.0235294122248888, 0), (0.023622047156095505, 0), (0.023622047156095505, 0), (0.03125, 0)]),
            (-2.0, 5.0, [(0.027450980618596077, -55), (0.03937007859349251, 0), (0.03937007859349251, 0), (0.0625, 0)]),
            (2.0, 5.0, [(0.019607843831181526, -128), (0.03937007859349251, 0), (0.019607843831181526, -128), (0.0625, 0)]),
            (-8.0, -2.0, [(0.0313725508749485, 127), (0.0625, 0), (0.0625, 0), (0.0625, 0)]),
            (0.0, 0.0, [(0.10000000149011612, 0), (0.10000000149011612, 0), (0.10000000149011612, 0), (0.125, 0)]),
        ];
        for (min, max, want) in rows {
            for (s, w) in [Asymmetric, Symmetric, SymmetricWithUint8, SymmetricWithPower2Scale].into_iter().zip(want) {
                assert_eq!(p(min, max, s, QType::Int8), w, "[{min},{max}] {s:?}");
            }
        }
    }

    #[test]
    fn v2_int16_params() {
        let rows: [(f32, f32, [(f32, i32); 4]); 5] = [
            (0.0, 6.0, [(9.155413135886192e-05, -32768), (0.0001831110566854477, 0), (9.155413135886192e-05, -32768), (0.000244140625, 0)]),
            (-3.0, 3.0, [(9.155413135886192e-05, 0), (9.155552834272385e-05, 0), (9.155552834272385e-05, 0), (0.0001220703125, 0)]),
            (-2.0, 5.0, [(0.00010681315325200558, -14044), (0.00015259254723787308, 0), (0.00015259254723787308, 0), (0.000244140625, 0)]),
            (2.0, 5.0, [(7.629510946571827e-05, -32768), (0.00015259254723787308, 0), (7.629510946571827e-05, -32768), (0.000244140625, 0)]),
            (-8.0, -2.0, [(0.00012207217514514923, 32767), (0.000244140625, 0), (0.000244140625, 0), (0.000244140625, 0)]),
        ];
        for (min, max, want) in rows {
            for (s, w) in [Asymmetric, Symmetric, SymmetricWithUint8, SymmetricWithPower2Scale].into_iter().zip(want) {
                assert_eq!(p(min, max, s, QType::Int16), w, "[{min},{max}] {s:?}");
            }
        }
    }

    #[test]
    fn edge_cases() {
        // [3,3] is zero-extended; ±inf clamps to ±FLT_MAX with symmetric offset 0.
        assert_eq!(p(3.0, 3.0, Asymmetric, QType::Int8), p(0.0, 3.0, Asymmetric, QType::Int8));
        let r = choose_params(f32::NEG_INFINITY, f32::INFINITY, Symmetric, QType::Int8);
        assert!(r.scale.is_finite() && r.offset == 0);
    }

    #[test]
    fn v3_quantize_dequantize() {
        let q8 = QuantParams { scale: 0.027450980618596077, offset: -55 };
        assert_eq!(choose_params(-2.0, 5.0, Asymmetric, QType::Int8), q8);
        for (x, q, d) in [
            (-3.0, -128, -2.0039215087890625),
            (-2.0, -128, -2.0039215087890625),
            (-1.0, -91, -0.9882352948188782),
            (0.0, -55, 0.0),
            (0.5, -37, 0.4941176474094391),
            (1.2345, -10, 1.2352941036224365),
            (5.0, 127, 4.9960784912109375),
            (6.0, 127, 4.9960784912109375),
        ] {
            assert_eq!(quantize(x, q8, QType::Int8), q, "{x}");
            assert_eq!(dequantize(q, q8), d as f32, "{x}");
        }
        let q16 = QuantParams { scale: 0.00010681315325200558, offset: -14044 };
        for (x, q, d) in [
            (-2.0, -32768, -1.999969482421875),
            (0.0, -14044, 0.0),
            (1.2345, -2486, 1.234546422958374),
            (5.0, 32767, 5.000030517578125),
        ] {
            assert_eq!(quantize(x, q16, QType::Int16), q, "{x}");
            assert_eq!(dequantize(q, q16), d as f32, "{x}");
        }
    }

    #[test]
    fn v4_rounding() {
        let h = QuantParams { scale: 0.5, offset: 0 };
        for (x, q) in [(0.25, 0), (0.75, 2), (1.25, 2), (-0.25, 0), (-0.75, -2), (63.75, 127), (64.0, 127)] {
            assert_eq!(quantize(x, h, QType::Int8), q, "{x}");
        }
    }

    #[test]
    fn v5_requantize() {
        let a = QuantParams { scale: 0.027450980618596077, offset: -55 };
        let s = QuantParams { scale: 0.03937007859349251, offset: 0 };
        assert_eq!(choose_params(-2.0, 5.0, Symmetric, QType::Int8), s);
        for (qi, qo) in [(-128, -51), (-55, 0), (0, 38), (100, 108), (127, 127)] {
            assert_eq!(quantize(dequantize(qi, a), s, QType::Int8), qo, "{qi}");
        }
        assert_eq!(dequantize(0, a), 1.5098038911819458);
        assert_eq!(dequantize(100, a), 4.254901885986328);
    }

    #[test]
    fn v6_bias() {
        let inp = choose_params(-1.0, 3.0, Asymmetric, QType::Int8);
        assert_eq!(inp, QuantParams { scale: 0.01568627543747425, offset: -64 });
        let w = choose_params(-0.5, 0.25, Asymmetric, QType::Int8);
        assert_eq!(w, QuantParams { scale: 0.0029411765281111, offset: 42 });
        let b = choose_params(-0.2, 0.7, Asymmetric, QType::Int32);
        assert_eq!(b, QuantParams { scale: 8.381902949494702e-10, offset: -298261612 });
        let sb = specialize_bias(b, QType::Int32, inp.scale, w.scale, false);
        assert_eq!(sb, QuantParams { scale: 4.613610508386046e-05, offset: 0 });
        for (x, q) in [(-0.2, -4335), (0.1, 2167), (0.7, 15172)] {
            assert_eq!(quantize(x, sb, QType::Int32), q);
        }
        let b8 = choose_params(-0.2, 0.7, Asymmetric, QType::Int8);
        assert_eq!(b8, QuantParams { scale: 0.0035294117406010628, offset: -71 });
        assert_eq!(specialize_bias(b8, QType::Int8, inp.scale, w.scale, false), b8);
    }

    #[test]
    fn v7_transform_32_to_8() {
        let xs = [100, -100, 1000, -37];
        for (scale, want, out) in [
            (0.41f32, (0, 10, 420), [41, -41, 410, -15]),
            (0.0078125, (0, 7, 1), [1, -1, 8, 0]),
            (2.0, (0, 0, 2), [200, -200, 2000, -74]),
            (0.00123, (3, 15, 322), [0, 0, 1, 0]),
        ] {
            let t = quantize_scale_offset_32_to_8(scale, 0);
            assert_eq!((t.pre, t.post, t.scale), want, "{scale}");
            assert_eq!(xs.map(|x| t.apply(x)), out, "{scale}");
        }
    }

    #[test]
    fn v12_channelwise_conv() {
        let inp = QuantParams { scale: 0.01568627543747425, offset: -64 };
        let c0 = choose_params(-0.5, 0.25, Symmetric, QType::Int8);
        assert_eq!(c0, QuantParams { scale: 0.00390625, offset: 0 });
        assert_eq!([-0.5, 0.25, 0.1].map(|x| quantize(x, c0, QType::Int8)), [-128, 64, 26]);
        let b0 = choose_params(0.3, 0.3, Symmetric, QType::Int32);
        assert_eq!(b0, QuantParams { scale: 5.587935669737476e-10, offset: 0 });
        let (w0, sb0) = specialize_bias_weights(b0, QType::Int32, inp.scale, c0, false);
        assert_eq!(w0, c0);
        assert_eq!(sb0, QuantParams { scale: 6.127451342763379e-05, offset: 0 });
        assert_eq!(quantize(0.3, sb0, QType::Int32), 4896);
        let c1 = choose_params(-0.04, 0.08, Symmetric, QType::Int8);
        assert_eq!(c1, QuantParams { scale: 0.0006299212691374123, offset: 0 });
        assert_eq!([0.02, 0.08, -0.04].map(|x| quantize(x, c1, QType::Int8)), [32, 127, -63]);
        let b1 = choose_params(-0.01, -0.01, Symmetric, QType::Int32);
        assert_eq!(b1, QuantParams { scale: 1.8626451075975936e-11, offset: 0 });
        let (_, sb1) = specialize_bias_weights(b1, QType::Int32, inp.scale, c1, false);
        assert_eq!(sb1, QuantParams { scale: 9.88111878541531e-06, offset: 0 });
        assert_eq!(quantize(-0.01, sb1, QType::Int32), -1012);
        assert_eq!(choose_params(-0.5, 0.25, Asymmetric, QType::Int8), QuantParams { scale: 0.0029411765281111, offset: 42 });
    }

    #[test]
    fn v13_rowwise_rows() {
        let rows = [[0.1f32, 0.5, -0.2], [-0.3, 0.2, 0.6]];
        let want_a = [((0.0027450979687273502, -55), [-19, 127, -128]), ((0.0035294119734317064, -43), [-128, 14, 127])];
        let want_s = [((0.003937007859349251, 0), [25, 127, -51]), ((0.004724409431219101, 0), [-64, 42, 127])];
        for (schema, want) in [(Asymmetric, want_a), (Symmetric, want_s)] {
            for (row, ((s, o), q)) in rows.iter().zip(want) {
                let mn = row.iter().copied().fold(f32::INFINITY, f32::min);
                let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let pr = choose_params(mn, mx, schema, QType::Int8);
                assert_eq!((pr.scale, pr.offset), (s as f32, o));
                assert_eq!(row.map(|x| quantize(x, pr, QType::Int8)), q);
            }
        }
    }

    #[test]
    fn v14_fused_rowwise() {
        let (s, o, q) = fused_rowwise_row(&[0.1, 0.5, -0.2, 0.3]);
        assert_eq!((s, o), (0.0027450979687273502, -0.20000000298023224));
        assert_eq!(q, vec![109, 255, 0, 182]);
        let d: Vec<f32> = q.iter().map(|&v| s * v as f32 + o).collect();
        assert_eq!(d, vec![0.09921567142009735, 0.5, -0.20000000298023224, 0.2996078133583069]);
    }

    #[test]
    fn v15_fp16() {
        for (x, plain, clipped) in [
            (70000.0f32, f32::INFINITY, 65504.0),
            (-70000.0, f32::NEG_INFINITY, -65504.0),
            (65519.0, 65504.0, 65504.0),
            (65520.0, f32::INFINITY, 65504.0),
            (0.1, 0.0999755859375, 0.0999755859375),
            (2049.0, 2048.0, 2048.0),
            (2051.0, 2052.0, 2052.0),
            (1e-8, 0.0, 0.0),
            (3e-8, 5.960464477539063e-08, 5.960464477539063e-08),
        ] {
            assert_eq!(to_f16(x, false).to_f32(), plain, "{x}");
            assert_eq!(to_f16(x, true).to_f32(), clipped, "{x}");
        }
    }

    #[test]
    fn rescale_anchors() {
        assert_eq!(rescale_histogram(&[1.0, 2.0, 3.0, 4.0], 0.0, 1.0, -1.0, 1.0), vec![0.0, 0.0, 3.0, 7.0]);
        assert_eq!(rescale_histogram(&[2.0, 4.0, 6.0, 8.0], -1.0, 1.0, 0.0, 1.0), vec![3.0, 3.0, 4.0, 4.0]);
    }
}
