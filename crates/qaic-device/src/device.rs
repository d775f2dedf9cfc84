//! The device model: one value per hardware version, every parameter with its source, and the
//! cost functions codegen and the simulator share.
//!
//! Source keys (`SDK-ARCH`, `KRAI-NB`, ...) and section numbers refer to the project's facts
//! sheet on the AIC100 (`facts/aic100.md`); the parameter numbers `#n` are the rows of its
//! §9.1 table. **PROPOSED** marks a value no public source gives; its derivation is stated.
//! `docs/virtual-aic100.md` repeats every number with the same citations.

use qaic_tensor::DType;

/// Errors of [`DeviceModel::for_version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The version is known but qaic-rs has no model of it yet.
    #[error("hardware version \"{version}\": no device model yet (only 2.0 / ai100 is modelled)")]
    NoDeviceModel { version: String },
    /// The version string names no hardware qaic-rs knows.
    #[error("unknown hardware version \"{version}\" (expected 2.0 or ai100; ai200 is known but not modelled)")]
    UnknownVersion { version: String },
    /// The variant does not exist for this version.
    #[error("hardware version {version} has no variant {variant:?}")]
    NoSuchVariant { version: String, variant: Variant },
}

/// Board variant of a hardware version (same chip, different number of enabled cores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// All 16 NSPs enabled: AI 100 Pro (SDK-ARCH SKU table; facts §3.1).
    #[default]
    Pro16,
    /// 14 NSPs enabled: AI 100 Standard (SDK-TUNE, CAS-TUT "Standard SKU … with 14 AI cores";
    /// derived from 126 MB of on-chip SRAM ÷ 9 MB per core, facts §3.1).
    Standard14,
}

impl Variant {
    /// Name used in options and listings.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Pro16 => "pro16",
            Variant::Standard14 => "standard14",
        }
    }

    /// Parses `pro16`/`pro`/`16` or `standard14`/`standard`/`std`/`14`.
    pub fn parse(s: &str) -> Option<Variant> {
        match s.to_ascii_lowercase().as_str() {
            "pro16" | "pro" | "16" => Some(Variant::Pro16),
            "standard14" | "standard" | "std" | "14" => Some(Variant::Standard14),
            _ => None,
        }
    }
}

/// The execution units of one core that the cost model tracks separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// Tensor unit (HMX): matrix multiply / convolution MACs.
    Matrix,
    /// Vector unit (HVX): element-wise, reductions, data movement inside VTCM.
    Vector,
    /// The core's DMA engine (DDR ↔ VTCM, VTCM ↔ VTCM, multicast).
    Dma,
    /// Scalar unit: instruction issue, semaphores, barriers.
    Scalar,
}

impl Unit {
    /// Engine name as the vendor's opstats files print it (facts `runner-output.md` §3.3:
    /// `<kernel> <engine HVX|HMX|DMAIssue>`; threads t0–t3 HVX, t4 HMX, t5 DMAIssue).
    pub fn opstats_engine(self) -> &'static str {
        match self {
            Unit::Matrix => "HMX",
            Unit::Vector => "HVX",
            Unit::Dma => "DMAIssue",
            Unit::Scalar => "Scalar",
        }
    }
}

/// Kinds of vector-unit work with different per-element rates (#10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorKind {
    /// One simple lane operation per element (add, mul, max, compare, select, cast, copy).
    Simple,
    /// Multi-instruction sequences per element (exp, log, tanh, erf, rsqrt, division).
    Transcendental,
}

/// Path of an uncontended DMA transfer, for [`DeviceModel::dma_ps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmaPath {
    /// DDR → this core's VTCM (memory NoC read).
    DdrToVtcm,
    /// This core's VTCM → DDR (memory NoC write).
    VtcmToDdr,
    /// VTCM → another core's VTCM over the compute NoC.
    VtcmToVtcm,
    /// DDR → DDR copy (read and write both cross the memory NoC).
    DdrToDdr,
}

/// Which data path the matrix unit uses for a given element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatrixPrecision {
    /// 8-bit (and narrower) integers on the tensor unit.
    Int8,
    /// 16-bit floats (fp16; bf16 and int16 are run at the fp16 rate) on the tensor unit.
    Fp16,
    /// Anything else (fp32, 32/64-bit integers) falls back to the vector unit's MAC lanes.
    VectorFallback,
}

impl MatrixPrecision {
    /// Classifies an operand element type.
    pub fn of(dtype: DType) -> MatrixPrecision {
        match dtype {
            DType::I8 | DType::U8 | DType::I4 | DType::U4 | DType::I2 | DType::U2 | DType::Bool => {
                MatrixPrecision::Int8
            }
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => MatrixPrecision::Fp16,
            _ => MatrixPrecision::VectorFallback,
        }
    }
}

/// Picoseconds per second, the time base of every `_ps` value.
pub const PS_PER_S: u64 = 1_000_000_000_000;

/// Every parameter of one modelled hardware version and variant.
///
/// Times are integer picoseconds (deterministic event ordering in the simulator), rates are
/// per second or per cycle as named. Fields are public so tools can print and tests can
/// perturb them; build one with [`DeviceModel::for_version`] or [`DeviceModel::aic100`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceModel {
    /// Canonical hardware version string (`"2.0"`).
    pub hw_version: &'static str,
    /// Metadata encoding of the version: `(major << 16) | minor`, AIC_HW_VER_2_0 = 0x20000 (UMD-MD; facts §1).
    pub hw_version_code: u32,
    /// Variant (number of enabled cores).
    pub variant: Variant,
    /// #1 NSP cores: 16 (Pro) / 14 (Standard). Sourced: K-AIC, SDK-ARCH, SDK-TUNE.
    pub num_cores: u32,
    /// #2 core clock, Hz. **PROPOSED** 1.43 GHz = 375 TOPS ÷ (16 × 8192 × 2) (SDK-ARCH SKU table);
    /// ≤ the 1450 MHz maximum observed under load (KRAI-NB).
    pub core_clock_hz: u64,
    /// #3 tensor-unit int8 MACs per cycle per core: 8192. Sourced: SDK-ARCH.
    pub hmx_int8_macs_per_cycle: u32,
    /// #4 tensor-unit fp16 MACs per cycle per core: 4096. Sourced: SDK-ARCH.
    pub hmx_fp16_macs_per_cycle: u32,
    /// #5 fp16 rate derating: 1.0 (architecture page). **PROPOSED** option 0.667 reproduces the
    /// SKU-table 125 TFLOPS (facts §4 discrepancy).
    pub fp16_rate_derate: f64,
    /// Tensor-unit output tile rows (M granularity). **PROPOSED** 32: the HMX array geometry is
    /// not public (facts §10); 32 × 32 outputs × 8 int8 (4 fp16) K-steps = 8192 (4096) MACs.
    pub hmx_tile_m: u32,
    /// Tensor-unit output tile columns (N granularity). **PROPOSED** 32, see `hmx_tile_m`.
    pub hmx_tile_n: u32,
    /// Cycles to start one tensor-unit operation (pipeline fill, accumulator drain).
    /// **PROPOSED** 64: no public latency figure (facts §10).
    pub hmx_startup_cycles: u32,
    /// Fraction of the tile-quantised peak the tensor unit sustains inside one op (VTCM bank
    /// conflicts, weight reloads). **PROPOSED** 0.80; see docs/virtual-aic100.md §calibration.
    pub hmx_efficiency: f64,
    /// #7 vector-unit int8 MACs per cycle: 512. Sourced: SDK-ARCH.
    pub hvx_int8_macs_per_cycle: u32,
    /// #8 vector-unit fp16 MACs per cycle: 256. Sourced: SDK-ARCH.
    pub hvx_fp16_macs_per_cycle: u32,
    /// Vector-unit fp32 MACs per cycle: **PROPOSED** 128 = half the fp16 rate (#10 halving rule);
    /// used for fp32 matrix work, which the tensor unit does not do (SDK-DTYPE).
    pub hvx_fp32_macs_per_cycle: u32,
    /// #9 HVX vector register width in bytes: 128. Sourced: RUST-HVX, CC-PROG (v68).
    pub hvx_vector_bytes: u32,
    /// #10 divisor of the element rate for transcendental sequences. **PROPOSED** 8 (placeholder
    /// for multi-instruction sequences).
    pub hvx_transcendental_divisor: u32,
    /// Cycles to start one vector-unit operation (loop setup). **PROPOSED** 16.
    pub hvx_startup_cycles: u32,
    /// #11 hardware threads per core: 6 (SDK-ARCH); networks use 4 by default (CC-PROG).
    pub hw_threads: u32,
    /// Scalar cycles to issue one instruction of the program (decode a descriptor, start a unit).
    /// **PROPOSED** 50 cycles ≈ 35 ns: not public; small against DMA setup (#25).
    pub issue_cycles: u32,
    /// #12 VTCM per core: 8 MiB. Sourced: CC-PROG (VTCM_MAX_SIZE), SDK-ARCH.
    pub vtcm_bytes: u64,
    /// #13 L2TCM per core: 1 MiB (CC-PROG L2TCM_MAX_SIZE); not addressed by programs yet.
    pub l2tcm_bytes: u64,
    /// #15 DDR capacity: 32 GB (Pro) / 16 GB (Standard). Sourced: SDK-ARCH; MLPERF system files.
    pub ddr_capacity_bytes: u64,
    /// #16 DDR peak bandwidth, bytes/s: 4 ch × 8 B × 4266 MT/s = 136.5 GB/s (derived; SDK-ARCH
    /// says 136/137 GB/s).
    pub ddr_peak_bytes_per_s: u64,
    /// #17 sustained fraction of DDR peak. **PROPOSED** 0.80 (typical LPDDR4x controller).
    pub ddr_efficiency: f64,
    /// #19 most DDR bandwidth one core's requests can draw. **PROPOSED** 68 GB/s = half the peak,
    /// so one core cannot saturate DDR alone. Sharing between cores is modelled by the simulator
    /// (#18: dynamic fair share of the sustained bandwidth among active requesters).
    pub ddr_single_core_bytes_per_s: u64,
    /// DDR access granularity: each contiguous run of a DMA descriptor is rounded up to whole
    /// bursts. **PROPOSED** 64 B (one BL16 burst on a 4 × 16-bit LPDDR4x channel pair; not public).
    pub ddr_burst_bytes: u64,
    /// #20/#21 compute-NoC bandwidth, bytes/s: 128 B/cycle × 1450 MHz = 185.6 GB/s (derived from
    /// SDK-ARCH/LINLEY 186 GB/s and the COMPNOC clock, KRAI-AUD). One shared resource for
    /// core↔core and multicast traffic.
    pub noc_bytes_per_s: u64,
    /// Bandwidth of one core's DMA engine into/out of its VTCM, bytes/s. **PROPOSED** one NoC
    /// link = 185.6 GB/s (#21); DDR-side transfers are further capped by
    /// `ddr_single_core_bytes_per_s`.
    pub dma_engine_bytes_per_s: u64,
    /// #25 setup latency of one DMA descriptor (NSP-initiated DDR↔VTCM or multicast), ps.
    /// **PROPOSED** 0.5 µs, calibrated with #26/#27 against batch-1 latency (facts §9.2).
    pub dma_setup_ps: u64,
    /// #26 cross-core semaphore signal → wake latency, ps. **PROPOSED** 1.0 µs (same calibration).
    pub sync_latency_ps: u64,
    /// #27 fixed overhead per layer (kernel launch, thread barrier), ps. **PROPOSED** 2.0 µs.
    pub layer_overhead_ps: u64,
    /// #22 widest multicast receiver mask: 32 cores (UMD-MD: 32-bit mask of virtual NSP ids).
    pub multicast_mask_bits: u32,
    /// #22 multicast destination alignment in VTCM: 4 KiB (UMD-MD multicast table entries).
    pub multicast_align: u64,
    /// #22 multicast ids per device: 3072 (qaic-util "MCID Total", KRAI-AUD).
    pub multicast_ids: u32,
    /// #26 device semaphores: 32 (qaic-util "Semaphore Total"; K-UAPI 5-bit index).
    pub num_semaphores: u32,
    /// #24 DMA virtual channels: 16 (qaic-util "Vc Total", KRAI-AUD).
    pub dma_virtual_channels: u32,
    /// #28 host link PCIe Gen4 ×8 raw, bytes/s: 16 GT/s × 8 × 128/130 ÷ 8 = 15.75 GB/s (derived; K-AIC).
    pub host_pcie_raw_bytes_per_s: u64,
    /// #28 effective host link, bytes/s. **PROPOSED** 12.5 GB/s (≈ 80 % of raw).
    pub host_pcie_bytes_per_s: u64,
    /// #30 host submit overhead per execute, ps: 5 µs (CAS-TUT: submit 1.6 µs + enqueue-to-VC 4 µs, rounded).
    pub host_submit_ps: u64,
    /// #31 completion interrupt latency, ps. **PROPOSED** 10 µs (polling interval 100 µs: K-QAIC).
    pub host_irq_ps: u64,
    /// #32 concurrent workloads: one per NSP (K-AIC).
    pub max_concurrent_workloads: u32,
}

impl DeviceModel {
    /// Hardware version strings accepted by [`DeviceModel::for_version`], with the canonical one.
    pub const VERSIONS: [(&'static str, &'static str); 2] = [("2.0", "2.0"), ("ai100", "2.0")];

    /// Looks up the model of a hardware version (`-aic-hw-version`): `"2.0"` or `"ai100"`
    /// (case-insensitive). `"ai200"` is known but answers [`DeviceError::NoDeviceModel`].
    ///
    /// ```
    /// use qaic_device::{DeviceModel, Variant};
    /// let d = DeviceModel::for_version("ai100", Variant::Standard14).unwrap();
    /// assert_eq!(d.num_cores, 14);
    /// assert!(DeviceModel::for_version("ai200", Variant::Pro16).is_err());
    /// ```
    pub fn for_version(version: &str, variant: Variant) -> Result<DeviceModel, DeviceError> {
        let v = version.trim().to_ascii_lowercase();
        match v.as_str() {
            "2.0" | "ai100" | "aic100" => Ok(DeviceModel::aic100(variant)),
            "ai200" | "aic200" | "ai100ultra" | "1.0" => {
                Err(DeviceError::NoDeviceModel { version: version.to_string() })
            }
            _ => Err(DeviceError::UnknownVersion { version: version.to_string() }),
        }
    }

    /// The virtual AIC100 v2.0 (facts §9.1), 16 cores (Pro) or 14 cores (Standard).
    pub fn aic100(variant: Variant) -> DeviceModel {
        let (num_cores, ddr_capacity_bytes) = match variant {
            Variant::Pro16 => (16, 32 << 30),
            Variant::Standard14 => (14, 16 << 30),
        };
        DeviceModel {
            hw_version: "2.0",
            hw_version_code: 2 << 16,
            variant,
            num_cores,
            core_clock_hz: 1_430_000_000,
            hmx_int8_macs_per_cycle: 8192,
            hmx_fp16_macs_per_cycle: 4096,
            fp16_rate_derate: 1.0,
            hmx_tile_m: 32,
            hmx_tile_n: 32,
            hmx_startup_cycles: 64,
            hmx_efficiency: 0.70,
            hvx_int8_macs_per_cycle: 512,
            hvx_fp16_macs_per_cycle: 256,
            hvx_fp32_macs_per_cycle: 128,
            hvx_vector_bytes: 128,
            hvx_transcendental_divisor: 8,
            hvx_startup_cycles: 16,
            hw_threads: 6,
            issue_cycles: 50,
            vtcm_bytes: 8 << 20,
            l2tcm_bytes: 1 << 20,
            ddr_capacity_bytes,
            ddr_peak_bytes_per_s: 4 * 8 * 4_266_000_000,
            ddr_efficiency: 0.80,
            ddr_single_core_bytes_per_s: 68_000_000_000,
            ddr_burst_bytes: 64,
            noc_bytes_per_s: 128 * 1_450_000_000,
            dma_engine_bytes_per_s: 128 * 1_450_000_000,
            dma_setup_ps: 500_000,
            sync_latency_ps: 1_000_000,
            layer_overhead_ps: 2_000_000,
            multicast_mask_bits: 32,
            multicast_align: 4096,
            multicast_ids: 3072,
            num_semaphores: 32,
            dma_virtual_channels: 16,
            host_pcie_raw_bytes_per_s: 15_753_846_153,
            host_pcie_bytes_per_s: 12_500_000_000,
            host_submit_ps: 5_000_000,
            host_irq_ps: 10_000_000,
            max_concurrent_workloads: num_cores,
        }
    }

    /// Peak int8 tensor throughput of the whole device in MAC/s (#6 check: 187.4 TMAC/s = 374.9 TOPS).
    pub fn peak_int8_macs_per_s(&self) -> f64 {
        self.num_cores as f64 * self.hmx_int8_macs_per_cycle as f64 * self.core_clock_hz as f64
    }

    /// Peak fp16 tensor throughput of the whole device in MAC/s (after `fp16_rate_derate`).
    pub fn peak_fp16_macs_per_s(&self) -> f64 {
        self.num_cores as f64
            * self.hmx_fp16_macs_per_cycle as f64
            * self.core_clock_hz as f64
            * self.fp16_rate_derate
    }

    /// Sustained DDR bandwidth shared by all cores, bytes/s (#16 × #17 ≈ 109 GB/s).
    pub fn ddr_sustained_bytes_per_s(&self) -> u64 {
        (self.ddr_peak_bytes_per_s as f64 * self.ddr_efficiency) as u64
    }

    /// Converts core cycles to picoseconds (rounded up).
    pub fn cycles_to_ps(&self, cycles: u64) -> u64 {
        div_ceil_u128(cycles as u128 * PS_PER_S as u128, self.core_clock_hz.max(1) as u128)
    }

    /// Picoseconds to move `bytes` at `bytes_per_s` (rounded up; 0 bytes take 0 ps).
    pub fn transfer_ps(bytes: u64, bytes_per_s: u64) -> u64 {
        div_ceil_u128(bytes as u128 * PS_PER_S as u128, bytes_per_s.max(1) as u128)
    }

    /// Core cycles of one matrix operation `[M×K] · [K×N]` on one core's tensor unit.
    ///
    /// `startup + ceil(ceil(M/tm) · ceil(N/tn) · ceil(K/tk) / (efficiency · derate))` where
    /// `tk` = MACs/cycle ÷ (tm · tn) (8 for int8, 4 for fp16 at the proposed 32 × 32 tile) and
    /// `derate` is `fp16_rate_derate` for fp16, 1 for int8; for
    /// element types the tensor unit does not take (fp32, wide integers) the vector unit's MAC
    /// lanes are used without tile quantisation. Zero-sized ops cost 0. Monotone non-decreasing
    /// in each of M, N, K.
    pub fn matrix_cycles(&self, m: u64, n: u64, k: u64, dtype: DType) -> u64 {
        if m == 0 || n == 0 || k == 0 {
            return 0;
        }
        let (steps, eff) = match MatrixPrecision::of(dtype) {
            MatrixPrecision::VectorFallback => {
                let macs = m.saturating_mul(n).saturating_mul(k);
                (macs.div_ceil(self.hvx_fp32_macs_per_cycle.max(1) as u64), 1.0)
            }
            p => {
                let (per_cycle, derate) = if p == MatrixPrecision::Int8 {
                    (self.hmx_int8_macs_per_cycle as u64, 1.0)
                } else {
                    (self.hmx_fp16_macs_per_cycle as u64, self.fp16_rate_derate)
                };
                let tm = self.hmx_tile_m.max(1) as u64;
                let tn = self.hmx_tile_n.max(1) as u64;
                let tk = (per_cycle / (tm * tn)).max(1);
                let blocks = m
                    .div_ceil(tm)
                    .saturating_mul(n.div_ceil(tn))
                    .saturating_mul(k.div_ceil(tk));
                (blocks, self.hmx_efficiency * derate)
            }
        };
        let body = (steps as f64 / eff.clamp(1e-6, 1.0)).ceil() as u64;
        (self.hmx_startup_cycles as u64).saturating_add(body)
    }

    /// Vector-unit lanes (elements per cycle) for simple operations on `dtype` (#10): 512 for
    /// 8-bit, 256 for 16-bit, 128 for 32-bit, 64 for 64-bit elements (= 128-byte vectors × 4 for
    /// 8-bit MAC slots, halving per width doubling).
    pub fn vector_lanes(&self, dtype: DType) -> u64 {
        let bits = dtype.bits().max(8) as u64;
        let int8 = self.hvx_int8_macs_per_cycle.max(1) as u64;
        (int8 * 8 / bits).max(1)
    }

    /// Core cycles of a vector operation over `n` elements of `dtype`:
    /// `startup + ceil(n / lanes)` for simple ops, `startup + ceil(n · divisor / lanes)` for
    /// transcendental ones. Monotone in `n`.
    pub fn vector_cycles(&self, kind: VectorKind, n: u64, dtype: DType) -> u64 {
        if n == 0 {
            return 0;
        }
        let lanes = self.vector_lanes(dtype);
        let work = match kind {
            VectorKind::Simple => n,
            VectorKind::Transcendental => {
                n.saturating_mul(self.hvx_transcendental_divisor.max(1) as u64)
            }
        };
        (self.hvx_startup_cycles as u64).saturating_add(work.div_ceil(lanes))
    }

    /// Bandwidth cap of one uncontended transfer on `path`, bytes/s.
    pub fn dma_path_bytes_per_s(&self, path: DmaPath) -> u64 {
        match path {
            DmaPath::DdrToVtcm | DmaPath::VtcmToDdr | DmaPath::DdrToDdr => {
                self.dma_engine_bytes_per_s.min(self.ddr_single_core_bytes_per_s)
            }
            DmaPath::VtcmToVtcm => self.dma_engine_bytes_per_s.min(self.noc_bytes_per_s),
        }
    }

    /// Uncontended time of one DMA descriptor moving `bytes` (already rounded to DDR bursts by
    /// the caller where DDR is involved): `dma_setup + bytes / path bandwidth`. DDR → DDR copies
    /// cross the memory NoC twice. Contention between cores for DDR and the NoC is the
    /// simulator's job; it uses the same parameters.
    pub fn dma_ps(&self, bytes: u64, path: DmaPath) -> u64 {
        let moved = if path == DmaPath::DdrToDdr { bytes.saturating_mul(2) } else { bytes };
        self.dma_setup_ps
            .saturating_add(Self::transfer_ps(moved, self.dma_path_bytes_per_s(path)))
    }

    /// Uncontended time of a multicast of `bytes` from DDR to `receivers` cores (#22, PROPOSED
    /// rule): one NoC injection, so the cost does not grow with the receiver count:
    /// `dma_setup + bytes / min(NoC, single-core DDR cap)`. Zero receivers cost nothing.
    pub fn multicast_ps(&self, bytes: u64, receivers: u32) -> u64 {
        if receivers == 0 {
            return 0;
        }
        let bw = self.noc_bytes_per_s.min(self.ddr_single_core_bytes_per_s);
        self.dma_setup_ps.saturating_add(Self::transfer_ps(bytes, bw))
    }

    /// Scalar-unit time to issue one instruction, ps.
    pub fn issue_ps(&self) -> u64 {
        self.cycles_to_ps(self.issue_cycles as u64)
    }

    /// Latency from a semaphore signal (or the last barrier arrival) to the waiting core
    /// resuming, ps (#26).
    pub fn semaphore_latency_ps(&self) -> u64 {
        self.sync_latency_ps
    }

    /// Bytes of DDR traffic for a transfer made of `runs` contiguous runs of `run_bytes` each:
    /// every run is rounded up to whole DDR bursts.
    pub fn ddr_bytes(&self, run_bytes: u64, runs: u64) -> u64 {
        let burst = self.ddr_burst_bytes.max(1);
        run_bytes.div_ceil(burst).saturating_mul(burst).saturating_mul(runs)
    }
}

/// One row of [`DeviceModel::parameters`].
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// Field name in [`DeviceModel`].
    pub name: &'static str,
    /// Value with its unit.
    pub value: String,
    /// Source key or **PROPOSED** with the facts-sheet row (`#n`).
    pub source: &'static str,
}

impl DeviceModel {
    /// Every parameter with its value and source, for `-aic-hw` help, `--json` dumps and the
    /// documentation check (a test keeps docs/virtual-aic100.md naming every field).
    pub fn parameters(&self) -> Vec<Parameter> {
        let p = |name, value: String, source| Parameter { name, value, source };
        let gbs = |v: u64| format!("{:.3} GB/s", v as f64 / 1e9);
        let us = |v: u64| format!("{} µs", v as f64 / 1e6);
        vec![
            p("hw_version", self.hw_version.to_string(), "SDK-COMPILE, UMD-MD"),
            p("hw_version_code", format!("{:#x}", self.hw_version_code), "UMD-MD AIC_HW_VER_2_0"),
            p("variant", self.variant.name().to_string(), "SDK-ARCH SKU table"),
            p("num_cores", self.num_cores.to_string(), "#1 K-AIC, SDK-ARCH, SDK-TUNE"),
            p("core_clock_hz", format!("{} GHz", self.core_clock_hz as f64 / 1e9), "#2 PROPOSED: 375 TOPS / (16 x 8192 x 2)"),
            p("hmx_int8_macs_per_cycle", self.hmx_int8_macs_per_cycle.to_string(), "#3 SDK-ARCH"),
            p("hmx_fp16_macs_per_cycle", self.hmx_fp16_macs_per_cycle.to_string(), "#4 SDK-ARCH"),
            p("fp16_rate_derate", self.fp16_rate_derate.to_string(), "#5 architecture page; 0.667 = SKU table option"),
            p("hmx_tile_m", self.hmx_tile_m.to_string(), "PROPOSED: HMX geometry not public"),
            p("hmx_tile_n", self.hmx_tile_n.to_string(), "PROPOSED: HMX geometry not public"),
            p("hmx_startup_cycles", self.hmx_startup_cycles.to_string(), "PROPOSED"),
            p("hmx_efficiency", self.hmx_efficiency.to_string(), "PROPOSED, calibrated on ResNet-50 offline"),
            p("hvx_int8_macs_per_cycle", self.hvx_int8_macs_per_cycle.to_string(), "#7 SDK-ARCH"),
            p("hvx_fp16_macs_per_cycle", self.hvx_fp16_macs_per_cycle.to_string(), "#8 SDK-ARCH"),
            p("hvx_fp32_macs_per_cycle", self.hvx_fp32_macs_per_cycle.to_string(), "PROPOSED: half the fp16 rate (#10)"),
            p("hvx_vector_bytes", self.hvx_vector_bytes.to_string(), "#9 RUST-HVX, CC-PROG"),
            p("hvx_transcendental_divisor", self.hvx_transcendental_divisor.to_string(), "#10 PROPOSED"),
            p("hvx_startup_cycles", self.hvx_startup_cycles.to_string(), "PROPOSED"),
            p("hw_threads", self.hw_threads.to_string(), "#11 SDK-ARCH"),
            p("issue_cycles", self.issue_cycles.to_string(), "PROPOSED"),
            p("vtcm_bytes", self.vtcm_bytes.to_string(), "#12 CC-PROG VTCM_MAX_SIZE, SDK-ARCH"),
            p("l2tcm_bytes", self.l2tcm_bytes.to_string(), "#13 CC-PROG L2TCM_MAX_SIZE"),
            p("ddr_capacity_bytes", self.ddr_capacity_bytes.to_string(), "#15 SDK-ARCH, MLPerf system files"),
            p("ddr_peak_bytes_per_s", gbs(self.ddr_peak_bytes_per_s), "#16 derived: 4 x 8 B x 4266 MT/s"),
            p("ddr_efficiency", self.ddr_efficiency.to_string(), "#17 PROPOSED"),
            p("ddr_single_core_bytes_per_s", gbs(self.ddr_single_core_bytes_per_s), "#19 PROPOSED: half the peak"),
            p("ddr_burst_bytes", self.ddr_burst_bytes.to_string(), "PROPOSED"),
            p("noc_bytes_per_s", gbs(self.noc_bytes_per_s), "#20/#21 128 B x 1450 MHz; SDK-ARCH 186 GB/s"),
            p("dma_engine_bytes_per_s", gbs(self.dma_engine_bytes_per_s), "PROPOSED: one NoC link"),
            p("dma_setup_ps", us(self.dma_setup_ps), "#25 PROPOSED"),
            p("sync_latency_ps", us(self.sync_latency_ps), "#26 PROPOSED"),
            p("layer_overhead_ps", us(self.layer_overhead_ps), "#27 PROPOSED"),
            p("multicast_mask_bits", self.multicast_mask_bits.to_string(), "#22 UMD-MD"),
            p("multicast_align", self.multicast_align.to_string(), "#22 UMD-MD"),
            p("multicast_ids", self.multicast_ids.to_string(), "#22 KRAI-AUD"),
            p("num_semaphores", self.num_semaphores.to_string(), "#26 KRAI-AUD, K-UAPI"),
            p("dma_virtual_channels", self.dma_virtual_channels.to_string(), "#24 KRAI-AUD"),
            p("host_pcie_raw_bytes_per_s", gbs(self.host_pcie_raw_bytes_per_s), "#28 derived (K-AIC Gen4 x8)"),
            p("host_pcie_bytes_per_s", gbs(self.host_pcie_bytes_per_s), "#28 PROPOSED"),
            p("host_submit_ps", us(self.host_submit_ps), "#30 CAS-TUT"),
            p("host_irq_ps", us(self.host_irq_ps), "#31 PROPOSED"),
            p("max_concurrent_workloads", self.max_concurrent_workloads.to_string(), "#32 K-AIC"),
        ]
    }
}

fn div_ceil_u128(a: u128, b: u128) -> u64 {
    let q = a.div_ceil(b.max(1));
    u64::try_from(q).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_and_variants() {
        let pro = DeviceModel::for_version("2.0", Variant::Pro16).unwrap();
        assert_eq!(pro.num_cores, 16);
        assert_eq!(DeviceModel::for_version("AI100", Variant::Pro16).unwrap(), pro);
        let std = DeviceModel::for_version("ai100", Variant::Standard14).unwrap();
        assert_eq!(std.num_cores, 14);
        assert_eq!(std.vtcm_bytes, 8 * 1024 * 1024);
        let e = DeviceModel::for_version("ai200", Variant::Pro16).unwrap_err();
        assert!(matches!(e, DeviceError::NoDeviceModel { .. }));
        assert!(e.to_string().contains("no device model yet"), "{e}");
        let e = DeviceModel::for_version("3.7", Variant::Pro16).unwrap_err();
        assert!(matches!(e, DeviceError::UnknownVersion { .. }));
        assert_eq!(Variant::parse("std"), Some(Variant::Standard14));
        assert_eq!(Variant::parse("x"), None);
    }

    #[test]
    fn docs_name_every_parameter() {
        let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/virtual-aic100.md"));
        let d = DeviceModel::aic100(Variant::Pro16);
        let params = d.parameters();
        assert_eq!(params.len(), 42);
        for p in params {
            assert!(doc.contains(&format!("`{}`", p.name)), "docs/virtual-aic100.md does not name `{}`", p.name);
        }
    }

    #[test]
    fn peak_rates_match_the_sku_table() {
        let pro = DeviceModel::aic100(Variant::Pro16);
        // facts §9.1 #6: 374.9 TOPS (Pro), 328.0 TOPS (Standard).
        let tops = pro.peak_int8_macs_per_s() * 2.0 / 1e12;
        assert!((tops - 374.9).abs() < 0.5, "{tops}");
        let std = DeviceModel::aic100(Variant::Standard14);
        let tops = std.peak_int8_macs_per_s() * 2.0 / 1e12;
        assert!((tops - 328.0).abs() < 0.5, "{tops}");
        assert_eq!(pro.ddr_peak_bytes_per_s, 136_512_000_000);
        assert_eq!(pro.ddr_sustained_bytes_per_s(), 109_209_600_000);
        assert_eq!(pro.noc_bytes_per_s, 185_600_000_000);
    }

    #[test]
    fn matrix_cost_examples() {
        let d = DeviceModel::aic100(Variant::Pro16);
        let eff = d.hmx_efficiency;
        // 32×32×8 int8 is one tensor step, stretched by the efficiency.
        assert_eq!(d.matrix_cycles(32, 32, 8, DType::I8), 64 + (1.0 / eff).ceil() as u64);
        // A large aligned GEMM approaches peak / efficiency.
        let c = d.matrix_cycles(1024, 1024, 1024, DType::I8);
        let ideal = 1024u64 * 1024 * 1024 / 8192;
        assert_eq!(c, 64 + (ideal as f64 / eff).ceil() as u64);
        // fp16 takes twice the int8 steps (derate 1.0).
        let f = d.matrix_cycles(1024, 1024, 1024, DType::F16);
        assert_eq!(f, 64 + (2.0 * ideal as f64 / eff).ceil() as u64);
        let mut slow = d.clone();
        slow.fp16_rate_derate = 0.667;
        let sf = slow.matrix_cycles(1024, 1024, 1024, DType::F16);
        assert_eq!(sf, 64 + (2.0 * ideal as f64 / (eff * 0.667)).ceil() as u64);
        // fp32 runs on the vector unit at 128 MAC/cycle.
        assert_eq!(d.matrix_cycles(4, 4, 8, DType::F32), 64 + 1);
        assert_eq!(d.matrix_cycles(0, 4, 8, DType::I8), 0);
        // GEMV wastes the array: M = 1 costs as much as M = 32.
        assert_eq!(d.matrix_cycles(1, 1024, 1024, DType::I8), d.matrix_cycles(32, 1024, 1024, DType::I8));
    }

    #[test]
    fn vector_and_dma_examples() {
        let d = DeviceModel::aic100(Variant::Pro16);
        assert_eq!(d.vector_lanes(DType::I8), 512);
        assert_eq!(d.vector_lanes(DType::F16), 256);
        assert_eq!(d.vector_lanes(DType::F32), 128);
        assert_eq!(d.vector_lanes(DType::I64), 64);
        assert_eq!(d.vector_cycles(VectorKind::Simple, 1024, DType::F16), 16 + 4);
        assert_eq!(d.vector_cycles(VectorKind::Transcendental, 1024, DType::F16), 16 + 32);
        // 68 KB over the 68 GB/s single-core DDR cap = 1 µs, plus 0.5 µs setup.
        assert_eq!(d.dma_ps(68_000, DmaPath::DdrToVtcm), 1_500_000);
        assert_eq!(d.multicast_ps(68_000, 16), d.multicast_ps(68_000, 2));
        assert_eq!(d.ddr_bytes(65, 3), 128 * 3);
        assert_eq!(d.cycles_to_ps(1430), 1_000_000);
    }

    proptest! {
        #[test]
        fn matrix_cost_is_monotone(m in 1u64..5000, n in 1u64..5000, k in 1u64..5000, dm in 0u64..100, which in 0usize..4) {
            let d = DeviceModel::aic100(Variant::Pro16);
            let dt = [DType::I8, DType::F16, DType::F32, DType::U8][which];
            let base = d.matrix_cycles(m, n, k, dt);
            prop_assert!(d.matrix_cycles(m + dm, n, k, dt) >= base);
            prop_assert!(d.matrix_cycles(m, n + dm, k, dt) >= base);
            prop_assert!(d.matrix_cycles(m, n, k + dm, dt) >= base);
        }

        #[test]
        fn vector_and_dma_costs_are_monotone(n in 0u64..1_000_000_000, dn in 0u64..1_000_000) {
            let d = DeviceModel::aic100(Variant::Standard14);
            for kind in [VectorKind::Simple, VectorKind::Transcendental] {
                prop_assert!(d.vector_cycles(kind, n + dn, DType::F16) >= d.vector_cycles(kind, n, DType::F16));
            }
            for path in [DmaPath::DdrToVtcm, DmaPath::VtcmToDdr, DmaPath::VtcmToVtcm, DmaPath::DdrToDdr] {
                prop_assert!(d.dma_ps(n + dn, path) >= d.dma_ps(n, path));
            }
            prop_assert!(d.multicast_ps(n + dn, 4) >= d.multicast_ps(n, 4));
        }
    }
}
