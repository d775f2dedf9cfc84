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

use crate::cli_options::{Action, CliError, OptSpec, OptionTable, Parsed, ParsedArgs, Status, ValueKind};
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
    o("D", ValueKind::Str("qid[:qid]"), "Device map: the QIDs a multi-device QPC runs on, separated by ':'. qaic-rs QPCs use one device, so -D <id> is -d <id> (validated); a map listing fewer or more devices than the QPC uses is an error naming both counts.")
        .aliases(&["aic-device-map", "dev-list"]).group(G_RUN),
    o("o", PATH, "Expected output file, once per output in binding order: every inference's outputs must equal them byte for byte (Output validation successful! / Validation Failed for iteration ...).").aliases(&["output-file"]).repeatable().group(G_RUN),
    o("l", FLAG, "Live reporting: every -r ms of host time, print the inferences so far and their simulated device rate.").aliases(&["live-reporting"]).group(G_RUN),
    o("r", ANY_POS, "Reporting period in ms: of host time for -l, of simulated device time for -s; needs -l or -s.").aliases(&["live-reporting-period"]).default("1000").group(G_RUN),
    o("s", FLAG, "Periodic live statistics over simulated device time: each time the run's simulated device time passes another -r ms, print `Stats: <n> inference(s) after <t> ms of simulated device time; last <d> ms: <k> inference(s), <r> samples/s; overall <R> samples/s; exec <e> us/inference`.")
        .aliases(&["stats"]).group(G_RUN),
    o("c", FLAG, "Validate every inference's outputs byte for byte against the `out` entries of its --aic-batch-json-input set (entries with skip-validation are not checked); mismatches are listed and the run exits with status 1.").group(G_RUN),
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
    /// `-D`: the device map (QIDs); `device_id` is its first entry.
    pub device_map: Option<Vec<u32>>,
    /// `-s` with `-r`: live statistics period in ms of simulated device time.
    pub stats_period_ms: Option<u64>,
    /// `-c`: validate outputs against the `out` entries of `--aic-batch-json-input`.
    pub check_json_outputs: bool,
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
        device_map: None,
        stats_period_ms: a.flag("s").then(|| int(&a, "r", 1000) as u64),
        check_json_outputs: a.flag("c"),
    };
    if a.given("r") && !a.flag("l") && !a.flag("s") {
        return Err(CliError::Requires { option: a.spelled("r"), needs: "-l or -s".into() });
    }
    let mut cfg = cfg;
    if let Some(m) = a.str("D") {
        if a.given("d") {
            return Err(CliError::Conflict { a: a.spelled("D"), b: a.spelled("d") });
        }
        let map = parse_device_map(m).map_err(|message| CliError::Invalid { option: a.spelled("D"), message })?;
        cfg.device_id = map[0];
        cfg.device_map = Some(map);
    }
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
    if cfg.check_json_outputs {
        if !matches!(cfg.batch, Some(BatchInput::Json(_))) {
            return Err(CliError::Requires { option: a.spelled("c"), needs: "--aic-batch-json-input (its `out` entries are the expected outputs)".into() });
        }
        if a.given("o") {
            return Err(CliError::Conflict { a: a.spelled("c"), b: a.spelled("o") });
        }
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

/// Parses a `-D` device map: QIDs separated by `:` (`0`, `0:1`), each at most once.
pub fn parse_device_map(text: &str) -> Result<Vec<u32>, String> {
    let mut ids = Vec::new();
    for part in text.split(':') {
        let id: u32 = part.trim().parse().map_err(|_| format!("`{text}` is not a device map: expected QIDs separated by ':' (e.g. 0 or 0:1), `{part}` is not a device id"))?;
        if ids.contains(&id) {
            return Err(format!("device {id} is listed twice in `{text}`"));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Devices a qaic-rs QPC runs on: one (there is no multi-device partitioning).
pub const QPC_DEVICES: usize = 1;

/// Checks a `-D` map against the number of devices the QPC uses (both counts named).
pub fn check_device_map(map: &[u32], qpc_devices: usize, qpc: &std::path::Path) -> Result<(), String> {
    let list = map.iter().map(u32::to_string).collect::<Vec<_>>().join(":");
    let s = |n: usize| if n == 1 { "" } else { "s" };
    if map.len() < qpc_devices {
        return Err(format!(
            "-D {list} lists {} device{}, but {} needs {qpc_devices} device{}",
            map.len(),
            s(map.len()),
            qpc.display(),
            s(qpc_devices)
        ));
    }
    if map.len() > qpc_devices {
        return Err(format!(
            "-D {list} lists {} device{}, but {} uses {qpc_devices} device{} (qaic-rs QPCs are single-device: give one id, e.g. -D {})",
            map.len(),
            s(map.len()),
            qpc.display(),
            s(qpc_devices),
            map[0]
        ));
    }
    Ok(())
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

/// `-s`: a `Stats:` line each time the run's simulated device time passes another period.
struct LiveStats {
    period_us: u64,
    next_us: u64,
    last_count: u64,
    last_us: u64,
}

impl LiveStats {
    fn new(period_ms: u64) -> LiveStats {
        let period_us = period_ms.max(1).saturating_mul(1000);
        LiveStats { period_us, next_us: period_us, last_count: 0, last_us: 0 }
    }

    /// The line to print after the latest inference, if a period boundary was passed (one
    /// line however many were passed).
    fn after_inference(&mut self, rec: &Recorder, batch: u32) -> Option<String> {
        let now = rec.simulated_us();
        if now < self.next_us {
            return None;
        }
        while self.next_us <= now {
            self.next_us = self.next_us.saturating_add(self.period_us);
        }
        let (n, k, d) = (rec.count(), rec.count() - self.last_count, now - self.last_us);
        let rate = |count: u64, us: u64| if us == 0 { 0.0 } else { count as f64 * batch as f64 * 1e6 / us as f64 };
        let line = live_stats_line(n, now, k, d, rate(k, d), rate(n, now), rec.mean_exec_us());
        self.last_count = n;
        self.last_us = now;
        Some(line)
    }
}

/// The `-s` line: inferences so far, simulated device time (ms), the last period's inferences
/// and rate, the overall rate (samples/s = inferences × batch per simulated second) and the
/// mean simulated program time per inference. Never contains `Inf/Sec` (scripts grep it).
pub fn live_stats_line(count: u64, now_us: u64, last_count: u64, last_us: u64, last_rate: f64, overall_rate: f64, exec_us: f64) -> String {
    format!(
        "Stats: {count} inference(s) after {:.3} ms of simulated device time; last {:.3} ms: {last_count} inference(s), {last_rate:.3} samples/s; overall {overall_rate:.3} samples/s; exec {exec_us:.3} us/inference",
        now_us as f64 / 1000.0,
        last_us as f64 / 1000.0
    )
}

/// An expected output of `-o` or `-c`: where it came from and its bytes.
#[derive(Clone, Debug)]
struct Expected {
    file: String,
    bytes: Vec<u8>,
}

/// One element of `dtype` at the start of `b`, for messages.
fn fmt_elem(dtype: qaic_tensor::DType, b: &[u8]) -> String {
    use qaic_tensor::DType as D;
    let arr = |n: usize| -> Option<[u8; 8]> {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b.get(..n)?);
        Some(a)
    };
    let v = match dtype {
        D::F32 => arr(4).map(|a| f32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string()),
        D::F64 => arr(8).map(|a| f64::from_le_bytes(a).to_string()),
        D::I8 => b.first().map(|&x| (x as i8).to_string()),
        D::U8 | D::Bool => b.first().map(|x| x.to_string()),
        D::I16 => arr(2).map(|a| i16::from_le_bytes([a[0], a[1]]).to_string()),
        D::U16 => arr(2).map(|a| u16::from_le_bytes([a[0], a[1]]).to_string()),
        D::I32 => arr(4).map(|a| i32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string()),
        D::U32 => arr(4).map(|a| u32::from_le_bytes([a[0], a[1], a[2], a[3]]).to_string()),
        D::I64 => arr(8).map(|a| i64::from_le_bytes(a).to_string()),
        D::U64 => arr(8).map(|a| u64::from_le_bytes(a).to_string()),
        _ => None,
    };
    v.unwrap_or_else(|| format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()))
}

/// `  output `y` differs from <file>: <k> of <n> element(s); first at element <e>: got <g>, expected <w>`.
fn mismatch_line(o: &qaic_runtime::IoInfo, want: &Expected, got: &[u8]) -> String {
    let es = o.dtype.size_of().unwrap_or(1).max(1);
    let n = got.len().div_ceil(es);
    let elem = |b: &[u8], e: usize| b.get(e * es..((e + 1) * es).min(b.len())).unwrap_or(&[]).to_vec();
    let differing: Vec<usize> = (0..n).filter(|&e| elem(got, e) != elem(&want.bytes, e)).collect();
    let first = differing.first().copied().unwrap_or(0);
    format!(
        "  output `{}` differs from {}: {} of {n} element(s); first at element {first}: got {}, expected {}",
        o.name,
        want.file,
        differing.len(),
        fmt_elem(o.dtype, &elem(got, first)),
        fmt_elem(o.dtype, &elem(&want.bytes, first))
    )
}

/// `-c`: the expected outputs of every `--aic-batch-json-input` set, from its `out` entries
/// (by `map-to`, else in output order; `skip-validation` entries are not checked). Entries are
/// checked against the output bindings (element type and size, dims, file size) before any run.
fn json_expected_outputs(path: &std::path::Path, qpc: &LoadedQpc) -> Result<Vec<Vec<Option<Expected>>>, RunError> {
    use crate::inputs::{read_json_inputs, IoDirection};
    let j = read_json_inputs(path)?;
    let outs = qpc.outputs();
    let names = || outs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut sets = Vec::with_capacity(j.inferences.len());
    let mut any = false;
    for (k, set) in j.inferences.iter().enumerate() {
        let err = |m: String| RunError::Model(format!("-c: {}: IO-files[{k}]: {m}", j.file));
        let entries: Vec<_> = set.iter().filter(|e| e.direction == IoDirection::Out).collect();
        any |= !entries.is_empty();
        if let Some(e) = entries.iter().find(|e| e.map_to.as_ref().is_some_and(|m| !outs.iter().any(|o| &o.name == m))) {
            return Err(err(format!("map-to `{}` is not an output of the QPC (outputs: {})", e.map_to.as_deref().unwrap_or(""), names())));
        }
        if entries.len() > outs.len() {
            return Err(err(format!("{} out entries, the QPC has {} output(s) ({})", entries.len(), outs.len(), names())));
        }
        let mut unnamed = entries.iter().filter(|e| e.map_to.is_none());
        let mut v = Vec::with_capacity(outs.len());
        for o in outs {
            let e = match entries.iter().find(|e| e.map_to.as_deref() == Some(o.name.as_str())) {
                Some(e) => Some(*e),
                None => unnamed.next().copied(),
            };
            let Some(e) = e.filter(|e| !e.skip_validation) else {
                v.push(None);
                continue;
            };
            let file = e.path.display().to_string();
            let bad = |m: String| err(format!("out entry {file} for output `{}` ({} {:?}): {m}", o.name, o.dtype.name(), o.shape));
            if let Some(s) = e.elem_size
                && Some(s) != o.dtype.size_of()
            {
                return Err(bad(format!("elem-size {s}")));
            }
            if e.elem_size.is_none()
                && let Some(dt) = e.dtype
                && dt.size_of() != o.dtype.size_of()
            {
                return Err(bad(format!("data-type {dt}")));
            }
            if let Some(d) = &e.dims
                && d.as_slice() != o.shape.as_slice()
            {
                return Err(bad(format!("dims {d:?}")));
            }
            let bytes = std::fs::read(&e.path).map_err(|er| err(format!("out entry {file}: {er}")))?;
            if bytes.len() as u64 != o.bytes {
                return Err(bad(format!("the file has {} bytes, the output {}", bytes.len(), o.bytes)));
            }
            v.push(Some(Expected { file, bytes }));
        }
        sets.push(v);
    }
    if !any {
        return Err(RunError::Model(format!("-c: {} has no `out` entries to validate against (add {{\"io-direction\": \"out\", \"path\": ..., \"map-to\": <output>}} entries)", j.file)));
    }
    Ok(sets)
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
    if let Some(map) = &cfg.device_map {
        check_device_map(map, QPC_DEVICES, &cfg.test_data).map_err(RunError::Model)?;
    }
    let opts = LoadOptions { instances: cfg.activations, device_id: cfg.device_id, variant, host_processing: cfg.host_processing };
    let qpc = LoadedQpc::open(&cfg.test_data, &opts).map_err(|e| RunError::Model(e.to_string()))?;
    let ios = qpc.inputs().to_vec();
    let specs: Vec<InputSpec> = ios.iter().map(|i| InputSpec { name: i.name.clone(), dtype: i.dtype, shape: Shape::known(&i.shape) }).collect();
    let sets: Vec<Vec<Vec<u8>>> = match &cfg.batch {
        Some(b) => batch_inputs(b, &specs, cfg.batch_max_memory_mb, events)?,
        None => vec![single_inputs(cfg, &qpc, events)?],
    };
    let data = sets[0].clone();
    // -o / -c: expected outputs, read and checked before any run; one list per input set.
    let expected: Vec<Vec<Option<Expected>>> = if cfg.check_json_outputs {
        match &cfg.batch {
            Some(BatchInput::Json(p)) => json_expected_outputs(p, &qpc)?,
            _ => return Err(RunError::Model("-c needs --aic-batch-json-input".into())),
        }
    } else if cfg.expected_outputs.is_empty() {
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
            v.push(Some(Expected { file: f.display().to_string(), bytes: b }));
        }
        vec![v]
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
    let mut live_stats = cfg.stats_period_ms.map(LiveStats::new);
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
            let want = &expected[(i % expected.len() as u64) as usize];
            let (mut failed, mut passed, mut details) = (0usize, 0usize, Vec::new());
            // The vendor skips its stats buffer `aiccyclecounts`; this QPC has none.
            for ((g, w), o) in outs.iter().zip(want).zip(qpc.outputs()) {
                let Some(w) = w.as_ref().filter(|_| o.name != "aiccyclecounts") else { continue };
                if g == &w.bytes {
                    passed += 1;
                } else {
                    failed += 1;
                    details.push(mismatch_line(o, w, g));
                }
            }
            if failed > 0 {
                failed_iterations += 1;
                validation.push(format!("Validation Failed for iteration {i}, num failed: {failed}, num passed: {passed}"));
                validation.extend(details);
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
        if let Some(s) = live_stats.as_mut() {
            if let Some(l) = s.after_inference(&rec, qpc.batch_size()) {
                events(RunnerEvent::Message(l));
            }
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
            let what = if cfg.check_json_outputs { "output validation (-c, against the `out` entries of the batch JSON)" } else { "output validation" };
            return Err(RunError::Model(format!("{what} failed for {failed_iterations} of {} inference(s)", summary.stats.inference_cnt)));
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
    fn device_map_stats_and_check() {
        let c = cfg(&["-t", "q", "-D", "0"]);
        assert_eq!((c.device_id, c.device_map), (0, Some(vec![0])));
        let c = cfg(&["-t", "q", "--aic-device-map=2:0", "-s", "-r", "5"]);
        assert_eq!((c.device_id, c.device_map.clone(), c.stats_period_ms, c.live_period_ms), (2, Some(vec![2, 0]), Some(5), None));
        assert_eq!(cfg(&["-t", "q", "--stats"]).stats_period_ms, Some(1000));
        assert!(cfg(&["-t", "q", "-c", "--aic-batch-json-input", "j"]).check_json_outputs);
        let q = std::path::Path::new("qpc");
        assert!(check_device_map(&[0], 1, q).is_ok());
        let e = check_device_map(&[0, 1], 1, q).unwrap_err();
        assert!(e.contains("lists 2 devices") && e.contains("uses 1 device "), "{e}");
        let e = check_device_map(&[3], 2, q).unwrap_err();
        assert!(e.contains("lists 1 device,") && e.contains("needs 2 devices"), "{e}");
        let l = live_stats_line(10, 2500, 4, 1000, 4000.0, 4000.0, 240.5);
        assert_eq!(l, "Stats: 10 inference(s) after 2.500 ms of simulated device time; last 1.000 ms: 4 inference(s), 4000.000 samples/s; overall 4000.000 samples/s; exec 240.500 us/inference");
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse_runner_command(a).unwrap_err().to_string();
        assert!(e(&["-n", "3"]).contains("Missing test data path"));
        assert!(e(&["-t", "q", "-n", "0"]).contains("out of range"));
        assert!(e(&["-t", "q", "-n", "2", "--write-output-start-iter", "2"]).contains("should be <= numInf(2)"));
        assert!(e(&["-t", "q", "-D", "0:x"]).contains("`x` is not a device id"));
        assert!(e(&["-t", "q", "-D", "1:1"]).contains("device 1 is listed twice"));
        assert!(e(&["-t", "q", "-D", "0", "-d", "0"]).contains("cannot be used together"));
        assert!(e(&["-t", "q", "-c"]).contains("needs --aic-batch-json-input"));
        assert!(e(&["-t", "q", "-c", "--aic-batch-json-input", "j", "-o", "y.bin"]).contains("cannot be used together"));
        assert!(e(&["-t", "q", "-r", "5"]).contains("needs -l or -s"));
        assert!(e(&["-t", "q", "--num-iters", "2"]).starts_with("Invalid option --num-iters."));
        assert!(matches!(parse_runner_command(["--help"]), Ok(RunnerCommand::Help(t)) if t.contains("qaic-runner")));
    }
}
