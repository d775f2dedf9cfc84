//! Runs an extracted QPC's program on the simulator alone, for profiling the simulator without
//! the compiler or runtime around it (`qaic-qpc extract -i programqpc.bin -o DIR` first).
//!
//! ```text
//! cargo run --release -p qaic-sim --example simrun -- DIR [ITERATIONS] [--listing]
//! ```
//! Inputs are zero bytes (`SIMRUN_INPUT=FILE`: the first input's raw bytes; `SIMRUN_OUTPUT=FILE`
//! writes the first output, to compare replays byte for byte); prints the host wall time per
//! inference and the predicted device time.

use std::time::Instant;

use qaic_device::{BufferKind, DeviceModel, Program, Variant};
use qaic_sim::Simulator;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().ok_or("usage: simrun DIR [ITERATIONS] [--listing]")?);
    let iters: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let program = Program::from_elf(&std::fs::read(dir.join("network.elf"))?)?;
    if args.iter().any(|a| a == "--listing") {
        print!("{}", program.listing());
        return Ok(());
    }
    let constants = std::fs::read(dir.join("constants.bin"))?;
    let device = DeviceModel::for_version(&program.device_version, Variant::Pro16)?;
    // SIMRUN_INPUT=FILE: raw bytes of the first input (others zero); SIMRUN_OUTPUT=FILE: the
    // first output of the last run is written there (to compare replays byte for byte).
    let mut inputs: Vec<Vec<u8>> =
        program.buffers.iter().filter(|b| b.kind == BufferKind::Input).map(|b| vec![0u8; b.size as usize]).collect();
    if let (Ok(f), Some(first)) = (std::env::var("SIMRUN_INPUT"), inputs.first_mut()) {
        let b = std::fs::read(f)?;
        if b.len() != first.len() {
            return Err(format!("SIMRUN_INPUT has {} bytes, the input buffer {}", b.len(), first.len()).into());
        }
        *first = b;
    }
    let t0 = Instant::now();
    let sim = Simulator::new(program, constants, device)?;
    println!("load {:.3} s", t0.elapsed().as_secs_f64());
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let run = sim.run(&inputs)?;
        if let (Ok(f), Some(o)) = (std::env::var("SIMRUN_OUTPUT"), run.outputs.first()) {
            std::fs::write(f, o)?;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        println!("run {:.1} ms host, {:.1} us predicted", times.last().copied().unwrap_or(0.0), run.stats.device_time_us());
    }
    times.sort_by(f64::total_cmp);
    println!("median {:.1} ms", times[times.len() / 2]);
    Ok(())
}
