//! Shared fixtures: the worked examples of the facts sheet (qpc-format.md §10).
#![allow(dead_code)]

use qaic_qpc::{Layout, QpcWriter};
use sha2::{Digest, Sha256};

/// networkdesc.md §7: the 94-byte "tiny" descriptor.
pub const TINY_DESC: [u8; 94] = [
    0x08, 0x09, 0x1a, 0x04, 0x74, 0x69, 0x6e, 0x79, 0x22, 0x20, 0x0a, 0x01, 0x78, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04,
    0x1a, 0x04, 0x22, 0x02, 0x01, 0x04, 0x22, 0x0d, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04,
    0x4a, 0x00, 0x30, 0x04, 0x2a, 0x24, 0x0a, 0x01, 0x79, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04, 0x1a, 0x04, 0x22, 0x02,
    0x01, 0x04, 0x22, 0x11, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04, 0x4a, 0x04, 0x08, 0x01,
    0x18, 0x01, 0x30, 0x04, 0x32, 0x02, 0x08, 0x10, 0x32, 0x04, 0x08, 0x10, 0x10, 0x01, 0x38, 0x01, 0x70, 0x01,
];

/// The placeholder network.elf: an ELF32-LE identification block.
pub const ELF: [u8; 16] = [0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];

pub const SHA_F: &str = "2dd5f8c6ba5a956531386e3873b675d8a10ea44dfa4e31086753c47f0846fab0";
pub const SHA_M: &str = "24ff57dda5d86b62ebc2cda5038fe8f133a84cd278601940bbe34bf37f24b2bd";
pub const SHA_CRC: &str = "7d9914613d5432750c83a5b67b92bcb824dc225692b7b7767fa3504aafbeada7";
pub const BASE_M: u64 = 0x0000_7F00_0000_1000;

pub fn segments() -> Vec<(&'static str, Vec<u8>)> {
    vec![("constantsdesc.bin", vec![0; 24]), ("network.elf", ELF.to_vec()), ("networkdesc.bin", TINY_DESC.to_vec())]
}

/// The example segments, added in an order different from the sorted one.
pub fn writer() -> QpcWriter {
    let mut w = QpcWriter::new();
    for (n, d) in segments().into_iter().rev() {
        w.add_bytes(n, d);
    }
    w
}

pub fn layout_f() -> Vec<u8> {
    writer().to_vec().unwrap()
}

pub fn layout_m() -> Vec<u8> {
    writer().layout(Layout::Aligned { base: BASE_M }).to_vec().unwrap()
}

pub fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
