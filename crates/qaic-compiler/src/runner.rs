//! `qaic-runner`: runs a compiled QPC (`-t <dir>`) on the virtual AIC100 — option table
//! ([`RUNNER_OPTIONS`]), typed configuration ([`RunnerConfig`]) and the run loop ([`run`]).
//!
//! The vendor's runner parses with `getopt_long_only`, so `-t dir`, `--test-data dir`,
//! `--test-data=dir` and `-write-output-dir=out` are all accepted; the shared
//! [`crate::cli_options`] parser does the same.
//!
//! ```
//! use qaic_compiler::runner::{parse_runner_command, RunnerCommand};
//! let RunnerCommand::Run(c) = parse_runner_command(["-t", "qpc", "--num-iter", "5", "-a", "2"]).unwrap() else { panic!() };
//! assert_eq!((c.num_iter, c.activations), (5, 2));
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qaic_runtime::{LoadOptions, LoadedQpc, ProfilingConfig, ProfilingType, Recorder, RecorderEvent, RecorderOptions, RunSummary, DEFAULT_SUBMIT_RETRIES};
use qaic_tensor::{Shape, Tensor};

use crate::cli_options::{Action, CliError, Feature, OptSpec, OptionTable, Parsed, ParsedArgs, Status, ValueKind};
use crate::exec_options::RandomInputs;
use crate::inputs::InputSpec;
use crate::outputs::{join_dir, output_file_name};
use crate::run::RunError;

const PATH: ValueKind = ValueKind::Str("path");
const FLAG: ValueKind = ValueKind::Flag;
const ANY_POS: ValueKind = ValueKind::Int { min: 1, max: i64::MAX };
const ANY_NONNEG: ValueKind = ValueKind::Int { min: 0, max: i64::MAX };
const G_RUN: &str = "Running";
const G_OUT: &str = "Outputs";
const G_PROF: &str = "Profiling and statistics";
const G_INFO: &str = "Information";

const PARTITION: Feature = Feature { name: "multi-device partitioning", issue: None };
const RUNTIME: Feature = Feature { name: "this runtime control", issue: None };

const fn o(name: &'static str, kind: ValueKind, help: &'static str) -> OptSpec {
    OptSpec::new(name, kind, help)
}

/// The option table of `qaic-runner` (facts: qaic-in-practice.md §(a)).
pub static RUNNER_OPTIONS: &[OptSpec] = &[
    o("t", PATH, "QPC directory (holding programqpc.bin) or the programqpc.bin file itself.").aliases(&["test-data"]).group(G_RUN),
    o("i", PATH, "Raw input file; repeat once per input, in binding order. Without -i: bounded random inputs.")
        .aliases(&["input-file"]).repeatable().group(G_RUN),
    o("n", ANY_POS, "Number of inferences (total over all activations).").aliases(&["num-iter"]).default("40").group(G_RUN),
    o("time", ANY_POS, "Run for this many seconds of host time instead of -n.").group(G_RUN),
    o("a", ANY_POS, "Instances (activations) of the network loaded side by side on disjoint cores.")
        .aliases(&["aic-num-of-activations"]).default("1").group(G_RUN),
    o("d", ANY_NONNEG, "Device id: the virtual AIC100 is device 0.").aliases(&["aic-device-id"]).default("0").group(G_RUN),
    o("aic-device-variant", ValueKind::Enum(&["pro16", "standard14"]), "qaic-rs: card variant of the virtual AIC100: pro16 (16 cores) or standard14 (14 cores; instances x cores must fit).").default("pro16").group(G_RUN),
    o("S", ANY_POS, "Inferences queued per activation on the host.").aliases(&["set-size"]).default("10")
        .status(Status::Ignored("the simulator runs inferences one after another; queue depth does not change simulated device time"))
        .group(G_RUN),
    o("T", ANY_POS, "Host threads per queue.").aliases(&["aic-threads-per-queue"]).default("4")
        .status(Status::Ignored("one host thread drives the simulator")).group(G_RUN),
    o("random-seed", ANY_NONNEG, "qaic-rs: seed of the random inputs.").default("0").group(G_RUN),
    o("unbound-random", FLAG, "Random inputs: every byte 0..255 regardless of the data type.").group(G_RUN),
    o("D", ValueKind::Str("qid[:qid]"), "Device list of multi-device QPCs.").aliases(&["aic-device-map", "dev-list"]).unsupported(PARTITION).group(G_RUN),
    o("o", PATH, "Expected output file, once per output in binding order: every inference's outputs must equal them byte for byte (Output validation successful! / Validation Failed for iteration ...).").aliases(&["output-file"]).repeatable().group(G_RUN),
    o("l", FLAG, "Live reporting: every -r ms of host time, print the inferences so far and their simulated device rate.").aliases(&["live-reporting"]).group(G_RUN),
    o("r", ANY_POS, "Live reporting period (ms of host time); needs -l.").aliases(&["live-reporting-period"]).default("1000").group(G_RUN),
    o("s", FLAG, "Periodic live profiling stats.").aliases(&["stats"]).unsupported(RUNTIME).group(G_RUN),
    o("p", ValueKind::Enum(&["on", "off"]), "Host pre/post processing (the QPC's transform sequences, e.g. custom I/O layout and precision). off: inputs and outputs are in the DMA buffers' (network) format.").aliases(&["pre-post-processing"]).default("on").group(G_RUN),
    o("auto-batch-input", FLAG, "An -i file holding one sample (1/batch of the input) is repeated up to the QPC's batch size.").group(G_RUN),
    o("aic-batch-input-directory", PATH, "Batch mode (single-input networks): every file of the directory, in name order, one per inference; inference i uses file i mod K.").group(G_RUN),
    o("aic-batch-input-file-list", PATH, "Batch mode: each line lists one inference's input files (comma-separated, binding order); inference i uses line i mod K.").group(G_RUN),
    o("aic-batch-json-input", PATH, "Batch mode: JSON {\"IO-files\": [[{path, io-direction, map-to, elem-size|data-type, dims}, ...], ...]}, one inner list per inference (inputs only are used).").group(G_RUN),
    o("aic-batch-max-memory", ANY_POS, "Batch mode: most MB of input data loaded.").default("1024").group(G_RUN),
    o("submit-timeout", ANY_NONNEG, "Wait per request in ms of simulated device time (0 = the kernel default, 5000 ms); an inference whose simulated time (program + PCIe I/O) exceeds it times out.").default("0").group(G_RUN),
    o("submit-retry-count", ANY_NONNEG, "Retries of a timed-out inference before the run fails (the simulator is deterministic: a retry takes as long).").default("5").group(G_RUN),
    o("dump-input-buffers", FLAG, "Write the input buffers used as <name>-input-inf-0.bin into --write-output-dir (or .).").group(G_RUN),
    o("write-output-dir", PATH, "Write outputs as <name>-activation-<k>-inf-<N>.bin here.").group(G_OUT),
    o("write-output-start-iter", ANY_NONNEG, "First inference whose outputs are written.").default("0").group(G_OUT),
    o("write-output-num-samples", ANY_POS, "Number of inferences whose outputs are written.").default("1").group(G_OUT),
    o("stats-json", PATH, "qaic-rs: also write the statistics as JSON (schema qaic-rs.runner-stats, version 1).").group(G_PROF),
    o("ddr-stats", FLAG, "qaic-rs: print the simulated per-core DDR traffic of one inference.").group(G_PROF),
    o("aic-profiling-type", ValueKind::Enum(&["stats", "trace", "latency", "trace_stream", "latency_stream"]), "Profiling type; repeatable. stats: operator statistics per sampled inference (aic-profiling-program-0-activation-<A>-inf-<I>.txt; the QPC must be compiled with -aic-profiling-type=stats); trace: Chrome-trace JSON of the simulated timeline (aic-profiling-program-0-trace.json); latency: per-inference latency CSV (aic-profiling-program-0-latency.txt). The _stream variants write the same files, sampling by simulated device time.")
        .repeatable().group(G_PROF),
    o("aic-profiling-format", ValueKind::Enum(&["latency", "ascii", "json"]), "Deprecated: use --aic-profiling-type (ascii = stats, json = trace).").repeatable().group(G_PROF),
    o("aic-profiling-start-iter", ANY_NONNEG, "First profiled inference.").default("0").group(G_PROF),
    o("aic-profiling-num-samples", ANY_POS, "Profiled inferences to save.").default("1").group(G_PROF),
    o("aic-profiling-out-dir", PATH, "Directory of profiling files (must exist).").default(".").group(G_PROF),
    o("aic-profiling-start-delay", ANY_NONNEG, "Stream profiling: start after this much simulated device time (ms).").group(G_PROF),
    o("aic-profiling-duration", ANY_POS, "Stream profiling: window length in simulated device time (ms; default: to the end).").group(G_PROF),
    o("aic-profiling-sampling-rate", ValueKind::Enum(&["full", "half", "fourth", "eighth", "sixteenth"]), "Stream profiling: sample every inference (full), every 2nd (half), 4th, 8th or 16th.")
        .default("full").group(G_PROF),
    o("aic-profiling-reporting-rate", ValueKind::Enum(&["500", "1000", "2000", "4000"]), "Stream profiling: rewrite the files every this many ms of simulated device time.")
        .default("500").group(G_PROF),
    o("v", FLAG, "Verbose: informational logs on stderr.").aliases(&["verbose"]).group(G_INFO),
    o("h", FLAG, "Lists help options.").aliases(&["help", "usage"]).action(Action::Help).group(G_INFO),
    o("u", FLAG, "Detailed help with options and defaults.").action(Action::DetailedHelp).group(G_INFO),
];

/// The runner's option table.
pub fn runner_option_table() -> OptionTable {
    OptionTable {
        tool: "qaic-runner",
        about: "qaic-rs runner of compiled QPCs (compatible with the Qualcomm Cloud AI 100 qaic-runner options). \
                There is no real card here: QPCs run on the virtual AIC100 simulator; the Stats block reports simulated device time.",
        options: RUNNER_OPTIONS,
    }
}

/// What a qaic-runner command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerCommand {
    Help(String),
    Run(Box<RunnerConfig>),
}

/// Everything qaic-runner was asked to do, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerConfig {
    pub test_data: PathBuf,
    pub input_files: Vec<PathBuf>,
    pub num_iter: u64,
    /// `--time`: seconds of host time (wins over `-n`).
    pub time_s: Option<u64>,
    pub activations: u32,
    pub device_id: u32,
    /// `--aic-device-variant=standard14`: the 14-core card.
    pub standard14: bool,
    pub random: RandomInputs,
    pub write_output_dir: Option<String>,
    pub write_output_start_iter: u64,
    pub write_output_num_samples: u64,
    pub stats_json: Option<PathBuf>,
    pub ddr_stats: bool,
    pub verbose: bool,
    /// `--aic-profiling-type` (and its companions).
    pub profiling: Option<ProfilingConfig>,
    /// `--submit-timeout` (ms of simulated device time; 0 = 5000) and `--submit-retry-count`.
    pub submit_timeout_ms: u64,
    pub submit_retries: u32,
    /// `-o`: expected output files, one per output.
    pub expected_outputs: Vec<PathBuf>,
    /// `-p off` turns the host pre/post-processing off.
    pub host_processing: bool,
    /// `--dump-input-buffers`.
    pub dump_input_buffers: bool,
    /// Batch input modes (`--aic-batch-*`).
    pub batch: Option<BatchInput>,
    /// `--aic-batch-max-memory` in MB.
    pub batch_max_memory_mb: u64,
    /// `-l` with `-r`: live reporting period in ms of host time.
    pub live_period_ms: Option<u64>,
    /// `--auto-batch-input`.
    pub auto_batch: bool,
}

/// A batch input mode of qaic-runner.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchInput {
    Directory(PathBuf),
    FileList(PathBuf),
    Json(PathBuf),
}

/// The profiling configuration of `-aic-profiling-type` (repeatable), the deprecated
/// `-aic-profiling-format` (`ascii` = stats, `json` = trace, `latency`) and their companions
/// (shared with qaic-exec). `None` when no type is given; companions without a type are an
/// error, so they never go unnoticed.
pub fn profiling_config(a: &ParsedArgs) -> Result<Option<ProfilingConfig>, CliError> {
    let mut types = Vec::new();
    for t in a.strings("aic-profiling-type") {
        types.push(ProfilingType::parse(&t).ok_or_else(|| CliError::Invalid { option: a.spelled("aic-profiling-type"), message: format!("unknown profiling type `{t}`") })?);
    }
    for f in a.strings("aic-profiling-format") {
        let t = match f.as_str() {
            "ascii" | "stats" => ProfilingType::Stats,
            "json" | "trace" => ProfilingType::Trace,
            _ => ProfilingType::Latency,
        };
        tracing::warn!("-aic-profiling-format is deprecated: use -aic-profiling-type");
        types.push(t);
    }
    types.sort();
    types.dedup();
    let companions = [
        "aic-profiling-start-iter",
        "aic-profiling-num-samples",
        "aic-profiling-out-dir",
        "aic-profiling-start-delay",
        "aic-profiling-duration",
        "aic-profiling-sampling-rate",
        "aic-profiling-reporting-rate",
    ];
    if types.is_empty() {
        if let Some(c) = companions.iter().find(|c| a.given(c)) {
            return Err(CliError::Requires { option: a.spelled(c), needs: "-aic-profiling-type".into() });
        }
        return Ok(None);
    }
    let stream = types.iter().any(|t| t.is_stream());
    for c in ["aic-profiling-start-delay", "aic-profiling-duration", "aic-profiling-sampling-rate", "aic-profiling-reporting-rate"] {
        if a.given(c) && !stream {
            return Err(CliError::Requires { option: a.spelled(c), needs: "a stream profiling type (-aic-profiling-type=trace_stream or latency_stream)".into() });
        }
    }
    let d = ProfilingConfig::default();
    Ok(Some(ProfilingConfig {
        types,
        start_iter: a.int("aic-profiling-start-iter").unwrap_or(0) as u64,
        num_samples: a.int("aic-profiling-num-samples").unwrap_or(1) as u64,
        out_dir: a.str("aic-profiling-out-dir").unwrap_or(".").to_string(),
        start_delay_ms: a.int("aic-profiling-start-delay").unwrap_or(0) as u64,
        duration_ms: a.int("aic-profiling-duration").map(|v| v as u64),
        sampling_every: a.str("aic-profiling-sampling-rate").and_then(qaic_runtime::sampling_every).unwrap_or(d.sampling_every),
        reporting_ms: a.str("aic-profiling-reporting-rate").and_then(|r| r.parse().ok()).unwrap_or(d.reporting_ms),
    }))
}

fn int(a: &ParsedArgs, name: &str, default: i64) -> i64 {
    a.int(name).unwrap_or(default)
}

/// Parses a qaic-runner command line (without the program name).
pub fn parse_runner_command<I, S>(args: I) -> Result<RunnerCommand, CliError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let table = runner_option_table();
    let a = match table.parse(args)? {
        Parsed::Help => return Ok(RunnerCommand::Help(table.help())),
        Parsed::DetailedHelp => return Ok(RunnerCommand::Help(table.detailed_help())),
        Parsed::Args(a) => a,
    };
    if let Some(e) = a.first_unsupported() {
        return Err(e);
    }
    let test_data = a.str("t").map(PathBuf::from).ok_or_else(|| CliError::Requires { option: "qaic-runner".into(), needs: "a QPC: -t <qpc dir> (Error: Missing test data path)".into() })?;
    let write_any = a.given("write-output-dir") || a.given("write-output-start-iter") || a.given("write-output-num-samples");
    let cfg = RunnerConfig {
        test_data,
        input_files: a.strings("i").into_iter().map(PathBuf::from).collect(),
        num_iter: int(&a, "n", 40) as u64,
        time_s: a.int("time").map(|t| t as u64),
        activations: int(&a, "a", 1).min(u32::MAX as i64) as u32,
        device_id: int(&a, "d", 0).min(u32::MAX as i64) as u32,
        standard14: a.str("aic-device-variant") == Some("standard14"),
        random: RandomInputs { unbound: a.flag("unbound-random"), seed: int(&a, "random-seed", 0) as u64, ..Default::default() },
        write_output_dir: if write_any { Some(a.str("write-output-dir").unwrap_or(".").to_string()) } else { None },
        write_output_start_iter: int(&a, "write-output-start-iter", 0) as u64,
        write_output_num_samples: int(&a, "write-output-num-samples", 1) as u64,
        stats_json: a.str("stats-json").map(PathBuf::from),
        ddr_stats: a.flag("ddr-stats"),
        verbose: a.flag("v"),
        profiling: profiling_config(&a)?,
        submit_timeout_ms: int(&a, "submit-timeout", 0) as u64,
        submit_retries: int(&a, "submit-retry-count", DEFAULT_SUBMIT_RETRIES as i64).min(u32::MAX as i64) as u32,
        expected_outputs: a.strings("o").into_iter().map(PathBuf::from).collect(),
        host_processing: a.str("p") != Some("off"),
        dump_input_buffers: a.flag("dump-input-buffers"),
        batch: None,
        batch_max_memory_mb: int(&a, "aic-batch-max-memory", 1024) as u64,
        live_period_ms: a.flag("l").then(|| int(&a, "r", 1000) as u64),
        auto_batch: a.flag("auto-batch-input"),
    };
    if a.given("r") && !a.flag("l") {
        return Err(CliError::Requires { option: a.spelled("r"), needs: "-l".into() });
    }
    let mut cfg = cfg;
    let modes: Vec<(&str, BatchInput)> = [
        ("aic-batch-input-directory", a.str("aic-batch-input-directory").map(|p| BatchInput::Directory(p.into()))),
        ("aic-batch-input-file-list", a.str("aic-batch-input-file-list").map(|p| BatchInput::FileList(p.into()))),
        ("aic-batch-json-input", a.str("aic-batch-json-input").map(|p| BatchInput::Json(p.into()))),
    ]
    .into_iter()
    .filter_map(|(n, m)| m.map(|m| (n, m)))
    .collect();
    if modes.len() > 1 {
        return Err(CliError::Conflict { a: a.spelled(modes[0].0), b: a.spelled(modes[1].0) });
    }
    if let Some((name, m)) = modes.into_iter().next() {
        if a.given("i") {
            return Err(CliError::Conflict { a: a.spelled(name), b: a.spelled("i") });
        }
        cfg.batch = Some(m);
    }
    if cfg.time_s.is_none() && cfg.write_output_dir.is_some() && cfg.write_output_start_iter + cfg.write_output_num_samples > cfg.num_iter {
        return Err(CliError::Invalid {
            option: "-write-output-num-samples".into(),
            message: format!(
                "The sum of write-output-start-iter({}) and write-output-num-samples({}) should be <= numInf({}).",
                cfg.write_output_start_iter, cfg.write_output_num_samples, cfg.num_iter
            ),
        });
    }
    Ok(RunnerCommand::Run(Box::new(cfg)))
}

/// What the runner does, as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerEvent {
    /// `Input file: <path>`.
    InputFile(String),
    /// `Using bounded random inputs` / unbound.
    RandomInputs { unbound: bool },
    /// `Writing file:<path>`.
    WroteFile(String),
    /// `Deleting previous file: <path>`.
    DeletedFile(String),
    /// A line printed as is (output validation).
    Message(String),
}

/// Inputs of `-i` files (each exactly its binding's size) or bounded random data.
fn single_inputs(cfg: &RunnerConfig, qpc: &LoadedQpc, events: &mut dyn FnMut(RunnerEvent)) -> Result<Vec<Vec<u8>>, RunError> {
    let ios = qpc.inputs().to_vec();
    Ok(if cfg.input_files.is_empty() {
        events(RunnerEvent::RandomInputs { unbound: cfg.random.unbound });
        let specs: Vec<InputSpec> = ios.iter().map(|i| InputSpec { name: i.name.clone(), dtype: i.dtype, shape: Shape::known(&i.shape) }).collect();
        crate::inputs::random_inputs(&specs, &cfg.random)?
            .iter()
            .map(|t| t.raw_bytes().map(|b| b.to_vec()).map_err(|e| RunError::Model(e.to_string())))
            .collect::<Result<_, _>>()?
    } else {
        if cfg.input_files.len() != ios.len() {
            return Err(RunError::Model(format!("the QPC has {} input(s) ({}), {} -i file(s) given", ios.len(), ios.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "), cfg.input_files.len())));
        }
        let mut v = Vec::new();
        for (f, io) in cfg.input_files.iter().zip(&ios) {
            let mut b = std::fs::read(f).map_err(|e| RunError::Model(format!("input file {}: {e}", f.display())))?;
            let batch = qpc.batch_size() as u64;
            if cfg.auto_batch && batch > 1 && !b.is_empty() && b.len() as u64 * batch == io.bytes {
                // --auto-batch-input: one sample repeated to the compiled batch.
                b = b.repeat(batch as usize);
            }
            if b.len() as u64 != io.bytes {
                return Err(RunError::Model(format!(
                    "input file {}: {} bytes, input `{}` ({} {:?}) needs {}",
                    f.display(),
                    b.len(),
                    io.name,
                    io.dtype.name(),
                    io.shape,
                    io.bytes
                )));
            }
            events(RunnerEvent::InputFile(f.display().to_string()));
            v.push(b);
        }
        v
    })
}

/// Input sets of a batch mode, each checked against the bindings; at most `max_mb` MB in all.
fn batch_inputs(b: &BatchInput, specs: &[InputSpec], max_mb: u64, events: &mut dyn FnMut(RunnerEvent)) -> Result<Vec<Vec<Vec<u8>>>, RunError> {
    use crate::inputs;
    let mut sets: Vec<Vec<Tensor>> = Vec::new();
    match b {
        BatchInput::Json(p) => {
            let j = inputs::read_json_inputs(p)?;
            for k in 0..j.inferences.len() {
                for e in j.inferences[k].iter().filter(|e| e.direction == inputs::IoDirection::In) {
                    events(RunnerEvent::InputFile(e.path.display().to_string()));
                }
                sets.push(j.load(k, specs)?);
            }
        }
        BatchInput::FileList(p) => {
            let l = inputs::read_input_list(p)?;
            for k in 0..l.inferences.len() {
                for f in &l.inferences[k].files {
                    events(RunnerEvent::InputFile(f.display().to_string()));
                }
                sets.push(l.load(k, specs)?);
            }
        }
        BatchInput::Directory(d) => {
            if specs.len() != 1 {
                return Err(RunError::Model(format!("--aic-batch-input-directory: the QPC has {} inputs; batch directories feed single-input networks", specs.len())));
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(d)
                .map_err(|e| RunError::Model(format!("--aic-batch-input-directory {}: {e}", d.display())))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
            let l = inputs::parse_input_list(&text, std::path::Path::new(""), &d.display().to_string())?;
            for k in 0..l.inferences.len() {
                for f in &l.inferences[k].files {
                    events(RunnerEvent::InputFile(f.display().to_string()));
                }
                sets.push(l.load(k, specs)?);
            }
        }
    }
    if sets.is_empty() {
        return Err(RunError::Model("batch input: no inference sets".into()));
    }
    let mut total = 0u64;
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let mut v = Vec::new();
        for t in set {
            let b = t.raw_bytes().map_err(|e| RunError::Model(e.to_string()))?.to_vec();
            total += b.len() as u64;
            v.push(b);
        }
        if total > max_mb.saturating_mul(1 << 20) {
            return Err(RunError::Model(format!("batch input: more than --aic-batch-max-memory={max_mb} MB of input data")));
        }
        out.push(v);
    }
    Ok(out)
}

/// One `-l` line: inferences so far and the simulated device rate (never a host rate).
fn live_line(rec: &Recorder, batch: u32) -> String {
    let us = rec.simulated_us();
    let rate = if us == 0 { 0.0 } else { rec.count() as f64 * 1e6 / us as f64 * batch as f64 };
    format!("Live: {} inference(s) after {:.1} s of host time; simulated device {us} us, {rate:.3} samples/s", rec.count(), rec.host_times().iter().map(Duration::as_secs_f64).sum::<f64>())
}

/// Result of a runner run: statistics, the last inference's simulator figures, and the lines
/// printed after the Stats block.
pub type RunnerReport = RunSummary;

/// Turns recorder events into runner events.
pub(crate) fn recorder_event(e: RecorderEvent) -> Option<RunnerEvent> {
    match e {
        RecorderEvent::WroteFile(p) => Some(RunnerEvent::WroteFile(p)),
        RecorderEvent::DeletedFile(p) => Some(RunnerEvent::DeletedFile(p)),
        RecorderEvent::Retry { .. } => None,
    }
}

/// Loads the QPC and runs the inferences. Inputs are read and checked before any run; output
/// files are written atomically.
pub fn run(cfg: &RunnerConfig, events: &mut dyn FnMut(RunnerEvent)) -> Result<RunnerReport, RunError> {
    let variant = if cfg.standard14 { qaic_device::Variant::Standard14 } else { qaic_device::Variant::Pro16 };
    let opts = LoadOptions { instances: cfg.activations, device_id: cfg.device_id, variant, host_processing: cfg.host_processing };
    let qpc = LoadedQpc::open(&cfg.test_data, &opts).map_err(|e| RunError::Model(e.to_string()))?;
    let ios = qpc.inputs().to_vec();
    let specs: Vec<InputSpec> = ios.iter().map(|i| InputSpec { name: i.name.clone(), dtype: i.dtype, shape: Shape::known(&i.shape) }).collect();
    let sets: Vec<Vec<Vec<u8>>> = match &cfg.batch {
        Some(b) => batch_inputs(b, &specs, cfg.batch_max_memory_mb, events)?,
        None => vec![single_inputs(cfg, &qpc, events)?],
    };
    let data = sets[0].clone();
    // -o: expected outputs, checked before any run.
    let expected: Vec<Vec<u8>> = if cfg.expected_outputs.is_empty() {
        Vec::new()
    } else {
        let outs = qpc.outputs();
        if cfg.expected_outputs.len() != outs.len() {
            return Err(RunError::Model(format!("the QPC has {} output(s) ({}), {} -o file(s) given", outs.len(), outs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", "), cfg.expected_outputs.len())));
        }
        let mut v = Vec::new();
        for (f, o) in cfg.expected_outputs.iter().zip(outs) {
            let b = std::fs::read(f).map_err(|e| RunError::Model(format!("output file {}: {e}", f.display())))?;
            if b.len() as u64 != o.bytes {
                return Err(RunError::Model(format!("output file {}: {} bytes, output `{}` ({} {:?}) has {}", f.display(), b.len(), o.name, o.dtype.name(), o.shape, o.bytes)));
            }
            v.push(b);
        }
        v
    };
    if cfg.dump_input_buffers {
        let dir = cfg.write_output_dir.clone().unwrap_or_else(|| ".".into());
        std::fs::create_dir_all(&dir).map_err(|e| RunError::Model(format!("Invalid output dir: {dir}: {e}")))?;
        for (io, b) in ios.iter().zip(&data) {
            let p = join_dir(&dir, &crate::inputs::input_dump_file_name(&io.name, 0));
            crate::fsutil::write_atomic(std::path::Path::new(&p), b).map_err(|e| RunError::Model(e.to_string()))?;
            events(RunnerEvent::WroteFile(p));
        }
    }
    let mut failed_iterations = 0u64;
    let mut validation: Vec<String> = Vec::new();
    let refs: Vec<Vec<&[u8]>> = sets.iter().map(|set| set.iter().map(|v| v.as_slice()).collect()).collect();
    let ropts = RecorderOptions { profiling: cfg.profiling.clone(), submit_timeout_ms: cfg.submit_timeout_ms, submit_retries: cfg.submit_retries };
    let mut rec = Recorder::new(&qpc, ropts).map_err(|e| RunError::Model(e.to_string()))?;
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut pending: Vec<String> = Vec::new();
    loop {
        let i = rec.count();
        match cfg.time_s {
            Some(t) if start.elapsed() >= Duration::from_secs(t) => break,
            None if i >= cfg.num_iter => break,
            _ => {}
        }
        let outs = rec.run(&qpc, &refs[(i % refs.len() as u64) as usize], &mut |e| {
                if let Some(e) = recorder_event(e) {
                    events(e)
                }
            }).map_err(|e| RunError::Model(e.to_string()))?;
        if !expected.is_empty() {
            // The vendor skips its stats buffer `aiccyclecounts`; this QPC has none.
            let failed = outs.iter().zip(&expected).zip(qpc.outputs()).filter(|((g, w), o)| o.name != "aiccyclecounts" && g != w).count();
            if failed > 0 {
                failed_iterations += 1;
                validation.push(format!("Validation Failed for iteration {i}, num failed: {failed}, num passed: {}", outs.len() - failed));
            }
        }
        if let Some(dir) = &cfg.write_output_dir
            && i >= cfg.write_output_start_iter
            && i < cfg.write_output_start_iter + cfg.write_output_num_samples
        {
            std::fs::create_dir_all(dir).map_err(|e| RunError::Model(format!("Invalid output dir: {dir}: {e}")))?;
            let activation = (i % qpc.instances() as u64) as u32;
            for (o, bytes) in qpc.outputs().iter().zip(&outs) {
                let p = join_dir(dir, &output_file_name(&o.name, activation, i));
                crate::fsutil::write_atomic(std::path::Path::new(&p), bytes).map_err(|e| RunError::Model(e.to_string()))?;
                pending.push(p);
            }
        }
        for p in pending.drain(..) {
            events(RunnerEvent::WroteFile(p));
        }
        if let Some(period) = cfg.live_period_ms
            && last_report.elapsed() >= Duration::from_millis(period)
        {
            last_report = Instant::now();
            events(RunnerEvent::Message(live_line(&rec, qpc.batch_size())));
        }
    }
    let summary = rec
        .finish(&qpc, &mut |e| {
            if let Some(e) = recorder_event(e) {
                events(e)
            }
        })
        .map_err(|e| RunError::Model(e.to_string()))?;
    if !expected.is_empty() {
        for l in validation {
            events(RunnerEvent::Message(l));
        }
        if failed_iterations > 0 {
            return Err(RunError::Model(format!("output validation failed for {failed_iterations} of {} inference(s)", summary.stats.inference_cnt)));
        }
        events(RunnerEvent::Message("Output validation successful!".into()));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> RunnerConfig {
        match parse_runner_command(args).unwrap() {
            RunnerCommand::Run(c) => *c,
            RunnerCommand::Help(_) => panic!("help"),
        }
    }

    #[test]
    fn spellings_and_defaults() {
        let c = cfg(&["-t", "q", "-i", "a.raw", "--input-file=b.raw", "-write-output-dir", "out", "--num-iter", "7", "-a=2", "--aic-device-id", "0"]);
        assert_eq!(c.test_data, PathBuf::from("q"));
        assert_eq!(c.input_files, vec![PathBuf::from("a.raw"), PathBuf::from("b.raw")]);
        assert_eq!((c.num_iter, c.activations, c.device_id), (7, 2, 0));
        assert_eq!(c.write_output_dir.as_deref(), Some("out"));
        let d = cfg(&["--test-data=q", "--time", "3"]);
        assert_eq!((d.num_iter, d.time_s, d.write_output_dir), (40, Some(3), None));
        let w = cfg(&["-t", "q", "--write-output-num-samples", "2"]);
        assert_eq!(w.write_output_dir.as_deref(), Some("."));
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse_runner_command(a).unwrap_err().to_string();
        assert!(e(&["-n", "3"]).contains("Missing test data path"));
        assert!(e(&["-t", "q", "-n", "0"]).contains("out of range"));
        assert!(e(&["-t", "q", "-n", "2", "--write-output-start-iter", "2"]).contains("should be <= numInf(2)"));
        assert!(e(&["-t", "q", "-D", "0:1"]).starts_with("not supported yet: -D"));
        assert!(e(&["-t", "q", "--num-iters", "2"]).starts_with("Invalid option --num-iters."));
        assert!(matches!(parse_runner_command(["--help"]), Ok(RunnerCommand::Help(t)) if t.contains("qaic-runner")));
    }
}
