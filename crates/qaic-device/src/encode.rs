//! Hand-written, versioned, little-endian binary encoding of the header and the per-core
//! instruction streams. Integers are LEB128 varints (signed ones zig-zag encoded), floats are
//! 8-byte IEEE-754 LE, strings are varint offsets into the program's string table. Decoding
//! is fully bounds-checked: any byte string yields a value or a [`ProgramError`], never a panic.

use std::collections::HashMap;

use qaic_tensor::DType;

use crate::ProgramError;
use crate::isa::*;

/// Builds the `.qaic.strtab` section: offset 0 is the empty string; strings are NUL-terminated
/// UTF-8 in first-use order (deterministic).
#[derive(Default)]
pub(crate) struct StrTab {
    pub bytes: Vec<u8>,
    index: HashMap<String, u64>,
}

impl StrTab {
    pub fn new() -> StrTab {
        StrTab { bytes: vec![0], index: HashMap::new() }
    }
    pub fn add(&mut self, s: &str) -> u64 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&o) = self.index.get(s) {
            return o;
        }
        let o = self.bytes.len() as u64;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        self.index.insert(s.to_string(), o);
        o
    }
}

pub(crate) struct Enc<'a> {
    pub out: Vec<u8>,
    pub strs: &'a mut StrTab,
}

impl Enc<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn var(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }
    fn ivar(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }
    fn f64(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        let o = self.strs.add(s);
        self.var(o);
    }
    fn space(&mut self, s: Space) {
        match s {
            Space::Ddr(b) => {
                self.u8(0);
                self.var(b as u64);
            }
            Space::Vtcm => self.u8(1),
            Space::PeerVtcm(c) => {
                self.u8(2);
                self.var(c as u64);
            }
        }
    }
    fn tile(&mut self, t: &Tile) {
        self.space(t.space);
        self.var(t.offset);
        self.u8(t.dtype.onnx() as u8);
        self.var(t.shape.len() as u64);
        for d in &t.shape {
            self.var(*d);
        }
    }
    fn attr(&mut self, name: &str, v: &AttrValue) {
        self.str(name);
        match v {
            AttrValue::Int(i) => {
                self.u8(0);
                self.ivar(*i);
            }
            AttrValue::Float(f) => {
                self.u8(1);
                self.f64(*f);
            }
            AttrValue::Ints(v) => {
                self.u8(2);
                self.var(v.len() as u64);
                for i in v {
                    self.ivar(*i);
                }
            }
            AttrValue::Floats(v) => {
                self.u8(3);
                self.var(v.len() as u64);
                for f in v {
                    self.f64(*f);
                }
            }
            AttrValue::Str(s) => {
                self.u8(4);
                self.str(s);
            }
        }
    }

    pub fn instr(&mut self, ins: &Instr) {
        self.u8(ins.opcode());
        match ins {
            Instr::Dma(d) => {
                self.space(d.src);
                self.var(d.src_offset);
                self.space(d.dst);
                self.var(d.dst_offset);
                self.var(d.shape.run_bytes);
                self.u8(d.shape.dims.len() as u8);
                for dim in &d.shape.dims {
                    self.var(dim.count);
                    self.var(dim.src_stride);
                    self.var(dim.dst_stride);
                }
                let flags = d.multicast.is_some() as u8 | (d.signal.is_some() as u8) << 1;
                self.u8(flags);
                if let Some(m) = d.multicast {
                    self.var(m.0);
                }
                self.u8(d.tag);
                if let Some(s) = d.signal {
                    self.var(s.sem as u64);
                    self.var(s.add as u64);
                }
            }
            Instr::DmaWait { tag } => self.u8(*tag),
            Instr::Op(op) => {
                self.str(&op.op);
                self.u8(op.dtype.onnx() as u8);
                self.var(op.inputs.len() as u64);
                for t in &op.inputs {
                    self.tile(t);
                }
                self.var(op.outputs.len() as u64);
                for t in &op.outputs {
                    self.tile(t);
                }
                // Canonical order: sorted by name, so equal programs give equal bytes.
                let mut attrs: Vec<&(String, AttrValue)> = op.attrs.iter().collect();
                attrs.sort_by(|a, b| a.0.cmp(&b.0));
                attrs.dedup_by(|a, b| a.0 == b.0);
                self.var(attrs.len() as u64);
                for (n, v) in attrs {
                    self.attr(n, v);
                }
            }
            Instr::SemSignal { sem, add } => {
                self.var(*sem as u64);
                self.var(*add as u64);
            }
            Instr::SemWait { sem, at_least } => {
                self.var(*sem as u64);
                self.var(*at_least as u64);
            }
            Instr::Barrier { cores } => self.var(cores.0),
            Instr::Layer { name } => self.str(name),
            Instr::End => {}
        }
    }

    pub fn header(&mut self, p: &Program) {
        // Fixed 16-byte prefix: tools that do not link this crate (QPC validation) can read
        // the core count at a fixed offset.
        self.out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        self.out.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        self.out.extend_from_slice(&(p.cores.len().min(u16::MAX as usize) as u16).to_le_bytes());
        self.out.extend_from_slice(&p.num_semaphores.to_le_bytes());
        self.out.extend_from_slice(&p.vtcm_bytes.to_le_bytes());
        self.str(&p.device_version);
        self.str(&p.name);
        self.var(p.buffers.len() as u64);
        for b in &p.buffers {
            self.str(&b.name);
            self.u8(b.kind.code());
            self.var(b.size);
            self.var(b.binding.map_or(0, |v| v as u64 + 1));
        }
    }

    pub fn core(&mut self, c: &CoreProgram) {
        self.var(c.instrs.len() as u64);
        for i in &c.instrs {
            self.instr(i);
        }
    }

    /// The preload section: region size, then per core its DMAs (as `dma` instructions).
    pub fn preload(&mut self, p: &Program) {
        self.var(p.preload_bytes);
        for c in &p.cores {
            self.var(c.preload.len() as u64);
            for d in &c.preload {
                self.instr(&Instr::Dma(d.clone()));
            }
        }
    }
}

/// Reads the string table section.
pub(crate) struct StrRead<'a> {
    pub bytes: &'a [u8],
}

impl StrRead<'_> {
    fn get(&self, off: u64) -> Result<String, String> {
        let start = usize::try_from(off).map_err(|_| format!("string offset {off} out of range"))?;
        let rest = self
            .bytes
            .get(start..)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| format!("string offset {off} beyond the string table ({} bytes)", self.bytes.len()))?;
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| format!("string at offset {off} is not NUL-terminated"))?;
        std::str::from_utf8(&rest[..end])
            .map(str::to_string)
            .map_err(|_| format!("string at offset {off} is not UTF-8"))
    }
}

pub(crate) struct Dec<'a> {
    pub section: String,
    pub data: &'a [u8],
    pub pos: usize,
    pub strs: &'a StrRead<'a>,
}

type R<T> = Result<T, ProgramError>;

impl Dec<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(ProgramError::Decode { section: self.section.clone(), offset: self.pos, msg: msg.into() })
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
    fn u8(&mut self) -> R<u8> {
        match self.data.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => self.err("unexpected end of section"),
        }
    }
    fn u16_fixed(&mut self) -> R<u16> {
        let lo = self.u8()? as u16;
        let hi = self.u8()? as u16;
        Ok(lo | hi << 8)
    }
    fn var(&mut self) -> R<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = (b & 0x7f) as u64;
            if i == 9 && bits > 1 {
                return self.err("varint overflows 64 bits");
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.err("varint longer than 10 bytes")
    }
    fn var_u32(&mut self, what: &str) -> R<u32> {
        let v = self.var()?;
        u32::try_from(v).or_else(|_| self.err(format!("{what} {v} does not fit 32 bits")))
    }
    fn var_u16(&mut self, what: &str) -> R<u16> {
        let v = self.var()?;
        u16::try_from(v).or_else(|_| self.err(format!("{what} {v} does not fit 16 bits")))
    }
    /// A count of items that each take at least one byte: bounded by the bytes left, so a
    /// corrupt count cannot make us allocate more than the input's size.
    fn count(&mut self, what: &str) -> R<usize> {
        let v = self.var()?;
        if v > self.remaining() as u64 {
            return self.err(format!("{what} count {v} exceeds the {} bytes left", self.remaining()));
        }
        Ok(v as usize)
    }
    fn ivar(&mut self) -> R<i64> {
        let v = self.var()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
    fn f64(&mut self) -> R<f64> {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8()?;
        }
        Ok(f64::from_bits(u64::from_le_bytes(b)))
    }
    fn str(&mut self) -> R<String> {
        let o = self.var()?;
        match self.strs.get(o) {
            Ok(s) => Ok(s),
            Err(m) => self.err(m),
        }
    }
    fn dtype(&mut self) -> R<DType> {
        let c = self.u8()?;
        match DType::from_onnx(c as i32) {
            Some(d) => Ok(d),
            None => self.err(format!("unknown element type code {c}")),
        }
    }
    fn space(&mut self) -> R<Space> {
        match self.u8()? {
            0 => Ok(Space::Ddr(self.var_u32("DDR buffer index")?)),
            1 => Ok(Space::Vtcm),
            2 => Ok(Space::PeerVtcm(self.var_u16("peer core")?)),
            k => self.err(format!("unknown memory space code {k}")),
        }
    }
    fn tile(&mut self) -> R<Tile> {
        let space = self.space()?;
        let offset = self.var()?;
        let dtype = self.dtype()?;
        let rank = self.count("tile rank")?;
        if rank > MAX_RANK {
            return self.err(format!("tile rank {rank} > {MAX_RANK}"));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(self.var()?);
        }
        Ok(Tile { space, offset, dtype, shape })
    }
    fn tiles(&mut self, what: &str) -> R<Vec<Tile>> {
        let n = self.count(what)?;
        let mut v = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            v.push(self.tile()?);
        }
        Ok(v)
    }
    fn attr_value(&mut self) -> R<AttrValue> {
        Ok(match self.u8()? {
            0 => AttrValue::Int(self.ivar()?),
            1 => AttrValue::Float(self.f64()?),
            2 => {
                let n = self.count("int list")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.ivar()?);
                }
                AttrValue::Ints(v)
            }
            3 => {
                let n = self.count("float list")?;
                let mut v = Vec::with_capacity(n.min(self.remaining() / 8));
                for _ in 0..n {
                    v.push(self.f64()?);
                }
                AttrValue::Floats(v)
            }
            4 => AttrValue::Str(self.str()?),
            t => return self.err(format!("unknown attribute type {t}")),
        })
    }

    pub fn instr(&mut self) -> R<Instr> {
        let start = self.pos;
        let opcode = self.u8()?;
        let ins = match opcode {
            1 => {
                let src = self.space()?;
                let src_offset = self.var()?;
                let dst = self.space()?;
                let dst_offset = self.var()?;
                let run_bytes = self.var()?;
                let ndims = self.u8()? as usize;
                if ndims > MAX_DMA_DIMS {
                    return self.err(format!("DMA with {ndims} dims; at most {MAX_DMA_DIMS}"));
                }
                let mut dims = Vec::with_capacity(ndims);
                for _ in 0..ndims {
                    dims.push(DmaDim { count: self.var()?, src_stride: self.var()?, dst_stride: self.var()? });
                }
                let flags = self.u8()?;
                if flags & !3 != 0 {
                    return self.err(format!("unknown DMA flags {flags:#x}"));
                }
                let multicast = if flags & 1 != 0 { Some(CoreMask(self.var()?)) } else { None };
                let tag = self.u8()?;
                let signal = if flags & 2 != 0 {
                    Some(SemSignal { sem: self.var_u16("semaphore")?, add: self.var_u32("semaphore increment")? })
                } else {
                    None
                };
                Instr::Dma(Dma {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    shape: DmaShape { run_bytes, dims },
                    multicast,
                    tag,
                    signal,
                })
            }
            2 => Instr::DmaWait { tag: self.u8()? },
            3 => {
                let op = self.str()?;
                if op.is_empty() {
                    return self.err("op with an empty name");
                }
                let dtype = self.dtype()?;
                let inputs = self.tiles("input")?;
                let outputs = self.tiles("output")?;
                let n = self.count("attribute")?;
                let mut attrs: Vec<(String, AttrValue)> = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let name = self.str()?;
                    if attrs.last().is_some_and(|(prev, _)| *prev >= name) {
                        return self.err(format!("attribute \"{name}\" out of order or repeated"));
                    }
                    let v = self.attr_value()?;
                    attrs.push((name, v));
                }
                Instr::Op(Op { op, dtype, inputs, outputs, attrs })
            }
            4 => Instr::SemSignal { sem: self.var_u16("semaphore")?, add: self.var_u32("increment")? },
            5 => Instr::SemWait { sem: self.var_u16("semaphore")?, at_least: self.var_u32("wait value")? },
            6 => Instr::Barrier { cores: CoreMask(self.var()?) },
            7 => Instr::Layer { name: self.str()? },
            8 => Instr::End,
            k => {
                self.pos = start;
                return self.err(format!("unknown opcode {k}"));
            }
        };
        Ok(ins)
    }

    pub fn core(&mut self) -> R<CoreProgram> {
        let n = self.count("instruction")?;
        let mut instrs = Vec::with_capacity(n);
        for _ in 0..n {
            instrs.push(self.instr()?);
        }
        if !self.at_end() {
            return self.err(format!("{} trailing bytes after the last instruction", self.remaining()));
        }
        Ok(CoreProgram { instrs, preload: Vec::new() })
    }

    /// Decodes the preload section of a program with `ncores` cores.
    pub fn preload(&mut self, ncores: usize) -> R<(u64, Vec<Vec<Dma>>)> {
        let size = self.var()?;
        let mut lists = Vec::with_capacity(ncores);
        for _ in 0..ncores {
            let n = self.count("preload DMA")?;
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                match self.instr()? {
                    Instr::Dma(d) => l.push(d),
                    other => return self.err(format!("preload holds a non-DMA instruction (opcode {})", other.opcode())),
                }
            }
            lists.push(l);
        }
        if !self.at_end() {
            return self.err(format!("{} trailing bytes after the preload lists", self.remaining()));
        }
        Ok((size, lists))
    }

    /// Decodes the header; returns the program with `num_cores` empty core slots.
    pub fn header(&mut self) -> R<(Program, usize)> {
        let major = self.u16_fixed()?;
        let minor = self.u16_fixed()?;
        if major != FORMAT_MAJOR {
            return Err(ProgramError::UnsupportedVersion { major, minor });
        }
        let num_cores = self.u16_fixed()?;
        let num_semaphores = self.u16_fixed()?;
        let mut vtcm = [0u8; 8];
        for b in &mut vtcm {
            *b = self.u8()?;
        }
        let vtcm_bytes = u64::from_le_bytes(vtcm);
        let device_version = self.str()?;
        let name = self.str()?;
        if num_cores == 0 || num_cores > 64 {
            return self.err(format!("core count {num_cores} outside 1..=64"));
        }
        let nb = self.count("buffer")?;
        let mut buffers = Vec::with_capacity(nb);
        for _ in 0..nb {
            let bname = self.str()?;
            let kc = self.u8()?;
            let kind = match BufferKind::from_code(kc) {
                Some(k) => k,
                None => return self.err(format!("unknown buffer kind {kc}")),
            };
            let size = self.var()?;
            let b = self.var()?;
            let binding = match b {
                0 => None,
                b => Some(u32::try_from(b - 1).or_else(|_| self.err(format!("binding {b} too large")))?),
            };
            buffers.push(Buffer { name: bname, kind, size, binding });
        }
        if !self.at_end() {
            return self.err("trailing bytes after the header");
        }
        let p = Program { device_version, name, vtcm_bytes, preload_bytes: 0, num_semaphores, buffers, cores: Vec::new() };
        Ok((p, num_cores as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varints_round_trip() {
        let mut st = StrTab::new();
        let mut e = Enc { out: Vec::new(), strs: &mut st };
        let vals = [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX];
        for v in vals {
            e.var(v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            e.ivar(v);
        }
        let out = e.out;
        let sr = StrRead { bytes: &st.bytes };
        let mut d = Dec { section: "t".into(), data: &out, pos: 0, strs: &sr };
        for v in vals {
            assert_eq!(d.var().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(d.ivar().unwrap(), v);
        }
        assert!(d.at_end());
        // An 11-byte varint is an error, not a panic or wrap-around.
        let bad = [0xffu8; 11];
        let mut d = Dec { section: "t".into(), data: &bad, pos: 0, strs: &sr };
        assert!(d.var().is_err());
    }

    proptest! {
        #[test]
        fn random_instruction_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                                strtab in proptest::collection::vec(any::<u8>(), 0..64)) {
            let sr = StrRead { bytes: &strtab };
            let mut d = Dec { section: ".qaic.core.0".into(), data: &bytes, pos: 0, strs: &sr };
            let _ = d.core();
            let mut d = Dec { section: ".qaic.header".into(), data: &bytes, pos: 0, strs: &sr };
            let _ = d.header();
            let mut d = Dec { section: ".qaic.core.0".into(), data: &bytes, pos: 0, strs: &sr };
            while !d.at_end() {
                if d.instr().is_err() { break; }
            }
        }
    }
}
