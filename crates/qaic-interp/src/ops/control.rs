//! Control flow (If, Loop, Scan), sequences and optionals.

use qaic_tensor::{DType, Tensor, Value};

use super::util::{concat, input, ints_of, narrow, norm_axis, opt_input, out1, permute, stack};
use crate::plan::Plan;
use crate::registry::{BuildCtx, Kernel, Registry, RunCtx};
use crate::OpError;

pub fn register(r: &mut Registry) {
    r.add("If", 1, if_op);
    r.add("Loop", 1, loop_op);
    r.add("Scan", 9, scan_op);
    r.add("SequenceConstruct", 11, |_| Ok(Box::new(seq_construct)));
    r.add("SequenceEmpty", 11, seq_empty);
    r.add("SequenceAt", 11, |_| Ok(Box::new(seq_at)));
    r.add("SequenceInsert", 11, |_| Ok(Box::new(seq_insert)));
    r.add("SequenceErase", 11, |_| Ok(Box::new(seq_erase)));
    r.add("SequenceLength", 11, |_| Ok(Box::new(seq_length)));
    r.add("ConcatFromSequence", 11, concat_from_sequence);
    r.add("SplitToSequence", 11, split_to_sequence);
    r.add("SequenceMap", 17, sequence_map);
    r.add("Optional", 15, optional);
    r.add("OptionalHasElement", 15, |_| Ok(Box::new(optional_has_element)));
    r.add("OptionalGetElement", 15, |_| Ok(Box::new(optional_get_element)));
}

type Outs = Result<Vec<Option<Value>>, OpError>;

fn sub_err(e: crate::InterpError) -> OpError {
    OpError::Msg(format!("in subgraph: {e}"))
}

fn scalar_bool(t: &Tensor) -> Result<bool, OpError> {
    if t.len() != 1 {
        return Err(OpError::Msg(format!("condition must have one element, has shape {:?}", t.shape())));
    }
    Ok(match t.dtype() {
        DType::Bool => t.view::<bool>()?[0],
        _ => ints_of(t)?[0] != 0,
    })
}

struct IfOp {
    then_branch: Plan,
    else_branch: Plan,
}

fn if_op(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(IfOp { then_branch: ctx.subgraph("then_branch")?, else_branch: ctx.subgraph("else_branch")? }))
}

impl Kernel for IfOp {
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let branch = if scalar_bool(input(inputs, 0)?)? { &self.then_branch } else { &self.else_branch };
        let outs = branch.run_scoped(vec![], ctx.scope).map_err(sub_err)?;
        Ok(outs.into_iter().map(Some).collect())
    }
}

struct LoopOp {
    body: Plan,
}

fn loop_op(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(LoopOp { body: ctx.subgraph("body")? }))
}

impl Kernel for LoopOp {
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let max_trip = opt_input(inputs, 0)?.map(|t| ints_of(t).map(|v| v[0])).transpose()?;
        let mut cond = match opt_input(inputs, 1)? {
            Some(t) => scalar_bool(t)?,
            None => true,
        };
        let mut carried: Vec<Value> = Vec::new();
        for (i, v) in inputs.iter().enumerate().skip(2) {
            carried.push(v.ok_or_else(|| OpError::Msg(format!("loop-carried input {i} is missing")))?.clone());
        }
        let n_carried = carried.len();
        let body_outputs = self.body.graph().outputs.len();
        if body_outputs < 1 + n_carried {
            return Err(OpError::Msg(format!(
                "body has {body_outputs} outputs but needs at least {} (condition + loop-carried)",
                1 + n_carried
            )));
        }
        let n_scan = body_outputs - 1 - n_carried;
        let mut scans: Vec<Vec<Value>> = vec![Vec::new(); n_scan];
        let mut i: i64 = 0;
        while cond && max_trip.is_none_or(|m| i < m) {
            let mut args = vec![Value::Tensor(Tensor::scalar(i)), Value::Tensor(Tensor::scalar(cond))];
            args.extend(carried.iter().cloned());
            let mut outs = self.body.run_scoped(args, ctx.scope).map_err(sub_err)?.into_iter();
            let c = outs.next().ok_or("body produced no condition")?;
            cond = scalar_bool(c.as_tensor().ok_or("body condition is not a tensor")?)?;
            carried = outs.by_ref().take(n_carried).collect();
            for (s, v) in scans.iter_mut().zip(outs) {
                s.push(v);
            }
            i += 1;
        }
        let mut result: Vec<Option<Value>> = carried.into_iter().map(Some).collect();
        let g = self.body.graph();
        for (k, s) in scans.into_iter().enumerate() {
            let decl = g.value(g.outputs[1 + n_carried + k]).ty.clone();
            result.push(Some(stack_values(s, decl.as_ref())?));
        }
        Ok(result)
    }
}

/// Stacks per-iteration scan outputs along a new axis 0 (empty: shape from the declared type).
fn stack_values(items: Vec<Value>, decl: Option<&qaic_ir::ValueType>) -> Result<Value, OpError> {
    if items.is_empty() {
        let (dtype, dims) = match decl {
            Some(qaic_ir::ValueType::Tensor { dtype, shape }) => (
                *dtype,
                shape.as_ref().map(|s| s.0.iter().map(|d| d.known().unwrap_or(0)).collect()).unwrap_or_default(),
            ),
            _ => (DType::F32, Vec::new()),
        };
        let mut shape = vec![0usize];
        shape.extend::<Vec<usize>>(dims);
        return Ok(Value::Tensor(Tensor::zeros(dtype, shape)?));
    }
    if let Value::Sequence { .. } = items[0] {
        return Err(OpError::Unsupported("scan outputs of sequence type".into()));
    }
    let ts: Vec<&Tensor> = items.iter().map(|v| v.as_tensor().ok_or("scan output is not a tensor")).collect::<Result<_, _>>()?;
    Ok(Value::Tensor(stack(&ts, 0)?))
}

struct ScanOp {
    body: Plan,
    num_scan_inputs: usize,
    input_axes: Vec<i64>,
    input_dirs: Vec<i64>,
    output_axes: Vec<i64>,
    output_dirs: Vec<i64>,
}

fn scan_op(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let body = ctx.subgraph("body")?;
    let num_scan_inputs = ctx.attr_opt_i("num_scan_inputs")?.ok_or("missing attribute num_scan_inputs")? as usize;
    Ok(Box::new(ScanOp {
        body,
        num_scan_inputs,
        input_axes: ctx.attr_ints("scan_input_axes")?.unwrap_or_default(),
        input_dirs: ctx.attr_ints("scan_input_directions")?.unwrap_or_default(),
        output_axes: ctx.attr_ints("scan_output_axes")?.unwrap_or_default(),
        output_dirs: ctx.attr_ints("scan_output_directions")?.unwrap_or_default(),
    }))
}

impl Kernel for ScanOp {
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let n_state = inputs.len().checked_sub(self.num_scan_inputs).ok_or("fewer inputs than num_scan_inputs")?;
        let mut state: Vec<Value> = (0..n_state).map(|i| input(inputs, i).map(|t| Value::Tensor(t.clone()))).collect::<Result<_, _>>()?;
        // Move each scan input's scan axis to the front so iteration slices axis 0.
        let mut scan_in = Vec::new();
        for k in 0..self.num_scan_inputs {
            let t = input(inputs, n_state + k)?;
            let axis = norm_axis(*self.input_axes.get(k).unwrap_or(&0), t.rank())?;
            let mut perm: Vec<usize> = (0..t.rank()).collect();
            perm.remove(axis);
            perm.insert(0, axis);
            scan_in.push(permute(t, &perm)?);
        }
        let len = scan_in.first().map(|t| t.shape()[0]).unwrap_or(0);
        if scan_in.iter().any(|t| t.shape()[0] != len) {
            return Err(OpError::Msg("scan inputs have different sequence lengths".into()));
        }
        let n_out = self.body.graph().outputs.len();
        let n_scan_out = n_out.checked_sub(n_state).ok_or("body has fewer outputs than state variables")?;
        let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); n_scan_out];
        for step in 0..len {
            let mut args: Vec<Value> = state.clone();
            for (k, t) in scan_in.iter().enumerate() {
                let rev = self.input_dirs.get(k).copied().unwrap_or(0) == 1;
                let i = if rev { len - 1 - step } else { step };
                let s = narrow(t, 0, i, 1)?;
                let shape = s.shape()[1..].to_vec();
                args.push(Value::Tensor(s.reshaped(shape)?));
            }
            let outs = self.body.run_scoped(args, ctx.scope).map_err(sub_err)?;
            let mut it = outs.into_iter();
            state = it.by_ref().take(n_state).collect();
            for (s, v) in scans.iter_mut().zip(it) {
                s.push(v.into_tensor().ok_or("scan output is not a tensor")?);
            }
        }
        let mut result: Vec<Option<Value>> = state.into_iter().map(Some).collect();
        for (k, mut items) in scans.into_iter().enumerate() {
            if self.output_dirs.get(k).copied().unwrap_or(0) == 1 {
                items.reverse();
            }
            let refs: Vec<&Tensor> = items.iter().collect();
            let stacked = if refs.is_empty() {
                let g = self.body.graph();
                stack_values(vec![], g.value(g.outputs[n_state + k]).ty.as_ref())?.into_tensor().ok_or("bad scan output")?
            } else {
                stack(&refs, 0)?
            };
            let axis = norm_axis(*self.output_axes.get(k).unwrap_or(&0), stacked.rank())?;
            let mut perm: Vec<usize> = (1..stacked.rank()).collect();
            perm.insert(axis, 0);
            result.push(Some(Value::Tensor(permute(&stacked, &perm)?)));
        }
        Ok(result)
    }
}

fn seq_of<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<(DType, &'a Vec<Tensor>), OpError> {
    match inputs.get(i) {
        Some(Some(Value::Sequence { elem, items })) => Ok((*elem, items)),
        Some(Some(_)) => Err(OpError::Msg(format!("input {i} should be a sequence"))),
        _ => Err(OpError::Msg(format!("missing required input {i}"))),
    }
}

fn seq_out(elem: DType, items: Vec<Tensor>) -> Outs {
    Ok(vec![Some(Value::Sequence { elem, items })])
}

fn seq_construct(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let items: Vec<Tensor> = (0..inputs.len()).map(|i| input(inputs, i).cloned()).collect::<Result<_, _>>()?;
    let elem = items.first().map(|t| t.dtype()).ok_or("SequenceConstruct needs at least one input")?;
    if items.iter().any(|t| t.dtype() != elem) {
        return Err(OpError::Msg("SequenceConstruct inputs have different element types".into()));
    }
    seq_out(elem, items)
}

fn seq_empty(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let dtype = ctx.attr_i("dtype", DType::F32.onnx() as i64)?;
    let elem = DType::from_onnx(dtype as i32).ok_or_else(|| OpError::Msg(format!("unknown dtype {dtype}")))?;
    Ok(Box::new(move |_: &RunCtx<'_>, _: &[Option<&Value>]| seq_out(elem, vec![])))
}

fn seq_position(pos: Option<&Tensor>, len: usize, insert: bool) -> Result<usize, OpError> {
    let Some(p) = pos else { return Ok(if insert { len } else { len.saturating_sub(1) }) };
    let p = ints_of(p)?[0];
    let limit = if insert { len as i64 + 1 } else { len as i64 };
    let q = if p < 0 { p + len as i64 } else { p };
    if q < 0 || q >= limit {
        return Err(OpError::Msg(format!("position {p} is out of range for a sequence of length {len}")));
    }
    Ok(q as usize)
}

fn seq_at(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let (_, items) = seq_of(inputs, 0)?;
    let i = seq_position(Some(input(inputs, 1)?), items.len(), false)?;
    out1(items[i].clone())
}

fn seq_insert(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let (elem, items) = seq_of(inputs, 0)?;
    let t = input(inputs, 1)?;
    let i = seq_position(opt_input(inputs, 2)?, items.len(), true)?;
    let mut items = items.clone();
    items.insert(i, t.clone());
    seq_out(elem, items)
}

fn seq_erase(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let (elem, items) = seq_of(inputs, 0)?;
    if items.is_empty() {
        return Err(OpError::Msg("cannot erase from an empty sequence".into()));
    }
    let i = seq_position(opt_input(inputs, 1)?, items.len(), false)?;
    let mut items = items.clone();
    items.remove(i);
    seq_out(elem, items)
}

fn seq_length(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let (_, items) = seq_of(inputs, 0)?;
    out1(Tensor::scalar(items.len() as i64))
}

fn concat_from_sequence(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_opt_i("axis")?.ok_or("missing attribute axis")?;
    let new_axis = ctx.attr_i("new_axis", 0)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let (_, items) = seq_of(inputs, 0)?;
        let first = items.first().ok_or("ConcatFromSequence of an empty sequence")?;
        let refs: Vec<&Tensor> = items.iter().collect();
        if new_axis {
            let a = norm_axis(axis, first.rank() + 1)?;
            out1(stack(&refs, a)?)
        } else {
            let a = norm_axis(axis, first.rank())?;
            out1(concat(&refs, a)?)
        }
    }))
}

fn split_to_sequence(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let axis = ctx.attr_i("axis", 0)?;
    let keepdims = ctx.attr_i("keepdims", 1)? != 0;
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let t = input(inputs, 0)?;
        let a = norm_axis(axis, t.rank())?;
        let dim = t.shape()[a];
        let sizes: Vec<usize> = match opt_input(inputs, 1)? {
            None => vec![1; dim],
            Some(s) if s.rank() == 0 => {
                let k = ints_of(s)?[0];
                if k <= 0 {
                    return Err(OpError::Msg(format!("split size {k} must be positive")));
                }
                let k = k as usize;
                (0..dim.div_ceil(k)).map(|i| k.min(dim - i * k)).collect()
            }
            Some(s) => ints_of(s)?.into_iter().map(|v| v.max(0) as usize).collect(),
        };
        if sizes.iter().sum::<usize>() != dim {
            return Err(OpError::Msg(format!("split sizes {sizes:?} do not add up to dimension {dim}")));
        }
        let squeeze = opt_input(inputs, 1)?.is_none() && !keepdims;
        let mut items = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            let mut part = narrow(t, a, start, s)?;
            if squeeze {
                let mut shape = part.shape().to_vec();
                shape.remove(a);
                part = part.reshaped(shape)?;
            }
            items.push(part);
            start += s;
        }
        seq_out(t.dtype(), items)
    }))
}

struct SequenceMapOp {
    body: Plan,
}

fn sequence_map(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    Ok(Box::new(SequenceMapOp { body: ctx.subgraph("body")? }))
}

impl Kernel for SequenceMapOp {
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
        let (_, first) = seq_of(inputs, 0)?;
        let n = first.len();
        let g = self.body.graph();
        let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); g.outputs.len()];
        for i in 0..n {
            let mut args = Vec::with_capacity(inputs.len());
            for (k, v) in inputs.iter().enumerate() {
                match v {
                    Some(Value::Sequence { items, .. }) => {
                        let t = items.get(i).ok_or_else(|| OpError::Msg(format!("sequence input {k} is shorter than input 0")))?;
                        args.push(Value::Tensor(t.clone()));
                    }
                    Some(v) => args.push((*v).clone()),
                    None => return Err(OpError::Msg(format!("input {k} is missing"))),
                }
            }
            for (o, v) in outs.iter_mut().zip(self.body.run_scoped(args, ctx.scope).map_err(sub_err)?) {
                o.push(v.into_tensor().ok_or("SequenceMap body output is not a tensor")?);
            }
        }
        let mut result = Vec::new();
        for (k, items) in outs.into_iter().enumerate() {
            let elem = items.first().map(|t| t.dtype()).or_else(|| {
                match g.value(g.outputs[k]).ty.as_ref() {
                    Some(qaic_ir::ValueType::Sequence(t)) => t.tensor_dtype(),
                    Some(t) => t.tensor_dtype(),
                    None => None,
                }
            });
            result.push(Some(Value::Sequence { elem: elem.unwrap_or(DType::F32), items }));
        }
        Ok(result)
    }
}

fn optional(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError> {
    let has_input = ctx.has_input(0);
    Ok(Box::new(move |_: &RunCtx<'_>, inputs: &[Option<&Value>]| {
        let v = if has_input { inputs.first().copied().flatten().map(|v| Box::new(v.clone())) } else { None };
        Ok(vec![Some(Value::Optional(v))])
    }))
}

fn optional_has_element(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    let has = match inputs.first().copied().flatten() {
        None => false,
        Some(Value::Optional(o)) => o.is_some(),
        Some(_) => true,
    };
    out1(Tensor::scalar(has))
}

fn optional_get_element(_: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Outs {
    match inputs.first().copied().flatten() {
        Some(Value::Optional(Some(v))) => Ok(vec![Some((**v).clone())]),
        Some(Value::Optional(None)) | None => Err(OpError::Msg("the optional is empty".into())),
        Some(v) => Ok(vec![Some(v.clone())]),
    }
}
