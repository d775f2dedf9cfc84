//! Run statistics: the vendor's ` ---- Stats ----` block (figures = simulated device time), the
//! host wall-time line, and the versioned JSON twin (`-stats-json`).

use std::time::Duration;

use qaic_device::DeviceModel;
use qaic_sim::SimStats;
use serde::Serialize;

/// Schema name of [`RunStats::to_json`].
pub const STATS_SCHEMA: &str = "qaic-rs.runner-stats";
/// Schema version of [`RunStats::to_json`]; bumped on any incompatible change.
pub const STATS_SCHEMA_VERSION: u32 = 1;

/// Simulated device time one inference occupies its instance: the program's predicted time
/// plus moving its inputs and outputs over PCIe (`host_pcie_bytes_per_s`); submission and
/// completion interrupts overlap with the previous inference of a queued run, so they are not
/// added (docs/virtual-aic100.md, "Runtime").
pub fn inference_occupancy_ps(device: &DeviceModel, program_ps: u64, io_bytes: u64) -> u64 {
    program_ps.saturating_add(DeviceModel::transfer_ps(io_bytes, device.host_pcie_bytes_per_s))
}

/// Accumulates inferences over instances: inference `i` runs on instance `i mod a`; the
/// instances run side by side on disjoint cores, so the run lasts as long as the busiest one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    busy_ps: Vec<u64>,
    count: u64,
}

impl Schedule {
    /// A schedule over `instances` (≥ 1) instances.
    pub fn new(instances: u32) -> Schedule {
        Schedule { busy_ps: vec![0; instances.max(1) as usize], count: 0 }
    }
    /// Adds one inference occupying its instance for `ps`.
    pub fn add(&mut self, ps: u64) {
        let n = self.busy_ps.len();
        let i = (self.count % n as u64) as usize;
        self.busy_ps[i] = self.busy_ps[i].saturating_add(ps);
        self.count += 1;
    }
    /// Simulated time at which the next inference starts on its instance, ps.
    pub fn next_start_ps(&self) -> u64 {
        let n = self.busy_ps.len() as u64;
        self.busy_ps[(self.count % n) as usize]
    }
    /// Takes `ps` off instance `i`'s busy time (a correction of its last inference).
    pub fn shorten(&mut self, i: usize, ps: u64) {
        if let Some(b) = self.busy_ps.get_mut(i) {
            *b = b.saturating_sub(ps);
        }
    }
    /// Inferences added.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Simulated duration of the whole run, ps.
    pub fn total_ps(&self) -> u64 {
        self.busy_ps.iter().copied().max().unwrap_or(0)
    }
}

/// Figures of one run: the Stats block (simulated device) and host wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStats {
    pub schema: &'static str,
    pub version: u32,
    /// Inferences completed (each = one batch).
    pub inference_cnt: u64,
    /// Simulated device duration of the run, µs (rounded up).
    pub total_duration_us: u64,
    /// Compiled batch size.
    pub batch_size: u32,
    /// `inference_cnt × 1e6 / total_duration_us × batch_size`, as printed.
    pub inf_per_sec: f64,
    /// Instances run side by side, cores per instance.
    pub instances: u32,
    pub cores_per_instance: u32,
    /// Host wall time of the whole loop, s, and the median per inference, ms.
    pub host_wall_time_s: f64,
    pub host_median_ms: f64,
    /// Predicted device figures of the last inference (one instance).
    pub device: DeviceFigures,
    /// `-stats-batchsize` of a QPC carrying statistics (device figures per sample).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_batch_size: Option<u32>,
    /// Simulated PMU counters of the last inference, per core (QPCs compiled with
    /// `-aic-pmu-recipe` / `-aic-pmu-events`), divided by the stats batch size.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pmu: Vec<std::collections::BTreeMap<String, u64>>,
    /// I/O CRC checks (QPCs compiled with `-io-crc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_crc: Option<crate::IoCrc>,
}

/// Predicted per-inference figures of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceFigures {
    /// Program time of one inference, µs.
    pub exec_time_us: f64,
    /// Occupancy of one inference including PCIe I/O, µs.
    pub occupancy_us: f64,
    pub macs: u64,
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    pub multicast_bytes: u64,
    pub cores: Vec<CoreFigures>,
}

/// Per-core predicted figures of one inference.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreFigures {
    pub core: usize,
    pub busy_us: f64,
    pub idle_us: f64,
    pub matrix_us: f64,
    pub vector_us: f64,
    pub dma_us: f64,
    pub sync_wait_us: f64,
    pub dma_wait_us: f64,
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    pub multicast_bytes: u64,
    pub macs: u64,
}

fn us(ps: u64) -> f64 {
    ps as f64 / 1e6
}

impl DeviceFigures {
    /// From the simulator's statistics of one inference.
    pub fn from_sim(s: &SimStats, occupancy_ps: u64) -> DeviceFigures {
        DeviceFigures {
            exec_time_us: us(s.total_ps),
            occupancy_us: us(occupancy_ps),
            macs: s.macs,
            ddr_read_bytes: s.ddr_read_bytes,
            ddr_write_bytes: s.ddr_write_bytes,
            multicast_bytes: s.multicast_bytes,
            cores: s
                .cores
                .iter()
                .enumerate()
                .map(|(i, c)| CoreFigures {
                    core: i,
                    busy_us: us(c.busy_ps),
                    idle_us: us(c.idle_ps),
                    matrix_us: us(c.matrix_ps),
                    vector_us: us(c.vector_ps),
                    dma_us: us(c.dma_ps),
                    sync_wait_us: us(c.sync_wait_ps),
                    dma_wait_us: us(c.dma_wait_ps),
                    ddr_read_bytes: c.ddr_read_bytes,
                    ddr_write_bytes: c.ddr_write_bytes,
                    multicast_bytes: c.multicast_bytes,
                    macs: c.macs,
                })
                .collect(),
        }
    }
}

impl RunStats {
    /// Builds the figures of a run.
    pub fn new(schedule: &Schedule, batch_size: u32, instances: u32, cores_per_instance: u32, host_times: &[Duration], device: DeviceFigures) -> RunStats {
        let total_duration_us = schedule.total_ps().div_ceil(1_000_000);
        let inference_cnt = schedule.count();
        let inf_per_sec = if total_duration_us == 0 { 0.0 } else { inference_cnt as f64 * 1e6 / total_duration_us as f64 * batch_size as f64 };
        let mut t: Vec<Duration> = host_times.to_vec();
        t.sort();
        RunStats {
            schema: STATS_SCHEMA,
            version: STATS_SCHEMA_VERSION,
            inference_cnt,
            total_duration_us,
            batch_size,
            inf_per_sec,
            instances,
            cores_per_instance,
            host_wall_time_s: host_times.iter().map(Duration::as_secs_f64).sum(),
            host_median_ms: t.get(t.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3),
            device,
            stats_batch_size: None,
            pmu: Vec::new(),
            io_crc: None,
        }
    }

    /// The vendor's block, byte-exact (facts runner-output.md §1.1), with a final newline:
    ///
    /// ```
    /// use qaic_runtime::{RunStats, Schedule, DeviceFigures};
    /// let mut s = Schedule::new(1);
    /// for _ in 0..4816 { s.add(4_157_479_000); } // 4.157 ms each
    /// let r = RunStats::new(&s, 8, 1, 16, &[], DeviceFigures::default());
    /// assert_eq!(r.stats_block(), " ---- Stats ----\nInferenceCnt 4816 TotalDuration 20022419us BatchSize 8 Inf/Sec 1924.243\n");
    /// ```
    pub fn stats_block(&self) -> String {
        format!(
            " ---- Stats ----\nInferenceCnt {} TotalDuration {}us BatchSize {} Inf/Sec {:.3}\n",
            self.inference_cnt, self.total_duration_us, self.batch_size, self.inf_per_sec
        )
    }

    /// The host line printed before the block (host time, never a device rate).
    pub fn host_line(&self) -> String {
        format!(
            "Host wall time: {:.3} s for {} inference(s) on the simulator (median {:.3} ms per inference)",
            self.host_wall_time_s, self.inference_cnt, self.host_median_ms
        )
    }

    /// Per-core DDR traffic of one inference (`-ddr-stats`), one line per core.
    pub fn ddr_lines(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .device
            .cores
            .iter()
            .map(|c| format!("c{:02}: DDR traffic  read: {:>10} B  write: {:>10} B  (simulated, per inference)", c.core, c.ddr_read_bytes, c.ddr_write_bytes))
            .collect();
        v.push(format!("total: DDR traffic  read: {:>10} B  write: {:>10} B", self.device.ddr_read_bytes, self.device.ddr_write_bytes));
        v
    }

    /// Pretty JSON (schema [`STATS_SCHEMA`] version [`STATS_SCHEMA_VERSION`]).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
