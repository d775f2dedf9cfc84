//! Reductions and ops along an axis: Reduce{Sum,Mean,Max,Min,Prod,L1,L2,LogSum,LogSumExp,
//! SumSquare}, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax, CumSum/CumProd and TopK.
//!
//! Reductions accumulate in f64 (every element type converts exactly except 64-bit integers
//! beyond 2^53) and iterate kept axes outside, reduced axes inside, so nothing is allocated per
//! element. Softmax has an f32 fast path for the common last-axis case.

use qaic_tensor::{DType, Tensor, Value, bf16, f16};

use super::elementwise::{KResult, Num, kernel};
use super::util::{input, ints_of, norm_axis, opt_input, out1};
use crate::registry::{BuildCtx, Registry};
use crate::{OpError, op_err};

pub fn register(r: &mut Registry) {
    r.add("ReduceSum", 1, |c| reduce(c, Kind::Sum, 13));
    r.add("ReduceMean", 1, |c| reduce(c, Kind::Mean, 18));
    r.add("ReduceMax", 1, |c| reduce(c, Kind::Max, 18));
    r.add("ReduceMin", 1, |c| reduce(c, Kind::Min, 18));
    r.add("ReduceProd", 1, |c| reduce(c, Kind::Prod, 18));
    r.add("ReduceL1", 1, |c| reduce(c, Kind::L1, 18));
    r.add("ReduceL2", 1, |c| reduce(c, Kind::L2, 18));
    r.add("ReduceLogSum", 1, |c| reduce(c, Kind::LogSum, 18));
    r.add("ReduceLogSumExp", 1, |c| reduce(c, Kind::LogSumExp, 18));
    r.add("ReduceSumSquare", 1, |c| reduce(c, Kind::SumSquare, 18));
    r.add("ArgMax", 1, |c| arg(c, true));
    r.add("ArgMin", 1, |c| arg(c, false));
    r.add("Softmax", 1, |c| softmax(c, Soft::Softmax));
    r.add("LogSoftmax", 1, |c| softmax(c, Soft::LogSoftmax));
    r.add("Hardmax", 1, |c| softmax(c, Soft::Hardmax));
    r.add("CumSum", 11, |c| cumulative(c, false));
    r.add("CumProd", 1, |c| cumulative(c, true));
    r.add("TopK", 1, topk);
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

fn reduce(c: &BuildCtx<'_>, kind: Kind, input_since: i64) -> KResult {
    let keepdims = c.attr_i("keepdims", 1)? != 0;
    let noop = c.attr_i("noop_with_empty_axes", 0)? != 0;
    let attr_axes = c.attr_ints("axes")?;
    let axes_from_input = c.opset >= input_since;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let axes = if axes_from_input {
            opt_input(ins, 1)?.map(ints_of).transpose()?
        } else {
            attr_axes.clone()
        };
        let r = t.rank();
        let mut mask = vec![false; r];
        match axes {
            Some(a) if !a.is_empty() => {
                for x in a {
                    mask[norm_axis(x, r)?] = true;
                }
            }
            _ if noop => {}
            _ => mask.iter_mut().for_each(|m| *m = true),
        }
        if t.dtype() == DType::Bool {
            // Boolean Max/Min (opset 20) are Or/And: reduce as u8 and convert back.
            let u = super::elementwise::cast::cast_tensor(t, DType::U8)?;
            let r = reduce_t::<u8>(&u, &mask, keepdims, kind)?;
            return out1(super::elementwise::cast::cast_tensor(&r, DType::Bool)?);
        }
        crate::with_num!(t.dtype(), T => out1(reduce_t::<T>(t, &mask, keepdims, kind)?),
            _ => Err(op_err!("reductions do not take {}", t.dtype())))
    })
}

/// Splits a shape into kept and reduced (dims, strides) lists.
fn split_axes(shape: &[usize], mask: &[bool]) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let st = qaic_tensor::strides(shape);
    let (mut kd, mut ks, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
    for a in 0..shape.len() {
        if mask[a] {
            rd.push(shape[a]);
            rs.push(st[a]);
        } else {
            kd.push(shape[a]);
            ks.push(st[a]);
        }
    }
    (kd, ks, rd, rs)
}

/// Calls `f(offset)` for every element of an odometer over (dims, strides) from `base`.
#[inline]
fn for_offsets(base: usize, dims: &[usize], strides: &[usize], mut f: impl FnMut(usize)) {
    let n: usize = dims.iter().product();
    if n == 0 {
        return;
    }
    if dims.is_empty() {
        f(base);
        return;
    }
    let r = dims.len();
    let (inner, si) = (dims[r - 1], strides[r - 1]);
    let mut idx = vec![0usize; r - 1];
    let mut off = base;
    for _ in 0..n / inner {
        for k in 0..inner {
            f(off + k * si);
        }
        for ax in (0..r - 1).rev() {
            idx[ax] += 1;
            off += strides[ax];
            if idx[ax] < dims[ax] {
                break;
            }
            off -= strides[ax] * dims[ax];
            idx[ax] = 0;
        }
    }
}

fn reduce_t<T: Num>(t: &Tensor, mask: &[bool], keepdims: bool, kind: Kind) -> Result<Tensor, OpError> {
    let v = t.view::<T>()?;
    let (kd, ks, rd, rs) = split_axes(t.shape(), mask);
    let count: usize = rd.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(kd.iter().product());
    let mut bases = Vec::with_capacity(kd.iter().product());
    for_offsets(0, &kd, &ks, |b| bases.push(b));
    for &b in &bases {
        let x = |o: usize| v[o].to_f64();
        let res = match kind {
            Kind::Sum | Kind::Mean => {
                let mut s = 0.0;
                for_offsets(b, &rd, &rs, |o| s += x(o));
                if kind == Kind::Mean { s / count as f64 } else { s }
            }
            Kind::Prod => {
                let mut s = 1.0;
                for_offsets(b, &rd, &rs, |o| s *= x(o));
                s
            }
            Kind::Max | Kind::Min => {
                let mut s = if kind == Kind::Max { T::lowest().to_f64() } else { T::highest().to_f64() };
                for_offsets(b, &rd, &rs, |o| {
                    let y = x(o);
                    if y.is_nan() || (kind == Kind::Max && y > s) || (kind == Kind::Min && y < s) {
                        if !s.is_nan() {
                            s = y;
                        }
                    }
                });
                s
            }
            Kind::L1 => {
                let mut s = 0.0;
                for_offsets(b, &rd, &rs, |o| s += x(o).abs());
                s
            }
            Kind::L2 | Kind::SumSquare => {
                let mut s = 0.0;
                for_offsets(b, &rd, &rs, |o| s += x(o) * x(o));
                if kind == Kind::L2 { s.sqrt() } else { s }
            }
            Kind::LogSum => {
                let mut s = 0.0;
                for_offsets(b, &rd, &rs, |o| s += x(o));
                s.ln()
            }
            Kind::LogSumExp => {
                let mut m = f64::NEG_INFINITY;
                for_offsets(b, &rd, &rs, |o| m = m.max(x(o)));
                if m.is_infinite() {
                    m
                } else {
                    let mut s = 0.0;
                    for_offsets(b, &rd, &rs, |o| s += (x(o) - m).exp());
                    s.ln() + m
                }
            }
        };
        out.push(T::from_f64(res));
    }
    let shape: Vec<usize> = if keepdims {
        t.shape().iter().zip(mask).map(|(&d, &m)| if m { 1 } else { d }).collect()
    } else {
        kd.clone()
    };
    Ok(Tensor::from_vec(shape, out)?)
}

fn arg(c: &BuildCtx<'_>, max: bool) -> KResult {
    let axis = c.attr_i("axis", 0)?;
    let keepdims = c.attr_i("keepdims", 1)? != 0;
    let last = c.attr_i("select_last_index", 0)? != 0;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let a = norm_axis(axis, t.rank())?;
        let outer: usize = t.shape()[..a].iter().product();
        let n = t.shape()[a];
        let inner: usize = t.shape()[a + 1..].iter().product();
        let v = super::elementwise::cast::decode_f64(t)?;
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                let mut bv = f64::NAN;
                for k in 0..n {
                    let x = v[(o * n + k) * inner + i];
                    let better = if k == 0 || x.is_nan() && !bv.is_nan() {
                        true
                    } else if bv.is_nan() {
                        false
                    } else if last {
                        if max { x >= bv } else { x <= bv }
                    } else if max {
                        x > bv
                    } else {
                        x < bv
                    };
                    if better {
                        best = k;
                        bv = x;
                    }
                }
                out.push(best as i64);
            }
        }
        let mut shape = t.shape().to_vec();
        if keepdims {
            shape[a] = 1;
        } else {
            shape.remove(a);
        }
        out1(Tensor::from_vec(shape, out)?)
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Soft {
    Softmax,
    LogSoftmax,
    Hardmax,
}

/// Softmax family over one row given as a strided f64 buffer.
fn soft_row(buf: &mut [f64], kind: Soft) {
    let m = buf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match kind {
        Soft::Hardmax => {
            let pos = buf.iter().position(|&x| x == m).unwrap_or(0);
            buf.iter_mut().enumerate().for_each(|(i, x)| *x = if i == pos { 1.0 } else { 0.0 });
        }
        Soft::Softmax => {
            let mut s = 0.0;
            for x in buf.iter_mut() {
                *x = (*x - m).exp();
                s += *x;
            }
            buf.iter_mut().for_each(|x| *x /= s);
        }
        Soft::LogSoftmax => {
            let s: f64 = buf.iter().map(|&x| (x - m).exp()).sum();
            let l = s.ln();
            buf.iter_mut().for_each(|x| *x = *x - m - l);
        }
    }
}

fn softmax(c: &BuildCtx<'_>, kind: Soft) -> KResult {
    let old = c.opset < 13;
    let axis = c.attr_i("axis", if old { 1 } else { -1 })?;
    let k = super::linalg::kernels()?;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let r = t.rank();
        let a = norm_axis(axis, r.max(1))?;
        let (outer, n, inner) = if old {
            (t.shape()[..a].iter().product::<usize>(), t.shape()[a..].iter().product::<usize>(), 1usize)
        } else {
            (t.shape()[..a].iter().product(), *t.shape().get(a).unwrap_or(&1), t.shape()[a + 1..].iter().product())
        };
        if t.dtype() == DType::F32 && inner == 1 && kind == Soft::Softmax {
            let v = t.view::<f32>()?;
            let mut out = vec![0f32; v.len()];
            for (src, dst) in v.chunks_exact(n.max(1)).zip(out.chunks_exact_mut(n.max(1))) {
                let m = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                for (d, &x) in dst.iter_mut().zip(src) {
                    *d = x - m;
                }
                k.unary_inplace(qaic_kernels::elementwise::UnaryOp::Exp, dst);
                let s: f32 = dst.iter().sum();
                let inv = 1.0 / s;
                dst.iter_mut().for_each(|d| *d *= inv);
            }
            return out1(Tensor::from_vec(t.shape().to_vec(), out)?);
        }
        let v = super::elementwise::cast::decode_f64(t)?;
        let mut out = vec![0f64; v.len()];
        let mut buf = vec![0f64; n];
        for o in 0..outer {
            for i in 0..inner {
                for k in 0..n {
                    buf[k] = v[(o * n + k) * inner + i];
                }
                soft_row(&mut buf, kind);
                for k in 0..n {
                    out[(o * n + k) * inner + i] = buf[k];
                }
            }
        }
        out1(from_f64(t.dtype(), t.shape().to_vec(), out)?)
    })
}

fn from_f64(dt: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<Tensor, OpError> {
    Ok(match dt {
        DType::F64 => Tensor::from_vec(shape, v)?,
        DType::F32 => Tensor::from_vec(shape, v.into_iter().map(|x| x as f32).collect())?,
        DType::F16 => Tensor::from_vec(shape, v.into_iter().map(f16::from_f64).collect())?,
        DType::BF16 => Tensor::from_vec(shape, v.into_iter().map(bf16::from_f64).collect())?,
        d => return Err(op_err!("expected a float tensor, got {d}")),
    })
}

fn cumulative(c: &BuildCtx<'_>, prod: bool) -> KResult {
    let exclusive = c.attr_i("exclusive", 0)? != 0;
    let reverse = c.attr_i("reverse", 0)? != 0;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let axis = ints_of(input(ins, 1)?)?.first().copied().ok_or("axis is empty")?;
        let a = norm_axis(axis, t.rank())?;
        let outer: usize = t.shape()[..a].iter().product();
        let n = t.shape()[a];
        let inner: usize = t.shape()[a + 1..].iter().product();
        crate::with_num!(t.dtype(), T => {
            let v = t.view::<T>()?;
            let mut out = vec![T::zero(); v.len()];
            for o in 0..outer {
                for i in 0..inner {
                    let mut acc = if prod { T::one() } else { T::zero() };
                    for step in 0..n {
                        let k = if reverse { n - 1 - step } else { step };
                        let p = (o * n + k) * inner + i;
                        let x = v[p];
                        if exclusive {
                            out[p] = acc;
                        }
                        acc = if prod { acc.mul(x) } else { acc.add(x) };
                        if !exclusive {
                            out[p] = acc;
                        }
                    }
                }
            }
            out1(Tensor::from_vec(t.shape().to_vec(), out)?)
        }, _ => Err(op_err!("cumulative ops do not take {}", t.dtype())))
    })
}

fn topk(c: &BuildCtx<'_>) -> KResult {
    let axis = c.attr_i("axis", -1)?;
    let largest = c.attr_i("largest", 1)? != 0;
    let sorted = c.attr_i("sorted", 1)? != 0;
    let attr_k = c.attr_opt_i("k")?;
    let opset = c.opset;
    let _ = sorted;
    kernel(move |ins| {
        let t = input(ins, 0)?;
        let k = if opset < 10 {
            attr_k.ok_or("missing attribute k")?
        } else {
            ints_of(input(ins, 1)?)?.first().copied().ok_or("K is empty")?
        };
        let a = norm_axis(axis, t.rank())?;
        let n = t.shape()[a];
        if k < 0 || k as usize > n {
            return Err(op_err!("k = {k} is out of range for an axis of {n}"));
        }
        let k = k as usize;
        let outer: usize = t.shape()[..a].iter().product();
        let inner: usize = t.shape()[a + 1..].iter().product();
        let v = super::elementwise::cast::decode_f64(t)?;
        let mut src_idx = Vec::with_capacity(outer * k * inner);
        let mut indices = vec![0i64; outer * k * inner];
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| v[(o * n + j) * inner + i];
                order.clear();
                order.extend(0..n);
                order.sort_by(|&x, &y| {
                    let (vx, vy) = (at(x), at(y));
                    let c = if largest { vy.partial_cmp(&vx) } else { vx.partial_cmp(&vy) };
                    c.unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(&y))
                });
                for (j, &s) in order[..k].iter().enumerate() {
                    indices[(o * k + j) * inner + i] = s as i64;
                }
            }
        }
        for o in 0..outer {
            for j in 0..k {
                for i in 0..inner {
                    let s = indices[(o * k + j) * inner + i] as usize;
                    src_idx.push((o * n + s) * inner + i);
                }
            }
        }
        let mut shape = t.shape().to_vec();
        shape[a] = k;
        let values = super::shape::take(t, shape.clone(), &src_idx, None)?;
        Ok(vec![Some(Value::Tensor(values)), Some(Value::Tensor(Tensor::from_vec(shape, indices)?))])
    })
}

#[cfg(test)]
mod tests {
    use super::super::elementwise::tests::{run_op, t};
    use qaic_ir::Attr;

    #[test]
    fn reduce_forms() {
        let x = t(&[2, 3], vec![1f32, 2., 3., 4., 5., 6.]);
        let s = run_op("ReduceSum", 13, vec![("keepdims", Attr::Int(0))], vec![Some(x.clone()), Some(t(&[1], vec![1i64]))], 1)
            .unwrap()
            .remove(0);
        assert_eq!(s.shape(), &[2]);
        assert_eq!(s.as_slice::<f32>().unwrap(), &[6., 15.]);
        let m = run_op("ReduceMean", 13, vec![("axes", Attr::Ints(vec![0]))], vec![Some(x.clone())], 1).unwrap().remove(0);
        assert_eq!(m.shape(), &[1, 3]);
        assert_eq!(m.as_slice::<f32>().unwrap(), &[2.5, 3.5, 4.5]);
        let all = run_op("ReduceMax", 18, vec![("keepdims", Attr::Int(0))], vec![Some(x.clone())], 1).unwrap().remove(0);
        assert_eq!(all.shape(), &[] as &[usize]);
        assert_eq!(all.as_slice::<f32>().unwrap(), &[6.]);
        let noop = run_op("ReduceSumSquare", 18, vec![("noop_with_empty_axes", Attr::Int(1))], vec![Some(x)], 1).unwrap().remove(0);
        assert_eq!(noop.as_slice::<f32>().unwrap(), &[1., 4., 9., 16., 25., 36.]);
    }

    #[test]
    fn softmax_argmax_topk_cumsum() {
        let x = t(&[2, 2], vec![0f32, 0., 1., 3.]);
        let s = run_op("Softmax", 13, vec![], vec![Some(x.clone())], 1).unwrap().remove(0);
        assert_eq!(s.as_slice::<f32>().unwrap()[..2], [0.5, 0.5]);
        let a = run_op("ArgMax", 13, vec![("axis", Attr::Int(1)), ("select_last_index", Attr::Int(1))], vec![Some(x.clone())], 1)
            .unwrap()
            .remove(0);
        assert_eq!(a.as_slice::<i64>().unwrap(), &[1, 1]);
        let k = run_op("TopK", 11, vec![], vec![Some(t(&[4], vec![1f32, 5., 3., 5.])), Some(t(&[1], vec![2i64]))], 2).unwrap();
        assert_eq!(k[0].as_slice::<f32>().unwrap(), &[5., 5.]);
        assert_eq!(k[1].as_slice::<i64>().unwrap(), &[1, 3]);
        let c = run_op(
            "CumSum",
            14,
            vec![("exclusive", Attr::Int(1)), ("reverse", Attr::Int(1))],
            vec![Some(t(&[3], vec![1i32, 2, 3])), Some(t(&[], vec![0i64]))],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(c.as_slice::<i32>().unwrap(), &[5, 3, 0]);
    }
}
