//! The tile-level instruction set of the virtual AIC100.
//!
//! A [`Program`] holds one [`CoreProgram`] per core plus the DDR buffer table. Each core runs
//! its instructions in order; DMA instructions are asynchronous (they start on the core's DMA
//! engine and complete later; the engine runs one core's DMAs one at a time in issue order),
//! everything else completes before the next instruction issues,
//! except that the matrix and vector units are separate resources the simulator may overlap
//! when consecutive ops have no data dependence (same rule as the hardware's HMX/HVX threads).
//!
//! Memory: DDR buffers (inputs, outputs, the constants region, scratch) are named by index in
//! [`Program::buffers`]; each core owns a VTCM of [`Program::vtcm_bytes`] bytes. Addresses are
//! a [`Space`] plus a byte offset. Compute operands are dense row-major tiles ([`Tile`]) with
//! explicit shapes, normally in VTCM.

use qaic_tensor::DType;

use crate::ProgramError;

/// Major version of the program format; a reader refuses other majors.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor version of the program format; a reader accepts any minor of its major.
/// 1: optional `.qaic.preload` section (weights preloaded into VTCM once per load).
pub const FORMAT_MINOR: u16 = 1;
/// Name of the format, stored in the `.note.qaic` ELF note.
pub const FORMAT_NAME: &str = "qaic-rs tile program";
/// Most dimensions a [`DmaShape`] may have (outer dims after the contiguous run: 3 ⇒ 4-D).
pub const MAX_DMA_DIMS: usize = 3;
/// Highest rank of a compute operand.
pub const MAX_RANK: usize = 16;

/// What a DDR buffer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// Network input, filled by the host before the program starts.
    Input,
    /// Network output, read by the host after every core reached `End`.
    Output,
    /// Read-only constants (weights), loaded once from `constants.bin`; offsets are offsets in
    /// that file.
    Constants,
    /// Read/write scratch shared by all cores (activations that do not stay in VTCM).
    Scratch,
}

impl BufferKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            BufferKind::Input => 0,
            BufferKind::Output => 1,
            BufferKind::Constants => 2,
            BufferKind::Scratch => 3,
        }
    }
    pub(crate) fn from_code(c: u8) -> Option<BufferKind> {
        Some(match c {
            0 => BufferKind::Input,
            1 => BufferKind::Output,
            2 => BufferKind::Constants,
            3 => BufferKind::Scratch,
            _ => return None,
        })
    }
    /// Lower-case name for listings.
    pub fn name(self) -> &'static str {
        match self {
            BufferKind::Input => "input",
            BufferKind::Output => "output",
            BufferKind::Constants => "constants",
            BufferKind::Scratch => "scratch",
        }
    }
}

/// One DDR buffer of the program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Buffer {
    /// Name (the I/O tensor name for inputs/outputs, `constants`, `scratch`, ...).
    pub name: String,
    pub kind: BufferKind,
    /// Size in bytes.
    pub size: u64,
    /// For inputs/outputs: index of the binding in the network descriptor's I/O list.
    pub binding: Option<u32>,
}

/// A memory space an address lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// DDR buffer, by index into [`Program::buffers`].
    Ddr(u32),
    /// The executing core's own VTCM (for a multicast DMA destination: the VTCM of every
    /// receiving core, at the same offset).
    Vtcm,
    /// The VTCM of another core (by core index): destination of a VTCM → VTCM DMA.
    PeerVtcm(u16),
}

/// A set of cores as a bit mask (bit i = core i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CoreMask(pub u64);

impl CoreMask {
    /// The first `n` cores.
    pub fn first(n: u32) -> CoreMask {
        if n >= 64 { CoreMask(u64::MAX) } else { CoreMask((1u64 << n) - 1) }
    }
    /// Whether core `i` is in the set.
    pub fn contains(self, i: u32) -> bool {
        i < 64 && self.0 & (1u64 << i) != 0
    }
    /// Number of cores in the set.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
    /// Core indices in ascending order.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..64).filter(move |i| self.contains(*i))
    }
}

/// One outer dimension of a DMA descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DmaDim {
    /// Number of repetitions.
    pub count: u64,
    /// Byte distance between repetitions on the source side.
    pub src_stride: u64,
    /// Byte distance between repetitions on the destination side.
    pub dst_stride: u64,
}

/// Access pattern of a DMA: a contiguous run of `run_bytes`, repeated over up to
/// [`MAX_DMA_DIMS`] outer dimensions (innermost first). No dims = one contiguous copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DmaShape {
    pub run_bytes: u64,
    pub dims: Vec<DmaDim>,
}

impl DmaShape {
    /// One contiguous run.
    pub fn contiguous(len: u64) -> DmaShape {
        DmaShape { run_bytes: len, dims: Vec::new() }
    }
    /// A 2-D pattern: `rows` runs of `run_bytes`.
    pub fn rows(run_bytes: u64, rows: u64, src_stride: u64, dst_stride: u64) -> DmaShape {
        DmaShape { run_bytes, dims: vec![DmaDim { count: rows, src_stride, dst_stride }] }
    }
    /// Number of contiguous runs (product of the dim counts), saturating.
    pub fn runs(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, d| a.saturating_mul(d.count))
    }
    /// Bytes moved, saturating.
    pub fn total_bytes(&self) -> u64 {
        self.run_bytes.saturating_mul(self.runs())
    }
    /// One past the last source byte touched, relative to the source offset (`None` on overflow).
    pub fn src_extent(&self) -> Option<u64> {
        self.extent(|d| d.src_stride)
    }
    /// One past the last destination byte touched, relative to the destination offset.
    pub fn dst_extent(&self) -> Option<u64> {
        self.extent(|d| d.dst_stride)
    }
    fn extent(&self, stride: impl Fn(&DmaDim) -> u64) -> Option<u64> {
        if self.run_bytes == 0 || self.dims.iter().any(|d| d.count == 0) {
            return Some(0);
        }
        let mut end = self.run_bytes;
        for d in &self.dims {
            end = end.checked_add((d.count - 1).checked_mul(stride(d))?)?;
        }
        Some(end)
    }
}

/// A semaphore increment attached to a DMA, applied when the transfer has fully landed
/// (the hardware's post-sync semaphore op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SemSignal {
    pub sem: u16,
    pub add: u32,
}

/// A DMA descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dma {
    pub src: Space,
    pub src_offset: u64,
    pub dst: Space,
    pub dst_offset: u64,
    pub shape: DmaShape,
    /// Multicast receivers: the destination must be [`Space::Vtcm`] and the data lands at
    /// `dst_offset` in the VTCM of every core of the mask (the issuing core only if its bit is set).
    pub multicast: Option<CoreMask>,
    /// Completion group on the issuing core, waited on by [`Instr::DmaWait`]. A DMA is complete
    /// when its data has landed at every destination.
    pub tag: u8,
    /// Semaphore to increment once the data has landed (everywhere, for a multicast).
    pub signal: Option<SemSignal>,
}

/// A dense row-major operand of a compute op.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Normally [`Space::Vtcm`]; a DDR buffer is allowed (e.g. a gather table too large for
    /// VTCM) and is charged DDR bandwidth. [`Space::PeerVtcm`] is not allowed.
    pub space: Space,
    pub offset: u64,
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl Tile {
    /// A VTCM tile.
    pub fn vtcm(offset: u64, dtype: DType, shape: Vec<u64>) -> Tile {
        Tile { space: Space::Vtcm, offset, dtype, shape }
    }
    /// Number of elements (saturating).
    pub fn elements(&self) -> u64 {
        self.shape.iter().fold(1u64, |a, d| a.saturating_mul(*d))
    }
    /// Size in bytes (`None` on overflow).
    pub fn bytes(&self) -> Option<u64> {
        let mut n: u64 = 1;
        for d in &self.shape {
            n = n.checked_mul(*d)?;
        }
        n.checked_mul(self.dtype.bits() as u64).map(|b| b.div_ceil(8))
    }
}

/// Value of an op attribute (ONNX attribute types that tile ops need).
///
/// Floats compare by bit pattern (so `Eq`/`Hash` are lawful, NaN equals itself and the
/// comparison matches the serialised bytes).
#[derive(Debug, Clone)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Str(String),
}

impl PartialEq for AttrValue {
    fn eq(&self, other: &AttrValue) -> bool {
        use AttrValue::*;
        match (self, other) {
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Ints(a), Ints(b)) => a == b,
            (Floats(a), Floats(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            (Str(a), Str(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for AttrValue {}
impl std::hash::Hash for AttrValue {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match self {
            AttrValue::Int(v) => (0u8, v).hash(h),
            AttrValue::Float(v) => (1u8, v.to_bits()).hash(h),
            AttrValue::Ints(v) => (2u8, v).hash(h),
            AttrValue::Floats(v) => (3u8, v.iter().map(|f| f.to_bits()).collect::<Vec<_>>()).hash(h),
            AttrValue::Str(v) => (4u8, v).hash(h),
        }
    }
}

/// A compute instruction: one ONNX-style operator applied to dense tiles.
///
/// `op` is the operator's ONNX op type (`Conv`, `QLinearConv`, `MatMul`, `Add`, `Relu`,
/// `MaxPool`, `Softmax`, `LayerNormalization`, `Transpose`, `Concat`, `Gather`, `Cast`,
/// `QuantizeLinear`, ...) or a qaic-rs fused name; attributes use ONNX names and meanings, and
/// inputs/outputs are in ONNX order (quantisation scales and zero points are small tiles, as in
/// the ONNX `QLinear*` ops). Broadcasting follows numpy rules on the explicit tile shapes. The
/// simulator runs it with the shared CPU kernel of that operator, so a new operator needs a
/// kernel, not a format change. [`op_class`] says which unit executes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Op {
    pub op: String,
    /// Element type the op computes in (selects the matrix/vector rate).
    pub dtype: DType,
    pub inputs: Vec<Tile>,
    pub outputs: Vec<Tile>,
    /// Attributes, kept sorted by name by [`Op::set_attr`] and the decoder (deterministic bytes).
    pub attrs: Vec<(String, AttrValue)>,
}

impl Op {
    /// A new op without attributes.
    pub fn new(op: &str, dtype: DType, inputs: Vec<Tile>, outputs: Vec<Tile>) -> Op {
        Op { op: op.to_string(), dtype, inputs, outputs, attrs: Vec::new() }
    }
    /// Sets (or replaces) an attribute, keeping the list sorted by name.
    pub fn set_attr(&mut self, name: &str, value: AttrValue) {
        match self.attrs.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.attrs[i].1 = value,
            Err(i) => self.attrs.insert(i, (name.to_string(), value)),
        }
    }
    /// Builder form of [`Op::set_attr`].
    pub fn with_attr(mut self, name: &str, value: AttrValue) -> Op {
        self.set_attr(name, value);
        self
    }
    /// Looks an attribute up.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
    /// Integer attribute or default.
    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(AttrValue::Int(v)) => *v,
            _ => default,
        }
    }
}

/// Cost class of an operator: which unit runs it and how its work is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Convolution-like: tensor unit, MACs from output and weight shapes.
    Conv,
    /// Matrix product: tensor unit, MACs from operand shapes.
    MatMul,
    /// Simple element-wise or window op on the vector unit (one lane op per element touched).
    Vector,
    /// Vector op with transcendental per-element sequences (exp, tanh, erf, softmax, ...).
    Transcendental,
    /// Pure data movement inside VTCM on the vector unit (transpose, concat, slice, gather ...).
    Move,
}

/// Classifies an ONNX op type for the cost model. Unknown names are costed as simple vector ops.
pub fn op_class(op: &str) -> OpClass {
    match op {
        "Conv" | "ConvTranspose" | "QLinearConv" | "ConvInteger" | "QConvGlow" => OpClass::Conv,
        "MatMul" | "Gemm" | "QLinearMatMul" | "MatMulInteger" | "Einsum" | "QMatMulGlow" => OpClass::MatMul,
        "Exp" | "Log" | "Tanh" | "Sigmoid" | "Erf" | "Gelu" | "Softmax" | "LogSoftmax"
        | "Sqrt" | "Reciprocal" | "Div" | "Pow" | "Sin" | "Cos" | "Softplus" | "Elu" | "Selu"
        | "HardSwish" | "Mish" | "LayerNormalization" | "InstanceNormalization"
        | "SimplifiedLayerNormalization" | "RMSNormalization" | "GroupNormalization"
        | "LpNormalization" | "ReduceLogSumExp" | "ReduceL2" => OpClass::Transcendental,
        "Transpose" | "Concat" | "Slice" | "Gather" | "GatherElements" | "GatherND"
        | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Split" | "Pad" | "Expand" | "Tile"
        | "Identity" | "DepthToSpace" | "SpaceToDepth" | "ScatterND" | "ScatterElements"
        | "Copy" => OpClass::Move,
        _ => OpClass::Vector,
    }
}

/// One instruction of a core's stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Instr {
    /// Start an asynchronous DMA on this core's engine.
    Dma(Dma),
    /// Block until every DMA this core issued with `tag` has completed.
    DmaWait { tag: u8 },
    /// Run a compute op on tiles.
    Op(Op),
    /// Add `add` to device semaphore `sem` (counters start at 0 each inference and only grow).
    SemSignal { sem: u16, add: u32 },
    /// Block until device semaphore `sem` is ≥ `at_least` (the hardware's WAIT_GE; monotone
    /// counters make waits race-free without decrements).
    SemWait { sem: u16, at_least: u32 },
    /// Block until every core of `cores` has reached its matching barrier (the n-th barrier
    /// with a given mask on one core matches the n-th with that mask on the others). The mask
    /// must contain the executing core.
    Barrier { cores: CoreMask },
    /// Marks the start of a network layer (profiling name; charged the per-layer overhead).
    Layer { name: String },
    /// End of this core's program.
    End,
}

impl Instr {
    pub(crate) fn opcode(&self) -> u8 {
        match self {
            Instr::Dma(_) => 1,
            Instr::DmaWait { .. } => 2,
            Instr::Op(_) => 3,
            Instr::SemSignal { .. } => 4,
            Instr::SemWait { .. } => 5,
            Instr::Barrier { .. } => 6,
            Instr::Layer { .. } => 7,
            Instr::End => 8,
        }
    }
}

/// The instruction stream of one core.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CoreProgram {
    pub instrs: Vec<Instr>,
    /// Loads run once when the program is loaded (activated), not per inference: constants
    /// copied from the `Constants` buffer into this core's preloaded VTCM region
    /// `[vtcm_bytes, vtcm_bytes + preload_bytes)`, which instructions may read but never write
    /// (weights kept resident across inferences).
    pub preload: Vec<Dma>,
}

/// A complete program: the contents of the `network.elf` segment of a QPC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Program {
    /// Hardware version the program was generated for (`"2.0"`).
    pub device_version: String,
    /// Network name (informative).
    pub name: String,
    /// VTCM bytes each core uses (addresses must stay below this; ≤ the device's VTCM).
    pub vtcm_bytes: u64,
    /// Number of device semaphores used (indices `0..num_semaphores`).
    pub num_semaphores: u16,
    /// Bytes of each core's preloaded (read-only) VTCM region, right above `vtcm_bytes`;
    /// filled by the cores' [`CoreProgram::preload`] loads.
    pub preload_bytes: u64,
    /// DDR buffers.
    pub buffers: Vec<Buffer>,
    /// One program per core; core i runs `cores[i]`.
    pub cores: Vec<CoreProgram>,
}

impl Program {
    /// An empty program for `num_cores` cores.
    pub fn new(name: &str, device_version: &str, num_cores: usize, vtcm_bytes: u64) -> Program {
        Program {
            device_version: device_version.to_string(),
            name: name.to_string(),
            vtcm_bytes,
            preload_bytes: 0,
            num_semaphores: 0,
            buffers: Vec::new(),
            cores: vec![CoreProgram::default(); num_cores],
        }
    }

    /// Number of cores the program uses.
    pub fn num_cores(&self) -> usize {
        self.cores.len()
    }

    /// Checks the program is self-consistent: every address inside its buffer or VTCM, valid
    /// core, semaphore and buffer indices, multicast only into VTCM, barrier masks containing
    /// the executing core, every core ending with `End` (and only there). The first violation
    /// is reported with its core and instruction index.
    pub fn validate(&self) -> Result<(), ProgramError> {
        let ncores = self.cores.len();
        if ncores == 0 {
            return Err(ProgramError::Invalid("program has no cores".into()));
        }
        if ncores > 64 {
            return Err(ProgramError::Invalid(format!("program has {ncores} cores; at most 64 are addressable")));
        }
        let all = CoreMask::first(ncores as u32);
        for (c, core) in self.cores.iter().enumerate() {
            for (i, d) in core.preload.iter().enumerate() {
                self.check_preload(d).map_err(|m| ProgramError::Invalid(format!("core {c}: preload {i}: {m}")))?;
            }
            let err = |i: usize, msg: String| ProgramError::InvalidInstr { core: c, index: i, msg };
            match core.instrs.last() {
                Some(Instr::End) => {}
                _ => return Err(ProgramError::Invalid(format!("core {c}: program does not end with `end`"))),
            }
            for (i, ins) in core.instrs.iter().enumerate() {
                match ins {
                    Instr::End if i + 1 != core.instrs.len() => {
                        return Err(err(i, "`end` before the last instruction".into()));
                    }
                    Instr::Dma(d) => self.check_dma(c, d).map_err(|m| err(i, m))?,
                    Instr::Op(op) => {
                        if op.op.is_empty() {
                            return Err(err(i, "op with an empty name".into()));
                        }
                        for t in op.inputs.iter().chain(&op.outputs) {
                            self.check_tile(t).map_err(|m| err(i, format!("{}: {m}", op.op)))?;
                        }
                        for t in &op.outputs {
                            self.check_not_preloaded(t.space, t.offset, t.bytes()).map_err(|m| err(i, format!("{}: {m}", op.op)))?;
                        }
                        if op.outputs.iter().any(|t| self.is_constants(t.space)) {
                            return Err(err(i, format!("{} writes into the read-only constants buffer", op.op)));
                        }
                    }
                    Instr::SemSignal { sem, .. } | Instr::SemWait { sem, .. } if *sem >= self.num_semaphores => {
                        return Err(err(i, format!("semaphore {sem} ≥ num_semaphores {}", self.num_semaphores)));
                    }
                    Instr::Barrier { cores } => {
                        if !cores.contains(c as u32) {
                            return Err(err(i, format!("barrier mask {:#x} does not contain core {c}", cores.0)));
                        }
                        if cores.0 & !all.0 != 0 {
                            return Err(err(i, format!("barrier mask {:#x} names cores ≥ {ncores}", cores.0)));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// [`Program::validate`] plus the limits of a device: core count, VTCM size, semaphore
    /// count, hardware version, multicast mask width and alignment.
    pub fn validate_for(&self, device: &crate::DeviceModel) -> Result<(), ProgramError> {
        self.validate()?;
        let lim = |m: String| Err(ProgramError::ExceedsDevice(m));
        if self.device_version != device.hw_version {
            return lim(format!("program is for hardware version {}, device is {}", self.device_version, device.hw_version));
        }
        if self.cores.len() > device.num_cores as usize {
            return lim(format!("program needs {} cores, device has {}", self.cores.len(), device.num_cores));
        }
        if self.vtcm_bytes.saturating_add(self.preload_bytes) > device.vtcm_bytes {
            return lim(format!("program uses {} B of VTCM per core ({} preloaded), device has {}", self.vtcm_bytes.saturating_add(self.preload_bytes), self.preload_bytes, device.vtcm_bytes));
        }
        if self.num_semaphores as u32 > device.num_semaphores {
            return lim(format!("program uses {} semaphores, device has {}", self.num_semaphores, device.num_semaphores));
        }
        // A multicast goes through a table entry (MCID) of the issuing core: a window whose
        // base is `multicast_align`-aligned, a receiver mask and a size; the DMA writes at an
        // offset inside the window (UMD-MD). Each distinct (core, mask, aligned window start)
        // takes one entry, and the device has `multicast_ids` of them.
        let mut entries = std::collections::BTreeSet::new();
        for (c, core) in self.cores.iter().enumerate() {
            for (i, ins) in core.instrs.iter().enumerate() {
                if let Instr::Dma(Dma { multicast: Some(m), dst_offset, .. }) = ins {
                    if m.0 >> device.multicast_mask_bits.min(63) != 0 {
                        return lim(format!("core {c} [{i}]: multicast mask {:#x} wider than {} bits", m.0, device.multicast_mask_bits));
                    }
                    entries.insert((c, m.0, dst_offset / device.multicast_align.max(1)));
                }
            }
        }
        if entries.len() as u64 > device.multicast_ids as u64 {
            return lim(format!("program needs {} multicast table entries, device has {}", entries.len(), device.multicast_ids));
        }
        Ok(())
    }

    fn space_size(&self, s: Space) -> Result<u64, String> {
        match s {
            Space::Ddr(b) => self
                .buffers
                .get(b as usize)
                .map(|b| b.size)
                .ok_or_else(|| format!("DDR buffer {b} does not exist ({} buffers)", self.buffers.len())),
            Space::Vtcm => Ok(self.vtcm_bytes.saturating_add(self.preload_bytes)),
            Space::PeerVtcm(c) => {
                if (c as usize) < self.cores.len() {
                    Ok(self.vtcm_bytes.saturating_add(self.preload_bytes))
                } else {
                    Err(format!("peer core {c} does not exist ({} cores)", self.cores.len()))
                }
            }
        }
    }

    fn check_range(&self, s: Space, offset: u64, extent: Option<u64>, what: &str) -> Result<(), String> {
        let size = self.space_size(s)?;
        let end = extent.and_then(|e| offset.checked_add(e));
        match end {
            Some(end) if end <= size => Ok(()),
            _ => {
                let ext = extent.map_or("overflowing".to_string(), |e| format!("of {e} B"));
                Err(format!("{what} range {}+{offset:#x} {ext} exceeds its size {size} B", space_name(self, s)))
            }
        }
    }

    fn check_dma(&self, core: usize, d: &Dma) -> Result<(), String> {
        if d.shape.dims.len() > MAX_DMA_DIMS {
            return Err(format!("DMA has {} dims; at most {MAX_DMA_DIMS}", d.shape.dims.len()));
        }
        if d.dst == Space::PeerVtcm(core as u16) {
            return Err("peer VTCM destination is the issuing core itself; use vtcm".into());
        }
        if let Some(m) = d.multicast {
            if d.dst != Space::Vtcm {
                return Err("multicast destination must be vtcm".into());
            }
            if m.0 == 0 || m.0 & !CoreMask::first(self.cores.len() as u32).0 != 0 {
                return Err(format!("multicast mask {:#x} is empty or names cores ≥ {}", m.0, self.cores.len()));
            }
        }
        if let Some(s) = d.signal
            && s.sem >= self.num_semaphores
        {
            return Err(format!("semaphore {} ≥ num_semaphores {}", s.sem, self.num_semaphores));
        }
        if self.is_constants(d.dst) {
            return Err("DMA writes into the read-only constants buffer".into());
        }
        self.check_range(d.src, d.src_offset, d.shape.src_extent(), "source")?;
        self.check_range(d.dst, d.dst_offset, d.shape.dst_extent(), "destination")?;
        self.check_not_preloaded(d.dst, d.dst_offset, d.shape.dst_extent())
    }

    /// Writes (op outputs, DMA destinations) must stay below `vtcm_bytes`: the preloaded
    /// region above it holds the same bytes for every inference.
    fn check_not_preloaded(&self, s: Space, offset: u64, extent: Option<u64>) -> Result<(), String> {
        if self.preload_bytes == 0 || !matches!(s, Space::Vtcm | Space::PeerVtcm(_)) {
            return Ok(());
        }
        match extent.and_then(|e| offset.checked_add(e)) {
            Some(end) if end <= self.vtcm_bytes => Ok(()),
            _ => Err(format!("writes {}+{offset:#x} inside the preloaded region (from {:#x})", space_name(self, s), self.vtcm_bytes)),
        }
    }

    /// A preload: a plain copy from the constants buffer into the preloaded VTCM region.
    fn check_preload(&self, d: &Dma) -> Result<(), String> {
        if !self.is_constants(d.src) || d.dst != Space::Vtcm || d.multicast.is_some() || d.signal.is_some() {
            return Err("must copy from the constants buffer into vtcm, without multicast or semaphore".into());
        }
        if d.shape.dims.len() > MAX_DMA_DIMS {
            return Err(format!("DMA has {} dims; at most {MAX_DMA_DIMS}", d.shape.dims.len()));
        }
        self.check_range(d.src, d.src_offset, d.shape.src_extent(), "source")?;
        let end = d.shape.dst_extent().and_then(|e| d.dst_offset.checked_add(e));
        match end {
            Some(end) if d.dst_offset >= self.vtcm_bytes && end <= self.vtcm_bytes.saturating_add(self.preload_bytes) => Ok(()),
            _ => Err(format!("destination vtcm+{:#x} outside the preloaded region [{:#x}, {:#x})", d.dst_offset, self.vtcm_bytes, self.vtcm_bytes.saturating_add(self.preload_bytes))),
        }
    }

    fn is_constants(&self, s: Space) -> bool {
        matches!(s, Space::Ddr(b) if self.buffers.get(b as usize).is_some_and(|b| b.kind == BufferKind::Constants))
    }

    fn check_tile(&self, t: &Tile) -> Result<(), String> {
        if matches!(t.space, Space::PeerVtcm(_)) {
            return Err("compute operands cannot live in another core's VTCM".into());
        }
        if t.shape.len() > MAX_RANK {
            return Err(format!("tile rank {} > {MAX_RANK}", t.shape.len()));
        }
        if t.dtype == DType::String {
            return Err("string tiles are not supported".into());
        }
        self.check_range(t.space, t.offset, t.bytes(), "tile")
    }
}

/// Short name of a space for listings and messages: `vtcm`, `vtcm@3`, or the DDR buffer's name.
pub(crate) fn space_name(p: &Program, s: Space) -> String {
    match s {
        Space::Vtcm => "vtcm".into(),
        Space::PeerVtcm(c) => format!("vtcm@{c}"),
        Space::Ddr(b) => match p.buffers.get(b as usize) {
            Some(buf) => format!("{}:{}", buf.kind.name(), buf.name),
            None => format!("ddr#{b}"),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use proptest::prelude::*;

    /// A small two-core program using every instruction kind.
    pub(crate) fn sample() -> Program {
        let mut p = Program::new("tiny", "2.0", 2, 1 << 20);
        p.num_semaphores = 2;
        p.buffers = vec![
            Buffer { name: "x".into(), kind: BufferKind::Input, size: 4096, binding: Some(0) },
            Buffer { name: "y".into(), kind: BufferKind::Output, size: 4096, binding: Some(1) },
            Buffer { name: "constants".into(), kind: BufferKind::Constants, size: 8192, binding: None },
        ];
        let conv = Op::new(
            "Conv",
            DType::F16,
            vec![
                Tile::vtcm(0, DType::F16, vec![1, 4, 8, 8]),
                Tile::vtcm(8192, DType::F16, vec![8, 4, 3, 3]),
            ],
            vec![Tile::vtcm(16384, DType::F16, vec![1, 8, 8, 8])],
        )
        .with_attr("pads", AttrValue::Ints(vec![1, 1, 1, 1]))
        .with_attr("strides", AttrValue::Ints(vec![1, 1]))
        .with_attr("group", AttrValue::Int(1));
        p.cores[0].instrs = vec![
            Instr::Layer { name: "conv1".into() },
            Instr::Dma(Dma {
                src: Space::Ddr(2),
                src_offset: 0,
                dst: Space::Vtcm,
                dst_offset: 8192,
                shape: DmaShape::contiguous(576),
                multicast: Some(CoreMask(0b11)),
                tag: 0,
                signal: Some(SemSignal { sem: 0, add: 1 }),
            }),
            Instr::Dma(Dma {
                src: Space::Ddr(0),
                src_offset: 0,
                dst: Space::Vtcm,
                dst_offset: 0,
                shape: DmaShape::rows(16, 32, 16, 16),
                multicast: None,
                tag: 1,
                signal: None,
            }),
            Instr::DmaWait { tag: 1 },
            Instr::SemWait { sem: 0, at_least: 1 },
            Instr::Op(conv),
            Instr::Dma(Dma {
                src: Space::Vtcm,
                src_offset: 16384,
                dst: Space::PeerVtcm(1),
                dst_offset: 0,
                shape: DmaShape::contiguous(1024),
                multicast: None,
                tag: 2,
                signal: Some(SemSignal { sem: 1, add: 1 }),
            }),
            Instr::DmaWait { tag: 2 },
            Instr::Barrier { cores: CoreMask(0b11) },
            Instr::End,
        ];
        let relu = Op::new(
            "Relu",
            DType::F16,
            vec![Tile::vtcm(0, DType::F16, vec![1, 8, 8, 8])],
            vec![Tile::vtcm(1024, DType::F16, vec![1, 8, 8, 8])],
        );
        p.cores[1].instrs = vec![
            Instr::SemWait { sem: 1, at_least: 1 },
            Instr::Op(relu),
            Instr::SemSignal { sem: 0, add: 0 },
            Instr::Dma(Dma {
                src: Space::Vtcm,
                src_offset: 1024,
                dst: Space::Ddr(1),
                dst_offset: 0,
                shape: DmaShape::contiguous(1024),
                multicast: None,
                tag: 0,
                signal: None,
            }),
            Instr::DmaWait { tag: 0 },
            Instr::Barrier { cores: CoreMask(0b11) },
            Instr::End,
        ];
        p
    }

    fn arb_dtype() -> impl Strategy<Value = DType> {
        prop::sample::select(vec![DType::F32, DType::F16, DType::BF16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool])
    }

    fn arb_tile(nbuf: u32) -> impl Strategy<Value = Tile> {
        (prop::option::of(0..nbuf), 0u64..1 << 20, arb_dtype(), prop::collection::vec(0u64..16, 0..5)).prop_map(
            |(b, offset, dtype, shape)| Tile { space: b.map_or(Space::Vtcm, Space::Ddr), offset, dtype, shape },
        )
    }

    fn arb_attr() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            any::<i64>().prop_map(AttrValue::Int),
            any::<f64>().prop_map(AttrValue::Float),
            prop::collection::vec(any::<i64>(), 0..6).prop_map(AttrValue::Ints),
            prop::collection::vec(any::<f64>(), 0..6).prop_map(AttrValue::Floats),
            "[a-z]{0,8}".prop_map(AttrValue::Str),
        ]
    }

    fn arb_op(nbuf: u32) -> impl Strategy<Value = Op> {
        (
            "[A-Z][a-zA-Z]{0,12}",
            arb_dtype(),
            prop::collection::vec(arb_tile(nbuf), 0..4),
            prop::collection::vec(arb_tile(nbuf.min(2)), 0..3),
            prop::collection::vec(("[a-z_]{1,8}", arb_attr()), 0..5),
        )
            .prop_map(|(name, dtype, inputs, outputs, attrs)| {
                let mut op = Op::new(&name, dtype, inputs, outputs);
                for (n, v) in attrs {
                    op.set_attr(&n, v);
                }
                op
            })
    }

    /// Raw material of one instruction; fixed up per core so the program validates.
    #[derive(Debug, Clone)]
    enum Raw {
        Dma { src: Option<u32>, dst: u8, dbuf: u32, so: u64, doff: u64, shape: DmaShape, mcast: Option<u64>, tag: u8, signal: Option<(u16, u32)> },
        Wait(u8),
        Op(Op),
        Signal(u16, u32),
        SemWait(u16, u32),
        Barrier,
        Layer(String),
    }

    fn arb_raw(nbuf: u32) -> impl Strategy<Value = Raw> {
        let dims = prop::collection::vec((1u64..8, 0u64..4096, 0u64..4096).prop_map(|(count, src_stride, dst_stride)| DmaDim { count, src_stride, dst_stride }), 0..=MAX_DMA_DIMS);
        prop_oneof![
            (prop::option::of(0..nbuf), 0u8..3, 0..nbuf, 0u64..1 << 20, 0u64..1 << 20, (0u64..4096, dims), prop::option::of(1u64..16), any::<u8>(), prop::option::of((0u16..16, any::<u32>())))
                .prop_map(|(src, dst, dbuf, so, doff, (run_bytes, dims), mcast, tag, signal)| Raw::Dma { src, dst, dbuf, so, doff, shape: DmaShape { run_bytes, dims }, mcast, tag, signal }),
            any::<u8>().prop_map(Raw::Wait),
            arb_op(nbuf).prop_map(Raw::Op),
            (0u16..16, any::<u32>()).prop_map(|(s, a)| Raw::Signal(s, a)),
            (0u16..16, any::<u32>()).prop_map(|(s, a)| Raw::SemWait(s, a)),
            Just(Raw::Barrier),
            "[a-z0-9_/.]{0,12}".prop_map(Raw::Layer),
        ]
    }

    /// Arbitrary valid programs (1–4 cores, buffers 0 and 1 writable, 2 read-only constants).
    pub(crate) fn arb_program() -> impl Strategy<Value = Program> {
        (1usize..5, "[a-z]{0,10}", prop::collection::vec(prop::collection::vec(arb_raw(3), 0..12), 4)).prop_map(|(n, name, raws)| {
            let mut p = Program::new(&name, "2.0", n, 1 << 40);
            p.num_semaphores = 16;
            p.buffers = vec![
                Buffer { name: "in".into(), kind: BufferKind::Input, size: 1 << 40, binding: Some(0) },
                Buffer { name: "out".into(), kind: BufferKind::Output, size: 1 << 40, binding: Some(1) },
                Buffer { name: "constants".into(), kind: BufferKind::Constants, size: 1 << 40, binding: None },
            ];
            let all = CoreMask::first(n as u32);
            for (c, raw) in raws.iter().enumerate().take(n) {
                let mut v = Vec::new();
                for r in raw {
                    v.push(match r.clone() {
                        Raw::Dma { src, dst, dbuf, so, doff, shape, mcast, tag, signal } => {
                            let mut dst = match dst {
                                0 if dbuf < 2 => Space::Ddr(dbuf),
                                2 if n > 1 => Space::PeerVtcm(((c + 1) % n) as u16),
                                _ => Space::Vtcm,
                            };
                            let multicast = mcast.map(|m| CoreMask((m & all.0).max(1)));
                            if multicast.is_some() {
                                dst = Space::Vtcm;
                            }
                            Instr::Dma(Dma {
                                src: src.map_or(Space::Vtcm, Space::Ddr),
                                src_offset: so,
                                dst,
                                dst_offset: doff,
                                shape,
                                multicast,
                                tag,
                                signal: signal.map(|(sem, add)| SemSignal { sem, add }),
                            })
                        }
                        Raw::Wait(t) => Instr::DmaWait { tag: t },
                        Raw::Op(op) => Instr::Op(op),
                        Raw::Signal(sem, add) => Instr::SemSignal { sem, add },
                        Raw::SemWait(sem, at_least) => Instr::SemWait { sem, at_least },
                        Raw::Barrier => Instr::Barrier { cores: all },
                        Raw::Layer(name) => Instr::Layer { name },
                    });
                }
                v.push(Instr::End);
                p.cores[c].instrs = v;
            }
            p
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::tests_support::sample;

    #[test]
    fn sample_is_valid() {
        let p = sample();
        p.validate().unwrap();
        p.validate_for(&crate::DeviceModel::aic100(crate::Variant::Pro16)).unwrap();
    }

    #[test]
    fn validation_reports_problems() {
        let mut p = sample();
        if let Instr::Dma(d) = &mut p.cores[0].instrs[2] {
            d.shape = DmaShape::rows(16, 300, 16, 16);
        }
        let e = p.validate().unwrap_err().to_string();
        assert_eq!(e, "invalid program: core 0 [2]: source range input:x+0x0 of 4800 B exceeds its size 4096 B");

        let mut p = sample();
        p.cores[1].instrs.pop();
        assert!(p.validate().unwrap_err().to_string().contains("does not end"));

        let mut p = sample();
        p.cores[1].instrs.insert(0, Instr::Barrier { cores: CoreMask(0b01) });
        assert!(p.validate().unwrap_err().to_string().contains("does not contain core 1"));

        let mut p = sample();
        p.cores[1].instrs.insert(0, Instr::SemWait { sem: 5, at_least: 1 });
        assert!(p.validate().is_err());

        let mut p = sample();
        if let Instr::Dma(d) = &mut p.cores[0].instrs[1] {
            d.dst_offset = 100;
        }
        // A multicast may write anywhere inside its table entry's 4 KiB-aligned window...
        p.validate().unwrap();
        p.validate_for(&crate::DeviceModel::aic100(crate::Variant::Pro16)).unwrap();
        // ...but each distinct window takes one of the device's table entries.
        let mut dev = crate::DeviceModel::aic100(crate::Variant::Pro16);
        dev.multicast_ids = 0;
        let e = p.validate_for(&dev).unwrap_err();
        assert!(e.to_string().contains("multicast table entries"), "{e}");

        let mut p = sample();
        p.vtcm_bytes = 16 << 20;
        assert!(p.validate_for(&crate::DeviceModel::aic100(crate::Variant::Pro16)).is_err());
    }

    /// The pattern codegen uses to split a 3 × 3 conv along output rows over 4 cores: weights
    /// multicast once, halo'd input row bands by 3-D DMA, per-band pads, strided output DMA.
    #[test]
    fn conv_row_split_across_cores_is_expressible() {
        let (c_in, c_out, h, w, e) = (16u64, 32u64, 32u64, 32u64, 2u64);
        let ncores = 4u64;
        let mut p = Program::new("conv", "2.0", ncores as usize, 1 << 20);
        p.num_semaphores = 1;
        p.buffers = vec![
            Buffer { name: "x".into(), kind: BufferKind::Input, size: c_in * h * w * e, binding: Some(0) },
            Buffer { name: "y".into(), kind: BufferKind::Output, size: c_out * h * w * e, binding: Some(1) },
            Buffer { name: "constants".into(), kind: BufferKind::Constants, size: c_out * c_in * 9 * e + c_out * e, binding: None },
        ];
        let wbytes = c_out * c_in * 9 * e;
        let rows = h / ncores;
        let mut written = Vec::new();
        for i in 0..ncores {
            let mut v = Vec::new();
            if i == 0 {
                v.push(Instr::Dma(Dma {
                    src: Space::Ddr(2),
                    src_offset: 0,
                    dst: Space::Vtcm,
                    dst_offset: 0,
                    shape: DmaShape::contiguous(wbytes + c_out * e),
                    multicast: Some(CoreMask::first(ncores as u32)),
                    tag: 0,
                    signal: Some(SemSignal { sem: 0, add: 1 }),
                }));
            }
            let (r0, r1) = (i * rows, (i + 1) * rows);
            let (in0, in1) = (r0.saturating_sub(1), (r1 + 1).min(h));
            let in_rows = in1 - in0;
            let x_at = 16384;
            v.push(Instr::Dma(Dma {
                src: Space::Ddr(0),
                src_offset: in0 * w * e,
                dst: Space::Vtcm,
                dst_offset: x_at,
                shape: DmaShape::rows(in_rows * w * e, c_in, h * w * e, in_rows * w * e),
                multicast: None,
                tag: 1,
                signal: None,
            }));
            v.push(Instr::DmaWait { tag: 1 });
            v.push(Instr::SemWait { sem: 0, at_least: 1 });
            let (top, bottom) = ((i == 0) as i64, (i == ncores - 1) as i64);
            let y_at = 65536;
            v.push(Instr::Op(
                Op::new(
                    "Conv",
                    DType::F16,
                    vec![
                        Tile::vtcm(x_at, DType::F16, vec![1, c_in, in_rows, w]),
                        Tile::vtcm(0, DType::F16, vec![c_out, c_in, 3, 3]),
                        Tile::vtcm(wbytes, DType::F16, vec![c_out]),
                    ],
                    vec![Tile::vtcm(y_at, DType::F16, vec![1, c_out, rows, w])],
                )
                .with_attr("kernel_shape", AttrValue::Ints(vec![3, 3]))
                .with_attr("pads", AttrValue::Ints(vec![top, 1, bottom, 1]))
                .with_attr("strides", AttrValue::Ints(vec![1, 1])),
            ));
            // output rows of band i: in_rows + top + bottom − 2 must equal the band height
            assert_eq!(in_rows as i64 + top + bottom - 2, rows as i64);
            let out = DmaShape::rows(rows * w * e, c_out, rows * w * e, h * w * e);
            for ch in 0..c_out {
                let start = r0 * w * e + ch * h * w * e;
                written.push(start..start + out.run_bytes);
            }
            v.push(Instr::Dma(Dma {
                src: Space::Vtcm,
                src_offset: y_at,
                dst: Space::Ddr(1),
                dst_offset: r0 * w * e,
                shape: out,
                multicast: None,
                tag: 2,
                signal: None,
            }));
            v.push(Instr::DmaWait { tag: 2 });
            v.push(Instr::Barrier { cores: CoreMask::first(ncores as u32) });
            v.push(Instr::End);
            p.cores[i as usize].instrs = v;
        }
        let dev = crate::DeviceModel::aic100(crate::Variant::Pro16);
        p.validate_for(&dev).unwrap();
        // The output bands tile the output buffer exactly once.
        written.sort_by_key(|r| r.start);
        assert_eq!(written.first().map(|r| r.start), Some(0));
        assert!(written.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(written.last().map(|r| r.end), Some(c_out * h * w * e));
        // Work is split evenly and adds up to the layer's MACs.
        let costs = dev.core_costs(&p);
        assert_eq!(costs.iter().map(|c| c.macs).sum::<u64>(), c_out * h * w * c_in * 9);
        assert!(costs.iter().all(|c| c.macs == costs[0].macs));
        assert_eq!(Program::from_elf(&p.to_elf()).unwrap(), p);
    }

    #[test]
    fn dma_shape_extents() {
        let s = DmaShape { run_bytes: 8, dims: vec![DmaDim { count: 3, src_stride: 100, dst_stride: 8 }, DmaDim { count: 2, src_stride: 1000, dst_stride: 24 }] };
        assert_eq!(s.total_bytes(), 48);
        assert_eq!(s.src_extent(), Some(8 + 200 + 1000));
        assert_eq!(s.dst_extent(), Some(48));
        let big = DmaShape::rows(8, u64::MAX, u64::MAX, 1);
        assert_eq!(big.src_extent(), None);
        assert_eq!(op_class("QLinearConv"), OpClass::Conv);
        assert_eq!(op_class("Softmax"), OpClass::Transcendental);
        assert_eq!(op_class("SomethingNew"), OpClass::Vector);
    }
}
