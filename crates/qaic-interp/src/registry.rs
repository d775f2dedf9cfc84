//! The op registry: one table line per (domain, op type), learning from tract's ONNX crate.

use std::collections::BTreeMap;

use qaic_ir::{Attr, Graph, Node};
use qaic_tensor::{Tensor, Value};

use crate::error::OpError;
use crate::plan::{Plan, PlanOptions};

/// Builds the kernel for one node. Called once per node at plan time, so constant inputs can be
/// pre-processed (weights packed, shapes resolved) outside the run loop.
pub type Builder = fn(&BuildCtx<'_>) -> Result<Box<dyn Kernel>, OpError>;

/// A prepared op. `run` gets the node's inputs (`None` for omitted optional inputs) and returns
/// its outputs (`None` for outputs it does not produce).
pub trait Kernel: Send + Sync {
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError>;
}

/// Plain functions are kernels, for ops with nothing to prepare.
impl<F> Kernel for F
where
    F: Fn(&RunCtx<'_>, &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> + Send + Sync,
{
    fn run(&self, ctx: &RunCtx<'_>, inputs: &[Option<&Value>]) -> Result<Vec<Option<Value>>, OpError> {
        self(ctx, inputs)
    }
}

/// Scope lookup for values captured by subgraphs from enclosing graphs.
pub trait Scope {
    fn lookup(&self, name: &str) -> Option<Value>;
}

/// The empty scope.
pub struct NoScope;
impl Scope for NoScope {
    fn lookup(&self, _: &str) -> Option<Value> {
        None
    }
}

/// What a kernel sees at run time.
pub struct RunCtx<'a> {
    /// Values of enclosing graphs, for subgraph execution (`If`, `Loop`, `Scan`).
    pub scope: &'a dyn Scope,
}

/// What a builder sees at plan time.
pub struct BuildCtx<'a> {
    pub node: &'a Node,
    pub graph: &'a Graph,
    /// The opset version of the node's domain.
    pub opset: i64,
    pub registry: &'a Registry,
    pub options: &'a PlanOptions,
}

impl<'a> BuildCtx<'a> {
    /// The constant tensor feeding input `i`, if that input is a constant. A graph input with
    /// a default value is not one: the caller may feed another value at run time.
    pub fn const_input(&self, i: usize) -> Option<&'a Tensor> {
        let id = (*self.node.inputs.get(i)?)?;
        if self.graph.inputs.contains(&id) {
            return None;
        }
        self.graph.value(id).constant.as_ref()
    }
    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }
    pub fn has_input(&self, i: usize) -> bool {
        matches!(self.node.inputs.get(i), Some(Some(_)))
    }
    pub fn num_outputs(&self) -> usize {
        self.node.outputs.len()
    }
    pub fn has_output(&self, i: usize) -> bool {
        matches!(self.node.outputs.get(i), Some(Some(_)))
    }
    /// Declared/inferred type of input `i`, if known.
    pub fn input_type(&self, i: usize) -> Option<&'a qaic_ir::ValueType> {
        let id = (*self.node.inputs.get(i)?)?;
        self.graph.value(id).ty.as_ref()
    }
    /// Declared/inferred type of output `i`, if known.
    pub fn output_type(&self, i: usize) -> Option<&'a qaic_ir::ValueType> {
        let id = (*self.node.outputs.get(i)?)?;
        self.graph.value(id).ty.as_ref()
    }

    pub fn attr(&self, name: &str) -> Option<&'a Attr> {
        self.node.attrs.get(name)
    }
    pub fn attr_i(&self, name: &str, default: i64) -> Result<i64, OpError> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(a) => Err(wrong_kind(name, "int", a)),
        }
    }
    pub fn attr_opt_i(&self, name: &str) -> Result<Option<i64>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(wrong_kind(name, "int", a)),
        }
    }
    pub fn attr_f(&self, name: &str, default: f32) -> Result<f32, OpError> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(a) => Err(wrong_kind(name, "float", a)),
        }
    }
    pub fn attr_opt_f(&self, name: &str) -> Result<Option<f32>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(a) => Err(wrong_kind(name, "float", a)),
        }
    }
    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(v)) => Ok(Some(vec![*v])),
            Some(a) => Err(wrong_kind(name, "ints", a)),
        }
    }
    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v.clone())),
            Some(a) => Err(wrong_kind(name, "floats", a)),
        }
    }
    pub fn attr_s(&self, name: &str, default: &str) -> Result<String, OpError> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(Attr::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(a) => Err(wrong_kind(name, "string", a)),
        }
    }
    pub fn attr_strings(&self, name: &str) -> Result<Option<Vec<String>>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Strings(v)) => Ok(Some(v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())),
            Some(a) => Err(wrong_kind(name, "strings", a)),
        }
    }
    pub fn attr_tensor(&self, name: &str) -> Result<Option<&'a Tensor>, OpError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(a) => Err(wrong_kind(name, "tensor", a)),
        }
    }
    /// Plans the subgraph held in attribute `name` (e.g. `then_branch`, `body`).
    pub fn subgraph(&self, name: &str) -> Result<Plan, OpError> {
        match self.attr(name) {
            Some(Attr::Graph(g)) => Plan::subgraph((**g).clone(), self.registry, self.options)
                .map_err(|e| OpError::Msg(format!("subgraph `{name}`: {e}"))),
            Some(a) => Err(wrong_kind(name, "graph", a)),
            None => Err(OpError::Msg(format!("missing required attribute `{name}`"))),
        }
    }
}

fn wrong_kind(name: &str, want: &str, got: &Attr) -> OpError {
    OpError::Msg(format!("attribute `{name}` should be {want}, found {}", got.kind()))
}

/// One registered implementation.
#[derive(Clone, Copy)]
pub struct OpDef {
    pub domain: &'static str,
    pub op_type: &'static str,
    /// Lowest opset version this implementation handles (inclusive).
    pub since: i64,
    pub build: Builder,
}

/// All known ops, by domain and op type.
#[derive(Default, Clone)]
pub struct Registry {
    ops: BTreeMap<&'static str, BTreeMap<&'static str, Vec<OpDef>>>,
}

impl Registry {
    /// An empty registry (see [`Registry::standard`] for the full one).
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// Every op this crate implements.
    pub fn standard() -> Registry {
        let mut r = Registry::default();
        crate::ops::register_all(&mut r);
        r
    }

    /// Registers `build` for `op_type` in the default ONNX domain from opset `since` on.
    pub fn add(&mut self, op_type: &'static str, since: i64, build: Builder) {
        self.add_in("", op_type, since, build)
    }

    pub fn add_in(&mut self, domain: &'static str, op_type: &'static str, since: i64, build: Builder) {
        let v = self.ops.entry(domain).or_default().entry(op_type).or_default();
        v.push(OpDef { domain, op_type, since, build });
        v.sort_by_key(|d| d.since);
    }

    /// The implementation for a node's domain, op type and opset (the newest whose `since` ≤ opset).
    pub fn lookup(&self, domain: &str, op_type: &str, opset: i64) -> Option<&OpDef> {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.ops.get(d)?.get(op_type)?.iter().rev().find(|def| def.since <= opset)
    }

    /// Whether a domain/op type is known at all (any opset).
    pub fn knows(&self, domain: &str, op_type: &str) -> bool {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.ops.get(d).is_some_and(|m| m.contains_key(op_type))
    }

    /// (domain, op type, lowest opset) for every op, sorted: the `-operators-supported` list.
    pub fn supported(&self) -> Vec<(&'static str, &'static str, i64)> {
        self.ops
            .iter()
            .flat_map(|(d, m)| m.iter().map(move |(o, defs)| (*d, *o, defs.first().map(|x| x.since).unwrap_or(1))))
            .collect()
    }
}
