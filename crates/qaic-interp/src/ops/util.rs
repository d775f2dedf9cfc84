//! Helpers shared by op implementations: input access, dtype dispatch, broadcasting.

use qaic_tensor::{broadcast, strides, DType, Element, Tensor, Value};

use crate::error::OpError;

/// Input `i` as a tensor (error if missing or not a tensor).
pub fn input<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<&'a Tensor, OpError> {
    match inputs.get(i) {
        Some(Some(Value::Tensor(t))) => Ok(t),
        Some(Some(_)) => Err(OpError::Msg(format!("input {i} should be a tensor"))),
        _ => Err(OpError::Msg(format!("missing required input {i}"))),
    }
}

/// Optional input `i` as a tensor.
pub fn opt_input<'a>(inputs: &[Option<&'a Value>], i: usize) -> Result<Option<&'a Tensor>, OpError> {
    match inputs.get(i) {
        Some(Some(Value::Tensor(t))) => Ok(Some(t)),
        Some(Some(_)) => Err(OpError::Msg(format!("input {i} should be a tensor"))),
        _ => Ok(None),
    }
}

/// One tensor output.
pub fn out1(t: Tensor) -> Result<Vec<Option<Value>>, OpError> {
    Ok(vec![Some(Value::Tensor(t))])
}

/// Reads an integer tensor (i32 or i64, any shape) as `Vec<i64>` (shapes, axes, indices).
pub fn ints_of(t: &Tensor) -> Result<Vec<i64>, OpError> {
    match t.dtype() {
        DType::I64 => Ok(t.to_vec::<i64>()?),
        DType::I32 => Ok(t.view::<i32>()?.iter().map(|&v| v as i64).collect()),
        DType::I16 => Ok(t.view::<i16>()?.iter().map(|&v| v as i64).collect()),
        DType::I8 => Ok(t.view::<i8>()?.iter().map(|&v| v as i64).collect()),
        DType::U8 => Ok(t.view::<u8>()?.iter().map(|&v| v as i64).collect()),
        DType::U16 => Ok(t.view::<u16>()?.iter().map(|&v| v as i64).collect()),
        DType::U32 => Ok(t.view::<u32>()?.iter().map(|&v| v as i64).collect()),
        DType::U64 => Ok(t.view::<u64>()?.iter().map(|&v| v as i64).collect()),
        d => Err(OpError::Msg(format!("expected an integer tensor, got {d}"))),
    }
}

/// Reads a float tensor (f32/f64/f16/bf16) as `Vec<f32>` (scales, small parameters).
pub fn floats_of(t: &Tensor) -> Result<Vec<f32>, OpError> {
    match t.dtype() {
        DType::F32 => Ok(t.to_vec::<f32>()?),
        DType::F64 => Ok(t.view::<f64>()?.iter().map(|&v| v as f32).collect()),
        DType::F16 => {
            // Widening for the fp16 path, vectorised (F16C / AVX-512; exact).
            let h = t.view::<half::f16>()?;
            let mut v = vec![0f32; h.len()];
            qaic_kernels::quant::f16_to_f32(&h, &mut v).map_err(|e| OpError::Msg(e.to_string()))?;
            Ok(v)
        }
        DType::BF16 => Ok(t.view::<half::bf16>()?.iter().map(|v| v.to_f32()).collect()),
        d => Err(OpError::Msg(format!("expected a float tensor, got {d}"))),
    }
}

/// Normalises a possibly negative axis against `rank` (`-1` is the last axis).
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError::Msg(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Calls `$body` with `$T` bound to the Rust type of a byte-sized numeric `DType`
/// (f32, f64, f16, bf16, i8..u64, bool). Evaluates `$else` for other types.
#[macro_export]
macro_rules! with_dtype {
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
            qaic_tensor::DType::Bool => { type $T = bool; $body }
            _ => $else,
        }
    };
}

/// For each output element of a broadcast of shapes `a` and `b`, the flat indices into `a` and `b`.
/// Returns the output shape. Fast paths avoid index vectors for equal shapes and scalars.
pub enum BroadcastPlan {
    /// Same shape: element i of both.
    Same(usize),
    /// `a` is a single element.
    ScalarA(usize),
    /// `b` is a single element.
    ScalarB(usize),
    /// General: explicit index pairs.
    General(Vec<(u32, u32)>),
}

pub fn broadcast_plan(a: &[usize], b: &[usize]) -> Result<(Vec<usize>, BroadcastPlan), OpError> {
    let shape = broadcast(a, b)
        .ok_or_else(|| OpError::Msg(format!("shapes {a:?} and {b:?} cannot be broadcast together")))?;
    let n: usize = shape.iter().product();
    let na: usize = a.iter().product();
    let nb: usize = b.iter().product();
    if a == b {
        return Ok((shape, BroadcastPlan::Same(n)));
    }
    if na == 1 && nb == n {
        return Ok((shape, BroadcastPlan::ScalarA(n)));
    }
    if nb == 1 && na == n {
        return Ok((shape, BroadcastPlan::ScalarB(n)));
    }
    let idx_a = broadcast_index(a, &shape);
    let idx_b = broadcast_index(b, &shape);
    Ok((shape, BroadcastPlan::General(idx_a.into_iter().zip(idx_b).collect())))
}

/// Flat source indices of `src` broadcast to `dst` (row-major).
pub fn broadcast_index(src: &[usize], dst: &[usize]) -> Vec<u32> {
    let n: usize = dst.iter().product();
    let rank = dst.len();
    let off = rank - src.len();
    let sstr = strides(src);
    // Stride 0 on broadcast axes.
    let eff: Vec<usize> =
        (0..rank).map(|i| if i < off || src[i - off] == 1 { 0 } else { sstr[i - off] }).collect();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; rank];
    let mut flat = 0usize;
    for _ in 0..n {
        out.push(flat as u32);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            flat += eff[ax];
            if idx[ax] < dst[ax] {
                break;
            }
            flat -= eff[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
    out
}

/// Elementwise binary map with broadcasting.
pub fn binary_map<A: Element, B: Element, O: Element>(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(A, B) -> O,
) -> Result<Tensor, OpError> {
    let (shape, plan) = broadcast_plan(a.shape(), b.shape())?;
    let av = a.view::<A>()?;
    let bv = b.view::<B>()?;
    let data: Vec<O> = match plan {
        BroadcastPlan::Same(_) => av.iter().zip(bv.iter()).map(|(&x, &y)| f(x, y)).collect(),
        BroadcastPlan::ScalarA(_) => {
            let x = av[0];
            bv.iter().map(|&y| f(x, y)).collect()
        }
        BroadcastPlan::ScalarB(_) => {
            let y = bv[0];
            av.iter().map(|&x| f(x, y)).collect()
        }
        BroadcastPlan::General(pairs) => pairs.iter().map(|&(i, j)| f(av[i as usize], bv[j as usize])).collect(),
    };
    Ok(Tensor::from_vec(shape, data)?)
}

/// Elementwise unary map.
pub fn unary_map<A: Element, O: Element>(a: &Tensor, f: impl Fn(A) -> O) -> Result<Tensor, OpError> {
    let av = a.view::<A>()?;
    Ok(Tensor::from_vec(a.shape().to_vec(), av.iter().map(|&x| f(x)).collect())?)
}

/// Byte size of one element for byte-addressable types (error for packed sub-byte types).
pub fn elem_bytes(dtype: DType) -> Result<usize, OpError> {
    dtype.size_of().ok_or_else(|| OpError::Unsupported(format!("element type {dtype} in this op")))
}

/// Permutes the axes of any tensor (`out.shape[i] = t.shape[perm[i]]`), by element bytes.
pub fn permute(t: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let rank = t.rank();
    if perm.len() != rank || (0..rank).any(|i| !perm.contains(&i)) {
        return Err(OpError::Msg(format!("{perm:?} is not a permutation of {rank} axes")));
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(t.clone());
    }
    let src_strides = strides(t.shape());
    let eff: Vec<usize> = perm.iter().map(|&p| src_strides[p]).collect();
    let n = t.len();
    if t.dtype() == DType::String {
        let s = t.strings()?;
        let mut out = Vec::with_capacity(n);
        crate::ops::util::for_each_strided(&out_shape, &eff, |off| out.push(s[off].clone()));
        return Ok(Tensor::from_strings(out_shape, out)?);
    }
    let es = elem_bytes(t.dtype())?;
    let src = t.raw_bytes()?;
    let mut out = Vec::with_capacity(n * es);
    for_each_strided(&out_shape, &eff, |off| out.extend_from_slice(&src[off * es..off * es + es]));
    Ok(Tensor::from_bytes(t.dtype(), out_shape, bytes::Bytes::from(out))?.aligned())
}

/// Calls `f` with the source offset (in elements) of each element of `shape`, row-major,
/// where the source is laid out with `strides`.
pub fn for_each_strided(shape: &[usize], strides: &[usize], mut f: impl FnMut(usize)) {
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let rank = shape.len();
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for _ in 0..n {
        f(off);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            off -= strides[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
}

/// Concatenates tensors of equal type along `axis` (all other dims equal).
pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = parts.first().ok_or("nothing to concatenate")?;
    let dtype = first.dtype();
    let rank = first.rank();
    let mut shape = first.shape().to_vec();
    if axis >= rank.max(1) {
        return Err(OpError::Msg(format!("axis {axis} out of range for rank {rank}")));
    }
    shape[axis] = 0;
    for p in parts {
        if p.dtype() != dtype || p.rank() != rank {
            return Err(OpError::Msg(format!("cannot concatenate {}{:?} with {}{:?}", dtype, first.shape(), p.dtype(), p.shape())));
        }
        for d in 0..rank {
            if d != axis && p.shape()[d] != first.shape()[d] {
                return Err(OpError::Msg(format!("cannot concatenate {:?} with {:?} on axis {axis}", first.shape(), p.shape())));
            }
        }
        shape[axis] += p.shape()[axis];
    }
    let outer: usize = shape[..axis].iter().product();
    if dtype == DType::String {
        let mut out = Vec::new();
        for o in 0..outer {
            for p in parts {
                let inner: usize = p.shape()[axis..].iter().product();
                out.extend_from_slice(&p.strings()?[o * inner..(o + 1) * inner]);
            }
        }
        return Ok(Tensor::from_strings(shape, out)?);
    }
    let es = elem_bytes(dtype)?;
    let mut out = Vec::with_capacity(shape.iter().product::<usize>() * es);
    for o in 0..outer {
        for p in parts {
            let inner: usize = p.shape()[axis..].iter().product::<usize>() * es;
            out.extend_from_slice(&p.raw_bytes()?[o * inner..(o + 1) * inner]);
        }
    }
    Ok(Tensor::from_bytes(dtype, shape, bytes::Bytes::from(out))?.aligned())
}

/// Stacks equally shaped tensors along a new `axis`.
pub fn stack(parts: &[&Tensor], axis: usize) -> Result<Tensor, OpError> {
    let first = parts.first().ok_or("nothing to stack")?;
    let mut expanded = Vec::with_capacity(parts.len());
    for p in parts {
        let mut s = p.shape().to_vec();
        if axis > s.len() {
            return Err(OpError::Msg(format!("axis {axis} out of range for rank {}", s.len() + 1)));
        }
        s.insert(axis, 1);
        if p.shape() != first.shape() {
            return Err(OpError::Msg(format!("cannot stack {:?} with {:?}", first.shape(), p.shape())));
        }
        expanded.push(p.reshaped(s)?);
    }
    concat(&expanded.iter().collect::<Vec<_>>(), axis)
}

/// Slice `[start, start+len)` of axis `axis` (copy).
pub fn narrow(t: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor, OpError> {
    let mut shape = t.shape().to_vec();
    let dim = shape[axis];
    if start + len > dim {
        return Err(OpError::Msg(format!("slice {start}..{} out of range {dim}", start + len)));
    }
    shape[axis] = len;
    let outer: usize = t.shape()[..axis].iter().product();
    let inner: usize = t.shape()[axis + 1..].iter().product();
    if t.dtype() == DType::String {
        let s = t.strings()?;
        let mut out = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = (o * dim + start) * inner;
            out.extend_from_slice(&s[base..base + len * inner]);
        }
        return Ok(Tensor::from_strings(shape, out)?);
    }
    let es = elem_bytes(t.dtype())?;
    let src = t.raw_bytes()?;
    let mut out = Vec::with_capacity(outer * len * inner * es);
    for o in 0..outer {
        let base = (o * dim + start) * inner * es;
        out.extend_from_slice(&src[base..base + len * inner * es]);
    }
    Ok(Tensor::from_bytes(t.dtype(), shape, bytes::Bytes::from(out))?.aligned())
}
