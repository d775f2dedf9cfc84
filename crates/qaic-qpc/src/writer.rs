//! Deterministic QPC writer: Layout F by default (base 0, packed), streaming file segments.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::constants::{CONSTANTS_DESC_LEN, ConstantsDescriptor};
use crate::copy::{BUF, copy_range};
use crate::error::{QpcError, Result};
use crate::format::{ENTRY_LEN, HEADER_LEN, Header, RawEntry};
use crate::{CONSTANTS, CONSTANTS_DESC};

/// How the container is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Layout F of the facts sheet (the vendor file writer): `base` 0, so every pointer is a file
    /// offset; names and data packed back to back without padding. Our canonical output.
    #[default]
    Packed,
    /// Layout M (the vendor in-memory serializer): every element zero-padded to a multiple of 8
    /// and every pointer written as `base + offset`.
    Aligned {
        /// The pointer base to record (any value; the vendor writes a heap address).
        base: u64,
    },
}

/// Order of the segments in the table (and of their names and data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Bytewise ascending by name (our canonical order, as the vendor `QPCBuilder`).
    #[default]
    Sorted,
    /// The order in which segments were added.
    Insertion,
}

#[derive(Debug, Clone)]
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
    FileRange { path: PathBuf, offset: u64, len: u64 },
}

#[derive(Debug, Clone)]
struct Pending {
    name: String,
    source: Source,
    static_size: Option<u64>,
}

/// Builds a QPC from named segments held in memory or streamed from files.
///
/// Rules: at least one segment; names non-empty, without NUL, unique. The `offset` field of
/// `constants.bin` (its static part) is, unless set with [`QpcWriter::static_size`], taken from
/// `constantsdesc.bin` (`staticConstantsSize`, and the descriptor's total must equal the
/// constants' length) or, without a descriptor, the whole length (all static). Output is
/// deterministic: the same segments give the same bytes.
///
/// ```
/// use qaic_qpc::{Qpc, QpcWriter};
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("net.elf"), b"\x7fELF")?;
/// let out = dir.path().join("programqpc.bin");
/// QpcWriter::new()
///     .add_file("network.elf", dir.path().join("net.elf"))
///     .add_bytes("networkdesc.bin", vec![0x08, 0x09])
///     .write(&out)?;
/// let qpc = Qpc::open(&out)?;
/// assert_eq!(qpc.segment("network.elf"), Some(&b"\x7fELF"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct QpcWriter {
    segments: Vec<Pending>,
    layout: Layout,
    order: Order,
}

/// A segment with its final size and position, as planned by the writer.
#[derive(Debug, Clone)]
struct Placed {
    pending: usize,
    size: u64,
    static_size: u64,
    data_offset: u64,
}

struct Plan {
    prefix: Vec<u8>,
    placed: Vec<Placed>,
    total: u64,
}

impl QpcWriter {
    /// An empty writer (Layout F, sorted order).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a segment whose data are in memory.
    pub fn add_bytes(&mut self, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.push(name.into(), Source::Bytes(bytes.into()))
    }

    /// Adds a segment whose data are a whole file, streamed at write time (never loaded whole).
    pub fn add_file(&mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> &mut Self {
        self.push(name.into(), Source::File(path.into()))
    }

    /// Adds a segment whose data are `len` bytes of a file starting at `offset` (e.g. a segment of
    /// another QPC), streamed at write time.
    pub fn add_file_range(&mut self, name: impl Into<String>, path: impl Into<PathBuf>, offset: u64, len: u64) -> &mut Self {
        self.push(name.into(), Source::FileRange { path: path.into(), offset, len })
    }

    fn push(&mut self, name: String, source: Source) -> &mut Self {
        self.segments.push(Pending { name, source, static_size: None });
        self
    }

    /// Sets the `offset` field (static part) of the named segment explicitly. Only
    /// `constants.bin` may have a non-zero value. Applies to segments already added.
    ///
    /// ```
    /// let bytes = qaic_qpc::QpcWriter::new()
    ///     .add_bytes("network.elf", vec![])
    ///     .add_bytes("constants.bin", vec![0; 8])
    ///     .static_size("constants.bin", 0)
    ///     .to_vec()?;
    /// let qpc = qaic_qpc::Qpc::from_bytes(&bytes)?;
    /// assert_eq!(qpc.segment_info("constants.bin").unwrap().static_size(), 0);
    /// # Ok::<(), qaic_qpc::QpcError>(())
    /// ```
    pub fn static_size(&mut self, name: &str, static_size: u64) -> &mut Self {
        for p in self.segments.iter_mut().filter(|p| p.name == name) {
            p.static_size = Some(static_size);
        }
        self
    }

    /// Replaces the data of the named segment(s) with `bytes`, keeping their position; true if
    /// one was found.
    ///
    /// ```
    /// let mut w = qaic_qpc::QpcWriter::new();
    /// w.add_bytes("a", vec![1]);
    /// assert!(w.replace_bytes("a", vec![2]));
    /// assert!(!w.replace_bytes("b", vec![3]));
    /// ```
    pub fn replace_bytes(&mut self, name: &str, bytes: impl Into<Vec<u8>>) -> bool {
        let bytes = bytes.into();
        let mut found = false;
        for p in self.segments.iter_mut().filter(|p| p.name == name) {
            p.source = Source::Bytes(bytes.clone());
            found = true;
        }
        found
    }

    /// Removes every segment with this name; true if one was removed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.segments.len();
        self.segments.retain(|p| p.name != name);
        before != self.segments.len()
    }

    /// Names of the segments added so far, in insertion order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|p| p.name.as_str())
    }

    /// Chooses the layout (default [`Layout::Packed`]).
    pub fn layout(&mut self, layout: Layout) -> &mut Self {
        self.layout = layout;
        self
    }

    /// Chooses the segment order (default [`Order::Sorted`]).
    pub fn order(&mut self, order: Order) -> &mut Self {
        self.order = order;
        self
    }

    /// Writes the container to `path` through a temporary file in the same directory, renamed
    /// into place on success (no partial output on error). File segments are copied in the
    /// kernel where possible, in 1 MiB pieces otherwise; holes in input files stay holes.
    /// Returns the container length.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<u64> {
        let path = path.as_ref();
        let plan = self.plan()?;
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
        out.write_all_at(&plan.prefix, 0).map_err(werr)?;
        for placed in &plan.placed {
            let pending = &self.segments[placed.pending];
            match &pending.source {
                Source::Bytes(b) => out.write_all_at(b, placed.data_offset).map_err(werr)?,
                Source::File(p) => {
                    let src = File::open(p).map_err(|e| QpcError::io(p, e))?;
                    copy_range(&src, 0, placed.size, out, placed.data_offset).map_err(|e| QpcError::io(p, e))?;
                }
                Source::FileRange { path: p, offset, len } => {
                    let src = File::open(p).map_err(|e| QpcError::io(p, e))?;
                    copy_range(&src, *offset, *len, out, placed.data_offset).map_err(|e| QpcError::io(p, e))?;
                }
            }
        }
        // Trailing holes and padding: the length makes them read back as zeros.
        out.set_len(plan.total).map_err(werr)?;
        set_mode(out).map_err(werr)?;
        tmp.persist(path).map_err(|e| QpcError::io(path, e.error))?;
        tracing::debug!(path = %path.display(), bytes = plan.total, "wrote QPC");
        Ok(plan.total)
    }

    /// Writes the container to a stream (file segments read through a bounded buffer; holes are
    /// written as zeros). Returns the container length.
    pub fn write_to(&self, w: &mut impl Write) -> Result<u64> {
        let plan = self.plan()?;
        let werr = |e| QpcError::io("<output stream>", e);
        w.write_all(&plan.prefix).map_err(werr)?;
        let mut pos = plan.prefix.len() as u64;
        for placed in &plan.placed {
            write_zeros(w, placed.data_offset - pos).map_err(werr)?;
            let pending = &self.segments[placed.pending];
            match &pending.source {
                Source::Bytes(b) => w.write_all(b).map_err(werr)?,
                Source::File(p) => stream_file(p, 0, placed.size, w)?,
                Source::FileRange { path, offset, len } => stream_file(path, *offset, *len, w)?,
            }
            pos = placed.data_offset + placed.size;
        }
        write_zeros(w, plan.total - pos).map_err(werr)?;
        Ok(plan.total)
    }

    /// The container as bytes in memory.
    ///
    /// ```
    /// let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![1]).to_vec()?;
    /// assert_eq!(bytes.len(), 40 + 32 + 12 + 1);
    /// # Ok::<(), qaic_qpc::QpcError>(())
    /// ```
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }

    fn plan(&self) -> Result<Plan> {
        if self.segments.is_empty() {
            return Err(QpcError::Write("a QPC needs at least one segment".into()));
        }
        let mut sizes = Vec::with_capacity(self.segments.len());
        for (index, p) in self.segments.iter().enumerate() {
            if p.name.is_empty() {
                return Err(QpcError::InvalidName { index, name: p.name.clone(), reason: "empty name" });
            }
            if p.name.contains('\0') {
                return Err(QpcError::InvalidName { index, name: p.name.clone(), reason: "contains a NUL byte" });
            }
            if let Some(first) = self.segments[..index].iter().position(|q| q.name == p.name) {
                return Err(QpcError::DuplicateName { name: p.name.clone(), first, second: index });
            }
            sizes.push(match &p.source {
                Source::Bytes(b) => b.len() as u64,
                Source::File(path) => {
                    let md = std::fs::metadata(path).map_err(|e| QpcError::io(path, e))?;
                    if !md.is_file() {
                        return Err(QpcError::Write(format!("{}: not a regular file", path.display())));
                    }
                    md.len()
                }
                Source::FileRange { len, .. } => *len,
            });
        }
        let static_sizes = self.static_sizes(&sizes)?;
        let mut order: Vec<usize> = (0..self.segments.len()).collect();
        if self.order == Order::Sorted {
            order.sort_by(|&a, &b| self.segments[a].name.as_bytes().cmp(self.segments[b].name.as_bytes()));
        }
        let (align, base) = match self.layout {
            Layout::Packed => (1u64, 0u64),
            Layout::Aligned { base } => (8, base),
        };
        let pad = |x: u64| x.div_ceil(align) * align;
        let n = order.len() as u64;
        let table = HEADER_LEN as u64;
        let mut pos = table + n * ENTRY_LEN as u64;
        let mut name_offsets = Vec::with_capacity(order.len());
        for &i in &order {
            name_offsets.push(pos);
            pos = pad(pos + self.segments[i].name.len() as u64 + 1);
        }
        let mut placed = Vec::with_capacity(order.len());
        for &i in &order {
            let data_offset = pos;
            pos = pos
                .checked_add(sizes[i])
                .map(pad)
                .ok_or_else(|| QpcError::Write("total size overflows 64 bits".into()))?;
            placed.push(Placed { pending: i, size: sizes[i], static_size: static_sizes[i], data_offset });
        }
        let total = pos;
        let ptr = |off: u64| {
            base.checked_add(off)
                .ok_or_else(|| QpcError::Write(format!("base 0x{base:X} + offset {off} overflows 64 bits")))
        };
        let header = Header { size: total, base, num_images: n, images: ptr(table)?, ..Header::default() };
        let mut prefix = Vec::with_capacity(name_offsets.last().map_or(0, |&o| o as usize + 64));
        prefix.extend_from_slice(&header.to_bytes());
        for (k, p) in placed.iter().enumerate() {
            let e = RawEntry { size: p.size, offset: p.static_size, name: ptr(name_offsets[k])?, start: ptr(p.data_offset)? };
            prefix.extend_from_slice(&e.to_bytes());
        }
        for (k, &i) in order.iter().enumerate() {
            prefix.resize(name_offsets[k] as usize, 0);
            prefix.extend_from_slice(self.segments[i].name.as_bytes());
            prefix.push(0);
        }
        let names_end = pad(prefix.len() as u64) as usize;
        prefix.resize(names_end, 0);
        Ok(Plan { prefix, placed, total })
    }

    /// The `offset` field of every segment (see the type's documentation).
    fn static_sizes(&self, sizes: &[u64]) -> Result<Vec<u64>> {
        let constants = self.segments.iter().position(|p| p.name == CONSTANTS);
        let desc = match self.segments.iter().position(|p| p.name == CONSTANTS_DESC) {
            Some(i) => Some(ConstantsDescriptor::parse(&read_small(&self.segments[i].source, sizes[i])?)?),
            None => None,
        };
        let mut out = Vec::with_capacity(sizes.len());
        for (i, p) in self.segments.iter().enumerate() {
            let v = match p.static_size {
                Some(v) if v != 0 && p.name != CONSTANTS => {
                    return Err(QpcError::UnexpectedOffset { name: p.name.clone(), offset: v });
                }
                Some(v) if v > sizes[i] => {
                    return Err(QpcError::StaticPartTooLarge { name: p.name.clone(), offset: v, size: sizes[i] });
                }
                Some(v) => v,
                None if Some(i) == constants => match desc {
                    Some(d) => {
                        if d.total() != Some(sizes[i]) {
                            return Err(QpcError::ConstantsDescriptor(format!(
                                "staticConstantsSize {} + dynamicConstantsSize {} != constants.bin size {}",
                                d.static_size, d.dynamic_size, sizes[i]
                            )));
                        }
                        d.static_size
                    }
                    None => sizes[i],
                },
                None => 0,
            };
            out.push(v);
        }
        if let (Some(d), None) = (desc, constants)
            && (d.static_size != 0 || d.dynamic_size != 0) {
                return Err(QpcError::ConstantsDescriptor(format!(
                    "describes {} static + {} dynamic bytes of constants but there is no constants.bin segment",
                    d.static_size, d.dynamic_size
                )));
            }
        Ok(out)
    }
}

/// Reads a segment known to be small (the constants descriptor); its length is checked first.
fn read_small(source: &Source, size: u64) -> Result<Vec<u8>> {
    if size != CONSTANTS_DESC_LEN as u64 {
        return Err(QpcError::ConstantsDescriptor(format!(
            "length is {size} bytes, an AICConstantDescriptor is {CONSTANTS_DESC_LEN}"
        )));
    }
    let mut buf = vec![0u8; CONSTANTS_DESC_LEN];
    match source {
        Source::Bytes(b) => buf.copy_from_slice(b),
        Source::File(p) => File::open(p).and_then(|f| f.read_exact_at(&mut buf, 0)).map_err(|e| QpcError::io(p, e))?,
        Source::FileRange { path, offset, .. } => {
            File::open(path).and_then(|f| f.read_exact_at(&mut buf, *offset)).map_err(|e| QpcError::io(path, e))?
        }
    }
    Ok(buf)
}

fn stream_file(path: &Path, offset: u64, len: u64, w: &mut impl Write) -> Result<()> {
    let io = |e| QpcError::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let copied = std::io::copy(&mut std::io::BufReader::with_capacity(BUF, f).take(len), w).map_err(io)?;
    if copied != len {
        return Err(QpcError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("expected {len} bytes, file has {copied}")),
        ));
    }
    Ok(())
}

fn write_zeros(w: &mut impl Write, n: u64) -> std::io::Result<()> {
    std::io::copy(&mut std::io::repeat(0).take(n), w).map(|_| ())
}

/// Temporary files are created 0600; a QPC is an ordinary output file.
pub(crate) fn set_mode(f: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
}
