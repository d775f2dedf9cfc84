//! `qaic-exec` (also installed as `qaic-compile`): parses the vendor-style options with
//! qaic-compiler's option table, calls the library, prints. Diagnostics go to stderr and
//! errors exit with status 1.

use std::process::ExitCode;

use qaic_compiler::exec_options::{Distribution, ExecCommand, ExecConfig, Target, Tool};
use qaic_compiler::run::RunEvent;
use qaic_compiler::{device, info, parse_exec_command, run};

pub fn main() -> ExitCode {
    qaic_compiler::alloc_tuning::keep_freed_buffers();
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let tool = Tool::from_argv0(&argv.next().unwrap_or_default());
    let args: Vec<String> = argv.collect();
    init_tracing(&args);
    match main_inner(tool, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; the level comes from `-v`/`-vv`/`-vvv` (scanned before parsing so that
/// messages of the parser itself are shown), or `RUST_LOG`.
fn init_tracing(args: &[String]) {
    let level = args
        .iter()
        .map(|a| match a.trim_start_matches('-') {
            "vvv" => 3,
            "vv" => 2,
            "v" => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let default = ["warn", "info", "debug", "trace"][level];
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn main_inner(tool: Tool, args: &[String]) -> anyhow::Result<()> {
    match parse_exec_command(tool, args)? {
        ExecCommand::Help(text) => print!("{text}"),
        ExecCommand::Version { extended } => println!("{}", info::version_text(tool, extended)),
        ExecCommand::OperatorsSupported(fw) => {
            let ops = info::supported_onnx_ops()?;
            let path = info::write_supported_operators(fw, std::path::Path::new("."), &ops)?;
            println!("Writing file:{}", path.display());
        }
        ExecCommand::Run(cfg) => {
            let mut on_event = |e: RunEvent| match e {
                RunEvent::InputFile(p) => println!("Input file: {p}"),
                RunEvent::WroteFile(p) => println!("Writing file:{p}"),
                RunEvent::DeletedFile(p) => println!("Deleting previous file: {p}"),
                RunEvent::RandomInputs { distribution, unbound, seed } => {
                    let kind = if unbound {
                        "unbound".to_string()
                    } else {
                        match distribution {
                            Distribution::Uniform => "bounded uniform".into(),
                            Distribution::Gaussian => "bounded gaussian".into(),
                        }
                    };
                    println!("Using {kind} random inputs (seed {seed})");
                }
                RunEvent::Profiling(p) => {
                    // Every input of short runs; about every 5% of long ones.
                    let step = (p.total / 20).max(1);
                    if p.done == p.total || p.done % step == 0 {
                        let what = if p.pass == 1 { "min/max" } else { "histograms" };
                        eprintln!("Profiling pass {} of 2 ({what}): {} of {} input(s)", p.pass, p.done, p.total);
                    }
                }
                RunEvent::Precision(line) => println!("{line}"),
            };
            if cfg.device.target == Target::Interpreter {
                let report = run::run_on_interpreter(&cfg, &mut on_event)?;
                println!("Ran {} inference(s) on the interpreter", report.inferences);
                println!("{}", report.timing_line());
            } else {
                run_on_device(&cfg, &mut on_event)?;
            }
        }
    }
    Ok(())
}

/// The default target (and `-aic-hw`): compile to a QPC, then run it on the virtual AIC100.
fn run_on_device(cfg: &ExecConfig, on_event: &mut dyn FnMut(RunEvent)) -> anyhow::Result<()> {
    println!("Compile started ............... ");
    let out = device::compile_with_events(cfg, on_event)?;
    if cfg.device.time_passes {
        for (pass, t) in &out.pass_times {
            println!("Pass {pass:<8} {:>10.3} ms (host)", t.as_secs_f64() * 1e3);
        }
    }
    if cfg.device.perf_metrics {
        for l in device::perf_metrics_lines(&out.compiled) {
            println!("{l}");
        }
    }
    if cfg.device.perf_warnings {
        for l in device::perf_warning_lines(&out.compiled) {
            println!("{l}");
        }
    }
    if let Some(p) = &cfg.device.dump_program {
        println!("Writing file:{}", p.display());
    }
    if let Some(dir) = &cfg.device.binary_dir {
        println!("Generated binary is present at {}", dir.display());
    }
    if cfg.device.compile_only {
        return Ok(());
    }
    let r = device::run_qpc(cfg, &out, on_event)?.summary;
    if cfg.device.ddr_stats {
        for l in r.stats.ddr_lines() {
            println!("{l}");
        }
    }
    if let Some(l) = &r.io_crc_line {
        println!("{l}");
    }
    println!("{}", r.stats.host_line());
    print!("{}", r.stats.stats_block());
    // The vendor prints the Device Performance table after the Stats block.
    print!("{}", r.device_lines);
    if let Some(p) = &cfg.device.stats_json {
        qaic_compiler::fsutil::write_atomic(p, r.stats.to_json().as_bytes())?;
        println!("Writing file:{}", p.display());
    }
    Ok(())
}
