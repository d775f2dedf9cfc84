//! Functional execution of one `Op` instruction on tile bytes with the shared CPU kernels.
//!
//! Float ops compute in f32 (f16/bf16 tiles are widened and rounded back, as the interpreter
//! does); data-movement ops (`Transpose`, `Concat`, `Copy`) move elements of any width.

use half::{bf16, f16};
use qaic_device::{AttrValue, Op, Tile};
use qaic_kernels::conv::ConvParams;
use qaic_kernels::elementwise::{BinaryOp, UnaryOp};
use qaic_kernels::gemm::{Activation, Mat, MatMut};
use qaic_kernels::pool::PoolKind;
use qaic_kernels::reduce::ReduceOp;
use qaic_kernels::Kernels;
use qaic_tensor::DType;

/// Decodes a tile's bytes to f32.
pub(crate) fn to_f32(dtype: DType, b: &[u8]) -> Result<std::borrow::Cow<'_, [f32]>, String> {
    Ok(std::borrow::Cow::Owned(match dtype {
        // Little-endian host (x86-64, aarch64): aligned f32 tiles are read in place, others
        // copied (a byte copy is the decode).
        DType::F32 => {
            let b = &b[..b.len() / 4 * 4];
            return Ok(match bytemuck::try_cast_slice::<u8, f32>(b) {
                Ok(v) => std::borrow::Cow::Borrowed(v),
                Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(b)),
            });
        }
        DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        d => return Err(format!("float op on a {d:?} tile is not supported yet")),
    }))
}

fn dims(t: &Tile) -> Vec<usize> {
    t.shape.iter().map(|&d| d as usize).collect()
}

fn ints(op: &Op, name: &str) -> Option<Vec<i64>> {
    match op.attr(name) {
        Some(AttrValue::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn float(op: &Op, name: &str, default: f32) -> f32 {
    match op.attr(name) {
        Some(AttrValue::Float(v)) => *v as f32,
        _ => default,
    }
}

fn int(op: &Op, name: &str, default: i64) -> i64 {
    op.attr_int(name, default)
}

fn axis(op: &Op, default: i64, rank: usize) -> Result<usize, String> {
    let a = int(op, "axis", default);
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

pub(crate) fn conv_params(op: &Op, spatial: usize, kernel: &[usize]) -> Result<ConvParams, String> {
    let mut p = ConvParams::new(kernel);
    let pos = |v: Vec<i64>, what: &str| -> Result<Vec<usize>, String> {
        if v.len() != spatial || v.iter().any(|&x| x <= 0) {
            return Err(format!("{what} {v:?} must be {spatial} positive values"));
        }
        Ok(v.into_iter().map(|x| x as usize).collect())
    };
    if let Some(s) = ints(op, "strides") {
        p.strides = pos(s, "strides")?;
    }
    if let Some(d) = ints(op, "dilations") {
        p.dilations = pos(d, "dilations")?;
    }
    if let Some(pd) = ints(op, "pads") {
        if pd.len() != 2 * spatial || pd.iter().any(|&x| x < 0) {
            return Err(format!("pads {pd:?} must be {} non-negative values", 2 * spatial));
        }
        p.pads = pd.into_iter().map(|x| x as usize).collect();
    }
    p.group = int(op, "group", 1).max(1) as usize;
    Ok(p)
}

pub(crate) fn unary_of(op: &Op) -> Option<UnaryOp> {
    Some(match op.op.as_str() {
        "Relu" => UnaryOp::Relu,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Erf" => UnaryOp::Erf,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Softplus" => UnaryOp::Softplus,
        "Gelu" => {
            if matches!(op.attr("approximate"), Some(AttrValue::Str(s)) if s == "tanh") {
                UnaryOp::GeluTanh
            } else {
                UnaryOp::Gelu
            }
        }
        "HardSwish" => UnaryOp::HardSwish,
        "HardSigmoid" => UnaryOp::HardSigmoid { alpha: float(op, "alpha", 0.2), beta: float(op, "beta", 0.5) },
        "LeakyRelu" => UnaryOp::LeakyRelu(float(op, "alpha", 0.01)),
        "Elu" => UnaryOp::Elu(float(op, "alpha", 1.0)),
        "Clip" => UnaryOp::Clip { min: float(op, "min", f32::NEG_INFINITY), max: float(op, "max", f32::INFINITY) },
        _ => return None,
    })
}

fn binary_of(name: &str) -> Option<BinaryOp> {
    Some(match name {
        "Add" | "Sum" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        "PRelu" => BinaryOp::PRelu,
        _ => return None,
    })
}

/// Ops this simulator executes (codegen checks against this list).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal",
    "Floor", "Ceil", "Softplus", "Gelu", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Clip", "Add", "Sum", "Sub",
    "Mul", "Div", "Pow", "Max", "Min", "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization", "ReduceMean", "ReduceSum", "ReduceMax",
    "ReduceMin", "Transpose", "Concat", "Copy", "Resize", "QuantizeGlow", "DequantizeLinear", "QConvGlow", "QMatMulGlow", "Cast",
    "QTable", "QBinaryGlow",
];

/// Executes `op`: `inputs` are the input tiles' bytes, `out` the output tile's bytes (exactly
/// its size; it may hold stale data). `scratch` is reused for float results that cannot be
/// written in place (non-f32 or unaligned outputs).
/// With `act`, the activation of a `Conv` is replaced by it (an element-wise follower the
/// replay fused into it).
pub(crate) fn run_op(k: &Kernels, op: &Op, inputs: &[&[u8]], out: &mut [u8], scratch: &mut Vec<f32>, act: Option<Activation>) -> Result<(), String> {
    let out_t = op.outputs.first().ok_or("op without outputs")?;
    let want = out_t.bytes().unwrap_or(0) as usize;
    if out.len() != want {
        return Err(format!("output buffer has {} bytes, tile needs {want}", out.len()));
    }
    match op.op.as_str() {
        // Pure data movement: element-size generic, written straight into the output.
        "Copy" => {
            if op.inputs.is_empty() {
                return Err("needs 1 inputs, has 0".into());
            }
            let n = want.min(inputs[0].len());
            out[..n].copy_from_slice(&inputs[0][..n]);
            return Ok(());
        }
        "Transpose" => {
            if op.inputs.is_empty() {
                return Err("needs 1 inputs, has 0".into());
            }
            let perm: Vec<usize> = ints(op, "perm").ok_or("Transpose without perm")?.iter().map(|&p| p as usize).collect();
            let v = transpose_bytes(inputs[0], op.inputs[0].dtype, &dims(&op.inputs[0]), &perm)?;
            let n = want.min(v.len());
            out[..n].copy_from_slice(&v[..n]);
            return Ok(());
        }
        "Concat" => {
            if op.inputs.is_empty() {
                return Err("needs 1 inputs, has 0".into());
            }
            let oshape = dims(out_t);
            let ax = axis(op, 0, oshape.len())?;
            let es = out_t.dtype.bits().div_ceil(8);
            let outer: usize = oshape[..ax].iter().product();
            let mut o = 0usize;
            for i in 0..outer {
                for (t, b) in op.inputs.iter().zip(inputs) {
                    let run = dims(t)[ax..].iter().product::<usize>() * es;
                    let src = b.get(i * run..(i + 1) * run).ok_or("Concat input too small")?;
                    out.get_mut(o..o + run).ok_or("Concat output too small")?.copy_from_slice(src);
                    o += run;
                }
            }
            return Ok(());
        }
        "QuantizeGlow" | "DequantizeLinear" => return run_qdq(op, inputs, out),
        "QConvGlow" | "QMatMulGlow" => return run_qlinear(op, inputs, out),
        "QTable" => return run_qtable(op, inputs, out),
        // A max pool of 8-bit codes (codegen pools the codes of a quantized tensor, which
        // equals pooling the dequantized values): widened exactly, pooled, narrowed back.
        "MaxPool" | "GlobalMaxPool" if matches!(out_t.dtype, DType::I8 | DType::U8) => {
            let x_t = op.inputs.first().ok_or("needs 1 input")?;
            if x_t.dtype != out_t.dtype {
                return Err(format!("{} of {:?} into {:?}", op.op, x_t.dtype, out_t.dtype));
            }
            let wide: Vec<f32> = inputs[0].iter().map(|&b| if x_t.dtype == DType::I8 { b as i8 as f32 } else { b as f32 }).collect();
            let mut f = op.clone();
            f.inputs[0].dtype = DType::F32;
            f.outputs[0].dtype = DType::F32;
            scratch.clear();
            scratch.resize(out_t.elements() as usize, 0.0);
            run_float(k, &f, &[bytemuck::cast_slice(&wide)], scratch, None)?;
            for (o, &v) in out.iter_mut().zip(scratch.iter()) {
                *o = if out_t.dtype == DType::I8 { v as i8 as u8 } else { v as u8 };
            }
            return Ok(());
        }
        "QBinaryGlow" => return run_qbinary(k, op, inputs, out),
        _ => {}
    }
    let on = out_t.elements() as usize;
    // f32 outputs aligned in memory are computed in place; others through `scratch`.
    if out_t.dtype == DType::F32
        && let Ok(o) = bytemuck::try_cast_slice_mut::<u8, f32>(out)
        && o.len() == on
    {
        return run_float(k, op, inputs, o, act);
    }
    scratch.clear();
    scratch.resize(on, 0.0);
    run_float(k, op, inputs, scratch, act)?;
    encode_f32(out_t.dtype, scratch, out)
}

/// An integer op with its weights packed.
enum Prepared {
    Conv(qaic_kernels::quant::QConvGlow),
    MatMul(qaic_kernels::quant::QMatMulGlow),
}

/// Packed integer ops by (op, checksum of its constant operands): the weights a program reads
/// are the same on every inference, so they are packed once per thread instead of per call.
/// The key holds the op's attributes and tile shapes and a CRC of the weight, bias, multiplier
/// and zero-point bytes, so a changed constant (or another program's op) packs afresh.
type PrepKey = (u64, u32, usize);

thread_local! {
    static PREPARED: std::cell::RefCell<std::collections::HashMap<PrepKey, std::sync::Arc<Prepared>>> = Default::default();
}

/// Entries kept per thread before the cache is cleared (a bound for long-lived hosts that load
/// many programs).
const PREPARED_MAX: usize = 4096;

fn cached(op: &Op, inputs: &[&[u8]], make: impl FnOnce() -> Result<Prepared, String>) -> Result<std::sync::Arc<Prepared>, String> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    op.hash(&mut h);
    let mut crc = crc32fast::Hasher::new();
    for b in &inputs[1..] {
        crc.update(&(b.len() as u64).to_le_bytes());
        crc.update(b);
    }
    let key = (h.finish(), crc.finalize(), inputs[1..].iter().map(|b| b.len()).sum());
    if let Some(p) = PREPARED.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(p);
    }
    let p = std::sync::Arc::new(make()?);
    PREPARED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= PREPARED_MAX {
            c.clear();
        }
        c.insert(key, p.clone());
    });
    Ok(p)
}

/// The decoded parameters of a `QConvGlow` / `QMatMulGlow` op: element types of x, w and y,
/// int32 bias, f32 multipliers, weight zero points, and the scalar x / y zero points.
struct QParams {
    xt: qaic_kernels::quant::Q8,
    wt: qaic_kernels::quant::Q8,
    yt: qaic_kernels::quant::Q8,
    bias: Vec<i32>,
    mult: Vec<f32>,
    wz: Vec<i32>,
    xz: i32,
    yz: i32,
}

fn q_params(op: &Op, bias: &[u8], mult: &[u8], wz: &[u8]) -> Result<QParams, String> {
    use qaic_kernels::quant::Q8;
    if op.inputs.len() != 5 || op.outputs.is_empty() {
        return Err(format!("needs 5 inputs, has {}", op.inputs.len()));
    }
    let q8 = |d: DType| match d {
        DType::I8 => Ok(Q8::I8),
        DType::U8 => Ok(Q8::U8),
        d => Err(format!("element type {d:?} (int8 and uint8 are supported)")),
    };
    let (xt, wt, yt) = (q8(op.inputs[0].dtype)?, q8(op.inputs[1].dtype)?, q8(op.outputs[0].dtype)?);
    if op.inputs[2].dtype != DType::I32 || op.inputs[3].dtype != DType::F32 || op.inputs[4].dtype != op.inputs[1].dtype {
        return Err("bias must be int32, multiplier float32, weight zero points of the weights' type".into());
    }
    let int = |n: &str| match op.attr(n) {
        Some(AttrValue::Int(v)) => Ok(*v as i32),
        _ => Err(format!("missing attribute {n}")),
    };
    Ok(QParams {
        xt,
        wt,
        yt,
        bias: bias.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        mult: mult.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        wz: wz.iter().map(|&b| if wt == Q8::I8 { b as i8 as i32 } else { b as i32 }).collect(),
        xz: int("x_zero_point")?,
        yz: int("y_zero_point")?,
    })
}

/// The integer convolution of a `QConvGlow` op with its constant operands given as bytes
/// (weights `[M, C/g, k...]` of `w_shape`, int32 bias, f32 multipliers, weight zero points):
/// per-call (cached) for single ops, once per loaded program for merged ones (plan.rs).
pub(crate) fn qconv_kernel(op: &Op, w: &[u8], w_shape: &[usize], bias: &[u8], mult: &[u8], wz: &[u8]) -> Result<qaic_kernels::quant::QConvGlow, String> {
    use qaic_kernels::quant::{IntPath, QConvGlow};
    let QParams { xt, wt, yt, bias, mult, wz, xz, yz } = q_params(op, bias, mult, wz)?;
    let params = conv_params(op, w_shape.len().saturating_sub(2), w_shape.get(2..).unwrap_or(&[]))?;
    QConvGlow::new(IntPath::current(), params, xt, xz, wt, w, w_shape, &wz, &bias, &mult, yt, yz).map_err(|e| e.to_string())
}

/// `QConvGlow` / `QMatMulGlow`: the integer convolution / matrix product of quantized graphs,
/// with the kernels the interpreter runs for `qaic.quant.QConv` / `QMatMul` (same bits).
/// Inputs: x, w, bias (i32), multiplier (f32), w_zero_point; attributes `x_zero_point`,
/// `y_zero_point` and, for the convolution, Conv's.
fn run_qlinear(op: &Op, inputs: &[&[u8]], out: &mut [u8]) -> Result<(), String> {
    use qaic_kernels::quant::{IntPath, QMatMulGlow};
    if inputs.len() != 5 || op.inputs.len() != 5 {
        return Err(format!("needs 5 inputs, has {}", inputs.len()));
    }
    let (xs, ws) = (dims(&op.inputs[0]), dims(&op.inputs[1]));
    let e = |e: qaic_kernels::KernelError| e.to_string();
    if op.op == "QConvGlow" {
        let c = cached(op, inputs, || qconv_kernel(op, inputs[1], &ws, inputs[2], inputs[3], inputs[4]).map(Prepared::Conv))?;
        let Prepared::Conv(c) = &*c else { return Err("prepared op of another kind".into()) };
        let shape = c.output_shape(&xs).map_err(e)?;
        if shape != dims(&op.outputs[0]) {
            return Err(format!("output tile {:?}, convolution gives {shape:?}", dims(&op.outputs[0])));
        }
        c.run(inputs[0], &xs, out).map_err(e)?;
    } else {
        if ws.len() != 2 {
            return Err(format!("weights {ws:?} are not a matrix"));
        }
        let m = cached(op, inputs, || {
            let QParams { xt, wt, yt, bias, mult, wz, xz, yz } = q_params(op, inputs[2], inputs[3], inputs[4])?;
            QMatMulGlow::new(IntPath::current(), xt, xz, wt, inputs[1], ws[0], ws[1], &wz, &bias, &mult, yt, yz).map(Prepared::MatMul).map_err(e)
        })?;
        let Prepared::MatMul(m) = &*m else { return Err("prepared op of another kind".into()) };
        let shape = m.output_shape(&xs).map_err(e)?;
        if shape.iter().product::<usize>() != out.len() {
            return Err(format!("output tile {:?}, product gives {shape:?}", dims(&op.outputs[0])));
        }
        m.run(inputs[0], &xs, out).map_err(e)?;
    }
    Ok(())
}

/// `QTable`: each 8-bit code of the input is replaced by `table[byte]` (an 8-bit float island
/// folded at compile time; codegen's fold_int8.rs).
fn run_qtable(op: &Op, inputs: &[&[u8]], out: &mut [u8]) -> Result<(), String> {
    let (x_t, out_t) = (op.inputs.first().ok_or("needs 1 input")?, op.outputs.first().ok_or("op without outputs")?);
    if !matches!(x_t.dtype, DType::I8 | DType::U8) || !matches!(out_t.dtype, DType::I8 | DType::U8) {
        return Err(format!("QTable maps 8-bit tiles, not {:?} -> {:?}", x_t.dtype, out_t.dtype));
    }
    let Some(AttrValue::Ints(table)) = op.attr("table") else { return Err("QTable without `table`".into()) };
    if table.len() != 256 {
        return Err(format!("QTable `table` has {} entries, not 256", table.len()));
    }
    let (lo, hi) = if out_t.dtype == DType::I8 { (-128, 127) } else { (0, 255) };
    if let Some(v) = table.iter().find(|&&v| v < lo || v > hi) {
        return Err(format!("QTable entry {v} is outside {:?}", out_t.dtype));
    }
    let mut t = [0u8; 256];
    t.iter_mut().zip(table).for_each(|(d, &v)| *d = v as u8);
    if inputs[0].len() != out.len() {
        return Err(format!("QTable of {} codes into {}", inputs[0].len(), out.len()));
    }
    // A [u8; 256] indexed by a byte needs no bounds check.
    out.iter_mut().zip(inputs[0]).for_each(|(o, &x)| *o = t[x as usize]);
    Ok(())
}

/// `QBinaryGlow`: `quantize(dequantize(a) <op> dequantize(b))` on two 8-bit tiles, with the
/// kernels the interpreter runs for the `DequantizeLinear`s, the float op and the Glow
/// `Quantize` it replaces (so the same bits). Attributes: `op` (Add, Sub, Mul, Max, Min),
/// `a_scale`, `a_zero_point`, `b_scale`, `b_zero_point`, `scale`, `zero_point`.
fn run_qbinary(k: &Kernels, op: &Op, inputs: &[&[u8]], out: &mut [u8]) -> Result<(), String> {
    if inputs.len() != 2 || op.inputs.len() != 2 {
        return Err(format!("needs 2 inputs, has {}", inputs.len()));
    }
    let fl = |n: &str| match op.attr(n) {
        Some(AttrValue::Float(v)) => Ok(*v),
        _ => Err(format!("missing attribute {n}")),
    };
    let name = match op.attr("op") {
        Some(AttrValue::Str(s)) if matches!(s.as_str(), "Add" | "Sub" | "Mul" | "Max" | "Min") => s.clone(),
        other => return Err(format!("QBinaryGlow op {other:?} (Add, Sub, Mul, Max or Min)")),
    };
    let out_t = op.outputs.first().ok_or("op without outputs")?;
    let deq = |i: usize, s: &str, z: &str| -> Result<Vec<u8>, String> {
        let t = &op.inputs[i];
        let mut d = Op::new("DequantizeLinear", DType::F32, vec![t.clone()], vec![Tile { dtype: DType::F32, ..t.clone() }]);
        d.set_attr("scale", AttrValue::Float(fl(s)?));
        d.set_attr("zero_point", AttrValue::Int(int(op, z, 0)));
        let mut o = vec![0u8; t.elements() as usize * 4];
        run_qdq(&d, &inputs[i..=i], &mut o)?;
        Ok(o)
    };
    let (a, b) = (deq(0, "a_scale", "a_zero_point")?, deq(1, "b_scale", "b_zero_point")?);
    let f32_tile = |t: &Tile| Tile { dtype: DType::F32, ..t.clone() };
    let bin = Op::new(&name, DType::F32, vec![f32_tile(&op.inputs[0]), f32_tile(&op.inputs[1])], vec![f32_tile(out_t)]);
    let mut y = vec![0f32; out_t.elements() as usize];
    run_float(k, &bin, &[&a, &b], &mut y, None)?;
    let mut q = Op::new("QuantizeGlow", out_t.dtype, vec![f32_tile(out_t)], vec![out_t.clone()]);
    q.set_attr("scale", AttrValue::Float(fl("scale")?));
    q.set_attr("zero_point", AttrValue::Int(int(op, "zero_point", 0)));
    run_qdq(&q, &[bytemuck::cast_slice(&y)], out)
}

/// Per-tensor `QuantizeGlow` (f32 → int, Glow rounding: zero point added in float before
/// rounding) and `DequantizeLinear` (int → f32) with the shared kernels the interpreter uses
/// for `qaic.quant.Quantize` and `DequantizeLinear`, so both give the same bits.
fn run_qdq(op: &Op, inputs: &[&[u8]], out: &mut [u8]) -> Result<(), String> {
    use qaic_kernels::quant::{QInt, QuantizeRounding, dequantize, quantize};
    let x_t = op.inputs.first().ok_or("needs 1 input")?;
    let out_t = op.outputs.first().ok_or("op without outputs")?;
    let scale = match op.attr("scale") {
        Some(AttrValue::Float(v)) => *v as f32,
        _ => return Err("no `scale` attribute".into()),
    };
    let zp = i32::try_from(int(op, "zero_point", 0)).map_err(|_| "zero point out of range")?;
    let n = out_t.elements() as usize;
    fn quant<Q: QInt + bytemuck::Pod>(x: &[f32], scale: f32, zp: i32, out: &mut [u8]) -> Result<(), String> {
        let e = |e: qaic_kernels::KernelError| e.to_string();
        match bytemuck::try_cast_slice_mut::<u8, Q>(out) {
            Ok(o) => quantize(x, &[scale], &[Q::from_i32(zp)], 1, QuantizeRounding::Glow, o).map_err(e),
            Err(_) => {
                let mut o = vec![Q::default(); x.len()];
                quantize(x, &[scale], &[Q::from_i32(zp)], 1, QuantizeRounding::Glow, &mut o).map_err(e)?;
                out.copy_from_slice(bytemuck::cast_slice(&o));
                Ok(())
            }
        }
    }
    fn dequant<Q: QInt + bytemuck::Pod>(q: &[u8], scale: f32, zp: i32, out: &mut [u8]) -> Result<(), String> {
        let e = |e: qaic_kernels::KernelError| e.to_string();
        let q: std::borrow::Cow<'_, [Q]> = match bytemuck::try_cast_slice::<u8, Q>(q) {
            Ok(v) => std::borrow::Cow::Borrowed(v),
            Err(_) => std::borrow::Cow::Owned(bytemuck::pod_collect_to_vec(q)),
        };
        match bytemuck::try_cast_slice_mut::<u8, f32>(out) {
            Ok(o) => dequantize(&q, &[scale], &[Q::from_i32(zp)], 1, o).map_err(e),
            Err(_) => {
                let mut o = vec![0f32; q.len()];
                dequantize(&q, &[scale], &[Q::from_i32(zp)], 1, &mut o).map_err(e)?;
                out.copy_from_slice(bytemuck::cast_slice(&o));
                Ok(())
            }
        }
    }
    if x_t.elements() as usize != n {
        return Err(format!("input has {} elements, output {n}", x_t.elements()));
    }
    if op.op == "QuantizeGlow" {
        let x = to_f32(x_t.dtype, inputs[0])?;
        match out_t.dtype {
            DType::I8 => quant::<i8>(&x, scale, zp, out),
            DType::U8 => quant::<u8>(&x, scale, zp, out),
            DType::I16 => quant::<i16>(&x, scale, zp, out),
            d => Err(format!("quantize to {d:?} is not supported")),
        }
    } else {
        if out_t.dtype != DType::F32 {
            return Err(format!("dequantize to {:?} is not supported", out_t.dtype));
        }
        match x_t.dtype {
            DType::I8 => dequant::<i8>(inputs[0], scale, zp, out),
            DType::U8 => dequant::<u8>(inputs[0], scale, zp, out),
            DType::I16 => dequant::<i16>(inputs[0], scale, zp, out),
            d => Err(format!("dequantize from {d:?} is not supported")),
        }
    }
}

/// Encodes f32 values into `out` in the element type `dtype`.
fn encode_f32(dtype: DType, v: &[f32], out: &mut [u8]) -> Result<(), String> {
    match dtype {
        DType::F32 => out.iter_mut().zip(bytemuck::cast_slice::<f32, u8>(v)).for_each(|(o, b)| *o = *b),
        DType::F16 => out.chunks_exact_mut(2).zip(v).for_each(|(o, x)| o.copy_from_slice(&f16::from_f32(*x).to_le_bytes())),
        DType::BF16 => out.chunks_exact_mut(2).zip(v).for_each(|(o, x)| o.copy_from_slice(&bf16::from_f32(*x).to_le_bytes())),
        d => return Err(format!("float op producing a {d:?} tile is not supported yet")),
    }
    Ok(())
}

/// A float op into `out` (the output tile's elements; may hold stale values).
fn run_float(k: &Kernels, op: &Op, inputs: &[&[u8]], out: &mut [f32], act: Option<Activation>) -> Result<(), String> {
    let out_t = op.outputs.first().ok_or("op without outputs")?;
    let oshape = dims(out_t);
    let on = out.len();
    let kerr = |e: qaic_kernels::KernelError| e.to_string();
    let fin = |i: usize| -> Result<std::borrow::Cow<'_, [f32]>, String> {
        let t = op.inputs.get(i).ok_or_else(|| format!("missing input {i}"))?;
        to_f32(t.dtype, inputs[i])
    };
    let need = |n: usize| -> Result<(), String> {
        if op.inputs.len() < n { Err(format!("needs {n} inputs, has {}", op.inputs.len())) } else { Ok(()) }
    };
    match op.op.as_str() {
        // Float-to-float conversion: the value is widened here and rounded (to nearest even)
        // by the output encoding, as the interpreter's Cast rounds.
        "Cast" => {
            need(1)?;
            let x = fin(0)?;
            if x.len() != on {
                return Err(format!("Cast of {} values into {on}", x.len()));
            }
            out.copy_from_slice(&x);
        }
        "Conv" | "ConvTranspose" => {
            need(2)?;
            let (x, w) = (fin(0)?, fin(1)?);
            let b = if op.inputs.len() > 2 { Some(fin(2)?) } else { None };
            let (xs, ws) = (dims(&op.inputs[0]), dims(&op.inputs[1]));
            let p = conv_params(op, xs.len().saturating_sub(2), ws.get(2..).unwrap_or(&[]))?;
            if op.op == "Conv" {
                k.conv(&p, &x, &xs, &w, &ws, b.as_deref(), act.unwrap_or_else(|| conv_activation(op)), out).map_err(kerr)?;
            } else {
                // The output spatial size is the output tile's (codegen resolved pads,
                // output_padding, `output_shape` and auto_pad).
                let os = oshape.get(2..).unwrap_or(&[]).to_vec();
                k.conv_transpose(&p, &x, &xs, &w, &ws, b.as_deref(), &os, out).map_err(kerr)?;
            }
        }
        "MatMul" => {
            need(2)?;
            let (a, b) = (fin(0)?, fin(1)?);
            k.matmul(&a, &dims(&op.inputs[0]), &b, &dims(&op.inputs[1]), out).map_err(kerr)?;
        }
        "Gemm" => {
            need(2)?;
            let (a, b) = (fin(0)?, fin(1)?);
            let (as_, bs) = (dims(&op.inputs[0]), dims(&op.inputs[1]));
            if as_.len() != 2 || bs.len() != 2 || oshape.len() != 2 {
                return Err("Gemm operands must be 2-D".into());
            }
            let (ta, tb) = (int(op, "transA", 0) != 0, int(op, "transB", 0) != 0);
            let (alpha, mut beta) = (float(op, "alpha", 1.0), float(op, "beta", 1.0));
            let (m, n) = (oshape[0], oshape[1]);
            let kk = if ta { as_[0] } else { as_[1] };
            if op.inputs.len() > 2 {
                let c = fin(2)?;
                qaic_kernels::elementwise::broadcast::broadcast_to(&c, &dims(&op.inputs[2]), &oshape, out).map_err(kerr)?;
            } else {
                beta = 0.0;
            }
            let am = Mat::row_major(&a, as_[0], as_[1]).map_err(kerr)?;
            let bm = Mat::row_major(&b, bs[0], bs[1]).map_err(kerr)?;
            let am = if ta { am.t() } else { am };
            let bm = if tb { bm.t() } else { bm };
            if am.rows() != m || am.cols() != kk || bm.cols() != n {
                return Err(format!("Gemm shapes {as_:?} x {bs:?} do not give {oshape:?}"));
            }
            let mut cm = MatMut::row_major(out, m, n).map_err(kerr)?;
            k.gemm(alpha, am, bm, beta, &mut cm).map_err(kerr)?;
        }
        "MaxPool" | "AveragePool" => {
            need(1)?;
            let x = fin(0)?;
            let xs = dims(&op.inputs[0]);
            let ks: Vec<usize> = ints(op, "kernel_shape").ok_or("pool without kernel_shape")?.iter().map(|&v| v.max(1) as usize).collect();
            let p = conv_params(op, xs.len().saturating_sub(2), &ks)?;
            let kind = if op.op == "MaxPool" { PoolKind::Max } else { PoolKind::Avg { count_include_pad: int(op, "count_include_pad", 0) != 0 } };
            out.fill(0.0);
            qaic_kernels::pool::pool_f32(&p, int(op, "ceil_mode", 0) != 0, kind, &x, &xs, out).map_err(kerr)?;
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            need(1)?;
            let x = fin(0)?;
            let xs = dims(&op.inputs[0]);
            if xs.len() < 2 {
                return Err("global pool input must have rank >= 2".into());
            }
            let kind = if op.op == "GlobalMaxPool" { PoolKind::Max } else { PoolKind::Avg { count_include_pad: false } };
            qaic_kernels::pool::global_pool_f32(kind, &x, xs[0], xs[1], xs[2..].iter().product(), out).map_err(kerr)?;
        }
        "Softmax" | "LogSoftmax" => {
            need(1)?;
            let x = fin(0)?;
            let ax = axis(op, -1, oshape.len())?;
            let outer: usize = oshape[..ax].iter().product();
            let inner: usize = oshape[ax + 1..].iter().product();
            k.softmax(&x, outer, oshape[ax], inner, op.op == "LogSoftmax", out).map_err(kerr)?;
        }
        "LayerNormalization" => {
            need(2)?;
            let x = fin(0)?;
            let ax = axis(op, -1, oshape.len())?;
            let outer: usize = oshape[..ax].iter().product();
            let n: usize = oshape[ax..].iter().product();
            let scale = fin(1)?;
            let bias = if op.inputs.len() > 2 { Some(fin(2)?) } else { None };
            k.layer_norm(&x, outer, n, &scale, bias.as_deref(), float(op, "epsilon", 1e-5), out, None, None).map_err(kerr)?;
        }
        "BatchNormalization" => {
            need(5)?;
            let x = fin(0)?;
            let xs = dims(&op.inputs[0]);
            if xs.len() < 2 {
                return Err("BatchNormalization input must have rank >= 2".into());
            }
            let (s, b, m, v) = (fin(1)?, fin(2)?, fin(3)?, fin(4)?);
            k.batch_norm(&x, xs[0], xs[1], xs[2..].iter().product(), &s, &b, &m, &v, float(op, "epsilon", 1e-5), out).map_err(kerr)?;
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            need(1)?;
            let x = fin(0)?;
            let xs = dims(&op.inputs[0]);
            let axes_raw = ints(op, "axes").unwrap_or_else(|| (0..xs.len() as i64).collect());
            let axes = qaic_kernels::reduce::normalize_axes(&axes_raw, xs.len()).map_err(kerr)?;
            let rop = match op.op.as_str() {
                "ReduceMean" => ReduceOp::Mean,
                "ReduceSum" => ReduceOp::Sum,
                "ReduceMax" => ReduceOp::Max,
                _ => ReduceOp::Min,
            };
            out.fill(0.0);
            qaic_kernels::reduce::reduce(rop, &x, &xs, &axes, out).map_err(kerr)?;
        }
        "Resize" => {
            // Nearest neighbour with integer upsampling factors (codegen lowers only this case).
            need(1)?;
            let x = fin(0)?;
            let xs = dims(&op.inputs[0]);
            if xs.len() != oshape.len() || xs.iter().zip(&oshape).any(|(&i, &o)| i == 0 || o % i != 0) {
                return Err(format!("Resize {xs:?} -> {oshape:?}: only integer nearest upsampling is supported"));
            }
            let istr = qaic_tensor::strides(&xs);
            let r = xs.len();
            if r == 0 {
                out.copy_from_slice(&x[..on]);
                return Ok(());
            }
            // Row by row: the source row is found once (divisions per row, not per element),
            // then each input value fills `f` consecutive outputs.
            let last = r - 1;
            let (ow, iw) = (oshape[last], xs[last]);
            let f = ow / iw;
            let rows: usize = oshape[..last].iter().product();
            let mut idx = vec![0usize; last];
            for row in 0..rows {
                let off: usize = (0..last).map(|d| idx[d] / (oshape[d] / xs[d]) * istr[d]).sum();
                let (src, dst) = (&x[off..off + iw], &mut out[row * ow..(row + 1) * ow]);
                if f == 1 {
                    dst.copy_from_slice(src);
                } else {
                    for (d, &v) in dst.chunks_exact_mut(f).zip(src) {
                        d.fill(v);
                    }
                }
                for d in (0..last).rev() {
                    idx[d] += 1;
                    if idx[d] < oshape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        name => {
            if let Some(u) = unary_of(op) {
                need(1)?;
                let x = fin(0)?;
                if x.len() != on {
                    return Err(format!("{name}: input has {} elements, output {on}", x.len()));
                }
                k.unary(u, &x, out).map_err(kerr)?;
            } else if let Some(b) = binary_of(name) {
                need(2)?;
                let mut acc = fin(0)?;
                let mut shape = dims(&op.inputs[0]);
                for i in 1..op.inputs.len() {
                    let y = fin(i)?;
                    let ys = dims(&op.inputs[i]);
                    let s = qaic_kernels::elementwise::broadcast::broadcast_shapes(&[&shape, &ys]).map_err(kerr)?;
                    if i + 1 == op.inputs.len() {
                        // The last (usually only) step writes the output in place.
                        if s != oshape {
                            return Err(format!("{name}: result shape {s:?} differs from the output tile {oshape:?}"));
                        }
                        k.binary(b, &acc, &shape, &y, &ys, out).map_err(kerr)?;
                        break;
                    }
                    let mut o = vec![0f32; s.iter().product()];
                    k.binary(b, &acc, &shape, &y, &ys, &mut o).map_err(kerr)?;
                    acc = o.into();
                    shape = s;
                }
            } else {
                return Err(format!("op {name} is not supported by the simulator yet"));
            }
        }
    }
    let _ = on;
    Ok(())
}

/// The convolution epilogue equivalent to an element-wise op, if there is one.
pub(crate) fn activation_of(op: &Op) -> Option<Activation> {
    Some(match unary_of(op)? {
        UnaryOp::Relu => Activation::Relu,
        UnaryOp::LeakyRelu(a) => Activation::LeakyRelu(a),
        UnaryOp::Clip { min, max } => Activation::Clip { min, max },
        UnaryOp::HardSigmoid { alpha, beta } => Activation::HardSigmoid { alpha, beta },
        UnaryOp::HardSwish => Activation::HardSwish,
        _ => return None,
    })
}

/// The activation a codegen-fused `Conv` carries in its `activation` attribute.
pub(crate) fn conv_activation(op: &Op) -> Activation {
    match op.attr("activation") {
        Some(AttrValue::Str(s)) if s == "Relu" => Activation::Relu,
        Some(AttrValue::Str(s)) if s == "Clip" => Activation::Clip { min: float(op, "act_min", 0.0), max: float(op, "act_max", 6.0) },
        _ => Activation::None,
    }
}

fn transpose_bytes(b: &[u8], dtype: DType, shape: &[usize], perm: &[usize]) -> Result<Vec<u8>, String> {
    fn go<T: bytemuck::Pod + Send + Sync>(b: &[u8], shape: &[usize], perm: &[usize]) -> Result<Vec<u8>, String> {
        let x: Vec<T> = bytemuck::pod_collect_to_vec(b);
        let mut o = x.clone();
        qaic_kernels::layout::transpose(&x, shape, perm, &mut o).map_err(|e| e.to_string())?;
        Ok(bytemuck::pod_collect_to_vec(&o))
    }
    match dtype.bits() {
        8 => go::<u8>(b, shape, perm),
        16 => go::<u16>(b, shape, perm),
        32 => go::<u32>(b, shape, perm),
        64 => go::<u64>(b, shape, perm),
        n => Err(format!("Transpose of {n}-bit elements is not supported yet")),
    }
}
