//! `networkdesc.bin`: the `aicnwdesc.networkDescriptor` protobuf (facts: networkdesc.md §2–§3).
//!
//! The messages are written by hand with `prost` derives, field numbers and types exactly as in
//! the vendor's `AICNetworkDesc.proto` (proto3: implicit-presence scalars, packed repeated
//! numbers). Enum-typed fields are `i32` on the Rust side (unknown values survive a round trip);
//! the JSON rendering (serde) shows known enum values by their proto name and keeps the proto
//! field names.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// `AIC_NETWORK_DESCRIPTION_MAJOR_VERSION`.
pub const NETWORK_DESC_MAJOR_VERSION: u32 = 9;
/// `AIC_NETWORK_DESCRIPTION_MINOR_VERSION`.
pub const NETWORK_DESC_MINOR_VERSION: u32 = 0;

macro_rules! proto_enum {
    ($(#[$m:meta])* $name:ident, $serde_mod:ident { $($(#[$vm:meta])* $var:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
        #[repr(i32)]
        #[allow(non_camel_case_types)]
        pub enum $name { $($(#[$vm])* $var = $val),* }

        impl $name {
            /// The value's name in the `.proto` file.
            pub fn as_str_name(&self) -> &'static str {
                match self { $(Self::$var => stringify!($var)),* }
            }
            /// The value with this `.proto` name.
            pub fn from_str_name(s: &str) -> Option<Self> {
                match s { $(stringify!($var) => Some(Self::$var),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str_name())
            }
        }

        /// serde adapter for an `i32` field holding this enum: known values as names.
        mod $serde_mod {
            use serde::{Deserialize, Deserializer, Serializer};
            pub fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
                match super::$name::try_from(*v) {
                    Ok(e) => s.serialize_str(e.as_str_name()),
                    Err(_) => s.serialize_i32(*v),
                }
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum V { N(i32), S(String) }
                match V::deserialize(d)? {
                    V::N(n) => Ok(n),
                    V::S(s) => super::$name::from_str_name(&s).map(|e| e as i32).ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown {} value {s:?}", stringify!($name)))
                    }),
                }
            }
        }
    };
}

proto_enum! {
    /// `dataType`: element type of an I/O tensor.
    ///
    /// ```
    /// use qaic_qpc::DataType;
    /// assert_eq!(DataType::Float16Ty.element_size(), 2);
    /// assert_eq!(DataType::try_from(7), Ok(DataType::Int64ITy));
    /// ```
    DataType, data_type_serde {
        /// 32-bit float.
        FloatTy = 0,
        /// 16-bit float.
        Float16Ty = 1,
        /// int8 quantized.
        Int8QTy = 2,
        /// uint8 quantized.
        UInt8QTy = 3,
        /// int16 quantized.
        Int16QTy = 4,
        /// int32 quantized.
        Int32QTy = 5,
        /// int32 index.
        Int32ITy = 6,
        /// int64 index.
        Int64ITy = 7,
        /// plain int8.
        Int8Ty = 8,
    }
}

impl DataType {
    /// Bytes per element.
    pub fn element_size(self) -> u64 {
        match self {
            DataType::Int8QTy | DataType::UInt8QTy | DataType::Int8Ty => 1,
            DataType::Float16Ty | DataType::Int16QTy => 2,
            DataType::FloatTy | DataType::Int32QTy | DataType::Int32ITy => 4,
            DataType::Int64ITy => 8,
        }
    }
}

proto_enum! {
    /// `networkDescLayout`: memory layout of a tensor.
    NetworkDescLayout, layout_serde {
        /// Flat, row-major.
        FlatNXYD = 0,
        /// D32 untiled.
        D32Untiled = 1,
        /// D32 untiled weights.
        D32UntiledWeights = 2,
        /// D32 channel-major 8x8 tiles.
        D32ChannelMajor8x8 = 3,
        /// D32 channel-major 1x64 tiles.
        D32ChannelMajor1x64 = 4,
        /// D32 spatial-major 8x8 tiles.
        D32SpatialMajor8x8 = 5,
        /// D32 spatial-major 1x64 tiles.
        D32SpatialMajor1x64 = 6,
        /// D4 channel-major 8x8 tiles.
        D4ChannelMajor8x8 = 7,
        /// D4 spatial-major 8x8 tiles.
        D4SpatialMajor8x8 = 8,
        /// Packed D4 channel-major 8x8 tiles.
        PackedD4ChannelMajor8x8 = 9,
        /// Packed D4 spatial-major 8x8 tiles.
        PackedD4SpatialMajor8x8 = 10,
    }
}

proto_enum! {
    /// `transformKind`: one host pre/post-processing step.
    TransformKind, transform_kind_serde {
        /// Convert between data types.
        ConvertTransform = 0,
        /// Convert to a tiled D32/D4 layout (input side).
        ConvertToD32Transform = 1,
        /// Convert from a tiled layout (output side).
        ConvertFromD32Transform = 2,
        /// Dequantize (output side).
        DequantizeTransform = 3,
        /// Transpose by `shuffle`.
        TransposeTransform = 4,
        /// Quantize (input side).
        QuantizeTransform = 5,
        /// Copy between a host tensor and a DMA buffer.
        CopyDMABufferTransform = 6,
    }
}

proto_enum! {
    /// `direction`, from the device's point of view.
    Direction, direction_serde {
        /// Inbound (host to device).
        In = 0,
        /// Outbound (device to host).
        Out = 1,
    }
}

proto_enum! {
    /// `CRCAlgorithm` of on-device DMA-buffer CRCs.
    CrcAlgorithm, crc_algorithm_serde {
        /// Run the CRC sequentially.
        CRC_BASIC_ALGORITHM = 0,
    }
}

/// `networkDescriptor`, the root message of `networkdesc.bin`.
///
/// ```
/// use prost::Message;
/// use qaic_qpc::NetworkDescriptor;
/// let nd = NetworkDescriptor { major_version: 9, network_name: "tiny".into(), num_cores: 1, ..Default::default() };
/// let bytes = nd.encode_to_vec();
/// assert_eq!(&bytes[..2], &[0x08, 0x09]);
/// assert_eq!(NetworkDescriptor::decode_bytes(&bytes)?, nd);
/// assert!(nd.to_json()?.contains("\"network_name\": \"tiny\""));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkDescriptor {
    /// Descriptor major version (9).
    #[prost(uint32, tag = "1")]
    pub major_version: u32,
    /// Descriptor minor version (0).
    #[prost(uint32, tag = "2")]
    pub minor_version: u32,
    /// Program name.
    #[prost(string, tag = "3")]
    pub network_name: String,
    /// Network inputs, in user-buffer order.
    #[prost(message, repeated, tag = "4")]
    pub inputs: Vec<IoBinding>,
    /// Network outputs, in user-buffer order (after all inputs).
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<IoBinding>,
    /// Device-visible DMA buffers; position = `buffer_num`.
    #[prost(message, repeated, tag = "6")]
    pub dma_buffers: Vec<DmaBuffer>,
    /// NSP cores the network was compiled for ("Number of NSP required").
    #[prost(uint32, tag = "7")]
    pub num_cores: u32,
    /// Threads per core.
    #[prost(uint32, tag = "8")]
    pub num_threads: u32,
    /// HVX threads per core.
    #[prost(uint32, tag = "9")]
    pub num_hvx_threads: u32,
    /// Per-thread group index.
    #[prost(uint32, repeated, tag = "10")]
    pub thread_groups: Vec<u32>,
    /// Number of thread groups.
    #[prost(uint32, tag = "11")]
    pub thread_group_issue_count: u32,
    /// Profiling configuration.
    #[prost(message, optional, tag = "12")]
    pub stats: Option<Stats>,
    /// Thread group names, e.g. "HVX", "HMX".
    #[prost(string, repeated, tag = "13")]
    pub thread_group_names: Vec<String>,
    /// Compiled batch size.
    #[prost(int32, tag = "14")]
    pub batch_size: i32,
    /// On-device CRC of DMA buffers.
    #[prost(message, optional, tag = "16")]
    pub crc_info: Option<CrcInfo>,
    /// Cluster offsets (carried through, not interpreted).
    #[prost(uint32, repeated, tag = "17")]
    pub cluster_offsets: Vec<u32>,
    /// Allowed combinations of I/O shapes (dynamic shapes).
    #[prost(message, repeated, tag = "18")]
    pub allowed_shapes: Vec<IoShapes>,
}

impl NetworkDescriptor {
    /// Decodes a serialized descriptor (the whole `networkdesc.bin` segment).
    pub fn decode_bytes(bytes: &[u8]) -> Result<NetworkDescriptor> {
        Ok(<NetworkDescriptor as prost::Message>::decode(bytes)?)
    }

    /// Pretty JSON with the proto field names; enum values by name.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Parses the JSON produced by [`NetworkDescriptor::to_json`] (enum values by name or number;
    /// missing fields take their default).
    pub fn from_json(json: &str) -> serde_json::Result<NetworkDescriptor> {
        serde_json::from_str(json)
    }
}

/// `IOBinding`: one network input or output.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct IoBinding {
    /// I/O name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Tensor before the transform sequence (inputs: the user's tensor).
    #[prost(message, optional, tag = "2")]
    pub io_initial: Option<IoDescriptor>,
    /// Tensor after the transform sequence (outputs: the user's tensor).
    #[prost(message, optional, tag = "3")]
    pub io_transformed: Option<IoDescriptor>,
    /// Ordered transform steps.
    #[prost(message, repeated, tag = "4")]
    pub transformseq: Vec<Transform>,
    /// The user may pass a shorter buffer.
    #[prost(bool, tag = "5")]
    pub is_partial_allowed: bool,
    /// Alignment in the destination DMA buffer.
    #[prost(uint32, tag = "6")]
    pub align: u32,
}

impl IoBinding {
    /// The `CopyDMABuffer` step of the sequence, if any.
    pub fn copy_step(&self) -> Option<&Transform> {
        self.transformseq.iter().find(|t| t.kind == TransformKind::CopyDMABufferTransform as i32)
    }
}

/// `IODescriptor`: type, quantization and shape of a tensor.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct IoDescriptor {
    /// Element type ([`DataType`]).
    #[prost(enumeration = "DataType", tag = "1")]
    #[serde(with = "data_type_serde")]
    pub r#type: i32,
    /// Quantization scale.
    #[prost(float, tag = "2")]
    pub qscale: f32,
    /// Quantization offset.
    #[prost(int32, tag = "3")]
    pub qoffset: i32,
    /// Dimensions.
    #[prost(int32, repeated, tag = "4")]
    pub dims: Vec<i32>,
    /// Memory layout ([`NetworkDescLayout`]).
    #[prost(enumeration = "NetworkDescLayout", tag = "5")]
    #[serde(with = "layout_serde")]
    pub layout: i32,
}

impl IoDescriptor {
    /// Bytes of the tensor as the runtime computes them: element size × product of the
    /// **non-zero** dims. `None` for an unknown type, a negative dim, or overflow.
    ///
    /// ```
    /// let d = qaic_qpc::IoDescriptor { dims: vec![1, 4, 0], ..Default::default() };
    /// assert_eq!(d.byte_size(), Some(16));
    /// ```
    pub fn byte_size(&self) -> Option<u64> {
        tensor_bytes(self.r#type, &self.dims)
    }
}

/// Element size × product of the non-zero dims (runtime rule); `None` if not computable.
pub fn tensor_bytes(ty: i32, dims: &[i32]) -> Option<u64> {
    let mut n = DataType::try_from(ty).ok()?.element_size();
    for &d in dims {
        let d = u64::try_from(d).ok()?;
        if d != 0 {
            n = n.checked_mul(d)?;
        }
    }
    Some(n)
}

/// `transform`: one step of a pre/post-processing sequence.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Transform {
    /// Step kind ([`TransformKind`]).
    #[prost(enumeration = "TransformKind", tag = "1")]
    #[serde(with = "transform_kind_serde")]
    pub kind: i32,
    /// Result element type ([`DataType`]).
    #[prost(enumeration = "DataType", tag = "2")]
    #[serde(with = "data_type_serde")]
    pub r#type: i32,
    /// Result quantization scale.
    #[prost(float, tag = "3")]
    pub scale: f32,
    /// Result quantization offset.
    #[prost(int32, tag = "4")]
    pub offset: i32,
    /// Result dims.
    #[prost(int32, repeated, tag = "5")]
    pub dims: Vec<i32>,
    /// Result layout ([`NetworkDescLayout`]).
    #[prost(enumeration = "NetworkDescLayout", tag = "6")]
    #[serde(with = "layout_serde")]
    pub layout: i32,
    /// Permutation of a transpose.
    #[prost(int32, repeated, tag = "7")]
    pub shuffle: Vec<i32>,
    /// Padding of a ConvertToD32 step.
    #[prost(message, optional, tag = "8")]
    pub convert_to_d32: Option<transform::ConvertToD32>,
    /// Parameters of a CopyDMABuffer step.
    #[prost(message, optional, tag = "9")]
    pub copy_dma_buffer: Option<transform::CopyDmaBuffer>,
}

/// Nested messages of [`Transform`].
pub mod transform {
    use serde::{Deserialize, Serialize};

    /// `transform.ConvertToD32`: padding.
    #[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ConvertToD32 {
        /// Padding value.
        #[prost(int32, tag = "1")]
        pub padding_val: i32,
        /// X padding before.
        #[prost(int32, tag = "2")]
        pub x_pad_begin: i32,
        /// Y padding before.
        #[prost(int32, tag = "3")]
        pub y_pad_begin: i32,
        /// X padding after.
        #[prost(int32, tag = "4")]
        pub x_pad_end: i32,
        /// Y padding after.
        #[prost(int32, tag = "5")]
        pub y_pad_end: i32,
        /// D padding after.
        #[prost(int32, tag = "6")]
        pub d_pad_end: i32,
    }

    /// `transform.CopyDMABuffer`: where the tensor goes in (or comes from) a DMA buffer.
    #[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
    #[serde(default)]
    pub struct CopyDmaBuffer {
        /// Read or write of the DMA buffer ([`super::Direction`]).
        #[prost(enumeration = "super::Direction", tag = "1")]
        #[serde(with = "super::direction_serde")]
        pub dir: i32,
        /// Byte offset in the DMA buffer (partial inputs: offset of the header slot).
        #[prost(uint32, tag = "2")]
        pub offset: u32,
        /// Index into `dma_buffers`.
        #[prost(uint32, tag = "3")]
        pub buffer_num: u32,
    }
}

/// `DMABuffer`: a device-visible buffer.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct DmaBuffer {
    /// Size in bytes (maximum).
    #[prost(uint32, tag = "1")]
    pub size: u32,
    /// Direction ([`Direction`]).
    #[prost(enumeration = "Direction", tag = "2")]
    #[serde(with = "direction_serde")]
    pub dir: i32,
}

/// `tensorShape`: one allowed shape of one I/O.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct TensorShape {
    /// Element type ([`DataType`]).
    #[prost(enumeration = "DataType", tag = "1")]
    #[serde(with = "data_type_serde")]
    pub r#type: i32,
    /// Dimensions.
    #[prost(int32, repeated, tag = "2")]
    pub dims: Vec<i32>,
}

/// `IOShapes`: one allowed combination (inputs first, then outputs).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct IoShapes {
    /// One shape per I/O.
    #[prost(message, repeated, tag = "1")]
    pub shapes: Vec<TensorShape>,
}

/// `CRCInfo`: on-device CRC of DMA buffers.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CrcInfo {
    /// DMA buffer receiving the results.
    #[prost(uint32, tag = "1")]
    pub buff_num: u32,
    /// Regions to checksum.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<CrcEntry>,
}

/// `CRCEntry`: one checksummed region.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CrcEntry {
    /// Buffer to checksum.
    #[prost(uint32, tag = "1")]
    pub dma_buffer_num: u32,
    /// Start offset.
    #[prost(uint32, tag = "2")]
    pub offset: u32,
    /// Region size.
    #[prost(uint32, tag = "3")]
    pub size: u32,
    /// Slot in the output buffer.
    #[prost(uint32, tag = "4")]
    pub crc_entry_idx: u32,
    /// Bytes from `offset` to include.
    #[prost(uint32, tag = "5")]
    pub begin_crc_block_size: u32,
    /// Bytes at the end of the region to include.
    #[prost(uint32, tag = "6")]
    pub end_crc_block_size: u32,
    /// Stride interval in bytes.
    #[prost(uint32, tag = "7")]
    pub stride_interval: u32,
    /// Bytes per stride (0 = no stride).
    #[prost(uint32, tag = "8")]
    pub stride_size: u32,
    /// Algorithm ([`CrcAlgorithm`]).
    #[prost(enumeration = "CrcAlgorithm", tag = "9")]
    #[serde(with = "crc_algorithm_serde")]
    pub algorithm: i32,
}

/// `Stats`: profiling configuration.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// DMA buffer holding the stats.
    #[prost(uint32, tag = "1")]
    pub buff_num: u32,
    /// `-aic-stats`.
    #[prost(bool, tag = "2")]
    pub print_stats: bool,
    /// `-aic-stats-level`.
    #[prost(int32, tag = "3")]
    pub stats_level: i32,
    /// `-aic-stats-nohostsync`.
    #[prost(bool, tag = "4")]
    pub stats_no_host_sync: bool,
    /// `-aic-op-stats`.
    #[prost(bool, tag = "5")]
    pub print_op_stats: bool,
    /// `-aic-op-stats-level`.
    #[prost(int32, tag = "6")]
    pub op_stats_level: i32,
    /// `-aic-stats-batchsize`.
    #[prost(int32, tag = "7")]
    pub batch_size: i32,
    /// `-aic-ddr-stats`.
    #[prost(bool, tag = "8")]
    pub count_ddr_bw: bool,
    /// Micro-timer frequency (ms).
    #[prost(int32, tag = "9")]
    pub utimer_freq_ms: i32,
    /// PMU events.
    #[prost(int32, repeated, tag = "10")]
    pub pmu_events: Vec<i32>,
    /// Ops per core.
    #[prost(int32, repeated, tag = "11")]
    pub ops_per_core: Vec<i32>,
    /// Op names per core.
    #[prost(message, repeated, tag = "12")]
    pub core_op_name_kinds: Vec<CoreOpNameKinds>,
    /// `-aic-pmu-stats-level`.
    #[prost(int32, tag = "13")]
    pub pmu_stats_level: i32,
}

/// `CoreOpNameKinds`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct CoreOpNameKinds {
    /// Per thread group.
    #[prost(message, repeated, tag = "1")]
    pub tg_op_name_kinds: Vec<ThreadGroupOpNameKinds>,
}

/// `ThreadGroupOpNameKinds`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadGroupOpNameKinds {
    /// Ops.
    #[prost(message, repeated, tag = "1")]
    pub op_name_kinds: Vec<OpNameKind>,
}

/// `OpNameKind`: description of one op for profiling.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct OpNameKind {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Kind.
    #[prost(string, tag = "2")]
    pub kind: String,
    /// Type.
    #[prost(string, tag = "3")]
    pub r#type: String,
    /// Memory.
    #[prost(string, tag = "4")]
    pub memory: String,
    /// Shape.
    #[prost(string, tag = "5")]
    pub shape: String,
    /// Operand.
    #[prost(string, tag = "6")]
    pub operand: String,
    /// Output size.
    #[prost(uint64, tag = "7")]
    pub output_size: u64,
    /// Attributes.
    #[prost(string, tag = "8")]
    pub attributes: String,
    /// Operands.
    #[prost(string, repeated, tag = "9")]
    pub operands: Vec<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost::Message;

    /// The 94-byte descriptor of networkdesc.md §7.
    pub(crate) const TINY: [u8; 94] = [
        0x08, 0x09, 0x1a, 0x04, 0x74, 0x69, 0x6e, 0x79, 0x22, 0x20, 0x0a, 0x01, 0x78, 0x12, 0x04, 0x22, 0x02, 0x01,
        0x04, 0x1a, 0x04, 0x22, 0x02, 0x01, 0x04, 0x22, 0x0d, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02,
        0x01, 0x04, 0x4a, 0x00, 0x30, 0x04, 0x2a, 0x24, 0x0a, 0x01, 0x79, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04, 0x1a,
        0x04, 0x22, 0x02, 0x01, 0x04, 0x22, 0x11, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04,
        0x4a, 0x04, 0x08, 0x01, 0x18, 0x01, 0x30, 0x04, 0x32, 0x02, 0x08, 0x10, 0x32, 0x04, 0x08, 0x10, 0x10, 0x01,
        0x38, 0x01, 0x70, 0x01,
    ];

    pub(crate) fn tiny() -> NetworkDescriptor {
        let io = |name: &str, dir: Direction, buffer_num: u32| IoBinding {
            name: name.into(),
            io_initial: Some(IoDescriptor { dims: vec![1, 4], ..Default::default() }),
            io_transformed: Some(IoDescriptor { dims: vec![1, 4], ..Default::default() }),
            transformseq: vec![Transform {
                kind: TransformKind::CopyDMABufferTransform as i32,
                scale: 1.0,
                dims: vec![1, 4],
                copy_dma_buffer: Some(transform::CopyDmaBuffer { dir: dir as i32, offset: 0, buffer_num }),
                ..Default::default()
            }],
            align: 4,
            ..Default::default()
        };
        NetworkDescriptor {
            major_version: 9,
            network_name: "tiny".into(),
            inputs: vec![io("x", Direction::In, 0)],
            outputs: vec![io("y", Direction::Out, 1)],
            dma_buffers: vec![
                DmaBuffer { size: 16, dir: Direction::In as i32 },
                DmaBuffer { size: 16, dir: Direction::Out as i32 },
            ],
            num_cores: 1,
            batch_size: 1,
            ..Default::default()
        }
    }

    #[test]
    fn facts_sheet_descriptor_encodes_byte_for_byte() {
        assert_eq!(tiny().encode_to_vec(), TINY);
        assert_eq!(NetworkDescriptor::decode_bytes(&TINY).unwrap(), tiny());
    }

    #[test]
    fn json_round_trip_uses_proto_names() {
        let json = tiny().to_json().unwrap();
        assert!(json.contains("\"kind\": \"CopyDMABufferTransform\""), "{json}");
        assert!(json.contains("\"dir\": \"Out\""), "{json}");
        assert!(json.contains("\"type\": \"FloatTy\""), "{json}");
        assert_eq!(NetworkDescriptor::from_json(&json).unwrap(), tiny());
    }

    #[test]
    fn unknown_enum_values_survive() {
        let d = IoDescriptor { r#type: 42, ..Default::default() };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains("\"type\":42"), "{json}");
        assert_eq!(IoDescriptor::decode(&*d.encode_to_vec()).unwrap().r#type, 42);
        assert_eq!(d.byte_size(), None);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(NetworkDescriptor::decode_bytes(&[0x0a, 0xff]).is_err());
    }
}
