//! Chrome-trace profiles (`-aic-profiling-type=trace`): the simulated timeline of the profiled
//! inferences as Chrome trace-event JSON (opens in Perfetto and chrome://tracing).
//!
//! Layout (facts runner-output.md §3.4: a `HOST_PROC` section, then `Process 0..N`, one per
//! core, engines as threads): process `HOST_PROC` (pid 0) has one span per profiled inference;
//! process `Process c` (pid c + 1) is core c with threads `t0 HVX` (vector unit and data
//! movement), `t4 HMX` (tensor unit), `t5 DMAIssue` (the core's DMA engine), `sync` (waits on
//! DMAs, semaphores, barriers) and `layers` (layer spans). Times are simulated device µs; each
//! inference starts where the previous one's occupancy ended.

use std::path::{Path, PathBuf};

use qaic_sim::{SimStats, TraceTrack};
use serde_json::{json, Value};

use crate::RuntimeError;

/// File name of the trace of program `p` (facts runner-output.md §3.1).
pub fn trace_file_name(program: u32) -> String {
    format!("aic-profiling-program-{program}-trace.json")
}

/// One profiled inference: its number, its start on the simulated timeline (ps) and its stats
/// (from a traced run).
pub struct Sample<'a> {
    pub inference: u64,
    pub start_ps: u64,
    pub stats: &'a SimStats,
}

fn tid(t: TraceTrack) -> (usize, u32) {
    match t {
        TraceTrack::Vector(c) => (c, 0),
        TraceTrack::Matrix(c) => (c, 4),
        TraceTrack::Dma(c) => (c, 5),
        TraceTrack::Wait(c) => (c, 6),
        TraceTrack::Layer(c) => (c, 7),
    }
}

/// The Chrome trace JSON of `samples` on a device program of `cores` cores.
///
/// ```
/// let s = qaic_sim::SimStats { total_ps: 2_000_000, trace: vec![qaic_sim::TraceEvent {
///     track: qaic_sim::TraceTrack::Matrix(0), name: "Conv".into(), start_ps: 1_000_000, dur_ps: 500_000 }], ..Default::default() };
/// let j = qaic_runtime::trace::chrome_trace(&[qaic_runtime::trace::Sample { inference: 0, start_ps: 0, stats: &s }], 1);
/// assert!(j.contains("\"name\":\"Conv\"") && j.contains("t4 HMX") && j.contains("HOST_PROC"));
/// ```
pub fn chrome_trace(samples: &[Sample<'_>], cores: usize) -> String {
    let us = |ps: u64| ps as f64 / 1e6;
    let mut ev: Vec<Value> = vec![json!({"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "HOST_PROC"}})];
    for c in 0..cores {
        ev.push(json!({"name": "process_name", "ph": "M", "pid": c + 1, "args": {"name": format!("Process {c}")}}));
        ev.push(json!({"name": "process_sort_index", "ph": "M", "pid": c + 1, "args": {"sort_index": c + 1}}));
        for (t, n) in [(0, "t0 HVX"), (4, "t4 HMX"), (5, "t5 DMAIssue"), (6, "sync"), (7, "layers")] {
            ev.push(json!({"name": "thread_name", "ph": "M", "pid": c + 1, "tid": t, "args": {"name": n}}));
        }
    }
    for s in samples {
        ev.push(json!({"name": format!("inference {}", s.inference), "cat": "inference", "ph": "X", "pid": 0, "tid": 0,
            "ts": us(s.start_ps), "dur": us(s.stats.total_ps), "args": {"simulated": true}}));
        for e in &s.stats.trace {
            let (c, t) = tid(e.track);
            let cat = match e.track {
                TraceTrack::Matrix(_) | TraceTrack::Vector(_) => "op",
                TraceTrack::Dma(_) => "dma",
                TraceTrack::Wait(_) => "wait",
                TraceTrack::Layer(_) => "layer",
            };
            ev.push(json!({"name": e.name, "cat": cat, "ph": "X", "pid": c + 1, "tid": t, "ts": us(s.start_ps + e.start_ps), "dur": us(e.dur_ps)}));
        }
    }
    let doc = json!({"traceEvents": ev, "displayTimeUnit": "ns", "otherData": {"producer": "qaic-rs virtual AIC100 simulator", "time": "simulated device time"}});
    doc.to_string()
}

/// Writes the trace to `dir/aic-profiling-program-0-trace.json` (temporary file + rename).
pub fn write_trace(dir: &Path, samples: &[Sample<'_>], cores: usize) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(trace_file_name(0));
    let io = |e: std::io::Error| RuntimeError::Io { path: path.display().to_string(), msg: e.to_string() };
    if !dir.is_dir() {
        return Err(RuntimeError::Io { path: dir.display().to_string(), msg: "profiling output directory does not exist".into() });
    }
    let tmp = dir.join(format!(".{}.tmp", trace_file_name(0)));
    std::fs::write(&tmp, chrome_trace(samples, cores)).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}
