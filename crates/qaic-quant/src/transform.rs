//! The precision pass: decides each node's precision (quantized, float32, fp16) and rewrites the
//! graph so the interpreter runs the mixed-precision model.
//!
//! Quantized nodes are modelled as Glow's Interpreter computes them, in ONNX's QDQ form:
//! - activations: `qaic.quant.Quantize` (Glow's rounding) → `DequantizeLinear` on each float
//!   input not already quantized, and on each output (the producer's float result is renamed
//!   `<name>__float`; the dequantized value keeps the original name and id, so graph outputs and
//!   report names do not change);
//! - weights and biases: quantized at transform time into integer constants (`<name>__q`, int8 /
//!   int16 / int32, per tensor, per row or per channel) read through `DequantizeLinear`;
//! - the op itself runs on the dequantized values in float, so results equal integer arithmetic
//!   on the quantized values up to float accumulation order; the output quantize applies the
//!   output's own params (Glow's forced-equal params followed by `RescaleQuantized` give the
//!   same numbers);
//! - then Conv, MatMul (with its bias Add) and Gemm are lowered to integer ops with Glow's
//!   integer arithmetic ([`crate::lower_integer`], Int8, unless `QuantConfig::integer_ops` is
//!   off).
//!
//! fp16 nodes get `Cast` to float16 on their float inputs (constants converted in place) and a
//! `Cast` back to float32 on each output, which keeps the original name.

use std::collections::{BTreeMap, HashMap, HashSet};

use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_tensor::{DType, Shape, Tensor};

use crate::base::{choose_params, quantize, specialize_bias, specialize_bias_weights, to_f16, QType, QuantParams};
use crate::calibration::{choose_quantization_params, CalibrationSpec};
use crate::config::{BiasPrecision, Precision, QuantConfig, Schema};
use crate::ops::{DOMAIN, QUANTIZE_OP};
use crate::profile::Profile;
use crate::QuantError;

/// Where a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodePrecisionKind {
    /// Integer (QDQ-modelled) execution.
    Quantized,
    Float32,
    Float16,
}

/// The decision for one node, with the reason (printed by `-v`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDecision {
    /// Node name for messages (`op -> first output` when unnamed).
    pub node: String,
    pub op_type: String,
    /// First output name (the key of `-node-precision-info` and `-external-quantization`).
    pub first_output: String,
    pub precision: NodePrecisionKind,
    pub reason: String,
}

/// The rewritten graph and what was decided.
#[derive(Clone, Debug)]
pub struct PrecisionResult {
    /// Run it with [`crate::registry`] (it may contain `qaic.quant.Quantize`).
    pub graph: Graph,
    /// One decision per node (top level, after constant folding and BatchNormalization
    /// merging), in node order.
    pub decisions: Vec<NodeDecision>,
    /// Quantization params chosen per tensor name (activations per tensor; weights/bias list
    /// their first row/channel when per-axis).
    pub params: BTreeMap<String, QuantParams>,
    /// Warnings (fp16 clipping of constants, ...), also logged.
    pub warnings: Vec<String>,
    /// Quantized Conv / MatMul / Gemm lowered to integer ops ([`crate::lower_integer`]).
    pub integer_ops: usize,
}

impl PrecisionResult {
    /// Number of nodes per precision.
    pub fn counts(&self) -> (usize, usize, usize) {
        let c = |k| self.decisions.iter().filter(|d| d.precision == k).count();
        (c(NodePrecisionKind::Quantized), c(NodePrecisionKind::Float32), c(NodePrecisionKind::Float16))
    }
}

/// ONNX op types with a quantized kernel (after Glow's Interpreter `isOpSupported`).
const QUANTIZABLE: &[&str] = &[
    "Add", "ArgMax", "ArgMin", "AveragePool", "Clip", "Concat", "Conv", "DepthToSpace", "Div", "Flatten", "Gather",
    "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Identity", "LeakyRelu", "LRN", "MatMul", "Max", "MaxPool", "Min",
    "Mul", "Pad", "Relu", "Reshape", "Resize", "Sigmoid", "Slice", "SpaceToDepth", "Squeeze", "Sub", "Sum", "Tanh",
    "TopK", "Transpose", "Unsqueeze",
];

/// Profiled ranges beyond ±this are masks (e.g. −FLT_MAX), never quantized.
const MASK_RANGE: f32 = 1e30;

/// Whether an op type has a quantized kernel in this pass.
pub fn is_quantizable(op_type: &str) -> bool {
    QUANTIZABLE.contains(&op_type)
}

/// How a node input is treated when the node is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Activation,
    Weight,
    Bias,
    /// Stays float and needs no profile (Clip bounds, Resize roi/scales, Pad value).
    Param,
}

fn role(n: &Node, g: &Graph, i: usize) -> Role {
    let is_const = |k: usize| n.inputs.get(k).copied().flatten().is_some_and(|v| g.value(v).constant.is_some());
    match (n.op_type.as_str(), i) {
        ("Clip", 1 | 2) | ("Resize", 1 | 2) | ("Pad", 2) => Role::Param,
        ("Conv", 1) if is_const(1) => Role::Weight,
        ("Conv", 2) if is_const(1) && is_const(2) => Role::Bias,
        ("MatMul", 1) if is_const(1) => Role::Weight,
        ("Gemm", 1) if is_const(1) => Role::Weight,
        ("Gemm", 2)
            if is_const(1)
                && is_const(2)
                && n.attr_float("alpha").unwrap_or(1.0) == 1.0
                && n.attr_float("beta").unwrap_or(1.0) == 1.0 =>
        {
            Role::Bias
        }
        _ => Role::Activation,
    }
}

/// fp16 nodes keep these inputs in float32 (ONNX requires float for them).
fn keeps_f32_input(op: &str, i: usize) -> bool {
    matches!((op, i), ("Resize", 1 | 2) | ("Upsample", 1) | ("NonMaxSuppression", _) | ("RoiAlign", 1))
}

fn dtype_of(g: &Graph, v: ValueId) -> Option<DType> {
    let d = g.value(v);
    d.constant.as_ref().map(|t| t.dtype()).or_else(|| d.ty.as_ref().and_then(|t| t.tensor_dtype()))
}

fn with_dtype(ty: &Option<ValueType>, dt: DType) -> Option<ValueType> {
    match ty {
        Some(ValueType::Tensor { shape, .. }) => Some(ValueType::Tensor { dtype: dt, shape: shape.clone() }),
        _ => Some(ValueType::Tensor { dtype: dt, shape: None }),
    }
}

fn qtype_of(p: Precision) -> QType {
    match p {
        Precision::Int8 => QType::Int8,
        Precision::Int16 => QType::Int16,
    }
}

/// Builds the rewritten graph step by step.
struct Rewriter {
    g: Graph,
    names: HashSet<String>,
    new_nodes: Vec<Node>,
    warnings: Vec<String>,
    params: BTreeMap<String, QuantParams>,
    /// Activation value → its dequantized (on-grid) form.
    qdq: HashMap<ValueId, ValueId>,
    /// Float value → its fp16 form.
    half: HashMap<ValueId, ValueId>,
}

impl Rewriter {
    fn fresh(&mut self, base: &str, ty: Option<ValueType>) -> ValueId {
        let mut name = base.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        self.g.add_value(name, ty)
    }
    fn constant(&mut self, base: &str, t: Tensor) -> ValueId {
        let ty = Some(ValueType::tensor(t.dtype(), Shape::known(t.shape())));
        let id = self.fresh(base, ty);
        self.g.value_mut(id).constant = Some(t);
        id
    }
    fn node(&mut self, domain: &str, op: &str, inputs: Vec<Option<ValueId>>, out: ValueId, attrs: Vec<(&str, Attr)>) {
        self.new_nodes.push(Node {
            name: String::new(),
            domain: domain.into(),
            op_type: op.into(),
            inputs,
            outputs: vec![Some(out)],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        });
    }

    /// Scale and zero-point constants of per-tensor params.
    fn scale_zp(&mut self, base: &str, p: QuantParams, q: QType) -> Result<(ValueId, ValueId), QuantError> {
        let s = self.constant(&format!("{base}__scale"), Tensor::scalar(p.scale));
        let z = match q {
            QType::Int8 => Tensor::scalar(p.offset as i8),
            QType::UInt8 => Tensor::scalar(p.offset as u8),
            QType::Int16 => Tensor::scalar(p.offset as i16),
            QType::Int32 => Tensor::scalar(p.offset),
        };
        let z = self.constant(&format!("{base}__zero_point"), z);
        Ok((s, z))
    }

    /// `Quantize(src) → DequantizeLinear → dst` for an activation.
    fn qdq_into(&mut self, src: ValueId, dst: ValueId, name: &str, p: QuantParams, q: QType) -> Result<(), QuantError> {
        let (s, z) = self.scale_zp(name, p, q)?;
        let ty = with_dtype(&self.g.value(dst).ty, q.dtype());
        let qv = self.fresh(&format!("{name}__q"), ty);
        self.node(DOMAIN, QUANTIZE_OP, vec![Some(src), Some(s), Some(z)], qv, vec![]);
        self.node("", "DequantizeLinear", vec![Some(qv), Some(s), Some(z)], dst, vec![]);
        Ok(())
    }

    /// An integer constant with per-tensor or per-axis params, read through DequantizeLinear.
    fn quantized_constant(
        &mut self,
        v: ValueId,
        params: &[QuantParams],
        axis: Option<usize>,
        q: QType,
    ) -> Result<ValueId, QuantError> {
        let name = self.g.value(v).name.clone();
        let t = self.g.value(v).constant.clone().ok_or_else(|| QuantError::Graph(format!("`{name}` is not a constant")))?;
        let data = t.view::<f32>().map_err(|e| QuantError::Graph(format!("constant `{name}`: {e}")))?;
        let shape = t.shape().to_vec();
        let (n_axis, inner) = match axis {
            Some(a) if a < shape.len() => (shape[a], shape[a + 1..].iter().product::<usize>().max(1)),
            Some(a) => return Err(QuantError::Graph(format!("constant `{name}` has no axis {a}"))),
            None => (1, 1),
        };
        if axis.is_some() && params.len() != n_axis {
            return Err(QuantError::Graph(format!("constant `{name}`: {} params for {n_axis} slices", params.len())));
        }
        let pidx = |i: usize| if axis.is_some() { (i / inner) % n_axis } else { 0 };
        let vals: Vec<i64> = data.iter().enumerate().map(|(i, &x)| quantize(x, params[pidx(i)], q)).collect();
        let qt = match q {
            QType::Int8 => Tensor::from_vec(shape.clone(), vals.iter().map(|&x| x as i8).collect()),
            QType::UInt8 => Tensor::from_vec(shape.clone(), vals.iter().map(|&x| x as u8).collect()),
            QType::Int16 => Tensor::from_vec(shape.clone(), vals.iter().map(|&x| x as i16).collect()),
            QType::Int32 => Tensor::from_vec(shape.clone(), vals.iter().map(|&x| x as i32).collect()),
        }
        .map_err(|e| QuantError::Graph(format!("constant `{name}`: {e}")))?;
        let qc = self.constant(&format!("{name}__q"), qt);
        let (s, z) = if axis.is_some() {
            let st = Tensor::from_vec(vec![params.len()], params.iter().map(|p| p.scale).collect());
            let zt = match q {
                QType::Int8 => Tensor::from_vec(vec![params.len()], params.iter().map(|p| p.offset as i8).collect()),
                QType::UInt8 => Tensor::from_vec(vec![params.len()], params.iter().map(|p| p.offset as u8).collect()),
                QType::Int16 => Tensor::from_vec(vec![params.len()], params.iter().map(|p| p.offset as i16).collect()),
                QType::Int32 => Tensor::from_vec(vec![params.len()], params.iter().map(|p| p.offset).collect()),
            };
            let st = st.map_err(|e| QuantError::Graph(e.to_string()))?;
            let zt = zt.map_err(|e| QuantError::Graph(e.to_string()))?;
            (self.constant(&format!("{name}__scale"), st), self.constant(&format!("{name}__zero_point"), zt))
        } else {
            self.scale_zp(&name, params[0], q)?
        };
        let ty = self.g.value(v).ty.clone();
        let dq = self.fresh(&format!("{name}__dq"), ty);
        let attrs = match axis {
            Some(a) => vec![("axis", Attr::Int(a as i64))],
            None => vec![],
        };
        self.node("", "DequantizeLinear", vec![Some(qc), Some(s), Some(z)], dq, attrs);
        match axis {
            Some(a) => tracing::debug!("constant `{name}`: {} per axis {a} ({} scales)", q.name(), params.len()),
            None => tracing::debug!("constant `{name}`: {} per tensor (scale {}, offset {})", q.name(), params[0].scale, params[0].offset),
        }
        self.params.insert(name, params[0]);
        Ok(dq)
    }
}

/// Per-axis min/max of a float constant.
fn axis_ranges(t: &Tensor, axis: usize) -> Option<Vec<(f32, f32)>> {
    let d = t.view::<f32>().ok()?;
    let shape = t.shape();
    let n = *shape.get(axis)?;
    let inner: usize = shape[axis + 1..].iter().product();
    let mut r = vec![(f32::INFINITY, f32::NEG_INFINITY); n];
    for (i, &x) in d.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        let k = (i / inner.max(1)) % n;
        r[k].0 = r[k].0.min(x);
        r[k].1 = r[k].1.max(x);
    }
    Some(r.into_iter().map(|(a, b)| if a > b { (0.0, 0.0) } else { (a, b) }).collect())
}

/// Decides every node's precision and rewrites the graph (see the module doc).
///
/// `profile` gives the activation/constant ranges (call [`Profile::check_graph`] first so a
/// profile of another model is refused); `None` with no external quantization means no node is
/// quantized and only the fp16 rules apply. Nodes whose float tensors lack params stay float.
pub fn apply_precision(graph: &Graph, profile: Option<&Profile>, cfg: &QuantConfig) -> Result<PrecisionResult, QuantError> {
    cfg.validate()?;
    let mut g = graph.clone();
    g.sort_topologically().map_err(|e| QuantError::Graph(e.to_string()))?;
    // Make every value typed when possible (dtype decides what is float).
    if g.nodes.iter().flat_map(|n| n.outputs.iter().flatten()).any(|v| g.value(*v).ty.is_none()) {
        if let Err(e) = qaic_ir::infer_shapes(&mut g, &qaic_ir::Bindings::default()) {
            tracing::debug!("shape inference before quantization failed: {e}");
        }
    }
    let first_outputs: HashMap<String, usize> = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.outputs.iter().flatten().next().map(|v| (g.value(*v).name.clone(), i)))
        .collect();
    let unknown: Vec<&String> = cfg
        .node_precision
        .fp16
        .iter()
        .chain(&cfg.node_precision.fp32)
        .filter(|n| !first_outputs.contains_key(*n))
        .collect();
    if !unknown.is_empty() {
        return Err(QuantError::Config(format!(
            "-node-precision-info names no node's first output: {}",
            unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(ext) = &cfg.external {
        let names = g.name_index();
        let unknown: Vec<&String> = ext.entries.keys().filter(|n| !names.contains_key(n.as_str())).collect();
        if !unknown.is_empty() {
            return Err(QuantError::Config(format!(
                "-external-quantization names no tensor of the graph: {}",
                unknown.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    // Glow's pre-quantization clean-up: constant folding, BatchNormalization into Conv.
    let prepared = crate::prepare::prepare_graph(&mut g, cfg.channelwise)?;
    if prepared != crate::prepare::Prepared::default() {
        tracing::info!(
            "before quantization: {} constant node(s) folded, {} BatchNormalization merged into Conv",
            prepared.folded_nodes,
            prepared.merged_batchnorms
        );
    }
    let quantizing = profile.is_some() || cfg.external.is_some();
    let act_q = qtype_of(cfg.precision);
    let bias_q = match cfg.bias_precision {
        BiasPrecision::Int8 => QType::Int8,
        BiasPrecision::Int32 => QType::Int32,
    };

    // Per-tensor params of a value in a role; None when there is no profile entry.
    let params_for = |v: ValueId, r: Role, g: &Graph| -> Option<(QuantParams, QType)> {
        let d = g.value(v);
        if let Some(e) = cfg.external.as_ref().and_then(|x| x.entries.get(&d.name)) {
            let q = e.qtype.unwrap_or(if r == Role::Bias { bias_q } else { act_q });
            return Some((e.params, q));
        }
        let is_const = d.constant.is_some();
        // Constants are quantized from their data (the profile holds the same min/max for the
        // original ones; folded and merged constants are not in it).
        let from_data;
        let tp = match d.constant.as_ref().filter(|t| t.dtype() == DType::F32).and_then(|t| t.view::<f32>().ok()) {
            Some(data) if profile.is_some() => {
                let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                for &x in data.iter().filter(|x| !x.is_nan()) {
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
                if lo > hi {
                    (lo, hi) = (0.0, 0.0);
                }
                from_data = crate::TensorProfile { min: lo, max: hi, histogram: Vec::new() };
                &from_data
            }
            _ => profile?.entries.get(&d.name)?,
        };
        // Masking values (−FLT_MAX attention masks) would squeeze every real value onto one
        // step: such tensors are not quantized, their producers and readers stay float.
        if tp.min < -MASK_RANGE || tp.max > MASK_RANGE {
            return None;
        }
        let scalar = d.constant.as_ref().map(|t| t.len() == 1).unwrap_or(false)
            || d.ty.as_ref().and_then(|t| t.tensor_shape()).and_then(|s| s.concrete()).is_some_and(|s| s.iter().product::<usize>() == 1);
        let (schema, q) = match r {
            Role::Bias => (cfg.schema_constants, bias_q),
            _ if is_const => (cfg.schema_constants, act_q),
            _ => (cfg.schema_activations, act_q),
        };
        // Glow never calibrates biases, scalars or constants.
        let spec = if r == Role::Bias || is_const || scalar {
            CalibrationSpec::NONE
        } else {
            CalibrationSpec { calibration: cfg.calibration, percentile: cfg.percentile }
        };
        let h = tp.histogram_f32();
        Some((choose_quantization_params(tp.min, tp.max, &h, schema, q, spec), q))
    };

    // 1. Decisions.
    let mut decisions = Vec::with_capacity(g.nodes.len());
    for n in &g.nodes {
        let first = n.outputs.iter().flatten().next().map(|v| g.value(*v).name.clone()).unwrap_or_default();
        let float_in: Vec<(usize, ValueId)> = n
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .filter(|(_, v)| dtype_of(&g, *v) == Some(DType::F32))
            .collect();
        let float_out: Vec<ValueId> =
            n.outputs.iter().flatten().copied().filter(|v| dtype_of(&g, *v) == Some(DType::F32)).collect();
        let has_sub = n.attrs.values().any(|a| matches!(a, Attr::Graph(_) | Attr::Graphs(_)));
        let fp16_ok = !has_sub && n.domain.is_empty();
        let (precision, reason) = if float_in.is_empty() && float_out.is_empty() {
            (NodePrecisionKind::Float32, "no float32 tensors".to_string())
        } else if cfg.node_precision.fp16.contains(&first) {
            if fp16_ok {
                (NodePrecisionKind::Float16, "listed in -node-precision-info FP16NodeInstanceNames".to_string())
            } else {
                (NodePrecisionKind::Float32, "listed for fp16, but nodes with subgraphs or custom domains stay float32".to_string())
            }
        } else if cfg.node_precision.fp32.contains(&first) {
            (NodePrecisionKind::Float32, "listed in -node-precision-info FP32NodeInstanceNames".to_string())
        } else if cfg.keep_original_op_types.contains(&n.op_type) {
            (NodePrecisionKind::Float32, format!("{} is in -keep-original-precision-for-nodes", n.op_type))
        } else if cfg.fp16_op_types.contains(&n.op_type) && fp16_ok {
            (NodePrecisionKind::Float16, format!("{} is in -execute-nodes-in-fp16", n.op_type))
        } else {
            let why_not = if !quantizing {
                Some("no profile (not quantizing)".to_string())
            } else if !n.domain.is_empty() || !is_quantizable(&n.op_type) {
                Some(format!("no quantized kernel for {}", n.qualified_op()))
            } else {
                let missing = float_in
                    .iter()
                    .filter(|(i, _)| role(n, &g, *i) != Role::Param)
                    .map(|(_, v)| *v)
                    .chain(float_out.iter().copied())
                    .find(|v| params_for(*v, Role::Activation, &g).is_none());
                missing.map(|v| {
                    format!(
                        "tensor `{}` has no quantization params (no profile entry, or a masking range beyond ±1e30)",
                        g.value(v).name
                    )
                })
            };
            match why_not {
                None => (NodePrecisionKind::Quantized, format!("quantized ({})", act_q.name())),
                Some(r) if cfg.convert_to_fp16 && fp16_ok => (NodePrecisionKind::Float16, format!("{r}; -convert-to-fp16")),
                Some(r) => (NodePrecisionKind::Float32, r),
            }
        };
        decisions.push(NodeDecision { node: n.display_name(&g), op_type: n.op_type.clone(), first_output: first, precision, reason });
    }

    // 2. Rewrite.
    let names: HashSet<String> = g.values.iter().map(|v| v.name.clone()).collect();
    let old_nodes = std::mem::take(&mut g.nodes);
    let mut rw = Rewriter {
        g,
        names,
        new_nodes: Vec::new(),
        warnings: Vec::new(),
        params: BTreeMap::new(),
        qdq: HashMap::new(),
        half: HashMap::new(),
    };
    let mut const_cache: HashMap<ValueId, ValueId> = HashMap::new();
    // Glow's FC lowered to MatMul + BatchedAdd: `Add(MatMul(x, W), b)` with constant W [K, N]
    // and constant b [N] gets an accumulator bias (facts §4), keyed by the Add's node index.
    // The MatMul result of such a pair stays an unrounded accumulator when the Add is its only
    // reader (Glow's FullyConnected requantizes once, after the bias).
    let mut fc_accumulators: HashSet<ValueId> = HashSet::new();
    let fc_bias: HashMap<usize, (usize, ValueId, ValueId)> = {
        // (`rw.g.nodes` is empty here: the nodes are being rebuilt.)
        let mut producers: HashMap<ValueId, usize> = HashMap::new();
        for (i, n) in old_nodes.iter().enumerate() {
            for o in n.outputs.iter().flatten() {
                producers.insert(*o, i);
            }
        }
        let mut m = HashMap::new();
        for (ai, an) in old_nodes.iter().enumerate() {
            if an.op_type != "Add" || an.inputs.len() != 2 || decisions[ai].precision != NodePrecisionKind::Quantized {
                continue;
            }
            for k in 0..2 {
                let (Some(mv), Some(bv)) = (an.inputs[k], an.inputs[1 - k]) else { continue };
                let Some(&pi) = producers.get(&mv) else { continue };
                let mm = &old_nodes[pi];
                let (Some(Some(x)), Some(Some(w))) = (mm.inputs.first(), mm.inputs.get(1)) else { continue };
                let wt = rw.g.value(*w).constant.as_ref();
                let bt = rw.g.value(bv).constant.as_ref();
                if mm.op_type == "MatMul"
                    && decisions[pi].precision == NodePrecisionKind::Quantized
                    && wt.is_some_and(|t| t.rank() == 2)
                    && bt.is_some_and(|t| t.rank() == 1 && t.dtype() == DType::F32 && Some(t.shape()[0]) == wt.map(|w| w.shape()[1]))
                {
                    m.insert(ai, (1 - k, *x, *w));
                    let readers = old_nodes.iter().flat_map(|n| n.inputs.iter().flatten()).filter(|v| **v == mv).count();
                    if readers == 1 && !rw.g.outputs.contains(&mv) && !cfg.keep.contains(&rw.g.value(mv).name) {
                        fc_accumulators.insert(mv);
                    }
                    break;
                }
            }
        }
        m
    };
    for (ni, (mut n, d)) in old_nodes.into_iter().zip(&decisions).enumerate() {
        match d.precision {
            NodePrecisionKind::Quantized => {
                // Weights first: bias params depend on the weight scale.
                let mut in_scale = None;
                let mut w_params: Vec<QuantParams> = Vec::new();
                let inputs = n.inputs.clone();
                // Roles are decided on the original inputs (weights get replaced below).
                let mut roles: Vec<Role> = (0..inputs.len()).map(|i| role(&n, &rw.g, i)).collect();
                let mut in_scale_fc = None;
                if let Some(&(bi, x, w)) = fc_bias.get(&ni) {
                    roles[bi] = Role::Bias;
                    let ps = params_for(x, Role::Activation, &rw.g).map(|p| p.0.scale);
                    let pw = params_for(w, Role::Weight, &rw.g).map(|p| p.0);
                    in_scale_fc = ps;
                    if let Some(pw) = pw {
                        w_params = vec![pw];
                    }
                }
                for (i, v) in inputs.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    if dtype_of(&rw.g, v) != Some(DType::F32) {
                        continue;
                    }
                    let r = roles[i];
                    match r {
                        Role::Param | Role::Bias => {}
                        Role::Activation => {
                            let (p, q) = params_for(v, r, &rw.g).ok_or_else(|| QuantError::Graph("params vanished".into()))?;
                            if i == 0 {
                                in_scale = Some(p.scale);
                            }
                            let name = rw.g.value(v).name.clone();
                            let nv = if rw.g.value(v).constant.is_some() {
                                match const_cache.get(&v) {
                                    Some(c) => *c,
                                    None => {
                                        let c = rw.quantized_constant(v, &[p], None, q)?;
                                        const_cache.insert(v, c);
                                        c
                                    }
                                }
                            } else if let Some(dq) = rw.qdq.get(&v) {
                                *dq
                            } else {
                                let ty = rw.g.value(v).ty.clone();
                                let dq = rw.fresh(&format!("{name}__dq"), ty);
                                rw.qdq_into(v, dq, &name, p, q)?;
                                rw.params.insert(name, p);
                                rw.qdq.insert(v, dq);
                                dq
                            };
                            n.inputs[i] = Some(nv);
                        }
                        Role::Weight => {
                            let t = rw.g.value(v).constant.clone().ok_or_else(|| QuantError::Graph("weight is not constant".into()))?;
                            let trans_b = n.attr_int("transB").unwrap_or(0) != 0;
                            let (axis, schema) = match n.op_type.as_str() {
                                "Conv" if cfg.channelwise => {
                                    let s = if cfg.schema_constants == Schema::Asymmetric { Schema::Symmetric } else { cfg.schema_constants };
                                    (Some(0), s)
                                }
                                "MatMul" if cfg.rowwise && t.rank() == 2 => (Some(1), cfg.schema_constants),
                                "Gemm" if cfg.rowwise && t.rank() == 2 => (Some(if trans_b { 0 } else { 1 }), cfg.schema_constants),
                                _ => (None, cfg.schema_constants),
                            };
                            // Rowwise weights are always int8 (Glow); channelwise uses the precision.
                            let wq = if cfg.rowwise && n.op_type != "Conv" && axis.is_some() { QType::Int8 } else { act_q };
                            let per_tensor = params_for(v, r, &rw.g).ok_or_else(|| QuantError::Graph("params vanished".into()))?;
                            w_params = match axis {
                                Some(a) => axis_ranges(&t, a)
                                    .ok_or_else(|| QuantError::Graph(format!("weight `{}` has no axis {a}", rw.g.value(v).name)))?
                                    .into_iter()
                                    .map(|(mn, mx)| choose_params(mn, mx, schema, wq))
                                    .collect(),
                                None => vec![per_tensor.0],
                            };
                            // Channelwise bias specialization may raise filter scales: quantize
                            // the weights after the bias pass below.
                            if !(n.op_type == "Conv" && cfg.channelwise) {
                                let c = rw.quantized_constant(v, &w_params, axis, wq)?;
                                n.inputs[i] = Some(c);
                                // Rowwise bias uses the per-tensor weight scale from the profile.
                                if axis.is_some() {
                                    w_params = vec![per_tensor.0];
                                }
                            }
                        }
                    }
                }
                // Bias (needs input and weight scales).
                let bias_idx = n.inputs.iter().enumerate().position(|(i, v)| v.is_some() && roles[i] == Role::Bias);
                let in_scale = in_scale_fc.or(in_scale).unwrap_or(1.0);
                if n.op_type == "Conv" && cfg.channelwise {
                    let wv = n.inputs[1].ok_or_else(|| QuantError::Graph("conv without weights".into()))?;
                    if let Some(bi) = bias_idx {
                        let bv = n.inputs[bi].ok_or_else(|| QuantError::Graph("bias vanished".into()))?;
                        let bt = rw.g.value(bv).constant.clone().ok_or_else(|| QuantError::Graph("bias not constant".into()))?;
                        let bd = bt.view::<f32>().map_err(|e| QuantError::Graph(e.to_string()))?.into_owned();
                        let bschema =
                            if cfg.schema_constants == Schema::Asymmetric { Schema::Symmetric } else { cfg.schema_constants };
                        let mut bp = Vec::with_capacity(bd.len());
                        for (c, &b) in bd.iter().enumerate() {
                            let raw = choose_params(b, b, bschema, bias_q);
                            let w = w_params.get(c).copied().unwrap_or(w_params[0]);
                            let (nw, nb) = specialize_bias_weights(raw, bias_q, in_scale, w, b == 0.0);
                            if c < w_params.len() {
                                w_params[c] = nw;
                            }
                            bp.push(nb);
                        }
                        let c = rw.quantized_constant(bv, &bp, Some(0), bias_q)?;
                        n.inputs[bi] = Some(c);
                    }
                    let c = rw.quantized_constant(wv, &w_params, Some(0), act_q)?;
                    n.inputs[1] = Some(c);
                } else if let Some(bi) = bias_idx {
                    let bv = n.inputs[bi].ok_or_else(|| QuantError::Graph("bias vanished".into()))?;
                    let (p, q) = params_for(bv, Role::Bias, &rw.g).ok_or_else(|| QuantError::Graph("params vanished".into()))?;
                    let all_zero = rw.g.value(bv).constant.as_ref().and_then(|t| t.view::<f32>().ok().map(|d| d.iter().all(|&x| x == 0.0))).unwrap_or(false);
                    let w_scale = w_params.first().map(|p| p.scale).unwrap_or(1.0);
                    let sp = specialize_bias(p, q, in_scale, w_scale, all_zero);
                    let c = rw.quantized_constant(bv, &[sp], None, q)?;
                    n.inputs[bi] = Some(c);
                }
                // A Gather from a constant table (an embedding lookup) returns table values, so
                // its output keeps the table's params: the lookup then adds no second rounding
                // and no calibration clipping (onnxruntime and TFLite likewise give data-movement
                // ops their input's params). With its own calibrated params, minilm's word
                // embedding lookup lost 20 dB (26.3 dB for the table, 6.8 dB after the lookup).
                let table_params = match (n.op_type.as_str(), inputs.first().copied().flatten()) {
                    ("Gather", Some(t)) if rw.g.value(t).constant.is_some() && dtype_of(&rw.g, t) == Some(DType::F32) => {
                        params_for(t, Role::Activation, &rw.g)
                    }
                    _ => None,
                };
                // Outputs: float result renamed, QDQ back into the original value.
                let mut pend = Vec::new();
                for k in 0..n.outputs.len() {
                    let Some(o) = n.outputs[k] else { continue };
                    if dtype_of(&rw.g, o) != Some(DType::F32) {
                        continue;
                    }
                    if fc_accumulators.contains(&o) {
                        // Read unrounded by its bias Add (see above).
                        rw.qdq.insert(o, o);
                        continue;
                    }
                    let (p, q) = match table_params {
                        Some(tp) if k == 0 => tp,
                        _ => params_for(o, Role::Activation, &rw.g).ok_or_else(|| QuantError::Graph("params vanished".into()))?,
                    };
                    let name = rw.g.value(o).name.clone();
                    let ty = rw.g.value(o).ty.clone();
                    let raw = rw.fresh(&format!("{name}__float"), ty);
                    n.outputs[k] = Some(raw);
                    rw.qdq.insert(o, o);
                    rw.params.insert(name.clone(), p);
                    pend.push((raw, o, name, p, q));
                }
                rw.new_nodes.push(n);
                for (raw, o, name, p, q) in pend {
                    rw.qdq_into(raw, o, &name, p, q)?;
                }
            }
            NodePrecisionKind::Float16 => {
                for i in 0..n.inputs.len() {
                    let Some(v) = n.inputs[i] else { continue };
                    if dtype_of(&rw.g, v) != Some(DType::F32) || keeps_f32_input(&n.op_type, i) {
                        continue;
                    }
                    let h = match rw.half.get(&v) {
                        Some(h) => *h,
                        None => {
                            let name = rw.g.value(v).name.clone();
                            let h = if let Some(t) = rw.g.value(v).constant.clone() {
                                let d = t.view::<f32>().map_err(|e| QuantError::Graph(e.to_string()))?;
                                let over = d.iter().filter(|x| x.abs() > 65504.0).count();
                                if over > 0 {
                                    let w = format!("constant `{name}`: {over} value(s) beyond the fp16 range ±65504 clipped");
                                    tracing::warn!("{w}");
                                    rw.warnings.push(w);
                                }
                                let hv: Vec<half::f16> = d.iter().map(|&x| to_f16(x, true)).collect();
                                let ht = Tensor::from_vec(t.shape().to_vec(), hv).map_err(|e| QuantError::Graph(e.to_string()))?;
                                rw.constant(&format!("{name}__fp16"), ht)
                            } else {
                                let ty = with_dtype(&rw.g.value(v).ty, DType::F16);
                                let h = rw.fresh(&format!("{name}__fp16"), ty);
                                rw.node("", "Cast", vec![Some(v)], h, vec![("to", Attr::Int(DType::F16 as i64))]);
                                h
                            };
                            rw.half.insert(v, h);
                            h
                        }
                    };
                    n.inputs[i] = Some(h);
                }
                let mut casts = Vec::new();
                for k in 0..n.outputs.len() {
                    let Some(o) = n.outputs[k] else { continue };
                    if dtype_of(&rw.g, o) != Some(DType::F32) {
                        continue;
                    }
                    let name = rw.g.value(o).name.clone();
                    let ty = with_dtype(&rw.g.value(o).ty, DType::F16);
                    let h = rw.fresh(&format!("{name}__fp16"), ty);
                    n.outputs[k] = Some(h);
                    rw.half.insert(o, h);
                    casts.push((h, o));
                }
                rw.new_nodes.push(n);
                for (h, o) in casts {
                    rw.node("", "Cast", vec![Some(h)], o, vec![("to", Attr::Int(DType::F32 as i64))]);
                }
            }
            NodePrecisionKind::Float32 => rw.new_nodes.push(n),
        }
    }
    let mut g = rw.g;
    g.nodes = rw.new_nodes;
    if g.nodes.iter().any(|n| n.domain == DOMAIN) {
        g.set_opset(DOMAIN, 1);
    }
    g.sort_topologically().map_err(|e| QuantError::Graph(e.to_string()))?;
    g.verify().map_err(|e| QuantError::Graph(format!("the precision pass produced an invalid graph: {e}")))?;
    let integer_ops = if cfg.integer_ops && cfg.precision == Precision::Int8 { crate::integer::lower_integer(&mut g)? } else { 0 };
    for d in &decisions {
        if d.reason != "no float32 tensors" {
            tracing::info!("{} ({}): {:?}: {}", d.node, d.op_type, d.precision, d.reason);
        }
    }
    Ok(PrecisionResult { graph: g, decisions, params: rw.params, warnings: rw.warnings, integer_ops })
}
