//! I/O CRC (`-io-crc`, `-io-crc-stride`): a CRC over every input and output buffer, computed
//! on the host and on the device side of each transfer and compared.
//!
//! The QPC's `networkdesc.bin` carries `crc_info` with one `CRCEntry` per I/O DMA buffer
//! (written by [`crc_info`]); the runtime computes CRC-32/ISO-HDLC of the bytes an entry
//! samples ([`CrcSampling::crc`]) on the host buffer and on the device copy, before the
//! simulator reads an input and after it wrote an output. A difference is an error naming the
//! buffer, the inference and both values. On the virtual device nothing corrupts the bytes in
//! flight unless `QAIC_SIM_IO_FAULT=<io name>:<byte offset>` asks the runtime to flip the low
//! bit of that byte in the transferred copy (a test hook standing for a PCIe error); it shows
//! what the stride samples and what it misses.

use qaic_qpc::networkdesc::{CrcAlgorithm, CrcEntry, CrcInfo, Direction, DmaBuffer};
use qaic_qpc::NetworkDescriptor;

use crate::RuntimeError;

/// Bytes of every stride interval that the CRC covers: one 32-bit word, so a corrupted
/// element at the start of an interval is always caught.
pub const CRC_STRIDE_BYTES: u32 = 4;
/// Bytes at the beginning and at the end of a buffer always covered (headers and trailers).
pub const CRC_EDGE_BYTES: u32 = 64;

/// Which bytes of a buffer one CRC covers (a `CRCEntry` of the descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrcSampling {
    /// First `begin` bytes.
    pub begin: u32,
    /// Last `end` bytes.
    pub end: u32,
    /// Every `stride_interval` bytes, the first `stride_size` of the interval.
    pub stride_interval: u32,
    pub stride_size: u32,
}

impl CrcSampling {
    /// From a descriptor entry.
    pub fn from_entry(e: &CrcEntry) -> CrcSampling {
        CrcSampling { begin: e.begin_crc_block_size, end: e.end_crc_block_size, stride_interval: e.stride_interval, stride_size: e.stride_size }
    }

    /// True if byte `i` of a buffer of `len` bytes is covered.
    pub fn covers(&self, i: usize, len: usize) -> bool {
        i < self.begin as usize
            || i + (self.end as usize) >= len
            || (self.stride_interval > 0 && (i % self.stride_interval as usize) < self.stride_size as usize)
    }

    /// CRC-32 of the covered bytes of `data`, in order.
    ///
    /// ```
    /// use qaic_runtime::CrcSampling;
    /// let s = CrcSampling { begin: 0, end: 0, stride_interval: 256, stride_size: 4 };
    /// let mut a = vec![0u8; 1024];
    /// let c = s.crc(&a);
    /// a[100] = 1; // not sampled at stride 256
    /// assert_eq!(s.crc(&a), c);
    /// a[512] = 1; // sampled
    /// assert_ne!(s.crc(&a), c);
    /// ```
    pub fn crc(&self, data: &[u8]) -> u32 {
        let every = self.stride_interval == 0 || self.stride_size >= self.stride_interval;
        if every {
            return qaic_qpc::crc32(data);
        }
        let len = data.len();
        let mut sampled = Vec::with_capacity(len / self.stride_interval as usize * self.stride_size as usize + 2 * self.begin as usize);
        for (i, &b) in data.iter().enumerate() {
            if self.covers(i, len) {
                sampled.push(b);
            }
        }
        qaic_qpc::crc32(&sampled)
    }
}

/// `crc_info` for a descriptor whose I/O DMA buffers are set: one entry per buffer, the CRC
/// results going to one more (output) DMA buffer of 4 bytes per entry.
pub fn crc_info(nd: &NetworkDescriptor, stride: u32) -> Result<CrcInfo, RuntimeError> {
    if stride == 0 {
        return Err(RuntimeError::Assemble("-io-crc-stride must be at least 1".into()));
    }
    let entries: Vec<CrcEntry> = nd
        .dma_buffers
        .iter()
        .enumerate()
        .map(|(i, b)| CrcEntry {
            dma_buffer_num: i as u32,
            offset: 0,
            size: b.size,
            crc_entry_idx: i as u32,
            begin_crc_block_size: CRC_EDGE_BYTES.min(b.size),
            end_crc_block_size: CRC_EDGE_BYTES.min(b.size),
            stride_interval: stride,
            stride_size: CRC_STRIDE_BYTES.min(stride),
            algorithm: CrcAlgorithm::CRC_BASIC_ALGORITHM as i32,
        })
        .collect();
    Ok(CrcInfo { buff_num: nd.dma_buffers.len() as u32, entries })
}

/// The extra DMA buffer receiving the CRC results (appended by the assembler after `crc_info`).
pub(crate) fn crc_results_buffer(info: &CrcInfo) -> DmaBuffer {
    DmaBuffer { size: 4 * info.entries.len() as u32, dir: Direction::Out as i32 }
}

/// I/O CRC figures of a run (printed after the run, and in the JSON statistics).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoCrc {
    /// `-io-crc-stride` of the QPC.
    pub stride: u32,
    /// Buffers checked (inputs and outputs of every inference).
    pub checks: u64,
    /// Bytes covered by those CRCs.
    pub bytes_covered: u64,
}

impl IoCrc {
    /// The report line.
    pub fn line(&self) -> String {
        format!(
            "IO CRC: {} buffer transfer(s) checked, host and device CRC-32 equal ({} bytes covered, stride {} B)",
            self.checks, self.bytes_covered, self.stride
        )
    }
}

/// `QAIC_SIM_IO_FAULT=<io name>:<byte offset>`: the byte whose low bit the simulated transfer
/// flips (test hook).
pub(crate) fn fault_from_env() -> Option<(String, usize)> {
    let v = std::env::var("QAIC_SIM_IO_FAULT").ok()?;
    let (name, off) = v.rsplit_once(':')?;
    let off = off.trim().parse().ok()?;
    tracing::warn!("QAIC_SIM_IO_FAULT: flipping bit 0 of byte {off} of `{name}` in every transfer");
    Some((name.to_string(), off))
}
