//! Multi-versioning: one generic body compiled per ISA.
//!
//! A kernel body is written once as `#[inline(always)] fn body<const FMA: bool>(..)`;
//! [`multiversion!`] generates a dispatcher `fn name(isa, ..)` plus `#[target_feature]`
//! wrappers so the same loops auto-vectorise for AVX2 and AVX-512.

/// Generates `vis fn $name(isa: Isa, args..) -> R` calling `$body::<FMA>` under the ISA's
/// target features.
///
/// Callers must pass the ISA of a [`crate::Kernels`] value (which exists only for ISAs the CPU
/// supports): that is what makes the `unsafe` calls sound.
macro_rules! multiversion {
    ($vis:vis fn $name:ident $(<$($g:ident : $gb:path),*>)? ($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? => $body:ident) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$($g: $gb),*>)? (isa: $crate::Isa, $($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2 $(<$($g: $gb),*>)? ($($a: $t),*) $(-> $r)? { $body::<true $($(, $g)*)?>($($a),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512 $(<$($g: $gb),*>)? ($($a: $t),*) $(-> $r)? { $body::<true $($(, $g)*)?>($($a),*) }
            match isa {
                // SAFETY: a Kernels value for an ISA exists only when the CPU supports it.
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx2 => unsafe { avx2($($a),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::Isa::Avx512 => unsafe { avx512($($a),*) },
                _ => $body::<false $($(, $g)*)?>($($a),*),
            }
        }
    };
}
pub(crate) use multiversion;
