//! Checking a loaded graph against the operators a consumer (the interpreter, a backend)
//! supports, reporting every unsupported node at once.

use qaic_ir::{Attr, Graph};

use crate::{OnnxError, UnsupportedNode, UnsupportedOps};

/// One supported operator: domain (`""` = default ONNX domain), op type and the inclusive
/// range of opset versions of that domain it is supported at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpSupport {
    pub domain: String,
    pub op_type: String,
    pub min_opset: i64,
    pub max_opset: i64,
}

impl OpSupport {
    /// Whether this entry covers `op_type` of `domain` at `opset`.
    pub fn covers(&self, domain: &str, op_type: &str, opset: Option<i64>) -> bool {
        let norm = |d: &str| if d == "ai.onnx" { "" } else { d }.to_string();
        norm(&self.domain) == norm(domain)
            && self.op_type == op_type
            && opset.is_some_and(|v| (self.min_opset..=self.max_opset).contains(&v))
    }
}

/// Every node of `g` (subgraphs included) for which `supported(domain, op_type, opset)` is
/// false, in graph order.
pub fn unsupported_nodes(g: &Graph, supported: &dyn Fn(&str, &str, Option<i64>) -> bool) -> Vec<UnsupportedNode> {
    let mut out = Vec::new();
    walk(g, supported, "", &mut out);
    out
}

fn walk(g: &Graph, supported: &dyn Fn(&str, &str, Option<i64>) -> bool, scope: &str, out: &mut Vec<UnsupportedNode>) {
    for n in &g.nodes {
        let opset = g.opset_version(&n.domain);
        if !supported(&n.domain, &n.op_type, opset) {
            out.push(UnsupportedNode {
                domain: n.domain.clone(),
                op_type: n.op_type.clone(),
                opset,
                node: n.display_name(g),
                scope: scope.to_string(),
            });
        }
        for (attr, a) in &n.attrs {
            let here = if scope.is_empty() {
                format!("{}/{attr}", n.display_name(g))
            } else {
                format!("{scope}/{}/{attr}", n.display_name(g))
            };
            match a {
                Attr::Graph(sg) => walk(sg, supported, &here, out),
                Attr::Graphs(gs) => {
                    for (i, sg) in gs.iter().enumerate() {
                        walk(sg, supported, &format!("{here}[{i}]"), out);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Fails with [`OnnxError::Unsupported`] listing all nodes whose operator is not covered by
/// `supported`.
///
/// ```
/// use qaic_onnx::{check_supported, OpSupport};
/// use qaic_ir::{Graph, Node};
/// let mut g = Graph::new("g");
/// g.set_opset("", 13);
/// g.add_node(Node { op_type: "Relu".into(), name: "r".into(), ..Default::default() });
/// g.add_node(Node { op_type: "Foo".into(), name: "f".into(), ..Default::default() });
/// let relu = OpSupport { domain: "".into(), op_type: "Relu".into(), min_opset: 1, max_opset: 24 };
/// let e = check_supported(&g, "m.onnx", &[relu]).unwrap_err().to_string();
/// assert!(e.contains("Foo") && !e.contains("Relu"));
/// ```
pub fn check_supported(g: &Graph, origin: &str, supported: &[OpSupport]) -> Result<(), OnnxError> {
    let nodes = unsupported_nodes(g, &|d, op, v| supported.iter().any(|s| s.covers(d, op, v)));
    if nodes.is_empty() {
        Ok(())
    } else {
        Err(OnnxError::Unsupported(UnsupportedOps { origin: origin.to_string(), nodes }))
    }
}
