//! GEMM micro-kernels, one per ISA. Each computes one `MR x NR` tile of
//! `C = alpha * A_panel * B_panel + beta * C` from packed panels (A: `k x MR`, B: `k x NR`,
//! both `p`-major), writing only the `m x n` valid corner of the tile.

/// Signature shared by every micro-kernel.
///
/// # Safety
/// `a` holds `k * MR` and `b` holds `k * NR` floats; `c` addresses an `m x n` tile
/// (`m <= MR`, `n <= NR`) with strides `rsc`, `csc`.
pub type UKernel = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    m: usize,
    n: usize,
    alpha: f32,
    beta: f32,
);

/// Writes an accumulated tile (row-major `MR x NR` in `acc`) to C.
#[inline(always)]
unsafe fn store_tile<const MR: usize, const NR: usize>(
    acc: &[f32],
    c: *mut f32,
    rsc: usize,
    csc: usize,
    m: usize,
    n: usize,
    alpha: f32,
    beta: f32,
) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: caller guarantees the m x n tile is addressable.
            unsafe {
                let p = c.add(i * rsc + j * csc);
                let v = alpha * acc[i * NR + j];
                *p = if beta == 0.0 { v } else { v + beta * *p };
            }
        }
    }
}

/// Portable 4x8 kernel.
///
/// # Safety
/// See [`UKernel`].
pub unsafe fn scalar_4x8(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    m: usize,
    n: usize,
    alpha: f32,
    beta: f32,
) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [0f32; MR * NR];
    // SAFETY: panels hold k * MR and k * NR floats.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, k * MR), std::slice::from_raw_parts(b, k * NR)) };
    for p in 0..k {
        let ap = &a[p * MR..p * MR + MR];
        let bp = &b[p * NR..p * NR + NR];
        for i in 0..MR {
            for j in 0..NR {
                acc[i * NR + j] += ap[i] * bp[j];
            }
        }
    }
    unsafe { store_tile::<MR, NR>(&acc, c, rsc, csc, m, n, alpha, beta) }
}

#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::store_tile;
    use std::arch::x86_64::*;

    /// AVX2+FMA 6x16 kernel: 12 ymm accumulators, 2 B loads and 6 broadcasts per step.
    ///
    /// # Safety
    /// See [`super::UKernel`]; the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2_6x16(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
        m: usize,
        n: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = 6;
        const NR: usize = 16;
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let (mut a, mut b) = (a, b);
            for _ in 0..k {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_ss(&*a.add(i));
                    row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
            let va = _mm256_set1_ps(alpha);
            if m == MR && n == NR && csc == 1 {
                let vb = _mm256_set1_ps(beta);
                for (i, row) in acc.iter().enumerate() {
                    let p = c.add(i * rsc);
                    for (h, v) in row.iter().enumerate() {
                        let q = p.add(8 * h);
                        let r = if beta == 0.0 {
                            _mm256_mul_ps(va, *v)
                        } else {
                            _mm256_fmadd_ps(vb, _mm256_loadu_ps(q), _mm256_mul_ps(va, *v))
                        };
                        _mm256_storeu_ps(q, r);
                    }
                }
            } else {
                let mut tmp = [0f32; MR * NR];
                for (i, row) in acc.iter().enumerate() {
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR), row[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(i * NR + 8), row[1]);
                }
                store_tile::<MR, NR>(&tmp, c, rsc, csc, m, n, alpha, beta);
            }
        }
    }

    /// AVX-512 8x32 kernel: 16 zmm accumulators, 2 B loads and 8 broadcasts per step.
    ///
    /// # Safety
    /// See [`super::UKernel`]; the CPU must support AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub unsafe fn avx512_8x32(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        rsc: usize,
        csc: usize,
        m: usize,
        n: usize,
        alpha: f32,
        beta: f32,
    ) {
        const MR: usize = 8;
        const NR: usize = 32;
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            let (mut a, mut b) = (a, b);
            for _ in 0..k {
                let b0 = _mm512_loadu_ps(b);
                let b1 = _mm512_loadu_ps(b.add(16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a.add(i));
                    row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
            let va = _mm512_set1_ps(alpha);
            if m == MR && n == NR && csc == 1 {
                let vb = _mm512_set1_ps(beta);
                for (i, row) in acc.iter().enumerate() {
                    let p = c.add(i * rsc);
                    for (h, v) in row.iter().enumerate() {
                        let q = p.add(16 * h);
                        let r = if beta == 0.0 {
                            _mm512_mul_ps(va, *v)
                        } else {
                            _mm512_fmadd_ps(vb, _mm512_loadu_ps(q), _mm512_mul_ps(va, *v))
                        };
                        _mm512_storeu_ps(q, r);
                    }
                }
            } else {
                let mut tmp = [0f32; MR * NR];
                for (i, row) in acc.iter().enumerate() {
                    _mm512_storeu_ps(tmp.as_mut_ptr().add(i * NR), row[0]);
                    _mm512_storeu_ps(tmp.as_mut_ptr().add(i * NR + 16), row[1]);
                }
                store_tile::<MR, NR>(&tmp, c, rsc, csc, m, n, alpha, beta);
            }
        }
    }
}
