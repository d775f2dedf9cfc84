use super::*;
use crate::util::testing::{assert_close, Rng};
use crate::Isa;

/// Direct N-d convolution reference (any rank up to 3).
fn naive_conv(p: &ConvParams, x: &[f32], xs: &[usize], w: &[f32], ws: &[usize], bias: Option<&[f32]>) -> (Vec<f32>, Vec<usize>) {
    let os = p.output_spatial(&xs[2..], false).unwrap();
    let g = Geo3::new("t", p, &xs[2..], &os).unwrap();
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    let (cg, mg) = (c / p.group, m / p.group);
    let mut out = vec![0f32; n * m * g.osize()];
    for b in 0..n {
        for oc in 0..m {
            let gi = oc / mg;
            for od in 0..g.o[0] {
                for oh in 0..g.o[1] {
                    for ow in 0..g.o[2] {
                        let mut s = bias.map_or(0.0, |b| b[oc]) as f64;
                        for ic in 0..cg {
                            for kd in 0..g.k[0] {
                                for kh in 0..g.k[1] {
                                    for kw in 0..g.k[2] {
                                        let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                                        let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                                        let iw = (ow * g.s[2] + kw * g.d[2]) as isize - g.pb[2] as isize;
                                        if id < 0 || ih < 0 || iw < 0 || id >= g.i[0] as isize || ih >= g.i[1] as isize || iw >= g.i[2] as isize {
                                            continue;
                                        }
                                        let xi = (((b * c + gi * cg + ic) * g.i[0] + id as usize) * g.i[1] + ih as usize) * g.i[2] + iw as usize;
                                        let wi = (((oc * cg + ic) * g.k[0] + kd) * g.k[1] + kh) * g.k[2] + kw;
                                        s += x[xi] as f64 * w[wi] as f64;
                                    }
                                }
                            }
                        }
                        out[((b * m + oc) * g.o[0] + od) * g.o[1] * g.o[2] + oh * g.o[2] + ow] = s as f32;
                    }
                }
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend(os);
    (out, shape)
}

#[test]
fn conv_matches_naive_on_all_isas() {
    let mut rng = Rng::new(7);
    // (spatial, kernel, stride, dilation, pads, n, c, m, group)
    type Case = (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>, usize, usize, usize, usize);
    let cases: Vec<Case> = vec![
        (vec![9, 11], vec![3, 3], vec![1, 1], vec![1, 1], vec![1, 1, 1, 1], 2, 5, 7, 1),
        (vec![10, 9], vec![1, 1], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0], 2, 6, 4, 1),
        (vec![10, 9], vec![1, 1], vec![2, 2], vec![1, 1], vec![0, 0, 0, 0], 1, 6, 4, 1),
        (vec![12, 13], vec![3, 3], vec![2, 2], vec![1, 1], vec![1, 0, 2, 1], 1, 4, 4, 4),
        (vec![12, 13], vec![5, 5], vec![1, 1], vec![1, 1], vec![2, 2, 2, 2], 1, 8, 8, 8),
        (vec![12, 13], vec![3, 3], vec![1, 2], vec![2, 1], vec![1, 1, 1, 1], 1, 6, 12, 3),
        (vec![17], vec![3], vec![2], vec![2], vec![2, 1], 2, 3, 5, 1),
        // Depthwise with dilation, mixed strides and asymmetric padding; tiny planes.
        (vec![15, 10], vec![3, 3], vec![2, 1], vec![2, 2], vec![2, 1, 0, 3], 2, 5, 5, 5),
        (vec![7, 7], vec![5, 5], vec![1, 1], vec![1, 1], vec![2, 2, 2, 2], 1, 3, 3, 3),
        (vec![14, 14], vec![5, 5], vec![2, 2], vec![1, 1], vec![2, 2, 2, 2], 1, 2, 2, 2),
        (vec![9], vec![3], vec![3], vec![1], vec![1, 1], 1, 4, 4, 4),
        // Trivial axes (extent 1, kernel 1, no padding) are dropped before im2col.
        (vec![40, 1], vec![5, 1], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0], 2, 6, 9, 1),
        (vec![1, 23], vec![1, 3], vec![1, 2], vec![1, 1], vec![0, 1, 0, 1], 1, 4, 6, 2),
        (vec![1, 1], vec![1, 1], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0], 3, 40, 70, 1),
        (vec![1, 1], vec![1, 1], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0], 1, 300, 2, 1),
        (vec![5, 6, 7], vec![2, 3, 2], vec![1, 2, 1], vec![1, 1, 2], vec![1, 0, 1, 0, 1, 1], 1, 4, 6, 2),
        (vec![7, 7], vec![3, 3], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0], 1, 3, 6, 3),
        (vec![5, 5], vec![3, 3], vec![3, 3], vec![1, 1], vec![4, 4, 4, 4], 1, 2, 2, 2),
        // Large im2col matrices: computed in column chunks (the last one partial), grouped too.
        (vec![60, 60], vec![3, 3], vec![1, 1], vec![1, 1], vec![1, 1, 1, 1], 1, 32, 6, 1),
        (vec![61, 59], vec![3, 3], vec![2, 1], vec![1, 1], vec![1, 0, 1, 2], 2, 64, 10, 2),
        // Depthwise planes spanning many register blocks, with a partial last block.
        (vec![40, 37], vec![3, 3], vec![1, 1], vec![1, 1], vec![1, 1, 1, 1], 1, 3, 3, 3),
        (vec![41, 29], vec![5, 5], vec![2, 2], vec![1, 1], vec![2, 2, 2, 2], 2, 2, 2, 2),
        // Stride-2 columns (vectorised de-interleave): odd widths, wide rows, uneven padding.
        (vec![9, 77], vec![3, 3], vec![1, 2], vec![1, 1], vec![1, 0, 1, 3], 1, 3, 3, 3),
        (vec![8, 70], vec![3, 5], vec![2, 2], vec![1, 2], vec![0, 4, 2, 1], 1, 2, 2, 2),
    ];
    for (ci, (sp, k, s, d, pads, n, c, m, group)) in cases.into_iter().enumerate() {
        let p = ConvParams { kernel: k.clone(), strides: s, dilations: d, pads, group };
        let mut xs = vec![n, c];
        xs.extend(&sp);
        let mut ws = vec![m, c / group];
        ws.extend(&k);
        let x = rng.vec(xs.iter().product());
        let w = rng.vec(ws.iter().product());
        let bias = rng.vec(m);
        let (want, wshape) = naive_conv(&p, &x, &xs, &w, &ws, Some(&bias));
        for isa in Isa::available() {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut out = vec![f32::NAN; want.len()];
            let sh = kern.conv(&p, &x, &xs, &w, &ws, Some(&bias), Activation::None, &mut out).unwrap();
            assert_eq!(sh, wshape);
            assert_close(&format!("{isa} case {ci}"), &out, &want, 1e-4, 1e-5);
            let pw = kern.pack_conv_weights(&w, &ws, group).unwrap();
            let mut out2 = vec![f32::NAN; want.len()];
            kern.conv_packed(&p, &x, &xs, &pw, Some(&bias), Activation::Relu, &mut out2).unwrap();
            let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
            assert_close(&format!("{isa} packed+relu case {ci}"), &out2, &relu, 1e-4, 1e-5);
        }
    }
}

#[test]
fn conv_transpose_is_adjoint_of_conv() {
    // <conv(x), y> == <x, conv_transpose(y)> for matching geometry (no bias).
    let mut rng = Rng::new(8);
    let cases = [
        (vec![7, 8], vec![3, 3], vec![2, 2], vec![1, 1], vec![1, 1, 1, 1], 4, 6, 2),
        (vec![9], vec![4], vec![3], vec![2], vec![0, 2], 3, 2, 1),
        (vec![4, 5, 6], vec![2, 2, 3], vec![1, 2, 2], vec![1, 1, 1], vec![0, 1, 1, 0, 0, 1], 2, 4, 2),
    ];
    for (sp, k, s, d, pads, c, m, group) in cases {
        let p = ConvParams { kernel: k.clone(), strides: s, dilations: d, pads, group };
        let os = p.output_spatial(&sp, false).unwrap();
        let mut xs = vec![1, c];
        xs.extend(&sp);
        let mut ws = vec![m, c / group];
        ws.extend(&k);
        let x = rng.vec(xs.iter().product());
        let w = rng.vec(ws.iter().product());
        let (cx, cshape) = naive_conv(&p, &x, &xs, &w, &ws, None);
        let y = rng.vec(cx.len());
        let lhs: f64 = cx.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        // ConvTranspose weights are [C_in_of_transpose = m, c/group, k] = the conv weights.
        for isa in Isa::available() {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut tx = vec![0f32; x.len()];
            let mut ts = vec![1, m];
            ts.extend(&os);
            assert_eq!(ts, cshape);
            kern.conv_transpose(&p, &y, &ts, &w, &ws, None, &sp, &mut tx).unwrap();
            let rhs: f64 = tx.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "{isa}: {lhs} vs {rhs}");
        }
    }
}

#[test]
fn conv_errors() {
    let k = Kernels::best();
    let p = ConvParams::new(&[3, 3]);
    let mut out = vec![0f32; 4];
    let r = k.conv(&p, &[0.0; 16], &[1, 1, 4, 4], &[0.0; 18], &[2, 1, 3, 3], None, Activation::None, &mut out);
    assert!(matches!(r, Err(KernelError::Invalid { .. })), "output size is checked");
    let r = k.conv(&p, &[0.0; 16], &[1, 1, 4, 4], &[0.0; 18], &[1, 2, 3, 3], None, Activation::None, &mut out);
    assert!(r.is_err(), "channel mismatch");
    assert!(ConvParams::new(&[5, 5]).output_spatial(&[3, 3], false).is_err());
}

/// Timing print: `cargo test --release -p qaic-kernels -- --ignored --nocapture conv_gflops`.
#[test]
#[ignore]
fn conv_gflops() {
    let mut rng = Rng::new(9);
    let p = ConvParams { pads: vec![1, 1, 1, 1], ..ConvParams::new(&[3, 3]) };
    let (xs, ws) = ([1usize, 64, 56, 56], [64usize, 64, 3, 3]);
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let mut out = vec![0f32; 64 * 56 * 56];
    let flops = 2.0 * 64.0 * 64.0 * 9.0 * 56.0 * 56.0;
    for isa in Isa::available() {
        let k = Kernels::for_isa(isa).unwrap();
        let pw = k.pack_conv_weights(&w, &ws, 1).unwrap();
        for t in [1, 2] {
            crate::set_num_threads(t);
            let t0 = std::time::Instant::now();
            for _ in 0..10 {
                k.conv_packed(&p, &x, &xs, &pw, None, Activation::None, &mut out).unwrap();
            }
            println!("{isa} threads={t}: 3x3 conv 56x56x64->64: {:.1} GFLOP/s", 10.0 * flops / t0.elapsed().as_secs_f64() / 1e9);
        }
    }
    crate::set_num_threads(0);
}

/// Where the time of a 3x3 convolution goes: `cargo test --release -p qaic-kernels -- --ignored --nocapture conv_breakdown`.
#[test]
#[ignore]
fn conv_breakdown() {
    let mut rng = Rng::new(9);
    let p = ConvParams { pads: vec![1, 1, 1, 1], ..ConvParams::new(&[3, 3]) };
    let x = rng.vec(64 * 56 * 56);
    let w = rng.vec(64 * 64 * 9);
    let g = Geo3::new("t", &p, &[56, 56], &[56, 56]).unwrap();
    crate::set_num_threads(1);
    let k = Kernels::for_isa(Isa::best()).unwrap();
    let pa = k.pack_a(Mat::row_major(&w, 64, 576).unwrap());
    let mut out = vec![0f32; 64 * 3136];
    let mut buf = Vec::new();
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        for _ in 0..10 {
            let pb = im2col_packed(k, &g, &x, 64, std::mem::take(&mut buf));
            buf = pb.into_buffer();
        }
        let t_im2col = t0.elapsed().as_secs_f64() / 10.0;
        let mut col = vec![0f32; 576 * 3136];
        let t0 = std::time::Instant::now();
        for _ in 0..10 {
            im2col(&g, &x, 64, &mut col, false);
        }
        println!("plain im2col {:.2} ms", t0.elapsed().as_secs_f64() / 10.0 * 1e3);
        let pb = im2col_packed(k, &g, &x, 64, std::mem::take(&mut buf));
        let t0 = std::time::Instant::now();
        for _ in 0..10 {
            k.gemm(1.0, &pa, &pb, 0.0, &mut MatMut::row_major(&mut out, 64, 3136).unwrap()).unwrap();
        }
        let t_gemm = t0.elapsed().as_secs_f64() / 10.0;
        buf = pb.into_buffer();
        println!("im2col {:.2} ms, gemm {:.2} ms ({:.1} GF)", t_im2col * 1e3, t_gemm * 1e3, 2.0 * 64.0 * 576.0 * 3136.0 / t_gemm / 1e9);
    }
    crate::set_num_threads(0);
}


/// Depthwise rates on MobileNet-style shapes:
/// `cargo test --release -p qaic-kernels -- --ignored --nocapture depthwise_rates`.
#[test]
#[ignore]
fn depthwise_rates() {
    let mut rng = Rng::new(5);
    crate::set_num_threads(1);
    // (channels, size, kernel, stride)
    for (c, hw, k, s) in [(16, 112, 3, 1), (32, 112, 3, 2), (64, 56, 3, 1), (128, 28, 3, 2), (256, 14, 5, 1), (512, 7, 5, 1)] {
        let p = ConvParams { pads: vec![k / 2; 4], strides: vec![s, s], group: c, ..ConvParams::new(&[k, k]) };
        let xs = [1, c, hw, hw];
        let x = rng.vec(c * hw * hw);
        let w = rng.vec(c * k * k);
        let o = p.output_spatial(&xs[2..], false).unwrap();
        let mut out = vec![0f32; c * o[0] * o[1]];
        for isa in Isa::available() {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t0 = std::time::Instant::now();
                for _ in 0..20 {
                    kern.conv(&p, &x, &xs, &w, &[c, 1, k, k], None, Activation::None, &mut out).unwrap();
                }
                best = best.min(t0.elapsed().as_secs_f64() / 20.0);
            }
            let macs = (out.len() * k * k) as f64;
            println!("{isa:7} c{c:4} {hw:3}x{hw:<3} k{k} s{s}: {:8.1} us  {:5.2} GMAC/s", best * 1e6, macs / best / 1e9);
        }
    }
    crate::set_num_threads(0);
}
