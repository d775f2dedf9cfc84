#!/usr/bin/env bash
# Bounded fuzz run of qaic-qpc's targets (CI smoke test; ~1 min of fuzzing after the build).
# Usage: crates/qaic-qpc/fuzz/smoke.sh [seconds-per-target, default 30]
# Works on the stable toolchain: cargo-fuzz's -Z flags are accepted with RUSTC_BOOTSTRAP=1.
# Needs cargo-fuzz (installed from crates.io if missing) and a C++ compiler (libFuzzer).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in reader networkdesc; do
    mkdir -p "corpus/$target"
    cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1
done
