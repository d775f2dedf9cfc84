//! `QAIC_KERNELS` selects (or rejects) an ISA, end to end through the benchmark binary.

use std::process::Command;

fn bench(value: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qaic-kernels-bench"))
        .args(["--iters", "1"])
        .env("QAIC_KERNELS", value)
        .output()
        .expect("benchmark binary runs")
}

#[test]
fn unknown_isa_is_a_clear_error() {
    let out = bench("neon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown kernel ISA `neon`") && err.contains("QAIC_KERNELS"), "{err}");
}

#[test]
fn scalar_is_always_selectable() {
    let out = bench("scalar");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().skip(1).all(|l| l.starts_with("scalar")), "{text}");
}

#[test]
fn unavailable_isa_names_the_alternatives() {
    for isa in qaic_kernels::Isa::ALL {
        if !isa.is_available() {
            let out = bench(isa.name());
            assert!(!out.status.success());
            assert!(String::from_utf8_lossy(&out.stderr).contains("not supported by this CPU"));
        }
    }
}
