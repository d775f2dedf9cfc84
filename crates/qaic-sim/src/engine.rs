//! The event-driven timing model and the data movement of one inference.

use std::collections::{BTreeMap, VecDeque};

use qaic_device::{DeviceModel, Dma, DmaPath, Instr, Program, Space, Unit, PS_PER_S};

use crate::SimError;

/// A data event of the timeline, in the order the device performs it: the bytes of the DMA
/// instruction `pc` of `core` land, or the op instruction `pc` of `core` runs. Timing never
/// depends on data, so this order is fixed per program and replayed by [`crate::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Land { core: u32, pc: u32 },
    Op { core: u32, pc: u32 },
}

/// Predicted figures of one core for one inference (all times are simulated device time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreStats {
    /// Instructions executed.
    pub instructions: u64,
    /// Time the core reached `End`, ps.
    pub end_ps: u64,
    /// Time the core's scalar/matrix/vector pipeline was doing work (issue, ops, layer
    /// overheads), ps. `idle_ps` = total device time − `busy_ps`.
    pub busy_ps: u64,
    pub idle_ps: u64,
    /// Busy time of the tensor unit (HMX), ps.
    pub matrix_ps: u64,
    /// Busy time of the vector unit (HVX), ps.
    pub vector_ps: u64,
    /// Time the core's DMA engine had a transfer in flight (setup or data), ps.
    pub dma_ps: u64,
    /// Time spent blocked on semaphores and barriers, ps.
    pub sync_wait_ps: u64,
    /// Time spent blocked in `dma.wait`, ps.
    pub dma_wait_ps: u64,
    /// DDR bytes read and written by this core's DMAs and ops (burst-rounded).
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    /// Bytes this core injected as multicasts (counted once, not per receiver).
    pub multicast_bytes: u64,
    /// Bytes this core sent over the compute NoC (peer copies and multicasts).
    pub noc_bytes: u64,
    /// Multiply-accumulates of its matrix ops.
    pub macs: u64,
}

/// Span of one layer (the n-th `layer` marker of each core), ps.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub name: String,
    /// Earliest time a core entered the layer.
    pub start_ps: u64,
    /// Latest time a core left it (next marker or `End`).
    pub end_ps: u64,
}

/// Where a [`TraceEvent`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TraceTrack {
    /// A core's tensor unit (HMX).
    Matrix(usize),
    /// A core's vector unit (HVX), including data-movement ops.
    Vector(usize),
    /// A core's DMA engine (setup and transfer of each descriptor).
    Dma(usize),
    /// A core blocked on a DMA wait, semaphore or barrier.
    Wait(usize),
    /// A core's layer spans (`layer` marker to the next one).
    Layer(usize),
}

/// One timed interval of a traced run (simulated device time, ps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    pub track: TraceTrack,
    pub name: String,
    pub start_ps: u64,
    pub dur_ps: u64,
}

/// Predicted device timing and traffic of one inference.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimStats {
    /// Predicted device time of the inference: the last core's `End`, ps.
    pub total_ps: u64,
    pub cores: Vec<CoreStats>,
    pub layers: Vec<LayerStats>,
    /// Totals over all cores.
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    pub multicast_bytes: u64,
    pub macs: u64,
    /// Timeline of ops, DMAs, waits and layers ([`crate::Simulator::run_traced`] only).
    pub trace: Vec<TraceEvent>,
}

impl SimStats {
    /// Predicted device time, µs.
    pub fn device_time_us(&self) -> f64 {
        self.total_ps as f64 / 1e6
    }
    /// Predicted inferences per second when one program run processes `batch` samples
    /// (back-to-back runs, no host overhead).
    pub fn inferences_per_s(&self, batch: u64) -> f64 {
        if self.total_ps == 0 { 0.0 } else { batch as f64 * PS_PER_S as f64 / self.total_ps as f64 }
    }
    /// Fraction of the device time unit `u` of core `c` was busy (0..=1).
    pub fn occupancy(&self, c: usize, u: Unit) -> f64 {
        let Some(s) = self.cores.get(c) else { return 0.0 };
        let busy = match u {
            Unit::Matrix => s.matrix_ps,
            Unit::Vector => s.vector_ps,
            Unit::Dma => s.dma_ps,
            Unit::Scalar => s.busy_ps.saturating_sub(s.matrix_ps + s.vector_ps),
        };
        if self.total_ps == 0 { 0.0 } else { busy as f64 / self.total_ps as f64 }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Run,
    DmaWait(u8),
    SemWait(u16, u32),
    Barrier(u64),
    Done,
}

struct Core {
    pc: usize,
    t: u64,
    state: State,
    blocked_at: u64,
    outstanding: [u32; 256],
    stats: CoreStats,
    layer_marks: Vec<(String, u64)>,
}

enum Phase {
    Idle,
    Setup { until: u64, dma: Dma, pc: u32, start: u64 },
    Transfer { remaining: f64, ddr: bool, cap: f64, dma: Dma, pc: u32, start: u64 },
}

struct DmaEngine {
    queue: VecDeque<(u64, Dma, u32)>,
    phase: Phase,
}

/// Runs the timing model of one inference and returns its statistics; `data` is called for
/// every data event in device order (the caller moves bytes / runs kernels, or records them).
pub(crate) fn simulate(p: &Program, dev: &DeviceModel, traced: bool, data: &mut dyn FnMut(Action) -> Result<(), SimError>) -> Result<SimStats, SimError> {
    let mut trace: Vec<TraceEvent> = Vec::new();
    let mut ev = |track: TraceTrack, name: &dyn Fn() -> String, start_ps: u64, end_ps: u64| {
        if traced && end_ps > start_ps {
            trace.push(TraceEvent { track, name: name(), start_ps, dur_ps: end_ps - start_ps });
        }
    };
    let n = p.cores.len();
    let mut cores: Vec<Core> = (0..n)
        .map(|_| Core { pc: 0, t: 0, state: State::Run, blocked_at: 0, outstanding: [0; 256], stats: CoreStats::default(), layer_marks: Vec::new() })
        .collect();
    let mut engines: Vec<DmaEngine> = (0..n).map(|_| DmaEngine { queue: VecDeque::new(), phase: Phase::Idle }).collect();
    let mut sems = vec![0u64; p.num_semaphores as usize];
    let mut barriers: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let issue = dev.issue_ps();
    let sync = dev.semaphore_latency_ps();
    let ddr_total = dev.ddr_sustained_bytes_per_s() as f64 / PS_PER_S as f64;
    let noc_total = dev.noc_bytes_per_s as f64 / PS_PER_S as f64;
    let mut now = 0u64;

    loop {
        // Shared bandwidth: active transfers split DDR (or NoC) evenly, each capped by its path.
        let (mut n_ddr, mut n_noc) = (0usize, 0usize);
        for e in &engines {
            if let Phase::Transfer { ddr, .. } = e.phase {
                if ddr { n_ddr += 1 } else { n_noc += 1 }
            }
        }
        let rate = |ddr: bool, cap: f64| -> f64 {
            let share = if ddr { ddr_total / n_ddr.max(1) as f64 } else { noc_total / n_noc.max(1) as f64 };
            cap.min(share).max(1e-12)
        };
        let mut next_engine: Option<(u64, usize)> = None;
        for (i, e) in engines.iter().enumerate() {
            let t = match &e.phase {
                Phase::Idle => continue,
                Phase::Setup { until, .. } => *until,
                Phase::Transfer { remaining, ddr, cap, .. } => now + (remaining / rate(*ddr, *cap)).ceil().max(0.0) as u64,
            };
            if next_engine.is_none_or(|(bt, _)| t < bt) {
                next_engine = Some((t, i));
            }
        }
        let mut next_core: Option<(u64, usize)> = None;
        for (i, c) in cores.iter().enumerate() {
            if c.state == State::Run && next_core.is_none_or(|(bt, _)| c.t < bt) {
                next_core = Some((c.t, i));
            }
        }
        let engine_first = match (next_engine, next_core) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((te, _)), Some((tc, _))) => te <= tc,
        };
        let next = if engine_first { next_engine.map_or(now, |x| x.0) } else { next_core.map_or(now, |x| x.0) }.max(now);
        // Advance every transfer to `next`.
        let dt = (next - now) as f64;
        for e in engines.iter_mut() {
            if let Phase::Transfer { remaining, ddr, cap, .. } = &mut e.phase {
                *remaining -= rate(*ddr, *cap) * dt;
            }
        }
        now = next;

        if engine_first {
            let Some((_, ei)) = next_engine else { break };
            let phase = std::mem::replace(&mut engines[ei].phase, Phase::Idle);
            match phase {
                Phase::Setup { dma, pc, start, .. } => {
                    let cost = dev.dma_cost(&dma);
                    let ddr = cost.ddr_read_bytes + cost.ddr_write_bytes > 0;
                    let amount = if ddr { cost.ddr_read_bytes + cost.ddr_write_bytes } else { cost.noc_bytes.max(cost.bytes) };
                    let mut cap = dev.dma_path_bytes_per_s(cost.path);
                    if dma.multicast.is_some() || cost.path == DmaPath::VtcmToVtcm {
                        cap = cap.min(dev.noc_bytes_per_s);
                    }
                    engines[ei].phase = Phase::Transfer { remaining: amount as f64, ddr, cap: cap as f64 / PS_PER_S as f64, dma, pc, start };
                }
                Phase::Transfer { dma, pc, start, .. } => {
                    data(Action::Land { core: ei as u32, pc })?;
                    let cost = dev.dma_cost(&dma);
                    let st = &mut cores[ei].stats;
                    st.ddr_read_bytes += cost.ddr_read_bytes;
                    st.ddr_write_bytes += cost.ddr_write_bytes;
                    st.noc_bytes += cost.noc_bytes;
                    if dma.multicast.is_some() {
                        st.multicast_bytes += cost.bytes;
                    }
                    st.dma_ps += now - start;
                    ev(TraceTrack::Dma(ei), &|| format!("dma {} -> {} {} B", space_name(dma.src), if dma.multicast.is_some() { "multicast".to_string() } else { space_name(dma.dst) }, dma.shape.total_bytes()), start, now);
                    let c = &mut cores[ei];
                    c.outstanding[dma.tag as usize] -= 1;
                    if c.state == State::DmaWait(dma.tag) && c.outstanding[dma.tag as usize] == 0 {
                        ev(TraceTrack::Wait(ei), &|| format!("dma.wait {}", dma.tag), c.blocked_at, now);
                        c.stats.dma_wait_ps += now.saturating_sub(c.blocked_at);
                        c.t = c.t.max(now);
                        c.state = State::Run;
                    }
                    if let Some(s) = dma.signal {
                        sems[s.sem as usize] += s.add as u64;
                        wake_sem(&mut cores, &sems, now, sync, &mut ev);
                    }
                    start_next(&mut engines[ei], now, dev);
                }
                Phase::Idle => {}
            }
            continue;
        }

        let Some((_, ci)) = next_core else { break };
        let pc = cores[ci].pc;
        let instr = &p.cores[ci].instrs[pc];
        cores[ci].pc += 1;
        cores[ci].stats.instructions += 1;
        let t = now;
        match instr {
            Instr::Dma(d) => {
                let c = &mut cores[ci];
                c.t = t + issue;
                c.stats.busy_ps += issue;
                c.outstanding[d.tag as usize] += 1;
                engines[ci].queue.push_back((c.t, d.clone(), pc as u32));
                if matches!(engines[ci].phase, Phase::Idle) {
                    start_next(&mut engines[ci], now, dev);
                }
            }
            Instr::DmaWait { tag } => {
                let c = &mut cores[ci];
                if c.outstanding[*tag as usize] == 0 {
                    c.t = t + issue;
                    c.stats.busy_ps += issue;
                } else {
                    c.state = State::DmaWait(*tag);
                    c.blocked_at = t;
                }
            }
            Instr::Op(op) => {
                data(Action::Op { core: ci as u32, pc: pc as u32 })?;
                let cost = dev.op_cost(op);
                let mut dur = dev.cycles_to_ps(cost.cycles);
                let st = &mut cores[ci].stats;
                if cost.ddr_bytes > 0 {
                    dur += DeviceModel::transfer_ps(cost.ddr_bytes, dev.ddr_single_core_bytes_per_s);
                    st.ddr_read_bytes += cost.ddr_bytes;
                }
                match cost.unit {
                    Unit::Matrix => st.matrix_ps += dur,
                    _ => st.vector_ps += dur,
                }
                let track = if cost.unit == Unit::Matrix { TraceTrack::Matrix(ci) } else { TraceTrack::Vector(ci) };
                ev(track, &|| op.op.clone(), t + issue, t + issue + dur);
                st.macs += cost.macs;
                st.busy_ps += issue + dur;
                cores[ci].t = t + issue + dur;
            }
            Instr::SemSignal { sem, add } => {
                let c = &mut cores[ci];
                c.t = t + issue;
                c.stats.busy_ps += issue;
                sems[*sem as usize] += *add as u64;
                wake_sem(&mut cores, &sems, t + issue, sync, &mut ev);
            }
            Instr::SemWait { sem, at_least } => {
                let c = &mut cores[ci];
                if sems[*sem as usize] >= *at_least as u64 {
                    c.t = t + issue;
                    c.stats.busy_ps += issue;
                } else {
                    c.state = State::SemWait(*sem, *at_least);
                    c.blocked_at = t;
                }
            }
            Instr::Barrier { cores: mask } => {
                cores[ci].state = State::Barrier(mask.0);
                cores[ci].blocked_at = t;
                let arrived = barriers.entry(mask.0).or_default();
                arrived.push(ci);
                if arrived.len() as u32 == mask.count() {
                    let list = barriers.remove(&mask.0).unwrap_or_default();
                    let release = t + sync;
                    for &w in &list {
                        let c = &mut cores[w];
                        ev(TraceTrack::Wait(w), &|| "barrier".to_string(), c.blocked_at, release);
                        c.stats.sync_wait_ps += release - c.blocked_at;
                        c.t = release;
                        c.state = State::Run;
                    }
                }
            }
            Instr::Layer { name } => {
                let c = &mut cores[ci];
                c.layer_marks.push((name.clone(), t));
                c.t = t + issue + dev.layer_overhead_ps;
                c.stats.busy_ps += issue + dev.layer_overhead_ps;
            }
            Instr::End => {
                let c = &mut cores[ci];
                c.state = State::Done;
                c.stats.end_ps = t;
            }
        }
    }

    if let Some((i, c)) = cores.iter().enumerate().find(|(_, c)| c.state != State::Done) {
        let blocked: Vec<String> = cores.iter().enumerate().filter(|(_, c)| c.state != State::Done).map(|(i, c)| format!("core {i} {:?} at [{}]", c.state, c.pc.saturating_sub(1))).collect();
        let _ = (i, c);
        return Err(SimError::Deadlock { time_ps: now, detail: blocked.join(", ") });
    }

    let total = cores.iter().map(|c| c.stats.end_ps).max().unwrap_or(0);
    let mut layers: Vec<LayerStats> = Vec::new();
    for (ci, c) in cores.iter().enumerate() {
        for (i, (name, start)) in c.layer_marks.iter().enumerate() {
            let end = c.layer_marks.get(i + 1).map_or(c.stats.end_ps, |m| m.1);
            ev(TraceTrack::Layer(ci), &|| name.clone(), *start, end);
            match layers.get_mut(i) {
                Some(l) if &l.name == name => {
                    l.start_ps = l.start_ps.min(*start);
                    l.end_ps = l.end_ps.max(end);
                }
                Some(_) => {}
                None => layers.push(LayerStats { name: name.clone(), start_ps: *start, end_ps: end }),
            }
        }
    }
    trace.sort_by_key(|e| (e.track, e.start_ps));
    let mut stats = SimStats { total_ps: total, layers, trace, ..Default::default() };
    for c in cores {
        let mut s = c.stats;
        s.idle_ps = total.saturating_sub(s.busy_ps);
        stats.ddr_read_bytes += s.ddr_read_bytes;
        stats.ddr_write_bytes += s.ddr_write_bytes;
        stats.multicast_bytes += s.multicast_bytes;
        stats.macs += s.macs;
        stats.cores.push(s);
    }
    Ok(stats)
}

fn start_next(e: &mut DmaEngine, now: u64, dev: &DeviceModel) {
    if let Some((ready, dma, pc)) = e.queue.pop_front() {
        let start = now.max(ready);
        e.phase = Phase::Setup { until: start + dev.dma_setup_ps, dma, pc, start };
    }
}

fn wake_sem(cores: &mut [Core], sems: &[u64], at: u64, sync: u64, ev: &mut impl FnMut(TraceTrack, &dyn Fn() -> String, u64, u64)) {
    for (i, c) in cores.iter_mut().enumerate() {
        if let State::SemWait(s, n) = c.state
            && sems[s as usize] >= n as u64
        {
            let resume = at.max(c.blocked_at) + sync;
            ev(TraceTrack::Wait(i), &|| format!("sem.wait {s} >= {n}"), c.blocked_at, resume);
            c.stats.sync_wait_ps += resume - c.blocked_at;
            c.t = resume;
            c.state = State::Run;
        }
    }
}

fn space_name(s: Space) -> String {
    match s {
        Space::Ddr(b) => format!("ddr{b}"),
        Space::Vtcm => "vtcm".into(),
        Space::PeerVtcm(c) => format!("vtcm@c{c}"),
    }
}
