//! Integer lowering: quantized Conv, MatMul and Gemm run as integer ops.
//!
//! [`crate::apply_precision`] first writes every quantized node in QDQ form (see
//! [`crate::transform`]). For the matrix ops that form computes in float between the
//! dequantized inputs and the output quantize, which is most of a quantized run's time and not
//! what an integer accelerator (or Glow's reference Interpreter) computes. This pass replaces
//!
//! ```text
//! DQ(xq) ─┐
//! DQ(wq) ─┼─ Conv ─ Quantize ─ yq          MatMul ─ [Add(DQ(bq))] ─ Quantize ─ yq
//! DQ(bq) ─┘                                Gemm (transA = 0, alpha = beta = 1)
//! ```
//!
//! by [`QCONV_OP`] / [`QMATMUL_OP`] (domain [`crate::DOMAIN`]), whose arithmetic is Glow's
//! Interpreter's (facts sheet §2, `fwdFullyConnectedInstQuantizedImpl`; convolutions follow the
//! same pattern):
//!
//! - `acc = Σ (x − x_zp)(w − w_zp[c])` in i32 (wrapping);
//! - `B[c] = rha(fl32(float(b[c] − b_zp[c]) × fl32(b_scale[c] / fl32(x_scale × w_scale[c]))))`,
//!   computed here, once, into the accumulator-unit bias input;
//! - `y = clamp(rha(fl32(float(acc + B[c]) × m[c])) + y_zp)` with
//!   `m[c] = fl32(fl32(w_scale[c] × x_scale) / y_scale)`, computed here into the multiplier input.
//!
//! `c` is the output channel (Conv) or output column (MatMul); per-tensor parameters are
//! broadcast to every channel, so one op form serves per-tensor, channelwise and rowwise
//! weights. Both the interpreter ([`crate::registry`]) and the virtual AIC100's simulator run
//! these ops with the same `qaic_kernels::quant` kernels, so their results are bit-identical.
//!
//! Only 8-bit activations and weights are lowered: 16-bit products summed over a long reduction
//! can overflow the i32 accumulator (Glow accumulates int16 in i64), so Int16 graphs keep the
//! QDQ form. The dequantize nodes a lowering bypasses stay in the graph (the per-tensor
//! quantization report reads the values they produce); run [`qaic_ir::Graph::prune`] before
//! executing if they are not needed.

use std::collections::HashSet;

use qaic_ir::{Attr, Graph, Node, ValueId};
use qaic_tensor::{DType, Tensor};

use crate::ops::{DOMAIN, QUANTIZE_OP};
use crate::QuantError;

/// `qaic.quant.QConv(x, w, bias, multiplier, w_zero_point, x_zero_point, y_zero_point) -> y`.
///
/// `x` `[N, C, spatial...]` int8/uint8; `w` `[M, C/group, k...]` int8/uint8 constant; `bias`
/// i32 `[M]` in accumulator units; `multiplier` f32 `[M]`; `w_zero_point` `[M]` of `w`'s type;
/// scalar zero points of `x`'s and `y`'s types. Attributes are Conv's (explicit `pads`; no
/// `auto_pad`). The module doc gives the arithmetic.
pub const QCONV_OP: &str = "QConv";

/// `qaic.quant.QMatMul(x, w, bias, multiplier, w_zero_point, x_zero_point, y_zero_point) -> y`:
/// `x` `[..., K]`, `w` `[K, N]` constant, per-column `bias`, `multiplier` and `w_zero_point`
/// `[N]`; otherwise as [`QCONV_OP`].
pub const QMATMUL_OP: &str = "QMatMul";

/// A DequantizeLinear with constant, per-tensor or per-axis parameters.
struct Dq {
    q: ValueId,
    scales: Vec<f32>,
    zps: Vec<i64>,
    /// Axis of per-axis parameters (None: per tensor).
    axis: Option<usize>,
}

/// Integer values of an integer constant.
pub(crate) fn int_values(t: &Tensor) -> Option<Vec<i64>> {
    Some(match t.dtype() {
        DType::I8 => t.view::<i8>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::U8 => t.view::<u8>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::I16 => t.view::<i16>().ok()?.iter().map(|&v| v as i64).collect(),
        DType::I32 => t.view::<i32>().ok()?.iter().map(|&v| v as i64).collect(),
        _ => return None,
    })
}

fn is_8bit(d: Option<DType>) -> bool {
    matches!(d, Some(DType::I8 | DType::U8))
}

/// Scalar zero point tensor of an 8-bit type.
fn zp_tensor(d: DType, v: i64) -> Option<Tensor> {
    match d {
        DType::I8 => Some(Tensor::scalar(v as i8)),
        DType::U8 => Some(Tensor::scalar(v as u8)),
        _ => None,
    }
}

fn zp_vec(d: DType, v: &[i64]) -> Option<Tensor> {
    match d {
        DType::I8 => Tensor::from_vec(vec![v.len()], v.iter().map(|&x| x as i8).collect()).ok(),
        DType::U8 => Tensor::from_vec(vec![v.len()], v.iter().map(|&x| x as u8).collect()).ok(),
        _ => None,
    }
}

struct Lowering<'g> {
    g: &'g Graph,
    producers: Vec<Option<qaic_ir::NodeId>>,
    consumers: Vec<Vec<qaic_ir::NodeId>>,
    outputs: HashSet<ValueId>,
}

impl Lowering<'_> {
    fn dtype(&self, v: ValueId) -> Option<DType> {
        let d = self.g.value(v);
        d.constant.as_ref().map(|t| t.dtype()).or_else(|| d.ty.as_ref().and_then(|t| t.tensor_dtype()))
    }
    fn producer(&self, v: ValueId) -> Option<&Node> {
        self.producers[v.index()].map(|p| self.g.node(p))
    }
    /// The only reader of `v` (which must not be a graph output).
    fn sole_reader(&self, v: ValueId) -> Option<usize> {
        match self.consumers[v.index()].as_slice() {
            [c] if !self.outputs.contains(&v) => {
                // Read once (not e.g. `Add(v, v)`).
                let n = self.g.node(*c);
                (n.inputs.iter().flatten().filter(|i| **i == v).count() == 1).then_some(c.index())
            }
            _ => None,
        }
    }
    fn dq(&self, v: ValueId) -> Option<Dq> {
        let n = self.producer(v)?;
        if n.op_type != "DequantizeLinear" || !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return None;
        }
        let q = n.inputs.first().copied().flatten()?;
        let s = self.g.value(n.inputs.get(1).copied().flatten()?).constant.as_ref()?;
        if s.dtype() != DType::F32 {
            return None;
        }
        let scales = s.to_vec::<f32>().ok()?;
        let zps = match n.inputs.get(2).copied().flatten() {
            Some(z) => int_values(self.g.value(z).constant.as_ref()?)?,
            None => vec![0; scales.len()],
        };
        if zps.len() != scales.len() || scales.is_empty() {
            return None;
        }
        let axis = if s.rank() == 0 || scales.len() == 1 && s.rank() <= 1 && n.attr_int("axis").is_none() {
            None
        } else {
            let r = self.g.value(q).ty.as_ref().and_then(|t| t.tensor_shape()).map(|s| s.rank()).or_else(|| self.g.value(q).constant.as_ref().map(|t| t.rank()))?;
            let a = n.attr_int("axis").unwrap_or(1);
            let a = if a < 0 { a + r as i64 } else { a };
            if a < 0 || a >= r as i64 {
                return None;
            }
            Some(a as usize)
        };
        Some(Dq { q, scales, zps, axis })
    }
    /// `(node index, output, y_scale, y_zp tensor)` of a `qaic.quant.Quantize` that is the sole
    /// reader of `v`, with 8-bit output.
    fn quantize_after(&self, v: ValueId) -> Option<(usize, ValueId, f32, ValueId)> {
        let c = self.sole_reader(v)?;
        let n = &self.g.nodes[c];
        if n.domain != DOMAIN || n.op_type != QUANTIZE_OP || n.inputs.first().copied().flatten() != Some(v) {
            return None;
        }
        let s = self.g.value(n.inputs.get(1).copied().flatten()?).constant.as_ref()?;
        let zv = n.inputs.get(2).copied().flatten()?;
        let z = self.g.value(zv).constant.as_ref()?;
        if s.dtype() != DType::F32 || s.len() != 1 || z.len() != 1 || !is_8bit(Some(z.dtype())) {
            return None;
        }
        let out = n.outputs.first().copied().flatten()?;
        Some((c, out, s.to_vec::<f32>().ok()?[0], zv))
    }
}

/// Per-channel weight params (`n` channels, per-axis along `axis` or per tensor).
fn per_channel(d: &Dq, axis: usize, n: usize) -> Option<(Vec<f32>, Vec<i64>)> {
    match d.axis {
        None => Some((vec![d.scales[0]; n], vec![d.zps[0]; n])),
        Some(a) if a == axis && d.scales.len() == n => Some((d.scales.clone(), d.zps.clone())),
        _ => None,
    }
}

/// The accumulator-unit bias and the output multipliers (module doc).
fn bias_and_multiplier(
    g: &Graph,
    bias: Option<&Dq>,
    x_scale: f32,
    w_scales: &[f32],
    y_scale: f32,
) -> Option<(Vec<i32>, Vec<f32>)> {
    let n = w_scales.len();
    let mult: Vec<f32> = w_scales.iter().map(|&ws| (ws * x_scale) / y_scale).collect();
    let acc = match bias {
        None => vec![0; n],
        Some(b) => {
            let t = g.value(b.q).constant.as_ref()?;
            let vals = int_values(t)?;
            if vals.len() != n && vals.len() != 1 {
                return None;
            }
            let (bs, bz) = match b.axis {
                None => (vec![b.scales[0]; n], vec![b.zps[0]; n]),
                Some(0) if b.scales.len() == n => (b.scales.clone(), b.zps.clone()),
                _ => return None,
            };
            (0..n)
                .map(|c| {
                    let v = if vals.len() == 1 { vals[0] } else { vals[c] };
                    let f = bs[c] / (x_scale * w_scales[c]);
                    let r = ((v - bz[c]) as f32 * f).round();
                    // Saturating like the int30 bias range makes unnecessary in practice.
                    r.clamp(i32::MIN as f32, i32::MAX as f32) as i32
                })
                .collect()
        }
    };
    Some((acc, mult))
}

/// A replacement found for one matrix op.
struct Replacement {
    /// Nodes removed (the op, its output Quantize, a bias Add).
    remove: Vec<usize>,
    /// Inserted at the op's position.
    node: Node,
}

/// Rewrites the quantized Conv / MatMul / Gemm of a QDQ graph (made by
/// [`crate::apply_precision`]) into [`QCONV_OP`] / [`QMATMUL_OP`]; returns how many were
/// lowered. Matrix ops whose inputs are not all 8-bit per-tensor activations and constant
/// weights (and those whose output is not quantized once) keep their QDQ form.
///
/// ```
/// # use qaic_quant::{apply_precision, lower_integer, Profile, QuantConfig};
/// # fn demo(g: &qaic_ir::Graph, p: &Profile) -> Result<(), qaic_quant::QuantError> {
/// let mut q = apply_precision(g, Some(p), &QuantConfig::default())?.graph;
/// let lowered = lower_integer(&mut q)?;
/// println!("{lowered} matrix ops run in int8");
/// # Ok(()) }
/// ```
pub fn lower_integer(g: &mut Graph) -> Result<usize, QuantError> {
    let reps: Vec<(usize, Replacement, Vec<(String, Tensor)>)> = {
        let lw = Lowering { g, producers: g.producers(), consumers: g.consumers(), outputs: g.outputs.iter().copied().collect() };
        g.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.domain.is_empty() || n.domain == "ai.onnx")
            .filter_map(|(i, n)| match n.op_type.as_str() {
                "Conv" => lower_conv(&lw, i, n),
                "MatMul" | "Gemm" => lower_matmul(&lw, i, n),
                _ => None,
            })
            .collect()
    };
    let count = reps.len();
    if count == 0 {
        return Ok(0);
    }
    let mut names: HashSet<String> = g.values.iter().map(|v| v.name.clone()).collect();
    let mut remove = vec![false; g.nodes.len()];
    let mut insert: Vec<Option<Node>> = vec![None; g.nodes.len()];
    for (at, mut rep, consts) in reps {
        // Constants: bias, multiplier, w_zero_point, x_zero_point, y_zero_point (slots 2..7
        // hold placeholders until here).
        for (k, (base, t)) in consts.into_iter().enumerate() {
            let mut name = base.clone();
            let mut j = 1;
            while !names.insert(name.clone()) {
                name = format!("{base}_{j}");
                j += 1;
            }
            let id = g.add_constant(name, t);
            // A sixth constant is a transposed weight (see `consts`).
            rep.node.inputs[if k == 5 { 1 } else { 2 + k }] = Some(id);
        }
        for r in rep.remove {
            remove[r] = true;
        }
        insert[at] = Some(rep.node);
    }
    let old = std::mem::take(&mut g.nodes);
    for (i, n) in old.into_iter().enumerate() {
        if let Some(new) = insert[i].take() {
            g.nodes.push(new);
        }
        if !remove[i] {
            g.nodes.push(n);
        }
    }
    g.set_opset(DOMAIN, 1);
    g.sort_topologically().map_err(|e| QuantError::Graph(e.to_string()))?;
    g.verify().map_err(|e| QuantError::Graph(format!("integer lowering produced an invalid graph: {e}")))?;
    tracing::info!("{count} quantized matrix op(s) lowered to integer kernels");
    Ok(count)
}

type Lowered = (usize, Replacement, Vec<(String, Tensor)>);

fn lower_conv(lw: &Lowering<'_>, i: usize, n: &Node) -> Option<Lowered> {
    let g = lw.g;
    if n.attr_str("auto_pad").is_some_and(|s| s != "NOTSET") {
        return None;
    }
    let x = lw.dq(n.inputs.first().copied().flatten()?)?;
    let w = lw.dq(n.inputs.get(1).copied().flatten()?)?;
    let b = match n.inputs.get(2).copied().flatten() {
        Some(v) => Some(lw.dq(v)?),
        None => None,
    };
    let wt = g.value(w.q).constant.as_ref()?;
    if x.axis.is_some() || !is_8bit(lw.dtype(x.q)) || !is_8bit(Some(wt.dtype())) || wt.rank() < 3 {
        return None;
    }
    let m = wt.shape()[0];
    let (ws, wz) = per_channel(&w, 0, m)?;
    let out = n.outputs.first().copied().flatten()?;
    if n.outputs.iter().skip(1).any(|o| o.is_some()) {
        return None;
    }
    let (qi, y, ys, yzv) = lw.quantize_after(out)?;
    let (bias, mult) = bias_and_multiplier(g, b.as_ref(), x.scales[0], &ws, ys)?;
    let mut attrs = n.attrs.clone();
    attrs.remove("auto_pad");
    if !attrs.contains_key("kernel_shape") {
        attrs.insert("kernel_shape".into(), Attr::Ints(wt.shape()[2..].iter().map(|&d| d as i64).collect()));
    }
    let base = g.value(y).name.clone();
    let consts = consts(&base, bias, mult, wt.dtype(), &wz, lw.dtype(x.q)?, x.zps[0], g.value(yzv).constant.as_ref()?)?;
    let node = Node {
        name: n.name.clone(),
        domain: DOMAIN.into(),
        op_type: QCONV_OP.into(),
        inputs: vec![Some(x.q), Some(w.q), None, None, None, None, None],
        outputs: vec![Some(y)],
        attrs,
    };
    Some((i, Replacement { remove: vec![i, qi], node }, consts))
}

fn lower_matmul(lw: &Lowering<'_>, i: usize, n: &Node) -> Option<Lowered> {
    let g = lw.g;
    let gemm = n.op_type == "Gemm";
    if gemm
        && (n.attr_int("transA").unwrap_or(0) != 0
            || n.attr_float("alpha").unwrap_or(1.0) != 1.0
            || n.attr_float("beta").unwrap_or(1.0) != 1.0)
    {
        return None;
    }
    let x = lw.dq(n.inputs.first().copied().flatten()?)?;
    let w = lw.dq(n.inputs.get(1).copied().flatten()?)?;
    let wt = g.value(w.q).constant.as_ref()?;
    if x.axis.is_some() || !is_8bit(lw.dtype(x.q)) || !is_8bit(Some(wt.dtype())) || wt.rank() != 2 {
        return None;
    }
    let trans_b = gemm && n.attr_int("transB").unwrap_or(0) != 0;
    let (k, nn) = if trans_b { (wt.shape()[1], wt.shape()[0]) } else { (wt.shape()[0], wt.shape()[1]) };
    let (ws, wz) = per_channel(&w, if trans_b { 0 } else { 1 }, nn)?;
    let out = n.outputs.first().copied().flatten()?;
    let mut remove = vec![i];
    // Bias: Gemm's C, or the Add a MatMul's accumulator feeds (Glow's lowered FullyConnected).
    let (b, qout) = match (gemm, n.inputs.get(2).copied().flatten()) {
        (true, Some(c)) => (Some(lw.dq(c)?), out),
        (true, None) => (None, out),
        (false, _) => match lw.sole_reader(out).map(|a| (a, &g.nodes[a])) {
            Some((ai, an)) if an.op_type == "Add" && an.domain.is_empty() && an.inputs.len() == 2 => {
                let other = an.inputs.iter().flatten().copied().find(|v| *v != out)?;
                let bd = lw.dq(other)?;
                let bt = g.value(bd.q).constant.as_ref()?;
                if bt.rank() != 1 || bt.len() != nn {
                    return None;
                }
                remove.push(ai);
                (Some(bd), an.outputs.first().copied().flatten()?)
            }
            _ => (None, out),
        },
    };
    if let Some(b) = &b {
        let bt = g.value(b.q).constant.as_ref()?;
        if bt.len() != nn && bt.len() != 1 || bt.rank() > 1 && !(bt.rank() == 2 && bt.shape()[0] == 1) {
            return None;
        }
    }
    let (qi, y, ys, yzv) = lw.quantize_after(qout)?;
    remove.push(qi);
    let (bias, mult) = bias_and_multiplier(g, b.as_ref(), x.scales[0], &ws, ys)?;
    let base = g.value(y).name.clone();
    let mut consts = consts(&base, bias, mult, wt.dtype(), &wz, lw.dtype(x.q)?, x.zps[0], g.value(yzv).constant.as_ref()?)?;
    // Weights [K, N] (Gemm's transB weights transposed once, here).
    let w_in = if trans_b {
        let vals = int_values(wt)?;
        let tv: Vec<i64> = (0..k * nn).map(|j| vals[(j % nn) * k + j / nn]).collect();
        let t = match wt.dtype() {
            DType::I8 => Tensor::from_vec(vec![k, nn], tv.iter().map(|&v| v as i8).collect()).ok()?,
            _ => Tensor::from_vec(vec![k, nn], tv.iter().map(|&v| v as u8).collect()).ok()?,
        };
        consts.push((format!("{}__t", g.value(w.q).name), t));
        None
    } else {
        Some(w.q)
    };
    let node = Node {
        name: n.name.clone(),
        domain: DOMAIN.into(),
        op_type: QMATMUL_OP.into(),
        inputs: vec![Some(x.q), w_in, None, None, None, None, None],
        outputs: vec![Some(y)],
        attrs: Default::default(),
    };
    Some((i, Replacement { remove, node }, consts))
}

/// The constant inputs 2..=6 (and the caller may append a transposed weight, which
/// [`lower_integer`] then places in slot 1).
#[allow(clippy::too_many_arguments)]
fn consts(base: &str, bias: Vec<i32>, mult: Vec<f32>, w_dt: DType, wz: &[i64], x_dt: DType, x_zp: i64, y_zp: &Tensor) -> Option<Vec<(String, Tensor)>> {
    let n = bias.len();
    Some(vec![
        (format!("{base}__bias_acc"), Tensor::from_vec(vec![n], bias).ok()?),
        (format!("{base}__multiplier"), Tensor::from_vec(vec![n], mult).ok()?),
        (format!("{base}__w_zero_point"), zp_vec(w_dt, wz)?),
        (format!("{base}__x_zero_point"), zp_tensor(x_dt, x_zp)?),
        (format!("{base}__y_zero_point"), y_zp.clone()),
    ])
}
