//! Graph passes and editing helpers used by later stages. Each pass is one method that leaves a
//! graph that verifies (it checks before returning).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::graph::{Attr, Graph, ValueId};
use crate::IrError;

/// Sizes and op counts of a graph, its subgraphs included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub nodes: usize,
    pub values: usize,
    pub inputs: usize,
    pub outputs: usize,
    /// Number of constant values (initializers).
    pub constants: usize,
    /// Storage of all constants (string tensors count their bytes).
    pub constant_bytes: usize,
    /// Number of subgraphs (bodies of `If`/`Loop`/`Scan`), nested ones included.
    pub subgraphs: usize,
    /// Node count per qualified op (`Conv`, `com.microsoft.DynamicQuantizeLSTM`).
    pub op_counts: BTreeMap<String, usize>,
}

impl fmt::Display for GraphStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nodes {}, values {}, inputs {}, outputs {}, constants {} ({} bytes), subgraphs {}",
            self.nodes, self.values, self.inputs, self.outputs, self.constants, self.constant_bytes, self.subgraphs
        )?;
        for (op, n) in &self.op_counts {
            writeln!(f, "  {op}: {n}")?;
        }
        Ok(())
    }
}

fn subgraphs_mut(a: &mut Attr) -> Vec<&mut Graph> {
    match a {
        Attr::Graph(g) => vec![g.as_mut()],
        Attr::Graphs(gs) => gs.iter_mut().collect(),
        _ => vec![],
    }
}

fn subgraphs(a: &Attr) -> Vec<&Graph> {
    match a {
        Attr::Graph(g) => vec![g.as_ref()],
        Attr::Graphs(gs) => gs.iter().collect(),
        _ => vec![],
    }
}

impl Graph {
    /// Counts nodes, values, constants and ops (subgraphs included; top-level inputs/outputs).
    ///
    /// ```
    /// let g = qaic_ir::parse("graph g {\n  opset \"\" = 13\n  input %x: f32[2]\n  const %c = f32[2] [1.0, 2.0]\n  %y = Add(%x, %c)\n  %z = Relu(%y)\n  output %z\n}").unwrap();
    /// let s = g.stats();
    /// assert_eq!((s.nodes, s.constants, s.constant_bytes), (2, 1, 8));
    /// assert_eq!(s.op_counts["Add"], 1);
    /// ```
    pub fn stats(&self) -> GraphStats {
        let mut s = GraphStats { inputs: self.inputs.len(), outputs: self.outputs.len(), ..Default::default() };
        self.add_stats(&mut s);
        s
    }

    fn add_stats(&self, s: &mut GraphStats) {
        s.nodes += self.nodes.len();
        s.values += self.values.len();
        for v in &self.values {
            if let Some(t) = &v.constant {
                s.constants += 1;
                s.constant_bytes += match t.strings() {
                    Ok(strs) => strs.iter().map(|x| x.len()).sum(),
                    Err(_) => t.raw_bytes().map(|b| b.len()).unwrap_or(0),
                };
            }
        }
        for n in &self.nodes {
            *s.op_counts.entry(n.qualified_op()).or_default() += 1;
            for a in n.attrs.values() {
                for sg in subgraphs(a) {
                    s.subgraphs += 1;
                    sg.add_stats(s);
                }
            }
        }
    }

    /// Replaces every use of `old` as a node input by `new` (graph outputs are left alone).
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in &mut self.nodes {
            for i in n.inputs.iter_mut().flatten() {
                if *i == old {
                    *i = new;
                }
            }
        }
    }

    /// Names of this graph's values that its subgraphs capture.
    fn captured_names(&self) -> HashSet<String> {
        let mut out = HashSet::new();
        for n in &self.nodes {
            for a in n.attrs.values() {
                for sg in subgraphs(a) {
                    out.extend(sg.all_captures_by_name());
                }
            }
        }
        out
    }

    /// Removes values nothing refers to (not an input, output, capture, node input or output,
    /// nor captured by name from a subgraph), unused constants included, and renumbers the
    /// rest in order. Returns how many were removed. **Invalidates [`ValueId`]s** held outside.
    pub fn remove_unused_values(&mut self) -> usize {
        let mut used = vec![false; self.values.len()];
        let mut mark = |v: &ValueId| {
            if let Some(u) = used.get_mut(v.index()) {
                *u = true;
            }
        };
        self.inputs.iter().chain(&self.outputs).chain(&self.captures).for_each(&mut mark);
        for n in &self.nodes {
            n.inputs.iter().chain(&n.outputs).flatten().for_each(&mut mark);
        }
        let captured = self.captured_names();
        for (i, v) in self.values.iter().enumerate() {
            if captured.contains(&v.name) {
                used[i] = true;
            }
        }
        self.retain_values(&used)
    }

    /// Keeps the values whose flag is set, renumbering ids everywhere in this graph.
    fn retain_values(&mut self, keep: &[bool]) -> usize {
        let mut remap = vec![None; self.values.len()];
        let mut next = 0u32;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                remap[i] = Some(ValueId(next));
                next += 1;
            }
        }
        let removed = self.values.len() - next as usize;
        if removed == 0 {
            return 0;
        }
        let mut i = 0;
        self.values.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        let map = |v: &mut ValueId| {
            if let Some(Some(n)) = remap.get(v.index()) {
                *v = *n;
            }
        };
        self.inputs.iter_mut().chain(self.outputs.iter_mut()).chain(self.captures.iter_mut()).for_each(map);
        for n in &mut self.nodes {
            n.inputs.iter_mut().chain(n.outputs.iter_mut()).flatten().for_each(map);
        }
        removed
    }

    /// Removes `Identity` nodes (here and in subgraphs), returning how many were removed.
    ///
    /// `y = Identity(x)`: uses of `y` read `x` instead. When `y` is a graph output (its name is
    /// part of the interface), the node producing `x` writes `y` directly instead, provided `x`
    /// is not itself an input, constant, capture or output. Identities whose output is captured
    /// by a subgraph by name are kept.
    ///
    /// ```
    /// let mut g = qaic_ir::parse("graph g {\n  opset \"\" = 13\n  input %x: f32[2]\n  %a = Relu(%x)\n  %b = Identity(%a)\n  %c = Identity(%b)\n  output %c\n}").unwrap();
    /// assert_eq!(g.eliminate_identities().unwrap(), 2);
    /// assert_eq!(g.to_text(), "graph g {\n  opset \"\" = 13\n  input %x: f32[2]\n  %c = Relu(%x)\n  output %c\n}\n");
    /// ```
    pub fn eliminate_identities(&mut self) -> Result<usize, IrError> {
        let n = self.eliminate_identities_inner();
        self.verify()?;
        Ok(n)
    }

    fn eliminate_identities_inner(&mut self) -> usize {
        let mut removed = 0;
        for n in &mut self.nodes {
            for a in n.attrs.values_mut() {
                for sg in subgraphs_mut(a) {
                    removed += sg.eliminate_identities_inner();
                }
            }
        }
        let captured = self.captured_names();
        let mut dead = vec![false; self.values.len()];
        let mut k = 0;
        while k < self.nodes.len() {
            let n = &self.nodes[k];
            let is_identity = n.op_type == "Identity" && (n.domain.is_empty() || n.domain == "ai.onnx");
            let (Some(Some(x)), Some(Some(y)), 1, 1) =
                (n.inputs.first().copied(), n.outputs.first().copied(), n.inputs.len(), n.outputs.len())
            else {
                k += 1;
                continue;
            };
            if !is_identity || captured.contains(&self.value(y).name) || x == y {
                k += 1;
                continue;
            }
            if !self.outputs.contains(&y) {
                self.replace_uses(y, x);
                dead[y.index()] = true;
            } else {
                let producer = self.nodes.iter().position(|m| m.outputs.contains(&Some(x)));
                let xd = self.value(x);
                let movable = producer.is_some()
                    && !self.outputs.contains(&x)
                    && !self.inputs.contains(&x)
                    && !self.captures.contains(&x)
                    && xd.constant.is_none()
                    && !captured.contains(&xd.name);
                let Some(p) = producer.filter(|_| movable) else {
                    k += 1;
                    continue;
                };
                for o in self.nodes[p].outputs.iter_mut().flatten() {
                    if *o == x {
                        *o = y;
                    }
                }
                self.replace_uses(x, y);
                if self.value(y).ty.is_none() {
                    let t = self.value(x).ty.clone();
                    self.value_mut(y).ty = t;
                }
                dead[x.index()] = true;
            }
            self.nodes.remove(k);
            removed += 1;
        }
        let keep: Vec<bool> = dead.iter().map(|d| !d).collect();
        self.retain_values(&keep);
        removed
    }

    /// Renames a value, and the captures of it in subgraphs. Fails when the new name is empty
    /// or already used in this graph or in a subgraph that captures the value.
    pub fn rename_value(&mut self, id: ValueId, new: &str) -> Result<(), IrError> {
        let old = self
            .values
            .get(id.index())
            .map(|v| v.name.clone())
            .ok_or_else(|| IrError::Edit(format!("graph `{}`: no value #{}", self.name, id.0)))?;
        if new.is_empty() {
            return Err(IrError::Edit(format!("graph `{}`: cannot rename `{old}` to an empty name", self.name)));
        }
        if old == new {
            return Ok(());
        }
        if self.find_value(new).is_some() {
            return Err(IrError::Edit(format!("graph `{}`: cannot rename `{old}`: `{new}` exists", self.name)));
        }
        self.rename_captures(&old, new, true)?;
        self.rename_captures(&old, new, false)?;
        self.value_mut(id).name = new.to_string();
        Ok(())
    }

    /// Renames captures of `old` to `new` in subgraphs (recursively); `check` only validates.
    fn rename_captures(&mut self, old: &str, new: &str, check: bool) -> Result<(), IrError> {
        for n in &mut self.nodes {
            for a in n.attrs.values_mut() {
                for sg in subgraphs_mut(a) {
                    let Some(c) = sg.captures.iter().copied().find(|c| sg.value(*c).name == old) else { continue };
                    if check && sg.find_value(new).is_some() {
                        return Err(IrError::Edit(format!(
                            "subgraph `{}` captures `{old}` but already has a value named `{new}`",
                            sg.name
                        )));
                    }
                    sg.rename_captures(old, new, check)?;
                    if !check {
                        sg.value_mut(c).name = new.to_string();
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes value names non-empty and unique (`name_1`, `name_2`, ... for repeats) and names
    /// unnamed nodes `<op>_<n>`, making node names unique too; subgraphs too. Returns how many
    /// names changed. Captures keep their names (they bind to the enclosing scope by name).
    pub fn uniquify_names(&mut self) -> Result<usize, IrError> {
        let n = self.uniquify_inner();
        self.verify()?;
        Ok(n)
    }

    fn uniquify_inner(&mut self) -> usize {
        let mut changed = 0;
        for n in &mut self.nodes {
            for a in n.attrs.values_mut() {
                for sg in subgraphs_mut(a) {
                    changed += sg.uniquify_inner();
                }
            }
        }
        let mut taken: HashSet<String> = self.values.iter().map(|v| v.name.clone()).collect();
        let mut seen: HashSet<String> = HashSet::new();
        let captures: HashSet<ValueId> = self.captures.iter().copied().collect();
        // Captures first, so that they keep their names.
        let order: Vec<usize> = self
            .captures
            .iter()
            .map(|c| c.index())
            .chain((0..self.values.len()).filter(|i| !captures.contains(&ValueId(*i as u32))))
            .collect();
        let mut renames: HashMap<String, String> = HashMap::new();
        for i in order {
            let name = self.values[i].name.clone();
            if !name.is_empty() && seen.insert(name.clone()) {
                continue;
            }
            let fresh = if name.is_empty() && !taken.contains(&format!("v{i}")) {
                format!("v{i}")
            } else {
                fresh_name(if name.is_empty() { "v" } else { &name }, &taken)
            };
            taken.insert(fresh.clone());
            seen.insert(fresh.clone());
            renames.insert(name, fresh.clone());
            self.values[i].name = fresh;
            changed += 1;
        }
        let mut node_names: HashSet<String> = HashSet::new();
        let all_node_names: HashSet<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut counters: HashMap<String, usize> = HashMap::new();
        for n in &mut self.nodes {
            if !n.name.is_empty() && node_names.insert(n.name.clone()) {
                continue;
            }
            let fresh = if n.name.is_empty() {
                let c = counters.entry(n.op_type.clone()).or_default();
                loop {
                    let cand = format!("{}_{}", n.op_type, *c);
                    *c += 1;
                    if !all_node_names.contains(&cand) && !node_names.contains(&cand) {
                        break cand;
                    }
                }
            } else {
                let mut t: HashSet<String> = all_node_names.clone();
                t.extend(node_names.iter().cloned());
                fresh_name(&n.name, &t)
            };
            node_names.insert(fresh.clone());
            n.name = fresh;
            changed += 1;
        }
        changed
    }
}

fn fresh_name(base: &str, taken: &HashSet<String>) -> String {
    (1..).map(|k| format!("{base}_{k}")).find(|c| !taken.contains(c)).unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use crate::parse;

    #[test]
    fn identity_on_interface_is_kept() {
        let mut g = parse(
            "graph g {\n  opset \"\" = 13\n  input %x: f32[2]\n  %y = Identity(%x)\n  %z = Relu(%y)\n  %w = Identity(%x)\n  output %z, %w\n}",
        )
        .unwrap();
        assert_eq!(g.eliminate_identities().unwrap(), 1);
        assert_eq!(
            g.to_text(),
            "graph g {\n  opset \"\" = 13\n  input %x: f32[2]\n  %z = Relu(%x)\n  %w = Identity(%x)\n  output %z, %w\n}\n"
        );
    }

    #[test]
    fn rename_follows_captures() {
        let mut g = parse(
            "graph g {\n  opset \"\" = 13\n  input %c: bool[]\n  input %x: f32[2]\n  %y = If(%c) {else_branch = graph e {\n    capture %x: f32[2]\n    output %x\n  }, then_branch = graph t {\n    opset \"\" = 13\n    capture %x: f32[2]\n    %r = Relu(%x)\n    output %r\n  }}\n  output %y\n}",
        )
        .unwrap();
        g.verify().unwrap();
        let x = g.find_value("x").unwrap();
        g.rename_value(x, "x2").unwrap();
        g.verify().unwrap();
        assert!(g.to_text().contains("capture %x2: f32[2]\n    %r = Relu(%x2)"));
        let c = g.find_value("c").unwrap();
        assert!(g.rename_value(c, "x2").is_err());
        // The then-branch has a local `r`: renaming x2 to r must fail and change nothing.
        assert!(g.rename_value(x, "r").is_err());
        g.verify().unwrap();
    }

    #[test]
    fn uniquify() {
        let mut g = crate::Graph::new("g");
        g.set_opset("", 13);
        let a = g.add_input("a", crate::ValueType::tensor(qaic_tensor::DType::F32, qaic_tensor::Shape::known(&[1])));
        let b = g.add_value("a", None);
        let c = g.add_value("", None);
        for (i, o) in [(a, b), (b, c)] {
            g.add_node(crate::Node { op_type: "Relu".into(), inputs: vec![Some(i)], outputs: vec![Some(o)], ..Default::default() });
        }
        g.outputs.push(c);
        assert!(g.verify().is_err());
        assert_eq!(g.uniquify_names().unwrap(), 4);
        let names: Vec<&str> = g.values.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["a", "a_1", "v2"]);
        assert_eq!(g.nodes[1].name, "Relu_1");
    }
}
