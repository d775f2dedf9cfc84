//! What the device parameters imply for ResNet-50 (facts §9.2; docs/virtual-aic100.md
//! "Worked check"). An analytic schedule, not the simulator: it states the assumptions a
//! reasonable codegen would meet, and checks the parameter set lands in the published ranges.
//! Run `cargo test -p qaic-device calibration -- --nocapture` to print the figures.

use qaic_tensor::DType;

use crate::{DeviceModel, DmaPath, Variant, VectorKind};

/// One convolution / FC layer of ResNet-50 v1.5 (input 224 × 224).
#[derive(Debug, Clone, Copy)]
struct Conv {
    cin: u64,
    cout: u64,
    k: u64,
    out_hw: u64,
    /// A residual add + ReLU is fused after this conv (last conv of a bottleneck block).
    residual: bool,
}

impl Conv {
    fn macs(&self) -> u64 {
        self.out_hw * self.out_hw * self.cout * self.cin * self.k * self.k
    }
    fn weights(&self) -> u64 {
        self.cout * self.cin * self.k * self.k
    }
    fn out_elems(&self) -> u64 {
        self.out_hw * self.out_hw * self.cout
    }
}

/// The 53 convolutions and the final FC (as a 1 × 1 conv on a 1 × 1 map) of ResNet-50 v1.5.
fn resnet50() -> Vec<Conv> {
    let mut v = vec![Conv { cin: 3, cout: 64, k: 7, out_hw: 112, residual: false }];
    let mut hw = 56; // after the 3 × 3 / 2 max pool
    let mut cin = 64;
    for (blocks, mid, out, stride) in [(3, 64, 256, 1), (4, 128, 512, 2), (6, 256, 1024, 2), (3, 512, 2048, 2)] {
        for b in 0..blocks {
            let s = if b == 0 { stride } else { 1 };
            let out_hw = hw / s;
            v.push(Conv { cin, cout: mid, k: 1, out_hw: hw, residual: false });
            v.push(Conv { cin: mid, cout: mid, k: 3, out_hw, residual: false });
            if b == 0 {
                v.push(Conv { cin, cout: out, k: 1, out_hw, residual: false });
            }
            v.push(Conv { cin: mid, cout: out, k: 1, out_hw, residual: true });
            hw = out_hw;
            cin = out;
        }
    }
    v.push(Conv { cin: 2048, cout: 1000, k: 1, out_hw: 1, residual: false });
    v
}

/// Batch-1 latency on all cores of `d`, in ps, split into (device compute, device overhead,
/// device data movement, host).
///
/// Assumptions (a codegen meeting them is "reasonable"): weights resident in VTCM (loaded
/// once, not per inference; 25.6 MB < 16 × 8 MiB); every layer split across all cores along
/// output channels or output rows, whichever is faster; each core multicasts its output slice
/// to all cores (all slices share the NoC), then one semaphore sync; residual add + ReLU fused
/// into the producing conv on the vector unit; max pool and global average pool are layers of
/// their own; every layer pays the per-layer overhead, one DMA setup and one sync.
fn batch1_ps(d: &DeviceModel, dt: DType) -> (u64, u64, u64, u64) {
    let p = d.num_cores as u64;
    let elem = (dt.bits() / 8) as u64;
    let mut compute = 0u64;
    let mut overhead = 0u64;
    let mut data = 0u64;
    let mut layer = |compute_cycles: u64, out_bytes: u64, compute: &mut u64| {
        *compute += d.cycles_to_ps(compute_cycles + d.issue_cycles as u64);
        overhead += d.layer_overhead_ps + d.semaphore_latency_ps();
        // every core multicasts its slice; the slices together cross the NoC once
        let per_core = d.multicast_ps(out_bytes.div_ceil(p), p as u32);
        let shared = d.dma_setup_ps + DeviceModel::transfer_ps(out_bytes, d.noc_bytes_per_s);
        data += per_core.max(shared);
    };
    for c in resnet50() {
        let k = c.cin * c.k * c.k;
        let m = c.out_hw * c.out_hw;
        let by_channels = d.matrix_cycles(m, c.cout.div_ceil(p), k, dt);
        let by_rows = d.matrix_cycles(c.out_hw.div_ceil(p) * c.out_hw, c.cout, k, dt);
        let mut cycles = by_channels.min(by_rows);
        if c.residual {
            cycles += d.vector_cycles(VectorKind::Simple, 2 * c.out_elems().div_ceil(p), dt);
        }
        layer(cycles, c.out_elems() * elem, &mut compute);
        if c.cin == 3 {
            // 3 × 3 / 2 max pool after conv1
            let out: u64 = 56 * 56 * 64;
            layer(d.vector_cycles(VectorKind::Simple, 9 * out.div_ceil(p), dt), out * elem, &mut compute);
        }
    }
    // global average pool 7 × 7 × 2048 → 2048
    layer(d.vector_cycles(VectorKind::Simple, (7 * 7 * 2048u64).div_ceil(p), dt), 2048 * elem, &mut compute);
    // input into VTCM and logits out, on the device
    let input = 224 * 224 * 3 * elem;
    data += d.dma_ps(input, DmaPath::DdrToVtcm) + d.dma_ps(1000 * 4, DmaPath::VtcmToDdr);
    let host = d.host_submit_ps
        + DeviceModel::transfer_ps(input, d.host_pcie_bytes_per_s)
        + DeviceModel::transfer_ps(1000 * 4, d.host_pcie_bytes_per_s)
        + d.host_irq_ps;
    (compute, overhead, data, host)
}

/// Offline throughput (inferences/s) with `instances` instances of `cores_per_instance` cores,
/// batch `batch` each. Assumptions: weights do not stay resident (an instance holds
/// `cores_per_instance × 8 MiB` < 25.6 MB) and are streamed from DDR once per batch per
/// instance; activations stay in VTCM (depth-first tiling); compute and DMA overlap, so a
/// batch takes max(compute + overheads, DDR time at the sustained bandwidth shared by all
/// instances).
fn offline_inf_per_s(d: &DeviceModel, dt: DType, instances: u64, cores_per_instance: u64, batch: u64) -> (f64, f64, f64) {
    let p = cores_per_instance;
    let mut compute_ps = 0u64;
    let layers = resnet50();
    for c in &layers {
        let k = c.cin * c.k * c.k;
        let m = batch * c.out_hw * c.out_hw;
        let mut cycles = d.matrix_cycles(m, c.cout.div_ceil(p), k, dt);
        if c.residual {
            cycles += d.vector_cycles(VectorKind::Simple, 2 * batch * c.out_elems().div_ceil(p), dt);
        }
        compute_ps += d.cycles_to_ps(cycles + d.issue_cycles as u64);
    }
    let nlayers = layers.len() as u64 + 2;
    let sync = if p > 1 { d.semaphore_latency_ps() } else { 0 };
    let overhead_ps = nlayers * (d.layer_overhead_ps + d.dma_setup_ps + sync);
    let batch_ps = compute_ps + overhead_ps;
    let elem = (dt.bits() / 8) as u64;
    let weight_bytes: u64 = layers.iter().map(|c| c.weights()).sum::<u64>() * elem;
    let ddr_bytes_per_batch = weight_bytes + batch * 224 * 224 * 3 * elem;
    let ddr_ps = DeviceModel::transfer_ps(ddr_bytes_per_batch * instances, d.ddr_sustained_bytes_per_s());
    let period = batch_ps.max(ddr_ps) as f64 / 1e12;
    ((instances * batch) as f64 / period, batch_ps as f64 / 1e12, ddr_ps as f64 / 1e12)
}

#[test]
fn resnet50_is_4_1_gmac() {
    let macs: u64 = resnet50().iter().map(Conv::macs).sum();
    let weights: u64 = resnet50().iter().map(Conv::weights).sum();
    println!("ResNet-50 v1.5: {} convs + FC, {:.3} GMAC, {:.2} M weights", resnet50().len() - 1, macs as f64 / 1e9, weights as f64 / 1e6);
    assert_eq!(resnet50().len(), 54);
    assert!((4.0e9..4.2e9).contains(&(macs as f64)), "{macs}");
    assert!((23.0e6..26.0e6).contains(&(weights as f64)), "{weights}");
}

#[test]
fn resnet50_int8_batch1_latency_in_published_range() {
    let d = DeviceModel::aic100(Variant::Pro16);
    let (c, o, m, h) = batch1_ps(&d, DType::I8);
    let total = (c + o + m + h) as f64 / 1e6;
    println!(
        "int8 batch 1, 16 cores: compute {:.1} µs, overheads {:.1} µs, data {:.1} µs, host {:.1} µs, total {:.1} µs",
        c as f64 / 1e6, o as f64 / 1e6, m as f64 / 1e6, h as f64 / 1e6, total
    );
    // MLPerf single-stream p90 on Pro/Standard cards: 0.333–0.412 ms (facts §8.4).
    assert!((300.0..=400.0).contains(&total), "{total} µs");
}

#[test]
fn resnet50_int8_offline_within_25_percent() {
    let d = DeviceModel::aic100(Variant::Pro16);
    for batch in [8u64, 16] {
        let (ips, b, ddr) = offline_inf_per_s(&d, DType::I8, 16, 1, batch);
        println!("int8 offline, 16 × 1 core, batch {batch}: {ips:.0} inf/s (batch {:.2} ms compute+overhead, {:.2} ms DDR)", b * 1e3, ddr * 1e3);
        // published best Pro per-card figure 24.9k (facts §8.1); ±25 %.
        assert!((24_900.0 * 0.75..=24_900.0 * 1.25).contains(&ips), "{ips}");
    }
    let std = DeviceModel::aic100(Variant::Standard14);
    let (ips, _, _) = offline_inf_per_s(&std, DType::I8, 14, 1, 8);
    println!("int8 offline, Standard 14 × 1 core, batch 8: {ips:.0} inf/s (published 19.9k per card)");
    // Sensitivity to the proposed tensor-unit efficiency (docs: calibration).
    for eff in [0.6, 0.65, 0.7, 0.75, 0.8, 1.0] {
        let mut e = d.clone();
        e.hmx_efficiency = eff;
        let (ips, _, _) = offline_inf_per_s(&e, DType::I8, 16, 1, 8);
        let (c, o, m, h) = batch1_ps(&e, DType::I8);
        println!("  hmx_efficiency {eff}: offline b8 {ips:.0} inf/s, batch-1 {:.1} µs", (c + o + m + h) as f64 / 1e6);
    }
}

#[test]
fn resnet50_fp16_figures() {
    let pro = DeviceModel::aic100(Variant::Pro16);
    let (c, o, m, h) = batch1_ps(&pro, DType::F16);
    let total = (c + o + m + h) as f64 / 1e6;
    println!("fp16 batch 1, 16 cores: compute {:.1} µs, total {:.1} µs", c as f64 / 1e6, total);
    for batch in [8u64, 16] {
        let (ips, b, ddr) = offline_inf_per_s(&pro, DType::F16, 16, 1, batch);
        println!("fp16 offline, Pro 16 × 1 core, batch {batch}: {ips:.0} inf/s ({:.2} ms compute+overhead, {:.2} ms DDR)", b * 1e3, ddr * 1e3);
    }
    let std = DeviceModel::aic100(Variant::Standard14);
    // CAS-LUT (facts §7): resnet50 fp16 batch 13 on 7 cores × 2 instances = 7623 inf/s.
    let (ips, _, _) = offline_inf_per_s(&std, DType::F16, 2, 7, 13);
    println!("fp16 offline, Standard 2 × 7 cores, batch 13: {ips:.0} inf/s (CAS-LUT measured 7623)");
    assert!((7623.0 * 0.75..=7623.0 * 1.25).contains(&ips), "{ips}");
    let mut derated = std.clone();
    derated.fp16_rate_derate = 0.667;
    let (ips2, _, _) = offline_inf_per_s(&derated, DType::F16, 2, 7, 13);
    let mut pro2 = pro.clone();
    pro2.fp16_rate_derate = 0.667;
    let (c2, o2, m2, h2) = batch1_ps(&pro2, DType::F16);
    println!("  with fp16_rate_derate 0.667: Standard 2 × 7 batch 13 {ips2:.0} inf/s, Pro batch 1 {:.1} µs", (c2 + o2 + m2 + h2) as f64 / 1e6);
    assert!(total > 300.0 && total < 700.0, "{total}");
}
