//! # qaic-runtime
//!
//! The runtime of the virtual AIC100 (`docs/virtual-aic100.md`, "QPC and runtime"):
//!
//! * **Assembly** ([`qpc_writer`], [`write_qpc_dir`]): a compiled [`qaic_device::Program`], its
//!   constants blob and I/O bindings become `programqpc.bin` — `network.elf` (the program ELF),
//!   `networkdesc.bin` (one DMA buffer and one `CopyDMABuffer` step per I/O, core count, batch
//!   size), `constants.bin` and `constantsdesc.bin` — written atomically with the `qaic-qpc`
//!   writer. Equal inputs give byte-identical QPCs.
//! * **Loading** ([`LoadedQpc::open`]): memory-maps a QPC, validates it, decodes the program
//!   from `network.elf` (a vendor-compiled Hexagon ELF is refused by name), checks it against
//!   the device model of its hardware version and the requested instances, and binds the
//!   descriptor's inputs and outputs to the program's DDR buffers. No model file is involved.
//! * **Running** ([`LoadedQpc::run`]): one inference on the simulator; [`Schedule`] and
//!   [`RunStats`] turn a series of them into the vendor's ` ---- Stats ----` block (simulated
//!   device time), a host wall-time line and a versioned JSON twin; [`trace`] writes the
//!   Chrome-trace profile.
//!
//! Depends on `qaic-qpc`, `qaic-device`, `qaic-sim` and `qaic-tensor`; never on the IR, a
//! loader, the interpreter or codegen (the compiler driver converts codegen's output into
//! [`QpcContents`]).
//!
//! ```
//! use qaic_device::*;
//! use qaic_runtime::{write_qpc_dir, IoSpec, LoadOptions, LoadedQpc, QpcContents};
//! use qaic_tensor::DType;
//! // y = relu(x) on one core.
//! let mut p = Program::new("relu", "2.0", 1, 4096);
//! p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 16, binding: Some(0) });
//! p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 16, binding: Some(1) });
//! let dma = |src, dst| Instr::Dma(Dma { src, src_offset: 0, dst, dst_offset: 0,
//!     shape: DmaShape::contiguous(16), multicast: None, tag: 0, signal: None });
//! let t = || Tile::vtcm(0, DType::F32, vec![4]);
//! p.cores[0].instrs = vec![dma(Space::Ddr(0), Space::Vtcm), Instr::DmaWait { tag: 0 },
//!     Instr::Op(Op::new("Relu", DType::F32, vec![t()], vec![t()])),
//!     dma(Space::Vtcm, Space::Ddr(1)), Instr::DmaWait { tag: 0 }, Instr::End];
//! let io = [IoSpec { name: "x".into(), is_input: true, dtype: DType::F32, shape: vec![4], buffer: 0, user: None },
//!           IoSpec { name: "y".into(), is_input: false, dtype: DType::F32, shape: vec![4], buffer: 1, user: None }];
//! let dir = tempfile::tempdir()?;
//! write_qpc_dir(dir.path(), &QpcContents { program: &p, constants: &[], io: &io, batch_size: 1, options: &Default::default() })?;
//! let qpc = LoadedQpc::open(dir.path(), &LoadOptions::default())?;
//! let x: Vec<u8> = [-1.0f32, 2.0, -3.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
//! let (outs, run) = qpc.run(&[&x])?;
//! assert_eq!(outs[0], [0.0f32, 2.0, 0.0, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
//! assert!(run.stats.total_ps > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod assemble;
pub mod crc;
pub mod devstats;
mod loaded;
pub mod profile;
mod recorder;
mod stats;
pub mod trace;
pub mod transform;

pub use assemble::{data_type, dtype_of, network_descriptor, qpc_writer, write_qpc_dir, IoSpec, QpcContents, QpcOptions};
pub use crc::{CrcSampling, IoCrc};
pub use devstats::{device_performance_table, pmu_event_name, pmu_recipe, DeviceStatsConfig, PerfSamples, MAX_PMU_EVENTS, PMU_EVENTS};
pub use loaded::{qpc_path, Inference, IoInfo, LoadOptions, LoadedQpc};
pub use transform::UserIo;
pub use profile::{sampling_every, ProfilingConfig, ProfilingType};
pub use recorder::{Recorder, RecorderEvent, RecorderOptions, RunSummary, DEFAULT_SUBMIT_RETRIES, DEFAULT_SUBMIT_TIMEOUT_MS};
pub use stats::{inference_occupancy_ps, CoreFigures, DeviceFigures, RunStats, Schedule, STATS_SCHEMA, STATS_SCHEMA_VERSION};

/// The QPC file name inside a binary directory.
pub const QPC_FILE: &str = "programqpc.bin";

/// Errors of QPC assembly, loading and running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The compiled program and its I/O description do not fit together.
    #[error("QPC assembly: {0}")]
    Assemble(String),
    /// A QPC that cannot be opened, is invalid, or holds a program the simulator cannot run.
    #[error("{path}: {msg}")]
    Qpc { path: String, msg: String },
    /// A file system error.
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    /// The requested device, cores or instances do not exist.
    #[error("{0}")]
    Device(String),
    /// Wrong number or size of inputs.
    #[error("{0}")]
    Input(String),
    /// The simulator failed.
    #[error("simulator: {0}")]
    Sim(String),
    /// Host and device CRCs of an I/O transfer differ (`-io-crc`).
    #[error("{0}")]
    IoCrc(String),
    /// An inference exceeded `-submit-timeout` on every attempt.
    #[error("{0}")]
    Timeout(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use qaic_device::*;
    use qaic_tensor::DType;

    fn relu_program(cores: usize) -> Program {
        let mut p = Program::new("relu", "2.0", cores, 4096);
        p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 16, binding: Some(0) });
        p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 16, binding: Some(1) });
        p.buffers.push(Buffer { name: "constants".into(), kind: BufferKind::Constants, size: 64, binding: None });
        let dma = |src, dst| Instr::Dma(Dma { src, src_offset: 0, dst, dst_offset: 0, shape: DmaShape::contiguous(16), multicast: None, tag: 0, signal: None });
        let t = || Tile::vtcm(0, DType::F32, vec![4]);
        p.cores[0].instrs = vec![
            dma(Space::Ddr(0), Space::Vtcm),
            Instr::DmaWait { tag: 0 },
            Instr::Op(Op::new("Relu", DType::F32, vec![t()], vec![t()])),
            dma(Space::Vtcm, Space::Ddr(1)),
            Instr::DmaWait { tag: 0 },
            Instr::End,
        ];
        for c in 1..cores {
            p.cores[c].instrs = vec![Instr::End];
        }
        p
    }

    fn io() -> Vec<IoSpec> {
        vec![
            IoSpec { name: "x".into(), is_input: true, dtype: DType::F32, shape: vec![4], buffer: 0, user: None },
            IoSpec { name: "y".into(), is_input: false, dtype: DType::F32, shape: vec![4], buffer: 1, user: None },
        ]
    }

    fn bytes(p: &Program, io: &[IoSpec], batch: u32) -> Result<Vec<u8>, RuntimeError> {
        let c = vec![7u8; 64];
        Ok(qpc_writer(&QpcContents { program: p, constants: &c, io, batch_size: batch, options: &Default::default() })?.to_vec().unwrap())
    }

    #[test]
    fn descriptor_binds_io_and_records_cores_and_batch() {
        let p = relu_program(3);
        let b = bytes(&p, &io(), 8).unwrap();
        let q = LoadedQpc::from_bytes(&b, "mem", &LoadOptions::default()).unwrap();
        assert_eq!((q.num_cores(), q.batch_size()), (3, 8));
        assert_eq!(q.inputs()[0].name, "x");
        assert_eq!(q.outputs()[0].bytes, 16);
        assert_eq!(bytes(&p, &io(), 8).unwrap(), b, "assembly is deterministic");
    }

    #[test]
    fn assembly_refuses_inconsistent_io() {
        let p = relu_program(1);
        let mut bad = io();
        bad[0].shape = vec![5];
        let e = bytes(&p, &bad, 1).unwrap_err().to_string();
        assert!(e.contains("input `x`") && e.contains("20 bytes"), "{e}");
        let mut bad = io();
        bad[1].buffer = 0;
        assert!(bytes(&p, &bad, 1).unwrap_err().to_string().contains("Input buffer"));
        let e = qpc_writer(&QpcContents { program: &p, constants: &[1, 2], io: &io(), batch_size: 1, options: &Default::default() }).unwrap_err().to_string();
        assert!(e.contains("constants blob has 2 bytes"), "{e}");
        let mut bad = io();
        bad[0].dtype = DType::Bool;
        assert!(bytes(&p, &bad, 1).unwrap_err().to_string().contains("no networkdesc data type"));
    }

    #[test]
    fn loading_checks_instances_device_and_inputs() {
        let b = bytes(&relu_program(6), &io(), 1).unwrap();
        let e = LoadedQpc::from_bytes(&b, "q", &LoadOptions { instances: 3, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("3 instance(s) of a 6-core network need 18 cores"), "{e}");
        let e = LoadedQpc::from_bytes(&b, "q", &LoadOptions { variant: Variant::Standard14, instances: 3, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("has 14"), "{e}");
        let e = LoadedQpc::from_bytes(&b, "q", &LoadOptions { device_id: 1, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("invalid device id 1"), "{e}");
        let q = LoadedQpc::from_bytes(&b, "q", &LoadOptions::default()).unwrap();
        let e = q.run(&[&[0u8; 12]]).unwrap_err().to_string();
        assert!(e.contains("input `x`") && e.contains("needs 16 bytes, 12 given"), "{e}");
        assert!(LoadedQpc::from_bytes(&b[..b.len() - 30], "q", &LoadOptions::default()).is_err());
    }

    #[test]
    fn qpc_options_reach_the_descriptor_and_the_loaded_qpc() {
        let p = relu_program(1);
        let stats = DeviceStatsConfig { level: 40, batch_size: 4, ddr: true, pmu_events: vec![8, 0], op_stats: true };
        let opts = QpcOptions { io_crc_stride: Some(16), stats: Some(stats.clone()) };
        let c = vec![7u8; 64];
        let b = qpc_writer(&QpcContents { program: &p, constants: &c, io: &io(), batch_size: 1, options: &opts }).unwrap().to_vec().unwrap();
        let q = LoadedQpc::from_bytes(&b, "mem", &LoadOptions::default()).unwrap();
        assert_eq!(q.device_stats(), Some(&stats));
        assert_eq!(q.io_crc_stride(), Some(16));
        let info = q.descriptor().crc_info.as_ref().unwrap();
        assert_eq!((info.entries.len(), info.buff_num as usize), (2, q.descriptor().dma_buffers.len() - 1));
        let x = [0u8; 16];
        let r = q.infer(&[&x], false, 0).unwrap();
        assert_eq!(r.crc_checks, (2, 32));
        // Bad PMU events are refused at assembly.
        let bad = QpcOptions { io_crc_stride: None, stats: Some(DeviceStatsConfig { pmu_events: vec![99], ..Default::default() }) };
        let e = qpc_writer(&QpcContents { program: &p, constants: &c, io: &io(), batch_size: 1, options: &bad }).unwrap_err().to_string();
        assert!(e.contains("unknown PMU event 99"), "{e}");
        let nine = QpcOptions { io_crc_stride: None, stats: Some(DeviceStatsConfig { pmu_events: (0..9).collect(), ..Default::default() }) };
        assert!(qpc_writer(&QpcContents { program: &p, constants: &c, io: &io(), batch_size: 1, options: &nine }).is_err());
    }

    #[test]
    fn crc_sampling_covers_edges_and_stride_words() {
        let s = CrcSampling { begin: 64, end: 64, stride_interval: 256, stride_size: 4 };
        let len = 1024;
        let covered: Vec<usize> = (0..len).filter(|&i| s.covers(i, len)).collect();
        assert_eq!(covered.len(), 64 + 64 + 4 * 3); // stride words at 256, 512, 768 (0 is in the first edge)
        assert!(s.covers(0, len) && s.covers(1023, len) && s.covers(257, len) && !s.covers(300, len));
    }

    #[test]
    fn profiling_samples_by_iteration_and_by_simulated_time() {
        let p = ProfilingConfig { start_iter: 2, num_samples: 2, start_delay_ms: 1, duration_ms: Some(2), sampling_every: 2, ..Default::default() };
        let legacy: Vec<u64> = (0..6).filter(|&i| p.sampled(i, 0, 0).0).collect();
        assert_eq!(legacy, [2, 3]);
        let ms = 1_000_000_000u64;
        assert_eq!(p.sampled(0, ms / 2, 0), (false, false, false));
        assert_eq!(p.sampled(0, ms, 0), (false, true, true));
        assert_eq!(p.sampled(0, ms, 1), (false, false, true));
        assert_eq!(p.sampled(0, 3 * ms, 0), (false, false, false));
        let t = profile::latency_text("n", 1, 1, &[]);
        assert_eq!(t.lines().count(), 5);
        assert_eq!(t.lines().nth(4).unwrap().split(", ").count(), profile::LATENCY_COLUMNS.len());
    }

    #[test]
    fn schedule_spreads_inferences_over_instances() {
        let mut s = Schedule::new(2);
        for _ in 0..5 {
            s.add(1_000_000);
        }
        assert_eq!((s.count(), s.total_ps(), s.next_start_ps()), (5, 3_000_000, 2_000_000));
        let r = RunStats::new(&s, 4, 2, 1, &[], DeviceFigures::default());
        assert_eq!(r.stats_block(), " ---- Stats ----\nInferenceCnt 5 TotalDuration 3us BatchSize 4 Inf/Sec 6666666.667\n");
        assert!(!r.host_line().contains("Inf/Sec"));
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!((j["schema"].as_str(), j["version"].as_u64()), (Some(STATS_SCHEMA), Some(1)));
    }
}
