//! The profile file: Glow's YAML layout (facts §5.4), one entry per ONNX tensor keyed
//! `<tensor name>:0`, plus a fourth document with qaic-rs's own information (readers that
//! stop after the third document, like Glow's, ignore it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use qaic_ir::Graph;

use crate::QuantError;

/// Profile of one float tensor: global min/max over all inputs and a histogram of
/// `num_histogram_bins` bins over [min, max].
#[derive(Clone, Debug, PartialEq)]
pub struct TensorProfile {
    pub min: f32,
    pub max: f32,
    pub histogram: Vec<u64>,
}

impl TensorProfile {
    /// The histogram as float counts (what the calibrations take, as Glow's float histograms).
    pub fn histogram_f32(&self) -> Vec<f32> {
        self.histogram.iter().map(|&c| c as f32).collect()
    }
}

/// What qaic-rs records about how a profile was made (fourth YAML document).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileInfo {
    /// `qaic-rs <version>`.
    pub tool: String,
    /// Number of inputs profiled.
    pub num_inputs: u64,
    pub num_histogram_bins: u64,
    /// Other options in force when profiling (name → value), for the record.
    pub options: BTreeMap<String, String>,
}

/// A quantization profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// `GlowToolsVersion` (ours writes `qaic-rs <version>`).
    pub tools_version: String,
    /// `GraphPreLowerHash`: our graph fingerprint ([`graph_fingerprint`]).
    pub graph_hash: u64,
    /// Entries by **tensor name** (the file's `NodeOutputName` without the `:0`).
    pub entries: BTreeMap<String, TensorProfile>,
    /// Present in profiles written by qaic-rs.
    pub info: Option<ProfileInfo>,
}

/// A 64-bit fingerprint of a graph: SHA-256 of its text form (constants elided) and of every
/// constant's bytes. Stable across runs, platforms and thread counts.
pub fn graph_fingerprint(g: &Graph) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let opts = qaic_ir::PrintOptions { inline_elements: 16, elide_bytes_over: Some(64) };
    h.update(g.to_text_with(&opts).as_bytes());
    for v in &g.values {
        if let Some(t) = &v.constant {
            h.update(v.name.as_bytes());
            if let Ok(b) = t.raw_bytes() {
                h.update(b);
            }
        }
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// `%.126f` with trailing zeros stripped (one digit kept after the point): the exact decimal
/// expansion of a float32, as LLVM's YAML writer prints Glow's `Min`/`Max`.
pub fn format_exact_f32(v: f32) -> String {
    if v.is_nan() {
        return ".nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let mut s = format!("{:.126}", v as f64);
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

/// YAML single-quoted scalar (double-quoted when it holds control characters).
fn quote(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(o, "\\u{:04X}", c as u32);
                }
                c => o.push(c),
            }
        }
        o.push('"');
        return o;
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// `key:` padded to column 17 like LLVM (cosmetic).
fn key(k: &str) -> String {
    if k.len() >= 16 { format!("{k}: ") } else { format!("{:<17}", format!("{k}:")) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryYaml {
    #[serde(rename = "NodeOutputName")]
    name: String,
    #[serde(rename = "Min")]
    min: f32,
    #[serde(rename = "Max")]
    max: f32,
    #[serde(rename = "Histogram", default)]
    histogram: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoYaml {
    #[serde(rename = "Tool", default)]
    tool: String,
    #[serde(rename = "NumInputs", default)]
    num_inputs: u64,
    #[serde(rename = "NumHistogramBins", default)]
    num_histogram_bins: u64,
    #[serde(rename = "Options", default)]
    options: BTreeMap<String, String>,
}

impl Profile {
    /// The YAML text (Glow layout, entries sorted by `NodeOutputName` byte-wise).
    ///
    /// Histogram counts are written as exact integers (Glow prints `%g`, which loses digits
    /// above 10^6; integers are still valid floats for Glow's reader).
    pub fn to_yaml(&self) -> String {
        let mut o = String::new();
        let _ = write!(o, "---\n{}{}\n...\n", key("GlowToolsVersion"), quote(&self.tools_version));
        let _ = write!(o, "---\n{}0x{:016X}\n...\n---\n", key("GraphPreLowerHash"), self.graph_hash);
        let mut keyed: Vec<(String, &TensorProfile)> = self.entries.iter().map(|(n, p)| (format!("{n}:0"), p)).collect();
        keyed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if keyed.is_empty() {
            o.push_str("[]\n");
        }
        for (k, p) in keyed {
            let _ = writeln!(o, "- {}{}", key("NodeOutputName"), quote(&k));
            let _ = writeln!(o, "  {}{}", key("Min"), format_exact_f32(p.min));
            let _ = writeln!(o, "  {}{}", key("Max"), format_exact_f32(p.max));
            let _ = write!(o, "  {}[", key("Histogram"));
            let mut col = 20;
            for (i, c) in p.histogram.iter().enumerate() {
                let item = if i + 1 == p.histogram.len() { format!(" {c} ") } else { format!(" {c},") };
                if col + item.len() > 70 {
                    o.push_str("\n                    ");
                    col = 20;
                }
                col += item.len();
                o.push_str(&item);
            }
            if p.histogram.is_empty() {
                o.push_str("  ");
            }
            o.push_str("]\n");
        }
        o.push_str("...\n");
        if let Some(info) = &self.info {
            let _ = write!(o, "---\nQaicProfile:\n  {}{}\n", key("Tool"), quote(&info.tool));
            let _ = writeln!(o, "  {}{}", key("NumInputs"), info.num_inputs);
            let _ = writeln!(o, "  {}{}", key("NumHistogramBins"), info.num_histogram_bins);
            if info.options.is_empty() {
                let _ = writeln!(o, "  {}{{}}", key("Options"));
            } else {
                let _ = writeln!(o, "  Options:");
                for (k, v) in &info.options {
                    let _ = writeln!(o, "    {}: {}", quote(k), quote(v));
                }
            }
            o.push_str("...\n");
        }
        o
    }

    /// Parses a profile; `origin` names the file in errors. Accepts Glow's files (three
    /// documents, zero-padded or short hex hashes, `%g` histograms).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Profile, QuantError> {
        let err = |msg: String| QuantError::File { path: origin.into(), msg };
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("not valid YAML: {e}")))?;
        if docs.len() < 3 || docs.len() > 4 {
            return Err(err(format!(
                "expected 3 YAML documents (GlowToolsVersion, GraphPreLowerHash, entries) or 4 (plus QaicProfile), found {}",
                docs.len()
            )));
        }
        let field = |doc: &serde_yaml::Value, name: &str, idx: usize| -> Result<serde_yaml::Value, QuantError> {
            doc.get(name).cloned().ok_or_else(|| err(format!("document {} has no `{name}` field", idx + 1)))
        };
        let tools_version = match field(&docs[0], "GlowToolsVersion", 0)? {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Null => String::new(),
            other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
        };
        let graph_hash = match field(&docs[1], "GraphPreLowerHash", 1)? {
            serde_yaml::Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_i64().map(|v| v as u64))
                .ok_or_else(|| err(format!("GraphPreLowerHash `{n}` is not a 64-bit integer")))?,
            serde_yaml::Value::String(s) => {
                let t = s.trim();
                let h = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
                u64::from_str_radix(h, 16).map_err(|_| err(format!("GraphPreLowerHash `{s}` is not a hex number")))?
            }
            other => return Err(err(format!("GraphPreLowerHash has an unexpected value {other:?}"))),
        };
        let list: Vec<EntryYaml> = if docs[2].is_null() {
            Vec::new()
        } else {
            serde_yaml::from_value(docs[2].clone()).map_err(|e| {
                err(format!("entries (document 3): {e}; each entry needs NodeOutputName, Min, Max, Histogram"))
            })?
        };
        let mut entries = BTreeMap::new();
        for e in list {
            if e.min.is_nan() || e.max.is_nan() || e.min > e.max {
                return Err(err(format!("bad profile for `{}`: Min {} is not ≤ Max {}", e.name, e.min, e.max)));
            }
            let mut histogram = Vec::with_capacity(e.histogram.len());
            for &c in &e.histogram {
                if !(c.is_finite() && c >= 0.0) {
                    return Err(err(format!("bad profile for `{}`: histogram count {c} is not a non-negative number", e.name)));
                }
                histogram.push(c.round() as u64);
            }
            // Our keys are `<tensor>:0`; other suffixes are kept whole (they match no tensor).
            let name = e.name.strip_suffix(":0").unwrap_or(&e.name).to_string();
            if entries.insert(name, TensorProfile { min: e.min, max: e.max, histogram }).is_some() {
                return Err(err(format!("`{}` appears twice", e.name)));
            }
        }
        let info = match docs.get(3) {
            None => None,
            Some(d) => {
                let v = field(d, "QaicProfile", 3)?;
                let i: InfoYaml = serde_yaml::from_value(v).map_err(|e| err(format!("QaicProfile (document 4): {e}")))?;
                Some(ProfileInfo {
                    tool: i.tool,
                    num_inputs: i.num_inputs,
                    num_histogram_bins: i.num_histogram_bins,
                    options: i.options,
                })
            }
        };
        Ok(Profile { tools_version, graph_hash, entries, info })
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, QuantError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| QuantError::File { path: path.display().to_string(), msg: e.to_string() })?;
        Profile::from_yaml(&text, &path.display().to_string())
    }

    /// Writes the profile (to a temporary file in the same folder, then renamed).
    pub fn save(&self, path: &Path) -> Result<(), QuantError> {
        crate::write_atomically(path, self.to_yaml().as_bytes())
    }

    /// Checks that this profile covers exactly the float tensors of `graph`. Missing or extra
    /// names are an error listing them; a fingerprint mismatch with all names present is a
    /// warning (returned, and logged).
    pub fn check_graph(&self, graph: &Graph, origin: &str) -> Result<Vec<String>, QuantError> {
        let wanted: BTreeSet<String> =
            crate::profiler::float_values(graph).iter().map(|v| graph.value(*v).name.clone()).collect();
        let have: BTreeSet<String> = self.entries.keys().cloned().collect();
        let missing: Vec<&String> = wanted.difference(&have).collect();
        let extra: Vec<&String> = have.difference(&wanted).collect();
        if !missing.is_empty() || !extra.is_empty() {
            let list = |v: &[&String]| {
                let mut s: Vec<String> = v.iter().take(50).map(|n| format!("`{n}`")).collect();
                if v.len() > 50 {
                    s.push(format!("... and {} more", v.len() - 50));
                }
                s.join(", ")
            };
            let mut msg = format!("{origin}: the profile does not match graph `{}`", graph.name);
            if !missing.is_empty() {
                let _ = write!(msg, "\n  {} float tensor(s) without a profile entry: {}", missing.len(), list(&missing));
            }
            if !extra.is_empty() {
                let _ = write!(msg, "\n  {} profile entr(ies) naming no float tensor of the graph: {}", extra.len(), list(&extra));
            }
            msg.push_str("\n  (profile the same model with -dump-profile, with the same -node-precision-info)");
            return Err(QuantError::Profile(msg));
        }
        let mut warnings = Vec::new();
        let fp = graph_fingerprint(graph);
        if self.info.is_none() {
            warnings.push(format!("{origin}: profile not written by qaic-rs; its graph hash is not checked"));
        } else if fp != self.graph_hash {
            warnings.push(format!(
                "{origin}: graph fingerprint 0x{fp:016X} differs from the profile's 0x{:016X} (all tensor names match; \
                 the model's constants or attributes changed since profiling)",
                self.graph_hash
            ));
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Profile {
        let mut entries = BTreeMap::new();
        entries.insert("data".to_string(), TensorProfile { min: -1.0, max: 6.0, histogram: vec![2, 3, 1, 3, 2, 2, 0, 2] });
        entries.insert("relu1".to_string(), TensorProfile { min: 0.0, max: 0.1, histogram: vec![7, 0, 0, 1, 0, 0, 0, 12345678] });
        entries.insert("it's a.b".to_string(), TensorProfile { min: -0.0, max: 3.0e-40, histogram: (0..40).collect() });
        Profile {
            tools_version: "qaic-rs 0.1.0".into(),
            graph_hash: 0xD,
            entries,
            info: Some(ProfileInfo {
                tool: "qaic-rs 0.1.0".into(),
                num_inputs: 3,
                num_histogram_bins: 8,
                options: [("profiling-threads".to_string(), "2".to_string())].into_iter().collect(),
            }),
        }
    }

    #[test]
    fn glow_layout() {
        let y = sample().to_yaml();
        assert!(y.starts_with("---\nGlowToolsVersion: 'qaic-rs 0.1.0'\n...\n---\nGraphPreLowerHash: 0x000000000000000D\n...\n---\n"), "{y}");
        assert!(y.contains("- NodeOutputName:  'data:0'\n  Min:             -1.0\n  Max:             6.0\n  Histogram:       [ 2, 3, 1, 3, 2, 2, 0, 2 ]\n"), "{y}");
        assert!(y.contains("Max:             0.100000001490116119384765625\n"), "{y}");
        // Sorted byte-wise by key: "data:0" < "it''s a.b:0" < "relu1:0".
        let (a, b, c) = (y.find("'data:0'").unwrap(), y.find("'it''s a.b:0'").unwrap(), y.find("'relu1:0'").unwrap());
        assert!(a < b && b < c);
    }

    #[test]
    fn round_trip() {
        let p = sample();
        let q = Profile::from_yaml(&p.to_yaml(), "p.yaml").unwrap();
        assert_eq!(p, q);
        assert_eq!(q.entries["it's a.b"].max.to_bits(), 3.0e-40f32.to_bits());
        assert_eq!(q.to_yaml(), p.to_yaml());
        let empty = Profile::default();
        assert_eq!(Profile::from_yaml(&empty.to_yaml(), "e").unwrap(), empty);
    }

    #[test]
    fn reads_glow_files() {
        let glow = "---\nGlowToolsVersion: ''\n...\n---\nGraphPreLowerHash: 0xFEDCBA9876543210\n...\n---\n\
            - NodeOutputName:  'data:0'\n  Min:             -1.0\n  Max:             6.0\n  Histogram:       [ 1.23457e+06, 3, 1 ]\n\
            - NodeOutputName:  'e:0'\n  Min:             0.0\n  Max:             0.0\n  Histogram:       [  ]\n...\n";
        let p = Profile::from_yaml(glow, "g.yaml").unwrap();
        assert_eq!(p.graph_hash, 0xFEDCBA9876543210);
        assert_eq!(p.entries["data"].histogram, vec![1234570, 3, 1]);
        assert!(p.entries["e"].histogram.is_empty());
        assert!(p.info.is_none());
        let short = glow.replace("0xFEDCBA9876543210", "0xD");
        assert_eq!(Profile::from_yaml(&short, "g").unwrap().graph_hash, 0xD);
    }

    #[test]
    fn malformed() {
        for (bad, what) in [
            ("- a: [", "not valid YAML"),
            ("---\nGlowToolsVersion: ''\n", "expected 3 YAML documents"),
            ("---\nGlowToolsVersion: ''\n---\nGraphPreLowerHash: zz\n---\n[]\n", "hex"),
            ("---\nGlowToolsVersion: ''\n---\nGraphPreLowerHash: 1\n---\n- NodeOutputName: a\n  Min: 2\n  Max: 1\n  Histogram: []\n", "bad profile for `a`"),
            ("---\nGlowToolsVersion: ''\n---\nGraphPreLowerHash: 1\n---\n- NodeOutputName: a\n  Min: 0\n  Histogram: []\n", "Max"),
            ("---\nGlowToolsVersion: ''\n---\nGraphPreLowerHash: 1\n---\n- NodeOutputName: a\n  Min: 0\n  Max: 1\n  Histogram: [-1]\n", "non-negative"),
        ] {
            let e = Profile::from_yaml(bad, "bad.yaml").unwrap_err().to_string();
            assert!(e.starts_with("bad.yaml: ") && e.contains(what), "{e}");
        }
    }
}
