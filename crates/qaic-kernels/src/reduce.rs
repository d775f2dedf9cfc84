//! Reductions along axes (ONNX `Reduce*`), for every numeric type, with an f32 fast path.
//!
//! Axes are normalised to a contiguous block (the input is permuted first when they are not),
//! so every reduction runs over an `(outer, r, inner)` view: `inner == 1` reduces contiguous
//! rows, `inner > 1` accumulates rows into an output row (both vectorise).

use crate::layout::transpose;
use crate::num::{nan_max, nan_min, Numeric};
use crate::threads::{parallel_for, SendPtr};
use crate::util::{check_len, numel};
use crate::KernelError;

/// Reduction kinds (ONNX `ReduceSum`, `ReduceMean`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares.
    L2,
    /// `log(sum(x))`.
    LogSum,
    /// `log(sum(exp(x)))`, computed stably.
    LogSumExp,
    SumSquare,
}

/// Normalises possibly negative `axes` for a tensor of rank `rank` (sorted, deduplicated).
pub fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, KernelError> {
    let mut v = Vec::with_capacity(axes.len());
    for &a in axes {
        let r = rank as i64;
        if a < -r || a >= r {
            return Err(KernelError::invalid("reduce", format!("axis {a} is out of range for rank {rank}")));
        }
        v.push(if a < 0 { (a + r) as usize } else { a as usize });
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The output shape with reduced axes kept as 1 (`keepdims=1`).
pub fn reduced_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &d)| if axes.contains(&i) { 1 } else { d }).collect()
}

/// Reduces `x` (shape `shape`) over `axes` (already normalised; empty means none, i.e. a
/// copy with the op's element map). `out` has [`reduced_shape`] elements. Reducing an empty
/// set gives the op's identity (0 for sum, -inf for max of floats, ...), as ONNX specifies.
pub fn reduce<T: Numeric>(op: ReduceOp, x: &[T], shape: &[usize], axes: &[usize], out: &mut [T]) -> Result<(), KernelError> {
    check_len("reduce", "input", x.len(), shape)?;
    let oshape = reduced_shape(shape, axes);
    check_len("reduce", "output", out.len(), &oshape)?;
    if axes.iter().any(|&a| a >= shape.len()) {
        return Err(KernelError::invalid("reduce", format!("axes {axes:?} out of range for {shape:?}")));
    }
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if !contiguous {
        // Move reduced axes last, then reduce one contiguous block.
        let mut perm: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
        perm.extend_from_slice(axes);
        let mut tmp = vec![T::ZERO; x.len()];
        let pshape = transpose(x, shape, &perm, &mut tmp)?;
        let k = shape.len() - axes.len();
        let naxes: Vec<usize> = (k..shape.len()).collect();
        return reduce(op, &tmp, &pshape, &naxes, out);
    }
    let (outer, r, inner) = match (axes.first(), axes.last()) {
        (Some(&a0), Some(&a1)) => (numel(&shape[..a0]), numel(&shape[a0..=a1]), numel(&shape[a1 + 1..])),
        _ => (numel(shape), 1, 1),
    };
    reduce_block(op, x, outer, r, inner, out);
    Ok(())
}

#[inline(always)]
fn pre<T: Numeric>(op: ReduceOp, v: T) -> T {
    match op {
        ReduceOp::L1 => v.abs(),
        ReduceOp::L2 | ReduceOp::SumSquare => v.mul(v),
        _ => v,
    }
}

#[inline(always)]
fn combine<T: Numeric>(op: ReduceOp, a: T, b: T) -> T {
    match op {
        ReduceOp::Max => nan_max(a, b),
        ReduceOp::Min => nan_min(a, b),
        ReduceOp::Prod => a.mul(b),
        _ => a.add(b),
    }
}

fn identity<T: Numeric>(op: ReduceOp) -> T {
    match op {
        ReduceOp::Max => T::LOWEST,
        ReduceOp::Min => T::HIGHEST,
        ReduceOp::Prod => T::ONE,
        _ => T::ZERO,
    }
}

fn post<T: Numeric>(op: ReduceOp, v: T, r: usize) -> T {
    match op {
        ReduceOp::Mean => {
            if T::IS_FLOAT {
                T::from_f64(v.to_f64() / r as f64)
            } else {
                // Integer mean truncates like onnxruntime's integer division.
                T::from_f64((v.to_f64() / r as f64).trunc())
            }
        }
        ReduceOp::L2 => T::from_f64(v.to_f64().sqrt()),
        ReduceOp::LogSum => T::from_f64(v.to_f64().ln()),
        _ => v,
    }
}

fn reduce_block<T: Numeric>(op: ReduceOp, x: &[T], outer: usize, r: usize, inner: usize, out: &mut [T]) {
    if outer == 0 || inner == 0 {
        return;
    }
    let op_ptr = SendPtr(out.as_mut_ptr());
    let work = |o: usize| {
        // SAFETY: item `o` writes only its own `inner` outputs.
        let dst = unsafe { std::slice::from_raw_parts_mut(op_ptr.get().add(o * inner), inner) };
        let src = &x[o * r * inner..(o + 1) * r * inner];
        if op == ReduceOp::LogSumExp {
            // max first, then sum of exp(x - max).
            dst.fill(T::LOWEST);
            for row in src.chunks_exact(inner) {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = nan_max(*d, v);
                }
            }
            let mut acc = vec![0f64; inner];
            for row in src.chunks_exact(inner) {
                for ((a, &m), &v) in acc.iter_mut().zip(dst.iter()).zip(row) {
                    let mf = m.to_f64();
                    *a += if mf == f64::NEG_INFINITY { 0.0 } else { (v.to_f64() - mf).exp() };
                }
            }
            for (d, a) in dst.iter_mut().zip(acc) {
                let mf = d.to_f64();
                *d = T::from_f64(if mf.is_finite() { mf + a.ln() } else { mf });
            }
            return;
        }
        if inner == 1 {
            dst[0] = post(op, reduce_row(op, src), r);
        } else {
            dst.fill(identity(op));
            for row in src.chunks_exact(inner) {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = combine(op, *d, pre(op, v));
                }
            }
            for d in dst.iter_mut() {
                *d = post(op, *d, r);
            }
        }
    };
    if outer * r * inner >= 1 << 15 && outer > 1 {
        parallel_for(outer, work);
    } else {
        (0..outer).for_each(work);
    }
}

/// Reduces a contiguous row. f32 sums use 16 partial accumulators (vectorisable, and more
/// accurate than one running sum).
#[inline]
fn reduce_row<T: Numeric>(op: ReduceOp, src: &[T]) -> T {
    if T::IS_FLOAT && matches!(op, ReduceOp::Sum | ReduceOp::Mean | ReduceOp::L1 | ReduceOp::L2 | ReduceOp::SumSquare | ReduceOp::LogSum) {
        let mut acc = [T::ZERO; 16];
        let mut chunks = src.chunks_exact(16);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = a.add(pre(op, v));
            }
        }
        let mut s = T::ZERO;
        for &v in chunks.remainder() {
            s = s.add(pre(op, v));
        }
        for a in acc {
            s = s.add(a);
        }
        return s;
    }
    src.iter().fold(identity(op), |a, &v| combine(op, a, pre(op, v)))
}

/// Index of the max (or min) along `axis` (ONNX `ArgMax`/`ArgMin`), `select_last_index`
/// picking the last of equal values. Output shape is the input with `axis` set to 1.
pub fn arg_reduce<T: Numeric>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    max: bool,
    select_last: bool,
    out: &mut [i64],
) -> Result<(), KernelError> {
    check_len("argmax", "input", x.len(), shape)?;
    if axis >= shape.len() || shape[axis] == 0 {
        return Err(KernelError::invalid("argmax", format!("axis {axis} of {shape:?} is out of range or empty")));
    }
    let (outer, r, inner) = (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]));
    check_len("argmax", "output", out.len(), &[outer, inner])?;
    for o in 0..outer {
        for j in 0..inner {
            let mut best = x[o * r * inner + j];
            let mut bi = 0usize;
            for k in 1..r {
                let v = x[(o * r + k) * inner + j];
                let better = if max { v > best } else { v < best };
                if better || (select_last && v == best) {
                    best = v;
                    bi = k;
                }
            }
            out[o * inner + j] = bi as i64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testing::Rng;

    fn naive(op: ReduceOp, x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
        let oshape = reduced_shape(shape, axes);
        let mut groups: Vec<Vec<f64>> = vec![vec![]; numel(&oshape)];
        let cs = crate::util::contiguous_strides(&oshape);
        let mut idx = vec![0usize; shape.len()];
        for &v in x {
            let o: usize = idx.iter().enumerate().map(|(d, &i)| if axes.contains(&d) { 0 } else { i * cs[d] }).sum();
            groups[o].push(v);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        groups
            .into_iter()
            .map(|g| match op {
                ReduceOp::Sum => g.iter().sum(),
                ReduceOp::Mean => g.iter().sum::<f64>() / g.len() as f64,
                ReduceOp::Max => g.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Min => g.iter().cloned().fold(f64::INFINITY, f64::min),
                ReduceOp::Prod => g.iter().product(),
                ReduceOp::L1 => g.iter().map(|v| v.abs()).sum(),
                ReduceOp::L2 => g.iter().map(|v| v * v).sum::<f64>().sqrt(),
                ReduceOp::LogSum => g.iter().sum::<f64>().ln(),
                ReduceOp::LogSumExp => g.iter().map(|v| v.exp()).sum::<f64>().ln(),
                ReduceOp::SumSquare => g.iter().map(|v| v * v).sum(),
            })
            .collect()
    }

    #[test]
    fn reductions_match_naive() {
        let mut rng = Rng::new(10);
        let shape = [3usize, 4, 5, 6];
        let x: Vec<f32> = (0..numel(&shape)).map(|_| rng.f32(0.5, 1.5)).collect();
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let ops = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod, ReduceOp::L1, ReduceOp::L2, ReduceOp::LogSum, ReduceOp::LogSumExp, ReduceOp::SumSquare];
        for axes in [vec![], vec![0], vec![3], vec![1, 2], vec![0, 2], vec![1, 3], vec![0, 1, 2, 3]] {
            for op in ops {
                let want = naive(op, &xd, &shape, &axes);
                let mut out = vec![0f32; want.len()];
                reduce(op, &x, &shape, &axes, &mut out).unwrap();
                for (a, b) in out.iter().zip(&want) {
                    assert!((*a as f64 - b).abs() <= 1e-4 * b.abs().max(1.0), "{op:?} {axes:?}: {a} vs {b}");
                }
                let mut o64 = vec![0f64; want.len()];
                reduce(op, &xd, &shape, &axes, &mut o64).unwrap();
                for (a, b) in o64.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "f64 {op:?} {axes:?}");
                }
            }
        }
        let xi: Vec<i32> = (0..24).collect();
        let mut o = vec![0i32; 4];
        reduce(ReduceOp::Sum, &xi, &[2, 3, 4], &[0, 1], &mut o).unwrap();
        assert_eq!(o, [60, 66, 72, 78]);
        assert!(normalize_axes(&[-1, 5], 3).is_err());
        let mut am = [0i64; 4];
        arg_reduce(&[1.0f32, 3.0, 3.0, 0.0, 5.0, 1.0, 2.0, 9.0], &[2, 4], 1, true, true, &mut am[..2]).unwrap();
        assert_eq!(&am[..2], &[2, 3]);
    }
}
