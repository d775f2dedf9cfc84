//! Corrupt input never panics: every truncation is rejected, structural bit flips are rejected,
//! flips in CRC-covered bytes are caught by validation; typed errors name the field.

mod common;
use common::*;
use qaic_qpc::{Qpc, QpcError, add_crc32, validate};

fn with_crc() -> Vec<u8> {
    add_crc32(&Qpc::from_bytes(&layout_f()).unwrap()).unwrap().to_vec().unwrap()
}

#[test]
fn every_truncation_is_rejected() {
    for file in [layout_f(), layout_m(), with_crc()] {
        for n in 0..file.len() {
            assert!(Qpc::from_bytes(&file[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        // Extra trailing bytes are rejected as well (hdr.size mismatch).
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(Qpc::from_bytes(&longer), Err(QpcError::SizeMismatch { .. })));
    }
}

/// Flips every bit of the header and the table (except the minor version, which any value may
/// take) and checks the reader rejects the result. In Layout M a segment may grow into its own
/// zero padding undetected (that file is valid too), so its size fields are left out there.
#[test]
fn structural_bit_flips_are_rejected() {
    for (file, skip_sizes) in [(layout_f(), false), (with_crc(), false), (layout_m(), true)] {
        let q = Qpc::from_bytes(&file).unwrap();
        let table_end = 40 + 32 * q.segments().len();
        let is_size = |b: usize| b >= 40 && (b - 40) % 32 < 8;
        for byte in (0..table_end).filter(|&b| b != 5 && !(skip_sizes && is_size(b))) {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[byte] ^= 1 << bit;
                assert!(Qpc::from_bytes(&bad).is_err(), "flip of byte {byte:#x} bit {bit} accepted");
            }
        }
    }
}

/// Every bit flip anywhere: never a panic; whatever the reader accepts, validate() must either
/// flag or be unaffected in CRC-covered data.
#[test]
fn any_bit_flip_never_panics_and_crc_catches_data_flips() {
    let file = with_crc();
    let q = Qpc::from_bytes(&file).unwrap();
    let elf = q.segment_info("network.elf").unwrap().data_range();
    let crc = q.segment_info("network.elf.crc").unwrap().data_range();
    for byte in 0..file.len() {
        for bit in 0..8 {
            let mut bad = file.clone();
            bad[byte] ^= 1 << bit;
            let Ok(q) = Qpc::from_bytes(&bad) else { continue };
            let report = validate(&q);
            let b = byte as u64;
            if elf.contains(&b) || crc.contains(&b) {
                assert!(!report.is_ok(), "flip of CRC-covered byte {byte:#x} bit {bit} not caught");
            }
        }
    }
}

#[test]
fn sampled_flips_of_a_big_file_never_panic() {
    // A container with more structure: constants, descriptor, ELF with sections, CRCs.
    let mut w = qaic_qpc::QpcWriter::new();
    let consts: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let desc = qaic_qpc::ConstantsDescriptor { static_size: 1000, dynamic_size: 3096, ..Default::default() };
    w.add_bytes("constants.bin", consts).add_bytes("constantsdesc.bin", desc.to_bytes().to_vec());
    w.add_bytes("network.elf", ELF.to_vec()).add_bytes("networkdesc.bin", TINY_DESC.to_vec());
    let base = w.to_vec().unwrap();
    let file = add_crc32(&Qpc::from_bytes(&base).unwrap()).unwrap().to_vec().unwrap();
    assert!(validate(&Qpc::from_bytes(&file).unwrap()).is_ok());
    let consts_range = Qpc::from_bytes(&file).unwrap().segment_info("constants.bin").unwrap().data_range();
    let mut state = 0x2545F4914F6CDD1Du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let byte = (state % file.len() as u64) as usize;
        let mut bad = file.clone();
        bad[byte] ^= 1 << (state >> 60 & 7);
        if let Ok(q) = Qpc::from_bytes(&bad) {
            let r = validate(&q);
            if consts_range.contains(&(byte as u64)) {
                assert!(!r.is_ok(), "constants flip at {byte} not caught");
            }
        }
    }
}

fn patch(file: &mut [u8], at: usize, v: u64) {
    file[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn typed_errors_name_field_and_values() {
    let f = layout_f();
    let mut b = f.clone();
    b[0] = 0;
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::BadMagic { found: 0x00A1CD00, .. })));
    let mut b = f.clone();
    b[4] = 1;
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::UnsupportedVersion { found: 1, .. })));
    let mut b = f.clone();
    b[6] = 0;
    let e = Qpc::from_bytes(&b).unwrap_err();
    assert!(e.to_string().contains("FASTPATH"), "{e}");
    let mut b = f.clone();
    patch(&mut b, 8, 999);
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::SizeMismatch { header: 999, actual: 316 })));
    // entry 1 (network.elf) data pointing at entry 0's data: overlap.
    let mut b = f.clone();
    patch(&mut b, 0x60, 0xB6);
    let e = Qpc::from_bytes(&b).unwrap_err();
    assert!(matches!(e, QpcError::Overlap { .. }), "{e}");
    assert!(e.to_string().contains("constantsdesc.bin"), "{e}");
    // entry 2 data beyond the end.
    let mut b = f.clone();
    patch(&mut b, 0x68, 95);
    let e = Qpc::from_bytes(&b).unwrap_err();
    assert!(matches!(&e, QpcError::OutOfBounds { field, .. } if field.contains("networkdesc.bin")), "{e}");
    // duplicate name: rename "networkdesc.bin" -> "network.elf\0..." by moving its name pointer.
    let mut b = f.clone();
    patch(&mut b, 0x78, 0x9A);
    let e = Qpc::from_bytes(&b).unwrap_err();
    assert!(matches!(e, QpcError::DuplicateName { .. } | QpcError::Overlap { .. }), "{e}");
    // duplicate names with distinct storage: lenient reading still rejects duplicates.
    let mut b = f.clone();
    b[0xA6 + 7] = b'.'; // "networkdesc.bin" -> "network.esc.bin" (not a duplicate) ...
    b[0xA6..0xA6 + 12].copy_from_slice(b"network.elf\0");
    let e = Qpc::from_bytes_with(&b, qaic_qpc::ReadOptions { allow_unreferenced_bytes: true }).unwrap_err();
    assert!(matches!(&e, QpcError::DuplicateName { name, first: 1, second: 2 } if name == "network.elf"), "{e}");
    // pointer below base
    let mut b = f.clone();
    patch(&mut b, 16, 0x1000);
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::PointerBelowBase { .. })));
    // non-zero offset outside constants.bin
    let mut b = f.clone();
    patch(&mut b, 0x50, 1);
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::UnexpectedOffset { .. })));
    // huge numImages: no overflow, no allocation
    let mut b = f.clone();
    patch(&mut b, 24, u64::MAX / 2);
    assert!(matches!(Qpc::from_bytes(&b), Err(QpcError::OutOfBounds { .. })));
    // unterminated name: last name's NUL removed and the data moved... simplest: point at the data end.
    let mut b = f.clone();
    b[0x13B] = 1;
    patch(&mut b, 0x78, 0x13B);
    assert!(Qpc::from_bytes(&b).is_err());
}

#[test]
fn writer_rejects_bad_segment_sets() {
    use qaic_qpc::{ConstantsDescriptor, QpcWriter};
    assert!(QpcWriter::new().to_vec().is_err());
    let e = QpcWriter::new().add_bytes("a", vec![]).add_bytes("a", vec![1]).to_vec().unwrap_err();
    assert!(matches!(e, QpcError::DuplicateName { first: 0, second: 1, .. }), "{e}");
    assert!(QpcWriter::new().add_bytes("", vec![]).to_vec().is_err());
    assert!(QpcWriter::new().add_bytes("a\0b", vec![]).to_vec().is_err());
    let desc = ConstantsDescriptor { static_size: 4, dynamic_size: 4, ..Default::default() };
    let e = QpcWriter::new()
        .add_bytes("constants.bin", vec![0; 9])
        .add_bytes("constantsdesc.bin", desc.to_bytes().to_vec())
        .to_vec()
        .unwrap_err();
    assert!(e.to_string().contains("!= constants.bin size 9"), "{e}");
    assert!(QpcWriter::new().add_bytes("x", vec![1]).static_size("x", 1).to_vec().is_err());
    assert!(QpcWriter::new().add_file("x", "/nonexistent/file").to_vec().is_err());
}

/// Found by the fuzzer: a `*.crc` segment whose target is absent survived addCRC32 stale, and
/// other `X.crc` segments were not refreshed.
#[test]
fn add_crc32_refreshes_every_crc_it_can() {
    let bytes = qaic_qpc::QpcWriter::new()
        .add_bytes("network.elf", ELF.to_vec())
        .add_bytes("x", b"payload".to_vec())
        .add_bytes("x.crc", vec![0; 4])
        .add_bytes("orphan.crc", vec![1, 2, 3, 4])
        .add_bytes("network.elf.crc", vec![9; 4])
        .to_vec()
        .unwrap();
    let out = add_crc32(&Qpc::from_bytes(&bytes).unwrap()).unwrap().to_vec().unwrap();
    let q = Qpc::from_bytes(&out).unwrap();
    assert_eq!(q.segment("x.crc"), Some(&qaic_qpc::crc32(b"payload").to_le_bytes()[..]));
    assert_eq!(q.segment("orphan.crc"), Some(&[1u8, 2, 3, 4][..]));
    assert_eq!(q.segments().last().unwrap().name(), "network.elf.crc");
    let r = validate(&q);
    let errors: Vec<_> = r.findings.iter().filter(|f| f.check == "crc").map(|f| f.message.clone()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("orphan.crc"), "{errors:?}");
}
