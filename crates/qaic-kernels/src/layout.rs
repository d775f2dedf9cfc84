//! Data movement for any element type: transpose/permute (cache-blocked), gather.

use crate::threads::{parallel_for, SendPtr};
use crate::util::{check_len, contiguous_strides, numel};
use crate::KernelError;

/// Output shape of permuting `shape` by `perm` (`out[i] = shape[perm[i]]`), checking `perm`.
pub fn permuted_shape(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>, KernelError> {
    let mut seen = vec![false; shape.len()];
    if perm.len() != shape.len() || perm.iter().any(|&p| p >= shape.len() || std::mem::replace(&mut seen[p], true)) {
        return Err(KernelError::invalid("transpose", format!("perm {perm:?} is not a permutation of rank {}", shape.len())));
    }
    Ok(perm.iter().map(|&p| shape[p]).collect())
}

/// ONNX `Transpose`: `out` gets `x` permuted by `perm`. Returns the output shape.
///
/// Unit dimensions are dropped and dimensions that stay adjacent are merged first; when the
/// innermost input dimension moves, the copy runs in 2-D tiles (32x32) so both reads and
/// writes stay in cache (2-D transposes, NCHW <-> NHWC).
pub fn transpose<T: Copy + Send + Sync>(x: &[T], shape: &[usize], perm: &[usize], out: &mut [T]) -> Result<Vec<usize>, KernelError> {
    let oshape = permuted_shape(shape, perm)?;
    check_len("transpose", "input", x.len(), shape)?;
    check_len("transpose", "output", out.len(), &oshape)?;
    if x.is_empty() {
        return Ok(oshape);
    }
    // Collapse: drop unit dims, merge runs of consecutive input axes.
    let keep: Vec<usize> = perm.iter().copied().filter(|&p| shape[p] != 1).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in &keep {
        match groups.last_mut() {
            Some(g) if *g.last().unwrap_or(&usize::MAX) + 1 == p => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    // New input order: groups sorted by their first axis.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let in_dims: Vec<usize> = order.iter().map(|&g| groups[g].iter().map(|&a| shape[a]).product()).collect();
    let mut cperm = vec![0usize; groups.len()];
    for (new_in, &g) in order.iter().enumerate() {
        cperm[g] = new_in;
    }
    let r = in_dims.len();
    if r <= 1 || cperm.iter().enumerate().all(|(i, &p)| i == p) {
        out.copy_from_slice(x);
        return Ok(oshape);
    }
    let in_strides = contiguous_strides(&in_dims);
    let o_dims: Vec<usize> = cperm.iter().map(|&p| in_dims[p]).collect();
    let o_src_strides: Vec<usize> = cperm.iter().map(|&p| in_strides[p]).collect();
    let outp = SendPtr(out.as_mut_ptr());
    if cperm[r - 1] == r - 1 {
        // Innermost dim unchanged: copy contiguous runs.
        let run = o_dims[r - 1];
        let outer_dims = &o_dims[..r - 1];
        let outer_strides = &o_src_strides[..r - 1];
        let n_outer = numel(outer_dims);
        let chunk = n_outer.div_ceil(if x.len() > 1 << 16 { crate::num_threads() * 4 } else { 1 }).max(1);
        parallel_for(n_outer.div_ceil(chunk), |c| {
            for k in c * chunk..((c + 1) * chunk).min(n_outer) {
                let mut rem = k;
                let mut src = 0;
                for d in (0..r - 1).rev() {
                    src += (rem % outer_dims[d]) * outer_strides[d];
                    rem /= outer_dims[d];
                }
                // SAFETY: run k is a disjoint output range.
                let dst = unsafe { std::slice::from_raw_parts_mut(outp.get().add(k * run), run) };
                dst.copy_from_slice(&x[src..src + run]);
            }
        });
        return Ok(oshape);
    }
    // q: output axis holding the innermost input axis (stride 1 in the input).
    let q = cperm.iter().position(|&p| p == r - 1).unwrap_or(0);
    let (nq, nl) = (o_dims[q], o_dims[r - 1]);
    let sl = o_src_strides[r - 1];
    let o_strides = contiguous_strides(&o_dims);
    let rest: Vec<usize> = (0..r - 1).filter(|&d| d != q).collect();
    let n_rest: usize = rest.iter().map(|&d| o_dims[d]).product();
    const B: usize = 32;
    let work = |k: usize| {
        let mut rem = k;
        let (mut src, mut dst) = (0usize, 0usize);
        for &d in rest.iter().rev() {
            let i = rem % o_dims[d];
            rem /= o_dims[d];
            src += i * o_src_strides[d];
            dst += i * o_strides[d];
        }
        let sq = o_strides[q];
        for q0 in (0..nq).step_by(B) {
            for l0 in (0..nl).step_by(B) {
                for l in l0..(l0 + B).min(nl) {
                    for qq in q0..(q0 + B).min(nq) {
                        // SAFETY: distinct (k, qq, l) map to distinct output elements and each
                        // k is owned by one item.
                        unsafe { *outp.get().add(dst + qq * sq + l) = x[src + qq + l * sl] };
                    }
                }
            }
        }
    };
    if x.len() > 1 << 16 && n_rest > 1 {
        parallel_for(n_rest, work);
    } else {
        (0..n_rest).for_each(work);
    }
    Ok(oshape)
}

/// ONNX `Gather` along `axis`: output shape is `shape[..axis] ++ indices_shape ++
/// shape[axis+1..]`. Negative indices count from the end; out-of-range indices are errors.
pub fn gather<T: Copy>(
    x: &[T],
    shape: &[usize],
    axis: usize,
    indices: &[i64],
    indices_shape: &[usize],
    out: &mut [T],
) -> Result<Vec<usize>, KernelError> {
    check_len("gather", "data", x.len(), shape)?;
    check_len("gather", "indices", indices.len(), indices_shape)?;
    if axis >= shape.len() {
        return Err(KernelError::invalid("gather", format!("axis {axis} out of range for {shape:?}")));
    }
    let mut oshape = shape[..axis].to_vec();
    oshape.extend_from_slice(indices_shape);
    oshape.extend_from_slice(&shape[axis + 1..]);
    check_len("gather", "output", out.len(), &oshape)?;
    let (outer, n, inner) = (numel(&shape[..axis]), shape[axis] as i64, numel(&shape[axis + 1..]));
    let mut resolved = Vec::with_capacity(indices.len());
    for &i in indices {
        let j = if i < 0 { i + n } else { i };
        if j < 0 || j >= n {
            return Err(KernelError::invalid("gather", format!("index {i} is out of range for axis {axis} of size {n}")));
        }
        resolved.push(j as usize);
    }
    let m = indices.len();
    for o in 0..outer {
        for (t, &j) in resolved.iter().enumerate() {
            let s = (o * n as usize + j) * inner;
            let d = (o * m + t) * inner;
            out[d..d + inner].copy_from_slice(&x[s..s + inner]);
        }
    }
    Ok(oshape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive<T: Copy + Default>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
        let os: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let is = contiguous_strides(shape);
        let src: Vec<usize> = perm.iter().map(|&p| is[p]).collect();
        let mut v = Vec::with_capacity(x.len());
        crate::util::for_each_offset(&os, [&src], |[o]| v.push(x[o]));
        v
    }

    fn shape_perm() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        proptest::collection::vec(1usize..6, 1..6).prop_flat_map(|shape| {
            let r = shape.len();
            (Just(shape), Just((0..r).collect::<Vec<usize>>()).prop_shuffle())
        })
    }

    proptest! {
        #[test]
        fn transpose_matches_naive((shape, perm) in shape_perm()) {
            let x: Vec<u32> = (0..numel(&shape) as u32).collect();
            let mut out = vec![0u32; x.len()];
            transpose(&x, &shape, &perm, &mut out).unwrap();
            prop_assert_eq!(out, naive(&x, &shape, &perm));
        }
    }

    #[test]
    fn big_transposes() {
        for (shape, perm) in [(vec![67usize, 45], vec![1usize, 0]), (vec![2, 64, 56, 57], vec![0, 2, 3, 1]), (vec![2, 56, 57, 64], vec![0, 3, 1, 2])] {
            let x: Vec<f32> = (0..numel(&shape)).map(|v| v as f32).collect();
            let mut out = vec![0f32; x.len()];
            transpose(&x, &shape, &perm, &mut out).unwrap();
            assert_eq!(out, naive(&x, &shape, &perm));
        }
        assert!(transpose(&[0u8; 6], &[2, 3], &[0, 0], &mut [0u8; 6]).is_err());
    }

    #[test]
    fn gather_rows() {
        let x: Vec<i32> = (0..12).collect();
        let mut out = vec![0; 8];
        let sh = gather(&x, &[3, 4], 1, &[3, -4], &[2], &mut out[..6]).unwrap();
        assert_eq!(sh, vec![3, 2]);
        assert_eq!(&out[..6], &[3, 0, 7, 4, 11, 8]);
        let sh = gather(&x, &[3, 4], 0, &[2, 0], &[1, 2], &mut out).unwrap();
        assert_eq!(sh, vec![1, 2, 4]);
        assert_eq!(out, [8, 9, 10, 11, 0, 1, 2, 3]);
        assert!(gather(&x, &[3, 4], 0, &[3], &[1], &mut out[..4]).is_err());
    }
}
