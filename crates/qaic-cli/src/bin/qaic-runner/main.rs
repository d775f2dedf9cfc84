//! `qaic-runner`: runs a compiled QPC on the virtual AIC100 and prints the vendor's Stats block
//! (simulated device time) after a host wall-time line. Options: see `qaic-runner -h`;
//! single- and double-dash spellings are both accepted. Errors exit with status 1.

use std::process::ExitCode;

use qaic_compiler::runner::{self, RunnerCommand, RunnerEvent};

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let verbose = args.iter().any(|a| matches!(a.trim_start_matches('-'), "v" | "verbose"));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if verbose { "info" } else { "warn" }));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
    match main_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(args: &[String]) -> anyhow::Result<()> {
    let cfg = match runner::parse_runner_command(args)? {
        RunnerCommand::Help(text) => {
            print!("{text}");
            return Ok(());
        }
        RunnerCommand::Run(c) => c,
    };
    let mut on_event = |e: RunnerEvent| match e {
        RunnerEvent::InputFile(p) => println!("Input file: {p}"),
        RunnerEvent::WroteFile(p) => println!("Writing file:{p}"),
        RunnerEvent::DeletedFile(p) => println!("Deleting previous file: {p}"),
        RunnerEvent::Message(m) => println!("{m}"),
        RunnerEvent::RandomInputs { unbound } => println!("Using {} random inputs", if unbound { "unbound" } else { "bounded" }),
    };
    let r = runner::run(&cfg, &mut on_event)?;
    if cfg.ddr_stats {
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
    if let Some(p) = &cfg.stats_json {
        qaic_compiler::fsutil::write_atomic(p, r.stats.to_json().as_bytes())?;
        println!("Writing file:{}", p.display());
    }
    Ok(())
}
