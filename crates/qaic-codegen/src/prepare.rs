//! Graph preparation: concrete shapes, compile-time constant folding (shape subgraphs and any
//! node whose inputs are all constants, evaluated with the reference interpreter so folding
//! has the interpreter's semantics), and BatchNormalization folded into the preceding Conv.

use qaic_ir::{Bindings, Graph, Node, ValueData, ValueId};
use qaic_tensor::{DType, Tensor};

use crate::CodegenError;

/// Binds symbols, infers shapes, sorts, folds constants and batch norms.
pub(crate) fn prepare(graph: &Graph, bindings: &Bindings) -> Result<Graph, CodegenError> {
    let mut g = graph.clone();
    qaic_ir::bind_symbols(&mut g, bindings);
    qaic_ir::infer_shapes(&mut g, bindings).map_err(|e| CodegenError::Graph(e.to_string()))?;
    g.sort_topologically().map_err(|e| CodegenError::Graph(e.to_string()))?;
    // Folding makes shape inputs constant (Reshape shapes computed from `Shape`), which lets
    // shape inference resolve more values, whose `Shape`s fold in turn: to a fixed point.
    for _ in 0..8 {
        let before = g.values.iter().filter(|v| v.constant.is_some()).count();
        fold_constants(&mut g)?;
        if g.values.iter().filter(|v| v.constant.is_some()).count() == before {
            break;
        }
        qaic_ir::infer_shapes(&mut g, bindings).map_err(|e| CodegenError::Graph(e.to_string()))?;
    }
    // The interpreter's Conv → Mul/Add folding and HardSwish recognition, so the device runs
    // the same arithmetic (and fewer element-wise layers).
    qaic_interp::simplify_graph(&mut g);
    fold_batch_norms(&mut g)?;
    // Drop nodes whose outputs are all constants now.
    let keep: Vec<bool> = g.nodes.iter().map(|n| !n.outputs.iter().flatten().all(|o| g.value(*o).constant.is_some())).collect();
    let mut i = 0;
    g.nodes.retain(|_| {
        let k = keep[i];
        i += 1;
        k
    });
    Ok(g)
}

pub(crate) fn concrete_shape(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    let d = g.value(v);
    if let Some(c) = &d.constant {
        return Some(c.shape().to_vec());
    }
    d.ty.as_ref()?.tensor_shape()?.concrete()
}

pub(crate) fn dtype_of(g: &Graph, v: ValueId) -> Option<DType> {
    let d = g.value(v);
    if let Some(c) = &d.constant {
        return Some(c.dtype());
    }
    d.ty.as_ref()?.tensor_dtype()
}

fn fold_constants(g: &mut Graph) -> Result<(), CodegenError> {
    for ni in 0..g.nodes.len() {
        let node = g.nodes[ni].clone();
        if node.outputs.iter().flatten().all(|o| g.value(*o).constant.is_some()) {
            continue;
        }
        // Shape of a value with a static shape is a constant even though the data is not.
        if node.op_type == "Shape" && node.domain.is_empty() {
            if let (Some(Some(x)), Some(Some(y))) = (node.inputs.first(), node.outputs.first()) {
                if let Some(s) = concrete_shape(g, *x) {
                    let r = s.len() as i64;
                    let norm = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) } as usize;
                    let start = norm(node.attr_int("start").unwrap_or(0));
                    let end = norm(node.attr_int("end").unwrap_or(r));
                    let dims: Vec<i64> = s.iter().map(|&d| d as i64).collect::<Vec<_>>().get(start..end.max(start)).unwrap_or(&[]).to_vec();
                    let t = Tensor::from_vec(vec![dims.len()], dims).map_err(|e| CodegenError::Graph(e.to_string()))?;
                    g.value_mut(*y).constant = Some(t);
                    continue;
                }
            }
        }
        // A `Constant` node has no inputs and is a constant itself (function bodies expanded
        // from ONNX functions are full of them, feeding shape computations).
        let is_constant_op = node.op_type == "Constant" && node.domain.is_empty();
        let all_const = (is_constant_op || !node.inputs.is_empty()) && node.inputs.iter().flatten().all(|i| g.value(*i).constant.is_some());
        let no_subgraph = !node.attrs.values().any(|a| matches!(a, qaic_ir::Attr::Graph(_) | qaic_ir::Attr::Graphs(_)));
        if !all_const || !no_subgraph || matches!(node.op_type.as_str(), "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike" | "Multinomial" | "Bernoulli") {
            continue;
        }
        let outs = eval_node(g, &node).map_err(|msg| CodegenError::Fold { node: node.display_name(g), op: node.op_type.clone(), msg })?;
        for (o, t) in node.outputs.iter().zip(outs) {
            if let (Some(o), Some(t)) = (o, t) {
                g.value_mut(*o).constant = Some(t);
            }
        }
    }
    Ok(())
}

/// Evaluates one node with all-constant inputs on the interpreter.
fn eval_node(g: &Graph, node: &Node) -> Result<Vec<Option<Tensor>>, String> {
    let mut sub = Graph::new("fold");
    sub.opsets = g.opsets.clone();
    let mut n2 = node.clone();
    // A value read twice (e.g. Slice axes == steps) becomes one constant of the subgraph.
    let mut added: Vec<(ValueId, ValueId)> = Vec::new();
    n2.inputs = node
        .inputs
        .iter()
        .map(|i| i.map(|i| {
            if let Some(&(_, s)) = added.iter().find(|(o, _)| *o == i) {
                return s;
            }
            let d: &ValueData = g.value(i);
            let s = sub.add_constant(d.name.clone(), d.constant.clone().unwrap_or_else(|| Tensor::scalar(0f32)));
            added.push((i, s));
            s
        }))
        .collect();
    n2.outputs = node.outputs.iter().map(|o| o.map(|o| sub.add_value(g.value(o).name.clone(), None))).collect();
    sub.outputs = n2.outputs.iter().flatten().copied().collect();
    sub.add_node(n2);
    let plan = qaic_interp::Plan::new(sub).map_err(|e| e.to_string())?;
    let vals = plan.run(Vec::new()).map_err(|e| e.to_string())?;
    let mut it = vals.into_iter();
    Ok(node
        .outputs
        .iter()
        .map(|o| {
            o.and_then(|_| match it.next() {
                Some(qaic_tensor::Value::Tensor(t)) => Some(t),
                _ => None,
            })
        })
        .collect())
}

fn f32s(t: &Tensor) -> Option<Vec<f32>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    t.to_vec::<f32>().ok()
}

/// `Conv -> BatchNormalization` with constant weights and BN parameters, the conv output used
/// only by the BN: scales the weights and bias, and rewires the BN output to the conv.
fn fold_batch_norms(g: &mut Graph) -> Result<(), CodegenError> {
    let producers = g.producers();
    let consumers = g.consumers();
    let mut dead = vec![false; g.nodes.len()];
    for bi in 0..g.nodes.len() {
        let bn = &g.nodes[bi];
        if bn.op_type != "BatchNormalization" || bn.outputs.iter().skip(1).any(|o| o.is_some()) {
            continue;
        }
        let Some(Some(x)) = bn.inputs.first().copied() else { continue };
        let Some(Some(ci)) = producers.get(x.index()).copied() else { continue };
        let ci = ci.index();
        let conv = &g.nodes[ci];
        if conv.op_type != "Conv" || consumers[x.index()].len() != 1 || g.outputs.contains(&x) {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = (1..5).map(|i| bn.inputs.get(i).copied().flatten().and_then(|v| g.value(v).constant.as_ref()).and_then(f32s)).collect();
        let Some(p) = params else { continue };
        let Some(Some(wv)) = conv.inputs.get(1).copied() else { continue };
        let Some(w) = g.value(wv).constant.as_ref().and_then(f32s) else { continue };
        let wshape = g.value(wv).constant.as_ref().map(|t| t.shape().to_vec()).unwrap_or_default();
        let m = wshape.first().copied().unwrap_or(0);
        if p.iter().any(|v| v.len() != m) || m == 0 {
            continue;
        }
        let bias: Vec<f32> = match conv.inputs.get(2).copied().flatten() {
            Some(b) => match g.value(b).constant.as_ref().and_then(f32s) {
                Some(b) if b.len() == m => b,
                _ => continue,
            },
            None => vec![0.0; m],
        };
        let eps = bn.attr_float("epsilon").unwrap_or(1e-5);
        let per = w.len() / m;
        let mut nw = w.clone();
        let mut nb = vec![0f32; m];
        for c in 0..m {
            let a = p[0][c] / (p[3][c] + eps).sqrt();
            for v in &mut nw[c * per..(c + 1) * per] {
                *v *= a;
            }
            nb[c] = (bias[c] - p[2][c]) * a + p[1][c];
        }
        let y = bn.outputs[0];
        let conv_name = conv.name.clone();
        let err = |e: qaic_tensor::TensorError| CodegenError::Graph(e.to_string());
        let wid = g.add_constant(format!("{conv_name}.folded_w"), Tensor::from_vec(wshape, nw).map_err(err)?);
        let bid = g.add_constant(format!("{conv_name}.folded_b"), Tensor::from_vec(vec![m], nb).map_err(err)?);
        let conv = &mut g.nodes[ci];
        conv.inputs = vec![conv.inputs[0], Some(wid), Some(bid)];
        conv.outputs = vec![y];
        dead[bi] = true;
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        let d = dead[i];
        i += 1;
        !d
    });
    Ok(())
}
