//! Function expansion at load time: model-local functions (`ModelProto.functions`) always, and
//! the standard operators that the ONNX schema defines as functions on request
//! (`-always-expand-onnx-functions`).
//!
//! A call is replaced by the function's body: formal inputs and outputs are renamed to the
//! call's actual names, every value internal to the body gets a fresh unique name, attribute
//! references (`ref_attr_name`) take the call's attribute or the function's default, and nested
//! calls are expanded in turn.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use prost::Message;

use crate::import::{model_opsets, norm_domain};
use crate::proto::{AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto};
use crate::OnnxError;

/// Calls nested deeper than this are taken to be recursive.
const MAX_DEPTH: usize = 64;

/// Bodies of the standard operators the ONNX schema (onnx 1.22.0) defines as functions; see
/// `tools/gen_schema_functions.py` for the format.
static SCHEMA_FUNCTIONS: &[u8] = include_bytes!("generated/schema_functions.pb");

/// One schema-defined function body.
struct SchemaBody {
    since: i64,
    function_version: i64,
    body: FunctionProto,
}

struct SchemaFunctions {
    /// (domain, op) -> since_versions of all schema versions of the op.
    versions: HashMap<(String, String), Vec<i64>>,
    bodies: HashMap<(String, String), Vec<SchemaBody>>,
}

fn schema_functions() -> Result<&'static SchemaFunctions, OnnxError> {
    static CELL: OnceLock<Result<SchemaFunctions, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let m = ModelProto::decode(SCHEMA_FUNCTIONS).map_err(|e| e.to_string())?;
        let mut versions = HashMap::new();
        for p in &m.metadata_props {
            let (d, op) = p.key().split_once(':').ok_or("bad key")?;
            let v = p.value().split(',').map(|s| s.parse::<i64>().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
            versions.insert((d.to_string(), op.to_string()), v);
        }
        let mut bodies: HashMap<(String, String), Vec<SchemaBody>> = HashMap::new();
        for f in m.functions {
            let (s, fv) = f.overload().split_once(':').ok_or("bad overload")?;
            let since = s.parse().map_err(|_| "bad since_version")?;
            let function_version = fv.parse().map_err(|_| "bad function version")?;
            let key = (norm_domain(f.domain()).to_string(), f.name().to_string());
            bodies.entry(key).or_default().push(SchemaBody { since, function_version, body: f });
        }
        Ok(SchemaFunctions { versions, bodies })
    })
    .as_ref()
    .map_err(|e| OnnxError::Internal(format!("embedded schema functions: {e}")))
}

/// The standard operators (domain, op type) for which the embedded ONNX schema has a function
/// body, i.e. the ones `-always-expand-onnx-functions` can expand (at some opset versions).
pub fn schema_function_ops() -> Result<Vec<(String, String)>, OnnxError> {
    let mut v: Vec<_> = schema_functions()?.bodies.keys().cloned().collect();
    v.sort();
    Ok(v)
}

impl SchemaFunctions {
    /// The body that applies to `op` at opset `version` of its domain: the schema version the
    /// opset selects must have a body whose function version is at most `version`.
    fn find(&self, domain: &str, op: &str, version: i64) -> Option<&FunctionProto> {
        let key = (domain.to_string(), op.to_string());
        let since = self.versions.get(&key)?.iter().copied().filter(|&s| s <= version).max()?;
        self.bodies
            .get(&key)?
            .iter()
            .filter(|b| b.since == since && b.function_version <= version)
            .max_by_key(|b| b.function_version)
            .map(|b| &b.body)
    }
}

/// Expands function calls in `model` in place. Model-local functions are always inlined;
/// schema-defined functions only when `schema` is set. Returns how many calls were expanded.
pub(crate) fn expand_functions(model: &mut ModelProto, schema: bool, origin: &str) -> Result<usize, OnnxError> {
    if model.functions.is_empty() && !schema {
        return Ok(0);
    }
    let mut opsets = model_opsets(model, origin)?;
    let mut local: HashMap<(String, String, String), FunctionProto> = HashMap::new();
    for f in &model.functions {
        let key = (norm_domain(f.domain()).to_string(), f.name().to_string(), f.overload().to_string());
        if local.insert(key, f.clone()).is_some() {
            return Err(OnnxError::invalid(origin, format!("function `{}` (domain `{}`) is defined twice", f.name(), f.domain())));
        }
    }
    let Some(graph) = model.graph.as_mut() else { return Ok(0) };
    let mut names = HashSet::new();
    collect_names(graph, &mut names);
    for f in local.values() {
        for n in &f.node {
            names.extend(n.output.iter().cloned());
        }
    }
    let mut ex = Expander {
        origin,
        local,
        schema: if schema { Some(schema_functions()?) } else { None },
        opsets: opsets.clone(),
        names,
        counter: 0,
        expanded: 0,
        new_opsets: BTreeMap::new(),
    };
    ex.graph(graph, 0)?;
    // Domains that only the function bodies use become model imports.
    for (d, v) in std::mem::take(&mut ex.new_opsets) {
        if let std::collections::btree_map::Entry::Vacant(e) = opsets.entry(d.clone()) {
            e.insert(v);
            model.opset_import.push(crate::proto::OperatorSetIdProto { domain: Some(d), version: Some(v) });
        }
    }
    model.functions.clear();
    Ok(ex.expanded)
}

struct Expander<'a> {
    origin: &'a str,
    local: HashMap<(String, String, String), FunctionProto>,
    schema: Option<&'static SchemaFunctions>,
    opsets: BTreeMap<String, i64>,
    /// Every value name in use, to keep fresh names unique.
    names: HashSet<String>,
    counter: usize,
    expanded: usize,
    new_opsets: BTreeMap<String, i64>,
}

impl Expander<'_> {
    fn graph(&mut self, g: &mut GraphProto, depth: usize) -> Result<(), OnnxError> {
        let nodes = std::mem::take(&mut g.node);
        g.node = self.nodes(nodes, depth)?;
        Ok(())
    }

    fn nodes(&mut self, nodes: Vec<NodeProto>, depth: usize) -> Result<Vec<NodeProto>, OnnxError> {
        let mut out = Vec::with_capacity(nodes.len());
        for mut n in nodes {
            for a in &mut n.attribute {
                if let Some(g) = a.g.as_mut() {
                    self.graph(g, depth)?;
                }
                for g in &mut a.graphs {
                    self.graph(g, depth)?;
                }
            }
            match self.body_for(&n)? {
                Some((f, from_schema)) => {
                    if depth >= MAX_DEPTH {
                        return Err(OnnxError::invalid(
                            self.origin,
                            format!("function `{}` calls itself (expansion nested more than {MAX_DEPTH} deep)", f.name()),
                        ));
                    }
                    let body = self.instantiate(&f, &n, from_schema)?;
                    self.expanded += 1;
                    out.extend(self.nodes(body, depth + 1)?);
                }
                None => out.push(n),
            }
        }
        Ok(out)
    }

    /// The function a node calls, and whether it comes from the schema.
    fn body_for(&mut self, n: &NodeProto) -> Result<Option<(FunctionProto, bool)>, OnnxError> {
        let domain = norm_domain(n.domain());
        let key = (domain.to_string(), n.op_type().to_string(), n.overload().to_string());
        if let Some(f) = self.local.get(&key) {
            return Ok(Some((f.clone(), false)));
        }
        let Some(schema) = self.schema else { return Ok(None) };
        let Some(&version) = self.opsets.get(domain) else { return Ok(None) };
        Ok(schema.find(domain, n.op_type(), version).map(|f| (f.clone(), true)))
    }

    fn fresh(&mut self, base: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("{base}__{}", self.counter);
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }

    /// The body of `f` specialised for the call `call`.
    fn instantiate(&mut self, f: &FunctionProto, call: &NodeProto, from_schema: bool) -> Result<Vec<NodeProto>, OnnxError> {
        let fname = f.name();
        for o in &f.opset_import {
            let d = norm_domain(o.domain()).to_string();
            match self.opsets.get(&d) {
                None => {
                    self.new_opsets.insert(d.clone(), o.version());
                    self.opsets.insert(d, o.version());
                }
                // Schema bodies are written for the first opset they apply to; they stay valid
                // up to the next body version, so a newer model opset is fine.
                Some(&v) if v == o.version() || from_schema => {}
                Some(&v) => {
                    let shown = if d.is_empty() { "ai.onnx" } else { d.as_str() };
                    return Err(OnnxError::not_supported(
                        self.origin,
                        format!(
                            "function `{fname}` imports {shown} opset {}, the model imports opset {v}; one opset per domain is supported",
                            o.version()
                        ),
                    ));
                }
            }
        }
        if call.input.len() > f.input.len() || call.output.len() > f.output.len() {
            return Err(OnnxError::invalid(
                self.origin,
                format!(
                    "node `{}` calls function `{fname}` with {} inputs and {} outputs; it takes {} and {}",
                    call.name(),
                    call.input.len(),
                    call.output.len(),
                    f.input.len(),
                    f.output.len()
                ),
            ));
        }
        let prefix = if call.name().is_empty() { fname.to_string() } else { format!("{}/{fname}", call.name()) };
        let mut rename: HashMap<String, String> = HashMap::new();
        for (i, formal) in f.input.iter().enumerate() {
            rename.insert(formal.clone(), call.input.get(i).cloned().unwrap_or_default());
        }
        for (i, formal) in f.output.iter().enumerate() {
            let actual = match call.output.get(i) {
                Some(a) if !a.is_empty() => a.clone(),
                _ => self.fresh(&format!("{prefix}/{formal}")),
            };
            rename.insert(formal.clone(), actual);
        }
        for n in &f.node {
            for o in &n.output {
                if !o.is_empty() && !rename.contains_key(o) {
                    let fresh = self.fresh(&format!("{prefix}/{o}"));
                    rename.insert(o.clone(), fresh);
                }
            }
        }
        // Attribute values visible in the body: the call's, then the function's defaults.
        let mut attrs: HashMap<&str, &AttributeProto> = HashMap::new();
        for a in &f.attribute_proto {
            attrs.insert(a.name(), a);
        }
        for a in &call.attribute {
            attrs.insert(a.name(), a);
        }
        let mut body = Vec::with_capacity(f.node.len());
        for n in &f.node {
            let mut n = n.clone();
            let node_name = n.name().to_string();
            for i in &mut n.input {
                if i.is_empty() {
                    continue;
                }
                match rename.get(i.as_str()) {
                    Some(r) => *i = r.clone(),
                    None => {
                        return Err(OnnxError::invalid(
                            self.origin,
                            format!("function `{fname}`: node `{node_name}` reads `{i}`, which the function does not define"),
                        ));
                    }
                }
            }
            for o in &mut n.output {
                if let Some(r) = rename.get(o.as_str()) {
                    *o = r.clone();
                }
            }
            if !n.name().is_empty() {
                n.name = Some(format!("{prefix}/{}", n.name()));
            }
            n.attribute = resolve_attrs(std::mem::take(&mut n.attribute), &attrs, &rename);
            body.push(n);
        }
        Ok(body)
    }
}

/// Replaces attribute references by the referenced values (dropping unresolved optional ones)
/// and renames outer references inside subgraph attributes.
fn resolve_attrs(
    list: Vec<AttributeProto>,
    attrs: &HashMap<&str, &AttributeProto>,
    rename: &HashMap<String, String>,
) -> Vec<AttributeProto> {
    let mut out = Vec::with_capacity(list.len());
    for mut a in list {
        if let Some(r) = a.ref_attr_name.as_deref() {
            match attrs.get(r) {
                Some(v) => {
                    let name = a.name.take();
                    a = (*v).clone();
                    a.name = name;
                    a.ref_attr_name = None;
                }
                None => continue,
            }
        }
        if let Some(g) = a.g.as_mut() {
            resolve_graph(g, attrs, rename);
        }
        for g in &mut a.graphs {
            resolve_graph(g, attrs, rename);
        }
        out.push(a);
    }
    out
}

/// In a subgraph of a function body: resolve attribute references and rename the body's values
/// that the subgraph reads from its enclosing scope (names it defines itself are left alone).
fn resolve_graph(g: &mut GraphProto, attrs: &HashMap<&str, &AttributeProto>, rename: &HashMap<String, String>) {
    let mut local: HashSet<String> = HashSet::new();
    local.extend(g.input.iter().map(|v| v.name().to_string()));
    local.extend(g.initializer.iter().map(|t| t.name().to_string()));
    for n in &g.node {
        local.extend(n.output.iter().cloned());
    }
    let inner: HashMap<String, String> = rename.iter().filter(|(k, _)| !local.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    for n in &mut g.node {
        for i in &mut n.input {
            if let Some(r) = inner.get(i.as_str()) {
                *i = r.clone();
            }
        }
        n.attribute = resolve_attrs(std::mem::take(&mut n.attribute), attrs, &inner);
    }
    for o in &mut g.output {
        if let Some(r) = inner.get(o.name()) {
            o.name = Some(r.clone());
        }
    }
}

fn collect_names(g: &GraphProto, names: &mut HashSet<String>) {
    names.extend(g.input.iter().map(|v| v.name().to_string()));
    names.extend(g.output.iter().map(|v| v.name().to_string()));
    names.extend(g.initializer.iter().map(|t| t.name().to_string()));
    for n in &g.node {
        names.extend(n.input.iter().cloned());
        names.extend(n.output.iter().cloned());
        for a in &n.attribute {
            if let Some(sg) = &a.g {
                collect_names(sg, names);
            }
            for sg in &a.graphs {
                collect_names(sg, names);
            }
        }
    }
}
