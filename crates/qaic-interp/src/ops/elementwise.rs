//! Elementwise ops: unary math and activations, broadcasting binary arithmetic, comparisons,
//! logic and bitwise ops, `Where`, `Clip`, `Shrink`, and `Cast`/`CastLike` (in [`cast`]).
//!
//! Float math is written once per op and instantiated for f32 and f64; f16/bf16 compute in f32.
//! Broadcasting collapses the shapes to the fewest strided loops and runs a contiguous inner loop
//! the compiler can vectorise, so no per-element index vectors are built.

use qaic_tensor::{DType, Element, Tensor, Value, bf16, f16};

use super::util::{input, opt_input, out1};
use super::linalg::kernels;
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use qaic_kernels::Kernels;
use qaic_kernels::elementwise::{BinaryOp, UnaryOp as U, unary_reference};
use crate::{OpError, op_err};

pub(crate) mod cast;

pub(crate) type KResult = Result<Box<dyn Kernel>, OpError>;
pub(crate) type Outs = Result<Vec<Option<Value>>, OpError>;

/// Wraps a function of the inputs as a kernel.
pub(crate) fn kernel(f: impl Fn(&[Option<&Value>]) -> Outs + Send + Sync + 'static) -> KResult {
    Ok(Box::new(move |_: &RunCtx<'_>, i: &[Option<&Value>]| f(i)))
}

pub fn register(r: &mut Registry) {
    // Unary float math (f32 through the vectorised kernels, f64 through their scalar reference).
    r.add("Exp", 1, |_| float_op(U::Exp));
    r.add("Log", 1, |_| float_op(U::Log));
    r.add("Sqrt", 1, |_| float_op(U::Sqrt));
    r.add("Reciprocal", 1, |_| float_op(U::Reciprocal));
    r.add("Floor", 1, |_| float_op(U::Floor));
    r.add("Ceil", 1, |_| float_op(U::Ceil));
    r.add("Round", 11, |_| float_op(U::Round));
    r.add("Sin", 7, |_| float_op(U::Sin));
    r.add("Cos", 7, |_| float_op(U::Cos));
    r.add("Tan", 7, |_| float_op(U::Tan));
    r.add("Asin", 7, |_| float_op(U::Asin));
    r.add("Acos", 7, |_| float_op(U::Acos));
    r.add("Atan", 7, |_| float_op(U::Atan));
    r.add("Sinh", 9, |_| float_op(U::Sinh));
    r.add("Cosh", 9, |_| float_op(U::Cosh));
    r.add("Asinh", 9, |_| float_op(U::Asinh));
    r.add("Acosh", 9, |_| float_op(U::Acosh));
    r.add("Atanh", 9, |_| float_op(U::Atanh));
    r.add("Tanh", 1, |_| float_op(U::Tanh));
    r.add("Erf", 9, |_| float_op(U::Erf));
    r.add("Sigmoid", 1, |_| float_op(U::Sigmoid));
    r.add("Softsign", 1, |_| float_op(U::Softsign));
    r.add("Softplus", 1, |_| float_op(U::Softplus));
    r.add("Mish", 18, |_| float_op(U::Mish));
    r.add("HardSwish", 14, |_| float_op(U::HardSwish));
    r.add("HardSigmoid", 1, |c| {
        float_op(U::HardSigmoid { alpha: c.attr_f("alpha", 0.2)?, beta: c.attr_f("beta", 0.5)? })
    });
    r.add("LeakyRelu", 1, |c| float_op(U::LeakyRelu(c.attr_f("alpha", 0.01)?)));
    r.add("Elu", 1, |c| float_op(U::Elu(c.attr_f("alpha", 1.0)?)));
    r.add("Selu", 1, |c| {
        float_op(U::Selu { alpha: c.attr_f("alpha", 1.673_263_2)?, gamma: c.attr_f("gamma", 1.050_701)? })
    });
    r.add("Celu", 12, |c| float_op(U::Celu(c.attr_f("alpha", 1.0)?)));
    r.add("ThresholdedRelu", 10, |c| float_op(U::ThresholdedRelu(c.attr_f("alpha", 1.0)?)));
    r.add("Gelu", 20, gelu);
    r.add("Swish", 24, swish);
    // Unary ops that also take integers.
    r.add("Abs", 1, |_| num_unary(IntUn::Abs, U::Abs));
    r.add("Neg", 1, |_| num_unary(IntUn::Neg, U::Neg));
    r.add("Sign", 9, |_| num_unary(IntUn::Sign, U::Sign));
    r.add("Relu", 1, |_| num_unary(IntUn::Relu, U::Relu));
    r.add("IsNaN", 9, is_nan);
    r.add("IsInf", 10, is_inf);
    r.add("Not", 1, not);
    r.add("BitwiseNot", 18, bitwise_not);
    // Binary.
    r.add("Add", 1, |c| arith(c, Arith::Add));
    r.add("Sub", 1, |c| arith(c, Arith::Sub));
    r.add("Mul", 1, |c| arith(c, Arith::Mul));
    r.add("Div", 1, |c| arith(c, Arith::Div));
    r.add("Pow", 1, pow);
    r.add("Mod", 10, modulo);
    r.add("PRelu", 1, prelu);
    r.add("Max", 1, |c| variadic(c, Var::Max));
    r.add("Min", 1, |c| variadic(c, Var::Min));
    r.add("Sum", 1, |c| variadic(c, Var::Sum));
    r.add("Mean", 1, |c| variadic(c, Var::Mean));
    r.add("Equal", 1, |c| compare(c, Cmp::Eq));
    r.add("Less", 1, |c| compare(c, Cmp::Lt));
    r.add("LessOrEqual", 12, |c| compare(c, Cmp::Le));
    r.add("Greater", 1, |c| compare(c, Cmp::Gt));
    r.add("GreaterOrEqual", 12, |c| compare(c, Cmp::Ge));
    r.add("And", 1, |c| logical(c, Logic::And));
    r.add("Or", 1, |c| logical(c, Logic::Or));
    r.add("Xor", 1, |c| logical(c, Logic::Xor));
    r.add("BitwiseAnd", 18, |c| bitwise(c, Logic::And));
    r.add("BitwiseOr", 18, |c| bitwise(c, Logic::Or));
    r.add("BitwiseXor", 18, |c| bitwise(c, Logic::Xor));
    r.add("BitShift", 11, bitshift);
    r.add("Where", 9, where_);
    r.add("Clip", 1, clip);
    r.add("Shrink", 9, shrink);
    cast::register(r);
}

// ---------------------------------------------------------------------------------------------
// Numeric element trait

/// Arithmetic on every numeric element type (not bool): wrapping for integers, f16/bf16 via f32.
pub(crate) trait Num: Element + PartialOrd + PartialEq {
    const FLOAT: bool;
    fn zero() -> Self;
    fn one() -> Self;
    fn to_f64(self) -> f64;
    /// Floats round; integers truncate toward zero and wrap (like NumPy `astype`).
    fn from_f64(v: f64) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Integer division truncates toward zero; division by zero gives 0.
    fn div(self, o: Self) -> Self;
    /// Remainder with the sign of the dividend (C `fmod`).
    fn rem(self, o: Self) -> Self;
    /// The lowest value (-inf for floats).
    fn lowest() -> Self;
    /// The highest value (+inf for floats).
    fn highest() -> Self;
    fn is_nan(self) -> bool {
        self != self
    }
    fn abs(self) -> Self {
        if self < Self::zero() { Self::zero().sub(self) } else { self }
    }
}

macro_rules! num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const FLOAT: bool = false;
            fn zero() -> Self { 0 }
            fn one() -> Self { 1 }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self {
                if v.is_nan() { 0 } else if v < 0.0 { (v as i128) as $t } else { (v as u128) as $t }
            }
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> Self { if o == 0 { 0 } else { self.wrapping_div(o) } }
            fn rem(self, o: Self) -> Self { if o == 0 { 0 } else { self.wrapping_rem(o) } }
            fn lowest() -> Self { <$t>::MIN }
            fn highest() -> Self { <$t>::MAX }
        }
    )*};
}
num_int!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! num_float {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const FLOAT: bool = true;
            fn zero() -> Self { 0.0 }
            fn one() -> Self { 1.0 }
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn add(self, o: Self) -> Self { self + o }
            fn sub(self, o: Self) -> Self { self - o }
            fn mul(self, o: Self) -> Self { self * o }
            fn div(self, o: Self) -> Self { self / o }
            fn rem(self, o: Self) -> Self { self % o }
            fn lowest() -> Self { <$t>::NEG_INFINITY }
            fn highest() -> Self { <$t>::INFINITY }
            fn abs(self) -> Self { <$t>::abs(self) }
        }
    )*};
}
num_float!(f32, f64);

macro_rules! num_half {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const FLOAT: bool = true;
            fn zero() -> Self { <$t>::ZERO }
            fn one() -> Self { <$t>::ONE }
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn div(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() / o.to_f32()) }
            fn rem(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() % o.to_f32()) }
            fn lowest() -> Self { <$t>::NEG_INFINITY }
            fn highest() -> Self { <$t>::INFINITY }
            fn abs(self) -> Self { <$t>::from_f32(self.to_f32().abs()) }
        }
    )*};
}
num_half!(f16, bf16);

/// Like `with_dtype!` but only for numeric types (no bool).
#[macro_export]
macro_rules! with_num {
    ($dt:expr, $T:ident => $body:expr, _ => $else:expr) => {
        match $dt {
            qaic_tensor::DType::F32 => { type $T = f32; $body }
            qaic_tensor::DType::F64 => { type $T = f64; $body }
            qaic_tensor::DType::F16 => { type $T = half::f16; $body }
            qaic_tensor::DType::BF16 => { type $T = half::bf16; $body }
            qaic_tensor::DType::I8 => { type $T = i8; $body }
            qaic_tensor::DType::U8 => { type $T = u8; $body }
            qaic_tensor::DType::I16 => { type $T = i16; $body }
            qaic_tensor::DType::U16 => { type $T = u16; $body }
            qaic_tensor::DType::I32 => { type $T = i32; $body }
            qaic_tensor::DType::U32 => { type $T = u32; $body }
            qaic_tensor::DType::I64 => { type $T = i64; $body }
            qaic_tensor::DType::U64 => { type $T = u64; $body }
            _ => $else,
        }
    };
}

/// Integer types only.
#[macro_export]
macro_rules! with_int {
    ($dt:expr, $T:ident => $body:expr, _ => $else:expr) => {
        match $dt {
            qaic_tensor::DType::I8 => { type $T = i8; $body }
            qaic_tensor::DType::U8 => { type $T = u8; $body }
            qaic_tensor::DType::I16 => { type $T = i16; $body }
            qaic_tensor::DType::U16 => { type $T = u16; $body }
            qaic_tensor::DType::I32 => { type $T = i32; $body }
            qaic_tensor::DType::U32 => { type $T = u32; $body }
            qaic_tensor::DType::I64 => { type $T = i64; $body }
            qaic_tensor::DType::U64 => { type $T = u64; $body }
            _ => $else,
        }
    };
}

fn bad_type(op: &str, d: DType) -> OpError {
    op_err!("{op} does not take {d} tensors")
}

/// Plan-time type check: `Unsupported` when input `i`'s declared type is known and not accepted.
pub(crate) fn check_input_type(ctx: &BuildCtx<'_>, i: usize, ok: impl Fn(DType) -> bool) -> Result<(), OpError> {
    if let Some(d) = ctx.input_type(i).and_then(|t| t.tensor_dtype()) {
        if !ok(d) {
            return Err(OpError::Unsupported(format!("input {i} of type {d}")));
        }
    }
    Ok(())
}

fn is_num(d: DType) -> bool {
    matches!(
        d,
        DType::F32
            | DType::F64
            | DType::F16
            | DType::BF16
            | DType::I8
            | DType::I16
            | DType::I32
            | DType::I64
            | DType::U8
            | DType::U16
            | DType::U32
            | DType::U64
    )
}
fn is_std_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

// ---------------------------------------------------------------------------------------------
// Broadcasting

/// Collapses a broadcast: per-input effective strides (0 on broadcast axes), size-1 axes dropped
/// and adjacent axes merged when every input is contiguous across them. Always rank ≥ 1.
pub(crate) fn collapse(out: &[usize], ins: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let rank = out.len();
    let full: Vec<Vec<usize>> = ins
        .iter()
        .map(|s| {
            let st = qaic_tensor::strides(s);
            let off = rank - s.len();
            (0..rank).map(|i| if i < off || s[i - off] == 1 { 0 } else { st[i - off] }).collect()
        })
        .collect();
    let mut dims: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<usize>> = vec![Vec::new(); ins.len()];
    for ax in 0..rank {
        if out[ax] == 1 {
            continue;
        }
        if let Some(&last) = dims.last() {
            let mergeable = (0..ins.len()).all(|k| *strides[k].last().unwrap_or(&0) == full[k][ax] * out[ax]);
            if mergeable {
                let n = dims.len() - 1;
                dims[n] = last * out[ax];
                for k in 0..ins.len() {
                    let m = strides[k].len() - 1;
                    strides[k][m] = full[k][ax];
                }
                continue;
            }
        }
        dims.push(out[ax]);
        for k in 0..ins.len() {
            strides[k].push(full[k][ax]);
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for s in &mut strides {
            s.push(0);
        }
    }
    (dims, strides)
}

/// The broadcast shape of several shapes.
pub(crate) fn bcast_shape(shapes: &[&[usize]]) -> Result<Vec<usize>, OpError> {
    let mut out: Vec<usize> = Vec::new();
    for s in shapes {
        out = qaic_tensor::broadcast(&out, s)
            .ok_or_else(|| op_err!("shapes {:?} cannot be broadcast together", shapes))?;
    }
    Ok(out)
}

/// `f(a, b)` with NumPy broadcasting; returns the output shape and data.
pub(crate) fn bcast2<A: Copy, B: Copy, O>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> O,
) -> Result<(Vec<usize>, Vec<O>), OpError> {
    let shape = qaic_tensor::broadcast(ash, bsh)
        .ok_or_else(|| op_err!("shapes {ash:?} and {bsh:?} cannot be broadcast together"))?;
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return Ok((shape, out));
    }
    if ash == bsh {
        out.extend(a.iter().zip(b).map(|(&x, &y)| f(x, y)));
        return Ok((shape, out));
    }
    let (dims, st) = collapse(&shape, &[ash, bsh]);
    let r = dims.len();
    let inner = dims[r - 1];
    let (sa, sb) = (st[0][r - 1], st[1][r - 1]);
    let mut idx = vec![0usize; r - 1];
    let (mut oa, mut ob) = (0usize, 0usize);
    for _ in 0..n / inner {
        match (sa, sb) {
            (1, 1) => out.extend(a[oa..oa + inner].iter().zip(&b[ob..ob + inner]).map(|(&x, &y)| f(x, y))),
            (0, 1) => {
                let x = a[oa];
                out.extend(b[ob..ob + inner].iter().map(|&y| f(x, y)))
            }
            (1, 0) => {
                let y = b[ob];
                out.extend(a[oa..oa + inner].iter().map(|&x| f(x, y)))
            }
            _ => out.extend((0..inner).map(|k| f(a[oa + k * sa], b[ob + k * sb]))),
        }
        for ax in (0..r - 1).rev() {
            idx[ax] += 1;
            oa += st[0][ax];
            ob += st[1][ax];
            if idx[ax] < dims[ax] {
                break;
            }
            oa -= st[0][ax] * dims[ax];
            ob -= st[1][ax] * dims[ax];
            idx[ax] = 0;
        }
    }
    Ok((shape, out))
}

/// For each element of `out`, the flat offsets into each input (odometer over collapsed dims);
/// calls `f(offsets)` in row-major output order.
pub(crate) fn bcast_for_each(out: &[usize], ins: &[&[usize]], mut f: impl FnMut(&[usize])) {
    let n: usize = out.iter().product();
    if n == 0 {
        return;
    }
    let (dims, st) = collapse(out, ins);
    let r = dims.len();
    let mut idx = vec![0usize; r];
    let mut offs = vec![0usize; ins.len()];
    for _ in 0..n {
        f(&offs);
        for ax in (0..r).rev() {
            idx[ax] += 1;
            for k in 0..ins.len() {
                offs[k] += st[k][ax];
            }
            if idx[ax] < dims[ax] {
                break;
            }
            for k in 0..ins.len() {
                offs[k] -= st[k][ax] * dims[ax];
            }
            idx[ax] = 0;
        }
    }
}

fn binary_t<A: Element, B: Element, O: Element>(a: &Tensor, b: &Tensor, f: impl Fn(A, B) -> O) -> Result<Tensor, OpError> {
    let av = a.view::<A>()?;
    let bv = b.view::<B>()?;
    let (shape, data) = bcast2(&av, a.shape(), &bv, b.shape(), f)?;
    Ok(Tensor::from_vec(shape, data)?)
}

fn unary_t<A: Element, O: Element>(a: &Tensor, f: impl Fn(A) -> O) -> Result<Tensor, OpError> {
    let av = a.view::<A>()?;
    Ok(Tensor::from_vec(a.shape().to_vec(), av.iter().map(|&x| f(x)).collect())?)
}

// ---------------------------------------------------------------------------------------------
// Unary


/// Applies a float unary op to an f32/f64/f16/bf16 tensor.
pub(crate) fn map_float(k: &'static Kernels, t: &Tensor, op: U) -> Result<Tensor, OpError> {
    let f32_out = |x: Vec<f32>| -> Result<Vec<f32>, OpError> {
        let mut x = x;
        k.unary_inplace(op, &mut x);
        Ok(x)
    };
    match t.dtype() {
        DType::F32 => {
            let x = t.view::<f32>()?;
            let mut y = qaic_tensor::recycle::reuse_vec::<f32>(x.len());
            k.unary(op, &x, &mut y).map_err(|e| OpError::Msg(e.to_string()))?;
            Ok(Tensor::from_vec(t.shape().to_vec(), y)?)
        }
        DType::F64 => unary_t(t, |x: f64| unary_reference(op, x)),
        DType::F16 => {
            let y = f32_out(t.view::<f16>()?.iter().map(|v| v.to_f32()).collect())?;
            Ok(Tensor::from_vec(t.shape().to_vec(), y.into_iter().map(f16::from_f32).collect())?)
        }
        DType::BF16 => {
            let y = f32_out(t.view::<bf16>()?.iter().map(|v| v.to_f32()).collect())?;
            Ok(Tensor::from_vec(t.shape().to_vec(), y.into_iter().map(bf16::from_f32).collect())?)
        }
        d => Err(op_err!("expected a float tensor, got {d}")),
    }
}

fn float_op(op: U) -> KResult {
    let k = kernels()?;
    kernel(move |ins| out1(map_float(k, input(ins, 0)?, op)?))
}

fn fsign<T: Num>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        T::zero().sub(T::one())
    } else {
        x
    }
}

fn swish(c: &BuildCtx<'_>) -> KResult {
    let alpha = c.attr_f("alpha", 1.0)?;
    let k = kernels()?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        if alpha == 1.0 {
            return out1(map_float(k, t, U::Silu)?);
        }
        let a = alpha as f64;
        let v: Vec<f64> = cast::decode_f64(t)?.into_iter().map(|x| x / (1.0 + (-a * x).exp())).collect();
        out1(cast::cast_tensor(&Tensor::from_vec(t.shape().to_vec(), v)?, t.dtype())?)
    })
}

fn gelu(c: &BuildCtx<'_>) -> KResult {
    match c.attr_s("approximate", "none")?.as_str() {
        "none" => float_op(U::Gelu),
        "tanh" => float_op(U::GeluTanh),
        a => Err(OpError::Unsupported(format!("approximate=`{a}`"))),
    }
}

#[derive(Clone, Copy)]
enum IntUn {
    Abs,
    Neg,
    Sign,
    Relu,
}

fn int_un<T: Num>(op: IntUn, x: T) -> T {
    match op {
        IntUn::Abs => x.abs(),
        IntUn::Neg => T::zero().sub(x),
        IntUn::Sign => fsign(x),
        IntUn::Relu => {
            if x < T::zero() {
                T::zero()
            } else {
                x
            }
        }
    }
}

fn num_unary(op: IntUn, fop: U) -> KResult {
    let k = kernels()?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        if is_std_float(t.dtype()) {
            return out1(map_float(k, t, fop)?);
        }
        with_int!(t.dtype(), T => out1(unary_t(t, |x: T| int_un(op, x))?), _ => Err(bad_type("unary op", t.dtype())))
    })
}

fn is_nan(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        with_num!(t.dtype(), T => out1(unary_t(t, |x: T| x.is_nan())?), _ => Err(bad_type("IsNaN", t.dtype())))
    })
}

fn is_inf(c: &BuildCtx<'_>) -> KResult {
    let neg = c.attr_i("detect_negative", 1)? != 0;
    let pos = c.attr_i("detect_positive", 1)? != 0;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        with_num!(t.dtype(), T => out1(unary_t(t, |x: T| {
            let v = x.to_f64();
            v.is_infinite() && ((v > 0.0 && pos) || (v < 0.0 && neg))
        })?), _ => Err(bad_type("IsInf", t.dtype())))
    })
}

fn not(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| out1(unary_t(input(ins, 0)?, |x: bool| !x)?))
}

fn bitwise_not(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        with_int!(t.dtype(), T => out1(unary_t(t, |x: T| !x)?), _ => Err(bad_type("BitwiseNot", t.dtype())))
    })
}

// ---------------------------------------------------------------------------------------------
// Binary

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

pub(crate) fn arith_t<T: Num>(a: &Tensor, b: &Tensor, op: u8) -> Result<Tensor, OpError> {
    match op {
        0 => binary_t(a, b, |x: T, y: T| x.add(y)),
        1 => binary_t(a, b, |x: T, y: T| x.sub(y)),
        2 => binary_t(a, b, |x: T, y: T| x.mul(y)),
        _ => binary_t(a, b, |x: T, y: T| x.div(y)),
    }
}

fn arith(c: &BuildCtx<'_>, op: Arith) -> KResult {
    check_input_type(c, 0, is_num)?;
    let code = op as u8;
    let k = kernels()?;
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        if a.dtype() != b.dtype() {
            return Err(op_err!("input types differ: {} and {}", a.dtype(), b.dtype()));
        }
        if a.dtype() == DType::F32 {
            let bop = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][code as usize];
            return out1(f32_binary(k, bop, a, b)?);
        }
        with_num!(a.dtype(), T => out1(arith_t::<T>(a, b, code)?), _ => Err(bad_type("arithmetic", a.dtype())))
    })
}

/// f32 binary op through the threaded, vectorised kernels.
fn f32_binary(k: &'static Kernels, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
    let shape = qaic_tensor::broadcast(a.shape(), b.shape())
        .ok_or_else(|| op_err!("shapes {:?} and {:?} cannot be broadcast together", a.shape(), b.shape()))?;
    let mut out = qaic_tensor::recycle::reuse_vec::<f32>(shape.iter().product());
    k.binary(op, &a.view::<f32>()?, a.shape(), &b.view::<f32>()?, b.shape(), &mut out)
        .map_err(|e| OpError::Msg(e.to_string()))?;
    Ok(Tensor::from_vec(shape, out)?)
}

fn pow(c: &BuildCtx<'_>) -> KResult {
    check_input_type(c, 0, is_num)?;
    check_input_type(c, 1, is_num)?;
    kernel(|ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        // Common real-model cases: x^2 and x^0.5 in normalisations.
        if a.dtype() == DType::F32 && b.len() == 1 && b.rank() <= a.rank() {
            let e = super::util::floats_of(b).ok().and_then(|v| v.first().copied());
            if e == Some(2.0) && b.dtype() == DType::F32 {
                return out1(unary_t(a, |x: f32| x * x)?);
            }
        }
        with_num!(a.dtype(), A => with_num!(b.dtype(), B => {
            if A::FLOAT || B::FLOAT {
                out1(binary_t(a, b, |x: A, y: B| A::from_f64(x.to_f64().powf(y.to_f64())))?)
            } else {
                out1(binary_t(a, b, |x: A, y: B| ipow(x, y.to_f64()))?)
            }
        }, _ => Err(bad_type("Pow exponent", b.dtype()))), _ => Err(bad_type("Pow", a.dtype())))
    })
}

fn ipow<T: Num>(x: T, e: f64) -> T {
    if e < 0.0 {
        return T::from_f64(x.to_f64().powf(e));
    }
    let mut e = e as u64;
    let mut base = x;
    let mut acc = T::one();
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.mul(base);
        }
        base = base.mul(base);
        e >>= 1;
    }
    acc
}

fn modulo(c: &BuildCtx<'_>) -> KResult {
    let fmod = c.attr_i("fmod", 0)? != 0;
    check_input_type(c, 0, is_num)?;
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        with_num!(a.dtype(), T => {
            if T::FLOAT {
                // NumPy fmod, with NaN mapped to 0 as the reference does for fmod=0.
                out1(binary_t(a, b, |x: T, y: T| {
                    let r = x.to_f64() % y.to_f64();
                    T::from_f64(if r.is_nan() && !fmod { 0.0 } else { r })
                })?)
            } else if fmod {
                out1(binary_t(a, b, |x: T, y: T| x.rem(y))?)
            } else {
                out1(binary_t(a, b, |x: T, y: T| {
                    let r = x.rem(y);
                    if r != T::zero() && ((r < T::zero()) != (y < T::zero())) { r.add(y) } else { r }
                })?)
            }
        }, _ => Err(bad_type("Mod", a.dtype())))
    })
}

fn prelu(c: &BuildCtx<'_>) -> KResult {
    check_input_type(c, 0, is_num)?;
    kernel(|ins| {
        let a = input(ins, 0)?;
        let s = input(ins, 1)?;
        with_num!(a.dtype(), T => out1(binary_t(a, s, |x: T, y: T| if x < T::zero() { x.mul(y) } else { x })?),
            _ => Err(bad_type("PRelu", a.dtype())))
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Var {
    Max,
    Min,
    Sum,
    Mean,
}

fn variadic(c: &BuildCtx<'_>, op: Var) -> KResult {
    check_input_type(c, 0, is_num)?;
    kernel(move |ins| {
        let first = input(ins, 0)?;
        let n = ins.iter().flatten().count();
        with_num!(first.dtype(), T => {
            let mut acc = first.clone();
            for i in 1..ins.len() {
                let Some(b) = opt_input(ins, i)? else { continue };
                acc = match op {
                    Var::Max => binary_t(&acc, b, |x: T, y: T| if x.is_nan() { x } else if y.is_nan() || y > x { y } else { x })?,
                    Var::Min => binary_t(&acc, b, |x: T, y: T| if x.is_nan() { x } else if y.is_nan() || y < x { y } else { x })?,
                    Var::Sum | Var::Mean => binary_t(&acc, b, |x: T, y: T| x.add(y))?,
                };
            }
            if op == Var::Mean {
                let d = T::from_f64(n as f64);
                acc = unary_t(&acc, |x: T| x.div(d))?;
            }
            out1(acc)
        }, _ => Err(bad_type("variadic op", first.dtype())))
    })
}

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

fn cmp_t<T: Element + PartialOrd>(a: &Tensor, b: &Tensor, op: Cmp) -> Result<Tensor, OpError> {
    match op {
        Cmp::Eq => binary_t(a, b, |x: T, y: T| x == y),
        Cmp::Lt => binary_t(a, b, |x: T, y: T| x < y),
        Cmp::Le => binary_t(a, b, |x: T, y: T| x <= y),
        Cmp::Gt => binary_t(a, b, |x: T, y: T| x > y),
        Cmp::Ge => binary_t(a, b, |x: T, y: T| x >= y),
    }
}

fn compare(_: &BuildCtx<'_>, op: Cmp) -> KResult {
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        if a.dtype() != b.dtype() {
            return Err(op_err!("input types differ: {} and {}", a.dtype(), b.dtype()));
        }
        if a.dtype() == DType::String {
            let sa: Vec<&[u8]> = a.strings()?.iter().map(|s| s.as_slice()).collect();
            let sb: Vec<&[u8]> = b.strings()?.iter().map(|s| s.as_slice()).collect();
            let (shape, data) = match op {
                Cmp::Eq => bcast2(&sa, a.shape(), &sb, b.shape(), |x: &[u8], y: &[u8]| x == y)?,
                _ => return Err(bad_type("ordered comparison", DType::String)),
            };
            let data: Vec<bool> = data;
            return out1(Tensor::from_vec(shape, data)?);
        }
        crate::with_dtype!(a.dtype(), T => out1(cmp_t::<T>(a, b, op)?), _ => Err(bad_type("comparison", a.dtype())))
    })
}

#[derive(Clone, Copy)]
enum Logic {
    And,
    Or,
    Xor,
}

fn logical(_: &BuildCtx<'_>, op: Logic) -> KResult {
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        out1(match op {
            Logic::And => binary_t(a, b, |x: bool, y: bool| x & y)?,
            Logic::Or => binary_t(a, b, |x: bool, y: bool| x | y)?,
            Logic::Xor => binary_t(a, b, |x: bool, y: bool| x ^ y)?,
        })
    })
}

fn bitwise(_: &BuildCtx<'_>, op: Logic) -> KResult {
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        with_int!(a.dtype(), T => out1(match op {
            Logic::And => binary_t(a, b, |x: T, y: T| x & y)?,
            Logic::Or => binary_t(a, b, |x: T, y: T| x | y)?,
            Logic::Xor => binary_t(a, b, |x: T, y: T| x ^ y)?,
        }), _ => Err(bad_type("bitwise op", a.dtype())))
    })
}

fn bitshift(c: &BuildCtx<'_>) -> KResult {
    let left = match c.attr_s("direction", "")?.as_str() {
        "LEFT" => true,
        "RIGHT" => false,
        d => return Err(op_err!("direction must be LEFT or RIGHT, got `{d}`")),
    };
    kernel(move |ins| {
        let a = input(ins, 0)?;
        let b = input(ins, 1)?;
        macro_rules! go {
            ($T:ty) => {{
                let bits = <$T>::BITS as u64;
                out1(binary_t(a, b, |x: $T, y: $T| {
                    let s = y as u64;
                    if s >= bits { 0 } else if left { x << s } else { x >> s }
                })?)
            }};
        }
        match a.dtype() {
            DType::U8 => go!(u8),
            DType::U16 => go!(u16),
            DType::U32 => go!(u32),
            DType::U64 => go!(u64),
            d => Err(bad_type("BitShift", d)),
        }
    })
}

fn where_(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let c = input(ins, 0)?;
        let x = input(ins, 1)?;
        let y = input(ins, 2)?;
        let cv = c.view::<bool>()?;
        let shape = bcast_shape(&[c.shape(), x.shape(), y.shape()])?;
        let n: usize = shape.iter().product();
        if x.dtype() == DType::String {
            let (xs, ys) = (x.strings()?, y.strings()?);
            let mut out = Vec::with_capacity(n);
            bcast_for_each(&shape, &[c.shape(), x.shape(), y.shape()], |o| {
                out.push(if cv[o[0]] { xs[o[1]].clone() } else { ys[o[2]].clone() })
            });
            return out1(Tensor::from_strings(shape, out)?);
        }
        crate::with_dtype!(x.dtype(), T => {
            let xv = x.view::<T>()?;
            let yv = y.view::<T>()?;
            let Some(&fill) = xv.first().or(yv.first()) else {
                return out1(Tensor::from_vec(shape, Vec::<T>::new())?);
            };
            // Broadcast runs (contiguous or repeated operands), in parallel for large outputs.
            let plan = qaic_kernels::elementwise::broadcast::Plan::new([c.shape(), x.shape(), y.shape()])
                .map_err(|e| OpError::Msg(e.to_string()))?;
            let mut out: Vec<T> = vec![fill; n];
            plan.par_runs(&mut out, |r, o| {
                let ([ic, ix, iy], [oc, ox, oy]) = (r.inner, r.offsets);
                for (q, d) in o.iter_mut().enumerate() {
                    *d = if cv[oc + q * ic] { xv[ox + q * ix] } else { yv[oy + q * iy] };
                }
            });
            out1(Tensor::from_vec(shape, out)?)
        }, _ => Err(bad_type("Where", x.dtype())))
    })
}

fn clip(c: &BuildCtx<'_>) -> KResult {
    check_input_type(c, 0, is_num)?;
    if c.opset < 11 {
        let min = c.attr_f("min", f32::NEG_INFINITY)?;
        let max = c.attr_f("max", f32::INFINITY)?;
        return float_op(U::Clip { min, max });
    }
    kernel(|ins| {
        let t = input(ins, 0)?;
        let lo = opt_input(ins, 1)?;
        let hi = opt_input(ins, 2)?;
        with_num!(t.dtype(), T => {
            let lo: T = match lo { Some(l) => *l.view::<T>()?.first().ok_or("min is empty")?, None => T::lowest() };
            let hi: T = match hi { Some(h) => *h.view::<T>()?.first().ok_or("max is empty")?, None => T::highest() };
            out1(unary_t(t, |x: T| {
                // NumPy order: max with `min` first, then min with `max` (max wins if min > max).
                let y = if x < lo { lo } else { x };
                if y > hi { hi } else { y }
            })?)
        }, _ => Err(bad_type("Clip", t.dtype())))
    })
}

fn shrink(c: &BuildCtx<'_>) -> KResult {
    let lambd = c.attr_f("lambd", 0.5)? as f64;
    let bias = c.attr_f("bias", 0.0)? as f64;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        with_num!(t.dtype(), T => out1(unary_t(t, |x: T| {
            let v = x.to_f64();
            T::from_f64(if v < -lambd { v + bias } else if v > lambd { v - bias } else { 0.0 })
        })?), _ => Err(bad_type("Shrink", t.dtype())))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Plan;
    use qaic_ir::{Attr, Graph, Node, ValueType};
    use qaic_tensor::Shape;

    /// Runs a one-node graph on `inputs` (with `None` for omitted inputs) at `opset`.
    pub(crate) fn run_op(
        op: &str,
        opset: i64,
        attrs: Vec<(&str, Attr)>,
        inputs: Vec<Option<Tensor>>,
        n_out: usize,
    ) -> Result<Vec<Tensor>, crate::InterpError> {
        let mut g = Graph::new("t");
        g.set_opset("", opset);
        let mut ids = Vec::new();
        let mut feeds = Vec::new();
        for (i, t) in inputs.into_iter().enumerate() {
            match t {
                Some(t) => {
                    ids.push(Some(g.add_input(format!("x{i}"), ValueType::tensor(t.dtype(), Shape::known(t.shape())))));
                    feeds.push(Value::Tensor(t));
                }
                None => ids.push(None),
            }
        }
        let outs: Vec<_> = (0..n_out).map(|i| g.add_value(format!("y{i}"), None)).collect();
        g.add_node(Node {
            op_type: op.into(),
            inputs: ids,
            outputs: outs.iter().map(|&o| Some(o)).collect(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        });
        g.outputs = outs;
        let plan = Plan::new(g)?;
        Ok(plan.run(feeds)?.into_iter().filter_map(|v| v.into_tensor()).collect())
    }

    pub(crate) fn t<T: Element>(shape: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v).unwrap()
    }

    fn run1(op: &str, inputs: Vec<Tensor>) -> Tensor {
        run_op(op, 18, vec![], inputs.into_iter().map(Some).collect(), 1).unwrap().remove(0)
    }

    #[test]
    fn broadcasting_add_and_collapse() {
        let a = t(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]);
        let b = t(&[3], vec![10f32, 20., 30.]);
        let y = run1("Add", vec![a.clone(), b]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[11., 22., 33., 14., 25., 36.]);
        let col = t(&[2, 1], vec![100f32, 200.]);
        let y = run1("Sub", vec![a, col]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[-99., -98., -97., -196., -195., -194.]);
        // Middle-axis broadcast, strided general path.
        let a = t(&[2, 1, 2], vec![1i64, 2, 3, 4]);
        let b = t(&[1, 3, 1], vec![10i64, 20, 30]);
        let y = run1("Mul", vec![a, b]);
        assert_eq!(y.shape(), &[2, 3, 2]);
        assert_eq!(y.as_slice::<i64>().unwrap(), &[10, 20, 20, 40, 30, 60, 30, 40, 60, 80, 90, 120]);
    }

    #[test]
    fn int_div_mod_truncate_like_onnx() {
        let a = t(&[4], vec![7i32, -7, 7, -7]);
        let b = t(&[4], vec![2i32, 2, -2, -2]);
        assert_eq!(run1("Div", vec![a.clone(), b.clone()]).as_slice::<i32>().unwrap(), &[3, -3, -3, 3]);
        assert_eq!(run1("Mod", vec![a.clone(), b.clone()]).as_slice::<i32>().unwrap(), &[1, 1, -1, -1]);
        let y = run_op("Mod", 13, vec![("fmod", Attr::Int(1))], vec![Some(a), Some(b)], 1).unwrap();
        assert_eq!(y[0].as_slice::<i32>().unwrap(), &[1, -1, 1, -1]);
    }

    #[test]
    fn activations() {
        let x = t(&[3], vec![-1f32, 0., 2.]);
        assert_eq!(run1("Relu", vec![x.clone()]).as_slice::<f32>().unwrap(), &[0., 0., 2.]);
        let s = run1("Sigmoid", vec![x.clone()]);
        assert!((s.as_slice::<f32>().unwrap()[2] - 0.880797).abs() < 1e-5);
        let e = run1("Erf", vec![x.clone()]);
        assert!((e.as_slice::<f32>().unwrap()[0] + 0.842_700_8).abs() < 1e-6);
        let g = run_op("Gelu", 20, vec![], vec![Some(x.clone())], 1).unwrap();
        assert!((g[0].as_slice::<f32>().unwrap()[2] - 1.954_5).abs() < 1e-3);
        let h = run1("Neg", vec![t(&[2], vec![3i8, -4])]);
        assert_eq!(h.as_slice::<i8>().unwrap(), &[-3, 4]);
    }

    #[test]
    fn where_max_clip_compare() {
        let c = t(&[2], vec![true, false]);
        let x = t(&[2, 2], vec![1f32, 2., 3., 4.]);
        let y = t(&[1], vec![0f32]);
        assert_eq!(run1("Where", vec![c, x.clone(), y.clone()]).as_slice::<f32>().unwrap(), &[1., 0., 3., 0.]);
        let m = run1("Max", vec![x.clone(), t(&[1], vec![2.5f32]), t(&[2], vec![0f32, 3.5])]);
        assert_eq!(m.as_slice::<f32>().unwrap(), &[2.5, 3.5, 3., 4.]);
        let lo = Tensor::scalar(2f32);
        let cl = run_op("Clip", 13, vec![], vec![Some(x.clone()), Some(lo), None], 1).unwrap();
        assert_eq!(cl[0].as_slice::<f32>().unwrap(), &[2., 2., 3., 4.]);
        let g = run1("Greater", vec![x, t(&[1], vec![2f32])]);
        assert_eq!(g.as_slice::<bool>().unwrap(), &[false, false, true, true]);
        let s = Tensor::from_strings(vec![2], vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
        let s2 = Tensor::from_strings(vec![1], vec![b"b".to_vec()]).unwrap();
        assert_eq!(run1("Equal", vec![s, s2]).as_slice::<bool>().unwrap(), &[false, true]);
    }

    #[test]
    fn pow_mixed_types() {
        let x = t(&[3], vec![2i32, 3, 4]);
        let y = t(&[3], vec![2f32, 0.5, 3.]);
        assert_eq!(run_op("Pow", 15, vec![], vec![Some(x), Some(y)], 1).unwrap()[0].as_slice::<i32>().unwrap(), &[4, 1, 64]);
    }
}
