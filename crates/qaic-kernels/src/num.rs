//! The numeric element trait used by type-generic kernels (reductions, pooling, integer
//! arithmetic). Integer arithmetic wraps (two's complement), as in NumPy and onnxruntime;
//! half-precision types compute through f32.

use half::{bf16, f16};

/// A numeric element type.
pub trait Numeric: Copy + Send + Sync + PartialOrd + std::fmt::Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// The identity of `max` (lowest value; `-inf` for floats).
    const LOWEST: Self;
    /// The identity of `min` (highest value; `+inf` for floats).
    const HIGHEST: Self;
    const IS_FLOAT: bool;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn abs(self) -> Self;
    fn to_f64(self) -> f64;
    /// Conversion from f64 (floats round, integers truncate toward zero and saturate).
    fn from_f64(v: f64) -> Self;
    fn is_nan(self) -> bool {
        false
    }
}

macro_rules! int_numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            const IS_FLOAT: bool = false;
            #[inline(always)] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if self < 0 { (0 as $t).wrapping_sub(self) } else { self } }
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
        }
    )*};
}
int_numeric!(i8, u8, i16, u16, i32, u32, i64, u64);

macro_rules! float_numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            const IS_FLOAT: bool = true;
            #[inline(always)] fn add(self, o: Self) -> Self { self + o }
            #[inline(always)] fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)] fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    )*};
}
float_numeric!(f32, f64);

macro_rules! half_numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            const ZERO: Self = <$t>::ZERO;
            const ONE: Self = <$t>::ONE;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            const IS_FLOAT: bool = true;
            #[inline(always)] fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            #[inline(always)] fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            #[inline(always)] fn abs(self) -> Self { <$t>::from_bits(self.to_bits() & 0x7fff) }
            #[inline(always)] fn to_f64(self) -> f64 { self.to_f64() }
            #[inline(always)] fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            #[inline(always)] fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    )*};
}
half_numeric!(f16, bf16);

/// NaN-propagating max (ONNX `Max`/`ReduceMax` semantics for floats).
#[inline(always)]
pub fn nan_max<T: Numeric>(a: T, b: T) -> T {
    if a.is_nan() || b > a { b } else { a }
}
/// NaN-propagating min.
#[inline(always)]
pub fn nan_min<T: Numeric>(a: T, b: T) -> T {
    if a.is_nan() || b < a { b } else { a }
}
