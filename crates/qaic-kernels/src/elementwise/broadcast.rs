//! NumPy broadcasting as a reusable strided iterator.
//!
//! A [`Plan`] drops unit dimensions, merges dimensions that are contiguous for every operand,
//! and then walks the output in *runs*: maximal stretches along the innermost remaining
//! dimension where each input either advances by one element or stays put (stride 1 or 0).
//! Kernels handle a run with a tight loop, so the per-element cost is a plain vector loop.

use crate::threads::{parallel_for, SendPtr};
use crate::util::{broadcast_strides, check_len, numel};
use crate::KernelError;

/// Broadcast output shape of several operand shapes (NumPy rules).
pub fn broadcast_shapes(shapes: &[&[usize]]) -> Result<Vec<usize>, KernelError> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; r];
    for s in shapes {
        let off = r - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(KernelError::invalid("broadcast", format!("shapes {shapes:?} do not broadcast")));
            }
        }
    }
    Ok(out)
}

/// An iteration plan over `T` inputs broadcast to one output.
#[derive(Clone, Debug)]
pub struct Plan<const T: usize> {
    /// Output shape (uncollapsed).
    pub out_shape: Vec<usize>,
    /// Collapsed dimensions, innermost last.
    dims: Vec<usize>,
    /// Collapsed strides per input.
    strides: [Vec<usize>; T],
}

/// One run: start offsets in each input, their inner strides (0 or 1), the output offset, and
/// the run length.
#[derive(Clone, Copy, Debug)]
pub struct Run<const T: usize> {
    pub offsets: [usize; T],
    pub inner: [usize; T],
    pub out: usize,
    pub len: usize,
}

impl<const T: usize> Plan<T> {
    /// Plans broadcasting the inputs to their common shape.
    pub fn new(shapes: [&[usize]; T]) -> Result<Plan<T>, KernelError> {
        let out = broadcast_shapes(&shapes)?;
        Plan::to_shape(shapes, &out)
    }

    /// Plans broadcasting the inputs to a given output shape (e.g. `Expand`).
    pub fn to_shape(shapes: [&[usize]; T], out: &[usize]) -> Result<Plan<T>, KernelError> {
        let full: Vec<Vec<usize>> = shapes.iter().map(|s| broadcast_strides(s, out)).collect::<Result<_, _>>()?;
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: [Vec<usize>; T] = std::array::from_fn(|_| Vec::new());
        for (d, &n) in out.iter().enumerate() {
            if n == 1 {
                continue;
            }
            let merge = !dims.is_empty() && (0..T).all(|t| strides[t][dims.len() - 1] == full[t][d] * n);
            if merge {
                let last = dims.len() - 1;
                dims[last] *= n;
                for t in 0..T {
                    strides[t][last] = full[t][d];
                }
            } else {
                dims.push(n);
                for t in 0..T {
                    strides[t].push(full[t][d]);
                }
            }
        }
        // The innermost dimension must have stride 0 or 1 for every input; otherwise runs
        // are single elements (an extra unit dimension makes that explicit).
        if dims.is_empty() || (0..T).any(|t| strides[t][dims.len() - 1] > 1) {
            dims.push(1);
            for s in strides.iter_mut() {
                s.push(0);
            }
        }
        Ok(Plan { out_shape: out.to_vec(), dims, strides })
    }

    /// Number of output elements.
    pub fn len(&self) -> usize {
        numel(&self.out_shape)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of runs.
    pub fn runs(&self) -> usize {
        numel(&self.dims[..self.dims.len() - 1])
    }
    /// Length of every run.
    pub fn run_len(&self) -> usize {
        self.dims[self.dims.len() - 1]
    }

    /// Calls `f` for runs `[start, end)` in output order.
    #[allow(clippy::needless_range_loop)]
    pub fn for_each_run(&self, start: usize, end: usize, mut f: impl FnMut(Run<T>)) {
        let r = self.dims.len() - 1;
        let len = self.run_len();
        if start >= end || len == 0 {
            return;
        }
        let inner: [usize; T] = std::array::from_fn(|t| self.strides[t][r]);
        let mut idx = vec![0usize; r];
        let mut rem = start;
        for d in (0..r).rev() {
            idx[d] = rem % self.dims[d];
            rem /= self.dims[d];
        }
        let mut offsets: [usize; T] = std::array::from_fn(|t| (0..r).map(|d| idx[d] * self.strides[t][d]).sum());
        for k in start..end {
            f(Run { offsets, inner, out: k * len, len });
            let mut d = r;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                for t in 0..T {
                    offsets[t] += self.strides[t][d];
                }
                if idx[d] < self.dims[d] {
                    break;
                }
                for t in 0..T {
                    offsets[t] -= self.strides[t][d] * self.dims[d];
                }
                idx[d] = 0;
            }
        }
    }

    /// Runs `f(run, output_chunk)` over all runs, in parallel for large outputs. `f` gets the
    /// output elements of its run as a slice.
    pub fn par_runs<O: Send>(&self, out: &mut [O], f: impl Fn(Run<T>, &mut [O]) + Sync) {
        let runs = self.runs();
        let len = self.run_len();
        let total = runs * len;
        assert!(out.len() >= total, "caller checked the output size");
        let threads = crate::num_threads();
        let want = if total >= 1 << 15 && threads > 1 { threads * 4 } else { 1 };
        let op = SendPtr(out.as_mut_ptr());
        if want > runs && len >= 1 << 12 {
            // Few long runs (same-shape operands are one run): split each into pieces.
            let pieces = want.div_ceil(runs).min(len / (1 << 11)).max(1);
            let plen = len.div_ceil(pieces);
            parallel_for(runs * pieces, |i| {
                let (r, p) = (i / pieces, i % pieces);
                let (q0, q1) = (p * plen, ((p + 1) * plen).min(len));
                if q0 >= q1 {
                    return;
                }
                self.for_each_run(r, r + 1, |run| {
                    let piece = Run {
                        offsets: std::array::from_fn(|t| run.offsets[t] + q0 * run.inner[t]),
                        inner: run.inner,
                        out: run.out + q0,
                        len: q1 - q0,
                    };
                    // SAFETY: pieces of runs cover disjoint output ranges.
                    let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(piece.out), piece.len) };
                    f(piece, o);
                });
            });
            return;
        }
        let chunks = want.min(runs);
        let per = runs.div_ceil(chunks.max(1));
        parallel_for(runs.div_ceil(per.max(1)), |c| {
            self.for_each_run(c * per, ((c + 1) * per).min(runs), |run| {
                // SAFETY: runs cover disjoint output ranges.
                let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(run.out), run.len) };
                f(run, o);
            });
        });
    }
}

/// `out = f(a, b)` with NumPy broadcasting, for any element types. Returns the output shape.
pub fn broadcast_binary<A: Copy + Sync, B: Copy + Sync, O: Copy + Send>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    out: &mut [O],
    f: impl Fn(A, B) -> O + Sync,
) -> Result<Vec<usize>, KernelError> {
    check_len("broadcast", "first operand", a.len(), a_shape)?;
    check_len("broadcast", "second operand", b.len(), b_shape)?;
    let plan = Plan::new([a_shape, b_shape])?;
    check_len("broadcast", "output", out.len(), &plan.out_shape)?;
    plan.par_runs(out, |r, o| {
        let [ia, ib] = r.inner;
        let [oa, ob] = r.offsets;
        match (ia, ib) {
            (1, 1) => o.iter_mut().zip(&a[oa..oa + r.len]).zip(&b[ob..ob + r.len]).for_each(|((o, &x), &y)| *o = f(x, y)),
            (1, 0) => {
                let y = b[ob];
                o.iter_mut().zip(&a[oa..oa + r.len]).for_each(|(o, &x)| *o = f(x, y))
            }
            (0, 1) => {
                let x = a[oa];
                o.iter_mut().zip(&b[ob..ob + r.len]).for_each(|(o, &y)| *o = f(x, y))
            }
            _ => {
                let v = f(a[oa], b[ob]);
                o.fill(v)
            }
        }
    });
    Ok(plan.out_shape)
}

/// `out = f(a, b, c)` with NumPy broadcasting (e.g. `Where`). Returns the output shape.
#[allow(clippy::too_many_arguments)]
pub fn broadcast_ternary<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, O: Copy + Send>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    c: &[C],
    c_shape: &[usize],
    out: &mut [O],
    f: impl Fn(A, B, C) -> O + Sync,
) -> Result<Vec<usize>, KernelError> {
    check_len("broadcast", "first operand", a.len(), a_shape)?;
    check_len("broadcast", "second operand", b.len(), b_shape)?;
    check_len("broadcast", "third operand", c.len(), c_shape)?;
    let plan = Plan::new([a_shape, b_shape, c_shape])?;
    check_len("broadcast", "output", out.len(), &plan.out_shape)?;
    plan.par_runs(out, |r, o| {
        for (i, ov) in o.iter_mut().enumerate() {
            *ov = f(a[r.offsets[0] + i * r.inner[0]], b[r.offsets[1] + i * r.inner[1]], c[r.offsets[2] + i * r.inner[2]]);
        }
    });
    Ok(plan.out_shape)
}

/// Copies `x` broadcast to `out_shape` (ONNX `Expand` with a resolved shape).
pub fn broadcast_to<T: Copy + Sync + Send>(x: &[T], x_shape: &[usize], out_shape: &[usize], out: &mut [T]) -> Result<(), KernelError> {
    check_len("expand", "input", x.len(), x_shape)?;
    check_len("expand", "output", out.len(), out_shape)?;
    let plan = Plan::to_shape([x_shape], out_shape)?;
    plan.par_runs(out, |r, o| {
        if r.inner[0] == 1 {
            o.copy_from_slice(&x[r.offsets[0]..r.offsets[0] + r.len]);
        } else {
            o.fill(x[r.offsets[0]]);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(a: &[i64], ash: &[usize], b: &[i64], bsh: &[usize]) -> (Vec<i64>, Vec<usize>) {
        let out = broadcast_shapes(&[ash, bsh]).unwrap();
        let sa = broadcast_strides(ash, &out).unwrap();
        let sb = broadcast_strides(bsh, &out).unwrap();
        let mut v = vec![];
        crate::util::for_each_offset(&out, [&sa, &sb], |[x, y]| v.push(a[x] * 1000 + b[y]));
        (v, out)
    }

    fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        proptest::collection::vec((1usize..4, 0usize..3), 0..5).prop_map(|dims| {
            let mut a = vec![];
            let mut b = vec![];
            for (d, mode) in dims {
                a.push(if mode == 1 { 1 } else { d });
                b.push(if mode == 2 { 1 } else { d });
            }
            let cut = a.len() / 2;
            (a, b[cut..].to_vec())
        })
    }

    proptest! {
        #[test]
        fn binary_broadcast_matches_naive((ash, bsh) in shape_pair(), swap in any::<bool>()) {
            let (ash, bsh) = if swap { (bsh, ash) } else { (ash, bsh) };
            let a: Vec<i64> = (0..numel(&ash) as i64).collect();
            let b: Vec<i64> = (0..numel(&bsh) as i64).map(|x| x * 7).collect();
            let (want, wsh) = naive(&a, &ash, &b, &bsh);
            let mut out = vec![0i64; want.len()];
            let sh = broadcast_binary(&a, &ash, &b, &bsh, &mut out, |x, y| x * 1000 + y).unwrap();
            prop_assert_eq!(sh, wsh);
            prop_assert_eq!(out, want);
        }
    }

    #[test]
    fn mismatched_shapes_error() {
        let mut o = vec![0f32; 6];
        assert!(broadcast_binary(&[0f32; 6], &[2, 3], &[0f32; 2], &[2], &mut o, |a, b| a + b).is_err());
        let mut o = vec![0u8; 6];
        broadcast_to(&[1u8, 2, 3], &[3], &[2, 3], &mut o).unwrap();
        assert_eq!(o, [1, 2, 3, 1, 2, 3]);
    }
}
