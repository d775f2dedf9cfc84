//! Folding of the float islands of quantized graphs into 8-bit device ops.
//!
//! qaic-quant's QDQ form leaves element-wise ops between two 8-bit values in float:
//! `DequantizeLinear → Relu → QuantizeGlow`, or `DequantizeLinear ×2 → Add → QuantizeGlow`
//! for a residual sum. Run as written, every such island widens the activations to float32 in
//! VTCM (and in DDR when a layer boundary falls inside it) and runs on the vector unit at the
//! float32 rate. Both patterns are functions of the 8-bit codes alone, so they fold, without
//! changing a bit of the result:
//!
//! * `QTable`: `x → DequantizeLinear → exact unary ops* → QuantizeGlow` is a function of one
//!   8-bit code, so it becomes a 256-entry table computed here with the interpreter's kernels
//!   (`qaic_kernels::quant::{dequantize, quantize}` and the unary ops' scalar definitions).
//!   Only ops whose float result is exact (Relu, Clip, Neg, Abs, Floor, Ceil, and none) are
//!   folded: a transcendental kernel's SIMD body and scalar tail could round differently, and a
//!   table must equal what the interpreter computes at every position.
//! * `QBinaryGlow`: `DequantizeLinear(a), DequantizeLinear(b) → Add|Sub|Mul|Max|Min →
//!   QuantizeGlow` becomes one op on the two 8-bit tiles with both inputs' and the output's
//!   scale and zero point as attributes; the simulator dequantizes, applies the (exact, IEEE)
//!   float op and quantizes with the same kernels, so the bits are the interpreter's.
//!
//! * `MaxPool` between a dequantize and a quantize pools the 8-bit codes instead:
//!   `MaxPool(DequantizeLinear(x)) = DequantizeLinear(MaxPool(x))` exactly, as dequantizing
//!   (`(q − zp) · scale`, scale > 0) never reverses an order and padding is ignored either way;
//!   the rest of the island becomes a `QTable` after the 8-bit pool.
//!
//! The folded ops are 8-bit vector ops for the cost model (512 lanes per cycle instead of 128),
//! and their operands stay 8-bit wherever they are stored.

use std::collections::{BTreeMap, BTreeSet};

use qaic_device::AttrValue;
use qaic_ir::ValueId;
use qaic_kernels::quant::{QInt, QuantizeRounding, dequantize, quantize};
use qaic_tensor::DType;

use crate::emit::{Ctx, LNode};

/// Float ops whose result is exactly representable (no rounding), so a table of them is exact.
const EXACT_UNARY: &[&str] = &["Relu", "Clip", "Neg", "Abs", "Floor", "Ceil"];
/// Binary ops folded into `QBinaryGlow` (exact in IEEE arithmetic up to the final rounding,
/// which both the interpreter and the simulator do in the same float32 operation).
const FOLD_BINARY: &[&str] = &["Add", "Sub", "Mul", "Max", "Min"];

fn attr_f(n: &LNode, k: &str) -> Option<f64> {
    n.attrs.iter().find(|(x, _)| x == k).and_then(|(_, v)| if let AttrValue::Float(f) = v { Some(*f) } else { None })
}

fn attr_i(n: &LNode, k: &str) -> Option<i64> {
    n.attrs.iter().find(|(x, _)| x == k).and_then(|(_, v)| if let AttrValue::Int(i) = v { Some(*i) } else { None })
}

fn is_q8(d: DType) -> bool {
    matches!(d, DType::I8 | DType::U8)
}

/// Scalar definition of an exact unary op (the same expression as the interpreter's kernel).
fn unary(n: &LNode, x: f32) -> f32 {
    match n.op.as_str() {
        "Relu" => x.max(0.0),
        "Clip" => {
            let lo = attr_f(n, "min").map_or(f32::NEG_INFINITY, |v| v as f32);
            let hi = attr_f(n, "max").map_or(f32::INFINITY, |v| v as f32);
            x.max(lo).min(hi)
        }
        "Neg" => -x,
        "Abs" => x.abs(),
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        _ => x,
    }
}

/// The 256-entry table of `x (dtype, scale, zp) → chain → quantize (dtype, scale, zp)`,
/// indexed by the input byte.
fn table(x: (DType, f32, i32), chain: &[&LNode], y: (DType, f32, i32)) -> Option<Vec<i64>> {
    fn deq<Q: QInt>(codes: &[Q], s: f32, zp: i32) -> Option<Vec<f32>> {
        let mut out = vec![0f32; codes.len()];
        dequantize(codes, &[s], &[Q::from_i32(zp)], 1, &mut out).ok()?;
        Some(out)
    }
    fn q<Q: QInt>(v: &[f32], s: f32, zp: i32) -> Option<Vec<i64>> {
        let mut out = vec![Q::default(); v.len()];
        quantize(v, &[s], &[Q::from_i32(zp)], 1, QuantizeRounding::Glow, &mut out).ok()?;
        Some(out.iter().map(|c| c.to_i32() as i64).collect())
    }
    let bytes: Vec<u8> = (0..=255u8).collect();
    let mut v = match x.0 {
        DType::I8 => deq::<i8>(&bytes.iter().map(|&b| b as i8).collect::<Vec<_>>(), x.1, x.2)?,
        DType::U8 => deq::<u8>(&bytes, x.1, x.2)?,
        _ => return None,
    };
    for n in chain {
        v.iter_mut().for_each(|e| *e = unary(n, *e));
    }
    match y.0 {
        DType::I8 => q::<i8>(&v, y.1, y.2),
        DType::U8 => q::<u8>(&v, y.1, y.2),
        _ => None,
    }
}

/// The (scale, zero point) of a per-tensor `QuantizeGlow` / `DequantizeLinear` layer node.
fn qparams(n: &LNode) -> Option<(f32, i32)> {
    Some((attr_f(n, "scale")? as f32, i32::try_from(attr_i(n, "zero_point").unwrap_or(0)).ok()?))
}

/// Rewrites `ln` (topologically ordered layer nodes) with the two folds; `outputs` are the
/// graph outputs' root values (never folded away).
pub(crate) fn fold(cx: &mut Ctx<'_>, ln: Vec<LNode>, outputs: &[ValueId]) -> Vec<LNode> {
    let producer: BTreeMap<ValueId, usize> = ln.iter().enumerate().map(|(i, l)| (l.output, i)).collect();
    let mut readers: BTreeMap<ValueId, Vec<usize>> = BTreeMap::new();
    for (i, l) in ln.iter().enumerate() {
        for &v in &l.inputs {
            readers.entry(cx.r(v)).or_default().push(i);
        }
    }
    // An intermediate that may vanish: read once (by `by`), not a graph output, same shape.
    let private = |v: ValueId, by: usize| -> bool {
        let r = cx.r(v);
        r == v && !outputs.contains(&r) && readers.get(&r).is_some_and(|x| x.len() == 1 && x[0] == by)
    };
    let deq_of = |v: ValueId| -> Option<usize> {
        let &p = producer.get(&cx.r(v))?;
        let d = &ln[p];
        (d.op == "DequantizeLinear" && is_q8(cx.dtype(d.inputs[0])) && cx.shape(d.inputs[0]) == cx.shape(d.output)).then_some(p)
    };
    let mut removed: BTreeSet<usize> = BTreeSet::new();
    let mut replace: BTreeMap<usize, LNode> = BTreeMap::new();
    // Max pools that now pool 8-bit codes: (node, element type of their output).
    let mut int_pools: Vec<(usize, DType)> = Vec::new();
    for (qi, q) in ln.iter().enumerate() {
        if q.op != "QuantizeGlow" || !is_q8(cx.dtype(q.output)) {
            continue;
        }
        let Some(yq) = qparams(q) else { continue };
        let y = (cx.dtype(q.output), yq.0, yq.1);
        // Walk back over exact unary ops to a dequantize or a foldable binary op.
        let mut chain: Vec<usize> = Vec::new();
        let mut cur_v = q.inputs[0];
        let mut reader = qi;
        let head = loop {
            if !private(cur_v, reader) {
                break None;
            }
            let Some(&p) = producer.get(&cur_v) else { break None };
            let n = &ln[p];
            if removed.contains(&p) {
                break None;
            }
            if n.op == "DequantizeLinear" {
                break Some(p);
            }
            if n.op == "MaxPool" && n.inputs.len() == 1 && private(n.inputs[0], p) && deq_of(n.inputs[0]).is_some() {
                break Some(p);
            }
            if EXACT_UNARY.contains(&n.op.as_str()) && cx.shape(n.inputs[0]) == cx.shape(n.output) {
                chain.push(p);
                cur_v = n.inputs[0];
                reader = p;
                continue;
            }
            if chain.is_empty() && FOLD_BINARY.contains(&n.op.as_str()) && n.inputs.len() == 2 {
                break Some(p);
            }
            break None;
        };
        let Some(h) = head else { continue };
        let hn = &ln[h];
        chain.reverse();
        if hn.op == "MaxPool" {
            let Some(d) = deq_of(hn.inputs[0]) else { continue };
            let Some(xq) = qparams(&ln[d]) else { continue };
            let x = ln[d].inputs[0];
            let ops: Vec<&LNode> = chain.iter().map(|&c| &ln[c]).collect();
            let Some(t) = table((cx.dtype(x), xq.0, xq.1), &ops, y) else { continue };
            tracing::debug!("int8 fold: `{}` (MaxPool on 8-bit codes, {} float op(s)) -> QTable", q.name, ops.len() + 2);
            let mut pool = hn.clone();
            pool.inputs = vec![x];
            int_pools.push((h, cx.dtype(x)));
            replace.insert(h, pool);
            replace.insert(qi, LNode { name: q.name.clone(), op: "QTable".into(), inputs: vec![hn.output], output: q.output, attrs: vec![("table".into(), AttrValue::Ints(t))] });
            removed.extend(chain.iter().copied());
        } else if hn.op == "DequantizeLinear" {
            let Some(d) = deq_of(hn.output) else { continue };
            let Some(xq) = qparams(&ln[d]) else { continue };
            let x = ln[d].inputs[0];
            let ops: Vec<&LNode> = chain.iter().map(|&c| &ln[c]).collect();
            let Some(t) = table((cx.dtype(x), xq.0, xq.1), &ops, y) else { continue };
            tracing::debug!("int8 fold: `{}` ({} float op(s)) -> QTable", q.name, ops.len() + 2);
            replace.insert(qi, LNode { name: q.name.clone(), op: "QTable".into(), inputs: vec![x], output: q.output, attrs: vec![("table".into(), AttrValue::Ints(t))] });
            removed.extend(chain.iter().copied());
            // The dequantize goes only if nothing else reads it (checked below, by liveness).
        } else {
            let (Some(da), Some(db)) = (deq_of(hn.inputs[0]), deq_of(hn.inputs[1])) else { continue };
            let (Some(aq), Some(bq)) = (qparams(&ln[da]), qparams(&ln[db])) else { continue };
            let (a, b) = (ln[da].inputs[0], ln[db].inputs[0]);
            // The operands keep their shapes (broadcasting as the float op did).
            if cx.shape(a) != cx.shape(hn.inputs[0]) || cx.shape(b) != cx.shape(hn.inputs[1]) {
                continue;
            }
            tracing::debug!("int8 fold: `{}` ({} -> QBinaryGlow)", q.name, hn.op);
            let f = |x: f32| AttrValue::Float(x as f64);
            let i = |x: i32| AttrValue::Int(x as i64);
            let mut attrs = vec![
                ("a_scale".to_string(), f(aq.0)),
                ("a_zero_point".to_string(), i(aq.1)),
                ("b_scale".to_string(), f(bq.0)),
                ("b_zero_point".to_string(), i(bq.1)),
                ("op".to_string(), AttrValue::Str(hn.op.clone())),
                ("scale".to_string(), f(y.1)),
                ("zero_point".to_string(), i(y.2)),
            ];
            attrs.sort_by(|x, y| x.0.cmp(&y.0));
            replace.insert(qi, LNode { name: q.name.clone(), op: "QBinaryGlow".into(), inputs: vec![a, b], output: q.output, attrs });
            removed.insert(h);
        }
    }
    if replace.is_empty() {
        return ln;
    }
    for (p, d) in int_pools {
        cx.set_dtype(ln[p].output, d);
    }
    let mut out: Vec<LNode> = ln.into_iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(i, l)| replace.remove(&i).unwrap_or(l)).collect();
    // Drop what nothing reads any more (the folded islands' dequantizes), to a fixed point.
    loop {
        let read: BTreeSet<ValueId> = out.iter().flat_map(|l| l.inputs.iter().map(|&v| cx.r(v))).collect();
        let before = out.len();
        out.retain(|l| read.contains(&l.output) || outputs.contains(&l.output));
        if out.len() == before {
            return out;
        }
    }
}
