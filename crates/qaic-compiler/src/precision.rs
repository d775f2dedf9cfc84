//! Quantization and mixed precision on the interpreter path (`qaic-exec -run-on-interpreter`
//! with `-dump-profile`, `-load-profile`, `-convert-to-quantize`, `-external-quantization`,
//! `-convert-to-fp16`, `-execute-nodes-in-fp16`, `-node-precision-info`,
//! `-keep-original-precision-for-nodes`, `-quantization-report`).
//!
//! The steps, in order (every check happens before any file is written):
//! 1. the typed options become a [`qaic_quant::QuantConfig`] ([`quant_config`]); the
//!    precision files are read and every value and combination is checked;
//! 2. the model is loaded; `-load-profile` is read and checked against the graph (missing and
//!    extra tensor names are listed; a fingerprint mismatch is a warning);
//! 3. `-dump-profile` / `-convert-to-quantize`: the inputs are profiled in two passes
//!    ([`qaic_quant::profile_graph`], progress reported as [`RunEvent::Profiling`]) and the
//!    profile is written atomically;
//! 4. the precision pass rewrites the graph ([`qaic_quant::apply_precision`]; `-v` logs each
//!    node's precision and why);
//! 5. the (rewritten) graph runs like any model ([`crate::run::execute`]);
//! 6. `-quantization-report=FILE` runs the float and the rewritten graph on the same inputs and
//!    writes per-tensor SQNR.

use std::collections::BTreeMap;
use std::path::Path;

use qaic_quant::{
    BiasPrecision, Calibration as QCal, ExternalQuantization, NodePrecision, Precision, ProfileConfig, QuantConfig, Schema,
};
use qaic_tensor::{Tensor, Value};

use crate::exec_options::{Calibration, ExecConfig, InputSource, QuantSchema};
use crate::inputs::{self, InputError, InputSpec};
use crate::run::{execute, load_graph, Executable, InterpreterModel, RunError, RunEvent, RunReport};

/// Whether any quantization or precision option asks for more than a plain float run.
pub fn is_active(cfg: &ExecConfig) -> bool {
    let q = &cfg.quantization;
    q.dump_profile.is_some()
        || q.load_profile.is_some()
        || q.convert_to_quantize
        || q.external_quantization.is_some()
        || q.convert_to_fp16
        || !q.fp16_op_kinds.is_empty()
        || !q.keep_original_precision_op_kinds.is_empty()
        || q.node_precision_info.is_some()
        || q.quantization_report.is_some()
}

fn schema(s: Option<QuantSchema>) -> Schema {
    match s {
        None | Some(QuantSchema::Asymmetric) => Schema::Asymmetric,
        Some(QuantSchema::Symmetric) => Schema::Symmetric,
        Some(QuantSchema::SymmetricWithUint8) => Schema::SymmetricWithUint8,
        Some(QuantSchema::SymmetricWithPower2Scale) => Schema::SymmetricWithPower2Scale,
    }
}

fn op_types(lists: &[String]) -> std::collections::BTreeSet<String> {
    lists.iter().flat_map(|l| QuantConfig::parse_op_types(l)).collect()
}

/// The typed qaic-exec options as a [`QuantConfig`]: reads `-node-precision-info` and
/// `-external-quantization` and checks values and combinations (percentile range, Int16 with
/// an Int8-only option, unknown op types).
///
/// ```
/// use qaic_compiler::exec_options::{parse_exec_command, ExecCommand, Tool};
/// let ExecCommand::Run(cfg) = parse_exec_command(Tool::Exec, [
///     "-m=m.onnx", "-run-on-interpreter", "-quantization-schema=symmetric",
///     "-quantization-calibration=Percentile", "-percentile-calibration-value=99.9",
/// ]).unwrap() else { panic!() };
/// let q = qaic_compiler::precision::quant_config(&cfg).unwrap();
/// assert_eq!(q.schema_constants, qaic_quant::Schema::Symmetric);
/// assert_eq!(q.percentile, 99.9);
/// ```
pub fn quant_config(cfg: &ExecConfig) -> Result<QuantConfig, RunError> {
    let q = &cfg.quantization;
    let node_precision = match &q.node_precision_info {
        Some(p) => NodePrecision::load(p)?,
        None => NodePrecision::default(),
    };
    let external = q.external_quantization.as_deref().map(ExternalQuantization::load).transpose()?;
    let c = QuantConfig {
        schema_activations: schema(q.schema_activations),
        schema_constants: schema(q.schema_constants),
        calibration: match q.calibration {
            Calibration::MinMax => QCal::None,
            Calibration::KlMinimization => QCal::KLMinimization,
            Calibration::KlMinimizationV2 => QCal::KLMinimizationV2,
            Calibration::Percentile => QCal::Percentile,
            Calibration::Mse => QCal::MSE,
            Calibration::Sqnr => QCal::SQNR,
        },
        percentile: q.percentile.unwrap_or(qaic_quant::DEFAULT_PERCENTILE),
        precision: if q.int16 { Precision::Int16 } else { Precision::Int8 },
        bias_precision: if q.bias_int8 { BiasPrecision::Int8 } else { BiasPrecision::Int32 },
        rowwise: q.rowwise,
        channelwise: q.channelwise,
        keep_original_op_types: op_types(&q.keep_original_precision_op_kinds),
        fp16_op_types: op_types(&q.fp16_op_kinds),
        node_precision,
        convert_to_fp16: q.convert_to_fp16,
        external,
        integer_ops: true,
        keep: cfg.load.extra_outputs.iter().cloned().collect(),
    };
    c.validate()?;
    Ok(c)
}

/// The profiling options (`-num-histogram-bins`, `-profiling-threads`).
pub fn profile_config(cfg: &ExecConfig) -> ProfileConfig {
    let q = &cfg.quantization;
    ProfileConfig {
        num_histogram_bins: q.histogram_bins.map_or(qaic_quant::DEFAULT_HISTOGRAM_BINS, |b| b as usize),
        threads: q.profiling_threads.map_or(1, |t| t.max(1) as usize),
    }
}

/// The input sets of the run (list file lines, JSON sets, or one random set), loadable from any
/// thread by index.
struct InputSets {
    count: usize,
    source: Source,
}

enum Source {
    List(inputs::InputList),
    Json(inputs::JsonInputs),
    Fixed(Vec<Tensor>),
}

impl InputSets {
    fn new(cfg: &ExecConfig, specs: &[InputSpec]) -> Result<InputSets, RunError> {
        Ok(match &cfg.run.inputs {
            InputSource::ListFile(p) => {
                let l = inputs::read_input_list(p)?;
                InputSets { count: l.inferences.len(), source: Source::List(l) }
            }
            InputSource::JsonFile(p) => {
                let j = inputs::read_json_inputs(p)?;
                InputSets { count: j.inferences.len(), source: Source::Json(j) }
            }
            InputSource::Random(r) => InputSets { count: 1, source: Source::Fixed(inputs::random_inputs(specs, r)?) },
        })
    }
    fn load(&self, k: usize, specs: &[InputSpec]) -> Result<Vec<Tensor>, InputError> {
        match &self.source {
            Source::List(l) => l.load(k, specs),
            Source::Json(j) => j.load(k, specs),
            Source::Fixed(t) => Ok(t.clone()),
        }
    }
}

/// The float model planned on the interpreter and this run's input sets, loadable from any
/// thread by index as graph inputs (what profiling, the report and the float run read).
struct RunInputs {
    model: InterpreterModel,
    specs: Vec<InputSpec>,
    sets: InputSets,
}

impl RunInputs {
    fn new(cfg: &ExecConfig, graph: &qaic_ir::Graph) -> Result<RunInputs, RunError> {
        let model = InterpreterModel::from_graph(cfg, graph.clone(), &qaic_quant::registry())?;
        let specs = model.inputs().to_vec();
        let sets = InputSets::new(cfg, &specs)?;
        Ok(RunInputs { model, specs, sets })
    }
    fn load(&self, k: usize) -> Result<Vec<Value>, String> {
        let t = self.sets.load(k, &self.specs).map_err(|e| e.to_string())?;
        self.model.graph_inputs(t).map_err(|e| e.to_string())
    }
}

/// Runs the model with the quantization/precision options of `cfg` (see the module doc).
pub fn run(cfg: &ExecConfig, events: &mut dyn FnMut(RunEvent)) -> Result<RunReport, RunError> {
    let q = &cfg.quantization;
    let qcfg = quant_config(cfg)?;
    let pcfg = profile_config(cfg);
    pcfg.validate()?;
    let quantizing = q.load_profile.is_some() || q.convert_to_quantize || q.external_quantization.is_some();
    let fp16_rules = q.convert_to_fp16 || !q.fp16_op_kinds.is_empty() || q.node_precision_info.is_some();
    if !quantizing && q.dump_profile.is_none() {
        let defaults = QuantConfig::default();
        if qcfg.schema_activations != defaults.schema_activations
            || qcfg.schema_constants != defaults.schema_constants
            || qcfg.calibration != defaults.calibration
            || qcfg.precision != defaults.precision
            || qcfg.bias_precision != defaults.bias_precision
            || qcfg.rowwise
            || qcfg.channelwise
        {
            tracing::warn!(
                "quantization options have no effect without -load-profile, -convert-to-quantize or -external-quantization"
            );
        }
    }
    if q.quantization_report.is_some() && !quantizing && !fp16_rules {
        return Err(RunError::Quant(qaic_quant::QuantError::Config(
            "-quantization-report compares the float run with a quantized or fp16 one: it needs -load-profile, \
             -convert-to-quantize, -external-quantization or an fp16 option"
                .into(),
        )));
    }

    // Output files are written at the end: refuse a missing folder before the long work.
    for (opt, p) in [("-dump-profile", &q.dump_profile), ("-quantization-report", &q.quantization_report)] {
        if let Some(dir) = p.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(RunError::Quant(qaic_quant::QuantError::Config(format!(
                    "{opt}: folder {} does not exist",
                    dir.display()
                ))));
            }
        }
    }
    let graph = load_graph(cfg)?;
    // The float model gives the input specs (and is what runs when nothing is rewritten).
    let run_inputs = RunInputs::new(cfg, &graph)?;
    let float_model = &run_inputs.model;
    let loader = |k: usize| run_inputs.load(k);
    let profile = obtain_profile(cfg, &graph, run_inputs.sets.count, &loader, events)?;

    if !quantizing && !fp16_rules && q.keep_original_precision_op_kinds.is_empty() {
        // -dump-profile alone: the float run.
        return execute(cfg, float_model, events);
    }
    let result = apply_and_report(&graph, profile.as_ref(), &qcfg, events)?;
    // The dequantizes the integer ops bypass stay for the report; the run drops them.
    let mut run_graph = result.graph.clone();
    let extra: Vec<_> = cfg.load.extra_outputs.iter().filter_map(|n| run_graph.find_value(n)).collect();
    run_graph.prune(&extra);
    let model = InterpreterModel::from_graph(cfg, run_graph, &qaic_quant::registry())?;
    let report = execute(cfg, &model, events)?;
    if let Some(path) = &q.quantization_report {
        let rep = qaic_quant::quantization_report(&graph, &result, run_inputs.sets.count, &loader)?;
        for r in rep.worst(3) {
            tracing::info!("lowest SQNR: {} ({}, {}): {:.2} dB", r.tensor, r.producer, r.precision, r.sqnr_db);
        }
        rep.save(path)?;
        events(RunEvent::WroteFile(path.display().to_string()));
    }
    Ok(report)
}

/// The precision pass, and the one-line summary of what it did (the interpreter run and the
/// device's compilation report it alike).
fn apply_and_report(
    graph: &qaic_ir::Graph,
    profile: Option<&qaic_quant::Profile>,
    qcfg: &QuantConfig,
    events: &mut dyn FnMut(RunEvent),
) -> Result<qaic_quant::PrecisionResult, RunError> {
    let result = qaic_quant::apply_precision(graph, profile, qcfg)?;
    let (nq, nf, nh) = result.counts();
    events(RunEvent::Precision(format!(
        "Precision: {nq} node(s) quantized ({}), {nf} float32, {nh} fp16; {} matrix op(s) on integer kernels (-v lists each node and why)",
        if qcfg.precision == Precision::Int16 { "Int16" } else { "Int8" },
        result.integer_ops
    )));
    Ok(result)
}

/// The profile of this run: `-load-profile`, or measured on the input list (`-dump-profile`,
/// which also writes it, and `-convert-to-quantize`, which uses it).
fn obtain_profile(
    cfg: &ExecConfig,
    graph: &qaic_ir::Graph,
    count: usize,
    loader: qaic_quant::InputLoader<'_>,
    events: &mut dyn FnMut(RunEvent),
) -> Result<Option<qaic_quant::Profile>, RunError> {
    let q = &cfg.quantization;
    let pcfg = profile_config(cfg);
    let model_path = cfg.load.model.clone().unwrap_or_default();
    let origin = |p: &Path| p.display().to_string();

    // The profile: loaded, or measured on this run's inputs.
    let mut profile = None;
    if let Some(p) = &q.load_profile {
        let prof = qaic_quant::Profile::load(p)?;
        for w in prof.check_graph(graph, &origin(p))? {
            tracing::warn!("{w}");
        }
        profile = Some(prof);
    }
    if q.dump_profile.is_some() || q.convert_to_quantize {
        let (tx, rx) = std::sync::mpsc::channel();
        let result = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let tx = tx;
                qaic_quant::profile_graph(graph, &pcfg, count, loader, &|p| {
                    let _ = tx.send(p);
                })
            });
            for p in rx {
                events(RunEvent::Profiling(p));
            }
            h.join()
        });
        let mut prof = result.map_err(|_| RunError::Model("the profiling thread panicked".into()))??;
        if let Some(info) = prof.info.as_mut() {
            info.options = profile_options(cfg, &model_path);
        }
        if let Some(p) = &q.dump_profile {
            prof.save(p)?;
            events(RunEvent::WroteFile(p.display().to_string()));
        }
        if q.convert_to_quantize {
            profile = Some(prof);
        }
    }

    Ok(profile)
}

/// The graph the virtual AIC100 compiles when quantization options are given: the profile
/// (loaded, or measured on the interpreter over the input list), the precision pass, and the
/// integer lowering, and the fp16 rules (`-convert-to-fp16`, `-execute-nodes-in-fp16`,
/// `-node-precision-info`: float16 tiles and `Cast`s on the device); the dequantizes the integer
/// ops bypass are pruned. `-quantization-report` is refused (it compares interpreter runs).
pub fn device_graph(cfg: &ExecConfig, graph: qaic_ir::Graph, events: &mut dyn FnMut(RunEvent)) -> Result<qaic_ir::Graph, RunError> {
    let q = &cfg.quantization;
    if q.quantization_report.is_some() {
        return Err(RunError::NotSupported("-quantization-report compares interpreter runs: use it with -run-on-interpreter".into()));
    }
    let qcfg = quant_config(cfg)?;
    let pcfg = profile_config(cfg);
    pcfg.validate()?;
    let quantizing = q.load_profile.is_some() || q.convert_to_quantize || q.external_quantization.is_some();
    let profile = if q.dump_profile.is_some() || q.load_profile.is_some() || q.convert_to_quantize {
        let run_inputs = RunInputs::new(cfg, &graph)?;
        obtain_profile(cfg, &graph, run_inputs.sets.count, &|k| run_inputs.load(k), events)?
    } else {
        None
    };
    let fp16_rules = q.convert_to_fp16 || !q.fp16_op_kinds.is_empty() || q.node_precision_info.is_some();
    if !quantizing && !fp16_rules && q.keep_original_precision_op_kinds.is_empty() {
        return Ok(graph);
    }
    let result = apply_and_report(&graph, profile.as_ref(), &qcfg, events)?;
    let mut g = result.graph;
    g.prune(&[]);
    g.remove_unused_values();
    Ok(g)
}

/// What the profile records about how it was made (its fourth YAML document).
fn profile_options(cfg: &ExecConfig, model: &Path) -> BTreeMap<String, String> {
    let mut o = BTreeMap::new();
    o.insert("model".into(), model.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
    o.insert("num-histogram-bins".into(), profile_config(cfg).num_histogram_bins.to_string());
    if let Some(b) = cfg.load.batch_size {
        o.insert("batchsize".into(), b.to_string());
    }
    for (n, v) in &cfg.load.symbols {
        o.insert(format!("onnx-define-symbol:{n}"), v.to_string());
    }
    match &cfg.run.inputs {
        InputSource::ListFile(p) => {
            o.insert("input-list-file".into(), p.display().to_string());
        }
        InputSource::JsonFile(p) => {
            o.insert("json-input-file".into(), p.display().to_string());
        }
        InputSource::Random(r) => {
            o.insert("random-seed".into(), r.seed.to_string());
        }
    }
    o
}
