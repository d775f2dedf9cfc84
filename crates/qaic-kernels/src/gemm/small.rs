//! GEMMs with very few rows or columns (matrix–vector products: a 1x1 convolution on a 1x1
//! image, `MatMul` of one token). The register-tiled micro-kernel computes `mr x nr` tiles, so
//! with 1 column out of `nr = 32` it would waste 97% of its work; these loops instead stream
//! the large operand once, vectorising along its contiguous axis.

use super::{apply_epilogue, Epilogue, Lhs, MatMut, Rhs};
use crate::dispatch::multiversion;
use crate::elementwise::math::mad;
use crate::threads::{parallel_for, SendPtr};
use crate::Isa;

/// At most this many rows (or columns) take the matrix–vector path.
pub(crate) const SMALL: usize = 4;

/// Rows of A per parallel item in the few-columns path.
const ROW_BLOCK: usize = 64;

/// `C = alpha * A * B + beta * C`, then the epilogue, when `C` has at most [`SMALL`] columns
/// or rows. Returns `false` (doing nothing) for operand layouts it does not handle.
#[allow(clippy::too_many_arguments)]
pub(crate) fn small_gemm(isa: Isa, a: Lhs, b: Rhs, alpha: f32, beta: f32, c: &mut MatMut, epi: &Epilogue, k: usize, parallel: bool) -> bool {
    let (m, n) = (c.rows, c.cols);
    if n <= SMALL {
        few_columns(isa, a, b, alpha, beta, c, epi, k, parallel)
    } else if m <= SMALL {
        few_rows(isa, a, b, alpha, beta, c, epi, k)
    } else {
        false
    }
}

#[inline(always)]
fn store(cp: *mut f32, alpha: f32, beta: f32, acc: f32) {
    // SAFETY: callers pass a pointer into the C tile they own.
    unsafe { *cp = if beta == 0.0 { alpha * acc } else { alpha * acc + beta * *cp } }
}

/// Reads B(p, j) for a plain (unpacked) right operand.
#[inline(always)]
fn b_at(b: &super::Mat, p: usize, j: usize) -> f32 {
    b.data[p * b.rs + j * b.cs]
}

#[allow(clippy::too_many_arguments)]
fn few_columns(isa: Isa, a: Lhs, b: Rhs, alpha: f32, beta: f32, c: &mut MatMut, epi: &Epilogue, k: usize, parallel: bool) -> bool {
    let Rhs::Mat(bm) = b else { return false };
    let (m, n) = (c.rows, c.cols);
    // B's few columns, contiguous (one short copy).
    let mut bcols = vec![0f32; n * k];
    for j in 0..n {
        for p in 0..k {
            bcols[j * k + p] = b_at(&bm, p, j);
        }
    }
    let (rsc, csc) = (c.rs, c.cs);
    let cptr = SendPtr(c.data.as_mut_ptr());
    match a {
        Lhs::Mat(am) if am.cs == 1 => {
            let item = |blk: usize| {
                let i0 = blk * ROW_BLOCK;
                for i in i0..(i0 + ROW_BLOCK).min(m) {
                    let row = &am.data[i * am.rs..i * am.rs + k];
                    for j in 0..n {
                        let acc = dot(isa, row, &bcols[j * k..(j + 1) * k]);
                        store(cptr.get().wrapping_add(i * rsc + j * csc), alpha, beta, acc);
                    }
                }
                // SAFETY: rows i0.. belong to this item.
                unsafe { apply_epilogue(epi, cptr.get().add(i0 * rsc), rsc, csc, i0, 0, (i0 + ROW_BLOCK).min(m) - i0, n) };
            };
            run(m.div_ceil(ROW_BLOCK), m * n * k, parallel, item);
            true
        }
        Lhs::Packed(pa) => {
            let (mr, kcb) = (pa.mr, pa.kc);
            let mpad = m.div_ceil(mr) * mr;
            let panels = m.div_ceil(mr);
            let item = |pi: usize| {
                // Accumulators for mr rows x n columns (mr <= 16, n <= SMALL).
                let mut acc = [0f32; 16 * SMALL];
                for pc in (0..k).step_by(kcb) {
                    let kc = kcb.min(k - pc);
                    let base = pc * mpad + pi * kc * mr;
                    let panel = &pa.data[base..base + kc * mr];
                    for j in 0..n {
                        let bj = &bcols[j * k + pc..j * k + pc + kc];
                        panel_times_vector(isa, panel, mr, bj, &mut acc[j * mr..(j + 1) * mr]);
                    }
                }
                let i0 = pi * mr;
                let rows = mr.min(m - i0);
                for r in 0..rows {
                    for j in 0..n {
                        store(cptr.get().wrapping_add((i0 + r) * rsc + j * csc), alpha, beta, acc[j * mr + r]);
                    }
                }
                // SAFETY: the rows of panel pi belong to this item.
                unsafe { apply_epilogue(epi, cptr.get().add(i0 * rsc), rsc, csc, i0, 0, rows, n) };
            };
            if mr > 16 {
                return false;
            }
            run(panels, m * n * k, parallel, item);
            true
        }
        _ => false,
    }
}

fn few_rows(isa: Isa, a: Lhs, b: Rhs, alpha: f32, beta: f32, c: &mut MatMut, epi: &Epilogue, k: usize) -> bool {
    let Lhs::Mat(am) = a else { return false };
    let (m, n) = (c.rows, c.cols);
    let (rsc, csc) = (c.rs, c.cs);
    let mut acc = vec![0f32; n];
    for i in 0..m {
        acc.fill(0.0);
        match b {
            Rhs::Mat(bm) if bm.cs == 1 => {
                for p in 0..k {
                    let av = am.data[i * am.rs + p * am.cs];
                    axpy(isa, av, &bm.data[p * bm.rs..p * bm.rs + n], &mut acc);
                }
            }
            Rhs::Packed(pb) => {
                let (nr, kcb) = (pb.nr, pb.kc);
                let npad = n.div_ceil(nr) * nr;
                for pc in (0..k).step_by(kcb) {
                    let kc = kcb.min(k - pc);
                    for jp in 0..n.div_ceil(nr) {
                        let base = pc * npad + jp * kc * nr;
                        let panel = &pb.data[base..base + kc * nr];
                        let j0 = jp * nr;
                        let nv = nr.min(n - j0);
                        let accp = &mut acc[j0..j0 + nv];
                        for (p, bp) in panel.chunks_exact(nr).enumerate() {
                            let av = am.data[i * am.rs + (pc + p) * am.cs];
                            axpy(isa, av, &bp[..nv], accp);
                        }
                    }
                }
            }
            _ => return false,
        }
        for (j, &v) in acc.iter().enumerate() {
            store(&mut c.data[i * rsc + j * csc], alpha, beta, v);
        }
    }
    // SAFETY: the whole C is ours.
    unsafe { apply_epilogue(epi, c.data.as_mut_ptr(), rsc, csc, 0, 0, m, n) };
    true
}

#[inline(always)]
fn dot_body<const FMA: bool>(x: &[f32], y: &[f32]) -> f32 {
    // Sixteen partial sums so the loop vectorises without reassociation flags.
    let mut s = [0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..16 {
            s[l] = mad::<FMA>(a[l], b[l], s[l]);
        }
    }
    let mut t: f32 = s.iter().sum();
    for (a, b) in xr.iter().zip(yr) {
        t = mad::<FMA>(*a, *b, t);
    }
    t
}
multiversion!(fn dot(x: &[f32], y: &[f32]) -> f32 => dot_body);

/// `y += a * x`.
#[inline(always)]
fn axpy_body<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = mad::<FMA>(a, v, *o);
    }
}
multiversion!(fn axpy(a: f32, x: &[f32], y: &mut [f32]) => axpy_body);

/// `acc[r] += sum_p panel[p * mr + r] * v[p]` over a packed A panel.
#[inline(always)]
fn panel_times_vector_body<const FMA: bool>(panel: &[f32], mr: usize, v: &[f32], acc: &mut [f32]) {
    if mr == 8 {
        // The common register width: a fixed-size accumulator stays in one vector register.
        let mut a8 = [0f32; 8];
        for (ap, &bv) in panel.chunks_exact(8).zip(v) {
            for r in 0..8 {
                a8[r] = mad::<FMA>(ap[r], bv, a8[r]);
            }
        }
        for (o, x) in acc.iter_mut().zip(a8) {
            *o += x;
        }
        return;
    }
    for (ap, &bv) in panel.chunks_exact(mr).zip(v) {
        for (s, &av) in acc.iter_mut().zip(ap) {
            *s = mad::<FMA>(av, bv, *s);
        }
    }
}
multiversion!(fn panel_times_vector(panel: &[f32], mr: usize, v: &[f32], acc: &mut [f32]) => panel_times_vector_body);

/// Runs `items` in parallel when there is enough work to pay for waking threads.
fn run(items: usize, flops: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    if parallel && flops >= 1 << 16 {
        parallel_for(items, f);
    } else {
        (0..items).for_each(f);
    }
}
