//! A series of inferences on a loaded QPC and everything recorded about them: the simulated
//! schedule over instances, host wall time, submit timeouts, I/O CRC counts, the Device
//! Performance samples, and the profiling files (`-aic-profiling-type`). Both `qaic-exec`
//! and `qaic-runner` drive their runs through it, so both print and write the same things.

use std::path::Path;
use std::time::{Duration, Instant};

use qaic_device::DeviceModel;
use qaic_sim::SimRun;

use crate::devstats::{core_lines, device_performance_table, opstats_text, pmu_event_name, pmu_value, PerfSamples};
use crate::profile::{latency_file_name, latency_text, stats_file_name, write_file_atomic, DeviceLatency, LatencyRow, ProfilingConfig};
use crate::{inference_occupancy_ps, DeviceFigures, IoCrc, LoadedQpc, RunStats, RuntimeError, Schedule};

/// Kernel default of `-submit-timeout=0` (facts qaic-in-practice.md: 0 = 5000 ms).
pub const DEFAULT_SUBMIT_TIMEOUT_MS: u64 = 5000;
/// Default `-submit-retry-count`.
pub const DEFAULT_SUBMIT_RETRIES: u32 = 5;

/// How a series of inferences is run and recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderOptions {
    pub profiling: Option<ProfilingConfig>,
    /// `-submit-timeout` in ms of simulated device time (0 = the kernel default, 5000 ms).
    pub submit_timeout_ms: u64,
    /// `-submit-retry-count`.
    pub submit_retries: u32,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions { profiling: None, submit_timeout_ms: 0, submit_retries: DEFAULT_SUBMIT_RETRIES }
    }
}

/// What the recorder does that a tool prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderEvent {
    /// `Writing file:<path>`.
    WroteFile(String),
    /// `Deleting previous file: <path>` (a periodically rewritten profiling file).
    DeletedFile(String),
    /// A submission timed out and is retried (attempt `attempt` of `1 + retries`).
    Retry { inference: u64, attempt: u32, retries: u32 },
}

/// Everything printed after a run.
pub struct RunSummary {
    pub stats: RunStats,
    /// Simulator statistics of the last inference.
    pub last: Option<SimRun>,
    /// Lines after the Stats block when the QPC carries statistics: the Device Performance
    /// table (with its empty line), per-core cycles / PMU / DDR lines, operator statistics.
    pub device_lines: String,
    /// The I/O CRC line (QPCs compiled with `-io-crc`).
    pub io_crc_line: Option<String>,
}

/// Records a series of inferences of one QPC.
pub struct Recorder {
    opts: RecorderOptions,
    schedule: Schedule,
    host_times: Vec<Duration>,
    perf: PerfSamples,
    last: Option<SimRun>,
    /// First inference traced for operator statistics (stats level ≥ 70).
    op_stats_run: Option<SimRun>,
    traced: Vec<(u64, u64, SimRun)>,
    latency: Vec<LatencyRow>,
    window_index: u64,
    next_report_ps: u64,
    crc: (u64, u64),
    /// Program time charged to the last inference (with DDR contention between instances).
    last_program_ps: u64,
}

const PS_PER_MS: u64 = 1_000_000_000;

impl Recorder {
    /// A recorder for `qpc`; checks the profiling directory first (nothing is written on error).
    pub fn new(qpc: &LoadedQpc, opts: RecorderOptions) -> Result<Recorder, RuntimeError> {
        if let Some(p) = &opts.profiling {
            p.check_dir()?;
            if p.stats() && !qpc.device_stats().is_some_and(|s| s.op_stats) {
                return Err(RuntimeError::Device(format!(
                    "-aic-profiling-type=stats: {} was compiled without operator statistics (compile with -aic-profiling-type=stats or -stats-level=70)",
                    qpc.path().display()
                )));
            }
        }
        let next_report_ps = opts.profiling.as_ref().map_or(u64::MAX, |p| p.start_delay_ms.saturating_add(p.reporting_ms.max(1)).saturating_mul(PS_PER_MS));
        Ok(Recorder {
            opts,
            schedule: Schedule::new(qpc.instances()),
            host_times: Vec::new(),
            perf: PerfSamples::default(),
            last: None,
            op_stats_run: None,
            traced: Vec::new(),
            latency: Vec::new(),
            window_index: 0,
            next_report_ps,
            crc: (0, 0),
            last_program_ps: 0,
        })
    }

    /// Inferences run so far.
    pub fn count(&self) -> u64 {
        self.schedule.count()
    }

    /// Simulated duration of the run so far (µs, rounded up), as the Stats block counts it.
    pub fn simulated_us(&self) -> u64 {
        self.schedule.total_ps().div_ceil(1_000_000)
    }

    /// Mean simulated program time per inference so far (µs; 0 before the first).
    pub fn mean_exec_us(&self) -> f64 {
        let v = &self.perf.exec_us;
        if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
    }

    /// Host wall time of each inference so far.
    pub fn host_times(&self) -> &[Duration] {
        &self.host_times
    }

    fn timeout_ps(&self) -> u64 {
        let ms = if self.opts.submit_timeout_ms == 0 { DEFAULT_SUBMIT_TIMEOUT_MS } else { self.opts.submit_timeout_ms };
        ms.saturating_mul(PS_PER_MS)
    }

    /// Runs the next inference on `qpc` and records it. Returns the outputs in descriptor order.
    pub fn run(&mut self, qpc: &LoadedQpc, inputs: &[&[u8]], events: &mut dyn FnMut(RecorderEvent)) -> Result<Vec<Vec<u8>>, RuntimeError> {
        let i = self.schedule.count();
        let at = self.schedule.next_start_ps();
        let (legacy, stream, in_window) = self.opts.profiling.as_ref().map_or((false, false, false), |p| p.sampled(i, at, self.window_index));
        let prof = self.opts.profiling.clone();
        use crate::ProfilingType as T;
        let trace_sample = prof.as_ref().is_some_and(|p| (legacy && p.has(|t| t == T::Trace)) || (stream && p.has(|t| t == T::TraceStream)));
        let wants_trace = trace_sample || (legacy && prof.as_ref().is_some_and(|p| p.stats()));
        let op_stats_first = i == 0 && qpc.device_stats().is_some_and(|s| s.level >= 70);
        let t0 = Instant::now();
        let r = qpc.infer(inputs, wants_trace || op_stats_first, i)?;
        self.host_times.push(t0.elapsed());
        let dev: &DeviceModel = qpc.simulator().device();
        let (in_bytes, out_bytes) = qpc.io_bytes();
        // Instances run at once and share DDR: the program takes as long as `a` copies of it
        // running together (a last, partial round is corrected in `finish`).
        let prog_ps = self.program_ps(qpc, r.run.stats.total_ps, qpc.instances())?;
        let occ = inference_occupancy_ps(dev, prog_ps, in_bytes + out_bytes);
        let timeout = self.timeout_ps();
        if occ > timeout {
            // The simulator is deterministic: every retry takes the same simulated time.
            for attempt in 1..=self.opts.submit_retries {
                tracing::warn!("inference {i}: submission timed out after {} ms of simulated device time, retry {attempt} of {}", timeout / PS_PER_MS, self.opts.submit_retries);
                events(RecorderEvent::Retry { inference: i, attempt, retries: self.opts.submit_retries });
            }
            return Err(RuntimeError::Timeout(format!(
                "inference {i} timed out: it needs {:.3} ms of simulated device time, -submit-timeout is {} ms; gave up after {} retr{} (the virtual device is deterministic, so each retry takes as long)",
                occ as f64 / PS_PER_MS as f64,
                timeout / PS_PER_MS,
                self.opts.submit_retries,
                if self.opts.submit_retries == 1 { "y" } else { "ies" }
            )));
        }
        self.crc.0 += r.crc_checks.0;
        self.crc.1 += r.crc_checks.1;
        let in_ps = DeviceModel::transfer_ps(in_bytes, dev.host_pcie_bytes_per_s);
        let out_ps = DeviceModel::transfer_ps(out_bytes, dev.host_pcie_bytes_per_s);
        let us = |ps: u64| ps as f64 / 1e6;
        self.perf.exec_us.push(us(prog_ps));
        self.perf.input_wait_us.push(us(in_ps));
        self.perf.output_wait_us.push(us(out_ps));
        self.schedule.add(occ);
        if let Some(p) = &prof {
            let lat_sampled = (legacy && p.has(|t| t == T::Latency)) || (stream && p.has(|t| t == T::LatencyStream));
            if lat_sampled {
                let batch = qpc.batch_size() as f64;
                let exec_total = us(dev.host_submit_ps) + us(occ) + us(dev.host_irq_ps);
                self.latency.push(LatencyRow {
                    sample: i,
                    device: qpc.device_stats().map(|_| DeviceLatency { inf_per_sec: batch * 1e6 / us(occ).max(1e-9), exec_us: us(prog_ps), in_wait_us: us(in_ps), out_wait_us: us(out_ps) }),
                    host_round_trip_us: exec_total,
                    submit_us: us(dev.host_submit_ps),
                    exec_total_us: exec_total,
                    exec_to_vc_us: us(dev.host_submit_ps),
                    exec_to_complete_us: us(occ) + us(dev.host_irq_ps),
                    pre_proc_us: r.pre_processing.as_secs_f64() * 1e6,
                    post_proc_us: r.post_processing.as_secs_f64() * 1e6,
                });
            }
            if legacy && p.stats() {
                let name = stats_file_name((i % qpc.instances() as u64) as u32, i);
                write_file_atomic(Path::new(&p.out_dir), &name, opstats_text(qpc.simulator().program(), &r.run.stats, dev).as_bytes())?;
                events(RecorderEvent::WroteFile(join(&p.out_dir, &name)));
            }
            if trace_sample {
                self.traced.push((i, at, r.run.clone()));
            }
            if in_window {
                self.window_index += 1;
            }
            // Stream types: rewrite the files every reporting interval of simulated time.
            let now = self.schedule.total_ps();
            if p.streaming() && now >= self.next_report_ps {
                self.write_files(qpc, true, events)?;
                while self.next_report_ps <= now {
                    self.next_report_ps = self.next_report_ps.saturating_add(p.reporting_ms.max(1).saturating_mul(PS_PER_MS));
                }
            }
        }
        if op_stats_first {
            self.op_stats_run = Some(r.run.clone());
        }
        self.last = Some(r.run);
        self.last_program_ps = prog_ps;
        Ok(r.outputs)
    }

    /// Program time of one inference while `k` instances run at once (DDR shared; module
    /// `qaic_sim::instances`); `solo_ps` for one.
    fn program_ps(&self, qpc: &LoadedQpc, solo_ps: u64, k: u32) -> Result<u64, RuntimeError> {
        if k <= 1 {
            return Ok(solo_ps);
        }
        qpc.simulator().concurrent_time_ps(k).map_err(|e| RuntimeError::Device(format!("timing {k} concurrent instances: {e}")))
    }

    /// Writes the trace and latency files (`rewrite`: a periodic report, announced with
    /// "Deleting previous file" when it replaces one).
    fn write_files(&self, qpc: &LoadedQpc, rewrite: bool, events: &mut dyn FnMut(RecorderEvent)) -> Result<(), RuntimeError> {
        let Some(p) = &self.opts.profiling else { return Ok(()) };
        let dir = Path::new(&p.out_dir);
        let put = |name: String, data: String, events: &mut dyn FnMut(RecorderEvent)| -> Result<(), RuntimeError> {
            let shown = join(&p.out_dir, &name);
            if rewrite && dir.join(&name).exists() {
                events(RecorderEvent::DeletedFile(shown.clone()));
            }
            write_file_atomic(dir, &name, data.as_bytes())?;
            events(RecorderEvent::WroteFile(shown));
            Ok(())
        };
        if p.trace() {
            let samples: Vec<crate::trace::Sample<'_>> = self.traced.iter().map(|(i, at, r)| crate::trace::Sample { inference: *i, start_ps: *at, stats: &r.stats }).collect();
            put(crate::trace::trace_file_name(0), crate::trace::chrome_trace(&samples, qpc.num_cores() as usize), events)?;
        }
        if p.latency() {
            put(latency_file_name(0), latency_text(&qpc.descriptor().network_name, qpc.num_cores(), qpc.batch_size(), &self.latency), events)?;
        }
        Ok(())
    }

    /// Ends the run: writes the final profiling files and builds the statistics.
    pub fn finish(mut self, qpc: &LoadedQpc, events: &mut dyn FnMut(RecorderEvent)) -> Result<RunSummary, RuntimeError> {
        // A last, partial round ran fewer instances at once than were charged: m < a of them.
        let a = qpc.instances().max(1) as u64;
        let m = self.schedule.count() % a;
        if m > 0 && a > 1 {
            let solo = self.last.as_ref().map_or(0, |r| r.stats.total_ps);
            let (full, part) = (self.program_ps(qpc, solo, a as u32)?, self.program_ps(qpc, solo, m as u32)?);
            let delta = full.saturating_sub(part);
            for inst in 0..m as usize {
                self.schedule.shorten(inst, delta);
            }
            let n = self.perf.exec_us.len();
            for v in &mut self.perf.exec_us[n - m as usize..] {
                *v = part as f64 / 1e6;
            }
            self.last_program_ps = part;
        }
        let streamed = self.opts.profiling.as_ref().is_some_and(|p| p.streaming());
        self.write_files(qpc, streamed, events)?;
        let dev = qpc.simulator().device();
        let (in_bytes, out_bytes) = qpc.io_bytes();
        let fig = self.last.as_ref().map_or_else(DeviceFigures::default, |r| DeviceFigures::from_sim(&r.stats, inference_occupancy_ps(dev, self.last_program_ps, in_bytes + out_bytes)));
        let mut stats = RunStats::new(&self.schedule, qpc.batch_size(), qpc.instances(), qpc.num_cores(), &self.host_times, fig);
        let mut device_lines = String::new();
        if let Some(cfg) = qpc.device_stats() {
            device_lines.push_str(&device_performance_table(&self.perf, cfg.batch_size));
            stats.stats_batch_size = Some(cfg.batch_size);
            if let Some(r) = &self.last {
                for l in core_lines(cfg, &r.stats, dev) {
                    device_lines.push_str(&l);
                    device_lines.push('\n');
                }
                if !cfg.pmu_events.is_empty() {
                    stats.pmu = r
                        .stats
                        .cores
                        .iter()
                        .map(|c| cfg.pmu_events.iter().map(|&e| (pmu_event_name(e).unwrap_or("?").to_string(), pmu_value(e, c, dev) / cfg.batch_size.max(1) as u64)).collect())
                        .collect();
                }
            }
            if let Some(r) = &self.op_stats_run {
                device_lines.push_str("Operator statistics (inference 0, simulated):\n");
                device_lines.push_str(&opstats_text(qpc.simulator().program(), &r.stats, dev));
            }
        }
        let io_crc = qpc.io_crc_stride().map(|stride| IoCrc { stride, checks: self.crc.0, bytes_covered: self.crc.1 });
        let io_crc_line = io_crc.as_ref().map(IoCrc::line);
        stats.io_crc = io_crc;
        Ok(RunSummary { stats, last: self.last, device_lines, io_crc_line })
    }
}

/// `<dir>/<name>` as printed (the directory exactly as given).
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}
