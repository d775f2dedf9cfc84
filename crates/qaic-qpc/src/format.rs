//! On-disk constants and the fixed-size header and table-entry records (facts: qpc-format.md §2–§3).

/// `AICQPC_MAGIC_NUMBER`: the first four bytes of every QPC are `7C CD A1 00`.
pub const MAGIC: u32 = 0x00A1_CD7C;
/// `AICQPC_MAJOR_VERSION`, the only major version this crate reads or writes.
pub const MAJOR_VERSION: u8 = 0;
/// `AICQPC_MINOR_VERSION`, written by this crate (any minor version is read).
pub const MINOR_VERSION: u8 = 1;
/// `CompressionType::FASTPATH`: header and table only, pointers into a foreign process. Never valid in a file.
pub const COMPRESSION_FASTPATH: u16 = 0;
/// `CompressionType::SLOWPATH`: names and data inside the container (every file uses this).
pub const COMPRESSION_SLOWPATH: u16 = 1;
/// Size of the `QAicQpc` header record in bytes.
pub const HEADER_LEN: usize = 40;
/// Size of one `QpcSegment` table entry in bytes.
pub const ENTRY_LEN: usize = 32;

/// The 40-byte `QAicQpc` header (little-endian on disk).
///
/// ```
/// use qaic_qpc::Header;
/// let h = Header { size: 316, num_images: 3, images: 40, ..Header::default() };
/// let bytes = h.to_bytes();
/// assert_eq!(&bytes[..4], &[0x7c, 0xcd, 0xa1, 0x00]);
/// assert_eq!(Header::parse(&bytes), Some(h));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Header {
    /// `hdr.magicNumber` (0x00A1CD7C in a valid file).
    pub magic: u32,
    /// `hdr.majorVersion`.
    pub major_version: u8,
    /// `hdr.minorVersion`.
    pub minor_version: u8,
    /// `hdr.compressionType` (1 = SLOWPATH).
    pub compression: u16,
    /// `hdr.size`: total container length.
    pub size: u64,
    /// `hdr.base`: the pointer value that corresponds to container offset 0.
    pub base: u64,
    /// `numImages`: number of segments.
    pub num_images: u64,
    /// `images`: pointer to the segment table.
    pub images: u64,
}

impl Default for Header {
    /// A SLOWPATH version-0.1 header with every other field zero.
    fn default() -> Self {
        Header {
            magic: MAGIC,
            major_version: MAJOR_VERSION,
            minor_version: MINOR_VERSION,
            compression: COMPRESSION_SLOWPATH,
            size: 0,
            base: 0,
            num_images: 0,
            images: 0,
        }
    }
}

impl Header {
    /// Decodes the first 40 bytes of `bytes`; `None` if there are fewer. No field is checked.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let b = bytes.get(..HEADER_LEN)?;
        Some(Header {
            magic: u32_at(b, 0),
            major_version: b[4],
            minor_version: b[5],
            compression: u16::from_le_bytes([b[6], b[7]]),
            size: u64_at(b, 8),
            base: u64_at(b, 16),
            num_images: u64_at(b, 24),
            images: u64_at(b, 32),
        })
    }

    /// Encodes the header as its 40 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4] = self.major_version;
        b[5] = self.minor_version;
        b[6..8].copy_from_slice(&self.compression.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..24].copy_from_slice(&self.base.to_le_bytes());
        b[24..32].copy_from_slice(&self.num_images.to_le_bytes());
        b[32..40].copy_from_slice(&self.images.to_le_bytes());
        b
    }
}

/// One 32-byte `QpcSegment` table entry, as stored (pointers not yet rebased).
///
/// ```
/// use qaic_qpc::RawEntry;
/// let e = RawEntry { size: 24, offset: 0, name: 0x88, start: 0xB6 };
/// assert_eq!(RawEntry::parse(&e.to_bytes()), Some(e));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawEntry {
    /// `size`: data length.
    pub size: u64,
    /// `offset`: static-constants size for `constants.bin`, 0 otherwise.
    pub offset: u64,
    /// `name`: pointer to the NUL-terminated name.
    pub name: u64,
    /// `start`: pointer to the first data byte.
    pub start: u64,
}

impl RawEntry {
    /// Decodes the first 32 bytes of `bytes`; `None` if there are fewer.
    pub fn parse(bytes: &[u8]) -> Option<RawEntry> {
        let b = bytes.get(..ENTRY_LEN)?;
        Some(RawEntry { size: u64_at(b, 0), offset: u64_at(b, 8), name: u64_at(b, 16), start: u64_at(b, 24) })
    }

    /// Encodes the entry as its 32 on-disk bytes.
    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..8].copy_from_slice(&self.size.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.name.to_le_bytes());
        b[24..32].copy_from_slice(&self.start.to_le_bytes());
        b
    }
}

// Callers pass slices of a checked length, so the conversions cannot fail.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
