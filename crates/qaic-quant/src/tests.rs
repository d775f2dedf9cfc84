//! Graph-pass tests: each option changes the quantized graph as documented, and the result runs.

use qaic_interp::{Plan, PlanOptions};
use qaic_ir::{Attr, Graph, Node, ValueType};
use qaic_tensor::{DType, Shape, Tensor, Value};

use crate::*;

fn ty(s: &[usize]) -> Option<ValueType> {
    Some(ValueType::tensor(DType::F32, Shape::known(s)))
}

fn node(op: &str, ins: &[qaic_ir::ValueId], out: qaic_ir::ValueId) -> Node {
    Node { op_type: op.into(), inputs: ins.iter().map(|v| Some(*v)).collect(), outputs: vec![Some(out)], ..Default::default() }
}

/// x[2,4] → MatMul(w[4,3]) → Add(b[3]) → Relu → y, and x → Conv path: c[1,2,2,2] → Conv(k[3,2,1,1], kb[3]) → z.
fn graph() -> Graph {
    let mut g = Graph::new("t");
    g.set_opset("", 13);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2, 4])));
    let c = g.add_input("c", ValueType::tensor(DType::F32, Shape::known(&[1, 2, 2, 2])));
    let w = g.add_constant("w", Tensor::from_vec(vec![4, 3], vec![0.1f32, -0.3, 0.5, 0.2, -0.2, 0.6, 0.05, 0.4, -0.1, 0.3, 0.0, 0.25]).unwrap());
    let b = g.add_constant("b", Tensor::from_vec(vec![3], vec![0.1f32, -0.2, 0.05]).unwrap());
    let k = g.add_constant("k", Tensor::from_vec(vec![3, 2, 1, 1], vec![-0.5f32, 0.25, 0.02, 0.08, 0.3, -0.1]).unwrap());
    let kb = g.add_constant("kb", Tensor::from_vec(vec![3], vec![0.3f32, -0.01, 0.0]).unwrap());
    let m = g.add_value("m", ty(&[2, 3]));
    let a = g.add_value("a", ty(&[2, 3]));
    let y = g.add_value("y", ty(&[2, 3]));
    let z = g.add_value("z", ty(&[1, 3, 2, 2]));
    g.add_node(node("MatMul", &[x, w], m));
    g.add_node(node("Add", &[m, b], a));
    g.add_node(node("Relu", &[a], y));
    g.add_node(node("Conv", &[c, k, kb], z));
    g.outputs.push(y);
    g.outputs.push(z);
    g
}

fn input(i: usize) -> Vec<Value> {
    let f = |n: usize, s: f32| (0..n).map(|j| ((j * 7 + i * 3) % 11) as f32 * s - 1.0).collect::<Vec<f32>>();
    vec![
        Tensor::from_vec(vec![2, 4], f(8, 0.37)).unwrap().into(),
        Tensor::from_vec(vec![1, 2, 2, 2], f(8, 0.29)).unwrap().into(),
    ]
}

fn profile(g: &Graph) -> Profile {
    profile_graph(g, &ProfileConfig { num_histogram_bins: 256, threads: 2 }, 6, &|i| Ok(input(i)), &|_| {}).unwrap()
}

fn run(g: &Graph, i: usize) -> Vec<Vec<f32>> {
    let plan = Plan::with_registry(g.clone(), &registry(), &PlanOptions::default()).unwrap();
    plan.run(input(i)).unwrap().into_iter().map(|v| v.into_tensor().unwrap().to_vec::<f32>().unwrap()).collect()
}

fn constant<'a>(g: &'a Graph, name: &str) -> &'a Tensor {
    g.value(g.find_value(name).unwrap_or_else(|| panic!("no `{name}`"))).constant.as_ref().unwrap()
}

fn decision<'a>(r: &'a PrecisionResult, out: &str) -> &'a NodeDecision {
    r.decisions.iter().find(|d| d.first_output == out).unwrap()
}

#[test]
fn default_quantization_runs_close_to_float() {
    let g = graph();
    let p = profile(&g);
    let r = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    assert_eq!(r.counts(), (4, 0, 0), "{:#?}", r.decisions);
    assert_eq!(constant(&r.graph, "w__q").dtype(), DType::I8);
    // Conv bias and the bias of a lowered FC (MatMul + Add) are int32 accumulator biases.
    assert_eq!(constant(&r.graph, "b__q").dtype(), DType::I32);
    assert_eq!(r.params["b"], base::QuantParams { scale: r.params["x"].scale * r.params["w"].scale, offset: 0 });
    // The MatMul result read only by its bias Add stays an unrounded accumulator (Glow FC).
    assert!(r.graph.find_value("m__float").is_none() && !r.params.contains_key("m"));
    assert_eq!(constant(&r.graph, "kb__q").dtype(), DType::I32);
    assert!(r.graph.nodes.iter().any(|n| n.domain == DOMAIN));
    // Graph outputs keep their names.
    assert_eq!(r.graph.value(r.graph.outputs[0]).name, "y");
    for i in 0..3 {
        let (f, q) = (run(&g, i), run(&r.graph, i));
        for (a, b) in f.iter().zip(&q) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 0.05, "{x} vs {y}");
            }
        }
    }
    // Bias: Int32 with scale in × w (Glow §4).
    let (ps, pw) = (r.params["c"].scale, r.params["k"].scale);
    assert_eq!(r.params["kb"], base::QuantParams { scale: ps * pw, offset: 0 });
    let rep = quantization_report(&g, &r, 3, &|i| Ok(input(i))).unwrap();
    let y = rep.rows.iter().find(|r| r.tensor == "y").unwrap();
    assert!(y.sqnr_db > 25.0 && y.sqnr_db.is_finite(), "{y:?}");
    assert!(rep.to_csv().starts_with("tensor,producer,precision,sqnr_db"));
}

#[test]
fn keep_original_and_fp16_op_types() {
    let g = graph();
    let p = profile(&g);
    let cfg = QuantConfig {
        keep_original_op_types: QuantConfig::parse_op_types("Add"),
        fp16_op_types: QuantConfig::parse_op_types("Relu"),
        ..Default::default()
    };
    let r = apply_precision(&g, Some(&p), &cfg).unwrap();
    assert_eq!(decision(&r, "a").precision, NodePrecisionKind::Float32);
    assert!(decision(&r, "a").reason.contains("-keep-original-precision-for-nodes"));
    assert_eq!(decision(&r, "y").precision, NodePrecisionKind::Float16);
    assert!(r.graph.find_value("a__float").is_none(), "Add's output is not quantized");
    let relu = r.graph.nodes.iter().find(|n| n.op_type == "Relu").unwrap();
    let rin = r.graph.value(relu.inputs[0].unwrap());
    assert_eq!(rin.ty.as_ref().and_then(|t| t.tensor_dtype()), Some(DType::F16));
    assert_eq!(r.graph.nodes.iter().filter(|n| n.op_type == "Cast").count(), 2);
    run(&r.graph, 0);
}

#[test]
fn rowwise_and_channelwise() {
    let g = graph();
    let p = profile(&g);
    let cfg = QuantConfig { rowwise: true, channelwise: true, ..Default::default() };
    let r = apply_precision(&g, Some(&p), &cfg).unwrap();
    assert_eq!(constant(&r.graph, "w__scale").shape(), &[3]);
    assert_eq!(constant(&r.graph, "k__scale").shape(), &[3]);
    // Channelwise replaces asymmetric by symmetric: zero points are 0.
    assert!(constant(&r.graph, "k__zero_point").as_slice::<i8>().unwrap().iter().all(|&z| z == 0));
    assert_eq!(constant(&r.graph, "kb__scale").shape(), &[3]);
    let dq = r.graph.nodes.iter().find(|n| n.op_type == "DequantizeLinear" && r.graph.value(n.inputs[0].unwrap()).name == "w__q").unwrap();
    assert!(matches!(dq.attr("axis"), Some(Attr::Int(1))));
    // Per-tensor without the options.
    let r0 = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    assert!(constant(&r0.graph, "w__scale").shape().is_empty());
    let f = run(&g, 1);
    let q = run(&r.graph, 1);
    for (x, y) in f[1].iter().zip(&q[1]) {
        assert!((x - y).abs() < 0.05, "{x} vs {y}");
    }
}

#[test]
fn int16_and_schemas() {
    let g = graph();
    let p = profile(&g);
    let r = apply_precision(&g, Some(&p), &QuantConfig { precision: Precision::Int16, ..Default::default() }).unwrap();
    assert_eq!(constant(&r.graph, "w__q").dtype(), DType::I16);
    assert_eq!(constant(&r.graph, "x__zero_point").dtype(), DType::I16);
    let sym = QuantConfig { schema_activations: Schema::Symmetric, schema_constants: Schema::SymmetricWithPower2Scale, ..Default::default() };
    let r = apply_precision(&g, Some(&p), &sym).unwrap();
    assert_eq!(r.params["x"].offset, 0);
    let ws = r.params["w"].scale;
    assert_eq!(ws, 2f32.powi(ws.log2().round() as i32), "power-of-2 weight scale");
    let r = apply_precision(&g, Some(&p), &QuantConfig { calibration: Calibration::Percentile, percentile: 90.0, ..Default::default() }).unwrap();
    let r0 = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    assert!(r.params["a"].scale < r0.params["a"].scale, "percentile 90 clips the range");
}

#[test]
fn node_precision_and_convert_to_fp16() {
    let g = graph();
    let p = profile(&g);
    let np = NodePrecision::parse("FP16NodeInstanceNames: [m]\nFP32NodeInstanceNames: [z]\n", "np.yaml").unwrap();
    let r = apply_precision(&g, Some(&p), &QuantConfig { node_precision: np, ..Default::default() }).unwrap();
    assert_eq!(decision(&r, "m").precision, NodePrecisionKind::Float16);
    assert_eq!(decision(&r, "z").precision, NodePrecisionKind::Float32);
    assert_eq!(decision(&r, "a").precision, NodePrecisionKind::Quantized);
    assert_eq!(constant(&r.graph, "w__fp16").dtype(), DType::F16);
    run(&r.graph, 0);
    let bad = NodePrecision::parse("FP16NodeInstanceNames: [nope]\n", "np.yaml").unwrap();
    let e = apply_precision(&g, Some(&p), &QuantConfig { node_precision: bad, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("`nope`"), "{e}");

    // -convert-to-fp16 alone: everything in fp16, big constants clipped with a warning.
    let mut g2 = graph();
    let wid = g2.find_value("b").unwrap();
    g2.value_mut(wid).constant = Some(Tensor::from_vec(vec![3], vec![1e5f32, 0.0, -2.0]).unwrap());
    let r = apply_precision(&g2, None, &QuantConfig { convert_to_fp16: true, ..Default::default() }).unwrap();
    assert_eq!(r.counts(), (0, 0, 4));
    assert!(r.warnings.iter().any(|w| w.contains("`b`") && w.contains("65504")), "{:?}", r.warnings);
    assert_eq!(constant(&r.graph, "b__fp16").to_vec::<half::f16>().unwrap()[0].to_f32(), 65504.0);
    run(&r.graph, 0);
    // No profile, no fp16: nothing changes.
    let r = apply_precision(&g, None, &QuantConfig::default()).unwrap();
    assert_eq!(r.counts(), (0, 4, 0));
    assert_eq!(r.graph.nodes.len(), 4);
}

#[test]
fn missing_profile_entries_keep_nodes_float() {
    let g = graph();
    let mut p = profile(&g);
    p.entries.remove("a");
    let r = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    for out in ["a", "y"] {
        let d = decision(&r, out);
        assert_eq!(d.precision, NodePrecisionKind::Float32);
        assert!(d.reason.contains("`a`"), "{}", d.reason);
    }
    assert!(p.check_graph(&g, "p.yaml").is_err());
}

#[test]
fn external_quantization_only() {
    let g = graph();
    let ext = ExternalQuantization::parse(
        "- NodeOutputName: a\n  Scale: 0.02\n  Offset: 0\n- NodeOutputName: y\n  Scale: 0.01\n  Offset: -128\n",
        "ext.yaml",
    )
    .unwrap();
    let r = apply_precision(&g, None, &QuantConfig { external: Some(ext), ..Default::default() }).unwrap();
    assert_eq!(decision(&r, "y").precision, NodePrecisionKind::Quantized);
    assert_eq!(decision(&r, "a").precision, NodePrecisionKind::Float32, "Add's inputs m, b have no params");
    assert_eq!(r.params["y"], base::QuantParams { scale: 0.01, offset: -128 });
    run(&r.graph, 0);
    let bad = ExternalQuantization::parse("- NodeOutputName: zz\n  Scale: 1\n  Offset: 0\n", "e").unwrap();
    assert!(apply_precision(&g, None, &QuantConfig { external: Some(bad), ..Default::default() }).unwrap_err().to_string().contains("`zz`"));
}

#[test]
fn quantize_op_uses_glow_rounding() {
    // x/scale = 1.5000001 with offset -55: Glow adds the offset in float32 (-53.4999999 rounds
    // to -53.5, then to even -54); ONNX QuantizeLinear gives round(1.5000001) - 55 = -53.
    let p = base::QuantParams { scale: 1.0, offset: -55 };
    let x = 1.5000001f32;
    assert_eq!(base::quantize(x, p, base::QType::Int8), -54);
    let mut g = Graph::new("q");
    g.set_opset("", 13);
    g.set_opset(DOMAIN, 1);
    let xi = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1])));
    let s = g.add_constant("s", Tensor::scalar(1.0f32));
    let z = g.add_constant("z", Tensor::scalar(-55i8));
    let o = g.add_value("o", None);
    g.add_node(Node { domain: DOMAIN.into(), op_type: "Quantize".into(), inputs: vec![Some(xi), Some(s), Some(z)], outputs: vec![Some(o)], ..Default::default() });
    g.outputs.push(o);
    let plan = Plan::with_registry(g, &registry(), &PlanOptions::default()).unwrap();
    let out = plan.run(vec![Tensor::from_vec(vec![1], vec![x]).unwrap().into()]).unwrap();
    assert_eq!(out[0].as_tensor().unwrap().as_slice::<i8>().unwrap(), &[-54]);
}

#[test]
fn bias_precision_int8() {
    let g = graph();
    let p = profile(&g);
    let r = apply_precision(&g, Some(&p), &QuantConfig { bias_precision: BiasPrecision::Int8, ..Default::default() }).unwrap();
    assert_eq!(constant(&r.graph, "b__q").dtype(), DType::I8);
    assert_eq!(constant(&r.graph, "kb__q").dtype(), DType::I8);
    assert_eq!(constant(&r.graph, "w__q").dtype(), DType::I8);
    for i in 0..3 {
        for (a, b) in run(&g, i).iter().zip(&run(&r.graph, i)) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 0.06, "{x} vs {y}");
            }
        }
    }
}

#[test]
fn calibration_applies_to_activations_only() {
    let g = graph();
    let p = profile(&g);
    let r0 = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    let mut changed = 0;
    for c in Calibration::ALL {
        let r = apply_precision(&g, Some(&p), &QuantConfig { calibration: c, ..Default::default() }).unwrap();
        // Constants (weights, biases) never calibrate.
        for w in ["w", "k", "b", "kb"] {
            assert_eq!(r.params[w], r0.params[w], "{c:?} changed constant {w}");
        }
        if ["x", "a", "y", "c", "z"].iter().any(|t| r.params[*t] != r0.params[*t]) {
            changed += 1;
        }
        run(&r.graph, 1);
    }
    // (This tiny profile has 11 distinct values per tensor; real histograms: see docs/quantization.md.)
    assert!(changed >= 1, "no calibration changed an activation range");
}

#[test]
fn schema_constants_and_activations_are_separate() {
    let g = graph();
    let p = profile(&g);
    let cfg = QuantConfig { schema_constants: Schema::Symmetric, ..Default::default() };
    let r = apply_precision(&g, Some(&p), &cfg).unwrap();
    assert_eq!(r.params["w"].offset, 0, "symmetric weights");
    assert_ne!(r.params["x"].offset, 0, "asymmetric activations");
    let cfg = QuantConfig { schema_activations: Schema::Symmetric, ..Default::default() };
    let r = apply_precision(&g, Some(&p), &cfg).unwrap();
    assert_eq!(r.params["x"].offset, 0);
    assert_ne!(r.params["w"].offset, 0);
}

/// Weights stored as `Cast(int8) × scale` (like minilm_l6_v2_int8) are folded into a float
/// constant before quantization, so they quantize as weights (per row with -enable-rowwise).
#[test]
fn folded_weights_quantize_as_weights() {
    let mut g = Graph::new("t");
    g.set_opset("", 13);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2, 4])));
    let wi = g.add_constant("wi", Tensor::from_vec(vec![4, 3], vec![10i8, -30, 50, 20, -20, 60, 5, 40, -10, 30, 0, 25]).unwrap());
    let s = g.add_constant("s", Tensor::scalar(0.01f32));
    let wf = g.add_value("wf", None);
    let w = g.add_value("w", None);
    let y = g.add_value("y", ty(&[2, 3]));
    let mut cast = node("Cast", &[wi], wf);
    cast.attrs.insert("to".into(), Attr::Int(DType::F32 as i64));
    g.add_node(cast);
    g.add_node(node("Mul", &[wf, s], w));
    g.add_node(node("MatMul", &[x, w], y));
    g.outputs.push(y);
    let p = profile_graph(&g, &ProfileConfig { num_histogram_bins: 64, threads: 1 }, 4, &|i| Ok(vec![input(i).remove(0)]), &|_| {}).unwrap();
    assert!(p.entries.contains_key("w"), "the profile is taken on the original graph");
    let r = apply_precision(&g, Some(&p), &QuantConfig { rowwise: true, ..Default::default() }).unwrap();
    assert_eq!(r.decisions.len(), 1, "Cast and Mul were folded: {:?}", r.decisions);
    assert_eq!(constant(&r.graph, "w__q").dtype(), DType::I8);
    assert_eq!(constant(&r.graph, "w__scale").shape(), &[3]);
    let plan = Plan::with_registry(r.graph.clone(), &registry(), &PlanOptions::default()).unwrap();
    let fplan = Plan::new(g.clone()).unwrap();
    let q = plan.run(vec![input(1).remove(0)]).unwrap()[0].as_tensor().unwrap().to_vec::<f32>().unwrap();
    let f = fplan.run(vec![input(1).remove(0)]).unwrap()[0].as_tensor().unwrap().to_vec::<f32>().unwrap();
    for (a, b) in f.iter().zip(&q) {
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
    }
}

/// An attention-mask tensor profiled down to −FLT_MAX is not quantized (it would put every real
/// value on one step): its producer and readers stay float.
#[test]
fn masking_ranges_stay_float() {
    let g = graph();
    let mut p = profile(&g);
    p.entries.get_mut("a").unwrap().min = f32::MIN;
    let r = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    for out in ["a", "y"] {
        let d = decision(&r, out);
        assert_eq!(d.precision, NodePrecisionKind::Float32, "{d:?}");
        assert!(d.reason.contains("masking range"), "{}", d.reason);
    }
    assert_eq!(decision(&r, "z").precision, NodePrecisionKind::Quantized);
}

/// A Gather from a constant table (embedding lookup) keeps the table's params for its output,
/// whatever the output's profile and calibration say, so looked-up values are exact table values.
#[test]
fn gather_from_a_constant_table_keeps_the_table_params() {
    let mut g = Graph::new("t");
    g.set_opset("", 13);
    let ids = g.add_input("ids", ValueType::tensor(DType::I64, Shape::known(&[3])));
    let table: Vec<f32> = (0..12).map(|i| (i as f32 - 5.0) * 0.37).collect();
    let t = g.add_constant("table", Tensor::from_vec(vec![4, 3], table.clone()).unwrap());
    let e = g.add_value("e", ty(&[3, 3]));
    let y = g.add_value("y", ty(&[3, 3]));
    g.add_node(node("Gather", &[t, ids], e));
    g.add_node(node("Relu", &[e], y));
    g.outputs.push(y);
    let ids_in = |i: usize| -> Vec<Value> { vec![Tensor::from_vec(vec![3], vec![(i % 4) as i64, 1, 3]).unwrap().into()] };
    let p = profile_graph(&g, &ProfileConfig { num_histogram_bins: 256, threads: 1 }, 4, &|i| Ok(ids_in(i)), &|_| {}).unwrap();
    for c in [Calibration::None, Calibration::Percentile] {
        let cfg = QuantConfig { calibration: c, percentile: 90.0, ..Default::default() };
        let r = apply_precision(&g, Some(&p), &cfg).unwrap();
        assert_eq!(decision(&r, "e").precision, NodePrecisionKind::Quantized);
        assert_eq!(r.params["e"], r.params["table"], "{c:?}");
        let plan = Plan::with_registry(r.graph.clone(), &registry(), &PlanOptions::default()).unwrap();
        let out = plan.run(ids_in(2)).unwrap().remove(0).into_tensor().unwrap().to_vec::<f32>().unwrap();
        // Row 2 then rows 1 and 3 of the table, each quantized once with the table's params.
        let pt = r.params["table"];
        for (k, &v) in out.iter().enumerate() {
            let row = [2, 1, 3][k / 3];
            let want = crate::base::dequantize(crate::base::quantize(table[row * 3 + k % 3], pt, crate::base::QType::Int8), pt).max(0.0);
            let pyv = r.params["y"];
            let want = crate::base::dequantize(crate::base::quantize(want, pyv, crate::base::QType::Int8), pyv);
            assert_eq!(v, want, "element {k}");
        }
    }
}

#[test]
fn matrix_ops_run_on_integer_kernels() {
    let g = graph();
    let p = profile(&g);
    let schemas = [(Schema::Asymmetric, false), (Schema::SymmetricWithUint8, false), (Schema::Symmetric, true)];
    for (schema, per_channel) in schemas {
        let cfg = QuantConfig {
            schema_activations: schema,
            schema_constants: schema,
            rowwise: per_channel,
            channelwise: per_channel,
            ..Default::default()
        };
        let r = apply_precision(&g, Some(&p), &cfg).unwrap();
        assert_eq!(r.integer_ops, 2, "{schema:?}: MatMul + its bias Add, and Conv");
        let ops: Vec<&str> = r.graph.nodes.iter().filter(|n| n.domain == DOMAIN).map(|n| n.op_type.as_str()).collect();
        assert!(ops.contains(&QCONV_OP) && ops.contains(&QMATMUL_OP), "{ops:?}");
        assert!(!r.graph.nodes.iter().any(|n| matches!(n.op_type.as_str(), "Conv" | "MatMul")), "{schema:?}");
        let float_form = apply_precision(&g, Some(&p), &QuantConfig { integer_ops: false, ..cfg.clone() }).unwrap();
        assert_eq!(float_form.integer_ops, 0);
        // Integer arithmetic and the QDQ form differ only where float accumulation moves a value
        // across a rounding boundary: at most one step of the output's scale.
        let steps = [r.params["a"].scale, r.params["z"].scale];
        let (mut same, mut total) = (0, 0);
        for i in 0..6 {
            let (a, b) = (run(&r.graph, i), run(&float_form.graph, i));
            for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                for (u, v) in x.iter().zip(y) {
                    assert!((u - v).abs() <= steps[k] * 1.001, "{schema:?} output {k}: {u} vs {v} (step {})", steps[k]);
                    same += usize::from(u == v);
                    total += 1;
                }
            }
        }
        assert!(same * 10 >= total * 9, "{schema:?}: only {same} of {total} equal");
        // The graph the report reads still has every original tensor name.
        for name in ["m", "a", "z"] {
            assert!(name == "m" || r.graph.find_value(name).is_some(), "{name}");
        }
    }
    // Int16 keeps the QDQ form (16-bit products could overflow the i32 accumulator).
    let r = apply_precision(&g, Some(&p), &QuantConfig { precision: Precision::Int16, ..Default::default() }).unwrap();
    assert_eq!(r.integer_ops, 0);
}

#[test]
fn integer_conv_is_glows_arithmetic() {
    // One output channel, per-tensor: check y against Glow's formula computed here in scalar.
    let g = graph();
    let p = profile(&g);
    let r = apply_precision(&g, Some(&p), &QuantConfig::default()).unwrap();
    let qc = r.graph.nodes.iter().find(|n| n.op_type == QCONV_OP).unwrap();
    let c = |i: usize| r.graph.value(qc.inputs[i].unwrap()).constant.clone().unwrap();
    let w = c(1).to_vec::<i8>().unwrap();
    let bias = c(2).to_vec::<i32>().unwrap();
    let mult = c(3).to_vec::<f32>().unwrap();
    let wz = c(4).to_vec::<i8>().unwrap();
    let xz = c(5).to_vec::<i8>().unwrap()[0] as i32;
    let yz = c(6).to_vec::<i8>().unwrap()[0] as i32;
    // Multiplier and bias follow the documented formulas from the params.
    let (sx, sz, sk) = (r.params["c"].scale, r.params["z"].scale, r.params["k"].scale);
    assert_eq!(mult[0], (sk * sx) / sz);
    assert_eq!(bias, constant(&r.graph, "kb__q").to_vec::<i32>().unwrap(), "Int32 bias already has scale x*w");
    let plan = Plan::with_registry(r.graph.clone(), &registry(), &PlanOptions { keep: vec!["c__q".into(), "z__q".into()], ..Default::default() }).unwrap();
    let mut seen: std::collections::HashMap<String, Vec<i8>> = Default::default();
    plan.run_observed(input(2), &mut |gr, id, v| {
        let n = &gr.value(id).name;
        if n == "c__q" || n == "z__q" {
            seen.insert(n.clone(), v.as_tensor().unwrap().to_vec::<i8>().unwrap());
        }
    })
    .unwrap();
    let (x, y) = (&seen["c__q"], &seen["z__q"]);
    for m in 0..3 {
        for s in 0..4 {
            let acc: i32 = (0..2).map(|ch| (x[ch * 4 + s] as i32 - xz) * (w[m * 2 + ch] as i32 - wz[m] as i32)).sum();
            let v = (((acc + bias[m]) as f32 * mult[m]).round() as i32 + yz).clamp(-128, 127);
            assert_eq!(y[m * 4 + s] as i32, v, "channel {m} position {s}");
        }
    }
}
