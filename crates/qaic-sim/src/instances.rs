//! Several instances of one program running at once on disjoint cores
//! (`-aic-num-of-instances`, qaic-runner `-a`): they share the card's DDR bandwidth (and its
//! NoC), so a DDR-bound program gains less than the core count from more instances.
//!
//! The model (docs/virtual-aic100.md, "Instances"): the program is replicated `k` times —
//! instance `j` on cores `j·n .. (j+1)·n`, semaphores `j·s .. (j+1)·s`, peer/multicast/barrier
//! masks shifted with its cores — and the event engine runs the combined program once, timing
//! only. Every DMA in flight, of any instance, takes its share of the sustained DDR bandwidth
//! exactly as the cores of one program do; the per-inference program time with `k` instances
//! running at once is the combined program's end time (the slowest instance). Timing never
//! depends on data, so this is computed once per `k` and loaded program.

use qaic_device::{CoreMask, DeviceModel, Instr, Program, Space};

use crate::{engine, SimError, SimStats};

/// `p` replicated `k` times side by side (a timing-only program: DDR buffers are shared, which
/// never changes timing).
pub fn replicate(p: &Program, k: u32) -> Program {
    let k = k.max(1);
    let n = p.cores.len();
    let s = p.num_semaphores;
    let mut q = p.clone();
    q.cores = Vec::with_capacity(n * k as usize);
    q.num_semaphores = s.saturating_mul(k as u16);
    for j in 0..k as usize {
        let (core0, sem0) = ((j * n) as u32, (j as u16).saturating_mul(s));
        let shift = |m: CoreMask| CoreMask(m.0.checked_shl(core0).unwrap_or(0));
        for c in &p.cores {
            let mut c = c.clone();
            for i in c.instrs.iter_mut() {
                match i {
                    Instr::Dma(d) => {
                        for sp in [&mut d.src, &mut d.dst] {
                            if let Space::PeerVtcm(x) = sp {
                                *x = x.saturating_add(core0 as u16);
                            }
                        }
                        if let Some(m) = d.multicast.as_mut() {
                            *m = shift(*m);
                        }
                        if let Some(sg) = d.signal.as_mut() {
                            sg.sem = sg.sem.saturating_add(sem0);
                        }
                    }
                    Instr::SemSignal { sem, .. } | Instr::SemWait { sem, .. } => *sem = sem.saturating_add(sem0),
                    Instr::Barrier { cores } => *cores = shift(*cores),
                    _ => {}
                }
            }
            q.cores.push(c);
        }
    }
    q
}

/// Timing of `k` instances of `p` running at once (statistics of the combined program: its
/// cores are the instances' cores in order).
pub fn concurrent_stats(p: &Program, dev: &DeviceModel, k: u32) -> Result<SimStats, SimError> {
    engine::simulate(&replicate(p, k), dev, false, &mut |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use qaic_device::{Buffer, BufferKind, Dma, DmaShape, SemSignal, Variant};

    /// Two cores: core 0 multicasts 64 KiB from DDR to both and signals s0; core 1 waits on
    /// it; both meet at a barrier.
    fn two_core() -> Program {
        let mut p = Program::new("t", "2.0", 2, 1 << 20);
        p.num_semaphores = 1;
        p.buffers.push(Buffer { name: "c".into(), kind: BufferKind::Constants, size: 1 << 20, binding: None });
        let d = Dma { src: Space::Ddr(0), src_offset: 0, dst: Space::Vtcm, dst_offset: 0, shape: DmaShape::contiguous(1 << 16), multicast: Some(CoreMask(0b11)), tag: 0, signal: Some(SemSignal { sem: 0, add: 1 }) };
        let big = Dma { shape: DmaShape::contiguous(1 << 20), multicast: None, signal: None, ..d.clone() };
        p.cores[0].instrs = vec![Instr::Dma(d), Instr::Dma(big.clone()), Instr::DmaWait { tag: 0 }, Instr::Barrier { cores: CoreMask(0b11) }, Instr::End];
        p.cores[1].instrs = vec![Instr::SemWait { sem: 0, at_least: 1 }, Instr::Dma(big), Instr::DmaWait { tag: 0 }, Instr::Barrier { cores: CoreMask(0b11) }, Instr::End];
        p
    }

    #[test]
    fn replicas_get_their_own_cores_semaphores_and_masks() {
        let q = replicate(&two_core(), 3);
        assert_eq!((q.cores.len(), q.num_semaphores), (6, 3));
        match &q.cores[4].instrs[0] {
            Instr::Dma(d) => assert_eq!((d.multicast, d.signal.map(|s| s.sem)), (Some(CoreMask(0b11_0000)), Some(2))),
            i => panic!("{i:?}"),
        }
        assert_eq!(q.cores[3].instrs[0], Instr::SemWait { sem: 1, at_least: 1 });
        assert_eq!(q.cores[5].instrs[3], Instr::Barrier { cores: CoreMask(0b11_0000) });
        q.validate().unwrap();
    }

    #[test]
    fn concurrent_instances_share_ddr() {
        let dev = DeviceModel::aic100(Variant::Pro16);
        let p = two_core();
        let one = concurrent_stats(&p, &dev, 1).unwrap().total_ps;
        let four = concurrent_stats(&p, &dev, 4).unwrap().total_ps;
        assert_eq!(one, engine::simulate(&p, &dev, false, &mut |_| Ok(())).unwrap().total_ps);
        assert!(four > one * 2, "{one} vs {four}");
    }
}
