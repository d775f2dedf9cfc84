//! Just enough ELF to find a section by name (for the `metadata` / `metadata_fb` CRCs).
//! Little-endian ELF32 and ELF64; every offset is bounds-checked.

use std::ops::Range;

/// A section of an ELF image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ElfSection {
    /// Section name.
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// Byte range of the section's contents inside the ELF image (empty for `SHT_NOBITS`).
    pub range: Range<u64>,
}

const SHT_NOBITS: u32 = 8;

/// Lists the sections of an ELF image.
///
/// Errors (as text) for a buffer that is not a little-endian ELF or whose section table lies
/// outside the image. An ELF without a section table gives an empty list.
///
/// ```
/// // The placeholder ELF of the facts sheet: an identification block only.
/// let ident = [0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// assert!(qaic_qpc::elf_sections(&ident).is_err()); // too short for an ELF32 header
/// assert!(qaic_qpc::elf_sections(b"nope").is_err());
/// ```
pub fn elf_sections(elf: &[u8]) -> Result<Vec<ElfSection>, String> {
    if elf.len() < 16 || &elf[..4] != b"\x7fELF" {
        return Err("not an ELF image (no \\x7fELF identification)".into());
    }
    let is64 = match elf[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    if elf[5] != 1 {
        return Err(format!("ELF data encoding {} is not little-endian", elf[5]));
    }
    let hdr_len = if is64 { 64 } else { 52 };
    if elf.len() < hdr_len {
        return Err(format!("ELF header truncated: {} bytes, need {hdr_len}", elf.len()));
    }
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (le(elf, 0x28, 8), le(elf, 0x3A, 2), le(elf, 0x3C, 2), le(elf, 0x3E, 2))
    } else {
        (le(elf, 0x20, 4), le(elf, 0x2E, 2), le(elf, 0x30, 2), le(elf, 0x32, 2))
    };
    if shoff == 0 || shnum == 0 {
        return Ok(Vec::new());
    }
    let min_ent = if is64 { 64 } else { 40 };
    if shentsize < min_ent {
        return Err(format!("e_shentsize {shentsize} is smaller than {min_ent}"));
    }
    let table_end = shentsize.checked_mul(shnum).and_then(|l| l.checked_add(shoff));
    if table_end.is_none_or(|e| e > elf.len() as u64) {
        return Err(format!("section table at {shoff} ({shnum} x {shentsize} bytes) is outside the {}-byte image", elf.len()));
    }
    let raw: Vec<(u64, u32, Range<u64>)> = (0..shnum)
        .map(|i| {
            let at = (shoff + i * shentsize) as usize;
            let (name, kind) = (le(elf, at, 4), le(elf, at + 4, 4) as u32);
            let (off, size) = if is64 { (le(elf, at + 0x18, 8), le(elf, at + 0x20, 8)) } else { (le(elf, at + 0x10, 4), le(elf, at + 0x14, 4)) };
            let range = if kind == SHT_NOBITS { off..off } else { off..off.saturating_add(size) };
            (name, kind, range)
        })
        .collect();
    let strtab = raw.get(shstrndx as usize).map(|r| r.2.clone());
    let mut out = Vec::with_capacity(raw.len());
    for (i, (name_off, kind, range)) in raw.into_iter().enumerate() {
        if range.end > elf.len() as u64 {
            return Err(format!("section {i}: bytes [{}, {}) are outside the {}-byte image", range.start, range.end, elf.len()));
        }
        let name = match &strtab {
            Some(st) if st.end <= elf.len() as u64 => {
                let st = &elf[st.start as usize..st.end as usize];
                let from = st.get(name_off as usize..).unwrap_or(&[]);
                let end = from.iter().position(|&b| b == 0).unwrap_or(from.len());
                String::from_utf8_lossy(&from[..end]).into_owned()
            }
            _ => String::new(),
        };
        out.push(ElfSection { name, kind, range });
    }
    Ok(out)
}

/// The contents of the named section, if the image is an ELF that has it.
pub fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let s = elf_sections(elf).ok()?.into_iter().find(|s| s.name == name)?;
    elf.get(s.range.start as usize..s.range.end as usize)
}

/// Little-endian unsigned integer of `n` bytes at `at`; callers have checked the bounds.
fn le(b: &[u8], at: usize, n: usize) -> u64 {
    b[at..at + n].iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 with sections "", ".shstrtab", "metadata", "metadata_fb".
    pub(crate) fn sample_elf(metadata: &[u8], metadata_fb: &[u8]) -> Vec<u8> {
        let strtab = b"\0.shstrtab\0metadata\0metadata_fb\0";
        let mut v = vec![0u8; 64];
        v[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        v[6] = 1;
        let str_off = v.len() as u64;
        v.extend_from_slice(strtab);
        let md_off = v.len() as u64;
        v.extend_from_slice(metadata);
        let fb_off = v.len() as u64;
        v.extend_from_slice(metadata_fb);
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
        let shoff = v.len() as u64;
        let sec = |name: u32, kind: u32, off: u64, size: u64| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&kind.to_le_bytes());
            s[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            s[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            s
        };
        v.extend(sec(0, 0, 0, 0));
        v.extend(sec(1, 3, str_off, strtab.len() as u64));
        v.extend(sec(11, 1, md_off, metadata.len() as u64));
        v.extend(sec(20, 1, fb_off, metadata_fb.len() as u64));
        v[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        v[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        v[0x3C..0x3E].copy_from_slice(&4u16.to_le_bytes());
        v[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        v
    }

    #[test]
    fn finds_sections() {
        let elf = sample_elf(b"META", b"FLATBUF");
        assert_eq!(elf_section(&elf, "metadata"), Some(&b"META"[..]));
        assert_eq!(elf_section(&elf, "metadata_fb"), Some(&b"FLATBUF"[..]));
        assert_eq!(elf_section(&elf, "nope"), None);
    }

    #[test]
    fn truncations_never_panic() {
        let elf = sample_elf(b"META", b"FLATBUF");
        for n in 0..elf.len() {
            let _ = elf_sections(&elf[..n]);
        }
    }
}
