//! QPC assembly: a compiled program, its constants and I/O bindings → `programqpc.bin`.

use std::path::Path;

use prost::Message;
use qaic_device::{BufferKind, Program};
use qaic_qpc::networkdesc::transform::CopyDmaBuffer;
use qaic_qpc::{
    ConstantsDescriptor, DataType, Direction, DmaBuffer, IoBinding, IoDescriptor, NetworkDescLayout, NetworkDescriptor, QpcWriter,
    Transform, TransformKind,
};
use qaic_tensor::DType;

use crate::RuntimeError;

/// One network input or output of a compiled program, as the QPC's `networkdesc.bin`
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    /// Binding name (the graph's tensor name).
    pub name: String,
    /// Input (host → device) or output.
    pub is_input: bool,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Index of the program's DDR buffer holding the tensor (its `binding` is the DMA buffer
    /// number in the descriptor).
    pub buffer: u32,
    /// Custom I/O converted on the host (`-host-preproc`): the user's precision and layout;
    /// `None` when the user's tensor is the network's.
    pub user: Option<crate::transform::UserIo>,
}

/// Runtime behaviour compiled into a QPC's `networkdesc.bin` (qaic-exec options that the
/// vendor also fixes at compile time and the runtime then honours, with or without qaic-exec).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QpcOptions {
    /// `-io-crc` with `-io-crc-stride`: `crc_info` gets one entry per I/O DMA buffer and the
    /// runtime checks the CRC on both sides of every transfer ([`crate::IoCrc`]).
    pub io_crc_stride: Option<u32>,
    /// Device statistics (`-stats-level`, `-stats-batchsize`, `-ddr-stats`, PMU events,
    /// `-aic-profiling-type`): the descriptor's `stats` message.
    pub stats: Option<crate::DeviceStatsConfig>,
}

/// Everything [`qpc_writer`] puts into a QPC.
#[derive(Debug, Clone, Copy)]
pub struct QpcContents<'a> {
    pub program: &'a Program,
    /// The program's `Constants` buffer contents (`constants.bin`).
    pub constants: &'a [u8],
    /// Inputs, then outputs.
    pub io: &'a [IoSpec],
    /// Compiled batch size (`networkdesc.batch_size`, printed as `BatchSize` in the stats).
    pub batch_size: u32,
    /// I/O CRC and device statistics settings.
    pub options: &'a QpcOptions,
}

/// `networkdesc.bin` data type of an element type; `None` if the descriptor cannot express it.
pub fn data_type(d: DType) -> Option<DataType> {
    Some(match d {
        DType::F32 => DataType::FloatTy,
        DType::F16 => DataType::Float16Ty,
        DType::I8 => DataType::Int8Ty,
        DType::U8 => DataType::UInt8QTy,
        DType::I16 => DataType::Int16QTy,
        DType::I32 => DataType::Int32ITy,
        DType::I64 => DataType::Int64ITy,
        _ => return None,
    })
}

/// Element type of a `networkdesc.bin` data type.
pub fn dtype_of(t: DataType) -> DType {
    match t {
        DataType::FloatTy => DType::F32,
        DataType::Float16Ty => DType::F16,
        DataType::Int8QTy | DataType::Int8Ty => DType::I8,
        DataType::UInt8QTy => DType::U8,
        DataType::Int16QTy => DType::I16,
        DataType::Int32QTy | DataType::Int32ITy => DType::I32,
        DataType::Int64ITy => DType::I64,
    }
}

/// The network descriptor of `c`: one DMA buffer per I/O (number = the program buffer's
/// binding), each I/O a single `CopyDMABuffer` step (flat layout, no host conversion),
/// `num_cores` = the program's core count.
pub fn network_descriptor(c: &QpcContents<'_>) -> Result<NetworkDescriptor, RuntimeError> {
    let p = c.program;
    let n_io = p.buffers.iter().filter(|b| b.binding.is_some()).count();
    let mut nd = NetworkDescriptor {
        major_version: qaic_qpc::networkdesc::NETWORK_DESC_MAJOR_VERSION,
        minor_version: qaic_qpc::networkdesc::NETWORK_DESC_MINOR_VERSION,
        network_name: p.name.clone(),
        num_cores: p.cores.len() as u32,
        num_threads: 6,
        num_hvx_threads: 4,
        batch_size: c.batch_size.max(1) as i32,
        dma_buffers: vec![DmaBuffer::default(); n_io],
        ..Default::default()
    };
    let bad = |io: &IoSpec, msg: String| RuntimeError::Assemble(format!("{} `{}`: {msg}", if io.is_input { "input" } else { "output" }, io.name));
    for io in c.io {
        let buf = p.buffers.get(io.buffer as usize).ok_or_else(|| bad(io, format!("buffer {} is not in the program", io.buffer)))?;
        let want = if io.is_input { BufferKind::Input } else { BufferKind::Output };
        if buf.kind != want {
            return Err(bad(io, format!("program buffer `{}` is a {:?} buffer", buf.name, buf.kind)));
        }
        let num = buf.binding.ok_or_else(|| bad(io, format!("program buffer `{}` has no binding", buf.name)))?;
        let ty = data_type(io.dtype).ok_or_else(|| bad(io, format!("element type {} has no networkdesc data type", io.dtype.name())))?;
        let dims: Vec<i32> = io.shape.iter().map(|&d| i32::try_from(d)).collect::<Result<_, _>>().map_err(|_| bad(io, "dimension exceeds i32".into()))?;
        let size = qaic_qpc::tensor_bytes(ty as i32, &dims).unwrap_or(u64::MAX);
        if size != buf.size {
            return Err(bad(io, format!("{size} bytes by its shape, program buffer holds {}", buf.size)));
        }
        let dir = if io.is_input { Direction::In } else { Direction::Out };
        let slot = nd.dma_buffers.get_mut(num as usize).ok_or_else(|| bad(io, format!("binding {num} out of range")))?;
        *slot = DmaBuffer { size: u32::try_from(buf.size).map_err(|_| bad(io, "larger than 4 GiB".into()))?, dir: dir as i32 };
        let desc = IoDescriptor { r#type: ty as i32, qscale: 1.0, qoffset: 0, dims: dims.clone(), layout: NetworkDescLayout::FlatNXYD as i32 };
        let copy = Transform {
            kind: TransformKind::CopyDMABufferTransform as i32,
            r#type: ty as i32,
            scale: 1.0,
            dims,
            layout: NetworkDescLayout::FlatNXYD as i32,
            copy_dma_buffer: Some(CopyDmaBuffer { dir: dir as i32, offset: 0, buffer_num: num }),
            ..Default::default()
        };
        let mut b = IoBinding { name: io.name.clone(), io_initial: Some(desc.clone()), io_transformed: Some(desc.clone()), transformseq: vec![copy], is_partial_allowed: false, align: 64 };
        if let Some(user) = &io.user {
            let dims_u: Vec<usize> = io.shape.clone();
            let (user_desc, steps) = crate::transform::user_steps(io.is_input, ty, &dims_u, user).map_err(|m| bad(io, m))?;
            if io.is_input {
                b.io_initial = Some(user_desc);
                b.transformseq = [steps, b.transformseq].concat();
            } else {
                b.io_transformed = Some(user_desc);
                b.transformseq.extend(steps);
            }
        }
        if io.is_input { nd.inputs.push(b) } else { nd.outputs.push(b) }
    }
    if let Some(stride) = c.options.io_crc_stride {
        let info = crate::crc::crc_info(&nd, stride)?;
        nd.dma_buffers.push(crate::crc::crc_results_buffer(&info));
        nd.crc_info = Some(info);
    }
    if let Some(st) = &c.options.stats {
        nd.stats = Some(st.to_descriptor()?);
    }
    Ok(nd)
}

/// A [`QpcWriter`] holding `network.elf` (the program), `networkdesc.bin`, `constants.bin`
/// and `constantsdesc.bin` (all static). Deterministic: equal contents give equal bytes.
///
/// ```
/// use qaic_device::*;
/// use qaic_runtime::{qpc_writer, IoSpec, QpcContents};
/// use qaic_tensor::DType;
/// let mut p = Program::new("copy", "2.0", 1, 4096);
/// p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 16, binding: Some(0) });
/// p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 16, binding: Some(1) });
/// p.cores[0].instrs = vec![Instr::Dma(Dma { src: Space::Ddr(0), src_offset: 0, dst: Space::Ddr(1), dst_offset: 0,
///     shape: DmaShape::contiguous(16), multicast: None, tag: 0, signal: None }), Instr::DmaWait { tag: 0 }, Instr::End];
/// let io = [IoSpec { name: "x".into(), is_input: true, dtype: DType::F32, shape: vec![4], buffer: 0, user: None },
///           IoSpec { name: "y".into(), is_input: false, dtype: DType::F32, shape: vec![4], buffer: 1, user: None }];
/// let bytes = qpc_writer(&QpcContents { program: &p, constants: &[], io: &io, batch_size: 1, options: &Default::default() })?.to_vec()?;
/// let qpc = qaic_qpc::Qpc::from_bytes(&bytes)?;
/// assert!(qaic_qpc::validate(&qpc).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn qpc_writer(c: &QpcContents<'_>) -> Result<QpcWriter, RuntimeError> {
    let want: u64 = c.program.buffers.iter().filter(|b| b.kind == BufferKind::Constants).map(|b| b.size).sum();
    if want != c.constants.len() as u64 {
        return Err(RuntimeError::Assemble(format!("constants blob has {} bytes, the program's constants buffers need {want}", c.constants.len())));
    }
    let nd = network_descriptor(c)?;
    let mut w = QpcWriter::new();
    w.add_bytes(qaic_qpc::NETWORK_ELF, c.program.to_elf())
        .add_bytes(qaic_qpc::NETWORK_DESC, nd.encode_to_vec())
        .add_bytes(qaic_qpc::CONSTANTS, c.constants.to_vec())
        .add_bytes(qaic_qpc::CONSTANTS_DESC, ConstantsDescriptor::all_static(c.constants.len() as u64).to_bytes().to_vec());
    w.static_size(qaic_qpc::CONSTANTS, c.constants.len() as u64);
    Ok(w)
}

/// Writes `dir/programqpc.bin` atomically (temporary file in `dir`, renamed on success;
/// `dir` is created if missing). Returns the path written and its length.
pub fn write_qpc_dir(dir: &Path, c: &QpcContents<'_>) -> Result<(std::path::PathBuf, u64), RuntimeError> {
    let w = qpc_writer(c)?;
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::Io { path: dir.display().to_string(), msg: e.to_string() })?;
    let path = dir.join(crate::QPC_FILE);
    let n = w.write(&path).map_err(|e| RuntimeError::Qpc { path: path.display().to_string(), msg: e.to_string() })?;
    Ok((path, n))
}
