//! Device statistics compiled into a QPC (`-stats-level`, `-stats-batchsize`, `-ddr-stats`,
//! `-aic-pmu-recipe`, `-aic-pmu-events`, `-aic-profiling-type` at compile time) and what the
//! runtime prints from them: the vendor's "Device Performance" table, per-core cycle lines,
//! simulated PMU counters and operator statistics (opstats). Every figure is predicted device
//! time or traffic of the simulator, never a host measurement.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qaic_device::{DeviceModel, Instr, Program};
use qaic_qpc::networkdesc::Stats;
use qaic_sim::{CoreStats, SimStats, TraceTrack};

use crate::RuntimeError;

/// Most PMU events a core counts at once (SDK-PYAPI `-aic-pmu-events`: up to 8).
pub const MAX_PMU_EVENTS: usize = 8;

/// The simulated PMU events: (number, name, what is counted per core and inference).
pub const PMU_EVENTS: &[(u32, &str, &str)] = &[
    (0, "CYCLES", "core clock cycles from the start of the inference to the core's End"),
    (1, "BUSY_CYCLES", "cycles issuing instructions, running ops or starting DMAs"),
    (2, "IDLE_CYCLES", "cycles blocked on DMA waits, semaphores or barriers, or finished"),
    (3, "HMX_CYCLES", "cycles of the matrix unit (tensor ops)"),
    (4, "HVX_CYCLES", "cycles of the vector unit (vector ops and data movement)"),
    (5, "DMA_CYCLES", "cycles the core's DMA engine is transferring"),
    (6, "SYNC_WAIT_CYCLES", "cycles waiting on semaphores and barriers"),
    (7, "DMA_WAIT_CYCLES", "cycles waiting on DMA tags"),
    (8, "AXI_RD_BYTES", "DDR bytes read (burst-rounded)"),
    (9, "AXI_WR_BYTES", "DDR bytes written (burst-rounded)"),
    (10, "HMX_MACS", "multiply-accumulates of the core's ops"),
    (11, "MULTICAST_BYTES", "bytes the core multicast over the NoC"),
    (12, "NOC_BYTES", "bytes the core moved over the compute NoC"),
    (13, "INSTRUCTIONS", "instructions issued"),
];

/// PMU events of a `-aic-pmu-recipe`; `None` for an unknown recipe.
///
/// ```
/// assert_eq!(qaic_runtime::pmu_recipe("AxiRdWr"), Some(vec![8, 9]));
/// assert_eq!(qaic_runtime::pmu_recipe("KernelUtil"), Some(vec![0, 1]));
/// ```
pub fn pmu_recipe(name: &str) -> Option<Vec<u32>> {
    Some(match name {
        "AxiRd" => vec![8],
        "AxiWr" => vec![9],
        "AxiRdWr" => vec![8, 9],
        "KernelUtil" => vec![0, 1],
        "HmxMacs" => vec![10, 3],
        _ => return None,
    })
}

/// Name of PMU event `id`.
pub fn pmu_event_name(id: u32) -> Option<&'static str> {
    PMU_EVENTS.iter().find(|e| e.0 == id).map(|e| e.1)
}

/// Value of PMU event `id` for one core of one inference.
pub fn pmu_value(id: u32, c: &CoreStats, dev: &DeviceModel) -> u64 {
    let cyc = |ps: u64| pcycles(dev, ps);
    match id {
        0 => cyc(c.end_ps),
        1 => cyc(c.busy_ps),
        2 => cyc(c.idle_ps),
        3 => cyc(c.matrix_ps),
        4 => cyc(c.vector_ps),
        5 => cyc(c.dma_ps),
        6 => cyc(c.sync_wait_ps),
        7 => cyc(c.dma_wait_ps),
        8 => c.ddr_read_bytes,
        9 => c.ddr_write_bytes,
        10 => c.macs,
        11 => c.multicast_bytes,
        12 => c.noc_bytes,
        13 => c.instructions,
        _ => 0,
    }
}

/// Statistics a QPC carries (the descriptor's `stats` message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceStatsConfig {
    /// `-stats-level`: ≥ 1 the Device Performance table, ≥ 40 per-core cycles, PMU counters
    /// and DDR traffic, ≥ 70 operator statistics of the first inference.
    pub level: u32,
    /// `-stats-batchsize`: device figures are divided by it (per sample). At least 1.
    pub batch_size: u32,
    /// `-ddr-stats`: per-core DDR traffic with the per-core lines.
    pub ddr: bool,
    /// PMU events counted (at most [`MAX_PMU_EVENTS`], each in [`PMU_EVENTS`]).
    pub pmu_events: Vec<u32>,
    /// Operator statistics compiled in (`-aic-profiling-type=stats` or level ≥ 70).
    pub op_stats: bool,
}

impl DeviceStatsConfig {
    /// Checks the PMU events (count and numbers).
    pub fn check(&self) -> Result<(), RuntimeError> {
        if self.pmu_events.len() > MAX_PMU_EVENTS {
            return Err(RuntimeError::Assemble(format!(
                "{} PMU events requested ({}); a core counts at most {MAX_PMU_EVENTS}",
                self.pmu_events.len(),
                self.pmu_events.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            )));
        }
        if let Some(e) = self.pmu_events.iter().find(|&&e| pmu_event_name(e).is_none()) {
            return Err(RuntimeError::Assemble(format!("unknown PMU event {e}: the virtual AIC100 counts events 0 to {} (docs/virtual-aic100.md)", PMU_EVENTS.len() - 1)));
        }
        Ok(())
    }

    /// The descriptor message (`stats`).
    pub fn to_descriptor(&self) -> Result<Stats, RuntimeError> {
        self.check()?;
        Ok(Stats {
            buff_num: 0,
            print_stats: true,
            stats_level: self.level.min(i32::MAX as u32) as i32,
            batch_size: self.batch_size.max(1).min(i32::MAX as u32) as i32,
            count_ddr_bw: self.ddr,
            pmu_events: self.pmu_events.iter().map(|&e| e as i32).collect(),
            print_op_stats: self.op_stats,
            op_stats_level: i32::from(self.op_stats),
            ..Default::default()
        })
    }

    /// From the descriptor message; unknown PMU events are dropped with a warning.
    pub fn from_descriptor(s: &Stats) -> DeviceStatsConfig {
        let pmu_events = s
            .pmu_events
            .iter()
            .filter_map(|&e| {
                let ok = u32::try_from(e).ok().filter(|&e| pmu_event_name(e).is_some());
                if ok.is_none() {
                    tracing::warn!("networkdesc.bin: unknown PMU event {e} ignored");
                }
                ok
            })
            .take(MAX_PMU_EVENTS)
            .collect();
        DeviceStatsConfig {
            level: s.stats_level.max(0) as u32,
            batch_size: s.batch_size.max(1) as u32,
            ddr: s.count_ddr_bw,
            pmu_events,
            op_stats: s.print_op_stats || s.op_stats_level > 0,
        }
    }
}

/// Per-inference device times (µs) for the Device Performance table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerfSamples {
    pub exec_us: Vec<f64>,
    pub input_wait_us: Vec<f64>,
    pub output_wait_us: Vec<f64>,
}

fn summary(v: &[f64]) -> (f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let n = v.len() as f64;
    let avg = v.iter().sum::<f64>() / n;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let var = v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / n;
    (avg, min, max, var.sqrt())
}

/// The vendor's "Device Performance" table (facts runner-output.md §1.2, byte layout kept):
/// rows ExecTimeUs, InputWaitTimeUs, OutputWaitTimeUs; values divided by `per` (the stats
/// batch size); an empty line follows.
///
/// ```
/// let s = qaic_runtime::PerfSamples { exec_us: vec![10.0, 20.0], input_wait_us: vec![1.0, 1.0], output_wait_us: vec![0.5, 0.5] };
/// let t = qaic_runtime::device_performance_table(&s, 1);
/// assert!(t.starts_with("Device Performance: \nMetric,          Avg,           Min,           Max,           Std            \n"));
/// assert!(t.contains("ExecTimeUs,      15.000,        10.000,        20.000,        5.000          \n"));
/// ```
pub fn device_performance_table(s: &PerfSamples, per: u32) -> String {
    let per = per.max(1) as f64;
    let mut t = String::from("Device Performance: \n");
    let _ = writeln!(t, "{:<17}{:<15}{:<15}{:<15}{:<15}", "Metric,", "Avg,", "Min,", "Max,", "Std");
    for (name, v) in [("ExecTimeUs", &s.exec_us), ("InputWaitTimeUs", &s.input_wait_us), ("OutputWaitTimeUs", &s.output_wait_us)] {
        let scaled: Vec<f64> = v.iter().map(|x| x / per).collect();
        let (a, mi, ma, sd) = summary(&scaled);
        let _ = writeln!(
            t,
            "{:<17}{:<15}{:<15}{:<15}{:<15}",
            format!("{name},"),
            format!("{a:.3},"),
            format!("{mi:.3},"),
            format!("{ma:.3},"),
            format!("{sd:.3}")
        );
    }
    t.push('\n');
    t
}

/// `ps` in core clock cycles (`pcycles`).
pub fn pcycles(dev: &DeviceModel, ps: u64) -> u64 {
    ((ps as u128 * dev.core_clock_hz as u128) / 1_000_000_000_000u128) as u64
}

/// Ticks of the always-on timer the vendor's `ucycles` count (19.2 MHz QTimer).
pub const UTIMER_HZ: u64 = 19_200_000;

/// `ps` in utimer ticks.
pub fn ucycles(ps: u64) -> u64 {
    ((ps as u128 * UTIMER_HZ as u128) / 1_000_000_000_000u128) as u64
}

/// Per-core lines of stats level ≥ 40 (and PMU counters / DDR traffic when configured), for
/// one inference; figures divided by the stats batch size.
pub fn core_lines(cfg: &DeviceStatsConfig, s: &SimStats, dev: &DeviceModel) -> Vec<String> {
    let per = cfg.batch_size.max(1) as u64;
    let mut v = Vec::new();
    for (i, c) in s.cores.iter().enumerate() {
        if cfg.level >= 40 {
            let util = if c.end_ps == 0 { 0.0 } else { c.busy_ps as f64 * 100.0 / c.end_ps as f64 };
            v.push(format!(
                "c{i} total: {:>14} ucycles {:>14} pcycles  busy {util:.2}%  HMX {} HVX {} DMA {} wait {} pcycles",
                ucycles(c.end_ps) / per,
                pcycles(dev, c.end_ps) / per,
                pcycles(dev, c.matrix_ps) / per,
                pcycles(dev, c.vector_ps) / per,
                pcycles(dev, c.dma_ps) / per,
                pcycles(dev, c.sync_wait_ps + c.dma_wait_ps) / per,
            ));
            if cfg.ddr {
                v.push(format!("c{i} DDR traffic  read: {:>12} B  write: {:>12} B", c.ddr_read_bytes / per, c.ddr_write_bytes / per));
            }
        }
        if !cfg.pmu_events.is_empty() {
            let mut l = format!("c{i} PMU:");
            for &e in &cfg.pmu_events {
                let _ = write!(l, " {}={}", pmu_event_name(e).unwrap_or("?"), pmu_value(e, c, dev) / per);
            }
            if cfg.pmu_events.contains(&0) && cfg.pmu_events.contains(&1) {
                let (cy, busy) = (pmu_value(0, c, dev), pmu_value(1, c, dev));
                let _ = write!(l, " KernelUtil={:.2}%", if cy == 0 { 0.0 } else { busy as f64 * 100.0 / cy as f64 });
            }
            v.push(l);
        }
    }
    v
}

/// Per core and op kind: (time ps, count) from a traced run, and (output bytes, dtypes) from
/// the program.
#[derive(Default)]
struct OpRow {
    ps: u64,
    count: u64,
    out_bytes: u64,
    dtypes: Vec<String>,
}

/// The operator statistics ("opstats") text of one traced inference, in the layout of the
/// vendor's `aic-profiling-program-<P>-activation-<A>-inf-<I>.txt` (facts runner-output.md
/// §3.3): one row per (core, op kind, engine) sorted by ucycles, a `sync DMAIssue` row per
/// core, then per core a total line and one line per thread. `s` must come from a traced run.
pub fn opstats_text(program: &Program, s: &SimStats, dev: &DeviceModel) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<4} {:>10} {:>11} {:>11} {:>11} {:>6} {:>11} {:>11} {:>11} {:>14}  opdetails",
        "core", "ucycles", "ucycles(%)", "pcycles", "pcycles(%)", "count", "out KB", "ucycles/KB", "pcycles/KB", "stddev(pc/KB)"
    );
    let cores = program.cores.len();
    // Output bytes and dtypes per (core, op type) from the program's instructions.
    let mut outs: BTreeMap<(usize, String), (u64, Vec<String>)> = BTreeMap::new();
    for (ci, core) in program.cores.iter().enumerate() {
        for ins in &core.instrs {
            if let Instr::Op(op) = ins {
                let e = outs.entry((ci, op.op.clone())).or_default();
                e.0 += op.outputs.iter().map(|o| o.dtype.storage_bytes(o.shape.iter().product::<u64>() as usize) as u64).sum::<u64>();
                let d = op.dtype.to_string();
                if !e.1.contains(&d) {
                    e.1.push(d);
                }
            }
        }
    }
    for ci in 0..cores {
        let total_ps = s.cores.get(ci).map_or(0, |c| c.end_ps).max(1);
        let mut rows: BTreeMap<(String, &'static str), OpRow> = BTreeMap::new();
        let (mut dma_ps, mut dma_n) = (0u64, 0u64);
        for e in &s.trace {
            let (c, engine) = match e.track {
                TraceTrack::Matrix(c) => (c, "HMX"),
                TraceTrack::Vector(c) => (c, "HVX"),
                TraceTrack::Dma(c) => {
                    if c == ci {
                        dma_ps += e.dur_ps;
                        dma_n += 1;
                    }
                    continue;
                }
                _ => continue,
            };
            if c != ci {
                continue;
            }
            let r = rows.entry((e.name.clone(), engine)).or_default();
            r.ps += e.dur_ps;
            r.count += 1;
        }
        for ((name, _), r) in rows.iter_mut() {
            if let Some((b, d)) = outs.get(&(ci, name.clone())) {
                r.out_bytes = *b;
                r.dtypes = d.clone();
            }
        }
        let mut sorted: Vec<(&(String, &str), &OpRow)> = rows.iter().collect();
        sorted.sort_by(|a, b| b.1.ps.cmp(&a.1.ps).then_with(|| a.0.cmp(b.0)));
        let pct = |ps: u64| format!("{:.2}%", ps as f64 * 100.0 / total_ps as f64);
        let na = "N/A";
        let _ = writeln!(
            t,
            "{:<4} {:>10} {:>11} {:>11} {:>11} {:>6} {:>11} {:>11} {:>11} {:>14}  sync DMAIssue",
            format!("c{ci}"),
            ucycles(dma_ps),
            pct(dma_ps),
            na,
            na,
            dma_n,
            na,
            na,
            na,
            na
        );
        for ((name, engine), r) in sorted {
            let kb = r.out_bytes as f64 / 1024.0;
            let (uc, pc) = (ucycles(r.ps), pcycles(dev, r.ps));
            let per_kb = |v: u64| if kb > 0.0 { format!("{:.2}", v as f64 / kb) } else { na.to_string() };
            let _ = writeln!(
                t,
                "{:<4} {:>10} {:>11} {:>11} {:>11} {:>6} {:>11} {:>11} {:>11} {:>14}  {} {} TCM ({})",
                format!("c{ci}"),
                uc,
                pct(r.ps),
                pc,
                pct(r.ps),
                r.count,
                format!("{kb:.2}"),
                per_kb(uc),
                per_kb(pc),
                na,
                name.to_lowercase(),
                engine,
                r.dtypes.join(", ")
            );
        }
    }
    for (ci, c) in s.cores.iter().enumerate() {
        let _ = writeln!(t, "c{ci} total: {:>15} ucycles {:>15} pcycles (thread max)", ucycles(c.end_ps), pcycles(dev, c.end_ps));
        let util = |ps: u64| if c.end_ps == 0 { 0.0 } else { ps as f64 * 100.0 / c.end_ps as f64 };
        for (th, name, ps) in [(0, "HVX", c.vector_ps), (4, "HMX", c.matrix_ps), (5, "DMAIssue", c.dma_ps)] {
            let _ = writeln!(
                t,
                "c{ci}    t{th} {:<12} {:>12} ucycles {:>15} pcycles {:>6.2}% utilization",
                name,
                ucycles(ps),
                pcycles(dev, ps),
                util(ps)
            );
        }
    }
    t
}
