//! Plan-time rewrites (constant folding, BatchNormalization and activations into Conv, bias
//! into MatMul): the optimised plan computes what the reference plan computes, removes the
//! nodes it says it removes, and never removes a value someone asked for.

use qaic_interp::{Plan, PlanOptions, Registry};
use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_tensor::{DType, Shape, Tensor, Value};

fn node(g: &mut Graph, op: &str, inputs: &[ValueId], out: &str, attrs: &[(&str, Attr)]) -> ValueId {
    let y = g.add_value(out, None);
    g.add_node(Node {
        name: out.to_string(),
        op_type: op.to_string(),
        inputs: inputs.iter().map(|i| Some(*i)).collect(),
        outputs: vec![Some(y)],
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        ..Default::default()
    });
    y
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn plan(g: &Graph, optimize: bool, keep: &[&str]) -> Plan {
    let options = PlanOptions { keep: keep.iter().map(|s| s.to_string()).collect(), optimize };
    Plan::with_registry(g.clone(), &Registry::standard(), &options).unwrap()
}

fn run(p: &Plan, x: &Tensor) -> Vec<f32> {
    let out = p.run(vec![Value::Tensor(x.clone())]).unwrap();
    out[0].as_tensor().unwrap().to_vec::<f32>().unwrap()
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "element {i}: {x} vs {y}");
    }
}

/// Conv -> BatchNormalization -> activation, for each activation the epilogue runs.
#[test]
fn conv_batchnorm_activation_fuse_into_one_conv() {
    let acts: Vec<(&str, Vec<(&str, Attr)>)> = vec![
        ("Relu", vec![]),
        ("HardSwish", vec![]),
        ("HardSigmoid", vec![("alpha", Attr::Float(0.3)), ("beta", Attr::Float(0.4))]),
        ("LeakyRelu", vec![("alpha", Attr::Float(0.1))]),
    ];
    for (act, attrs) in acts {
        let mut g = Graph::new("t");
        g.set_opset("", 17);
        let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 3, 6, 5])));
        let w = g.add_constant("w", Tensor::from_vec(vec![4, 3, 3, 3], values(108, 1)).unwrap());
        let b = g.add_constant("b", Tensor::from_vec(vec![4], values(4, 2)).unwrap());
        let c = node(&mut g, "Conv", &[x, w, b], "c", &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        let scale = g.add_constant("scale", Tensor::from_vec(vec![4], vec![1.5f32, -0.5, 2.0, 0.7]).unwrap());
        let bias = g.add_constant("bias", Tensor::from_vec(vec![4], values(4, 3)).unwrap());
        let mean = g.add_constant("mean", Tensor::from_vec(vec![4], values(4, 4)).unwrap());
        let var = g.add_constant("var", Tensor::from_vec(vec![4], vec![0.5f32, 1.0, 2.0, 0.1]).unwrap());
        let bn = node(&mut g, "BatchNormalization", &[c, scale, bias, mean, var], "bn", &[]);
        let y = node(&mut g, act, &[bn], "y", &attrs);
        g.outputs.push(y);
        let xin = Tensor::from_vec(vec![1, 3, 6, 5], values(90, 5)).unwrap();
        let reference = plan(&g, false, &[]);
        let fused = plan(&g, true, &[]);
        assert_eq!(reference.graph().nodes.len(), 3);
        assert_eq!(fused.graph().nodes.len(), 1, "{act}: {:?}", fused.graph().nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>());
        assert_close(&run(&fused, &xin), &run(&reference, &xin));
        // A kept intermediate stays: nothing is fused across it.
        let kept = plan(&g, true, &["bn"]);
        assert_eq!(kept.graph().nodes.len(), 2, "{act}");
        assert_close(&run(&kept, &xin), &run(&reference, &xin));
    }
}

#[test]
fn matmul_bias_fuses_and_constants_fold() {
    let mut g = Graph::new("t");
    g.set_opset("", 17);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2, 3, 8])));
    // Weights stored as int8 and dequantized by Cast * scale, as quantized exports do.
    let q: Vec<i8> = values(48, 7).iter().map(|v| (v * 100.0) as i8).collect();
    let wq = g.add_constant("wq", Tensor::from_vec(vec![8, 6], q).unwrap());
    let wf = node(&mut g, "Cast", &[wq], "wf", &[("to", Attr::Int(1))]);
    let s = g.add_constant("s", Tensor::scalar(0.01f32));
    let w = node(&mut g, "Mul", &[wf, s], "w", &[]);
    let m = node(&mut g, "MatMul", &[x, w], "m", &[]);
    let bias = g.add_constant("bias", Tensor::from_vec(vec![6], values(6, 8)).unwrap());
    let y = node(&mut g, "Add", &[bias, m], "y", &[]);
    g.outputs.push(y);
    let xin = Tensor::from_vec(vec![2, 3, 8], values(48, 9)).unwrap();
    let reference = plan(&g, false, &[]);
    let fast = plan(&g, true, &[]);
    assert_eq!(fast.graph().nodes.len(), 1);
    assert_eq!(fast.graph().nodes[0].op_type, "MatMul");
    assert_close(&run(&fast, &xin), &run(&reference, &xin));
    // Observers still see the folded values.
    let mut seen = Vec::new();
    fast.run_observed(vec![Value::Tensor(xin)], &mut |g, id, _| seen.push(g.value(id).name.clone())).unwrap();
    for name in ["wf", "w", "y"] {
        assert!(seen.iter().any(|s| s == name), "{name} not observed: {seen:?}");
    }
}

/// A constant node that fails is not folded: the run reports it, in context.
#[test]
fn failing_constant_node_fails_at_run_time_with_its_name() {
    let mut g = Graph::new("t");
    g.set_opset("", 17);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[4])));
    let c = g.add_constant("c", Tensor::from_vec(vec![4], vec![1f32, 2., 3., 4.]).unwrap());
    let bad = g.add_constant("bad_shape", Tensor::from_vec(vec![1], vec![3i64]).unwrap());
    let r = node(&mut g, "Reshape", &[c, bad], "bad_reshape", &[]);
    let y = node(&mut g, "Add", &[x, r], "y", &[]);
    g.outputs.push(y);
    let p = plan(&g, true, &[]);
    let e = p.run(vec![Value::Tensor(Tensor::from_vec(vec![4], vec![0f32; 4]).unwrap())]).unwrap_err();
    assert!(e.to_string().contains("bad_reshape"), "{e}");
}

/// An initializer listed among the graph inputs (IR version < 4) is a default the caller may
/// override: nothing is folded or packed from it.
#[test]
fn overridable_initializers_are_not_folded() {
    let mut g = Graph::new("t");
    g.set_opset("", 17);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[2, 3])));
    let w = g.add_constant("w", Tensor::from_vec(vec![3, 2], vec![1f32; 6]).unwrap());
    g.inputs.push(w);
    let two = g.add_constant("two", Tensor::scalar(2f32));
    let w2 = node(&mut g, "Mul", &[w, two], "w2", &[]);
    let y = node(&mut g, "MatMul", &[x, w2], "y", &[]);
    g.outputs.push(y);
    let p = plan(&g, true, &[]);
    let xin = Value::Tensor(Tensor::from_vec(vec![2, 3], vec![1f32; 6]).unwrap());
    let default = p.run(vec![xin.clone()]).unwrap();
    assert_eq!(default[0].as_tensor().unwrap().to_vec::<f32>().unwrap(), vec![6f32; 4]);
    let other = Value::Tensor(Tensor::from_vec(vec![3, 2], vec![0.5f32; 6]).unwrap());
    let fed = p.run(vec![xin, other]).unwrap();
    assert_eq!(fed[0].as_tensor().unwrap().to_vec::<f32>().unwrap(), vec![3f32; 4]);
}

/// Exporters write the bias as its own Add and HardSwish as `x * Clip(x + 3, 0, 6) / 6`:
/// both end up in one Conv, at opsets with and without a HardSwish op.
#[test]
fn separate_bias_and_written_out_hard_swish_fuse_into_conv() {
    for opset in [13, 17] {
        let mut g = Graph::new("t");
        g.set_opset("", opset);
        let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 3, 5, 5])));
        let w = g.add_constant("w", Tensor::from_vec(vec![4, 3, 3, 3], values(108, 11)).unwrap());
        let c = node(&mut g, "Conv", &[x, w], "c", &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        let b = g.add_constant("b", Tensor::from_vec(vec![1, 4, 1, 1], values(4, 12)).unwrap());
        let xb = node(&mut g, "Add", &[c, b], "xb", &[]);
        let three = g.add_constant("three", Tensor::scalar(3f32));
        let zero = g.add_constant("zero", Tensor::scalar(0f32));
        let six = g.add_constant("six", Tensor::scalar(6f32));
        let a3 = node(&mut g, "Add", &[xb, three], "a3", &[]);
        let cl = node(&mut g, "Clip", &[a3, zero, six], "cl", &[]);
        let m = node(&mut g, "Mul", &[xb, cl], "m", &[]);
        let y = node(&mut g, "Div", &[m, six], "y", &[]);
        g.outputs.push(y);
        let xin = Tensor::from_vec(vec![1, 3, 5, 5], values(75, 13).iter().map(|v| v * 4.0).collect()).unwrap();
        let reference = plan(&g, false, &[]);
        let fused = plan(&g, true, &[]);
        assert_eq!(fused.graph().nodes.len(), 1, "opset {opset}: {:?}", fused.graph().nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>());
        assert_close(&run(&fused, &xin), &run(&reference, &xin));
    }
}

/// PP-LCNet's "learnable affine" blocks: `Conv -> Mul(scalar) -> Add(scalar)` and per-channel
/// scales fold into the Conv's weights and bias; a constant that would broadcast the output
/// to another shape does not.
#[test]
fn scalar_and_channel_affine_fold_into_conv() {
    let build = |scale_shape: Vec<usize>, scale: Vec<f32>| {
        let mut g = Graph::new("t");
        g.set_opset("", 12);
        let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 3, 5, 5])));
        let w = g.add_constant("w", Tensor::from_vec(vec![4, 3, 3, 3], values(108, 21)).unwrap());
        let b = g.add_constant("b", Tensor::from_vec(vec![4], values(4, 22)).unwrap());
        let c = node(&mut g, "Conv", &[x, w, b], "c", &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
        let s = g.add_constant("s", Tensor::from_vec(scale_shape, scale).unwrap());
        let m = node(&mut g, "Mul", &[s, c], "m", &[]);
        let t = g.add_constant("t", Tensor::from_vec(vec![1], vec![0.25f32]).unwrap());
        let a = node(&mut g, "Add", &[m, t], "a", &[]);
        let y = node(&mut g, "Relu", &[a], "y", &[]);
        g.outputs.push(y);
        g
    };
    let xin = Tensor::from_vec(vec![1, 3, 5, 5], values(75, 23)).unwrap();
    for (shape, scale, fused_nodes) in [
        (vec![1], vec![-1.5f32], 1),
        (vec![], vec![0.5f32], 1),
        (vec![4, 1, 1], vec![1.0f32, -2.0, 0.5, 3.0], 1),
        // [1, 1, 1, 1, 1] would make the output rank 5: left alone.
        (vec![1, 1, 1, 1, 1], vec![2.0f32], 4),
    ] {
        let g = build(shape.clone(), scale);
        let reference = plan(&g, false, &[]);
        let fused = plan(&g, true, &[]);
        assert_eq!(fused.graph().nodes.len(), fused_nodes, "{shape:?}: {:?}", fused.graph().nodes.iter().map(|n| &n.op_type).collect::<Vec<_>>());
        assert_close(&run(&fused, &xin), &run(&reference, &xin));
    }
}
