//! End-to-end tests of the `qaic-qpc` command on the facts sheet's worked example.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qaic_qpc::{Qpc, QpcWriter};
use sha2::{Digest, Sha256};

const TINY_DESC: [u8; 94] = [
    0x08, 0x09, 0x1a, 0x04, 0x74, 0x69, 0x6e, 0x79, 0x22, 0x20, 0x0a, 0x01, 0x78, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04,
    0x1a, 0x04, 0x22, 0x02, 0x01, 0x04, 0x22, 0x0d, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04,
    0x4a, 0x00, 0x30, 0x04, 0x2a, 0x24, 0x0a, 0x01, 0x79, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04, 0x1a, 0x04, 0x22, 0x02,
    0x01, 0x04, 0x22, 0x11, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04, 0x4a, 0x04, 0x08, 0x01,
    0x18, 0x01, 0x30, 0x04, 0x32, 0x02, 0x08, 0x10, 0x32, 0x04, 0x08, 0x10, 0x10, 0x01, 0x38, 0x01, 0x70, 0x01,
];
const ELF: [u8; 16] = [0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const SHA_F: &str = "2dd5f8c6ba5a956531386e3873b675d8a10ea44dfa4e31086753c47f0846fab0";
const SHA_CRC: &str = "7d9914613d5432750c83a5b67b92bcb824dc225692b7b7767fa3504aafbeada7";

fn qpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qaic-qpc")).args(args).output().expect("run qaic-qpc")
}

fn sha(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The three example segments as files in `dir/in`.
fn inputs(dir: &Path) -> PathBuf {
    let d = dir.join("in");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("network.elf"), ELF).unwrap();
    std::fs::write(d.join("networkdesc.bin"), TINY_DESC).unwrap();
    std::fs::write(d.join("constantsdesc.bin"), [0u8; 24]).unwrap();
    d
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn create_from_files_and_from_dir_gives_the_sheets_bytes() {
    let t = tempfile::tempdir().unwrap();
    let d = inputs(t.path());
    let out = t.path().join("a.bin");
    let o = qpc(&["create", "-n", s(&d.join("network.elf")), "-d", s(&d.join("networkdesc.bin")), "-e",
        s(&d.join("constantsdesc.bin")), "-o", s(&out)]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(sha(&out), SHA_F);
    // Directory form: *.json ignored; re-packing into the input directory ignores the old output.
    std::fs::write(d.join("networkdesc.bin.json"), "{}").unwrap();
    let out2 = d.join("programqpc.bin");
    for _ in 0..2 {
        let o = qpc(&["create", "--input-dir", s(&d), "--output-file", s(&out2)]);
        assert!(o.status.success(), "{o:?}");
        assert_eq!(sha(&out2), SHA_F);
    }
}

#[test]
fn create_requires_network_elf() {
    let t = tempfile::tempdir().unwrap();
    let d = inputs(t.path());
    let o = qpc(&["create", "-d", s(&d.join("networkdesc.bin")), "-o", s(&t.path().join("x.bin"))]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("network.elf"));
    assert!(!t.path().join("x.bin").exists());
}

#[test]
fn add_crc32_gives_the_sheets_bytes_and_validates() {
    let t = tempfile::tempdir().unwrap();
    let d = inputs(t.path());
    let f = t.path().join("f.bin");
    assert!(qpc(&["create", "-i", s(&d), "-o", s(&f)]).status.success());
    let outdir = t.path().join("crc");
    // The vendor's spelling, with the trailing output name.
    let o = qpc(&["addCRC32", "--input-file", s(&f), "--output-dir", s(&outdir), "programqpc.bin"]);
    assert!(o.status.success(), "{o:?}");
    let out = outdir.join("programqpc.bin");
    assert_eq!(sha(&out), SHA_CRC);
    let o = qpc(&["validate", "-i", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = stdout(&o);
    assert!(text.contains("Number of NSP required: 1"), "{text}");
    assert!(text.contains("CRC network.elf.crc: stored 0x87868ABB, computed 0x87868ABB OK"), "{text}");
    assert!(text.contains("\"x\""), "{text}");
    // Corrupt one byte of network.elf: validate fails with exit code 1.
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[0xFE + 8] ^= 0x40;
    let bad = t.path().join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let o = qpc(&["validate", "-i", s(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("MISMATCH"));
    // Truncated: structural error, exit code 1; missing file: exit code 3; bad usage: 2.
    std::fs::write(&bad, &bytes[..100]).unwrap();
    let o = qpc(&["validate", "-i", s(&bad)]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("hdr.size"), "{}", stdout(&o));
    assert_eq!(qpc(&["validate", "-i", s(&t.path().join("missing"))]).status.code(), Some(3));
    assert_eq!(qpc(&["validate"]).status.code(), Some(2));
    assert_eq!(qpc(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn extract_writes_segments_json_and_honours_the_filter() {
    let t = tempfile::tempdir().unwrap();
    let d = inputs(t.path());
    let f = t.path().join("f.bin");
    assert!(qpc(&["create", "-i", s(&d), "-o", s(&f)]).status.success());
    let out = t.path().join("out");
    let o = qpc(&["extract", "--qpc", s(&f), "--output-dir", s(&out)]);
    assert!(o.status.success(), "{o:?}");
    for n in ["network.elf", "networkdesc.bin", "constantsdesc.bin"] {
        assert_eq!(std::fs::read(out.join(n)).unwrap(), std::fs::read(d.join(n)).unwrap(), "{n}");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("networkdesc.bin.json")).unwrap()).unwrap();
    assert_eq!(json["network_name"], "tiny");
    assert_eq!(json["num_cores"], 1);
    assert_eq!(json["inputs"][0]["name"], "x");
    let only = t.path().join("only");
    let o = qpc(&["extract", "-i", s(&f), "-o", s(&only), "-s", "*.elf"]);
    assert!(o.status.success(), "{o:?}");
    let names: Vec<_> = std::fs::read_dir(&only).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["network.elf"]);
}

#[test]
fn extract_refuses_names_leaving_the_directory_and_unpacks_nested_qpcs() {
    let t = tempfile::tempdir().unwrap();
    let inner = QpcWriter::new().add_bytes("network.elf", ELF.to_vec()).to_vec().unwrap();
    let f = t.path().join("nested.bin");
    QpcWriter::new().add_bytes("network.elf", ELF.to_vec()).add_bytes("sub/slice0", inner).write(&f).unwrap();
    let out = t.path().join("out");
    let o = qpc(&["extract", "-i", s(&f), "-o", s(&out)]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(std::fs::read(out.join("sub/slice0_dir/network.elf")).unwrap(), ELF);
    let evil = t.path().join("evil.bin");
    QpcWriter::new().add_bytes("../escaped", vec![1]).write(&evil).unwrap();
    let o = qpc(&["extract", "-i", s(&evil), "-o", s(&out)]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!t.path().join("escaped").exists());
}

#[test]
fn info_json_describes_the_container() {
    let t = tempfile::tempdir().unwrap();
    let d = inputs(t.path());
    let f = t.path().join("f.bin");
    assert!(qpc(&["create", "-i", s(&d), "-o", s(&f)]).status.success());
    let o = qpc(&["info", "-i", s(&f), "--json"]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["header"]["size"], 316);
    assert_eq!(v["segments"].as_array().unwrap().len(), 3);
    assert_eq!(v["networkdesc"]["dma_buffers"][1]["dir"], "Out");
    let o = qpc(&["info", "-i", s(&f)]);
    assert!(stdout(&o).contains("Number of NSP required: 1"));
    assert_eq!(Qpc::open(&f).unwrap().segments().len(), 3);
}
