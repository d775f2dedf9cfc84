//! f32 matrix multiplication: `C = act(alpha * op(A) * op(B) + beta * C + bias)`.
//!
//! The frame (this module) owns blocking, packing, threading and the epilogue; each ISA only
//! supplies a register-blocked micro-kernel ([`ukernels`]). Loop order follows BLIS: for each
//! `KC` slice of the inner dimension, A is packed into `MR`-row panels and B into `NR`-column
//! panels; work items (an `MC`-row block of C times a run of B panels) run in parallel, and in
//! each item one B panel stays in L1 while the A panels of the block stream from L2.
//!
//! Operands are strided views ([`Mat`]); transposition is a stride swap ([`Mat::t`]). Constant
//! operands can be packed once ([`PackedA`], [`PackedB`]) and reused across calls.

mod small;
pub mod ukernels;

use std::cell::RefCell;

use crate::threads::{parallel_for, SendPtr};
use crate::{Isa, KernelError};
pub use ukernels::UKernel;

/// Parameters of one ISA's GEMM: micro-kernel tile and cache blocking.
#[derive(Clone, Copy, Debug)]
pub struct GemmKernel {
    /// Rows of the micro-kernel tile.
    pub mr: usize,
    /// Columns of the micro-kernel tile.
    pub nr: usize,
    /// Inner-dimension block (a packed B panel of `kc x nr` should fit L1).
    pub kc: usize,
    /// Row block of a work item (a multiple of `mr`; `mc x kc` of A should fit L2).
    pub mc: usize,
    /// Column block packed at once (a multiple of `nr`).
    pub nc: usize,
    /// The micro-kernel.
    pub ukr: UKernel,
}

/// A read-only strided f32 matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(rs)?.checked_add((cols - 1).checked_mul(cs)?)?.checked_add(1)
}

impl<'a> Mat<'a> {
    /// A strided view; fails if an element would fall outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self, KernelError> {
        match extent(rows, cols, rs, cs) {
            Some(e) if e <= data.len() => Ok(Mat { data, rows, cols, rs, cs }),
            _ => Err(KernelError::invalid(
                "gemm",
                format!("{rows}x{cols} matrix with strides ({rs}, {cs}) does not fit in {} elements", data.len()),
            )),
        }
    }
    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Mat::new(data, rows, cols, cols, 1)
    }
    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Mat { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[cfg(test)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// A mutable strided f32 matrix view. Strides must not make two elements alias.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A strided mutable view; fails if an element falls outside `data` or elements alias.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self, KernelError> {
        let fits = matches!(extent(rows, cols, rs, cs), Some(e) if e <= data.len());
        let distinct = rows <= 1 && (cols <= 1 || cs > 0)
            || cols <= 1 && rs > 0
            || cs > 0 && rs >= cols * cs
            || rs > 0 && cs >= rows * rs;
        if !fits || !distinct {
            return Err(KernelError::invalid(
                "gemm",
                format!(
                    "output {rows}x{cols} with strides ({rs}, {cs}) does not fit in {} elements or aliases",
                    data.len()
                ),
            ));
        }
        Ok(MatMut { data, rows, cols, rs, cs })
    }
    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        MatMut::new(data, rows, cols, cols, 1)
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Activation fused into the GEMM/convolution epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
    LeakyRelu(f32),
    /// `min(max(x, min), max)` (ONNX Clip, Relu6).
    Clip { min: f32, max: f32 },
    /// `clamp(alpha * x + beta, 0, 1)` (ONNX HardSigmoid).
    HardSigmoid { alpha: f32, beta: f32 },
    /// `x * clamp(x / 6 + 1/2, 0, 1)` (ONNX HardSwish).
    HardSwish,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0),
        }
    }
}

impl Activation {
    /// `dst[i] = act(src[i])`, one vectorisable loop per activation.
    #[inline(always)]
    pub(crate) fn apply_slice(self, dst: &mut [f32], src: &[f32]) {
        macro_rules! run {
            ($f:expr) => {{
                let f = $f;
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = f(v);
                }
            }};
        }
        match self {
            Activation::None => dst.copy_from_slice(&src[..dst.len()]),
            Activation::Relu => run!(|x: f32| x.max(0.0)),
            Activation::LeakyRelu(a) => run!(|x: f32| if x < 0.0 { a * x } else { x }),
            Activation::Clip { min, max } => run!(|x: f32| x.max(min).min(max)),
            Activation::HardSigmoid { alpha, beta } => run!(|x: f32| (alpha * x + beta).clamp(0.0, 1.0)),
            Activation::HardSwish => run!(|x: f32| x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)),
        }
    }
}

/// Bias added in the epilogue.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    #[default]
    None,
    /// One value per row of C (convolution output channels).
    Row(&'a [f32]),
    /// One value per column of C (`MatMul` + `Add` of a vector).
    Col(&'a [f32]),
}

/// What happens to each element of C after the product: `act(x + bias)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    pub bias: Bias<'a>,
    pub activation: Activation,
}

impl Epilogue<'_> {
    fn is_identity(&self) -> bool {
        matches!(self.bias, Bias::None) && self.activation == Activation::None
    }
}

/// Left operand packed once for a given ISA (e.g. convolution weights).
#[derive(Clone, Debug)]
pub struct PackedA {
    isa: Isa,
    m: usize,
    k: usize,
    mr: usize,
    kc: usize,
    data: Vec<f32>,
}

/// Right operand packed once for a given ISA (e.g. `MatMul`/`Gemm` weights).
#[derive(Clone, Debug)]
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    nr: usize,
    kc: usize,
    data: Vec<f32>,
}

impl PackedA {
    pub fn rows(&self) -> usize {
        self.m
    }
    pub fn cols(&self) -> usize {
        self.k
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
}
impl PackedB {
    /// Wraps data already in packed layout (see [`GemmKernel`]); `data` may be longer.
    pub(crate) fn from_parts(isa: Isa, k: usize, n: usize, nr: usize, kc: usize, data: Vec<f32>) -> PackedB {
        PackedB { isa, k, n, nr, kc, data }
    }
    /// Gives the buffer back for reuse.
    pub(crate) fn into_buffer(self) -> Vec<f32> {
        self.data
    }
    pub fn rows(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// The left operand of a GEMM.
#[derive(Clone, Copy, Debug)]
pub enum Lhs<'a> {
    Mat(Mat<'a>),
    Packed(&'a PackedA),
}
/// The right operand of a GEMM.
#[derive(Clone, Copy, Debug)]
pub enum Rhs<'a> {
    Mat(Mat<'a>),
    Packed(&'a PackedB),
}

impl<'a> From<Mat<'a>> for Lhs<'a> {
    fn from(m: Mat<'a>) -> Self {
        Lhs::Mat(m)
    }
}
impl<'a> From<&'a PackedA> for Lhs<'a> {
    fn from(m: &'a PackedA) -> Self {
        Lhs::Packed(m)
    }
}
impl<'a> From<Mat<'a>> for Rhs<'a> {
    fn from(m: Mat<'a>) -> Self {
        Rhs::Mat(m)
    }
}
impl<'a> From<&'a PackedB> for Rhs<'a> {
    fn from(m: &'a PackedB) -> Self {
        Rhs::Packed(m)
    }
}

/// Packs `kc` columns of `mr` rows starting at (i0, p0) into `dst` (`p`-major, zero padded).
fn pack_a_panel(a: &Mat, i0: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
    let mv = mr.min(a.rows - i0);
    if mv < mr {
        dst[..kc * mr].fill(0.0);
    }
    if a.rs == 1 {
        for p in 0..kc {
            let s = (p0 + p) * a.cs + i0;
            dst[p * mr..p * mr + mv].copy_from_slice(&a.data[s..s + mv]);
        }
    } else {
        for i in 0..mv {
            let row = (i0 + i) * a.rs;
            for p in 0..kc {
                dst[p * mr + i] = a.data[row + (p0 + p) * a.cs];
            }
        }
    }
}

/// Packs `kc` rows of `nr` columns starting at (p0, j0) into `dst` (`p`-major, zero padded).
fn pack_b_panel(b: &Mat, p0: usize, j0: usize, kc: usize, nr: usize, dst: &mut [f32]) {
    let nv = nr.min(b.cols - j0);
    if b.cs == 1 && nv == nr && nr % 16 == 0 {
        // Whole panels: fixed 16-float copies compile to inline vector moves (a memcpy call
        // per 32-float row costs as much as the copy).
        for p in 0..kc {
            let s = (p0 + p) * b.rs + j0;
            let (src, d) = (&b.data[s..s + nr], &mut dst[p * nr..p * nr + nr]);
            for (dc, sc) in d.chunks_exact_mut(16).zip(src.chunks_exact(16)) {
                let dc: &mut [f32; 16] = dc.try_into().expect("16-float chunk");
                *dc = sc.try_into().expect("16-float chunk");
            }
        }
    } else if b.cs == 1 {
        for p in 0..kc {
            let s = (p0 + p) * b.rs + j0;
            let d = &mut dst[p * nr..p * nr + nr];
            d[..nv].copy_from_slice(&b.data[s..s + nv]);
            d[nv..].fill(0.0);
        }
    } else {
        if nv < nr {
            dst[..kc * nr].fill(0.0);
        }
        for j in 0..nv {
            let col = (j0 + j) * b.cs;
            for p in 0..kc {
                dst[p * nr + j] = b.data[(p0 + p) * b.rs + col];
            }
        }
    }
}

/// Packs panels `[first, first+count)` of A's block `pc` into `dst`.
fn pack_a_block(a: &Mat, pc: usize, kc: usize, mr: usize, dst: &mut [f32], parallel: bool) {
    let panels = a.rows.div_ceil(mr);
    let sz = kc * mr;
    if parallel && panels * sz > 1 << 15 {
        let d = SendPtr(dst.as_mut_ptr());
        parallel_for(panels, |ip| {
            // SAFETY: each item writes its own panel of `dst`.
            let s = unsafe { std::slice::from_raw_parts_mut(d.get().add(ip * sz), sz) };
            pack_a_panel(a, ip * mr, pc, kc, mr, s);
        });
    } else {
        for ip in 0..panels {
            pack_a_panel(a, ip * mr, pc, kc, mr, &mut dst[ip * sz..(ip + 1) * sz]);
        }
    }
}

fn pack_b_block(b: &Mat, pc: usize, kc: usize, j0: usize, ncols: usize, nr: usize, dst: &mut [f32], parallel: bool) {
    let panels = ncols.div_ceil(nr);
    let sz = kc * nr;
    if parallel && panels * sz > 1 << 15 {
        let d = SendPtr(dst.as_mut_ptr());
        parallel_for(panels, |jp| {
            // SAFETY: each item writes its own panel of `dst`.
            let s = unsafe { std::slice::from_raw_parts_mut(d.get().add(jp * sz), sz) };
            pack_b_panel(b, pc, j0 + jp * nr, kc, nr, s);
        });
    } else {
        for jp in 0..panels {
            pack_b_panel(b, pc, j0 + jp * nr, kc, nr, &mut dst[jp * sz..(jp + 1) * sz]);
        }
    }
}

impl GemmKernel {
    /// The K block actually used for an inner dimension `k`: at most `kc`, balanced so the
    /// last block is not a short remainder (576 -> 3 x 192 rather than 256 + 256 + 64).
    pub fn kc_for(&self, k: usize) -> usize {
        if k == 0 {
            return self.kc;
        }
        k.div_ceil(k.div_ceil(self.kc))
    }

    pub(crate) fn pack_a(&self, isa: Isa, a: Mat) -> PackedA {
        let (m, k) = (a.rows, a.cols);
        let mpad = m.div_ceil(self.mr) * self.mr;
        let mut data = vec![0f32; mpad * k];
        let kcb = self.kc_for(k);
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            pack_a_block(&a, pc, kc, self.mr, &mut data[pc * mpad..pc * mpad + kc * mpad], true);
        }
        PackedA { isa, m, k, mr: self.mr, kc: kcb, data }
    }

    pub(crate) fn pack_b(&self, isa: Isa, b: Mat) -> PackedB {
        let (k, n) = (b.rows, b.cols);
        let npad = n.div_ceil(self.nr) * self.nr;
        let mut data = vec![0f32; npad * k];
        let kcb = self.kc_for(k);
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            pack_b_block(&b, pc, kc, 0, n, self.nr, &mut data[pc * npad..pc * npad + kc * npad], true);
        }
        PackedB { isa, k, n, nr: self.nr, kc: kcb, data }
    }
}

thread_local! {
    static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with two scratch buffers of at least the given sizes, reused across calls on the
/// same thread (fresh pages would cost more than small GEMMs).
fn with_scratch<R>(na: usize, nb: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    let (mut a, mut b) = BUFS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if a.len() < na {
        a.resize(na, 0.0);
    }
    if b.len() < nb {
        b.resize(nb, 0.0);
    }
    let r = f(&mut a[..na], &mut b[..nb]);
    BUFS.with(|c| *c.borrow_mut() = (a, b));
    r
}

/// [`apply_epilogue`] compiled for `isa`: called from a parallel closure, which does not
/// inherit the caller's target features, it would otherwise run 4-wide SSE code.
///
/// # Safety
/// As [`apply_epilogue`]; `isa` is supported by this CPU.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn apply_epilogue_isa(isa: Isa, epi: &Epilogue, c: *mut f32, rsc: usize, csc: usize, i0: usize, j0: usize, m: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512(epi: &Epilogue, c: *mut f32, rsc: usize, csc: usize, i0: usize, j0: usize, m: usize, n: usize) {
            unsafe { apply_epilogue(epi, c, rsc, csc, i0, j0, m, n) }
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2(epi: &Epilogue, c: *mut f32, rsc: usize, csc: usize, i0: usize, j0: usize, m: usize, n: usize) {
            unsafe { apply_epilogue(epi, c, rsc, csc, i0, j0, m, n) }
        }
        match isa {
            // SAFETY: the caller guarantees the CPU supports `isa`.
            Isa::Avx512 => return unsafe { avx512(epi, c, rsc, csc, i0, j0, m, n) },
            Isa::Avx2 => return unsafe { avx2(epi, c, rsc, csc, i0, j0, m, n) },
            _ => {}
        }
    }
    let _ = isa;
    unsafe { apply_epilogue(epi, c, rsc, csc, i0, j0, m, n) }
}

#[inline(always)]
unsafe fn apply_epilogue(
    epi: &Epilogue,
    c: *mut f32,
    rsc: usize,
    csc: usize,
    i0: usize,
    j0: usize,
    m: usize,
    n: usize,
) {
    // One loop per activation so each vectorises (the activation is constant inside it).
    macro_rules! run {
        ($f:expr) => {{
            let f = $f;
            for i in 0..m {
                let rb = match epi.bias {
                    Bias::Row(b) => b[i0 + i],
                    _ => 0.0,
                };
                // SAFETY: row i of the tile lies in C and is owned by the caller.
                let row = unsafe { c.add(i * rsc) };
                match (epi.bias, csc) {
                    (Bias::Col(b), 1) => {
                        let r = unsafe { std::slice::from_raw_parts_mut(row, n) };
                        for (x, &cb) in r.iter_mut().zip(&b[j0..j0 + n]) {
                            *x = f(*x + cb);
                        }
                    }
                    (_, 1) => {
                        let r = unsafe { std::slice::from_raw_parts_mut(row, n) };
                        for x in r.iter_mut() {
                            *x = f(*x + rb);
                        }
                    }
                    _ => {
                        for j in 0..n {
                            let cb = match epi.bias {
                                Bias::Col(b) => b[j0 + j],
                                _ => 0.0,
                            };
                            unsafe {
                                let p = row.add(j * csc);
                                *p = f(*p + rb + cb);
                            }
                        }
                    }
                }
            }
        }};
    }
    match epi.activation {
        Activation::None => run!(|x: f32| x),
        Activation::Relu => run!(|x: f32| x.max(0.0)),
        Activation::LeakyRelu(a) => run!(|x: f32| if x < 0.0 { a * x } else { x }),
        Activation::Clip { min, max } => run!(|x: f32| x.max(min).min(max)),
        Activation::HardSigmoid { alpha, beta } => run!(|x: f32| (alpha * x + beta).clamp(0.0, 1.0)),
        Activation::HardSwish => run!(|x: f32| x * (x * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0)),
    }
}

/// The blocked, multithreaded GEMM driver shared by every ISA.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_impl(
    g: &GemmKernel,
    isa: Isa,
    alpha: f32,
    a: Lhs,
    b: Rhs,
    beta: f32,
    c: &mut MatMut,
    epi: &Epilogue,
    parallel: bool,
) -> Result<(), KernelError> {
    let (m, n) = (c.rows, c.cols);
    let (am, ak) = match a {
        Lhs::Mat(x) => (x.rows, x.cols),
        Lhs::Packed(p) => (p.m, p.k),
    };
    let (bk, bn) = match b {
        Rhs::Mat(x) => (x.rows, x.cols),
        Rhs::Packed(p) => (p.k, p.n),
    };
    if am != m || bn != n || ak != bk {
        return Err(KernelError::invalid(
            "gemm",
            format!("shapes do not agree: A is {am}x{ak}, B is {bk}x{bn}, C is {m}x{n}"),
        ));
    }
    if let Lhs::Packed(p) = a
        && (p.isa != isa || p.mr != g.mr || p.kc != g.kc_for(p.k))
    {
        return Err(KernelError::invalid("gemm", format!("A was packed for {} kernels, not {isa}", p.isa)));
    }
    if let Rhs::Packed(p) = b
        && (p.isa != isa || p.nr != g.nr || p.kc != g.kc_for(p.k))
    {
        return Err(KernelError::invalid("gemm", format!("B was packed for {} kernels, not {isa}", p.isa)));
    }
    match epi.bias {
        Bias::Row(v) if v.len() < m => {
            return Err(KernelError::invalid("gemm", format!("row bias has {} values for {m} rows", v.len())));
        }
        Bias::Col(v) if v.len() < n => {
            return Err(KernelError::invalid("gemm", format!("column bias has {} values for {n} columns", v.len())));
        }
        _ => {}
    }
    let k = ak;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (rsc, csc) = (c.rs, c.cs);
    let cptr = SendPtr(c.data.as_mut_ptr());
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let x = &mut c.data[i * rsc + j * csc];
                *x = if beta == 0.0 { 0.0 } else { beta * *x };
            }
        }
        // SAFETY: the whole C is ours.
        unsafe { apply_epilogue(epi, cptr.get(), rsc, csc, 0, 0, m, n) };
        return Ok(());
    }
    if (n <= small::SMALL || m <= small::SMALL) && small::small_gemm(isa, a, b, alpha, beta, c, epi, k, parallel) {
        return Ok(());
    }
    let (mr, nr) = (g.mr, g.nr);
    let mpad = m.div_ceil(mr) * mr;
    let npad = n.div_ceil(nr) * nr;
    let kcb = g.kc_for(k);
    let kc_max = kcb.min(k);
    let nc_max = g.nc.min(npad);
    let need_a = if matches!(a, Lhs::Mat(_)) { mpad * kc_max } else { 0 };
    let need_b = if matches!(b, Rhs::Mat(_)) { nc_max * kc_max } else { 0 };
    let threads = if parallel { crate::num_threads() } else { 1 };
    let epi_identity = epi.is_identity();
    with_scratch(need_a, need_b, |abuf, bbuf| {
        for pc in (0..k).step_by(kcb) {
            let kc = kcb.min(k - pc);
            let last = pc + kc == k;
            let beta_eff = if pc == 0 { beta } else { 1.0 };
            let ablock: &[f32] = match a {
                Lhs::Mat(x) => {
                    pack_a_block(&x, pc, kc, mr, abuf, parallel);
                    abuf
                }
                Lhs::Packed(p) => &p.data[pc * mpad..pc * mpad + kc * mpad],
            };
            for jc in (0..n).step_by(g.nc) {
                let ncols = g.nc.min(n - jc);
                let panels = ncols.div_ceil(nr);
                // An unpacked B is packed panel by panel inside the items that use it (each
                // item multiplies its panels by every row of A): no separate packing pass and
                // no barrier between packing and multiplying.
                let bp = match b {
                    Rhs::Mat(_) => SendPtr(bbuf.as_mut_ptr()),
                    Rhs::Packed(p) => SendPtr(p.data[pc * npad + (jc / nr) * kc * nr..].as_ptr() as *mut f32),
                };
                let b_unpacked = match b {
                    Rhs::Mat(x) => Some(x),
                    Rhs::Packed(_) => None,
                };
                // Split into at least 4 items per thread when the shape allows.
                let mblocks = if b_unpacked.is_some() { 1 } else { m.div_ceil(g.mc) };
                let mut chunk = panels;
                while mblocks * panels.div_ceil(chunk) < 4 * threads && chunk > 1 {
                    chunk = chunk.div_ceil(2);
                }
                let nchunks = panels.div_ceil(chunk);
                let ap = SendPtr(ablock.as_ptr() as *mut f32);
                let item = |it: usize| {
                    let (mb, nb) = (it / nchunks, it % nchunks);
                    let (i_start, i_end) = if b_unpacked.is_some() { (0, m) } else { (mb * g.mc, (mb * g.mc + g.mc).min(m)) };
                    for jp in nb * chunk..((nb + 1) * chunk).min(panels) {
                        let j = jc + jp * nr;
                        let nv = nr.min(n - j);
                        if let Some(x) = &b_unpacked {
                            // SAFETY: panel jp of the B scratch (kc * nr floats) is written by
                            // this item only, and read only by it afterwards.
                            let dst = unsafe { std::slice::from_raw_parts_mut(bp.get().add(jp * kc * nr), kc * nr) };
                            pack_b_panel(x, pc, j, kc, nr, dst);
                        }
                        let mut i = i_start;
                        while i < i_end {
                            let mv = mr.min(m - i);
                            // SAFETY: panels were packed with kc * mr / kc * nr floats; the C tile
                            // (i.., j..) of size mv x nv is inside C and owned by this item only.
                            unsafe {
                                let ct = cptr.get().add(i * rsc + j * csc);
                                (g.ukr)(
                                    kc,
                                    ap.get().add((i / mr) * kc * mr),
                                    bp.get().add(jp * kc * nr),
                                    ct,
                                    rsc,
                                    csc,
                                    mv,
                                    nv,
                                    alpha,
                                    beta_eff,
                                );
                                if last && !epi_identity {
                                    apply_epilogue_isa(isa, epi, ct, rsc, csc, i, j, mv, nv);
                                }
                            }
                            i += mr;
                        }
                    }
                };
                if threads > 1 {
                    parallel_for(mblocks * nchunks, item);
                } else {
                    (0..mblocks * nchunks).for_each(item);
                }
            }
        }
    });
    Ok(())
}

/// Output shape of NumPy `matmul` for the given operand shapes.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, KernelError> {
    if a.is_empty() || b.is_empty() {
        return Err(KernelError::invalid("matmul", "operands must have rank >= 1".to_string()));
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (ka, kb) = (a2[a2.len() - 1], b2[b2.len() - 2]);
    if ka != kb {
        return Err(KernelError::invalid("matmul", format!("inner dimensions differ: {a:?} x {b:?}")));
    }
    let batch = qaic_tensor::broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).ok_or_else(|| {
        KernelError::invalid("matmul", format!("batch dimensions of {a:?} and {b:?} do not broadcast"))
    })?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// Output batch shape and per-operand batch strides (in matrices) of a batched matmul.
fn batch_plan(a: &[usize], b: &[usize], out_batch: &[usize]) -> Result<(Vec<usize>, Vec<usize>), KernelError> {
    Ok((crate::util::broadcast_strides(a, out_batch)?, crate::util::broadcast_strides(b, out_batch)?))
}

impl crate::Kernels {
    /// NumPy/ONNX `MatMul` of dense row-major tensors: 1-D operands are promoted (and the
    /// added dimension removed), batch dimensions broadcast. `out` must have the size of
    /// [`matmul_shape`]`(a_shape, b_shape)`, which is returned.
    pub fn matmul(
        &self,
        a: &[f32],
        a_shape: &[usize],
        b: &[f32],
        b_shape: &[usize],
        out: &mut [f32],
    ) -> Result<Vec<usize>, KernelError> {
        self.matmul_with(a, a_shape, Rhs::Mat(Mat { data: b, rows: 0, cols: 0, rs: 0, cs: 0 }), b_shape, out, &Epilogue::default())
    }

    /// `MatMul` with a right operand packed by [`crate::Kernels::pack_b`] (shape `[k, n]`) and a fused
    /// epilogue (e.g. the bias of a following `Add`, as [`Bias::Col`]).
    pub fn matmul_packed(
        &self,
        a: &[f32],
        a_shape: &[usize],
        b: &PackedB,
        out: &mut [f32],
        epilogue: &Epilogue,
    ) -> Result<Vec<usize>, KernelError> {
        self.matmul_with(a, a_shape, Rhs::Packed(b), &[b.k, b.n], out, epilogue)
    }

    fn matmul_with(
        &self,
        a: &[f32],
        a_shape: &[usize],
        b: Rhs,
        b_shape: &[usize],
        out: &mut [f32],
        epi: &Epilogue,
    ) -> Result<Vec<usize>, KernelError> {
        use crate::util::{check_len, numel};
        let out_shape = matmul_shape(a_shape, b_shape)?;
        check_len("matmul", "A", a.len(), a_shape)?;
        if let Rhs::Mat(bm) = b {
            check_len("matmul", "B", bm.data.len(), b_shape)?;
        }
        check_len("matmul", "output", out.len(), &out_shape)?;
        let a2: Vec<usize> = if a_shape.len() == 1 { vec![1, a_shape[0]] } else { a_shape.to_vec() };
        let b2: Vec<usize> = if b_shape.len() == 1 { vec![b_shape[0], 1] } else { b_shape.to_vec() };
        let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
        let n = b2[b2.len() - 1];
        let (abatch, bbatch) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
        let bmat = |off: usize| -> Rhs {
            match b {
                Rhs::Mat(bm) => Rhs::Mat(Mat { data: &bm.data[off..], rows: k, cols: n, rs: n, cs: 1 }),
                p => p,
            }
        };
        // Weights shared by every batch item: fold the batch into M (one large GEMM).
        if numel(bbatch) == 1 {
            let rows = numel(abatch) * m;
            let am = Mat::row_major(a, rows, k)?;
            let mut cm = MatMut::row_major(out, rows, n)?;
            return gemm_impl(&self.gemm, self.isa, 1.0, Lhs::Mat(am), bmat(0), 0.0, &mut cm, epi, true).map(|_| out_shape);
        }
        let out_batch = qaic_tensor::broadcast(abatch, bbatch)
            .ok_or_else(|| KernelError::invalid("matmul", format!("batch dims {abatch:?} and {bbatch:?} do not broadcast")))?;
        let (sa, sb) = batch_plan(abatch, bbatch, &out_batch)?;
        let mut offs = Vec::with_capacity(numel(&out_batch));
        crate::util::for_each_offset(&out_batch, [&sa, &sb], |o| offs.push(o));
        let small = m * n * k < 64 * 64 * 64;
        let outp = SendPtr(out.as_mut_ptr());
        let run = |bi: usize, parallel: bool| -> Result<(), KernelError> {
            let [oa, ob] = offs[bi];
            let am = Mat { data: &a[oa * m * k..], rows: m, cols: k, rs: k, cs: 1 };
            // SAFETY: batch item bi writes only its own m x n block of `out`.
            let cs = unsafe { std::slice::from_raw_parts_mut(outp.get().add(bi * m * n), m * n) };
            let mut cm = MatMut { data: cs, rows: m, cols: n, rs: n, cs: 1 };
            gemm_impl(&self.gemm, self.isa, 1.0, Lhs::Mat(am), bmat(ob * k * n), 0.0, &mut cm, epi, parallel)
        };
        if small && offs.len() > 1 {
            let err = std::sync::Mutex::new(None);
            parallel_for(offs.len(), |bi| {
                if let Err(e) = run(bi, false) {
                    *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            });
            if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
        } else {
            for bi in 0..offs.len() {
                run(bi, true)?;
            }
        }
        Ok(out_shape)
    }
}
