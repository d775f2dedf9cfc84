//! The verifier: structural invariants every pass must preserve.

use std::collections::HashSet;

use crate::graph::{Attr, Graph, ValueType};
use crate::IrError;

impl Graph {
    /// Checks the graph's invariants:
    /// - every id is in range; value names are non-empty and unique;
    /// - every value is defined once: by a node, as an input, as a constant or as a capture;
    /// - nodes are in topological order (each input is defined before its use);
    /// - graph outputs are defined; constants agree with their declared type;
    /// - each node's domain has an opset; subgraphs verify too, with the enclosing names in scope.
    pub fn verify(&self) -> Result<(), IrError> {
        self.verify_in_scope(Some(&HashSet::new()))
    }

    /// Like [`Graph::verify`] for a subgraph taken out of its parent (e.g. to plan it on its
    /// own): its captures are taken as bound by the caller, since the enclosing names are not at
    /// hand here (the parent's [`Graph::verify`] checks them).
    pub fn verify_detached(&self) -> Result<(), IrError> {
        self.verify_in_scope(None)
    }

    fn verify_in_scope(&self, outer: Option<&HashSet<&str>>) -> Result<(), IrError> {
        let bad = |msg: String| Err(IrError::Invalid { graph: self.name.clone(), msg });
        let nv = self.values.len();
        let mut names = HashSet::new();
        for v in &self.values {
            if v.name.is_empty() {
                return bad("a value has an empty name".into());
            }
            if !names.insert(v.name.as_str()) {
                return bad(format!("value name `{}` is used twice", v.name));
            }
            if let (Some(t), Some(ty)) = (&v.constant, &v.ty) {
                let ok = match ty {
                    ValueType::Tensor { dtype, shape } => {
                        *dtype == t.dtype()
                            && shape.as_ref().is_none_or(|s| s.concrete().is_none_or(|c| c == t.shape()))
                    }
                    _ => false,
                };
                if !ok {
                    return bad(format!(
                        "constant `{}` is {}{:?} but declared {ty}",
                        v.name,
                        t.dtype(),
                        t.shape()
                    ));
                }
            }
        }
        let mut defined = vec![false; nv];
        let define = |id: crate::ValueId, what: &str, defined: &mut Vec<bool>| -> Result<(), IrError> {
            if id.index() >= nv {
                return Err(IrError::Invalid {
                    graph: self.name.clone(),
                    msg: format!("{what} refers to value #{} of {nv}", id.0),
                });
            }
            if std::mem::replace(&mut defined[id.index()], true) {
                return Err(IrError::Invalid {
                    graph: self.name.clone(),
                    msg: format!("value `{}` is defined twice ({what})", self.values[id.index()].name),
                });
            }
            Ok(())
        };
        for &i in &self.inputs {
            define(i, "graph input", &mut defined)?;
            if self.values[i.index()].constant.is_some() {
                // Allowed: ONNX lets an initializer double as an input with a default value.
            }
        }
        for &c in &self.captures {
            define(c, "capture", &mut defined)?;
            if outer.is_some_and(|o| !o.contains(self.values[c.index()].name.as_str())) {
                return bad(format!("capture `{}` is not defined in an enclosing graph", self.values[c.index()].name));
            }
        }
        for (i, v) in self.values.iter().enumerate() {
            if v.constant.is_some() && !defined[i] {
                defined[i] = true;
            }
        }
        let mut scope: HashSet<&str> = outer.cloned().unwrap_or_default();
        for v in &self.values {
            scope.insert(v.name.as_str());
        }
        for node in &self.nodes {
            let who = node.display_name(self);
            if self.opset_version(&node.domain).is_none() {
                return bad(format!("node `{who}` uses domain `{}` which has no opset", node.domain));
            }
            for inp in node.inputs.iter().flatten() {
                if inp.index() >= nv {
                    return bad(format!("node `{who}` reads value #{} of {nv}", inp.0));
                }
                if !defined[inp.index()] {
                    return bad(format!(
                        "node `{who}` reads `{}` before it is defined (not topologically sorted, or never produced)",
                        self.values[inp.index()].name
                    ));
                }
            }
            for a in node.attrs.values() {
                match a {
                    Attr::Graph(g) => g.verify_in_scope(Some(&scope))?,
                    Attr::Graphs(gs) => {
                        for g in gs {
                            g.verify_in_scope(Some(&scope))?
                        }
                    }
                    _ => {}
                }
            }
            for out in node.outputs.iter().flatten() {
                define(*out, &format!("output of node `{who}`"), &mut defined)?;
            }
        }
        for &o in &self.outputs {
            if o.index() >= nv || !defined[o.index()] {
                let name = self.values.get(o.index()).map(|v| v.name.as_str()).unwrap_or("?");
                return bad(format!("graph output `{name}` is never defined"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Graph, Node, ValueType};
    use qaic_tensor::{DType, Shape, Tensor};

    fn relu_chain() -> Graph {
        let mut g = Graph::new("g");
        g.set_opset("", 17);
        let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2])));
        let y = g.add_value("y", None);
        let z = g.add_value("z", None);
        // Deliberately out of order: z = Relu(y) before y = Relu(x).
        g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(y)], outputs: vec![Some(z)], ..Default::default() });
        g.add_node(Node { op_type: "Relu".into(), inputs: vec![Some(x)], outputs: vec![Some(y)], ..Default::default() });
        g.outputs.push(z);
        g
    }

    #[test]
    fn detects_order_and_sorts() {
        let mut g = relu_chain();
        let e = g.verify().unwrap_err().to_string();
        assert!(e.contains("before it is defined"), "{e}");
        g.sort_topologically().unwrap();
        g.verify().unwrap();
    }

    #[test]
    fn detects_double_definition_and_bad_constant() {
        let mut g = relu_chain();
        g.sort_topologically().unwrap();
        let y = g.find_value("y").unwrap();
        g.inputs.push(y);
        assert!(g.verify().unwrap_err().to_string().contains("defined twice"));

        let mut g = relu_chain();
        g.sort_topologically().unwrap();
        let c = g.add_constant("c", Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap());
        g.value_mut(c).ty = Some(ValueType::tensor(DType::F32, Shape::known(&[2])));
        assert!(g.verify().unwrap_err().to_string().contains("constant `c`"));
    }

    #[test]
    fn cycle_is_reported() {
        let mut g = relu_chain();
        let y = g.find_value("y").unwrap();
        let z = g.find_value("z").unwrap();
        g.nodes[1].inputs = vec![Some(z)];
        let _ = y;
        assert!(matches!(g.sort_topologically(), Err(crate::IrError::Cycle { .. })));
    }

    #[test]
    fn prune_drops_dead_nodes() {
        let mut g = relu_chain();
        g.sort_topologically().unwrap();
        let y = g.find_value("y").unwrap();
        g.outputs = vec![y];
        g.prune(&[]);
        assert_eq!(g.nodes.len(), 1);
    }
}
