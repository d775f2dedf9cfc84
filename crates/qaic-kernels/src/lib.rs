//! # qaic-kernels
//!
//! Fast CPU kernels for qaic-rs, shared by the reference interpreter (`qaic-interp`) and the
//! device simulator (`qaic-sim`) so both compute the same numbers.
//!
//! **Depends on** `qaic-tensor` (element types, for casts), `half`, `rayon`, `bytemuck`, `libm`.
//! **Must never** know about graphs, ONNX nodes, devices or files: the API works on slices and
//! plain shape/stride parameters, and reports bad parameters as [`KernelError`]s (never panics
//! on caller-supplied shapes).
//!
//! ## Dispatch
//!
//! Each kernel family is written once as a *frame* (blocking, threading, edge handling, tests)
//! with small per-ISA pieces plugged in: GEMM micro-kernels, vectorised math loops. A
//! [`Kernels`] value is one complete selection for one [`Isa`]:
//!
//! - [`Kernels::from_env`]: the ISA named by `QAIC_KERNELS=scalar|avx2|avxvnni|avx512|avx512vnni`, or the best
//!   the CPU supports when unset; an error if the named ISA is unknown or unsupported here.
//! - [`Kernels::best`], [`Kernels::for_isa`]: explicit choices (tests run every available ISA
//!   against the scalar one).
//!
//! Type-generic kernels that are rare or memory-bound (casts, integer broadcasting, gathers,
//! transposes) are free functions; f32 hot paths are methods of [`Kernels`].
//!
//! ## Threads
//!
//! Kernels use up to [`num_threads`] threads (default: available parallelism), settable with
//! [`set_num_threads`]. Work is split into a few large items; nothing allocates per element.
//!
//! ## Families
//!
//! | module | what |
//! |---|---|
//! | [`gemm`] | f32 GEMM with strides/transposes, pre-packed operands, fused bias/activation, batched NumPy `matmul` |
//! | [`conv`] | f32 `Conv` (1-3-D, groups, dilations, pre-packed weights, pointwise/depthwise fast paths) and `ConvTranspose` |
//! | [`pool`] | max (with argmax indices, any numeric type), average, Lp and global pooling |
//! | [`reduce`] | `Reduce*` over axes for every numeric type, `ArgMax`/`ArgMin` |
//! | [`norm`] | softmax/log-softmax, layer/batch/instance normalisation |
//! | [`cast`] | ONNX `Cast` between every pair of element types (float8/float4/E8M0, packed int4/int2, strings) |
//! | [`quant`] | integer kernels: int8/int16 GEMM with i32 accumulation (VNNI / AVX2 / AVX-512, bit-identical across paths, packed weights), `MatMulInteger`, `ConvInteger`, quantize/dequantize/requantize, f16 <-> f32 slices |
//! | [`layout`] | transpose/permute (cache-blocked), gather |
//! | [`elementwise`] | f32 unary math (vectorised exp/log/tanh/erf/...), f32 binary ops, generic broadcasting for any type |
//!
//! ```
//! use qaic_kernels::{Kernels, gemm::{Mat, MatMut}};
//! let k = Kernels::best();
//! let a = [1.0f32, 2.0, 3.0, 4.0]; // 2x2
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut c = [0.0f32; 4];
//! k.gemm(1.0, Mat::row_major(&a, 2, 2).unwrap(), Mat::row_major(&b, 2, 2).unwrap(), 0.0,
//!        &mut MatMut::row_major(&mut c, 2, 2).unwrap()).unwrap();
//! assert_eq!(c, a);
//! ```

#![allow(clippy::too_many_arguments)]

pub mod cast;
pub mod conv;
mod dispatch;
pub mod elementwise;
pub mod gemm;
pub mod isa;
pub mod layout;
pub mod norm;
pub mod num;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod threads;
pub mod util;

pub use isa::Isa;
pub use threads::{num_threads, run_in_pool, set_num_threads};

use gemm::{Epilogue, GemmKernel, Lhs, Mat, MatMut, PackedA, PackedB, Rhs};

/// Errors reported by kernels: bad parameters from the caller, or an unavailable ISA.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error("unknown kernel ISA `{0}` (expected scalar, avx2, avxvnni, avx512 or avx512vnni; set by QAIC_KERNELS)")]
    UnknownIsa(String),
    #[error("kernel ISA `{requested}` is not supported by this CPU (available: {available}); unset QAIC_KERNELS or pick one of those")]
    IsaUnavailable { requested: Isa, available: String },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("{op}: not supported yet: {what}")]
    Unsupported { op: &'static str, what: String },
}

impl KernelError {
    pub(crate) fn invalid(op: &'static str, msg: String) -> KernelError {
        KernelError::Invalid { op, msg }
    }
    pub(crate) fn unsupported(op: &'static str, what: String) -> KernelError {
        KernelError::Unsupported { op, what }
    }
}

/// One complete kernel selection for one ISA. Obtain with [`Kernels::from_env`],
/// [`Kernels::best`] or [`Kernels::for_isa`]; all are `&'static`.
#[derive(Debug)]
pub struct Kernels {
    isa: Isa,
    pub(crate) gemm: GemmKernel,
}

static SCALAR: Kernels =
    Kernels { isa: Isa::Scalar, gemm: GemmKernel { mr: 4, nr: 8, kc: 256, mc: 64, nc: 4096, ukr: gemm::ukernels::scalar_4x8 } };

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels =
    Kernels { isa: Isa::Avx2, gemm: GemmKernel { mr: 6, nr: 16, kc: 256, mc: 96, nc: 4096, ukr: gemm::ukernels::avx2_6x16 } };

#[cfg(target_arch = "x86_64")]
static AVX512: Kernels = Kernels {
    isa: Isa::Avx512,
    gemm: GemmKernel { mr: 8, nr: 32, kc: 256, mc: 128, nc: 4096, ukr: gemm::ukernels::avx512_8x32 },
};

impl Kernels {
    /// Kernels for `isa`; an error if this CPU cannot run it.
    pub fn for_isa(isa: Isa) -> Result<&'static Kernels, KernelError> {
        if !isa.is_available() {
            Isa::select(isa.name())?;
        }
        Ok(match isa {
            Isa::Scalar => &SCALAR,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => &AVX2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => &AVX512,
            #[cfg(not(target_arch = "x86_64"))]
            _ => &SCALAR,
        })
    }

    /// The fastest kernels this CPU runs.
    pub fn best() -> &'static Kernels {
        Kernels::for_isa(Isa::best()).unwrap_or(&SCALAR)
    }

    /// Kernels chosen by `QAIC_KERNELS` (`scalar`, `avx2`, `avx512`), or the best available
    /// when unset. Errors if the variable names an unknown ISA or one this CPU lacks.
    pub fn from_env() -> Result<&'static Kernels, KernelError> {
        let isa = Isa::from_env()?;
        tracing::debug!(%isa, "selected CPU kernels");
        Kernels::for_isa(isa)
    }

    /// The ISA of this selection.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// GEMM tile and blocking parameters of this selection.
    pub fn gemm_params(&self) -> GemmKernel {
        self.gemm
    }

    /// `C = alpha * A * B + beta * C`. Operands are strided views (transpose with
    /// [`Mat::t`]) or operands packed by [`Kernels::pack_a`]/[`Kernels::pack_b`]. When `beta`
    /// is 0, C is not read (NaNs in C do not propagate).
    pub fn gemm<'a>(
        &self,
        alpha: f32,
        a: impl Into<Lhs<'a>>,
        b: impl Into<Rhs<'a>>,
        beta: f32,
        c: &mut MatMut,
    ) -> Result<(), KernelError> {
        gemm::gemm_impl(&self.gemm, self.isa, alpha, a.into(), b.into(), beta, c, &Epilogue::default(), true)
    }

    /// Like [`Kernels::gemm`] with a fused epilogue: `C = act(alpha*A*B + beta*C + bias)`.
    pub fn gemm_with<'a>(
        &self,
        alpha: f32,
        a: impl Into<Lhs<'a>>,
        b: impl Into<Rhs<'a>>,
        beta: f32,
        c: &mut MatMut,
        epilogue: &Epilogue,
    ) -> Result<(), KernelError> {
        gemm::gemm_impl(&self.gemm, self.isa, alpha, a.into(), b.into(), beta, c, epilogue, true)
    }

    /// Same as [`Kernels::gemm_with`] on the calling thread only (for callers that already
    /// parallelise over independent GEMMs).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_single_thread<'a>(
        &self,
        alpha: f32,
        a: impl Into<Lhs<'a>>,
        b: impl Into<Rhs<'a>>,
        beta: f32,
        c: &mut MatMut,
        epilogue: &Epilogue,
    ) -> Result<(), KernelError> {
        gemm::gemm_impl(&self.gemm, self.isa, alpha, a.into(), b.into(), beta, c, epilogue, false)
    }

    /// Packs a constant left operand once for repeated [`Kernels::gemm`] calls.
    pub fn pack_a(&self, a: Mat) -> PackedA {
        self.gemm.pack_a(self.isa, a)
    }

    /// Packs a constant right operand (weights) once for repeated [`Kernels::gemm`] calls.
    pub fn pack_b(&self, b: Mat) -> PackedB {
        self.gemm.pack_b(self.isa, b)
    }
}
