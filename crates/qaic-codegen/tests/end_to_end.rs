//! Compile small graphs, run them on the simulator and compare with the interpreter; check
//! that options move the figures in the documented direction with outputs unchanged.

use qaic_codegen::{compile, CodegenError, CodegenOptions, Compiled};
use qaic_device::{DeviceModel, Variant};
use qaic_ir::{Attr, Graph, Node, ValueId, ValueType};
use qaic_sim::{SimRun, Simulator};
use qaic_tensor::{DType, Shape, Tensor, Value};
use rand::{Rng, SeedableRng};

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

fn randn(r: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| (r.random::<f32>() - 0.5) * 2.0 * scale).collect()
}

struct B {
    g: Graph,
    r: rand::rngs::StdRng,
    n: usize,
}

impl B {
    fn new(name: &str) -> B {
        let mut g = Graph::new(name);
        g.set_opset("", 17);
        B { g, r: rng(), n: 0 }
    }
    fn input(&mut self, name: &str, s: &[usize]) -> ValueId {
        self.g.add_input(name, ValueType::tensor(DType::F32, Shape::known(s)))
    }
    fn cst(&mut self, s: &[usize], scale: f32) -> ValueId {
        self.n += 1;
        let n: usize = s.iter().product();
        let v = randn(&mut self.r, n, scale);
        self.g.add_constant(format!("c{}", self.n), Tensor::from_vec(s.to_vec(), v).unwrap())
    }
    fn node(&mut self, op: &str, inputs: &[ValueId], attrs: &[(&str, Attr)]) -> ValueId {
        self.n += 1;
        let y = self.g.add_value(format!("v{}", self.n), None);
        let mut n = Node { name: format!("{op}_{}", self.n), op_type: op.into(), ..Default::default() };
        n.inputs = inputs.iter().map(|&i| Some(i)).collect();
        n.outputs = vec![Some(y)];
        for (k, v) in attrs {
            n.attrs.insert(k.to_string(), v.clone());
        }
        self.g.add_node(n);
        y
    }
    fn conv(&mut self, x: ValueId, cin: usize, cout: usize, k: usize, stride: usize, group: usize) -> ValueId {
        let w = self.cst(&[cout, cin / group, k, k], (2.0 / (cin * k * k) as f32).sqrt());
        let b = self.cst(&[cout], 0.1);
        let p = (k / 2) as i64;
        self.node(
            "Conv",
            &[x, w, b],
            &[("pads", Attr::Ints(vec![p, p, p, p])), ("strides", Attr::Ints(vec![stride as i64; 2])), ("group", Attr::Int(group as i64))],
        )
    }
    fn finish(mut self, outs: &[ValueId]) -> Graph {
        self.g.outputs = outs.to_vec();
        self.g
    }
}

fn dev() -> DeviceModel {
    DeviceModel::aic100(Variant::Pro16)
}

fn inputs_for(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    g.inputs
        .iter()
        .map(|&v| {
            let s = g.value(v).ty.as_ref().unwrap().tensor_shape().unwrap().concrete().unwrap();
            let n = s.iter().product();
            Tensor::from_vec(s, randn(&mut r, n, 1.0)).unwrap()
        })
        .collect()
}

fn interp(g: &Graph, ins: &[Tensor]) -> Vec<Vec<f32>> {
    let plan = qaic_interp::Plan::new(g.clone()).unwrap();
    plan.run(ins.iter().cloned().map(Value::from).collect())
        .unwrap()
        .into_iter()
        .map(|v| match v {
            Value::Tensor(t) => t.to_vec::<f32>().unwrap(),
            _ => panic!("non-tensor output"),
        })
        .collect()
}

fn simulate(c: &Compiled, ins: &[Tensor]) -> (Vec<Vec<f32>>, SimRun) {
    let sim = Simulator::new(c.program.clone(), c.constants.clone(), dev()).unwrap();
    let bytes: Vec<Vec<u8>> = ins.iter().map(|t| t.raw_bytes().unwrap().to_vec()).collect();
    let run = sim.run(&bytes).unwrap();
    let outs = run.outputs.iter().map(|b| b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()).collect();
    (outs, run)
}

/// Float tolerance (docs/virtual-aic100.md, Simulator): |a − b| ≤ 1e-4 · max(1, |b|).
fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert!((p - q).abs() <= 1e-4 * q.abs().max(1.0), "element {i}: sim {p} vs interp {q}");
        }
    }
}

fn check(g: &Graph, o: &CodegenOptions) -> (Compiled, SimRun) {
    let c = compile(g, &dev(), o).unwrap();
    let ins = inputs_for(g, 1);
    let want = interp(g, &ins);
    let (got, run) = simulate(&c, &ins);
    assert_close(&got, &want);
    (c, run)
}

fn opts(cores: u32) -> CodegenOptions {
    CodegenOptions { num_cores: cores, ..Default::default() }
}

fn conv_net(batch: usize, hw: usize) -> Graph {
    let mut b = B::new("convnet");
    let x = b.input("x", &[batch, 8, hw, hw]);
    let c1 = b.conv(x, 8, 32, 3, 1, 1);
    let r1 = b.node("Relu", &[c1], &[]);
    let c2 = b.conv(r1, 32, 32, 3, 2, 1);
    let r2 = b.node("Relu", &[c2], &[]);
    let c3 = b.conv(r2, 32, 32, 1, 1, 1);
    let r3 = b.node("Relu", &[c3], &[]);
    b.finish(&[r3])
}

/// Three 3×3 convolutions with `ch` channels: compute-heavy enough to show core scaling.
fn wide_net(batch: usize, hw: usize, ch: usize) -> Graph {
    let mut b = B::new("widenet");
    let x = b.input("x", &[batch, 16, hw, hw]);
    let c1 = b.conv(x, 16, ch, 3, 1, 1);
    let r1 = b.node("Relu", &[c1], &[]);
    let c2 = b.conv(r1, ch, ch, 3, 1, 1);
    let r2 = b.node("Relu", &[c2], &[]);
    let c3 = b.conv(r2, ch, ch, 3, 2, 1);
    let r3 = b.node("Relu", &[c3], &[]);
    b.finish(&[r3])
}

#[test]
fn conv_matches_interpreter_on_1_and_4_cores() {
    let mut b = B::new("conv");
    let x = b.input("x", &[1, 4, 10, 10]);
    let y = b.conv(x, 4, 16, 3, 1, 1);
    let g = b.finish(&[y]);
    check(&g, &opts(1));
    let (c, _) = check(&g, &opts(4));
    assert!(c.report.macs >= 16 * 100 * 36);
}

#[test]
fn depthwise_pool_and_gap_match() {
    let mut b = B::new("dw");
    let x = b.input("x", &[2, 16, 12, 12]);
    let d = b.conv(x, 16, 16, 3, 1, 16);
    let h = b.node("HardSwish", &[d], &[]);
    let p = b.node("MaxPool", &[h], &[("kernel_shape", Attr::Ints(vec![3, 3])), ("strides", Attr::Ints(vec![2, 2])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    let a = b.node("AveragePool", &[p], &[("kernel_shape", Attr::Ints(vec![2, 2])), ("strides", Attr::Ints(vec![2, 2]))]);
    let gp = b.node("GlobalAveragePool", &[a], &[]);
    let f = b.node("Flatten", &[gp], &[]);
    let g = b.finish(&[f]);
    check(&g, &opts(4));
}

#[test]
fn residual_block_with_batchnorm_matches() {
    let mut b = B::new("res");
    let x = b.input("x", &[2, 16, 8, 8]);
    let c1 = b.conv(x, 16, 16, 3, 1, 1);
    let sc = b.cst(&[16], 1.0);
    let bi = b.cst(&[16], 0.2);
    let mean = b.cst(&[16], 0.1);
    let var = b.g.add_constant("var", Tensor::from_vec(vec![16], vec![1.5f32; 16]).unwrap());
    let bn = b.node("BatchNormalization", &[c1, sc, bi, mean, var], &[]);
    let r = b.node("Relu", &[bn], &[]);
    let c2 = b.conv(r, 16, 16, 3, 1, 1);
    let s = b.node("Add", &[c2, x], &[]);
    let y = b.node("Relu", &[s], &[]);
    let g = b.finish(&[y]);
    let (c, _) = check(&g, &opts(4));
    // The batch norm was folded into the first conv.
    assert!(!c.program.listing().contains("BatchNormalization"));
    check(&g, &CodegenOptions { depth_first: true, ..opts(2) });
}

#[test]
fn matmul_gemm_softmax_layernorm_match() {
    let mut b = B::new("mlp");
    let x = b.input("x", &[2, 8, 32]);
    let w = b.cst(&[32, 64], 0.2);
    let m = b.node("MatMul", &[x, w], &[]);
    let bias = b.cst(&[64], 0.1);
    let a = b.node("Add", &[m, bias], &[]);
    let e = b.node("Erf", &[a], &[]);
    let s = b.cst(&[64], 1.0);
    let bb = b.cst(&[64], 0.1);
    let ln = b.node("LayerNormalization", &[e, s, bb], &[("axis", Attr::Int(-1))]);
    let sm = b.node("Softmax", &[ln], &[("axis", Attr::Int(-1))]);
    let t = b.node("Transpose", &[sm], &[("perm", Attr::Ints(vec![0, 2, 1]))]);
    let rm = b.node("ReduceMean", &[t], &[("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(1))]);
    let f = b.node("Flatten", &[rm], &[]);
    let gw = b.cst(&[10, 64], 0.3);
    let gb = b.cst(&[10], 0.1);
    let y = b.node("Gemm", &[f, gw, gb], &[("transB", Attr::Int(1))]);
    let g = b.finish(&[y, sm]);
    check(&g, &opts(1));
    check(&g, &opts(8));
}

#[test]
fn concat_resize_and_shape_subgraph_fold() {
    let mut b = B::new("misc");
    let x = b.input("x", &[1, 4, 6, 6]);
    let c = b.conv(x, 4, 4, 1, 1, 1);
    let cat = b.node("Concat", &[x, c], &[("axis", Attr::Int(1))]);
    let scales = b.g.add_constant("scales", Tensor::from_vec(vec![4], vec![1f32, 1.0, 2.0, 2.0]).unwrap());
    let empty = b.g.add_constant("roi", Tensor::from_vec(vec![0], Vec::<f32>::new()).unwrap());
    let up = b.node("Resize", &[cat, empty, scales], &[("mode", Attr::String(b"nearest".to_vec())), ("coordinate_transformation_mode", Attr::String(b"asymmetric".to_vec())), ("nearest_mode", Attr::String(b"floor".to_vec()))]);
    // Shape-only subgraph: Shape -> Gather -> Concat -> Reshape target.
    let sh = b.node("Shape", &[up], &[]);
    let idx = b.g.add_constant("idx", Tensor::from_vec(vec![1], vec![0i64]).unwrap());
    let n = b.node("Gather", &[sh, idx], &[("axis", Attr::Int(0))]);
    let minus = b.g.add_constant("m1", Tensor::from_vec(vec![1], vec![-1i64]).unwrap());
    let tgt = b.node("Concat", &[n, minus], &[("axis", Attr::Int(0))]);
    let r = b.node("Reshape", &[up, tgt], &[]);
    let y = b.node("Sigmoid", &[r], &[]);
    let g = b.finish(&[y]);
    let (c, _) = check(&g, &opts(3));
    assert!(!c.program.listing().contains("Gather"));
}

#[test]
fn unsupported_ops_are_all_listed() {
    let mut b = B::new("bad");
    let x = b.input("x", &[1, 4]);
    let a = b.node("NonZero", &[x], &[]);
    let _ = a;
    let c = b.node("Hardmax", &[x], &[]);
    let g = b.finish(&[c]);
    let e = compile(&g, &dev(), &opts(1)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, CodegenError::Unsupported(ref v) if v.len() == 2), "{msg}");
    assert!(msg.contains("NonZero") && msg.contains("Hardmax"), "{msg}");
}

#[test]
fn inputs_and_outputs_without_a_descriptor_type_are_all_listed() {
    // A bool input, an empty input and a u16 output: each named with its reason, none dropped.
    let mut b = B::new("io");
    let x = b.input("x", &[2, 3]);
    let m = b.g.add_input("mask", ValueType::tensor(DType::Bool, Shape::known(&[2, 3])));
    let e = b.input("empty", &[0, 3]);
    let y = b.node("Relu", &[x], &[]);
    let z = b.node("Cast", &[y], &[("to", Attr::Int(4))]);
    let g = b.finish(&[y, z]);
    let _ = (m, e);
    let err = compile(&g, &dev(), &opts(1)).unwrap_err();
    let msg = err.to_string();
    // The u16 Cast is also an operator the device cannot compute: listed with the I/O.
    assert!(matches!(err, CodegenError::UnsupportedIo { ref io, ref ops } if io.len() == 3 && ops.len() == 1), "{msg}");
    assert!(msg.contains("input `mask` (element type bool"), "{msg}");
    assert!(msg.contains("input `empty` (empty tensor of shape [0, 3]"), "{msg}");
    assert!(msg.contains("output `v2` (element type u16"), "{msg}");

    // With an operator the device lacks as well, both are listed.
    let mut b = B::new("io_and_op");
    let x = b.input("x", &[2, 3]);
    let m = b.g.add_input("mask", ValueType::tensor(DType::Bool, Shape::known(&[2, 3])));
    let _ = m;
    let y = b.node("Hardmax", &[x], &[]);
    let g = b.finish(&[y]);
    let err = compile(&g, &dev(), &opts(1)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CodegenError::UnsupportedIo { ref io, ref ops } if io.len() == 1 && ops.len() == 1), "{msg}");
    assert!(msg.contains("input `mask`") && msg.contains("Hardmax"), "{msg}");
}

#[test]
fn bad_options_and_untileable_layers_are_refused() {
    let g = conv_net(1, 8);
    for o in [opts(0), opts(17), CodegenOptions { vtcm_working_set_limit_ratio: 0.0, ..opts(1) }, CodegenOptions { size_split_granularity_kib: 100, ..opts(1) }] {
        assert!(matches!(compile(&g, &dev(), &o), Err(CodegenError::Option { .. })));
    }
    // A Softmax over a 3 MiB row cannot be split and does not fit 1 % of VTCM.
    let mut b = B::new("big");
    let x = b.input("x", &[1, 1 << 20]);
    let y = b.node("Softmax", &[x], &[("axis", Attr::Int(-1))]);
    let g = b.finish(&[y]);
    let e = compile(&g, &dev(), &CodegenOptions { vtcm_working_set_limit_ratio: 0.01, ..opts(1) }).unwrap_err();
    assert!(matches!(e, CodegenError::Tiling { .. }), "{e}");
    assert!(e.to_string().contains("Softmax_"), "{e}");
}

#[test]
fn more_cores_raise_throughput_on_batch_8() {
    // Big enough that compute, not the per-layer overheads, dominates on one core (≈ 2.6 ms).
    let g = wide_net(8, 32, 64);
    let (_, r1) = check(&g, &opts(1));
    let (_, r16) = check(&g, &opts(16));
    let (a, b) = (r1.stats.inferences_per_s(8), r16.stats.inferences_per_s(8));
    assert!(b > 4.0 * a, "1 core {a:.0} inf/s, 16 cores {b:.0} inf/s");
}

#[test]
fn multicast_lowers_ddr_reads() {
    // Weights read per inference (not preloaded): every core of a batch split reads them all,
    // unless the first multicasts them.
    let g = conv_net(8, 16);
    let no_pre = CodegenOptions { mos: Some(8), preload_weights: false, ..opts(8) };
    let (_, plain) = check(&g, &no_pre);
    let (_, mc) = check(&g, &CodegenOptions { multicast_weights: true, ..no_pre.clone() });
    assert!(mc.stats.ddr_read_bytes < plain.stats.ddr_read_bytes, "{} vs {}", mc.stats.ddr_read_bytes, plain.stats.ddr_read_bytes);
    assert!(mc.stats.multicast_bytes > 0);
    // Preloaded, the weights cross neither DDR nor the NoC per inference, with or without
    // multicast; multicast is never worse.
    let (_, pre) = check(&g, &CodegenOptions { mos: Some(8), ..opts(8) });
    let (_, pre_mc) = check(&g, &CodegenOptions { mos: Some(8), multicast_weights: true, ..opts(8) });
    assert!(pre.stats.ddr_read_bytes < mc.stats.ddr_read_bytes, "{} vs {}", pre.stats.ddr_read_bytes, mc.stats.ddr_read_bytes);
    assert!(pre_mc.stats.ddr_read_bytes <= pre.stats.ddr_read_bytes);
    assert!(pre_mc.stats.total_ps <= pre.stats.total_ps, "{} vs {}", pre_mc.stats.total_ps, pre.stats.total_ps);
}

#[test]
fn preloaded_weights_stay_in_vtcm_across_inferences() {
    // Batch 1 over 4 cores: each core preloads its output channels' weights and biases once;
    // inferences then read only activations from DDR, and give the same results.
    let g = conv_net(1, 32);
    let (c0, r0) = check(&g, &CodegenOptions { preload_weights: false, ..opts(4) });
    let (c1, r1) = check(&g, &opts(4));
    assert_eq!(c0.program.preload_bytes, 0);
    assert!(c1.program.preload_bytes > 0 && c1.program.cores.iter().all(|c| !c.preload.is_empty()));
    assert!(c1.program.listing().contains("preload [0] dma.ddr->vtcm constants"));
    assert!(r1.stats.ddr_read_bytes < r0.stats.ddr_read_bytes, "{} vs {}", r1.stats.ddr_read_bytes, r0.stats.ddr_read_bytes);
    assert!(r1.stats.total_ps < r0.stats.total_ps, "{} vs {}", r1.stats.total_ps, r0.stats.total_ps);
    // The preloads survive a round trip through the ELF, and a second inference.
    let back = qaic_device::Program::from_elf(&c1.program.to_elf()).unwrap();
    assert_eq!(back, c1.program);
    let ins = inputs_for(&g, 2);
    let want = interp(&g, &ins);
    let sim = Simulator::new(c1.program.clone(), c1.constants.clone(), dev()).unwrap();
    for _ in 0..2 {
        let run = sim.run(&ins.iter().map(|t| t.raw_bytes().unwrap().to_vec()).collect::<Vec<_>>()).unwrap();
        let got: Vec<f32> = run.outputs[0].chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_close(&[got], &want);
    }
    // No room beside the working set: nothing is preloaded, the program still runs.
    let (c2, _) = check(&g, &CodegenOptions { vtcm_working_set_limit_ratio: 0.02, ..opts(4) });
    assert!(c2.program.preload_bytes as f64 + c2.program.vtcm_bytes as f64 <= 0.02 * dev().vtcm_bytes as f64 + 4096.0);
}

#[test]
fn lower_vtcm_ratio_gives_more_tiles() {
    // The first conv's output (2 × 32 × 96 × 96 f32 = 4.5 MiB) does not fit a quarter of VTCM.
    let g = conv_net(2, 96);
    let tiles = |c: &Compiled| c.report.layers.iter().map(|l| l.tiles_per_core as u64 * l.cores as u64).sum::<u64>();
    let (full, _) = check(&g, &CodegenOptions { vtcm_working_set_limit_ratio: 1.0, ..opts(2) });
    let (quarter, _) = check(&g, &CodegenOptions { vtcm_working_set_limit_ratio: 0.25, ..opts(2) });
    assert!(tiles(&quarter) > tiles(&full), "{} vs {}", tiles(&quarter), tiles(&full));
    assert!(quarter.program.vtcm_bytes <= 2 << 20);
}

#[test]
fn depth_first_lowers_ddr_traffic_on_a_conv_chain() {
    let g = conv_net(4, 16);
    let t = |r: &SimRun| r.stats.ddr_read_bytes + r.stats.ddr_write_bytes;
    // With activations passed through DDR, depth-first keeps the chain's intermediates in VTCM.
    let via_ddr = CodegenOptions { keep_activations: false, ..opts(4) };
    let (_, plain) = check(&g, &via_ddr);
    let (_, df) = check(&g, &CodegenOptions { depth_first: true, ..via_ddr.clone() });
    assert!(t(&df) < t(&plain), "{} vs {}", t(&df), t(&plain));
    // By default this small chain's activations already stay in VTCM: only the network's input
    // and output cross DDR, with or without depth-first.
    let (_, plain) = check(&g, &opts(4));
    let (_, df) = check(&g, &CodegenOptions { depth_first: true, ..opts(4) });
    assert!(t(&df) <= t(&plain), "{} vs {}", t(&df), t(&plain));
    assert_eq!(t(&plain), 2 * 4 * 8 * 16 * 16 * 4, "input x[4,8,16,16] and output y[4,32,8,8], f32");
}

#[test]
fn output_is_deterministic_across_runs_and_threads() {
    let g = conv_net(2, 16);
    let a = compile(&g, &dev(), &opts(4)).unwrap();
    let b = compile(&g, &dev(), &CodegenOptions { compile_threads: 3, ..opts(4) }).unwrap();
    let c = compile(&g, &dev(), &CodegenOptions { compile_threads: 0, ..opts(4) }).unwrap();
    assert_eq!(a.program.to_elf(), b.program.to_elf());
    assert_eq!(a.program.to_elf(), c.program.to_elf());
    assert_eq!(a.constants, b.constants);
    let ins = inputs_for(&g, 3);
    let (o1, r1) = simulate(&a, &ins);
    let (o2, r2) = simulate(&b, &ins);
    assert_eq!(o1, o2);
    assert_eq!(r1.stats, r2.stats);
}

#[test]
fn changing_a_constant_byte_changes_results() {
    let g = conv_net(1, 8);
    let c = compile(&g, &dev(), &opts(2)).unwrap();
    let ins = inputs_for(&g, 5);
    let (base, _) = simulate(&c, &ins);
    let mut c2 = c.clone();
    // Flip a high byte of the first weight (bytes 0..4 are the first conv's first weight).
    c2.constants[3] ^= 0x40;
    let (changed, _) = simulate(&c2, &ins);
    assert_ne!(base, changed);
}

#[test]
fn a_layer_that_only_fits_single_buffered_still_compiles() {
    // One image in + out of a 1×1 conv is 512 KiB; double-buffered 1 MiB. A 671 KB budget
    // leaves single-buffered tiles (the whole 1 MiB input cannot stay resident either).
    let mut b = B::new("single");
    let x = b.input("x", &[4, 64, 32, 32]);
    let c = b.conv(x, 64, 64, 1, 1, 1);
    let y = b.node("Relu", &[c], &[]);
    let g = b.finish(&[y]);
    let o = CodegenOptions { vtcm_working_set_limit_ratio: 0.08, ..opts(1) };
    let (c, _) = check(&g, &o);
    assert!(c.program.vtcm_bytes <= (8u64 << 20) * 8 / 100, "{}", c.program.vtcm_bytes);
    assert_eq!(c.report.layers[0].tiles_per_core, 4);
}

/// Residual net: a skip connection reads a value two layers later, so a layer's outputs and
/// scratch reuse cross more than one layer boundary.
fn residual_net(batch: usize, hw: usize) -> Graph {
    let mut b = B::new("resnet");
    let x = b.input("x", &[batch, 16, hw, hw]);
    let c0 = b.conv(x, 16, 32, 3, 1, 1);
    let r0 = b.node("Relu", &[c0], &[]);
    let c1 = b.conv(r0, 32, 32, 3, 1, 1);
    let r1 = b.node("Relu", &[c1], &[]);
    let c2 = b.conv(r1, 32, 32, 1, 1, 1);
    let s = b.node("Add", &[c2, r0], &[]);
    let y = b.node("Relu", &[s], &[]);
    let p = b.node("MaxPool", &[y], &[("kernel_shape", Attr::Ints(vec![2, 2])), ("strides", Attr::Ints(vec![2, 2]))]);
    let c3 = b.conv(p, 32, 16, 3, 1, 1);
    b.finish(&[c3])
}

#[test]
fn producer_dma_keeps_outputs_and_never_slows_the_program() {
    let mut faster = 0;
    for (name, g, o) in [
        ("conv 4 cores", conv_net(4, 16), opts(4)),
        ("conv 8 cores mos 8 multicast", conv_net(8, 16), CodegenOptions { mos: Some(8), multicast_weights: true, ..opts(8) }),
        ("residual 4 cores", residual_net(2, 16), opts(4)),
        ("residual 3 cores, small VTCM", residual_net(2, 16), CodegenOptions { vtcm_working_set_limit_ratio: 0.05, ..opts(3) }),
        ("wide 1 core", wide_net(1, 16, 32), opts(1)),
        ("residual depth-first 2 cores", residual_net(4, 8), CodegenOptions { depth_first: true, ..opts(2) }),
    ] {
        let (plain, rp) = check(&g, &o);
        let (prod, rq) = check(&g, &CodegenOptions { use_producer_dma: true, ..o.clone() });
        // Same bytes out, on the same inputs.
        let ins = inputs_for(&g, 1);
        assert_eq!(simulate(&plain, &ins).1.outputs, simulate(&prod, &ins).1.outputs, "{name}");
        // The program differs: output DMAs signal semaphore 1 as they land, layers wait on it.
        let (lp, lq) = (plain.program.listing(), prod.program.listing());
        assert!(!lp.contains("signal=s1+") && lq.contains("signal=s1+1") && lq.contains("sem.wait s1 >= "), "{name}\n{lq}");
        assert!(lq.matches("barrier").count() < lp.matches("barrier").count(), "{name}");
        assert_eq!(prod.program.num_semaphores, 2);
        // Never slower; the traffic is the same.
        assert!(rq.stats.total_ps <= rp.stats.total_ps, "{name}: {} ps with producer DMA vs {} ps", rq.stats.total_ps, rp.stats.total_ps);
        assert_eq!((rq.stats.ddr_read_bytes, rq.stats.ddr_write_bytes), (rp.stats.ddr_read_bytes, rp.stats.ddr_write_bytes), "{name}");
        if rq.stats.total_ps < rp.stats.total_ps {
            faster += 1;
        }
        eprintln!("{name}: {:.3} us -> {:.3} us", rp.stats.total_ps as f64 / 1e6, rq.stats.total_ps as f64 / 1e6);
    }
    assert!(faster >= 4, "producer DMA was faster in only {faster} configurations");
}

#[test]
fn single_input_max_min_default_transpose_and_integer_pow_exponents() {
    // Max/Min of one input is the input; Transpose without perm reverses the axes.
    let mut b = B::new("misc");
    let x = b.input("x", &[2, 3, 4]);
    let m = b.node("Max", &[x], &[]);
    let n = b.node("Min", &[m], &[]);
    let t = b.node("Transpose", &[n], &[]);
    let r = b.node("Relu", &[t], &[]);
    let g = b.finish(&[r, m]);
    for cores in [1, 2] {
        let (c, _) = check(&g, &opts(cores));
        assert!(!c.program.listing().contains(" op Max ") && c.program.listing().contains("perm=[2,1,0]"), "{}", c.program.listing());
    }
    // An integer exponent is refused at compile time, naming the operand.
    let mut b = B::new("pow");
    let x = b.input("x", &[4]);
    let e = b.g.add_input("e", ValueType::tensor(DType::I32, Shape::known(&[4])));
    let y = b.node("Pow", &[x, e], &[]);
    let g = b.finish(&[y]);
    let err = compile(&g, &dev(), &opts(1)).unwrap_err().to_string();
    assert!(err.contains("Pow") && err.contains("operand `e` is I32"), "{err}");
}
