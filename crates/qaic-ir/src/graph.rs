//! Graph, values, nodes and attributes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use qaic_tensor::{DType, Shape, Tensor};

use crate::IrError;

/// Index of a value in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Index of a node in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The declared or inferred type of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// A tensor; `shape` is `None` when even the rank is unknown.
    Tensor { dtype: DType, shape: Option<Shape> },
    /// ONNX `seq(T)`.
    Sequence(Box<ValueType>),
    /// ONNX `optional(T)`.
    Optional(Box<ValueType>),
    /// ONNX `map(K, V)` (only carried through; no op of ours produces maps).
    Map(DType, Box<ValueType>),
}

impl ValueType {
    pub fn tensor(dtype: DType, shape: Shape) -> ValueType {
        ValueType::Tensor { dtype, shape: Some(shape) }
    }
    /// The element type when this is a tensor type.
    pub fn tensor_dtype(&self) -> Option<DType> {
        match self {
            ValueType::Tensor { dtype, .. } => Some(*dtype),
            _ => None,
        }
    }
    /// The declared shape when this is a tensor type with known rank.
    pub fn tensor_shape(&self) -> Option<&Shape> {
        match self {
            ValueType::Tensor { shape, .. } => shape.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text form's spelling (symbols that are not identifiers are quoted).
        f.write_str(&crate::text::fmt_type(self))
    }
}

/// Everything known about one value of a graph.
#[derive(Clone, Debug)]
pub struct ValueData {
    /// The value's name (the ONNX tensor name; unique within its graph).
    pub name: String,
    /// Declared or inferred type; `None` when unknown.
    pub ty: Option<ValueType>,
    /// Set for constants (initializers, folded `Constant` nodes).
    pub constant: Option<Tensor>,
}

/// An attribute value (mirrors ONNX `AttributeProto`).
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Box<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    Type(ValueType),
    Types(Vec<ValueType>),
}

impl Attr {
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Float(_) => "float",
            Attr::Int(_) => "int",
            Attr::String(_) => "string",
            Attr::Tensor(_) => "tensor",
            Attr::Graph(_) => "graph",
            Attr::Floats(_) => "floats",
            Attr::Ints(_) => "ints",
            Attr::Strings(_) => "strings",
            Attr::Tensors(_) => "tensors",
            Attr::Graphs(_) => "graphs",
            Attr::Type(_) => "type",
            Attr::Types(_) => "types",
        }
    }
}

/// One operation. Ops are identified by ONNX domain and op type; their version is the graph's
/// opset for that domain (see [`Graph::opset_version`]).
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Node name (may be empty: many real models leave it empty).
    pub name: String,
    /// Operator domain: `""` for the default ONNX domain (`ai.onnx`), e.g. `com.microsoft`.
    pub domain: String,
    /// Operator type, e.g. `Conv`.
    pub op_type: String,
    /// Inputs in order; `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// Outputs in order; `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// Attributes by name (sorted, so printing is deterministic).
    pub attrs: BTreeMap<String, Attr>,
}

impl Node {
    /// `Conv` or `com.microsoft.DynamicQuantizeLSTM`: the name used in messages.
    pub fn qualified_op(&self) -> String {
        if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{}.{}", self.domain, self.op_type)
        }
    }
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name) {
            Some(Attr::Int(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn attr_float(&self, name: &str) -> Option<f32> {
        match self.attrs.get(name) {
            Some(Attr::Float(v)) => Some(*v),
            _ => None,
        }
    }
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }
    pub fn attr_floats(&self, name: &str) -> Option<&[f32]> {
        match self.attrs.get(name) {
            Some(Attr::Floats(v)) => Some(v),
            _ => None,
        }
    }
    pub fn attr_str(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(Attr::String(v)) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }
    pub fn attr_tensor(&self, name: &str) -> Option<&Tensor> {
        match self.attrs.get(name) {
            Some(Attr::Tensor(t)) => Some(t),
            _ => None,
        }
    }
    pub fn attr_graph(&self, name: &str) -> Option<&Graph> {
        match self.attrs.get(name) {
            Some(Attr::Graph(g)) => Some(g),
            _ => None,
        }
    }
    /// Name for messages: the node name, or `<op> -> <first output>` when unnamed.
    pub fn display_name(&self, g: &Graph) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match self.outputs.iter().flatten().next() {
            Some(v) => format!("{} -> {}", self.op_type, g.value(*v).name),
            None => self.op_type.clone(),
        }
    }
}

/// A graph of typed values and ops.
///
/// Subgraphs (bodies of `If`, `Loop`, `Scan`) are `Graph`s held in node attributes; a value a
/// subgraph uses from an enclosing scope is listed in [`Graph::captures`] and bound by name at
/// run time.
///
/// ```
/// use qaic_ir::{Graph, Node, ValueType};
/// use qaic_tensor::{DType, Shape};
/// let mut g = Graph::new("tiny");
/// g.set_opset("", 13);
/// let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2])));
/// let y = g.add_value("y", None);
/// g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(x)], outputs: vec![Some(y)], ..Default::default() });
/// g.outputs.push(y);
/// g.verify().unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    /// All values, indexed by [`ValueId`].
    pub values: Vec<ValueData>,
    /// Nodes; [`Graph::verify`] requires topological order ([`Graph::sort_topologically`]).
    pub nodes: Vec<Node>,
    /// Graph inputs (not constants), in order.
    pub inputs: Vec<ValueId>,
    /// Graph outputs, in order.
    pub outputs: Vec<ValueId>,
    /// Values of an enclosing graph used here, bound by name at run time.
    pub captures: Vec<ValueId>,
    /// Operator set versions by domain (`""` is the default ONNX domain).
    pub opsets: BTreeMap<String, i64>,
    /// Free-form metadata (ONNX `metadata_props`, producer, ...).
    pub metadata: BTreeMap<String, String>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph { name: name.into(), ..Default::default() }
    }

    pub fn set_opset(&mut self, domain: &str, version: i64) {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.opsets.insert(d.to_string(), version);
    }

    /// Opset version in force for a domain (`""`/`ai.onnx` are the same domain).
    pub fn opset_version(&self, domain: &str) -> Option<i64> {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.opsets.get(d).copied()
    }

    pub fn value(&self, id: ValueId) -> &ValueData {
        &self.values[id.index()]
    }
    pub fn value_mut(&mut self, id: ValueId) -> &mut ValueData {
        &mut self.values[id.index()]
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Adds a value (not yet produced by anything).
    pub fn add_value(&mut self, name: impl Into<String>, ty: Option<ValueType>) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ValueData { name: name.into(), ty, constant: None });
        id
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: ValueType) -> ValueId {
        let id = self.add_value(name, Some(ty));
        self.inputs.push(id);
        id
    }

    /// Adds a constant value.
    pub fn add_constant(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let ty = ValueType::tensor(t.dtype(), Shape::known(t.shape()));
        let id = self.add_value(name, Some(ty));
        self.values[id.index()].constant = Some(t);
        id
    }

    pub fn add_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(node);
        id
    }

    /// Looks a value up by name (linear scan; build [`Graph::name_index`] for many lookups).
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name).map(|i| ValueId(i as u32))
    }

    /// Map from value name to id.
    pub fn name_index(&self) -> HashMap<&str, ValueId> {
        self.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), ValueId(i as u32))).collect()
    }

    /// For each value, the node producing it (if any).
    pub fn producers(&self) -> Vec<Option<NodeId>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().flatten() {
                p[o.index()] = Some(NodeId(i as u32));
            }
        }
        p
    }

    /// For each value, the nodes consuming it, in node order.
    pub fn consumers(&self) -> Vec<Vec<NodeId>> {
        let mut c = vec![Vec::new(); self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for v in n.inputs.iter().flatten() {
                if c[v.index()].last() != Some(&NodeId(i as u32)) {
                    c[v.index()].push(NodeId(i as u32));
                }
            }
        }
        c
    }

    /// Values a node reads, including those its subgraphs capture from this graph.
    pub fn node_reads(&self, node: &Node) -> Vec<ValueId> {
        let mut out: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        for a in node.attrs.values() {
            let subs: Vec<&Graph> = match a {
                Attr::Graph(g) => vec![g.as_ref()],
                Attr::Graphs(gs) => gs.iter().collect(),
                _ => continue,
            };
            for sg in subs {
                for c in sg.all_captures_by_name() {
                    if let Some(id) = self.find_value(&c) {
                        out.push(id);
                    }
                }
            }
        }
        out
    }

    /// Names this graph (and its nested subgraphs, transitively) takes from enclosing scopes.
    pub fn all_captures_by_name(&self) -> Vec<String> {
        let mut names: Vec<String> = self.captures.iter().map(|c| self.value(*c).name.clone()).collect();
        for n in &self.nodes {
            for a in n.attrs.values() {
                let subs: Vec<&Graph> = match a {
                    Attr::Graph(g) => vec![g.as_ref()],
                    Attr::Graphs(gs) => gs.iter().collect(),
                    _ => continue,
                };
                for sg in subs {
                    for c in sg.all_captures_by_name() {
                        let defined_here = self.find_value(&c).is_some_and(|id| !self.captures.contains(&id));
                        if !defined_here && !names.contains(&c) {
                            names.push(c);
                        }
                    }
                }
            }
        }
        names
    }

    /// Reorders nodes topologically (stable: keeps the existing order where it is valid).
    /// Fails with [`IrError::Cycle`] naming a node on a cycle.
    pub fn sort_topologically(&mut self) -> Result<(), IrError> {
        let n = self.nodes.len();
        let producers = self.producers();
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in self.node_reads(node) {
                if let Some(p) = producers[v.index()] {
                    if p.index() != i {
                        deps[i].push(p.index());
                        users[p.index()].push(i);
                    }
                }
            }
        }
        let mut indeg: Vec<usize> = deps.iter().map(|d| d.len()).collect();
        // A min-heap on the original index keeps the order stable.
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..n).filter(|&i| indeg[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n).find(|i| indeg[*i] > 0).unwrap_or(0);
            return Err(IrError::Cycle { node: self.nodes[stuck].display_name(self) });
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().filter_map(|i| old[i].take()).collect();
        Ok(())
    }

    /// Removes nodes whose outputs are not needed for the graph outputs (nor by `keep`).
    pub fn prune(&mut self, keep: &[ValueId]) {
        let producers = self.producers();
        let mut live_nodes = vec![false; self.nodes.len()];
        let mut stack: Vec<ValueId> = self.outputs.iter().chain(keep).copied().collect();
        let mut seen = vec![false; self.values.len()];
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v.index()], true) {
                continue;
            }
            if let Some(p) = producers[v.index()] {
                if !std::mem::replace(&mut live_nodes[p.index()], true) {
                    stack.extend(self.node_reads(&self.nodes[p.index()]));
                }
            }
        }
        let mut i = 0;
        self.nodes.retain(|_| {
            i += 1;
            live_nodes[i - 1]
        });
    }
}
