//! # qaic-device
//!
//! The bottom of the virtual AIC100 (`docs/virtual-aic100.md`):
//!
//! * **Device model** — [`DeviceModel`]: one value per hardware version (`2.0`/`ai100`, with a
//!   16-core Pro and a 14-core Standard [`Variant`]) holding every parameter (cores, clock,
//!   MACs/cycle, VTCM, DDR/NoC/DMA bandwidths, latencies), each documented with its public
//!   source or derivation, and the cost functions ([`DeviceModel::matrix_cycles`],
//!   [`DeviceModel::vector_cycles`], [`DeviceModel::dma_ps`], [`DeviceModel::multicast_ps`],
//!   [`DeviceModel::op_cost`], [`DeviceModel::dma_cost`], ...) that codegen and the simulator
//!   share.
//! * **Program format** — [`Program`]: per core, a stream of tile-level [`Instr`]uctions (DMA
//!   with strided descriptors and multicast, ONNX-style compute ops on dense VTCM tiles,
//!   semaphores, barriers), its ELF serialisation ([`Program::to_elf`] /
//!   [`Program::from_elf`], the QPC's `network.elf`), validation and a text
//!   [`listing`](Program::listing).
//!
//! Depends only on `qaic-tensor` (for [`DType`](qaic_tensor::DType)) and the `object` crate.
//! Codegen writes programs and the simulator reads them; this crate must never know about the
//! IR, loaders, kernels or the QPC container, and never executes anything.
//!
//! ```
//! use qaic_device::*;
//! use qaic_tensor::DType;
//!
//! let dev = DeviceModel::for_version("2.0", Variant::Pro16).unwrap();
//! let mut p = Program::new("relu", "2.0", 1, 8192);
//! p.buffers.push(Buffer { name: "x".into(), kind: BufferKind::Input, size: 4096, binding: Some(0) });
//! p.buffers.push(Buffer { name: "y".into(), kind: BufferKind::Output, size: 4096, binding: Some(1) });
//! let dma = |src, so, dst, doff| Instr::Dma(Dma {
//!     src, src_offset: so, dst, dst_offset: doff, shape: DmaShape::contiguous(4096),
//!     multicast: None, tag: 0, signal: None,
//! });
//! p.cores[0].instrs = vec![
//!     dma(Space::Ddr(0), 0, Space::Vtcm, 0),
//!     Instr::DmaWait { tag: 0 },
//!     Instr::Op(Op::new("Relu", DType::F32,
//!         vec![Tile::vtcm(0, DType::F32, vec![1024])],
//!         vec![Tile::vtcm(4096, DType::F32, vec![1024])])),
//!     dma(Space::Vtcm, 4096, Space::Ddr(1), 0),
//!     Instr::DmaWait { tag: 0 },
//!     Instr::End,
//! ];
//! p.validate_for(&dev).unwrap();
//! let elf = p.to_elf();
//! assert_eq!(Program::from_elf(&elf).unwrap(), p);
//! assert!(p.listing().contains("core 0: [2] op Relu f32"));
//! ```

#[cfg(test)]
mod calibration;
mod cost;
mod device;
mod elf;
mod encode;
mod isa;
mod listing;

pub use cost::{CoreCost, DmaCost, OpCost};
pub use device::{DeviceError, DeviceModel, DmaPath, MatrixPrecision, PS_PER_S, Parameter, Unit, Variant, VectorKind};
pub use elf::{EM_QDSP6, NOTE_OWNER, NT_QAIC_PROGRAM, QAIC_OSABI};
pub use isa::{
    AttrValue, Buffer, BufferKind, CoreMask, CoreProgram, Dma, DmaDim, DmaShape, FORMAT_MAJOR, FORMAT_MINOR,
    FORMAT_NAME, Instr, MAX_DMA_DIMS, MAX_RANK, Op, OpClass, Program, SemSignal, Space, Tile, op_class,
};

/// Errors of decoding and validating programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The bytes are not an ELF file.
    #[error("not an ELF file (no \\x7fELF magic)")]
    NotElf,
    /// A Hexagon ELF without the qaic-rs note: compiled by the vendor toolchain.
    #[error("vendor program the simulator cannot run: Hexagon ELF without a {NOTE_OWNER} note (compile with qaic-rs)")]
    VendorProgram,
    /// An ELF for another machine.
    #[error("ELF for machine {machine}, not a qaic-rs AIC100 program (machine {EM_QDSP6})")]
    ForeignElf { machine: u16 },
    /// A qaic-rs program of a format major this reader does not know.
    #[error("program format version {major}.{minor} is not supported (this reader handles {FORMAT_MAJOR}.x)")]
    UnsupportedVersion { major: u16, minor: u16 },
    /// The ELF structure is broken.
    #[error("malformed program ELF: {0}")]
    Elf(String),
    /// A section's contents do not decode.
    #[error("section {section}, byte {offset}: {msg}")]
    Decode { section: String, offset: usize, msg: String },
    /// The program is inconsistent as a whole.
    #[error("invalid program: {0}")]
    Invalid(String),
    /// One instruction is inconsistent.
    #[error("invalid program: core {core} [{index}]: {msg}")]
    InvalidInstr { core: usize, index: usize, msg: String },
    /// The program does not fit the device it is checked against.
    #[error("program does not fit the device: {0}")]
    ExceedsDevice(String),
}
