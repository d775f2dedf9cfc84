//! `-quantization-report=FILE` (beyond the vendor): per-tensor SQNR between the float run and
//! the quantized run over the same inputs, to find the layer that hurts accuracy.

use std::collections::HashMap;
use std::fmt::Write as _;

use qaic_interp::{Plan, PlanOptions};
use qaic_ir::Graph;
use qaic_tensor::{DType, Value};

use crate::profiler::InputLoader;
use crate::transform::PrecisionResult;
use crate::QuantError;

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    pub tensor: String,
    /// Op type of the producer (`input` / `constant` otherwise).
    pub producer: String,
    /// Precision of the producing node.
    pub precision: String,
    /// `10·log10(Σ x² / Σ (x − y)²)` over all inputs; infinite when equal.
    pub sqnr_db: f64,
    pub max_abs_error: f64,
    pub elements: u64,
}

/// The report: rows in graph order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantReport {
    pub rows: Vec<ReportRow>,
}

impl QuantReport {
    /// CSV text: `tensor,producer,precision,sqnr_db,max_abs_error,elements`.
    pub fn to_csv(&self) -> String {
        let mut o = String::from("tensor,producer,precision,sqnr_db,max_abs_error,elements\n");
        for r in &self.rows {
            let name = if r.tensor.contains([',', '"', '\n']) { format!("\"{}\"", r.tensor.replace('"', "\"\"")) } else { r.tensor.clone() };
            let _ = writeln!(o, "{name},{},{},{:.3},{:e},{}", r.producer, r.precision, r.sqnr_db, r.max_abs_error, r.elements);
        }
        o
    }
    /// The `n` rows with the lowest SQNR.
    pub fn worst(&self, n: usize) -> Vec<&ReportRow> {
        let mut v: Vec<&ReportRow> = self.rows.iter().collect();
        v.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        v.truncate(n);
        v
    }
    pub fn save(&self, path: &std::path::Path) -> Result<(), QuantError> {
        crate::write_atomically(path, self.to_csv().as_bytes())
    }
}

#[derive(Default, Clone, Copy)]
struct Acc {
    signal: f64,
    noise: f64,
    max_err: f64,
    n: u64,
}

/// Runs `float` and `quantized.graph` on the same `count` inputs and compares every float32
/// tensor of the float graph with the tensor of the same name in the quantized graph.
pub fn quantization_report(
    float: &Graph,
    quantized: &PrecisionResult,
    count: usize,
    load: InputLoader<'_>,
) -> Result<QuantReport, QuantError> {
    let reg = crate::registry();
    let fp = Plan::with_registry(float.clone(), &reg, &PlanOptions { optimize: false, ..Default::default() }).map_err(|e| QuantError::Run(e.to_string()))?;
    let qp = Plan::with_registry(quantized.graph.clone(), &reg, &PlanOptions { optimize: false, ..Default::default() })
        .map_err(|e| QuantError::Run(e.to_string()))?;
    let targets = crate::profiler::float_values(float);
    let qnames = quantized.graph.name_index();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for (k, v) in targets.iter().enumerate() {
        if qnames.contains_key(float.value(*v).name.as_str()) {
            slot.insert(float.value(*v).name.as_str(), k);
        }
    }
    let mut acc = vec![Acc::default(); targets.len()];
    for i in 0..count {
        let inputs = load(i).map_err(|e| QuantError::Run(format!("input #{}: {e}", i + 1)))?;
        let mut reference: Vec<Option<Vec<f32>>> = vec![None; targets.len()];
        fp.run_observed(inputs.clone(), &mut |g, id, v| {
            if let (Some(&k), Value::Tensor(t)) = (slot.get(g.value(id).name.as_str()), v) {
                if t.dtype() == DType::F32 {
                    reference[k] = t.to_vec::<f32>().ok();
                }
            }
        })
        .map_err(|e| QuantError::Run(format!("float run, input #{}: {e}", i + 1)))?;
        for k in 0..targets.len() {
            if let (None, Some(t)) = (&reference[k], float.value(targets[k]).constant.as_ref()) {
                reference[k] = t.to_vec::<f32>().ok();
            }
        }
        qp.run_observed(inputs, &mut |g, id, v| {
            if let (Some(&k), Value::Tensor(t)) = (slot.get(g.value(id).name.as_str()), v) {
                if let (Some(r), Ok(y)) = (&reference[k], t.view::<f32>()) {
                    let a = &mut acc[k];
                    for (&x, &y) in r.iter().zip(y.iter()) {
                        let d = x as f64 - y as f64;
                        a.signal += x as f64 * x as f64;
                        a.noise += d * d;
                        a.max_err = a.max_err.max(d.abs());
                        a.n += 1;
                    }
                }
            }
        })
        .map_err(|e| QuantError::Run(format!("quantized run, input #{}: {e}", i + 1)))?;
    }
    let producers = float.producers();
    let prec: HashMap<&str, String> = quantized
        .decisions
        .iter()
        .map(|d| (d.first_output.as_str(), format!("{:?}", d.precision)))
        .collect();
    let mut rows = Vec::new();
    for (k, v) in targets.iter().enumerate() {
        let a = acc[k];
        if a.n == 0 {
            continue;
        }
        let d = float.value(*v);
        let (producer, precision) = match producers[v.index()] {
            Some(p) => {
                let n = float.node(p);
                let first = n.outputs.iter().flatten().next().map(|o| float.value(*o).name.as_str()).unwrap_or("");
                (n.op_type.clone(), prec.get(first).cloned().unwrap_or_default())
            }
            None if d.constant.is_some() => ("constant".into(), String::new()),
            None => ("input".into(), String::new()),
        };
        let sqnr_db = if a.noise == 0.0 { f64::INFINITY } else { 10.0 * (a.signal / a.noise).log10() };
        rows.push(ReportRow { tensor: d.name.clone(), producer, precision, sqnr_db, max_abs_error: a.max_err, elements: a.n });
    }
    Ok(QuantReport { rows })
}
