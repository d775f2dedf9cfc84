//! Packed integer GEMM: `C = (A - a_zp) x (B - b_zp)` with i32 accumulation (wrapping), for
//! 8- and 16-bit operands, with SIMD micro-kernels per [`IntPath`].
//!
//! Zero points are not subtracted inside the inner loop: the micro-kernels multiply the raw
//! (possibly offset) values and the write-out applies
//! `C = S - zb[j]·rowsum(A)[i] - za[i]·colsum(B)[j] + K·za[i]·zb[j]`, which is exact modulo
//! 2^32 and therefore equal to the scalar reference's wrapping sum for every path.
//!
//! Two engines:
//! - *quad* (VNNI `vpdpbusd`: four u8 x i8 products summed into an i32 lane): 8-bit operands.
//!   A is stored as u8 (i8 values offset by +128, its zero point too), B as i8 (u8 values
//!   offset by -128). The instruction does not saturate, so the sum is exact.
//! - *pair* (`vpmaddwd`: two i16 x i16 products summed into an i32 lane): every other case,
//!   including 16-bit operands. The only overflow (`-32768² · 2`) wraps, as the reference does.
//!
//! `vpmaddubsw` (AVX2's u8 x i8) is not used: it saturates its i16 pair sums (255·127·2 >
//! 32767), which would break bit-exactness.

use super::{IntPath, QInt};
use crate::threads::{num_threads, parallel_for, SendPtr};
use crate::dispatch::multiversion;
use crate::KernelError;

/// Register tile of one path's micro-kernel: rows of A, columns of B.
fn tile(path: IntPath, engine: Engine) -> (usize, usize) {
    match (path, engine) {
        (IntPath::Scalar, _) => (4, 8),
        (IntPath::Avx2, _) | (IntPath::AvxVnni, Engine::Pair) => (4, 16),
        (IntPath::AvxVnni, Engine::Quad) => (6, 16),
        (IntPath::Avx512 | IntPath::Avx512Vnni, _) => (8, 32),
    }
}

/// Operand layout shared by a packed A and a packed B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Pair,
    Quad,
}

impl Engine {
    /// k values per i32 lane.
    fn group(self) -> usize {
        match self {
            Engine::Pair => 2,
            Engine::Quad => 4,
        }
    }
}

fn engine<A: QInt, B: QInt>(path: IntPath) -> Engine {
    if path.has_vnni() && A::BITS == 8 && B::BITS == 8 {
        Engine::Quad
    } else {
        Engine::Pair
    }
}

/// What the engine stores for a value `v` of an operand: `v + delta` (zero points shifted
/// alike, so `(v - zp)` is unchanged). Quad: A unsigned (i8 + 128), B signed (u8 - 128);
/// pair: i16 (u16 - 32768).
fn delta<T: QInt>(engine: Engine, is_a: bool) -> i32 {
    match engine {
        Engine::Quad if is_a && T::SIGNED => 128,
        Engine::Quad if !is_a && !T::SIGNED => -128,
        Engine::Pair if T::BITS == 16 && !T::SIGNED => -32768,
        _ => 0,
    }
}

/// A right operand (`K x N`, typically constant weights) packed once for [`gemm_packed`]:
/// column panels of the path's tile width, `K` grouped by 2 or 4, zero points and column
/// sums kept alongside. Build with [`PackedB::new`].
#[derive(Clone, Debug)]
pub struct PackedB {
    path: IntPath,
    engine: Engine,
    a_bits: u32,
    a_signed: bool,
    k: usize,
    n: usize,
    /// k rounded up to the engine's group.
    kp: usize,
    /// Quad: i8 bytes; pair: i16 values stored as little-endian byte pairs.
    data: Vec<u8>,
    colsum: Vec<i32>,
    zp: Vec<i32>,
}

impl PackedB {
    /// Packs `B[p][j] = b[p * rs + j * cs]` (`k x n`) with zero point `zp` (one, or one per
    /// column) for left operands of element type `A`.
    ///
    /// ```
    /// use qaic_kernels::quant::{gemm_packed, IntPath, PackedA, PackedB, ZeroPoint};
    /// // B = [[1, 2], [3, 4]] (i8), A = [[10, 20]] (u8, zero point 10).
    /// let path = IntPath::best();
    /// let b = PackedB::new::<u8, i8>(path, 2, 2, &[1, 2, 3, 4], 2, 1, ZeroPoint::Scalar(0)).unwrap();
    /// let a = PackedA::new(&b, 1, &[10u8, 20], 2, ZeroPoint::Scalar(10)).unwrap();
    /// let mut c = [0i32; 2];
    /// gemm_packed(&a, &b, &mut c, 2, 1).unwrap();
    /// assert_eq!(c, [30, 40]); // (10-10)*[1,2] + (20-10)*[3,4]
    /// ```
    pub fn new<A: QInt, B: QInt>(
        path: IntPath,
        k: usize,
        n: usize,
        b: &[B],
        rs: usize,
        cs: usize,
        zp: super::ZeroPoint<B>,
    ) -> Result<PackedB, KernelError> {
        zp.check(n, "B")?;
        if k > 0 && n > 0 && (k - 1) * rs + (n - 1) * cs >= b.len() {
            return Err(KernelError::invalid("int gemm", format!("B {k}x{n} with strides {rs}/{cs} does not fit {} values", b.len())));
        }
        let engine = engine::<A, B>(path);
        let (_, nr) = tile(path, engine);
        let g = engine.group();
        let kp = k.div_ceil(g) * g;
        let panels = n.div_ceil(nr);
        let off = -delta::<B>(engine, false);
        let esize = if engine == Engine::Quad { 1 } else { 2 };
        let mut data = vec![0u8; panels * kp * nr * esize];
        let mut colsum = vec![0i32; n];
        let zpv: Vec<i32> = (0..n).map(|j| zp.at(j) - off).collect();
        // Element (p, j) sits in panel j / nr, group p / g, lane j % nr, slot p % g.
        let mut put = |p: usize, j: usize, v: i32| {
            let idx = (j / nr) * kp * nr + (p / g) * nr * g + (j % nr) * g + p % g;
            match engine {
                Engine::Quad => data[idx] = v as i8 as u8,
                Engine::Pair => data[2 * idx..2 * idx + 2].copy_from_slice(&(v as i16).to_le_bytes()),
            }
        };
        if cs == 1 && n > 0 {
            // Rows of B are contiguous (an activation packed per call): read them in order.
            for p in 0..k {
                let row = &b[p * rs..p * rs + n];
                for (j, x) in row.iter().enumerate() {
                    let v = x.to_i32() - off;
                    colsum[j] = colsum[j].wrapping_add(v);
                    put(p, j, v);
                }
            }
        } else {
            for (j, cs_j) in colsum.iter_mut().enumerate() {
                let mut s = 0i32;
                for p in 0..k {
                    let v = b[p * rs + j * cs].to_i32() - off;
                    s = s.wrapping_add(v);
                    put(p, j, v);
                }
                *cs_j = s;
            }
        }
        Ok(PackedB { path, engine, a_bits: A::BITS, a_signed: A::SIGNED, k, n, kp, data, colsum, zp: zpv })
    }

    /// Rows (`K`) of the packed operand.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns (`N`) of the packed operand.
    pub fn n(&self) -> usize {
        self.n
    }
    /// The path it was packed for.
    pub fn path(&self) -> IntPath {
        self.path
    }
}

/// A left operand (`M x K`, typically activations or im2col rows) packed per call for
/// [`gemm_packed`], with its row sums. Build from a strided matrix with [`PackedA::new`] or
/// row by row with [`PackedA::from_rows`].
#[derive(Clone, Debug)]
pub struct PackedA {
    path: IntPath,
    engine: Engine,
    bits: u32,
    signed: bool,
    m: usize,
    k: usize,
    kp: usize,
    data: Vec<u8>,
    rowsum: Vec<i32>,
    zp: Vec<i32>,
}

impl PackedA {
    /// Packs `A[i][p] = a[i * lda + p]` (`m x k`, `k` = `b.k()`) with zero point `zp` (one,
    /// or one per row) for multiplication by `b`.
    pub fn new<A: QInt>(b: &PackedB, m: usize, a: &[A], lda: usize, zp: super::ZeroPoint<A>) -> Result<PackedA, KernelError> {
        zp.check(m, "A")?;
        let k = b.k;
        if m > 0 && k > 0 && (lda < k || (m - 1) * lda + k > a.len()) {
            return Err(KernelError::invalid("int gemm", format!("A {m}x{k} with leading dim {lda} does not fit {} values", a.len())));
        }
        let zpv: Vec<i32> = (0..m).map(|i| zp.at(i)).collect();
        PackedA::from_rows::<A>(b, m, zpv, |i, row| row.copy_from_slice(&a[i * lda..i * lda + k]))
    }

    /// Packs `m` rows of `b.k()` values written by `fill(i, row)` (called once per row,
    /// possibly from several threads), with zero point `zp[i]` per row (a single value applies
    /// to all), for multiplication by `b`. Used for the im2col rows of an integer convolution.
    pub fn from_rows<A: QInt>(b: &PackedB, m: usize, zp: Vec<i32>, fill: impl Fn(usize, &mut [A]) + Sync) -> Result<PackedA, KernelError> {
        if A::BITS != b.a_bits || A::SIGNED != b.a_signed {
            return Err(KernelError::invalid("int gemm", format!("B was packed for a {}-bit left operand, not this one", b.a_bits)));
        }
        if zp.len() != 1 && zp.len() != m {
            return Err(KernelError::invalid("int gemm", format!("{} A zero points for {m} rows", zp.len())));
        }
        let (path, engine, k) = (b.path, b.engine, b.k);
        let g = engine.group();
        let kp = k.div_ceil(g) * g;
        let esize = if engine == Engine::Quad { 1 } else { 2 };
        let off = delta::<A>(engine, true);
        let mut data = vec![0u8; m * kp * esize];
        let mut rowsum = vec![0i32; m];
        let zp: Vec<i32> = if zp.len() == 1 { vec![zp[0] + off; m] } else { zp.iter().map(|z| z + off).collect() };
        let dp = SendPtr(data.as_mut_ptr());
        let rp = SendPtr(rowsum.as_mut_ptr());
        let rows = |lo: usize, hi: usize| {
            let mut buf = vec![A::default(); k];
            for i in lo..hi {
                fill(i, &mut buf);
                // SAFETY: row i of `data` and `rowsum[i]` are written by this item only.
                let d = unsafe { std::slice::from_raw_parts_mut(dp.get().add(i * kp * esize), kp * esize) };
                let mut s = 0i32;
                match engine {
                    Engine::Quad => {
                        for (o, v) in d.iter_mut().zip(&buf) {
                            let v = v.to_i32() + off;
                            s = s.wrapping_add(v);
                            *o = v as u8;
                        }
                    }
                    Engine::Pair => {
                        for (o, v) in d.chunks_exact_mut(2).zip(&buf) {
                            let v = v.to_i32() + off;
                            s = s.wrapping_add(v);
                            o.copy_from_slice(&(v as i16).to_le_bytes());
                        }
                    }
                }
                unsafe { *rp.get().add(i) = s };
            }
        };
        if m * k >= 1 << 15 && m > 1 {
            let per = m.div_ceil(num_threads() * 4).max(1);
            parallel_for(m.div_ceil(per), |c| rows(c * per, ((c + 1) * per).min(m)));
        } else {
            rows(0, m);
        }
        Ok(PackedA { path, engine, bits: A::BITS, signed: A::SIGNED, m, k, kp, data, rowsum, zp })
    }

    /// Rows (`M`).
    pub fn m(&self) -> usize {
        self.m
    }
}

/// `C[i*c_rs + j*c_cs] = Σ_p (A[i][p] - a_zp[i]) (B[p][j] - b_zp[j])`, i32 wrapping, for
/// operands packed by [`PackedA`] and [`PackedB`] on the same path. Bit-identical on every
/// path. Parallel over tiles for large products.
pub fn gemm_packed(a: &PackedA, b: &PackedB, c: &mut [i32], c_rs: usize, c_cs: usize) -> Result<(), KernelError> {
    if a.path != b.path || a.k != b.k || a.bits != b.a_bits || a.signed != b.a_signed || a.engine != b.engine {
        return Err(KernelError::invalid(
            "int gemm",
            format!("A ({} bits, {}, k={}) and B (packed for {}-bit A on {}, k={}) do not match", a.bits, a.path, a.k, b.a_bits, b.path, b.k),
        ));
    }
    let (m, n, k) = (a.m, b.n, a.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    if (m - 1) * c_rs + (n - 1) * c_cs >= c.len() {
        return Err(KernelError::invalid("int gemm", format!("C {m}x{n} with strides {c_rs}/{c_cs} does not fit {} values", c.len())));
    }
    let (mr, nr) = tile(a.path, a.engine);
    let nrb = m.div_ceil(mr);
    let np = n.div_ceil(nr);
    let tiles = nrb * np;
    let cp = SendPtr(c.as_mut_ptr());
    let esize = if a.engine == Engine::Quad { 1 } else { 2 };
    let steps = a.kp / a.engine.group();
    let isa = a.path.isa();
    let run = |t0: usize, t1: usize| {
        let mut acc = [0i32; 8 * 32];
        for t in t0..t1 {
            // Row blocks fastest: consecutive tiles reuse the same B panel from cache.
            let (rb, pn) = (t % nrb, t / nrb);
            let i0 = rb * mr;
            let rows = mr.min(m - i0);
            let mut ap = [a.data.as_ptr(); 8];
            for (r, p) in ap.iter_mut().enumerate().take(mr) {
                // Rows past M read the last row again; their results are dropped.
                *p = a.data[(i0 + r.min(rows - 1)) * a.kp * esize..].as_ptr();
            }
            let bp = b.data[pn * b.kp * nr * esize..].as_ptr();
            // SAFETY: every A row pointer covers `kp` packed values and the B panel covers
            // `kp x nr`; the path's CPU features were checked when it was selected.
            unsafe { ukernel(a.path, a.engine, steps, &ap, bp, &mut acc) };
            let j0 = pn * nr;
            let cols = nr.min(n - j0);
            if c_cs == 1 {
                // Contiguous rows: the vectorised form of the correction below
                // (`acc - zb·ra - za·colsum + k·za·zb = acc - zb·(ra - k·za) - za·colsum`,
                // an identity of wrapping arithmetic).
                for r in 0..rows {
                    let i = i0 + r;
                    // SAFETY: row i, columns j0..j0+cols of C are inside C and this tile's.
                    let out = unsafe { std::slice::from_raw_parts_mut(cp.get().add(i * c_rs + j0), cols) };
                    let ra = a.rowsum[i].wrapping_sub((k as i32).wrapping_mul(a.zp[i]));
                    epilogue_row(isa, &acc[r * nr..r * nr + cols], &b.zp[j0..j0 + cols], &b.colsum[j0..j0 + cols], a.zp[i], ra, out);
                }
                continue;
            }
            for r in 0..rows {
                let i = i0 + r;
                let (za, ra) = (a.zp[i], a.rowsum[i]);
                for jj in 0..cols {
                    let j = j0 + jj;
                    let zb = b.zp[j];
                    let v = acc[r * nr + jj]
                        .wrapping_sub(zb.wrapping_mul(ra))
                        .wrapping_sub(za.wrapping_mul(b.colsum[j]))
                        .wrapping_add((k as i32).wrapping_mul(za).wrapping_mul(zb));
                    // SAFETY: (i, j) is inside C (checked above) and belongs to this tile only.
                    unsafe { *cp.get().add(i * c_rs + j * c_cs) = v };
                }
            }
        }
    };
    if m * n * k >= 1 << 16 && tiles > 1 {
        let per = tiles.div_ceil(num_threads() * 4).max(1);
        parallel_for(tiles.div_ceil(per), |ch| run(ch * per, ((ch + 1) * per).min(tiles)));
    } else {
        run(0, tiles);
    }
    Ok(())
}

#[inline(always)]
fn epilogue_row_body<const FMA: bool>(acc: &[i32], zb: &[i32], colsum: &[i32], za: i32, ra: i32, out: &mut [i32]) {
    for (((o, &v), &z), &cs) in out.iter_mut().zip(acc).zip(zb).zip(colsum) {
        *o = v.wrapping_sub(z.wrapping_mul(ra)).wrapping_sub(za.wrapping_mul(cs));
    }
}
multiversion!(fn epilogue_row(acc: &[i32], zb: &[i32], colsum: &[i32], za: i32, ra: i32, out: &mut [i32]) => epilogue_row_body);

/// Runs the path's micro-kernel over `steps` groups of k: `acc[r*nr + j] = Σ A[r] · B[:, j]`.
///
/// # Safety
/// `a[r]` must point at `steps * group` packed values of the engine, `b` at a packed panel of
/// `steps * group * nr` values, and the CPU must support `path`.
unsafe fn ukernel(path: IntPath, engine: Engine, steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256]) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { match (path, engine) {
        #[cfg(target_arch = "x86_64")]
        (IntPath::Avx512Vnni, Engine::Quad) => x86::quad_avx512(steps, a, b, acc),
        #[cfg(target_arch = "x86_64")]
        (IntPath::AvxVnni, Engine::Quad) => x86::quad_avxvnni(steps, a, b, acc),
        #[cfg(target_arch = "x86_64")]
        (IntPath::Avx512 | IntPath::Avx512Vnni, Engine::Pair) => x86::pair_avx512(steps, a, b, acc),
        #[cfg(target_arch = "x86_64")]
        (IntPath::Avx2 | IntPath::AvxVnni, Engine::Pair) => x86::pair_avx2(steps, a, b, acc),
        (_, Engine::Pair) => pair_scalar(steps, a, b, acc, tile(path, engine)),
        (_, Engine::Quad) => quad_scalar(steps, a, b, acc, tile(path, engine)),
    } }
}

/// Portable pair micro-kernel (also the reference for the layout).
unsafe fn pair_scalar(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256], (mr, nr): (usize, usize)) {
    // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
    unsafe {
        acc[..mr * nr].fill(0);
        let rd = |p: *const u8, i: usize| i16::from_le_bytes([*p.add(2 * i), *p.add(2 * i + 1)]) as i32;
        for s in 0..steps {
            for r in 0..mr {
                let (a0, a1) = (rd(a[r], 2 * s), rd(a[r], 2 * s + 1));
                for j in 0..nr {
                    let bi = s * nr * 2 + j * 2;
                    let v = a0.wrapping_mul(rd(b, bi)).wrapping_add(a1.wrapping_mul(rd(b, bi + 1)));
                    acc[r * nr + j] = acc[r * nr + j].wrapping_add(v);
                }
            }
        }
    }
}

/// Portable quad micro-kernel (only reached if a VNNI path were forced on another CPU).
unsafe fn quad_scalar(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256], (mr, nr): (usize, usize)) {
    // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
    unsafe {
        acc[..mr * nr].fill(0);
        for s in 0..steps {
            for r in 0..mr {
                for j in 0..nr {
                    let mut v = 0i32;
                    for q in 0..4 {
                        v += *a[r].add(4 * s + q) as i32 * *b.add(s * nr * 4 + j * 4 + q) as i8 as i32;
                    }
                    acc[r * nr + j] = acc[r * nr + j].wrapping_add(v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX-512 VNNI, 8 rows x 32 columns (16 zmm accumulators).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn quad_avx512(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256]) {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let mut c0 = [_mm512_setzero_si512(); 8];
            let mut c1 = [_mm512_setzero_si512(); 8];
            for s in 0..steps {
                let b0 = _mm512_loadu_si512(b.add(s * 128) as *const _);
                let b1 = _mm512_loadu_si512(b.add(s * 128 + 64) as *const _);
                for r in 0..8 {
                    let av = _mm512_set1_epi32((a[r].add(4 * s) as *const i32).read_unaligned());
                    c0[r] = _mm512_dpbusd_epi32(c0[r], av, b0);
                    c1[r] = _mm512_dpbusd_epi32(c1[r], av, b1);
                }
            }
            for r in 0..8 {
                _mm512_storeu_si512(acc.as_mut_ptr().add(r * 32) as *mut _, c0[r]);
                _mm512_storeu_si512(acc.as_mut_ptr().add(r * 32 + 16) as *mut _, c1[r]);
            }
        }
    }

    /// AVX-VNNI, 6 rows x 16 columns (12 ymm accumulators).
    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn quad_avxvnni(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256]) {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let mut c0 = [_mm256_setzero_si256(); 6];
            let mut c1 = [_mm256_setzero_si256(); 6];
            for s in 0..steps {
                let b0 = _mm256_loadu_si256(b.add(s * 64) as *const _);
                let b1 = _mm256_loadu_si256(b.add(s * 64 + 32) as *const _);
                for r in 0..6 {
                    let av = _mm256_set1_epi32((a[r].add(4 * s) as *const i32).read_unaligned());
                    c0[r] = _mm256_dpbusd_avx_epi32(c0[r], av, b0);
                    c1[r] = _mm256_dpbusd_avx_epi32(c1[r], av, b1);
                }
            }
            for r in 0..6 {
                _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16) as *mut _, c0[r]);
                _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16 + 8) as *mut _, c1[r]);
            }
        }
    }

    /// AVX-512BW `vpmaddwd`, 8 rows x 32 columns.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pair_avx512(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256]) {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let mut c0 = [_mm512_setzero_si512(); 8];
            let mut c1 = [_mm512_setzero_si512(); 8];
            for s in 0..steps {
                let b0 = _mm512_loadu_si512(b.add(s * 128) as *const _);
                let b1 = _mm512_loadu_si512(b.add(s * 128 + 64) as *const _);
                for r in 0..8 {
                    let av = _mm512_set1_epi32((a[r].add(4 * s) as *const i32).read_unaligned());
                    c0[r] = _mm512_add_epi32(c0[r], _mm512_madd_epi16(av, b0));
                    c1[r] = _mm512_add_epi32(c1[r], _mm512_madd_epi16(av, b1));
                }
            }
            for r in 0..8 {
                _mm512_storeu_si512(acc.as_mut_ptr().add(r * 32) as *mut _, c0[r]);
                _mm512_storeu_si512(acc.as_mut_ptr().add(r * 32 + 16) as *mut _, c1[r]);
            }
        }
    }

    /// AVX2 `vpmaddwd`, 4 rows x 16 columns.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pair_avx2(steps: usize, a: &[*const u8; 8], b: *const u8, acc: &mut [i32; 256]) {
        // SAFETY: the caller guarantees the pointers cover the accessed ranges and the CPU features.
        unsafe {
            let mut c0 = [_mm256_setzero_si256(); 4];
            let mut c1 = [_mm256_setzero_si256(); 4];
            for s in 0..steps {
                let b0 = _mm256_loadu_si256(b.add(s * 64) as *const _);
                let b1 = _mm256_loadu_si256(b.add(s * 64 + 32) as *const _);
                for r in 0..4 {
                    let av = _mm256_set1_epi32((a[r].add(4 * s) as *const i32).read_unaligned());
                    c0[r] = _mm256_add_epi32(c0[r], _mm256_madd_epi16(av, b0));
                    c1[r] = _mm256_add_epi32(c1[r], _mm256_madd_epi16(av, b1));
                }
            }
            for r in 0..4 {
                _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16) as *mut _, c0[r]);
                _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16 + 8) as *mut _, c1[r]);
            }
        }
    }
}
