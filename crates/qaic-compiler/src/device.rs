//! Compiling to a QPC and running it on the virtual AIC100 (the default of `qaic-exec`, and
//! `-aic-hw`): model → IR → `qaic-codegen` → `programqpc.bin` (`qaic-runtime`) → simulator.
//!
//! The simulator always runs the program decoded from the assembled QPC bytes, never the IR:
//! with `-aic-binary-dir` the QPC is written there first (atomically) and memory-mapped back;
//! without it the same bytes are assembled in memory.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qaic_codegen::{CodegenOptions, Compiled};
use qaic_device::{DeviceModel, Variant};
use qaic_runtime::{DeviceStatsConfig, IoSpec, LoadOptions, LoadedQpc, QpcContents, QpcOptions, Recorder, RecorderEvent, RecorderOptions, RunSummary};
use qaic_tensor::{Shape, Tensor};

use crate::exec_options::{ExecConfig, HwVersion};
use crate::inputs::InputSpec;
use crate::run::{execute, Executable, RunError, RunEvent, RunReport};

/// What compiling for the device produced.
pub struct CompileOutput {
    pub compiled: Compiled,
    /// The assembled `programqpc.bin`.
    pub qpc: Vec<u8>,
    /// Where it was written (`-aic-binary-dir`), if anywhere.
    pub written: Option<PathBuf>,
    pub batch_size: u32,
    /// `-time-passes`: (pass, host time).
    pub pass_times: Vec<(&'static str, Duration)>,
}

/// Results of a compile-and-run on the simulator.
pub struct DeviceRunReport {
    pub run: RunReport,
    /// Statistics, the last inference's simulator figures, device statistics lines.
    pub summary: RunSummary,
}

/// The card variant of `-aic-device-variant`.
pub fn variant(cfg: &ExecConfig) -> Variant {
    if cfg.device.standard14 { Variant::Standard14 } else { Variant::Pro16 }
}

/// The device model for `-aic-hw-version` (`ai200`: no device model yet).
pub fn device_model(cfg: &ExecConfig) -> Result<DeviceModel, RunError> {
    let v = match cfg.device.hw_version {
        HwVersion::Ai100 => "ai100",
        HwVersion::Ai200 => "ai200",
    };
    DeviceModel::for_version(v, variant(cfg)).map_err(|e| RunError::NotSupported(format!("-aic-hw-version={v}: {e}")))
}

/// Code generation options from the typed configuration (ranges are checked by the option
/// table and again by `qaic-codegen`).
pub fn codegen_options(cfg: &ExecConfig) -> Result<CodegenOptions, RunError> {
    let d = &cfg.device;
    if d.mos.len() > 1 {
        return Err(RunError::NotSupported(format!("-mos with {} values (one per SDP cluster): single-device partitioning", d.mos.len())));
    }
    let num_cores = d.num_cores.max(1);
    let defaults = CodegenOptions::default();
    Ok(CodegenOptions {
        num_cores,
        mos: d.mos.first().copied().filter(|&m| m > 0).map(|m| m as u32),
        ols: d.ols.unwrap_or(1),
        size_split_granularity_kib: d.size_split_granularity_kib.unwrap_or(defaults.size_split_granularity_kib),
        vtcm_working_set_limit_ratio: d.vtcm_working_set_limit_ratio.unwrap_or(defaults.vtcm_working_set_limit_ratio),
        allocator_dealloc_delay: d.allocator_dealloc_delay.unwrap_or(0),
        depth_first: d.depth_first,
        // -aic-depth-first-mem is the working memory of a depth-first chain over all the
        // network's cores (MiB): each core gets its share.
        depth_first_mem_kib: d.depth_first_mem.map(|mib| mib as u64 * 1024 / num_cores as u64),
        multicast_weights: d.multicast_weights,
        use_producer_dma: d.use_producer_dma,
        compile_threads: d.compile_threads.map_or(0, |t| t as usize),
        // Applied to the graph by the precision pass before code generation (compile_with_events).
        convert_to_fp16: false,
        bindings: qaic_ir::Bindings::new(),
        preload_weights: defaults.preload_weights,
        keep_activations: defaults.keep_activations,
    })
}

/// Batch size recorded in the QPC: `-batchsize`, else the value of an `-onnx-define-symbol`
/// named `batch`, `batch_size` or `N`, else 1.
pub fn batch_size(cfg: &ExecConfig) -> u32 {
    if let Some(b) = cfg.load.batch_size {
        return b.min(u32::MAX as u64) as u32;
    }
    cfg.load
        .symbols
        .iter()
        .rev()
        .find(|(n, _)| matches!(n.as_str(), "batch" | "batch_size" | "N"))
        .map_or(1, |(_, v)| (*v).clamp(1, u32::MAX as u64) as u32)
}

/// What the QPC records for the runtime: `-io-crc`/`-io-crc-stride`, and device statistics
/// when `-stats-level`, `-stats-batchsize`, a PMU option or `-aic-profiling-type` asks for them
/// (`-ddr-stats` alone prints DDR traffic without making the QPC carry statistics).
pub fn qpc_options(cfg: &ExecConfig) -> QpcOptions {
    let d = &cfg.device;
    let wants_stats = d.stats_level.is_some() || d.stats_batch_size.is_some() || !d.pmu_events.is_empty() || d.profiling.is_some();
    let stats = wants_stats.then(|| {
        let level = d.stats_level.unwrap_or(0);
        DeviceStatsConfig {
            level,
            batch_size: d.stats_batch_size.unwrap_or(1).max(1),
            ddr: d.ddr_stats,
            pmu_events: d.pmu_events.clone(),
            op_stats: level >= 70 || d.profiling.as_ref().is_some_and(|p| p.stats()),
        }
    });
    QpcOptions { io_crc_stride: d.io_crc_stride, stats }
}

/// Loads the model, generates the per-core programs and assembles the QPC (written to
/// `-aic-binary-dir`/programqpc.bin when given).
pub fn compile(cfg: &ExecConfig) -> Result<CompileOutput, RunError> {
    compile_with_events(cfg, &mut |_| {})
}

/// [`compile`], reporting profiling progress and the precision summary through `events` when
/// quantization options are given (the graph is quantized first: see
/// [`crate::precision::device_graph`]).
pub fn compile_with_events(cfg: &ExecConfig, events: &mut dyn FnMut(crate::run::RunEvent)) -> Result<CompileOutput, RunError> {
    let dev = device_model(cfg)?;
    let opts = codegen_options(cfg)?;
    let mut pass_times = Vec::new();
    let t = Instant::now();
    let mut graph = crate::run::load_graph(cfg)?;
    if crate::precision::is_active(cfg) {
        graph = crate::precision::device_graph(cfg, graph, events)?;
    }
    let custom = match &cfg.device.custom_io_list_file {
        Some(p) => crate::custom_io::read_custom_io(p)?,
        None => Vec::new(),
    };
    if !custom.is_empty() {
        // Output shapes are often not declared: infer them to check NHWC entries' ranks.
        qaic_ir::infer_shapes(&mut graph, &qaic_ir::Bindings::new()).map_err(|e| RunError::Model(e.to_string()))?;
    }
    crate::custom_io::check_against(&graph, &custom)?;
    if cfg.device.aic_preproc {
        crate::custom_io::apply_aic_preproc(&mut graph, &custom)?;
    }
    pass_times.push(("load", t.elapsed()));
    let t = Instant::now();
    let compiled = qaic_codegen::compile(&graph, &dev, &opts).map_err(|e| RunError::Model(e.to_string()))?;
    pass_times.push(("codegen", t.elapsed()));
    let t = Instant::now();
    let io: Vec<IoSpec> = compiled
        .io
        .iter()
        .map(|b| IoSpec {
            name: b.name.clone(),
            is_input: b.is_input,
            dtype: b.dtype,
            shape: b.shape.clone(),
            buffer: b.buffer,
            // -host-preproc: conversions become the descriptor's transform sequences; with
            // -aic-preproc they are in the program already.
            user: if cfg.device.aic_preproc { None } else { crate::custom_io::user_io(&custom, &b.name, b.dtype) },
        })
        .collect();
    let batch_size = batch_size(cfg);
    let options = qpc_options(cfg);
    let contents = QpcContents { program: &compiled.program, constants: &compiled.constants, io: &io, batch_size, options: &options };
    let writer = qaic_runtime::qpc_writer(&contents).map_err(|e| RunError::Model(e.to_string()))?;
    let qpc = writer.to_vec().map_err(|e| RunError::Model(e.to_string()))?;
    let written = match &cfg.device.binary_dir {
        Some(dir) => {
            let (p, _) = qaic_runtime::write_qpc_dir(dir, &contents).map_err(|e| RunError::Model(e.to_string()))?;
            Some(p)
        }
        None => None,
    };
    pass_times.push(("qpc", t.elapsed()));
    if let Some(p) = &cfg.device.dump_program {
        crate::fsutil::write_atomic(p, compiled.program.listing().as_bytes()).map_err(|e| RunError::Model(e.to_string()))?;
    }
    Ok(CompileOutput { compiled, qpc, written, batch_size, pass_times })
}

/// `-aic-perf-metrics` lines: estimates of the compiled program.
pub fn perf_metrics_lines(c: &Compiled) -> Vec<String> {
    let r = &c.report;
    let mut v = vec![
        format!("AIC MAC estimate: {}", r.macs),
        format!("Constants size: {} (bytes)", r.constants_bytes),
        format!("StaticSharedDDRSize: {} B", r.scratch_bytes),
    ];
    for (i, core) in r.cores.iter().enumerate() {
        v.push(format!("VTCM{i}Size: {} B", core.vtcm_bytes));
    }
    v.push(format!("VTCMMaxSize: {} B", r.cores.iter().map(|c| c.vtcm_bytes).max().unwrap_or(0)));
    v.push("Compiler estimated memory traffic:".into());
    for (i, core) in r.cores.iter().enumerate() {
        v.push(format!("    c{i:02}: DDR traffic  read: {:>10} B", core.ddr_read_bytes));
        v.push(format!("    c{i:02}: DDR traffic write: {:>10} B", core.ddr_write_bytes));
    }
    v.push(format!("  total: DDR traffic  read: {:>10} B", r.cores.iter().map(|c| c.ddr_read_bytes).sum::<u64>()));
    v.push(format!("  total: DDR traffic write: {:>10} B", r.cores.iter().map(|c| c.ddr_write_bytes).sum::<u64>()));
    for (i, core) in r.cores.iter().enumerate() {
        v.push(format!("  c{i:02} MAC estimate: {}  instructions: {}", core.macs, core.instructions));
    }
    v
}

/// `-aic-perf-warnings` lines.
pub fn perf_warning_lines(c: &Compiled) -> Vec<String> {
    c.report.warnings.iter().map(|w| format!("AIC WARNING: {w}")).collect()
}

/// A QPC loaded for the simulator, as an [`Executable`] for [`execute`]. Each run is one
/// simulated inference, recorded by a [`Recorder`] (schedule over instances, profiling,
/// device statistics, I/O CRC, submit timeout).
pub struct SimulatedQpc {
    qpc: LoadedQpc,
    specs: Vec<InputSpec>,
    recorder: Mutex<Option<Recorder>>,
    /// Recorder events (files written during the run), emitted after it.
    events: Mutex<Vec<RecorderEvent>>,
}

impl SimulatedQpc {
    /// Wraps a loaded QPC with its recorder.
    pub fn new(qpc: LoadedQpc, opts: RecorderOptions) -> Result<SimulatedQpc, RunError> {
        let specs = qpc.inputs().iter().map(|i| InputSpec { name: i.name.clone(), dtype: i.dtype, shape: Shape::known(&i.shape) }).collect();
        let rec = Recorder::new(&qpc, opts).map_err(|e| RunError::Model(e.to_string()))?;
        Ok(SimulatedQpc { qpc, specs, recorder: Mutex::new(Some(rec)), events: Mutex::new(Vec::new()) })
    }
    /// The loaded QPC.
    pub fn qpc(&self) -> &LoadedQpc {
        &self.qpc
    }
    /// Ends the run: final profiling files, statistics. `events` receives the files written.
    pub fn finish(&self, events: &mut dyn FnMut(RecorderEvent)) -> Result<RunSummary, RunError> {
        for e in self.events.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default() {
            events(e);
        }
        let rec = self.recorder.lock().ok().and_then(|mut r| r.take()).ok_or_else(|| RunError::Model("run already finished".into()))?;
        rec.finish(&self.qpc, events).map_err(|e| RunError::Model(e.to_string()))
    }
}

impl Executable for SimulatedQpc {
    fn inputs(&self) -> &[InputSpec] {
        &self.specs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>, RunError> {
        let bytes: Vec<&[u8]> = inputs.iter().map(|t| t.raw_bytes().map_err(|e| RunError::Model(e.to_string()))).collect::<Result<_, _>>()?;
        let mut guard = self.recorder.lock().map_err(|_| RunError::Model("recorder lock poisoned".into()))?;
        let rec = guard.as_mut().ok_or_else(|| RunError::Model("run already finished".into()))?;
        let mut pending = Vec::new();
        let outs = rec.run(&self.qpc, &bytes, &mut |e| pending.push(e)).map_err(|e| RunError::Model(e.to_string()))?;
        if let Ok(mut ev) = self.events.lock() {
            ev.extend(pending);
        }
        self.qpc
            .outputs()
            .iter()
            .zip(outs)
            .map(|(o, b)| Tensor::from_bytes(o.dtype, o.shape.clone(), bytes::Bytes::from(b)).map(|t| (o.name.clone(), t)).map_err(|e| RunError::Model(format!("output `{}`: {e}", o.name))))
            .collect()
    }
}

/// Load options of the runtime from the configuration (`-aic-num-of-instances`, `-device-id`).
pub fn load_options(cfg: &ExecConfig) -> LoadOptions {
    LoadOptions { variant: variant(cfg), instances: cfg.device.num_instances.max(1), device_id: cfg.device.device_id, host_processing: true }
}

/// Recorder options from the configuration (profiling, submit timeout and retries).
pub fn recorder_options(cfg: &ExecConfig) -> RecorderOptions {
    RecorderOptions { profiling: cfg.device.profiling.clone(), submit_timeout_ms: cfg.device.submit_timeout_ms, submit_retries: cfg.device.submit_retries }
}

/// Runs a compiled QPC (its bytes) on the simulator with the configuration's inputs,
/// iterations and outputs.
pub fn run_qpc(cfg: &ExecConfig, out: &CompileOutput, events: &mut dyn FnMut(RunEvent)) -> Result<DeviceRunReport, RunError> {
    let name = out.written.as_ref().map_or_else(|| "<in-memory programqpc.bin>".to_string(), |p| p.display().to_string());
    let qpc = LoadedQpc::from_bytes(&out.qpc, &name, &load_options(cfg)).map_err(|e| RunError::Model(e.to_string()))?;
    let model = SimulatedQpc::new(qpc, recorder_options(cfg))?;
    let run = execute(cfg, &model, events)?;
    let summary = model.finish(&mut |e| match e {
        RecorderEvent::WroteFile(p) => events(RunEvent::WroteFile(p)),
        RecorderEvent::DeletedFile(p) => events(RunEvent::DeletedFile(p)),
        RecorderEvent::Retry { .. } => {}
    })?;
    Ok(DeviceRunReport { run, summary })
}

#[cfg(test)]
mod tests {
    use qaic_tensor::DType;

    #[test]
    fn codegen_io_types_are_the_descriptor_types() {
        // Code generation refuses I/O the QPC assembler cannot describe, by the same list.
        for d in DType::ALL {
            assert_eq!(qaic_codegen::IO_DTYPES.contains(&d), qaic_runtime::data_type(d).is_some(), "{}", d.name());
        }
    }
}
