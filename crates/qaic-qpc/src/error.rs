//! The error type of every fallible operation of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading, writing or checking a QPC.
///
/// Every variant names the field (or segment) concerned and the offending values, so that the
/// `Display` text alone tells a user what is wrong with which file.
///
/// ```
/// use qaic_qpc::{Qpc, QpcError};
/// let err = Qpc::from_bytes(b"not a qpc").unwrap_err();
/// assert!(matches!(err, QpcError::TooShort { .. }));
/// assert!(err.to_string().contains("40"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QpcError {
    /// An operating-system error on a file.
    #[error("{path}: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (shown in the message, so not repeated as a `source`).
        error: std::io::Error,
    },
    /// The buffer is shorter than the 40-byte header.
    #[error("container is {len} bytes long; a QPC needs at least {needed} bytes (header)")]
    TooShort {
        /// Actual length.
        len: u64,
        /// Minimum length.
        needed: u64,
    },
    /// The first four bytes are not the QPC magic number.
    #[error("bad magic number 0x{found:08X} (hdr.magicNumber), expected 0x{expected:08X}: not a QPC file")]
    BadMagic {
        /// Value found.
        found: u32,
        /// Value required (`0x00A1CD7C`).
        expected: u32,
    },
    /// `hdr.majorVersion` is not 0.
    #[error("unsupported QPC major version {found} (hdr.majorVersion), only {supported} is known")]
    UnsupportedVersion {
        /// Value found.
        found: u8,
        /// Supported value.
        supported: u8,
    },
    /// `hdr.compressionType` is FASTPATH (pointers into a foreign process) or unknown.
    #[error("hdr.compressionType = {found} ({}); only 1 (SLOWPATH) can be stored in a file", if *found == 0 { "FASTPATH" } else { "unknown" })]
    UnsupportedCompression {
        /// Value found.
        found: u16,
    },
    /// `hdr.size` differs from the length of the buffer or file.
    #[error("hdr.size = {header} but the container is {actual} bytes long (truncated or padded file)")]
    SizeMismatch {
        /// `hdr.size`.
        header: u64,
        /// Actual length.
        actual: u64,
    },
    /// `numImages` is 0 (a QPC holds at least one segment).
    #[error("numImages = 0: a QPC holds at least one segment")]
    NoSegments,
    /// A pointer field is smaller than `hdr.base`, so it maps to no container offset.
    #[error("{field} = 0x{pointer:X} is below hdr.base = 0x{base:X}")]
    PointerBelowBase {
        /// Field concerned, e.g. `images` or `segment[2].start`.
        field: String,
        /// Pointer value.
        pointer: u64,
        /// `hdr.base`.
        base: u64,
    },
    /// The segment table is not 8-byte aligned or starts inside the header.
    #[error("segment table at offset {offset} (images - base): must be 8-byte aligned and at or after offset 40")]
    BadTableOffset {
        /// Container offset of the table.
        offset: u64,
    },
    /// A region (table, name or data) extends beyond the container, or its end overflows.
    #[error("{field}: bytes [{offset}, {offset}+{len}) are outside the container of {container_len} bytes")]
    OutOfBounds {
        /// Field concerned.
        field: String,
        /// Container offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Container length.
        container_len: u64,
    },
    /// A segment name has no terminating NUL byte inside the container.
    #[error("segment[{index}].name at offset {offset}: no terminating NUL byte before the end of the container")]
    UnterminatedName {
        /// Table index.
        index: usize,
        /// Container offset of the name.
        offset: u64,
    },
    /// A segment name is empty, not UTF-8, or contains a NUL (writer side).
    #[error("segment[{index}] name {name:?}: {reason}")]
    InvalidName {
        /// Table index (or insertion index for the writer).
        index: usize,
        /// The name, lossily decoded.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The static-constants size of an entry exceeds the segment size.
    #[error("segment {name:?}: offset (static part) = {offset} is larger than its size {size}")]
    StaticPartTooLarge {
        /// Segment name.
        name: String,
        /// `offset` field.
        offset: u64,
        /// `size` field.
        size: u64,
    },
    /// A segment other than `constants.bin` has a non-zero `offset` field.
    #[error("segment {name:?}: offset = {offset}, but only constants.bin may have a static/dynamic split (offset must be 0)")]
    UnexpectedOffset {
        /// Segment name.
        name: String,
        /// `offset` field.
        offset: u64,
    },
    /// Two segments have the same name.
    #[error("duplicate segment name {name:?} (segments {first} and {second})")]
    DuplicateName {
        /// The name.
        name: String,
        /// First index.
        first: usize,
        /// Second index.
        second: usize,
    },
    /// Two regions of the container overlap.
    #[error("{first} [{first_start}, {first_end}) overlaps {second} [{second_start}, {second_end})")]
    Overlap {
        /// First region.
        first: String,
        /// Its start.
        first_start: u64,
        /// Its end.
        first_end: u64,
        /// Second region.
        second: String,
        /// Its start.
        second_start: u64,
        /// Its end.
        second_end: u64,
    },
    /// Bytes of the container belong to no region and are not alignment padding.
    #[error("bytes [{start}, {end}) belong to no header, table, name or segment and are not zero padding to an 8-byte boundary")]
    UnreferencedBytes {
        /// Start of the gap.
        start: u64,
        /// End of the gap.
        end: u64,
    },
    /// A `constantsdesc.bin` of the wrong length or otherwise unusable.
    #[error("constantsdesc.bin: {0}")]
    ConstantsDescriptor(String),
    /// `networkdesc.bin` does not parse.
    #[error("networkdesc.bin: protobuf decode error: {0}")]
    NetworkDescriptor(prost::DecodeError),
    /// The writer was asked for something it cannot produce.
    #[error("cannot write QPC: {0}")]
    Write(String),
    /// A segment needed by the operation is missing.
    #[error("segment {0:?} not found")]
    MissingSegment(String),
    /// A value does not fit in this platform's address space.
    #[error("{field} = {value} does not fit in this platform's address space")]
    TooLarge {
        /// Field concerned.
        field: String,
        /// Value.
        value: u64,
    },
}

impl QpcError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        QpcError::Io { path: path.into(), error: source }
    }
}

// Not `#[from]`: that would also make it the `source`, and error chains would print it twice.
impl From<prost::DecodeError> for QpcError {
    fn from(e: prost::DecodeError) -> Self {
        QpcError::NetworkDescriptor(e)
    }
}

/// Result alias of the crate.
pub type Result<T, E = QpcError> = std::result::Result<T, E>;
