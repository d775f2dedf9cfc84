//! # qaic-qpc — the QPC container (`programqpc.bin`) of the Qualcomm Cloud AI 100
//!
//! **What it is for.** Reading, writing, validating and checksumming QPCs — the container the
//! compiler (`qaic-exec`) produces and the runtime consumes — ours or the vendor's, plus the
//! two descriptors stored in it: the `networkdesc.bin` protobuf ([`NetworkDescriptor`]) and the
//! 24-byte `constantsdesc.bin` ([`ConstantsDescriptor`]).
//!
//! **Depends on** third-party crates only (memmap2, prost, serde, crc32fast, thiserror, tracing,
//! tempfile, libc). **Must never** depend on another qaic-rs crate or on a CLI crate: third
//! parties use it alone.
//!
//! ## Format in one paragraph
//! A 40-byte header (magic `0x00A1CD7C`, version 0.1, compression 1, `size`, `base`,
//! `numImages`, `images`), a table of 32-byte entries (`size`, `offset`, `name`, `start`), the
//! NUL-terminated names, then the data blobs. Every pointer `p` maps to container offset
//! `p - base`. Two layouts exist: F (base 0, packed; what [`QpcWriter`] writes) and M (8-byte
//! aligned, absolute addresses; [`Layout::Aligned`]). The reader accepts both and any order.
//!
//! ## Example
//! ```
//! use qaic_qpc::{validate, ConstantsDescriptor, Qpc, QpcWriter};
//! let bytes = QpcWriter::new()
//!     .add_bytes("network.elf", b"\x7fELF".to_vec())
//!     .add_bytes("networkdesc.bin", vec![0x08, 0x09, 0x38, 0x01]) // major 9, num_cores 1
//!     .add_bytes("constantsdesc.bin", ConstantsDescriptor::default().to_bytes().to_vec())
//!     .to_vec()?;
//! let qpc = Qpc::from_bytes(&bytes)?;
//! assert_eq!(qpc.network_descriptor()?.unwrap().num_cores, 1);
//! assert!(validate(&qpc).is_ok());
//! # Ok::<(), qaic_qpc::QpcError>(())
//! ```
//!
//! The byte-exact specification is in the project's facts sheets (`qpc-format.md`,
//! `networkdesc.md`); the crate README and `docs/qpc.md` summarise what this crate does.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod constants;
mod copy;
pub mod crc;
mod elf;
mod error;
mod format;
pub mod networkdesc;
mod reader;
mod validate;
mod writer;

pub use constants::{CONSTANTS_DESC_LEN, ConstantsDescriptor};
pub use crc::{CrcTarget, add_crc32, add_crc32_file, compute_crc, crc_segments, crc_target, crc32, repack, stored_crc};
pub use elf::{ElfSection, elf_section, elf_sections};
pub use error::{QpcError, Result};
pub use format::{
    COMPRESSION_FASTPATH, COMPRESSION_SLOWPATH, ENTRY_LEN, HEADER_LEN, Header, MAGIC, MAJOR_VERSION, MINOR_VERSION,
    RawEntry,
};
pub use networkdesc::{
    CrcAlgorithm, DataType, Direction, DmaBuffer, IoBinding, IoDescriptor, IoShapes, NetworkDescLayout,
    NetworkDescriptor, TensorShape, Transform, TransformKind, tensor_bytes,
};
pub use reader::{MAX_NAME_LEN, Qpc, ReadOptions, Segment};
pub use validate::{CrcCheck, Finding, IoSummary, Report, Severity, validate};
pub use writer::{Layout, Order, QpcWriter};

/// `network.elf`: the network binary.
pub const NETWORK_ELF: &str = "network.elf";
/// `networkdesc.bin`: the serialized [`NetworkDescriptor`].
pub const NETWORK_DESC: &str = "networkdesc.bin";
/// `constants.bin`: compile-time constants, static part then dynamic part.
pub const CONSTANTS: &str = "constants.bin";
/// `constantsdesc.bin`: the 24-byte [`ConstantsDescriptor`].
pub const CONSTANTS_DESC: &str = "constantsdesc.bin";
/// `network.bin`: the segment `qaic-qpc create -b` writes (name not public; opaque blob).
pub const NETWORK_BIN: &str = "network.bin";
/// `mdp_meta_info`: multi-device partition information (opaque).
pub const MDP_META_INFO: &str = "mdp_meta_info";
