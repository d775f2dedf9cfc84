//! ELF container of a [`Program`] (the QPC's `network.elf` segment).
//!
//! Layout (ELF64, little-endian, `e_type = ET_EXEC`, no program headers, nothing loadable):
//!
//! | section | type | contents |
//! |---|---|---|
//! | `.note.qaic` | `SHT_NOTE` | one note, owner `QAIC-RS`, type [`NT_QAIC_PROGRAM`]; desc = u16 format major, u16 minor, format name NUL-terminated |
//! | `.qaic.header` | `SHT_PROGBITS` | format version, device version, name, VTCM bytes, semaphores, core count, buffer table |
//! | `.qaic.strtab` | `SHT_STRTAB` | NUL-terminated strings referenced by offset from the header and the cores |
//! | `.qaic.core.N` | `SHT_PROGBITS` | instruction stream of core N (`sh_info` = N) |
//! | `.qaic.preload` | `SHT_PROGBITS` | only when weights are preloaded: preloaded VTCM bytes per core, then per core the count and the DMAs run once at load |
//! | `.shstrtab` | `SHT_STRTAB` | section names |
//!
//! `e_machine` = [`EM_QDSP6`] (164, Hexagon: the NSPs are Hexagon cores), but the contents are
//! not Hexagon code: `EI_OSABI` = 255 (`ELFOSABI_STANDALONE`) and the `.note.qaic` note mark
//! the file as a qaic-rs tile program. A Hexagon ELF without that note (a vendor-compiled
//! `network.elf`) is refused with [`ProgramError::VendorProgram`].

use object::elf;
use object::read::elf::{FileHeader as _, SectionHeader as _};
use object::write::elf::{FileHeader, SectionHeader, Writer};
use object::{Endianness, LittleEndian};

use crate::ProgramError;
use crate::encode::{Dec, Enc, StrRead, StrTab};
use crate::isa::*;

/// `e_machine` of program ELFs: EM_QDSP6 / EM_HEXAGON.
pub const EM_QDSP6: u16 = 164;
/// `EI_OSABI` of program ELFs: ELFOSABI_STANDALONE (the stream is not Hexagon code).
pub const QAIC_OSABI: u8 = elf::ELFOSABI_STANDALONE;
/// Owner name of the identifying note.
pub const NOTE_OWNER: &str = "QAIC-RS";
/// Type of the identifying note.
pub const NT_QAIC_PROGRAM: u32 = 1;

const NOTE_SECTION: &str = ".note.qaic";
const HEADER_SECTION: &str = ".qaic.header";
const STRTAB_SECTION: &str = ".qaic.strtab";
const CORE_PREFIX: &str = ".qaic.core.";
const PRELOAD_SECTION: &str = ".qaic.preload";

fn note_bytes() -> Vec<u8> {
    let name = format!("{NOTE_OWNER}\0");
    let mut desc = Vec::new();
    desc.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    desc.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    desc.extend_from_slice(FORMAT_NAME.as_bytes());
    desc.push(0);
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&NT_QAIC_PROGRAM.to_le_bytes());
    n.extend_from_slice(name.as_bytes());
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(&desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

impl Program {
    /// Serialises the program as an ELF file. Deterministic: equal programs give equal bytes.
    ///
    /// ```
    /// use qaic_device::{Program, Instr};
    /// let mut p = Program::new("net", "2.0", 1, 4096);
    /// p.cores[0].instrs.push(Instr::End);
    /// let bytes = p.to_elf();
    /// assert_eq!(&bytes[..4], b"\x7fELF");
    /// assert_eq!(Program::from_elf(&bytes).unwrap(), p);
    /// ```
    pub fn to_elf(&self) -> Vec<u8> {
        let mut strs = StrTab::new();
        let header = {
            let mut e = Enc { out: Vec::new(), strs: &mut strs };
            e.header(self);
            e.out
        };
        let cores: Vec<Vec<u8>> = self
            .cores
            .iter()
            .map(|c| {
                let mut e = Enc { out: Vec::new(), strs: &mut strs };
                e.core(c);
                e.out
            })
            .collect();
        let note = note_bytes();
        let mut core_names: Vec<String> = (0..cores.len()).map(|i| format!("{CORE_PREFIX}{i}")).collect();
        // The preload section exists only when there is something to preload, so programs
        // without it keep their bytes (and older readers, which skip unknown sections).
        let mut cores = cores;
        if self.preload_bytes > 0 {
            let mut e = Enc { out: Vec::new(), strs: &mut strs };
            e.preload(self);
            cores.push(e.out);
            core_names.push(PRELOAD_SECTION.to_string());
        }

        let mut out = Vec::new();
        {
            let mut w = Writer::new(Endianness::Little, true, &mut out);
            w.reserve_file_header();
            let note_name = w.add_section_name(NOTE_SECTION.as_bytes());
            w.reserve_section_index();
            let header_name = w.add_section_name(HEADER_SECTION.as_bytes());
            w.reserve_section_index();
            let strtab_name = w.add_section_name(STRTAB_SECTION.as_bytes());
            w.reserve_section_index();
            let core_ids: Vec<_> = core_names
                .iter()
                .map(|n| {
                    let id = w.add_section_name(n.as_bytes());
                    w.reserve_section_index();
                    id
                })
                .collect();
            w.reserve_shstrtab_section_index();
            let note_off = w.reserve(note.len(), 4);
            let header_off = w.reserve(header.len(), 8);
            let strtab_off = w.reserve(strs.bytes.len(), 1);
            let core_offs: Vec<usize> = cores.iter().map(|c| w.reserve(c.len(), 8)).collect();
            w.reserve_shstrtab();
            w.reserve_section_headers();

            // Writing into a Vec cannot fail; the only error source is an inconsistent
            // reserve/write sequence, which the code above rules out.
            let _ = w.write_file_header(&FileHeader {
                os_abi: QAIC_OSABI,
                abi_version: 0,
                e_type: elf::ET_EXEC,
                e_machine: EM_QDSP6,
                e_entry: 0,
                e_flags: 0,
            });
            w.write_align(4);
            w.write(&note);
            w.write_align(8);
            w.write(&header);
            w.write(&strs.bytes);
            for c in &cores {
                w.write_align(8);
                w.write(c);
            }
            w.write_shstrtab();
            w.write_null_section_header();
            let sect = |name, sh_type, off: usize, len: usize, align: u64, info: u32| SectionHeader {
                name: Some(name),
                sh_type,
                sh_flags: 0,
                sh_addr: 0,
                sh_offset: off as u64,
                sh_size: len as u64,
                sh_link: 0,
                sh_info: info,
                sh_addralign: align,
                sh_entsize: 0,
            };
            w.write_section_header(&sect(note_name, elf::SHT_NOTE, note_off, note.len(), 4, 0));
            w.write_section_header(&sect(header_name, elf::SHT_PROGBITS, header_off, header.len(), 8, 0));
            w.write_section_header(&sect(strtab_name, elf::SHT_STRTAB, strtab_off, strs.bytes.len(), 1, 0));
            for (i, (id, off)) in core_ids.iter().zip(&core_offs).enumerate() {
                let info = if i < self.cores.len() { i as u32 } else { 0 };
                w.write_section_header(&sect(*id, elf::SHT_PROGBITS, *off, cores[i].len(), 8, info));
            }
            w.write_shstrtab_section_header();
        }
        out
    }

    /// Parses a program ELF. Untrusted input: every error is a [`ProgramError`], never a panic.
    /// Refuses vendor Hexagon ELFs ([`ProgramError::VendorProgram`]), other ELFs, other format
    /// majors, and programs that fail [`Program::validate`].
    pub fn from_elf(data: &[u8]) -> Result<Program, ProgramError> {
        // ELF structures are read in place and need 8-byte alignment; a segment inside a QPC
        // (packed layout) may start anywhere, so parse an aligned copy then.
        if !(data.as_ptr() as usize).is_multiple_of(8) {
            let mut buf = vec![0u8; data.len() + 8];
            let off = buf.as_ptr().align_offset(8).min(8);
            buf[off..off + data.len()].copy_from_slice(data);
            return Program::from_elf(&buf[off..off + data.len()]);
        }
        if data.len() < 20 || &data[..4] != b"\x7fELF" {
            return Err(ProgramError::NotElf);
        }
        let class = data[4];
        let little = data[5] == elf::ELFDATA2LSB;
        let machine = if little { u16::from_le_bytes([data[18], data[19]]) } else { u16::from_be_bytes([data[18], data[19]]) };
        let not_ours = || {
            if machine == EM_QDSP6 { ProgramError::VendorProgram } else { ProgramError::ForeignElf { machine } }
        };
        if class != elf::ELFCLASS64 || !little || machine != EM_QDSP6 {
            return Err(not_ours());
        }
        let bad = |e: object::read::Error| ProgramError::Elf(e.to_string());
        let fh = elf::FileHeader64::<LittleEndian>::parse(data).map_err(bad)?;
        let endian = LittleEndian;
        let sections = fh.sections(endian, data).map_err(bad)?;

        let mut note_ok = None;
        let mut header = None;
        let mut strtab = None;
        let mut cores: Vec<(usize, &[u8])> = Vec::new();
        let mut preload = None;
        for sh in sections.iter() {
            let name = sections.section_name(endian, sh).map_err(bad)?;
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if name == NOTE_SECTION && sh.sh_type(endian) == elf::SHT_NOTE {
                let mut notes = match sh.notes(endian, data).map_err(bad)? {
                    Some(n) => n,
                    None => continue,
                };
                while let Some(n) = notes.next().map_err(bad)? {
                    if n.name() == NOTE_OWNER.as_bytes() && n.n_type(endian) == NT_QAIC_PROGRAM {
                        note_ok = Some(parse_note_desc(n.desc())?);
                    }
                }
                continue;
            }
            let bytes = || sh.data(endian, data).map_err(bad);
            if name == HEADER_SECTION {
                header = Some(bytes()?);
            } else if name == STRTAB_SECTION {
                strtab = Some(bytes()?);
            } else if name == PRELOAD_SECTION {
                preload = Some(bytes()?);
            } else if let Some(n) = name.strip_prefix(CORE_PREFIX) {
                let idx: usize = n
                    .parse()
                    .ok()
                    .filter(|i: &usize| i.to_string() == n)
                    .ok_or_else(|| ProgramError::Elf(format!("bad core section name \"{name}\"")))?;
                cores.push((idx, bytes()?));
            }
        }
        let (major, minor) = note_ok.ok_or_else(not_ours)?;
        if major != FORMAT_MAJOR {
            return Err(ProgramError::UnsupportedVersion { major, minor });
        }
        let missing = |s: &str| ProgramError::Elf(format!("section {s} is missing"));
        let strtab = strtab.ok_or_else(|| missing(STRTAB_SECTION))?;
        let header = header.ok_or_else(|| missing(HEADER_SECTION))?;
        let strs = StrRead { bytes: strtab };
        let (mut program, ncores) =
            Dec { section: HEADER_SECTION.into(), data: header, pos: 0, strs: &strs }.header()?;
        cores.sort_by_key(|(i, _)| *i);
        if cores.len() != ncores || cores.iter().enumerate().any(|(i, (c, _))| i != *c) {
            return Err(ProgramError::Elf(format!(
                "header declares {ncores} cores but the core sections are {:?}",
                cores.iter().map(|(i, _)| *i).collect::<Vec<_>>()
            )));
        }
        for (i, bytes) in cores {
            let core = Dec { section: format!("{CORE_PREFIX}{i}"), data: bytes, pos: 0, strs: &strs }.core()?;
            program.cores.push(core);
        }
        if let Some(bytes) = preload {
            let (size, lists) = Dec { section: PRELOAD_SECTION.into(), data: bytes, pos: 0, strs: &strs }.preload(ncores)?;
            program.preload_bytes = size;
            for (c, l) in program.cores.iter_mut().zip(lists) {
                c.preload = l;
            }
        }
        program.validate()?;
        Ok(program)
    }
}

fn parse_note_desc(desc: &[u8]) -> Result<(u16, u16), ProgramError> {
    let bad = || ProgramError::Elf(format!("malformed {NOTE_SECTION} note"));
    if desc.len() < 5 {
        return Err(bad());
    }
    let major = u16::from_le_bytes([desc[0], desc[1]]);
    let minor = u16::from_le_bytes([desc[2], desc[3]]);
    let name = &desc[4..];
    let end = name.iter().position(|b| *b == 0).ok_or_else(bad)?;
    if &name[..end] != FORMAT_NAME.as_bytes() {
        return Err(ProgramError::Elf(format!(
            "note names format \"{}\", expected \"{FORMAT_NAME}\"",
            String::from_utf8_lossy(&name[..end])
        )));
    }
    Ok((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::tests_support::sample;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_determinism() {
        let p = sample();
        let a = p.to_elf();
        let b = p.clone().to_elf();
        assert_eq!(a, b);
        let q = Program::from_elf(&a).unwrap();
        assert_eq!(q, p);
        assert_eq!(q.to_elf(), a);
    }

    #[test]
    fn elf_header_fields() {
        let bytes = sample().to_elf();
        let fh = elf::FileHeader64::<LittleEndian>::parse(&*bytes).unwrap();
        assert_eq!(fh.e_machine(LittleEndian), 164);
        assert_eq!(fh.e_ident().os_abi, 255);
        assert_eq!(fh.e_type(LittleEndian), elf::ET_EXEC);
        let sections = fh.sections(LittleEndian, &*bytes).unwrap();
        let names: Vec<String> = sections
            .iter()
            .map(|s| String::from_utf8_lossy(sections.section_name(LittleEndian, s).unwrap()).into_owned())
            .collect();
        assert_eq!(names, ["", ".note.qaic", ".qaic.header", ".qaic.strtab", ".qaic.core.0", ".qaic.core.1", ".shstrtab"]);
        // Fixed header prefix: major, minor, core count, semaphores, VTCM bytes.
        let header = sections.section_by_name(LittleEndian, b".qaic.header").unwrap().1.data(LittleEndian, &*bytes).unwrap();
        assert_eq!(&header[..8], &[1, 0, 1, 0, 2, 0, 2, 0]);
        assert_eq!(u64::from_le_bytes(header[8..16].try_into().unwrap()), 1 << 20);
    }

    #[test]
    fn preloads_round_trip_and_their_region_is_read_only() {
        use qaic_tensor::DType;
        let mut p = sample();
        let cbuf = p.buffers.iter().position(|b| b.kind == BufferKind::Constants).unwrap() as u32;
        p.preload_bytes = 4096;
        let vt = p.vtcm_bytes;
        p.cores[1].preload.push(Dma {
            src: Space::Ddr(cbuf),
            src_offset: 0,
            dst: Space::Vtcm,
            dst_offset: vt,
            shape: DmaShape::contiguous(576),
            multicast: None,
            tag: 0,
            signal: None,
        });
        // An op may read the preloaded bytes.
        let read = Instr::Op(Op::new("Relu", DType::F16, vec![Tile::vtcm(vt, DType::F16, vec![288])], vec![Tile::vtcm(0, DType::F16, vec![288])]));
        p.cores[1].instrs.insert(0, read);
        p.validate().unwrap();
        let bytes = p.to_elf();
        let back = Program::from_elf(&bytes).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.to_elf(), bytes);
        assert!(p.listing().contains("core 1: preload [0] dma.ddr->vtcm constants:constants+0x0 -> vtcm+0x100000 len=576"), "{}", p.listing());
        // Writing into the region is refused, by an op or a DMA (here a peer's).
        let mut w = p.clone();
        w.cores[1].instrs.insert(0, Instr::Op(Op::new("Relu", DType::F16, vec![Tile::vtcm(0, DType::F16, vec![8])], vec![Tile::vtcm(vt, DType::F16, vec![8])])));
        assert!(w.validate().unwrap_err().to_string().contains("preloaded region"), "{}", w.validate().unwrap_err());
        let mut w = p.clone();
        w.cores[0].instrs.insert(0, Instr::Dma(Dma { src: Space::Vtcm, src_offset: 0, dst: Space::PeerVtcm(1), dst_offset: vt, shape: DmaShape::contiguous(64), multicast: None, tag: 0, signal: None }));
        assert!(w.validate().unwrap_err().to_string().contains("preloaded region"));
        // A preload must copy constants into the region.
        let mut w = p.clone();
        w.cores[1].preload[0].src = Space::Ddr(0);
        assert!(w.validate().unwrap_err().to_string().contains("constants buffer"));
        let mut w = p.clone();
        w.cores[1].preload[0].dst_offset = 0;
        assert!(w.validate().unwrap_err().to_string().contains("outside the preloaded region"));
        // The device must hold both regions.
        let mut dev = crate::DeviceModel::aic100(crate::Variant::Pro16);
        dev.vtcm_bytes = vt + 1024;
        assert!(p.validate_for(&dev).is_err());
    }

    /// A minimal 32-bit Hexagon ELF header such as a vendor `network.elf` starts with.
    fn vendor_like(class: u8) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = 1;
        h[6] = 1;
        h[16] = 2;
        h[18] = 164;
        h
    }

    #[test]
    fn refuses_vendor_and_foreign_files() {
        assert!(matches!(Program::from_elf(b"hello"), Err(ProgramError::NotElf)));
        let e = Program::from_elf(&vendor_like(1)).unwrap_err();
        assert!(matches!(e, ProgramError::VendorProgram));
        assert!(e.to_string().contains("vendor program the simulator cannot run"));
        // A 64-bit Hexagon ELF without our note is a vendor program too.
        let mut ours = sample().to_elf();
        let pos = ours.windows(7).position(|w| w == b"QAIC-RS").unwrap();
        ours[pos] = b'X';
        assert!(matches!(Program::from_elf(&ours), Err(ProgramError::VendorProgram)));
        let mut x86 = sample().to_elf();
        x86[18] = 62;
        assert!(matches!(Program::from_elf(&x86), Err(ProgramError::ForeignElf { machine: 62 })));
    }

    #[test]
    fn refuses_other_major_versions() {
        let mut bytes = sample().to_elf();
        let pos = bytes.windows(7).position(|w| w == b"QAIC-RS").unwrap();
        // desc follows the 8-byte padded name
        bytes[pos + 8] = 9;
        assert!(matches!(Program::from_elf(&bytes), Err(ProgramError::UnsupportedVersion { major: 9, .. })));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().to_elf();
        for n in 0..bytes.len() {
            assert!(Program::from_elf(&bytes[..n]).is_err(), "truncated at {n} decoded");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Program::from_elf(&bytes);
        }

        #[test]
        fn mutations_never_panic(pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut bytes = sample().to_elf();
            let i = pos.index(bytes.len());
            bytes[i] = val;
            let _ = Program::from_elf(&bytes);
            let n = cut.index(bytes.len());
            let _ = Program::from_elf(&bytes[..n]);
        }

        #[test]
        fn multiple_mutations_of_arbitrary_programs_never_panic(
            p in crate::isa::tests_support::arb_program(),
            muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        ) {
            let mut bytes = p.to_elf();
            // Mutate only past the ELF file header so most cases reach the section decoders.
            for (i, v) in muts {
                let k = 64 + i.index(bytes.len() - 64);
                bytes[k] = v;
            }
            if let Ok(q) = Program::from_elf(&bytes) {
                // Whatever decodes is a valid program that re-encodes and decodes to itself.
                let again = Program::from_elf(&q.to_elf());
                prop_assert_eq!(again.as_ref(), Ok(&q));
            }
        }

        #[test]
        fn arbitrary_programs_round_trip(p in crate::isa::tests_support::arb_program()) {
            let bytes = p.to_elf();
            let q = Program::from_elf(&bytes);
            prop_assert_eq!(q.as_ref(), Ok(&p));
            prop_assert_eq!(q.unwrap().to_elf(), bytes);
        }
    }
}

