//! Plans: a graph whose nodes have been turned into prepared kernels, ready to run many times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qaic_ir::{Graph, ValueId, ValueType};
use qaic_tensor::{Dim, Value};

use crate::error::{InterpError, OpError, Unsupported};
use crate::registry::{BuildCtx, Kernel, NoScope, Registry, RunCtx, Scope};

/// Options for planning.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// Values to keep alive and report even when they are not graph outputs.
    pub keep: Vec<String>,
    /// Plan-time rewrites (default on): constant folding, BatchNormalization and activations
    /// fused into Conv, bias into MatMul (see `docs/architecture.md`). Fusion removes
    /// intermediate values, so turn this off when an observer must see every value of the
    /// original graph (quantization profiling); values named in `keep` are never removed.
    pub optimize: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { keep: Vec::new(), optimize: true }
    }
}

struct Step {
    node: usize,
    kernel: Box<dyn Kernel>,
    /// Values whose last reader is this step (freed after it runs).
    free_after: Vec<ValueId>,
}

/// A graph prepared for execution.
///
/// ```no_run
/// # fn demo(graph: qaic_ir::Graph, x: qaic_tensor::Tensor) -> Result<(), qaic_interp::InterpError> {
/// let plan = qaic_interp::Plan::new(graph)?;
/// let outputs = plan.run(vec![x.into()])?;
/// # Ok(()) }
/// ```
pub struct Plan {
    graph: Arc<Graph>,
    steps: Vec<Step>,
    names: HashMap<String, ValueId>,
    /// Number of leading inputs without a default value (the rest may be omitted).
    required_inputs: usize,
    /// Per-step wall time, when `QAIC_PROFILE_OPS` is set (printed per op type on drop).
    op_times: Option<Mutex<Vec<(Duration, u32)>>>,
    /// Values computed at plan time by constant folding (shown to observers on every run).
    folded: Vec<ValueId>,
}

/// Observer of every value a run produces (intermediate outputs, profiling).
pub type Observer<'o> = &'o mut dyn FnMut(&Graph, ValueId, &Value);

impl Plan {
    /// Plans `graph` with every op of this crate.
    pub fn new(graph: Graph) -> Result<Plan, InterpError> {
        Plan::with_registry(graph, &Registry::standard(), &PlanOptions::default())
    }

    /// Plans `graph` with a given registry and options. Every unsupported node is reported at
    /// once ([`InterpError::Unsupported`]).
    pub fn with_registry(graph: Graph, registry: &Registry, options: &PlanOptions) -> Result<Plan, InterpError> {
        Plan::build(graph, registry, options, false)
    }

    /// Plans a subgraph (body of `If`/`Loop`/`Scan`): its captures are bound at run time from
    /// the enclosing scope, so they are not checked against a parent here.
    pub fn subgraph(graph: Graph, registry: &Registry, options: &PlanOptions) -> Result<Plan, InterpError> {
        Plan::build(graph, registry, options, true)
    }

    fn build(mut graph: Graph, registry: &Registry, options: &PlanOptions, detached: bool) -> Result<Plan, InterpError> {
        graph.sort_topologically()?;
        if detached {
            graph.verify_detached()?;
        } else {
            graph.verify()?;
        }
        let mut folded = Vec::new();
        if options.optimize {
            folded = crate::optimize::fold_constants(&mut graph, registry, options);
            crate::optimize::fuse(&mut graph, options);
        }
        let mut unsupported = Vec::new();
        let mut first_error: Option<InterpError> = None;
        let mut kernels: Vec<Option<Box<dyn Kernel>>> = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let opset = graph.opset_version(&node.domain).unwrap_or(0);
            let unsup = |reason: String| Unsupported {
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                opset,
                node: node.display_name(&graph),
                reason,
            };
            let Some(def) = registry.lookup(&node.domain, &node.op_type, opset) else {
                let reason = if registry.knows(&node.domain, &node.op_type) {
                    format!("opset {opset} is older than any implemented version")
                } else {
                    "unknown operator".to_string()
                };
                unsupported.push(unsup(reason));
                kernels.push(None);
                continue;
            };
            let ctx = BuildCtx { node, graph: &graph, opset, registry, options };
            match (def.build)(&ctx) {
                Ok(k) => kernels.push(Some(k)),
                Err(OpError::Unsupported(reason)) => {
                    unsupported.push(unsup(reason));
                    kernels.push(None);
                }
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(InterpError::Node {
                            node: node.display_name(&graph),
                            op: node.qualified_op(),
                            msg: e.to_string(),
                        });
                    }
                    kernels.push(None);
                }
            }
        }
        if !unsupported.is_empty() {
            return Err(InterpError::Unsupported(unsupported));
        }
        if let Some(e) = first_error {
            return Err(e);
        }

        // Liveness: free each value after its last reader, unless it must survive the run.
        let names: HashMap<String, ValueId> =
            graph.values.iter().enumerate().map(|(i, v)| (v.name.clone(), ValueId(i as u32))).collect();
        let mut keep = vec![false; graph.values.len()];
        for o in &graph.outputs {
            keep[o.index()] = true;
        }
        for k in &options.keep {
            if let Some(id) = names.get(k) {
                keep[id.index()] = true;
            }
        }
        let mut last_use: Vec<Option<usize>> = vec![None; graph.values.len()];
        for (i, node) in graph.nodes.iter().enumerate() {
            for v in graph.node_reads(node) {
                last_use[v.index()] = Some(i);
            }
        }
        let mut steps: Vec<Step> = kernels
            .into_iter()
            .enumerate()
            .map(|(i, k)| Step { node: i, kernel: k.expect("checked above"), free_after: Vec::new() })
            .collect();
        for (v, lu) in last_use.iter().enumerate() {
            if let Some(i) = lu {
                if !keep[v] && graph.values[v].constant.is_none() {
                    steps[*i].free_after.push(ValueId(v as u32));
                }
            }
        }
        let required_inputs = graph
            .inputs
            .iter()
            .rposition(|i| graph.value(*i).constant.is_none())
            .map(|p| p + 1)
            .unwrap_or(0);
        let op_times = (!detached && std::env::var_os("QAIC_PROFILE_OPS").is_some())
            .then(|| Mutex::new(vec![(Duration::ZERO, 0); steps.len()]));
        Ok(Plan { graph: Arc::new(graph), steps, names, required_inputs, op_times, folded })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the graph on `inputs` (in graph-input order) and returns the graph outputs.
    pub fn run(&self, inputs: Vec<Value>) -> Result<Vec<Value>, InterpError> {
        // On a kernel thread, so each kernel's parallel split is a cheap in-pool fork.
        qaic_kernels::run_in_pool(|| self.run_full(inputs, &NoScope, None))
    }

    /// Like [`Plan::run`], calling `observer` for every value produced (graph inputs included).
    pub fn run_observed(&self, inputs: Vec<Value>, observer: Observer<'_>) -> Result<Vec<Value>, InterpError> {
        self.run_full(inputs, &NoScope, Some(observer))
    }

    /// Runs with an enclosing scope (for subgraphs).
    pub fn run_scoped(&self, inputs: Vec<Value>, scope: &dyn Scope) -> Result<Vec<Value>, InterpError> {
        self.run_full(inputs, scope, None)
    }

    fn run_full(
        &self,
        inputs: Vec<Value>,
        scope: &dyn Scope,
        mut observer: Option<Observer<'_>>,
    ) -> Result<Vec<Value>, InterpError> {
        let g = &*self.graph;
        if inputs.len() < self.required_inputs || inputs.len() > g.inputs.len() {
            return Err(InterpError::Other(format!(
                "graph `{}` takes {} input(s), got {}",
                g.name,
                if self.required_inputs == g.inputs.len() {
                    g.inputs.len().to_string()
                } else {
                    format!("{} to {}", self.required_inputs, g.inputs.len())
                },
                inputs.len()
            )));
        }
        let mut slots: Vec<Option<Value>> = vec![None; g.values.len()];
        for (i, v) in g.values.iter().enumerate() {
            if let Some(c) = &v.constant {
                slots[i] = Some(Value::Tensor(c.clone()));
            }
        }
        let mut symbols: HashMap<&str, usize> = HashMap::new();
        for (id, value) in g.inputs.iter().zip(inputs) {
            check_input(g.value(*id).name.as_str(), g.value(*id).ty.as_ref(), &value, &mut symbols)?;
            if let Some(obs) = observer.as_deref_mut() {
                obs(g, *id, &value);
            }
            slots[id.index()] = Some(value);
        }
        if let Some(obs) = observer.as_deref_mut() {
            for &id in &self.folded {
                if let Some(v) = &slots[id.index()] {
                    obs(g, id, v);
                }
            }
        }
        for &c in &g.captures {
            let name = &g.value(c).name;
            let v = scope
                .lookup(name)
                .ok_or_else(|| InterpError::Other(format!("captured value `{name}` is not in scope")))?;
            slots[c.index()] = Some(v);
        }
        let mut times = self.op_times.as_ref().map(|_| Vec::with_capacity(self.steps.len()));
        for step in &self.steps {
            let node = &g.nodes[step.node];
            let t0 = times.as_ref().map(|_| Instant::now());
            let outs = {
                let args: Vec<Option<&Value>> =
                    node.inputs.iter().map(|i| i.and_then(|id| slots[id.index()].as_ref())).collect();
                let frame = Frame { plan: self, slots: &slots, parent: scope };
                let ctx = RunCtx { scope: &frame };
                step.kernel.run(&ctx, &args).map_err(|e| InterpError::Node {
                    node: node.display_name(g),
                    op: node.qualified_op(),
                    msg: e.to_string(),
                })?
            };
            for (slot, out) in node.outputs.iter().zip(outs) {
                if let (Some(id), Some(v)) = (slot, out) {
                    if let Some(obs) = observer.as_deref_mut() {
                        obs(g, *id, &v);
                    }
                    slots[id.index()] = Some(v);
                }
            }
            for f in &step.free_after {
                slots[f.index()] = None;
            }
            if let (Some(t), Some(t0)) = (times.as_mut(), t0) {
                t.push(t0.elapsed());
            }
        }
        if let (Some(acc), Some(t)) = (&self.op_times, times) {
            if let Ok(mut acc) = acc.lock() {
                for (a, d) in acc.iter_mut().zip(t) {
                    a.0 += d;
                    a.1 += 1;
                }
            }
        }
        g.outputs
            .iter()
            .map(|o| {
                slots[o.index()].take().ok_or_else(|| {
                    InterpError::Other(format!("graph output `{}` was not produced", g.value(*o).name))
                })
            })
            .collect()
    }

    /// The value id of a name in this plan's graph.
    pub fn value_id(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }
}

impl Drop for Plan {
    /// Prints the `QAIC_PROFILE_OPS` table: time per op type, largest first, then the ten
    /// slowest nodes. A developer aid for finding where a model's time goes.
    fn drop(&mut self) {
        let Some(times) = self.op_times.take().and_then(|m| m.into_inner().ok()) else { return };
        let runs = times.iter().map(|t| t.1).max().unwrap_or(0).max(1);
        let total: Duration = times.iter().map(|t| t.0).sum();
        let mut by_op: HashMap<String, (Duration, usize)> = HashMap::new();
        for (step, (d, _)) in self.steps.iter().zip(&times) {
            let e = by_op.entry(self.graph.nodes[step.node].qualified_op()).or_default();
            e.0 += *d;
            e.1 += 1;
        }
        let mut rows: Vec<_> = by_op.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0));
        let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(runs);
        let mut out = format!("op profile of `{}`: {:.3} ms per run over {runs} run(s)\n", self.graph.name, ms(total));
        for (op, (d, n)) in rows {
            let pct = 100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12);
            out += &format!("  {op:<28} {n:>5} nodes {:>10.3} ms {pct:>5.1}%\n", ms(d));
        }
        let mut nodes: Vec<(usize, Duration)> = self.steps.iter().zip(&times).map(|(s, t)| (s.node, t.0)).collect();
        nodes.sort_by(|a, b| b.1.cmp(&a.1));
        for (n, d) in nodes.into_iter().take(10) {
            let node = &self.graph.nodes[n];
            out += &format!("  slow: {:<40} {:<20} {:>10.3} ms\n", node.display_name(&self.graph), node.op_type, ms(d));
        }
        eprint!("{out}");
    }
}

/// The values of a running graph, as a scope for its subgraphs.
struct Frame<'a> {
    plan: &'a Plan,
    slots: &'a [Option<Value>],
    parent: &'a dyn Scope,
}

impl Scope for Frame<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        match self.plan.names.get(name) {
            Some(id) => self.slots[id.index()].clone().or_else(|| self.parent.lookup(name)),
            None => self.parent.lookup(name),
        }
    }
}

/// Checks a run-time input against its declared type, binding symbolic dims consistently.
fn check_input<'g>(
    name: &'g str,
    ty: Option<&'g ValueType>,
    value: &Value,
    symbols: &mut HashMap<&'g str, usize>,
) -> Result<(), InterpError> {
    let err = |msg: String| Err(InterpError::Input { name: name.to_string(), msg });
    let Some(ValueType::Tensor { dtype, shape }) = ty else { return Ok(()) };
    let Value::Tensor(t) = value else {
        return err("expected a tensor".to_string());
    };
    if t.dtype() != *dtype {
        return err(format!("expected element type {dtype}, got {}", t.dtype()));
    }
    let Some(shape) = shape else { return Ok(()) };
    if shape.rank() != t.rank() {
        return err(format!("expected shape {shape} (rank {}), got {:?}", shape.rank(), t.shape()));
    }
    for (d, &n) in shape.0.iter().zip(t.shape()) {
        match d {
            Dim::Known(k) if *k != n => return err(format!("expected shape {shape}, got {:?}", t.shape())),
            Dim::Sym(s) => {
                let bound = *symbols.entry(s.as_str()).or_insert(n);
                if bound != n {
                    return err(format!("dimension `{s}` is {n} here but {bound} in another input"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
