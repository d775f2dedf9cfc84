//! The options of `qaic-exec` / `qaic-compile`: one table ([`EXEC_OPTIONS`]) and the typed
//! configuration ([`ExecConfig`]) it becomes.
//!
//! Every option of the vendor reference table is here, plus the ones real users pass
//! (`-mxfp6-matmul`, `-retained-state`, `-aic-hw-version=ai100|ai200`, ...). Options whose
//! feature has not landed are parsed and range-checked, then refused with
//! `not supported yet: -<option>` so scripts fail loudly instead of silently doing less.
//!
//! ```
//! use qaic_compiler::exec_options::{parse_exec_command, ExecCommand, Tool};
//! let cmd = parse_exec_command(Tool::Exec, ["-m=model.onnx", "-run-on-interpreter", "-num-iter", "3"]).unwrap();
//! let ExecCommand::Run(cfg) = cmd else { panic!() };
//! assert_eq!(cfg.run.num_iter, Some(3));
//! ```

use std::path::PathBuf;

use crate::cli_options::{
    Action, CliError, OptSpec, OptionTable, Parsed, ParsedArgs, ValueKind,
};

/// Feature areas that are not implemented yet; options in them are refused.
pub mod features {
    use crate::cli_options::Feature;
    pub const COMPILE: Feature = Feature { name: "compilation to a QPC", issue: None };
    pub const DEVICE: Feature = Feature { name: "running on the virtual AIC100 device", issue: None };
    pub const QUANT: Feature = Feature { name: "profile-guided quantization", issue: None };
    pub const PRECISION: Feature = Feature { name: "fp16, mixed and MX precision", issue: None };
    pub const PROFILING: Feature = Feature { name: "profiling and statistics", issue: None };
    pub const PARTITION: Feature = Feature { name: "single- and multi-device partitioning", issue: None };
    pub const SPECIALIZATION: Feature = Feature { name: "network specializations", issue: None };
    pub const CUSTOM_IO: Feature = Feature { name: "custom I/O", issue: None };
    pub const FRAMEWORKS: Feature = Feature { name: "model formats other than ONNX", issue: None };
    pub const CUSTOM_OPS: Feature = Feature { name: "custom operators", issue: None };
    pub const LOADER: Feature = Feature { name: "ONNX loader options", issue: None };
    pub const RUNTIME: Feature = Feature { name: "runtime submission controls", issue: None };
}
use features::*;

const ANY_POS: ValueKind = ValueKind::Int { min: 1, max: i64::MAX };
const ANY_NONNEG: ValueKind = ValueKind::Int { min: 0, max: i64::MAX };
const PATH: ValueKind = ValueKind::Str("path");
const FLAG: ValueKind = ValueKind::Flag;

const G_LOAD: &str = "Model loading";
const G_PREC: &str = "Precision and quantization";
const G_COMPILE: &str = "Compilation and device";
const G_RUN: &str = "Inputs and execution";
const G_OUT: &str = "Outputs";
const G_PROF: &str = "Profiling and statistics";
const G_INFO: &str = "Information";

const fn o(name: &'static str, kind: ValueKind, help: &'static str) -> OptSpec {
    OptSpec::new(name, kind, help)
}

const QUANT_SCHEMAS: &[&str] =
    &["asymmetric", "symmetric", "symmetric_with_uint8", "symmetric_with_power2_scale"];

/// The option table of `qaic-exec` / `qaic-compile`.
pub static EXEC_OPTIONS: &[OptSpec] = &[
    // --- model loading
    o("m", PATH, "Path of the model file (ONNX .onnx; external data is read from the model's folder).")
        .aliases(&["model"]).group(G_LOAD),
    o("model-input", ValueKind::Str("name,type,[shape]"), "Inputs of the graph for Caffe2 models: <name>,<type>,<shape>.")
        .repeatable().unsupported(FRAMEWORKS).group(G_LOAD),
    o("onnx-define-symbol", ValueKind::Str("NAME,VALUE"), "Define an ONNX symbolic dimension: -onnx-define-symbol=batch,1. Repeat for each symbol.")
        .repeatable().group(G_LOAD),
    o("batchsize", ANY_POS, "Batch size to use for execution (binds the model's first, batch dimension).")
        .group(G_LOAD),
    o("output-node-name", ValueKind::StrList("name,..."), "Also save these intermediate tensors (comma-separated names) beside the model outputs.")
        .repeatable().group(G_LOAD),
    o("onnxlib", PATH, "Path to an ONNX library.").unsupported(CUSTOM_OPS).group(G_LOAD),
    o("always-expand-onnx-functions", FLAG, "Force ONNX function inlining: also expand standard operators the ONNX schema defines as functions (e.g. LayerNormalization, Gelu, HardSwish) into their primitive ops. Model-local functions are always inlined.").group(G_LOAD),
    o("sub-functions", FLAG, "Keep ONNX sub-functions as units during compilation.").unsupported(LOADER).group(G_LOAD),
    o("dynamic-shape-input", FLAG, "Compile with dynamic input shapes.").unsupported(LOADER).group(G_LOAD),
    o("register-custom-op", PATH, "Register a custom op using this configuration file.")
        .repeatable().unsupported(CUSTOM_OPS).group(G_LOAD),
    o("network-specialization-config", PATH, "Compile one network per specialization listed in this JSON file.")
        .unsupported(SPECIALIZATION).group(G_LOAD),
    o("custom-IO-list-file", PATH, "YAML file giving the user's layout (NCHW, NHWC) and precision (float, float16) of model inputs and outputs; converted by the host runtime (-host-preproc) or in the device program (-aic-preproc).")
        .group(G_LOAD),
    o("dump-custom-IO-config-template", ValueKind::Str("file[,profile]"), "Dump a YAML custom I/O template (optionally with scales from a PGQ profile).")
        .unsupported(CUSTOM_IO).group(G_LOAD),
    o("load-embedding-tables", PATH, "Load DLRM/RecSys embedding tables from a zip file (PyTorch only).")
        .unsupported(FRAMEWORKS).group(G_LOAD),
    o("dump-embedding-tables", PATH, "Dump DLRM/RecSys embedding tables to a zip file (PyTorch only).")
        .unsupported(FRAMEWORKS).group(G_LOAD),
    // --- precision and quantization
    o("convert-to-fp16", FLAG, "Compile/execute the model in FP16 (interpreter: every node not quantized runs in fp16).").group(G_PREC),
    o("mxfp6-matmul", FLAG, "Store MatMul weights in MXFP6.").unsupported(PRECISION).group(G_PREC),
    o("mxint8", FLAG, "Use MXINT8 compression (seen in user command lines).").unsupported(PRECISION).group(G_PREC),
    o("allow-mxint8-mdp-io", FLAG, "Allow MXINT8 tensors between multi-device partitions.").unsupported(PRECISION).group(G_PREC),
    o("execute-nodes-in-fp16", ValueKind::StrList("op,..."), "Run all instances of these operator kinds (ONNX op types) in FP16 while quantizing.")
        .repeatable().group(G_PREC),
    o("node-precision-info", PATH, "YAML file listing first output names of node instances to run in FP16 (FP16NodeInstanceNames: [...]).")
        .group(G_PREC),
    o("keep-original-precision-for-nodes", ValueKind::StrList("op,..."), "Keep these operator kinds (ONNX op types) in their original precision when quantizing.")
        .repeatable().group(G_PREC),
    o("external-quantization", PATH, "Load externally generated quantization parameters (YAML: NodeOutputName, Scale, Offset).").group(G_PREC),
    o("quantization-schema", ValueKind::Enum(QUANT_SCHEMAS), "Quantization schema for activations and constants (qaic-rs shorthand for both options below).")
        .group(G_PREC),
    o("quantization-schema-activations", ValueKind::Enum(QUANT_SCHEMAS), "Quantization schema for activations.")
        .default("asymmetric").group(G_PREC),
    o("quantization-schema-constants", ValueKind::Enum(QUANT_SCHEMAS), "Quantization schema for constants (weights, bias).")
        .default("asymmetric").group(G_PREC),
    o("quantization-calibration", ValueKind::Enum(&["None", "KLMinimization", "Percentile", "MSE", "SQNR", "KLMinimizationV2"]), "Calibration method of activations (None = min-max).")
        .default("None").group(G_PREC),
    o("percentile-calibration-value", ValueKind::Float { min: 90.0, max: 100.0 }, "Percentile used by Percentile calibration.")
        .default("99.99").group(G_PREC),
    o("num-histogram-bins", ANY_POS, "Number of histogram bins of profiling nodes (KL calibrations need at least 255).").default("2048").group(G_PREC),
    o("quantization-precision", ValueKind::Enum(&["Int8", "Int16"]), "Quantization precision.")
        .default("Int8").group(G_PREC),
    o("quantization-precision-bias", ValueKind::Enum(&["Int8", "Int32"]), "Quantization precision of bias.")
        .default("Int32").group(G_PREC),
    o("enable-rowwise", FLAG, "Rowwise quantization of MatMul/Gemm with constant weights (per output row).").group(G_PREC),
    o("enable-channelwise", FLAG, "Channelwise quantization of convolutions.").group(G_PREC),
    o("dump-profile", PATH, "Profile the model on the inputs and write a PGQ profile (YAML).").group(G_PREC),
    o("load-profile", PATH, "Compile quantized using this PGQ profile (YAML).").group(G_PREC),
    o("convert-to-quantize", FLAG, "Without -load-profile: profile the inputs, then run quantized.").group(G_PREC),
    o("profiling-threads", ANY_POS, "Threads used for profile generation (the profile does not depend on it).").default("1").group(G_PREC),
    o("quantization-report", PATH, "qaic-rs: write per-tensor SQNR (dB) between the float and the quantized run (CSV).").group(G_PREC),
    // --- compilation and device
    o("aic-hw", FLAG, "Run on the AIC100 device. There is no real card here: this runs the virtual AIC100 simulator, like the default (compile to a QPC, then simulate it).").group(G_COMPILE),
    o("run-on-interpreter", FLAG, "Run the model on the reference interpreter (host).").group(G_COMPILE),
    o("aic-hw-version", ValueKind::Enum(&["2.0", "ai100", "ai200"]), "AIC hardware version to compile for (2.0 is the old spelling of ai100).")
        .default("ai100").group(G_COMPILE),
    o("aic-num-cores", ValueKind::Int { min: 1, max: 16 }, "Number of AIC cores to use.").default("1").group(G_COMPILE),
    o("aic-device-variant", ValueKind::Enum(&["pro16", "standard14"]), "qaic-rs: card variant of the virtual AIC100: pro16 (16 cores) or standard14 (the 14-core AI 100 Standard; -aic-num-cores at most 14).")
        .default("pro16").group(G_COMPILE),
    o("ols", ANY_POS, "Factor increasing the splitting of network operations.").group(G_COMPILE),
    o("mos", ValueKind::IntList { min: -1, max: 16, max_items: 4 }, "Effort to reduce on-chip memory use (-1 = none; one value per SDP cluster).")
        .group(G_COMPILE),
    o("allocator-dealloc-delay", ValueKind::Int { min: 0, max: 10 }, "Increase buffer lifetime (0 to 10).").group(G_COMPILE),
    o("size-split-granularity", ValueKind::Int { min: 512, max: 2048 }, "Maximum tile size in KiB (512 to 2048).").group(G_COMPILE),
    o("vtcm-working-set-limit-ratio", ValueKind::Float { min: 0.0, max: 1.0 }, "Ratio of fast memory (VTCM) one instruction may use (0 to 1).")
        .group(G_COMPILE),
    o("aic-enable-depth-first", FLAG, "Enable depth-first optimizations (memory size by heuristics).").group(G_COMPILE),
    o("aic-depth-first-mem", ValueKind::Enum(&["16", "20", "24", "28", "32"]), "Depth-first memory size; needs -aic-enable-depth-first.")
        .group(G_COMPILE),
    o("aic-binary-dir", PATH, "Directory where the compiled QPC is written.").group(G_COMPILE),
    o("compile-only", FLAG, "Compile to a QPC (written to -aic-binary-dir) and do not run it.").group(G_COMPILE),
    o("host-preproc", FLAG, "Run pre- and post-processing on the host (the default): custom I/O conversions are transform sequences of the QPC's descriptor, run by the runtime.").group(G_COMPILE),
    o("aic-preproc", FLAG, "Run pre- and post-processing on the device: custom I/O layout changes are compiled into the device program (precision changes cannot run on the device yet).").group(G_COMPILE),
    o("retained-state", FLAG, "Keep *_RetainedState outputs on the device as the next run's inputs (KV cache).")
        .unsupported(COMPILE).group(G_COMPILE),
    o("multicast-weights", FLAG, "Load weights used on several cores once and multicast them.").group(G_COMPILE),
    o("use-producer-dma", FLAG, "Start NSP DMAs from the thread producing the data: each layer-output DMA signals a semaphore when it lands and layers synchronise on that count instead of a barrier, so a core loads its next layer's weights while other cores' outputs are in flight (same results, predicted time never longer).").group(G_COMPILE),
    o("combine-inputs", FLAG, "Combine inputs into fewer buffers for transfer.").unsupported(COMPILE).group(G_COMPILE),
    o("combine-outputs", FLAG, "Combine outputs into one buffer for transfer.").unsupported(COMPILE).group(G_COMPILE),
    o("sdp-cluster-sizes", ValueKind::IntList { min: 1, max: 16, max_items: 4 }, "Single-device partitioning cluster sizes (sum = -aic-num-cores).")
        .unsupported(PARTITION).group(G_COMPILE),
    o("mdp-dump-partition-config", PATH, "Write a multi-device partition configuration template (JSON).").unsupported(PARTITION).group(G_COMPILE),
    o("mdp-load-partition-config", PATH, "Multi-device partition configuration (JSON).").unsupported(PARTITION).group(G_COMPILE),
    o("compile-threads", ANY_POS, "Threads used for compilation (default: host threads).").group(G_COMPILE),
    o("enable-debug", FLAG, "Debug mode during compilation.").unsupported(COMPILE).group(G_COMPILE),
    o("time-passes", FLAG, "Print compile-time statistics.").group(G_COMPILE),
    o("io-crc", FLAG, "CRC check of network inputs and outputs: the QPC records a CRC-32 per I/O buffer, which the runtime computes on the host and device side of every transfer and compares (reported after the run; a mismatch fails the run).").group(G_COMPILE),
    o("io-crc-stride", ANY_POS, "Stride of the I/O CRC in bytes: besides the first and last 64 bytes, the CRC covers the first 4 bytes of every stride (1 to 4 = every byte); needs -io-crc.").default("256").group(G_COMPILE),
    o("qpc-crc", FLAG, "Add a CRC to the QPC.").unsupported(COMPILE).group(G_COMPILE),
    o("io-encrypt", ValueKind::Str("mode"), "Encrypt network I/O.").unsupported(COMPILE).group(G_COMPILE),
    o("compiler-help", FLAG, "List compiler-specific help options.").unsupported(COMPILE).group(G_COMPILE),
    o("direct-api", FLAG, "Platform-specific shared memory API (not for Cloud AI 100).").unsupported(DEVICE).group(G_COMPILE),
    o("aic-perf-warnings", FLAG, "Print performance warnings.").group(G_COMPILE),
    o("aic-perf-metrics", FLAG, "Print compiler performance metrics.").group(G_COMPILE),
    o("dump-program", PATH, "qaic-rs: write a human-readable listing of the compiled device program (buffers, then every core's instructions) to this file.").group(G_COMPILE),
    // --- inputs and execution
    o("input-list-file", PATH, "Text file, one line per inference: that inference's input files in model-input order, separated by commas or spaces.")
        .group(G_RUN),
    o("json-input-file", PATH, "JSON file listing input (and output) files per inference with data types and dims.")
        .group(G_RUN),
    o("use-random-input-data", ValueKind::Enum(&["uniform", "gaussian"]), "Random inputs with this distribution (the default when no input files are given).")
        .group(G_RUN),
    o("unbound-random", FLAG, "Random inputs: fill every byte with 0..255 regardless of the data type.").group(G_RUN),
    o("random-seed", ANY_NONNEG, "Seed of the random inputs (qaic-rs extension; printed on every run).").default("0").group(G_RUN),
    o("dump-input-buffers", FLAG, "Write the input buffers used (see docs/qaic-exec.md for names).").group(G_RUN),
    o("num-iter", ANY_POS, "Number of iterations to perform (default: one per input-list line, else 1).").group(G_RUN),
    o("time", ANY_POS, "Duration in seconds (host time) for which to submit inferences, instead of -num-iter.").group(G_RUN),
    o("stats-batchsize", ANY_POS, "Normalise the device statistics to per sample: the QPC carries statistics and the Device Performance table, per-core cycles and PMU counters are divided by this.").group(G_RUN),
    o("device-id", ANY_NONNEG, "Device on which inference runs.").default("0").group(G_RUN),
    o("aic-num-of-instances", ANY_POS, "Number of network instances used for inference.").default("1").group(G_RUN),
    o("submit-timeout", ANY_NONNEG, "Timeout per inference in ms of simulated device time (0 = the kernel default, 5000 ms).").default("0").group(G_RUN),
    o("submit-retry-count", ANY_NONNEG, "Retries when an inference times out, before the run fails (the simulator is deterministic: a retry takes as long).").default("5").group(G_RUN),
    o("aic-batch-max-memory", ANY_POS, "Batch mode: memory limit (MB) when loading files.").unsupported(RUNTIME).group(G_RUN),
    o("auto-batch-input", FLAG, "Batch batchsize-1 inputs up to the network batch size.").unsupported(RUNTIME).group(G_RUN),
    // --- outputs
    o("write-output-dir", PATH, "Write every output as <name>-activation-0-inf-<N>.bin in this directory.").group(G_OUT),
    // --- profiling and statistics
    o("stats-level", ANY_NONNEG, "Level of device statistics compiled into the QPC: >= 1 Device Performance table after the Stats block, >= 40 per-core cycles (and DDR traffic with -ddr-stats), >= 70 operator statistics of the first inference.").group(G_PROF),
    o("ddr-stats", FLAG, "Print the simulated per-core DDR read/write bytes of one inference.").group(G_PROF),
    o("aic-pmu-recipe", ValueKind::Enum(&["AxiRd", "AxiWr", "AxiRdWr", "KernelUtil", "HmxMacs"]), "Built-in PMU event selection (simulated counters, printed per core after the run; see docs/virtual-aic100.md).")
        .group(G_PROF),
    o("aic-pmu-events", ValueKind::IntList { min: 0, max: i64::MAX, max_items: 8 }, "PMU events to track in NSP cores (up to 8 numbers, 0 to 13: see docs/virtual-aic100.md).")
        .group(G_PROF),
    o("stats-json", PATH, "qaic-rs: also write the run statistics as JSON (schema qaic-rs.runner-stats, version 1).").group(G_PROF),
    o("aic-profiling-start-iter", ANY_NONNEG, "First profiled iteration.").group(G_PROF),
    o("aic-profiling-start-delay", ANY_NONNEG, "Stream profiling: start after this much simulated device time (ms).").group(G_PROF),
    o("aic-profiling-num-samples", ANY_POS, "Profiling samples to save.").group(G_PROF),
    o("aic-profiling-format", ValueKind::Enum(&["ascii", "json", "latency", "stats", "trace"]), "Deprecated: use -aic-profiling-type (ascii = stats, json = trace).")
        .repeatable().group(G_PROF),
    o("aic-profiling-type", ValueKind::Enum(&["stats", "trace", "latency", "trace_stream", "latency_stream"]), "Profiling type; repeat for several. Compiles device statistics into the QPC and profiles the run: stats = operator statistics per sampled inference (aic-profiling-program-0-activation-<A>-inf-<I>.txt), trace = Chrome-trace JSON of the simulated timeline (aic-profiling-program-0-trace.json), latency = latency CSV (aic-profiling-program-0-latency.txt); the _stream variants write the same files, sampling by simulated device time.")
        .repeatable().group(G_PROF),
    o("aic-profiling-duration", ANY_POS, "Stream profiling: window length in simulated device time (ms; default: to the end).").group(G_PROF),
    o("aic-profiling-sampling-rate", ValueKind::Enum(&["full", "half", "fourth", "eighth", "sixteenth"]), "Stream profiling: sample every inference (full), every 2nd (half), 4th, 8th or 16th.")
        .group(G_PROF),
    o("aic-profiling-reporting-rate", ValueKind::Enum(&["500", "1000", "2000", "4000"]), "Stream profiling: rewrite the files every this many ms of simulated device time.")
        .group(G_PROF),
    o("aic-profiling-out-dir", PATH, "Directory for profiling files.").group(G_PROF),
    // --- information
    o("v", FLAG, "Verbose: informational logs on stderr.").group(G_INFO),
    o("vv", FLAG, "More verbose: debug logs.").group(G_INFO),
    o("vvv", FLAG, "Most verbose: trace logs.").group(G_INFO),
    o("version", FLAG, "Print the version.").group(G_INFO),
    o("version-extended", FLAG, "Print the version and the source commit.").group(G_INFO),
    o("operators-supported", ValueKind::Enum(&["onnx", "tensorflow", "pytorch", "caffe", "caffe2"]), "Write the supported operators of a model type to <Type>SupportedOperators.txt in the current directory.")
        .group(G_INFO),
    o("h", FLAG, "Lists help options.").aliases(&["help", "usage"]).action(Action::Help).group(G_INFO),
    o("u", FLAG, "Detailed help with options and defaults.").action(Action::DetailedHelp).group(G_INFO),
];

/// Which name the binary was started under (help text only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Exec,
    Compile,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Exec => "qaic-exec",
            Tool::Compile => "qaic-compile",
        }
    }
    /// From `argv[0]`: `qaic-compile` when the file name starts with it, else `qaic-exec`.
    pub fn from_argv0(arg0: &str) -> Tool {
        let file = std::path::Path::new(arg0).file_name().and_then(|f| f.to_str()).unwrap_or("");
        if file.starts_with("qaic-compile") { Tool::Compile } else { Tool::Exec }
    }
}

/// The option table under a tool name.
pub fn exec_option_table(tool: Tool) -> OptionTable {
    OptionTable {
        tool: tool.name(),
        about: "qaic-rs model compiler and executor (compatible with the Qualcomm Cloud AI 100 qaic-exec options). \
                -aic-hw runs on the virtual AIC100 (there is no real card here); -run-on-interpreter runs on the host.",
        options: EXEC_OPTIONS,
    }
}

/// What a qaic-exec command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecCommand {
    /// Print this text (option list for `-h`, detailed help for `-u`).
    Help(String),
    Version { extended: bool },
    /// Write the supported operator list of a framework.
    OperatorsSupported(Framework),
    /// Load and run a model.
    Run(Box<ExecConfig>),
}

/// Model frameworks named by `-operators-supported`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framework {
    Onnx,
    Tensorflow,
    Pytorch,
    Caffe,
    Caffe2,
}

impl Framework {
    fn parse(s: &str) -> Option<Framework> {
        Some(match s {
            "onnx" => Framework::Onnx,
            "tensorflow" => Framework::Tensorflow,
            "pytorch" => Framework::Pytorch,
            "caffe" => Framework::Caffe,
            "caffe2" => Framework::Caffe2,
            _ => return None,
        })
    }
    /// File written by `-operators-supported` (only the ONNX name is documented by the vendor).
    pub fn supported_operators_file(self) -> &'static str {
        match self {
            Framework::Onnx => "OnnxSupportedOperators.txt",
            Framework::Tensorflow => "TensorflowSupportedOperators.txt",
            Framework::Pytorch => "PytorchSupportedOperators.txt",
            Framework::Caffe => "CaffeSupportedOperators.txt",
            Framework::Caffe2 => "Caffe2SupportedOperators.txt",
        }
    }
}

/// Everything qaic-exec was asked to do, typed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExecConfig {
    pub load: LoadConfig,
    pub quantization: QuantConfig,
    pub device: DeviceConfig,
    pub run: RunConfig,
    pub output: OutputConfig,
    /// 0 = warnings only; 1 = `-v` (info), 2 = `-vv` (debug), 3 = `-vvv` (trace).
    pub verbosity: u8,
}

/// How the model is read and its symbolic shapes bound.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LoadConfig {
    /// `-m`.
    pub model: Option<PathBuf>,
    /// `-onnx-define-symbol=NAME,VALUE`, in command-line order (a later value wins).
    pub symbols: Vec<(String, u64)>,
    /// `-batchsize`.
    pub batch_size: Option<u64>,
    /// `-output-node-name`: intermediate tensors to save beside the outputs.
    pub extra_outputs: Vec<String>,
    /// `-always-expand-onnx-functions`: expand schema-defined function ops into their bodies.
    pub always_expand_functions: bool,
}

/// Quantization schema for `-quantization-schema-*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantSchema {
    Asymmetric,
    Symmetric,
    SymmetricWithUint8,
    SymmetricWithPower2Scale,
}

/// Calibration for `-quantization-calibration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Calibration {
    #[default]
    MinMax,
    KlMinimization,
    Percentile,
    Mse,
    Sqnr,
    KlMinimizationV2,
}

/// Precision and quantization settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QuantConfig {
    pub convert_to_fp16: bool,
    pub mxfp6_matmul: bool,
    pub mxint8: bool,
    pub schema_activations: Option<QuantSchema>,
    pub schema_constants: Option<QuantSchema>,
    pub calibration: Calibration,
    pub percentile: Option<f64>,
    pub histogram_bins: Option<u32>,
    /// `-quantization-precision=Int16`.
    pub int16: bool,
    /// `-quantization-precision-bias=Int8` (default Int32).
    pub bias_int8: bool,
    pub rowwise: bool,
    pub channelwise: bool,
    pub dump_profile: Option<PathBuf>,
    pub load_profile: Option<PathBuf>,
    pub external_quantization: Option<PathBuf>,
    pub convert_to_quantize: bool,
    pub fp16_op_kinds: Vec<String>,
    pub keep_original_precision_op_kinds: Vec<String>,
    pub node_precision_info: Option<PathBuf>,
    /// `-profiling-threads` (`None`: 1).
    pub profiling_threads: Option<u32>,
    /// `-quantization-report=FILE` (qaic-rs): per-tensor SQNR of the quantized run.
    pub quantization_report: Option<PathBuf>,
}

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// The vendor default: compile, then run on the simulator.
    #[default]
    Simulator,
    /// `-aic-hw`: the (virtual) device.
    Hardware,
    /// `-run-on-interpreter`.
    Interpreter,
}

/// AIC hardware generation (`-aic-hw-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HwVersion {
    #[default]
    Ai100,
    Ai200,
}

/// Compilation and device settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DeviceConfig {
    pub target: Target,
    pub hw_version: HwVersion,
    pub num_cores: u32,
    /// `-aic-device-variant=standard14`: the 14-core card (default: the 16-core Pro).
    pub standard14: bool,
    pub ols: Option<u32>,
    /// `-mos`; one value per SDP cluster, -1 = none.
    pub mos: Vec<i32>,
    pub allocator_dealloc_delay: Option<u32>,
    pub size_split_granularity_kib: Option<u32>,
    pub vtcm_working_set_limit_ratio: Option<f64>,
    pub depth_first: bool,
    /// MiB; only with `depth_first`.
    pub depth_first_mem: Option<u32>,
    pub binary_dir: Option<PathBuf>,
    pub retained_state: bool,
    pub multicast_weights: bool,
    /// `-use-producer-dma`.
    pub use_producer_dma: bool,
    pub sdp_cluster_sizes: Vec<u32>,
    pub specialization_config: Option<PathBuf>,
    pub custom_io_list_file: Option<PathBuf>,
    pub device_id: u32,
    pub num_instances: u32,
    /// `-compile-only`: stop after writing the QPC.
    pub compile_only: bool,
    /// `-compile-threads` (`None`: all host threads).
    pub compile_threads: Option<u32>,
    /// `-time-passes`, `-aic-perf-metrics`, `-aic-perf-warnings`.
    pub time_passes: bool,
    pub perf_metrics: bool,
    pub perf_warnings: bool,
    /// `-ddr-stats`: print per-core DDR traffic of the simulated run.
    pub ddr_stats: bool,
    /// `-stats-json=FILE`.
    pub stats_json: Option<PathBuf>,
    /// `-aic-profiling-type` with its companions (start iteration, samples, directory, stream
    /// window).
    pub profiling: Option<qaic_runtime::ProfilingConfig>,
    /// `-io-crc` (with `-io-crc-stride`): the stride; `None` without `-io-crc`.
    pub io_crc_stride: Option<u32>,
    /// `-stats-level`.
    pub stats_level: Option<u32>,
    /// `-stats-batchsize`.
    pub stats_batch_size: Option<u32>,
    /// PMU events of `-aic-pmu-recipe` and `-aic-pmu-events` (recipe first, no duplicates).
    pub pmu_events: Vec<u32>,
    /// `-submit-timeout` (ms of simulated device time, 0 = 5000) and `-submit-retry-count`.
    pub submit_timeout_ms: u64,
    pub submit_retries: u32,
    /// `-dump-program=FILE`.
    pub dump_program: Option<PathBuf>,
    /// `-aic-preproc`: custom I/O conversions in the device program (default: on the host).
    pub aic_preproc: bool,
}

/// Random input distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Distribution {
    #[default]
    Uniform,
    Gaussian,
}

/// Settings of generated inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RandomInputs {
    pub distribution: Distribution,
    /// `-unbound-random`: every byte uniform in 0..=255, ignoring the data type.
    pub unbound: bool,
    pub seed: u64,
}

/// Where the inputs come from.
#[derive(Clone, Debug, PartialEq)]
pub enum InputSource {
    ListFile(PathBuf),
    JsonFile(PathBuf),
    Random(RandomInputs),
}

impl Default for InputSource {
    fn default() -> Self {
        InputSource::Random(RandomInputs::default())
    }
}

/// Execution settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RunConfig {
    pub inputs: InputSource,
    /// `-num-iter`; `None` = one pass over the inputs (one inference per input-list line).
    pub num_iter: Option<u64>,
    /// `-time`: run for this many seconds of host time (wins over `-num-iter`).
    pub time_s: Option<u64>,
    pub dump_input_buffers: bool,
}

/// Output settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OutputConfig {
    /// `-write-output-dir`, as given (printed paths are `<dir>/<file>`).
    pub write_output_dir: Option<String>,
}

/// Parses a qaic-exec command line (without the program name) into what to do.
///
/// Order of checks: unknown options and bad values (while scanning), help requests (as soon
/// as seen), `-version`, `-operators-supported`, option combinations, options whose feature
/// has not landed, then the run configuration.
pub fn parse_exec_command<I, S>(tool: Tool, args: I) -> Result<ExecCommand, CliError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let table = exec_option_table(tool);
    let args = match table.parse(args)? {
        Parsed::Help => return Ok(ExecCommand::Help(table.help())),
        Parsed::DetailedHelp => return Ok(ExecCommand::Help(table.detailed_help())),
        Parsed::Args(a) => a,
    };
    if args.flag("version-extended") {
        return Ok(ExecCommand::Version { extended: true });
    }
    if args.flag("version") {
        return Ok(ExecCommand::Version { extended: false });
    }
    if let Some(fw) = args.str("operators-supported") {
        let fw = Framework::parse(fw).ok_or_else(|| CliError::Invalid {
            option: "-operators-supported".into(),
            message: format!("unknown framework `{fw}`"),
        })?;
        return Ok(ExecCommand::OperatorsSupported(fw));
    }
    check_combinations(&args)?;
    if let Some(e) = args.first_unsupported() {
        return Err(e);
    }
    let cfg = ExecConfig::from_args(&args)?;
    if cfg.device.target == Target::Interpreter {
        // Device statistics and I/O CRC describe the virtual device; the interpreter has none.
        let device_only = ["aic-profiling-type", "aic-profiling-format", "stats-level", "stats-batchsize", "aic-pmu-recipe", "aic-pmu-events", "io-crc", "submit-timeout", "submit-retry-count", "dump-program", "custom-IO-list-file", "aic-preproc"];
        if let Some(o) = device_only.iter().find(|o| args.flag_or_given(o)) {
            return Err(CliError::Conflict { a: args.spelled(o), b: args.spelled("run-on-interpreter") });
        }
    }
    if cfg.load.model.is_none() {
        return Err(CliError::Requires {
            option: tool.name().into(),
            needs: "a model: -m=<model file> (see -h)".into(),
        });
    }
    Ok(ExecCommand::Run(Box::new(cfg)))
}

/// Rules that involve several options.
fn check_combinations(a: &ParsedArgs) -> Result<(), CliError> {
    if a.given("io-crc-stride") && !a.flag("io-crc") {
        return Err(CliError::Requires { option: a.spelled("io-crc-stride"), needs: "-io-crc".into() });
    }
    if a.given("aic-depth-first-mem") && !a.flag("aic-enable-depth-first") {
        return Err(CliError::Requires {
            option: a.spelled("aic-depth-first-mem"),
            needs: "-aic-enable-depth-first".into(),
        });
    }
    let exclusive: &[(&str, &str)] = &[
        ("aic-hw", "run-on-interpreter"),
        ("compile-only", "run-on-interpreter"),
        ("aic-binary-dir", "run-on-interpreter"),
        ("dump-profile", "load-profile"),
        ("convert-to-quantize", "load-profile"),
        ("host-preproc", "aic-preproc"),
        ("input-list-file", "json-input-file"),
        ("input-list-file", "use-random-input-data"),
        ("json-input-file", "use-random-input-data"),
        ("input-list-file", "unbound-random"),
        ("json-input-file", "unbound-random"),
        ("load-embedding-tables", "convert-to-quantize"),
        ("load-embedding-tables", "dump-profile"),
        ("dump-embedding-tables", "convert-to-quantize"),
        ("dump-embedding-tables", "dump-profile"),
    ];
    for (x, y) in exclusive {
        if a.flag_or_given(x) && a.flag_or_given(y) {
            return Err(CliError::Conflict { a: a.spelled(x), b: a.spelled(y) });
        }
    }
    if let (Some(sizes), Some(cores)) = (a.int_list("sdp-cluster-sizes"), a.int("aic-num-cores")) {
        let sum: i64 = sizes.iter().sum();
        if sum != cores {
            return Err(CliError::Invalid {
                option: a.spelled("sdp-cluster-sizes"),
                message: format!("cluster sizes add up to {sum} but -aic-num-cores is {cores}"),
            });
        }
    }
    if let (Some(mos), Some(cores)) = (a.int_list("mos"), a.int("aic-num-cores"))
        && let Some(m) = mos.iter().find(|&&m| m > cores)
    {
        return Err(CliError::Invalid {
            option: a.spelled("mos"),
            message: format!("{m} is more than -aic-num-cores={cores}"),
        });
    }
    if a.given("percentile-calibration-value") && a.str("quantization-calibration") != Some("Percentile") {
        tracing::warn!("-percentile-calibration-value is used only with -quantization-calibration=Percentile");
    }
    Ok(())
}

impl ParsedArgs {
    /// True when a flag is set or a valued option is given.
    fn flag_or_given(&self, name: &str) -> bool {
        match self.value(name) {
            Some(crate::cli_options::Value::Bool(b)) => b,
            Some(_) => true,
            None => false,
        }
    }
}

fn path(a: &ParsedArgs, name: &str) -> Option<PathBuf> {
    a.str(name).map(PathBuf::from)
}

/// The table default of an integer option (tables are checked by tests to parse).
fn int_default(name: &str) -> i64 {
    EXEC_OPTIONS
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.default_value())
        .and_then(|v| match v {
            crate::cli_options::Value::Int(i) => Some(i),
            crate::cli_options::Value::Str(s) => s.parse().ok(),
            _ => None,
        })
        .unwrap_or(0)
}

fn int_or_default(a: &ParsedArgs, name: &str) -> i64 {
    a.int(name).unwrap_or_else(|| int_default(name))
}

fn schema(a: &ParsedArgs, name: &str) -> Option<QuantSchema> {
    a.str(name).map(|s| match s {
        "symmetric" => QuantSchema::Symmetric,
        "symmetric_with_uint8" => QuantSchema::SymmetricWithUint8,
        "symmetric_with_power2_scale" => QuantSchema::SymmetricWithPower2Scale,
        _ => QuantSchema::Asymmetric,
    })
}

impl ExecConfig {
    /// Builds the typed configuration. Does not refuse unsupported options (the caller does),
    /// so later features can reuse it as they land.
    pub fn from_args(a: &ParsedArgs) -> Result<ExecConfig, CliError> {
        let mut symbols = Vec::new();
        for s in a.strings("onnx-define-symbol") {
            symbols.push(parse_symbol(&s)?);
        }
        let load = LoadConfig {
            model: path(a, "m"),
            symbols,
            batch_size: a.int("batchsize").map(|v| v as u64),
            extra_outputs: a.strings("output-node-name"),
            always_expand_functions: a.flag("always-expand-onnx-functions"),
        };
        let quantization = QuantConfig {
            convert_to_fp16: a.flag("convert-to-fp16"),
            mxfp6_matmul: a.flag("mxfp6-matmul"),
            mxint8: a.flag("mxint8"),
            schema_activations: schema(a, "quantization-schema-activations").or(schema(a, "quantization-schema")),
            schema_constants: schema(a, "quantization-schema-constants").or(schema(a, "quantization-schema")),
            calibration: match a.str("quantization-calibration") {
                Some("KLMinimization") => Calibration::KlMinimization,
                Some("Percentile") => Calibration::Percentile,
                Some("MSE") => Calibration::Mse,
                Some("SQNR") => Calibration::Sqnr,
                Some("KLMinimizationV2") => Calibration::KlMinimizationV2,
                _ => Calibration::MinMax,
            },
            percentile: a.float("percentile-calibration-value"),
            histogram_bins: a.int("num-histogram-bins").map(|v| v.min(u32::MAX as i64) as u32),
            int16: a.str("quantization-precision") == Some("Int16"),
            bias_int8: a.str("quantization-precision-bias") == Some("Int8"),
            rowwise: a.flag("enable-rowwise"),
            channelwise: a.flag("enable-channelwise"),
            dump_profile: path(a, "dump-profile"),
            load_profile: path(a, "load-profile"),
            external_quantization: path(a, "external-quantization"),
            convert_to_quantize: a.flag("convert-to-quantize"),
            fp16_op_kinds: a.strings("execute-nodes-in-fp16"),
            keep_original_precision_op_kinds: a.strings("keep-original-precision-for-nodes"),
            node_precision_info: path(a, "node-precision-info"),
            profiling_threads: a.int("profiling-threads").map(|v| v.min(u32::MAX as i64) as u32),
            quantization_report: path(a, "quantization-report"),
        };
        let hw_version = match a.str("aic-hw-version") {
            Some("ai200") => HwVersion::Ai200,
            Some("2.0") => {
                tracing::info!("-aic-hw-version=2.0 is the old spelling of ai100");
                HwVersion::Ai100
            }
            _ => HwVersion::Ai100,
        };
        let device = DeviceConfig {
            target: if a.flag("run-on-interpreter") {
                Target::Interpreter
            } else if a.flag("aic-hw") {
                Target::Hardware
            } else {
                Target::Simulator
            },
            hw_version,
            num_cores: int_or_default(a, "aic-num-cores") as u32,
            standard14: a.str("aic-device-variant") == Some("standard14"),
            ols: a.int("ols").map(|v| v.min(u32::MAX as i64) as u32),
            mos: a.int_list("mos").map(|v| v.iter().map(|&m| m as i32).collect()).unwrap_or_default(),
            allocator_dealloc_delay: a.int("allocator-dealloc-delay").map(|v| v as u32),
            size_split_granularity_kib: a.int("size-split-granularity").map(|v| v as u32),
            vtcm_working_set_limit_ratio: a.float("vtcm-working-set-limit-ratio"),
            depth_first: a.flag("aic-enable-depth-first"),
            depth_first_mem: a.str("aic-depth-first-mem").and_then(|s| s.parse().ok()),
            binary_dir: path(a, "aic-binary-dir"),
            retained_state: a.flag("retained-state"),
            multicast_weights: a.flag("multicast-weights"),
            use_producer_dma: a.flag("use-producer-dma"),
            sdp_cluster_sizes: a
                .int_list("sdp-cluster-sizes")
                .map(|v| v.iter().map(|&m| m as u32).collect())
                .unwrap_or_default(),
            specialization_config: path(a, "network-specialization-config"),
            custom_io_list_file: path(a, "custom-IO-list-file"),
            device_id: int_or_default(a, "device-id").min(u32::MAX as i64) as u32,
            num_instances: int_or_default(a, "aic-num-of-instances").min(u32::MAX as i64) as u32,
            compile_only: a.flag("compile-only"),
            compile_threads: a.int("compile-threads").map(|v| v.min(u32::MAX as i64) as u32),
            time_passes: a.flag("time-passes"),
            perf_metrics: a.flag("aic-perf-metrics"),
            perf_warnings: a.flag("aic-perf-warnings"),
            ddr_stats: a.flag("ddr-stats"),
            stats_json: path(a, "stats-json"),
            profiling: crate::runner::profiling_config(a)?,
            io_crc_stride: a.flag("io-crc").then(|| int_or_default(a, "io-crc-stride").min(u32::MAX as i64) as u32),
            stats_level: a.int("stats-level").map(|v| v.min(u32::MAX as i64) as u32),
            stats_batch_size: a.int("stats-batchsize").map(|v| v.min(u32::MAX as i64) as u32),
            pmu_events: pmu_events(a)?,
            submit_timeout_ms: int_or_default(a, "submit-timeout") as u64,
            submit_retries: int_or_default(a, "submit-retry-count").min(u32::MAX as i64) as u32,
            dump_program: path(a, "dump-program"),
            aic_preproc: a.flag("aic-preproc"),
        };
        let inputs = if let Some(p) = path(a, "input-list-file") {
            InputSource::ListFile(p)
        } else if let Some(p) = path(a, "json-input-file") {
            InputSource::JsonFile(p)
        } else {
            InputSource::Random(RandomInputs {
                distribution: match a.str("use-random-input-data") {
                    Some("gaussian") => Distribution::Gaussian,
                    _ => Distribution::Uniform,
                },
                unbound: a.flag("unbound-random"),
                seed: int_or_default(a, "random-seed") as u64,
            })
        };
        let run = RunConfig {
            inputs,
            num_iter: a.int("num-iter").map(|v| v as u64),
            time_s: a.int("time").map(|v| v as u64),
            dump_input_buffers: a.flag("dump-input-buffers"),
        };
        let output = OutputConfig { write_output_dir: a.str("write-output-dir").map(String::from) };
        let verbosity = if a.flag("vvv") {
            3
        } else if a.flag("vv") {
            2
        } else {
            u8::from(a.flag("v"))
        };
        Ok(ExecConfig { load, quantization, device, run, output, verbosity })
    }
}

/// PMU events of `-aic-pmu-recipe` then `-aic-pmu-events`, without duplicates; at most 8, each
/// one the virtual device counts.
fn pmu_events(a: &ParsedArgs) -> Result<Vec<u32>, CliError> {
    let mut v: Vec<u32> = a.str("aic-pmu-recipe").and_then(qaic_runtime::pmu_recipe).unwrap_or_default();
    for &e in a.int_list("aic-pmu-events").unwrap_or_default().iter() {
        let e = u32::try_from(e).unwrap_or(u32::MAX);
        if qaic_runtime::pmu_event_name(e).is_none() {
            return Err(CliError::Invalid {
                option: a.spelled("aic-pmu-events"),
                message: format!("unknown event {e}: the virtual AIC100 counts events 0 to {} (docs/virtual-aic100.md)", qaic_runtime::PMU_EVENTS.len() - 1),
            });
        }
        if !v.contains(&e) {
            v.push(e);
        }
    }
    if v.len() > qaic_runtime::MAX_PMU_EVENTS {
        return Err(CliError::Invalid {
            option: a.spelled("aic-pmu-events"),
            message: format!("{} events with the recipe; a core counts at most {}", v.len(), qaic_runtime::MAX_PMU_EVENTS),
        });
    }
    Ok(v)
}

/// `NAME,VALUE` of `-onnx-define-symbol`.
fn parse_symbol(s: &str) -> Result<(String, u64), CliError> {
    let err = |message: String| CliError::Invalid { option: "-onnx-define-symbol".into(), message };
    let Some((name, value)) = s.split_once(',') else {
        return Err(err(format!("`{s}` is not NAME,VALUE (e.g. -onnx-define-symbol=batch,1)")));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(err(format!("`{s}` has an empty symbol name")));
    }
    let value: u64 = value
        .trim()
        .parse()
        .map_err(|_| err(format!("value `{}` of symbol `{name}` is not a non-negative integer", value.trim())))?;
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli_options::parse_value;

    #[test]
    fn table_is_consistent() {
        let mut names = std::collections::HashSet::new();
        for o in EXEC_OPTIONS {
            for n in std::iter::once(&o.name).chain(o.aliases.iter()) {
                assert!(names.insert(*n), "duplicate option spelling {n}");
                assert!(!n.starts_with('-'));
            }
            if let Some(d) = o.default {
                assert!(parse_value(o, d).is_ok(), "default of -{} does not parse", o.name);
            }
            assert!(!o.help.is_empty());
        }
    }

    #[test]
    fn reference_options_are_all_present() {
        // Every flag of the vendor's "QAic Executor options" table, plus user-seen ones.
        let reference = "u m model-input output-node-name aic-num-cores aic-hw run-on-interpreter aic-hw-version ols mos \
            allocator-dealloc-delay size-split-granularity vtcm-working-set-limit-ratio convert-to-fp16 execute-nodes-in-fp16 \
            node-precision-info keep-original-precision-for-nodes custom-IO-list-file dump-custom-IO-config-template \
            external-quantization quantization-schema-activations quantization-schema-constants quantization-calibration \
            percentile-calibration-value num-histogram-bins quantization-precision quantization-precision-bias enable-rowwise \
            enable-channelwise dump-profile load-profile convert-to-quantize load-embedding-tables dump-embedding-tables \
            aic-binary-dir compile-only host-preproc aic-preproc aic-enable-depth-first aic-depth-first-mem batchsize \
            stats-batchsize onnx-define-symbol onnxlib always-expand-onnx-functions register-custom-op compiler-help \
            input-list-file use-random-input-data num-iter time enable-debug time-passes io-crc io-crc-stride \
            sdp-cluster-sizes mdp-dump-partition-config mdp-load-partition-config profiling-threads compile-threads \
            use-producer-dma aic-perf-warnings aic-perf-metrics aic-pmu-recipe aic-pmu-events multicast-weights direct-api \
            stats-level ddr-stats combine-inputs combine-outputs device-id aic-num-of-instances aic-profiling-start-iter \
            aic-profiling-start-delay aic-profiling-num-samples aic-profiling-format aic-profiling-type \
            aic-profiling-duration aic-profiling-sampling-rate aic-profiling-reporting-rate json-input-file \
            write-output-dir submit-timeout submit-retry-count aic-batch-max-memory auto-batch-input unbound-random \
            dump-input-buffers network-specialization-config v vv vvv version version-extended operators-supported h help \
            model mxfp6-matmul mxint8 retained-state allow-mxint8-mdp-io qpc-crc sub-functions dynamic-shape-input usage";
        let t = exec_option_table(Tool::Exec);
        for name in reference.split_whitespace() {
            assert!(t.find(name).is_some(), "-{name} missing from the table");
        }
    }

    fn run_cfg(args: &[&str]) -> ExecConfig {
        match parse_exec_command(Tool::Exec, args).unwrap() {
            ExecCommand::Run(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typed_config() {
        let c = run_cfg(&[
            "-m=a.onnx", "-run-on-interpreter", "-onnx-define-symbol=batch,2", "-onnx-define-symbol", "seq,128",
            "-batchsize=4", "-output-node-name=a,b", "-num-iter", "3", "-write-output-dir=out",
            "-use-random-input-data=gaussian", "-random-seed=9", "-vv",
        ]);
        assert_eq!(c.load.model, Some(PathBuf::from("a.onnx")));
        assert_eq!(c.load.symbols, vec![("batch".to_string(), 2), ("seq".to_string(), 128)]);
        assert_eq!(c.load.batch_size, Some(4));
        assert_eq!(c.load.extra_outputs, vec!["a", "b"]);
        assert_eq!(c.run.num_iter, Some(3));
        assert_eq!(
            c.run.inputs,
            InputSource::Random(RandomInputs { distribution: Distribution::Gaussian, unbound: false, seed: 9 })
        );
        assert_eq!(c.output.write_output_dir.as_deref(), Some("out"));
        assert_eq!(c.verbosity, 2);
        assert_eq!(c.device.target, Target::Interpreter);
        let d = run_cfg(&["-m=a.onnx", "-run-on-interpreter"]);
        assert_eq!(d.run.num_iter, None);
        assert_eq!(d.run.inputs, InputSource::Random(RandomInputs::default()));
    }

    #[test]
    fn compile_options_become_typed_fields() {
        let t = exec_option_table(Tool::Exec);
        let a = t
            .parse([
                "-aic-hw", "-aic-hw-version=2.0", "-aic-num-cores=14", "-mos=1,4", "-aic-enable-depth-first",
                "-aic-depth-first-mem=20", "-vtcm-working-set-limit-ratio=0.25", "-quantization-calibration=percentile",
            ])
            .unwrap()
            .into_args()
            .unwrap();
        let c = ExecConfig::from_args(&a).unwrap();
        assert_eq!(c.device.target, Target::Hardware);
        assert_eq!(c.device.hw_version, HwVersion::Ai100);
        assert_eq!(c.device.num_cores, 14);
        assert_eq!(c.device.mos, vec![1, 4]);
        assert_eq!(c.device.depth_first_mem, Some(20));
        assert_eq!(c.device.vtcm_working_set_limit_ratio, Some(0.25));
        let a2 = t.parse(["-compile-only", "-compile-threads=3", "-time-passes", "-aic-perf-metrics", "-aic-perf-warnings", "-ddr-stats", "-stats-json=s.json"]).unwrap().into_args().unwrap();
        let k = ExecConfig::from_args(&a2).unwrap();
        assert!(k.device.compile_only && k.device.time_passes && k.device.perf_metrics && k.device.perf_warnings && k.device.ddr_stats);
        assert_eq!((k.device.compile_threads, k.device.stats_json.clone()), (Some(3), Some(PathBuf::from("s.json"))));
        assert_eq!(c.quantization.calibration, Calibration::Percentile);
    }

    #[test]
    fn refusals() {
        let e = |args: &[&str]| parse_exec_command(Tool::Exec, args).unwrap_err().to_string();
        assert!(e(&["-m=a.onnx", "-aic-preproc", "-run-on-interpreter"]).contains("cannot be used together"));
        assert!(e(&["-m=a.onnx", "-aic-preproc", "-host-preproc"]).contains("cannot be used together"));
        assert!(e(&["-m=a.onnx", "-io-crc", "-run-on-interpreter"]).contains("cannot be used together"));
        assert!(e(&["-m=a.onnx", "-compile-only", "-run-on-interpreter"]).contains("cannot be used together"));
        assert!(e(&["-m=a.onnx", "-mxfp6-matmul", "-run-on-interpreter"]).starts_with("not supported yet: -mxfp6-matmul"));
        assert!(e(&["-m=a.onnx", "-convert-to-quantize", "-load-profile=p.yaml"]).contains("cannot be used together"));
        assert!(e(&["-aic-depth-first-mem=20"]).contains("needs -aic-enable-depth-first"));
        assert!(e(&["-aic-enable-depth-first", "-aic-depth-first-mem=18"]).contains("one of 16, 20, 24, 28, 32"));
        assert!(e(&["-size-split-granularity=256"]).contains("512 to 2048"));
        assert!(e(&["-aic-num-cores=17"]).contains("1 to 16"));
        assert!(e(&["-allocator-dealloc-delay=11"]).contains("0 to 10"));
        assert!(e(&["-percentile-calibration-value=89"]).contains("90 to 100"));
        assert!(e(&["-run-on-interpreter", "-aic-hw"]).contains("cannot be used together"));
        assert!(e(&["-sdp-cluster-sizes=4,4", "-aic-num-cores=16"]).contains("add up to 8"));
        assert!(e(&["-onnx-define-symbol=batch", "-run-on-interpreter", "-m=x"]).contains("NAME,VALUE"));
        assert!(e(&["-onnx-define-symbol=batch,-1", "-run-on-interpreter", "-m=x"]).contains("non-negative"));
        assert!(e(&["-run-on-interpreter"]).contains("-m="));
        assert!(matches!(parse_exec_command(Tool::Exec, ["-m=x.onnx"]), Ok(ExecCommand::Run(c)) if c.device.target == Target::Simulator));
        assert_eq!(
            e(&["-retained-stat"]),
            "Invalid option -retained-stat. Use -h, -help, or --help for list of options.\nDid you mean -retained-state?"
        );
    }

    #[test]
    fn informational_commands() {
        let p = |args: &[&str]| parse_exec_command(Tool::Compile, args).unwrap();
        assert!(matches!(p(&["-h"]), ExecCommand::Help(t) if t.contains("USAGE: qaic-compile")));
        assert!(matches!(p(&["-u"]), ExecCommand::Help(t) if t.contains("default: 256")));
        assert_eq!(p(&["-version"]), ExecCommand::Version { extended: false });
        assert_eq!(p(&["-version-extended"]), ExecCommand::Version { extended: true });
        assert_eq!(p(&["-operators-supported=onnx"]), ExecCommand::OperatorsSupported(Framework::Onnx));
        assert_eq!(Tool::from_argv0("/usr/bin/qaic-compile"), Tool::Compile);
        assert_eq!(Tool::from_argv0("qaic-exec"), Tool::Exec);
    }
}
