//! Shape and data-movement ops: Shape, Size, Reshape, Flatten, Squeeze/Unsqueeze, Transpose,
//! Concat, Split, Slice, Gather*, Scatter*, Expand, Tile, Pad, Constant, ConstantOfShape, Range,
//! OneHot, NonZero, Compress, Trilu, EyeLike, DepthToSpace/SpaceToDepth, ReverseSequence,
//! Unique, Einsum and Det.
//!
//! Data movement is written once over any element type ([`AnyElem`]: numeric, bool, strings,
//! float8 bytes, unpacked 4/2-bit fields) with three primitives: a strided copy (Transpose,
//! Slice, Expand, Tile, Split, DepthToSpace), block gathers (Gather, GatherND, Concat), and an
//! index-list take with a fill value for the rarer ops.

use std::borrow::Cow;

use qaic_tensor::{DType, Tensor, Value, bf16, f16};

use super::elementwise::cast::{self, cast_tensor, decode_f64};
use super::elementwise::{KResult, Num, kernel};
use super::util::{input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Registry};
use crate::{OpError, op_err};

pub fn register(r: &mut Registry) {
    r.add("Shape", 1, shape_op);
    r.add("Size", 1, size_op);
    r.add("Reshape", 5, reshape);
    r.add("Flatten", 1, flatten);
    r.add("Squeeze", 1, squeeze);
    r.add("Unsqueeze", 1, unsqueeze);
    r.add("Transpose", 1, transpose);
    r.add("Concat", 1, concat);
    r.add("Split", 1, split);
    r.add("Slice", 1, slice);
    r.add("Gather", 1, gather);
    r.add("GatherElements", 11, gather_elements);
    r.add("GatherND", 11, gather_nd);
    r.add("Scatter", 9, scatter_elements);
    r.add("ScatterElements", 11, scatter_elements);
    r.add("ScatterND", 11, scatter_nd);
    r.add("Expand", 8, expand);
    r.add("Tile", 6, tile);
    r.add("Pad", 2, pad);
    r.add("Constant", 1, constant);
    r.add("ConstantOfShape", 9, constant_of_shape);
    r.add("Range", 11, range);
    r.add("OneHot", 9, one_hot);
    r.add("NonZero", 9, non_zero);
    r.add("Compress", 9, compress);
    r.add("Trilu", 14, trilu);
    r.add("EyeLike", 9, eye_like);
    r.add("DepthToSpace", 1, depth_to_space);
    r.add("SpaceToDepth", 1, space_to_depth);
    r.add("ReverseSequence", 10, reverse_sequence);
    r.add("Unique", 11, unique);
    r.add("Einsum", 12, einsum);
    r.add("Det", 11, det);
}

// ---------------------------------------------------------------------------------------------
// Element access for every dtype

/// An element type that data-movement ops can copy: every numeric type and bool, `Vec<u8>` for
/// strings, and `u8` for float8 bytes and unpacked 4/2-bit fields.
pub(crate) trait AnyElem: Clone + Default + PartialOrd + Send + Sync + 'static {
    fn elems(t: &Tensor) -> Result<Cow<'_, [Self]>, OpError>;
    fn build(dt: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor, OpError>;
}

macro_rules! any_elem {
    ($($t:ty),*) => {$(
        impl AnyElem for $t {
            fn elems(t: &Tensor) -> Result<Cow<'_, [Self]>, OpError> { Ok(t.view::<$t>()?) }
            fn build(_: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor, OpError> { Ok(Tensor::from_vec(shape, v)?) }
        }
    )*};
}
any_elem!(f32, f64, f16, bf16, i8, i16, i32, i64, u16, u32, u64, bool);

fn sub_byte(dt: DType) -> bool {
    matches!(dt, DType::I4 | DType::U4 | DType::F4E2M1 | DType::I2 | DType::U2)
}
fn byte_float(dt: DType) -> bool {
    matches!(dt, DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ | DType::F8E8M0)
}

impl AnyElem for u8 {
    fn elems(t: &Tensor) -> Result<Cow<'_, [Self]>, OpError> {
        let dt = t.dtype();
        if sub_byte(dt) {
            Ok(Cow::Owned(cast::unpack(t, dt.bits())?))
        } else if byte_float(dt) || dt == DType::U8 {
            Ok(Cow::Borrowed(t.raw_bytes()?))
        } else {
            Err(op_err!("{dt} elements read as bytes"))
        }
    }
    fn build(dt: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor, OpError> {
        if sub_byte(dt) {
            let n = v.len();
            Ok(Tensor::from_bytes(dt, shape, cast::pack(v.into_iter(), n, dt.bits()).into())?)
        } else if byte_float(dt) {
            Ok(Tensor::from_bytes(dt, shape, v.into())?)
        } else {
            Ok(Tensor::from_vec(shape, v)?)
        }
    }
}

impl AnyElem for Vec<u8> {
    fn elems(t: &Tensor) -> Result<Cow<'_, [Self]>, OpError> {
        Ok(Cow::Borrowed(t.strings()?))
    }
    fn build(_: DType, shape: Vec<usize>, v: Vec<Self>) -> Result<Tensor, OpError> {
        Ok(Tensor::from_strings(shape, v)?)
    }
}

/// Binds `$T` to the [`AnyElem`] type of a dtype.
macro_rules! any_type {
    ($dt:expr, $T:ident => $body:expr) => {{
        let dt: DType = $dt;
        match dt {
            DType::String => {
                type $T = Vec<u8>;
                $body
            }
            DType::U8 => {
                type $T = u8;
                $body
            }
            d if sub_byte(d) || byte_float(d) => {
                type $T = u8;
                $body
            }
            d => crate::with_dtype!(d, $T => $body, _ => Err(op_err!("element type {d} is not supported here"))),
        }
    }};
}

// ---------------------------------------------------------------------------------------------
// Primitives

/// Copies `dims` elements starting at `offset` with per-axis `strides` (possibly 0 or negative).
fn strided_t<T: AnyElem>(t: &Tensor, offset: isize, dims: &[usize], strides: &[isize]) -> Result<Tensor, OpError> {
    let src = T::elems(t)?;
    let n: usize = dims.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(n);
    if n > 0 {
        // Drop size-1 axes and merge contiguous ones.
        let mut d: Vec<usize> = Vec::new();
        let mut s: Vec<isize> = Vec::new();
        for (&n, &st) in dims.iter().zip(strides) {
            if n == 1 {
                continue;
            }
            if let (Some(&ld), Some(&ls)) = (d.last(), s.last()) {
                if ls == st * n as isize {
                    let k = d.len() - 1;
                    d[k] = ld * n;
                    s[k] = st;
                    continue;
                }
            }
            d.push(n);
            s.push(st);
        }
        if d.is_empty() {
            d.push(1);
            s.push(0);
        }
        let r = d.len();
        let inner = d[r - 1];
        let si = s[r - 1];
        let mut idx = vec![0usize; r - 1];
        let mut base = offset;
        for _ in 0..n / inner {
            let b = base as usize;
            match si {
                1 => out.extend_from_slice(&src[b..b + inner]),
                0 => out.extend(std::iter::repeat_n(src[b].clone(), inner)),
                _ => out.extend((0..inner).map(|k| src[(base + k as isize * si) as usize].clone())),
            }
            for ax in (0..r - 1).rev() {
                idx[ax] += 1;
                base += s[ax];
                if idx[ax] < d[ax] {
                    break;
                }
                base -= s[ax] * d[ax] as isize;
                idx[ax] = 0;
            }
        }
    }
    T::build(t.dtype(), dims.to_vec(), out)
}

pub(crate) fn strided(t: &Tensor, offset: isize, dims: &[usize], strides: &[isize]) -> Result<Tensor, OpError> {
    any_type!(t.dtype(), T => strided_t::<T>(t, offset, dims, strides))
}

fn istrides(shape: &[usize]) -> Vec<isize> {
    qaic_tensor::strides(shape).into_iter().map(|s| s as isize).collect()
}

/// Transposes `t` by `perm`.
pub(crate) fn transpose_t(t: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let st = istrides(t.shape());
    let dims: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| st[p]).collect();
    strided(t, 0, &dims, &strides)
}

/// Output element `i` = source element `idx[i]`, or the fill value when `idx[i] == usize::MAX`.
fn take_t<T: AnyElem>(t: &Tensor, shape: Vec<usize>, idx: &[usize], fill: Option<&Tensor>) -> Result<Tensor, OpError> {
    let src = T::elems(t)?;
    let fv: T = match fill {
        Some(f) => T::elems(f)?.first().cloned().unwrap_or_default(),
        None => T::default(),
    };
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        out.push(if i == usize::MAX { fv.clone() } else { src.get(i).cloned().ok_or("index out of range")? });
    }
    T::build(t.dtype(), shape, out)
}

pub(crate) fn take(t: &Tensor, shape: Vec<usize>, idx: &[usize], fill: Option<&Tensor>) -> Result<Tensor, OpError> {
    any_type!(t.dtype(), T => take_t::<T>(t, shape, idx, fill))
}

/// For each `o < outer` and each `j` in `idx`: copy the `inner`-element block `o*per + j*inner`.
fn blocks_t<T: AnyElem>(t: &Tensor, shape: Vec<usize>, outer: usize, per: usize, inner: usize, idx: &[usize]) -> Result<Tensor, OpError> {
    let src = T::elems(t)?;
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in idx {
            let b = o * per + j * inner;
            out.extend_from_slice(src.get(b..b + inner).ok_or("index out of range")?);
        }
    }
    T::build(t.dtype(), shape, out)
}

fn blocks(t: &Tensor, shape: Vec<usize>, outer: usize, per: usize, inner: usize, idx: &[usize]) -> Result<Tensor, OpError> {
    any_type!(t.dtype(), T => blocks_t::<T>(t, shape, outer, per, inner, idx))
}

fn concat_t<T: AnyElem>(ts: &[&Tensor], axis: usize, shape: Vec<usize>) -> Result<Tensor, OpError> {
    let outer: usize = shape[..axis].iter().product();
    let srcs: Vec<Cow<'_, [T]>> = ts.iter().map(|t| T::elems(t)).collect::<Result<_, _>>()?;
    let chunks: Vec<usize> = ts.iter().map(|t| t.shape()[axis..].iter().product()).collect();
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for (s, &c) in srcs.iter().zip(&chunks) {
            out.extend_from_slice(&s[o * c..(o + 1) * c]);
        }
    }
    T::build(ts[0].dtype(), shape, out)
}

fn product(s: &[usize]) -> usize {
    s.iter().product()
}

/// Reads a scalar or 1-element integer tensor.
fn scalar_i(t: &Tensor, what: &str) -> Result<i64, OpError> {
    ints_of(t)?.first().copied().ok_or_else(|| op_err!("{what} is empty"))
}

fn axes_input_or_attr(c_opset: i64, attr_since_input: i64, ins: &[Option<&Value>], attr: &Option<Vec<i64>>, i: usize) -> Result<Option<Vec<i64>>, OpError> {
    if c_opset >= attr_since_input {
        Ok(match opt_input(ins, i)? {
            Some(t) => Some(ints_of(t)?),
            None => None,
        })
    } else {
        Ok(attr.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Shape queries and views

fn shape_op(c: &BuildCtx<'_>) -> KResult {
    let start = c.attr_i("start", 0)?;
    let end = c.attr_opt_i("end")?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let r = t.rank() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let s = clampi(start);
        let e = clampi(end.unwrap_or(r));
        let dims: Vec<i64> = if s < e { t.shape()[s..e].iter().map(|&d| d as i64).collect() } else { vec![] };
        out1(Tensor::from_vec(vec![dims.len()], dims)?)
    })
}

fn size_op(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| out1(Tensor::scalar(input(ins, 0)?.len() as i64)))
}

fn reshape(c: &BuildCtx<'_>) -> KResult {
    let allowzero = c.attr_i("allowzero", 0)? != 0;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let spec = ints_of(input(ins, 1)?)?;
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                0 if !allowzero => {
                    shape.push(*t.shape().get(i).ok_or_else(|| op_err!("shape {spec:?}: 0 at axis {i} beyond input rank"))?)
                }
                -1 => {
                    if infer.replace(i).is_some() {
                        return Err(op_err!("shape {spec:?} has more than one -1"));
                    }
                    shape.push(1)
                }
                d if d < 0 => return Err(op_err!("shape {spec:?} has a negative dimension")),
                d => shape.push(d as usize),
            }
        }
        if let Some(i) = infer {
            let known: usize = product(&shape);
            if known == 0 || t.len() % known != 0 {
                return Err(op_err!("cannot reshape {:?} into {spec:?}", t.shape()));
            }
            shape[i] = t.len() / known;
        }
        out1(t.reshaped(shape).map_err(|_| op_err!("cannot reshape {:?} into {spec:?}", t.shape()))?)
    })
}

fn flatten(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 1)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let r = t.rank() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a > r {
            return Err(op_err!("axis {axis} is out of range for rank {r}"));
        }
        let a = a as usize;
        out1(t.reshaped(vec![product(&t.shape()[..a]), product(&t.shape()[a..])])?)
    })
}

fn squeeze(c: &BuildCtx<'_>) -> KResult {
    let attr = c.attr_ints("axes")?;
    let opset = c.opset;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let axes = axes_input_or_attr(opset, 13, ins, &attr, 1)?;
        let r = t.rank();
        let shape: Vec<usize> = match axes {
            None => t.shape().iter().copied().filter(|&d| d != 1).collect(),
            Some(ax) => {
                let ax: Vec<usize> = ax.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>()?;
                for &a in &ax {
                    if t.shape()[a] != 1 {
                        return Err(op_err!("cannot squeeze axis {a} of size {}", t.shape()[a]));
                    }
                }
                t.shape().iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect()
            }
        };
        out1(t.reshaped(shape)?)
    })
}

fn unsqueeze(c: &BuildCtx<'_>) -> KResult {
    let attr = c.attr_ints("axes")?;
    let opset = c.opset;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let axes = axes_input_or_attr(opset, 13, ins, &attr, 1)?.ok_or("missing axes")?;
        let r = t.rank() + axes.len();
        let ax: Vec<usize> = axes.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>()?;
        let mut shape = Vec::with_capacity(r);
        let mut src = t.shape().iter();
        for i in 0..r {
            if ax.contains(&i) {
                shape.push(1);
            } else {
                shape.push(*src.next().ok_or("duplicate axes")?);
            }
        }
        out1(t.reshaped(shape)?)
    })
}

fn transpose(c: &BuildCtx<'_>) -> KResult {
    let perm = c.attr_ints("perm")?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let r = t.rank();
        let p: Vec<usize> = match &perm {
            Some(p) => p.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>()?,
            None => (0..r).rev().collect(),
        };
        let mut seen = vec![false; r];
        if p.len() != r || p.iter().any(|&a| std::mem::replace(&mut seen[a], true)) {
            return Err(op_err!("perm {p:?} is not a permutation of rank {r}"));
        }
        out1(transpose_t(t, &p)?)
    })
}

fn concat(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    kernel(move |ins| {
        let ts: Vec<&Tensor> = ins.iter().flatten().filter_map(|v| v.as_tensor()).collect();
        let first = ts.first().ok_or("Concat needs at least one input")?;
        let r = first.rank();
        let a = norm_axis(axis, r)?;
        let mut shape = first.shape().to_vec();
        shape[a] = 0;
        for t in &ts {
            if t.rank() != r
                || t.dtype() != first.dtype()
                || t.shape().iter().enumerate().any(|(i, &d)| i != a && d != first.shape()[i])
            {
                return Err(op_err!("cannot concatenate {:?} with {:?} on axis {a}", first.shape(), t.shape()));
            }
            shape[a] += t.shape()[a];
        }
        out1(any_type!(first.dtype(), T => concat_t::<T>(&ts, a, shape))?)
    })
}

/// Copies `t[.., start..start+len, ..]` along `axis`.
fn narrow(t: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor, OpError> {
    let st = istrides(t.shape());
    let mut dims = t.shape().to_vec();
    dims[axis] = len;
    strided(t, start as isize * st[axis], &dims, &st)
}

fn split(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    let attr_split = c.attr_ints("split")?;
    let num_outputs = c.attr_opt_i("num_outputs")?;
    let opset = c.opset;
    let n_out = c.num_outputs();
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let a = norm_axis(axis, t.rank())?;
        let dim = t.shape()[a];
        let sizes: Vec<usize> = match axes_input_or_attr(opset, 13, ins, &attr_split, 1)? {
            Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
            None => {
                let n = num_outputs.map(|v| v as usize).unwrap_or(n_out).max(1);
                let chunk = if num_outputs.is_some() { dim.div_ceil(n) } else { dim / n };
                (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim {
            return Err(op_err!("split sizes {sizes:?} do not add up to dimension {dim}"));
        }
        let mut outs = Vec::new();
        let mut start = 0;
        for &s in &sizes {
            outs.push(Some(Value::Tensor(narrow(t, a, start, s)?)));
            start += s;
        }
        Ok(outs)
    })
}

fn slice(c: &BuildCtx<'_>) -> KResult {
    let opset = c.opset;
    let a_starts = c.attr_ints("starts")?;
    let a_ends = c.attr_ints("ends")?;
    let a_axes = c.attr_ints("axes")?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let (starts, ends, axes, steps) = if opset < 10 {
            (a_starts.clone().ok_or("missing starts")?, a_ends.clone().ok_or("missing ends")?, a_axes.clone(), None)
        } else {
            let opt = |i| -> Result<Option<Vec<i64>>, OpError> { opt_input(ins, i)?.map(ints_of).transpose() };
            (ints_of(input(ins, 1)?)?, ints_of(input(ins, 2)?)?, opt(3)?, opt(4)?)
        };
        let r = t.rank();
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&x| norm_axis(x, r)).collect::<Result<_, _>>()?,
            None => (0..starts.len()).collect(),
        };
        if starts.len() != axes.len() || ends.len() != axes.len() {
            return Err(op_err!("starts/ends/axes lengths differ"));
        }
        let st = istrides(t.shape());
        let mut dims = t.shape().to_vec();
        let mut strides = st.clone();
        let mut offset = 0isize;
        for (k, &ax) in axes.iter().enumerate() {
            let d = t.shape()[ax] as i64;
            let step = steps.as_ref().map(|s| s[k]).unwrap_or(1);
            if step == 0 {
                return Err(op_err!("slice step is 0"));
            }
            let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
            let (s, e) = if step > 0 {
                (norm(starts[k]).clamp(0, d), norm(ends[k]).clamp(0, d))
            } else {
                (norm(starts[k]).clamp(0, (d - 1).max(0)), norm(ends[k]).clamp(-1, d - 1))
            };
            let count = if step > 0 {
                if e > s { (e - s + step - 1) / step } else { 0 }
            } else if s > e {
                (s - e + (-step) - 1) / (-step)
            } else {
                0
            };
            dims[ax] = count as usize;
            strides[ax] = st[ax] * step as isize;
            if count > 0 {
                offset += s as isize * st[ax];
            }
        }
        out1(strided(t, offset, &dims, &strides)?)
    })
}

fn norm_indices(idx: &[i64], dim: usize) -> Result<Vec<usize>, OpError> {
    idx.iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if j < 0 || j >= dim as i64 {
                Err(op_err!("index {i} is out of range for a dimension of {dim}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

fn gather(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let it = input(ins, 1)?;
        let a = norm_axis(axis, t.rank())?;
        let dim = t.shape()[a];
        let idx = norm_indices(&ints_of(it)?, dim)?;
        let outer = product(&t.shape()[..a]);
        let inner = product(&t.shape()[a + 1..]);
        let mut shape = t.shape()[..a].to_vec();
        shape.extend_from_slice(it.shape());
        shape.extend_from_slice(&t.shape()[a + 1..]);
        out1(blocks(t, shape, outer, dim * inner, inner, &idx)?)
    })
}

fn gather_elements(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let it = input(ins, 1)?;
        let r = t.rank();
        let a = norm_axis(axis, r)?;
        if it.rank() != r {
            return Err(op_err!("indices rank {} differs from data rank {r}", it.rank()));
        }
        let dim = t.shape()[a] as i64;
        let idx = ints_of(it)?;
        let ds = qaic_tensor::strides(t.shape());
        let is = qaic_tensor::strides(it.shape());
        let mut flat = Vec::with_capacity(idx.len());
        for (p, &i) in idx.iter().enumerate() {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                return Err(op_err!("index {i} out of range for axis {a} of size {dim}"));
            }
            let mut off = 0;
            for ax in 0..r {
                let coord = if ax == a { j as usize } else { (p / is[ax]) % it.shape()[ax] };
                off += coord * ds[ax];
            }
            flat.push(off);
        }
        out1(take(t, it.shape().to_vec(), &flat, None)?)
    })
}

fn gather_nd(c: &BuildCtx<'_>) -> KResult {
    let b = c.attr_i("batch_dims", 0)? as usize;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let it = input(ins, 1)?;
        let q = it.rank();
        let m = *it.shape().last().ok_or("indices must have rank >= 1")?;
        if b + m > t.rank() || b >= q {
            return Err(op_err!("batch_dims {b} and index depth {m} do not fit data rank {}", t.rank()));
        }
        let idx = ints_of(it)?;
        let batch = product(&t.shape()[..b]);
        let inner = product(&t.shape()[b + m..]);
        let per_batch = product(&t.shape()[b..]);
        let n_tuples = product(&it.shape()[b..q - 1]);
        let ds = qaic_tensor::strides(&t.shape()[b..b + m]);
        let mut offs = Vec::with_capacity(batch * n_tuples);
        for bi in 0..batch {
            for k in 0..n_tuples {
                let tuple = &idx[(bi * n_tuples + k) * m..(bi * n_tuples + k + 1) * m];
                let mut off = bi * per_batch;
                for (j, &i) in tuple.iter().enumerate() {
                    let d = t.shape()[b + j] as i64;
                    let v = if i < 0 { i + d } else { i };
                    if v < 0 || v >= d {
                        return Err(op_err!("index {i} out of range for a dimension of {d}"));
                    }
                    off += v as usize * ds[j] * inner;
                }
                offs.push(off / inner.max(1));
            }
        }
        let mut shape = it.shape()[..q - 1].to_vec();
        shape.extend_from_slice(&t.shape()[b + m..]);
        // Offsets are in units of `inner` blocks of the flattened data.
        out1(blocks(t, shape, 1, 0, inner, &offs)?)
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Red {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(c: &BuildCtx<'_>) -> Result<Red, OpError> {
    Ok(match c.attr_s("reduction", "none")?.as_str() {
        "none" => Red::None,
        "add" => Red::Add,
        "mul" => Red::Mul,
        "max" => Red::Max,
        "min" => Red::Min,
        r => return Err(OpError::Unsupported(format!("reduction `{r}`"))),
    })
}

/// Writes `upd[k]` into `data[offs[k]]` with a reduction.
fn scatter_write(data: &Tensor, upd: &Tensor, offs: &[usize], red: Red) -> Result<Tensor, OpError> {
    if data.dtype() != upd.dtype() {
        return Err(op_err!("updates type {} differs from data type {}", upd.dtype(), data.dtype()));
    }
    fn plain<T: AnyElem>(data: &Tensor, upd: &Tensor, offs: &[usize], inner: usize) -> Result<Tensor, OpError> {
        let mut d = T::elems(data)?.into_owned();
        let u = T::elems(upd)?;
        for (k, &o) in offs.iter().enumerate() {
            let dst = d.get_mut(o * inner..(o + 1) * inner).ok_or("scatter index out of range")?;
            dst.clone_from_slice(&u[k * inner..(k + 1) * inner]);
        }
        T::build(data.dtype(), data.shape().to_vec(), d)
    }
    fn reduce<T: Num>(data: &Tensor, upd: &Tensor, offs: &[usize], inner: usize, red: Red) -> Result<Tensor, OpError> {
        let mut d = data.view::<T>()?.into_owned();
        let u = upd.view::<T>()?;
        for (k, &o) in offs.iter().enumerate() {
            for j in 0..inner {
                let x = d.get_mut(o * inner + j).ok_or("scatter index out of range")?;
                let y = u[k * inner + j];
                *x = match red {
                    Red::Add => x.add(y),
                    Red::Mul => x.mul(y),
                    Red::Max => if y > *x { y } else { *x },
                    Red::Min => if y < *x { y } else { *x },
                    Red::None => y,
                };
            }
        }
        Ok(Tensor::from_vec(data.shape().to_vec(), d)?)
    }
    let inner = if offs.is_empty() { 1 } else { upd.len() / offs.len() };
    if red == Red::None {
        any_type!(data.dtype(), T => plain::<T>(data, upd, offs, inner))
    } else {
        crate::with_num!(data.dtype(), T => reduce::<T>(data, upd, offs, inner, red),
            _ => Err(op_err!("scatter reductions do not take {}", data.dtype())))
    }
}

fn scatter_elements(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    let red = reduction(c)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let it = input(ins, 1)?;
        let upd = input(ins, 2)?;
        let r = t.rank();
        let a = norm_axis(axis, r)?;
        let dim = t.shape()[a] as i64;
        let idx = ints_of(it)?;
        let ds = qaic_tensor::strides(t.shape());
        let is = qaic_tensor::strides(it.shape());
        let mut offs = Vec::with_capacity(idx.len());
        for (p, &i) in idx.iter().enumerate() {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                return Err(op_err!("index {i} out of range for axis {a} of size {dim}"));
            }
            let mut off = 0;
            for ax in 0..r {
                let coord = if ax == a { j as usize } else { (p / is[ax]) % it.shape()[ax] };
                off += coord * ds[ax];
            }
            offs.push(off);
        }
        out1(scatter_write(t, upd, &offs, red)?)
    })
}

fn scatter_nd(c: &BuildCtx<'_>) -> KResult {
    let red = reduction(c)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let it = input(ins, 1)?;
        let upd = input(ins, 2)?;
        let m = *it.shape().last().ok_or("indices must have rank >= 1")?;
        if m > t.rank() {
            return Err(op_err!("index depth {m} exceeds data rank {}", t.rank()));
        }
        let idx = ints_of(it)?;
        let ds = qaic_tensor::strides(&t.shape()[..m]);
        let n = if m == 0 { 0 } else { idx.len() / m };
        let mut offs = Vec::with_capacity(n);
        for k in 0..n {
            let mut off = 0;
            for j in 0..m {
                let d = t.shape()[j] as i64;
                let i = idx[k * m + j];
                let v = if i < 0 { i + d } else { i };
                if v < 0 || v >= d {
                    return Err(op_err!("index {i} out of range for a dimension of {d}"));
                }
                off += v as usize * ds[j];
            }
            offs.push(off);
        }
        out1(scatter_write(t, upd, &offs, red)?)
    })
}

fn expand(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        let target: Vec<usize> = ints_of(input(ins, 1)?)?.iter().map(|&d| d.max(0) as usize).collect();
        let shape = qaic_tensor::broadcast(t.shape(), &target)
            .ok_or_else(|| op_err!("cannot expand {:?} to {target:?}", t.shape()))?;
        out1(broadcast_to(t, &shape)?)
    })
}

/// Materialises `t` broadcast to `shape`.
pub(crate) fn broadcast_to(t: &Tensor, shape: &[usize]) -> Result<Tensor, OpError> {
    if t.shape() == shape {
        return Ok(t.clone());
    }
    let st = istrides(t.shape());
    let off = shape.len() - t.rank();
    let strides: Vec<isize> =
        (0..shape.len()).map(|i| if i < off || t.shape()[i - off] == 1 { 0 } else { st[i - off] }).collect();
    strided(t, 0, shape, &strides)
}

fn tile(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        let reps = ints_of(input(ins, 1)?)?;
        if reps.len() != t.rank() || reps.iter().any(|&r| r < 0) {
            return Err(op_err!("repeats {reps:?} do not fit rank {}", t.rank()));
        }
        let st = istrides(t.shape());
        let mut dims = Vec::new();
        let mut strides = Vec::new();
        for (i, &r) in reps.iter().enumerate() {
            dims.push(r as usize);
            strides.push(0);
            dims.push(t.shape()[i]);
            strides.push(st[i]);
        }
        let out = strided(t, 0, &dims, &strides)?;
        let shape: Vec<usize> = t.shape().iter().zip(&reps).map(|(&d, &r)| d * r as usize).collect();
        out1(out.reshaped(shape)?)
    })
}

#[derive(Clone, Copy)]
enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

fn pad(c: &BuildCtx<'_>) -> KResult {
    let mode = match c.attr_s("mode", "constant")?.as_str() {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        m => return Err(OpError::Unsupported(format!("mode `{m}`"))),
    };
    let opset = c.opset;
    let attr_pads = c.attr_ints("pads")?.or(c.attr_ints("paddings")?);
    let attr_value = c.attr_f("value", 0.0)?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let r = t.rank();
        let (pads, fill, axes) = if opset < 11 {
            let f = cast_tensor(&Tensor::scalar(attr_value), t.dtype())?;
            (attr_pads.clone().ok_or("missing pads")?, Some(f), None)
        } else {
            let f = opt_input(ins, 2)?.cloned();
            let axes = opt_input(ins, 3)?.map(ints_of).transpose()?;
            (ints_of(input(ins, 1)?)?, f, axes)
        };
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&x| norm_axis(x, r)).collect::<Result<_, _>>()?,
            None => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(op_err!("pads {pads:?} do not fit {} axes", axes.len()));
        }
        let mut begin = vec![0i64; r];
        let mut end = vec![0i64; r];
        for (k, &a) in axes.iter().enumerate() {
            begin[a] = pads[k];
            end[a] = pads[k + axes.len()];
        }
        // Per-axis source index for each output index (usize::MAX = fill).
        let mut maps: Vec<Vec<usize>> = Vec::with_capacity(r);
        let mut shape = Vec::with_capacity(r);
        for a in 0..r {
            let d = t.shape()[a] as i64;
            let n = d + begin[a] + end[a];
            if n < 0 {
                return Err(op_err!("pads {pads:?} make axis {a} negative"));
            }
            let map: Vec<usize> = (0..n)
                .map(|o| {
                    let i = o - begin[a];
                    if (0..d).contains(&i) {
                        return i as usize;
                    }
                    if d == 0 {
                        return usize::MAX;
                    }
                    match mode {
                        PadMode::Constant => usize::MAX,
                        PadMode::Edge => i.clamp(0, d - 1) as usize,
                        PadMode::Wrap => i.rem_euclid(d) as usize,
                        PadMode::Reflect => {
                            if d == 1 {
                                0
                            } else {
                                let p = 2 * (d - 1);
                                let m = i.rem_euclid(p);
                                (if m < d { m } else { p - m }) as usize
                            }
                        }
                    }
                })
                .collect();
            shape.push(n as usize);
            maps.push(map);
        }
        let st = qaic_tensor::strides(t.shape());
        let n = product(&shape);
        let mut idx = Vec::with_capacity(n);
        let mut coord = vec![0usize; r];
        for _ in 0..n {
            let mut off = 0usize;
            let mut fill_here = false;
            for a in 0..r {
                let s = maps[a][coord[a]];
                if s == usize::MAX {
                    fill_here = true;
                    break;
                }
                off += s * st[a];
            }
            idx.push(if fill_here { usize::MAX } else { off });
            for a in (0..r).rev() {
                coord[a] += 1;
                if coord[a] < shape[a] {
                    break;
                }
                coord[a] = 0;
            }
        }
        out1(take(t, shape, &idx, fill.as_ref())?)
    })
}

fn constant(c: &BuildCtx<'_>) -> KResult {
    let t = if let Some(t) = c.attr_tensor("value")? {
        t.clone()
    } else if let Some(v) = c.attr_opt_f("value_float")? {
        Tensor::scalar(v)
    } else if let Some(v) = c.attr_floats("value_floats")? {
        Tensor::from_vec(vec![v.len()], v)?
    } else if let Some(v) = c.attr_opt_i("value_int")? {
        Tensor::scalar(v)
    } else if let Some(v) = c.attr_ints("value_ints")? {
        Tensor::from_vec(vec![v.len()], v)?
    } else if c.attr("value_string").is_some() {
        Tensor::from_strings(vec![], vec![c.attr_s("value_string", "")?.into_bytes()])?
    } else if let Some(qaic_ir::Attr::Strings(v)) = c.attr("value_strings") {
        Tensor::from_strings(vec![v.len()], v.clone())?
    } else if c.attr("sparse_value").is_some() {
        return Err(OpError::Unsupported("sparse_value".into()));
    } else {
        return Err(op_err!("Constant has no value attribute"));
    };
    kernel(move |_| out1(t.clone()))
}

fn constant_of_shape(c: &BuildCtx<'_>) -> KResult {
    let value = match c.attr_tensor("value")? {
        Some(v) => v.clone(),
        None => Tensor::scalar(0f32),
    };
    if value.len() != 1 {
        return Err(op_err!("value must hold one element, has {}", value.len()));
    }
    kernel(move |ins| {
        let shape: Vec<usize> = ints_of(input(ins, 0)?)?.iter().map(|&d| d.max(0) as usize).collect();
        let zeros = vec![0isize; shape.len()];
        out1(strided(&value, 0, &shape, &zeros)?)
    })
}

fn range(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let s = input(ins, 0)?;
        let l = input(ins, 1)?;
        let d = input(ins, 2)?;
        crate::with_num!(s.dtype(), T => {
            let first = |t: &Tensor| -> Result<T, OpError> { t.view::<T>()?.first().copied().ok_or_else(|| op_err!("empty range input")) };
            let (s, l, d) = (first(s)?, first(l)?, first(d)?);
            let n = ((l.to_f64() - s.to_f64()) / d.to_f64()).ceil().max(0.0) as usize;
            let v: Vec<T> = if T::FLOAT {
                (0..n).map(|i| T::from_f64(s.to_f64() + i as f64 * d.to_f64())).collect()
            } else {
                let mut x = s;
                (0..n).map(|_| { let y = x; x = x.add(d); y }).collect()
            };
            out1(Tensor::from_vec(vec![n], v)?)
        }, _ => Err(op_err!("Range does not take {}", s.dtype())))
    })
}

fn one_hot(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", -1)?;
    kernel(move |ins| {
        let it = input(ins, 0)?;
        let depth = decode_f64(input(ins, 1)?)?.first().copied().ok_or("depth is empty")? as i64;
        let values = input(ins, 2)?;
        if values.len() != 2 || depth < 0 {
            return Err(op_err!("values must hold [off, on] and depth be >= 0"));
        }
        let r = it.rank() + 1;
        let a = norm_axis(axis, r)?;
        let idx = decode_f64(it)?;
        let outer = product(&it.shape()[..a]);
        let inner = product(&it.shape()[a..]);
        let dep = depth as usize;
        let mut sel = vec![0usize; outer * dep * inner];
        for o in 0..outer {
            for i in 0..inner {
                let mut v = idx[o * inner + i] as i64;
                if v < 0 {
                    v += depth;
                }
                if (0..depth).contains(&v) {
                    sel[(o * dep + v as usize) * inner + i] = 1;
                }
            }
        }
        let mut shape = it.shape()[..a].to_vec();
        shape.push(dep);
        shape.extend_from_slice(&it.shape()[a..]);
        out1(take(values, shape, &sel, None)?)
    })
}

fn nonzero_mask(t: &Tensor) -> Result<Vec<bool>, OpError> {
    if t.dtype() == DType::String {
        return Ok(t.strings()?.iter().map(|s| !s.is_empty()).collect());
    }
    Ok(decode_f64(t)?.into_iter().map(|v| v != 0.0).collect())
}

fn non_zero(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        let mask = nonzero_mask(t)?;
        let r = t.rank();
        let st = qaic_tensor::strides(t.shape());
        let hits: Vec<usize> = mask.iter().enumerate().filter(|(_, m)| **m).map(|(i, _)| i).collect();
        let mut out = vec![0i64; r * hits.len()];
        for (k, &p) in hits.iter().enumerate() {
            for a in 0..r {
                out[a * hits.len() + k] = ((p / st[a]) % t.shape()[a]) as i64;
            }
        }
        out1(Tensor::from_vec(vec![r, hits.len()], out)?)
    })
}

fn compress(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_opt_i("axis")?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let cond = nonzero_mask(input(ins, 1)?)?;
        let (t, a) = match axis {
            Some(ax) => (t.clone(), norm_axis(ax, t.rank())?),
            None => (t.reshaped(vec![t.len()])?, 0),
        };
        let dim = t.shape()[a];
        let sel: Vec<usize> = (0..dim).filter(|&i| cond.get(i).copied().unwrap_or(false)).collect();
        let outer = product(&t.shape()[..a]);
        let inner = product(&t.shape()[a + 1..]);
        let mut shape = t.shape().to_vec();
        shape[a] = sel.len();
        out1(blocks(&t, shape, outer, dim * inner, inner, &sel)?)
    })
}

fn trilu(c: &BuildCtx<'_>) -> KResult {
    let upper = c.attr_i("upper", 1)? != 0;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let k = match opt_input(ins, 1)? {
            Some(k) => scalar_i(k, "k")?,
            None => 0,
        };
        let r = t.rank();
        if r < 2 {
            return Err(op_err!("Trilu needs rank >= 2"));
        }
        let (rows, cols) = (t.shape()[r - 2], t.shape()[r - 1]);
        let idx: Vec<usize> = (0..t.len())
            .map(|p| {
                let j = (p % cols) as i64;
                let i = ((p / cols) % rows) as i64;
                let keep = if upper { j - i >= k } else { j - i <= k };
                if keep { p } else { usize::MAX }
            })
            .collect();
        out1(take(t, t.shape().to_vec(), &idx, None)?)
    })
}

fn eye_like(c: &BuildCtx<'_>) -> KResult {
    let dtype = c.attr_opt_i("dtype")?;
    let k = c.attr_i("k", 0)?;
    let dtype = match dtype {
        Some(d) => Some(DType::from_onnx(d as i32).ok_or_else(|| op_err!("dtype {d} is not an element type"))?),
        None => None,
    };
    kernel(move |ins| {
        let t = input(ins, 0)?;
        if t.rank() != 2 {
            return Err(op_err!("EyeLike needs a 2-D input"));
        }
        let (rows, cols) = (t.shape()[0], t.shape()[1]);
        let v: Vec<f64> = (0..rows * cols)
            .map(|p| if (p % cols) as i64 - (p / cols) as i64 == k { 1.0 } else { 0.0 })
            .collect();
        let f = Tensor::from_vec(vec![rows, cols], v)?;
        out1(cast_tensor(&f, dtype.unwrap_or(t.dtype()))?)
    })
}

fn depth_to_space(c: &BuildCtx<'_>) -> KResult {
    let bs = c.attr_i("blocksize", 0)?;
    let crd = c.attr_s("mode", "DCR")? == "CRD";
    if bs <= 0 {
        return Err(op_err!("blocksize must be positive"));
    }
    let bs = bs as usize;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let &[n, ch, h, w] = t.shape() else { return Err(op_err!("DepthToSpace needs a 4-D input")) };
        if ch % (bs * bs) != 0 {
            return Err(op_err!("channels {ch} not divisible by blocksize² {}", bs * bs));
        }
        let c2 = ch / (bs * bs);
        let (v, perm) = if crd {
            (t.reshaped(vec![n, c2, bs, bs, h, w])?, [0, 1, 4, 2, 5, 3])
        } else {
            (t.reshaped(vec![n, bs, bs, c2, h, w])?, [0, 3, 4, 1, 5, 2])
        };
        out1(transpose_t(&v, &perm)?.reshaped(vec![n, c2, h * bs, w * bs])?)
    })
}

fn space_to_depth(c: &BuildCtx<'_>) -> KResult {
    let bs = c.attr_i("blocksize", 0)?;
    if bs <= 0 {
        return Err(op_err!("blocksize must be positive"));
    }
    let bs = bs as usize;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let &[n, ch, h, w] = t.shape() else { return Err(op_err!("SpaceToDepth needs a 4-D input")) };
        if h % bs != 0 || w % bs != 0 {
            return Err(op_err!("spatial size {h}x{w} not divisible by blocksize {bs}"));
        }
        let v = t.reshaped(vec![n, ch, h / bs, bs, w / bs, bs])?;
        out1(transpose_t(&v, &[0, 3, 5, 1, 2, 4])?.reshaped(vec![n, ch * bs * bs, h / bs, w / bs])?)
    })
}

fn reverse_sequence(c: &BuildCtx<'_>) -> KResult {
    let batch_axis = c.attr_i("batch_axis", 1)? as usize;
    let time_axis = c.attr_i("time_axis", 0)? as usize;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let lens = ints_of(input(ins, 1)?)?;
        let r = t.rank();
        if batch_axis >= r || time_axis >= r {
            return Err(op_err!("batch_axis/time_axis out of range"));
        }
        let st = qaic_tensor::strides(t.shape());
        let idx: Vec<usize> = (0..t.len())
            .map(|p| {
                let b = (p / st[batch_axis]) % t.shape()[batch_axis];
                let ti = (p / st[time_axis]) % t.shape()[time_axis];
                let len = lens.get(b).copied().unwrap_or(0).max(0) as usize;
                if ti < len { p - ti * st[time_axis] + (len - 1 - ti) * st[time_axis] } else { p }
            })
            .collect();
        out1(take(t, t.shape().to_vec(), &idx, None)?)
    })
}

fn unique(c: &BuildCtx<'_>) -> KResult {
    let sorted = c.attr_i("sorted", 1)? != 0;
    let axis = c.attr_opt_i("axis")?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let (t, a) = match axis {
            Some(ax) => (t.clone(), norm_axis(ax, t.rank())?),
            None => (t.reshaped(vec![t.len()])?, 0),
        };
        fn groups<T: AnyElem>(t: &Tensor, a: usize, sorted: bool) -> Result<(Vec<usize>, Vec<i64>, Vec<i64>), OpError> {
            let v = T::elems(t)?;
            let dim = t.shape()[a];
            let outer = product(&t.shape()[..a]);
            let inner = product(&t.shape()[a + 1..]);
            // The slice at index i along the axis, as a list of elements.
            let sl = |i: usize| -> Vec<T> {
                let mut s = Vec::with_capacity(outer * inner);
                for o in 0..outer {
                    s.extend_from_slice(&v[(o * dim + i) * inner..(o * dim + i + 1) * inner]);
                }
                s
            };
            let slices: Vec<Vec<T>> = (0..dim).map(sl).collect();
            let mut firsts: Vec<usize> = Vec::new();
            let mut inverse = vec![0usize; dim];
            for i in 0..dim {
                match firsts.iter().position(|&f| slices[f] == slices[i]) {
                    Some(g) => inverse[i] = g,
                    None => {
                        inverse[i] = firsts.len();
                        firsts.push(i);
                    }
                }
            }
            let mut order: Vec<usize> = (0..firsts.len()).collect();
            if sorted {
                order.sort_by(|&x, &y| {
                    slices[firsts[x]].partial_cmp(&slices[firsts[y]]).unwrap_or(std::cmp::Ordering::Equal)
                });
            }
            let mut rank_of = vec![0usize; firsts.len()];
            for (r, &g) in order.iter().enumerate() {
                rank_of[g] = r;
            }
            let mut counts = vec![0i64; firsts.len()];
            for &g in &inverse {
                counts[rank_of[g]] += 1;
            }
            let firsts_sorted: Vec<usize> = order.iter().map(|&g| firsts[g]).collect();
            let inv: Vec<i64> = inverse.iter().map(|&g| rank_of[g] as i64).collect();
            Ok((firsts_sorted, inv, counts))
        }
        let (firsts, inv, counts) = any_type!(t.dtype(), T => groups::<T>(&t, a, sorted))?;
        let dim = t.shape()[a];
        let outer = product(&t.shape()[..a]);
        let inner = product(&t.shape()[a + 1..]);
        let mut shape = t.shape().to_vec();
        shape[a] = firsts.len();
        let y = blocks(&t, shape, outer, dim * inner, inner, &firsts)?;
        let n = firsts.len();
        let idx: Vec<i64> = firsts.iter().map(|&f| f as i64).collect();
        Ok(vec![
            Some(Value::Tensor(y)),
            Some(Value::Tensor(Tensor::from_vec(vec![n], idx)?)),
            Some(Value::Tensor(Tensor::from_vec(vec![inv.len()], inv)?)),
            Some(Value::Tensor(Tensor::from_vec(vec![n], counts)?)),
        ])
    })
}

// ---------------------------------------------------------------------------------------------
// Einsum and Det (f64 loops; exact enough for every float type, exact for small integers)

struct EinsumSpec {
    inputs: Vec<Vec<char>>,
    output: Vec<char>,
}

/// Parses an equation, expanding `...` into fresh upper-case-free labels given input ranks.
fn parse_einsum(eq: &str, ranks: &[usize]) -> Result<EinsumSpec, OpError> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(op_err!("equation `{eq}` has {} operands, got {} inputs", terms.len(), ranks.len()));
    }
    // Ellipsis labels: digits '0'..'9' stand for broadcast dims (right-aligned).
    let mut ell_rank = 0;
    let mut inputs = Vec::new();
    for (&term, &r) in terms.iter().zip(ranks) {
        let explicit = term.replace("...", "").chars().count();
        let labels: Vec<char> = if term.contains("...") {
            let e = r.checked_sub(explicit).ok_or_else(|| op_err!("operand `{term}` does not fit rank {r}"))?;
            ell_rank = ell_rank.max(e);
            let (pre, post) = term.split_once("...").unwrap_or((term, ""));
            let ell: Vec<char> = (0..e).map(|i| char::from(b'0' + (10 - e + i) as u8)).collect();
            pre.chars().chain(ell).chain(post.chars()).collect()
        } else {
            term.chars().collect()
        };
        if labels.len() != r {
            return Err(op_err!("operand `{term}` does not fit rank {r}"));
        }
        inputs.push(labels);
    }
    let ell: Vec<char> = (0..ell_rank).map(|i| char::from(b'0' + (10 - ell_rank + i) as u8)).collect();
    let output: Vec<char> = match rhs {
        Some(r) => {
            let (pre, post) = r.split_once("...").map(|(a, b)| (a.to_string(), b.to_string())).unwrap_or((r.clone(), String::new()));
            if r.contains("...") {
                pre.chars().chain(ell.iter().copied()).chain(post.chars()).collect()
            } else {
                r.chars().collect()
            }
        }
        None => {
            let mut once: Vec<char> = Vec::new();
            let all: Vec<char> = inputs.iter().flatten().copied().filter(|c| c.is_alphabetic()).collect();
            for &c in &all {
                if all.iter().filter(|&&x| x == c).count() == 1 {
                    once.push(c);
                }
            }
            once.sort();
            ell.iter().copied().chain(once).collect()
        }
    };
    Ok(EinsumSpec { inputs, output })
}

fn einsum(c: &BuildCtx<'_>) -> KResult {
    let eq = c.attr_s("equation", "")?;
    kernel(move |ins| {
        let ts: Vec<&Tensor> = ins.iter().flatten().filter_map(|v| v.as_tensor()).collect();
        let ranks: Vec<usize> = ts.iter().map(|t| t.rank()).collect();
        let spec = parse_einsum(&eq, &ranks)?;
        let mut labels: Vec<char> = spec.output.clone();
        for l in spec.inputs.iter().flatten() {
            if !labels.contains(l) {
                labels.push(*l);
            }
        }
        let mut size = vec![1usize; labels.len()];
        for (t, lab) in ts.iter().zip(&spec.inputs) {
            for (&l, &d) in lab.iter().zip(t.shape()) {
                let k = labels.iter().position(|&x| x == l).unwrap_or(0);
                if d != 1 {
                    if size[k] != 1 && size[k] != d {
                        return Err(op_err!("label `{l}` has sizes {} and {d}", size[k]));
                    }
                    size[k] = d;
                }
            }
        }
        let data: Vec<Vec<f64>> = ts.iter().map(|t| decode_f64(t)).collect::<Result<_, _>>()?;
        // Per input: stride of each label (0 where absent or broadcast).
        let strides: Vec<Vec<usize>> = ts
            .iter()
            .zip(&spec.inputs)
            .map(|(t, lab)| {
                let st = qaic_tensor::strides(t.shape());
                labels
                    .iter()
                    .map(|l| {
                        lab.iter()
                            .enumerate()
                            .filter(|(_, x)| *x == l)
                            .map(|(i, _)| if t.shape()[i] == 1 { 0 } else { st[i] })
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let no = spec.output.len();
        let out_shape: Vec<usize> = size[..no].to_vec();
        let n_out = product(&out_shape);
        let n_red = product(&size[no..]);
        let mut out = vec![0f64; n_out];
        let mut coord = vec![0usize; labels.len()];
        for o in out.iter_mut() {
            let mut acc = 0.0;
            for _ in 0..n_red {
                let mut p = 1.0;
                for (d, s) in data.iter().zip(&strides) {
                    let off: usize = coord.iter().zip(s).map(|(c, s)| c * s).sum();
                    p *= d[off];
                }
                acc += p;
                for k in (no..labels.len()).rev() {
                    coord[k] += 1;
                    if coord[k] < size[k] {
                        break;
                    }
                    coord[k] = 0;
                }
            }
            *o = acc;
            for k in (0..no).rev() {
                coord[k] += 1;
                if coord[k] < size[k] {
                    break;
                }
                coord[k] = 0;
            }
        }
        let f = Tensor::from_vec(out_shape, out)?;
        out1(cast_tensor(&f, ts.first().ok_or("Einsum needs inputs")?.dtype())?)
    })
}

fn det(_: &BuildCtx<'_>) -> KResult {
    kernel(|ins| {
        let t = input(ins, 0)?;
        let r = t.rank();
        if r < 2 || t.shape()[r - 1] != t.shape()[r - 2] {
            return Err(op_err!("Det needs square matrices, got {:?}", t.shape()));
        }
        let n = t.shape()[r - 1];
        let v = decode_f64(t)?;
        let batch = product(&t.shape()[..r - 2]);
        let mut out = Vec::with_capacity(batch);
        for b in 0..batch {
            let mut m = v[b * n * n..(b + 1) * n * n].to_vec();
            let mut d = 1.0;
            for col in 0..n {
                let piv = (col..n)
                    .max_by(|&x, &y| m[x * n + col].abs().partial_cmp(&m[y * n + col].abs()).unwrap_or(std::cmp::Ordering::Equal))
                    .unwrap_or(col);
                if m[piv * n + col] == 0.0 {
                    d = 0.0;
                    break;
                }
                if piv != col {
                    for k in 0..n {
                        m.swap(col * n + k, piv * n + k);
                    }
                    d = -d;
                }
                let p = m[col * n + col];
                d *= p;
                for row in col + 1..n {
                    let f = m[row * n + col] / p;
                    for k in col..n {
                        m[row * n + k] -= f * m[col * n + k];
                    }
                }
            }
            out.push(d);
        }
        let f = Tensor::from_vec(t.shape()[..r - 2].to_vec(), out)?;
        out1(cast_tensor(&f, t.dtype())?)
    })
}

#[cfg(test)]
mod tests {
    use super::super::elementwise::tests::{run_op, t};
    use qaic_ir::Attr;
    use qaic_tensor::Tensor;

    fn ints(v: &[i64]) -> Tensor {
        t(&[v.len()], v.to_vec())
    }

    #[test]
    fn transpose_slice_concat() {
        let x = t(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]);
        let y = run_op("Transpose", 13, vec![], vec![Some(x.clone())], 1).unwrap().remove(0);
        assert_eq!(y.shape(), &[3, 2]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1., 4., 2., 5., 3., 6.]);
        let s = run_op(
            "Slice",
            13,
            vec![],
            vec![Some(x.clone()), Some(ints(&[0, 5])), Some(ints(&[i64::MIN, -4])), Some(ints(&[1, 1])), Some(ints(&[1, -1]))],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[3., 2., 1., 6., 5., 4.]);
        let c = run_op("Concat", 13, vec![("axis", Attr::Int(1))], vec![Some(x.clone()), Some(x)], 1).unwrap().remove(0);
        assert_eq!(c.shape(), &[2, 6]);
        assert_eq!(c.as_slice::<f32>().unwrap()[3..6], [1., 2., 3.]);
    }

    #[test]
    fn gather_pad_tile_expand() {
        let x = t(&[3, 2], vec![1i64, 2, 3, 4, 5, 6]);
        let g = run_op("Gather", 13, vec![], vec![Some(x.clone()), Some(t(&[2], vec![-1i64, 0]))], 1).unwrap().remove(0);
        assert_eq!(g.as_slice::<i64>().unwrap(), &[5, 6, 1, 2]);
        let p = run_op(
            "Pad",
            18,
            vec![("mode", Attr::String(b"reflect".to_vec()))],
            vec![Some(x.clone()), Some(ints(&[0, 1, 0, 1]))],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(p.as_slice::<i64>().unwrap(), &[2, 1, 2, 1, 4, 3, 4, 3, 6, 5, 6, 5]);
        let tl = run_op("Tile", 13, vec![], vec![Some(t(&[2], vec![1u8, 2])), Some(ints(&[2]))], 1).unwrap().remove(0);
        assert_eq!(tl.as_slice::<u8>().unwrap(), &[1, 2, 1, 2]);
        let e = run_op("Expand", 13, vec![], vec![Some(t(&[2, 1], vec![true, false])), Some(ints(&[2, 2]))], 1).unwrap().remove(0);
        assert_eq!(e.as_slice::<bool>().unwrap(), &[true, true, false, false]);
    }

    #[test]
    fn einsum_matmul_and_trace() {
        let a = t(&[2, 2], vec![1f32, 2., 3., 4.]);
        let m = run_op("Einsum", 12, vec![("equation", Attr::String(b"ij,jk->ik".to_vec()))], vec![Some(a.clone()), Some(a.clone())], 1)
            .unwrap()
            .remove(0);
        assert_eq!(m.as_slice::<f32>().unwrap(), &[7., 10., 15., 22.]);
        let tr = run_op("Einsum", 12, vec![("equation", Attr::String(b"ii".to_vec()))], vec![Some(a.clone())], 1).unwrap().remove(0);
        assert_eq!(tr.as_slice::<f32>().unwrap(), &[5.]);
        let d = run_op("Det", 13, vec![], vec![Some(a)], 1).unwrap().remove(0);
        assert!((d.as_slice::<f32>().unwrap()[0] + 2.0).abs() < 1e-6);
    }

    #[test]
    fn unique_sorted() {
        let x = t(&[6], vec![2f32, 1., 1., 3., 4., 3.]);
        let o = run_op("Unique", 11, vec![], vec![Some(x)], 4).unwrap();
        assert_eq!(o[0].as_slice::<f32>().unwrap(), &[1., 2., 3., 4.]);
        assert_eq!(o[1].as_slice::<i64>().unwrap(), &[1, 0, 3, 4]);
        assert_eq!(o[2].as_slice::<i64>().unwrap(), &[1, 0, 0, 2, 3, 2]);
        assert_eq!(o[3].as_slice::<i64>().unwrap(), &[2, 1, 2, 1]);
    }
}
