//! The user-written precision files: `-node-precision-info` (Qualcomm's Glow PR 5145 layout) and
//! `-external-quantization` (the facts sheet's proposed schema, §10).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::base::{QType, QuantParams};
use crate::QuantError;

/// `-node-precision-info`: node instances by **first output name**.
///
/// ```yaml
/// FP16NodeInstanceNames: [conv0, bn0, relu0]
/// FP32NodeInstanceNames: [softmax_out]   # accepted too: keep these in float32
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePrecision {
    pub fp16: BTreeSet<String>,
    pub fp32: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodePrecisionYaml {
    #[serde(rename = "FP16NodeInstanceNames", default)]
    fp16: Vec<String>,
    #[serde(rename = "FP32NodeInstanceNames", default)]
    fp32: Vec<String>,
}

impl NodePrecision {
    pub fn is_empty(&self) -> bool {
        self.fp16.is_empty() && self.fp32.is_empty()
    }

    /// Reads a node precision file.
    pub fn load(path: &Path) -> Result<NodePrecision, QuantError> {
        let text = read(path)?;
        NodePrecision::parse(&text, &path.display().to_string())
    }

    /// Parses the YAML text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<NodePrecision, QuantError> {
        let y: NodePrecisionYaml = serde_yaml::from_str(text)
            .map_err(|e| QuantError::File { path: origin.into(), msg: format!("{e} (expected `FP16NodeInstanceNames: [name, ...]`)") })?;
        let np = NodePrecision { fp16: y.fp16.into_iter().collect(), fp32: y.fp32.into_iter().collect() };
        if let Some(both) = np.fp16.intersection(&np.fp32).next() {
            return Err(QuantError::File {
                path: origin.into(),
                msg: format!("`{both}` is listed in both FP16NodeInstanceNames and FP32NodeInstanceNames"),
            });
        }
        Ok(np)
    }
}

/// `-external-quantization`: quantization params computed by another tool, per first output
/// name of a node (or a graph input / constant name).
///
/// ```yaml
/// - NodeOutputName: 'conv1_out'
///   Scale: 0.0235
///   Offset: -128
///   ElemKind: Int8        # optional: Int8 | UInt8 | Int16 | Int32 (default: -quantization-precision)
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExternalQuantization {
    pub entries: BTreeMap<String, ExternalEntry>,
}

/// One externally given tensor quantization.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExternalEntry {
    pub params: QuantParams,
    /// `None`: use `-quantization-precision`.
    pub qtype: Option<QType>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExternalYaml {
    #[serde(rename = "NodeOutputName")]
    name: String,
    #[serde(rename = "Scale")]
    scale: f32,
    #[serde(rename = "Offset")]
    offset: i64,
    #[serde(rename = "ElemKind", default)]
    elem_kind: Option<String>,
}

impl ExternalQuantization {
    pub fn load(path: &Path) -> Result<ExternalQuantization, QuantError> {
        let text = read(path)?;
        ExternalQuantization::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<ExternalQuantization, QuantError> {
        let err = |msg: String| QuantError::File { path: origin.into(), msg };
        let list: Vec<ExternalYaml> = serde_yaml::from_str(text).map_err(|e| {
            err(format!("{e} (expected a list of `- NodeOutputName: name`, `Scale: float`, `Offset: int`)"))
        })?;
        let mut entries = BTreeMap::new();
        for e in list {
            let qtype = match e.elem_kind.as_deref() {
                None => None,
                Some("Int8") | Some("Int8QTy") => Some(QType::Int8),
                Some("UInt8") | Some("UInt8QTy") => Some(QType::UInt8),
                Some("Int16") | Some("Int16QTy") => Some(QType::Int16),
                Some("Int32") | Some("Int32QTy") => Some(QType::Int32),
                Some(k) => return Err(err(format!("`{}`: unknown ElemKind `{k}` (Int8, UInt8, Int16, Int32)", e.name))),
            };
            if !(e.scale.is_finite() && e.scale > 0.0) {
                return Err(err(format!("`{}`: Scale must be a positive finite number, got {}", e.name, e.scale)));
            }
            let (lo, hi) = qtype.unwrap_or(QType::Int32).storage_range();
            if e.offset < lo || e.offset > hi {
                return Err(err(format!("`{}`: Offset {} is outside [{lo}, {hi}]", e.name, e.offset)));
            }
            let entry = ExternalEntry { params: QuantParams { scale: e.scale, offset: e.offset as i32 }, qtype };
            if entries.insert(e.name.clone(), entry).is_some() {
                return Err(err(format!("`{}` is listed twice", e.name)));
            }
        }
        Ok(ExternalQuantization { entries })
    }
}

fn read(path: &Path) -> Result<String, QuantError> {
    std::fs::read_to_string(path).map_err(|e| QuantError::File { path: path.display().to_string(), msg: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_precision() {
        let n = NodePrecision::parse("FP16NodeInstanceNames: [conv0, bn0, relu0]\n", "np.yaml").unwrap();
        assert_eq!(n.fp16.len(), 3);
        let e = NodePrecision::parse("FP16NodeInstanceNames: conv0\n", "np.yaml").unwrap_err().to_string();
        assert!(e.contains("np.yaml"), "{e}");
        let e = NodePrecision::parse("FP16Names: [a]\n", "np.yaml").unwrap_err().to_string();
        assert!(e.contains("FP16Names"), "{e}");
        let e = NodePrecision::parse("FP16NodeInstanceNames: [a]\nFP32NodeInstanceNames: [a]\n", "x").unwrap_err();
        assert!(e.to_string().contains("both"));
        assert!(NodePrecision::parse("FP16NodeInstanceNames: [a\n", "x").is_err());
    }

    #[test]
    fn external() {
        let x = ExternalQuantization::parse(
            "- NodeOutputName: 'a:0'\n  Scale: 0.5\n  Offset: -3\n- NodeOutputName: b\n  Scale: 1e-3\n  Offset: 0\n  ElemKind: Int16\n",
            "ext.yaml",
        )
        .unwrap();
        assert_eq!(x.entries["a:0"].params, QuantParams { scale: 0.5, offset: -3 });
        assert_eq!(x.entries["b"].qtype, Some(QType::Int16));
        for bad in [
            "- NodeOutputName: a\n  Scale: 0\n  Offset: 0\n",
            "- NodeOutputName: a\n  Scale: 1\n  Offset: 300\n  ElemKind: Int8\n",
            "- NodeOutputName: a\n  Scale: 1\n  Offset: 0\n  ElemKind: Int4\n",
            "- NodeOutputName: a\n  Scale: 1\n  Offset: 0\n- NodeOutputName: a\n  Scale: 1\n  Offset: 0\n",
            "- NodeOutputName: a\n  Scale: 1\n",
            "NodeOutputName: a",
        ] {
            let e = ExternalQuantization::parse(bad, "ext.yaml").unwrap_err().to_string();
            assert!(e.starts_with("ext.yaml"), "{e}");
        }
    }
}
