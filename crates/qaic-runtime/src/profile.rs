//! Profiling (`-aic-profiling-type`): which inferences are sampled, and the files written
//! (facts runner-output.md §3): `stats` → `aic-profiling-program-0-activation-<A>-inf-<I>.txt`
//! (operator statistics of one inference), `trace` → `aic-profiling-program-0-trace.json`
//! (Chrome trace, [`crate::trace`]), `latency` → `aic-profiling-program-0-latency.txt` (4
//! header lines, then CSV, one row per sample). The stream variants (`trace_stream`,
//! `latency_stream`) write the same files (the vendor's stream file names are not public) but
//! select inferences by simulated device time — from `start_delay_ms` for `duration_ms`,
//! every `sampling_every`-th — and rewrite them every `reporting_ms` of simulated time.

use std::fmt::Write as _;
use std::path::Path;

use crate::RuntimeError;

/// One `-aic-profiling-type` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProfilingType {
    Stats,
    Trace,
    Latency,
    TraceStream,
    LatencyStream,
}

impl ProfilingType {
    /// From the option value (`stats`, `trace`, `latency`, `trace_stream`, `latency_stream`).
    pub fn parse(s: &str) -> Option<ProfilingType> {
        Some(match s {
            "stats" => ProfilingType::Stats,
            "trace" => ProfilingType::Trace,
            "latency" => ProfilingType::Latency,
            "trace_stream" => ProfilingType::TraceStream,
            "latency_stream" => ProfilingType::LatencyStream,
            _ => return None,
        })
    }
    /// Duration-based (stream) rather than iteration-based.
    pub fn is_stream(self) -> bool {
        matches!(self, ProfilingType::TraceStream | ProfilingType::LatencyStream)
    }
    fn is_trace(self) -> bool {
        matches!(self, ProfilingType::Trace | ProfilingType::TraceStream)
    }
    fn is_latency(self) -> bool {
        matches!(self, ProfilingType::Latency | ProfilingType::LatencyStream)
    }
}

/// `-aic-profiling-sampling-rate` as "every n-th inference".
pub fn sampling_every(rate: &str) -> Option<u32> {
    Some(match rate {
        "full" => 1,
        "half" => 2,
        "fourth" => 4,
        "eighth" => 8,
        "sixteenth" => 16,
        _ => return None,
    })
}

/// What to profile and where the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilingConfig {
    /// Types asked for (repeatable option), sorted, without duplicates.
    pub types: Vec<ProfilingType>,
    /// Legacy types: first sampled inference, and how many.
    pub start_iter: u64,
    pub num_samples: u64,
    /// Directory of the files (must exist), as given (printed paths are `<dir>/<file>`).
    pub out_dir: String,
    /// Stream types: start after this much simulated device time (ms).
    pub start_delay_ms: u64,
    /// Stream types: window length in simulated ms (`None`: to the end of the run).
    pub duration_ms: Option<u64>,
    /// Stream types: sample every n-th inference of the window.
    pub sampling_every: u32,
    /// Stream types: rewrite the files every this many simulated ms.
    pub reporting_ms: u64,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        ProfilingConfig {
            types: Vec::new(),
            start_iter: 0,
            num_samples: 1,
            out_dir: ".".into(),
            start_delay_ms: 0,
            duration_ms: None,
            sampling_every: 1,
            reporting_ms: 500,
        }
    }
}

const PS_PER_MS: u64 = 1_000_000_000;

impl ProfilingConfig {
    /// True if some type is asked for.
    pub fn has(&self, f: impl Fn(ProfilingType) -> bool) -> bool {
        self.types.iter().any(|&t| f(t))
    }
    /// Any stream type.
    pub fn streaming(&self) -> bool {
        self.has(ProfilingType::is_stream)
    }
    /// Trace JSON wanted.
    pub fn trace(&self) -> bool {
        self.has(ProfilingType::is_trace)
    }
    /// Latency file wanted.
    pub fn latency(&self) -> bool {
        self.has(ProfilingType::is_latency)
    }
    /// Operator statistics files wanted.
    pub fn stats(&self) -> bool {
        self.has(|t| t == ProfilingType::Stats)
    }

    /// Checks the directory exists.
    pub fn check_dir(&self) -> Result<(), RuntimeError> {
        if !Path::new(&self.out_dir).is_dir() {
            return Err(RuntimeError::Io { path: self.out_dir.clone(), msg: "profiling output directory does not exist (-aic-profiling-out-dir must exist)".into() });
        }
        Ok(())
    }

    /// Whether inference `i`, starting at `start_ps` on its instance's simulated timeline, is
    /// sampled by the legacy types (`legacy`) and by the stream types (`stream`).
    /// `window_index` counts the inferences already seen inside the stream window.
    pub fn sampled(&self, i: u64, start_ps: u64, window_index: u64) -> (bool, bool, bool) {
        let legacy = i >= self.start_iter && i < self.start_iter.saturating_add(self.num_samples);
        let from = self.start_delay_ms.saturating_mul(PS_PER_MS);
        let in_window = start_ps >= from && self.duration_ms.is_none_or(|d| start_ps < from.saturating_add(d.saturating_mul(PS_PER_MS)));
        let stream = in_window && window_index.is_multiple_of(self.sampling_every.max(1) as u64);
        (legacy, stream, in_window)
    }
}

/// File name of the operator statistics of inference `inf` on activation `act` (program 0).
pub fn stats_file_name(activation: u32, inference: u64) -> String {
    format!("aic-profiling-program-0-activation-{activation}-inf-{inference}.txt")
}

/// File name of the latency profile of program `p`.
pub fn latency_file_name(program: u32) -> String {
    format!("aic-profiling-program-{program}-latency.txt")
}

/// One row of the latency file (µs unless stated).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub sample: u64,
    /// Device columns are `N/A` when the QPC carries no statistics.
    pub device: Option<DeviceLatency>,
    pub host_round_trip_us: f64,
    pub submit_us: f64,
    pub exec_total_us: f64,
    pub exec_to_vc_us: f64,
    pub exec_to_complete_us: f64,
    pub pre_proc_us: f64,
    pub post_proc_us: f64,
}

/// Device columns of a latency row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLatency {
    pub inf_per_sec: f64,
    pub exec_us: f64,
    pub in_wait_us: f64,
    pub out_wait_us: f64,
}

/// Columns of the latency CSV (facts runner-output.md §3.2 order).
pub const LATENCY_COLUMNS: &[&str] = &[
    "Sample",
    "queueDepth",
    "numInfInQueue",
    "devInfPerSec",
    "devExecUs",
    "devInWaitTimeUs",
    "devOutWaitTimeUs",
    "hostRoundTripUs",
    "enqTimeUs",
    "preProcTimeUs",
    "submitTimeUs",
    "execTotalUs",
    "exectoVcUs",
    "execToCompleteUs",
    "postProcUs",
    "totalRoundtripTimeUs",
];

/// The latency file: 4 header lines, then the CSV header and one row per sample (values with
/// 3 decimals, `, ` separated, as `pd.read_csv(skiprows=4, skipinitialspace=True)` reads).
pub fn latency_text(network: &str, cores: u32, batch: u32, rows: &[LatencyRow]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# qaic-rs latency profile of program 0 ({network}, {cores} core(s), batch {batch}) on the virtual AIC100");
    let _ = writeln!(t, "# dev* columns: simulated device time; host and exec columns: predicted from the device model (submit, PCIe, completion interrupt)");
    let _ = writeln!(t, "# preProcTimeUs/postProcUs: host wall time of the descriptor's transform sequences; no host queue (queueDepth 0)");
    let _ = writeln!(t, "# units: microseconds; devInfPerSec: samples per second");
    t.push_str(&LATENCY_COLUMNS.join(", "));
    t.push('\n');
    let f = |v: f64| format!("{v:.3}");
    for r in rows {
        let dev = match r.device {
            Some(d) => [f(d.inf_per_sec), f(d.exec_us), f(d.in_wait_us), f(d.out_wait_us)],
            None => ["N/A".into(), "N/A".into(), "N/A".into(), "N/A".into()],
        };
        let total = r.pre_proc_us + r.exec_total_us + r.post_proc_us;
        let cells = [
            r.sample.to_string(),
            "0".into(),
            "1".into(),
            dev[0].clone(),
            dev[1].clone(),
            dev[2].clone(),
            dev[3].clone(),
            f(r.host_round_trip_us),
            f(0.0),
            f(r.pre_proc_us),
            f(r.submit_us),
            f(r.exec_total_us),
            f(r.exec_to_vc_us),
            f(r.exec_to_complete_us),
            f(r.post_proc_us),
            f(total),
        ];
        t.push_str(&cells.join(", "));
        t.push('\n');
    }
    t
}

/// Writes `dir/name` atomically (temporary file + rename).
pub fn write_file_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<(), RuntimeError> {
    let path = dir.join(name);
    let io = |e: std::io::Error| RuntimeError::Io { path: path.display().to_string(), msg: e.to_string() };
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}
