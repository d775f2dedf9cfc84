//! # qaic-compiler
//!
//! The driver layer of qaic-rs: everything `qaic-exec` / `qaic-compile` does, as a library.
//!
//! - [`cli_options`]: a generic table-driven parser for the vendor tools' single-dash option
//!   syntax (`-aic-num-cores=16`, `-num-iter 100`), with `-h`/`-u` help, "did you mean"
//!   suggestions and "not supported yet" refusals. `qaic-runner` reuses it with its own table.
//! - [`exec_options`]: the qaic-exec option table and the typed [`ExecConfig`] it produces.
//! - [`inputs`]: `-input-list-file`, `-json-input-file`, `.npy` and raw input files, random
//!   inputs, input size checks and `-dump-input-buffers`.
//! - [`npy`]: NumPy `.npy` reading.
//! - [`outputs`]: `-write-output-dir` file naming and atomic writing.
//! - [`device`]: compile to a QPC (`qaic-codegen` + `qaic-runtime`) and run it on the
//!   virtual AIC100 simulator (the default target; `-aic-hw` runs the same virtual device).
//! - [`info`]: `-version`, `-version-extended`, `-operators-supported`.
//! - [`precision`]: profiling, quantization and fp16 on the interpreter path (`qaic-quant`).
//! - [`runner`]: `qaic-runner`'s option table, configuration and run loop over a QPC.
//! - [`run`]: the inference loop (inputs, iterations, outputs, host timing) over any
//!   [`run::Executable`].
//!
//! Depends on `qaic-tensor`, `qaic-ir`, `qaic-onnx` (loading), `qaic-interp` (running on the
//! reference interpreter), `qaic-quant` (profiling, quantization, fp16), `qaic-codegen`,
//! `qaic-device`, `qaic-runtime` and `qaic-sim` (the virtual device).
//! Must never print to stdout or exit the process (binaries do that), and never take options
//! as string maps: libraries below get the typed config.

pub mod alloc_tuning;
pub mod cli_options;
pub mod custom_io;
pub mod device;
pub mod exec_options;
pub mod fsutil;
pub mod info;
pub mod inputs;
pub mod npy;
pub mod outputs;
pub mod precision;
pub mod run;
pub mod runner;

pub use exec_options::{parse_exec_command, ExecCommand, ExecConfig, Tool};
