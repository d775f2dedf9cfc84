//! # qaic-codegen
//!
//! Code generation for the virtual AIC100 (`docs/virtual-aic100.md`, "Code generation"): turns
//! an IR [`Graph`] into a [`qaic_device::Program`] (one tile-level instruction stream per
//! core), the constants blob the program reads, and the I/O bindings.
//!
//! Pipeline ([`compile`]): bind symbols and infer shapes → fold constants at compile time (any
//! node whose inputs are all constants, including `Shape`-of-static-shape subgraphs, evaluated
//! with the reference interpreter) → fold `BatchNormalization` into the preceding `Conv` →
//! collect every op the device cannot run (one error listing them all) → lower nodes to
//! layers (reshapes become aliases of the same DDR bytes) → group layers (element-wise
//! followers always fuse into their producer; with depth-first, chains of convolutions and
//! pools fuse along the batch axis so intermediates stay in VTCM) → choose a split axis per
//! group, split its output across cores (`mos`) and in time (VTCM budget, max tile size,
//! `ols`) → emit DMA / op / sync instructions with double-buffered tiles, weights multicast
//! once when enabled, and a barrier per layer → allocate DDR scratch by liveness.
//!
//! Depends on `qaic-ir` (input), `qaic-interp` (compile-time constant folding),
//! `qaic-device` (device model and program format), `qaic-tensor`. Must never depend on the
//! simulator, the runtime, the QPC container or a loader. Output is deterministic: the same
//! graph and options give byte-identical programs and constants for any `compile_threads`.
//!
//! ```
//! use qaic_codegen::{compile, CodegenOptions};
//! use qaic_device::{DeviceModel, Variant};
//! use qaic_ir::{Graph, Node, ValueType};
//! use qaic_tensor::{DType, Shape, Tensor};
//!
//! let mut g = Graph::new("tiny");
//! g.set_opset("", 17);
//! let x = g.add_input("x", ValueType::tensor(DType::F32, Shape::known(&[1, 4, 8, 8])));
//! let w = g.add_constant("w", Tensor::from_vec(vec![8, 4, 3, 3], vec![0.1f32; 288]).unwrap());
//! let y = g.add_value("y", None);
//! let mut conv = Node::default();
//! conv.op_type = "Conv".into();
//! conv.name = "conv".into();
//! conv.inputs = vec![Some(x), Some(w)];
//! conv.outputs = vec![Some(y)];
//! conv.attrs.insert("pads".into(), qaic_ir::Attr::Ints(vec![1, 1, 1, 1]));
//! g.add_node(conv);
//! g.outputs.push(y);
//! let dev = DeviceModel::aic100(Variant::Pro16);
//! let out = compile(&g, &dev, &CodegenOptions { num_cores: 4, ..Default::default() }).unwrap();
//! assert_eq!(out.io[1].shape, vec![1, 8, 8, 8]);
//! assert_eq!(out.program.num_cores(), 4);
//! ```

mod emit;
mod fold_int8;
mod prepare;

use qaic_device::{DeviceModel, Program};
use qaic_ir::{Bindings, Graph};
use qaic_tensor::DType;

pub use emit::SUPPORTED_OPS;

/// Errors of code generation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodegenError {
    /// An option is out of range.
    #[error("option {option}: {msg}")]
    Option { option: &'static str, msg: String },
    /// Operators the device cannot run (all of them, not just the first).
    #[error("{} operator(s) not supported by the AIC100 code generator: {}", .0.len(), list_ops(.0))]
    Unsupported(Vec<UnsupportedOp>),
    /// Graph inputs/outputs a QPC cannot carry (all of them): element types without a network
    /// descriptor data type ([`IO_DTYPES`]), empty tensors, sequences and optionals.
    /// Operators the device cannot run are listed too (`ops`, possibly empty).
    #[error("{} graph input/output(s) not supported by the AIC100 code generator: {}{}", .io.len(), .io.iter().map(|u| format!("{} `{}` ({})", if u.is_input { "input" } else { "output" }, u.name, u.reason)).collect::<Vec<_>>().join(", "), if .ops.is_empty() { String::new() } else { format!("; and {} operator(s): {}", .ops.len(), list_ops(.ops)) })]
    UnsupportedIo { io: Vec<UnsupportedIo>, ops: Vec<UnsupportedOp> },
    /// A layer that does not fit the VTCM budget even in its smallest tile.
    #[error("node `{node}` ({op}): cannot be tiled into the VTCM budget of {budget} bytes per core (smallest tile needs {needed} bytes); raise -vtcm-working-set-limit-ratio or lower the batch size")]
    Tiling { node: String, op: String, budget: u64, needed: u64 },
    /// A value whose shape or type stays unknown after shape inference.
    #[error("value `{value}`: {msg}")]
    Shape { value: String, msg: String },
    /// Compile-time evaluation of a constant node failed.
    #[error("constant folding of node `{node}` ({op}) failed: {msg}")]
    Fold { node: String, op: String, msg: String },
    /// The graph itself is invalid.
    #[error("graph: {0}")]
    Graph(String),
    /// The generated program does not validate (a code generator bug).
    #[error("generated program is invalid: {0}")]
    Program(String),
}

/// One operator the device cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOp {
    pub op_type: String,
    pub node: String,
    pub reason: String,
}

fn list_ops(ops: &[UnsupportedOp]) -> String {
    ops.iter().map(|u| format!("{} (node `{}`{})", u.op_type, u.node, if u.reason.is_empty() { String::new() } else { format!(": {}", u.reason) })).collect::<Vec<_>>().join(", ")
}

/// One graph input or output a QPC cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedIo {
    pub is_input: bool,
    pub name: String,
    pub reason: String,
}

/// Element types a QPC's inputs and outputs can have: those with a `networkdesc.bin` data type
/// (`FloatTy`, `Float16Ty`, `Int8Ty`, `UInt8QTy`, `Int16QTy`, `Int32ITy`, `Int64ITy`; the
/// vendor enum has no bool, unsigned 16/32/64-bit, bf16 or f64).
pub const IO_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::I8, DType::U8, DType::I16, DType::I32, DType::I64];

/// Code generation options (the `-aic-*` / `-mos` / `-ols` ... compiler options).
#[derive(Debug, Clone, PartialEq)]
pub struct CodegenOptions {
    /// Cores the network uses (`-aic-num-cores`): 1..=16 on AIC100 2.0, and at most the
    /// device's core count.
    pub num_cores: u32,
    /// Maximum number of cores one layer's output is split across (`-mos`); `None` = all cores.
    pub mos: Option<u32>,
    /// Extra time-splitting factor per core (`-ols`, ≥ 1): each core's share of a layer is cut
    /// into `ols` times more tiles, for finer DMA/compute overlap.
    pub ols: u32,
    /// Largest tile of one tensor in KiB (`-size-split-granularity`, 512..=2048).
    pub size_split_granularity_kib: u32,
    /// Fraction of the 8 MiB VTCM one layer's working set may use
    /// (`-vtcm-working-set-limit-ratio`, 0 < r ≤ 1). Lower → more, smaller tiles.
    pub vtcm_working_set_limit_ratio: f64,
    /// Layers a DDR scratch region stays reserved after its last reader
    /// (`-allocator-dealloc-delay`); larger → more scratch, fewer reuse hazards.
    pub allocator_dealloc_delay: u32,
    /// Depth-first execution (`-aic-depth-first-mode`): chains of convolutions/pools fuse along
    /// the batch axis so intermediates stay in VTCM.
    pub depth_first: bool,
    /// VTCM bytes a depth-first group may use (`-aic-depth-first-mem`, KiB); `None` = the
    /// layer budget.
    pub depth_first_mem_kib: Option<u64>,
    /// Constant tensors every core needs are DMA'd once and multicast
    /// (`-multicast-weights`), lowering DDR reads.
    pub multicast_weights: bool,
    /// `-use-producer-dma`: each output DMA signals a semaphore itself when its data has
    /// landed, and layers synchronise on that count instead of `dma.wait` + barrier, so a
    /// core starts its next layer's constant loads while the other cores' outputs are still
    /// in flight (docs/virtual-aic100.md §8).
    pub use_producer_dma: bool,
    /// Threads generating per-layer code (`-compile-threads`, 0 = all); output bytes never
    /// depend on it.
    pub compile_threads: usize,
    /// Convert float32 to float16 (`-convert-to-fp16`). The conversion is qaic-quant's precision
    /// pass, which the caller runs (qaic-exec does); `true` here is refused with that advice.
    /// Graphs with float16 tensors and `Cast`s compile as they are.
    pub convert_to_fp16: bool,
    /// Symbol bindings applied before shape inference (`-onnx-define-symbol`, batch size).
    pub bindings: Bindings,
    /// Keep constants (weights, biases, requantization parameters) resident in each core's
    /// VTCM, preloaded once when the program is loaded instead of DMA'd from DDR on every
    /// inference, as far as they fit beside the layers' working sets (default on;
    /// docs/virtual-aic100.md §8).
    pub preload_weights: bool,
    /// Pass activations between layers in VTCM: the producing cores multicast their output
    /// slices into a window every core reads, instead of storing them to DDR for the next
    /// layer to load, as far as the windows fit beside the layers' working sets (default on;
    /// docs/virtual-aic100.md §8).
    pub keep_activations: bool,
}

impl Default for CodegenOptions {
    fn default() -> Self {
        CodegenOptions {
            num_cores: 16,
            mos: None,
            ols: 1,
            size_split_granularity_kib: 1024,
            vtcm_working_set_limit_ratio: 1.0,
            allocator_dealloc_delay: 0,
            depth_first: false,
            depth_first_mem_kib: None,
            multicast_weights: false,
            use_producer_dma: false,
            compile_threads: 1,
            convert_to_fp16: false,
            bindings: Bindings::new(),
            preload_weights: true,
            keep_activations: true,
        }
    }
}

/// One network input or output as the program binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoBinding {
    pub name: String,
    pub is_input: bool,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Index of the DDR buffer in [`Program::buffers`] and the byte offset in it (always 0:
    /// every I/O tensor has its own buffer).
    pub buffer: u32,
    pub offset: u64,
    pub size: u64,
    /// Binding index in the network descriptor (inputs first, then outputs, graph order).
    pub binding: u32,
}

/// Per-core figures of the compiled program (for `-aic-perf-metrics`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreMetrics {
    pub macs: u64,
    /// VTCM high-water mark, bytes.
    pub vtcm_bytes: u64,
    /// Estimated DDR traffic, bytes (burst-rounded).
    pub ddr_read_bytes: u64,
    pub ddr_write_bytes: u64,
    pub instructions: u64,
}

/// How one layer (group of fused nodes) was placed.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlacement {
    pub name: String,
    /// Nodes fused into the layer, in order.
    pub nodes: Vec<String>,
    /// Output axis split across cores and in time (`None`: not split).
    pub axis: Option<usize>,
    pub cores: u32,
    /// Tiles per core (the largest).
    pub tiles_per_core: u32,
    /// VTCM bytes per core.
    pub vtcm_bytes: u64,
}

/// Compile-time report: metrics and performance warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Estimated multiply-accumulates per inference.
    pub macs: u64,
    /// Bytes of the constants blob.
    pub constants_bytes: u64,
    /// Bytes of DDR scratch.
    pub scratch_bytes: u64,
    pub cores: Vec<CoreMetrics>,
    pub layers: Vec<LayerPlacement>,
    /// Performance warnings (layers split in time because of VTCM pressure, idle cores).
    pub warnings: Vec<String>,
}

/// Everything code generation produces.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub program: Program,
    /// Contents of the program's `Constants` buffer (`constants.bin`).
    pub constants: Vec<u8>,
    /// Inputs then outputs, in graph order.
    pub io: Vec<IoBinding>,
    pub report: Report,
}

/// Compiles `graph` for `device` with `options`.
pub fn compile(graph: &Graph, device: &DeviceModel, options: &CodegenOptions) -> Result<Compiled, CodegenError> {
    check_options(device, options)?;
    let g = prepare::prepare(graph, &options.bindings)?;
    emit::generate(&g, device, options)
}

fn check_options(dev: &DeviceModel, o: &CodegenOptions) -> Result<(), CodegenError> {
    let opt = |option: &'static str, msg: String| Err(CodegenError::Option { option, msg });
    let max = if dev.hw_version == "2.0" { 16 } else { dev.num_cores };
    if o.num_cores == 0 || o.num_cores > max.min(dev.num_cores) {
        return opt("-aic-num-cores", format!("{} is out of range 1..={} for hardware {} ({})", o.num_cores, max.min(dev.num_cores), dev.hw_version, dev.variant.name()));
    }
    if let Some(m) = o.mos {
        if m == 0 || m > o.num_cores {
            return opt("-mos", format!("{m} must be in 1..={}", o.num_cores));
        }
    }
    if o.ols == 0 || o.ols > 64 {
        return opt("-ols", format!("{} must be in 1..=64", o.ols));
    }
    if !(512..=2048).contains(&o.size_split_granularity_kib) {
        return opt("-size-split-granularity", format!("{} KiB must be in 512..=2048", o.size_split_granularity_kib));
    }
    let r = o.vtcm_working_set_limit_ratio;
    if !(r > 0.0 && r <= 1.0) {
        return opt("-vtcm-working-set-limit-ratio", format!("{r} must be in (0, 1]"));
    }
    if o.convert_to_fp16 {
        return opt(
            "-convert-to-fp16",
            "the code generator compiles fp16 graphs but does not convert them: run qaic_quant::apply_precision with convert_to_fp16 first (qaic-exec does)".into(),
        );
    }
    Ok(())
}
