//! # qaic-sim
//!
//! The simulator of the virtual AIC100 (`docs/virtual-aic100.md`, "Simulator"). It executes a
//! decoded [`qaic_device::Program`] — never the IR — on real data and predicts its device time:
//!
//! * **Data**: DDR buffers are byte arrays (inputs from the caller, the constants blob, scratch,
//!   outputs), each core has its own VTCM byte array. DMAs copy bytes honouring their strided
//!   descriptors and multicast masks; `Op` instructions run with the shared `qaic-kernels` CPU
//!   kernels, so results equal the interpreter's (float ops within the tolerance documented in
//!   the docs, data movement bit for bit).
//! * **Time**: an event-driven model built only from [`DeviceModel`] numbers. Each core issues
//!   in order; DMAs run on the core's DMA engine in the background (so transfers overlap
//!   compute), with DDR transfers of all cores sharing the sustained DDR bandwidth (each capped
//!   at the single-core rate) and VTCM-to-VTCM/multicast traffic sharing the NoC; semaphores and
//!   barriers cost the device's sync latency. Times are integer picoseconds, events are
//!   processed in (time, core) order, so predictions are deterministic and never depend on the
//!   host (kernels may use several host threads inside an op; that changes wall time only).
//!
//! Depends on `qaic-device` (program format, cost functions), `qaic-kernels` and `qaic-tensor`.
//! Must never depend on the IR, the interpreter, codegen or the QPC container.
//!
//! ```
//! use qaic_device::*;
//! use qaic_sim::Simulator;
//! use qaic_tensor::DType;
//!
//! let dev = DeviceModel::aic100(Variant::Pro16);
//! let mut p = Program::new("relu", "2.0", 1, 1 << 16);
//! p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 16, binding: Some(0) });
//! p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 16, binding: Some(1) });
//! let dma = |src, dst| Instr::Dma(Dma { src, src_offset: 0, dst, dst_offset: 0,
//!     shape: DmaShape::contiguous(16), multicast: None, tag: 0, signal: None });
//! p.cores[0].instrs = vec![
//!     dma(Space::Ddr(0), Space::Vtcm), Instr::DmaWait { tag: 0 },
//!     Instr::Op(Op::new("Relu", DType::F32, vec![Tile::vtcm(0, DType::F32, vec![4])],
//!                        vec![Tile::vtcm(0, DType::F32, vec![4])])),
//!     dma(Space::Vtcm, Space::Ddr(1)), Instr::DmaWait { tag: 0 }, Instr::End,
//! ];
//! let sim = Simulator::new(p, Vec::new(), dev).unwrap();
//! let x: Vec<u8> = [-1.0f32, 2.0, -3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
//! let run = sim.run(&[x]).unwrap();
//! let y: Vec<f32> = run.outputs[0].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
//! assert_eq!(y, [0.0, 2.0, 0.0, 4.0]);
//! assert!(run.stats.total_ps > 0);
//! ```

mod engine;
mod exec;
pub mod instances;
mod plan;

pub use engine::{CoreStats, LayerStats, SimStats, TraceEvent, TraceTrack};
pub use exec::SUPPORTED_OPS;

use qaic_device::{BufferKind, DeviceModel, Program};

/// Errors of loading or running a program.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The program does not validate for the device.
    #[error(transparent)]
    Program(#[from] qaic_device::ProgramError),
    /// The constants blob does not match the program's constants buffer.
    #[error("constants blob has {got} bytes, the program's constants buffer `{name}` needs {want}")]
    Constants { name: String, got: u64, want: u64 },
    /// Wrong number or size of inputs.
    #[error("input {index} (`{name}`): {msg}")]
    Input { index: usize, name: String, msg: String },
    /// An op failed (bad shapes, unsupported op or dtype).
    #[error("core {core} [{index}] op {op}: {msg}")]
    Op { core: usize, index: usize, op: String, msg: String },
    /// No core can make progress.
    #[error("deadlock at {time_ps} ps: {detail}")]
    Deadlock { time_ps: u64, detail: String },
    /// Kernel selection failed (`QAIC_KERNELS`).
    #[error(transparent)]
    Kernels(#[from] qaic_kernels::KernelError),
}

/// Outputs and predicted timing of one inference.
#[derive(Debug, Clone)]
pub struct SimRun {
    /// Output buffers' bytes, in the order of the program's `Output` buffers.
    pub outputs: Vec<Vec<u8>>,
    /// Predicted device timing and traffic.
    pub stats: SimStats,
}

/// A program loaded for simulation: validated once, run many times.
///
/// The first run also prepares the program (module `plan`): the timing model runs once (it
/// never depends on data), its order of data events becomes a replay list, convolutions that
/// are one layer split over cores or tiles are merged with weights packed once, dead DMA copies
/// are dropped, and memory arrays are kept for the next run.
pub struct Simulator {
    program: Program,
    device: DeviceModel,
    constants: Vec<u8>,
    kernels: &'static qaic_kernels::Kernels,
    plan: std::sync::OnceLock<Result<plan::Plan, SimError>>,
    workspace: std::sync::Mutex<plan::Workspace>,
    /// Program time with k instances running at once ([`Simulator::concurrent_time_ps`]).
    concurrent: std::sync::Mutex<std::collections::BTreeMap<u32, u64>>,
}

impl Simulator {
    /// Loads `program` with its constants blob (the contents of every `Constants` buffer,
    /// concatenated in table order) for `device`. Validates the program against the device.
    pub fn new(program: Program, constants: Vec<u8>, device: DeviceModel) -> Result<Simulator, SimError> {
        program.validate_for(&device)?;
        let want: u64 = program.buffers.iter().filter(|b| b.kind == BufferKind::Constants).map(|b| b.size).sum();
        if want != constants.len() as u64 {
            let name = program.buffers.iter().find(|b| b.kind == BufferKind::Constants).map_or("constants".into(), |b| b.name.clone());
            return Err(SimError::Constants { name, got: constants.len() as u64, want });
        }
        let kernels = qaic_kernels::Kernels::from_env()?;
        Ok(Simulator { program, device, constants, kernels, plan: std::sync::OnceLock::new(), workspace: std::sync::Mutex::new(plan::Workspace::default()), concurrent: Default::default() })
    }

    /// The loaded program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The device model used for timing.
    pub fn device(&self) -> &DeviceModel {
        &self.device
    }

    /// Predicted device time of one inference when `instances` copies of the program run at
    /// once on disjoint cores and share the DDR bandwidth (module [`instances`]); computed once
    /// per count. One instance: the program's own time.
    pub fn concurrent_time_ps(&self, instances: u32) -> Result<u64, SimError> {
        let k = instances.max(1);
        if let Some(t) = self.concurrent.lock().ok().and_then(|m| m.get(&k).copied()) {
            return Ok(t);
        }
        let t = instances::concurrent_stats(&self.program, &self.device, k)?.total_ps;
        if let Ok(mut m) = self.concurrent.lock() {
            m.insert(k, t);
        }
        Ok(t)
    }

    /// How many convolution ops the replay runs merged into single convolutions (module
    /// `plan`; prepares the program if no run has yet). A diagnostic of the simulator's own
    /// speed: results and timing do not depend on it.
    pub fn merged_convolutions(&self) -> Result<usize, SimError> {
        Ok(self.plan()?.merged_convolutions())
    }

    /// The prepared replay, built on first use.
    fn plan(&self) -> Result<&plan::Plan, SimError> {
        self.plan.get_or_init(|| plan::Plan::build(&self.program, &self.device, &self.constants, self.kernels)).as_ref().map_err(Clone::clone)
    }

    /// Names and sizes of the input buffers, in the order [`Simulator::run`] takes them.
    pub fn inputs(&self) -> Vec<(&str, u64)> {
        self.program.buffers.iter().filter(|b| b.kind == BufferKind::Input).map(|b| (b.name.as_str(), b.size)).collect()
    }

    /// Names and sizes of the output buffers, in the order of [`SimRun::outputs`].
    pub fn outputs(&self) -> Vec<(&str, u64)> {
        self.program.buffers.iter().filter(|b| b.kind == BufferKind::Output).map(|b| (b.name.as_str(), b.size)).collect()
    }

    /// Runs one inference: `inputs` are the bytes of every `Input` buffer in table order, each
    /// exactly the buffer's size.
    pub fn run(&self, inputs: &[Vec<u8>]) -> Result<SimRun, SimError> {
        self.run_with(inputs, false)
    }

    /// Like [`Simulator::run`], also recording the timeline ([`SimStats::trace`]): every op on
    /// its unit, every DMA on its core's engine, every wait and every layer span.
    pub fn run_traced(&self, inputs: &[Vec<u8>]) -> Result<SimRun, SimError> {
        self.run_with(inputs, true)
    }

    fn run_with(&self, inputs: &[Vec<u8>], traced: bool) -> Result<SimRun, SimError> {
        let ins = self.inputs();
        if inputs.len() != ins.len() {
            return Err(SimError::Input { index: inputs.len().min(ins.len()), name: String::new(), msg: format!("program has {} inputs, {} given", ins.len(), inputs.len()) });
        }
        for (index, ((name, size), v)) in ins.iter().zip(inputs).enumerate() {
            if v.len() as u64 != *size {
                return Err(SimError::Input { index, name: name.to_string(), msg: format!("{} bytes given, buffer holds {size}", v.len()) });
            }
        }
        let plan = self.plan()?;
        // One workspace is kept; a concurrent run (rare) works in a fresh one. The replay runs
        // on a kernel thread so each kernel's split is an in-pool fork, not a hand-off.
        let outputs = qaic_kernels::run_in_pool(|| match self.workspace.try_lock() {
            Ok(mut ws) => plan.run(&self.program, &self.constants, inputs, self.kernels, &mut ws),
            Err(_) => plan.run(&self.program, &self.constants, inputs, self.kernels, &mut plan::Workspace::default()),
        })?;
        let stats = if traced { engine::simulate(&self.program, &self.device, true, &mut |_| Ok(()))? } else { plan.stats.clone() };
        Ok(SimRun { outputs, stats })
    }
}
