//! f32 convolution (ONNX `Conv`, `ConvTranspose`), NCHW layout, 1-D to 3-D.
//!
//! Paths, chosen per call:
//! - pointwise (all kernel dims 1, stride 1, no padding): the input plane *is* the GEMM
//!   operand, no copy;
//! - depthwise 2-D (`group == C == M`): a direct kernel, vectorised along output rows;
//! - everything else: im2col into a reused scratch buffer, then GEMM per group, with bias
//!   and activation fused into the GEMM epilogue.
//!
//! Spatial ranks below 3 are run as 3-D with leading unit dimensions.

use crate::dispatch::multiversion;
use crate::gemm::{Activation, Bias, Epilogue, Lhs, Mat, MatMut, PackedA, PackedB, Rhs};
use crate::threads::{parallel_for, SendPtr};
use crate::util::{check_len, numel};
use crate::{Isa, KernelError, Kernels};

/// Geometry of a convolution or pooling window (ONNX attribute conventions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Spatial kernel dimensions.
    pub kernel: Vec<usize>,
    /// One per spatial dimension.
    pub strides: Vec<usize>,
    /// One per spatial dimension.
    pub dilations: Vec<usize>,
    /// `[begin_0, begin_1, ..., end_0, end_1, ...]` as in ONNX `pads`.
    pub pads: Vec<usize>,
    /// Number of groups (1 for a plain convolution).
    pub group: usize,
}

/// `ConvTranspose` with `auto_pad = SAME_UPPER / SAME_LOWER`: the (begin, end) padding per
/// spatial axis that gives `output` from `input` (ONNX: the full transposed extent
/// `stride·(in−1) + output_padding + (k−1)·dilation + 1` less the output, split with the extra
/// element at the end for SAME_UPPER, at the beginning for SAME_LOWER).
///
/// ```
/// // 3 → 6 with stride 2, kernel 3: full extent 7, one pad, at the end for SAME_UPPER.
/// let p = qaic_kernels::conv::conv_transpose_same_pads(&[3], &[3], &[2], &[1], &[0], &[6], true);
/// assert_eq!(p, vec![(0, 1)]);
/// ```
pub fn conv_transpose_same_pads(input: &[usize], kernel: &[usize], strides: &[usize], dilations: &[usize], output_padding: &[usize], output: &[usize], upper: bool) -> Vec<(i64, i64)> {
    (0..input.len())
        .map(|i| {
            let at = |v: &[usize], d: usize| v.get(i).copied().unwrap_or(d) as i64;
            let ext = (at(kernel, 1) - 1) * at(dilations, 1) + 1;
            let full = at(strides, 1) * (at(input, 1) - 1) + at(output_padding, 0) + ext;
            let total = full - at(output, 0);
            let begin = if upper { total / 2 } else { total - total / 2 };
            (begin, total - begin)
        })
        .collect()
}

impl ConvParams {
    /// Unit strides and dilations, no padding, one group.
    pub fn new(kernel: &[usize]) -> ConvParams {
        let r = kernel.len();
        ConvParams { kernel: kernel.to_vec(), strides: vec![1; r], dilations: vec![1; r], pads: vec![0; 2 * r], group: 1 }
    }

    fn check(&self, op: &'static str, rank: usize) -> Result<(), KernelError> {
        let r = self.kernel.len();
        if r != rank || self.strides.len() != r || self.dilations.len() != r || self.pads.len() != 2 * r {
            return Err(KernelError::invalid(
                op,
                format!(
                    "{rank} spatial dimensions but kernel {:?}, strides {:?}, dilations {:?}, pads {:?}",
                    self.kernel, self.strides, self.dilations, self.pads
                ),
            ));
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) || self.kernel.contains(&0) || self.group == 0 {
            return Err(KernelError::invalid(op, "kernel, strides, dilations and group must be >= 1".to_string()));
        }
        Ok(())
    }

    /// Output spatial dimensions for `input` spatial dimensions (floor mode; `ceil` for
    /// pooling's `ceil_mode`).
    pub fn output_spatial(&self, input: &[usize], ceil: bool) -> Result<Vec<usize>, KernelError> {
        self.check("conv", input.len())?;
        let r = input.len();
        (0..r)
            .map(|d| {
                let ext = (self.kernel[d] - 1) * self.dilations[d] + 1;
                let padded = input[d] + self.pads[d] + self.pads[r + d];
                if padded < ext {
                    return Err(KernelError::invalid(
                        "conv",
                        format!("dimension {d}: padded input {padded} is smaller than the window {ext}"),
                    ));
                }
                let span = padded - ext;
                let mut o = span / self.strides[d] + 1;
                if ceil && !span.is_multiple_of(self.strides[d]) {
                    o += 1;
                    // The last window must start inside the input or its begin padding.
                    if (o - 1) * self.strides[d] >= input[d] + self.pads[d] {
                        o -= 1;
                    }
                }
                Ok(o)
            })
            .collect()
    }
}

/// Geometry promoted to 3 spatial dimensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo3 {
    pub i: [usize; 3],
    pub o: [usize; 3],
    pub k: [usize; 3],
    pub s: [usize; 3],
    pub d: [usize; 3],
    pub pb: [usize; 3],
}

impl Geo3 {
    pub(crate) fn new(op: &'static str, p: &ConvParams, input: &[usize], output: &[usize]) -> Result<Geo3, KernelError> {
        let r = input.len();
        if r > 3 || r == 0 {
            return Err(KernelError::unsupported(op, format!("{r} spatial dimensions (1 to 3 are)")));
        }
        let mut g = Geo3 { i: [1; 3], o: [1; 3], k: [1; 3], s: [1; 3], d: [1; 3], pb: [0; 3] };
        let off = 3 - r;
        for x in 0..r {
            g.i[off + x] = input[x];
            g.o[off + x] = output[x];
            g.k[off + x] = p.kernel[x];
            g.s[off + x] = p.strides[x];
            g.d[off + x] = p.dilations[x];
            g.pb[off + x] = p.pads[x];
        }
        Ok(g)
    }
    pub(crate) fn ksize(&self) -> usize {
        self.k.iter().product()
    }
    pub(crate) fn osize(&self) -> usize {
        self.o.iter().product()
    }
    pub(crate) fn isize(&self) -> usize {
        self.i.iter().product()
    }
    /// Range of output positions along `dim` whose input index for kernel offset `kk` is valid.
    #[inline]
    pub(crate) fn valid_range(&self, dim: usize, kk: usize) -> (usize, usize) {
        let off = kk * self.d[dim];
        let (s, pb, n, o) = (self.s[dim], self.pb[dim], self.i[dim], self.o[dim]);
        // o*s + off - pb in [0, n)  <=>  o >= (pb - off)/s (ceil) and o*s < n + pb - off
        let lo = if pb > off { (pb - off).div_ceil(s) } else { 0 };
        let hi = if n + pb > off { (n + pb - off).div_ceil(s) } else { 0 };
        (lo.min(o), hi.min(o))
    }
}

/// Convolution weights packed once (per group GEMM operand), reusable across calls.
#[derive(Clone, Debug)]
pub struct PackedConvWeights {
    shape: Vec<usize>,
    group: usize,
    groups: Vec<PackedA>,
    raw: Vec<f32>,
}

impl PackedConvWeights {
    /// The weight shape `[M, C/group, k...]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
}

enum W<'a> {
    Raw(&'a [f32]),
    Packed(&'a PackedConvWeights),
}

thread_local! {
    /// Packed im2col panels, reused across calls on the calling thread.
    static COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// A column chunk's output block before it is copied into the strided output.
    static CHUNK_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// im2col for one image and group: rows are (c, kd, kh, kw), columns output positions.
/// Writes row `r` (channel, kd, kh, kw) of the im2col matrix into `dst` (`osize` values).
#[allow(dead_code)] // im2col is kept for integer/other element types (the int kernels pack rows directly)
fn im2col_row<T: Copy + Default>(g: &Geo3, x: &[T], r: usize, dst: &mut [T]) {
    let (ks, is) = (g.ksize(), g.isize());
    let c = r / ks;
    let kk = r % ks;
    let (kd, kh, kw) = (kk / (g.k[1] * g.k[2]), (kk / g.k[2]) % g.k[1], kk % g.k[2]);
    let src = &x[c * is..(c + 1) * is];
    let (d0, d1) = g.valid_range(0, kd);
    let (h0, h1) = g.valid_range(1, kh);
    let (w0, w1) = g.valid_range(2, kw);
    let hw = g.o[1] * g.o[2];
    for od in 0..g.o[0] {
        let plane = &mut dst[od * hw..(od + 1) * hw];
        if od < d0 || od >= d1 {
            plane.fill(T::default());
            continue;
        }
        let id = od * g.s[0] + kd * g.d[0] - g.pb[0];
        for oh in 0..g.o[1] {
            let line = &mut plane[oh * g.o[2]..(oh + 1) * g.o[2]];
            if oh < h0 || oh >= h1 || w0 >= w1 {
                line.fill(T::default());
                continue;
            }
            let ih = oh * g.s[1] + kh * g.d[1] - g.pb[1];
            let sline = &src[(id * g.i[1] + ih) * g.i[2]..(id * g.i[1] + ih + 1) * g.i[2]];
            line[..w0].fill(T::default());
            line[w1..].fill(T::default());
            let iw0 = w0 * g.s[2] + kw * g.d[2] - g.pb[2];
            if g.s[2] == 1 {
                line[w0..w1].copy_from_slice(&sline[iw0..iw0 + (w1 - w0)]);
            } else {
                for (t, v) in line[w0..w1].iter_mut().enumerate() {
                    *v = sline[iw0 + t * g.s[2]];
                }
            }
        }
    }
}

/// im2col for one image and group: rows are (c, kd, kh, kw), columns output positions.
#[allow(dead_code)]
pub(crate) fn im2col<T: Copy + Send + Sync + Default>(g: &Geo3, x: &[T], cg: usize, col: &mut [T], parallel: bool) {
    let os = g.osize();
    let rows = cg * g.ksize();
    let colp = SendPtr(col.as_mut_ptr());
    let row = |r: usize| {
        // SAFETY: each row index writes its own `os` elements.
        let dst = unsafe { std::slice::from_raw_parts_mut(colp.get().add(r * os), os) };
        im2col_row(g, x, r, dst);
    };
    if parallel && rows * os > 1 << 16 {
        let per = rows.div_ceil(crate::num_threads() * 4).max(1);
        parallel_for(rows.div_ceil(per), |ch| (ch * per..((ch + 1) * per).min(rows)).for_each(row));
    } else {
        (0..rows).for_each(row);
    }
}

/// Fills one packed B panel (rows `r0..r0 + dst.len() / nr` of the im2col matrix, columns
/// `j0..j0 + nv`) in panel order, so writes are sequential and reads stay within a few input
/// rows.
/// Per-row constants of the im2col matrix (computed once per call: divisions are costly).
#[derive(Clone, Copy)]
struct RowInfo {
    /// Offset of the input plane.
    plane: usize,
    /// Input offsets contributed by the kernel position (before subtracting padding).
    kd: usize,
    kh: usize,
    kw: usize,
    /// Valid output ranges per dimension.
    d: (usize, usize),
    h: (usize, usize),
    w: (usize, usize),
}

fn row_infos(g: &Geo3, rows: usize) -> Vec<RowInfo> {
    let (ks, is) = (g.ksize(), g.isize());
    (0..rows)
        .map(|r| {
            let (c, kk) = (r / ks, r % ks);
            let (kd, kh, kw) = (kk / (g.k[1] * g.k[2]), (kk / g.k[2]) % g.k[1], kk % g.k[2]);
            RowInfo {
                plane: c * is,
                kd: kd * g.d[0],
                kh: kh * g.d[1],
                kw: kw * g.d[2],
                d: g.valid_range(0, kd),
                h: g.valid_range(1, kh),
                w: g.valid_range(2, kw),
            }
        })
        .collect()
}

fn im2col_panel(g: &Geo3, x: &[f32], rows: &[RowInfo], j0: usize, nv: usize, nr: usize, dst: &mut [f32]) {
    let is = g.isize();
    let (ow_n, hw) = (g.o[2], g.o[1] * g.o[2]);
    // The panel's columns split into runs along output rows: (od, oh, ow, len, offset).
    let mut segs = [(0usize, 0usize, 0usize, 0usize, 0usize); 64];
    let mut ns = 0;
    let (mut t, mut j) = (0, j0);
    while t < nv && ns < segs.len() {
        let (od, rem) = (j / hw, j % hw);
        let (oh, ow) = (rem / ow_n, rem % ow_n);
        let len = (nv - t).min(ow_n - ow);
        segs[ns] = (od, oh, ow, len, t);
        ns += 1;
        t += len;
        j += len;
    }
    for (ri, d) in rows.iter().zip(dst.chunks_exact_mut(nr)) {
        let src = &x[ri.plane..ri.plane + is];
        let ((d0, d1), (h0, h1), (w0, w1)) = (ri.d, ri.h, ri.w);
        for &(od, oh, ow, len, t) in &segs[..ns] {
            let seg = &mut d[t..t + len];
            if od < d0 || od >= d1 || oh < h0 || oh >= h1 {
                seg.fill(0.0);
                continue;
            }
            let id = od * g.s[0] + ri.kd - g.pb[0];
            let ih = oh * g.s[1] + ri.kh - g.pb[1];
            let line = &src[(id * g.i[1] + ih) * g.i[2]..(id * g.i[1] + ih + 1) * g.i[2]];
            // Valid output columns of this segment: [lo, hi) within [ow, ow + len).
            let lo = w0.clamp(ow, ow + len);
            let hi = w1.clamp(lo, ow + len);
            seg[..lo - ow].fill(0.0);
            seg[hi - ow..].fill(0.0);
            if hi > lo {
                let iw0 = lo * g.s[2] + ri.kw - g.pb[2];
                let out = &mut seg[lo - ow..hi - ow];
                if g.s[2] == 1 {
                    out.copy_from_slice(&line[iw0..iw0 + (hi - lo)]);
                } else {
                    for (q, v) in out.iter_mut().enumerate() {
                        *v = line[iw0 + q * g.s[2]];
                    }
                }
            }
        }
        d[nv..].fill(0.0);
    }
}

/// im2col written straight into packed GEMM B panels (`data`, resized as needed), saving
/// the separate packing pass over the column matrix.
fn im2col_packed(k: &Kernels, g: &Geo3, x: &[f32], cg: usize, data: Vec<f32>) -> PackedB {
    let infos = row_infos(g, cg * g.ksize());
    let os = g.osize();
    im2col_packed_cols(k, g, x, &infos, 0, os, data, infos.len() * os > 1 << 15)
}

/// The packed B panels of output columns `c0 .. c0 + ncols` of the im2col matrix.
#[allow(clippy::too_many_arguments)]
fn im2col_packed_cols(
    k: &Kernels,
    g: &Geo3,
    x: &[f32],
    infos: &[RowInfo],
    c0: usize,
    ncols: usize,
    mut data: Vec<f32>,
    parallel: bool,
) -> PackedB {
    let rows = infos.len();
    let (nr, kc) = (k.gemm.nr, k.gemm.kc_for(rows));
    let panels = ncols.div_ceil(nr);
    let npad = panels * nr;
    if data.len() < rows * npad {
        data.resize(rows * npad, 0.0);
    }
    let blocks = rows.div_ceil(kc);
    let dp = SendPtr(data.as_mut_ptr());
    let item = |it: usize| {
        let (b, jp) = (it / panels, it % panels);
        let pc = b * kc;
        let kc_eff = kc.min(rows - pc);
        let off = pc * npad + jp * kc_eff * nr;
        // SAFETY: (block, panel) items own disjoint `kc_eff * nr` ranges of the buffer.
        let dst = unsafe { std::slice::from_raw_parts_mut(dp.get().add(off), kc_eff * nr) };
        let j0 = jp * nr;
        im2col_panel(g, x, &infos[pc..pc + kc_eff], c0 + j0, nr.min(ncols - j0), nr, dst);
    };
    if parallel {
        parallel_for(blocks * panels, item);
    } else {
        (0..blocks * panels).for_each(item);
    }
    PackedB::from_parts(k.isa, rows, ncols, nr, kc, data)
}

/// Bytes of im2col matrix built per task when a convolution is computed in column chunks:
/// the chunk is multiplied while it is still in the core's L2.
const IM2COL_CHUNK_BYTES: usize = 512 << 10;

thread_local! {
    /// Padded phase planes and the accumulator of the depthwise kernel, reused across calls.
    static DW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Grid elements computed per block of the depthwise kernel: 64 accumulators stay in vector
/// registers (4 zmm / 8 ymm) across all kernel taps.
const DW_BLOCK: usize = 64;

/// Geometry of one depthwise plane, computed once per convolution and shared by its channels.
pub(crate) struct DwPlan {
    /// Phase planes extent (rows, columns) and one plane's length including the column slack.
    phs: usize,
    pws: usize,
    plane: usize,
    /// `out_rows x pws`, and that rounded up to whole blocks.
    grid: usize,
    grid_pad: usize,
    /// Offset of each tap (in weight order) into the concatenated phase planes.
    taps: Vec<usize>,
    /// The largest tap offset (bounds check once per block, not a scan of the taps).
    max_tap: usize,
}

impl DwPlan {
    fn new(g: &Geo3) -> DwPlan {
        let (oh_n, ow_n) = (g.o[1], g.o[2]);
        let (kh_n, kw_n) = (g.k[1], g.k[2]);
        let (sh, sw) = (g.s[1], g.s[2]);
        let (dh, dw) = (g.d[1], g.d[2]);
        // Padded extent actually read, and the phase planes' extent.
        let ph = oh_n.saturating_sub(1) * sh + (kh_n - 1) * dh + 1;
        let pw = ow_n.saturating_sub(1) * sw + (kw_n - 1) * dw + 1;
        let (phs, pws) = (ph.div_ceil(sh), pw.div_ceil(sw));
        let cmax = (kw_n - 1) * dw / sw;
        let plane = phs * pws + cmax;
        let grid = oh_n * pws;
        let taps: Vec<usize> = (0..kh_n)
            .flat_map(|kh| (0..kw_n).map(move |kw| (kh * dh, kw * dw)))
            .map(|(r, c)| ((r % sh) * sw + c % sw) * plane + (r / sh) * pws + c / sw)
            .collect();
        let max_tap = taps.iter().copied().max().unwrap_or(0);
        DwPlan { phs, pws, plane, grid, grid_pad: grid.div_ceil(DW_BLOCK) * DW_BLOCK, taps, max_tap }
    }

    /// Scratch floats one channel needs: the phase planes, then slack so the last block's
    /// reads past the grid stay in bounds (those lanes are computed and dropped).
    fn scratch_len(&self, g: &Geo3) -> usize {
        g.s[1] * g.s[2] * self.plane + (self.grid_pad - self.grid)
    }
}

/// One depthwise plane. The input is copied once into zero-padded *phase planes* (for
/// stride `s`, `s x s` planes holding rows `a, a+s, ...` and columns `b, b+s, ...`), so that
/// every kernel tap becomes one contiguous multiply-add over the flattened
/// `out_rows x phase_width` grid (columns past the output width are computed and dropped).
/// The grid is walked in blocks of [`DW_BLOCK`] whose accumulators stay in registers across
/// all taps: one load and one FMA per tap and vector, one store per block.
#[inline(always)]
fn depthwise_body<const FMA: bool>(isa: Isa, g: &Geo3, dp: &DwPlan, x: &[f32], w: &[f32], bias: f32, act: Activation, out: &mut [f32]) {
    let (ih_n, iw_n) = (g.i[1], g.i[2]);
    let ow_n = g.o[2];
    let (sh, sw) = (g.s[1], g.s[2]);
    let (pt, pl) = (g.pb[1], g.pb[2]);
    let (phs, pws, plane) = (dp.phs, dp.pws, dp.plane);
    if dp.grid == 0 || ow_n == 0 {
        return;
    }
    // The buffer is taken out of the thread-local rather than used inside `with`: a closure
    // would not inherit this function's target features (its FMAs would become libm calls).
    let mut buf = DW.with(|b| std::mem::take(&mut *b.borrow_mut()));
    let need = dp.scratch_len(g);
    // After the phase planes: one padded input row, for the stride-2 de-interleave.
    if buf.len() < need + 2 * pws {
        buf.resize(need + 2 * pws, 0.0);
    }
    let (phases, row_tmp) = buf.split_at_mut(need);
    if sw == 2 {
        // Both column phases of a padded row come from one vectorised de-interleave of it.
        for a in 0..sh {
            let (ph0, ph1) = phases[a * 2 * plane..(a * 2 + 2) * plane].split_at_mut(plane);
            ph0[phs * pws..].fill(0.0);
            ph1[phs * pws..].fill(0.0);
            for r in 0..phs {
                let (e, o) = (&mut ph0[r * pws..(r + 1) * pws], &mut ph1[r * pws..(r + 1) * pws]);
                let prow = r * sh + a;
                if prow < pt || prow - pt >= ih_n {
                    e.fill(0.0);
                    o.fill(0.0);
                    continue;
                }
                let irow = &x[(prow - pt) * iw_n..(prow - pt + 1) * iw_n];
                let t = &mut row_tmp[..2 * pws];
                // Padded column pc holds input column pc - pl.
                let lo = pl.min(2 * pws);
                let hi = (pl + iw_n).min(2 * pws);
                t[..lo].fill(0.0);
                t[lo..hi].copy_from_slice(&irow[..hi - lo]);
                t[hi..].fill(0.0);
                deinterleave2(isa, t, e, o);
            }
        }
    }
    for a in 0..sh {
        for b in 0..sw {
            if sw == 2 {
                break;
            }
            let dst = &mut phases[(a * sw + b) * plane..(a * sw + b + 1) * plane];
            dst[phs * pws..].fill(0.0);
            for (r, drow) in dst[..phs * pws].chunks_exact_mut(pws).enumerate() {
                // Padded row r * sh + a is input row r * sh + a - pt.
                let prow = r * sh + a;
                if prow < pt || prow - pt >= ih_n {
                    drow.fill(0.0);
                    continue;
                }
                let irow = &x[(prow - pt) * iw_n..(prow - pt + 1) * iw_n];
                if sw == 1 {
                    // Columns [pl, pl + iw) hold the input row; the rest is padding.
                    let lo = pl.min(pws);
                    let hi = (pl + iw_n).min(pws);
                    drow[..lo].fill(0.0);
                    drow[lo..hi].copy_from_slice(&irow[..hi - lo]);
                    drow[hi..].fill(0.0);
                } else {
                    // Phase column c is padded column c * sw + b, input column c * sw + b - pl.
                    let lo = if pl > b { (pl - b).div_ceil(sw) } else { 0 }.min(pws);
                    let hi = (pl + iw_n).saturating_sub(b).div_ceil(sw).clamp(lo, pws);
                    drow[..lo].fill(0.0);
                    drow[hi..].fill(0.0);
                    if hi > lo {
                        let first = lo * sw + b - pl;
                        let src = &irow[first..];
                        let cnt = hi - lo;
                        // Whole stride-sized chunks vectorise as a de-interleave.
                        let full = (src.len() / sw).min(cnt);
                        for (d, chunk) in drow[lo..lo + full].iter_mut().zip(src.chunks_exact(sw)) {
                            *d = chunk[0];
                        }
                        for q in full..cnt {
                            drow[lo + q] = src[q * sw];
                        }
                    }
                }
            }
        }
    }
    let slack = sh * sw * plane;
    phases[slack..].fill(0.0);
    let phases = &*phases;
    let mut acc = [0f32; DW_BLOCK];
    let mut res = [0f32; DW_BLOCK];
    let taps = &dp.taps[..w.len().min(dp.taps.len())];
    for g0 in (0..dp.grid_pad).step_by(DW_BLOCK) {
        dw_block::<FMA>(isa, &phases[g0..], taps, dp.max_tap, w, bias, &mut acc);
        act.apply_slice(&mut res, &acc);
        // Scatter the block's valid columns to the output rows.
        // One division per block; then whole grid rows (the last columns of each are padding).
        let end = (g0 + DW_BLOCK).min(dp.grid);
        let (mut row, mut col) = (g0 / pws, g0 % pws);
        let mut pos = g0;
        while pos < end {
            let run = (pws - col).min(end - pos);
            let valid = run.min(ow_n.saturating_sub(col));
            if valid > 0 {
                let o = row * ow_n + col;
                out[o..o + valid].copy_from_slice(&res[pos - g0..pos - g0 + valid]);
            }
            pos += run;
            row += 1;
            col = 0;
        }
    }
    DW.with(|b| *b.borrow_mut() = buf);
}
multiversion!(fn depthwise(body_isa: Isa, g: &Geo3, dp: &DwPlan, x: &[f32], w: &[f32], bias: f32, act: Activation, out: &mut [f32]) => depthwise_body);

/// `even[i] = src[2i]`, `odd[i] = src[2i + 1]` (`src` holds `2 * even.len()` values).
#[inline(always)]
fn deinterleave2(isa: Isa, src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let n = even.len().min(odd.len()).min(src.len() / 2);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: AVX-512F is available (the Kernels value for this isa exists); the vector
        // loop reads src[..2 * done] and writes even/odd[..done] with done <= n.
        done = unsafe { dw_block_x86::deinterleave2_avx512(src, even, odd, n) };
    }
    for i in done..n {
        even[i] = src[2 * i];
        odd[i] = src[2 * i + 1];
    }
}

/// One block of [`DW_BLOCK`] depthwise outputs: `acc[l] = bias + sum_t w[t] * src[taps[t] + l]`.
/// Explicit vector registers: written as a loop over an array, LLVM keeps the accumulators on
/// the stack and every tap pays a store-to-load round trip.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dw_block<const FMA: bool>(isa: Isa, src: &[f32], taps: &[usize], max_tap: usize, w: &[f32], bias: f32, acc: &mut [f32; DW_BLOCK]) {
    // `max_tap` is the largest of `taps` (DwPlan computes it once).
    assert!(max_tap + DW_BLOCK <= src.len(), "depthwise block reads past its scratch");
    match isa {
        // SAFETY: a Kernels value (hence this isa) exists only when the CPU supports it, and
        // every read `src[taps[t] .. taps[t] + DW_BLOCK]` is in bounds (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { dw_block_x86::avx512(src.as_ptr(), taps, w, bias, acc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { dw_block_x86::avx2(src.as_ptr(), taps, w, bias, acc) },
        _ => {
            acc.fill(bias);
            for (&off, &wv) in taps.iter().zip(w) {
                for (a, &v) in acc.iter_mut().zip(&src[off..off + DW_BLOCK]) {
                    *a = crate::elementwise::math::mad::<FMA>(wv, v, *a);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod dw_block_x86 {
    use super::DW_BLOCK;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F available; `src + taps[t] .. + DW_BLOCK` readable for every tap.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(src: *const f32, taps: &[usize], w: &[f32], bias: f32, acc: &mut [f32; DW_BLOCK]) {
        unsafe {
            let b = _mm512_set1_ps(bias);
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for (&off, &wv) in taps.iter().zip(w) {
                let p = src.add(off);
                let v = _mm512_set1_ps(wv);
                a0 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p), a0);
                a1 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p.add(16)), a1);
                a2 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p.add(32)), a2);
                a3 = _mm512_fmadd_ps(v, _mm512_loadu_ps(p.add(48)), a3);
            }
            let o = acc.as_mut_ptr();
            _mm512_storeu_ps(o, a0);
            _mm512_storeu_ps(o.add(16), a1);
            _mm512_storeu_ps(o.add(32), a2);
            _mm512_storeu_ps(o.add(48), a3);
        }
    }

    /// De-interleaves whole groups of 16 pairs; returns how many pairs it wrote.
    ///
    /// # Safety
    /// AVX-512F available; `n <= even.len(), odd.len(), src.len() / 2`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn deinterleave2_avx512(src: &[f32], even: &mut [f32], odd: &mut [f32], n: usize) -> usize {
        unsafe {
            let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            let full = n / 16 * 16;
            let mut i = 0;
            while i < full {
                let a = _mm512_loadu_ps(src.as_ptr().add(2 * i));
                let b = _mm512_loadu_ps(src.as_ptr().add(2 * i + 16));
                _mm512_storeu_ps(even.as_mut_ptr().add(i), _mm512_permutex2var_ps(a, ie, b));
                _mm512_storeu_ps(odd.as_mut_ptr().add(i), _mm512_permutex2var_ps(a, io, b));
                i += 16;
            }
            full
        }
    }

    /// # Safety
    /// AVX2 and FMA available; `src + taps[t] .. + DW_BLOCK` readable for every tap.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(src: *const f32, taps: &[usize], w: &[f32], bias: f32, acc: &mut [f32; DW_BLOCK]) {
        unsafe {
            let b = _mm256_set1_ps(bias);
            let mut a = [b; 8];
            for (&off, &wv) in taps.iter().zip(w) {
                let p = src.add(off);
                let v = _mm256_set1_ps(wv);
                a[0] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p), a[0]);
                a[1] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(8)), a[1]);
                a[2] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(16)), a[2]);
                a[3] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(24)), a[3]);
                a[4] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(32)), a[4]);
                a[5] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(40)), a[5]);
                a[6] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(48)), a[6]);
                a[7] = _mm256_fmadd_ps(v, _mm256_loadu_ps(p.add(56)), a[7]);
            }
            for (i, v) in a.iter().enumerate() {
                _mm256_storeu_ps(acc.as_mut_ptr().add(8 * i), *v);
            }
        }
    }
}

impl Kernels {
    /// Packs convolution weights `[M, C/group, k...]` once for repeated [`Kernels::conv_packed`].
    pub fn pack_conv_weights(&self, w: &[f32], w_shape: &[usize], group: usize) -> Result<PackedConvWeights, KernelError> {
        check_len("conv", "weights", w.len(), w_shape)?;
        if w_shape.len() < 3 || group == 0 || !w_shape[0].is_multiple_of(group) {
            return Err(KernelError::invalid("conv", format!("weights {w_shape:?} with group {group}")));
        }
        let mg = w_shape[0] / group;
        let kdim = numel(&w_shape[1..]);
        let groups = (0..group)
            .map(|gi| Mat::row_major(&w[gi * mg * kdim..(gi + 1) * mg * kdim], mg, kdim).map(|m| self.pack_a(m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PackedConvWeights { shape: w_shape.to_vec(), group, groups, raw: w.to_vec() })
    }

    /// ONNX `Conv`: `x` is `[N, C, spatial...]`, `w` is `[M, C/group, k...]`, `bias` has `M`
    /// values; `act` is fused. Returns the output shape; `out` must have its size (see
    /// [`ConvParams::output_spatial`]).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &self,
        p: &ConvParams,
        x: &[f32],
        x_shape: &[usize],
        w: &[f32],
        w_shape: &[usize],
        bias: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        check_len("conv", "weights", w.len(), w_shape)?;
        self.conv_impl(p, x, x_shape, W::Raw(w), w_shape, bias, act, out)
    }

    /// [`Kernels::conv`] with weights packed by [`Kernels::pack_conv_weights`].
    #[allow(clippy::too_many_arguments)]
    pub fn conv_packed(
        &self,
        p: &ConvParams,
        x: &[f32],
        x_shape: &[usize],
        w: &PackedConvWeights,
        bias: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        if w.group != p.group {
            return Err(KernelError::invalid("conv", format!("weights packed for group {}, params say {}", w.group, p.group)));
        }
        self.conv_impl(p, x, x_shape, W::Packed(w), &w.shape.clone(), bias, act, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_impl(
        &self,
        p: &ConvParams,
        x: &[f32],
        x_shape: &[usize],
        w: W,
        w_shape: &[usize],
        bias: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        check_len("conv", "input", x.len(), x_shape)?;
        if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
            return Err(KernelError::invalid("conv", format!("input {x_shape:?} and weights {w_shape:?} ranks")));
        }
        // Spatial axes of extent 1 with a 1-wide kernel and no padding (e.g. the W of a 1-D
        // convolution exported as 2-D, [N, C, L, 1]) carry no work: dropping them keeps the
        // im2col runs long instead of one element each.
        let r = x_shape.len() - 2;
        let trivial = |d: usize| {
            x_shape[2 + d] == 1 && w_shape[2 + d] == 1 && p.pads.get(d) == Some(&0) && p.pads.get(r + d) == Some(&0)
        };
        let keep: Vec<usize> = (0..r).filter(|&d| !trivial(d)).collect();
        if !keep.is_empty() && keep.len() < r && p.kernel.len() == r && p.strides.len() == r && p.dilations.len() == r {
            let pick = |v: &[usize]| keep.iter().map(|&d| v[d]).collect::<Vec<usize>>();
            let p2 = ConvParams {
                kernel: pick(&p.kernel),
                strides: pick(&p.strides),
                dilations: pick(&p.dilations),
                pads: keep.iter().map(|&d| p.pads[d]).chain(keep.iter().map(|&d| p.pads[r + d])).collect(),
                group: p.group,
            };
            let xs2: Vec<usize> = x_shape[..2].iter().copied().chain(pick(&x_shape[2..])).collect();
            let ws2: Vec<usize> = w_shape[..2].iter().copied().chain(pick(&w_shape[2..])).collect();
            let mut oshape = self.conv_impl(&p2, x, &xs2, w, &ws2, bias, act, out)?;
            // Put the dropped axes back (their output extent is 1).
            for d in 0..r {
                if trivial(d) {
                    oshape.insert(2 + d, 1);
                }
            }
            return Ok(oshape);
        }
        let (n, c) = (x_shape[0], x_shape[1]);
        let m = w_shape[0];
        let grp = p.group;
        if grp == 0 || !c.is_multiple_of(grp) || !m.is_multiple_of(grp) || w_shape[1] != c / grp {
            return Err(KernelError::invalid(
                "conv",
                format!("input channels {c}, weights {w_shape:?} and group {grp} do not agree"),
            ));
        }
        if p.kernel != w_shape[2..] {
            return Err(KernelError::invalid("conv", format!("kernel_shape {:?} but weights {w_shape:?}", p.kernel)));
        }
        if let Some(b) = bias
            && b.len() != m
        {
            return Err(KernelError::invalid("conv", format!("bias has {} values for {m} output channels", b.len())));
        }
        let ospatial = p.output_spatial(&x_shape[2..], false)?;
        let mut oshape = vec![n, m];
        oshape.extend_from_slice(&ospatial);
        check_len("conv", "output", out.len(), &oshape)?;
        let g = Geo3::new("conv", p, &x_shape[2..], &ospatial)?;
        let (cg, mg) = (c / grp, m / grp);
        let (is, os, ks) = (g.isize(), g.osize(), g.ksize());
        let kdim = cg * ks;
        if os == 0 || n == 0 || m == 0 {
            return Ok(oshape);
        }
        let raw = match w {
            W::Raw(r) => r,
            W::Packed(pw) => &pw.raw,
        };
        // Depthwise: direct kernel.
        if grp == c && mg == 1 && g.k[0] == 1 && g.i[0] == 1 {
            let outp = SendPtr(out.as_mut_ptr());
            let isa = self.isa;
            let dp = DwPlan::new(&g);
            parallel_for(n * c, |nc| {
                let ch = nc % c;
                // SAFETY: item nc writes only output plane nc.
                let o = unsafe { std::slice::from_raw_parts_mut(outp.get().add(nc * os), os) };
                let b = bias.map_or(0.0, |b| b[ch]);
                depthwise(isa, isa, &g, &dp, &x[nc * is..(nc + 1) * is], &raw[ch * ks..(ch + 1) * ks], b, act, o);
            });
            return Ok(oshape);
        }
        let pointwise = ks == 1 && g.s == [1, 1, 1] && g.pb == [0, 0, 0] && os == is && p.pads.iter().all(|&v| v == 0);
        let mut col = if pointwise { Vec::new() } else { COL.with(|v| std::mem::take(&mut *v.borrow_mut())) };
        // A large im2col matrix is built and multiplied in column chunks that stay in L2,
        // one chunk per task, instead of being written out whole and read back from memory.
        let nr = self.gemm.nr;
        // Only when the weights are no larger than a chunk: each chunk streams all of them.
        let chunk_cols = match (IM2COL_CHUNK_BYTES / 4 / kdim.max(1) / nr).max(1) * nr {
            _ if pointwise || kdim * os * 4 <= 2 * IM2COL_CHUNK_BYTES => usize::MAX,
            cols if mg > cols => usize::MAX,
            cols => cols,
        };
        let infos = if chunk_cols < os { row_infos(&g, kdim) } else { Vec::new() };
        let mut run = || -> Result<(), KernelError> {
            for b in 0..n {
                for gi in 0..grp {
                    let xg = &x[(b * c + gi * cg) * is..(b * c + (gi + 1) * cg) * is];
                    let a = match w {
                        W::Raw(r) => Lhs::Mat(Mat::row_major(&r[gi * mg * kdim..(gi + 1) * mg * kdim], mg, kdim)?),
                        W::Packed(pw) => Lhs::Packed(&pw.groups[gi]),
                    };
                    let o0 = (b * m + gi * mg) * os;
                    let mut cm = MatMut::row_major(&mut out[o0..o0 + mg * os], mg, os)?;
                    let epi = Epilogue {
                        bias: bias.map_or(Bias::None, |bv| Bias::Row(&bv[gi * mg..(gi + 1) * mg])),
                        activation: act,
                    };
                    let r = if pointwise {
                        self.gemm_with(1.0, a, Rhs::Mat(Mat::row_major(xg, cg, is)?), 0.0, &mut cm, &epi)
                    } else if chunk_cols < os {
                        drop(cm);
                        let packed_a;
                        let pa = match a {
                            Lhs::Packed(p) => p,
                            Lhs::Mat(m) => {
                                packed_a = self.pack_a(m);
                                &packed_a
                            }
                        };
                        self.conv_chunked(&g, xg, &infos, pa, &epi, chunk_cols, &mut out[o0..o0 + mg * os])
                    } else {
                        let packed = im2col_packed(self, &g, xg, cg, std::mem::take(&mut col));
                        let r = self.gemm_with(1.0, a, Rhs::Packed(&packed), 0.0, &mut cm, &epi);
                        col = packed.into_buffer();
                        r
                    };
                    r?;
                }
            }
            Ok(())
        };
        let r = run();
        if !pointwise {
            COL.with(|v| *v.borrow_mut() = col);
        }
        r?;
        Ok(oshape)
    }

    /// One group of one image as column chunks of `chunk_cols` output positions: each task
    /// builds its chunk's packed im2col panels and multiplies them on its own thread.
    #[allow(clippy::too_many_arguments)]
    fn conv_chunked(
        &self,
        g: &Geo3,
        x: &[f32],
        infos: &[RowInfo],
        a: &PackedA,
        epi: &Epilogue,
        chunk_cols: usize,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        let os = g.osize();
        let mg = out.len() / os.max(1);
        let outp = SendPtr(out.as_mut_ptr());
        let err = std::sync::Mutex::new(None);
        parallel_for(os.div_ceil(chunk_cols), |ci| {
            let j0 = ci * chunk_cols;
            let nc = chunk_cols.min(os - j0);
            let buf = COL.with(|v| std::mem::take(&mut *v.borrow_mut()));
            let mut tmp = CHUNK_OUT.with(|v| std::mem::take(&mut *v.borrow_mut()));
            if tmp.len() < mg * nc {
                tmp.resize(mg * nc, 0.0);
            }
            let packed = im2col_packed_cols(self, g, x, infos, j0, nc, buf, false);
            let r = MatMut::row_major(&mut tmp[..mg * nc], mg, nc)
                .and_then(|mut cm| self.gemm_single_thread(1.0, Lhs::Packed(a), Rhs::Packed(&packed), 0.0, &mut cm, epi));
            match r {
                Ok(()) => {
                    for (i, row) in tmp[..mg * nc].chunks_exact(nc).enumerate() {
                        // SAFETY: chunk ci alone writes columns j0 .. j0 + nc of each of the
                        // mg rows of `out` (row stride os); no reference to `out` is live.
                        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), outp.get().add(i * os + j0), nc) };
                    }
                }
                Err(e) => *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
            }
            COL.with(|v| *v.borrow_mut() = packed.into_buffer());
            CHUNK_OUT.with(|v| *v.borrow_mut() = tmp);
        });
        match err.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// ONNX `ConvTranspose`: `x` is `[N, C, spatial...]`, `w` is `[C, M/group, k...]`,
    /// `out_spatial` the output spatial size (the caller resolves `output_shape` /
    /// `output_padding` / `auto_pad` into it and `p.pads`). Output is `[N, M, out_spatial...]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_transpose(
        &self,
        p: &ConvParams,
        x: &[f32],
        x_shape: &[usize],
        w: &[f32],
        w_shape: &[usize],
        bias: Option<&[f32]>,
        out_spatial: &[usize],
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        check_len("conv_transpose", "input", x.len(), x_shape)?;
        check_len("conv_transpose", "weights", w.len(), w_shape)?;
        if x_shape.len() < 3 || w_shape.len() != x_shape.len() || out_spatial.len() != x_shape.len() - 2 {
            return Err(KernelError::invalid(
                "conv_transpose",
                format!("input {x_shape:?}, weights {w_shape:?}, output spatial {out_spatial:?}: ranks differ"),
            ));
        }
        p.check("conv_transpose", x_shape.len() - 2)?;
        let (n, c) = (x_shape[0], x_shape[1]);
        let grp = p.group;
        if w_shape[0] != c || c % grp != 0 || p.kernel != w_shape[2..] {
            return Err(KernelError::invalid(
                "conv_transpose",
                format!("input channels {c}, weights {w_shape:?}, group {grp}, kernel {:?} do not agree", p.kernel),
            ));
        }
        let (cg, mg) = (c / grp, w_shape[1]);
        let m = mg * grp;
        if let Some(b) = bias
            && b.len() != m
        {
            return Err(KernelError::invalid("conv_transpose", format!("bias has {} values for {m} channels", b.len())));
        }
        let mut oshape = vec![n, m];
        oshape.extend_from_slice(out_spatial);
        check_len("conv_transpose", "output", out.len(), &oshape)?;
        // Roles swap: the "input" of the forward geometry is our output.
        let g = Geo3::new("conv_transpose", p, out_spatial, &x_shape[2..])?;
        let (xs, os, ks) = (g.osize(), g.isize(), g.ksize());
        let rows = mg * ks;
        let mut col = vec![0f32; rows * xs];
        for b in 0..n {
            for gi in 0..grp {
                let xg = Mat::row_major(&x[(b * c + gi * cg) * xs..(b * c + (gi + 1) * cg) * xs], cg, xs)?;
                let wg = Mat::row_major(&w[gi * cg * rows..(gi + 1) * cg * rows], cg, rows)?.t();
                self.gemm(1.0, wg, xg, 0.0, &mut MatMut::row_major(&mut col, rows, xs)?)?;
                let o0 = (b * m + gi * mg) * os;
                let og = &mut out[o0..o0 + mg * os];
                let outp = SendPtr(og.as_mut_ptr());
                let col = &col;
                parallel_for(mg, |mm| {
                    // SAFETY: item mm writes only output channel mm of this group.
                    let o = unsafe { std::slice::from_raw_parts_mut(outp.get().add(mm * os), os) };
                    o.fill(bias.map_or(0.0, |bv| bv[gi * mg + mm]));
                    col2im_channel(&g, &col[mm * ks * xs..(mm + 1) * ks * xs], o);
                });
            }
        }
        Ok(oshape)
    }
}

/// Adds one channel's columns (rows (kd,kh,kw), columns input positions) into the output plane.
fn col2im_channel(g: &Geo3, col: &[f32], o: &mut [f32]) {
    let xs = g.osize();
    for kk in 0..g.ksize() {
        let (kd, kh, kw) = (kk / (g.k[1] * g.k[2]), (kk / g.k[2]) % g.k[1], kk % g.k[2]);
        let src = &col[kk * xs..(kk + 1) * xs];
        let (d0, d1) = g.valid_range(0, kd);
        let (h0, h1) = g.valid_range(1, kh);
        let (w0, w1) = g.valid_range(2, kw);
        for xd in d0..d1 {
            let od = xd * g.s[0] + kd * g.d[0] - g.pb[0];
            for xh in h0..h1 {
                let oh = xh * g.s[1] + kh * g.d[1] - g.pb[1];
                let orow = (od * g.i[1] + oh) * g.i[2];
                let srow = (xd * g.o[1] + xh) * g.o[2];
                for xw in w0..w1 {
                    let ow = xw * g.s[2] + kw * g.d[2] - g.pb[2];
                    o[orow + ow] += src[srow + xw];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
