//! The prepared form of a loaded program: what one inference does to memory, worked out once.
//!
//! Timing never depends on data (op costs depend on tile shapes, DMA costs on descriptors), so
//! the event engine runs once per loaded program: its statistics are kept, and the order in
//! which it performed data events (DMA landings, ops) becomes a flat list of [`Step`]s that
//! every inference replays on real data. That order is a valid sequential execution of the
//! program (it is the device's), so results do not change. On that list, these rewrites cut
//! host work without changing any byte a later step reads:
//!
//! * **Merged convolutions.** When several `Conv` ops (on one or many cores) read input tiles
//!   that provably hold the same bytes — loaded by identical DMA descriptors from the same DDR
//!   range with no write to that range in between — and take their weights and bias from
//!   `Constants`, they are one convolution split by output channels (what codegen's channel
//!   split emits). The group's weights are concatenated and packed **once per loaded
//!   program**; at the first member's place one kernel call computes every member's channels
//!   (one im2col instead of one per core and tile, and GEMMs large enough to thread), and each
//!   member's output tile receives its channel slice at the member's own place.
//! * **Dead DMA landings.** A DMA into VTCM whose bytes are overwritten or never read before
//!   being read again is not copied (e.g. the whole-input loads and weight slices that only
//!   merged convolutions used; for a multicast, per receiver).
//! * **Buffers reused across inferences.** VTCM, scratch and output arrays persist in a
//!   workspace; only bytes some step reads before any step writes them ("live-in") are zeroed
//!   per run, so results equal those of fresh zeroed arrays.
//!
//! * **Loads read in place.** A contiguous DMA from DDR into VTCM whose landed bytes only ops
//!   read (each a whole tile, before any overwrite), while nothing writes the DDR source until
//!   the last of those reads, is not copied: the ops read the DDR bytes (the layer-input loads
//!   of every layer, the weight and bias loads).
//! * **Stores written in place.** A contiguous DMA from VTCM to DDR of a tile an op (a fused
//!   op, a merged convolution's slice) has just written whole, which nothing reads afterwards
//!   before overwriting it, and whose destination nothing touches between the op and the store,
//!   is not copied: the op writes the DDR range (every layer's output store). When all
//!   members of a merged convolution store this way to adjacent channel ranges of one DDR
//!   range, the merged result is computed there and not scattered.
//! * **Independent steps on host threads.** Steps are ordered by dependence level (a step's
//!   level is one more than that of the latest earlier step touching a common byte, or merged
//!   result buffer, where either writes); the steps of one level — typically the same step of
//!   every core in a layer — run at once on the kernel threads. Bytes equal the sequential
//!   replay's whatever the host thread count; large contiguous DMA landings are also split
//!   across threads.
//!
//! Outputs equal the step-by-step execution within the float tolerance (GEMM blocking differs
//! with the merged shape); predicted timing is the engine's, untouched.

use std::collections::HashMap;

use qaic_device::{AttrValue, BufferKind, CoreMask, DeviceModel, Dma, DmaShape, Instr, Op, Program, Space, Tile};
use qaic_kernels::Kernels;
use qaic_kernels::conv::{ConvParams, PackedConvWeights};
use qaic_kernels::gemm::Activation;
use qaic_tensor::DType;

use crate::engine::{self, Action, SimStats};
use crate::exec;
use crate::SimError;

/// One replayed data event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// DMA instruction `pc` of `core` lands; `receivers` narrows a multicast to the cores whose
    /// copy is read later.
    Land { core: u32, pc: u32, receivers: Option<CoreMask> },
    /// Op instruction `pc` of `core`, run as written.
    Op { core: u32, pc: u32 },
    /// `Conv` instruction `pc` of `core` with the element-wise op `unary_pc` that alone reads its
    /// output fused as the epilogue: the conv writes the follower's output tile.
    Fused { core: u32, pc: u32, unary_pc: u32 },
    /// Merged convolution `group`: computed at its first member's place, which it also writes.
    Group { group: u32 },
    /// Member `member` (≥ 1) of `group` receives its channel slice.
    Scatter { group: u32, member: u32 },
}

/// Convolutions merged along output channels (see the module documentation).
struct ConvGroup {
    /// Input tile the merged convolution reads: the first member's, in its core's VTCM.
    leader: (u32, u32),
    params: ConvParams,
    act: Activation,
    x_shape: Vec<usize>,
    kernel: GroupKernel,
    /// `[N, M_total, spatial...]`.
    out_shape: Vec<usize>,
    /// (core, pc, first channel, channels) per member, in execution order.
    members: Vec<(u32, u32, usize, usize)>,
    /// Per member, the op whose first output tile receives the member's slice: the member
    /// itself, or the fused element-wise follower.
    targets: Vec<(u32, u32)>,
    /// Result buffer of the workspace holding the merged output between its first and last member.
    slot: usize,
}

/// The merged convolution of a group.
enum GroupKernel {
    /// `Conv` (float32): packed weights and bias; the result is float32.
    F32 { weights: PackedConvWeights, bias: Option<Vec<f32>> },
    /// `QConvGlow` (8-bit codes, the interpreter's integer kernel); the result is 8-bit.
    Q(Box<qaic_kernels::quant::QConvGlow>),
}

impl ConvGroup {
    /// Bytes per element of the merged result.
    fn elem(&self) -> usize {
        if matches!(self.kernel, GroupKernel::Q(_)) { 1 } else { 4 }
    }
}

/// A candidate member of a convolution group: core, pc, weight bytes, bias bytes, and for
/// `QConvGlow` the multiplier and weight zero-point bytes.
type CandMember = (u32, u32, Vec<u8>, Option<Vec<u8>>, Vec<Vec<u8>>);

/// A group whose members all fuse a follower: group, activation, targets, follower steps.
type GroupFusion = (usize, Activation, Vec<(u32, u32)>, Vec<usize>);

/// A program prepared for repeated inferences.
pub(crate) struct Plan {
    /// Timing of one inference (data-independent).
    pub(crate) stats: SimStats,
    steps: Vec<Step>,
    groups: Vec<ConvGroup>,
    /// Element counts of the merged-result buffers.
    slot_sizes: Vec<usize>,
    /// Per memory (DDR buffers, then each core's VTCM): byte ranges read before written.
    live_in: Vec<Vec<(u64, u64)>>,
    /// Input buffers some step writes (copied per run instead of borrowed).
    input_written: Vec<bool>,
    /// `steps` is ordered by dependence level; level `i` is `steps[levels[i]..levels[i + 1]]`.
    /// No step of a level touches a byte (or merged-result buffer) another step of the same
    /// level writes, so a level's steps may run in any order or at once on host threads.
    levels: Vec<usize>,
    /// Loads read and stores written in place.
    redirect: Redirects,
    /// Per core: the preload runs (constants offset, VTCM offset, bytes), copied once into a
    /// workspace's VTCM when it is created (the region is read-only, so they persist).
    preload: Vec<Vec<(usize, usize, usize)>>,
}

/// Arrays reused across inferences.
#[derive(Default)]
pub(crate) struct Workspace {
    ddr: Vec<Vec<u8>>,
    vtcm: Vec<Vec<u8>>,
    slots: Vec<Vec<f32>>,
    /// Per concurrently running step of a level: the float scratch and byte staging buffers.
    bufs: Vec<std::sync::Mutex<(Vec<f32>, Vec<u8>)>>,
}

/// Identity of bytes DMA'd from DDR: equal keys mean equal bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LoadKey {
    buf: u32,
    src_offset: u64,
    shape: DmaShape,
    /// Sequence number of the last write to the source range before the landing (0: none).
    version: u64,
}

/// Most runs of a strided VTCM landing tracked one by one (beyond, the landing only
/// invalidates its whole extent).
const MAX_TRACKED_RUNS: u64 = 4096;

/// VTCM bytes `[start, end)` of a core hold the dense destination image of `key`.
#[derive(Debug, Clone)]
struct Record {
    start: u64,
    end: u64,
    key: LoadKey,
}

/// VTCM bytes `[start, end)` of a core were landed by the dense VTCM→VTCM DMA (or multicast)
/// `pc` of `core`: cores holding the same landing hold the same bytes there.
#[derive(Debug, Clone, Copy)]
struct Landed {
    start: u64,
    end: u64,
    core: u32,
    pc: u32,
}

/// Where a tile's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum XSrc {
    /// Inside the image of one DDR load (`rel` = offset in it).
    Load(LoadKey),
    /// Exactly covered by these VTCM landings ((core, pc, start, end), in address order;
    /// `rel` = the tile's VTCM offset): activations multicast between layers.
    Cover(Vec<(u32, u32, u64, u64)>),
}

/// Identity of a tile's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TileKey {
    load: XSrc,
    rel: u64,
    dtype: DType,
    shape: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    x: TileKey,
    attrs: Vec<(String, AttrValue)>,
    w_rest: Vec<u64>,
    has_bias: bool,
    out_n: u64,
    out_spatial: Vec<u64>,
}

/// A byte range of one memory (DDR buffer `b` = `b`, VTCM of core `c` = buffers + `c`).
#[derive(Debug, Clone, Copy)]
struct Access {
    step: usize,
    start: u64,
    end: u64,
    write: bool,
    /// The write covers every byte of the range.
    dense: bool,
}

/// Whether a descriptor writes its destination extent densely (canonical row-major strides).
fn dense_dst(s: &DmaShape) -> bool {
    let mut inner = s.run_bytes;
    for d in &s.dims {
        if d.count > 1 && d.dst_stride != inner {
            return false;
        }
        inner = inner.saturating_mul(d.count);
    }
    true
}

/// Calls `f(src_offset, dst_offset)` for every contiguous run of a descriptor, in order.
fn for_each_run_of(shape: &DmaShape, sb: usize, db: usize, f: &mut impl FnMut(usize, usize)) {
    let dims = &shape.dims;
    let get = |i: usize| dims.get(i).map_or((1usize, 0usize, 0usize), |x| (x.count as usize, x.src_stride as usize, x.dst_stride as usize));
    let ((c0, s0, t0), (c1, s1, t1), (c2, s2, t2)) = (get(0), get(1), get(2));
    for i2 in 0..c2 {
        for i1 in 0..c1 {
            for i0 in 0..c0 {
                f(sb + i0 * s0 + i1 * s1 + i2 * s2, db + i0 * t0 + i1 * t1 + i2 * t2);
            }
        }
    }
}

/// Sorted disjoint half-open intervals.
#[derive(Debug, Default, Clone)]
struct Intervals(Vec<(u64, u64)>);

impl Intervals {
    fn add(&mut self, s: u64, e: u64) {
        if s >= e {
            return;
        }
        let (mut s, mut e) = (s, e);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < s || a > e {
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        let pos = out.partition_point(|&(a, _)| a < s);
        out.insert(pos, (s, e));
        self.0 = out;
    }
    fn subtract(&mut self, s: u64, e: u64) {
        if s >= e {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b <= s || a >= e {
                out.push((a, b));
                continue;
            }
            if a < s {
                out.push((a, s));
            }
            if b > e {
                out.push((e, b));
            }
        }
        self.0 = out;
    }
    fn intersects(&self, s: u64, e: u64) -> bool {
        self.0.iter().any(|&(a, b)| a < e && s < b)
    }
    /// Parts of `[s, e)` not covered.
    fn gaps(&self, s: u64, e: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut cur = s;
        for &(a, b) in &self.0 {
            if b <= cur || a >= e {
                continue;
            }
            if a > cur {
                out.push((cur, a));
            }
            cur = cur.max(b);
            if cur >= e {
                break;
            }
        }
        if cur < e {
            out.push((cur, e));
        }
        out
    }
}

fn tile_len(t: &Tile) -> u64 {
    t.bytes().unwrap_or(0)
}

fn usizes(v: &[u64]) -> Vec<usize> {
    v.iter().map(|&d| d as usize).collect()
}

impl Plan {
    /// Convolution ops run as members of merged groups.
    pub(crate) fn merged_convolutions(&self) -> usize {
        self.groups.iter().filter(|g| g.members.len() > 1).map(|g| g.members.len()).sum()
    }

    /// Runs the timing model once and prepares the replay. Errors are the engine's (deadlock).
    pub(crate) fn build(p: &Program, dev: &DeviceModel, constants: &[u8], k: &Kernels) -> Result<Plan, SimError> {
        let mut actions = Vec::new();
        let stats = engine::simulate(p, dev, false, &mut |a| {
            actions.push(a);
            Ok(())
        })?;
        let nbuf = p.buffers.len();
        let ncores = p.cores.len();
        let mut const_base = vec![0usize; nbuf];
        let mut off = 0usize;
        for (i, b) in p.buffers.iter().enumerate() {
            if b.kind == BufferKind::Constants {
                const_base[i] = off;
                off += b.size as usize;
            }
        }
        let is_const = |b: u32| p.buffers.get(b as usize).is_some_and(|b| b.kind == BufferKind::Constants);
        let dma_at = |core: u32, pc: u32| match &p.cores[core as usize].instrs[pc as usize] {
            Instr::Dma(d) => Some(d),
            _ => None,
        };
        let op_at = |core: u32, pc: u32| match &p.cores[core as usize].instrs[pc as usize] {
            Instr::Op(o) => Some(o),
            _ => None,
        };

        // Pass 1: content identity of VTCM bytes, and convolution groups.
        let mut records: Vec<Vec<Record>> = vec![Vec::new(); ncores];
        let mut landed: Vec<Vec<Landed>> = vec![Vec::new(); ncores];
        // The preloaded region holds its constants for the whole run (nothing writes it).
        for (c, core) in p.cores.iter().enumerate() {
            for d in &core.preload {
                if let (Space::Ddr(b), true) = (d.src, dense_dst(&d.shape)) {
                    let ext = d.shape.dst_extent().unwrap_or(0);
                    records[c].push(Record { start: d.dst_offset, end: d.dst_offset + ext, key: LoadKey { buf: b, src_offset: d.src_offset, shape: d.shape.clone(), version: 0 } });
                }
            }
        }
        let mut ddr_writes: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); nbuf];
        let mut seq = 0u64;
        let mut group_of: HashMap<GroupKey, usize> = HashMap::new();
        // Per candidate group: members (core, pc, weights bytes, bias bytes).
        struct Cand {
            leader: (u32, u32),
            members: Vec<CandMember>,
        }
        let mut cands: Vec<Cand> = Vec::new();
        let mut member_of: HashMap<(u32, u32), (usize, usize)> = HashMap::new();
        let invalidate = |recs: &mut Vec<Record>, s: u64, e: u64| recs.retain(|r| r.end <= s || r.start >= e);
        let invalidate_landed = |recs: &mut Vec<Landed>, s: u64, e: u64| recs.retain(|r| r.end <= s || r.start >= e);
        let gather = |key: &LoadKey, rel: u64, len: u64| -> Option<Vec<u8>> {
            let base = const_base[key.buf as usize];
            let ext = key.shape.dst_extent()? as usize;
            let src = constants.get(base..base + p.buffers[key.buf as usize].size as usize)?;
            let mut img = vec![0u8; ext];
            let run = key.shape.run_bytes as usize;
            let mut ok = true;
            for_each_run_of(&key.shape, key.src_offset as usize, 0, &mut |so, o| match src.get(so..so + run) {
                Some(b) => img[o..o + run].copy_from_slice(b),
                None => ok = false,
            });
            if !ok {
                return None;
            }
            img.get(rel as usize..(rel + len) as usize).map(<[u8]>::to_vec)
        };
        for a in &actions {
            match *a {
                Action::Land { core, pc } => {
                    let Some(d) = dma_at(core, pc) else { continue };
                    let ext = d.shape.dst_extent().unwrap_or(0);
                    let receivers: Vec<usize> = match (d.multicast, d.dst) {
                        (Some(m), _) => m.iter().map(|c| c as usize).filter(|&c| c < ncores).collect(),
                        (None, Space::Vtcm) => vec![core as usize],
                        (None, Space::PeerVtcm(c)) => vec![c as usize],
                        (None, Space::Ddr(b)) => {
                            seq += 1;
                            ddr_writes[b as usize].push((d.dst_offset, d.dst_offset + ext, seq));
                            Vec::new()
                        }
                    };
                    // The bytes written: one range for a dense destination, else each run (a
                    // row band multicast into every core lands as strided runs that, with the
                    // other cores' bands, cover the whole tile).
                    let dense = dense_dst(&d.shape);
                    let mut runs: Vec<(u64, u64)> = Vec::new();
                    if dense || d.shape.dims.iter().map(|x| x.count as u64).product::<u64>() > MAX_TRACKED_RUNS {
                        runs.push((d.dst_offset, d.dst_offset + ext));
                    } else {
                        let run = d.shape.run_bytes;
                        for_each_run_of(&d.shape, 0, d.dst_offset as usize, &mut |_, o| runs.push((o as u64, o as u64 + run)));
                    }
                    for &c in &receivers {
                        for &(s, e) in &runs {
                            invalidate(&mut records[c], s, e);
                            invalidate_landed(&mut landed[c], s, e);
                        }
                    }
                    if matches!(d.src, Space::Vtcm) && ext > 0 && (dense || runs.len() > 1) {
                        for &c in &receivers {
                            landed[c].extend(runs.iter().map(|&(start, end)| Landed { start, end, core, pc }));
                        }
                    }
                    if let Space::Ddr(b) = d.src
                        && dense_dst(&d.shape)
                        && ext > 0
                    {
                        let (s, e) = (d.src_offset, d.src_offset + d.shape.src_extent().unwrap_or(0));
                        let version = ddr_writes[b as usize].iter().filter(|w| w.0 < e && s < w.1).map(|w| w.2).max().unwrap_or(0);
                        let key = LoadKey { buf: b, src_offset: d.src_offset, shape: d.shape.clone(), version };
                        for &c in &receivers {
                            records[c].push(Record { start: d.dst_offset, end: d.dst_offset + ext, key: key.clone() });
                        }
                    }
                }
                Action::Op { core, pc } => {
                    let Some(op) = op_at(core, pc) else { continue };
                    let recs = &records[core as usize];
                    let find = |t: &Tile| -> Option<(LoadKey, u64)> {
                        if t.space != Space::Vtcm {
                            return None;
                        }
                        let len = tile_len(t);
                        recs.iter().find(|r| r.start <= t.offset && t.offset + len <= r.end).map(|r| (r.key.clone(), t.offset - r.start))
                    };
                    // A tile exactly covered by VTCM landings, contiguous in address order.
                    let cover = |t: &Tile| -> Option<(XSrc, u64)> {
                        let (s0, e0) = (t.offset, t.offset + tile_len(t));
                        let mut l: Vec<&Landed> = landed[core as usize].iter().filter(|r| r.start < e0 && s0 < r.end).collect();
                        l.sort_by_key(|r| r.start);
                        let mut at = s0;
                        for r in &l {
                            if r.start > at {
                                return None;
                            }
                            at = at.max(r.end);
                        }
                        (at >= e0 && !l.is_empty()).then(|| (XSrc::Cover(l.iter().map(|r| (r.core, r.pc, r.start, r.end)).collect()), s0))
                    };
                    let xsrc = |t: &Tile| -> Option<(XSrc, u64)> { find(t).map(|(k, rel)| (XSrc::Load(k), rel)).or_else(|| cover(t)) };
                    // Constant operand bytes: a VTCM tile loaded from `Constants`, or a DDR tile in it.
                    let const_bytes = |t: &Tile| -> Option<Vec<u8>> {
                        match t.space {
                            Space::Ddr(b) if is_const(b) => {
                                let s = const_base[b as usize] + t.offset as usize;
                                constants.get(s..s + tile_len(t) as usize).map(<[u8]>::to_vec)
                            }
                            Space::Vtcm => {
                                let (key, rel) = find(t)?;
                                if !is_const(key.buf) {
                                    return None;
                                }
                                gather(&key, rel, tile_len(t))
                            }
                            _ => None,
                        }
                    };
                    let candidate = op.op == "Conv"
                        && op.dtype == DType::F32
                        && (2..=3).contains(&op.inputs.len())
                        && op.outputs.len() == 1
                        && op.inputs.iter().chain(&op.outputs).all(|t| t.dtype == DType::F32)
                        && op.inputs[0].shape.len() >= 3
                        && op.inputs[1].shape.len() == op.inputs[0].shape.len()
                        && op.outputs[0].shape.len() == op.inputs[0].shape.len();
                    let qcandidate = op.op == "QConvGlow"
                        && op.inputs.len() == 5
                        && op.outputs.len() == 1
                        && matches!(op.inputs[0].dtype, DType::I8 | DType::U8)
                        && op.inputs[0].shape.len() >= 3
                        && op.inputs[1].shape.len() == op.inputs[0].shape.len()
                        && op.outputs[0].shape.len() == op.inputs[0].shape.len()
                        && op.attr_int("group", 1) == 1;
                    if (candidate || qcandidate)
                        && let Some((xload, xrel)) = xsrc(&op.inputs[0])
                        && let Some(w) = const_bytes(&op.inputs[1])
                    {
                        let b = match op.inputs.get(2) {
                            Some(t) => const_bytes(t).map(Some),
                            None => Some(None),
                        };
                        let extra: Option<Vec<Vec<u8>>> = if qcandidate { op.inputs[3..5].iter().map(const_bytes).collect() } else { Some(Vec::new()) };
                        if let (Some(b), Some(extra)) = (b, extra) {
                            let x = &op.inputs[0];
                            let o = &op.outputs[0];
                            let key = GroupKey {
                                x: TileKey { load: xload, rel: xrel, dtype: x.dtype, shape: x.shape.clone() },
                                attrs: op.attrs.clone(),
                                w_rest: op.inputs[1].shape[1..].to_vec(),
                                has_bias: b.is_some(),
                                out_n: o.shape[0],
                                out_spatial: o.shape[2..].to_vec(),
                            };
                            let g = *group_of.entry(key).or_insert_with(|| {
                                cands.push(Cand { leader: (core, pc), members: Vec::new() });
                                cands.len() - 1
                            });
                            member_of.insert((core, pc), (g, cands[g].members.len()));
                            cands[g].members.push((core, pc, w, b, extra));
                        }
                    }
                    for t in &op.outputs {
                        let len = tile_len(t);
                        match t.space {
                            Space::Ddr(b) => {
                                seq += 1;
                                ddr_writes[b as usize].push((t.offset, t.offset + len, seq));
                            }
                            _ => {
                                invalidate(&mut records[core as usize], t.offset, t.offset + len);
                                invalidate_landed(&mut landed[core as usize], t.offset, t.offset + len);
                            }
                        }
                    }
                }
            }
        }

        // Build the groups: concatenated, packed weights; a candidate the kernel refuses runs as
        // plain ops.
        let mut groups: Vec<ConvGroup> = Vec::new();
        let mut group_index: Vec<Option<usize>> = vec![None; cands.len()];
        for (ci, c) in cands.iter().enumerate() {
            let Some(g) = make_group(k, p, c.leader, &c.members) else { continue };
            group_index[ci] = Some(groups.len());
            groups.push(g);
        }

        // Pass 2: steps, with a result buffer per group from its first to its last member.
        let mut steps: Vec<Step> = Vec::with_capacity(actions.len());
        let mut slot_sizes: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        for a in &actions {
            match *a {
                Action::Land { core, pc } => steps.push(Step::Land { core, pc, receivers: None }),
                Action::Op { core, pc } => match member_of.get(&(core, pc)).and_then(|&(c, m)| group_index[c].map(|g| (g, m))) {
                    None => steps.push(Step::Op { core, pc }),
                    Some((g, 0)) => {
                        let need: usize = groups[g].out_shape.iter().product();
                        let slot = match free.iter().position(|&s| slot_sizes[s] >= need) {
                            Some(i) => free.swap_remove(i),
                            None => match free.pop() {
                                Some(s) => s,
                                None => {
                                    slot_sizes.push(0);
                                    slot_sizes.len() - 1
                                }
                            },
                        };
                        slot_sizes[slot] = slot_sizes[slot].max(need);
                        groups[g].slot = slot;
                        steps.push(Step::Group { group: g as u32 });
                        if groups[g].members.len() == 1 {
                            free.push(slot);
                        }
                    }
                    Some((g, m)) => {
                        steps.push(Step::Scatter { group: g as u32, member: m as u32 });
                        if m + 1 == groups[g].members.len() {
                            free.push(groups[g].slot);
                        }
                    }
                },
            }
        }

        // Memory accesses of every step, per memory.
        let nmem = nbuf + ncores;
        let mut acc: Vec<Vec<Access>> = vec![Vec::new(); nmem];
        let tile_mem = |core: u32, t: &Tile| match t.space {
            Space::Ddr(b) => b as usize,
            Space::Vtcm => nbuf + core as usize,
            Space::PeerVtcm(c) => nbuf + c as usize,
        };
        // For landings: (memory, index of its write access) per destination.
        let mut land_writes: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for (si, s) in steps.iter().enumerate() {
            match *s {
                Step::Land { core, pc, .. } => {
                    let Some(d) = dma_at(core, pc) else { continue };
                    let sm = match d.src {
                        Space::Ddr(b) => b as usize,
                        Space::Vtcm => nbuf + core as usize,
                        Space::PeerVtcm(c) => nbuf + c as usize,
                    };
                    let se = d.shape.src_extent().unwrap_or(0);
                    acc[sm].push(Access { step: si, start: d.src_offset, end: d.src_offset + se, write: false, dense: false });
                    let de = d.shape.dst_extent().unwrap_or(0);
                    let dense = dense_dst(&d.shape);
                    let dsts: Vec<usize> = match (d.multicast, d.dst) {
                        (Some(m), _) => m.iter().filter(|&c| (c as usize) < ncores).map(|c| nbuf + c as usize).collect(),
                        (None, Space::Vtcm) => vec![nbuf + core as usize],
                        (None, Space::PeerVtcm(c)) => vec![nbuf + c as usize],
                        (None, Space::Ddr(b)) => vec![b as usize],
                    };
                    let mut w = Vec::new();
                    for m in dsts {
                        w.push((m, acc[m].len()));
                        acc[m].push(Access { step: si, start: d.dst_offset, end: d.dst_offset + de, write: true, dense });
                    }
                    land_writes.insert(si, w);
                }
                Step::Op { core, pc } => {
                    let Some(op) = op_at(core, pc) else { continue };
                    for t in &op.inputs {
                        let m = tile_mem(core, t);
                        acc[m].push(Access { step: si, start: t.offset, end: t.offset + tile_len(t), write: false, dense: false });
                    }
                    if let Some(t) = op.outputs.first() {
                        let m = tile_mem(core, t);
                        acc[m].push(Access { step: si, start: t.offset, end: t.offset + tile_len(t), write: true, dense: true });
                    }
                }
                Step::Group { group } => {
                    let g = &groups[group as usize];
                    let (lc, lpc) = g.leader;
                    if let Some(op) = op_at(lc, lpc) {
                        let t = &op.inputs[0];
                        let m = tile_mem(lc, t);
                        acc[m].push(Access { step: si, start: t.offset, end: t.offset + tile_len(t), write: false, dense: false });
                        let o = &op.outputs[0];
                        let m = tile_mem(lc, o);
                        acc[m].push(Access { step: si, start: o.offset, end: o.offset + tile_len(o), write: true, dense: true });
                    }
                }
                // Fusion is decided after this analysis.
                Step::Fused { .. } => {}
                Step::Scatter { group, member } => {
                    let (c, pc, _, _) = groups[group as usize].members[member as usize];
                    if let Some(op) = op_at(c, pc) {
                        let o = &op.outputs[0];
                        let m = tile_mem(c, o);
                        acc[m].push(Access { step: si, start: o.offset, end: o.offset + tile_len(o), write: true, dense: true });
                    }
                }
            }
        }

        // Dead landings: VTCM destinations whose bytes are overwritten or never read before any read.
        let read_later = |m: usize, idx: usize| -> bool {
            let a = acc[m][idx];
            let mut remaining = Intervals::default();
            remaining.add(a.start, a.end);
            for x in &acc[m][idx + 1..] {
                if x.step == a.step {
                    continue;
                }
                if !x.write && remaining.intersects(x.start, x.end) {
                    return true;
                }
                if x.write && x.dense {
                    remaining.subtract(x.start, x.end);
                    if remaining.0.is_empty() {
                        return false;
                    }
                }
            }
            false
        };
        let mut keep = vec![true; steps.len()];
        for (si, s) in steps.iter_mut().enumerate() {
            let Step::Land { core, pc, receivers } = s else { continue };
            let Some(d) = dma_at(*core, *pc) else { continue };
            let Some(ws) = land_writes.get(&si) else { continue };
            if ws.iter().any(|&(m, _)| m < nbuf) {
                continue; // DDR writes are kept (outputs are observable, scratch is shared).
            }
            let live: Vec<u32> = ws.iter().filter(|&&(m, i)| read_later(m, i)).map(|&(m, _)| (m - nbuf) as u32).collect();
            if live.is_empty() {
                keep[si] = false;
            } else if d.multicast.is_some() {
                *receivers = Some(CoreMask(live.iter().fold(0u64, |a, &c| a | (1u64 << c))));
            }
        }

        // Element-wise followers fused into convolutions: the follower is the next op of the
        // conv's core, reads exactly the conv's output tile, nothing touches either tile in
        // between, and the conv's tile is not read afterwards.
        let step_core = |s: &Step| -> Option<u32> {
            match *s {
                Step::Op { core, .. } | Step::Fused { core, .. } => Some(core),
                Step::Group { group } => Some(groups[group as usize].leader.0),
                Step::Scatter { group, member } => Some(groups[group as usize].members[member as usize].0),
                Step::Land { .. } => None,
            }
        };
        let mut next_on_core = vec![None; steps.len()];
        let mut last: Vec<Option<usize>> = vec![None; ncores];
        for i in (0..steps.len()).rev() {
            if let Some(c) = step_core(&steps[i]) {
                next_on_core[i] = last[c as usize];
                last[c as usize] = Some(i);
            }
        }
        let fuse_target = |i: usize, c: u32, conv: &Op| -> Option<(usize, u32, Activation)> {
            let j = next_on_core[i]?;
            let Step::Op { core, pc: upc } = steps[j] else { return None };
            let u = op_at(core, upc)?;
            let act = exec::activation_of(u)?;
            let t1 = conv.outputs.first()?;
            if u.inputs.len() != 1 || u.outputs.len() != 1 || u.inputs[0] != *t1 || t1.dtype != DType::F32 {
                return None;
            }
            let t2 = &u.outputs[0];
            if t2.dtype != DType::F32 || t2.shape != t1.shape {
                return None;
            }
            let touched = |t: &Tile| {
                let (m, e) = (tile_mem(c, t), t.offset + tile_len(t));
                acc[m].iter().any(|a| a.step > i && a.step < j && a.start < e && t.offset < a.end)
            };
            if touched(t1) || touched(t2) {
                return None;
            }
            let m1 = tile_mem(c, t1);
            let idx = acc[m1].iter().position(|a| a.step == j && !a.write)?;
            if read_later(m1, idx) {
                return None;
            }
            Some((j, upc, act))
        };
        let mut fused: Vec<(usize, Step)> = Vec::new();
        let mut group_fuse: Vec<GroupFusion> = Vec::new();
        let mut member_steps: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
        for (i, s) in steps.iter().enumerate() {
            match *s {
                Step::Op { core, pc } => {
                    if let Some(op) = op_at(core, pc)
                        && op.op == "Conv"
                        && op.dtype == DType::F32
                        && op.attr("activation").is_none()
                        && op.outputs.len() == 1
                        && let Some((j, upc, _)) = fuse_target(i, core, op)
                    {
                        fused.push((j, Step::Fused { core, pc, unary_pc: upc }));
                        fused.push((i, Step::Fused { core, pc, unary_pc: upc }));
                    }
                }
                Step::Group { group } | Step::Scatter { group, .. } if keep[i] => member_steps[group as usize].push(i),
                _ => {}
            }
        }
        for (gi, g) in groups.iter().enumerate() {
            if g.act != Activation::None || g.elem() != 4 || member_steps[gi].len() != g.members.len() {
                continue;
            }
            let mut acts = Vec::new();
            for (&i, &(c, pc, _, _)) in member_steps[gi].iter().zip(&g.members) {
                match op_at(c, pc).and_then(|op| fuse_target(i, c, op)) {
                    Some(t) => acts.push(t),
                    None => break,
                }
            }
            if acts.len() == g.members.len() && acts.iter().all(|a| a.2 == acts[0].2) {
                let targets = acts.iter().zip(&g.members).map(|(a, m)| (m.0, a.1)).collect();
                group_fuse.push((gi, acts[0].2, targets, acts.iter().map(|a| a.0).collect()));
            }
        }
        // Apply: the follower steps go, convs write the followers' tiles.
        for pair in fused.chunks_exact(2) {
            keep[pair[0].0] = false;
            steps[pair[1].0] = pair[1].1;
        }
        for (gi, act, targets, drop) in group_fuse {
            groups[gi].act = act;
            groups[gi].targets = targets;
            for j in drop {
                keep[j] = false;
            }
        }
        // Loads read in place: a contiguous DMA from DDR into VTCM whose landed bytes only ops
        // read (whole tiles, before any overwrite), while nothing writes its source range until
        // the last of them, is not copied; those ops read the DDR bytes instead.
        let mut redirect = Redirects::default();
        for si in 0..steps.len() {
            if !keep[si] {
                continue;
            }
            let Step::Land { core, pc, .. } = steps[si] else { continue };
            let Some(d) = dma_at(core, pc) else { continue };
            let Space::Ddr(sb) = d.src else { continue };
            if d.multicast.is_some() || matches!(d.dst, Space::Ddr(_)) {
                continue;
            }
            let len = d.shape.total_bytes();
            if len == 0 || d.shape.run_bytes != len || d.shape.src_extent() != Some(len) || d.shape.dst_extent() != Some(len) {
                continue;
            }
            let Some(w) = land_writes.get(&si) else { continue };
            let [(m, idx)] = w[..] else { continue };
            let (ds, de) = (d.dst_offset, d.dst_offset + len);
            let mut remaining = Intervals::default();
            remaining.add(ds, de);
            // Validated reads: (step, start, end).
            let mut readers: Vec<(usize, u64, u64)> = Vec::new();
            let mut ok = true;
            for x in &acc[m][idx + 1..] {
                if x.step == si {
                    continue;
                }
                if !x.write {
                    if !keep[x.step] || !remaining.intersects(x.start, x.end) {
                        continue;
                    }
                    let op_reader = matches!(steps[x.step], Step::Op { .. } | Step::Fused { .. } | Step::Group { .. });
                    if !op_reader || !remaining.0.iter().any(|&(a, b)| a <= x.start && x.end <= b) {
                        ok = false;
                        break;
                    }
                    readers.push((x.step, x.start, x.end));
                } else if x.dense {
                    remaining.subtract(x.start, x.end);
                    if remaining.0.is_empty() {
                        break;
                    }
                } else if remaining.intersects(x.start, x.end) {
                    ok = false;
                    break;
                }
            }
            let Some(last) = readers.iter().map(|r| r.0).max() else { continue };
            let (ss, se) = (d.src_offset, d.src_offset + len);
            if !ok || acc[sb as usize].iter().any(|a| a.write && a.step > si && a.step <= last && a.start < se && ss < a.end) {
                continue;
            }
            for &(rs, start, end) in &readers {
                let (key, rcore) = match steps[rs] {
                    Step::Op { core, pc } | Step::Fused { core, pc, .. } => ((core, pc), core),
                    Step::Group { group } => (groups[group as usize].leader, groups[group as usize].leader.0),
                    _ => continue,
                };
                let Some(op) = op_at(key.0, key.1) else { continue };
                let e = redirect.inputs.entry(key).or_insert_with(|| op.inputs.iter().map(|t| (tile_mem(rcore, t), t.offset)).collect());
                for (i, t) in op.inputs.iter().enumerate() {
                    if tile_mem(rcore, t) == m && t.offset == start && t.offset + tile_len(t) == end {
                        e[i] = (sb as usize, ss + (start - ds));
                    }
                }
            }
            keep[si] = false;
        }
        let steps: Vec<Step> = steps.into_iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect();

        // Live-in bytes (read before written) of scratch buffers and VTCM.
        let mut live_in = vec![Vec::new(); nmem];
        let mut input_written = vec![false; nbuf];
        for (m, list) in acc.iter().enumerate() {
            if m < nbuf {
                match p.buffers[m].kind {
                    BufferKind::Input => {
                        input_written[m] = list.iter().any(|a| a.write);
                        continue;
                    }
                    BufferKind::Constants | BufferKind::Output => continue,
                    BufferKind::Scratch => {}
                }
            }
            let mut written = Intervals::default();
            let mut li = Intervals::default();
            for a in list {
                if a.write {
                    if a.dense {
                        written.add(a.start, a.end);
                    }
                } else {
                    for (s, e) in written.gaps(a.start, a.end) {
                        li.add(s, e);
                    }
                }
            }
            live_in[m] = li.0;
        }
        let (mut lands, mut land_bytes, mut ops) = (0usize, 0u64, 0usize);
        for s in &steps {
            match *s {
                Step::Land { core, pc, receivers } => {
                    lands += 1;
                    if let Some(d) = dma_at(core, pc) {
                        land_bytes += d.shape.total_bytes() * receivers.or(d.multicast).map_or(1, |m| m.count() as u64);
                    }
                }
                Step::Op { .. } => ops += 1,
                _ => {}
            }
        }
        let merged: usize = groups.iter().map(|g| g.members.len()).sum();
        tracing::debug!(actions = actions.len(), steps = steps.len(), lands, land_bytes, plain_ops = ops, conv_groups = groups.len(), merged_convs = merged, "simulator plan");
        let steps = forward_stores(p, nbuf, ncores, &groups, &mut redirect, steps);
        let (steps, levels) = level_order(p, nbuf, ncores, &groups, &redirect, steps);
        tracing::debug!(levels = levels.len() - 1, loads_read_in_place = redirect.inputs.len(), stores_written_in_place = redirect.outputs.len(), "simulator plan levels");
        // The preloaded VTCM region is filled once per workspace, not zeroed per run.
        let mut preload = vec![Vec::new(); ncores];
        if p.preload_bytes > 0 {
            let (lo, hi) = (p.vtcm_bytes, p.vtcm_bytes + p.preload_bytes);
            for c in 0..ncores {
                let m = nbuf + c;
                live_in[m] = live_in[m].iter().flat_map(|&(s, e)| [(s, e.min(lo)), (s.max(hi), e)]).filter(|(s, e)| s < e).collect();
            }
            for (c, core) in p.cores.iter().enumerate() {
                for d in &core.preload {
                    let Space::Ddr(b) = d.src else { continue };
                    let base = const_base.get(b as usize).copied().unwrap_or(0);
                    let run = d.shape.run_bytes as usize;
                    for_each_run_of(&d.shape, base + d.src_offset as usize, d.dst_offset as usize, &mut |so, dof| preload[c].push((so, dof, run)));
                }
                if preload[c].iter().any(|&(so, _, n)| so + n > constants.len()) {
                    return Err(SimError::Op { core: c, index: 0, op: "preload".into(), msg: "preload reads past the constants".into() });
                }
            }
        }
        Ok(Plan { stats, steps, groups, slot_sizes, live_in, input_written, levels, redirect, preload })
    }

    /// Replays one inference on `inputs`, reusing `ws`; returns the output buffers' bytes.
    pub(crate) fn run(&self, p: &Program, constants: &[u8], inputs: &[Vec<u8>], k: &Kernels, ws: &mut Workspace) -> Result<Vec<Vec<u8>>, SimError> {
        let nbuf = p.buffers.len();
        let ncores = p.cores.len();
        if ws.vtcm.len() != ncores {
            ws.vtcm = vec![vec![0u8; (p.vtcm_bytes + p.preload_bytes) as usize]; ncores];
            for (v, runs) in ws.vtcm.iter_mut().zip(&self.preload) {
                for &(so, dof, n) in runs {
                    v[dof..dof + n].copy_from_slice(&constants[so..so + n]);
                }
            }
        }
        if ws.ddr.len() != nbuf {
            ws.ddr = vec![Vec::new(); nbuf];
        }
        ws.slots.resize_with(self.slot_sizes.len(), Vec::new);
        for (s, &n) in ws.slots.iter_mut().zip(&self.slot_sizes) {
            s.resize(n, 0.0);
        }
        // Memory table: base pointer and length of every DDR buffer and VTCM.
        let mut mems: Vec<(*mut u8, usize)> = Vec::with_capacity(nbuf + ncores);
        let (mut next_in, mut const_off) = (0usize, 0usize);
        for (i, b) in p.buffers.iter().enumerate() {
            let size = b.size as usize;
            mems.push(match b.kind {
                BufferKind::Input => {
                    let v = &inputs[next_in];
                    next_in += 1;
                    if self.input_written[i] {
                        ws.ddr[i].clear();
                        ws.ddr[i].extend_from_slice(v);
                        (ws.ddr[i].as_mut_ptr(), size)
                    } else {
                        // Never written (checked at plan time): read in place.
                        (v.as_ptr().cast_mut(), size)
                    }
                }
                BufferKind::Constants => {
                    let s = &constants[const_off..const_off + size];
                    const_off += size;
                    // Validation refuses writes to constants: read in place.
                    (s.as_ptr().cast_mut(), size)
                }
                BufferKind::Output => {
                    ws.ddr[i].clear();
                    ws.ddr[i].resize(size, 0);
                    (ws.ddr[i].as_mut_ptr(), size)
                }
                BufferKind::Scratch => {
                    ws.ddr[i].resize(size, 0);
                    (ws.ddr[i].as_mut_ptr(), size)
                }
            });
        }
        for v in ws.vtcm.iter_mut() {
            mems.push((v.as_mut_ptr(), v.len()));
        }
        for (m, ranges) in self.live_in.iter().enumerate() {
            for &(s, e) in ranges {
                // SAFETY: live-in ranges come from validated tiles and descriptors of this memory.
                let bytes = unsafe { mem_mut(&mems, m, s as usize, (e - s) as usize) }.map_err(|msg| SimError::Op { core: 0, index: 0, op: "zero".into(), msg })?;
                bytes.fill(0);
            }
        }
        let slots: Vec<(*mut f32, usize)> = ws.slots.iter_mut().map(|v| (v.as_mut_ptr(), v.len())).collect();
        let mem = Mems { mems, slots };
        let width = self.levels.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        if ws.bufs.len() < width.max(1) {
            ws.bufs.resize_with(width.max(1), Default::default);
        }
        let bufs = &ws.bufs;
        for w in self.levels.windows(2) {
            let level = &self.steps[w[0]..w[1]];
            if level.len() == 1 {
                let mut b = bufs[0].lock().unwrap_or_else(|e| e.into_inner());
                let (scratch, staging) = &mut *b;
                self.step(&level[0], p, &mem, nbuf, ncores, k, scratch, staging)?;
                continue;
            }
            // The steps of a level are independent (plan time): run them on the kernel threads.
            let failed: std::sync::Mutex<Option<(usize, SimError)>> = std::sync::Mutex::new(None);
            qaic_kernels::threads::parallel_for(level.len(), |i| {
                let mut b = bufs[i].lock().unwrap_or_else(|e| e.into_inner());
                let (scratch, staging) = &mut *b;
                if let Err(e) = self.step(&level[i], p, &mem, nbuf, ncores, k, scratch, staging) {
                    let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                    // Report the first failing step of the level, whatever the host order.
                    if f.as_ref().is_none_or(|(j, _)| i < *j) {
                        *f = Some((i, e));
                    }
                }
            });
            if let Some((_, e)) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
                return Err(e);
            }
        }
        Ok(p.buffers.iter().zip(&ws.ddr).filter(|(b, _)| b.kind == BufferKind::Output).map(|(_, d)| d.clone()).collect())
    }
}

impl Plan {
    /// Runs one step on the memory table.
    #[allow(clippy::too_many_arguments)]
    fn step(&self, s: &Step, p: &Program, mem: &Mems, nbuf: usize, ncores: usize, k: &Kernels, scratch: &mut Vec<f32>, staging: &mut Vec<u8>) -> Result<(), SimError> {
        let mems = &mem.mems[..];
        match *s {
            Step::Land { core, pc, receivers } => {
                let Instr::Dma(d) = &p.cores[core as usize].instrs[pc as usize] else { return Ok(()) };
                land(mems, nbuf, ncores, d, core as usize, receivers, staging);
            }
            Step::Op { core, pc } => {
                let Instr::Op(op) = &p.cores[core as usize].instrs[pc as usize] else { return Ok(()) };
                let err = |msg: String| SimError::Op { core: core as usize, index: pc as usize, op: op.op.clone(), msg };
                let Some(o) = op.outputs.first() else { return Err(err("op without outputs".into())) };
                let redir = self.redirect.inputs.get(&(core, pc)).map(Vec::as_slice);
                let out = self.redirect.outputs.get(&(core, pc)).copied();
                run_op_step(mems, nbuf, core, op, o, redir, out, None, k, scratch, staging).map_err(err)?;
            }
            Step::Fused { core, pc, unary_pc } => {
                let instrs = &p.cores[core as usize].instrs;
                let (Instr::Op(op), Instr::Op(u)) = (&instrs[pc as usize], &instrs[unary_pc as usize]) else { return Ok(()) };
                let err = |msg: String| SimError::Op { core: core as usize, index: pc as usize, op: op.op.clone(), msg };
                let act = exec::activation_of(u);
                let redir = self.redirect.inputs.get(&(core, pc)).map(Vec::as_slice);
                let out = self.redirect.outputs.get(&(core, unary_pc)).copied();
                run_op_step(mems, nbuf, core, op, &u.outputs[0], redir, out, act, k, scratch, staging).map_err(err)?;
            }
            Step::Group { group } => {
                let g = &self.groups[group as usize];
                let (c, pc) = g.leader;
                let Instr::Op(op) = &p.cores[c as usize].instrs[pc as usize] else { return Ok(()) };
                let err = |msg: String| SimError::Op { core: c as usize, index: pc as usize, op: op.op.clone(), msg };
                let x = &op.inputs[0];
                let (tc, tpc) = g.targets[0];
                let Instr::Op(target) = &p.cores[tc as usize].instrs[tpc as usize] else { return Ok(()) };
                let o = &target.outputs[0];
                let (xm, xo) = self.redirect.inputs.get(&(c, pc)).map_or((mem_of(nbuf, c, x.space), x.offset), |r| r[0]);
                let (om, oo) = self.redirect.outputs.get(&(tc, tpc)).copied().unwrap_or((mem_of(nbuf, c, o.space), o.offset));
                // SAFETY: validated ranges; the output slice is only taken when it does not
                // overlap the input tile; no step of the same level touches them (plan time).
                let xb = unsafe { mem_ref(mems, xm, xo as usize, tile_len(x) as usize) }.map_err(err)?;
                let overlap = xm == om && xo < oo + tile_len(o) && oo < xo + tile_len(x);
                let n: usize = g.out_shape.iter().product();
                let xf = match g.kernel {
                    GroupKernel::F32 { .. } => Some(exec::to_f32(DType::F32, xb).map_err(err)?),
                    GroupKernel::Q(_) => None,
                };
                // The merged convolution into `out` (elements of the group's type); false when
                // `out` is not aligned for them.
                let run = |out: &mut [u8]| -> Result<bool, SimError> {
                    match &g.kernel {
                        GroupKernel::Q(q) => q.run(xb, &g.x_shape, out).map(|_| true).map_err(|e| err(e.to_string())),
                        GroupKernel::F32 { weights, bias } => {
                            let Ok(of) = bytemuck::try_cast_slice_mut::<u8, f32>(out) else { return Ok(false) };
                            k.conv_packed(&g.params, xf.as_deref().unwrap_or_default(), &g.x_shape, weights, bias.as_deref(), g.act, of).map_err(|e| err(e.to_string()))?;
                            Ok(true)
                        }
                    }
                };
                if g.members.len() == 1 && !overlap {
                    let ob = unsafe { mem_mut(mems, om, oo as usize, tile_len(o) as usize) }.map_err(err)?;
                    if run(ob)? {
                        return Ok(());
                    }
                }
                // SAFETY: the group's result buffer is written by this step alone in its level.
                let slot = unsafe { mem.slot_mut(g.slot, n) }.map_err(err)?;
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(slot);
                run(&mut bytes[..n * g.elem()])?;
                drop(xf);
                scatter(mems, nbuf, p, g, 0, slot, &self.redirect).map_err(err)?;
            }
            Step::Scatter { group, member } => {
                let g = &self.groups[group as usize];
                let n: usize = g.out_shape.iter().product();
                let (c, pc, _, _) = g.members[member as usize];
                let e = |msg: String| SimError::Op { core: c as usize, index: pc as usize, op: "Conv".into(), msg };
                // SAFETY: read-only view; no step of the same level writes the result buffer.
                let slot = unsafe { mem.slot_mut(g.slot, n) }.map_err(e)?;
                scatter(mems, nbuf, p, g, member as usize, slot, &self.redirect).map_err(e)?;
            }
        }
        Ok(())
    }
}

/// The memory table of one replay: base pointer and length of every DDR buffer and VTCM, and
/// of the merged-result buffers. Shared by the steps of a level, which touch disjoint bytes.
struct Mems {
    mems: Vec<(*mut u8, usize)>,
    slots: Vec<(*mut f32, usize)>,
}

// SAFETY: the pointers are into the workspace and inputs/constants, which outlive the replay;
// concurrent steps access disjoint ranges (dependence levels computed at plan time).
unsafe impl Sync for Mems {}

impl Mems {
    /// # Safety
    /// No other live slice may overlap the first `n` elements of slot `i`.
    unsafe fn slot_mut<'a>(&self, i: usize, n: usize) -> Result<&'a mut [f32], String> {
        let &(ptr, len) = self.slots.get(i).ok_or("result buffer index out of range")?;
        if n > len {
            return Err(format!("result of {n} elements exceeds its buffer of {len}"));
        }
        // SAFETY: in bounds; aliasing is the caller's contract.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, n) })
    }
}

/// One memory access of a step: memory (DDR buffers, VTCMs, then merged-result buffers), byte
/// range (elements for result buffers), write, dense (a write of every byte of the range).
type StepAccess = (usize, u64, u64, bool, bool);

/// Where replayed ops read and write instead of the tiles written in the program.
#[derive(Default)]
struct Redirects {
    /// Ops (core, pc) some of whose inputs are read in place in DDR rather than from the VTCM
    /// copy a dropped load would have made: (memory, offset) of every input.
    inputs: HashMap<(u32, u32), Vec<(usize, u64)>>,
    /// Ops (core, pc) whose first output tile is written straight to the DDR range a dropped
    /// store would have copied it to: (memory, offset).
    outputs: HashMap<(u32, u32), (usize, u64)>,
}

/// The op whose first output tile a step writes, and the core whose VTCM that tile is in.
fn writer_key(groups: &[ConvGroup], s: &Step) -> Option<((u32, u32), u32)> {
    match *s {
        Step::Op { core, pc } => Some(((core, pc), core)),
        Step::Fused { core, unary_pc, .. } => Some(((core, unary_pc), core)),
        Step::Group { group } => Some((groups[group as usize].targets[0], groups[group as usize].leader.0)),
        Step::Scatter { group, member } => Some((groups[group as usize].targets[member as usize], groups[group as usize].members[member as usize].0)),
        Step::Land { .. } => None,
    }
}

/// The memory accesses of a step as the replay performs it (redirects applied).
fn step_accesses(p: &Program, nbuf: usize, ncores: usize, groups: &[ConvGroup], r: &Redirects, s: &Step) -> Vec<StepAccess> {
    let nmem = nbuf + ncores;
    let tile_acc = |core: u32, t: &Tile, write: bool| -> StepAccess { (mem_of(nbuf, core, t.space), t.offset, t.offset + tile_len(t), write, write) };
    let op_at = |core: u32, pc: u32| match p.cores.get(core as usize).and_then(|c| c.instrs.get(pc as usize)) {
        Some(Instr::Op(o)) => Some(o),
        _ => None,
    };
    // Input reads, in DDR where a load was dropped.
    let reads = |core: u32, pc: u32, op: &Op, v: &mut Vec<StepAccess>| match r.inputs.get(&(core, pc)) {
        Some(x) => v.extend(op.inputs.iter().zip(x).map(|(t, &(m, o))| (m, o, o + tile_len(t), false, false))),
        None => v.extend(op.inputs.iter().map(|t| tile_acc(core, t, false))),
    };
    let mut v = Vec::new();
    // The first output tile of the op `writer_key` names, in DDR where a store was dropped.
    let out = |v: &mut Vec<StepAccess>| {
        let Some(((oc, opc), core)) = writer_key(groups, s) else { return };
        let Some(t) = op_at(oc, opc).and_then(|o| o.outputs.first()) else { return };
        v.push(match r.outputs.get(&(oc, opc)) {
            Some(&(m, o)) => (m, o, o + tile_len(t), true, true),
            None => tile_acc(core, t, true),
        });
    };
    match *s {
        Step::Land { core, pc, receivers } => {
            if let Some(Instr::Dma(d)) = p.cores.get(core as usize).and_then(|c| c.instrs.get(pc as usize)) {
                let se = d.shape.src_extent().unwrap_or(0);
                v.push((mem_of(nbuf, core, d.src), d.src_offset, d.src_offset + se, false, false));
                let de = d.shape.dst_extent().unwrap_or(0);
                let dense = dense_dst(&d.shape);
                match (d.multicast, d.dst) {
                    (Some(m), _) => {
                        for c in receivers.unwrap_or(m).iter().filter(|&c| (c as usize) < ncores) {
                            v.push((nbuf + c as usize, d.dst_offset, d.dst_offset + de, true, dense));
                        }
                    }
                    (None, sp) => v.push((mem_of(nbuf, core, sp), d.dst_offset, d.dst_offset + de, true, dense)),
                }
            }
        }
        Step::Op { core, pc } | Step::Fused { core, pc, .. } => {
            if let Some(op) = op_at(core, pc) {
                reads(core, pc, op, &mut v);
                out(&mut v);
            }
        }
        Step::Group { group } => {
            let g = &groups[group as usize];
            let (lc, lpc) = g.leader;
            if let Some(op) = op_at(lc, lpc) {
                let mut x = Vec::new();
                reads(lc, lpc, op, &mut x);
                v.extend(x.into_iter().take(1));
            }
            out(&mut v);
            v.push((nmem + g.slot, 0, u64::MAX, true, true));
        }
        Step::Scatter { group, .. } => {
            out(&mut v);
            v.push((nmem + groups[group as usize].slot, 0, u64::MAX, false, false));
        }
    }
    v
}

/// Stores written in place: a contiguous DMA from VTCM to DDR whose source tile the step just
/// before it on that memory wrote whole (an op, fused op or merged-convolution slice), that
/// nothing reads afterwards before overwriting it, and whose DDR destination nothing touches
/// between the write and the store, is dropped: the op writes the DDR range itself.
fn forward_stores(p: &Program, nbuf: usize, ncores: usize, groups: &[ConvGroup], r: &mut Redirects, steps: Vec<Step>) -> Vec<Step> {
    let acc: Vec<Vec<StepAccess>> = steps.iter().map(|s| step_accesses(p, nbuf, ncores, groups, r, s)).collect();
    // Per memory: (step, start, end, write, dense), in step order.
    type MemAccess = (usize, u64, u64, bool, bool);
    let mut per_mem: HashMap<usize, Vec<MemAccess>> = HashMap::new();
    for (i, a) in acc.iter().enumerate() {
        for &(m, s, e, w, d) in a {
            per_mem.entry(m).or_default().push((i, s, e, w, d));
        }
    }
    let mut keep = vec![true; steps.len()];
    // Accepted moves per DDR memory: (writer step, store step, start, end).
    let mut moved: HashMap<usize, Vec<(usize, usize, u64, u64)>> = HashMap::new();
    for (j, st) in steps.iter().enumerate() {
        let Step::Land { core, pc, .. } = *st else { continue };
        let Some(Instr::Dma(d)) = p.cores.get(core as usize).and_then(|c| c.instrs.get(pc as usize)) else { continue };
        let Space::Ddr(b) = d.dst else { continue };
        let len = d.shape.total_bytes();
        if d.multicast.is_some() || len == 0 || d.shape.run_bytes != len || d.shape.src_extent() != Some(len) || d.shape.dst_extent() != Some(len) {
            continue;
        }
        let sm = mem_of(nbuf, core, d.src);
        if sm < nbuf {
            continue;
        }
        let (ss, se) = (d.src_offset, d.src_offset + len);
        let (ds, de) = (d.dst_offset, d.dst_offset + len);
        let Some(list) = per_mem.get(&sm) else { continue };
        let Some(pos) = list.iter().position(|a| a.0 == j) else { continue };
        // The last earlier access touching the source: the writer.
        let Some(&(i, ws, we, w, dense)) = list[..pos].iter().rev().find(|a| a.1 < se && ss < a.2) else { continue };
        if !w || !dense || ws != ss || we != se || !keep[i] {
            continue;
        }
        let Some((key, _)) = writer_key(groups, &steps[i]) else { continue };
        if r.outputs.contains_key(&key) {
            continue;
        }
        // The tile's bytes are not read after the store before being overwritten.
        let mut remaining = Intervals::default();
        remaining.add(ss, se);
        let mut read_later = false;
        for a in &list[pos + 1..] {
            if a.0 == j || !(a.1 < se && ss < a.2) {
                continue;
            }
            if !a.3 {
                if remaining.intersects(a.1, a.2) {
                    read_later = true;
                    break;
                }
            } else if a.4 {
                remaining.subtract(a.1, a.2);
                if remaining.0.is_empty() {
                    break;
                }
            }
        }
        if read_later {
            continue;
        }
        // Nothing touches the destination from the writer up to the store.
        let db = b as usize;
        let busy = per_mem.get(&db).is_some_and(|l| l.iter().any(|a| a.0 >= i && a.0 < j && a.1 < de && ds < a.2));
        let crossed = moved.get(&db).is_some_and(|l| l.iter().any(|&(mi, mj, s, e)| s < de && ds < e && mi <= j && i <= mj));
        if busy || crossed {
            continue;
        }
        r.outputs.insert(key, (db, ds));
        moved.entry(db).or_default().push((i, j, ds, de));
        keep[j] = false;
    }
    steps.into_iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| s).collect()
}

/// Orders `steps` by dependence level: a step's level is one more than the highest level of an
/// earlier step it conflicts with (both touch a common byte and one writes it). Running levels
/// in order, each level's steps in any order, gives the bytes of the sequential replay.
/// Returns the reordered steps and the level boundaries.
fn level_order(p: &Program, nbuf: usize, ncores: usize, groups: &[ConvGroup], r: &Redirects, steps: Vec<Step>) -> (Vec<Step>, Vec<usize>) {
    let accesses = |s: &Step| step_accesses(p, nbuf, ncores, groups, r, s);
    // Per memory: earlier accesses (range, write, level).
    let mut seen: HashMap<usize, Vec<(u64, u64, bool, usize)>> = HashMap::new();
    let mut level = vec![0usize; steps.len()];
    for (i, s) in steps.iter().enumerate() {
        let acc = accesses(s);
        let mut l = 0usize;
        for &(m, a, b, w, _) in &acc {
            if let Some(list) = seen.get(&m) {
                for &(x, y, w2, lv) in list {
                    if (w || w2) && x < b && a < y {
                        l = l.max(lv + 1);
                    }
                }
            }
        }
        level[i] = l;
        for (m, a, b, w, _) in acc {
            seen.entry(m).or_default().push((a, b, w, l));
        }
    }
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| level[i]);
    let mut bounds = vec![0usize];
    for j in 1..order.len() {
        if level[order[j]] != level[order[j - 1]] {
            bounds.push(j);
        }
    }
    bounds.push(order.len());
    if order.is_empty() {
        bounds = vec![0];
    }
    (order.iter().map(|&i| steps[i]).collect(), bounds)
}

fn mem_of(nbuf: usize, core: u32, s: Space) -> usize {
    match s {
        Space::Ddr(b) => b as usize,
        Space::Vtcm => nbuf + core as usize,
        Space::PeerVtcm(c) => nbuf + c as usize,
    }
}

/// # Safety
/// The caller must not hold a mutable slice overlapping the returned range.
unsafe fn mem_ref<'a>(mems: &[(*mut u8, usize)], m: usize, off: usize, len: usize) -> Result<&'a [u8], String> {
    let &(p, n) = mems.get(m).ok_or("memory index out of range")?;
    if off.checked_add(len).is_none_or(|e| e > n) {
        return Err(format!("range {off}+{len} exceeds memory of {n} bytes"));
    }
    // SAFETY: in bounds (checked above); aliasing is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p.add(off), len) })
}

/// # Safety
/// The caller must hold no other slice overlapping the returned range, and the memory must be
/// writable (not a borrowed input or the constants).
unsafe fn mem_mut<'a>(mems: &[(*mut u8, usize)], m: usize, off: usize, len: usize) -> Result<&'a mut [u8], String> {
    let &(p, n) = mems.get(m).ok_or("memory index out of range")?;
    if off.checked_add(len).is_none_or(|e| e > n) {
        return Err(format!("range {off}+{len} exceeds memory of {n} bytes"));
    }
    // SAFETY: in bounds (checked above); aliasing and writability are the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.add(off), len) })
}

/// Moves the bytes of a landed DMA issued by `core` (validated ranges). Source and destination
/// in different memories (or disjoint ranges of one) are copied run by run; overlapping ranges
/// of one memory through a staging buffer, like the hardware's read-then-write.
fn land(mems: &[(*mut u8, usize)], nbuf: usize, ncores: usize, d: &Dma, core: usize, receivers: Option<CoreMask>, staging: &mut Vec<u8>) {
    let run = d.shape.run_bytes as usize;
    let sm = mem_of(nbuf, core as u32, d.src);
    let (so, se) = (d.src_offset as usize, d.shape.src_extent().unwrap_or(0) as usize);
    let (doff, de) = (d.dst_offset as usize, d.shape.dst_extent().unwrap_or(0) as usize);
    let dsts: Vec<usize> = match (d.multicast, d.dst) {
        (Some(m), _) => receivers.unwrap_or(m).iter().filter(|&c| (c as usize) < ncores).map(|c| nbuf + c as usize).collect(),
        (None, s) => vec![mem_of(nbuf, core as u32, s)],
    };
    for dm in dsts {
        let overlap = dm == sm && so < doff + de && doff < so + se;
        // SAFETY: ranges are inside their memories (program validation; re-checked by
        // mem_ref/mem_mut); the source and destination slices are disjoint (overlap handled by
        // staging), and DMAs never write borrowed inputs or constants (plan and validation).
        unsafe {
            let Ok(src) = mem_ref(mems, sm, so, se) else { return };
            if overlap {
                staging.clear();
                for_each_run_of(&d.shape, 0, 0, &mut |s, _| staging.extend_from_slice(&src[s..s + run]));
                let Ok(dst) = mem_mut(mems, dm, doff, de) else { return };
                let mut i = 0;
                for_each_run_of(&d.shape, 0, 0, &mut |_, o| {
                    dst[o..o + run].copy_from_slice(&staging[i..i + run]);
                    i += run;
                });
            } else {
                let Ok(dst) = mem_mut(mems, dm, doff, de) else { return };
                if run == de && run == se && run >= PAR_COPY_BYTES {
                    par_copy(dst, src);
                } else {
                    for_each_run_of(&d.shape, 0, 0, &mut |s, o| dst[o..o + run].copy_from_slice(&src[s..s + run]));
                }
            }
        }
    }
}

/// Contiguous copies at least this long are split across the kernel threads.
const PAR_COPY_BYTES: usize = 256 << 10;

/// Copies `src` into `dst` (equal lengths) in chunks on the kernel threads.
fn par_copy(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let chunks = qaic_kernels::num_threads().min(n / (PAR_COPY_BYTES / 2)).max(1);
    if chunks == 1 {
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    let step = n.div_ceil(chunks);
    let (d, s) = (dst.as_mut_ptr() as usize, src.as_ptr() as usize);
    qaic_kernels::threads::parallel_for(chunks, |i| {
        let (a, b) = (i * step, ((i + 1) * step).min(n));
        // SAFETY: chunks are disjoint ranges inside both slices, which outlive the loop and do
        // not overlap each other (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping((s as *const u8).add(a), (d as *mut u8).add(a), b - a) };
    });
}

/// Runs one op as written: inputs read in place, the output written in place unless it
/// overlaps an input (then through `staging`).
#[allow(clippy::too_many_arguments)]
fn run_op_step(
    mems: &[(*mut u8, usize)],
    nbuf: usize,
    core: u32,
    op: &Op,
    o: &Tile,
    redirect: Option<&[(usize, u64)]>,
    out_at: Option<(usize, u64)>,
    act: Option<Activation>,
    k: &Kernels,
    scratch: &mut Vec<f32>,
    staging: &mut Vec<u8>,
) -> Result<(), String> {
    let (om, oo) = out_at.unwrap_or((mem_of(nbuf, core, o.space), o.offset));
    let (oo, ol) = (oo as usize, tile_len(o) as usize);
    let mut ins: Vec<&[u8]> = Vec::with_capacity(op.inputs.len());
    let mut overlap = false;
    for (i, t) in op.inputs.iter().enumerate() {
        let (m, s) = redirect.and_then(|r| r.get(i).copied()).unwrap_or((mem_of(nbuf, core, t.space), t.offset));
        let (s, l) = (s as usize, tile_len(t) as usize);
        overlap |= m == om && s < oo + ol && oo < s + l;
        // SAFETY: shared views of validated ranges; the output is written below either into a
        // disjoint range or through `staging`.
        ins.push(unsafe { mem_ref(mems, m, s, l) }?);
    }
    if overlap {
        staging.clear();
        staging.resize(ol, 0);
        exec::run_op(k, op, &ins, staging, scratch, act)?;
        // SAFETY: the input views are no longer used.
        drop(ins);
        let out = unsafe { mem_mut(mems, om, oo, ol) }?;
        out.copy_from_slice(staging);
        return Ok(());
    }
    // SAFETY: disjoint from every input view (checked above).
    let out = unsafe { mem_mut(mems, om, oo, ol) }?;
    exec::run_op(k, op, &ins, out, scratch, act)
}

/// Writes member `m`'s channel slice of a group's merged result into its output tile.
fn scatter(mems: &[(*mut u8, usize)], nbuf: usize, p: &Program, g: &ConvGroup, m: usize, merged: &[f32], r: &Redirects) -> Result<(), String> {
    let (c, _, ch0, ch) = g.members[m];
    let (tc, tpc) = g.targets[m];
    let Instr::Op(op) = &p.cores[tc as usize].instrs[tpc as usize] else { return Err("not an op".into()) };
    let o = &op.outputs[0];
    // SAFETY: validated range; nothing else is borrowed from memory during the copy.
    let (om, oo) = r.outputs.get(&(tc, tpc)).copied().unwrap_or((mem_of(nbuf, c, o.space), o.offset));
    let ob = unsafe { mem_mut(mems, om, oo as usize, tile_len(o) as usize) }?;
    let (n, mt) = (g.out_shape[0], g.out_shape[1]);
    let s: usize = g.out_shape[2..].iter().product();
    let (run, es) = (ch * s, g.elem());
    let merged: &[u8] = bytemuck::cast_slice(merged);
    for b in 0..n {
        let at = (b * mt + ch0) * s * es;
        ob.get_mut(b * run * es..(b + 1) * run * es).ok_or("member tile too small")?.copy_from_slice(merged.get(at..at + run * es).ok_or("merged result too small")?);
    }
    Ok(())
}

/// Packs a candidate group's concatenated weights; `None` when the shapes do not agree (the
/// members then run as plain ops and report their own errors).
fn make_group(k: &Kernels, p: &Program, leader: (u32, u32), members: &[CandMember]) -> Option<ConvGroup> {
    let Instr::Op(op) = &p.cores[leader.0 as usize].instrs[leader.1 as usize] else { return None };
    let x_shape = usizes(&op.inputs[0].shape);
    let w_rest = usizes(&op.inputs[1].shape[1..]);
    let spatial = x_shape.len() - 2;
    let params = exec::conv_params(op, spatial, &w_rest[1..]).ok()?;
    let ospatial = params.output_spatial(&x_shape[2..], false).ok()?;
    let quant = op.op == "QConvGlow";
    let mut w: Vec<u8> = Vec::new();
    let mut bias: Option<Vec<u8>> = if op.inputs.len() > 2 { Some(Vec::new()) } else { None };
    let mut extra: Vec<Vec<u8>> = vec![Vec::new(); if quant { 2 } else { 0 }];
    let mut out = Vec::new();
    let mut total = 0usize;
    for (c, pc, wb, bb, ex) in members {
        let Instr::Op(mo) = &p.cores[*c as usize].instrs[*pc as usize] else { return None };
        let ch = mo.inputs[1].shape[0] as usize;
        let o = &mo.outputs[0];
        if o.shape[1] as usize != ch || usizes(&o.shape[2..]) != ospatial || o.shape[0] as usize != x_shape[0] {
            return None;
        }
        // Grouped convolutions split by output channels would change the group count.
        if params.group != 1 || ex.len() != extra.len() {
            return None;
        }
        w.extend_from_slice(wb);
        match (&mut bias, bb) {
            (Some(b), Some(bb)) => b.extend_from_slice(bb),
            (None, None) => {}
            _ => return None,
        }
        for (e, x) in extra.iter_mut().zip(ex) {
            e.extend_from_slice(x);
        }
        out.push((*c, *pc, total, ch));
        total += ch;
    }
    let mut w_shape = vec![total];
    w_shape.extend_from_slice(&w_rest);
    let kernel = if quant {
        // Per-channel parameters concatenate like the weights; the zero points and every
        // attribute are the members' (equal: they are part of the group key).
        let b = bias.as_deref()?;
        GroupKernel::Q(Box::new(exec::qconv_kernel(op, &w, &w_shape, b, &extra[0], &extra[1]).ok()?))
    } else {
        let wf: Vec<f32> = bytemuck::pod_collect_to_vec::<u8, f32>(&w);
        let weights = k.pack_conv_weights(&wf, &w_shape, 1).ok()?;
        GroupKernel::F32 { weights, bias: bias.map(|b| bytemuck::pod_collect_to_vec::<u8, f32>(&b)) }
    };
    let mut out_shape = vec![x_shape[0], total];
    out_shape.extend_from_slice(&ospatial);
    let targets = out.iter().map(|m| (m.0, m.1)).collect();
    let act = if quant { Activation::None } else { exec::conv_activation(op) };
    Some(ConvGroup { leader, params, act, x_shape, kernel, out_shape, members: out, targets, slot: 0 })
}
