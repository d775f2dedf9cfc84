//! Plan-time graph rewrites that make a plan faster without changing what it computes beyond
//! float rounding (see `docs/architecture.md`, "qaic-interp"):
//!
//! 1. **Constant folding**: a node whose inputs are all constants (and that is deterministic
//!    and has no subgraph) is run once at plan time with its own kernel, so folding has
//!    exactly the interpreter's semantics; its outputs become constants. Real exports are
//!    full of these (weights stored as int8 and dequantized by `Cast`/`Mul`, shape arithmetic
//!    on constant shapes).
//! 2. **BatchNormalization and affine ops into Conv**: `Conv -> BatchNormalization` (inference
//!    mode, constant parameters) becomes one Conv with scaled weights and bias, computed in
//!    f64; `Conv -> Add|Mul(constant scalar or per-channel vector)`, repeatedly, joins the
//!    Conv's bias or scales its weights and bias.
//! 3. **Activation into Conv**: `Conv -> Relu|LeakyRelu|Clip|HardSigmoid|HardSwish` runs the
//!    activation in the convolution's epilogue (internal attributes `qaic.activation`,
//!    `qaic.alpha`, `qaic.beta` on the Conv node).
//! 4. **Bias into MatMul**: `MatMul(A, constant B) -> Add(constant vector)` adds the bias in
//!    the GEMM epilogue (internal attribute `qaic.bias`; the bias becomes the third input).
//!
//! Rewrites 2–4 remove intermediate values, so they never touch a value that is a graph
//! output, that [`crate::PlanOptions::keep`] names, or that a subgraph captures; and they are
//! off when [`crate::PlanOptions::optimize`] is false (quantization profiling wants every
//! value of the original graph).

use qaic_ir::{Attr, Graph, Node, ValueId};
use qaic_tensor::{DType, Tensor, Value};

use crate::registry::{BuildCtx, NoScope, Registry, RunCtx};
use crate::PlanOptions;

/// Internal attribute names of fused nodes (never present in a loaded model: ONNX attribute
/// names cannot contain a dot in any registered schema).
pub(crate) const ACTIVATION: &str = "qaic.activation";
pub(crate) const ALPHA: &str = "qaic.alpha";
pub(crate) const BETA: &str = "qaic.beta";
pub(crate) const BIAS: &str = "qaic.bias";

/// Ops whose results differ from run to run; never folded.
const NONDETERMINISTIC: &[&str] =
    &["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout"];

/// Folds every node whose inputs are all constants; returns the values that became constants.
/// Folded nodes are removed from the graph.
pub(crate) fn fold_constants(graph: &mut Graph, registry: &Registry, options: &PlanOptions) -> Vec<ValueId> {
    let mut folded = Vec::new();
    let mut remove = vec![false; graph.nodes.len()];
    let mut fixed = fixed_constants(graph);
    for ni in 0..graph.nodes.len() {
        let node = &graph.nodes[ni];
        let has_subgraph = node.attrs.values().any(|a| matches!(a, Attr::Graph(_) | Attr::Graphs(_)));
        let all_const = node.inputs.iter().flatten().all(|v| fixed[v.index()]);
        if !all_const
            || has_subgraph
            || node.inputs.iter().flatten().next().is_none()
            || (node.domain.is_empty() && NONDETERMINISTIC.contains(&node.op_type.as_str()))
        {
            continue;
        }
        let opset = graph.opset_version(&node.domain).unwrap_or(0);
        let Some(def) = registry.lookup(&node.domain, &node.op_type, opset) else { continue };
        let ctx = BuildCtx { node, graph, opset, registry, options };
        let Ok(kernel) = (def.build)(&ctx) else { continue };
        let args: Vec<Option<Value>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|id| graph.value(id).constant.clone()).map(Value::Tensor))
            .collect();
        let refs: Vec<Option<&Value>> = args.iter().map(Option::as_ref).collect();
        // A node that fails here fails at run time too, with its error in context.
        let Ok(outs) = kernel.run(&RunCtx { scope: &NoScope }, &refs) else { continue };
        let mut results: Vec<(ValueId, Tensor)> = Vec::new();
        let mut all_tensors = true;
        for (slot, out) in node.outputs.iter().zip(outs.into_iter().chain(std::iter::repeat(None))) {
            match (slot, out) {
                (Some(id), Some(Value::Tensor(t))) => results.push((*id, t)),
                (Some(_), _) => all_tensors = false,
                (None, _) => {}
            }
        }
        if !all_tensors {
            continue;
        }
        for (id, t) in results {
            graph.value_mut(id).constant = Some(t);
            fixed[id.index()] = true;
            folded.push(id);
        }
        remove[ni] = true;
    }
    retain_nodes(graph, &remove);
    folded
}

/// Values whose constant data cannot change between runs: a graph input with a default
/// (an initializer listed among the inputs, as IR version < 4 models do) can be fed another
/// value, so it is not a constant to fold or fuse.
fn fixed_constants(graph: &Graph) -> Vec<bool> {
    let mut fixed: Vec<bool> = graph.values.iter().map(|v| v.constant.is_some()).collect();
    for i in &graph.inputs {
        fixed[i.index()] = false;
    }
    fixed
}

fn retain_nodes(graph: &mut Graph, remove: &[bool]) {
    let mut i = 0;
    graph.nodes.retain(|_| {
        let r = remove[i];
        i += 1;
        !r
    });
}

/// The standard-ONNX subset of [`fuse`] (Conv → Mul/Add constants folded into the Conv,
/// written-out HardSwish recognised): rewrites whose results are plain ONNX ops, so another
/// consumer of the graph (the device code generator) can apply them and compute what the
/// interpreter computes.
pub(crate) fn simplify(graph: &mut Graph, options: &PlanOptions) {
    fuse_conv_affine(graph, options);
    recognise_hard_swish(graph, options);
}

/// Rewrites 2–4 of the module documentation.
pub(crate) fn fuse(graph: &mut Graph, options: &PlanOptions) {
    simplify(graph, options);
    fold_batch_norms(graph, options);
    fuse_activations(graph, options);
    fuse_matmul_bias(graph, options);
}

/// How many times each value is read (node inputs and subgraph captures); graph outputs and
/// kept values count as an extra, unremovable reader.
fn readers(graph: &Graph, options: &PlanOptions) -> Vec<usize> {
    let mut n = vec![0usize; graph.values.len()];
    for node in &graph.nodes {
        for v in graph.node_reads(node) {
            n[v.index()] += 1;
        }
    }
    for o in &graph.outputs {
        n[o.index()] += usize::MAX / 2;
    }
    for k in &options.keep {
        if let Some(id) = graph.find_value(k) {
            n[id.index()] += usize::MAX / 2;
        }
    }
    n
}

/// For each value, the index of the single node reading it, when exactly one node reads it
/// once and it is not otherwise needed.
fn sole_reader(graph: &Graph, options: &PlanOptions) -> Vec<Option<usize>> {
    let counts = readers(graph, options);
    let mut sole = vec![None; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if counts[v.index()] == 1 {
                sole[v.index()] = Some(i);
            }
        }
    }
    sole
}

/// The constant data of `v`, unless it is a graph input (overridable at run time).
fn fixed(graph: &Graph, v: ValueId) -> Option<&Tensor> {
    if graph.inputs.contains(&v) {
        return None;
    }
    graph.value(v).constant.as_ref()
}

fn const_f32(graph: &Graph, v: Option<&Option<ValueId>>) -> Option<Vec<f32>> {
    let t = fixed(graph, (*v?)?)?;
    if t.dtype() != DType::F32 {
        return None;
    }
    t.to_vec::<f32>().ok()
}

fn is_plain(node: &Node, op: &str) -> bool {
    node.domain.is_empty() && node.op_type == op
}

/// The bias of a Conv with `m` output channels: its constant vector, zeros when it has none,
/// `None` when it is not a fixed f32 vector of `m` values (nothing can be folded into it).
fn conv_bias(graph: &Graph, conv: &Node, m: usize) -> Option<Vec<f32>> {
    match conv.inputs.get(2).copied().flatten() {
        Some(_) => const_f32(graph, conv.inputs.get(2)).filter(|b| b.len() == m),
        None => Some(vec![0.0; m]),
    }
}

/// A Conv whose weights are a constant f32 tensor and that has no fused epilogue yet.
fn plain_conv(graph: &Graph, node: &Node) -> bool {
    is_plain(node, "Conv")
        && !node.attrs.contains_key(ACTIVATION)
        && node.outputs.len() == 1
        && node.inputs.get(1).copied().flatten().and_then(|w| fixed(graph, w)).is_some_and(|w| w.dtype() == DType::F32 && w.rank() >= 3)
}

fn fold_batch_norms(graph: &mut Graph, options: &PlanOptions) {
    let sole = sole_reader(graph, options);
    let mut remove = vec![false; graph.nodes.len()];
    for ci in 0..graph.nodes.len() {
        let conv = &graph.nodes[ci];
        if !plain_conv(graph, conv) {
            continue;
        }
        let Some(Some(y)) = conv.outputs.first().copied() else { continue };
        let Some(bi) = sole[y.index()] else { continue };
        let bn = &graph.nodes[bi];
        if !is_plain(bn, "BatchNormalization")
            || bn.inputs.first().copied().flatten() != Some(y)
            || bn.outputs.iter().skip(1).any(Option::is_some)
            || bn.attr_int("training_mode").unwrap_or(0) != 0
        {
            continue;
        }
        let Some(w) = conv.inputs.get(1).copied().flatten().and_then(|w| fixed(graph, w)).cloned() else { continue };
        let m = w.shape()[0];
        let params: Option<Vec<Vec<f32>>> = (1..5).map(|i| const_f32(graph, bn.inputs.get(i))).collect();
        let Some(p) = params else { continue };
        if m == 0 || p.iter().any(|v| v.len() != m) {
            continue;
        }
        let Some(bias) = conv_bias(graph, conv, m) else { continue };
        let Ok(wv) = w.to_vec::<f32>() else { continue };
        let eps = f64::from(bn.attr_float("epsilon").unwrap_or(1e-5));
        let per = wv.len() / m;
        let mut nw = wv;
        let mut nb = vec![0f32; m];
        for c in 0..m {
            let a = f64::from(p[0][c]) / (f64::from(p[3][c]) + eps).sqrt();
            for v in &mut nw[c * per..(c + 1) * per] {
                *v = (f64::from(*v) * a) as f32;
            }
            nb[c] = ((f64::from(bias[c]) - f64::from(p[2][c])) * a + f64::from(p[1][c])) as f32;
        }
        let (Ok(wt), Ok(bt)) = (Tensor::from_vec(w.shape().to_vec(), nw), Tensor::from_vec(vec![m], nb)) else { continue };
        let bn_out = bn.outputs[0];
        let name = graph.value(y).name.clone();
        let wid = graph.add_constant(format!("{name}.qaic_folded_w"), wt);
        let bid = graph.add_constant(format!("{name}.qaic_folded_b"), bt);
        let conv = &mut graph.nodes[ci];
        conv.inputs = vec![conv.inputs[0], Some(wid), Some(bid)];
        conv.outputs = vec![bn_out];
        remove[bi] = true;
    }
    retain_nodes(graph, &remove);
}

/// `Conv -> Add(c)` and `Conv -> Mul(c)` with a constant `c` that is a scalar or a
/// per-output-channel vector (exporters emit the bias as its own node; PP-LCNet's "learnable
/// affine" blocks scale and shift every Conv output): the Add joins the Conv's bias, the Mul
/// scales its weights and bias. Repeated so chains (`Mul` then `Add`) fold completely.
fn fuse_conv_affine(graph: &mut Graph, options: &PlanOptions) {
    while fuse_conv_affine_once(graph, options) {}
}

fn fuse_conv_affine_once(graph: &mut Graph, options: &PlanOptions) -> bool {
    let sole = sole_reader(graph, options);
    let mut remove = vec![false; graph.nodes.len()];
    let mut changed = false;
    for ci in 0..graph.nodes.len() {
        let conv = &graph.nodes[ci];
        if !plain_conv(graph, conv) {
            continue;
        }
        let Some(w) = conv.inputs.get(1).copied().flatten().and_then(|w| fixed(graph, w)) else { continue };
        let (m, rank) = (w.shape()[0], w.rank());
        let Some(Some(y)) = conv.outputs.first().copied() else { continue };
        let Some(ai) = sole[y.index()] else { continue };
        let op = &graph.nodes[ai];
        let is_mul = is_plain(op, "Mul");
        if !(is_mul || is_plain(op, "Add")) || op.inputs.len() != 2 || op.outputs.len() != 1 || ai < ci || remove[ai] {
            continue;
        }
        let other = if op.inputs[0] == Some(y) { op.inputs[1] } else { op.inputs[0] };
        let Some(c) = other.and_then(|v| fixed(graph, v)) else { continue };
        // Broadcast against [N, M, spatial...] only along the channel axis (or not at all),
        // and never to a higher rank than the Conv output.
        let rb = c.rank();
        let shape_ok = rb <= rank
            && c.shape().iter().enumerate().all(|(i, &d)| d == 1 || (i + rank - rb == 1 && d == m));
        if c.dtype() != DType::F32 || !(c.len() == m || c.len() == 1) || !shape_ok {
            continue;
        }
        let Ok(cv) = c.to_vec::<f32>() else { continue };
        let per_channel = |i: usize| if cv.len() == 1 { cv[0] } else { cv[i] };
        let Some(bias) = conv_bias(graph, conv, m) else { continue };
        let name = graph.value(y).name.clone();
        let wid = if is_mul {
            let Ok(mut wv) = w.to_vec::<f32>() else { continue };
            let per = wv.len() / m.max(1);
            for (i, chunk) in wv.chunks_mut(per.max(1)).enumerate() {
                let s = per_channel(i);
                chunk.iter_mut().for_each(|v| *v *= s);
            }
            let Ok(wt) = Tensor::from_vec(w.shape().to_vec(), wv) else { continue };
            Some(graph.add_constant(format!("{name}.qaic_scaled_w"), wt))
        } else {
            None
        };
        let nb: Vec<f32> =
            bias.iter().enumerate().map(|(i, &b)| if is_mul { b * per_channel(i) } else { b + per_channel(i) }).collect();
        let Ok(bt) = Tensor::from_vec(vec![m], nb) else { continue };
        let out = graph.nodes[ai].outputs[0];
        let bid = graph.add_constant(format!("{name}.qaic_folded_b"), bt);
        let conv = &mut graph.nodes[ci];
        conv.inputs = vec![conv.inputs[0], wid.or(conv.inputs[1]), Some(bid)];
        conv.outputs = vec![out];
        remove[ai] = true;
        changed = true;
    }
    retain_nodes(graph, &remove);
    changed
}

/// The single f32 value of a fixed scalar-like constant.
fn scalar_of(graph: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = fixed(graph, v?)?;
    (t.dtype() == DType::F32 && t.len() == 1).then(|| t.to_vec::<f32>().ok()?.first().copied()).flatten()
}

/// `x * Clip(x + 3, 0, 6) / 6` (HardSwish written out by exporters) becomes `HardSwish(x)`,
/// which the next rewrite can run in a convolution's epilogue.
fn recognise_hard_swish(graph: &mut Graph, options: &PlanOptions) {
    let sole = sole_reader(graph, options);
    let producers = graph.producers();
    let opset = graph.opset_version("").unwrap_or(0);
    if opset < 11 {
        return; // Clip bounds are attributes before opset 11; not worth a second matcher.
    }
    let counts = readers(graph, options);
    let mut remove = vec![false; graph.nodes.len()];
    let producer = |v: Option<ValueId>| v.and_then(|v| producers[v.index()]).map(|n| n.index());
    for di in 0..graph.nodes.len() {
        let div = &graph.nodes[di];
        // Div(m, 6) or Mul(m, 1/6).
        let six = match (div.op_type.as_str(), div.domain.is_empty()) {
            ("Div", true) => scalar_of(graph, div.inputs.get(1).copied().flatten()).is_some_and(|v| v == 6.0),
            ("Mul", true) => scalar_of(graph, div.inputs.get(1).copied().flatten()).is_some_and(|v| (v - 1.0 / 6.0).abs() < 1e-7),
            _ => false,
        };
        if !six || div.outputs.len() != 1 {
            continue;
        }
        let mv = div.inputs[0];
        let Some(mi) = producer(mv) else { continue };
        let mul = &graph.nodes[mi];
        if !is_plain(mul, "Mul") || mul.inputs.len() != 2 || sole[mv.map_or(0, |v| v.index())] != Some(di) {
            continue;
        }
        // One operand is x, the other Clip(Add(x, 3), 0, 6).
        let found = [(0usize, 1usize), (1, 0)].into_iter().find_map(|(xi, ci)| {
            let x = mul.inputs[xi]?;
            let cv = mul.inputs[ci]?;
            let clip_i = producer(Some(cv))?;
            let clip = &graph.nodes[clip_i];
            if !is_plain(clip, "Clip") || sole[cv.index()] != Some(mi) {
                return None;
            }
            if scalar_of(graph, clip.inputs.get(1).copied().flatten()) != Some(0.0)
                || scalar_of(graph, clip.inputs.get(2).copied().flatten()) != Some(6.0)
            {
                return None;
            }
            let av = clip.inputs.first().copied().flatten()?;
            let add_i = producer(Some(av))?;
            let add = &graph.nodes[add_i];
            if !is_plain(add, "Add") || sole[av.index()] != Some(clip_i) || add.inputs.len() != 2 {
                return None;
            }
            let three = if add.inputs[0] == Some(x) { add.inputs[1] } else if add.inputs[1] == Some(x) { add.inputs[0] } else { return None };
            (scalar_of(graph, three) == Some(3.0)).then_some((x, clip_i, add_i))
        });
        let Some((x, clip_i, add_i)) = found else { continue };
        // Before opset 14 there is no HardSwish op: rewrite only when it will certainly fuse
        // into the Conv producing x (read by nothing but this pattern).
        let into_conv = producer(Some(x)).is_some_and(|p| plain_conv(graph, &graph.nodes[p])) && counts[x.index()] == 2;
        if opset < 14 && !into_conv {
            continue;
        }
        let div = &mut graph.nodes[di];
        div.op_type = "HardSwish".into();
        div.inputs = vec![Some(x)];
        div.attrs.clear();
        remove[mi] = true;
        remove[clip_i] = true;
        remove[add_i] = true;
    }
    retain_nodes(graph, &remove);
}

/// The epilogue activation of a node, as (kind, alpha, beta), when it is one the convolution
/// epilogue runs.
fn epilogue_activation(graph: &Graph, node: &Node) -> Option<(&'static str, f32, f32)> {
    if !node.domain.is_empty() || node.inputs.is_empty() {
        return None;
    }
    let opset = graph.opset_version("").unwrap_or(0);
    match node.op_type.as_str() {
        "Relu" => Some(("Relu", 0.0, 0.0)),
        "LeakyRelu" => Some(("LeakyRelu", node.attr_float("alpha").unwrap_or(0.01), 0.0)),
        "HardSigmoid" => Some(("HardSigmoid", node.attr_float("alpha").unwrap_or(0.2), node.attr_float("beta").unwrap_or(0.5))),
        "HardSwish" => Some(("HardSwish", 1.0 / 6.0, 0.5)),
        "Clip" if opset < 11 => {
            Some(("Clip", node.attr_float("min").unwrap_or(f32::MIN), node.attr_float("max").unwrap_or(f32::MAX)))
        }
        "Clip" => {
            let bound = |i: usize, default: f32| -> Option<f32> {
                match node.inputs.get(i).copied().flatten() {
                    None => Some(default),
                    Some(v) => {
                        let t = fixed(graph, v)?;
                        (t.dtype() == DType::F32 && t.len() == 1).then(|| t.to_vec::<f32>().ok()?.first().copied()).flatten()
                    }
                }
            };
            Some(("Clip", bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?))
        }
        _ => None,
    }
}

fn fuse_activations(graph: &mut Graph, options: &PlanOptions) {
    let sole = sole_reader(graph, options);
    let mut remove = vec![false; graph.nodes.len()];
    for ci in 0..graph.nodes.len() {
        if !plain_conv(graph, &graph.nodes[ci]) {
            continue;
        }
        let Some(Some(y)) = graph.nodes[ci].outputs.first().copied() else { continue };
        let Some(ai) = sole[y.index()] else { continue };
        let act = &graph.nodes[ai];
        if act.inputs.first().copied().flatten() != Some(y) || act.outputs.len() != 1 {
            continue;
        }
        let Some((kind, alpha, beta)) = epilogue_activation(graph, act) else { continue };
        let out = act.outputs[0];
        let conv = &mut graph.nodes[ci];
        conv.attrs.insert(ACTIVATION.into(), Attr::String(kind.into()));
        conv.attrs.insert(ALPHA.into(), Attr::Float(alpha));
        conv.attrs.insert(BETA.into(), Attr::Float(beta));
        conv.outputs = vec![out];
        remove[ai] = true;
    }
    retain_nodes(graph, &remove);
}

fn fuse_matmul_bias(graph: &mut Graph, options: &PlanOptions) {
    let sole = sole_reader(graph, options);
    let mut remove = vec![false; graph.nodes.len()];
    for mi in 0..graph.nodes.len() {
        let mm = &graph.nodes[mi];
        if !is_plain(mm, "MatMul") || mm.inputs.len() != 2 || mm.attrs.contains_key(BIAS) {
            continue;
        }
        let Some(b) = mm.inputs[1].and_then(|b| fixed(graph, b)) else { continue };
        if b.dtype() != DType::F32 || b.rank() != 2 {
            continue;
        }
        let n = b.shape()[1];
        let Some(Some(y)) = mm.outputs.first().copied() else { continue };
        let Some(ai) = sole[y.index()] else { continue };
        let add = &graph.nodes[ai];
        if !is_plain(add, "Add") || add.inputs.len() != 2 || add.outputs.len() != 1 {
            continue;
        }
        // The bias is the other operand: a constant f32 vector of N values (any leading 1s),
        // so broadcasting cannot change the output shape.
        let other = if add.inputs[0] == Some(y) { add.inputs[1] } else { add.inputs[0] };
        if add.inputs[0] != Some(y) && add.inputs[1] != Some(y) {
            continue;
        }
        let Some(bias) = other.and_then(|v| fixed(graph, v)) else { continue };
        let a_rank = mm.inputs[0].and_then(|a| graph.value(a).ty.as_ref()).and_then(|t| t.tensor_shape()).map(|s| s.rank());
        let rank_ok = bias.rank() == 1 || a_rank.is_some_and(|r| r >= 2 && bias.rank() <= r);
        if bias.dtype() != DType::F32
            || bias.len() != n
            || bias.shape().last() != Some(&n)
            || !rank_ok
            || !bias.shape()[..bias.rank() - 1].iter().all(|&d| d == 1)
        {
            continue;
        }
        let out = add.outputs[0];
        let mm = &mut graph.nodes[mi];
        mm.inputs.push(other);
        mm.attrs.insert(BIAS.into(), Attr::Int(1));
        mm.outputs = vec![out];
        remove[ai] = true;
    }
    retain_nodes(graph, &remove);
}
