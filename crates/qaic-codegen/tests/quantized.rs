//! Quantized graphs in qaic-quant's QDQ form (`qaic.quant.Quantize` with Glow rounding,
//! `DequantizeLinear`) compile for the device and give the interpreter's bits on the simulator.

use qaic_codegen::{CodegenOptions, compile};
use qaic_device::{DeviceModel, Variant};
use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_sim::Simulator;
use qaic_tensor::{DType, Shape, Tensor, Value};

fn vt(d: DType, s: &[usize]) -> Option<ValueType> {
    Some(ValueType::tensor(d, Shape::known(s)))
}

struct B {
    g: Graph,
    n: usize,
}

impl B {
    fn node(&mut self, domain: &str, op: &str, inputs: &[ValueId], out: Option<ValueType>, attrs: &[(&str, Attr)]) -> ValueId {
        self.n += 1;
        let y = self.g.add_value(format!("v{}", self.n), out);
        let mut n = Node { name: format!("{op}_{}", self.n), op_type: op.into(), domain: domain.into(), ..Default::default() };
        n.inputs = inputs.iter().map(|&i| Some(i)).collect();
        n.outputs = vec![Some(y)];
        for (k, v) in attrs {
            n.attrs.insert(k.to_string(), v.clone());
        }
        self.g.add_node(n);
        y
    }
    fn cst(&mut self, t: Tensor) -> ValueId {
        self.n += 1;
        self.g.add_constant(format!("c{}", self.n), t)
    }
    /// Quantize then dequantize `x` (int8 with zero point `zp`, or uint8).
    fn qdq(&mut self, x: ValueId, s: &[usize], scale: f32, zp: i32, u8: bool) -> ValueId {
        let sc = self.cst(Tensor::from_vec(vec![], vec![scale]).unwrap());
        let (z, d) = if u8 {
            (self.cst(Tensor::from_vec(vec![], vec![zp as u8]).unwrap()), DType::U8)
        } else {
            (self.cst(Tensor::from_vec(vec![], vec![zp as i8]).unwrap()), DType::I8)
        };
        let q = self.node(qaic_quant::DOMAIN, "Quantize", &[x, sc, z], vt(d, s), &[]);
        self.node("", "DequantizeLinear", &[q, sc, z], vt(DType::F32, s), &[])
    }
}

/// x → QDQ → Conv → Relu → QDQ → Conv → QDQ → y, the shape of a quantized conv chain.
fn quantized_net() -> Graph {
    let mut g = Graph::new("qnet");
    g.set_opset("", 17);
    g.set_opset(qaic_quant::DOMAIN, 1);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 8, 10, 10])));
    let mut b = B { g, n: 0 };
    let mut cur = b.qdq(x, &[1, 8, 10, 10], 0.02, -3, false);
    for (i, (cin, cout)) in [(8usize, 16usize), (16, 8)].into_iter().enumerate() {
        // Weights as the quantizer leaves them: int8 constants behind a DequantizeLinear
        // (folded to float32 at compile time, as the interpreter folds them).
        let wq: Vec<i8> = (0..cout * cin * 9).map(|j| ((j * 37 + i * 11) % 255) as i32 - 127).map(|v| v as i8).collect();
        let w = b.cst(Tensor::from_vec(vec![cout, cin, 3, 3], wq).unwrap());
        let ws = b.cst(Tensor::from_vec(vec![], vec![0.004f32]).unwrap());
        let wz = b.cst(Tensor::from_vec(vec![], vec![0i8]).unwrap());
        let wd = b.node("", "DequantizeLinear", &[w, ws, wz], vt(DType::F32, &[cout, cin, 3, 3]), &[]);
        let bias = b.cst(Tensor::from_vec(vec![cout], (0..cout).map(|j| j as f32 * 0.01 - 0.05).collect::<Vec<f32>>()).unwrap());
        let s = [1, cout, 10, 10];
        cur = b.node("", "Conv", &[cur, wd, bias], vt(DType::F32, &s), &[("pads", Attr::Ints(vec![1, 1, 1, 1])), ("kernel_shape", Attr::Ints(vec![3, 3]))]);
        if i == 0 {
            cur = b.node("", "Relu", &[cur], vt(DType::F32, &s), &[]);
            cur = b.qdq(cur, &s, 0.03, 0, true);
        } else {
            cur = b.qdq(cur, &s, 0.05, 5, false);
        }
    }
    b.g.outputs = vec![cur];
    b.g
}

#[test]
fn quantized_conv_chain_is_bit_exact_with_the_interpreter() {
    let g = quantized_net();
    let x: Vec<f32> = (0..800).map(|i| ((i * 53) % 97) as f32 / 40.0 - 1.2).collect();
    let xt = Tensor::from_vec(vec![1, 8, 10, 10], x).unwrap();
    let plan = qaic_interp::Plan::with_registry(g.clone(), &qaic_quant::registry(), &qaic_interp::PlanOptions::default()).unwrap();
    let want = plan.run(vec![Value::from(xt.clone())]).unwrap().remove(0).into_tensor().unwrap().to_vec::<f32>().unwrap();
    for cores in [1u32, 4] {
        let c = compile(&g, &DeviceModel::aic100(Variant::Pro16), &CodegenOptions { num_cores: cores, ..Default::default() }).unwrap();
        let listing = c.program.listing();
        assert!(listing.contains("op QuantizeGlow") && listing.contains("op DequantizeLinear"), "{listing}");
        assert!(listing.contains(" i8[") || listing.contains(" u8["), "int8 tiles travel as int8: {listing}");
        let sim = Simulator::new(c.program.clone(), c.constants.clone(), DeviceModel::aic100(Variant::Pro16)).unwrap();
        let run = sim.run(&[xt.raw_bytes().unwrap().to_vec()]).unwrap();
        let got: Vec<f32> = run.outputs[0].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&got), bits(&want), "{cores} cores");
    }
}

#[test]
fn per_axis_quantization_is_refused_naming_the_node() {
    let mut g = Graph::new("qaxis");
    g.set_opset("", 17);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 2, 4, 4])));
    let mut b = B { g, n: 0 };
    let sc = b.cst(Tensor::from_vec(vec![2], vec![0.1f32, 0.2]).unwrap());
    let z = b.cst(Tensor::from_vec(vec![2], vec![0i8, 0]).unwrap());
    let q = b.node("", "QuantizeLinear", &[x, sc, z], vt(DType::I8, &[1, 2, 4, 4]), &[]);
    let y = b.node("", "DequantizeLinear", &[q, sc, z], vt(DType::F32, &[1, 2, 4, 4]), &[]);
    b.g.outputs = vec![y];
    let e = compile(&b.g, &DeviceModel::aic100(Variant::Pro16), &CodegenOptions::default()).unwrap_err().to_string();
    assert!(e.contains("QuantizeLinear") && e.contains("DequantizeLinear"), "{e}");
}

/// Float x[1,4,9,9] → Conv 3x3 → Relu → residual block (Conv 3x3, Add, Relu) → MaxPool → depthwise Conv
/// 3x3 (stride 2) → Conv 1x1 → Clip → Reshape → MatMul + Add: quantized by qaic-quant, its
/// matrix ops become `qaic.quant.QConv` / `QMatMul`, its Relu/Clip and residual Add float
/// islands the device's 8-bit `QTable` / `QBinaryGlow`.
fn float_net() -> Graph {
    let mut g = Graph::new("fnet");
    g.set_opset("", 17);
    let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 4, 9, 9])));
    let mut b = B { g, n: 0 };
    let f = |n: usize, k: usize| (0..n).map(|j| (((j * 31 + k * 7) % 23) as f32 - 11.0) / 40.0).collect::<Vec<f32>>();
    let w1 = b.cst(Tensor::from_vec(vec![8, 4, 3, 3], f(288, 1)).unwrap());
    let b1 = b.cst(Tensor::from_vec(vec![8], f(8, 2)).unwrap());
    let pads = ("pads", Attr::Ints(vec![1, 1, 1, 1]));
    let c1 = b.node("", "Conv", &[x, w1, b1], vt(DType::F32, &[1, 8, 9, 9]), &[pads.clone()]);
    let r1 = b.node("", "Relu", &[c1], vt(DType::F32, &[1, 8, 9, 9]), &[]);
    // A residual block: Conv → Add(·, r1) → Relu, as in ResNet.
    let w1b = b.cst(Tensor::from_vec(vec![8, 8, 3, 3], f(576, 8)).unwrap());
    let c1b = b.node("", "Conv", &[r1, w1b], vt(DType::F32, &[1, 8, 9, 9]), &[pads.clone()]);
    let sum = b.node("", "Add", &[c1b, r1], vt(DType::F32, &[1, 8, 9, 9]), &[]);
    let r2 = b.node("", "Relu", &[sum], vt(DType::F32, &[1, 8, 9, 9]), &[]);
    let mp = b.node("", "MaxPool", &[r2], vt(DType::F32, &[1, 8, 9, 9]), &[("kernel_shape", Attr::Ints(vec![3, 3])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let w2 = b.cst(Tensor::from_vec(vec![8, 1, 3, 3], f(72, 3)).unwrap());
    let c2 = b.node("", "Conv", &[mp, w2], vt(DType::F32, &[1, 8, 5, 5]), &[pads, ("group", Attr::Int(8)), ("strides", Attr::Ints(vec![2, 2]))]);
    let w3 = b.cst(Tensor::from_vec(vec![6, 8, 1, 1], f(48, 4)).unwrap());
    let b3 = b.cst(Tensor::from_vec(vec![6], f(6, 5)).unwrap());
    let c3 = b.node("", "Conv", &[c2, w3, b3], vt(DType::F32, &[1, 6, 5, 5]), &[]);
    let (lo, hi) = (b.cst(Tensor::from_vec(vec![], vec![-0.1f32]).unwrap()), b.cst(Tensor::from_vec(vec![], vec![0.2f32]).unwrap()));
    let cl = b.node("", "Clip", &[c3, lo, hi], vt(DType::F32, &[1, 6, 5, 5]), &[]);
    let shape = b.cst(Tensor::from_vec(vec![2], vec![1i64, 150]).unwrap());
    let fl = b.node("", "Reshape", &[cl, shape], vt(DType::F32, &[1, 150]), &[]);
    let w4 = b.cst(Tensor::from_vec(vec![150, 5], f(750, 6)).unwrap());
    let mm = b.node("", "MatMul", &[fl, w4], vt(DType::F32, &[1, 5]), &[]);
    let b4 = b.cst(Tensor::from_vec(vec![5], f(5, 7)).unwrap());
    let y = b.node("", "Add", &[mm, b4], vt(DType::F32, &[1, 5]), &[]);
    b.g.outputs = vec![y];
    b.g
}

fn sample(i: usize) -> Tensor {
    Tensor::from_vec(vec![1, 4, 9, 9], (0..324).map(|j| ((j * 53 + i * 17) % 97) as f32 / 30.0 - 1.5).collect::<Vec<f32>>()).unwrap()
}

#[test]
fn integer_matrix_ops_are_bit_exact_with_the_interpreter() {
    use qaic_quant::{apply_precision, profile_graph, ProfileConfig, QuantConfig, Schema};
    let g = float_net();
    let prof = profile_graph(&g, &ProfileConfig { num_histogram_bins: 64, threads: 1 }, 4, &|i| Ok(vec![Value::from(sample(i))]), &|_| {}).unwrap();
    for (schema, per_channel) in [(Schema::Asymmetric, false), (Schema::SymmetricWithUint8, true)] {
        let cfg = QuantConfig { schema_activations: schema, schema_constants: schema, channelwise: per_channel, rowwise: per_channel, ..Default::default() };
        let r = apply_precision(&g, Some(&prof), &cfg).unwrap();
        assert_eq!(r.integer_ops, 5, "{schema:?}: four convolutions and the MatMul");
        let mut q = r.graph;
        q.prune(&[]);
        let plan = qaic_interp::Plan::with_registry(q.clone(), &qaic_quant::registry(), &qaic_interp::PlanOptions::default()).unwrap();
        for cores in [1u32, 4] {
            let c = compile(&q, &DeviceModel::aic100(Variant::Pro16), &CodegenOptions { num_cores: cores, ..Default::default() }).unwrap();
            let listing = c.program.listing();
            assert!(listing.contains("op QConvGlow") && listing.contains("op QMatMulGlow"), "{listing}");
            // The Relu/Clip islands and the residual sum run as 8-bit ops, not in float.
            assert!(listing.contains("op QTable") && listing.contains("op QBinaryGlow"), "{listing}");
            assert!(!listing.contains("op Relu") && !listing.contains("op Add") && !listing.contains("op Clip"), "{listing}");
            // The max pool pools the 8-bit codes.
            assert!(listing.contains("op MaxPool i8") || listing.contains("op MaxPool u8"), "{listing}");
            let sim = Simulator::new(c.program.clone(), c.constants.clone(), DeviceModel::aic100(Variant::Pro16)).unwrap();
            for i in 0..3 {
                let xt = sample(10 + i);
                let want = plan.run(vec![Value::from(xt.clone())]).unwrap().remove(0).into_tensor().unwrap().to_vec::<f32>().unwrap();
                let run = sim.run(&[xt.raw_bytes().unwrap().to_vec()]).unwrap();
                let got: Vec<f32> = run.outputs[0].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                assert_eq!(bits(&got), bits(&want), "{schema:?}, {cores} cores, sample {i}");
            }
        }
    }
}

#[test]
fn fp16_programs_give_the_interpreters_results() {
    use qaic_quant::{apply_precision, QuantConfig};
    let g = float_net();
    let r = apply_precision(&g, None, &QuantConfig { convert_to_fp16: true, ..Default::default() }).unwrap();
    let q = r.graph;
    let plan = qaic_interp::Plan::with_registry(q.clone(), &qaic_quant::registry(), &qaic_interp::PlanOptions::default()).unwrap();
    for cores in [1u32, 4] {
        let c = compile(&q, &DeviceModel::aic100(Variant::Pro16), &CodegenOptions { num_cores: cores, ..Default::default() }).unwrap();
        let listing = c.program.listing();
        assert!(listing.contains("op Conv f16") && listing.contains("op Cast"), "{listing}");
        let sim = Simulator::new(c.program.clone(), c.constants.clone(), DeviceModel::aic100(Variant::Pro16)).unwrap();
        for i in 0..3 {
            let xt = sample(20 + i);
            let want = plan.run(vec![Value::from(xt.clone())]).unwrap().remove(0).into_tensor().unwrap().to_vec::<f32>().unwrap();
            let run = sim.run(&[xt.raw_bytes().unwrap().to_vec()]).unwrap();
            let got: Vec<f32> = run.outputs[0].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            // Each op rounds its result to float16 once on both sides; the float32 accumulation
            // order may differ, which moves a result by at most one float16 step.
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= b.abs() * 2.0f32.powi(-10) + 1e-6, "{cores} cores, sample {i}: {a} vs {b}");
            }
        }
    }
    // -convert-to-fp16 is the caller's graph pass: the option alone is refused with that advice.
    let e = compile(&g, &DeviceModel::aic100(Variant::Pro16), &CodegenOptions { convert_to_fp16: true, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("apply_precision"), "{e}");
}
