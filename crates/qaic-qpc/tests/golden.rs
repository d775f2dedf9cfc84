//! The facts sheet's worked examples, byte for byte (qpc-format.md §10, networkdesc.md §7).

mod common;
use common::*;
use qaic_qpc::{Qpc, add_crc32, crc32, validate};

#[test]
fn layout_f_matches_the_sheet() {
    let f = layout_f();
    assert_eq!(f.len(), 316);
    assert_eq!(sha256(&f), SHA_F);
    // A few annotated fields, so a mismatch says where.
    assert_eq!(&f[..8], &[0x7c, 0xcd, 0xa1, 0x00, 0x00, 0x01, 0x01, 0x00]);
    assert_eq!(u64_at(&f, 8), 0x13C);
    assert_eq!(u64_at(&f, 32), 40);
    assert_eq!((u64_at(&f, 0x38), u64_at(&f, 0x40)), (0x88, 0xB6));
    assert_eq!((u64_at(&f, 0x58), u64_at(&f, 0x60)), (0x9A, 0xCE));
    assert_eq!((u64_at(&f, 0x78), u64_at(&f, 0x80)), (0xA6, 0xDE));
    assert_eq!(&f[0xDE..], &TINY_DESC[..]);
}

#[test]
fn layout_m_matches_the_sheet() {
    let m = layout_m();
    assert_eq!(m.len(), 328);
    assert_eq!(sha256(&m), SHA_M);
    assert_eq!(u64_at(&m, 16), BASE_M);
    assert_eq!(u64_at(&m, 32), BASE_M + 0x28);
}

#[test]
fn crc_values_match_the_sheet() {
    assert_eq!(crc32(b"123456789"), 0xCBF43926);
    assert_eq!(crc32(&[0; 24]), 0xA3C1CA20);
    assert_eq!(crc32(&ELF), 0x87868ABB);
    assert_eq!(crc32(&TINY_DESC), 0x77A36091);
    assert_eq!(crc32(&layout_f()), 0xDFB16835);
}

#[test]
fn both_layouts_read_back_to_the_same_segments() {
    let (f, m) = (layout_f(), layout_m());
    let (qf, qm) = (Qpc::from_bytes(&f).unwrap(), Qpc::from_bytes(&m).unwrap());
    for (name, data) in segments() {
        assert_eq!(qf.segment(name), Some(&data[..]), "{name} in layout F");
        assert_eq!(qm.segment(name), Some(&data[..]), "{name} in layout M");
    }
    let names = |q: &Qpc| q.segments().iter().map(|s| s.name().to_owned()).collect::<Vec<_>>();
    assert_eq!(names(&qf), names(&qm));
    assert_eq!(qm.header().base, BASE_M);
    // Re-packing the M file gives the canonical F bytes.
    assert_eq!(qaic_qpc::repack(&qm, |_| true).to_vec().unwrap(), f);
}

#[test]
fn reordered_segments_read_back() {
    // Layout F with the caller's (unsorted) order, as the vendor file writer allows.
    let mut w = writer();
    w.order(qaic_qpc::Order::Insertion);
    let bytes = w.to_vec().unwrap();
    let q = Qpc::from_bytes(&bytes).unwrap();
    assert_eq!(q.segments()[0].name(), "networkdesc.bin");
    assert_eq!(q.segment("network.elf"), Some(&ELF[..]));
}

#[test]
fn add_crc32_matches_the_sheet() {
    let f = layout_f();
    let out = add_crc32(&Qpc::from_bytes(&f).unwrap()).unwrap().to_vec().unwrap();
    assert_eq!(out.len(), 368);
    assert_eq!(sha256(&out), SHA_CRC);
    assert_eq!(&out[out.len() - 4..], &[0xbb, 0x8a, 0x86, 0x87]);
    let q = Qpc::from_bytes(&out).unwrap();
    let table: Vec<_> = q.segments().iter().map(|s| (s.len(), s.name_offset(), s.data_offset())).collect();
    assert_eq!(table, vec![(24, 0xA8, 0xE6), (16, 0xBA, 0xFE), (94, 0xC6, 0x10E), (4, 0xD6, 0x16C)]);
    // Idempotent: adding again replaces the CRC segment.
    let again = add_crc32(&q).unwrap().to_vec().unwrap();
    assert_eq!(again, out);
}

#[test]
fn the_example_validates() {
    let f = layout_f();
    let q = Qpc::from_bytes(&f).unwrap();
    let r = validate(&q);
    assert!(r.is_ok(), "{:?}", r.findings);
    assert_eq!(r.num_cores, Some(1));
    assert_eq!(r.network_name.as_deref(), Some("tiny"));
    assert_eq!(r.io.len(), 2);
    assert_eq!((r.io[0].name.as_str(), r.io[0].bytes, r.io[0].dma_buffer), ("x", Some(16), Some(0)));
    assert_eq!((r.io[1].name.as_str(), r.io[1].direction, r.io[1].dma_buffer), ("y", "output", Some(1)));
    let desc = q.network_descriptor().unwrap().unwrap();
    assert_eq!(desc.dma_buffers.len(), 2);
}

/// Writes the worked examples as fuzz seeds when `QPC_WRITE_SEEDS=<dir>` is set (used by the
/// fuzz smoke run; a no-op otherwise).
#[test]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("QPC_WRITE_SEEDS") else { return };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(dir.join("reader")).unwrap();
    std::fs::create_dir_all(dir.join("networkdesc")).unwrap();
    let crc = add_crc32(&Qpc::from_bytes(&layout_f()).unwrap()).unwrap().to_vec().unwrap();
    std::fs::write(dir.join("reader/layout_f"), layout_f()).unwrap();
    std::fs::write(dir.join("reader/layout_m"), layout_m()).unwrap();
    std::fs::write(dir.join("reader/with_crc"), crc).unwrap();
    std::fs::write(dir.join("networkdesc/tiny"), TINY_DESC).unwrap();
    std::fs::write(dir.join("networkdesc/constantsdesc"), [0u8; 24]).unwrap();
}
