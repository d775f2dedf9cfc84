//! `constantsdesc.bin`: the 24-byte `AICConstantDescriptor` (facts: networkdesc.md §8).

use crate::error::{QpcError, Result};
use crate::format::u64_at;

/// Size of `constantsdesc.bin` in bytes.
pub const CONSTANTS_DESC_LEN: usize = 24;

/// The constants descriptor: how `constants.bin` splits into static and dynamic parts.
///
/// On disk (little-endian): `u64 staticConstantsSize`, `u64 dynamicConstantsSize`,
/// `u8 staticConstantsECCEnabled`, `u8 dynamicConstantsECCEnabled`, 6 zero bytes.
///
/// ```
/// use qaic_qpc::ConstantsDescriptor;
/// let d = ConstantsDescriptor { static_size: 0x1000, dynamic_size: 0x200, static_ecc: true, ..Default::default() };
/// let bytes = d.to_bytes();
/// assert_eq!(bytes[..2], [0x00, 0x10]);
/// assert_eq!(bytes[16], 1);
/// assert_eq!(ConstantsDescriptor::parse(&bytes)?, d);
/// assert_eq!(d.total(), Some(0x1200));
/// # Ok::<(), qaic_qpc::QpcError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConstantsDescriptor {
    /// `staticConstantsSize`: bytes of static constants at the start of `constants.bin`.
    pub static_size: u64,
    /// `dynamicConstantsSize`: bytes of dynamic constants after the static ones.
    pub dynamic_size: u64,
    /// `staticConstantsECCEnabled`.
    pub static_ecc: bool,
    /// `dynamicConstantsECCEnabled`.
    pub dynamic_ecc: bool,
}

impl ConstantsDescriptor {
    /// Decodes the 24 bytes of `constantsdesc.bin`.
    ///
    /// Errors if the length is not 24 or an ECC flag is neither 0 nor 1. Non-zero padding is
    /// accepted here (reported as a warning by [`crate::validate()`]).
    pub fn parse(bytes: &[u8]) -> Result<ConstantsDescriptor> {
        if bytes.len() != CONSTANTS_DESC_LEN {
            return Err(QpcError::ConstantsDescriptor(format!(
                "length is {} bytes, an AICConstantDescriptor is {CONSTANTS_DESC_LEN}",
                bytes.len()
            )));
        }
        let flag = |at: usize, field: &str| match bytes[at] {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(QpcError::ConstantsDescriptor(format!("{field} = {v}, expected 0 or 1"))),
        };
        Ok(ConstantsDescriptor {
            static_size: u64_at(bytes, 0),
            dynamic_size: u64_at(bytes, 8),
            static_ecc: flag(16, "staticConstantsECCEnabled")?,
            dynamic_ecc: flag(17, "dynamicConstantsECCEnabled")?,
        })
    }

    /// Encodes the descriptor as its 24 on-disk bytes (padding zero).
    pub fn to_bytes(&self) -> [u8; CONSTANTS_DESC_LEN] {
        let mut b = [0u8; CONSTANTS_DESC_LEN];
        b[0..8].copy_from_slice(&self.static_size.to_le_bytes());
        b[8..16].copy_from_slice(&self.dynamic_size.to_le_bytes());
        b[16] = self.static_ecc as u8;
        b[17] = self.dynamic_ecc as u8;
        b
    }

    /// Static + dynamic size (the expected `constants.bin` length); `None` on overflow.
    pub fn total(&self) -> Option<u64> {
        self.static_size.checked_add(self.dynamic_size)
    }

    /// A descriptor for `len` bytes of constants, all static (what the vendor compiler writes).
    ///
    /// ```
    /// let d = qaic_qpc::ConstantsDescriptor::all_static(64);
    /// assert_eq!((d.static_size, d.dynamic_size), (64, 0));
    /// ```
    pub fn all_static(len: u64) -> ConstantsDescriptor {
        ConstantsDescriptor { static_size: len, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_sheet_example() {
        let bytes = [0, 0x10, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let d = ConstantsDescriptor::parse(&bytes).unwrap();
        assert_eq!(d, ConstantsDescriptor { static_size: 0x1000, dynamic_size: 0x200, static_ecc: true, dynamic_ecc: false });
        assert_eq!(d.to_bytes(), bytes);
    }

    #[test]
    fn rejects_bad_length_and_flags() {
        assert!(ConstantsDescriptor::parse(&[0; 23]).is_err());
        let mut b = [0u8; 24];
        b[17] = 2;
        let e = ConstantsDescriptor::parse(&b).unwrap_err().to_string();
        assert!(e.contains("dynamicConstantsECCEnabled = 2"), "{e}");
    }
}
