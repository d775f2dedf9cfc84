//! Structural comparison of graphs (what "parses back to the same graph" means).

use std::collections::HashMap;

use qaic_tensor::Tensor;

use crate::graph::{Attr, Graph, ValueId};

impl Graph {
    /// The first structural difference between two graphs, or `None` when they are equal.
    ///
    /// Values are compared by name, not by [`ValueId`] (ids depend on creation order); nodes are
    /// compared in order; floats and tensors bit for bit; subgraphs recursively.
    pub fn structural_diff(&self, other: &Graph) -> Option<String> {
        diff_graph(self, other).err().map(|e| format!("graph `{}`: {e}", self.name))
    }
}

fn name_of(g: &Graph, id: ValueId) -> String {
    g.values.get(id.index()).map(|v| v.name.clone()).unwrap_or_else(|| format!("#{}", id.0))
}

fn names(g: &Graph, ids: &[ValueId]) -> Vec<String> {
    ids.iter().map(|i| name_of(g, *i)).collect()
}

fn opt_names(g: &Graph, ids: &[Option<ValueId>]) -> Vec<Option<String>> {
    ids.iter().map(|i| i.map(|i| name_of(g, i))).collect()
}

fn tensors_eq(a: &Tensor, b: &Tensor) -> bool {
    a.bitwise_eq(b)
}

fn diff_graph(a: &Graph, b: &Graph) -> Result<(), String> {
    let ne = |what: &str, x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| Err(format!("{what}: {x:?} != {y:?}"));
    if a.name != b.name {
        return ne("name", &a.name, &b.name);
    }
    if a.opsets != b.opsets {
        return ne("opsets", &a.opsets, &b.opsets);
    }
    if a.metadata != b.metadata {
        return ne("metadata", &a.metadata, &b.metadata);
    }
    for (what, x, y) in [("inputs", &a.inputs, &b.inputs), ("outputs", &a.outputs, &b.outputs), ("captures", &a.captures, &b.captures)] {
        let (nx, ny) = (names(a, x), names(b, y));
        if nx != ny {
            return ne(what, &nx, &ny);
        }
    }
    let bmap: HashMap<&str, usize> = b.values.iter().enumerate().map(|(i, v)| (v.name.as_str(), i)).collect();
    if a.values.len() != b.values.len() {
        return ne("number of values", &a.values.len(), &b.values.len());
    }
    for va in &a.values {
        let Some(&j) = bmap.get(va.name.as_str()) else {
            return Err(format!("value `{}` is missing from the second graph", va.name));
        };
        let vb = &b.values[j];
        if va.ty != vb.ty {
            return Err(format!("value `{}`: type {:?} != {:?}", va.name, va.ty, vb.ty));
        }
        match (&va.constant, &vb.constant) {
            (None, None) => {}
            (Some(x), Some(y)) if tensors_eq(x, y) => {}
            (x, y) => return Err(format!("value `{}`: constant {x:?} != {y:?} (or different bytes)", va.name)),
        }
    }
    if a.nodes.len() != b.nodes.len() {
        return ne("number of nodes", &a.nodes.len(), &b.nodes.len());
    }
    for (k, (na, nb)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        let at = |e: String| format!("node #{k} (`{}`): {e}", na.display_name(a));
        if (&na.name, &na.domain, &na.op_type) != (&nb.name, &nb.domain, &nb.op_type) {
            return Err(at(format!(
                "{:?} != {:?}",
                (&na.name, &na.domain, &na.op_type),
                (&nb.name, &nb.domain, &nb.op_type)
            )));
        }
        let (ia, ib) = (opt_names(a, &na.inputs), opt_names(b, &nb.inputs));
        if ia != ib {
            return Err(at(format!("inputs {ia:?} != {ib:?}")));
        }
        let (oa, ob) = (opt_names(a, &na.outputs), opt_names(b, &nb.outputs));
        if oa != ob {
            return Err(at(format!("outputs {oa:?} != {ob:?}")));
        }
        let ka: Vec<&String> = na.attrs.keys().collect();
        let kb: Vec<&String> = nb.attrs.keys().collect();
        if ka != kb {
            return Err(at(format!("attribute names {ka:?} != {kb:?}")));
        }
        for (name, x) in &na.attrs {
            let y = &nb.attrs[name];
            diff_attr(x, y).map_err(|e| at(format!("attribute `{name}`: {e}")))?;
        }
    }
    Ok(())
}

fn diff_attr(x: &Attr, y: &Attr) -> Result<(), String> {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let same = match (x, y) {
        (Attr::Float(a), Attr::Float(b)) => a.to_bits() == b.to_bits(),
        (Attr::Int(a), Attr::Int(b)) => a == b,
        (Attr::String(a), Attr::String(b)) => a == b,
        (Attr::Tensor(a), Attr::Tensor(b)) => tensors_eq(a, b),
        (Attr::Graph(a), Attr::Graph(b)) => return diff_graph(a, b).map_err(|e| format!("subgraph `{}`: {e}", a.name)),
        (Attr::Floats(a), Attr::Floats(b)) => bits(a) == bits(b),
        (Attr::Ints(a), Attr::Ints(b)) => a == b,
        (Attr::Strings(a), Attr::Strings(b)) => a == b,
        (Attr::Tensors(a), Attr::Tensors(b)) => a.len() == b.len() && a.iter().zip(b).all(|(p, q)| tensors_eq(p, q)),
        (Attr::Graphs(a), Attr::Graphs(b)) => {
            if a.len() != b.len() {
                false
            } else {
                for (p, q) in a.iter().zip(b) {
                    diff_graph(p, q).map_err(|e| format!("subgraph `{}`: {e}", p.name))?;
                }
                true
            }
        }
        (Attr::Type(a), Attr::Type(b)) => a == b,
        (Attr::Types(a), Attr::Types(b)) => a == b,
        _ => false,
    };
    if same { Ok(()) } else { Err(format!("{x:?} != {y:?}")) }
}
