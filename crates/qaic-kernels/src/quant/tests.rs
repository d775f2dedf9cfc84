//! Unit and property tests of the integer kernels: every path against the scalar
//! reference on random shapes, edge sizes included.

use super::*;

#[test]
fn matmul_integer_onnx_example() {
    // The example of the ONNX MatMulInteger operator documentation.
    let a: [u8; 12] = [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0];
    let b: [u8; 6] = [1, 4, 2, 5, 3, 6];
    let mut out = [0i32; 8];
    let sh = matmul_integer(&a, &[4, 3], ZeroPoint::Scalar(12u8), &b, &[3, 2], ZeroPoint::Scalar(0u8), &mut out).unwrap();
    assert_eq!(sh, vec![4, 2]);
    assert_eq!(out, [-38, -83, -44, -98, -50, -113, -56, -128]);
    let r = matmul_integer(&a, &[4, 3], ZeroPoint::PerChannel(&[1u8, 2]), &b, &[3, 2], ZeroPoint::Scalar(0u8), &mut out);
    assert!(r.is_err(), "per-row zero point needs 4 values");
}

#[test]
fn conv_integer_matches_float_conv() {
    let x: Vec<u8> = (0..2 * 3 * 5 * 5).map(|v| (v * 37 % 251) as u8).collect();
    let w: Vec<i8> = (0..4 * 3 * 3 * 3).map(|v| ((v * 13 % 255) - 127) as i8).collect();
    let p = ConvParams { pads: vec![1, 1, 1, 1], strides: vec![2, 1], ..ConvParams::new(&[3, 3]) };
    let wz = [1i8, -2, 0, 3];
    let mut out = vec![0i32; 2 * 4 * 3 * 5];
    conv_integer(&p, &x, &[2, 3, 5, 5], 100u8, &w, &[4, 3, 3, 3], ZeroPoint::PerChannel(&wz), &mut out).unwrap();
    let xf: Vec<f32> = x.iter().map(|&v| v as f32 - 100.0).collect();
    let wf: Vec<f32> = w.iter().enumerate().map(|(i, &v)| v as f32 - wz[i / 27] as f32).collect();
    let mut of = vec![0f32; out.len()];
    let k = crate::Kernels::for_isa(crate::Isa::Scalar).unwrap();
    k.conv(&p, &xf, &[2, 3, 5, 5], &wf, &[4, 3, 3, 3], None, crate::gemm::Activation::None, &mut of).unwrap();
    for (a, b) in out.iter().zip(&of) {
        assert_eq!(*a as f32, *b);
    }
    let mut q = vec![0u8; out.len()];
    requantize(&out, &[0.001], 1, 128u8, &mut q).unwrap();
    for (qv, &a) in q.iter().zip(&out) {
        assert_eq!(*qv, ((a as f32 * 0.001).round_ties_even() + 128.0).clamp(0.0, 255.0) as u8);
    }
}

use crate::util::testing::Rng;
use half::f16;

/// Random values of `T` over its whole range, with the extremes over-represented (they are
/// where saturation and wrap-around bugs live).
fn rand_vals<T: QInt>(r: &mut Rng, n: usize) -> Vec<T> {
    (0..n)
        .map(|_| match r.below(8) {
            0 => T::from_i32(T::MIN),
            1 => T::from_i32(T::MAX),
            _ => T::from_i32(T::MIN + r.below((T::MAX - T::MIN) as usize + 1) as i32),
        })
        .collect()
}

/// Edge sizes around every tile width (4, 6, 8, 16, 32) and k group (2, 4), plus random ones.
fn sizes(r: &mut Rng) -> Vec<(usize, usize, usize)> {
    let mut v = vec![(1, 1, 1), (1, 1, 0), (0, 3, 2), (7, 33, 5), (8, 32, 4), (9, 31, 3), (6, 16, 8), (5, 17, 1), (13, 64, 130), (1, 100, 67)];
    for _ in 0..12 {
        v.push((1 + r.below(40), 1 + r.below(70), r.below(90)));
    }
    v
}

fn gemm_all_paths<A: QInt, B: QInt>(seed: u64) {
    let mut r = Rng::new(seed);
    for (case, (m, n, k)) in sizes(&mut r).into_iter().enumerate() {
        let (lda, ldb, ldc) = (k + r.below(3), n + r.below(3), n + r.below(2));
        let a: Vec<A> = rand_vals(&mut r, m.max(1) * lda);
        let b: Vec<B> = rand_vals(&mut r, k.max(1) * ldb);
        let azp: Vec<A> = rand_vals(&mut r, m);
        let bzp: Vec<B> = rand_vals(&mut r, n);
        for per in [false, true] {
            let za = if per { ZeroPoint::PerChannel(&azp) } else { ZeroPoint::Scalar(azp.first().copied().unwrap_or_default()) };
            let zb = if per { ZeroPoint::PerChannel(&bzp) } else { ZeroPoint::Scalar(bzp.first().copied().unwrap_or_default()) };
            let mut want = vec![7i32; m.max(1) * ldc];
            gemm_i8_reference(m, n, k, &a, lda, za, &b, ldb, zb, &mut want, ldc);
            for path in IntPath::available() {
                let mut got = vec![7i32; m.max(1) * ldc];
                gemm_i8_with(path, m, n, k, &a, lda, za, &b, ldb, zb, &mut got, ldc).unwrap();
                assert_eq!(got, want, "{path} case {case} {m}x{n}x{k} per-channel {per} {}x{} bits", A::BITS, B::BITS);
            }
        }
    }
}

#[test]
fn gemm_every_path_equals_reference_u8_i8() {
    gemm_all_paths::<u8, i8>(1);
}
#[test]
fn gemm_every_path_equals_reference_i8_u8() {
    gemm_all_paths::<i8, u8>(2);
}
#[test]
fn gemm_every_path_equals_reference_u8_u8_and_i8_i8() {
    gemm_all_paths::<u8, u8>(3);
    gemm_all_paths::<i8, i8>(4);
}
#[test]
fn gemm_every_path_equals_reference_int16() {
    gemm_all_paths::<i16, i16>(5);
    gemm_all_paths::<u16, i8>(6);
    gemm_all_paths::<u8, u16>(7);
}

#[test]
fn gemm_wraps_like_the_hardware() {
    // K large enough for -32768 * -32768 pairs to overflow i32: the sum wraps, on every path.
    let k = 70;
    let a = vec![i16::MIN; k];
    let b = vec![i16::MIN; k];
    let want = (0..k).fold(0i32, |s, _| s.wrapping_add(1 << 30));
    for path in IntPath::available() {
        let mut c = [0i32];
        gemm_i8_with(path, 1, 1, k, &a, k, ZeroPoint::Scalar(0), &b, 1, ZeroPoint::Scalar(0), &mut c, 1).unwrap();
        assert_eq!(c[0], want, "{path}");
    }
}

#[test]
fn packed_operands_check_their_pairing() {
    let path = IntPath::best();
    let b = PackedB::new::<u8, i8>(path, 3, 2, &[1i8; 6], 2, 1, ZeroPoint::Scalar(0)).unwrap();
    assert!(PackedA::new(&b, 1, &[1i8; 3], 3, ZeroPoint::Scalar(0)).is_err(), "B packed for u8 A");
    assert!(PackedB::new::<u8, i8>(path, 3, 2, &[1i8; 5], 2, 1, ZeroPoint::Scalar(0)).is_err());
    assert!(PackedB::new::<u8, i8>(path, 3, 2, &[1i8; 6], 2, 1, ZeroPoint::PerChannel(&[0, 0, 0])).is_err());
    let a = PackedA::new(&b, 2, &[1u8; 6], 3, ZeroPoint::Scalar(0)).unwrap();
    assert!(gemm_packed(&a, &b, &mut [0i32; 3], 2, 1).is_err(), "C too small");
}

#[test]
#[allow(clippy::type_complexity)]
fn conv_integer_every_path_equals_reference() {
    let mut r = Rng::new(11);
    // (batch, channels, out channels, group, spatial, kernel, stride, dilation, pads)
    let cases: Vec<(usize, usize, usize, usize, Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>)> = vec![
        (2, 3, 4, 1, vec![5, 5], vec![3, 3], vec![2, 1], vec![1, 1], vec![1, 1, 1, 1]),
        (1, 4, 4, 4, vec![7, 6], vec![3, 3], vec![1, 1], vec![1, 1], vec![1, 0, 1, 2]),
        (1, 6, 9, 3, vec![9], vec![2], vec![1], vec![2], vec![0, 1]),
        (1, 5, 33, 1, vec![4, 4], vec![1, 1], vec![1, 1], vec![1, 1], vec![0, 0, 0, 0]),
        (1, 2, 3, 1, vec![3, 4, 5], vec![2, 2, 3], vec![1, 2, 1], vec![1, 1, 1], vec![0, 1, 1, 1, 0, 1]),
    ];
    for (ci, (n, c, m, g, sp, ks, st, dl, pads)) in cases.into_iter().enumerate() {
        let p = ConvParams { kernel: ks.clone(), strides: st, dilations: dl, pads, group: g };
        let xs: Vec<usize> = [n, c].into_iter().chain(sp.iter().copied()).collect();
        let ws: Vec<usize> = [m, c / g].into_iter().chain(ks.iter().copied()).collect();
        let x: Vec<u8> = rand_vals(&mut r, numel(&xs));
        let w: Vec<i8> = rand_vals(&mut r, numel(&ws));
        let wz: Vec<i8> = rand_vals(&mut r, m);
        let xz = 117u8;
        // Reference: f64 convolution of the zero-point-free values through the f32 kernel
        // path is not exact, so compute directly.
        let os = p.output_spatial(&sp, false).unwrap();
        let oshape: Vec<usize> = [n, m].into_iter().chain(os.iter().copied()).collect();
        let mut want = vec![0i32; numel(&oshape)];
        let g3 = Geo3::new("t", &p, &sp, &os).unwrap();
        let (cg, mg, kd) = (c / g, m / g, numel(&ws[1..]));
        for b in 0..n {
            for o in 0..m {
                let gi = o / mg;
                for s in 0..g3.osize() {
                    let (o0, o1, o2) = (s / (g3.o[1] * g3.o[2]), (s / g3.o[2]) % g3.o[1], s % g3.o[2]);
                    let mut acc = 0i32;
                    for r_ in 0..kd {
                        let (ch, kk) = (r_ / g3.ksize(), r_ % g3.ksize());
                        let (k0, k1, k2) = (kk / (g3.k[1] * g3.k[2]), (kk / g3.k[2]) % g3.k[1], kk % g3.k[2]);
                        let i0 = (o0 * g3.s[0] + k0 * g3.d[0]) as isize - g3.pb[0] as isize;
                        let i1 = (o1 * g3.s[1] + k1 * g3.d[1]) as isize - g3.pb[1] as isize;
                        let i2 = (o2 * g3.s[2] + k2 * g3.d[2]) as isize - g3.pb[2] as isize;
                        let inside = [i0, i1, i2].iter().zip(g3.i).all(|(&i, e)| i >= 0 && (i as usize) < e);
                        let xv = if inside {
                            x[((b * c + gi * cg + ch) * g3.i[0] + i0 as usize) * g3.i[1] * g3.i[2] + i1 as usize * g3.i[2] + i2 as usize] as i32
                        } else {
                            xz as i32
                        };
                        acc = acc.wrapping_add((xv - xz as i32) * (w[o * kd + r_] as i32 - wz[o] as i32));
                    }
                    want[(b * m + o) * g3.osize() + s] = acc;
                }
            }
        }
        for path in IntPath::available() {
            let packed = PackedConvWeights::new::<u8, i8>(path, &w, &ws, ZeroPoint::PerChannel(&wz), g).unwrap();
            let mut got = vec![0i32; want.len()];
            assert_eq!(conv_integer_packed(&p, &x, &xs, xz, &packed, &mut got).unwrap(), oshape);
            assert_eq!(got, want, "{path} case {ci}");
        }
    }
}

#[test]
#[allow(clippy::excessive_precision)] // scales quoted from the facts sheet
fn quantize_matches_the_scalar_definitions_on_every_path() {
    let mut r = Rng::new(21);
    let mut x: Vec<f32> = (0..3001).map(|_| r.f32(-300.0, 300.0)).collect();
    // Ties, specials and values around the clamp limits.
    x.extend([0.25, 0.75, 1.25, -0.25, -0.75, 63.75, 64.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e30, -1e30, 127.5, -128.5, f32::from_bits(0x3fc0_0001)]);
    let scales = [0.5f32, 0.027450980618596077, 3.0];
    fn check<Q: QInt + PartialEq>(x: &[f32], scales: &[f32], zps: &[Q], inner: usize) {
        for glow in [true, false] {
            let want: Vec<Q> = x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = (i / inner) % scales.len();
                    let (s, z) = (scales[c], zps[if zps.len() == 1 { 0 } else { c }].to_i32());
                    let r = if glow { (v / s + z as f32).round_ties_even() as f64 } else { (v / s).round_ties_even() as f64 + z as f64 };
                    Q::from_i32(if r.is_nan() { 0 } else { r.clamp(Q::MIN as f64, Q::MAX as f64) as i32 })
                })
                .collect();
            let rounding = if glow { QuantizeRounding::Glow } else { QuantizeRounding::Onnx };
            for path in IntPath::available() {
                let mut got = vec![Q::default(); x.len()];
                quantize_with(path, x, scales, zps, inner, rounding, &mut got).unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| a.to_i32() == b.to_i32()), "{path} glow={glow} {} bits", Q::BITS);
                // And back: dequantize equals its definition.
                let mut y = vec![0f32; x.len()];
                dequantize_with(path, &got, scales, zps, inner, &mut y).unwrap();
                for (i, (&yv, q)) in y.iter().zip(&got).enumerate() {
                    let c = (i / inner) % scales.len();
                    let z = zps[if zps.len() == 1 { 0 } else { c }].to_i32();
                    assert_eq!(yv.to_bits(), (((q.to_i32() - z) as f32) * scales[c]).to_bits(), "{path} dequantize {i}");
                }
            }
        }
    }
    check::<i8>(&x, &scales, &[-55, 0, 3], 7);
    check::<u8>(&x, &scales, &[128], 1);
    check::<i16>(&x, &scales[..1], &[-300], 1);
    check::<u16>(&x, &scales, &[0, 40000, 5], 1000);
    // Facts sheet V4 (scale 0.5, offset 0, Int8).
    let mut q = [0i8; 7];
    quantize(&[0.25, 0.75, 1.25, -0.25, -0.75, 63.75, 64.0], &[0.5], &[0], 1, QuantizeRounding::Glow, &mut q).unwrap();
    assert_eq!(q, [0, 2, 2, 0, -2, 127, 127]);
    // Glow adds the offset before rounding: f32::from_bits(0x3fc0_0001) / 1 - 55 rounds in f32 to -53.5 -> -54.
    let mut q = [0i8; 2];
    quantize(&[f32::from_bits(0x3fc0_0001)], &[1.0], &[-55], 1, QuantizeRounding::Glow, &mut q[..1]).unwrap();
    quantize(&[f32::from_bits(0x3fc0_0001)], &[1.0], &[-55], 1, QuantizeRounding::Onnx, &mut q[1..]).unwrap();
    assert_eq!(q, [-54, -53]);
    assert!(quantize(&[1.0], &[1.0, 2.0], &[0i8; 3], 1, QuantizeRounding::Glow, &mut [0i8]).is_err());
}

#[test]
fn requantize_is_the_same_on_every_path() {
    let mut r = Rng::new(31);
    let mut acc: Vec<i32> = (0..2053).map(|_| r.next_u64() as i32 >> r.below(31)).collect();
    acc.extend([i32::MIN, i32::MAX, 0, 1, -1, 1000, -1000]);
    let mults = [0.001f32, 0.5, 1.0 / 3.0];
    for inner in [1, 5, 300] {
        let want: Vec<i8> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| ((a as f32 * mults[(i / inner) % 3]).round_ties_even() + 3.0).clamp(-128.0, 127.0) as i8)
            .collect();
        for path in IntPath::available() {
            let mut got = vec![0i8; acc.len()];
            requantize_with(path, &acc, &mults, inner, 3i8, &mut got).unwrap();
            assert_eq!(got, want, "{path} inner {inner}");
        }
    }
}

#[test]
fn requantize_glow_is_the_same_on_every_path() {
    let mut r = Rng::new(37);
    let mut acc: Vec<i32> = (0..2053).map(|_| r.next_u64() as i32 >> r.below(31)).collect();
    // Exact ties (x.5) in both signs: Glow rounds them away from zero.
    acc.extend([i32::MIN, i32::MAX, 0, 1, -1, 3, -3, 1000, -1000]);
    let mults = [0.001f32, 0.5, 1.0 / 3.0];
    let bias = [7i32, -100, 0];
    for inner in [1, 5, 300] {
        let want: Vec<u8> = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let c = (i / inner) % 3;
                let v = ((a.wrapping_add(bias[c]) as f32 * mults[c]) as f64).round() + 10.0;
                v.clamp(0.0, 255.0) as u8
            })
            .collect();
        for path in IntPath::available() {
            let mut got = vec![0u8; acc.len()];
            requantize_glow_with(path, &acc, &bias, &mults, inner, 10u8, &mut got).unwrap();
            assert_eq!(got, want, "{path} inner {inner}");
        }
    }
    assert!(requantize_glow(&[1], &[1, 2], &[1.0; 3], 1, 0i8, &mut [0i8]).is_err(), "bias count must match");
}

#[test]
fn fp16_conversion_is_the_same_on_every_path() {
    let mut r = Rng::new(41);
    // Every f16 bit pattern (NaNs, subnormals, infinities) widens identically.
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let want: Vec<u32> = all.iter().map(|h| h.to_f32().to_bits()).collect();
    // Random f32 bit patterns plus the f16 rounding boundaries (ties, overflow, subnormals).
    let mut xs: Vec<f32> = (0..100_003).map(|_| f32::from_bits(r.next_u64() as u32)).collect();
    for h in (0..=u16::MAX).step_by(7) {
        let v = f16::from_bits(h).to_f32();
        let next = f16::from_bits(h.wrapping_add(1)).to_f32();
        xs.extend([v, (v + next) / 2.0, f32::from_bits(v.to_bits() + 1)]);
    }
    xs.extend([65504.0, 65519.99, 65520.0, 1e-8, 5.96e-8, 2.98e-8, f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001)]);
    let want16: Vec<u16> = xs.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
    for path in IntPath::available() {
        for len in [all.len(), 1, 15, 17, 33] {
            let mut got = vec![0f32; len];
            f16_to_f32_with(path, &all[..len], &mut got).unwrap();
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == *w), "{path} widen len {len}");
        }
        let mut got = vec![f16::ZERO; xs.len()];
        f32_to_f16_with(path, &xs, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want16).enumerate() {
            assert_eq!(g.to_bits(), *w, "{path} narrow {} ({:#x})", xs[i], xs[i].to_bits());
        }
    }
}

#[test]
fn env_names_select_paths() {
    for p in IntPath::ALL {
        assert_eq!(p.name().parse::<IntPath>().unwrap(), p);
        assert_eq!(IntPath::select(p.name()).is_ok(), p.is_available());
    }
    assert!(IntPath::best_for(crate::Isa::Scalar) == IntPath::Scalar);
    assert!("neon".parse::<IntPath>().is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    #[test]
    fn gemm_random_shapes_bit_identical(m in 0usize..20, n in 0usize..40, k in 0usize..40, seed in 0u64..1000) {
        let mut r = Rng::new(seed);
        let a: Vec<u8> = rand_vals(&mut r, m * k);
        let b: Vec<i8> = rand_vals(&mut r, k * n);
        let za = r.below(256) as u8;
        let zb = (r.below(256) as i32 - 128) as i8;
        let mut want = vec![0i32; m * n];
        gemm_i8_reference(m, n, k, &a, k, ZeroPoint::Scalar(za), &b, n, ZeroPoint::Scalar(zb), &mut want, n);
        for path in IntPath::available() {
            let mut got = vec![0i32; m * n];
            gemm_i8_with(path, m, n, k, &a, k, ZeroPoint::Scalar(za), &b, n, ZeroPoint::Scalar(zb), &mut got, n).unwrap();
            proptest::prop_assert_eq!(&got, &want, "{}", path);
        }
    }
}

/// Rates of the element-wise kernels per path (`cargo test --release -p qaic-kernels --lib
/// quant::tests::qdq_rates -- --ignored --nocapture`); prints, never asserts timings.
#[test]
#[ignore]
fn qdq_rates() {
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.37 - 150.0).collect();
    let mut q = vec![0i8; n];
    let mut y = vec![0f32; n];
    for path in IntPath::available() {
        let t = std::time::Instant::now();
        for _ in 0..20 {
            quantize_with(path, &x, &[0.5], &[3i8], 1, QuantizeRounding::Glow, &mut q).unwrap();
        }
        let tq = t.elapsed().as_secs_f64() / 20.0;
        let t = std::time::Instant::now();
        for _ in 0..20 {
            dequantize_with(path, &q, &[0.5], &[3i8], 1, &mut y).unwrap();
        }
        let td = t.elapsed().as_secs_f64() / 20.0;
        println!("{path}: quantize {:.2} Ge/s, dequantize {:.2} Ge/s", n as f64 / tq / 1e9, n as f64 / td / 1e9);
    }
}

/// Int8 GEMM rates per path (ignored; prints GOP/s, never asserts timings).
#[test]
#[ignore]
fn gemm_rates() {
    let (m, n, k) = (512, 512, 512);
    let mut r = Rng::new(5);
    let a: Vec<u8> = rand_vals(&mut r, m * k);
    let b: Vec<i8> = rand_vals(&mut r, k * n);
    let mut c = vec![0i32; m * n];
    for path in IntPath::available() {
        let pb = PackedB::new::<u8, i8>(path, k, n, &b, n, 1, ZeroPoint::Scalar(3)).unwrap();
        let iters = if path == IntPath::Scalar { 2 } else { 20 };
        let t = std::time::Instant::now();
        for _ in 0..iters {
            let pa = PackedA::new(&pb, m, &a, k, ZeroPoint::Scalar(128)).unwrap();
            gemm_packed(&pa, &pb, &mut c, n, 1).unwrap();
        }
        let dt = t.elapsed().as_secs_f64() / iters as f64;
        println!("{path}: int8 gemm 512^3 (packed B) {:.1} GOP/s", 2.0 * (m * n * k) as f64 / dt / 1e9);
    }
}

#[test]
fn qconv_depthwise_and_packed_paths_agree_with_the_reference() {
    use crate::conv::ConvParams;
    let mut r = Rng::new(53);
    // (channels, spatial, kernel, stride, pad, dilation): depthwise and a grouped/plain conv.
    for &(c, hw, k, s, p, d) in &[(8usize, 9usize, 3usize, 1usize, 1usize, 1usize), (5, 11, 3, 2, 1, 1), (4, 7, 5, 2, 2, 1), (3, 10, 3, 1, 2, 2), (6, 5, 1, 1, 0, 1)] {
        for depthwise in [true, false] {
            let (m, cg, group) = if depthwise { (c, 1, c) } else { (6, c, 1) };
            let mut params = ConvParams::new(&[k, k]);
            params.strides = vec![s, s];
            params.pads = vec![p; 4];
            params.dilations = vec![d, d];
            params.group = group;
            let x: Vec<u8> = (0..2 * c * hw * hw).map(|_| r.next_u64() as u8).collect();
            let w: Vec<u8> = (0..m * cg * k * k).map(|_| r.next_u64() as u8).collect();
            let w_zp: Vec<i32> = (0..m).map(|i| i as i32 % 3 - 1).collect();
            let bias: Vec<i32> = (0..m).map(|i| i as i32 * 97 - 200).collect();
            let mult: Vec<f32> = (0..m).map(|i| 0.002 + i as f32 * 0.0007).collect();
            let xs = [2, c, hw, hw];
            let ws = [m, cg, k, k];
            let q = QConvGlow::new(IntPath::current(), params.clone(), Q8::I8, 3, Q8::I8, &w, &ws, &w_zp, &bias, &mult, Q8::U8, 7).unwrap();
            let oshape = q.output_shape(&xs).unwrap();
            let mut got = vec![0u8; oshape.iter().product()];
            q.run(&x, &xs, &mut got).unwrap();
            // Reference: the generic integer convolution and the Glow requantization.
            let xi: Vec<i8> = x.iter().map(|&v| v as i8).collect();
            let wi: Vec<i8> = w.iter().map(|&v| v as i8).collect();
            let wz: Vec<i8> = w_zp.iter().map(|&v| v as i8).collect();
            let mut acc = vec![0i32; got.len()];
            conv_integer(&params, &xi, &xs, 3i8, &wi, &ws, ZeroPoint::PerChannel(&wz), &mut acc).unwrap();
            let inner: usize = oshape[2..].iter().product();
            let want: Vec<u8> = acc
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let ch = (i / inner) % m;
                    (((a + bias[ch]) as f32 * mult[ch]).round() + 7.0).clamp(0.0, 255.0) as u8
                })
                .collect();
            assert_eq!(got, want, "c {c} k {k} s {s} p {p} d {d} depthwise {depthwise}");
        }
    }
}
