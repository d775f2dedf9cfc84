//! Micro-benchmarks of the hot kernels (timing prints only).
//!
//! `cargo run --release -p qaic-kernels --bin qaic-kernels-bench [-- --iters N]`
//!
//! With `QAIC_KERNELS` set, only that ISA is measured (an unknown or unsupported ISA is an
//! error); otherwise every ISA this CPU supports.
//!
//! Besides wall-clock time it prints rates per CPU-second of the process (from
//! `/proc/self/task/*/schedstat`), which stay meaningful when other jobs share the machine.

use std::time::Instant;

use qaic_kernels::conv::ConvParams;
use qaic_kernels::elementwise::UnaryOp;
use qaic_kernels::gemm::{Activation, Mat, MatMut};
use qaic_kernels::{set_num_threads, Isa, Kernels};

/// CPU nanoseconds consumed by all threads of this process so far.
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn measure(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up (packing buffers, thread pool)
    let (c0, t0) = (cpu_ns(), Instant::now());
    for _ in 0..iters {
        f();
    }
    let wall = t0.elapsed().as_secs_f64() / iters as f64;
    let cpu = (cpu_ns() - c0) as f64 / 1e9 / iters as f64;
    (wall, cpu)
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args.iter().position(|a| a == "--iters").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(10);
    let s = 512;
    let (a, b) = (data(s * s, 1), data(s * s, 2));
    let mut c = vec![0f32; s * s];
    let p = ConvParams { pads: vec![1, 1, 1, 1], ..ConvParams::new(&[3, 3]) };
    let (xs, ws) = ([1usize, 64, 56, 56], [64usize, 64, 3, 3]);
    let (x, w) = (data(64 * 56 * 56, 3), data(64 * 64 * 9, 4));
    let mut out = vec![0f32; 64 * 56 * 56];
    let conv_flops = 2.0 * 64.0 * 64.0 * 9.0 * 56.0 * 56.0;
    let gemm_flops = 2.0 * (s * s * s) as f64;
    let u = data(1 << 20, 5);
    let mut v = vec![0f32; u.len()];
    let isas = match std::env::var(qaic_kernels::isa::ENV_VAR) {
        Ok(v) if !v.trim().is_empty() => match Kernels::from_env() {
            Ok(k) => vec![k.isa()],
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
        _ => Isa::available(),
    };
    println!("{:<8} {:>3} {:<34} {:>10} {:>14}", "isa", "thr", "kernel", "wall", "per CPU-second");
    for isa in isas {
        let Ok(k) = Kernels::for_isa(isa) else { continue };
        let pw = match k.pack_conv_weights(&w, &ws, 1) {
            Ok(pw) => pw,
            Err(e) => {
                eprintln!("{e}");
                return;
            }
        };
        for t in [1, 2] {
            set_num_threads(t);
            let (wall, cpu) = measure(iters, || {
                let r = k.gemm(
                    1.0,
                    Mat::row_major(&a, s, s).expect("valid view"),
                    Mat::row_major(&b, s, s).expect("valid view"),
                    0.0,
                    &mut MatMut::row_major(&mut c, s, s).expect("valid view"),
                );
                r.expect("gemm");
            });
            println!("{:<8} {:>3} {:<34} {:>7.1} GF {:>11.1} GF", isa.name(), t, "gemm 512x512x512", gemm_flops / wall / 1e9, gemm_flops / cpu / 1e9);
            let (wall, cpu) = measure(iters, || {
                k.conv_packed(&p, &x, &xs, &pw, None, Activation::None, &mut out).expect("conv");
            });
            println!("{:<8} {:>3} {:<34} {:>7.1} GF {:>11.1} GF", isa.name(), t, "conv 3x3 56x56 64->64 (packed)", conv_flops / wall / 1e9, conv_flops / cpu / 1e9);
            for (stride, c, hw) in [(1usize, 64usize, 112usize), (2, 64, 112)] {
                let dp = ConvParams { strides: vec![stride, stride], group: c, pads: vec![1, 1, 1, 1], ..ConvParams::new(&[3, 3]) };
                let dx = data(c * hw * hw, 6);
                let dw = data(c * 9, 7);
                let oh = (hw + 2 - 3) / stride + 1;
                let mut dout = vec![0f32; c * oh * oh];
                let (wall, cpu) = measure(iters, || {
                    k.conv(&dp, &dx, &[1, c, hw, hw], &dw, &[c, 1, 3, 3], None, Activation::None, &mut dout).expect("dw conv");
                });
                let fl = 2.0 * 9.0 * (c * oh * oh) as f64;
                println!("{:<8} {:>3} {:<34} {:>7.1} GF {:>11.1} GF", isa.name(), t, format!("depthwise 3x3 s{stride} {hw}x{hw}x{c}"), fl / wall / 1e9, fl / cpu / 1e9);
            }
            for op in [UnaryOp::Relu, UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Erf] {
                let (wall, cpu) = measure(iters, || k.unary(op, &u, &mut v).expect("unary"));
                let n = u.len() as f64;
                println!("{:<8} {:>3} {:<34} {:>7.2} Ge/s {:>9.2} Ge/s", isa.name(), t, format!("unary {op:?} 1M"), n / wall / 1e9, n / cpu / 1e9);
            }
        }
    }
}
