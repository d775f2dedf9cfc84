//! Descriptor decoders on arbitrary bytes: networkdesc.bin (protobuf), constantsdesc.bin and the
//! ELF section lookup. Must never panic; decoded descriptors must re-encode stably.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use qaic_qpc::{ConstantsDescriptor, NetworkDescriptor, elf_sections};

fuzz_target!(|data: &[u8]| {
    if let Ok(nd) = NetworkDescriptor::decode_bytes(data) {
        let once = nd.encode_to_vec();
        let back = NetworkDescriptor::decode_bytes(&once).expect("re-encoded descriptor must decode");
        assert_eq!(back.encode_to_vec(), once, "encoding not stable");
        let _ = nd.to_json();
    }
    if let Ok(cd) = ConstantsDescriptor::parse(data) {
        assert_eq!(ConstantsDescriptor::parse(&cd.to_bytes()).ok(), Some(cd));
    }
    let _ = elf_sections(data);
});
