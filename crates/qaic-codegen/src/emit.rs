//! Lowering, grouping, tiling and instruction emission.

use std::collections::BTreeMap;

use qaic_device::{AttrValue, Buffer, BufferKind, CoreMask, DeviceModel, Dma, DmaDim, DmaShape, Instr, Op, Program, SemSignal, Space, Tile};
use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_tensor::DType;

use crate::prepare::{concrete_shape, dtype_of};
use crate::{CodegenError, CodegenOptions, Compiled, CoreMetrics, IoBinding, LayerPlacement, Report, UnsupportedIo, UnsupportedOp};

/// ONNX op types the code generator lowers (compute ops plus reshape-like aliases).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal",
    "Floor", "Ceil", "Softplus", "Gelu", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Clip", "Add", "Sub",
    "Mul", "Div", "Pow", "Max", "Min", "PRelu", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization", "ReduceMean", "ReduceSum", "ReduceMax",
    "ReduceMin", "Transpose", "Concat", "Resize", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
    "Cast",
];

/// Quantization ops of quantized graphs (qaic-quant's QDQ form): (domain, op type, device op).
/// `qaic.quant.Quantize` rounds the Glow way (zero point added in float before rounding).
const QDQ: &[(&str, &str, &str)] = &[("qaic.quant", "Quantize", "QuantizeGlow"), ("", "DequantizeLinear", "DequantizeLinear"), ("ai.onnx", "DequantizeLinear", "DequantizeLinear")];

/// Integer matrix ops of quantized graphs (qaic-quant's lowering): (domain, op type, device op).
/// Inputs `x, w, bias, multiplier, w_zero_point` travel as tiles (the per-channel ones split
/// with the weights); the scalar zero points become attributes.
const QLINEAR: &[(&str, &str, &str)] = &[("qaic.quant", "QConv", "QConvGlow"), ("qaic.quant", "QMatMul", "QMatMulGlow")];

fn qlinear_op(n: &Node) -> Option<&'static str> {
    QLINEAR.iter().find(|(d, o, _)| *d == n.domain && *o == n.op_type).map(|(_, _, dev)| *dev)
}

/// The device op of a quantize/dequantize node, if it is one.
fn qdq_op(n: &Node) -> Option<&'static str> {
    QDQ.iter().find(|(d, o, _)| *d == n.domain && *o == n.op_type).map(|(_, _, dev)| *dev)
}

const ALIASES: &[&str] = &["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"];
const UNARY: &[&str] = &[
    "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Softplus",
    "Gelu", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Clip", "Cast",
];
const BINARY: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"];
const MOVES: &[&str] = &["Transpose", "Concat"];
/// Layers that fuse along the batch axis under `-aic-enable-depth-first` (besides element-wise ones).
const DEPTH_FIRST_OPS: &[&str] = &["Conv", "QConvGlow", "MaxPool", "AveragePool", "GlobalAveragePool"];

/// Tags: 0/1 input halves, 2/3 output halves, 4 resident operands.
const TAG_RESIDENT: u8 = 4;
/// Semaphore counting multicasts that have landed.
const SEM_MCAST: u16 = 0;
/// `-use-producer-dma`: semaphore counting layer-output DMAs that have landed (each output
/// DMA increments it itself when its data is in DDR; consumers wait for the running total).
const SEM_PRODUCED: u16 = 1;
const SLOT_ALIGN: u64 = 128;

#[derive(Clone, Debug)]
pub(crate) struct LNode {
    pub(crate) name: String,
    pub(crate) op: String,
    pub(crate) inputs: Vec<ValueId>,
    pub(crate) output: ValueId,
    pub(crate) attrs: Vec<(String, AttrValue)>,
}

/// How an op input follows a split of the output along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slice {
    Whole,
    Same(usize),
}

pub(crate) struct Ctx<'a> {
    g: &'a Graph,
    shapes: BTreeMap<ValueId, Vec<usize>>,
    dtypes: BTreeMap<ValueId, DType>,
    /// Reshape-like values → the value whose bytes they share.
    root: BTreeMap<ValueId, ValueId>,
}

impl Ctx<'_> {
    pub(crate) fn r(&self, v: ValueId) -> ValueId {
        let mut v = v;
        while let Some(&p) = self.root.get(&v) {
            v = p;
        }
        v
    }
    pub(crate) fn shape(&self, v: ValueId) -> &[usize] {
        self.shapes.get(&v).map_or(&[], |s| s.as_slice())
    }
    pub(crate) fn set_dtype(&mut self, v: ValueId, d: DType) {
        self.dtypes.insert(v, d);
    }
    pub(crate) fn dtype(&self, v: ValueId) -> DType {
        self.dtypes.get(&v).copied().unwrap_or(DType::F32)
    }
    fn bytes(&self, v: ValueId) -> u64 {
        elems(self.shape(v)) * es(self.dtype(v))
    }
    fn is_const(&self, v: ValueId) -> bool {
        self.g.value(self.r(v)).constant.is_some()
    }
}

fn elems(s: &[usize]) -> u64 {
    s.iter().map(|&d| d as u64).product()
}

fn es(d: DType) -> u64 {
    (d.bits() as u64).div_ceil(8).max(1)
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

fn conv_attr(a: &Attr) -> Option<AttrValue> {
    Some(match a {
        Attr::Int(v) => AttrValue::Int(*v),
        Attr::Float(v) => AttrValue::Float(*v as f64),
        Attr::Ints(v) => AttrValue::Ints(v.clone()),
        Attr::Floats(v) => AttrValue::Floats(v.iter().map(|&x| x as f64).collect()),
        Attr::String(s) => AttrValue::Str(String::from_utf8_lossy(s).into_owned()),
        _ => return None,
    })
}

fn const_f32(g: &Graph, v: Option<ValueId>) -> Option<Option<f32>> {
    match v {
        None => Some(None),
        Some(v) => {
            let t = g.value(v).constant.as_ref()?;
            let x = match t.dtype() {
                DType::F32 => t.to_vec::<f32>().ok()?.first().copied()?,
                DType::F16 => t.to_vec::<half::f16>().ok()?.first()?.to_f32(),
                _ => return None,
            };
            Some(Some(x))
        }
    }
}

fn const_ints(g: &Graph, v: Option<ValueId>) -> Option<Vec<i64>> {
    let t = g.value(v?).constant.as_ref()?;
    match t.dtype() {
        DType::I64 => t.to_vec::<i64>().ok(),
        DType::I32 => t.to_vec::<i32>().ok().map(|v| v.into_iter().map(|x| x as i64).collect()),
        _ => None,
    }
}

/// Lowers one node: `Ok(None)` for aliases, `Err(reason)` when unsupported.
fn lower(cx: &Ctx<'_>, n: &Node) -> Result<Option<LNode>, String> {
    let g = cx.g;
    let op = n.op_type.as_str();
    if let Some(dev) = qdq_op(n) {
        return lower_qdq(cx, n, dev).map(Some);
    }
    if let Some(dev) = qlinear_op(n) {
        return lower_qlinear(cx, n, dev).map(Some);
    }
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return Err(format!("domain `{}`", n.domain));
    }
    if !SUPPORTED_OPS.contains(&op) {
        return Err(String::new());
    }
    let Some(Some(out)) = n.outputs.first().copied() else { return Err("no output".into()) };
    if n.outputs.iter().skip(1).any(|o| o.is_some()) && op != "Dropout" {
        return Err("optional extra outputs are not supported".into());
    }
    if ALIASES.contains(&op) {
        return Ok(None);
    }
    // Max/Min of one tensor is that tensor: an alias of its bytes (no compute).
    if matches!(op, "Max" | "Min") && n.inputs.iter().flatten().count() == 1 {
        let x = n.inputs.iter().flatten().next().copied().ok_or("missing input")?;
        if cx.dtype(x) == cx.dtype(out) && cx.shape(x) == cx.shape(out) {
            return Ok(None);
        }
    }
    let ins: Vec<Option<ValueId>> = n.inputs.clone();
    let first = ins.first().copied().flatten().ok_or("missing first input")?;
    let dt = cx.dtype(out);
    // Float ops compute in float32 or float16 (fp16 tiles are costed at the fp16 rate; the
    // simulator widens them and rounds each result once, as the interpreter does).
    if !MOVES.contains(&op) && !matches!(dt, DType::F32 | DType::F16) {
        return Err(format!("element type {dt:?} (float32 and float16 compute are supported)"));
    }
    if op == "Cast" && !matches!(cx.dtype(first), DType::F32 | DType::F16) {
        return Err(format!("Cast from {:?} (only float32 <-> float16 conversions are supported)", cx.dtype(first)));
    }
    let opset = g.opset_version("").unwrap_or(17);
    let mut attrs: Vec<(String, AttrValue)> = n.attrs.iter().filter_map(|(k, v)| conv_attr(v).map(|a| (k.clone(), a))).collect();
    let mut inputs: Vec<ValueId> = vec![first];
    let set = |attrs: &mut Vec<(String, AttrValue)>, k: &str, v: AttrValue| {
        attrs.retain(|(n, _)| n != k);
        attrs.push((k.to_string(), v));
    };
    let rank = cx.shape(first).len() as i64;
    match op {
        "Clip" => {
            if opset >= 11 {
                let lo = const_f32(g, ins.get(1).copied().flatten()).ok_or("min is not a constant")?;
                let hi = const_f32(g, ins.get(2).copied().flatten()).ok_or("max is not a constant")?;
                attrs.clear();
                if let Some(v) = lo {
                    set(&mut attrs, "min", AttrValue::Float(v as f64));
                }
                if let Some(v) = hi {
                    set(&mut attrs, "max", AttrValue::Float(v as f64));
                }
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let axes = match n.attr_ints("axes") {
                Some(a) => Some(a.to_vec()),
                None => match ins.get(1).copied().flatten() {
                    Some(v) => Some(const_ints(g, Some(v)).ok_or("axes is not a constant")?),
                    None => None,
                },
            };
            attrs.retain(|(k, _)| k != "axes" && k != "noop_with_empty_axes");
            match axes {
                Some(a) if !a.is_empty() => set(&mut attrs, "axes", AttrValue::Ints(a)),
                _ if n.attr_int("noop_with_empty_axes").unwrap_or(0) != 0 => return Err("noop_with_empty_axes".into()),
                _ => set(&mut attrs, "axes", AttrValue::Ints((0..rank).collect())),
            }
        }
        "Softmax" | "LogSoftmax" => {
            let a = n.attr_int("axis").unwrap_or(if opset >= 13 { -1 } else { 1 });
            let a = if a < 0 { a + rank } else { a };
            if opset < 13 && a != rank - 1 {
                return Err(format!("opset {opset} coerced-2D softmax over axis {a} of rank {rank}"));
            }
            set(&mut attrs, "axis", AttrValue::Int(a));
        }
        "LayerNormalization" => {
            if n.attr_int("stash_type").unwrap_or(1) != 1 {
                return Err("stash_type other than float".into());
            }
            let a = n.attr_int("axis").unwrap_or(-1);
            set(&mut attrs, "axis", AttrValue::Int(if a < 0 { a + rank } else { a }));
            inputs.extend(ins.iter().skip(1).flatten());
        }
        "Resize" => {
            let mode = n.attr_str("mode").unwrap_or("nearest");
            let ctm = n.attr_str("coordinate_transformation_mode").unwrap_or("half_pixel");
            let nm = n.attr_str("nearest_mode").unwrap_or("round_prefer_floor");
            let (xs, ys) = (cx.shape(first), cx.shape(out));
            let ok_shape = xs.len() == ys.len() && xs.iter().zip(ys).all(|(&i, &o)| i > 0 && o % i == 0);
            let max_s = xs.iter().zip(ys).map(|(&i, &o)| o / i.max(1)).max().unwrap_or(1);
            let ok = mode == "nearest"
                && ok_shape
                && ((ctm == "asymmetric" && nm == "floor")
                    || (matches!(ctm, "asymmetric" | "half_pixel" | "pytorch_half_pixel") && nm == "round_prefer_floor" && max_s <= 2));
            if !ok {
                return Err(format!("only nearest upsampling by integer factors is supported (mode {mode}, {ctm}, {nm})"));
            }
            attrs.clear();
        }
        "Conv" | "MatMul" | "Gemm" | "BatchNormalization" | "PRelu" | "Concat" => {
            inputs.extend(ins.iter().skip(1).flatten());
        }
        "ConvTranspose" => {
            // The output tile carries the output size, so `output_shape` needs nothing more;
            // SAME_* padding is resolved here as the interpreter resolves it.
            inputs.extend(ins.iter().skip(1).flatten());
            let ws = cx.shape(inputs[1]).to_vec();
            let (xs, ys) = (cx.shape(first).to_vec(), cx.shape(out).to_vec());
            let r = xs.len().saturating_sub(2);
            if !n.attrs.contains_key("kernel_shape") {
                set(&mut attrs, "kernel_shape", AttrValue::Ints(ws[2..].iter().map(|&d| d as i64).collect()));
            }
            attrs.retain(|(k, _)| k != "output_shape" && k != "auto_pad");
            match n.attr_str("auto_pad").unwrap_or("NOTSET") {
                "NOTSET" | "VALID" => {}
                ap @ ("SAME_UPPER" | "SAME_LOWER") => {
                    let get = |k: &str, d: usize| -> Vec<usize> { n.attr_ints(k).map(|v| v.iter().map(|&x| x.max(0) as usize).collect()).unwrap_or_else(|| vec![d; r]) };
                    let p = qaic_kernels::conv::conv_transpose_same_pads(&xs[2..], &ws[2..], &get("strides", 1), &get("dilations", 1), &get("output_padding", 0), &ys[2..], ap == "SAME_UPPER");
                    let pads: Vec<i64> = p.iter().map(|x| x.0).chain(p.iter().map(|x| x.1)).collect();
                    set(&mut attrs, "pads", AttrValue::Ints(pads));
                }
                other => return Err(format!("auto_pad {other}")),
            }
        }
        "Transpose" => {
            // ONNX default: reverse the axes.
            if !n.attrs.contains_key("perm") {
                set(&mut attrs, "perm", AttrValue::Ints((0..rank).rev().collect()));
            }
        }
        o if BINARY.contains(&o) => {
            inputs.extend(ins.iter().skip(1).flatten());
            // Pow's exponent may have another type (ONNX T2); the device computes float32 only.
            if let Some(&e) = inputs.iter().skip(1).find(|&&v| !matches!(cx.dtype(v), DType::F32 | DType::F16)) {
                return Err(format!("{op} operand `{}` is {:?} (float32 and float16 compute are supported)", g.value(e).name, cx.dtype(e)));
            }
        }
        _ => {}
    }
    if op == "Conv" {
        let ws = cx.shape(inputs[1]).to_vec();
        if !n.attrs.contains_key("kernel_shape") {
            set(&mut attrs, "kernel_shape", AttrValue::Ints(ws[2..].iter().map(|&d| d as i64).collect()));
        }
        if n.attr_str("auto_pad").is_some_and(|s| s != "NOTSET") {
            return Err("auto_pad (use explicit pads)".into());
        }
    }
    if matches!(op, "MaxPool" | "AveragePool") && n.attr_str("auto_pad").is_some_and(|s| s != "NOTSET") {
        return Err("auto_pad (use explicit pads)".into());
    }
    if op == "MaxPool" && n.outputs.get(1).copied().flatten().is_some() {
        return Err("Indices output".into());
    }
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(LNode { name: n.display_name(g), op: op.to_string(), inputs, output: out, attrs }))
}

/// A per-tensor quantize (f32 → int) or dequantize (int → f32): element-wise on the device, the
/// scale and zero point (constants with one element) become the `scale` / `zero_point`
/// attributes. Per-axis parameters are refused (constant weights are dequantized at compile time).
fn lower_qdq(cx: &Ctx<'_>, n: &Node, dev: &str) -> Result<LNode, String> {
    let g = cx.g;
    let Some(Some(out)) = n.outputs.first().copied() else { return Err("no output".into()) };
    let x = n.inputs.first().copied().flatten().ok_or("missing input")?;
    let scale = n.inputs.get(1).copied().flatten().and_then(|v| g.value(v).constant.as_ref()).ok_or("scale is not a constant")?;
    if scale.len() != 1 || scale.dtype() != DType::F32 {
        return Err(format!("scale of {} {:?} values (only one float32 scale per tensor is supported)", scale.len(), scale.dtype()));
    }
    let s = scale.to_vec::<f32>().map_err(|e| e.to_string())?[0];
    let zp = match n.inputs.get(2).copied().flatten() {
        None => 0,
        Some(v) => {
            let t = g.value(v).constant.as_ref().ok_or("zero point is not a constant")?;
            if t.len() != 1 {
                return Err(format!("zero point of {} values (only one per tensor is supported)", t.len()));
            }
            match t.dtype() {
                DType::I8 => t.to_vec::<i8>().map_err(|e| e.to_string())?[0] as i64,
                DType::U8 => t.to_vec::<u8>().map_err(|e| e.to_string())?[0] as i64,
                DType::I16 => t.to_vec::<i16>().map_err(|e| e.to_string())?[0] as i64,
                d => return Err(format!("zero point of type {d:?}")),
            }
        }
    };
    let (int_t, float_t) = if dev == "QuantizeGlow" { (cx.dtype(out), cx.dtype(x)) } else { (cx.dtype(x), cx.dtype(out)) };
    if !matches!(int_t, DType::I8 | DType::U8 | DType::I16) || float_t != DType::F32 {
        return Err(format!("{int_t:?} <-> {float_t:?} (int8, uint8 and int16 from/to float32 are supported)"));
    }
    let attrs = vec![("scale".to_string(), AttrValue::Float(s as f64)), ("zero_point".to_string(), AttrValue::Int(zp))];
    Ok(LNode { name: n.display_name(g), op: dev.to_string(), inputs: vec![x], output: out, attrs })
}

/// An integer convolution or matrix product (8-bit in and out, i32 accumulation, Glow's
/// requantization; `qaic_kernels::quant::QConvGlow` / `QMatMulGlow` run it on the simulator).
fn lower_qlinear(cx: &Ctx<'_>, n: &Node, dev: &str) -> Result<LNode, String> {
    let g = cx.g;
    let Some(Some(out)) = n.outputs.first().copied() else { return Err("no output".into()) };
    let inp = |i: usize| n.inputs.get(i).copied().flatten().ok_or_else(|| format!("missing input {i}"));
    let zp = |i: usize| -> Result<i64, String> {
        let t = g.value(inp(i)?).constant.as_ref().ok_or_else(|| format!("input {i} (zero point) is not a constant"))?;
        match t.dtype() {
            DType::I8 if t.len() == 1 => Ok(t.to_vec::<i8>().map_err(|e| e.to_string())?[0] as i64),
            DType::U8 if t.len() == 1 => Ok(t.to_vec::<u8>().map_err(|e| e.to_string())?[0] as i64),
            d => Err(format!("zero point of {} {d:?} values (one int8 or uint8 value is supported)", t.len())),
        }
    };
    let x = inp(0)?;
    for (v, what) in [(x, "input"), (out, "output"), (inp(1)?, "weights")] {
        if !matches!(cx.dtype(v), DType::I8 | DType::U8) {
            return Err(format!("{what} of type {:?} (int8 and uint8 are supported)", cx.dtype(v)));
        }
    }
    for i in 1..=4 {
        if !cx.is_const(inp(i)?) {
            return Err(format!("input {i} is not a constant"));
        }
    }
    let mut attrs: Vec<(String, AttrValue)> = n.attrs.iter().filter_map(|(k, v)| conv_attr(v).map(|a| (k.clone(), a))).collect();
    attrs.push(("x_zero_point".into(), AttrValue::Int(zp(5)?)));
    attrs.push(("y_zero_point".into(), AttrValue::Int(zp(6)?)));
    if dev == "QConvGlow" && !n.attrs.contains_key("kernel_shape") {
        attrs.push(("kernel_shape".into(), AttrValue::Ints(cx.shape(inp(1)?)[2..].iter().map(|&d| d as i64).collect())));
    }
    attrs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(LNode { name: n.display_name(g), op: dev.to_string(), inputs: (0..5).map(inp).collect::<Result<_, _>>()?, output: out, attrs })
}

/// Broadcast mapping of an input of shape `is` onto output axis `a` of rank `r`.
fn bcast(is: &[usize], os: &[usize], a: usize) -> Option<Slice> {
    let off = os.len() as i64 - is.len() as i64;
    let ia = a as i64 - off;
    if ia < 0 {
        return Some(Slice::Whole);
    }
    let d = is[ia as usize];
    if d == os[a] {
        Some(Slice::Same(ia as usize))
    } else if d == 1 {
        Some(Slice::Whole)
    } else {
        None
    }
}

/// How each input of `n` follows a split of its output along axis `a`; `None` if it cannot.
fn mapping(cx: &Ctx<'_>, n: &LNode, a: usize) -> Option<Vec<Slice>> {
    let os = cx.shape(n.output);
    if a >= os.len() || os[a] <= 1 {
        return None;
    }
    let ish = |i: usize| cx.shape(n.inputs[i]);
    let int = |k: &str, d: i64| n.attrs.iter().find(|(x, _)| x == k).and_then(|(_, v)| if let AttrValue::Int(i) = v { Some(*i) } else { None }).unwrap_or(d);
    let op = n.op.as_str();
    let all_same = |v: Vec<Slice>| Some(v);
    match op {
        "QMatMulGlow" => {
            let r = os.len();
            if a + 1 == r {
                Some(vec![Slice::Whole, Slice::Same(1), Slice::Same(0), Slice::Same(0), Slice::Same(0)])
            } else {
                let mut v = vec![Slice::Same(a)];
                v.extend(std::iter::repeat_n(Slice::Whole, 4));
                Some(v)
            }
        }
        "Conv" | "QConvGlow" => {
            let group = int("group", 1) as usize;
            let c = ish(0).get(1).copied().unwrap_or(0);
            let m = os[1];
            let rest = n.inputs.len();
            match a {
                0 => all_same([Slice::Same(0)].into_iter().chain(std::iter::repeat_n(Slice::Whole, rest - 1)).collect()),
                1 if group == 1 => all_same([Slice::Whole].into_iter().chain(std::iter::repeat_n(Slice::Same(0), rest - 1)).collect()),
                1 if group == c && group == m => all_same([Slice::Same(1)].into_iter().chain(std::iter::repeat_n(Slice::Same(0), rest - 1)).collect()),
                _ => None,
            }
        }
        "MatMul" => {
            let (ra, rb, r) = (ish(0).len(), ish(1).len(), os.len());
            if ra < 2 || rb < 2 {
                return None;
            }
            if a == r - 1 {
                Some(vec![Slice::Whole, Slice::Same(rb - 1)])
            } else if a == r - 2 {
                Some(vec![Slice::Same(ra - 2), Slice::Whole])
            } else {
                let f = |s: &[usize], rk: usize| -> Option<Slice> {
                    let ia = a as i64 - (r as i64 - rk as i64);
                    if ia < 0 || s[ia as usize] == 1 { Some(Slice::Whole) } else if s[ia as usize] == os[a] { Some(Slice::Same(ia as usize)) } else { None }
                };
                Some(vec![f(ish(0), ra)?, f(ish(1), rb)?])
            }
        }
        "Gemm" => {
            let (ta, tb) = (int("transA", 0) != 0, int("transB", 0) != 0);
            let mut v = if a == 0 {
                vec![Slice::Same(if ta { 1 } else { 0 }), Slice::Whole]
            } else {
                vec![Slice::Whole, Slice::Same(if tb { 0 } else { 1 })]
            };
            if n.inputs.len() > 2 {
                v.push(bcast(ish(2), os, a)?);
            }
            Some(v)
        }
        // W is [C, M/group, k...]: a split of the output channels slices its axis 1.
        "ConvTranspose" => {
            let rest = n.inputs.len();
            match a {
                0 => Some([Slice::Same(0)].into_iter().chain(std::iter::repeat_n(Slice::Whole, rest - 1)).collect()),
                1 if int("group", 1) == 1 => {
                    let mut v = vec![Slice::Whole, Slice::Same(1)];
                    if rest > 2 {
                        v.push(Slice::Same(0));
                    }
                    Some(v)
                }
                _ => None,
            }
        }
        "MaxPool" | "AveragePool" | "GlobalAveragePool" | "GlobalMaxPool" if a <= 1 => Some(vec![Slice::Same(a)]),
        "BatchNormalization" if a <= 1 => {
            let p = if a == 1 { Slice::Same(0) } else { Slice::Whole };
            Some(vec![Slice::Same(a), p, p, p, p])
        }
        "Softmax" | "LogSoftmax" | "LayerNormalization" => {
            let ax = int("axis", -1);
            if (a as i64) < ax {
                let mut v = vec![Slice::Same(a)];
                v.extend(std::iter::repeat_n(Slice::Whole, n.inputs.len() - 1));
                Some(v)
            } else {
                None
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
            let is = ish(0);
            let axes: Vec<i64> = n.attrs.iter().find(|(k, _)| k == "axes").and_then(|(_, v)| if let AttrValue::Ints(v) = v { Some(v.clone()) } else { None }).unwrap_or_default();
            let r = is.len() as i64;
            let red: Vec<usize> = axes.iter().map(|&x| if x < 0 { (x + r) as usize } else { x as usize }).collect();
            // Only the leading non-reduced axes keep their index with keepdims=0.
            if red.iter().all(|&x| x > a) && is.get(a) == Some(&os[a]) { Some(vec![Slice::Same(a)]) } else { None }
        }
        "Transpose" => {
            let perm: Vec<i64> = n.attrs.iter().find(|(k, _)| k == "perm").and_then(|(_, v)| if let AttrValue::Ints(v) = v { Some(v.clone()) } else { None })?;
            let p = *perm.get(a)? as usize;
            // A split of the input's outermost axis keeps every slice contiguous in DDR.
            Some(vec![Slice::Same(p)])
        }
        "Concat" => {
            let ax = int("axis", 0);
            let ax = if ax < 0 { ax + os.len() as i64 } else { ax } as usize;
            if a == ax { None } else { Some(vec![Slice::Same(a); n.inputs.len()]) }
        }
        "Resize" => {
            if ish(0).get(a) == Some(&os[a]) { Some(vec![Slice::Same(a)]) } else { None }
        }
        o if UNARY.contains(&o) || matches!(o, "QuantizeGlow" | "DequantizeLinear" | "QTable") => Some(vec![Slice::Same(a)]),
        o if BINARY.contains(&o) || o == "QBinaryGlow" => n.inputs.iter().map(|&v| bcast(cx.shape(v), os, a)).collect(),
        _ => None,
    }
}

fn is_elementwise(n: &LNode) -> bool {
    UNARY.contains(&n.op.as_str()) || BINARY.contains(&n.op.as_str()) || matches!(n.op.as_str(), "QuantizeGlow" | "DequantizeLinear" | "QTable" | "QBinaryGlow")
}

#[derive(Clone, Debug)]
struct Group {
    members: Vec<usize>,
    /// Axes every member can be split along consistently.
    axes: Vec<usize>,
}

/// One member input's source for a group tile.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    /// Loaded once per layer (whole tensor), index into `Plan::resident`.
    Resident(usize),
    /// Sliced per tile from DDR, index into `Plan::sliced`.
    Sliced(usize),
    /// Output of member `m` in this tile.
    Member(usize),
}

#[derive(Clone, Debug)]
struct Plan {
    name: String,
    axis: Option<usize>,
    /// Per core: the output ranges of its tiles along `axis` (one `(0, 1)` tile when unsplit).
    tiles: Vec<Vec<(usize, usize)>>,
    resident: Vec<(ValueId, u64)>,
    /// (value, axis of the value sliced, slot offset in a half).
    sliced: Vec<(ValueId, usize, u64)>,
    /// Per member: input sources and output slot offset in a half.
    srcs: Vec<Vec<Src>>,
    out_slot: Vec<u64>,
    /// Per member: its output lives in the region shared by all tiles (never written to DDR;
    /// `out_slot` is then relative to that region) instead of the tile's half.
    out_shared: Vec<bool>,
    /// Bytes of the shared region, after the half or halves.
    shared: u64,
    /// Members whose output goes to DDR.
    written: Vec<bool>,
    half: u64,
    half_base: u64,
    vtcm: u64,
    members: Vec<usize>,
    participants: Vec<u32>,
    multicast: bool,
    /// One tile buffer instead of two: a tile's loads wait for the previous tile's stores
    /// (used only when a double-buffered tile of the smallest size does not fit).
    single: bool,
}

fn tile_shape(s: &[usize], ax: Option<usize>, r: (usize, usize)) -> Vec<u64> {
    let mut v: Vec<u64> = s.iter().map(|&d| d as u64).collect();
    if let Some(a) = ax {
        v[a] = (r.1 - r.0) as u64;
    }
    v
}

/// The DMA moving rows `r` of axis `ax` of a DDR tensor (`shape`, element size `e`) at
/// (`buf`, `off`) to or from a dense VTCM tile at `vt`.
fn slice_dma(buf: u32, off: u64, shape: &[usize], e: u64, ax: Option<usize>, r: (usize, usize), vt: u64, to_vtcm: bool, tag: u8) -> Option<Dma> {
    let (outer, inner, dim, r) = match ax {
        Some(a) => (elems(&shape[..a]), elems(&shape[a + 1..]) * e, shape[a] as u64, (r.0 as u64, r.1 as u64)),
        None => (1, elems(shape) * e, 1, (0, 1)),
    };
    let run = (r.1 - r.0) * inner;
    if run == 0 || outer == 0 {
        return None;
    }
    let ddr_off = off + r.0 * inner;
    let dims = if outer > 1 {
        let (ds, vs) = (dim * inner, run);
        vec![if to_vtcm { DmaDim { count: outer, src_stride: ds, dst_stride: vs } } else { DmaDim { count: outer, src_stride: vs, dst_stride: ds } }]
    } else {
        Vec::new()
    };
    let (src, so, dst, dso) = if to_vtcm { (Space::Ddr(buf), ddr_off, Space::Vtcm, vt) } else { (Space::Vtcm, vt, Space::Ddr(buf), ddr_off) };
    Some(Dma { src, src_offset: so, dst, dst_offset: dso, shape: DmaShape { run_bytes: run, dims }, multicast: None, tag, signal: None })
}

/// A constant a core keeps in its preloaded VTCM region: the value and, for a slice along an
/// axis, (axis, start, end); `None` for the whole tensor.
type PreKey = (ValueId, Option<(usize, usize, usize)>);
/// One core's preloaded constants → VTCM offset.
type Preloaded = BTreeMap<PreKey, u64>;

/// Per core, the constants its layers load from DDR that could stay resident instead, with
/// their bytes: weight/bias slices along a leading axis (contiguous in DDR and VTCM) and whole
/// constant operands of layers without multicast. Whole constants of multicast layers are
/// listed apart, with their participants: they are preloaded on all of them or on none.
fn preload_candidates(cx: &Ctx<'_>, plans: &[Plan], ncores: u32) -> (Vec<Vec<(PreKey, u64)>>, Vec<(PreKey, u64, Vec<u32>)>) {
    let mut out: Vec<Vec<(PreKey, u64)>> = vec![Vec::new(); ncores as usize];
    let mut shared: Vec<(PreKey, u64, Vec<u32>)> = Vec::new();
    for p in plans {
        if p.multicast {
            for &(val, _) in &p.resident {
                let v = cx.r(val);
                if cx.is_const(v) && cx.bytes(val) > 0 {
                    shared.push(((v, None), cx.bytes(val), p.participants.clone()));
                }
            }
        }
        for (c, tiles) in p.tiles.iter().enumerate() {
            let (Some(first), Some(last)) = (tiles.first(), tiles.last()) else { continue };
            let list = &mut out[c];
            for &(val, ia, _) in &p.sliced {
                let (v, sh) = (cx.r(val), cx.shape(val));
                if !cx.is_const(v) || elems(&sh[..ia]) != 1 {
                    continue;
                }
                let key = (v, Some((ia, first.0, last.1)));
                let bytes = (last.1 - first.0) as u64 * elems(&sh[ia + 1..]) * es(cx.dtype(val));
                if bytes > 0 && !list.iter().any(|(k, _)| *k == key) {
                    list.push((key, bytes));
                }
            }
            if !p.multicast {
                for &(val, _) in &p.resident {
                    let v = cx.r(val);
                    let key = (v, None);
                    if cx.is_const(v) && cx.bytes(val) > 0 && !list.iter().any(|(k, _)| *k == key) {
                        list.push((key, cx.bytes(val)));
                    }
                }
            }
        }
    }
    (out, shared)
}

/// Chooses what each core preloads within `room` bytes: first the whole constants of
/// multicast layers (on all their participants, or not at all, so the multicast stays
/// consistent), then each core's own, the smallest first (each saves a DMA and its setup per
/// inference; the bytes saved are the same whichever fill the room), in a deterministic order.
/// Returns per core the chosen keys with offsets from the region start, the region size, and
/// whether every candidate found room.
fn choose_preloads(c: &(Vec<Vec<(PreKey, u64)>>, Vec<(PreKey, u64, Vec<u32>)>), room: u64) -> (Vec<Vec<(PreKey, u64)>>, u64, bool) {
    let n = c.0.len();
    let mut off = vec![0u64; n];
    let mut all_fit = true;
    let mut chosen: Vec<Vec<(PreKey, u64)>> = vec![Vec::new(); n];
    let has = |chosen: &Vec<Vec<(PreKey, u64)>>, p: usize, k: &PreKey| chosen[p].iter().any(|(x, _)| x == k);
    let mut shared: Vec<&(PreKey, u64, Vec<u32>)> = c.1.iter().collect();
    shared.sort_by_key(|(k, b, _)| (*b, *k));
    for (k, b, parts) in shared {
        let lacking: Vec<usize> = parts.iter().map(|&p| p as usize).filter(|&p| p < n && !has(&chosen, p, k)).collect();
        if lacking.iter().all(|&p| off[p] + b <= room) {
            for p in lacking {
                chosen[p].push((*k, off[p]));
                off[p] = align(off[p] + b, SLOT_ALIGN);
            }
        } else {
            all_fit = false;
        }
    }
    // A constant some multicast layer shares is decided above only: were its first
    // participant to preload it alone, the others would wait for a multicast never sent.
    let in_shared = |k: &PreKey| c.1.iter().any(|(x, _, _)| x == k);
    for (p, list) in c.0.iter().enumerate() {
        let mut l: Vec<&(PreKey, u64)> = list.iter().collect();
        l.sort_by_key(|(k, b)| (*b, *k));
        for (k, b) in l {
            if in_shared(k) || has(&chosen, p, k) {
                continue;
            }
            if off[p] + b <= room {
                chosen[p].push((*k, off[p]));
                off[p] = align(off[p] + b, SLOT_ALIGN);
            } else {
                all_fit = false;
            }
        }
    }
    let used = off.into_iter().max().unwrap_or(0);
    (chosen, align(used, 4096), all_fit)
}

/// Whole operands a multicast layer's first participant still multicasts (those it has not
/// preloaded); every participant waits for this many landings.
fn multicast_count(cx: &Ctx<'_>, p: &Plan, keep: &Keep) -> u32 {
    let first = p.participants.first().and_then(|&c| keep.pre.get(c as usize));
    p.resident
        .iter()
        .filter(|(v, _)| !keep.act.contains_key(&cx.r(*v)) && first.is_none_or(|m| !m.contains_key(&(cx.r(*v), None))))
        .count() as u32
}

/// What stays in VTCM instead of crossing DDR.
#[derive(Default)]
struct Keep {
    /// Per core: preloaded constants.
    pre: Vec<Preloaded>,
    /// Activations passed between layers in VTCM: root value → start of its window, at the
    /// same offset on every core. The producing cores multicast their output slices into it.
    act: BTreeMap<ValueId, u64>,
    /// Of those, the ones also stored to DDR (a reader slices them along an axis whose slices
    /// are not contiguous, so it still loads them).
    act_ddr: std::collections::BTreeSet<ValueId>,
    /// End of the working region (layers' working sets and activation windows): the preload
    /// region starts here.
    top: u64,
    /// Bytes of the preload region.
    pre_bytes: u64,
}

/// First-fit placement: the lowest offset where `size` bytes fit between the `live` ranges
/// (offset, size), which are sorted here.
fn first_fit(live: &mut [(u64, u64)], size: u64) -> u64 {
    live.sort();
    let mut off = 0u64;
    for &(o, s) in live.iter() {
        if off + size <= o {
            break;
        }
        off = off.max(o + s);
    }
    off
}

/// Whether slices of `v` along axis `ia` are contiguous runs (every outer dim is 1).
fn contiguous_slices(cx: &Ctx<'_>, v: ValueId, ia: usize) -> bool {
    elems(&cx.shape(v)[..ia]) == 1
}

/// Activations kept in VTCM between layers: every value a layer stores and later layers
/// load (not a graph output) gets a window in a region starting at `base`, allocated first
/// fit by liveness (from its producing layer to its last reader) with 4 KiB-aligned windows (a
/// multicast table entry's base must be), as long as the region stays within `room` bytes.
/// Returns the windows, the values also needed in DDR, and the region size. Reusing a window
/// after its last reader is safe because a layer starts only when every core has finished
/// the earlier layers (barrier, or with `-use-producer-dma` the count of landed outputs,
/// which includes these multicasts).
fn plan_activations(cx: &Ctx<'_>, ln: &[LNode], plans: &[Plan], outs: &[ValueId], base: u64, room: u64) -> (BTreeMap<ValueId, u64>, std::collections::BTreeSet<ValueId>, u64, bool) {
    let mut prod: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (gi, p) in plans.iter().enumerate() {
        for (k, &m) in p.members.iter().enumerate() {
            if p.written[k] {
                prod.insert(ln[m].output, gi);
            }
        }
    }
    let mut last: BTreeMap<ValueId, usize> = BTreeMap::new();
    let mut ddr = std::collections::BTreeSet::new();
    for (gi, p) in plans.iter().enumerate() {
        for (k, &m) in p.members.iter().enumerate() {
            for (i, &v) in ln[m].inputs.iter().enumerate() {
                let r = cx.r(v);
                if !prod.contains_key(&r) {
                    continue;
                }
                match p.srcs[k][i] {
                    Src::Member(_) => continue,
                    Src::Resident(_) => {}
                    Src::Sliced(j) => {
                        if !contiguous_slices(cx, v, p.sliced[j].1) {
                            ddr.insert(r);
                        }
                    }
                }
                let e = last.entry(r).or_insert(gi);
                *e = (*e).max(gi);
            }
        }
    }
    let mut act = BTreeMap::new();
    let mut live: Vec<(u64, u64, usize)> = Vec::new();
    let mut size = 0u64;
    let mut all_placed = true;
    for (gi, p) in plans.iter().enumerate() {
        live.retain(|&(_, _, f)| f >= gi);
        for (k, &m) in p.members.iter().enumerate() {
            let v = ln[m].output;
            let Some(&f) = last.get(&v) else { continue };
            if !p.written[k] || outs.contains(&v) || f <= gi {
                continue;
            }
            let bytes = align(cx.bytes(v).max(1), 4096);
            let off = first_fit(&mut live.iter().map(|&(o, s, _)| (o, s)).collect::<Vec<_>>(), bytes);
            if off + bytes > room {
                all_placed = false;
                continue;
            }
            live.push((off, bytes, f));
            size = size.max(off + bytes);
            act.insert(v, base + off);
        }
    }
    ddr.retain(|v| act.contains_key(v));
    (act, ddr, size, all_placed)
}

struct Layout {
    /// value root → (buffer, offset)
    loc: BTreeMap<ValueId, (u32, u64)>,
}

pub(crate) fn generate(g: &Graph, dev: &DeviceModel, o: &CodegenOptions) -> Result<Compiled, CodegenError> {
    // Shapes and types of every value in use.
    let mut cx = Ctx { g, shapes: BTreeMap::new(), dtypes: BTreeMap::new(), root: BTreeMap::new() };
    let mut used: Vec<ValueId> = g.inputs.clone();
    used.extend(&g.outputs);
    for n in &g.nodes {
        used.extend(n.inputs.iter().flatten());
        used.extend(n.outputs.iter().flatten());
    }
    // Operators the device cannot run at all are listed before shapes are checked: their
    // outputs often have data-dependent shapes (NonZero), which would hide the real cause.
    let by_type: Vec<UnsupportedOp> = g
        .nodes
        .iter()
        .filter(|n| qdq_op(n).is_none() && qlinear_op(n).is_none() && (!(n.domain.is_empty() || n.domain == "ai.onnx") || !SUPPORTED_OPS.contains(&n.op_type.as_str())))
        .map(|n| UnsupportedOp {
            op_type: n.op_type.clone(),
            node: n.display_name(g),
            reason: if n.domain.is_empty() || n.domain == "ai.onnx" { String::new() } else { format!("domain `{}`", n.domain) },
        })
        .collect();
    // Graph inputs and outputs the network descriptor cannot describe; every refusal below
    // lists them along with the operators.
    let bad_io: Vec<UnsupportedIo> = g
        .inputs
        .iter()
        .filter(|&&v| g.value(v).constant.is_none())
        .map(|&v| (true, v))
        .chain(g.outputs.iter().map(|&v| (false, v)))
        .filter_map(|(is_input, v)| {
            let reason = match g.value(v).ty.as_ref() {
                Some(ValueType::Sequence(_) | ValueType::Optional(_) | ValueType::Map(..)) => "a sequence, optional or map value: the device takes tensors only".to_string(),
                _ => match (dtype_of(g, v), concrete_shape(g, v)) {
                    (Some(d), _) if !crate::IO_DTYPES.contains(&d) => format!("element type {}: the network descriptor has no such data type", d.name()),
                    (_, Some(s)) if s.contains(&0) => format!("empty tensor of shape {s:?}: the network descriptor counts a 0 dimension as 1, so it cannot describe an empty buffer"),
                    _ => return None,
                },
            };
            Some(UnsupportedIo { is_input, name: g.value(v).name.clone(), reason })
        })
        .collect();
    let refuse = |ops: Vec<UnsupportedOp>| if bad_io.is_empty() { CodegenError::Unsupported(ops) } else { CodegenError::UnsupportedIo { io: bad_io.clone(), ops } };
    // With every graph input's shape known, a value without a static shape comes from a node
    // whose output shape depends on run-time data (a Reshape/Expand shape, Resize sizes, Reduce
    // axes... fed by an input or a computed value): the device needs static shapes, so those
    // nodes are listed as unsupported, each naming the non-constant integer inputs that decide it.
    let unknown = |v: ValueId| concrete_shape(g, v).is_none();
    if by_type.is_empty() && used.iter().any(|&v| unknown(v)) && g.inputs.iter().all(|&v| g.value(v).constant.is_some() || !unknown(v)) {
        let dynamic: Vec<UnsupportedOp> = g
            .nodes
            .iter()
            .filter(|n| n.outputs.iter().flatten().any(|&o| unknown(o)) && n.inputs.iter().flatten().all(|&i| !unknown(i)))
            .map(|n| {
                let deciding: Vec<String> = n
                    .inputs
                    .iter()
                    .flatten()
                    .filter(|&&i| g.value(i).constant.is_none() && dtype_of(g, i).is_some_and(|d| d.is_int()))
                    .map(|&i| format!("`{}`", g.value(i).name))
                    .collect();
                let why = if deciding.is_empty() { String::new() } else { format!(", decided by the value of {}", deciding.join(", ")) };
                UnsupportedOp { op_type: n.op_type.clone(), node: n.display_name(g), reason: format!("output shape not known at compile time{why}; the device needs static shapes") }
            })
            .collect();
        if !dynamic.is_empty() {
            return Err(refuse(dynamic));
        }
    }
    for &v in &used {
        let name = &g.value(v).name;
        let known = concrete_shape(g, v)
            .ok_or_else(|| CodegenError::Shape { value: name.clone(), msg: "shape unknown after shape inference (bind its symbols)".into() })
            .and_then(|s| Ok((s, dtype_of(g, v).ok_or_else(|| CodegenError::Shape { value: name.clone(), msg: "element type unknown".into() })?)));
        match known {
            Ok((s, d)) => {
                cx.shapes.insert(v, s);
                cx.dtypes.insert(v, d);
            }
            Err(e) if !by_type.is_empty() || !bad_io.is_empty() => {
                // The unsupported operators and I/O are the error (a sequence input has no
                // shape); the shape is logged for -vv.
                tracing::debug!("{e}");
                return Err(refuse(by_type));
            }
            Err(e) => return Err(e),
        }
    }
    // Lower nodes, collecting every unsupported one.
    let mut lnodes = Vec::new();
    let mut unsupported = Vec::new();
    for n in &g.nodes {
        match lower(&cx, n) {
            Ok(Some(l)) => lnodes.push(l),
            Ok(None) => {
                if let (Some(Some(i)), Some(Some(out))) = (n.inputs.first(), n.outputs.first()) {
                    cx.root.insert(*out, *i);
                }
            }
            Err(reason) => unsupported.push(UnsupportedOp { op_type: n.op_type.clone(), node: n.display_name(g), reason }),
        }
    }
    if !unsupported.is_empty() || !bad_io.is_empty() {
        return Err(refuse(unsupported));
    }
    // Inputs keep the alias values (their shapes are the ones the ops see); identity (readers,
    // DDR locations, constants, group membership) goes through the alias root `cx.r`.
    let outputs_root: Vec<ValueId> = g.outputs.iter().map(|&v| cx.r(v)).collect();
    // Float islands between 8-bit values become 8-bit ops (same bits; see fold_int8.rs).
    let lnodes = crate::fold_int8::fold(&mut cx, lnodes, &outputs_root);
    let budget = (dev.vtcm_bytes as f64 * o.vtcm_working_set_limit_ratio) as u64;
    let df_budget = o.depth_first_mem_kib.map_or(budget, |k| (k * 1024).min(budget));
    let ncores = o.num_cores;
    let mos = o.mos.unwrap_or(ncores);

    // Readers of each root value (by node index), graph outputs.
    let mut readers: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
    for (i, l) in lnodes.iter().enumerate() {
        for &v in &l.inputs {
            readers.entry(cx.r(v)).or_default().push(i);
        }
    }

    // Group: element-wise followers always, conv/pool chains along the batch with depth-first.
    let axes_of = |l: &LNode| -> Vec<usize> { (0..cx.shape(l.output).len()).filter(|&a| mapping(&cx, l, a).is_some()).collect() };
    // Groups for a layer budget and a depth-first budget.
    let group_all = |budget: u64, df_budget: u64| -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        for (i, l) in lnodes.iter().enumerate() {
            if let Some(gr) = groups.last_mut() {
                // Depth-first: a layer joins the running group when it reads a member's output (any
                // member, so residual blocks and their skip branches fuse) or a value the group
                // already reads, and every member output it reads follows the group's split axis;
                // outputs also read outside the group are still written to DDR.
                if o.depth_first && (DEPTH_FIRST_OPS.contains(&l.op.as_str()) || is_elementwise(l)) {
                    let member = |v: ValueId| gr.members.iter().any(|&m| lnodes[m].output == cx.r(v));
                    let shared = |v: ValueId| !cx.is_const(v) && gr.members.iter().any(|&m| lnodes[m].inputs.iter().any(|&u| cx.r(u) == cx.r(v)));
                    if l.inputs.iter().any(|&v| member(v) || shared(v)) {
                        let axes: Vec<usize> = gr
                            .axes
                            .iter()
                            .copied()
                            .filter(|&a| {
                                mapping(&cx, l, a).is_some_and(|m| {
                                    l.inputs.iter().enumerate().all(|(k, &v)| {
                                        !member(v) || (m[k] == Slice::Same(a) && cx.shape(v) == cx.shape(cx.r(v)) && cx.shape(l.output).get(a) == cx.shape(v).get(a))
                                    })
                                })
                            })
                            .collect();
                        if !axes.is_empty() {
                            let trial: Vec<usize> = gr.members.iter().copied().chain([i]).collect();
                            // A small margin: the plan's first-fit layout may fragment a little more.
                            if min_footprint(&cx, &lnodes, &trial, &axes, &readers, &outputs_root) <= df_budget / 32 * 31 {
                                gr.members.push(i);
                                gr.axes = axes;
                                continue;
                            }
                        }
                    }
                }
                let last = &lnodes[*gr.members.last().unwrap_or(&0)];
                let lv = last.output;
                let single = readers.get(&lv).is_some_and(|r| r.len() == 1 && r[0] == i) && !outputs_root.contains(&lv);
                let follower_ok = is_elementwise(l) && cx.shape(l.output) == cx.shape(lv)
                    || o.depth_first && DEPTH_FIRST_OPS.contains(&l.op.as_str());
                if single && follower_ok {
                    // The follower must read the producer's output with the producer's shape (an
                    // alias with another shape would slice different bytes along the same axis).
                    let idx = l.inputs.iter().position(|&v| cx.r(v) == lv && cx.shape(v) == cx.shape(lv));
                    let axes: Vec<usize> = gr
                        .axes
                        .iter()
                        .copied()
                        .filter(|&a| match (mapping(&cx, l, a), idx) {
                            (Some(m), Some(k)) => m[k] == Slice::Same(a) && cx.shape(l.output).get(a) == cx.shape(lv).get(a),
                            _ => false,
                        })
                        .collect();
                    // Depth-first groups must keep a split axis; element-wise ones may run unsplit.
                    if idx.is_some() && (!axes.is_empty() || (is_elementwise(l) && gr.axes.is_empty())) {
                        let trial: Vec<usize> = gr.members.iter().copied().chain([i]).collect();
                        let lim = if is_elementwise(l) { budget } else { df_budget };
                        if min_footprint(&cx, &lnodes, &trial, &axes, &readers, &outputs_root) <= lim {
                            gr.members.push(i);
                            gr.axes = axes;
                            continue;
                        }
                    }
                }
            }
            groups.push(Group { members: vec![i], axes: axes_of(l) });
        }
        groups
    };

    // Plan tiles per group.
    let gran = o.size_split_granularity_kib as u64 * 1024;
    // Groups and their plans for a working-set budget (depth-first groups are bounded by the
    // smaller of it and the depth-first memory).
    let plan_all = |budget: u64| -> Result<Vec<Plan>, CodegenError> {
        let groups = group_all(budget, df_budget.min(budget));
        groups.iter().map(|gr| plan_group(&cx, &lnodes, gr, &readers, &outputs_root, budget, gran, ncores, mos, o, dev)).collect()
    };
    // The program for a set of plans and residency decisions.
    let assemble = |plans: Vec<Plan>, keep: Keep| -> Result<Compiled, CodegenError> {
        let vtcm_top = keep.top;
        // DDR layout: inputs, outputs, constants, scratch.
        let mut program = Program::new(&g.name, dev.hw_version, ncores as usize, 0);
        let mut lay = Layout { loc: BTreeMap::new() };
        let mut io = Vec::new();
        let mut binding = 0u32;
        for &v in &g.inputs {
            if g.value(v).constant.is_some() {
                continue;
            }
            let b = program.buffers.len() as u32;
            program.buffers.push(Buffer { name: g.value(v).name.clone(), kind: BufferKind::Input, size: cx.bytes(v), binding: Some(binding) });
            io.push(IoBinding { name: g.value(v).name.clone(), is_input: true, dtype: cx.dtype(v), shape: cx.shape(v).to_vec(), buffer: b, offset: 0, size: cx.bytes(v), binding });
            binding += 1;
            lay.loc.insert(v, (b, 0));
        }
        // Graph outputs computed by a layer are written straight into their output buffer; the
        // others (an input, a constant, or a second name for the same bytes) are copied at the end.
        let mut copies: Vec<(ValueId, u32)> = Vec::new();
        for &v in &g.outputs {
            let b = program.buffers.len() as u32;
            program.buffers.push(Buffer { name: g.value(v).name.clone(), kind: BufferKind::Output, size: cx.bytes(v), binding: Some(binding) });
            io.push(IoBinding { name: g.value(v).name.clone(), is_input: false, dtype: cx.dtype(v), shape: cx.shape(v).to_vec(), buffer: b, offset: 0, size: cx.bytes(v), binding });
            binding += 1;
            let r = cx.r(v);
            let produced = lnodes.iter().any(|l| l.output == r);
            if produced && !lay.loc.contains_key(&r) {
                lay.loc.insert(r, (b, 0));
            } else {
                copies.push((r, b));
            }
        }
        let cbuf = program.buffers.len() as u32;
        let mut constants = Vec::new();
        for l in &lnodes {
            for &v in &l.inputs {
                let v = cx.r(v);
                if cx.is_const(v) && !lay.loc.contains_key(&v) {
                    let off = align(constants.len() as u64, 64);
                    constants.resize(off as usize, 0);
                    let t = g.value(v).constant.as_ref().ok_or_else(|| CodegenError::Graph("constant vanished".into()))?;
                    let raw = t.raw_bytes().map_err(|e| CodegenError::Graph(format!("constant `{}`: {e}", g.value(v).name)))?;
                    constants.extend_from_slice(raw);
                    lay.loc.insert(v, (cbuf, off));
                }
            }
        }
        for (r, _) in &copies {
            if cx.is_const(*r) && !lay.loc.contains_key(r) {
                let off = align(constants.len() as u64, 64);
                constants.resize(off as usize, 0);
                if let Some(t) = g.value(*r).constant.as_ref() {
                    constants.extend_from_slice(t.raw_bytes().map_err(|e| CodegenError::Graph(e.to_string()))?);
                }
                lay.loc.insert(*r, (cbuf, off));
            }
        }
        let cbytes = align(constants.len() as u64, 64);
        constants.resize(cbytes as usize, 0);
        program.buffers.push(Buffer { name: "constants".into(), kind: BufferKind::Constants, size: cbytes, binding: None });
        let sbuf = program.buffers.len() as u32;
        let scratch = alloc_scratch(&cx, &lnodes, &plans, &mut lay, sbuf, &copies, o.allocator_dealloc_delay as usize);
        program.buffers.push(Buffer { name: "scratch".into(), kind: BufferKind::Scratch, size: scratch.max(64), binding: None });

        // Multicast counts per group (prefix sums keep the semaphore targets independent of threads).
        let mut mc_base = Vec::with_capacity(plans.len());
        let mut acc = 0u32;
        for p in &plans {
            mc_base.push(acc);
            if p.multicast {
                acc += multicast_count(&cx, p, &keep);
            }
        }
        program.num_semaphores = if o.use_producer_dma { 2 } else { 1 };
        // Emit every group (in parallel when asked; results are joined in order).
        let emit_one = |gi: usize| -> Vec<Vec<Instr>> {
            let run = |end: bool| -> Vec<Vec<Instr>> { (0..ncores).map(|c| emit(&cx, &lnodes, &plans[gi], &lay, c, ncores, mc_base[gi], (o.use_producer_dma, end), &keep)).collect() };
            let v = run(o.use_producer_dma);
            // Producer DMA ends a layer without a barrier only if every working core's last
            // instruction is a signalled output DMA (issued after all its reads); else barrier.
            if o.use_producer_dma && !v.iter().all(|c| !c.iter().any(|i| matches!(i, Instr::Op(_))) || producer_signalled(c.last())) {
                return run(false);
            }
            v
        };
        let per_group: Vec<Vec<Vec<Instr>>> = if o.compile_threads == 1 {
            (0..plans.len()).map(emit_one).collect()
        } else {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(o.compile_threads).build().map_err(|e| CodegenError::Option { option: "-compile-threads", msg: e.to_string() })?;
            pool.install(|| {
                use rayon::prelude::*;
                (0..plans.len()).into_par_iter().map(emit_one).collect()
            })
        };
        // Producer DMA: each layer's wait is for the output DMAs of all earlier layers (a serial
        // prefix sum, so the targets never depend on threads); a wait for 0 is dropped.
        let mut produced = 0u32;
        for mut gi in per_group {
            if o.use_producer_dma {
                let landed: usize = gi.iter().map(|c| c.iter().filter(|i| producer_signalled(Some(i))).count()).sum();
                for c in gi.iter_mut() {
                    c.retain(|i| !matches!(i, Instr::SemWait { sem: SEM_PRODUCED, .. }) || produced > 0);
                    for i in c.iter_mut() {
                        if let Instr::SemWait { sem: SEM_PRODUCED, at_least } = i {
                            *at_least = produced;
                        }
                    }
                }
                produced += landed as u32;
            }
            for (c, v) in gi.into_iter().enumerate() {
                program.cores[c].instrs.extend(v);
            }
        }
        if o.use_producer_dma && produced > 0 {
            // Every output has landed before the final copies and `End`.
            for c in 0..ncores as usize {
                program.cores[c].instrs.push(Instr::SemWait { sem: SEM_PRODUCED, at_least: produced });
            }
        }
        // Output copies (aliases of inputs/constants/other outputs) on core 0.
        if !copies.is_empty() {
            for c in 0..ncores as usize {
                program.cores[c].instrs.push(Instr::Layer { name: "output_copies".into() });
            }
            for (r, b) in &copies {
                let (sb, so) = lay.loc.get(r).copied().ok_or_else(|| CodegenError::Graph(format!("output `{}` has no producer", g.value(*r).name)))?;
                let n = cx.bytes(*r);
                if n > 0 {
                    program.cores[0].instrs.push(Instr::Dma(Dma { src: Space::Ddr(sb), src_offset: so, dst: Space::Ddr(*b), dst_offset: 0, shape: DmaShape::contiguous(n), multicast: None, tag: 5, signal: None }));
                }
            }
            program.cores[0].instrs.push(Instr::DmaWait { tag: 5 });
        }
        for c in 0..ncores as usize {
            program.cores[c].instrs.push(Instr::End);
        }
        program.vtcm_bytes = vtcm_top;
        program.preload_bytes = keep.pre_bytes;
        for (c, m) in keep.pre.iter().enumerate() {
            for (&(val, slice), &off) in m {
                let (b, so) = lay.loc.get(&val).copied().ok_or_else(|| CodegenError::Graph(format!("preloaded constant `{}` has no DDR location", g.value(val).name)))?;
                let (ax, r) = match slice {
                    Some((ia, r0, r1)) => (Some(ia), (r0, r1)),
                    None => (None, (0, 1)),
                };
                if let Some(d) = slice_dma(b, so, cx.shape(val), es(cx.dtype(val)), ax, r, off, true, 0) {
                    program.cores[c].preload.push(d);
                }
            }
        }
        program.validate_for(dev).map_err(|e| CodegenError::Program(e.to_string()))?;

        // Report.
        let costs = dev.core_costs(&program);
        let mut report = Report { constants_bytes: cbytes, scratch_bytes: scratch, ..Default::default() };
        for c in &costs {
            report.macs += c.macs;
            report.cores.push(CoreMetrics { macs: c.macs, vtcm_bytes: c.vtcm_high_water, ddr_read_bytes: c.ddr_read_bytes, ddr_write_bytes: c.ddr_write_bytes, instructions: c.instructions });
        }
        for p in &plans {
            let per = p.tiles.iter().map(|t| t.len()).max().unwrap_or(0) as u32;
            report.layers.push(LayerPlacement {
                name: p.name.clone(),
                nodes: p.members.iter().map(|&m| lnodes[m].name.clone()).collect(),
                axis: p.axis,
                cores: p.participants.len() as u32,
                tiles_per_core: per,
                vtcm_bytes: p.vtcm,
            });
            if per > o.ols {
                report.warnings.push(format!("layer `{}` spills: split into {per} tiles per core to fit {budget} bytes of VTCM", p.name));
            }
            if (p.participants.len() as u32) < ncores {
                report.warnings.push(format!("layer `{}` uses {} of {ncores} cores ({} idle)", p.name, p.participants.len(), ncores - p.participants.len() as u32));
            }
        }
        Ok(Compiled { program, constants, io, report })
    };
    // What stays in VTCM for a set of plans: activations between layers (multicast by their
    // producers) where they fit beside the largest working set, then the weights' preload
    // region in the room left.
    let top = |ps: &[Plan]| align(ps.iter().map(|p| p.vtcm).max().unwrap_or(0).max(4096), 4096);
    let decide = |plans: &[Plan]| -> (Keep, bool) {
        let a0 = top(plans);
        let (act, act_ddr, act_bytes, mut complete) = if o.keep_activations {
            plan_activations(&cx, &lnodes, plans, &outputs_root, a0, budget.saturating_sub(a0))
        } else {
            (BTreeMap::new(), Default::default(), 0, true)
        };
        let vtcm_top = align(a0 + act_bytes, 4096);
        let mut pre = vec![Preloaded::new(); ncores as usize];
        let mut pre_bytes = 0;
        if o.preload_weights {
            let (chosen, used, all_fit) = choose_preloads(&preload_candidates(&cx, plans, ncores), budget.saturating_sub(vtcm_top));
            pre_bytes = used;
            complete &= all_fit;
            pre = chosen.iter().map(|l| l.iter().map(|&(k, off)| (k, vtcm_top + off)).collect()).collect();
        }
        (Keep { pre, act, act_ddr, top: vtcm_top, pre_bytes }, complete)
    };
    // The layers' working-set budget trades tile size against what can stay in VTCM: when not
    // everything fits beside the full-budget plan, half and a quarter of it are tried too and
    // the program with the lowest estimated time (device cost model: per core compute and DMA
    // overlapped, all cores sharing DDR and the NoC) is kept.
    let plans0 = plan_all(budget)?;
    let (keep0, complete) = decide(&plans0);
    let mut best = (0u64, assemble(plans0, keep0)?);
    if !complete {
        best.0 = estimate_program(&best.1.program, dev);
        for b in [budget / 2, budget / 4] {
            let Ok(plans) = plan_all(b) else { continue };
            let (keep, _) = decide(&plans);
            let c = assemble(plans, keep)?;
            let est = estimate_program(&c.program, dev);
            tracing::debug!(working_set_budget = b, estimate_ps = est, "codegen: budget candidate");
            if est < best.0 {
                best = (est, c);
            }
        }
    }
    Ok(best.1)
}

/// Estimated time of a whole program (ps) from the device's static per-core costs: per core,
/// compute and DMA overlapped; all cores sharing the sustained DDR bandwidth and the NoC.
fn estimate_program(p: &Program, dev: &DeviceModel) -> u64 {
    let costs = dev.core_costs(p);
    let core = costs.iter().map(|k| k.serial_ps.saturating_sub(k.dma_ps).max(k.dma_ps)).max().unwrap_or(0);
    let ddr: u64 = costs.iter().map(|k| k.ddr_read_bytes.saturating_add(k.ddr_write_bytes)).sum();
    let noc: u64 = costs.iter().map(|k| k.noc_bytes).sum();
    core.max(DeviceModel::transfer_ps(ddr, dev.ddr_sustained_bytes_per_s())).max(DeviceModel::transfer_ps(noc, dev.noc_bytes_per_s))
}


/// Smallest per-core working set of a candidate group (one slice of 1 along its best axis):
/// operands loaded per tile and outputs leaving the group count twice (double buffering),
/// intermediates that stay in VTCM once, operands produced inside the group not again.
fn min_footprint(cx: &Ctx<'_>, ln: &[LNode], members: &[usize], axes: &[usize], readers: &BTreeMap<ValueId, Vec<usize>>, outs: &[ValueId]) -> u64 {
    let mut best = u64::MAX;
    let cands: Vec<Option<usize>> = if axes.is_empty() { vec![None] } else { axes.iter().map(|&a| Some(a)).collect() };
    let inside = |v: ValueId| members.iter().any(|&m| ln[m].output == cx.r(v));
    let leaves = |m: usize| {
        let v = ln[m].output;
        Some(&m) == members.last() || outs.contains(&v) || readers.get(&v).is_some_and(|r| r.iter().any(|i| !members.contains(i)))
    };
    for a in cands {
        // The plan's layout (plan_group): whole operands 4 KiB-aligned, sliced operands and
        // outputs leaving the group in each of two tile halves, intermediates in one region
        // reused first fit after their last reader.
        let (mut fixed, mut half, mut shared) = (0u64, 0u64, 0u64);
        let mut seen: Vec<ValueId> = Vec::new();
        let mut slots: Vec<(u64, u64, usize)> = Vec::new();
        for (j, &m) in members.iter().enumerate() {
            let l = &ln[m];
            let map = a.and_then(|a| mapping(cx, l, a));
            for (k, &v) in l.inputs.iter().enumerate() {
                if inside(v) || seen.contains(&cx.r(v)) {
                    continue;
                }
                seen.push(cx.r(v));
                let b = cx.bytes(v);
                match (map.as_ref().map(|m| m[k]), a) {
                    (Some(Slice::Same(ia)), Some(_)) => half += align(b / cx.shape(v)[ia].max(1) as u64, SLOT_ALIGN),
                    _ => fixed += align(b, 4096),
                }
            }
            let ob = match a {
                Some(a) => cx.bytes(l.output) / cx.shape(l.output)[a].max(1) as u64,
                None => cx.bytes(l.output),
            };
            if leaves(m) {
                half += align(ob, SLOT_ALIGN);
                continue;
            }
            let last = members.iter().enumerate().filter(|(_, r)| ln[**r].inputs.iter().any(|&v| cx.r(v) == l.output)).map(|(i, _)| i).max().unwrap_or(j);
            let size = align(ob.max(1), SLOT_ALIGN);
            let off = first_fit(&mut slots.iter().filter(|x| x.2 >= j).map(|x| (x.0, x.1)).collect::<Vec<_>>(), size);
            shared = shared.max(off + size);
            slots.push((off, size, last));
        }
        let tot = fixed + if a.is_some() { 2 * align(half, 4096) } else { align(half, 4096) } + align(shared, 4096);
        best = best.min(tot);
    }
    best
}

#[allow(clippy::too_many_arguments)]
fn plan_group(
    cx: &Ctx<'_>,
    ln: &[LNode],
    gr: &Group,
    readers: &BTreeMap<ValueId, Vec<usize>>,
    outs: &[ValueId],
    budget: u64,
    gran: u64,
    ncores: u32,
    mos: u32,
    o: &CodegenOptions,
    dev: &DeviceModel,
) -> Result<Plan, CodegenError> {
    let members = gr.members.clone();
    let last = &ln[*members.last().unwrap_or(&0)];
    let in_group = |v: ValueId| members.iter().position(|&m| ln[m].output == cx.r(v));
    let written: Vec<bool> = members
        .iter()
        .map(|&m| {
            let v = ln[m].output;
            outs.contains(&v) || readers.get(&v).is_some_and(|r| r.iter().any(|i| !members.contains(i))) || m == *members.last().unwrap_or(&0)
        })
        .collect();
    // Build a plan for one axis and chunk size; None if the axis cannot hold it.
    let build = |axis: Option<usize>, chunk: usize, parts: usize| -> Plan {
        let os = cx.shape(last.output);
        let d = axis.map_or(1, |a| os[a]);
        let parts = parts.min(d).max(1);
        let mut tiles = Vec::new();
        for p in 0..parts {
            let (s, e) = (d * p / parts, d * (p + 1) / parts);
            let mut t = Vec::new();
            let mut x = s;
            while x < e {
                let y = (x + chunk).min(e);
                t.push((x, y));
                x = y;
            }
            tiles.push(t);
        }
        let mut resident: Vec<(ValueId, u64)> = Vec::new();
        let mut sliced: Vec<(ValueId, usize, u64)> = Vec::new();
        let mut srcs = Vec::new();
        let mut res_off = 0u64;
        let mut half = 0u64;
        let c = chunk.min(d) as u64;
        for &m in &members {
            let l = &ln[m];
            let map = axis.and_then(|a| mapping(cx, l, a));
            let mut s = Vec::new();
            for (k, &v) in l.inputs.iter().enumerate() {
                if let Some(pm) = in_group(v) {
                    s.push(Src::Member(pm));
                    continue;
                }
                match map.as_ref().map(|mm| mm[k]) {
                    Some(Slice::Same(ia)) => {
                        let idx = sliced.iter().position(|x| x.0 == v && x.1 == ia).unwrap_or_else(|| {
                            let b = cx.bytes(v) / cx.shape(v)[ia].max(1) as u64 * c;
                            sliced.push((v, ia, half));
                            half = align(half + b, SLOT_ALIGN);
                            sliced.len() - 1
                        });
                        s.push(Src::Sliced(idx));
                    }
                    _ => {
                        let idx = resident.iter().position(|x| x.0 == v).unwrap_or_else(|| {
                            resident.push((v, res_off));
                            res_off = align(res_off + cx.bytes(v), 4096);
                            resident.len() - 1
                        });
                        s.push(Src::Resident(idx));
                    }
                }
            }
            srcs.push(s);
        }
        // Outputs written to DDR live in the double-buffered half (their store DMAs run while
        // the next tile computes); intermediates that never leave VTCM go to one region shared
        // by all tiles, reused first-fit once their last reader in the group has run.
        let mut out_slot = Vec::new();
        let mut shared_slot: Vec<Option<(u64, u64, usize)>> = Vec::new(); // (offset, size, last reader)
        let mut shared = 0u64;
        for (k, &m) in members.iter().enumerate() {
            let v = ln[m].output;
            let b = match axis {
                Some(a) => cx.bytes(v) / cx.shape(v)[a].max(1) as u64 * c,
                None => cx.bytes(v),
            };
            if written[k] {
                out_slot.push(half);
                shared_slot.push(None);
                half = align(half + b, SLOT_ALIGN);
                continue;
            }
            let last_reader = srcs.iter().enumerate().filter(|(_, s)| s.contains(&Src::Member(k))).map(|(j, _)| j).max().unwrap_or(k);
            let size = align(b.max(1), SLOT_ALIGN);
            let off = first_fit(&mut shared_slot.iter().flatten().filter(|x| x.2 >= k).map(|x| (x.0, x.1)).collect::<Vec<_>>(), size);
            shared = shared.max(off + size);
            out_slot.push(off);
            shared_slot.push(Some((off, size, last_reader)));
        }
        let out_shared: Vec<bool> = shared_slot.iter().map(|x| x.is_some()).collect();
        let half = align(half.max(SLOT_ALIGN), 4096);
        let shared = align(shared, 4096);
        let half_base = align(res_off, 4096);
        let ntiles = tiles.iter().map(|t| t.len()).max().unwrap_or(1);
        let vtcm = half_base + if ntiles > 1 { 2 * half } else { half } + shared;
        let participants: Vec<u32> = (0..tiles.len() as u32).filter(|&p| !tiles[p as usize].is_empty()).collect();
        let multicast = o.multicast_weights && participants.len() > 1 && !resident.is_empty();
        Plan {
            name: last.name.clone(),
            axis,
            tiles,
            resident,
            sliced,
            srcs,
            out_slot,
            out_shared,
            shared,
            written: written.clone(),
            half,
            half_base,
            vtcm,
            members: members.clone(),
            participants,
            multicast,
            single: false,
        }
    };
    let out_bytes_per = |a: usize| cx.bytes(last.output) / cx.shape(last.output)[a].max(1) as u64;
    let mut best: Option<(Plan, (u64, usize))> = None;
    let mut smallest = u64::MAX;
    for &a in &gr.axes {
        let d = cx.shape(last.output)[a];
        let parts = (mos as usize).min(d).max(1);
        let per = d.div_ceil(parts);
        let mut chunk = per;
        // Shrink the chunk until the working set fits and tiles respect the granularity.
        let plan = loop {
            let p = build(Some(a), chunk, parts);
            smallest = smallest.min(p.vtcm);
            if p.vtcm <= budget && (out_bytes_per(a) * chunk as u64 <= gran || chunk == 1) {
                break Some(p);
            }
            if chunk == 1 {
                // Last resort before giving up: single-buffered tiles (no load/compute overlap).
                let single = p.half_base + p.half + p.shared;
                smallest = smallest.min(single);
                if single <= budget {
                    break Some(Plan { single: true, vtcm: single, ..p });
                }
                break None;
            }
            chunk = chunk.div_ceil(2).min(chunk - 1);
        };
        let Some(mut plan) = plan else { continue };
        if o.ols > 1 {
            let ntiles = per.div_ceil(chunk) * o.ols as usize;
            let c2 = per.div_ceil(ntiles).max(1);
            let single = plan.single;
            plan = build(Some(a), c2, parts);
            if single {
                plan.vtcm = plan.half_base + plan.half + plan.shared;
                plan.single = true;
            }
        }
        // The axis with the lowest estimated layer time wins (then fewer tiles, then the outer
        // axis): splitting output channels makes every core read the whole input, splitting
        // the batch makes every core read the whole weights, and DDR is shared.
        let ntiles = plan.tiles.iter().map(|t| t.len()).max().unwrap_or(1);
        let score = (estimate_ps(cx, ln, &plan, dev, ncores), ntiles);
        if best.as_ref().is_none_or(|(_, s)| score < *s) {
            best = Some((plan, score));
        }
    }
    if let Some((p, _)) = best {
        return Ok(p);
    }
    let p = build(None, 1, 1);
    if p.vtcm <= budget {
        return Ok(p);
    }
    smallest = smallest.min(p.vtcm);
    Err(CodegenError::Tiling { node: last.name.clone(), op: last.op.clone(), budget, needed: smallest })
}

/// Estimated time of one planned group (ps): the group's instructions are emitted for every
/// core and costed with the device model. Per core, compute (issue, ops, overheads) and DMA
/// overlap except for the first tile's load; all cores share the sustained DDR bandwidth.
fn estimate_ps(cx: &Ctx<'_>, ln: &[LNode], p: &Plan, dev: &DeviceModel, ncores: u32) -> u64 {
    let lay = Layout { loc: BTreeMap::new() };
    let mut prog = Program::new("estimate", dev.hw_version, ncores as usize, 0);
    for c in 0..ncores {
        prog.cores[c as usize].instrs = emit(cx, ln, p, &lay, c, ncores, 0, (false, false), &Keep::default());
    }
    let costs = dev.core_costs(&prog);
    let mut worst = 0u64;
    let mut ddr = 0u64;
    for (c, k) in costs.iter().enumerate() {
        let compute = k.serial_ps.saturating_sub(k.dma_ps);
        let tiles = p.tiles.get(c).map_or(1, |t| t.len().max(1)) as u64;
        worst = worst.max(compute.max(k.dma_ps).saturating_add(k.dma_ps / tiles));
        ddr = ddr.saturating_add(k.ddr_read_bytes).saturating_add(k.ddr_write_bytes);
    }
    worst.max(DeviceModel::transfer_ps(ddr, dev.ddr_sustained_bytes_per_s()))
}

/// Scratch placement by liveness (first fit, freed `delay` layers after the last reader).
fn alloc_scratch(cx: &Ctx<'_>, ln: &[LNode], plans: &[Plan], lay: &mut Layout, sbuf: u32, copies: &[(ValueId, u32)], delay: usize) -> u64 {
    let mut producer_group = BTreeMap::new();
    let mut last_use: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (gi, p) in plans.iter().enumerate() {
        for (k, &m) in p.members.iter().enumerate() {
            if p.written[k] {
                producer_group.insert(ln[m].output, gi);
            }
            for &v in &ln[m].inputs {
                last_use.insert(cx.r(v), gi);
            }
        }
    }
    for (r, _) in copies {
        last_use.insert(*r, plans.len());
    }
    let mut live: Vec<(u64, u64, usize)> = Vec::new(); // (offset, size, free after group)
    let mut top = 0u64;
    for (gi, p) in plans.iter().enumerate() {
        live.retain(|&(_, _, f)| f + delay >= gi);
        for (k, &m) in p.members.iter().enumerate() {
            let v = ln[m].output;
            if !p.written[k] || lay.loc.contains_key(&v) {
                continue;
            }
            let size = align(cx.bytes(v).max(1), 64);
            let off = first_fit(&mut live.iter().map(|&(o, s, _)| (o, s)).collect::<Vec<_>>(), size);
            let free = last_use.get(&v).copied().unwrap_or(gi).max(gi);
            live.push((off, size, free));
            top = top.max(off + size);
            lay.loc.insert(v, (sbuf, off));
            let _ = producer_group.get(&v);
        }
    }
    top
}

/// An output DMA of `-use-producer-dma` (it signals [`SEM_PRODUCED`] when it lands).
fn producer_signalled(i: Option<&Instr>) -> bool {
    matches!(i, Some(Instr::Dma(Dma { signal: Some(SemSignal { sem: SEM_PRODUCED, .. }), .. })))
}

/// Instructions of core `c` for one group. `producer` = (`-use-producer-dma`, end the layer
/// without a barrier): the layer starts with its local constant loads, then waits until the
/// output DMAs of all earlier layers have landed (a [`SEM_PRODUCED`] wait whose target the
/// caller fills in), and its output DMAs signal [`SEM_PRODUCED`] themselves.
#[allow(clippy::too_many_arguments)]
fn emit(cx: &Ctx<'_>, ln: &[LNode], p: &Plan, lay: &Layout, c: u32, ncores: u32, mc_base: u32, producer: (bool, bool), keep: &Keep) -> Vec<Instr> {
    let mut v = vec![Instr::Layer { name: p.name.clone() }];
    let all = CoreMask::first(ncores);
    let Some(tiles) = p.tiles.get(c as usize).filter(|t| !t.is_empty()) else {
        if !producer.1 {
            v.push(Instr::Barrier { cores: all });
        }
        return v;
    };
    let loc = |x: ValueId| lay.loc.get(&cx.r(x)).copied().unwrap_or((0, 0));
    // Constants this core keeps in its preloaded VTCM region are neither loaded nor waited for.
    let empty = Preloaded::new();
    let pre_all = &keep.pre;
    let pre = pre_all.get(c as usize).unwrap_or(&empty);
    // Activations kept in VTCM: read where they landed, never loaded.
    let act = |val: ValueId| keep.act.get(&cx.r(val)).copied();
    let act_slice = |val: ValueId, ia: usize| act(val).filter(|_| contiguous_slices(cx, val, ia));
    let crange = (tiles[0].0, tiles[tiles.len() - 1].1);
    let pre_whole = |val: ValueId| pre.get(&(cx.r(val), None)).copied();
    // In a multicast layer the first participant multicasts what it has not preloaded; a
    // receiver that preloaded the same constant reads its own copy.
    let issuer_has = |val: ValueId| p.participants.first().and_then(|&f| pre_all.get(f as usize)).is_some_and(|m| m.contains_key(&(cx.r(val), None)));
    let pre_slice = |val: ValueId, ia: usize| pre.get(&(cx.r(val), Some((ia, crange.0, crange.1)))).copied();
    // Operands every tile uses: once per layer (multicast from the first core when enabled).
    let mut local = false;
    // Producer DMA: constants this core loads itself need no wait (its own DMA engine runs
    // in order, after its previous output DMAs); everything else waits for earlier layers.
    let early = |val: ValueId| producer.0 && !p.multicast && cx.is_const(cx.r(val));
    for &(val, off) in p.resident.iter().filter(|r| early(r.0) && pre_whole(r.0).is_none() && act(r.0).is_none()) {
        let (b, o) = loc(val);
        if let Some(d) = slice_dma(b, o, cx.shape(val), es(cx.dtype(val)), None, (0, 1), off, true, TAG_RESIDENT) {
            v.push(Instr::Dma(d));
            local = true;
        }
    }
    if producer.0 {
        v.push(Instr::SemWait { sem: SEM_PRODUCED, at_least: 0 });
    }
    for (i, &(val, off)) in p.resident.iter().enumerate() {
        if early(val) || act(val).is_some() || (!p.multicast && pre_whole(val).is_some()) || (p.multicast && issuer_has(val)) {
            continue;
        }
        let (b, o) = loc(val);
        let Some(mut d) = slice_dma(b, o, cx.shape(val), es(cx.dtype(val)), None, (0, 1), off, true, TAG_RESIDENT) else { continue };
        if p.multicast {
            if c == p.participants[0] {
                d.multicast = Some(CoreMask(p.participants.iter().fold(0u64, |m, &x| m | 1 << x)));
                d.signal = Some(SemSignal { sem: SEM_MCAST, add: 1 });
                v.push(Instr::Dma(d));
            }
            let _ = i;
        } else {
            v.push(Instr::Dma(d));
            local = true;
        }
    }
    if local {
        v.push(Instr::DmaWait { tag: TAG_RESIDENT });
    }
    if p.multicast {
        let n = multicast_count(cx, p, keep);
        if n > 0 {
            v.push(Instr::SemWait { sem: SEM_MCAST, at_least: mc_base + n });
        }
    }
    let base = |t: usize| if p.single { p.half_base } else { p.half_base + (t % 2) as u64 * p.half };
    let shared_base = p.half_base + if p.single || p.tiles.iter().map(|t| t.len()).max().unwrap_or(1) <= 1 { p.half } else { 2 * p.half };
    let slot = |t: usize, k: usize| if p.out_shared[k] { shared_base + p.out_slot[k] } else { base(t) + p.out_slot[k] };
    // Input DMAs of tile `t`; true if any was issued.
    let issue_in = |v: &mut Vec<Instr>, t: usize| -> bool {
        let mut any = false;
        for &(val, ia, slot) in &p.sliced {
            if pre_slice(val, ia).is_some() || act_slice(val, ia).is_some() {
                continue;
            }
            let (b, o) = loc(val);
            if let Some(d) = slice_dma(b, o, cx.shape(val), es(cx.dtype(val)), Some(ia), tiles[t], base(t) + slot, true, (t % 2) as u8) {
                v.push(Instr::Dma(d));
                any = true;
            }
        }
        any
    };
    // Before a tile reuses a buffer, the store DMAs of the tile that used it last must have
    // read it. A core's DMAs run in issue order (§4.2), so an input DMA into that buffer,
    // issued after those stores and waited for before computing, already orders them: the
    // explicit wait is only needed when the tile loads nothing into the buffer.
    let n = tiles.len();
    let mut loaded = vec![false; n];
    if !p.single {
        loaded[0] = issue_in(&mut v, 0);
    }
    for t in 0..n {
        if p.single {
            // One buffer, reused by every tile.
            if !issue_in(&mut v, t) && t >= 1 {
                v.push(Instr::DmaWait { tag: 2 + ((t - 1) % 2) as u8 });
            }
        } else {
            if t + 1 < n {
                loaded[t + 1] = issue_in(&mut v, t + 1);
            }
            if t >= 2 && !loaded[t] {
                // Nothing loaded into tile t's half: wait for tile t-2's stores out of it.
                v.push(Instr::DmaWait { tag: 2 + (t % 2) as u8 });
            }
        }
        v.push(Instr::DmaWait { tag: (t % 2) as u8 });
        let r = tiles[t];
        for (k, &m) in p.members.iter().enumerate() {
            let l = &ln[m];
            let map = p.axis.and_then(|a| mapping(cx, l, a));
            let inputs: Vec<Tile> = l
                .inputs
                .iter()
                .enumerate()
                .map(|(i, &val)| {
                    let dt = cx.dtype(val);
                    match p.srcs[k][i] {
                        Src::Resident(j) => Tile::vtcm(act(val).or(pre_whole(val)).unwrap_or(p.resident[j].1), dt, tile_shape(cx.shape(val), None, r)),
                        Src::Sliced(j) => {
                            let ia = p.sliced[j].1;
                            let inner = elems(&cx.shape(val)[ia + 1..]) * es(dt);
                            let at = match (act_slice(val, ia), pre_slice(val, ia)) {
                                // The whole activation is in this core's VTCM.
                                (Some(x), _) => x + r.0 as u64 * inner,
                                // The core's slice is preloaded whole; this tile is a sub-range.
                                (None, Some(off)) => off + (r.0 - crange.0) as u64 * inner,
                                (None, None) => base(t) + p.sliced[j].2,
                            };
                            Tile::vtcm(at, dt, tile_shape(cx.shape(val), Some(ia), r))
                        }
                        Src::Member(pm) => {
                            let ax = map.as_ref().and_then(|mm| if let Slice::Same(a) = mm[i] { Some(a) } else { None });
                            Tile::vtcm(slot(t, pm), dt, tile_shape(cx.shape(val), ax.or(p.axis), r))
                        }
                    }
                })
                .collect();
            let out = Tile::vtcm(slot(t, k), cx.dtype(l.output), tile_shape(cx.shape(l.output), p.axis, r));
            let mut op = Op::new(&l.op, cx.dtype(l.output), inputs, vec![out]);
            for (a, val) in &l.attrs {
                op.set_attr(a, val.clone());
            }
            // A depthwise convolution split along channels has as many groups as the tile.
            if matches!(l.op.as_str(), "Conv" | "QConvGlow") && p.axis == Some(1) && map.as_ref().is_some_and(|mm| mm[0] == Slice::Same(1)) {
                op.set_attr("group", AttrValue::Int((r.1 - r.0) as i64));
            }
            v.push(Instr::Op(op));
        }
        for (k, &m) in p.members.iter().enumerate() {
            if !p.written[k] {
                continue;
            }
            let val = ln[m].output;
            let (b, o) = loc(val);
            let Some(mut d) = slice_dma(b, o, cx.shape(val), es(cx.dtype(val)), p.axis, r, slot(t, k), false, 2 + (t % 2) as u8) else { continue };
            if producer.1 {
                d.signal = Some(SemSignal { sem: SEM_PRODUCED, add: 1 });
            }
            if let Some(x) = act(val) {
                // The same descriptor, landing in every core's window instead of DDR.
                let mut mc = d.clone();
                mc.dst = Space::Vtcm;
                mc.dst_offset = x + (d.dst_offset - o);
                mc.multicast = Some(all);
                v.push(Instr::Dma(mc));
                if !keep.act_ddr.contains(&cx.r(val)) {
                    continue;
                }
            }
            v.push(Instr::Dma(d));
        }
    }
    if !producer.1 {
        v.push(Instr::DmaWait { tag: 2 });
        v.push(Instr::DmaWait { tag: 3 });
        v.push(Instr::Barrier { cores: all });
    }
    v
}
