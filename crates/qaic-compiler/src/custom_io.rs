//! Custom I/O (`-custom-IO-list-file`): the user's precision and layout of model inputs and
//! outputs, and where the conversion runs — on the host from the QPC's transform sequences
//! (`-host-preproc`, the default) or inside the device program (`-aic-preproc`).
//!
//! File format (facts runner-output.md §6): a YAML list, one entry per I/O,
//!
//! ```text
//! # Model Inputs
//!  - IOName: x
//!    Layout: NHWC
//!    Precision: float16
//! ```
//!
//! `Layout` is `NCHW` (the network's) or `NHWC` (rank-4 tensors only); `Precision` is `float`
//! or `float16` (integer precisions need quantization parameters and are not supported yet).

use std::path::Path;

use qaic_ir::{Attr, Graph, Node, ValueType};
use qaic_runtime::transform::{NCHW_TO_NHWC, NHWC_TO_NCHW};
use qaic_runtime::UserIo;
use qaic_tensor::{DType, Shape};

use crate::run::RunError;

/// One entry of the custom I/O file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomIo {
    pub name: String,
    /// `Layout: NHWC`.
    pub nhwc: bool,
    /// `Precision` (`None`: the network's).
    pub precision: Option<DType>,
}

fn err(path: &Path, line: usize, msg: String) -> RunError {
    RunError::Model(format!("custom I/O file {}:{line}: {msg}", path.display()))
}

/// Parses the custom I/O YAML text of `path` (for messages).
pub fn parse_custom_io(path: &Path, text: &str) -> Result<Vec<CustomIo>, RunError> {
    let mut out: Vec<CustomIo> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let body = match line.strip_prefix('-') {
            Some(rest) => {
                out.push(CustomIo { name: String::new(), nhwc: false, precision: None });
                rest.trim()
            }
            None => line,
        };
        if body.is_empty() {
            continue;
        }
        let Some(entry) = out.last_mut() else { return Err(err(path, n, "a key before the first `- IOName:` entry".into())) };
        let (key, value) = body.split_once(':').ok_or_else(|| err(path, n, format!("`{body}` is not `Key: value`")))?;
        let value = value.trim().trim_matches('"').trim_matches('\'');
        match key.trim() {
            "IOName" => entry.name = value.to_string(),
            "Layout" => {
                entry.nhwc = match value {
                    "NHWC" => true,
                    "NCHW" => false,
                    v => return Err(err(path, n, format!("Layout `{v}`: NCHW or NHWC"))),
                }
            }
            "Precision" => {
                entry.precision = Some(match value {
                    "float" | "float32" => DType::F32,
                    "float16" => DType::F16,
                    v @ ("int8" | "mxint8" | "bfloat16" | "int64" | "uint8" | "int16" | "int32") => {
                        return Err(err(path, n, format!("Precision `{v}` is not supported yet (only float and float16)")));
                    }
                    v => return Err(err(path, n, format!("unknown Precision `{v}`"))),
                })
            }
            k => return Err(err(path, n, format!("unknown key `{k}` (IOName, Layout, Precision)"))),
        }
    }
    if let Some(e) = out.iter().find(|e| e.name.is_empty()) {
        let _ = e;
        return Err(RunError::Model(format!("custom I/O file {}: an entry without IOName", path.display())));
    }
    Ok(out)
}

/// Reads and parses the custom I/O file.
pub fn read_custom_io(path: &Path) -> Result<Vec<CustomIo>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::Model(format!("custom I/O file {}: {e}", path.display())))?;
    parse_custom_io(path, &text)
}

/// Checks every entry names a graph input or output (and NHWC a rank-4 one).
pub fn check_against(graph: &Graph, entries: &[CustomIo]) -> Result<(), RunError> {
    for e in entries {
        let id = graph.inputs.iter().chain(&graph.outputs).find(|&&v| graph.value(v).name == e.name);
        let Some(&id) = id else {
            let names: Vec<&str> = graph.inputs.iter().chain(&graph.outputs).map(|&v| graph.value(v).name.as_str()).collect();
            return Err(RunError::Model(format!("custom I/O: `{}` is not an input or output of the model ({})", e.name, names.join(", "))));
        };
        if e.nhwc {
            let rank = graph.value(id).ty.as_ref().and_then(|t| t.tensor_shape()).map(Shape::rank);
            if rank != Some(4) {
                return Err(RunError::Model(format!("custom I/O: `{}` Layout NHWC needs a rank-4 tensor (rank {})", e.name, rank.map_or("unknown".into(), |r| r.to_string()))));
            }
        }
    }
    Ok(())
}

/// The user's tensor of I/O `name` of network type `dtype` for the host transform sequence;
/// `None` when it equals the network's.
pub fn user_io(entries: &[CustomIo], name: &str, dtype: DType) -> Option<UserIo> {
    let e = entries.iter().find(|e| e.name == name)?;
    let u = UserIo { dtype: e.precision.unwrap_or(dtype), nhwc: e.nhwc };
    (u.dtype != dtype || u.nhwc).then_some(u)
}

fn permuted(ty: &Option<ValueType>, perm: &[usize]) -> Option<ValueType> {
    let t = ty.as_ref()?;
    let dtype = t.tensor_dtype()?;
    let shape = t.tensor_shape()?;
    Some(ValueType::tensor(dtype, Shape(perm.iter().map(|&p| shape.0[p].clone()).collect())))
}

fn transpose_node(name: String, input: qaic_ir::ValueId, output: qaic_ir::ValueId, perm: &[usize]) -> Node {
    let mut n = Node { name, op_type: "Transpose".into(), inputs: vec![Some(input)], outputs: vec![Some(output)], ..Default::default() };
    n.attrs.insert("perm".into(), Attr::Ints(perm.iter().map(|&p| p as i64).collect()));
    n
}

/// `-aic-preproc`: moves the custom I/O conversions into the graph, so the device program runs
/// them: an NHWC input becomes a graph input of the user's layout followed by a Transpose, an
/// NHWC output a Transpose after the network's output. A precision change cannot run on the
/// device (it has no Cast op yet) and is refused, naming the I/O.
pub fn apply_aic_preproc(graph: &mut Graph, entries: &[CustomIo]) -> Result<(), RunError> {
    for e in entries {
        let Some(id) = graph.inputs.iter().chain(&graph.outputs).copied().find(|&v| graph.value(v).name == e.name) else { continue };
        let net = graph.value(id).ty.as_ref().and_then(|t| t.tensor_dtype());
        if let (Some(p), Some(n)) = (e.precision, net)
            && p != n
        {
            return Err(RunError::NotSupported(format!(
                "-aic-preproc with `{}` Precision {}: the virtual AIC100 cannot convert {} to {} in the device program yet (no Cast op); use -host-preproc",
                e.name,
                p.name(),
                p.name(),
                n.name()
            )));
        }
        if !e.nhwc {
            continue;
        }
        let is_input = graph.inputs.contains(&id);
        let inner = format!("{}__network_nchw", e.name);
        let ty_old = graph.value(id).ty.clone();
        graph.value_mut(id).name = inner.clone();
        if is_input {
            let user_ty = permuted(&ty_old, &NCHW_TO_NHWC);
            let new = graph.add_value(e.name.clone(), user_ty);
            if let Some(slot) = graph.inputs.iter_mut().find(|v| **v == id) {
                *slot = new;
            }
            graph.nodes.insert(0, transpose_node(format!("{}__aic_preproc", e.name), new, id, &NHWC_TO_NCHW));
        } else {
            let user_ty = permuted(&ty_old, &NCHW_TO_NHWC);
            let new = graph.add_value(e.name.clone(), user_ty);
            if let Some(slot) = graph.outputs.iter_mut().find(|v| **v == id) {
                *slot = new;
            }
            graph.add_node(transpose_node(format!("{}__aic_postproc", e.name), id, new, &NCHW_TO_NHWC));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_vendor_shape_and_refuses_bad_entries() {
        let p = Path::new("io.yaml");
        let v = parse_custom_io(p, "# Model Inputs\n - IOName: x\n   Layout: NHWC\n   Precision: float16\n\n - IOName: y\n   Precision: float\n").unwrap();
        assert_eq!(v, [CustomIo { name: "x".into(), nhwc: true, precision: Some(DType::F16) }, CustomIo { name: "y".into(), nhwc: false, precision: Some(DType::F32) }]);
        let e = |t: &str| parse_custom_io(p, t).unwrap_err().to_string();
        assert!(e(" - IOName: x\n   Precision: mxint8\n").contains("io.yaml:2: Precision `mxint8` is not supported yet"));
        assert!(e(" - IOName: x\n   Layout: NCWH\n").contains("Layout `NCWH`"));
        assert!(e("   Layout: NHWC\n").contains("before the first"));
        assert!(e(" - IOName: x\n   Colour: red\n").contains("unknown key `Colour`"));
        assert!(e(" - Layout: NHWC\n").contains("without IOName"));
        assert_eq!(user_io(&v, "x", DType::F32), Some(UserIo { dtype: DType::F16, nhwc: true }));
        assert_eq!(user_io(&v, "y", DType::F32), None);
    }
}
