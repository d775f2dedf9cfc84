//! Elementwise kernels: f32 unary math (vectorised per ISA), f32 binary arithmetic with
//! broadcasting, and the generic broadcast iterator ([`broadcast`]) for every element type.

pub mod broadcast;
pub mod math;

use crate::dispatch::multiversion;
use crate::threads::{parallel_for, SendPtr};
use crate::{KernelError, Kernels};
use broadcast::Plan;

/// f32 unary operations. Parameters follow the ONNX attributes of the same-named op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Exp,
    Log,
    Tanh,
    Sigmoid,
    Erf,
    /// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`.
    Gelu,
    /// Tanh approximation of GELU.
    GeluTanh,
    Relu,
    LeakyRelu(f32),
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
    Sqrt,
    Reciprocal,
    Abs,
    Neg,
    Floor,
    Ceil,
    /// Round half to even.
    Round,
    Sign,
    Clip { min: f32, max: f32 },
    Elu(f32),
    Selu { alpha: f32, gamma: f32 },
    Celu(f32),
    ThresholdedRelu(f32),
    Softplus,
    Softsign,
    /// `x * sigmoid(x)`.
    Silu,
    Mish,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Asinh,
    Acosh,
    Atanh,
}

/// f32 binary operations (NumPy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// C `fmod` (ONNX `Mod` with `fmod=1`).
    Fmod,
    /// `x < 0 ? x * slope : x` (ONNX `PRelu`, slope as second operand).
    PRelu,
}

#[inline(always)]
fn unary_fn<const FMA: bool>(op: UnaryOp) -> impl Fn(f32) -> f32 {
    use math::*;
    move |x: f32| match op {
        UnaryOp::Exp => exp::<FMA>(x),
        UnaryOp::Log => ln::<FMA>(x),
        UnaryOp::Tanh => tanh::<FMA>(x),
        UnaryOp::Sigmoid => sigmoid::<FMA>(x),
        UnaryOp::Erf => erf::<FMA>(x),
        UnaryOp::Gelu => gelu::<FMA>(x),
        UnaryOp::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2/pi)
            // 0.5 (1 + tanh u) = sigmoid(2u): no cancellation for negative x.
            x * sigmoid::<FMA>(2.0 * C * mad::<FMA>(0.044715 * x * x, x, x))
        }
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::LeakyRelu(a) => {
            if x < 0.0 {
                a * x
            } else {
                x
            }
        }
        UnaryOp::HardSigmoid { alpha, beta } => mad::<FMA>(alpha, x, beta).clamp(0.0, 1.0),
        UnaryOp::HardSwish => x * mad::<FMA>(x, 1.0 / 6.0, 0.5).clamp(0.0, 1.0),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Neg => -x,
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
        UnaryOp::Clip { min, max } => x.max(min).min(max),
        UnaryOp::Elu(a) => {
            if x < 0.0 {
                a * (exp::<FMA>(x) - 1.0)
            } else {
                x
            }
        }
        UnaryOp::Selu { alpha, gamma } => {
            if x <= 0.0 {
                gamma * (alpha * exp::<FMA>(x) - alpha)
            } else {
                gamma * x
            }
        }
        UnaryOp::Celu(a) => x.max(0.0) + (a * (exp::<FMA>(x / a) - 1.0)).min(0.0),
        UnaryOp::ThresholdedRelu(a) => {
            if x > a {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Softplus => softplus::<FMA>(x),
        UnaryOp::Softsign => x / (1.0 + x.abs()),
        UnaryOp::Silu => x * sigmoid::<FMA>(x),
        UnaryOp::Mish => x * tanh::<FMA>(softplus::<FMA>(x)),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tan => x.tan(),
        UnaryOp::Asin => x.asin(),
        UnaryOp::Acos => x.acos(),
        UnaryOp::Atan => x.atan(),
        UnaryOp::Sinh => x.sinh(),
        UnaryOp::Cosh => x.cosh(),
        UnaryOp::Asinh => x.asinh(),
        UnaryOp::Acosh => x.acosh(),
        UnaryOp::Atanh => x.atanh(),
    }
}

/// `log(1 + exp(x))` without overflow.
#[inline(always)]
fn softplus<const FMA: bool>(x: f32) -> f32 {
    // log1p(t) = ln(u) * t / (u - 1) with u = 1 + t (Goldberg): accurate for tiny t.
    let t = math::exp::<FMA>(-x.abs());
    let u = 1.0 + t;
    let l = if u == 1.0 { t } else { math::ln::<FMA>(u) * t / (u - 1.0) };
    x.max(0.0) + l
}

/// One loop per op (the op is a constant inside each arm) so each loop vectorises on its own.
#[inline(always)]
fn unary_body<const FMA: bool>(op: UnaryOp, x: Option<&[f32]>, y: &mut [f32]) {
    macro_rules! run {
        ($v:expr) => {{
            let f = $v;
            match x {
                Some(x) => {
                    for (o, i) in y.iter_mut().zip(x) {
                        *o = f(*i);
                    }
                }
                None => {
                    for o in y.iter_mut() {
                        *o = f(*o);
                    }
                }
            }
        }};
    }
    use math::*;
    match op {
        UnaryOp::Exp => run!(|x: f32| exp::<FMA>(x)),
        UnaryOp::Log => run!(|x: f32| ln::<FMA>(x)),
        UnaryOp::Tanh => run!(|x: f32| tanh::<FMA>(x)),
        UnaryOp::Sigmoid => run!(|x: f32| sigmoid::<FMA>(x)),
        UnaryOp::Erf => run!(|x: f32| erf::<FMA>(x)),
        UnaryOp::Gelu => run!(|x: f32| gelu::<FMA>(x)),
        UnaryOp::Relu => run!(|x: f32| x.max(0.0)),
        UnaryOp::HardSwish => run!(|x: f32| x * mad::<FMA>(x, 1.0 / 6.0, 0.5).clamp(0.0, 1.0)),
        UnaryOp::Sqrt => run!(|x: f32| x.sqrt()),
        UnaryOp::Reciprocal => run!(|x: f32| 1.0 / x),
        UnaryOp::Abs => run!(|x: f32| x.abs()),
        UnaryOp::Neg => run!(|x: f32| -x),
        UnaryOp::Floor => run!(|x: f32| x.floor()),
        UnaryOp::Ceil => run!(|x: f32| x.ceil()),
        UnaryOp::Round => run!(|x: f32| x.round_ties_even()),
        UnaryOp::Softplus => run!(|x: f32| softplus::<FMA>(x)),
        UnaryOp::Softsign => run!(|x: f32| x / (1.0 + x.abs())),
        UnaryOp::Silu => run!(|x: f32| x * sigmoid::<FMA>(x)),
        UnaryOp::GeluTanh => run!(|x: f32| x * sigmoid::<FMA>(2.0 * 0.797_884_6 * mad::<FMA>(0.044715 * x * x, x, x))),
        UnaryOp::LeakyRelu(a) => run!(|x: f32| if x < 0.0 { a * x } else { x }),
        UnaryOp::HardSigmoid { alpha, beta } => run!(|x: f32| mad::<FMA>(alpha, x, beta).clamp(0.0, 1.0)),
        UnaryOp::Clip { min, max } => run!(|x: f32| x.max(min).min(max)),
        UnaryOp::Elu(a) => run!(|x: f32| if x < 0.0 { a * (exp::<FMA>(x) - 1.0) } else { x }),
        UnaryOp::Selu { alpha, gamma } => run!(|x: f32| if x <= 0.0 { gamma * (alpha * exp::<FMA>(x) - alpha) } else { gamma * x }),
        // Rare ops: the shared scalar definition.
        op => run!(unary_fn::<FMA>(op)),
    }
}
multiversion!(fn unary_chunk(op: UnaryOp, x: Option<&[f32]>, y: &mut [f32]) => unary_body);

/// An operand of a binary run: a slice or one repeated value.
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

#[inline(always)]
fn binary_fn(op: BinaryOp) -> impl Fn(f32, f32) -> f32 {
    move |a: f32, b: f32| match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Max => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        }
        BinaryOp::Fmod => a % b,
        BinaryOp::PRelu => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::redundant_guards)]
fn binary_body<const FMA: bool>(op: BinaryOp, a: Src, b: Src, out: &mut [f32]) {
    macro_rules! go {
        ($f:expr) => {{
            let f = $f;
            match (a, b) {
                (Src::Slice(a), Src::Slice(b)) => {
                    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                        *o = f(*x, *y);
                    }
                }
                (Src::Slice(a), Src::Scalar(y)) => {
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = f(*x, y);
                    }
                }
                (Src::Scalar(x), Src::Slice(b)) => {
                    for (o, y) in out.iter_mut().zip(b) {
                        *o = f(x, *y);
                    }
                }
                (Src::Scalar(x), Src::Scalar(y)) => out.fill(f(x, y)),
            }
        }};
    }
    match op {
        BinaryOp::Add => go!(|x: f32, y: f32| x + y),
        BinaryOp::Sub => go!(|x: f32, y: f32| x - y),
        BinaryOp::Mul => go!(|x: f32, y: f32| x * y),
        BinaryOp::Div => go!(|x: f32, y: f32| x / y),
        BinaryOp::Max => go!(binary_fn(BinaryOp::Max)),
        BinaryOp::Min => go!(binary_fn(BinaryOp::Min)),
        BinaryOp::PRelu => go!(binary_fn(BinaryOp::PRelu)),
        BinaryOp::Pow => match b {
            // Common constant exponents avoid powf.
            Src::Scalar(e) if e == 2.0 => go!(|x: f32, _y: f32| x * x),
            Src::Scalar(e) if e == 3.0 => go!(|x: f32, _y: f32| x * x * x),
            Src::Scalar(e) if e == 1.0 => go!(|x: f32, _y: f32| x),
            Src::Scalar(e) if e == 0.5 => go!(|x: f32, _y: f32| x.sqrt()),
            _ => go!(binary_fn(BinaryOp::Pow)),
        },
        BinaryOp::Fmod => go!(binary_fn(BinaryOp::Fmod)),
    }
}
multiversion!(fn binary_run(op: BinaryOp, a: Src, b: Src, out: &mut [f32]) => binary_body);

const PAR_MIN: usize = 1 << 15;

/// Splits `n` elements into chunks for threads (one chunk when small).
fn chunks(n: usize) -> usize {
    let t = crate::num_threads();
    if n < PAR_MIN || t <= 1 { 1 } else { (t * 2).min(n / (PAR_MIN / 4)).max(1) }
}

impl Kernels {
    /// `y = op(x)` elementwise. `x` and `y` must have the same length.
    pub fn unary(&self, op: UnaryOp, x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
        if x.len() != y.len() {
            return Err(KernelError::invalid("unary", format!("input has {} elements, output {}", x.len(), y.len())));
        }
        let n = x.len();
        let c = chunks(n);
        let per = n.div_ceil(c);
        let yp = SendPtr(y.as_mut_ptr());
        let isa = self.isa;
        parallel_for(c, |i| {
            let (s, e) = (i * per, ((i + 1) * per).min(n));
            // SAFETY: chunks are disjoint.
            let ys = unsafe { std::slice::from_raw_parts_mut(yp.get().add(s), e - s) };
            unary_chunk(isa, op, Some(&x[s..e]), ys);
        });
        Ok(())
    }

    /// `x = op(x)` elementwise, in place.
    pub fn unary_inplace(&self, op: UnaryOp, x: &mut [f32]) {
        let n = x.len();
        let c = chunks(n);
        let per = n.div_ceil(c);
        let xp = SendPtr(x.as_mut_ptr());
        let isa = self.isa;
        parallel_for(c, |i| {
            let (s, e) = (i * per, ((i + 1) * per).min(n));
            // SAFETY: chunks are disjoint.
            let xs = unsafe { std::slice::from_raw_parts_mut(xp.get().add(s), e - s) };
            unary_chunk(isa, op, None, xs);
        });
    }

    /// `out = a op b` with NumPy broadcasting; returns the output shape.
    pub fn binary(
        &self,
        op: BinaryOp,
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        use crate::util::check_len;
        check_len("binary", "first operand", a.len(), a_shape)?;
        check_len("binary", "second operand", b.len(), b_shape)?;
        let plan = Plan::new([a_shape, b_shape])?;
        check_len("binary", "output", out.len(), &plan.out_shape)?;
        let isa = self.isa;
        plan.par_runs(out, |r, o| {
            fn src(d: &[f32], off: usize, inner: usize, len: usize) -> Src<'_> {
                if inner == 1 { Src::Slice(&d[off..off + len]) } else { Src::Scalar(d[off]) }
            }
            binary_run(isa, op, src(a, r.offsets[0], r.inner[0], r.len), src(b, r.offsets[1], r.inner[1], r.len), o);
        });
        Ok(plan.out_shape)
    }
}

/// Scalar reference of a unary op (libm-accurate where std provides it); used by tests and
/// for f64 callers.
pub fn unary_reference(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
        UnaryOp::Softplus => x.max(0.0) + (1.0 + (-x.abs()).exp()).ln(),
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::Mish => x * (x.max(0.0) + (1.0 + (-x.abs()).exp()).ln()).tanh(),
        UnaryOp::Elu(a) => {
            if x < 0.0 {
                a as f64 * x.exp_m1()
            } else {
                x
            }
        }
        op => unary_fn::<false>(op)(x as f32) as f64,
    }
}

#[cfg(test)]
mod tests;
