//! Zero-copy reading of a QPC from a byte slice, an owned buffer or a memory-mapped file.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::constants::ConstantsDescriptor;
use crate::error::{QpcError, Result};
use crate::format::{
    COMPRESSION_SLOWPATH, ENTRY_LEN, HEADER_LEN, Header, MAGIC, MAJOR_VERSION, RawEntry,
};
use crate::networkdesc::NetworkDescriptor;
use crate::{CONSTANTS, CONSTANTS_DESC, NETWORK_DESC};

/// Longest segment name the reader looks for a NUL in; real names are short paths.
pub const MAX_NAME_LEN: usize = 64 * 1024;

/// Window used when streaming a mapped segment: pages are released after each window.
const WINDOW: usize = 8 << 20;

/// How strictly [`Qpc::from_bytes_with`] checks the container.
///
/// ```
/// use qaic_qpc::ReadOptions;
/// let lenient = ReadOptions { allow_unreferenced_bytes: true };
/// assert!(!ReadOptions::default().allow_unreferenced_bytes);
/// # let _ = lenient;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Accept bytes that belong to no header, table, name or segment (other than zero padding
    /// to an 8-byte boundary). Both vendor layouts leave no such bytes, so by default they are an
    /// error: they usually mean a corrupted table.
    pub allow_unreferenced_bytes: bool,
}

/// One segment of a container, as located by the reader. Offsets are container offsets
/// (pointer − base), already bounds-checked.
///
/// ```
/// # let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![1, 2, 3]).to_vec().unwrap();
/// let qpc = qaic_qpc::Qpc::from_bytes(&bytes).unwrap();
/// let seg = &qpc.segments()[0];
/// assert_eq!((seg.name(), seg.len()), ("network.elf", 3));
/// assert_eq!(qpc.data(seg), &[1, 2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    index: usize,
    name: String,
    size: u64,
    static_size: u64,
    data_offset: u64,
    name_offset: u64,
}

impl Segment {
    /// Position in the segment table.
    pub fn index(&self) -> usize {
        self.index
    }
    /// Segment name, e.g. `network.elf`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Data length in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }
    /// True for a zero-length segment.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    /// The entry's `offset` field: for `constants.bin`, bytes of static constants at the start of
    /// the data (the rest is dynamic); 0 for every other segment.
    pub fn static_size(&self) -> u64 {
        self.static_size
    }
    /// Container offset of the first data byte.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// Container offset of the NUL-terminated name.
    pub fn name_offset(&self) -> u64 {
        self.name_offset
    }
    /// Container byte range of the data.
    pub fn data_range(&self) -> Range<u64> {
        self.data_offset..self.data_offset + self.size
    }
}

enum Storage<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    Mapped { map: Mmap, file: File },
}

/// A parsed, structurally valid QPC container.
///
/// Opening checks the header and the whole segment table (see [`QpcError`] for every rejection);
/// segment data are then accessed without copying. Use [`crate::validate()`] for the semantic
/// checks (descriptors, mandatory segments, CRCs).
///
/// ```
/// use qaic_qpc::{Qpc, QpcWriter};
/// let bytes = QpcWriter::new()
///     .add_bytes("network.elf", b"\x7fELF".to_vec())
///     .add_bytes("networkdesc.bin", vec![0x08, 0x09])
///     .to_vec()?;
/// let qpc = Qpc::from_bytes(&bytes)?;
/// assert_eq!(qpc.segment("network.elf"), Some(&b"\x7fELF"[..]));
/// assert_eq!(qpc.network_descriptor()?.unwrap().major_version, 9);
/// # Ok::<(), qaic_qpc::QpcError>(())
/// ```
pub struct Qpc<'a> {
    storage: Storage<'a>,
    header: Header,
    segments: Vec<Segment>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Qpc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qpc")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("segments", &self.segments)
            .finish()
    }
}

impl Qpc<'static> {
    /// Opens and checks a QPC file through a read-only memory map (nothing is read eagerly).
    ///
    /// The file must not be modified while the `Qpc` is alive (a memory-map precondition).
    ///
    /// ```no_run
    /// let qpc = qaic_qpc::Qpc::open("programqpc.bin")?;
    /// println!("{} segments", qpc.segments().len());
    /// # Ok::<(), qaic_qpc::QpcError>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Qpc<'static>> {
        Self::open_with(path, ReadOptions::default())
    }

    /// [`Qpc::open`] with explicit [`ReadOptions`].
    pub fn open_with(path: impl AsRef<Path>, options: ReadOptions) -> Result<Qpc<'static>> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| QpcError::io(path, e))?;
        let len = file.metadata().map_err(|e| QpcError::io(path, e))?.len();
        if len < HEADER_LEN as u64 {
            return Err(QpcError::TooShort { len, needed: HEADER_LEN as u64 });
        }
        // SAFETY: read-only shared mapping; the documented precondition is that the file is not
        // modified while mapped (the same contract as every mmap-based reader).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(|e| QpcError::io(path, e))?;
        let (header, segments) = parse(&map, options)?;
        tracing::debug!(path = %path.display(), segments = segments.len(), "opened QPC");
        Ok(Qpc { storage: Storage::Mapped { map, file }, header, segments, path: Some(path.to_path_buf()) })
    }

    /// Takes ownership of a buffer holding a whole QPC.
    pub fn from_vec(bytes: Vec<u8>) -> Result<Qpc<'static>> {
        let (header, segments) = parse(&bytes, ReadOptions::default())?;
        Ok(Qpc { storage: Storage::Owned(bytes), header, segments, path: None })
    }
}

impl<'a> Qpc<'a> {
    /// Checks a QPC held in memory and borrows it (zero-copy).
    ///
    /// ```
    /// let err = qaic_qpc::Qpc::from_bytes(&[0u8; 40]).unwrap_err();
    /// assert!(err.to_string().contains("magic"));
    /// ```
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Qpc<'a>> {
        Self::from_bytes_with(bytes, ReadOptions::default())
    }

    /// [`Qpc::from_bytes`] with explicit [`ReadOptions`].
    pub fn from_bytes_with(bytes: &'a [u8], options: ReadOptions) -> Result<Qpc<'a>> {
        let (header, segments) = parse(bytes, options)?;
        Ok(Qpc { storage: Storage::Borrowed(bytes), header, segments, path: None })
    }

    /// The whole container.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Borrowed(b) => b,
            Storage::Owned(v) => v,
            Storage::Mapped { map, .. } => map,
        }
    }

    /// The file this container was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The open file behind a container made by [`Qpc::open`].
    pub fn file(&self) -> Option<&File> {
        match &self.storage {
            Storage::Mapped { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// All segments, in table order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment with this exact name (as the vendor lookup does).
    pub fn segment_info(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Data of the named segment (for `constants.bin`: static and dynamic parts together).
    ///
    /// ```
    /// # let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![7]).to_vec().unwrap();
    /// let qpc = qaic_qpc::Qpc::from_bytes(&bytes).unwrap();
    /// assert_eq!(qpc.segment("network.elf"), Some(&[7u8][..]));
    /// assert_eq!(qpc.segment("missing"), None);
    /// ```
    pub fn segment(&self, name: &str) -> Option<&[u8]> {
        self.segment_info(name).map(|s| self.data(s))
    }

    /// Data of a segment of this container.
    pub fn data(&self, segment: &Segment) -> &[u8] {
        let bytes = self.as_bytes();
        // Ranges were checked against the container length at parse time.
        let start = segment.data_offset as usize;
        bytes.get(start..start + segment.size as usize).unwrap_or(&[])
    }

    /// `constants.bin` split into (static, dynamic) parts by the entry's `offset` field.
    ///
    /// ```
    /// use qaic_qpc::{ConstantsDescriptor, Qpc, QpcWriter};
    /// let desc = ConstantsDescriptor { static_size: 2, dynamic_size: 1, ..Default::default() };
    /// let bytes = QpcWriter::new()
    ///     .add_bytes("network.elf", vec![])
    ///     .add_bytes("constants.bin", vec![1, 2, 3])
    ///     .add_bytes("constantsdesc.bin", desc.to_bytes().to_vec())
    ///     .to_vec()?;
    /// let qpc = Qpc::from_bytes(&bytes)?;
    /// assert_eq!(qpc.constants(), Some((&[1u8, 2][..], &[3u8][..])));
    /// # Ok::<(), qaic_qpc::QpcError>(())
    /// ```
    pub fn constants(&self) -> Option<(&[u8], &[u8])> {
        let seg = self.segment_info(CONSTANTS)?;
        let data = self.data(seg);
        Some(data.split_at(seg.static_size as usize))
    }

    /// Decodes `networkdesc.bin`; `Ok(None)` if the segment is absent.
    pub fn network_descriptor(&self) -> Result<Option<NetworkDescriptor>> {
        self.segment(NETWORK_DESC).map(NetworkDescriptor::decode_bytes).transpose()
    }

    /// Decodes `constantsdesc.bin`; `Ok(None)` if the segment is absent.
    pub fn constants_descriptor(&self) -> Result<Option<ConstantsDescriptor>> {
        self.segment(CONSTANTS_DESC).map(ConstantsDescriptor::parse).transpose()
    }

    /// Feeds the segment's data to `f` in order, in pieces of at most 8 MiB.
    ///
    /// For a memory-mapped container, the pages of each piece are released once `f` returns, so
    /// streaming a huge segment keeps the resident set small (a fully touched mapping would count
    /// every page).
    ///
    /// ```
    /// # let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![1, 2, 3]).to_vec().unwrap();
    /// let qpc = qaic_qpc::Qpc::from_bytes(&bytes).unwrap();
    /// let mut total = 0;
    /// qpc.for_each_chunk(qpc.segment_info("network.elf").unwrap(), |c| { total += c.len(); Ok(()) }).unwrap();
    /// assert_eq!(total, 3);
    /// ```
    pub fn for_each_chunk(&self, segment: &Segment, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let data = self.data(segment);
        let base = segment.data_offset as usize;
        for (i, chunk) in data.chunks(WINDOW).enumerate() {
            if let Storage::Mapped { map, .. } = &self.storage {
                let start = base + i * WINDOW;
                // Prefetch the next window while this one is processed.
                let next = start + chunk.len();
                let ahead = WINDOW.min(base + data.len() - next);
                if ahead > 0 {
                    let _ = advise(map, memmap2::Advice::WillNeed, next, ahead);
                }
            }
            f(chunk)?;
            if let Storage::Mapped { map, .. } = &self.storage {
                release(map, base + i * WINDOW, chunk.len());
            }
        }
        Ok(())
    }

    /// Writes a segment's data to the file `path` (temporary file in the same directory, renamed
    /// on success). From a file-backed container the bytes are copied in the kernel and holes
    /// stay holes; nothing is loaded whole. Returns the number of bytes.
    ///
    /// ```
    /// # let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![1, 2]).to_vec().unwrap();
    /// let qpc = qaic_qpc::Qpc::from_bytes(&bytes)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// let out = dir.path().join("network.elf");
    /// qpc.save_segment(qpc.segment_info("network.elf").unwrap(), &out)?;
    /// assert_eq!(std::fs::read(&out).unwrap(), [1, 2]);
    /// # Ok::<(), qaic_qpc::QpcError>(())
    /// ```
    pub fn save_segment(&self, segment: &Segment, path: impl AsRef<Path>) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".qpc-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| QpcError::io(dir, e))?;
        let out = tmp.as_file();
        let werr = |e| QpcError::io(tmp.path(), e);
        match &self.storage {
            Storage::Mapped { file, .. } => crate::copy::copy_range(file, segment.data_offset, segment.size, out, 0)
                .map_err(|e| QpcError::io(self.path.clone().unwrap_or_default(), e))?,
            _ => out.write_all_at(self.data(segment), 0).map_err(werr)?,
        }
        out.set_len(segment.size).map_err(werr)?;
        crate::writer::set_mode(out).map_err(werr)?;
        tmp.persist(path).map_err(|e| QpcError::io(path, e.error))?;
        Ok(segment.size)
    }

    /// CRC-32/ISO-HDLC of a segment's data, streamed (see [`Qpc::for_each_chunk`]).
    pub fn crc32(&self, segment: &Segment) -> u32 {
        let mut h = crc32fast::Hasher::new();
        // The closure never fails.
        let _ = self.for_each_chunk(segment, |c| {
            h.update(c);
            Ok(())
        });
        h.finalize()
    }
}

fn advise(map: &Mmap, advice: memmap2::Advice, offset: usize, len: usize) -> std::io::Result<()> {
    let page = page_size();
    let start = offset / page * page;
    map.advise_range(advice, start, len + (offset - start))
}

/// Drops the pages of `[offset, offset+len)` (rounded inwards to whole pages) from the mapping.
fn release(map: &Mmap, offset: usize, len: usize) {
    let page = page_size();
    let start = offset.div_ceil(page) * page;
    let end = (offset + len) / page * page;
    if end > start {
        // SAFETY: the mapping is read-only and file-backed, so MADV_DONTNEED only drops pages:
        // a later access faults the same file contents back in. Borrowed slices stay valid.
        #[allow(unsafe_code)]
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// Checks the header, the table and the placement of every name and data blob; returns the
/// header and the segments with rebased offsets.
pub(crate) fn parse(bytes: &[u8], options: ReadOptions) -> Result<(Header, Vec<Segment>)> {
    let len = bytes.len() as u64;
    let header = Header::parse(bytes).ok_or(QpcError::TooShort { len, needed: HEADER_LEN as u64 })?;
    if header.magic != MAGIC {
        return Err(QpcError::BadMagic { found: header.magic, expected: MAGIC });
    }
    if header.major_version != MAJOR_VERSION {
        return Err(QpcError::UnsupportedVersion { found: header.major_version, supported: MAJOR_VERSION });
    }
    if header.compression != COMPRESSION_SLOWPATH {
        return Err(QpcError::UnsupportedCompression { found: header.compression });
    }
    if header.size != len {
        return Err(QpcError::SizeMismatch { header: header.size, actual: len });
    }
    if header.num_images == 0 {
        return Err(QpcError::NoSegments);
    }
    let base = header.base;
    let rebase = |field: &dyn Fn() -> String, pointer: u64| {
        pointer.checked_sub(base).ok_or_else(|| QpcError::PointerBelowBase { field: field(), pointer, base })
    };
    let table = rebase(&|| "images".into(), header.images)?;
    if table < HEADER_LEN as u64 || table % 8 != 0 {
        return Err(QpcError::BadTableOffset { offset: table });
    }
    let table_len = header.num_images.checked_mul(ENTRY_LEN as u64);
    let table_end = table_len.and_then(|l| table.checked_add(l)).filter(|&e| e <= len);
    let (Some(table_len), Some(table_end)) = (table_len, table_end) else {
        return Err(QpcError::OutOfBounds {
            field: format!("segment table (numImages = {})", header.num_images),
            offset: table,
            len: table_len.unwrap_or(u64::MAX),
            container_len: len,
        });
    };
    // numImages is now bounded by the container length, so it fits in usize.
    let count = header.num_images as usize;
    let mut segments = Vec::with_capacity(count);
    let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(count);
    for index in 0..count {
        let at = (table as usize) + index * ENTRY_LEN;
        let raw = RawEntry::parse(&bytes[at..]).ok_or(QpcError::OutOfBounds {
            field: format!("segment[{index}] table entry"),
            offset: at as u64,
            len: ENTRY_LEN as u64,
            container_len: len,
        })?;
        let name_offset = rebase(&|| format!("segment[{index}].name"), raw.name)?;
        let name_bytes = read_name(bytes, index, name_offset)?;
        let name = std::str::from_utf8(name_bytes)
            .map_err(|_| QpcError::InvalidName {
                index,
                name: String::from_utf8_lossy(name_bytes).into_owned(),
                reason: "not valid UTF-8",
            })?
            .to_owned();
        if name.is_empty() {
            return Err(QpcError::InvalidName { index, name, reason: "empty name" });
        }
        let data_offset = rebase(&|| format!("segment[{index}] ({name}).start"), raw.start)?;
        if data_offset.checked_add(raw.size).is_none_or(|end| end > len) {
            return Err(QpcError::OutOfBounds {
                field: format!("segment[{index}] ({name}) data"),
                offset: data_offset,
                len: raw.size,
                container_len: len,
            });
        }
        if raw.offset > raw.size {
            return Err(QpcError::StaticPartTooLarge { name, offset: raw.offset, size: raw.size });
        }
        if raw.offset != 0 && name != CONSTANTS {
            return Err(QpcError::UnexpectedOffset { name, offset: raw.offset });
        }
        segments.push(Segment { index, name, size: raw.size, static_size: raw.offset, data_offset, name_offset });
    }
    for seg in &segments {
        if let Some(&first) = by_name.get(seg.name.as_str()) {
            return Err(QpcError::DuplicateName { name: seg.name.clone(), first, second: seg.index });
        }
        by_name.insert(&seg.name, seg.index);
    }
    check_regions(bytes, table, table_end, table_len, &segments, options)?;
    Ok((header, segments))
}

fn read_name(bytes: &[u8], index: usize, offset: u64) -> Result<&[u8]> {
    let start = usize::try_from(offset).ok().filter(|&s| s < bytes.len());
    let Some(start) = start else {
        return Err(QpcError::OutOfBounds {
            field: format!("segment[{index}].name"),
            offset,
            len: 1,
            container_len: bytes.len() as u64,
        });
    };
    let window = &bytes[start..bytes.len().min(start.saturating_add(MAX_NAME_LEN + 1))];
    let nul = window.iter().position(|&b| b == 0).ok_or(QpcError::UnterminatedName { index, offset })?;
    Ok(&window[..nul])
}

/// Every byte must belong to exactly one region (header, table, a name, a segment's data), except
/// zero padding that brings the next region, or the end of an 8-byte-multiple container, to an
/// 8-byte boundary (Layout M).
fn check_regions(
    bytes: &[u8],
    table: u64,
    table_end: u64,
    _table_len: u64,
    segments: &[Segment],
    options: ReadOptions,
) -> Result<()> {
    let len = bytes.len() as u64;
    let mut regions: Vec<(u64, u64, Region)> = Vec::with_capacity(2 + 2 * segments.len());
    regions.push((0, HEADER_LEN as u64, Region::Header));
    regions.push((table, table_end, Region::Table));
    for s in segments {
        regions.push((s.name_offset, s.name_offset + s.name.len() as u64 + 1, Region::Name(s.index)));
        if s.size > 0 {
            regions.push((s.data_offset, s.data_offset + s.size, Region::Data(s.index)));
        }
    }
    regions.sort_unstable_by_key(|r| (r.0, r.1));
    let describe = |r: Region| match r {
        Region::Header => "header".to_string(),
        Region::Table => "segment table".to_string(),
        Region::Name(i) => format!("segment[{i}] ({}) name", segments[i].name),
        Region::Data(i) => format!("segment[{i}] ({}) data", segments[i].name),
    };
    let mut prev = regions[0];
    let mut covered = prev.1;
    for &r in &regions[1..] {
        if r.0 < covered {
            // `prev` is the region ending furthest so far; it overlaps `r`.
            return Err(QpcError::Overlap {
                first: describe(prev.2),
                first_start: prev.0,
                first_end: prev.1,
                second: describe(r.2),
                second_start: r.0,
                second_end: r.1,
            });
        }
        if r.0 > covered && !options.allow_unreferenced_bytes {
            check_padding(bytes, covered, r.0, r.0 % 8 == 0)?;
        }
        if r.1 > covered {
            covered = r.1;
            prev = r;
        }
    }
    if covered < len && !options.allow_unreferenced_bytes {
        check_padding(bytes, covered, len, len.is_multiple_of(8))?;
    }
    Ok(())
}

fn check_padding(bytes: &[u8], start: u64, end: u64, aligned_next: bool) -> Result<()> {
    let zero = bytes[start as usize..end as usize].iter().all(|&b| b == 0);
    if end - start < 8 && aligned_next && zero {
        Ok(())
    } else {
        Err(QpcError::UnreferencedBytes { start, end })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Header,
    Table,
    Name(usize),
    Data(usize),
}
