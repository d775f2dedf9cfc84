use super::*;
use crate::util::testing::{assert_close, Rng};
use crate::Isa;

fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32).collect()
}

#[test]
fn transcendental_accuracy_against_libm() {
    let cases: &[(UnaryOp, f32, f32, f64)] = &[
        (UnaryOp::Exp, -87.0, 88.0, 2e-7),
        (UnaryOp::Exp, -5.0, 5.0, 2e-7),
        (UnaryOp::Log, 1e-30, 10.0, 2e-7),
        (UnaryOp::Log, 0.5, 2.0, 2e-7),
        (UnaryOp::Tanh, -10.0, 10.0, 5e-7),
        (UnaryOp::Tanh, -0.7, 0.7, 5e-7),
        (UnaryOp::Sigmoid, -80.0, 30.0, 5e-7),
        (UnaryOp::Erf, -5.0, 5.0, 5e-7),
        (UnaryOp::Erf, -0.01, 0.01, 5e-7),
        (UnaryOp::Gelu, -5.0, 5.0, 3e-6),
        (UnaryOp::GeluTanh, -5.0, 5.0, 3e-6),
        (UnaryOp::Softplus, -20.0, 20.0, 1e-6),
        (UnaryOp::Silu, -20.0, 20.0, 1e-6),
    ];
    for isa in Isa::available() {
        let k = Kernels::for_isa(isa).unwrap();
        for &(op, lo, hi, tol) in cases {
            let x = grid(lo, hi, 100_001);
            let mut y = vec![0f32; x.len()];
            k.unary(op, &x, &mut y).unwrap();
            let mut worst = (0f64, 0f32);
            for (xi, yi) in x.iter().zip(&y) {
                let r = unary_reference(op, *xi as f64);
                // Relative error, with an absolute floor where the result crosses zero.
                let e = (*yi as f64 - r).abs() / r.abs().max(1e-6);
                if e > worst.0 {
                    worst = (e, *xi);
                }
            }
            assert!(worst.0 <= tol, "{isa} {op:?} on [{lo}, {hi}]: relative error {:e} at x = {}", worst.0, worst.1);
        }
    }
}

#[test]
fn special_values() {
    for isa in Isa::available() {
        let k = Kernels::for_isa(isa).unwrap();
        let x = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0, 100.0, -120.0, 1e-40];
        let mut y = [0f32; 8];
        k.unary(UnaryOp::Exp, &x, &mut y).unwrap();
        assert_eq!(&y[..2], &[f32::INFINITY, 0.0]);
        assert!(y[2].is_nan());
        assert_eq!(&y[3..7], &[1.0, 1.0, f32::INFINITY, 0.0]);
        k.unary(UnaryOp::Log, &x, &mut y).unwrap();
        assert_eq!(y[0], f32::INFINITY);
        assert!(y[1].is_nan() && y[2].is_nan());
        assert_eq!(&y[3..5], &[f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert!((y[7] - (1e-40f64).ln() as f32).abs() < 1e-4);
        k.unary(UnaryOp::Tanh, &x, &mut y).unwrap();
        assert_eq!(&y[..2], &[1.0, -1.0]);
        assert!(y[2].is_nan());
        k.unary(UnaryOp::Round, &[0.5, 1.5, 2.5, -0.5, -2.5, 2.4], &mut y[..6]).unwrap();
        assert_eq!(&y[..6], &[0.0, 2.0, 2.0, -0.0, -2.0, 2.0]);
    }
}

#[test]
fn every_op_agrees_across_isas() {
    let ops = [
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Erf,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.1),
        UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 },
        UnaryOp::HardSwish,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
        UnaryOp::Sign,
        UnaryOp::Clip { min: -0.5, max: 0.5 },
        UnaryOp::Elu(1.0),
        UnaryOp::Selu { alpha: 1.67, gamma: 1.05 },
        UnaryOp::Celu(1.0),
        UnaryOp::ThresholdedRelu(1.0),
        UnaryOp::Softplus,
        UnaryOp::Softsign,
        UnaryOp::Silu,
        UnaryOp::Mish,
        UnaryOp::Sin,
        UnaryOp::Cos,
        UnaryOp::Atan,
    ];
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..1037).map(|_| rng.f32(-6.0, 6.0)).collect();
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    for op in ops {
        let mut want = vec![0f32; x.len()];
        scalar.unary(op, &x, &mut want).unwrap();
        let refv: Vec<f32> = x.iter().map(|&v| unary_reference(op, v as f64) as f32).collect();
        assert_close(&format!("scalar {op:?} vs reference"), &want, &refv, 2e-6, 1e-6);
        for isa in Isa::available() {
            let k = Kernels::for_isa(isa).unwrap();
            let mut y = x.clone();
            k.unary_inplace(op, &mut y);
            assert_close(&format!("{isa} {op:?}"), &y, &want, 2e-6, 1e-7);
        }
    }
}

#[test]
fn binary_broadcast_all_isas() {
    let mut rng = Rng::new(6);
    let shapes: &[(&[usize], &[usize])] =
        &[(&[2, 3, 4], &[2, 3, 4]), (&[2, 3, 4], &[4]), (&[1, 3, 1], &[2, 1, 5]), (&[], &[3]), (&[4, 1], &[]), (&[2, 8, 7, 7], &[1, 8, 1, 1])];
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow, BinaryOp::Max, BinaryOp::Min, BinaryOp::Fmod, BinaryOp::PRelu];
    for (ash, bsh) in shapes {
        let a: Vec<f32> = (0..ash.iter().product()).map(|_| rng.f32(0.1, 3.0)).collect();
        let b: Vec<f32> = (0..bsh.iter().product()).map(|_| rng.f32(-2.0, 2.0)).collect();
        for op in ops {
            let f = binary_fn(op);
            let n = broadcast::broadcast_shapes(&[ash, bsh]).unwrap().iter().product();
            let mut want = vec![0f32; n];
            broadcast::broadcast_binary(&a, ash, &b, bsh, &mut want, &f).unwrap();
            for isa in Isa::available() {
                let k = Kernels::for_isa(isa).unwrap();
                let mut out = vec![0f32; n];
                k.binary(op, &a, ash, &b, bsh, &mut out).unwrap();
                assert_close(&format!("{isa} {op:?} {ash:?} {bsh:?}"), &out, &want, 1e-6, 1e-7);
            }
        }
    }
    // Constant exponents take the fast path and agree with powf.
    let x = [1.5f32, -2.0, 3.0];
    for e in [2.0f32, 3.0, 0.5, 1.0] {
        let mut o = [0f32; 3];
        Kernels::best().binary(BinaryOp::Pow, &x, &[3], &[e], &[], &mut o).unwrap();
        for i in 0..3 {
            let w = x[i].powf(e);
            assert!(o[i] == w || (o[i].is_nan() && w.is_nan()) || (o[i] - w).abs() < 1e-6, "{} ^ {e}", x[i]);
        }
    }
}

/// Timing print: `cargo test --release -p qaic-kernels -- --ignored --nocapture unary_throughput`.
#[test]
#[ignore]
fn unary_throughput() {
    let x = grid(-5.0, 5.0, 1 << 20);
    let mut y = vec![0f32; x.len()];
    for isa in Isa::available() {
        let k = Kernels::for_isa(isa).unwrap();
        for op in [UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Erf, UnaryOp::Sigmoid, UnaryOp::Gelu] {
            let t = std::time::Instant::now();
            for _ in 0..10 {
                k.unary(op, &x, &mut y).unwrap();
            }
            println!("{isa} {op:?}: {:.2} Gelem/s", 10.0 * x.len() as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
}
