//! `ModelProto` to `qaic_ir::Graph`: a faithful translation (the IR's ops are ONNX ops).

use std::collections::{BTreeMap, HashMap, HashSet};

use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_tensor::{DType, Dim, Shape, Tensor};

use crate::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto,
};
use crate::{OnnxError, TensorSource};

/// Normalises the default domain's two spellings to `""`.
pub(crate) fn norm_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

/// The model's operator set imports, by normalised domain.
pub(crate) fn model_opsets(model: &ModelProto, origin: &str) -> Result<BTreeMap<String, i64>, OnnxError> {
    let mut opsets = BTreeMap::new();
    for o in &model.opset_import {
        let d = norm_domain(o.domain()).to_string();
        let v = o.version();
        if let Some(old) = opsets.insert(d.clone(), v)
            && old != v {
                let shown = if d.is_empty() { "ai.onnx" } else { d.as_str() };
                return Err(OnnxError::invalid(origin, format!("opset_import lists domain {shown} twice ({old} and {v})")));
            }
    }
    // IR versions before 3 had no opset_import and meant the first opset.
    if model.opset_import.is_empty() && model.ir_version() < 3 {
        opsets.insert(String::new(), 1);
    }
    Ok(opsets)
}

/// Translates a model (functions already inlined) into a graph.
pub(crate) fn import_model(model: &ModelProto, src: &TensorSource) -> Result<Graph, OnnxError> {
    let origin = src.origin();
    let gp = model.graph.as_ref().ok_or_else(|| OnnxError::invalid(origin, "the model has no graph"))?;
    let opsets = model_opsets(model, origin)?;
    let imp = Importer { src, opsets };
    let mut g = imp.graph(gp, &[], "")?;
    let mut md = BTreeMap::new();
    md.insert("onnx.ir_version".to_string(), model.ir_version().to_string());
    for (k, v) in [
        ("onnx.producer_name", model.producer_name()),
        ("onnx.producer_version", model.producer_version()),
        ("onnx.domain", model.domain()),
        ("onnx.doc_string", model.doc_string()),
    ] {
        if !v.is_empty() {
            md.insert(k.to_string(), v.to_string());
        }
    }
    if model.model_version.is_some() {
        md.insert("onnx.model_version".to_string(), model.model_version().to_string());
    }
    for p in &model.metadata_props {
        md.insert(p.key().to_string(), p.value().to_string());
    }
    g.metadata = md;
    Ok(g)
}

struct Importer<'a> {
    src: &'a TensorSource,
    opsets: BTreeMap<String, i64>,
}

/// Names visible from enclosing graphs, innermost last.
type Scopes<'s> = [&'s HashSet<String>];

impl Importer<'_> {
    fn origin(&self) -> &str {
        self.src.origin()
    }

    fn err(&self, path: &str, msg: impl Into<String>) -> OnnxError {
        let msg = msg.into();
        match path.is_empty() {
            true => OnnxError::invalid(self.origin(), msg),
            false => OnnxError::invalid(self.origin(), format!("in subgraph {path}: {msg}")),
        }
    }

    /// Imports one graph. `outer` holds the names of enclosing scopes; `path` names the
    /// subgraph for messages (empty for the main graph).
    fn graph(&self, gp: &GraphProto, outer: &Scopes<'_>, path: &str) -> Result<Graph, OnnxError> {
        let mut g = Graph::new(gp.name());
        g.opsets = self.opsets.clone();
        let mut names: HashMap<String, ValueId> = HashMap::new();

        let define = |g: &mut Graph, names: &mut HashMap<String, ValueId>, name: &str, what: &str| {
            if name.is_empty() {
                return Err(self.err(path, format!("{what} with an empty name")));
            }
            if names.contains_key(name) {
                return Err(self.err(path, format!("value `{name}` is defined twice (again as {what})")));
            }
            let id = g.add_value(name, None);
            names.insert(name.to_string(), id);
            Ok(id)
        };

        for tp in &gp.initializer {
            let t = self.src.tensor(tp)?;
            let id = define(&mut g, &mut names, tp.name(), "an initializer")?;
            set_constant(&mut g, id, t);
        }
        for sp in &gp.sparse_initializer {
            let t = self.src.sparse_tensor(sp)?;
            let name = sp.values.as_ref().map(|v| v.name()).unwrap_or("");
            let id = define(&mut g, &mut names, name, "a sparse initializer")?;
            set_constant(&mut g, id, t);
        }
        for vi in &gp.input {
            // Before IR 4, initializers were also listed as inputs; they stay constants.
            if let Some(&id) = names.get(vi.name())
                && g.value(id).constant.is_some() && !g.inputs.contains(&id) {
                    continue;
                }
            let id = define(&mut g, &mut names, vi.name(), "a graph input")?;
            let ty = match &vi.r#type {
                Some(t) => self.value_type(t, path, vi.name(), true)?,
                None => None,
            };
            g.value_mut(id).ty = ty;
            g.inputs.push(id);
        }
        // Node outputs first, so nodes listed out of topological order still resolve.
        let mut constant_nodes = HashSet::new();
        for (i, n) in gp.node.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                define(&mut g, &mut names, o, &format!("an output of node {}", node_label(n, i)))?;
            }
            if is_constant_node(n) {
                constant_nodes.insert(i);
            }
        }
        // Declared types of intermediate values and outputs: element types only, as several
        // real models declare wrong shapes; shape inference recomputes them.
        for vi in gp.value_info.iter().chain(&gp.output) {
            if let (Some(&id), Some(t)) = (names.get(vi.name()), &vi.r#type)
                && g.value(id).ty.is_none() {
                    g.value_mut(id).ty = self.value_type(t, path, vi.name(), false)?;
                }
        }

        let local: HashSet<String> = names.keys().cloned().collect();
        let mut scopes: Vec<&HashSet<String>> = outer.to_vec();
        scopes.push(&local);
        for (i, n) in gp.node.iter().enumerate() {
            let label = node_label(n, i);
            if constant_nodes.contains(&i) {
                let t = self.constant_value(n, &label, path)?;
                let out = n.output.first().and_then(|o| names.get(o)).copied();
                let out = out.ok_or_else(|| self.err(path, format!("Constant node {label} has no output")))?;
                set_constant(&mut g, out, t);
                continue;
            }
            let mut inputs = Vec::with_capacity(n.input.len());
            for inp in &n.input {
                if inp.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let id = match names.get(inp) {
                    Some(&id) => id,
                    None if outer.iter().any(|s| s.contains(inp)) => {
                        let id = g.add_value(inp.as_str(), None);
                        g.captures.push(id);
                        names.insert(inp.clone(), id);
                        id
                    }
                    None => {
                        return Err(self.err(
                            path,
                            format!(
                                "node {label} ({}) reads `{inp}`, which is not a graph input, an initializer or the output of any node",
                                n.op_type()
                            ),
                        ));
                    }
                };
                inputs.push(Some(id));
            }
            let outputs = n.output.iter().map(|o| if o.is_empty() { None } else { names.get(o).copied() }).collect();
            let mut attrs = BTreeMap::new();
            for a in &n.attribute {
                let sub_path = if path.is_empty() {
                    format!("{label}/{}", a.name())
                } else {
                    format!("{path}/{label}/{}", a.name())
                };
                let v = self.attr(a, &scopes, &label, &sub_path, path)?;
                if attrs.insert(a.name().to_string(), v).is_some() {
                    return Err(self.err(path, format!("node {label}: attribute `{}` given twice", a.name())));
                }
            }
            g.add_node(Node {
                name: n.name().to_string(),
                domain: norm_domain(n.domain()).to_string(),
                op_type: n.op_type().to_string(),
                inputs,
                outputs,
                attrs,
            });
        }

        for vi in &gp.output {
            let name = vi.name();
            let id = match names.get(name) {
                Some(&id) => id,
                // A subgraph may return an outer value unchanged.
                None if outer.iter().any(|s| s.contains(name)) => {
                    let id = g.add_value(name, None);
                    g.captures.push(id);
                    names.insert(name.to_string(), id);
                    id
                }
                None => {
                    return Err(self.err(path, format!("graph output `{name}` is not produced by any node, input or initializer")));
                }
            };
            if g.value(id).ty.is_none()
                && let Some(t) = &vi.r#type {
                    g.value_mut(id).ty = self.value_type(t, path, name, false)?;
                }
            g.outputs.push(id);
        }
        g.sort_topologically().map_err(|e| self.err(path, e.to_string()))?;
        Ok(g)
    }

    /// A declared type. Shapes are kept only when `keep_shape` (graph inputs); elsewhere the
    /// element type alone is kept.
    fn value_type(&self, t: &TypeProto, path: &str, name: &str, keep_shape: bool) -> Result<Option<ValueType>, OnnxError> {
        use type_proto::Value as V;
        let Some(v) = &t.value else { return Ok(None) };
        let elem = |e: i32| -> Result<Option<DType>, OnnxError> {
            match e {
                0 => Ok(None),
                _ => DType::from_onnx(e)
                    .map(Some)
                    .ok_or_else(|| self.err(path, format!("value `{name}` has unknown element type {e}"))),
            }
        };
        Ok(match v {
            V::TensorType(tt) => elem(tt.elem_type())?.map(|dtype| ValueType::Tensor { dtype, shape: shape_of(tt.shape.as_ref(), keep_shape) }),
            // Sparse tensors are densified on load.
            V::SparseTensorType(st) => elem(st.elem_type())?.map(|dtype| ValueType::Tensor { dtype, shape: shape_of(st.shape.as_ref(), keep_shape) }),
            V::SequenceType(s) => match s.elem_type.as_deref() {
                Some(e) => self.value_type(e, path, name, keep_shape)?.map(|e| ValueType::Sequence(Box::new(e))),
                None => None,
            },
            V::OptionalType(o) => match o.elem_type.as_deref() {
                Some(e) => self.value_type(e, path, name, keep_shape)?.map(|e| ValueType::Optional(Box::new(e))),
                None => None,
            },
            V::MapType(m) => {
                let key = elem(m.key_type())?;
                let val = match m.value_type.as_deref() {
                    Some(e) => self.value_type(e, path, name, keep_shape)?,
                    None => None,
                };
                match (key, val) {
                    (Some(k), Some(v)) => Some(ValueType::Map(k, Box::new(v))),
                    _ => None,
                }
            }
            V::OpaqueType(_) => None,
        })
    }

    /// The tensor of a `Constant` node (any of its `value*` attributes).
    fn constant_value(&self, n: &NodeProto, label: &str, path: &str) -> Result<Tensor, OnnxError> {
        let [a] = n.attribute.as_slice() else {
            return Err(self.err(path, format!("Constant node {label} must have exactly one attribute, has {}", n.attribute.len())));
        };
        let bad = |e: qaic_tensor::TensorError| self.err(path, format!("Constant node {label}: {e}"));
        match a.name() {
            "value" => match &a.t {
                Some(t) => self.src.tensor(t),
                None => Err(self.err(path, format!("Constant node {label}: attribute `value` holds no tensor"))),
            },
            "sparse_value" => match &a.sparse_tensor {
                Some(t) => self.src.sparse_tensor(t),
                None => Err(self.err(path, format!("Constant node {label}: attribute `sparse_value` holds no tensor"))),
            },
            "value_float" => Ok(Tensor::scalar(a.f())),
            "value_floats" => Tensor::from_vec(vec![a.floats.len()], a.floats.clone()).map_err(bad),
            "value_int" => Ok(Tensor::scalar(a.i())),
            "value_ints" => Tensor::from_vec(vec![a.ints.len()], a.ints.clone()).map_err(bad),
            "value_string" => Tensor::from_strings(vec![], vec![a.s().to_vec()]).map_err(bad),
            "value_strings" => {
                Tensor::from_strings(vec![a.strings.len()], a.strings.iter().map(|s| s.to_vec()).collect()).map_err(bad)
            }
            other => Err(self.err(path, format!("Constant node {label}: unknown attribute `{other}`"))),
        }
    }

    fn attr(&self, a: &AttributeProto, scopes: &Scopes<'_>, label: &str, sub_path: &str, path: &str) -> Result<Attr, OnnxError> {
        use AttributeType as T;
        if a.ref_attr_name.is_some() {
            return Err(self.err(
                path,
                format!("node {label}: attribute `{}` refers to a function attribute outside a function", a.name()),
            ));
        }
        let ty = match a.r#type() {
            T::Undefined => infer_attr_type(a).ok_or_else(|| {
                self.err(path, format!("node {label}: attribute `{}` has no type and no value", a.name()))
            })?,
            t => t,
        };
        let missing = |what: &str| self.err(path, format!("node {label}: attribute `{}` of type {what} holds no value", a.name()));
        let ty_of = |t: &TypeProto| -> Result<ValueType, OnnxError> {
            self.value_type(t, path, a.name(), true)?
                .ok_or_else(|| self.err(path, format!("node {label}: attribute `{}` holds an unknown type", a.name())))
        };
        Ok(match ty {
            T::Float => Attr::Float(a.f()),
            T::Int => Attr::Int(a.i()),
            T::String => Attr::String(a.s().to_vec()),
            T::Tensor => Attr::Tensor(self.src.tensor(a.t.as_ref().ok_or_else(|| missing("TENSOR"))?)?),
            T::SparseTensor => {
                Attr::Tensor(self.src.sparse_tensor(a.sparse_tensor.as_ref().ok_or_else(|| missing("SPARSE_TENSOR"))?)?)
            }
            T::Graph => {
                let gp = a.g.as_ref().ok_or_else(|| missing("GRAPH"))?;
                Attr::Graph(Box::new(self.graph(gp, scopes, sub_path)?))
            }
            T::TypeProto => Attr::Type(ty_of(a.tp.as_ref().ok_or_else(|| missing("TYPE_PROTO"))?)?),
            T::Floats => Attr::Floats(a.floats.clone()),
            T::Ints => Attr::Ints(a.ints.clone()),
            T::Strings => Attr::Strings(a.strings.iter().map(|s| s.to_vec()).collect()),
            T::Tensors => Attr::Tensors(a.tensors.iter().map(|t| self.src.tensor(t)).collect::<Result<_, _>>()?),
            T::SparseTensors => {
                Attr::Tensors(a.sparse_tensors.iter().map(|t| self.src.sparse_tensor(t)).collect::<Result<_, _>>()?)
            }
            T::Graphs => Attr::Graphs(
                a.graphs
                    .iter()
                    .enumerate()
                    .map(|(i, gp)| self.graph(gp, scopes, &format!("{sub_path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            T::TypeProtos => Attr::Types(a.type_protos.iter().map(ty_of).collect::<Result<_, _>>()?),
            T::Undefined => return Err(missing("UNDEFINED")),
        })
    }
}

/// Older writers (and Glow's exporter) leave `type` unset; the populated field tells it.
fn infer_attr_type(a: &AttributeProto) -> Option<AttributeType> {
    use AttributeType as T;
    Some(if a.f.is_some() {
        T::Float
    } else if a.i.is_some() {
        T::Int
    } else if a.s.is_some() {
        T::String
    } else if a.t.is_some() {
        T::Tensor
    } else if a.g.is_some() {
        T::Graph
    } else if a.sparse_tensor.is_some() {
        T::SparseTensor
    } else if a.tp.is_some() {
        T::TypeProto
    } else if !a.floats.is_empty() {
        T::Floats
    } else if !a.ints.is_empty() {
        T::Ints
    } else if !a.strings.is_empty() {
        T::Strings
    } else if !a.tensors.is_empty() {
        T::Tensors
    } else if !a.graphs.is_empty() {
        T::Graphs
    } else if !a.sparse_tensors.is_empty() {
        T::SparseTensors
    } else if !a.type_protos.is_empty() {
        T::TypeProtos
    } else {
        return None;
    })
}

fn shape_of(s: Option<&crate::proto::TensorShapeProto>, keep: bool) -> Option<Shape> {
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    let s = s.filter(|_| keep)?;
    Some(Shape(
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(D::DimValue(v)) if *v >= 0 => Dim::Known(*v as usize),
                Some(D::DimParam(p)) if !p.is_empty() => Dim::Sym(p.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    ))
}

fn set_constant(g: &mut Graph, id: ValueId, t: Tensor) {
    let v = g.value_mut(id);
    v.ty = Some(ValueType::tensor(t.dtype(), Shape::known(t.shape())));
    v.constant = Some(t);
}

/// A `Constant` of the default domain with no inputs becomes a constant value, not a node.
fn is_constant_node(n: &NodeProto) -> bool {
    n.op_type() == "Constant" && norm_domain(n.domain()).is_empty() && n.input.is_empty() && n.output.len() == 1
}

/// `"conv1"`, or `#12 (Conv)` for an unnamed node.
pub(crate) fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name().is_empty() {
        match n.output.iter().find(|o| !o.is_empty()) {
            Some(o) => format!("#{index} (unnamed {} -> `{o}`)", n.op_type()),
            None => format!("#{index} (unnamed {})", n.op_type()),
        }
    } else {
        format!("\"{}\"", n.name())
    }
}
