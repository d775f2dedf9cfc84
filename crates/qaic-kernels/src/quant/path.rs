//! Which integer kernel implementation runs: [`IntPath`].
//!
//! The integer kernels have more variants than the f32 ones because x86 has two dot-product
//! extensions on top of AVX2 / AVX-512 (AVX-VNNI on 256-bit registers, AVX-512 VNNI on 512-bit
//! ones). All variants compute exactly the same integers, so the choice only changes speed.

use std::fmt;
use std::sync::OnceLock;

use crate::{Isa, KernelError};

/// One implementation of the integer kernels (int8/int16 GEMM, quantize/dequantize, fp16
/// conversion). Every path gives bit-identical results; see `docs/kernels.md`.
///
/// Selected by the same `QAIC_KERNELS` variable as the f32 kernels:
/// `scalar`, `avx2` (AVX2 `vpmaddwd`), `avxvnni` (AVX-VNNI `vpdpbusd` on ymm, f32 kernels of
/// `avx2`), `avx512` (AVX-512BW `vpmaddwd`), `avx512vnni` (AVX-512 VNNI `vpdpbusd` on zmm, f32
/// kernels of `avx512`). Unset: the best this CPU runs.
///
/// ```
/// use qaic_kernels::quant::IntPath;
/// assert!(IntPath::available().contains(&IntPath::Scalar));
/// assert_eq!("avx512vnni".parse::<IntPath>().unwrap(), IntPath::Avx512Vnni);
/// assert_eq!(IntPath::Avx512Vnni.isa(), qaic_kernels::Isa::Avx512);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntPath {
    /// Portable Rust.
    Scalar,
    /// AVX2: 16-bit pairs multiplied and added into i32 lanes (`vpmaddwd`), 8 lanes.
    Avx2,
    /// AVX-512BW: `vpmaddwd` on 16 lanes.
    Avx512,
    /// AVX-VNNI: u8 x i8 quadruples into i32 lanes (`vpdpbusd`, VEX), 8 lanes.
    AvxVnni,
    /// AVX-512 VNNI: `vpdpbusd` on 16 lanes.
    Avx512Vnni,
}

impl IntPath {
    /// Every path, slowest first.
    pub const ALL: [IntPath; 5] = [IntPath::Scalar, IntPath::Avx2, IntPath::AvxVnni, IntPath::Avx512, IntPath::Avx512Vnni];

    /// Lower-case name, as accepted by `QAIC_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            IntPath::Scalar => "scalar",
            IntPath::Avx2 => "avx2",
            IntPath::Avx512 => "avx512",
            IntPath::AvxVnni => "avxvnni",
            IntPath::Avx512Vnni => "avx512vnni",
        }
    }

    /// The f32 kernel family this path belongs to (what `QAIC_KERNELS=<name>` selects for
    /// the f32 kernels).
    pub fn isa(self) -> Isa {
        match self {
            IntPath::Scalar => Isa::Scalar,
            IntPath::Avx2 | IntPath::AvxVnni => Isa::Avx2,
            IntPath::Avx512 | IntPath::Avx512Vnni => Isa::Avx512,
        }
    }

    /// Whether this CPU runs the path.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                IntPath::Scalar => true,
                IntPath::Avx2 => Isa::Avx2.is_available(),
                IntPath::Avx512 => Isa::Avx512.is_available(),
                IntPath::AvxVnni => Isa::Avx2.is_available() && is_x86_feature_detected!("avxvnni"),
                IntPath::Avx512Vnni => Isa::Avx512.is_available() && is_x86_feature_detected!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == IntPath::Scalar
        }
    }

    /// The paths this CPU runs, slowest first (always starts with `Scalar`).
    pub fn available() -> Vec<IntPath> {
        IntPath::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// The fastest path this CPU runs.
    pub fn best() -> IntPath {
        IntPath::ALL.into_iter().rev().find(|p| p.is_available()).unwrap_or(IntPath::Scalar)
    }

    /// The best path within the f32 family `isa` (e.g. `Avx512Vnni` for `Isa::Avx512` when
    /// the CPU has AVX-512 VNNI).
    pub fn best_for(isa: Isa) -> IntPath {
        IntPath::ALL.into_iter().rev().find(|p| p.isa() == isa && p.is_available()).unwrap_or(IntPath::Scalar)
    }

    /// The path named by `QAIC_KERNELS`, or [`IntPath::best`] when unset or empty.
    pub fn from_env() -> Result<IntPath, KernelError> {
        match std::env::var(crate::isa::ENV_VAR) {
            Ok(v) if !v.trim().is_empty() => IntPath::select(v.trim()),
            _ => Ok(IntPath::best()),
        }
    }

    /// Parses `name` and checks the CPU runs it.
    pub fn select(name: &str) -> Result<IntPath, KernelError> {
        let p: IntPath = name.parse()?;
        if !p.is_available() {
            return Err(KernelError::IsaUnavailable {
                requested: p.isa(),
                available: IntPath::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(p)
    }

    /// The process-wide path: `QAIC_KERNELS` read once (an unusable value falls back to the
    /// best path with a warning; binaries report the error through `Kernels::from_env`).
    pub fn current() -> IntPath {
        static CURRENT: OnceLock<IntPath> = OnceLock::new();
        *CURRENT.get_or_init(|| match IntPath::from_env() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("{e}; integer kernels use {}", IntPath::best());
                IntPath::best()
            }
        })
    }

    /// Whether the path multiplies u8 x i8 quadruples (VNNI).
    pub(crate) fn has_vnni(self) -> bool {
        matches!(self, IntPath::AvxVnni | IntPath::Avx512Vnni)
    }
}

impl fmt::Display for IntPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IntPath {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<IntPath, KernelError> {
        IntPath::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownIsa(s.to_string()))
    }
}
