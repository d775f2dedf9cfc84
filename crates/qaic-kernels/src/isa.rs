//! Instruction-set selection: what the CPU can run and what the user asked for.

use std::fmt;
use std::str::FromStr;

use crate::KernelError;

/// Environment variable that forces one kernel implementation (`scalar`, `avx2`, `avxvnni`,
/// `avx512` or `avx512vnni`; the VNNI names differ from their family only in the integer kernels).
pub const ENV_VAR: &str = "QAIC_KERNELS";

/// A family of kernel implementations. Every kernel has a portable `Scalar` version; the
/// others are faster versions of the same frame, compiled for a CPU feature set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust, no CPU feature assumed beyond the target baseline.
    Scalar,
    /// x86-64 AVX2 + FMA (Haswell and later).
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/DQ (+ AVX2 + FMA), 16 f32 lanes.
    Avx512,
}

impl Isa {
    /// Every ISA this build knows, from slowest to fastest.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// Lower-case name, as accepted by `QAIC_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the implementation.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The ISAs this CPU can run, slowest first (always starts with `Scalar`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest ISA this CPU can run.
    pub fn best() -> Isa {
        Isa::ALL.into_iter().rev().find(|i| i.is_available()).unwrap_or(Isa::Scalar)
    }

    /// The ISA named by `QAIC_KERNELS`, or the best available one when it is unset or empty.
    /// Errors when the value is unknown or names an ISA this CPU lacks.
    pub fn from_env() -> Result<Isa, KernelError> {
        match std::env::var(ENV_VAR) {
            Ok(v) if !v.trim().is_empty() => Isa::select(v.trim()),
            _ => Ok(Isa::best()),
        }
    }

    /// Parses `name` and checks the CPU supports it.
    /// The integer-kernel names `avxvnni` / `avx512vnni` ([`crate::quant::IntPath`]) select
    /// their f32 family (`avx2` / `avx512`) after checking the CPU has VNNI.
    pub fn select(name: &str) -> Result<Isa, KernelError> {
        if let Ok(p) = name.parse::<crate::quant::IntPath>() {
            return crate::quant::IntPath::select(name).map(|_| p.isa());
        }
        let isa: Isa = name.parse()?;
        if !isa.is_available() {
            return Err(KernelError::IsaUnavailable {
                requested: isa,
                available: Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
            });
        }
        Ok(isa)
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Isa, KernelError> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| KernelError::UnknownIsa(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_round_trip_and_scalar_always_available() {
        for i in Isa::ALL {
            assert_eq!(i.name().parse::<Isa>().unwrap(), i);
        }
        assert!(Isa::available().contains(&Isa::Scalar));
        assert!(matches!("neon".parse::<Isa>(), Err(KernelError::UnknownIsa(_))));
        assert!(Isa::select(Isa::best().name()).is_ok());
    }
}
