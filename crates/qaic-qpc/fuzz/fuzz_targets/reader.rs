//! Container reader, validator and re-writer on arbitrary bytes: must never panic; whatever the
//! reader accepts must survive add_crc32 + re-read with the same segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qaic_qpc::{Qpc, ReadOptions, add_crc32, validate};

fuzz_target!(|data: &[u8]| {
    let _ = Qpc::from_bytes_with(data, ReadOptions { allow_unreferenced_bytes: true });
    let Ok(qpc) = Qpc::from_bytes(data) else { return };
    for s in qpc.segments() {
        let _ = qpc.crc32(s);
    }
    let _ = qpc.constants();
    let report = validate(&qpc);
    let _ = report.is_ok();
    let Ok(writer) = add_crc32(&qpc) else { return };
    let Ok(bytes) = writer.to_vec() else { return };
    let again = Qpc::from_bytes(&bytes).expect("our own output must read back");
    for s in qpc.segments().iter().filter(|s| !s.name().ends_with(".crc")) {
        assert_eq!(again.segment(s.name()), Some(qpc.data(s)), "segment {} changed", s.name());
    }
    // Every CRC whose target exists is now correct (stale ones of absent targets are kept).
    assert!(validate(&again).crcs.iter().all(|c| c.computed.is_none() || c.stored == c.computed));
});
