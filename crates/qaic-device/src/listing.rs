//! Human-readable listing of a program (for `qaic-qpc` and `qaic-exec -dump-program`).
//!
//! One line per instruction, prefixed `core N: [i]`, e.g.
//! `core 3: [12] dma.ddr->vtcm constants:constants+0x1000 -> vtcm+0x0 len=4096 mcast=0xffff tag=0`.

use std::fmt::Write as _;

use crate::isa::*;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn kind(s: Space) -> &'static str {
    match s {
        Space::Ddr(_) => "ddr",
        Space::Vtcm | Space::PeerVtcm(_) => "vtcm",
    }
}

fn tile(p: &Program, t: &Tile) -> String {
    let dims: Vec<String> = t.shape.iter().map(u64::to_string).collect();
    format!("{}+{} {}[{}]", space_name(p, t.space), hex(t.offset), t.dtype, dims.join(","))
}

fn attr(v: &AttrValue) -> String {
    let list = |v: Vec<String>| format!("[{}]", v.join(","));
    match v {
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => format!("{f:?}"),
        AttrValue::Ints(v) => list(v.iter().map(i64::to_string).collect()),
        AttrValue::Floats(v) => list(v.iter().map(|f| format!("{f:?}")).collect()),
        AttrValue::Str(s) => format!("{s:?}"),
    }
}

impl Program {
    /// Text of one instruction of this program (buffer names resolved).
    pub fn instr_text(&self, ins: &Instr) -> String {
        match ins {
            Instr::Dma(d) => {
                let dst_kind = if d.multicast.is_some() { "vtcm*" } else { kind(d.dst) };
                let mut s = format!(
                    "dma.{}->{} {}+{} -> {}+{} len={}",
                    kind(d.src),
                    dst_kind,
                    space_name(self, d.src),
                    hex(d.src_offset),
                    space_name(self, d.dst),
                    hex(d.dst_offset),
                    d.shape.total_bytes()
                );
                if !d.shape.dims.is_empty() {
                    let _ = write!(s, " run={}", d.shape.run_bytes);
                    for dim in &d.shape.dims {
                        let _ = write!(s, " x{}(src+{},dst+{})", dim.count, dim.src_stride, dim.dst_stride);
                    }
                }
                if let Some(m) = d.multicast {
                    let _ = write!(s, " mcast={}", hex(m.0));
                }
                let _ = write!(s, " tag={}", d.tag);
                if let Some(sig) = d.signal {
                    let _ = write!(s, " signal=s{}+{}", sig.sem, sig.add);
                }
                s
            }
            Instr::DmaWait { tag } => format!("dma.wait tag={tag}"),
            Instr::Op(op) => {
                let ins: Vec<String> = op.inputs.iter().map(|t| tile(self, t)).collect();
                let outs: Vec<String> = op.outputs.iter().map(|t| tile(self, t)).collect();
                let mut s = format!("op {} {} ({}) -> ({})", op.op, op.dtype, ins.join(", "), outs.join(", "));
                for (n, v) in &op.attrs {
                    let _ = write!(s, " {n}={}", attr(v));
                }
                s
            }
            Instr::SemSignal { sem, add } => format!("sem.signal s{sem} +{add}"),
            Instr::SemWait { sem, at_least } => format!("sem.wait s{sem} >= {at_least}"),
            Instr::Barrier { cores } => format!("barrier cores={}", hex(cores.0)),
            Instr::Layer { name } => format!("layer {name:?}"),
            Instr::End => "end".into(),
        }
    }

    /// The whole program as text: a summary, the buffer table, then every core's instructions.
    pub fn listing(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "program {:?} for hardware {}: {} cores, vtcm {} B/core, {} semaphores",
            self.name,
            self.device_version,
            self.cores.len(),
            self.vtcm_bytes,
            self.num_semaphores
        );
        if self.preload_bytes > 0 {
            let _ = writeln!(s, "preloaded vtcm: {} B/core at vtcm+{:#x} (loaded once, read-only)", self.preload_bytes, self.vtcm_bytes);
        }
        let _ = writeln!(s, "buffers:");
        for (i, b) in self.buffers.iter().enumerate() {
            let _ = write!(s, "  #{i} {} {:?} {} B", b.kind.name(), b.name, b.size);
            if let Some(k) = b.binding {
                let _ = write!(s, " binding={k}");
            }
            s.push('\n');
        }
        for (c, core) in self.cores.iter().enumerate() {
            for (i, d) in core.preload.iter().enumerate() {
                let _ = writeln!(s, "core {c}: preload [{i}] {}", self.instr_text(&Instr::Dma(d.clone())));
            }
            let _ = writeln!(s, "core {c}: {} instructions", core.instrs.len());
            for (i, ins) in core.instrs.iter().enumerate() {
                let _ = writeln!(s, "core {c}: [{i}] {}", self.instr_text(ins));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use crate::isa::tests_support::sample;

    #[test]
    fn listing_shows_every_core_and_instruction() {
        let l = sample().listing();
        println!("{l}");
        let expected = [
            "program \"tiny\" for hardware 2.0: 2 cores, vtcm 1048576 B/core, 2 semaphores",
            "  #2 constants \"constants\" 8192 B",
            "core 0: [1] dma.ddr->vtcm* constants:constants+0x0 -> vtcm+0x2000 len=576 mcast=0x3 tag=0 signal=s0+1",
            "core 0: [2] dma.ddr->vtcm input:x+0x0 -> vtcm+0x0 len=512 run=16 x32(src+16,dst+16) tag=1",
            "core 0: [5] op Conv f16 (vtcm+0x0 f16[1,4,8,8], vtcm+0x2000 f16[8,4,3,3]) -> (vtcm+0x4000 f16[1,8,8,8]) group=1 pads=[1,1,1,1] strides=[1,1]",
            "core 0: [6] dma.vtcm->vtcm vtcm+0x4000 -> vtcm@1+0x0 len=1024 tag=2 signal=s1+1",
            "core 1: [0] sem.wait s1 >= 1",
            "core 1: [5] barrier cores=0x3",
            "core 1: [6] end",
        ];
        for e in expected {
            assert!(l.lines().any(|line| line == e), "missing line {e:?} in\n{l}");
        }
        assert_eq!(l.lines().filter(|x| x.starts_with("core 0: [")).count(), 10);
    }
}
