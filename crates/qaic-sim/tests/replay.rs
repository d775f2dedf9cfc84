//! The prepared replay (merged convolutions, dropped DMAs, reused memory) gives the results of
//! the program as written.

use qaic_device::*;
use qaic_sim::Simulator;
use qaic_tensor::DType;

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn dma(src: Space, so: u64, dst: Space, doff: u64, len: u64, tag: u8) -> Instr {
    Instr::Dma(Dma { src, src_offset: so, dst, dst_offset: doff, shape: DmaShape::contiguous(len), multicast: None, tag, signal: None })
}

/// Direct 3×3 convolution, pad 1, stride 1, NCHW with N = 1.
fn conv_ref(x: &[f32], c: usize, h: usize, w: usize, wt: &[f32], b: &[f32], m: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * h * w];
    for o in 0..m {
        for i in 0..h {
            for j in 0..w {
                let mut s = b[o];
                for ci in 0..c {
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let (ii, jj) = (i as isize + ki as isize - 1, j as isize + kj as isize - 1);
                            if ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w {
                                s += x[(ci * h + ii as usize) * w + jj as usize] * wt[((o * c + ci) * 3 + ki) * 3 + kj];
                            }
                        }
                    }
                }
                y[(o * h + i) * w + j] = s;
            }
        }
    }
    y
}

/// A conv layer split over `cores` by output channels, each core loading the whole input, the
/// way codegen emits it; plus, on core 0, a second tile over the same input.
fn split_conv(cores: usize) -> (Program, Vec<u8>, Vec<f32>, Vec<f32>) {
    let (c, h, w, per) = (4usize, 6usize, 6usize, 2usize);
    let m = per * (cores + 1);
    let wt: Vec<f32> = (0..m * c * 9).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.05).collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 * 0.1 - 0.2).collect();
    let mut constants = bytes(&wt);
    let b_off = constants.len() as u64;
    constants.extend(bytes(&b));
    let xb = (c * h * w * 4) as u64;
    let yb = (m * h * w * 4) as u64;
    let mut p = Program::new("split", "2.0", cores, 1 << 16);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: xb, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: yb, binding: Some(1) });
    p.buffers.push(Buffer { name: "constants".into(), kind: BufferKind::Constants, size: constants.len() as u64, binding: None });
    let wslice = (per * c * 9 * 4) as u64;
    let oslice = (per * h * w * 4) as u64;
    for core in 0..cores {
        let mut ins = vec![dma(Space::Ddr(0), 0, Space::Vtcm, 0, xb, 0)];
        // Core 0 runs two tiles (its own slice and the last one) over the same resident input.
        let slices: Vec<usize> = if core == 0 { vec![0, cores] } else { vec![core] };
        for (t, &s) in slices.iter().enumerate() {
            let (wo, bo, oo) = (4096 + t as u64 * 8192, 4096 + t as u64 * 8192 + 4096, 24576 + t as u64 * 8192);
            ins.push(dma(Space::Ddr(2), s as u64 * wslice, Space::Vtcm, wo, wslice, 1));
            ins.push(dma(Space::Ddr(2), b_off + (s * per * 4) as u64, Space::Vtcm, bo, (per * 4) as u64, 1));
            ins.push(Instr::DmaWait { tag: 0 });
            ins.push(Instr::DmaWait { tag: 1 });
            let mut op = Op::new(
                "Conv",
                DType::F32,
                vec![
                    Tile::vtcm(0, DType::F32, vec![1, c as u64, h as u64, w as u64]),
                    Tile::vtcm(wo, DType::F32, vec![per as u64, c as u64, 3, 3]),
                    Tile::vtcm(bo, DType::F32, vec![per as u64]),
                ],
                vec![Tile::vtcm(oo, DType::F32, vec![1, per as u64, h as u64, w as u64])],
            );
            op.set_attr("kernel_shape", AttrValue::Ints(vec![3, 3]));
            op.set_attr("pads", AttrValue::Ints(vec![1, 1, 1, 1]));
            ins.push(Instr::Op(op));
            ins.push(dma(Space::Vtcm, oo, Space::Ddr(1), s as u64 * oslice, oslice, 2));
            ins.push(Instr::DmaWait { tag: 2 });
        }
        ins.push(Instr::End);
        p.cores[core].instrs = ins;
    }
    (p, constants, wt, b)
}

#[test]
fn merged_split_convolution_equals_the_reference_on_every_run() {
    let dev = DeviceModel::aic100(Variant::Pro16);
    for cores in [1usize, 3] {
        let (p, constants, wt, b) = split_conv(cores);
        let m = 2 * (cores + 1);
        let sim = Simulator::new(p, constants, dev.clone()).unwrap();
        let mut totals = Vec::new();
        for seed in 0..3 {
            let x: Vec<f32> = (0..4 * 36).map(|i| ((i * 31 + seed * 17) % 23) as f32 * 0.1 - 1.0).collect();
            let run = sim.run(&[bytes(&x)]).unwrap();
            let want = conv_ref(&x, 4, 6, 6, &wt, &b, m);
            let got = f32s(&run.outputs[0]);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{cores} cores, run {seed}: {g} vs {w}");
            }
            totals.push(run.stats.total_ps);
            // The traced run predicts the same time.
            assert_eq!(sim.run_traced(&[bytes(&x)]).unwrap().stats.total_ps, run.stats.total_ps);
        }
        assert!(totals.windows(2).all(|t| t[0] == t[1]));
    }
}

#[test]
fn bytes_read_before_written_are_zero_on_every_run() {
    // Relu reads VTCM bytes nothing wrote yet (zero on a fresh device), and only afterwards does
    // the input land there: a reused VTCM must not leak the previous run's input.
    let dev = DeviceModel::aic100(Variant::Pro16);
    let mut p = Program::new("livein", "2.0", 1, 1 << 16);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 16, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 32, binding: Some(1) });
    let t = |o| Tile::vtcm(o, DType::F32, vec![4]);
    p.cores[0].instrs = vec![
        Instr::Op(Op::new("Relu", DType::F32, vec![t(0)], vec![t(64)])),
        dma(Space::Vtcm, 64, Space::Ddr(1), 0, 16, 0),
        Instr::DmaWait { tag: 0 },
        dma(Space::Ddr(0), 0, Space::Vtcm, 0, 16, 0),
        Instr::DmaWait { tag: 0 },
        dma(Space::Vtcm, 0, Space::Ddr(1), 16, 16, 0),
        Instr::DmaWait { tag: 0 },
        Instr::End,
    ];
    let sim = Simulator::new(p, Vec::new(), dev).unwrap();
    for x in [[1.0f32, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]] {
        let y = f32s(&sim.run(&[bytes(&x)]).unwrap().outputs[0]);
        assert_eq!(&y[..4], &[0.0; 4]);
        assert_eq!(&y[4..], &x);
    }
}

#[test]
fn independent_cores_on_host_threads_give_the_one_thread_bytes() {
    // Eight cores, each: a large contiguous landing (split across threads), Relu into a second
    // tile, Neg back over the landed input (a write after read the replay's levels must keep in
    // order), and a store. The replay runs the cores' steps at once on host threads.
    let (cores, n) = (8usize, 80_000usize);
    let slice = (n * 4) as u64;
    let dev = DeviceModel::aic100(Variant::Pro16);
    let mut p = Program::new("levels", "2.0", cores, 1 << 20);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: slice * cores as u64, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: slice * cores as u64, binding: Some(1) });
    let t = |o| Tile::vtcm(o, DType::F32, vec![n as u64]);
    for c in 0..cores {
        let off = c as u64 * slice;
        p.cores[c].instrs = vec![
            dma(Space::Ddr(0), off, Space::Vtcm, 0, slice, 0),
            Instr::DmaWait { tag: 0 },
            Instr::Op(Op::new("Relu", DType::F32, vec![t(0)], vec![t(400_000)])),
            Instr::Op(Op::new("Neg", DType::F32, vec![t(400_000)], vec![t(0)])),
            dma(Space::Vtcm, 0, Space::Ddr(1), off, slice, 1),
            Instr::DmaWait { tag: 1 },
            Instr::End,
        ];
    }
    let sim = Simulator::new(p, Vec::new(), dev).unwrap();
    let x: Vec<f32> = (0..n * cores).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.25).collect();
    let want: Vec<f32> = x.iter().map(|v| -v.max(0.0)).collect();
    let mut times = Vec::new();
    for threads in [1usize, 4, 2] {
        qaic_kernels::set_num_threads(threads);
        let run = sim.run(&[bytes(&x)]).unwrap();
        assert_eq!(f32s(&run.outputs[0]), want, "{threads} threads");
        times.push(run.stats.total_ps);
    }
    qaic_kernels::set_num_threads(0);
    assert!(times.windows(2).all(|t| t[0] == t[1]));
}

#[test]
fn loads_read_in_place_only_while_their_bytes_stand() {
    // A load whose DDR source is rewritten before its last reader, and a load partly
    // overwritten before it is read, must both be copied (readers see the landed bytes).
    let dev = DeviceModel::aic100(Variant::Pro16);
    let mut p = Program::new("inplace", "2.0", 1, 1 << 16);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 64, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 128, binding: Some(1) });
    p.buffers.push(Buffer { name: "scratch".into(), kind: BufferKind::Scratch, size: 64, binding: None });
    let t = |o| Tile::vtcm(o, DType::F32, vec![16]);
    let wait = Instr::DmaWait { tag: 0 };
    p.cores[0].instrs = vec![
        dma(Space::Ddr(0), 0, Space::Ddr(2), 0, 64, 0),
        wait.clone(),
        dma(Space::Ddr(2), 0, Space::Vtcm, 0, 64, 0),
        wait.clone(),
        Instr::Op(Op::new("Neg", DType::F32, vec![t(0)], vec![t(128)])),
        dma(Space::Vtcm, 128, Space::Ddr(2), 0, 64, 0),
        wait.clone(),
        Instr::Op(Op::new("Relu", DType::F32, vec![t(0)], vec![t(256)])),
        dma(Space::Vtcm, 256, Space::Ddr(1), 0, 64, 0),
        wait.clone(),
        dma(Space::Ddr(2), 0, Space::Vtcm, 512, 64, 0),
        wait.clone(),
        dma(Space::Ddr(0), 32, Space::Vtcm, 512, 32, 0),
        wait.clone(),
        Instr::Op(Op::new("Relu", DType::F32, vec![t(512)], vec![t(640)])),
        dma(Space::Vtcm, 640, Space::Ddr(1), 64, 64, 0),
        wait,
        Instr::End,
    ];
    let sim = Simulator::new(p, Vec::new(), dev).unwrap();
    for seed in 0..2 {
        let x: Vec<f32> = (0..16).map(|i| ((i * 5 + seed * 3) % 11) as f32 - 5.0).collect();
        let y = f32s(&sim.run(&[bytes(&x)]).unwrap().outputs[0]);
        let relu = |v: f32| v.max(0.0);
        let mut want: Vec<f32> = x.iter().map(|&v| relu(v)).collect();
        want.extend(x[8..].iter().map(|&v| relu(v)));
        want.extend(x[8..].iter().map(|&v| relu(-v)));
        assert_eq!(y, want, "run {seed}");
    }
}

#[test]
fn stores_written_in_place_only_when_nothing_else_sees_the_difference() {
    // A store whose DDR destination is read between the op and the store, and a store whose
    // VTCM tile is read again afterwards, keep their copies; the last store may be written by
    // its op directly. Every variant gives the program's bytes.
    let dev = DeviceModel::aic100(Variant::Pro16);
    let mut p = Program::new("stores", "2.0", 1, 1 << 16);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 64, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 256, binding: Some(1) });
    p.buffers.push(Buffer { name: "scratch".into(), kind: BufferKind::Scratch, size: 64, binding: None });
    let t = |o| Tile::vtcm(o, DType::F32, vec![16]);
    let wait = Instr::DmaWait { tag: 0 };
    p.cores[0].instrs = vec![
        dma(Space::Ddr(0), 0, Space::Vtcm, 0, 64, 0),
        wait.clone(),
        dma(Space::Ddr(0), 0, Space::Ddr(2), 0, 64, 0),
        wait.clone(),
        Instr::Op(Op::new("Neg", DType::F32, vec![t(0)], vec![t(128)])),
        dma(Space::Ddr(2), 0, Space::Ddr(1), 0, 64, 0),
        wait.clone(),
        dma(Space::Vtcm, 128, Space::Ddr(2), 0, 64, 0),
        wait.clone(),
        dma(Space::Ddr(2), 0, Space::Ddr(1), 64, 64, 0),
        wait.clone(),
        Instr::Op(Op::new("Relu", DType::F32, vec![t(0)], vec![t(256)])),
        dma(Space::Vtcm, 256, Space::Ddr(1), 128, 64, 0),
        wait.clone(),
        Instr::Op(Op::new("Neg", DType::F32, vec![t(256)], vec![t(384)])),
        dma(Space::Vtcm, 384, Space::Ddr(1), 192, 64, 0),
        wait,
        Instr::End,
    ];
    let sim = Simulator::new(p, Vec::new(), dev).unwrap();
    for seed in 0..2 {
        let x: Vec<f32> = (0..16).map(|i| ((i * 7 + seed * 5) % 13) as f32 - 6.0).collect();
        let y = f32s(&sim.run(&[bytes(&x)]).unwrap().outputs[0]);
        let mut want = x.clone();
        want.extend(x.iter().map(|v| -v));
        want.extend(x.iter().map(|v| v.max(0.0)));
        want.extend(x.iter().map(|v| -v.max(0.0)));
        assert_eq!(y, want, "run {seed}");
    }
}

#[test]
fn a_cores_dmas_run_in_issue_order() {
    // Code generation double-buffers tiles without waiting for a store before the next load
    // into the same VTCM bytes (docs/virtual-aic100.md §4.2): the store, issued first, must
    // read the old bytes even though no `dma.wait` separates it from the load. Different tags
    // so that only the engine's order, not a wait, can order them.
    let dev = DeviceModel::aic100(Variant::Pro16);
    let mut p = Program::new("fifo", "2.0", 1, 1 << 16);
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 128, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 128, binding: Some(1) });
    let t = |o| Tile::vtcm(o, DType::F32, vec![16]);
    p.cores[0].instrs = vec![
        dma(Space::Ddr(0), 0, Space::Vtcm, 0, 64, 0),
        Instr::DmaWait { tag: 0 },
        Instr::Op(Op::new("Neg", DType::F32, vec![t(0)], vec![t(256)])),
        // Store tile 0's result, then load tile 1's input over it, then compute into it.
        dma(Space::Vtcm, 256, Space::Ddr(1), 0, 64, 2),
        dma(Space::Ddr(0), 64, Space::Vtcm, 256, 64, 1),
        Instr::DmaWait { tag: 1 },
        Instr::Op(Op::new("Relu", DType::F32, vec![t(256)], vec![t(512)])),
        dma(Space::Vtcm, 512, Space::Ddr(1), 64, 64, 3),
        Instr::DmaWait { tag: 2 },
        Instr::DmaWait { tag: 3 },
        Instr::End,
    ];
    let sim = Simulator::new(p, Vec::new(), dev).unwrap();
    let x: Vec<f32> = (0..32).map(|i| (i % 9) as f32 - 4.0).collect();
    let y = f32s(&sim.run(&[bytes(&x)]).unwrap().outputs[0]);
    let mut want: Vec<f32> = x[..16].iter().map(|v| -v).collect();
    want.extend(x[16..].iter().map(|v| v.max(0.0)));
    assert_eq!(y, want);
}

#[test]
fn split_convolution_over_multicast_row_bands_equals_the_reference() {
    // Each core loads a band of input rows (all channels), multicasts it into the same window
    // of every core (strided: one run per channel), and after both bands have landed runs its
    // output-channel slice of a 3x3 conv over the whole window: the layout codegen emits for
    // activations kept in VTCM. The simulator may merge the slices into one convolution over
    // the landed bands; the result must be the reference either way.
    let dev = DeviceModel::aic100(Variant::Pro16);
    let (c, h, w, per, cores) = (4usize, 6usize, 6usize, 2usize, 2usize);
    let m = per * cores;
    let wt: Vec<f32> = (0..m * c * 9).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.07).collect();
    let b: Vec<f32> = (0..m).map(|i| i as f32 * 0.2 - 0.3).collect();
    let mut constants = bytes(&wt);
    let b_off = constants.len() as u64;
    constants.extend(bytes(&b));
    let (xb, yb) = ((c * h * w * 4) as u64, (m * h * w * 4) as u64);
    let mut p = Program::new("bands", "2.0", cores, 1 << 16);
    p.num_semaphores = 1;
    p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: xb, binding: Some(0) });
    p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: yb, binding: Some(1) });
    p.buffers.push(Buffer { name: "constants".into(), kind: BufferKind::Constants, size: constants.len() as u64, binding: None });
    let (band, plane) = ((h / cores * w * 4) as u64, (h * w * 4) as u64);
    let (stage, window, wo, bo, oo) = (0u64, 8192u64, 16384u64, 20480u64, 24576u64);
    let wslice = (per * c * 9 * 4) as u64;
    let strided = |src_stride: u64, dst_stride: u64| DmaShape { run_bytes: band, dims: vec![DmaDim { count: c as u64, src_stride, dst_stride }] };
    for core in 0..cores {
        let k = core as u64;
        p.cores[core].instrs = vec![
            Instr::Dma(Dma { src: Space::Ddr(0), src_offset: k * band, dst: Space::Vtcm, dst_offset: stage, shape: strided(plane, band), multicast: None, tag: 0, signal: None }),
            Instr::DmaWait { tag: 0 },
            Instr::Dma(Dma {
                src: Space::Vtcm,
                src_offset: stage,
                dst: Space::Vtcm,
                dst_offset: window + k * band,
                shape: strided(band, plane),
                multicast: Some(CoreMask::first(cores as u32)),
                tag: 1,
                signal: Some(SemSignal { sem: 0, add: 1 }),
            }),
            dma(Space::Ddr(2), k * wslice, Space::Vtcm, wo, wslice, 2),
            dma(Space::Ddr(2), b_off + k * (per * 4) as u64, Space::Vtcm, bo, (per * 4) as u64, 2),
            Instr::DmaWait { tag: 2 },
            Instr::SemWait { sem: 0, at_least: cores as u32 },
            Instr::Op({
                let mut op = Op::new(
                    "Conv",
                    DType::F32,
                    vec![
                        Tile::vtcm(window, DType::F32, vec![1, c as u64, h as u64, w as u64]),
                        Tile::vtcm(wo, DType::F32, vec![per as u64, c as u64, 3, 3]),
                        Tile::vtcm(bo, DType::F32, vec![per as u64]),
                    ],
                    vec![Tile::vtcm(oo, DType::F32, vec![1, per as u64, h as u64, w as u64])],
                );
                op.set_attr("kernel_shape", AttrValue::Ints(vec![3, 3]));
                op.set_attr("pads", AttrValue::Ints(vec![1, 1, 1, 1]));
                op
            }),
            dma(Space::Vtcm, oo, Space::Ddr(1), k * (per * h * w * 4) as u64, (per * h * w * 4) as u64, 3),
            Instr::DmaWait { tag: 1 },
            Instr::DmaWait { tag: 3 },
            Instr::End,
        ];
    }
    let sim = Simulator::new(p, constants, dev).unwrap();
    assert_eq!(sim.merged_convolutions().unwrap(), cores, "the slices read the same landed bands");
    for seed in 0..3 {
        let x: Vec<f32> = (0..c * h * w).map(|i| ((i * 29 + seed * 13) % 19) as f32 * 0.1 - 0.9).collect();
        let got = f32s(&sim.run(&[bytes(&x)]).unwrap().outputs[0]);
        let want = conv_ref(&x, c, h, w, &wt, &b, m);
        for (g, r) in got.iter().zip(&want) {
            assert!((g - r).abs() <= 1e-5 * r.abs().max(1.0), "run {seed}: {g} vs {r}");
        }
    }
}
