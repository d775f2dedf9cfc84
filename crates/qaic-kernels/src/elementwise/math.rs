//! Branch-free f32 math, written once and compiled per ISA by [`super`]'s dispatch macros.
//!
//! Every function is `#[inline(always)]` and free of data-dependent branches so that the
//! loops calling them auto-vectorise under the enabled target features. `FMA` selects fused
//! multiply-add (only where the ISA has it: a software `fmaf` would be slow).
//! Algorithms follow Cephes (range reduction + minimax polynomials); errors are within a few
//! ulp of correctly rounded results (tested against `libm` in f64).

#[inline(always)]
pub fn mad<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

#[inline(always)]
fn sel(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// Round to nearest integer (ties to even) for |x| < 2^22, without SSE4.1.
#[inline(always)]
fn round_magic(x: f32) -> f32 {
    const M: f32 = 12_582_912.0; // 1.5 * 2^23
    (x + M) - M
}

/// 2^n for an integer-valued `n` in [-126, 127]. The integer is read from the bits of
/// `n + 1.5 * 2^23` (a saturating float->int cast would not vectorise).
#[inline(always)]
fn pow2i(n: f32) -> f32 {
    let i = (n + 12_582_912.0).to_bits().wrapping_sub(0x4b40_0000);
    f32::from_bits(i.wrapping_add(127) << 23)
}

#[inline(always)]
pub fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-104.0, 89.0);
    let fx = round_magic(xc * LOG2E);
    let r = mad::<FMA>(fx, -C2, mad::<FMA>(fx, -C1, xc));
    let z = r * r;
    let mut y = 1.987_569_1e-4f32;
    y = mad::<FMA>(y, r, 1.398_199_9e-3);
    y = mad::<FMA>(y, r, 8.333_452e-3);
    y = mad::<FMA>(y, r, 4.166_579_6e-2);
    y = mad::<FMA>(y, r, 1.666_666_5e-1);
    y = mad::<FMA>(y, r, 5e-1);
    y = mad::<FMA>(y, z, r) + 1.0;
    // Two scalings keep 2^n representable down to the subnormal range.
    let n1 = round_magic(fx * 0.5 - 0.25);
    let n2 = fx - n1;
    let res = y * pow2i(n1) * pow2i(n2);
    let res = sel(x > 88.722_84, f32::INFINITY, res);
    let res = sel(x < -103.972_08, 0.0, res);
    sel(x.is_nan(), x, res)
}

#[inline(always)]
pub fn ln<const FMA: bool>(x: f32) -> f32 {
    const SQRTHF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let sub = x < f32::MIN_POSITIVE;
    let xs = sel(sub, x * 8_388_608.0, x); // 2^23 for subnormals
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 as f32 - 126.0 - sel(sub, 23.0, 0.0);
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < SQRTHF;
    e -= sel(small, 1.0, 0.0);
    let m = sel(small, m + m, m) - 1.0;
    let z = m * m;
    let mut y = 7.037_683_6e-2f32;
    y = mad::<FMA>(y, m, -1.151_461e-1);
    y = mad::<FMA>(y, m, 1.167_699_9e-1);
    y = mad::<FMA>(y, m, -1.242_014_1e-1);
    y = mad::<FMA>(y, m, 1.424_932_3e-1);
    y = mad::<FMA>(y, m, -1.666_805_8e-1);
    y = mad::<FMA>(y, m, 2.000_071_4e-1);
    y = mad::<FMA>(y, m, -2.499_999_4e-1);
    y = mad::<FMA>(y, m, 3.333_333e-1);
    y = y * m * z;
    y = mad::<FMA>(e, -2.121_944_4e-4, y);
    y = mad::<FMA>(z, -0.5, y);
    let r = mad::<FMA>(e, 0.693_359_4, m + y);
    let r = sel(x == f32::INFINITY, x, r);
    let r = sel(x == 0.0, f32::NEG_INFINITY, r);
    sel(x < 0.0 || x.is_nan(), f32::NAN, r)
}

#[inline(always)]
pub fn tanh<const FMA: bool>(x: f32) -> f32 {
    let ax = x.abs();
    let z = x * x;
    let mut p = -5.704_988_7e-3f32;
    p = mad::<FMA>(p, z, 2.063_909e-2);
    p = mad::<FMA>(p, z, -5.373_971_6e-2);
    p = mad::<FMA>(p, z, 1.333_144_2e-1);
    p = mad::<FMA>(p, z, -3.333_328e-1);
    let small = mad::<FMA>(p * z, x, x);
    let e = exp::<FMA>(2.0 * ax.min(10.0));
    let large = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    let r = sel(ax < 0.625, small, large);
    sel(x.is_nan(), x, r)
}

#[inline(always)]
pub fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// erf for |x| < 1: `x * T(x^2)` (Cephes `erff`).
#[inline(always)]
fn erf_small<const FMA: bool>(x: f32) -> f32 {
    let z = x * x;
    let mut t = 7.853_861_4e-5f32;
    t = mad::<FMA>(t, z, -8.010_193_6e-4);
    t = mad::<FMA>(t, z, 5.188_327_6e-3);
    t = mad::<FMA>(t, z, -2.685_381_2e-2);
    t = mad::<FMA>(t, z, 1.128_358_5e-1);
    t = mad::<FMA>(t, z, -3.761_262_5e-1);
    t = mad::<FMA>(t, z, std::f32::consts::FRAC_2_SQRT_PI);
    x * t
}

/// erfc for a >= 1: `exp(-a^2) / a * h(1/a)`, h a degree-8 least-squares fit on Chebyshev
/// nodes of [1, 4] (relative error 1.5e-7); inputs above 4 are clamped (erfc(4) = 1.5e-8).
#[inline(always)]
fn erfc_tail<const FMA: bool>(a: f32) -> f32 {
    let axc = a.clamp(1.0, 4.0);
    let q = 1.0 / axc;
    let mut h = 0.054_865_383f32;
    h = mad::<FMA>(h, q, -0.314_059_26);
    h = mad::<FMA>(h, q, 0.762_702_05);
    h = mad::<FMA>(h, q, -0.982_770_56);
    h = mad::<FMA>(h, q, 0.621_802_4);
    h = mad::<FMA>(h, q, 0.016_594_797);
    h = mad::<FMA>(h, q, -0.298_699_23);
    h = mad::<FMA>(h, q, 0.003_170_531_2);
    h = mad::<FMA>(h, q, 0.563_977_54);
    exp::<FMA>(-axc * axc) * q * h
}

/// erf: polynomial for |x| < 1, `1 - erfc(|x|)` beyond.
#[inline(always)]
pub fn erf<const FMA: bool>(x: f32) -> f32 {
    let ax = x.abs();
    let large = (1.0 - erfc_tail::<FMA>(ax)).copysign(x);
    let r = sel(ax < 1.0, erf_small::<FMA>(x), large);
    sel(x.is_nan(), x, r)
}

/// Exact GELU `0.5 x (1 + erf(x / sqrt 2))`; for x < 0 via erfc to avoid cancellation.
#[inline(always)]
pub fn gelu<const FMA: bool>(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = -z;
    let erfc_neg = sel(a < 1.0, 1.0 - erf_small::<FMA>(a), erfc_tail::<FMA>(a));
    0.5 * x * sel(x >= 0.0, 1.0 + erf::<FMA>(z), erfc_neg)
}
