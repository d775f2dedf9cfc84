//! Running a model: inputs → repeated inference → outputs, host timing.
//!
//! [`execute`] drives any [`Executable`] (the interpreter today, the runtime later) from an
//! [`ExecConfig`]: it reads or generates the inputs, runs the iterations, writes outputs and
//! dumps, and measures host wall time per inference. It reports what it does through
//! [`RunEvent`]s so binaries choose what to print; it never prints itself.
//!
//! Iterations: `-num-iter=N` runs N inferences; iteration `i` uses input-list line (or JSON
//! set) `i mod K`. Without `-num-iter`, one pass over the K input sets (1 for random inputs,
//! which are generated once and reused). Outputs and input dumps are written for the first
//! K iterations only (later ones repeat the same inputs), named `inf-0` … `inf-(K-1)`.
//! `-time=S` instead submits inferences until S seconds of host time have passed (at least
//! one), cycling over the input sets the same way.

use std::time::{Duration, Instant};

use qaic_tensor::Tensor;

use crate::exec_options::{Distribution, ExecConfig, InputSource};
use crate::inputs::{self, InputError, InputSpec};
use crate::outputs::{self, OutputError};

/// Something that runs inferences: declared inputs in, named outputs out.
pub trait Executable {
    /// The inputs the caller must supply, in order.
    fn inputs(&self) -> &[InputSpec];
    /// Runs one inference. Returns the model outputs, then the requested intermediates, each
    /// with its name, in the order they are to be written.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>, RunError>;
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0}")]
    Model(String),
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// Profiling, a profile or precision file, or the precision pass.
    #[error(transparent)]
    Quant(#[from] qaic_quant::QuantError),
}

/// What a run does, as it happens (for the binary to print).
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// An input file is used (`Input file: <path>`).
    InputFile(String),
    /// Random inputs are generated.
    RandomInputs { distribution: Distribution, unbound: bool, seed: u64 },
    /// A file was written (`Writing file:<path>`).
    WroteFile(String),
    /// A periodically rewritten profiling file is replaced (`Deleting previous file: <path>`).
    DeletedFile(String),
    /// Profiling progress (`-dump-profile`, `-convert-to-quantize`): after each input of each pass.
    Profiling(qaic_quant::Progress),
    /// A one-line summary of the precision pass (nodes quantized / float32 / fp16).
    Precision(String),
}

/// Result of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    pub inferences: u64,
    /// Host wall time of each inference call, in order.
    pub times: Vec<Duration>,
    /// Files written (outputs and dumps), in order.
    pub written: Vec<String>,
}

impl RunReport {
    /// Median host wall time per inference (upper median for an even count).
    pub fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t.get(t.len() / 2).copied().unwrap_or_default()
    }

    /// The line benchmarks parse: `Host wall time per inference (median): X ms`. This is host
    /// time of the interpreter, never a device rate, so no `Inf/Sec` is printed for it.
    pub fn timing_line(&self) -> String {
        format!("Host wall time per inference (median): {:.3} ms", self.median().as_secs_f64() * 1e3)
    }
}

enum Inputs {
    List(inputs::InputList),
    Json(inputs::JsonInputs),
    Fixed(Vec<Tensor>),
}

/// Runs `model` as `cfg` says. See the module doc for iteration and writing rules.
pub fn execute(cfg: &ExecConfig, model: &dyn Executable, events: &mut dyn FnMut(RunEvent)) -> Result<RunReport, RunError> {
    let specs = model.inputs().to_vec();
    let source = match &cfg.run.inputs {
        InputSource::ListFile(p) => Inputs::List(inputs::read_input_list(p)?),
        InputSource::JsonFile(p) => Inputs::Json(inputs::read_json_inputs(p)?),
        InputSource::Random(r) => {
            events(RunEvent::RandomInputs { distribution: r.distribution, unbound: r.unbound, seed: r.seed });
            Inputs::Fixed(inputs::random_inputs(&specs, r)?)
        }
    };
    let sets = match &source {
        Inputs::List(l) => l.inferences.len() as u64,
        Inputs::Json(j) => j.inferences.len() as u64,
        Inputs::Fixed(_) => 1,
    };
    let iterations = cfg.run.num_iter.unwrap_or(sets);
    let out_dir = cfg.output.write_output_dir.as_deref();
    let mut report = RunReport { inferences: 0, times: Vec::new(), written: Vec::new() };
    // Inputs are loaded (and checked) once per distinct set, before any timing.
    let mut loaded: Vec<Vec<Tensor>> = Vec::new();
    let needed = if cfg.run.time_s.is_some() { sets } else { sets.min(iterations) };
    for k in 0..needed as usize {
        let ts = match &source {
            Inputs::List(l) => {
                for f in &l.inferences[k].files {
                    events(RunEvent::InputFile(f.display().to_string()));
                }
                l.load(k, &specs)?
            }
            Inputs::Json(j) => {
                for e in j.inferences[k].iter().filter(|e| e.direction == inputs::IoDirection::In) {
                    events(RunEvent::InputFile(e.path.display().to_string()));
                }
                j.load(k, &specs)?
            }
            Inputs::Fixed(t) => t.clone(),
        };
        loaded.push(ts);
    }
    // `-time=S`: inferences are submitted until S seconds of host time have passed.
    let deadline = cfg.run.time_s.map(|t| (Instant::now(), Duration::from_secs(t)));
    let mut i = 0u64;
    loop {
        match deadline {
            Some((t0, d)) if t0.elapsed() >= d => break,
            None if i >= iterations => break,
            _ => {}
        }
        let k = (i % sets.max(1)) as usize;
        let Some(ins) = loaded.get(k) else { break };
        if cfg.run.dump_input_buffers && i < sets {
            for p in inputs::dump_input_buffers(out_dir.unwrap_or("."), i, &specs, ins)? {
                events(RunEvent::WroteFile(p.clone()));
                report.written.push(p);
            }
        }
        let start = Instant::now();
        let outs = model.run(ins.clone())?;
        report.times.push(start.elapsed());
        report.inferences += 1;
        if let Some(dir) = out_dir
            && i < sets
        {
            let named: Vec<(&str, &Tensor)> = outs.iter().map(|(n, t)| (n.as_str(), t)).collect();
            for p in outputs::write_outputs(dir, i, &named)? {
                events(RunEvent::WroteFile(p.clone()));
                report.written.push(p);
            }
        }
        i += 1;
    }
    Ok(report)
}

/// A model loaded from ONNX and planned on the reference interpreter.
pub struct InterpreterModel {
    plan: qaic_interp::Plan,
    specs: Vec<InputSpec>,
    /// For each graph input fed by the caller: `Some(constant)` when the model gives it a
    /// default that sits before a required input (fed automatically), else `None`.
    feed: Vec<Option<Tensor>>,
    extra: Vec<String>,
}

/// Loads `cfg.load.model` into the IR, binding `-onnx-define-symbol` and `-batchsize`, and
/// checks the `-output-node-name` tensors exist.
pub fn load_graph(cfg: &ExecConfig) -> Result<qaic_ir::Graph, RunError> {
    let path = cfg
        .load
        .model
        .as_ref()
        .ok_or_else(|| RunError::Model("no model given: use -m=<model file>".into()))?;
    let opts = qaic_onnx::LoadOptions {
        define_symbols: cfg.load.symbols.iter().map(|(n, v)| (n.clone(), *v as usize)).collect(),
        batch_size: cfg.load.batch_size.map(|b| b as usize),
        always_expand_functions: cfg.load.always_expand_functions,
    };
    let graph = qaic_onnx::load(path, &opts).map_err(|e| RunError::Model(e.to_string()))?;
    for name in &cfg.load.extra_outputs {
        if !graph.values.iter().any(|v| &v.name == name) {
            return Err(RunError::Model(format!("-output-node-name: the model has no tensor named `{name}`")));
        }
    }
    Ok(graph)
}

impl InterpreterModel {
    /// Loads `cfg.load.model` (binding `-onnx-define-symbol` and `-batchsize`) and plans it.
    /// Every unsupported operator is reported at once.
    pub fn load(cfg: &ExecConfig) -> Result<InterpreterModel, RunError> {
        let graph = load_graph(cfg)?;
        InterpreterModel::from_graph(cfg, graph, &qaic_interp::Registry::standard())
    }

    /// Plans an already loaded (and possibly transformed) graph with `registry`
    /// (`qaic_quant::registry()` for graphs made by the precision pass).
    pub fn from_graph(
        cfg: &ExecConfig,
        graph: qaic_ir::Graph,
        registry: &qaic_interp::Registry,
    ) -> Result<InterpreterModel, RunError> {
        let path = cfg.load.model.clone().unwrap_or_default();
        let required = graph
            .inputs
            .iter()
            .rposition(|i| graph.value(*i).constant.is_none())
            .map_or(0, |p| p + 1);
        let mut specs = Vec::new();
        let mut feed = Vec::new();
        for id in &graph.inputs[..required] {
            let v = graph.value(*id);
            if let Some(c) = &v.constant {
                feed.push(Some(c.clone()));
                continue;
            }
            let spec = match &v.ty {
                Some(qaic_ir::ValueType::Tensor { dtype, shape: Some(shape) }) => {
                    InputSpec { name: v.name.clone(), dtype: *dtype, shape: shape.clone() }
                }
                Some(qaic_ir::ValueType::Tensor { shape: None, .. }) => {
                    return Err(RunError::Model(format!(
                        "input `{}`: the model does not declare its rank",
                        v.name
                    )));
                }
                other => {
                    return Err(RunError::NotSupported(format!(
                        "input `{}` of type {}: only tensor inputs can be fed",
                        v.name,
                        other.as_ref().map_or("unknown".to_string(), |t| t.to_string())
                    )));
                }
            };
            specs.push(spec);
            feed.push(None);
        }
        let options = qaic_interp::PlanOptions { keep: cfg.load.extra_outputs.clone(), ..Default::default() };
        let plan = qaic_interp::Plan::with_registry(graph, registry, &options)
            .map_err(|e| RunError::Model(format!("{}: {e}", path.display())))?;
        Ok(InterpreterModel { plan, specs, feed, extra: cfg.load.extra_outputs.clone() })
    }
}

impl InterpreterModel {
    /// The values of the graph inputs for the caller's `inputs` (in [`Executable::inputs`]
    /// order): defaulted inputs placed before a required one are filled in.
    pub fn graph_inputs(&self, inputs: Vec<Tensor>) -> Result<Vec<qaic_tensor::Value>, RunError> {
        let mut given = inputs.into_iter();
        let mut values = Vec::with_capacity(self.feed.len());
        for f in &self.feed {
            let t = match f {
                Some(c) => c.clone(),
                None => given.next().ok_or_else(|| RunError::Model("too few inputs".into()))?,
            };
            values.push(qaic_tensor::Value::Tensor(t));
        }
        Ok(values)
    }
}

fn into_tensor(name: &str, v: qaic_tensor::Value) -> Option<Tensor> {
    match v {
        qaic_tensor::Value::Tensor(t) => Some(t),
        _ => {
            tracing::warn!("output `{name}` is a sequence or optional; it is not written");
            None
        }
    }
}

impl Executable for InterpreterModel {
    fn inputs(&self) -> &[InputSpec] {
        &self.specs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>, RunError> {
        let values = self.graph_inputs(inputs)?;
        let mut extras: Vec<(String, qaic_tensor::Value)> = Vec::new();
        let outs = if self.extra.is_empty() {
            self.plan.run(values)
        } else {
            let mut observer = |g: &qaic_ir::Graph, id: qaic_ir::ValueId, v: &qaic_tensor::Value| {
                let name = &g.value(id).name;
                if self.extra.iter().any(|e| e == name) {
                    extras.push((name.clone(), v.clone()));
                }
            };
            self.plan.run_observed(values, &mut observer)
        }
        .map_err(|e| RunError::Model(e.to_string()))?;
        let g = self.plan.graph();
        let mut named = Vec::new();
        for (id, v) in g.outputs.iter().zip(outs) {
            let name = g.value(*id).name.clone();
            if let Some(t) = into_tensor(&name, v) {
                named.push((name, t));
            }
        }
        // Requested intermediates, in the order given on the command line.
        for want in &self.extra {
            if named.iter().any(|(n, _)| n == want) {
                continue;
            }
            match extras.iter().rev().find(|(n, _)| n == want) {
                Some((n, v)) => {
                    if let Some(t) = into_tensor(n, v.clone()) {
                        named.push((n.clone(), t));
                    }
                }
                None => {
                    return Err(RunError::Model(format!("-output-node-name: `{want}` was not computed by this run")));
                }
            }
        }
        Ok(named)
    }
}

/// `qaic-exec -m=model.onnx -run-on-interpreter ...`: loads the model, plans it on the
/// reference interpreter and [`execute`]s it.
///
/// With any quantization or precision option (`-dump-profile`, `-load-profile`,
/// `-convert-to-quantize`, `-external-quantization`, fp16 rules), the run goes through
/// [`crate::precision::run`] instead.
pub fn run_on_interpreter(cfg: &ExecConfig, events: &mut dyn FnMut(RunEvent)) -> Result<RunReport, RunError> {
    if crate::precision::is_active(cfg) {
        return crate::precision::run(cfg, events);
    }
    let model = InterpreterModel::load(cfg)?;
    execute(cfg, &model, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec_options::{parse_exec_command, ExecCommand, Tool};
    use qaic_tensor::{DType, Shape};

    /// y = x + 1 (f32), plus an intermediate "mid/x2" = 2x.
    struct AddOne(Vec<InputSpec>);
    impl Executable for AddOne {
        fn inputs(&self) -> &[InputSpec] {
            &self.0
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<(String, Tensor)>, RunError> {
            let x = inputs[0].to_vec::<f32>().map_err(|e| RunError::Model(e.to_string()))?;
            let shape = inputs[0].shape().to_vec();
            let y = Tensor::from_vec(shape.clone(), x.iter().map(|v| v + 1.0).collect()).map_err(|e| RunError::Model(e.to_string()))?;
            let m = Tensor::from_vec(shape, x.iter().map(|v| v * 2.0).collect()).map_err(|e| RunError::Model(e.to_string()))?;
            Ok(vec![("y".into(), y), ("mid/x2".into(), m)])
        }
    }

    fn cfg(args: &[&str]) -> ExecConfig {
        let mut a = vec!["-m=fake.onnx", "-run-on-interpreter"];
        a.extend_from_slice(args);
        match parse_exec_command(Tool::Exec, a).unwrap() {
            ExecCommand::Run(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_file_run_writes_outputs_per_line() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p("a.bin"), [1.0f32, 2.0].map(f32::to_le_bytes).concat()).unwrap();
        std::fs::write(p("b.bin"), [5.0f32, 6.0].map(f32::to_le_bytes).concat()).unwrap();
        std::fs::write(p("list.txt"), "a.bin\nb.bin\n").unwrap();
        let model = AddOne(vec![InputSpec { name: "x".into(), dtype: DType::F32, shape: Shape::known(&[2]) }]);
        let out = p("out");
        let c = cfg(&[&format!("-input-list-file={}", p("list.txt")), &format!("-write-output-dir={out}"), "-num-iter=5", "-dump-input-buffers"]);
        let mut ev = Vec::new();
        let r = execute(&c, &model, &mut |e| ev.push(e)).unwrap();
        assert_eq!(r.inferences, 5);
        assert_eq!(r.times.len(), 5);
        let y1 = std::fs::read(format!("{out}/y-activation-0-inf-1.bin")).unwrap();
        assert_eq!(y1, [6.0f32, 7.0].map(f32::to_le_bytes).concat());
        assert!(std::path::Path::new(&format!("{out}/mid_x2-activation-0-inf-0.bin")).exists());
        assert!(!std::path::Path::new(&format!("{out}/y-activation-0-inf-2.bin")).exists());
        assert!(std::path::Path::new(&format!("{out}/x-input-inf-1.bin")).exists());
        assert_eq!(ev[0], RunEvent::InputFile(p("a.bin")));
        assert!(r.timing_line().starts_with("Host wall time per inference (median): "));
        assert!(r.timing_line().ends_with(" ms"));
    }

    #[test]
    fn bad_input_fails_before_any_output() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p("a.bin"), [0u8; 8]).unwrap();
        std::fs::write(p("bad.bin"), [0u8; 5]).unwrap();
        std::fs::write(p("list.txt"), "a.bin\nbad.bin\n").unwrap();
        let model = AddOne(vec![InputSpec { name: "x".into(), dtype: DType::F32, shape: Shape::known(&[2]) }]);
        let out = p("out");
        let c = cfg(&[&format!("-input-list-file={}", p("list.txt")), &format!("-write-output-dir={out}")]);
        let e = execute(&c, &model, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("expected 8 bytes") && e.contains("got 5 bytes"), "{e}");
        assert!(!std::path::Path::new(&out).exists());
    }

    #[test]
    fn random_run_reports_seed() {
        let model = AddOne(vec![InputSpec { name: "x".into(), dtype: DType::F32, shape: Shape::known(&[3]) }]);
        let c = cfg(&["-random-seed=11", "-num-iter=3"]);
        let mut ev = Vec::new();
        let r = execute(&c, &model, &mut |e| ev.push(e)).unwrap();
        assert_eq!(r.inferences, 3);
        assert_eq!(ev, vec![RunEvent::RandomInputs { distribution: Distribution::Uniform, unbound: false, seed: 11 }]);
        let even = RunReport { inferences: 2, times: vec![Duration::from_millis(3), Duration::from_millis(1)], written: vec![] };
        assert_eq!(even.median(), Duration::from_millis(3));
        assert_eq!(even.timing_line(), "Host wall time per inference (median): 3.000 ms");
    }
}
