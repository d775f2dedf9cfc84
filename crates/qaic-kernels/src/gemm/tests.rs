//! Frame tests: every available ISA against a naive reference.

use super::*;
use crate::util::testing::{assert_close, Rng};
use crate::Kernels;

fn naive(m: usize, n: usize, k: usize, alpha: f32, a: &Mat, b: &Mat, beta: f32, c: &mut [f32], rsc: usize, csc: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += a.at(i, p) as f64 * b.at(p, j) as f64;
            }
            let x = &mut c[i * rsc + j * csc];
            *x = alpha * s as f32 + if beta == 0.0 { 0.0 } else { beta * *x };
        }
    }
}

#[test]
fn gemm_matches_naive_on_all_isas() {
    let mut rng = Rng::new(1);
    for case in 0..64 {
        let (m, n, k) = match case {
            // Several MC row blocks, several NC column blocks.
            // Matrix-vector shapes (the few-rows / few-columns paths).
            54 => (700, 1, 300),
            55 => (130, 3, 50),
            56 => (1, 300, 700),
            57 => (4, 90, 33),
            58 => (2, 2, 5),
            59 => (1280, 1, 512),
            60 => (300, 40, 20),
            61 => (3, 4200, 7),
            62 => (130, 4100, 9),
            63 => (1, 1, 600),
            _ => (1 + rng.below(70), 1 + rng.below(90), rng.below(300)),
        };
        let ta = case % 2 == 1;
        let tb = case % 3 == 1;
        let tc = case % 5 == 4;
        let (alpha, beta) = if case % 4 == 0 { (1.0, 0.0) } else { (0.5, -1.5) };
        let adata = rng.vec(m * k);
        let bdata = rng.vec(k * n);
        let c0 = rng.vec(m * n);
        let a = if ta { Mat::row_major(&adata, k, m).unwrap().t() } else { Mat::row_major(&adata, m, k).unwrap() };
        let b = if tb { Mat::row_major(&bdata, n, k).unwrap().t() } else { Mat::row_major(&bdata, k, n).unwrap() };
        let (rsc, csc) = if tc { (1, m) } else { (n, 1) };
        let mut want = c0.clone();
        naive(m, n, k, alpha, &a, &b, beta, &mut want, rsc, csc);
        for isa in Isa::available() {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut c = c0.clone();
            kern.gemm(alpha, a, b, beta, &mut MatMut::new(&mut c, m, n, rsc, csc).unwrap()).unwrap();
            assert_close(&format!("{isa} case {case} {m}x{n}x{k}"), &c, &want, 1e-4, 1e-4);
            // Pre-packed operands give the same result.
            let pa = kern.pack_a(a);
            let pb = kern.pack_b(b);
            let mut c2 = c0.clone();
            kern.gemm(alpha, &pa, &pb, beta, &mut MatMut::new(&mut c2, m, n, rsc, csc).unwrap()).unwrap();
            assert_close(&format!("{isa} packed case {case}"), &c2, &want, 1e-4, 1e-4);
        }
    }
}

#[test]
fn epilogue_bias_and_activation() {
    for (m, n, k) in [(13, 37, 70), (200, 2, 30), (3, 50, 40)] {
        epilogue_case(m, n, k);
    }
}

fn epilogue_case(m: usize, n: usize, k: usize) {
    let mut rng = Rng::new(2);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let rb = rng.vec(m);
    let cb = rng.vec(n);
    for isa in Isa::available() {
        let kern = Kernels::for_isa(isa).unwrap();
        let mut plain = vec![0f32; m * n];
        let am = Mat::row_major(&a, m, k).unwrap();
        let bm = Mat::row_major(&b, k, n).unwrap();
        kern.gemm(1.0, am, bm, 0.0, &mut MatMut::row_major(&mut plain, m, n).unwrap()).unwrap();
        let mut fused = vec![f32::NAN; m * n];
        let epi = Epilogue { bias: Bias::Row(&rb), activation: Activation::Clip { min: -0.5, max: 0.5 } };
        kern.gemm_with(1.0, am, bm, 0.0, &mut MatMut::row_major(&mut fused, m, n).unwrap(), &epi).unwrap();
        let want: Vec<f32> = (0..m * n).map(|x| (plain[x] + rb[x / n]).clamp(-0.5, 0.5)).collect();
        assert_close("row bias", &fused, &want, 1e-5, 1e-6);
        let epi = Epilogue { bias: Bias::Col(&cb), activation: Activation::Relu };
        kern.gemm_with(1.0, am, bm, 0.0, &mut MatMut::row_major(&mut fused, m, n).unwrap(), &epi).unwrap();
        let want: Vec<f32> = (0..m * n).map(|x| (plain[x] + cb[x % n]).max(0.0)).collect();
        assert_close("col bias", &fused, &want, 1e-5, 1e-6);
        let epi = Epilogue { bias: Bias::Col(&cb), activation: Activation::HardSwish };
        kern.gemm_with(1.0, am, bm, 0.0, &mut MatMut::row_major(&mut fused, m, n).unwrap(), &epi).unwrap();
        let hs = |x: f32| x * (x / 6.0 + 0.5).clamp(0.0, 1.0);
        let want: Vec<f32> = (0..m * n).map(|x| hs(plain[x] + cb[x % n])).collect();
        assert_close("hardswish", &fused, &want, 1e-5, 1e-6);
        let epi = Epilogue { bias: Bias::Row(&rb), activation: Activation::HardSigmoid { alpha: 0.2, beta: 0.5 } };
        kern.gemm_with(1.0, am, bm, 0.0, &mut MatMut::row_major(&mut fused, m, n).unwrap(), &epi).unwrap();
        let want: Vec<f32> = (0..m * n).map(|x| (0.2 * (plain[x] + rb[x / n]) + 0.5).clamp(0.0, 1.0)).collect();
        assert_close("hardsigmoid", &fused, &want, 1e-5, 1e-6);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let k = Kernels::best();
    let a = [0f32; 6];
    assert!(Mat::row_major(&a, 3, 3).is_err());
    let mut c = [0f32; 4];
    assert!(MatMut::new(&mut c, 2, 2, 0, 1).is_err()); // aliasing rows
    let am = Mat::row_major(&a, 2, 3).unwrap();
    let r = k.gemm(1.0, am, am, 0.0, &mut MatMut::row_major(&mut c, 2, 2).unwrap());
    assert!(matches!(r, Err(KernelError::Invalid { .. })));
}

fn naive_matmul(a: &[f32], ash: &[usize], b: &[f32], bsh: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let out = matmul_shape(ash, bsh).unwrap();
    let a2: Vec<usize> = if ash.len() == 1 { vec![1, ash[0]] } else { ash.to_vec() };
    let b2: Vec<usize> = if bsh.len() == 1 { vec![bsh[0], 1] } else { bsh.to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let ob = qaic_tensor::broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).unwrap();
    let sa = crate::util::broadcast_strides(&a2[..a2.len() - 2], &ob).unwrap();
    let sb = crate::util::broadcast_strides(&b2[..b2.len() - 2], &ob).unwrap();
    let mut res = vec![];
    crate::util::for_each_offset(&ob, [&sa, &sb], |[oa, ob]| {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f32;
                for p in 0..k {
                    s += a[oa * m * k + i * k + p] * b[ob * k * n + p * n + j];
                }
                res.push(s);
            }
        }
    });
    (res, out)
}

#[test]
fn batched_matmul_broadcasts() {
    let mut rng = Rng::new(3);
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 5, 4], &[4, 6]),
        (&[5, 4], &[3, 4, 7]),
        (&[2, 1, 5, 4], &[1, 3, 4, 2]),
        (&[4], &[4]),
        (&[4], &[2, 4, 3]),
        (&[2, 3, 4], &[4]),
        (&[12, 40, 8], &[12, 8, 40]),
    ];
    for (ash, bsh) in cases {
        let a = rng.vec(ash.iter().product());
        let b = rng.vec(bsh.iter().product());
        let (want, wshape) = naive_matmul(&a, ash, &b, bsh);
        for isa in Isa::available() {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut out = vec![0f32; want.len()];
            let sh = kern.matmul(&a, ash, &b, bsh, &mut out).unwrap();
            assert_eq!(sh, wshape);
            assert_close(&format!("{isa} {ash:?}x{bsh:?}"), &out, &want, 1e-4, 1e-5);
            if bsh.len() == 2 {
                let pb = kern.pack_b(Mat::row_major(&b, bsh[0], bsh[1]).unwrap());
                let mut out2 = vec![0f32; want.len()];
                kern.matmul_packed(&a, ash, &pb, &mut out2, &Epilogue::default()).unwrap();
                assert_close("packed", &out2, &want, 1e-4, 1e-5);
            }
        }
    }
    assert!(matmul_shape(&[2, 3], &[4, 2]).is_err());
}

/// Timing print, no asserts on speed: `cargo test --release -p qaic-kernels -- --ignored --nocapture gemm_gflops`.
#[test]
#[ignore]
fn gemm_gflops() {
    let s = 512;
    let mut rng = Rng::new(4);
    let a = rng.vec(s * s);
    let b = rng.vec(s * s);
    let mut c = vec![0f32; s * s];
    for isa in Isa::available() {
        let kern = Kernels::for_isa(isa).unwrap();
        for t in [1, 2] {
            crate::set_num_threads(t);
            let t0 = std::time::Instant::now();
            let iters = 10;
            for _ in 0..iters {
                kern.gemm(1.0, Mat::row_major(&a, s, s).unwrap(), Mat::row_major(&b, s, s).unwrap(), 0.0, &mut MatMut::row_major(&mut c, s, s).unwrap()).unwrap();
            }
            let dt = t0.elapsed().as_secs_f64() / iters as f64;
            println!("{isa} threads={t}: {:.1} GFLOP/s", 2.0 * (s * s * s) as f64 / dt / 1e9);
        }
    }
    crate::set_num_threads(0);
}
