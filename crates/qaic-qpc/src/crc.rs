//! CRC segments (facts: qpc-format.md §8.2, a PROPOSED scheme — the vendor's is not public).
//!
//! Algorithm: CRC-32/ISO-HDLC (zlib/Ethernet; check value `0xCBF43926`). Each CRC is its own
//! 4-byte segment holding the value as u32 little-endian, `offset` 0. What each covers:
//!
//! | segment | covers |
//! | --- | --- |
//! | `network.elf.crc` | the whole `network.elf` segment |
//! | `metadata.crc` | contents of ELF section `metadata` of `network.elf` |
//! | `metadata_fb.crc` | contents of ELF section `metadata_fb` of `network.elf` |
//! | `constants.bin.crc` | the whole `constants.bin` segment (static + dynamic) |
//! | any other `X.crc` | the whole segment `X` (checked by validation, never added) |

use std::path::Path;

use crate::elf::elf_section;
use crate::error::{QpcError, Result};
use crate::reader::Qpc;
use crate::writer::{Order, QpcWriter};
use crate::{CONSTANTS, NETWORK_ELF};

/// `network.elf.crc`.
pub const NETWORK_ELF_CRC: &str = "network.elf.crc";
/// `metadata.crc`.
pub const METADATA_CRC: &str = "metadata.crc";
/// `metadata_fb.crc`.
pub const METADATA_FB_CRC: &str = "metadata_fb.crc";
/// `constants.bin.crc`.
pub const CONSTANTS_CRC: &str = "constants.bin.crc";
/// The CRC segments [`add_crc32`] adds, in the order it appends them.
pub const CRC_SEGMENTS: [&str; 4] = [NETWORK_ELF_CRC, METADATA_CRC, METADATA_FB_CRC, CONSTANTS_CRC];

/// CRC-32/ISO-HDLC of `bytes`.
///
/// ```
/// assert_eq!(qaic_qpc::crc32(b"123456789"), 0xCBF43926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What a CRC segment covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrcTarget {
    /// A whole segment.
    Segment(String),
    /// An ELF section of `network.elf`.
    ElfSection(&'static str),
}

/// What the CRC segment `crc_segment` covers; `None` if the name does not end in `.crc`.
///
/// ```
/// use qaic_qpc::{crc_target, CrcTarget};
/// assert_eq!(crc_target("constants.bin.crc"), Some(CrcTarget::Segment("constants.bin".into())));
/// assert_eq!(crc_target("metadata.crc"), Some(CrcTarget::ElfSection("metadata")));
/// assert_eq!(crc_target("network.elf"), None);
/// ```
pub fn crc_target(crc_segment: &str) -> Option<CrcTarget> {
    match crc_segment {
        METADATA_CRC => Some(CrcTarget::ElfSection("metadata")),
        METADATA_FB_CRC => Some(CrcTarget::ElfSection("metadata_fb")),
        other => other.strip_suffix(".crc").filter(|s| !s.is_empty()).map(|s| CrcTarget::Segment(s.to_owned())),
    }
}

/// Computes the CRC that the segment `crc_segment` should hold; `Ok(None)` if what it covers is
/// absent (segment missing, or ELF section missing).
pub fn compute_crc(qpc: &Qpc<'_>, crc_segment: &str) -> Result<Option<u32>> {
    Ok(match crc_target(crc_segment) {
        None => return Err(QpcError::Write(format!("{crc_segment:?} is not a CRC segment name (must end in .crc)"))),
        Some(CrcTarget::Segment(name)) => qpc.segment_info(&name).map(|s| qpc.crc32(s)),
        Some(CrcTarget::ElfSection(section)) => {
            qpc.segment(NETWORK_ELF).and_then(|elf| elf_section(elf, section)).map(crc32)
        }
    })
}

/// The value stored in a CRC segment (first 4 bytes, little-endian); `None` unless exactly 4 bytes.
pub fn stored_crc(data: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(data).ok().map(u32::from_le_bytes)
}

/// The CRC segments [`add_crc32`] would add: (name, value) for each of [`CRC_SEGMENTS`] whose
/// target is present.
pub fn crc_segments(qpc: &Qpc<'_>) -> Result<Vec<(&'static str, u32)>> {
    let mut out = Vec::new();
    for name in CRC_SEGMENTS {
        if let Some(v) = compute_crc(qpc, name)? {
            out.push((name, v));
        }
    }
    Ok(out)
}

/// A writer holding `qpc`'s segments (table order kept, `offset` fields kept, data streamed
/// from the file when `qpc` was opened from one) with the CRC segments replaced by fresh ones,
/// appended in [`CRC_SEGMENTS`] order; any other `X.crc` segment is recomputed in place when `X`
/// exists. Applying it twice gives the same bytes.
///
/// ```
/// use qaic_qpc::{add_crc32, Qpc, QpcWriter};
/// let bytes = QpcWriter::new().add_bytes("network.elf", b"\x7fELF".to_vec()).to_vec()?;
/// let with_crc = add_crc32(&Qpc::from_bytes(&bytes)?)?.to_vec()?;
/// let qpc = Qpc::from_bytes(&with_crc)?;
/// assert_eq!(qpc.segment("network.elf.crc"), Some(&qaic_qpc::crc32(b"\x7fELF").to_le_bytes()[..]));
/// # Ok::<(), qaic_qpc::QpcError>(())
/// ```
pub fn add_crc32(qpc: &Qpc<'_>) -> Result<QpcWriter> {
    let crcs = crc_segments(qpc)?;
    let mut w = repack(qpc, |name| !CRC_SEGMENTS.contains(&name));
    // Other `X.crc` segments stay where they are, refreshed if `X` exists (kept as found
    // otherwise; validation reports them).
    for s in qpc.segments().iter().filter(|s| !CRC_SEGMENTS.contains(&s.name())) {
        if crc_target(s.name()).is_some()
            && let Some(v) = compute_crc(qpc, s.name())? {
                w.replace_bytes(s.name(), v.to_le_bytes().to_vec());
            }
    }
    for (name, v) in crcs {
        w.add_bytes(name, v.to_le_bytes().to_vec());
    }
    Ok(w)
}

/// A writer holding the segments of `qpc` accepted by `keep`, in table order, with their
/// `offset` fields; file-backed containers are streamed from their file, not copied to memory.
pub fn repack(qpc: &Qpc<'_>, keep: impl Fn(&str) -> bool) -> QpcWriter {
    let mut w = QpcWriter::new();
    w.order(Order::Insertion);
    for s in qpc.segments().iter().filter(|s| keep(s.name())) {
        match qpc.path() {
            Some(p) => w.add_file_range(s.name(), p, s.data_offset(), s.len()),
            None => w.add_bytes(s.name(), qpc.data(s).to_vec()),
        };
        if s.name() == CONSTANTS {
            w.static_size(CONSTANTS, s.static_size());
        }
    }
    w
}

/// Convenience: adds CRC segments to the QPC file `input` and writes the result to `output`
/// (which may be the same path). Returns the new length.
pub fn add_crc32_file(input: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<u64> {
    let qpc = Qpc::open(input)?;
    add_crc32(&qpc)?.write(output)
}
