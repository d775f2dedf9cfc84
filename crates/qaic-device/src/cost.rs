//! Cost of one compute instruction on one core, from its op class, operand shapes and the
//! device model. Shared by codegen (to balance work across cores) and the simulator (to
//! advance the clock), so both agree. Never panics on inconsistent shapes: it falls back to
//! counting elements on the vector unit.

use qaic_tensor::DType;

use crate::device::{DeviceModel, DmaPath, Unit, VectorKind};
use crate::isa::{AttrValue, Dma, Instr, Op, OpClass, Program, Space, Tile, op_class};

/// Static (uncontended, no-overlap) totals of one core's program: what codegen balances and
/// what `-dump-program` prints next to the listing. The simulator gives the real timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CoreCost {
    /// Instructions, including `End`.
    pub instructions: u64,
    /// `Layer` markers.
    pub layers: u64,
    /// Tensor-unit busy cycles.
    pub matrix_cycles: u64,
    /// Vector-unit busy cycles.
    pub vector_cycles: u64,
    /// MACs performed.
    pub macs: u64,
    /// Sum of uncontended DMA times, ps.
    pub dma_ps: u64,
    /// DDR bytes read / written by DMAs and DDR-resident operands.
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    /// Compute-NoC bytes (peer copies, multicasts).
    pub noc_bytes: u64,
    /// Highest VTCM byte offset (exclusive) any instruction of this core touches, including
    /// data other cores' DMAs deliver here.
    pub vtcm_high_water: u64,
    /// Serial estimate, ps: issue + matrix + vector + DMA + layer overheads, no overlap.
    pub serial_ps: u64,
}

/// Uncontended cost and traffic of one DMA instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaCost {
    /// Path the transfer takes (multicasts from DDR are `DdrToVtcm`).
    pub path: DmaPath,
    /// Payload bytes delivered to each destination.
    pub bytes: u64,
    /// DDR bytes read, each contiguous run rounded up to whole bursts (once for a multicast).
    pub ddr_read_bytes: u64,
    /// DDR bytes written, burst-rounded.
    pub ddr_write_bytes: u64,
    /// Bytes crossing the compute NoC (VTCM → peer VTCM, and multicasts: once, not per receiver).
    pub noc_bytes: u64,
    /// Number of destination cores (1 unless multicast).
    pub receivers: u32,
    /// Uncontended time from issue to completion, ps ([`DeviceModel::dma_ps`] or
    /// [`DeviceModel::multicast_ps`] on the burst-rounded byte count).
    pub ps: u64,
}

/// Predicted cost of one op on one core (excluding the per-instruction issue overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpCost {
    /// Unit that executes the op.
    pub unit: Unit,
    /// Busy cycles of that unit.
    pub cycles: u64,
    /// Multiply-accumulates performed (0 for non-matrix ops) — the `HmxMacs` PMU recipe.
    pub macs: u64,
    /// Bytes of operands that live in DDR rather than VTCM (the simulator charges them DDR
    /// bandwidth on top of `cycles`).
    pub ddr_bytes: u64,
}

fn dims(t: Option<&Tile>) -> Option<&[u64]> {
    t.map(|t| t.shape.as_slice())
}

fn prod(s: &[u64]) -> u64 {
    s.iter().fold(1u64, |a, d| a.saturating_mul(*d))
}

/// (batch or groups, M, N, K) of a matrix-class op, when the shapes allow it.
fn matrix_dims(op: &Op) -> Option<(u64, u64, u64, u64)> {
    let out = dims(op.outputs.first())?;
    match op_class(&op.op) {
        OpClass::Conv => {
            let w_idx = if op.op == "QLinearConv" { 3 } else { 1 };
            let w = dims(op.inputs.get(w_idx))?;
            if out.len() < 2 || w.len() < 2 || out.len() != w.len() {
                return None;
            }
            let g = op.attr_int("group", 1).max(1) as u64;
            let kernel = prod(&w[2..]);
            if op.op == "ConvTranspose" {
                // weight [Cin, Cout/g, k...]; per group [N·in_spatial × Cin/g] · [Cin/g × Cout/g·k]
                let x = dims(op.inputs.first())?;
                if x.len() < 2 {
                    return None;
                }
                let m = x[0].saturating_mul(prod(&x[2..]));
                Some((g, m, w[1].saturating_mul(kernel), x[1] / g))
            } else {
                // weight [Cout, Cin/g, k...]; per group [N·out_spatial × Cin/g·k] · [.. × Cout/g]
                let m = out[0].saturating_mul(prod(&out[2..]));
                Some((g, m, out[1] / g, w[1].saturating_mul(kernel)))
            }
        }
        OpClass::MatMul => {
            let a = dims(op.inputs.first())?;
            if out.is_empty() || a.is_empty() {
                return None;
            }
            let n = *out.last()?;
            let m = if out.len() >= 2 { out[out.len() - 2] } else { 1 };
            let k = if op.op == "Gemm" && a.len() == 2 {
                if op.attr_int("transA", 0) != 0 { a[0] } else { a[1] }
            } else {
                *a.last()?
            };
            let batch = if out.len() > 2 { prod(&out[..out.len() - 2]) } else { 1 };
            Some((batch, m, n, k))
        }
        _ => None,
    }
}

impl DeviceModel {
    /// Cycles of `batch` independent `[M×K]·[K×N]` products issued as one tensor-unit op:
    /// one startup, then the tile steps of all of them (see [`DeviceModel::matrix_cycles`]).
    pub fn matrix_cycles_batched(&self, batch: u64, m: u64, n: u64, k: u64, dtype: DType) -> u64 {
        if batch == 0 {
            return 0;
        }
        let one = self.matrix_cycles(m, n, k, dtype);
        let body = one.saturating_sub(self.hmx_startup_cycles as u64);
        (self.hmx_startup_cycles as u64).saturating_add(body.saturating_mul(batch))
    }

    /// Uncontended cost and traffic of a DMA instruction; the simulator adds contention for the
    /// shared DDR and NoC bandwidth using the same parameters.
    pub fn dma_cost(&self, d: &Dma) -> DmaCost {
        let src_ddr = matches!(d.src, Space::Ddr(_));
        let dst_ddr = matches!(d.dst, Space::Ddr(_));
        let path = match (src_ddr, dst_ddr) {
            (true, true) => DmaPath::DdrToDdr,
            (true, false) => DmaPath::DdrToVtcm,
            (false, true) => DmaPath::VtcmToDdr,
            (false, false) => DmaPath::VtcmToVtcm,
        };
        let bytes = d.shape.total_bytes();
        let rounded = self.ddr_bytes(d.shape.run_bytes, d.shape.runs());
        let ddr_read_bytes = if src_ddr { rounded } else { 0 };
        let ddr_write_bytes = if dst_ddr { rounded } else { 0 };
        let receivers = d.multicast.map_or(1, |m| m.count());
        let moved = if src_ddr || dst_ddr { rounded } else { bytes };
        let (noc_bytes, ps) = if d.multicast.is_some() {
            (bytes, self.multicast_ps(moved, receivers))
        } else if matches!(d.dst, Space::PeerVtcm(_)) || matches!(d.src, Space::PeerVtcm(_)) {
            (bytes, self.dma_ps(moved, path))
        } else {
            (0, self.dma_ps(moved, path))
        };
        DmaCost { path, bytes, ddr_read_bytes, ddr_write_bytes, noc_bytes, receivers, ps }
    }

    /// Static per-core totals of a program (see [`CoreCost`]). Never panics, whatever the program.
    pub fn core_costs(&self, p: &Program) -> Vec<CoreCost> {
        let mut out = vec![CoreCost::default(); p.cores.len()];
        let mut vtcm = vec![0u64; p.cores.len()];
        let mut touch = |core: usize, off: u64, ext: Option<u64>| {
            if let Some(v) = vtcm.get_mut(core) {
                *v = (*v).max(off.saturating_add(ext.unwrap_or(u64::MAX)));
            }
        };
        for (c, core) in p.cores.iter().enumerate() {
            let cc = &mut out[c];
            for ins in &core.instrs {
                cc.instructions += 1;
                cc.serial_ps = cc.serial_ps.saturating_add(self.issue_ps());
                match ins {
                    Instr::Dma(d) => {
                        let k = self.dma_cost(d);
                        cc.dma_ps = cc.dma_ps.saturating_add(k.ps);
                        cc.serial_ps = cc.serial_ps.saturating_add(k.ps);
                        cc.ddr_read_bytes = cc.ddr_read_bytes.saturating_add(k.ddr_read_bytes);
                        cc.ddr_write_bytes = cc.ddr_write_bytes.saturating_add(k.ddr_write_bytes);
                        cc.noc_bytes = cc.noc_bytes.saturating_add(k.noc_bytes);
                        if d.src == Space::Vtcm {
                            touch(c, d.src_offset, d.shape.src_extent());
                        }
                        match (d.dst, d.multicast) {
                            (Space::Vtcm, Some(m)) => {
                                for r in m.iter() {
                                    touch(r as usize, d.dst_offset, d.shape.dst_extent());
                                }
                            }
                            (Space::Vtcm, None) => touch(c, d.dst_offset, d.shape.dst_extent()),
                            (Space::PeerVtcm(r), _) => touch(r as usize, d.dst_offset, d.shape.dst_extent()),
                            _ => {}
                        }
                    }
                    Instr::Op(op) => {
                        let k = self.op_cost(op);
                        match k.unit {
                            Unit::Matrix => cc.matrix_cycles = cc.matrix_cycles.saturating_add(k.cycles),
                            _ => cc.vector_cycles = cc.vector_cycles.saturating_add(k.cycles),
                        }
                        cc.macs = cc.macs.saturating_add(k.macs);
                        cc.serial_ps = cc.serial_ps.saturating_add(self.cycles_to_ps(k.cycles));
                        for t in &op.inputs {
                            if matches!(t.space, Space::Ddr(_)) {
                                cc.ddr_read_bytes = cc.ddr_read_bytes.saturating_add(t.bytes().unwrap_or(u64::MAX));
                            } else {
                                touch(c, t.offset, t.bytes());
                            }
                        }
                        for t in &op.outputs {
                            if matches!(t.space, Space::Ddr(_)) {
                                cc.ddr_write_bytes = cc.ddr_write_bytes.saturating_add(t.bytes().unwrap_or(u64::MAX));
                            } else {
                                touch(c, t.offset, t.bytes());
                            }
                        }
                    }
                    Instr::Layer { .. } => {
                        cc.layers += 1;
                        cc.serial_ps = cc.serial_ps.saturating_add(self.layer_overhead_ps);
                    }
                    Instr::SemWait { .. } | Instr::Barrier { .. } => {
                        cc.serial_ps = cc.serial_ps.saturating_add(self.sync_latency_ps);
                    }
                    _ => {}
                }
            }
        }
        for (cc, v) in out.iter_mut().zip(vtcm) {
            cc.vtcm_high_water = v;
        }
        out
    }

    /// Predicted cost of a compute instruction on one core.
    ///
    /// * Conv/MatMul class: MACs from the output and weight/operand shapes; the cheaper of the
    ///   tensor unit ([`DeviceModel::matrix_cycles_batched`], groups as batch) and the vector
    ///   unit's MAC lanes (depthwise convolutions, GEMV in fp32) is taken.
    /// * Vector / Transcendental class: `vector_cycles` over the largest operand's elements
    ///   (pooling: output elements × kernel size).
    /// * Move class: bytes of the largest operand ÷ one HVX vector (128 B) per cycle.
    pub fn op_cost(&self, op: &Op) -> OpCost {
        let ddr_bytes = op
            .inputs
            .iter()
            .chain(&op.outputs)
            .filter(|t| matches!(t.space, Space::Ddr(_)))
            .map(|t| t.bytes().unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add);
        let largest = op.inputs.iter().chain(&op.outputs).map(Tile::elements).max().unwrap_or(0);
        let class = op_class(&op.op);
        if let (OpClass::Conv | OpClass::MatMul, Some((batch, m, n, k))) = (class, matrix_dims(op)) {
            let in_dtype = op.inputs.first().map_or(op.dtype, |t| t.dtype);
            let dt = if in_dtype.is_int() && in_dtype.bits() <= 8 { in_dtype } else { op.dtype };
            let macs = batch.saturating_mul(m).saturating_mul(n).saturating_mul(k);
            let hmx = self.matrix_cycles_batched(batch, m, n, k, dt);
            let lanes = match dt.bits() {
                0..=8 => self.hvx_int8_macs_per_cycle,
                9..=16 => self.hvx_fp16_macs_per_cycle,
                _ => self.hvx_fp32_macs_per_cycle,
            }
            .max(1) as u64;
            let hvx = (self.hvx_startup_cycles as u64).saturating_add(macs.div_ceil(lanes));
            let (unit, cycles) = if macs == 0 { (Unit::Matrix, 0) } else if hmx <= hvx { (Unit::Matrix, hmx) } else { (Unit::Vector, hvx) };
            return OpCost { unit, cycles, macs, ddr_bytes };
        }
        let cycles = match class {
            OpClass::Move => {
                let bytes = op.inputs.iter().chain(&op.outputs).map(|t| t.bytes().unwrap_or(u64::MAX)).max().unwrap_or(0);
                if bytes == 0 { 0 } else { (self.hvx_startup_cycles as u64).saturating_add(bytes.div_ceil(self.hvx_vector_bytes.max(1) as u64)) }
            }
            OpClass::Transcendental => self.vector_cycles(VectorKind::Transcendental, largest, op.dtype),
            _ => {
                let mut n = largest;
                if let Some(AttrValue::Ints(k)) = op.attr("kernel_shape")
                    && op.op.ends_with("Pool")
                    && !op.op.starts_with("Global")
                {
                    let window = k.iter().fold(1u64, |a, d| a.saturating_mul((*d).max(1) as u64));
                    let out = op.outputs.first().map_or(0, Tile::elements);
                    n = n.max(out.saturating_mul(window));
                }
                self.vector_cycles(VectorKind::Simple, n, op.dtype)
            }
        };
        OpCost { unit: Unit::Vector, cycles, macs: 0, ddr_bytes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;

    fn conv(cin: u64, cout: u64, k: u64, hw: u64, group: i64, dt: DType) -> Op {
        Op::new(
            "Conv",
            dt,
            vec![Tile::vtcm(0, dt, vec![1, cin, hw, hw]), Tile::vtcm(0, dt, vec![cout, cin / group as u64, k, k])],
            vec![Tile::vtcm(0, dt, vec![1, cout, hw, hw])],
        )
        .with_attr("group", AttrValue::Int(group))
    }

    proptest::proptest! {
        #[test]
        fn op_cost_never_panics(
            which in 0usize..12,
            shapes in proptest::collection::vec(proptest::collection::vec(proptest::num::u64::ANY, 0..5), 0..5),
            group in proptest::num::i64::ANY,
            trans in proptest::num::i64::ANY,
            kernel in proptest::collection::vec(proptest::num::i64::ANY, 0..3),
        ) {
            let names = ["Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "MatMul", "Gemm", "QLinearMatMul", "MaxPool", "Softmax", "Transpose", "Add", "X"];
            let tiles: Vec<Tile> = shapes.into_iter().map(|s| Tile::vtcm(0, DType::I8, s)).collect();
            let (ins, outs) = tiles.split_at(tiles.len() / 2);
            let op = Op::new(names[which], DType::I8, outs.to_vec(), ins.to_vec())
                .with_attr("group", AttrValue::Int(group))
                .with_attr("transA", AttrValue::Int(trans))
                .with_attr("kernel_shape", AttrValue::Ints(kernel));
            let d = DeviceModel::aic100(Variant::Pro16);
            let _ = d.op_cost(&op);
        }

        #[test]
        fn core_costs_never_panic(p in crate::isa::tests_support::arb_program()) {
            let d = DeviceModel::aic100(Variant::Pro16);
            let c = d.core_costs(&p);
            proptest::prop_assert_eq!(c.len(), p.cores.len());
        }
    }

    #[test]
    fn core_costs_of_the_sample() {
        let d = DeviceModel::aic100(Variant::Pro16);
        let p = crate::isa::tests_support::sample();
        let c = d.core_costs(&p);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].instructions, c[0].layers), (10, 1));
        assert_eq!(c[0].macs, 64 * 8 * 4 * 9);
        assert_eq!(c[0].ddr_read_bytes, 576 + 32 * 64);
        assert_eq!(c[0].noc_bytes, 576 + 1024);
        // core 0 writes its conv output at 0x4000 (1 KiB); core 1 receives the multicast at 0x2000.
        assert_eq!(c[0].vtcm_high_water, 0x4000 + 1024);
        assert_eq!(c[1].vtcm_high_water, 0x2000 + 576);
        assert_eq!(c[1].ddr_write_bytes, 1024);
        assert!(c[0].serial_ps > d.layer_overhead_ps + 2 * d.sync_latency_ps);
    }

    #[test]
    fn dma_costs() {
        use crate::isa::{CoreMask, DmaShape};
        let d = DeviceModel::aic100(Variant::Pro16);
        let mut dma = Dma {
            src: Space::Ddr(0),
            src_offset: 0,
            dst: Space::Vtcm,
            dst_offset: 0,
            shape: DmaShape::rows(100, 10, 1000, 100),
            multicast: None,
            tag: 0,
            signal: None,
        };
        let c = d.dma_cost(&dma);
        assert_eq!((c.path, c.bytes, c.ddr_read_bytes, c.ddr_write_bytes, c.noc_bytes, c.receivers), (DmaPath::DdrToVtcm, 1000, 1280, 0, 0, 1));
        assert_eq!(c.ps, d.dma_ps(1280, DmaPath::DdrToVtcm));
        dma.multicast = Some(CoreMask(0xffff));
        let m = d.dma_cost(&dma);
        assert_eq!((m.receivers, m.noc_bytes, m.ddr_read_bytes), (16, 1000, 1280));
        assert_eq!(m.ps, d.multicast_ps(1280, 16));
        dma.multicast = None;
        dma.src = Space::Vtcm;
        dma.dst = Space::PeerVtcm(3);
        let p = d.dma_cost(&dma);
        assert_eq!((p.path, p.noc_bytes, p.ddr_read_bytes), (DmaPath::VtcmToVtcm, 1000, 0));
        dma.dst = Space::Ddr(1);
        let w = d.dma_cost(&dma);
        assert_eq!((w.path, w.ddr_write_bytes), (DmaPath::VtcmToDdr, 1280));
    }

    #[test]
    fn conv_cost_counts_macs() {
        let d = DeviceModel::aic100(Variant::Pro16);
        let c = d.op_cost(&conv(64, 64, 3, 56, 1, DType::I8));
        assert_eq!(c.macs, 56 * 56 * 64 * 64 * 9);
        assert_eq!(c.unit, Unit::Matrix);
        assert_eq!(c.cycles, d.matrix_cycles(56 * 56, 64, 576, DType::I8));
        // Depthwise: the vector unit's lanes beat a 1-column tensor op.
        let dw = d.op_cost(&conv(64, 64, 3, 56, 64, DType::I8));
        assert_eq!(dw.macs, 56 * 56 * 64 * 9);
        assert_eq!(dw.unit, Unit::Vector);
    }

    #[test]
    fn matmul_and_vector_costs() {
        let d = DeviceModel::aic100(Variant::Pro16);
        let mm = Op::new(
            "MatMul",
            DType::F16,
            vec![Tile::vtcm(0, DType::F16, vec![12, 128, 64]), Tile::vtcm(0, DType::F16, vec![12, 64, 128])],
            vec![Tile::vtcm(0, DType::F16, vec![12, 128, 128])],
        );
        let c = d.op_cost(&mm);
        assert_eq!(c.macs, 12 * 128 * 128 * 64);
        assert_eq!(c.cycles, d.matrix_cycles_batched(12, 128, 128, 64, DType::F16));
        let add = Op::new("Add", DType::F16, vec![Tile::vtcm(0, DType::F16, vec![1, 1024]), Tile::vtcm(0, DType::F16, vec![1024])], vec![Tile::vtcm(0, DType::F16, vec![1, 1024])]);
        assert_eq!(d.op_cost(&add).cycles, d.vector_cycles(VectorKind::Simple, 1024, DType::F16));
        let sm = Op::new("Softmax", DType::F16, vec![Tile::vtcm(0, DType::F16, vec![1, 1024])], vec![Tile::vtcm(0, DType::F16, vec![1, 1024])]);
        assert!(d.op_cost(&sm).cycles > d.op_cost(&add).cycles);
        let pool = Op::new("MaxPool", DType::I8, vec![Tile::vtcm(0, DType::I8, vec![1, 64, 112, 112])], vec![Tile::vtcm(0, DType::I8, vec![1, 64, 56, 56])])
            .with_attr("kernel_shape", AttrValue::Ints(vec![3, 3]));
        assert_eq!(d.op_cost(&pool).cycles, d.vector_cycles(VectorKind::Simple, 64 * 56 * 56 * 9, DType::I8));
        let tr = Op::new("Transpose", DType::F32, vec![Tile { space: Space::Ddr(0), offset: 0, dtype: DType::F32, shape: vec![64, 64] }], vec![Tile::vtcm(0, DType::F32, vec![64, 64])]);
        let c = d.op_cost(&tr);
        assert_eq!(c.ddr_bytes, 64 * 64 * 4);
        assert_eq!(c.cycles, 16 + 128);
        // Malformed shapes fall back to a vector estimate instead of panicking.
        let bad = Op::new("Conv", DType::F16, vec![], vec![Tile::vtcm(0, DType::F16, vec![u64::MAX, 3])]);
        assert_eq!(d.op_cost(&bad).unit, Unit::Vector);
    }
}
