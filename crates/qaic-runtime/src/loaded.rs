//! Opening a QPC and running it on the simulator.

use std::path::{Path, PathBuf};

use qaic_device::{BufferKind, DeviceModel, Program, ProgramError, Variant};
use qaic_qpc::{DataType, NetworkDescriptor, Qpc, Severity};
use qaic_sim::{SimRun, Simulator};
use qaic_tensor::DType;

use crate::RuntimeError;

/// How to load a QPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Card variant simulated (`Pro16` by default: 16 cores; `Standard14`: 14).
    pub variant: Variant,
    /// Network instances (activations) loaded side by side on disjoint core sets
    /// (`-a` / `-aic-num-of-instances`): `instances × cores` must fit the device.
    pub instances: u32,
    /// Device id (`-d` / `-device-id`): only 0 exists (one virtual card).
    pub device_id: u32,
    /// Run the descriptor's host pre/post-processing (qaic-runner `-p on`, the default). Off:
    /// inputs and outputs are exchanged in the DMA buffers' (network) format.
    pub host_processing: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { variant: Variant::Pro16, instances: 1, device_id: 0, host_processing: true }
    }
}

/// One input or output as the descriptor binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: u64,
    /// Position of the program buffer among the program's buffers of its kind (the order
    /// [`Simulator::run`] takes inputs and returns outputs).
    pub sim_index: usize,
    /// The bytes the I/O CRC covers, when the QPC was compiled with `-io-crc`.
    pub crc: Option<crate::CrcSampling>,
    /// Host pre-processing (inputs: user tensor → DMA buffer) or post-processing (outputs:
    /// DMA buffer → user tensor) from the descriptor's transform sequence; empty for a copy.
    pub host_steps: Vec<crate::transform::HostStep>,
}

/// One inference: outputs in descriptor order, the simulator's run, and the I/O CRC checks.
#[derive(Debug, Clone)]
pub struct Inference {
    pub outputs: Vec<Vec<u8>>,
    pub run: SimRun,
    /// (buffers checked, bytes covered); (0, 0) without `-io-crc`.
    pub crc_checks: (u64, u64),
    /// Host wall time of the descriptor's transform sequences (pre: inputs, post: outputs).
    pub pre_processing: std::time::Duration,
    pub post_processing: std::time::Duration,
}

/// A QPC opened, validated and decoded, ready to run inferences on the simulator.
pub struct LoadedQpc {
    path: PathBuf,
    desc: NetworkDescriptor,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    sim: Simulator,
    instances: u32,
    stats: Option<crate::DeviceStatsConfig>,
    crc_stride: Option<u32>,
    fault: Option<(String, usize)>,
}

impl std::fmt::Debug for LoadedQpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedQpc").field("path", &self.path).field("inputs", &self.inputs).field("outputs", &self.outputs).finish()
    }
}

fn check_device(options: &LoadOptions) -> Result<(), RuntimeError> {
    if options.device_id != 0 {
        return Err(RuntimeError::Device(format!("invalid device id {}: the virtual AIC100 is device 0 (the only device)", options.device_id)));
    }
    Ok(())
}

/// `path` itself if it is a file, else `path/programqpc.bin` (qaic-runner's `-t <dir>`).
pub fn qpc_path(path: &Path) -> PathBuf {
    if path.is_dir() { path.join(crate::QPC_FILE) } else { path.to_path_buf() }
}

impl LoadedQpc {
    /// Opens `path` (a `programqpc.bin` or the directory holding it) memory-mapped, validates
    /// the container, decodes the program from `network.elf` (a vendor-compiled ELF is refused),
    /// checks it against the device model of its hardware version and `options`, and binds the
    /// descriptor's inputs and outputs to the program's DDR buffers. No model file is needed.
    pub fn open(path: &Path, options: &LoadOptions) -> Result<LoadedQpc, RuntimeError> {
        let path = qpc_path(path);
        check_device(options)?;
        let qpc = Qpc::open(&path).map_err(|e| RuntimeError::Qpc { path: path.display().to_string(), msg: e.to_string() })?;
        LoadedQpc::from_qpc(&qpc, path, options)
    }

    /// Like [`LoadedQpc::open`] for a QPC held in memory; `name` stands for its path in errors.
    pub fn from_bytes(bytes: &[u8], name: &str, options: &LoadOptions) -> Result<LoadedQpc, RuntimeError> {
        check_device(options)?;
        let qpc = Qpc::from_bytes(bytes).map_err(|e| RuntimeError::Qpc { path: name.to_string(), msg: e.to_string() })?;
        LoadedQpc::from_qpc(&qpc, PathBuf::from(name), options)
    }

    fn from_qpc(qpc: &Qpc<'_>, path: PathBuf, options: &LoadOptions) -> Result<LoadedQpc, RuntimeError> {
        let p = path.display().to_string();
        let qerr = |msg: String| RuntimeError::Qpc { path: p.clone(), msg };
        let report = qaic_qpc::validate(qpc);
        if !report.is_ok() {
            let errs: Vec<String> = report.with_severity(Severity::Error).map(|f| f.message.clone()).collect();
            return Err(qerr(format!("invalid QPC: {}", errs.join("; "))));
        }
        let elf = qpc.segment(qaic_qpc::NETWORK_ELF).ok_or_else(|| qerr("no network.elf segment".into()))?;
        let program = Program::from_elf(elf).map_err(|e| match e {
            ProgramError::VendorProgram => qerr(format!("network.elf: {e}")),
            e => qerr(format!("network.elf: {e}")),
        })?;
        let desc = qpc.network_descriptor().map_err(|e| qerr(e.to_string()))?.ok_or_else(|| qerr("no networkdesc.bin segment".into()))?;
        let device = DeviceModel::for_version(&program.device_version, options.variant).map_err(|e| qerr(e.to_string()))?;
        let cores = program.cores.len() as u32;
        if desc.num_cores != cores {
            return Err(qerr(format!("networkdesc.bin num_cores = {} but network.elf has {cores} core programs", desc.num_cores)));
        }
        let instances = options.instances.max(1);
        if cores.saturating_mul(instances) > device.num_cores {
            return Err(RuntimeError::Device(format!(
                "{instances} instance(s) of a {cores}-core network need {} cores; the device ({}) has {}",
                cores.saturating_mul(instances),
                device.variant.name(),
                device.num_cores
            )));
        }
        let constants = qpc.segment(qaic_qpc::CONSTANTS).unwrap_or(&[]).to_vec();
        let buffers = program.buffers.clone();
        let sim = Simulator::new(program, constants, device).map_err(|e| qerr(e.to_string()))?;
        let bind = |b: &qaic_qpc::IoBinding, kind: BufferKind| -> Result<IoInfo, RuntimeError> {
            let what = if kind == BufferKind::Input { "input" } else { "output" };
            let e = |m: String| qerr(format!("networkdesc.bin: {what} `{}`: {m}", b.name));
            let step = b.copy_step().and_then(|t| t.copy_dma_buffer.as_ref()).ok_or_else(|| e("no CopyDMABuffer step".into()))?;
            if step.offset != 0 {
                return Err(e(format!("offset {} in DMA buffer {} (combined buffers are not supported)", step.offset, step.buffer_num)));
            }
            let io = b.io_initial.as_ref().ok_or_else(|| e("no io_initial".into()))?;
            DataType::try_from(io.r#type).map_err(|_| e(format!("unknown data type {}", io.r#type)))?;
            let same_kind: Vec<(usize, &qaic_device::Buffer)> = buffers.iter().filter(|x| x.kind == kind).enumerate().collect();
            let (sim_index, buf) = same_kind
                .into_iter()
                .find(|(_, x)| x.binding == Some(step.buffer_num))
                .ok_or_else(|| e(format!("DMA buffer {} is not a program {what} buffer", step.buffer_num)))?;
            let net_bytes = io.byte_size().ok_or_else(|| e("size not computable".into()))?;
            if net_bytes != buf.size && b.transformseq.len() == 1 {
                return Err(e(format!("{net_bytes} bytes by the descriptor, program buffer `{}` holds {}", buf.name, buf.size)));
            }
            let (user_ty, user_dims, host_steps) = crate::transform::parse_steps(b, kind == BufferKind::Input).map_err(e)?;
            let elems: u64 = user_dims.iter().map(|&d| d as u64).product();
            let bytes = user_ty.storage_bytes(elems as usize) as u64;
            // The DMA buffer receives the network tensor: its size must be the program buffer's.
            let copy = b.copy_step().ok_or_else(|| e("no CopyDMABuffer step".into()))?;
            let (device_elems, device_ty): (u64, i32) = if kind == BufferKind::Input {
                (copy.dims.iter().map(|&d| d.max(0) as u64).product(), copy.r#type)
            } else {
                (io.dims.iter().map(|&d| d.max(0) as u64).product(), io.r#type)
            };
            let device_ty = DataType::try_from(device_ty).map_err(|_| e(format!("unknown data type {device_ty}")))?;
            let elem_dev = crate::assemble::dtype_of(device_ty).storage_bytes(1) as u64;
            if device_elems * elem_dev != buf.size {
                return Err(e(format!("{} bytes reach the DMA buffer, program buffer `{}` holds {}", device_elems * elem_dev, buf.name, buf.size)));
            }
            let crc = desc
                .crc_info
                .as_ref()
                .and_then(|c| c.entries.iter().find(|x| x.dma_buffer_num == step.buffer_num))
                .map(crate::CrcSampling::from_entry);
            if !options.host_processing {
                // `-p off`: the caller exchanges the DMA buffer's tensor itself.
                let (t, dims) = if kind == BufferKind::Input { (copy.r#type, &copy.dims) } else { (io.r#type, &io.dims) };
                let dtype = DataType::try_from(t).map(crate::assemble::dtype_of).map_err(|_| e(format!("unknown data type {t}")))?;
                let shape: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
                return Ok(IoInfo { name: b.name.clone(), dtype, shape, bytes: buf.size, sim_index, crc, host_steps: Vec::new() });
            }
            Ok(IoInfo { name: b.name.clone(), dtype: user_ty, shape: user_dims, bytes, sim_index, crc, host_steps })
        };
        let inputs = desc.inputs.iter().map(|b| bind(b, BufferKind::Input)).collect::<Result<Vec<_>, _>>()?;
        let outputs = desc.outputs.iter().map(|b| bind(b, BufferKind::Output)).collect::<Result<Vec<_>, _>>()?;
        if inputs.len() != sim.inputs().len() || outputs.len() != sim.outputs().len() {
            return Err(qerr(format!(
                "networkdesc.bin binds {} inputs and {} outputs, the program has {} and {}",
                inputs.len(),
                outputs.len(),
                sim.inputs().len(),
                sim.outputs().len()
            )));
        }
        let stats = desc.stats.as_ref().map(crate::DeviceStatsConfig::from_descriptor);
        let crc_stride = desc.crc_info.as_ref().and_then(|c| c.entries.first()).map(|e| e.stride_interval);
        let fault = if crc_stride.is_some() || std::env::var_os("QAIC_SIM_IO_FAULT").is_some() { crate::crc::fault_from_env() } else { None };
        Ok(LoadedQpc { path, desc, inputs, outputs, sim, instances, stats, crc_stride, fault })
    }

    /// The QPC file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The decoded network descriptor.
    pub fn descriptor(&self) -> &NetworkDescriptor {
        &self.desc
    }
    /// Inputs in descriptor (user) order.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }
    /// Outputs in descriptor order.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }
    /// Compiled batch size (`networkdesc.batch_size`, at least 1).
    pub fn batch_size(&self) -> u32 {
        self.desc.batch_size.max(1) as u32
    }
    /// Cores one instance uses.
    pub fn num_cores(&self) -> u32 {
        self.sim.program().cores.len() as u32
    }
    /// Instances loaded side by side.
    pub fn instances(&self) -> u32 {
        self.instances
    }
    /// The simulator (program and device model).
    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }
    /// Device statistics compiled into the QPC (`None`: the QPC carries none).
    pub fn device_stats(&self) -> Option<&crate::DeviceStatsConfig> {
        self.stats.as_ref()
    }
    /// `-io-crc-stride` of a QPC compiled with `-io-crc`.
    pub fn io_crc_stride(&self) -> Option<u32> {
        self.crc_stride
    }
    /// Bytes of all inputs and of all outputs.
    pub fn io_bytes(&self) -> (u64, u64) {
        (self.inputs.iter().map(|i| i.bytes).sum(), self.outputs.iter().map(|o| o.bytes).sum())
    }

    /// Runs one inference: `inputs` in descriptor order, each exactly its binding's size.
    /// Returns the outputs in descriptor order and the simulated timing.
    pub fn run(&self, inputs: &[&[u8]]) -> Result<(Vec<Vec<u8>>, SimRun), RuntimeError> {
        self.run_with(inputs, false)
    }

    /// Like [`LoadedQpc::run`], also recording the simulated timeline (`SimStats::trace`) for
    /// `-aic-profiling-type=trace`.
    pub fn run_traced(&self, inputs: &[&[u8]]) -> Result<(Vec<Vec<u8>>, SimRun), RuntimeError> {
        self.run_with(inputs, true)
    }

    fn run_with(&self, inputs: &[&[u8]], traced: bool) -> Result<(Vec<Vec<u8>>, SimRun), RuntimeError> {
        let r = self.infer(inputs, traced, 0)?;
        Ok((r.outputs, r.run))
    }

    /// The device's copy of a buffer in transit (the `QAIC_SIM_IO_FAULT` hook flips a bit).
    fn transfer(&self, name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        if let Some((n, off)) = &self.fault
            && n == name
            && let Some(b) = v.get_mut(*off)
        {
            *b ^= 1;
        }
        v
    }

    /// Runs inference number `inference` (for messages): `inputs` in descriptor order. With
    /// `traced`, the simulator records the timeline. With `-io-crc` compiled in, every input
    /// and output transfer is CRC-checked on both sides; a mismatch is an error.
    pub fn infer(&self, inputs: &[&[u8]], traced: bool, inference: u64) -> Result<Inference, RuntimeError> {
        if inputs.len() != self.inputs.len() {
            return Err(RuntimeError::Input(format!("the QPC has {} input(s), {} given", self.inputs.len(), inputs.len())));
        }
        let mut ordered = vec![Vec::new(); inputs.len()];
        let mut checks = (0u64, 0u64);
        let (mut pre, mut post) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for (io, data) in self.inputs.iter().zip(inputs) {
            if data.len() as u64 != io.bytes {
                return Err(RuntimeError::Input(format!(
                    "input `{}` ({} {:?}) needs {} bytes, {} given",
                    io.name,
                    io.dtype.name(),
                    io.shape,
                    io.bytes,
                    data.len()
                )));
            }
            // Host pre-processing, then the transfer into the DMA buffer.
            let t = std::time::Instant::now();
            let host = if io.host_steps.is_empty() { std::borrow::Cow::Borrowed(*data) } else { std::borrow::Cow::Owned(crate::transform::apply(&io.host_steps, data)) };
            pre += t.elapsed();
            let device = self.transfer(&io.name, &host);
            if let Some(c) = &io.crc {
                crc_check(c, "input", &io.name, inference, &host, &device, &mut checks)?;
            }
            ordered[io.sim_index] = device;
        }
        let run = if traced { self.sim.run_traced(&ordered) } else { self.sim.run(&ordered) }.map_err(|e| RuntimeError::Sim(e.to_string()))?;
        let mut outs = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            let device = &run.outputs[o.sim_index];
            let host = self.transfer(&o.name, device);
            if let Some(c) = &o.crc {
                crc_check(c, "output", &o.name, inference, &host, device, &mut checks)?;
            }
            let t = std::time::Instant::now();
            outs.push(if o.host_steps.is_empty() { host } else { crate::transform::apply(&o.host_steps, &host) });
            post += t.elapsed();
        }
        Ok(Inference { outputs: outs, run, crc_checks: checks, pre_processing: pre, post_processing: post })
    }
}

/// Compares the host's and the device's CRC of one transfer.
fn crc_check(c: &crate::CrcSampling, what: &str, name: &str, inference: u64, host: &[u8], device: &[u8], checks: &mut (u64, u64)) -> Result<(), RuntimeError> {
    let (h, d) = (c.crc(host), c.crc(device));
    if h != d {
        return Err(RuntimeError::IoCrc(format!(
            "I/O CRC mismatch on {what} `{name}` of inference {inference}: host 0x{h:08x}, device 0x{d:08x} (stride {} B)",
            c.stride_interval
        )));
    }
    checks.0 += 1;
    checks.1 += (0..host.len()).filter(|&i| c.covers(i, host.len())).count() as u64;
    Ok(())
}
