//! Property tests: random segment sets survive write → read in every layout and order, from
//! memory and from files; empty and huge sparse segments.

mod common;
use common::*;
use proptest::prelude::*;
use qaic_qpc::{ConstantsDescriptor, Layout, Order, Qpc, QpcWriter, validate};

fn segment_set() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    proptest::collection::btree_map("[a-zA-Z0-9_./-]{1,24}", proptest::collection::vec(any::<u8>(), 0..300), 1..8)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip(segs in segment_set(), aligned in any::<bool>(), sorted in any::<bool>(), base in any::<u32>()) {
        let mut w = QpcWriter::new();
        for (n, d) in &segs {
            w.add_bytes(n.clone(), d.clone());
        }
        let layout = if aligned { Layout::Aligned { base: base as u64 * 8 } } else { Layout::Packed };
        w.layout(layout).order(if sorted { Order::Sorted } else { Order::Insertion });
        let bytes = w.to_vec().unwrap();
        let q = Qpc::from_bytes(&bytes).unwrap();
        prop_assert_eq!(q.segments().len(), segs.len());
        for (n, d) in &segs {
            prop_assert_eq!(q.segment(n), Some(&d[..]));
        }
        let names: Vec<&str> = q.segments().iter().map(|s| s.name()).collect();
        let mut expect: Vec<&str> = segs.iter().map(|(n, _)| n.as_str()).collect();
        if sorted { expect.sort(); }
        prop_assert_eq!(names, expect);
        // Deterministic; canonical repack of any layout gives the Layout F bytes.
        prop_assert_eq!(&w.to_vec().unwrap(), &bytes);
        let mut canon = QpcWriter::new();
        for (n, d) in &segs { canon.add_bytes(n.clone(), d.clone()); }
        prop_assert_eq!(qaic_qpc::repack(&q, |_| true).order(Order::Sorted).layout(Layout::Packed).to_vec().unwrap(), canon.to_vec().unwrap());
        // Every truncation rejected, never a panic.
        for n in (0..bytes.len()).step_by(7) {
            prop_assert!(Qpc::from_bytes(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn constants_split_round_trip(len in 0usize..200, split in 0usize..200) {
        let split = split.min(len);
        let desc = ConstantsDescriptor { static_size: split as u64, dynamic_size: (len - split) as u64, ..Default::default() };
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let bytes = QpcWriter::new()
            .add_bytes("network.elf", ELF.to_vec())
            .add_bytes("networkdesc.bin", TINY_DESC.to_vec())
            .add_bytes("constants.bin", data.clone())
            .add_bytes("constantsdesc.bin", desc.to_bytes().to_vec())
            .to_vec().unwrap();
        let q = Qpc::from_bytes(&bytes).unwrap();
        let (s, d) = q.constants().unwrap();
        prop_assert_eq!(s, &data[..split]);
        prop_assert_eq!(d, &data[split..]);
        prop_assert_eq!(q.constants_descriptor().unwrap(), Some(desc));
        prop_assert!(validate(&q).is_ok(), "{:?}", validate(&q).findings);
    }
}

#[test]
fn file_write_equals_memory_write_and_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let elf = dir.path().join("elf");
    std::fs::write(&elf, ELF).unwrap();
    let out = dir.path().join("programqpc.bin");
    let mut w = QpcWriter::new();
    w.add_file("network.elf", &elf).add_bytes("networkdesc.bin", TINY_DESC.to_vec()).add_bytes("constantsdesc.bin", vec![0; 24]);
    w.write(&out).unwrap();
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), SHA_F);
    assert_eq!(Qpc::open(&out).unwrap().segment("network.elf"), Some(&ELF[..]));
    // A failing write leaves the old file untouched and no temporary behind.
    w.add_file("missing", dir.path().join("nope"));
    assert!(w.write(&out).is_err());
    assert_eq!(sha256(&std::fs::read(&out).unwrap()), SHA_F);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn empty_segments() {
    let bytes = QpcWriter::new().add_bytes("a", vec![]).add_bytes("b", vec![]).add_bytes("c", vec![5]).to_vec().unwrap();
    let q = Qpc::from_bytes(&bytes).unwrap();
    assert_eq!(q.segment("a"), Some(&[][..]));
    assert_eq!(q.segment("b"), Some(&[][..]));
    assert_eq!(q.segment("c"), Some(&[5][..]));
    let m = QpcWriter::new().add_bytes("a", vec![]).layout(Layout::Aligned { base: 64 }).to_vec().unwrap();
    assert_eq!(Qpc::from_bytes(&m).unwrap().segment("a"), Some(&[][..]));
}

/// A 5 GiB sparse constants file (sizes beyond u32) streams through the writer without being
/// loaded, keeps its holes, and reads back.
#[test]
fn huge_sparse_segment() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("constants.bin");
    let len: u64 = 5 << 30;
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", len - 4).unwrap();
    drop(f);
    let desc = ConstantsDescriptor { static_size: 1 << 32, dynamic_size: len - (1 << 32), ..Default::default() };
    let out = dir.path().join("programqpc.bin");
    let total = QpcWriter::new()
        .add_file("constants.bin", &big)
        .add_bytes("constantsdesc.bin", desc.to_bytes().to_vec())
        .add_bytes("network.elf", ELF.to_vec())
        .add_bytes("networkdesc.bin", TINY_DESC.to_vec())
        .write(&out)
        .unwrap();
    let md = std::fs::metadata(&out).unwrap();
    assert_eq!(md.len(), total);
    use std::os::unix::fs::MetadataExt;
    assert!(md.blocks() * 512 < 64 << 20, "holes not preserved: {} blocks", md.blocks());
    let q = Qpc::open(&out).unwrap();
    let seg = q.segment_info("constants.bin").unwrap();
    assert_eq!((seg.len(), seg.static_size()), (len, 1 << 32));
    let data = q.segment("constants.bin").unwrap();
    assert_eq!(&data[..4], b"head");
    assert_eq!(&data[data.len() - 4..], b"tail");
    assert_eq!(data[3 << 30], 0);
    let (s, d) = q.constants().unwrap();
    assert_eq!((s.len() as u64, d.len() as u64), (1 << 32, len - (1 << 32)));
}
