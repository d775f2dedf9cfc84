//! Shape inference: fills [`ValueData::ty`](crate::ValueData) of node outputs from input types,
//! constant inputs and attributes, following the ONNX type and shape inference rules.
//!
//! Symbols: a named dimension (`batch`) is carried through unchanged wherever the rules say the
//! output dimension *is* that input dimension (elementwise ops, pass-through batch dims, 1x1
//! stride-1 convolutions, `Reshape` to a shape computed by `Shape`/`Gather`/`Concat`, ...).
//! Arithmetic on symbols (a strided convolution of a symbolic height) gives an unknown (`?`)
//! dimension: the IR's [`Dim`] has no expressions. Binding symbols first
//! ([`Bindings`]) makes such dimensions concrete.
//!
//! Small integer tensors that describe shapes are tracked symbolically (ONNX "data
//! propagation"): `Shape` produces its input's dimensions as values, and `Gather`, `Slice`,
//! `Concat`, `Unsqueeze`, `Squeeze`, `Cast` and integer arithmetic carry them on, so that
//! `Reshape`, `Expand` and `ConstantOfShape` fed by such chains get exact (possibly symbolic)
//! output shapes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use qaic_tensor::{DType, Dim, Shape, Tensor};

use crate::graph::{Attr, Graph, Node, ValueId, ValueType};
use crate::IrError;

/// Values for named dimensions (`-onnx-define-symbol=batch,1`).
///
/// ```
/// let mut b = qaic_ir::Bindings::default();
/// b.parse_define_symbol("batch,1").unwrap();
/// assert_eq!(b.get("batch"), Some(1));
/// assert!(b.parse_define_symbol("batch").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings(BTreeMap<String, usize>);

impl Bindings {
    pub fn new() -> Bindings {
        Bindings::default()
    }
    /// Binds `symbol` to `value` (replacing an earlier binding).
    pub fn bind(&mut self, symbol: impl Into<String>, value: usize) -> &mut Self {
        self.0.insert(symbol.into(), value);
        self
    }
    pub fn get(&self, symbol: &str) -> Option<usize> {
        self.0.get(symbol).copied()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, usize)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
    /// Parses `name,value` as given to `-onnx-define-symbol`.
    pub fn parse_define_symbol(&mut self, spec: &str) -> Result<(), IrError> {
        let bad = || IrError::BadBinding { spec: spec.to_string() };
        let (name, value) = spec.rsplit_once(',').ok_or_else(bad)?;
        let value: usize = value.trim().parse().map_err(|_| bad())?;
        if name.is_empty() {
            return Err(bad());
        }
        self.bind(name, value);
        Ok(())
    }
    /// Replaces bound symbols in a shape.
    pub fn apply_shape(&self, s: &Shape) -> Shape {
        Shape(
            s.0.iter()
                .map(|d| match d {
                    Dim::Sym(n) => self.get(n).map(Dim::Known).unwrap_or_else(|| d.clone()),
                    d => d.clone(),
                })
                .collect(),
        )
    }
    /// Replaces bound symbols in a type.
    pub fn apply(&self, t: &ValueType) -> ValueType {
        match t {
            ValueType::Tensor { dtype, shape } => {
                ValueType::Tensor { dtype: *dtype, shape: shape.as_ref().map(|s| self.apply_shape(s)) }
            }
            ValueType::Sequence(t) => ValueType::Sequence(Box::new(self.apply(t))),
            ValueType::Optional(t) => ValueType::Optional(Box::new(self.apply(t))),
            ValueType::Map(k, v) => ValueType::Map(*k, Box::new(self.apply(v))),
        }
    }
}

/// What [`infer_shapes`] did.
#[derive(Clone, Debug, Default)]
pub struct InferReport {
    /// Node outputs whose type is known after inference.
    pub typed: usize,
    /// Node outputs still without a type, by name.
    pub untyped: Vec<String>,
    /// Ops (qualified) that have no inference rule here.
    pub unsupported_ops: BTreeSet<String>,
    /// Values whose declared shape disagreed with the inferred one (the inferred one was kept).
    pub overridden: Vec<String>,
}

/// Binds symbols in every value type of `g` (and its subgraphs), then infers the types of node
/// outputs in topological order.
///
/// A declared type is kept where inference knows less; where declared and inferred shapes
/// disagree, the inferred shape wins (declared output shapes in real models are sometimes wrong)
/// and the value is listed in [`InferReport::overridden`]. A disagreement on the element type,
/// or inputs that no shape could satisfy (a `MatMul` with 3 vs 4 inner columns), is an
/// [`IrError::Infer`] naming the node.
///
/// ```
/// use qaic_ir::{infer_shapes, parse, Bindings};
/// let mut g = parse("graph g {\n  opset \"\" = 17\n  input %x: f32[batch,3,224,224]\n  input %w: f32[8,3,3,3]\n  %y = Conv(%x, %w) {pads = [1, 1, 1, 1], strides = [2, 2]}\n  output %y\n}").unwrap();
/// infer_shapes(&mut g, &Bindings::default()).unwrap();
/// let y = g.find_value("y").unwrap();
/// assert_eq!(g.value(y).ty.as_ref().unwrap().to_string(), "f32[batch,8,112,112]");
/// ```
pub fn infer_shapes(g: &mut Graph, bindings: &Bindings) -> Result<InferReport, IrError> {
    let mut report = InferReport::default();
    infer_graph(g, bindings, &mut report)?;
    Ok(report)
}

/// Replaces bound symbols in every value type of a graph and its subgraphs.
pub fn bind_symbols(g: &mut Graph, bindings: &Bindings) {
    if bindings.is_empty() {
        return;
    }
    for v in &mut g.values {
        if let Some(t) = &v.ty {
            v.ty = Some(bindings.apply(t));
        }
    }
    for n in &mut g.nodes {
        for a in n.attrs.values_mut() {
            match a {
                Attr::Graph(sg) => bind_symbols(sg, bindings),
                Attr::Graphs(sgs) => sgs.iter_mut().for_each(|sg| bind_symbols(sg, bindings)),
                _ => {}
            }
        }
    }
}

fn infer_graph(g: &mut Graph, bindings: &Bindings, report: &mut InferReport) -> Result<(), IrError> {
    bind_symbols(g, bindings);
    let mut data: HashMap<ValueId, SymData> = HashMap::new();
    for (i, v) in g.values.iter().enumerate() {
        if let Some(t) = &v.constant {
            if let Some(d) = SymData::from_tensor(t) {
                data.insert(ValueId(i as u32), d);
            }
        }
    }
    for k in 0..g.nodes.len() {
        // Subgraphs first: their captures take the (now known) types of the enclosing values.
        let mut node = std::mem::take(&mut g.nodes[k]);
        let sub = infer_subgraphs(g, &mut node, bindings, report);
        g.nodes[k] = node;
        sub?;
        let node = &g.nodes[k];
        let who = node.display_name(g);
        let op = node.qualified_op();
        let ctx = Ctx::new(g, node, &data);
        let result = infer_node(&ctx).map_err(|msg| IrError::Infer { node: who.clone(), op: op.clone(), msg })?;
        let Some(out) = result else {
            report.unsupported_ops.insert(op.clone());
            for o in node.outputs.iter().flatten() {
                if g.value(*o).ty.is_none() {
                    report.untyped.push(g.value(*o).name.clone());
                } else {
                    report.typed += 1;
                }
            }
            continue;
        };
        let outputs = node.outputs.clone();
        for (i, o) in outputs.iter().enumerate() {
            let Some(o) = *o else { continue };
            if let Some(d) = out.data.get(i).cloned().flatten() {
                data.insert(o, d);
            }
            let inferred = out.types.get(i).cloned().flatten();
            let v = g.value_mut(o);
            let merged = match (&v.ty, inferred) {
                (None, t) => t,
                (Some(d), None) => Some(d.clone()),
                (Some(d), Some(t)) => match merge(d, &t) {
                    Merge::Same(m) => Some(m),
                    Merge::Override => {
                        tracing::debug!(value = %v.name, declared = %d, inferred = %t, node = %who,
                            "declared shape disagrees with the inferred one; keeping the inferred shape");
                        report.overridden.push(v.name.clone());
                        Some(t)
                    }
                    Merge::Conflict => {
                        return Err(IrError::Infer {
                            node: who,
                            op,
                            msg: format!("output `{}` is declared {d} but infers as {t}", v.name),
                        });
                    }
                },
            };
            if merged.is_some() {
                report.typed += 1;
            } else {
                report.untyped.push(v.name.clone());
            }
            v.ty = merged;
        }
    }
    Ok(())
}

fn infer_subgraphs(g: &Graph, node: &mut Node, bindings: &Bindings, report: &mut InferReport) -> Result<(), IrError> {
    let index = g.name_index();
    for a in node.attrs.values_mut() {
        let subs: Vec<&mut Graph> = match a {
            Attr::Graph(sg) => vec![sg.as_mut()],
            Attr::Graphs(sgs) => sgs.iter_mut().collect(),
            _ => continue,
        };
        for sg in subs {
            for c in sg.captures.clone() {
                let name = sg.value(c).name.clone();
                if let Some(outer) = index.get(name.as_str()) {
                    if sg.value(c).ty.is_none() {
                        sg.value_mut(c).ty = g.value(*outer).ty.clone();
                    }
                }
            }
            infer_graph(sg, bindings, report)?;
        }
    }
    Ok(())
}

enum Merge {
    Same(ValueType),
    Override,
    Conflict,
}

/// Combines a declared and an inferred type.
fn merge(declared: &ValueType, inferred: &ValueType) -> Merge {
    match (declared, inferred) {
        (ValueType::Tensor { dtype: a, shape: sa }, ValueType::Tensor { dtype: b, shape: sb }) => {
            if a != b {
                return Merge::Conflict;
            }
            match (sa, sb) {
                (_, None) => Merge::Same(declared.clone()),
                (None, Some(_)) => Merge::Same(inferred.clone()),
                (Some(sa), Some(sb)) => {
                    if sa.rank() != sb.rank() {
                        return Merge::Override;
                    }
                    let mut dims = Vec::with_capacity(sa.rank());
                    for (da, db) in sa.0.iter().zip(&sb.0) {
                        dims.push(match (da, db) {
                            (Dim::Known(x), Dim::Known(y)) if x != y => return Merge::Override,
                            (_, Dim::Known(y)) => Dim::Known(*y),
                            (Dim::Known(x), _) => Dim::Known(*x),
                            (d, Dim::Unknown) => d.clone(),
                            (_, d) => d.clone(),
                        });
                    }
                    Merge::Same(ValueType::tensor(*a, Shape(dims)))
                }
            }
        }
        (ValueType::Sequence(a), ValueType::Sequence(b)) => match merge(a, b) {
            Merge::Same(m) => Merge::Same(ValueType::Sequence(Box::new(m))),
            other => other,
        },
        (ValueType::Optional(a), ValueType::Optional(b)) => match merge(a, b) {
            Merge::Same(m) => Merge::Same(ValueType::Optional(Box::new(m))),
            other => other,
        },
        (a, b) if a == b => Merge::Same(a.clone()),
        _ => Merge::Conflict,
    }
}

/// One element of a small integer tensor known symbolically.
#[derive(Clone, Debug, PartialEq)]
enum SV {
    K(i64),
    S(String),
    U,
}

impl SV {
    fn from_dim(d: &Dim) -> SV {
        match d {
            Dim::Known(n) => SV::K(*n as i64),
            Dim::Sym(s) => SV::S(s.clone()),
            Dim::Unknown => SV::U,
        }
    }
    fn to_dim(&self) -> Dim {
        match self {
            SV::K(n) if *n >= 0 => Dim::Known(*n as usize),
            SV::S(s) => Dim::Sym(s.clone()),
            _ => Dim::Unknown,
        }
    }
    fn known(&self) -> Option<i64> {
        match self {
            SV::K(n) => Some(*n),
            _ => None,
        }
    }
}

/// A scalar or 1-D integer tensor whose elements are known, symbolic or unknown.
#[derive(Clone, Debug, PartialEq)]
struct SymData {
    vals: Vec<SV>,
    scalar: bool,
}

const MAX_DATA: usize = 64;

impl SymData {
    fn from_tensor(t: &Tensor) -> Option<SymData> {
        if t.rank() > 1 || t.len() > MAX_DATA {
            return None;
        }
        let vals = tensor_ints(t)?.into_iter().map(SV::K).collect();
        Some(SymData { vals, scalar: t.rank() == 0 })
    }
    fn known(&self) -> Option<Vec<i64>> {
        self.vals.iter().map(SV::known).collect()
    }
}

/// Elements of an integer tensor as i64.
fn tensor_ints(t: &Tensor) -> Option<Vec<i64>> {
    Some(match t.dtype() {
        DType::I64 => t.view::<i64>().ok()?.to_vec(),
        DType::I32 => t.view::<i32>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::I16 => t.view::<i16>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::I8 => t.view::<i8>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::U8 => t.view::<u8>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::U16 => t.view::<u16>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::U32 => t.view::<u32>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::U64 => t.view::<u64>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::Bool => t.view::<bool>().ok()?.iter().map(|&v| v as i64).collect(),
        _ => return None,
    })
}

/// Elements of a numeric tensor as f64 (for `Range`, `Resize` scales).
fn tensor_f64s(t: &Tensor) -> Option<Vec<f64>> {
    Some(match t.dtype() {
        DType::F32 => t.view::<f32>().ok()?.iter().map(|&v| v as f64).collect(),
        DType::F64 => t.view::<f64>().ok()?.to_vec(),
        DType::F16 => t.view::<qaic_tensor::f16>().ok()?.iter().map(|v| v.to_f64()).collect(),
        _ => tensor_ints(t)?.into_iter().map(|v| v as f64).collect(),
    })
}

struct Out {
    types: Vec<Option<ValueType>>,
    data: Vec<Option<SymData>>,
}

impl Out {
    fn one(t: Option<ValueType>) -> Out {
        Out { types: vec![t], data: vec![] }
    }
    fn tensor(dtype: DType, dims: Vec<Dim>) -> Out {
        Out::one(Some(ValueType::tensor(dtype, Shape(dims))))
    }
    fn with_data(mut self, d: Option<SymData>) -> Out {
        self.data = vec![d];
        self
    }
}

struct Ctx<'a> {
    g: &'a Graph,
    node: &'a Node,
    opset: i64,
    data: &'a HashMap<ValueId, SymData>,
}

type R = Result<Option<Out>, String>;

impl<'a> Ctx<'a> {
    fn new(g: &'a Graph, node: &'a Node, data: &'a HashMap<ValueId, SymData>) -> Ctx<'a> {
        let opset = g.opset_version(&node.domain).unwrap_or(0);
        Ctx { g, node, opset, data }
    }
    fn input(&self, i: usize) -> Option<ValueId> {
        self.node.inputs.get(i).copied().flatten()
    }
    fn ty(&self, i: usize) -> Option<&'a ValueType> {
        self.g.values.get(self.input(i)?.index())?.ty.as_ref()
    }
    fn dtype(&self, i: usize) -> Option<DType> {
        self.ty(i)?.tensor_dtype()
    }
    fn shape(&self, i: usize) -> Option<&'a Shape> {
        self.ty(i)?.tensor_shape()
    }
    fn konst(&self, i: usize) -> Option<&'a Tensor> {
        self.g.values.get(self.input(i)?.index())?.constant.as_ref()
    }
    fn data(&self, i: usize) -> Option<&'a SymData> {
        self.data.get(&self.input(i)?)
    }
    /// Integer values of input `i`, from a constant or fully known propagated data.
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        if let Some(t) = self.konst(i) {
            return tensor_ints(t);
        }
        self.data(i)?.known()
    }
    fn has_input(&self, i: usize) -> bool {
        self.input(i).is_some()
    }
    fn int(&self, name: &str, default: i64) -> i64 {
        self.node.attr_int(name).unwrap_or(default)
    }
    fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.node.attr_ints(name).map(|v| v.to_vec())
    }
    fn same_as(&self, i: usize) -> Out {
        Out::one(self.ty(i).cloned())
    }
}

/// Normalises a possibly negative axis against `rank`.
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r).contains(&v) { Ok(v as usize) } else { Err(format!("axis {a} is out of range for rank {rank}")) }
}

/// Product of dims: known when all are known; the one non-trivial dim when all others are 1.
fn dim_product(dims: &[Dim]) -> Dim {
    if let Some(k) = dims.iter().map(Dim::known).collect::<Option<Vec<_>>>() {
        return Dim::Known(k.iter().product());
    }
    let non_one: Vec<&Dim> = dims.iter().filter(|d| d.known() != Some(1)).collect();
    if non_one.len() == 1 { non_one[0].clone() } else { Dim::Unknown }
}

/// Multidirectional (NumPy) broadcasting of shapes with symbolic dimensions.
fn broadcast(shapes: &[&Shape]) -> Result<Shape, String> {
    let rank = shapes.iter().map(|s| s.rank()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let dims: Vec<&Dim> = shapes
            .iter()
            .filter_map(|s| (i + s.rank()).checked_sub(rank).map(|j| &s.0[j]))
            .collect();
        let mut known: Option<usize> = None;
        for d in &dims {
            if let Dim::Known(n) = d {
                if *n != 1 {
                    if known.is_some_and(|k| k != *n) {
                        let all: Vec<String> = shapes.iter().map(|s| crate::text::fmt_shape(s)).collect();
                        return Err(format!("shapes {} do not broadcast", all.join(" and ")));
                    }
                    known = Some(*n);
                }
            }
        }
        let d = if let Some(n) = known {
            Dim::Known(n)
        } else {
            let rest: Vec<&&Dim> = dims.iter().filter(|d| d.known() != Some(1)).collect();
            match rest.first() {
                None => Dim::Known(1),
                Some(first) if matches!(first, Dim::Sym(_)) && rest.iter().all(|d| d == first) => (**first).clone(),
                _ => Dim::Unknown,
            }
        };
        out.push(d);
    }
    Ok(Shape(out))
}

fn broadcast_inputs(c: &Ctx, idx: &[usize], dtype: Option<DType>) -> R {
    let Some(dtype) = dtype else { return Ok(Some(Out::one(None))) };
    let shapes: Option<Vec<&Shape>> = idx.iter().map(|&i| c.shape(i)).collect();
    let shape = match shapes {
        Some(s) => Some(broadcast(&s)?),
        None => None,
    };
    Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape }))))
}

/// Elementwise integer arithmetic on propagated shape data.
fn data_arith(c: &Ctx, op: &str) -> Option<SymData> {
    let (a, b) = (c.data(0)?, c.data(1)?);
    let n = a.vals.len().max(b.vals.len());
    if !(a.vals.len() == n || a.vals.len() == 1) || !(b.vals.len() == n || b.vals.len() == 1) {
        return None;
    }
    let get = |d: &SymData, i: usize| d.vals[if d.vals.len() == 1 { 0 } else { i }].clone();
    let vals = (0..n)
        .map(|i| match (get(a, i), get(b, i), op) {
            (SV::K(x), SV::K(y), "Add") => x.checked_add(y).map(SV::K).unwrap_or(SV::U),
            (SV::K(x), SV::K(y), "Sub") => x.checked_sub(y).map(SV::K).unwrap_or(SV::U),
            (SV::K(x), SV::K(y), "Mul") => x.checked_mul(y).map(SV::K).unwrap_or(SV::U),
            (SV::K(x), SV::K(y), "Div") if y != 0 => SV::K(x / y),
            (s @ SV::S(_), SV::K(0), "Add" | "Sub") | (SV::K(0), s @ SV::S(_), "Add") => s,
            (s @ SV::S(_), SV::K(1), "Mul" | "Div") | (SV::K(1), s @ SV::S(_), "Mul") => s,
            _ => SV::U,
        })
        .collect();
    Some(SymData { vals, scalar: a.scalar && b.scalar })
}

const UNARY_SAME: &[&str] = &[
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Ceil", "Celu", "Clip", "Cos", "Cosh",
    "CumSum", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "InstanceNormalization",
    "LRN", "LeakyRelu", "Log", "LogSoftmax", "MeanVarianceNormalization", "Mish", "Neg", "Not", "Reciprocal", "Relu",
    "ReverseSequence", "Round", "Scatter", "ScatterElements", "ScatterND", "Selu", "Shrink", "Sigmoid", "Sign", "Sin",
    "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Trilu",
];
const BINARY_SAME: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "BitShift", "PRelu", "And", "Or", "Xor",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
];
const COMPARE: &[&str] = &["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"];
const REDUCE: &[&str] = &[
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
];

/// Inference rule dispatch. `Ok(None)`: no rule for this op.
fn infer_node(c: &Ctx) -> R {
    let op = c.node.op_type.as_str();
    let onnx = c.node.domain.is_empty() || c.node.domain == "ai.onnx";
    if !onnx {
        return match (c.node.domain.as_str(), op) {
            ("com.microsoft", "DynamicQuantizeLSTM") => rnn(c, 4),
            // qaic-rs's own quantization ops (qaic-quant): Quantize(x, scale, zero_point) keeps
            // x's shape; QConv / QMatMul are Conv / MatMul with the output zero point's type.
            ("qaic.quant", "Quantize") => Ok(Some(Out::one(c.shape(0).zip(c.dtype(2)).map(|(s, d)| ValueType::tensor(d, s.clone()))))),
            ("qaic.quant", "QConv") => conv(c),
            ("qaic.quant", "QMatMul") => matmul(c),
            _ => Ok(None),
        };
    }
    if UNARY_SAME.contains(&op) {
        let mut out = c.same_as(0);
        if op == "Identity" {
            out = out.with_data(c.data(0).cloned());
        }
        return Ok(Some(out));
    }
    if BINARY_SAME.contains(&op) {
        let idx: Vec<usize> = (0..c.node.inputs.len()).collect();
        let out = broadcast_inputs(c, &idx, c.dtype(0))?;
        let d = if matches!(op, "Add" | "Sub" | "Mul" | "Div") { data_arith(c, op) } else { None };
        return Ok(out.map(|o| o.with_data(d)));
    }
    if COMPARE.contains(&op) {
        return broadcast_inputs(c, &[0, 1], Some(DType::Bool));
    }
    if REDUCE.contains(&op) {
        return reduce(c);
    }
    match op {
        "IsNaN" | "IsInf" => Ok(Some(Out::one(c.shape(0).map(|s| ValueType::tensor(DType::Bool, s.clone()))))),
        "Where" => broadcast_inputs(c, &[0, 1, 2], c.dtype(1)),
        "Cast" => {
            let to = DType::from_onnx(c.int("to", 0) as i32).ok_or("Cast: `to` is not a known element type")?;
            let t = ValueType::Tensor { dtype: to, shape: c.shape(0).cloned() };
            let d = if to.is_int() { c.data(0).cloned() } else { None };
            Ok(Some(Out::one(Some(t)).with_data(d)))
        }
        "CastLike" => Ok(Some(Out::one(c.dtype(1).map(|d| ValueType::Tensor { dtype: d, shape: c.shape(0).cloned() })))),
        "Dropout" => {
            let mask = c.shape(0).map(|s| ValueType::tensor(DType::Bool, s.clone()));
            Ok(Some(Out { types: vec![c.ty(0).cloned(), mask], data: vec![] }))
        }
        "Shape" => {
            let Some(s) = c.shape(0) else {
                return Ok(Some(Out::tensor(DType::I64, vec![Dim::Unknown])));
            };
            let r = s.rank() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (start, end) = if c.opset >= 15 {
                (clamp(c.int("start", 0)), clamp(c.int("end", r)))
            } else {
                (0, s.rank())
            };
            let dims: Vec<SV> = s.0[start..end.max(start)].iter().map(SV::from_dim).collect();
            let n = dims.len();
            Ok(Some(Out::tensor(DType::I64, vec![Dim::Known(n)]).with_data(Some(SymData { vals: dims, scalar: false }))))
        }
        "Size" => {
            let d = c.shape(0).map(|s| dim_product(&s.0));
            let data = d.map(|d| SymData { vals: vec![SV::from_dim(&d)], scalar: true });
            Ok(Some(Out::tensor(DType::I64, vec![]).with_data(data)))
        }
        "Constant" => constant(c),
        "ConstantOfShape" => {
            let dtype = c.node.attr_tensor("value").map(|t| t.dtype()).unwrap_or(DType::F32);
            Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: shape_from_input(c, 0) }))))
        }
        "Conv" | "ConvInteger" | "QLinearConv" => conv(c),
        "ConvTranspose" => conv_transpose(c),
        "MaxPool" | "AveragePool" | "LpPool" => pool(c),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let Some(s) = c.shape(0) else { return Ok(Some(c.same_as(0))) };
            if s.rank() < 2 {
                return Err(format!("input has rank {}, expected at least 2", s.rank()));
            }
            let mut dims = s.0[..2].to_vec();
            dims.extend(std::iter::repeat_n(Dim::Known(1), s.rank() - 2));
            Ok(Some(Out::tensor(c.dtype(0).unwrap_or(DType::F32), dims)))
        }
        "BatchNormalization" => Ok(Some(c.same_as(0))),
        "LayerNormalization" | "GroupNormalization" => {
            let mut types = vec![c.ty(0).cloned()];
            if op == "LayerNormalization" {
                if let Some(s) = c.shape(0) {
                    let a = axis(c.int("axis", -1), s.rank())?;
                    let stash = DType::from_onnx(c.int("stash_type", 1) as i32).unwrap_or(DType::F32);
                    let mut dims = s.0.clone();
                    dims[a..].iter_mut().for_each(|d| *d = Dim::Known(1));
                    let t = ValueType::tensor(stash, Shape(dims));
                    types.push(Some(t.clone()));
                    types.push(Some(t));
                }
            }
            Ok(Some(Out { types, data: vec![] }))
        }
        "MatMul" | "MatMulInteger" | "QLinearMatMul" => matmul(c),
        "Gemm" => gemm(c),
        "Flatten" => {
            let Some(s) = c.shape(0) else { return Ok(Some(Out::one(c.dtype(0).map(|d| ValueType::Tensor { dtype: d, shape: Some(Shape(vec![Dim::Unknown, Dim::Unknown])) })))) };
            let mut a = c.int("axis", 1);
            if a < 0 {
                a += s.rank() as i64;
            }
            if !(0..=s.rank() as i64).contains(&a) {
                return Err(format!("axis {} is out of range for rank {}", c.int("axis", 1), s.rank()));
            }
            let a = a as usize;
            Ok(Some(Out::tensor(c.dtype(0).unwrap_or(DType::F32), vec![dim_product(&s.0[..a]), dim_product(&s.0[a..])])))
        }
        "Reshape" => reshape(c),
        "Transpose" => {
            let Some(s) = c.shape(0) else { return Ok(Some(c.same_as(0))) };
            let perm = c.attr_ints("perm").unwrap_or_else(|| (0..s.rank() as i64).rev().collect());
            if perm.len() != s.rank() {
                return Err(format!("perm {perm:?} does not match rank {}", s.rank()));
            }
            let dims = perm.iter().map(|&p| axis(p, s.rank()).map(|a| s.0[a].clone())).collect::<Result<_, _>>()?;
            Ok(Some(Out::tensor(c.dtype(0).unwrap_or(DType::F32), dims)))
        }
        "Squeeze" => squeeze(c),
        "Unsqueeze" => unsqueeze(c),
        "Concat" => concat(c),
        "Split" => split(c),
        "Slice" => slice(c),
        "Gather" => gather(c),
        "GatherElements" => Ok(Some(Out::one(c.dtype(0).map(|d| ValueType::Tensor { dtype: d, shape: c.shape(1).cloned() })))),
        "GatherND" => gather_nd(c),
        "Expand" => {
            let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
            let target = shape_from_input(c, 1);
            let shape = match (c.shape(0), target) {
                (Some(a), Some(b)) => Some(broadcast(&[a, &b])?),
                (_, Some(b)) => Some(Shape(vec![Dim::Unknown; b.rank()])),
                _ => None,
            };
            Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape }))))
        }
        "Tile" => {
            let (Some(s), Some(dtype)) = (c.shape(0), c.dtype(0)) else { return Ok(Some(Out::one(None))) };
            let Some(reps) = c.ints(1) else { return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; s.rank()]))) };
            if reps.len() != s.rank() {
                return Err(format!("{} repeats for rank {}", reps.len(), s.rank()));
            }
            let dims = s.0.iter().zip(&reps).map(|(d, &r)| scale_dim(d, r)).collect();
            Ok(Some(Out::tensor(dtype, dims)))
        }
        "Pad" => pad(c),
        "Resize" | "Upsample" => resize(c),
        "ArgMax" | "ArgMin" => {
            let Some(s) = c.shape(0) else { return Ok(Some(Out::one(Some(ValueType::Tensor { dtype: DType::I64, shape: None })))) };
            let a = axis(c.int("axis", 0), s.rank())?;
            let mut dims = s.0.clone();
            if c.int("keepdims", 1) != 0 {
                dims[a] = Dim::Known(1);
            } else {
                dims.remove(a);
            }
            Ok(Some(Out::tensor(DType::I64, dims)))
        }
        "TopK" => {
            let Some(s) = c.shape(0) else { return Ok(Some(Out { types: vec![c.ty(0).cloned(), None], data: vec![] })) };
            let a = axis(c.int("axis", -1), s.rank())?;
            let k = if c.opset >= 10 { c.ints(1).and_then(|v| v.first().copied()) } else { c.node.attr_int("k") };
            let mut dims = s.0.clone();
            dims[a] = k.filter(|k| *k >= 0).map(|k| Dim::Known(k as usize)).unwrap_or(Dim::Unknown);
            let dtype = c.dtype(0).unwrap_or(DType::F32);
            Ok(Some(Out {
                types: vec![Some(ValueType::tensor(dtype, Shape(dims.clone()))), Some(ValueType::tensor(DType::I64, Shape(dims)))],
                data: vec![],
            }))
        }
        "Range" => {
            let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
            let vals: Option<Vec<f64>> =
                (0..3).map(|i| c.konst(i).and_then(tensor_f64s).and_then(|v| v.first().copied())).collect();
            let len = match vals {
                Some(v) if v[2] != 0.0 => Dim::Known(((v[1] - v[0]) / v[2]).ceil().max(0.0) as usize),
                _ => Dim::Unknown,
            };
            Ok(Some(Out::tensor(dtype, vec![len])))
        }
        "NonZero" => Ok(Some(Out::tensor(
            DType::I64,
            vec![c.shape(0).map(|s| Dim::Known(s.rank())).unwrap_or(Dim::Unknown), Dim::Unknown],
        ))),
        "DepthToSpace" | "SpaceToDepth" => {
            let (Some(s), Some(dtype)) = (c.shape(0), c.dtype(0)) else { return Ok(Some(Out::one(None))) };
            if s.rank() != 4 {
                return Err(format!("input has rank {}, expected 4", s.rank()));
            }
            let b = c.int("blocksize", 1).max(1) as usize;
            let (mul, div): (fn(&Dim, usize) -> Dim, fn(&Dim, usize) -> Dim) = (
                |d, k| d.known().map(|n| Dim::Known(n * k)).unwrap_or(if k == 1 { d.clone() } else { Dim::Unknown }),
                |d, k| d.known().filter(|n| n % k == 0).map(|n| Dim::Known(n / k)).unwrap_or(if k == 1 { d.clone() } else { Dim::Unknown }),
            );
            let dims = if op == "DepthToSpace" {
                vec![s.0[0].clone(), div(&s.0[1], b * b), mul(&s.0[2], b), mul(&s.0[3], b)]
            } else {
                vec![s.0[0].clone(), mul(&s.0[1], b * b), div(&s.0[2], b), div(&s.0[3], b)]
            };
            Ok(Some(Out::tensor(dtype, dims)))
        }
        "QuantizeLinear" => {
            let dtype = c
                .dtype(2)
                .or_else(|| c.node.attr_int("output_dtype").filter(|v| *v != 0).and_then(|v| DType::from_onnx(v as i32)))
                .unwrap_or(DType::U8);
            Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: c.shape(0).cloned() }))))
        }
        "DequantizeLinear" => {
            let dtype = c.dtype(1).unwrap_or(DType::F32);
            Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: c.shape(0).cloned() }))))
        }
        "DynamicQuantizeLinear" => Ok(Some(Out {
            types: vec![
                Some(ValueType::Tensor { dtype: DType::U8, shape: c.shape(0).cloned() }),
                Some(ValueType::tensor(DType::F32, Shape(vec![]))),
                Some(ValueType::tensor(DType::U8, Shape(vec![]))),
            ],
            data: vec![],
        })),
        "LSTM" => rnn(c, 3),
        "GRU" | "RNN" => rnn(c, 2),
        "If" => if_node(c),
        _ => Ok(None),
    }
}

fn constant(c: &Ctx) -> R {
    let n = c.node;
    let (t, data) = if let Some(t) = n.attr_tensor("value") {
        (crate::text::natural_type(t), SymData::from_tensor(t))
    } else if let Some(v) = n.attr_int("value_int") {
        (ValueType::tensor(DType::I64, Shape(vec![])), Some(SymData { vals: vec![SV::K(v)], scalar: true }))
    } else if let Some(v) = n.attr_ints("value_ints") {
        let d = (v.len() <= MAX_DATA).then(|| SymData { vals: v.iter().map(|x| SV::K(*x)).collect(), scalar: false });
        (ValueType::tensor(DType::I64, Shape::known(&[v.len()])), d)
    } else if n.attr_float("value_float").is_some() {
        (ValueType::tensor(DType::F32, Shape(vec![])), None)
    } else if let Some(v) = n.attr_floats("value_floats") {
        (ValueType::tensor(DType::F32, Shape::known(&[v.len()])), None)
    } else if let Some(Attr::String(_)) = n.attr("value_string") {
        (ValueType::tensor(DType::String, Shape(vec![])), None)
    } else if let Some(Attr::Strings(v)) = n.attr("value_strings") {
        (ValueType::tensor(DType::String, Shape::known(&[v.len()])), None)
    } else {
        return Err("Constant has none of the value attributes".into());
    };
    Ok(Some(Out::one(Some(t)).with_data(data)))
}

/// A shape given as the values of input `i` (Reshape/Expand/ConstantOfShape style): exact or
/// symbolic when the values are known or propagated, unknown dims of known count otherwise.
fn shape_from_input(c: &Ctx, i: usize) -> Option<Shape> {
    if let Some(v) = c.ints(i) {
        return Some(Shape(v.iter().map(|&x| SV::K(x).to_dim()).collect()));
    }
    if let Some(d) = c.data(i) {
        return Some(Shape(d.vals.iter().map(SV::to_dim).collect()));
    }
    let s = c.shape(i)?;
    match s.0.as_slice() {
        [Dim::Known(n)] => Some(Shape(vec![Dim::Unknown; *n])),
        [] => Some(Shape(vec![])),
        _ => None,
    }
}

fn scale_dim(d: &Dim, r: i64) -> Dim {
    match d {
        Dim::Known(n) => Dim::Known(n * r.max(0) as usize),
        d if r == 1 => d.clone(),
        _ => Dim::Unknown,
    }
}

/// Spatial attributes shared by Conv and the pools.
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<usize>,
    auto_pad: String,
}

fn window(c: &Ctx, spatial: usize, kernel: Vec<usize>) -> Result<Window, String> {
    let get = |name: &str, n: usize, default: usize| -> Result<Vec<usize>, String> {
        match c.attr_ints(name) {
            None => Ok(vec![default; n]),
            Some(v) if v.len() == n && v.iter().all(|x| *x >= 0) => Ok(v.iter().map(|x| *x as usize).collect()),
            Some(v) => Err(format!("attribute `{name}` = {v:?}: expected {n} non-negative values")),
        }
    };
    Ok(Window {
        strides: get("strides", spatial, 1)?,
        dilations: get("dilations", spatial, 1)?,
        pads: get("pads", 2 * spatial, 0)?,
        auto_pad: c.node.attr_str("auto_pad").unwrap_or("NOTSET").to_string(),
        kernel,
    })
}

fn window_out(w: &Window, i: usize, d: &Dim, ceil_mode: bool) -> Result<Dim, String> {
    let spatial = w.kernel.len();
    let (k, s, dil) = (w.kernel[i], w.strides[i].max(1), w.dilations[i].max(1));
    let (pb, pe) = (w.pads[i], w.pads[i + spatial]);
    let ek = (k.max(1) - 1) * dil + 1;
    let same = w.auto_pad.starts_with("SAME");
    let identity = s == 1 && (same || (ek == 1 && pb == 0 && pe == 0));
    let Some(n) = d.known() else {
        return Ok(if identity { d.clone() } else { Dim::Unknown });
    };
    Ok(Dim::Known(match w.auto_pad.as_str() {
        "VALID" => {
            if n < ek {
                return Err(format!("spatial dim {n} is smaller than the kernel extent {ek}"));
            }
            (n - ek) / s + 1
        }
        _ if same => n.div_ceil(s),
        _ => {
            let padded = n + pb + pe;
            if padded < ek {
                return Err(format!("padded spatial dim {padded} is smaller than the kernel extent {ek}"));
            }
            let span = padded - ek;
            let mut o = if ceil_mode { span.div_ceil(s) + 1 } else { span / s + 1 };
            // A window that would start inside the end padding is dropped (ONNX/PyTorch).
            if ceil_mode && (o - 1) * s >= n + pb {
                o -= 1;
            }
            o
        }
    }))
}

fn conv(c: &Ctx) -> R {
    let out_dtype = match c.node.op_type.as_str() {
        "ConvInteger" => DType::I32,
        "QLinearConv" => c.dtype(7).unwrap_or(DType::U8),
        "QConv" => c.dtype(6).unwrap_or(DType::I8),
        _ => match c.dtype(0) {
            Some(d) => d,
            None => return Ok(Some(Out::one(None))),
        },
    };
    let w_idx = if c.node.op_type == "QLinearConv" { 3 } else { 1 };
    let (Some(x), Some(w)) = (c.shape(0), c.shape(w_idx)) else {
        return Ok(Some(Out::one(c.shape(0).map(|s| ValueType::tensor(out_dtype, Shape(vec![Dim::Unknown; s.rank()]))))));
    };
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!("input rank {} and weight rank {} do not fit a convolution", x.rank(), w.rank()));
    }
    let spatial = x.rank() - 2;
    let kernel = match c.attr_ints("kernel_shape") {
        Some(k) => k.iter().map(|v| *v as usize).collect(),
        None => match w.0[2..].iter().map(Dim::known).collect::<Option<Vec<_>>>() {
            Some(k) => k,
            None => {
                let mut dims = vec![x.0[0].clone(), w.0[0].clone()];
                dims.extend(vec![Dim::Unknown; spatial]);
                return Ok(Some(Out::tensor(out_dtype, dims)));
            }
        },
    };
    let group = c.int("group", 1).max(1) as usize;
    if let (Some(ci), Some(wc)) = (x.0[1].known(), w.0[1].known()) {
        if ci != wc * group {
            return Err(format!("input has {ci} channels but the weights expect {wc} x group {group}"));
        }
    }
    let win = window(c, spatial, kernel)?;
    let mut dims = vec![x.0[0].clone(), w.0[0].clone()];
    for i in 0..spatial {
        dims.push(window_out(&win, i, &x.0[i + 2], false)?);
    }
    Ok(Some(Out::tensor(out_dtype, dims)))
}

fn pool(c: &Ctx) -> R {
    let (Some(x), Some(dtype)) = (c.shape(0), c.dtype(0)) else { return Ok(Some(Out::one(None))) };
    if x.rank() < 3 {
        return Err(format!("input has rank {}, expected at least 3", x.rank()));
    }
    let spatial = x.rank() - 2;
    let kernel: Vec<usize> = c
        .attr_ints("kernel_shape")
        .ok_or("attribute `kernel_shape` is required")?
        .iter()
        .map(|v| *v as usize)
        .collect();
    if kernel.len() != spatial {
        return Err(format!("kernel_shape has {} dims for {spatial} spatial dims", kernel.len()));
    }
    let win = window(c, spatial, kernel)?;
    let ceil = c.int("ceil_mode", 0) != 0;
    let mut dims = x.0[..2].to_vec();
    for i in 0..spatial {
        dims.push(window_out(&win, i, &x.0[i + 2], ceil)?);
    }
    let t = ValueType::tensor(dtype, Shape(dims.clone()));
    let idx = ValueType::tensor(DType::I64, Shape(dims));
    Ok(Some(Out { types: vec![Some(t), Some(idx)], data: vec![] }))
}

fn conv_transpose(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let (Some(x), Some(w)) = (c.shape(0), c.shape(1)) else { return Ok(Some(Out::one(None))) };
    if x.rank() < 3 || w.rank() != x.rank() {
        return Err(format!("input rank {} and weight rank {} do not fit a convolution", x.rank(), w.rank()));
    }
    let spatial = x.rank() - 2;
    let group = c.int("group", 1).max(1) as usize;
    let mut dims = vec![x.0[0].clone(), w.0[1].known().map(|m| Dim::Known(m * group)).unwrap_or(Dim::Unknown)];
    if let Some(os) = c.attr_ints("output_shape") {
        let os = &os[os.len().saturating_sub(spatial)..];
        dims.extend(os.iter().map(|v| Dim::Known(*v as usize)));
        return Ok(Some(Out::tensor(dtype, dims)));
    }
    let kernel: Option<Vec<usize>> = match c.attr_ints("kernel_shape") {
        Some(k) => Some(k.iter().map(|v| *v as usize).collect()),
        None => w.0[2..].iter().map(Dim::known).collect(),
    };
    let Some(kernel) = kernel else {
        dims.extend(vec![Dim::Unknown; spatial]);
        return Ok(Some(Out::tensor(dtype, dims)));
    };
    let win = window(c, spatial, kernel)?;
    let out_pad = c.attr_ints("output_padding").unwrap_or_else(|| vec![0; spatial]);
    for i in 0..spatial {
        let d = match x.0[i + 2].known() {
            Some(n) if win.auto_pad.starts_with("SAME") => Dim::Known(n * win.strides[i]),
            Some(n) => {
                let full = win.strides[i] * (n.max(1) - 1)
                    + *out_pad.get(i).unwrap_or(&0) as usize
                    + (win.kernel[i].max(1) - 1) * win.dilations[i].max(1)
                    + 1;
                let pads = win.pads[i] + win.pads[i + spatial];
                Dim::Known(full.checked_sub(pads).ok_or("pads exceed the output size")?)
            }
            None => Dim::Unknown,
        };
        dims.push(d);
    }
    Ok(Some(Out::tensor(dtype, dims)))
}

fn matmul(c: &Ctx) -> R {
    let (ai, bi) = if c.node.op_type == "QLinearMatMul" { (0, 3) } else { (0, 1) };
    let dtype = match c.node.op_type.as_str() {
        "MatMulInteger" => DType::I32,
        "QLinearMatMul" => c.dtype(7).unwrap_or(DType::U8),
        "QMatMul" => c.dtype(6).unwrap_or(DType::I8),
        _ => match c.dtype(0) {
            Some(d) => d,
            None => return Ok(Some(Out::one(None))),
        },
    };
    let (Some(a), Some(b)) = (c.shape(ai), c.shape(bi)) else {
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
    };
    if a.rank() == 0 || b.rank() == 0 {
        return Err("MatMul inputs must not be scalars".into());
    }
    let mut ad = a.0.clone();
    let mut bd = b.0.clone();
    let (a1, b1) = (ad.len() == 1, bd.len() == 1);
    if a1 {
        ad.insert(0, Dim::Known(1));
    }
    if b1 {
        bd.push(Dim::Known(1));
    }
    let (k1, k2) = (&ad[ad.len() - 1], &bd[bd.len() - 2]);
    if let (Some(x), Some(y)) = (k1.known(), k2.known()) {
        if x != y {
            return Err(format!(
                "inner dimensions differ: {} x {}",
                crate::text::fmt_shape(a),
                crate::text::fmt_shape(b)
            ));
        }
    }
    let batch = broadcast(&[&Shape(ad[..ad.len() - 2].to_vec()), &Shape(bd[..bd.len() - 2].to_vec())])?;
    let mut dims = batch.0;
    if !a1 {
        dims.push(ad[ad.len() - 2].clone());
    }
    if !b1 {
        dims.push(bd[bd.len() - 1].clone());
    }
    Ok(Some(Out::tensor(dtype, dims)))
}

fn gemm(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let (Some(a), Some(b)) = (c.shape(0), c.shape(1)) else {
        return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown, Dim::Unknown])));
    };
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!("Gemm needs rank-2 inputs, got ranks {} and {}", a.rank(), b.rank()));
    }
    let (m, ka) = if c.int("transA", 0) != 0 { (&a.0[1], &a.0[0]) } else { (&a.0[0], &a.0[1]) };
    let (kb, n) = if c.int("transB", 0) != 0 { (&b.0[1], &b.0[0]) } else { (&b.0[0], &b.0[1]) };
    if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: {x} vs {y}"));
        }
    }
    Ok(Some(Out::tensor(dtype, vec![m.clone(), n.clone()])))
}

fn reshape(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let target: Vec<SV> = if let Some(v) = c.ints(1) {
        v.into_iter().map(SV::K).collect()
    } else if let Some(d) = c.data(1) {
        d.vals.clone()
    } else {
        let t = shape_from_input(c, 1);
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: t }))));
    };
    let allowzero = c.opset >= 14 && c.int("allowzero", 0) != 0;
    let input = c.shape(0);
    let mut dims: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        dims.push(match t {
            SV::K(0) if !allowzero => Some(input.and_then(|s| s.0.get(i).cloned()).unwrap_or(Dim::Unknown)),
            SV::K(-1) => {
                if infer_at.replace(i).is_some() {
                    return Err("more than one -1 in the target shape".into());
                }
                None
            }
            SV::K(n) if *n < -1 => return Err(format!("invalid target dimension {n}")),
            other => Some(other.to_dim()),
        });
    }
    let mut out: Vec<Dim> = dims.iter().map(|d| d.clone().unwrap_or(Dim::Unknown)).collect();
    if let (Some(at), Some(input)) = (infer_at, input) {
        // Cancel equal symbols between the input dims and the other target dims; what remains
        // must be known, or a single symbol over a known product of 1.
        let mut numer: Vec<Dim> = input.0.clone();
        let mut denom: Vec<Dim> = dims.iter().flatten().cloned().collect();
        denom.retain(|d| {
            if let Dim::Sym(_) = d {
                if let Some(p) = numer.iter().position(|n| n == d) {
                    numer.remove(p);
                    return false;
                }
            }
            true
        });
        let nk: Option<Vec<usize>> = numer.iter().map(Dim::known).collect();
        let dk: Option<Vec<usize>> = denom.iter().map(Dim::known).collect();
        out[at] = match (nk, dk) {
            (Some(n), Some(d)) => {
                let (pn, pd): (usize, usize) = (n.iter().product(), d.iter().product());
                if pd == 0 || pn % pd != 0 {
                    return Err(format!(
                        "cannot reshape {} into {:?}: {pn} elements are not divisible by {pd}",
                        crate::text::fmt_shape(input),
                        target
                    ));
                }
                Dim::Known(pn / pd)
            }
            (None, Some(d)) if d.iter().product::<usize>() == 1 => {
                let syms: Vec<&Dim> = numer.iter().filter(|x| x.known() != Some(1)).collect();
                if syms.len() == 1 { syms[0].clone() } else { Dim::Unknown }
            }
            _ => Dim::Unknown,
        };
    } else if let (None, Some(input)) = (infer_at, input) {
        if let (Some(a), Some(b)) = (input.concrete(), Shape(out.clone()).concrete()) {
            if a.iter().product::<usize>() != b.iter().product::<usize>() {
                return Err(format!("cannot reshape {a:?} into {b:?}"));
            }
        }
    }
    // Reshape of a 1-D shape value keeps its data.
    let data = c.data(0).filter(|_| out.len() <= 1).map(|d| SymData { vals: d.vals.clone(), scalar: out.is_empty() });
    Ok(Some(Out::tensor(dtype, out).with_data(data)))
}

/// Axes from the `axes` attribute (old opsets) or input `i` (new opsets).
/// Outer `None`: the axes are computed at run time; inner `None`: no axes given.
fn axes_param(c: &Ctx, input_since: i64, i: usize) -> Option<Option<Vec<i64>>> {
    if c.opset >= input_since {
        if !c.has_input(i) {
            return Some(None);
        }
        return c.ints(i).map(Some);
    }
    Some(c.attr_ints("axes"))
}

fn squeeze(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let Some(s) = c.shape(0) else { return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None })))) };
    let axes = match axes_param(c, 13, 1) {
        Some(a) => a,
        None => return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None })))),
    };
    let remove: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&x| axis(x, s.rank())).collect::<Result<_, _>>()?,
        None => {
            if s.0.iter().any(|d| d.known().is_none()) {
                return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
            }
            (0..s.rank()).filter(|&i| s.0[i] == Dim::Known(1)).collect()
        }
    };
    for &a in &remove {
        if let Dim::Known(n) = s.0[a] {
            if n != 1 {
                return Err(format!("cannot squeeze axis {a} of size {n}"));
            }
        }
    }
    let dims: Vec<Dim> = (0..s.rank()).filter(|i| !remove.contains(i)).map(|i| s.0[i].clone()).collect();
    let data = c.data(0).filter(|d| d.vals.len() == 1 && dims.is_empty()).map(|d| SymData { vals: d.vals.clone(), scalar: true });
    Ok(Some(Out::tensor(dtype, dims).with_data(data)))
}

fn unsqueeze(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let unknown = || Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
    let Some(s) = c.shape(0) else { return unknown() };
    let Some(Some(axes)) = axes_param(c, 13, 1) else { return unknown() };
    let r = s.rank() + axes.len();
    let mut norm: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?;
    norm.sort_unstable();
    let mut dims = Vec::with_capacity(r);
    let mut src = s.0.iter();
    for i in 0..r {
        if norm.contains(&i) {
            dims.push(Dim::Known(1));
        } else {
            dims.push(src.next().cloned().unwrap_or(Dim::Unknown));
        }
    }
    let data = c.data(0).filter(|d| d.vals.len() == 1 && r == 1).map(|d| SymData { vals: d.vals.clone(), scalar: false });
    Ok(Some(Out::tensor(dtype, dims).with_data(data)))
}

fn concat(c: &Ctx) -> R {
    let Some(dtype) = (0..c.node.inputs.len()).find_map(|i| c.dtype(i)) else { return Ok(Some(Out::one(None))) };
    let shapes: Option<Vec<&Shape>> = (0..c.node.inputs.len()).map(|i| c.shape(i)).collect();
    let Some(shapes) = shapes.filter(|s| !s.is_empty()) else {
        let rank = (0..c.node.inputs.len()).find_map(|i| c.shape(i)).map(|s| s.rank());
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: rank.map(|r| Shape(vec![Dim::Unknown; r])) }))));
    };
    let rank = shapes[0].rank();
    if shapes.iter().any(|s| s.rank() != rank) {
        return Err("inputs have different ranks".into());
    }
    let a = axis(c.int("axis", 0), rank)?;
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        if i == a {
            let parts: Vec<&Dim> = shapes.iter().map(|s| &s.0[i]).collect();
            let known: Option<Vec<usize>> = parts.iter().map(|d| d.known()).collect();
            let nonzero: Vec<&&Dim> = parts.iter().filter(|d| d.known() != Some(0)).collect();
            dims.push(match known {
                Some(k) => Dim::Known(k.iter().sum()),
                None if nonzero.len() == 1 => (**nonzero[0]).clone(),
                None => Dim::Unknown,
            });
        } else {
            let mut d = Dim::Unknown;
            for s in &shapes {
                match (&d, &s.0[i]) {
                    (Dim::Known(x), Dim::Known(y)) if x != y => {
                        return Err(format!("inputs differ in dimension {i}: {x} vs {y}"));
                    }
                    (Dim::Known(_), _) => {}
                    (_, n @ Dim::Known(_)) => d = n.clone(),
                    (Dim::Unknown, n) => d = n.clone(),
                    _ => {}
                }
            }
            dims.push(d);
        }
    }
    let data = if rank == 1 {
        let parts: Option<Vec<&SymData>> = (0..c.node.inputs.len()).map(|i| c.data(i)).collect();
        parts.map(|p| SymData { vals: p.iter().flat_map(|d| d.vals.clone()).collect(), scalar: false })
    } else {
        None
    };
    Ok(Some(Out::tensor(dtype, dims).with_data(data)))
}

fn split(c: &Ctx) -> R {
    let n_out = c.node.outputs.len();
    let (Some(s), Some(dtype)) = (c.shape(0), c.dtype(0)) else {
        return Ok(Some(Out { types: vec![c.dtype(0).map(|d| ValueType::Tensor { dtype: d, shape: None }); n_out], data: vec![] }));
    };
    let a = axis(c.int("axis", 0), s.rank())?;
    let sizes: Option<Vec<i64>> = if c.opset >= 13 { c.ints(1) } else { c.attr_ints("split") };
    let total = s.0[a].known();
    let sizes: Vec<Dim> = match (sizes, total) {
        (Some(v), _) if !v.is_empty() => v.iter().map(|x| SV::K(*x).to_dim()).collect(),
        (_, Some(t)) => {
            let parts = if c.opset >= 18 { c.int("num_outputs", n_out as i64).max(1) as usize } else { n_out.max(1) };
            let chunk = t.div_ceil(parts);
            (0..parts).map(|k| Dim::Known(chunk.min(t.saturating_sub(k * chunk)))).collect()
        }
        _ => vec![Dim::Unknown; n_out],
    };
    let types = (0..n_out)
        .map(|k| {
            let mut dims = s.0.clone();
            dims[a] = sizes.get(k).cloned().unwrap_or(Dim::Unknown);
            Some(ValueType::tensor(dtype, Shape(dims)))
        })
        .collect();
    Ok(Some(Out { types, data: vec![] }))
}

/// ONNX Slice semantics on one axis of known size.
fn slice_len(dim: i64, start: i64, end: i64, step: i64) -> usize {
    let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
    let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
    let (s, e) = if step > 0 {
        (clamp(norm(start), 0, dim), clamp(norm(end), 0, dim))
    } else {
        (clamp(norm(start), 0, dim - 1), clamp(norm(end), -1, dim - 1))
    };
    let n = if step > 0 { (e - s + step - 1) / step } else { (s - e + (-step) - 1) / (-step) };
    n.max(0) as usize
}

fn slice(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let Some(s) = c.shape(0) else { return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None })))) };
    let (starts, ends, axes, steps) = if c.opset >= 10 {
        (c.ints(1), c.ints(2), if c.has_input(3) { c.ints(3) } else { Some(vec![]) }, if c.has_input(4) { c.ints(4) } else { Some(vec![]) })
    } else {
        (c.attr_ints("starts"), c.attr_ints("ends"), Some(c.attr_ints("axes").unwrap_or_default()), Some(vec![]))
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        // Unknown bounds: the sliced axes (or all, when axes are unknown too) become unknown.
        let dims = match axes.filter(|a| !a.is_empty()) {
            Some(a) => {
                let mut d = s.0.clone();
                for x in a {
                    d[axis(x, s.rank())?] = Dim::Unknown;
                }
                d
            }
            None => vec![Dim::Unknown; s.rank()],
        };
        return Ok(Some(Out::tensor(dtype, dims)));
    };
    if starts.len() != ends.len() {
        return Err(format!("{} starts but {} ends", starts.len(), ends.len()));
    }
    let axes = match axes {
        Some(a) if !a.is_empty() => a,
        Some(_) => (0..starts.len() as i64).collect(),
        None => return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; s.rank()]))),
    };
    let steps = match steps {
        Some(st) if !st.is_empty() => st,
        Some(_) => vec![1; starts.len()],
        None => return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; s.rank()]))),
    };
    if axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps have different lengths".into());
    }
    let mut dims = s.0.clone();
    let mut data = c.data(0).filter(|_| s.rank() == 1).map(|d| d.vals.clone());
    for k in 0..starts.len() {
        let a = axis(axes[k], s.rank())?;
        if steps[k] == 0 {
            return Err("a slice step is 0".into());
        }
        dims[a] = match &s.0[a] {
            Dim::Known(n) => Dim::Known(slice_len(*n as i64, starts[k], ends[k], steps[k])),
            d if starts[k] == 0 && steps[k] == 1 && ends[k] >= i32::MAX as i64 => d.clone(),
            _ => Dim::Unknown,
        };
        if let Some(v) = data.take() {
            let n = v.len() as i64;
            if let Dim::Known(len) = dims[a] {
                let norm = |x: i64| if x < 0 { x.saturating_add(n) } else { x };
                let st = if steps[k] > 0 { norm(starts[k]).clamp(0, n) } else { norm(starts[k]).clamp(0, n - 1) };
                data = Some((0..len as i64).filter_map(|j| v.get((st + j * steps[k]) as usize).cloned()).collect());
            }
        }
    }
    let data = data.filter(|v| Some(v.len()) == dims[0].known()).map(|vals| SymData { vals, scalar: false });
    Ok(Some(Out::tensor(dtype, dims).with_data(data)))
}

fn gather(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let (Some(d), Some(i)) = (c.shape(0), c.shape(1)) else {
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
    };
    let a = axis(c.int("axis", 0), d.rank())?;
    let mut dims = d.0[..a].to_vec();
    dims.extend(i.0.iter().cloned());
    dims.extend(d.0[a + 1..].iter().cloned());
    let data = match (c.data(0), c.ints(1)) {
        (Some(src), Some(idx)) if d.rank() == 1 && i.rank() <= 1 => {
            let n = src.vals.len() as i64;
            let vals: Option<Vec<SV>> =
                idx.iter().map(|&j| src.vals.get((if j < 0 { j + n } else { j }) as usize).cloned()).collect();
            vals.map(|vals| SymData { vals, scalar: i.rank() == 0 })
        }
        _ => None,
    };
    Ok(Some(Out::tensor(dtype, dims).with_data(data)))
}

fn gather_nd(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let (Some(d), Some(i)) = (c.shape(0), c.shape(1)) else {
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
    };
    let b = c.int("batch_dims", 0).max(0) as usize;
    let Some(Some(last)) = i.0.last().map(Dim::known) else {
        return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape: None }))));
    };
    if b + last > d.rank() || i.rank() == 0 {
        return Err(format!("indices of depth {last} with batch_dims {b} exceed data rank {}", d.rank()));
    }
    let mut dims = i.0[..i.rank() - 1].to_vec();
    dims.extend(d.0[b + last..].iter().cloned());
    Ok(Some(Out::tensor(dtype, dims)))
}

fn pad(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let Some(s) = c.shape(0) else { return Ok(Some(c.same_as(0))) };
    let pads = if c.opset >= 11 { c.ints(1) } else { c.attr_ints("pads").or_else(|| c.attr_ints("paddings")) };
    let Some(pads) = pads else { return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; s.rank()]))) };
    let axes: Vec<usize> = match if c.opset >= 18 && c.has_input(3) { c.ints(3) } else { None } {
        Some(a) => a.iter().map(|&x| axis(x, s.rank())).collect::<Result<_, _>>()?,
        None if c.opset >= 18 && c.has_input(3) => return Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; s.rank()]))),
        None => (0..s.rank()).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut dims = s.0.clone();
    for (k, &a) in axes.iter().enumerate() {
        let (pb, pe) = (pads[k], pads[k + axes.len()]);
        dims[a] = match &s.0[a] {
            Dim::Known(n) => {
                let v = *n as i64 + pb + pe;
                if v < 0 {
                    return Err(format!("padding makes axis {a} negative"));
                }
                Dim::Known(v as usize)
            }
            d if pb == 0 && pe == 0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(Some(Out::tensor(dtype, dims)))
}

fn resize(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let Some(s) = c.shape(0) else { return Ok(Some(c.same_as(0))) };
    let r = s.rank();
    let (scales_i, sizes_i) = match (c.node.op_type.as_str(), c.opset) {
        ("Upsample", v) if v < 9 => (None, None),
        ("Upsample", _) | ("Resize", 10) => (Some(1), None),
        _ => (Some(2), Some(3)),
    };
    let axes: Vec<usize> = match c.attr_ints("axes") {
        Some(a) if c.opset >= 18 => a.iter().map(|&x| axis(x, r)).collect::<Result<_, _>>()?,
        _ => (0..r).collect(),
    };
    let unknown = || Ok(Some(Out::tensor(dtype, vec![Dim::Unknown; r])));
    let mut dims = s.0.clone();
    if let Some(si) = sizes_i.filter(|i| c.has_input(*i)) {
        let policy = c.node.attr_str("keep_aspect_ratio_policy").unwrap_or("stretch");
        let Some(sizes) = c.ints(si).filter(|_| policy == "stretch") else { return unknown() };
        if sizes.len() != axes.len() {
            return Err(format!("{} sizes for {} axes", sizes.len(), axes.len()));
        }
        for (k, &a) in axes.iter().enumerate() {
            dims[a] = SV::K(sizes[k]).to_dim();
        }
        return Ok(Some(Out::tensor(dtype, dims)));
    }
    let scales: Option<Vec<f64>> = match scales_i {
        None => c.attr_floats_f64("scales"),
        Some(i) => c.konst(i).and_then(tensor_f64s),
    };
    let Some(scales) = scales else { return unknown() };
    if scales.is_empty() {
        return unknown();
    }
    if scales.len() != axes.len() {
        return Err(format!("{} scales for {} axes", scales.len(), axes.len()));
    }
    for (k, &a) in axes.iter().enumerate() {
        dims[a] = match &s.0[a] {
            Dim::Known(n) => Dim::Known((*n as f64 * scales[k]).floor() as usize),
            d if scales[k] == 1.0 => d.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(Some(Out::tensor(dtype, dims)))
}

impl Ctx<'_> {
    fn attr_floats_f64(&self, name: &str) -> Option<Vec<f64>> {
        self.node.attr_floats(name).map(|v| v.iter().map(|x| *x as f64).collect())
    }
}

fn reduce(c: &Ctx) -> R {
    let Some(dtype) = c.dtype(0) else { return Ok(Some(Out::one(None))) };
    let Some(s) = c.shape(0) else { return Ok(Some(c.same_as(0))) };
    let input_since = if c.node.op_type == "ReduceSum" { 13 } else { 18 };
    let keep = c.int("keepdims", 1) != 0;
    let axes = match axes_param(c, input_since, 1) {
        Some(a) => a,
        None => {
            // Axes computed at run time: rank is known only with keepdims.
            let shape = keep.then(|| Shape(vec![Dim::Unknown; s.rank()]));
            return Ok(Some(Out::one(Some(ValueType::Tensor { dtype, shape }))));
        }
    };
    let axes: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
        Some(a) => a.iter().map(|&x| axis(x, s.rank())).collect::<Result<_, _>>()?,
        None if c.int("noop_with_empty_axes", 0) != 0 => return Ok(Some(c.same_as(0))),
        None => (0..s.rank()).collect(),
    };
    let mut dims = Vec::new();
    for (i, d) in s.0.iter().enumerate() {
        if axes.contains(&i) {
            if keep {
                dims.push(Dim::Known(1));
            }
        } else {
            dims.push(d.clone());
        }
    }
    Ok(Some(Out::tensor(dtype, dims)))
}

/// LSTM / GRU / RNN (and com.microsoft DynamicQuantizeLSTM): `n_out` outputs.
fn rnn(c: &Ctx, n_out: usize) -> R {
    let n_out = n_out.min(c.node.outputs.len().max(1));
    let dtype = c.dtype(0).unwrap_or(DType::F32);
    let Some(x) = c.shape(0).filter(|s| s.rank() == 3) else {
        return Ok(Some(Out { types: vec![None; n_out], data: vec![] }));
    };
    let dirs = if c.node.attr_str("direction") == Some("bidirectional") { 2 } else { 1 };
    let hidden = c.node.attr_int("hidden_size").filter(|h| *h > 0).map(|h| Dim::Known(h as usize)).unwrap_or(Dim::Unknown);
    let layout = c.int("layout", 0);
    let (seq, batch) = if layout == 0 { (&x.0[0], &x.0[1]) } else { (&x.0[1], &x.0[0]) };
    let nd = Dim::Known(dirs);
    let (y, yh) = if layout == 0 {
        (vec![seq.clone(), nd.clone(), batch.clone(), hidden.clone()], vec![nd, batch.clone(), hidden])
    } else {
        (vec![batch.clone(), seq.clone(), nd.clone(), hidden.clone()], vec![batch.clone(), nd, hidden])
    };
    let mut types = vec![Some(ValueType::tensor(dtype, Shape(y)))];
    for _ in 1..n_out {
        types.push(Some(ValueType::tensor(dtype, Shape(yh.clone()))));
    }
    Ok(Some(Out { types, data: vec![] }))
}

/// `If`: an output's type is the branches' common type (dims that differ become unknown).
fn if_node(c: &Ctx) -> R {
    let (Some(t), Some(e)) = (c.node.attr_graph("then_branch"), c.node.attr_graph("else_branch")) else {
        return Ok(None);
    };
    let types = (0..c.node.outputs.len())
        .map(|k| {
            let a = t.outputs.get(k).and_then(|v| t.values.get(v.index())?.ty.clone());
            let b = e.outputs.get(k).and_then(|v| e.values.get(v.index())?.ty.clone());
            match (a, b) {
                (Some(a), Some(b)) if a == b => Some(a),
                (
                    Some(ValueType::Tensor { dtype: da, shape: Some(sa) }),
                    Some(ValueType::Tensor { dtype: db, shape: Some(sb) }),
                ) if da == db && sa.rank() == sb.rank() => {
                    let dims = sa.0.iter().zip(&sb.0).map(|(x, y)| if x == y { x.clone() } else { Dim::Unknown }).collect();
                    Some(ValueType::tensor(da, Shape(dims)))
                }
                (Some(ValueType::Tensor { dtype: da, .. }), Some(ValueType::Tensor { dtype: db, .. })) if da == db => {
                    Some(ValueType::Tensor { dtype: da, shape: None })
                }
                _ => None,
            }
        })
        .collect();
    Ok(Some(Out { types, data: vec![] }))
}
