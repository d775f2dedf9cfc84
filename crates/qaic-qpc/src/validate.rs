//! Semantic checks of a structurally valid container (facts: qpc-format.md §5–§8,
//! networkdesc.md §9): mandatory segments, network descriptor, constants descriptor, CRCs.

use serde::Serialize;

use crate::constants::ConstantsDescriptor;
use crate::crc::{compute_crc, crc_target, stored_crc};
use crate::networkdesc::{DataType, Direction, IoBinding, NetworkDescriptor, TransformKind, NETWORK_DESC_MAJOR_VERSION, tensor_bytes};
use crate::reader::Qpc;
use crate::{CONSTANTS, CONSTANTS_DESC, MDP_META_INFO, NETWORK_DESC, NETWORK_ELF};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The QPC is not loadable or is corrupt.
    Error,
    /// Suspicious but loadable.
    Warning,
    /// For information (e.g. a check that is not supported yet).
    Info,
}

/// One result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Which check: `segments`, `networkdesc`, `constantsdesc`, `crc`, `metadata`.
    pub check: &'static str,
    /// What was found, naming the segment, field and values.
    pub message: String,
}

/// One network input or output, as the runtime will bind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoSummary {
    /// `input` or `output`.
    pub direction: &'static str,
    /// User-buffer index (inputs first, then outputs).
    pub buffer_index: usize,
    /// I/O name.
    pub name: String,
    /// Element type name (or the number if unknown).
    pub dtype: String,
    /// User tensor dims (inputs: `io_initial`, outputs: `io_transformed`).
    pub dims: Vec<i32>,
    /// User buffer size in bytes (runtime rule), if computable.
    pub bytes: Option<u64>,
    /// DMA buffer of the copy step.
    pub dma_buffer: Option<u32>,
    /// Byte offset in that DMA buffer.
    pub dma_offset: Option<u32>,
    /// Partial buffers allowed.
    pub partial: bool,
}

/// A CRC segment and its check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrcCheck {
    /// CRC segment name.
    pub segment: String,
    /// Stored value, if the segment holds exactly 4 bytes.
    pub stored: Option<u32>,
    /// Recomputed value, if what it covers exists.
    pub computed: Option<u32>,
}

/// Everything [`validate()`] found out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// All findings, in check order.
    pub findings: Vec<Finding>,
    /// `networkdesc.num_cores` ("Number of NSP required").
    pub num_cores: Option<u32>,
    /// `networkdesc.network_name`.
    pub network_name: Option<String>,
    /// `networkdesc.batch_size`.
    pub batch_size: Option<i32>,
    /// I/O bindings.
    pub io: Vec<IoSummary>,
    /// DMA buffers: (size, direction name).
    pub dma_buffers: Vec<(u32, String)>,
    /// The constants descriptor, if present and decodable.
    pub constants: Option<ConstantsDescriptor>,
    /// Every CRC segment checked.
    pub crcs: Vec<CrcCheck>,
}

impl Report {
    /// True if no finding is an error.
    pub fn is_ok(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The findings of one severity.
    pub fn with_severity(&self, s: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == s)
    }

    fn push(&mut self, severity: Severity, check: &'static str, message: impl Into<String>) {
        self.findings.push(Finding { severity, check, message: message.into() });
    }
}

/// Checks a container beyond its structure (which [`Qpc`] already guarantees):
///
/// 1. segments the runtime requires: `network.elf`, `networkdesc.bin`, `constantsdesc.bin`
///    (errors); `constants.bin` without `constantsdesc.bin` (warning);
/// 2. `networkdesc.bin` decodes; major version 9 (warning otherwise); `num_cores ≥ 1`; each I/O
///    has a copy step (last for inputs, first for outputs) with the right direction into an
///    existing DMA buffer of that direction, and non-partial tensors fit in it; every
///    `allowed_shapes` entry has one shape per I/O;
/// 3. `constantsdesc.bin` is 24 bytes with flags 0/1 and zero padding; static + dynamic equals
///    the `constants.bin` length (0 if absent) and the entry's `offset` equals the static size;
/// 4. every `*.crc` segment holds 4 bytes equal to the recomputed CRC (see [`crate::crc`]).
///
/// Checks of the descriptor against the ELF metadata and the hardware are not supported yet
/// (the `AICMetadata` layout is not specified); the report says so in an `Info` finding.
///
/// ```
/// # let bytes = qaic_qpc::QpcWriter::new().add_bytes("network.elf", vec![]).to_vec().unwrap();
/// let qpc = qaic_qpc::Qpc::from_bytes(&bytes)?;
/// let report = qaic_qpc::validate(&qpc);
/// assert!(!report.is_ok()); // networkdesc.bin and constantsdesc.bin are missing
/// # Ok::<(), qaic_qpc::QpcError>(())
/// ```
pub fn validate(qpc: &Qpc<'_>) -> Report {
    let mut r = Report::default();
    for name in [NETWORK_ELF, NETWORK_DESC, CONSTANTS_DESC] {
        if qpc.segment_info(name).is_none() {
            r.push(Severity::Error, "segments", format!("mandatory segment {name} is missing"));
        }
    }
    if qpc.segment_info(CONSTANTS).is_some() && qpc.segment_info(CONSTANTS_DESC).is_none() {
        r.push(Severity::Warning, "segments", "constants.bin is present without constantsdesc.bin");
    }
    if qpc.segment_info(MDP_META_INFO).is_some() {
        r.push(Severity::Info, "segments", "mdp_meta_info present: multi-device program (content not interpreted)");
    }
    if let Some(data) = qpc.segment(NETWORK_DESC) {
        match NetworkDescriptor::decode_bytes(data) {
            Ok(nd) => check_network_desc(&nd, &mut r),
            Err(e) => r.push(Severity::Error, "networkdesc", e.to_string()),
        }
    }
    check_constants(qpc, &mut r);
    check_crcs(qpc, &mut r);
    r.push(
        Severity::Info,
        "metadata",
        "descriptor-vs-metadata and metadata-vs-hardware checks are not supported yet (AICMetadata layout not specified)",
    );
    r
}

fn dtype_name(t: i32) -> String {
    DataType::try_from(t).map(|d| d.to_string()).unwrap_or_else(|_| format!("unknown({t})"))
}

fn check_network_desc(nd: &NetworkDescriptor, r: &mut Report) {
    r.num_cores = Some(nd.num_cores);
    r.network_name = Some(nd.network_name.clone());
    r.batch_size = Some(nd.batch_size);
    r.dma_buffers = nd
        .dma_buffers
        .iter()
        .map(|b| (b.size, Direction::try_from(b.dir).map(|d| d.to_string()).unwrap_or_else(|_| format!("unknown({})", b.dir))))
        .collect();
    if nd.major_version != NETWORK_DESC_MAJOR_VERSION {
        r.push(
            Severity::Warning,
            "networkdesc",
            format!("major_version = {}, this tool knows {NETWORK_DESC_MAJOR_VERSION}", nd.major_version),
        );
    }
    if nd.num_cores == 0 {
        r.push(Severity::Error, "networkdesc", "num_cores = 0: a network needs at least one NSP");
    }
    for (i, b) in nd.dma_buffers.iter().enumerate() {
        if Direction::try_from(b.dir).is_err() {
            r.push(Severity::Error, "networkdesc", format!("dma_buffers[{i}].dir = {} is not In (0) or Out (1)", b.dir));
        }
    }
    let n_in = nd.inputs.len();
    for (k, io) in nd.inputs.iter().chain(&nd.outputs).enumerate() {
        let is_input = k < n_in;
        let what = if is_input { format!("inputs[{k}] ({})", io.name) } else { format!("outputs[{}] ({})", k - n_in, io.name) };
        check_binding(nd, io, is_input, &what, r);
        let user = if is_input { io.io_initial.as_ref() } else { io.io_transformed.as_ref() };
        let copy = io.copy_step().and_then(|t| t.copy_dma_buffer.as_ref());
        r.io.push(IoSummary {
            direction: if is_input { "input" } else { "output" },
            buffer_index: k,
            name: io.name.clone(),
            dtype: dtype_name(user.map_or(0, |d| d.r#type)),
            dims: user.map(|d| d.dims.clone()).unwrap_or_default(),
            bytes: user.and_then(|d| d.byte_size()),
            dma_buffer: copy.map(|c| c.buffer_num),
            dma_offset: copy.map(|c| c.offset),
            partial: io.is_partial_allowed,
        });
    }
    let n_io = n_in + nd.outputs.len();
    for (i, s) in nd.allowed_shapes.iter().enumerate() {
        if s.shapes.len() != n_io {
            r.push(
                Severity::Error,
                "networkdesc",
                format!("allowed_shapes[{i}] has {} shapes, expected {n_io} (inputs + outputs)", s.shapes.len()),
            );
        }
    }
}

fn check_binding(nd: &NetworkDescriptor, io: &IoBinding, is_input: bool, what: &str, r: &mut Report) {
    let copy_kind = TransformKind::CopyDMABufferTransform as i32;
    let seq = &io.transformseq;
    for (j, t) in seq.iter().enumerate() {
        if TransformKind::try_from(t.kind).is_err() {
            r.push(Severity::Error, "networkdesc", format!("{what}: transformseq[{j}].kind = {} is unknown", t.kind));
        }
    }
    if seq.is_empty() {
        if is_input {
            r.push(Severity::Info, "networkdesc", format!("{what}: empty transformseq (input optimized away)"));
        } else {
            r.push(Severity::Error, "networkdesc", format!("{what}: empty transformseq, an output must start with CopyDMABufferTransform"));
        }
        return;
    }
    let (pos, expect_dir, place) = if is_input { (seq.len() - 1, Direction::In, "last") } else { (0, Direction::Out, "first") };
    let step = &seq[pos];
    if step.kind != copy_kind {
        r.push(Severity::Error, "networkdesc", format!("{what}: the {place} transform must be CopyDMABufferTransform, found kind {}", step.kind));
        return;
    }
    let copy = step.copy_dma_buffer.clone().unwrap_or_default();
    if copy.dir != expect_dir as i32 {
        r.push(Severity::Error, "networkdesc", format!("{what}: copy_dma_buffer.dir = {}, expected {expect_dir}", copy.dir));
    }
    let Some(buf) = nd.dma_buffers.get(copy.buffer_num as usize) else {
        r.push(
            Severity::Error,
            "networkdesc",
            format!("{what}: copy_dma_buffer.buffer_num = {} but there are {} dma_buffers", copy.buffer_num, nd.dma_buffers.len()),
        );
        return;
    };
    if buf.dir != expect_dir as i32 {
        r.push(Severity::Error, "networkdesc", format!("{what}: DMA buffer {} has dir {}, expected {expect_dir}", copy.buffer_num, buf.dir));
    }
    // Tensor moved by the copy: the step's own result for inputs, io_initial for outputs.
    let bytes = if is_input {
        tensor_bytes(step.r#type, &step.dims)
    } else {
        io.io_initial.as_ref().and_then(|d| d.byte_size())
    };
    match bytes {
        None => r.push(Severity::Error, "networkdesc", format!("{what}: tensor size not computable (unknown type or negative dim)")),
        Some(b) if !io.is_partial_allowed => {
            let end = b + copy.offset as u64;
            if end > buf.size as u64 {
                r.push(
                    Severity::Error,
                    "networkdesc",
                    format!("{what}: offset {} + {b} bytes = {end} exceeds DMA buffer {} size {}", copy.offset, copy.buffer_num, buf.size),
                );
            }
        }
        Some(_) => {}
    }
}

fn check_constants(qpc: &Qpc<'_>, r: &mut Report) {
    let constants = qpc.segment_info(CONSTANTS);
    let Some(raw) = qpc.segment(CONSTANTS_DESC) else { return };
    let d = match ConstantsDescriptor::parse(raw) {
        Ok(d) => d,
        Err(e) => return r.push(Severity::Error, "constantsdesc", e.to_string()),
    };
    r.constants = Some(d);
    if raw[18..].iter().any(|&b| b != 0) {
        r.push(Severity::Warning, "constantsdesc", "padding bytes 18..24 are not zero");
    }
    let len = constants.map_or(0, |s| s.len());
    if d.total() != Some(len) {
        r.push(
            Severity::Error,
            "constantsdesc",
            format!(
                "staticConstantsSize {} + dynamicConstantsSize {} != constants.bin size {len}{}",
                d.static_size,
                d.dynamic_size,
                if constants.is_none() { " (segment absent)" } else { "" }
            ),
        );
    }
    if let Some(s) = constants
        && s.static_size() != d.static_size {
            r.push(
                Severity::Error,
                "constantsdesc",
                format!("constants.bin entry offset (static part) = {} but staticConstantsSize = {}", s.static_size(), d.static_size),
            );
        }
}

fn check_crcs(qpc: &Qpc<'_>, r: &mut Report) {
    for seg in qpc.segments() {
        if crc_target(seg.name()).is_none() {
            continue;
        }
        let stored = stored_crc(qpc.data(seg));
        let computed = compute_crc(qpc, seg.name()).ok().flatten();
        match (stored, computed) {
            (None, _) => r.push(Severity::Error, "crc", format!("{}: holds {} bytes, a CRC segment holds 4", seg.name(), seg.len())),
            (_, None) => r.push(Severity::Error, "crc", format!("{}: what it covers ({:?}) is absent", seg.name(), crc_target(seg.name()))),
            (Some(s), Some(c)) if s != c => {
                r.push(Severity::Error, "crc", format!("{}: stored 0x{s:08X}, computed 0x{c:08X}: data corrupted", seg.name()))
            }
            _ => {}
        }
        r.crcs.push(CrcCheck { segment: seg.name().to_owned(), stored, computed });
    }
}
