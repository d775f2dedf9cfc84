//! `TensorProto` (and sparse, sequence, optional values) to `qaic_tensor` values, including
//! external data files.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use qaic_tensor::{DType, Tensor, TensorError, Value};

use crate::file::{decode_binary, map_file};
use crate::proto::{
    tensor_proto::DataLocation, optional_proto, sequence_proto, OptionalProto, SequenceProto,
    SparseTensorProto, TensorProto,
};
use crate::OnnxError;

/// Largest dense tensor a sparse tensor may expand to.
const MAX_DENSIFIED_BYTES: usize = 16 << 30;

/// Where tensors come from: the label for messages and the folder that external data paths are
/// relative to. Memory maps of external files are shared by all tensors of one load.
#[derive(Debug)]
pub struct TensorSource {
    origin: String,
    dir: Option<PathBuf>,
    maps: Mutex<HashMap<PathBuf, Bytes>>,
}

impl TensorSource {
    /// Tensors of the model file `origin`, whose external data lives under `dir`.
    pub fn new(origin: impl Into<String>, dir: Option<&Path>) -> TensorSource {
        TensorSource { origin: origin.into(), dir: dir.map(Path::to_path_buf), maps: Mutex::new(HashMap::new()) }
    }

    /// The label used in messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Converts a `TensorProto` to a tensor. Raw data (inline or external) is not copied.
    ///
    /// ```
    /// use qaic_onnx::{proto::TensorProto, TensorSource};
    /// let tp = TensorProto { dims: vec![2], data_type: Some(7), int64_data: vec![4, 5], ..Default::default() };
    /// let t = TensorSource::new("example", None).tensor(&tp).unwrap();
    /// assert_eq!(t.to_vec::<i64>().unwrap(), vec![4, 5]);
    /// ```
    pub fn tensor(&self, tp: &TensorProto) -> Result<Tensor, OnnxError> {
        let name = tp.name();
        let err = |msg: String| OnnxError::tensor(&self.origin, name, msg);
        if tp.segment.is_some() {
            return Err(OnnxError::not_supported(&self.origin, format!("tensor `{name}` is stored in segments")));
        }
        let dtype = tensor_dtype(tp.data_type(), &self.origin, name)?;
        let shape = tp
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension {d} in dims {:?}", tp.dims))))
            .collect::<Result<Vec<usize>, _>>()?;
        let n = qaic_tensor::num_elements(&shape).ok_or_else(|| err(format!("dims {:?} overflow", tp.dims)))?;
        let tensor_err = |e: TensorError| err(e.to_string());

        if tp.data_location() == DataLocation::External {
            if dtype == DType::String {
                return Err(err("string tensors cannot use external data".into()));
            }
            let bytes = self.external_bytes(tp, dtype.storage_bytes(n))?;
            return Tensor::from_bytes(dtype, shape, bytes).map_err(tensor_err);
        }
        if let Some(raw) = &tp.raw_data {
            if dtype == DType::String {
                return Err(err("string tensors must use string_data, not raw_data".into()));
            }
            if cfg!(target_endian = "big") && dtype.bits() > 8 {
                return Err(OnnxError::not_supported(&self.origin, "raw tensor data on a big-endian host"));
            }
            return Tensor::from_bytes(dtype, shape, raw.clone()).map_err(tensor_err);
        }
        typed_fields(tp, dtype, shape, n).map_err(err)
    }

    /// Densifies a sparse tensor (`SparseTensorProto`).
    pub fn sparse_tensor(&self, sp: &SparseTensorProto) -> Result<Tensor, OnnxError> {
        let values = sp
            .values
            .as_ref()
            .ok_or_else(|| OnnxError::invalid(&self.origin, "sparse tensor without values"))?;
        let name = values.name();
        let err = |msg: String| OnnxError::tensor(&self.origin, name, format!("sparse tensor: {msg}"));
        let shape = sp
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension in dims {:?}", sp.dims))))
            .collect::<Result<Vec<usize>, _>>()?;
        let n = qaic_tensor::num_elements(&shape).ok_or_else(|| err("dims overflow".into()))?;
        let vals = self.tensor(values)?;
        // Densifying allocates the whole tensor: refuse absurd sizes instead of aborting on
        // allocation failure (a few bytes of protobuf can declare any dims).
        let dense_bytes = vals.dtype().size_of().unwrap_or(24).checked_mul(n);
        if dense_bytes.is_none_or(|b| b > MAX_DENSIFIED_BYTES) {
            return Err(err(format!(
                "dense form of dims {:?} would exceed {} GiB",
                sp.dims,
                MAX_DENSIFIED_BYTES >> 30
            )));
        }
        let nnz = vals.len();
        if vals.rank() != 1 {
            return Err(err(format!("values must be 1-D, got shape {:?}", vals.shape())));
        }
        let idx_t = match &sp.indices {
            Some(i) => self.tensor(i)?,
            None => return Err(err("no indices".into())),
        };
        if idx_t.dtype() != DType::I64 {
            return Err(err(format!("indices must be int64, got {}", idx_t.dtype())));
        }
        let idx = idx_t.view::<i64>().map_err(|e| err(e.to_string()))?;
        let rank = shape.len();
        // Indices are either linear ([NNZ]) or coordinates ([NNZ, rank]).
        let linear: Vec<usize> = match idx_t.shape() {
            [k] if *k == nnz => idx
                .iter()
                .map(|&i| usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| err(format!("index {i} out of range"))))
                .collect::<Result<_, _>>()?,
            [k, r] if *k == nnz && *r == rank => {
                let strides = qaic_tensor::strides(&shape);
                (0..nnz)
                    .map(|e| {
                        let mut off = 0usize;
                        for d in 0..rank {
                            let i = idx[e * rank + d];
                            let i = usize::try_from(i)
                                .ok()
                                .filter(|&i| i < shape[d])
                                .ok_or_else(|| err(format!("index {i} out of range in dimension {d}")))?;
                            off += i * strides[d];
                        }
                        Ok(off)
                    })
                    .collect::<Result<_, OnnxError>>()?
            }
            s => return Err(err(format!("indices shape {s:?} does not match {nnz} values of a rank-{rank} tensor"))),
        };
        let dtype = vals.dtype();
        if dtype == DType::String {
            let src = vals.strings().map_err(|e| err(e.to_string()))?;
            let mut out = vec![Vec::new(); n];
            for (k, &o) in linear.iter().enumerate() {
                out[o] = src[k].clone();
            }
            return Tensor::from_strings(shape, out).map_err(|e| err(e.to_string()));
        }
        let size = dtype
            .size_of()
            .ok_or_else(|| OnnxError::not_supported(&self.origin, format!("sparse tensor `{name}` of packed type {dtype}")))?;
        let src = vals.raw_bytes().map_err(|e| err(e.to_string()))?;
        let mut out = vec![0u8; n * size];
        for (k, &o) in linear.iter().enumerate() {
            out[o * size..(o + 1) * size].copy_from_slice(&src[k * size..(k + 1) * size]);
        }
        Tensor::from_bytes(dtype, shape, Bytes::from(out)).map_err(|e| err(e.to_string()))
    }

    /// The bytes of a tensor stored in an external file, checked against the file's size.
    fn external_bytes(&self, tp: &TensorProto, need: usize) -> Result<Bytes, OnnxError> {
        let name = tp.name();
        let err = |msg: String| OnnxError::external(&self.origin, name, msg);
        let mut location = None;
        let (mut offset, mut length, mut checksum) = (None, None, None);
        for e in &tp.external_data {
            match e.key() {
                "location" => location = Some(e.value()),
                "offset" => offset = Some(parse_size(e.value()).ok_or_else(|| err(format!("bad offset `{}`", e.value())))?),
                "length" => length = Some(parse_size(e.value()).ok_or_else(|| err(format!("bad length `{}`", e.value())))?),
                "checksum" => checksum = Some(e.value()),
                other => tracing::debug!(tensor = name, key = other, "ignoring unknown external_data key"),
            }
        }
        let location = location.filter(|l| !l.is_empty()).ok_or_else(|| err("no `location` entry".into()))?;
        let dir = self
            .dir
            .as_deref()
            .ok_or_else(|| err(format!("`{location}` cannot be resolved: the model was not read from a folder")))?;
        let path = resolve_inside(dir, location).map_err(err)?;
        let file = self.mapped(&path)?;
        let size = file.len();
        let offset = offset.unwrap_or(0);
        if offset > size {
            return Err(err(format!("offset {offset} is beyond the end of `{location}` ({size} bytes)")));
        }
        let length = length.unwrap_or(size - offset);
        if length > size - offset {
            return Err(err(format!(
                "declares {length} bytes at offset {offset}, but `{location}` has only {} bytes there ({size} bytes in all)",
                size - offset
            )));
        }
        if length != need {
            return Err(err(format!(
                "the tensor needs {need} bytes, but its external data in `{location}` is {length} bytes (offset {offset})"
            )));
        }
        if let Some(sum) = checksum {
            self.check_sha1(&path, &file, sum).map_err(err)?;
        }
        Ok(file.slice(offset..offset + length))
    }

    fn mapped(&self, path: &Path) -> Result<Bytes, OnnxError> {
        let mut maps = self.maps.lock().map_err(|_| OnnxError::Internal("external data cache poisoned".into()))?;
        if let Some(b) = maps.get(path) {
            return Ok(b.clone());
        }
        let b = map_file(path)?;
        maps.insert(path.to_path_buf(), b.clone());
        Ok(b)
    }

    fn check_sha1(&self, path: &Path, file: &Bytes, expected: &str) -> Result<(), String> {
        let got = sha1_smol::Sha1::from(&file[..]).digest().to_string();
        if got.eq_ignore_ascii_case(expected.trim()) {
            Ok(())
        } else {
            Err(format!("SHA-1 of `{}` is {got}, the model declares {expected}", path.display()))
        }
    }
}

fn parse_size(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok()
}

/// Resolves `location` under `dir`, refusing absolute paths and paths that leave `dir`
/// (lexically with `..`, or through a symbolic link).
fn resolve_inside(dir: &Path, location: &str) -> Result<PathBuf, String> {
    let rel = Path::new(location);
    if rel.is_absolute() || rel.has_root() || location.starts_with('/') || location.starts_with('\\') {
        return Err(format!("location `{location}` is an absolute path; it must be relative to the model's folder"));
    }
    let mut depth = 0i64;
    for c in rel.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("location `{location}` is an absolute path"));
            }
        }
        if depth < 0 {
            return Err(format!("location `{location}` escapes the model's folder"));
        }
    }
    let joined = dir.join(rel);
    let canon_dir = dir.canonicalize().map_err(|e| format!("model folder `{}`: {e}", dir.display()))?;
    let canon = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("file `{}` not found", joined.display()),
        _ => format!("`{}`: {e}", joined.display()),
    })?;
    if !canon.starts_with(&canon_dir) {
        return Err(format!(
            "location `{location}` resolves to `{}`, outside the model's folder `{}`",
            canon.display(),
            canon_dir.display()
        ));
    }
    if !canon.is_file() {
        return Err(format!("`{}` is not a regular file", canon.display()));
    }
    Ok(canon)
}

/// Maps an ONNX data type number.
fn tensor_dtype(v: i32, origin: &str, name: &str) -> Result<DType, OnnxError> {
    DType::from_onnx(v).ok_or_else(|| match v {
        0 => OnnxError::tensor(origin, name, "data_type is UNDEFINED (0)"),
        _ => OnnxError::tensor(origin, name, format!("unknown data_type {v}")),
    })
}

/// A tensor from the type-specific repeated fields (`float_data`, `int32_data`, ...).
fn typed_fields(tp: &TensorProto, dtype: DType, shape: Vec<usize>, n: usize) -> Result<Tensor, String> {
    use DType::*;
    type Msg = std::string::String;
    let count = |got: usize, expected: usize, field: &str| -> Result<(), Msg> {
        if got == expected {
            Ok(())
        } else if got == 0 {
            Err(format!("{dtype} tensor of shape {shape:?} has no data ({field}, raw_data and external data are all empty)"))
        } else {
            Err(format!("{dtype} tensor of shape {shape:?} needs {expected} values in {field}, got {got}"))
        }
    };
    let t = |r: Result<Tensor, TensorError>| r.map_err(|e| e.to_string());
    // int32_data holds narrower integers and bit patterns; values must fit the target type.
    fn narrow<T: TryFrom<i32>>(data: &[i32], dtype: DType) -> Result<Vec<T>, std::string::String> {
        data.iter()
            .enumerate()
            .map(|(i, &v)| T::try_from(v).map_err(|_| format!("int32_data[{i}] = {v} is out of range for {dtype}")))
            .collect()
    }
    match dtype {
        F32 => {
            count(tp.float_data.len(), n, "float_data")?;
            t(Tensor::from_vec(shape, tp.float_data.clone()))
        }
        Complex64 => {
            count(tp.float_data.len(), 2 * n, "float_data")?;
            let b: Vec<u8> = tp.float_data.iter().flat_map(|v| v.to_le_bytes()).collect();
            t(Tensor::from_bytes(dtype, shape, Bytes::from(b)))
        }
        F64 => {
            count(tp.double_data.len(), n, "double_data")?;
            t(Tensor::from_vec(shape, tp.double_data.clone()))
        }
        Complex128 => {
            count(tp.double_data.len(), 2 * n, "double_data")?;
            let b: Vec<u8> = tp.double_data.iter().flat_map(|v| v.to_le_bytes()).collect();
            t(Tensor::from_bytes(dtype, shape, Bytes::from(b)))
        }
        I64 => {
            count(tp.int64_data.len(), n, "int64_data")?;
            t(Tensor::from_vec(shape, tp.int64_data.clone()))
        }
        U64 => {
            count(tp.uint64_data.len(), n, "uint64_data")?;
            t(Tensor::from_vec(shape, tp.uint64_data.clone()))
        }
        U32 => {
            count(tp.uint64_data.len(), n, "uint64_data")?;
            let v = tp
                .uint64_data
                .iter()
                .enumerate()
                .map(|(i, &v)| u32::try_from(v).map_err(|_| format!("uint64_data[{i}] = {v} is out of range for u32")))
                .collect::<Result<Vec<u32>, _>>()?;
            t(Tensor::from_vec(shape, v))
        }
        String => {
            count(tp.string_data.len(), n, "string_data")?;
            t(Tensor::from_strings(shape, tp.string_data.iter().map(|b| b.to_vec()).collect()))
        }
        I32 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, tp.int32_data.clone()))
        }
        I16 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, narrow::<i16>(&tp.int32_data, dtype)?))
        }
        I8 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, narrow::<i8>(&tp.int32_data, dtype)?))
        }
        U16 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, narrow::<u16>(&tp.int32_data, dtype)?))
        }
        U8 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, narrow::<u8>(&tp.int32_data, dtype)?))
        }
        Bool => {
            count(tp.int32_data.len(), n, "int32_data")?;
            t(Tensor::from_vec(shape, tp.int32_data.iter().map(|&v| v != 0).collect::<Vec<bool>>()))
        }
        // Bit patterns of 16-bit floats, one per int32.
        F16 | BF16 => {
            count(tp.int32_data.len(), n, "int32_data")?;
            let bits = narrow::<u16>(&tp.int32_data, dtype)?;
            let b: Vec<u8> = bits.iter().flat_map(|v| v.to_le_bytes()).collect();
            t(Tensor::from_bytes(dtype, shape, Bytes::from(b)))
        }
        // One byte per int32: an 8-bit float's bit pattern, or a byte packing 2 (4-bit) or 4
        // (2-bit) elements, first element in the least significant bits.
        F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 | U4 | I4 | F4E2M1 | U2 | I2 => {
            let bytes = dtype.storage_bytes(n);
            count(tp.int32_data.len(), bytes, "int32_data")?;
            let b = tp
                .int32_data
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    // Signed 4/2-bit packs may be written sign-extended; keep the low byte.
                    if (-128..=255).contains(&v) {
                        Ok(v as u8)
                    } else {
                        Err(format!("int32_data[{i}] = {v} does not fit a byte of packed {dtype} data"))
                    }
                })
                .collect::<Result<Vec<u8>, _>>()?;
            t(Tensor::from_bytes(dtype, shape, Bytes::from(b)))
        }
    }
}

/// Reads a standalone binary `TensorProto` file (the ONNX node tests' `input_0.pb` files).
/// Raw data is sliced from the memory-mapped file; external data resolves relative to the
/// file's folder.
pub fn read_tensor_file(path: &Path) -> Result<Tensor, OnnxError> {
    let (bytes, origin, dir) = read_pb(path, "TensorProto")?;
    let tp: TensorProto = decode_binary(bytes, &origin, "TensorProto")?;
    TensorSource::new(origin, Some(&dir)).tensor(&tp)
}

/// The kind of value a standalone `.pb` file holds. The file itself does not say: the caller
/// knows it from the model's input or output type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PbKind {
    Tensor,
    Sequence,
    Optional,
}

/// Reads a standalone `TensorProto`, `SequenceProto` or `OptionalProto` file as a run-time
/// [`Value`]. `seq_elem` gives the element type of a sequence when the file holds an empty one.
pub fn read_value_file(path: &Path, kind: PbKind, seq_elem: Option<DType>) -> Result<Value, OnnxError> {
    let what = match kind {
        PbKind::Tensor => "TensorProto",
        PbKind::Sequence => "SequenceProto",
        PbKind::Optional => "OptionalProto",
    };
    let (bytes, origin, dir) = read_pb(path, what)?;
    let src = TensorSource::new(origin.clone(), Some(&dir));
    match kind {
        PbKind::Tensor => Ok(Value::Tensor(src.tensor(&decode_binary::<TensorProto>(bytes, &origin, what)?)?)),
        PbKind::Sequence => sequence_value(&src, &decode_binary::<SequenceProto>(bytes, &origin, what)?, seq_elem),
        PbKind::Optional => optional_value(&src, &decode_binary::<OptionalProto>(bytes, &origin, what)?, seq_elem),
    }
}

fn read_pb(path: &Path, what: &'static str) -> Result<(Bytes, String, PathBuf), OnnxError> {
    let bytes = map_file(path)?;
    let origin = path.display().to_string();
    // An empty file is a valid encoding of an empty message, but never a useful one here:
    // an empty TensorProto has no data type.
    if bytes.is_empty() && what == "TensorProto" {
        return Err(OnnxError::Empty { path: path.to_path_buf(), what });
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((bytes, origin, dir))
}

/// A `SequenceProto` of tensors as a [`Value::Sequence`].
pub fn sequence_value(src: &TensorSource, sp: &SequenceProto, elem: Option<DType>) -> Result<Value, OnnxError> {
    use sequence_proto::DataType as D;
    let name = sp.name().to_string();
    match D::try_from(sp.elem_type()).unwrap_or(D::Undefined) {
        D::Tensor | D::Undefined if sp.sequence_values.is_empty() && sp.map_values.is_empty() => {}
        other => {
            return Err(OnnxError::not_supported(
                src.origin(),
                format!("sequence `{name}` of {other:?} values (only sequences of tensors)"),
            ));
        }
    }
    let mut items = Vec::with_capacity(sp.tensor_values.len() + sp.sparse_tensor_values.len());
    for t in &sp.tensor_values {
        items.push(src.tensor(t)?);
    }
    for t in &sp.sparse_tensor_values {
        items.push(src.sparse_tensor(t)?);
    }
    let elem = match (items.first(), elem) {
        (Some(t), _) => t.dtype(),
        (None, Some(d)) => d,
        (None, None) => {
            return Err(OnnxError::invalid(
                src.origin(),
                format!("sequence `{name}` is empty and its element type is not known"),
            ));
        }
    };
    if let Some(bad) = items.iter().find(|t| t.dtype() != elem) {
        return Err(OnnxError::invalid(
            src.origin(),
            format!("sequence `{name}` mixes element types {elem} and {}", bad.dtype()),
        ));
    }
    Ok(Value::Sequence { elem, items })
}

/// An `OptionalProto` as a [`Value::Optional`].
pub fn optional_value(src: &TensorSource, op: &OptionalProto, seq_elem: Option<DType>) -> Result<Value, OnnxError> {
    use optional_proto::DataType as D;
    let inner = match D::try_from(op.elem_type()).unwrap_or(D::Undefined) {
        D::Undefined => None,
        D::Tensor => match &op.tensor_value {
            Some(t) => Some(Value::Tensor(src.tensor(t)?)),
            None => None,
        },
        D::SparseTensor => match &op.sparse_tensor_value {
            Some(t) => Some(Value::Tensor(src.sparse_tensor(t)?)),
            None => None,
        },
        D::Sequence => match &op.sequence_value {
            Some(s) => Some(sequence_value(src, s, seq_elem)?),
            None => None,
        },
        other => {
            return Err(OnnxError::not_supported(src.origin(), format!("optional `{}` of {other:?}", op.name())));
        }
    };
    Ok(Value::Optional(inner.map(Box::new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(dtype: DType, dims: &[i64]) -> TensorProto {
        TensorProto { dims: dims.to_vec(), data_type: Some(dtype.onnx()), name: Some("t".into()), ..Default::default() }
    }

    fn src() -> TensorSource {
        TensorSource::new("test", None)
    }

    #[test]
    fn typed_fields_of_every_family() {
        let mut p = tp(DType::F32, &[2]);
        p.float_data = vec![1.5, -2.0];
        assert_eq!(src().tensor(&p).unwrap().to_vec::<f32>().unwrap(), vec![1.5, -2.0]);

        let mut p = tp(DType::U8, &[3]);
        p.int32_data = vec![0, 7, 255];
        assert_eq!(src().tensor(&p).unwrap().to_vec::<u8>().unwrap(), vec![0, 7, 255]);
        p.int32_data = vec![0, 7, 256];
        assert!(src().tensor(&p).unwrap_err().to_string().contains("out of range for u8"));

        let mut p = tp(DType::F16, &[2]);
        p.int32_data = vec![0x3c00, 0xc000];
        let t = src().tensor(&p).unwrap();
        assert_eq!(t.to_vec::<qaic_tensor::f16>().unwrap(), vec![qaic_tensor::f16::from_f32(1.0), qaic_tensor::f16::from_f32(-2.0)]);

        let mut p = tp(DType::BF16, &[1]);
        p.int32_data = vec![0x3f80];
        assert_eq!(src().tensor(&p).unwrap().to_vec::<qaic_tensor::bf16>().unwrap()[0].to_f32(), 1.0);

        let mut p = tp(DType::Bool, &[3]);
        p.int32_data = vec![1, 0, 5];
        assert_eq!(src().tensor(&p).unwrap().to_vec::<bool>().unwrap(), vec![true, false, true]);

        // Three int4 values in two packed bytes: 1, -1 (0xF), 7.
        let mut p = tp(DType::I4, &[3]);
        p.int32_data = vec![0xF1, 0x07];
        assert_eq!(src().tensor(&p).unwrap().raw_bytes().unwrap(), &[0xF1, 0x07]);

        let mut p = tp(DType::F8E4M3FN, &[2]);
        p.int32_data = vec![0x38, 0xb8];
        assert_eq!(src().tensor(&p).unwrap().raw_bytes().unwrap(), &[0x38, 0xb8]);

        let mut p = tp(DType::U32, &[2]);
        p.uint64_data = vec![1, u32::MAX as u64];
        assert_eq!(src().tensor(&p).unwrap().to_vec::<u32>().unwrap(), vec![1, u32::MAX]);

        let mut p = tp(DType::Complex64, &[1]);
        p.float_data = vec![1.0, 2.0];
        assert_eq!(src().tensor(&p).unwrap().raw_bytes().unwrap().len(), 8);

        let mut p = tp(DType::String, &[2]);
        p.string_data = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")];
        assert_eq!(src().tensor(&p).unwrap().strings().unwrap()[1], b"bc".to_vec());

        let mut p = tp(DType::F64, &[0, 3]);
        assert_eq!(src().tensor(&p).unwrap().len(), 0);
        p.dims = vec![2];
        assert!(src().tensor(&p).unwrap_err().to_string().contains("has no data"));
    }

    #[test]
    fn raw_data_is_not_copied() {
        let buf = Bytes::from(vec![0u8; 64]);
        let mut p = tp(DType::F32, &[4, 4]);
        p.raw_data = Some(buf.clone());
        let t = src().tensor(&p).unwrap();
        assert_eq!(t.raw_bytes().unwrap().as_ptr(), buf.as_ptr());
        p.dims = vec![5, 4];
        let e = src().tensor(&p).unwrap_err().to_string();
        assert!(e.contains("needs 80 bytes, got 64"), "{e}");
    }

    #[test]
    fn bad_headers() {
        let p = tp(DType::F32, &[-1]);
        assert!(src().tensor(&p).unwrap_err().to_string().contains("negative dimension"));
        let mut p = tp(DType::F32, &[1]);
        p.data_type = Some(0);
        assert!(src().tensor(&p).unwrap_err().to_string().contains("UNDEFINED"));
        p.data_type = Some(99);
        assert!(src().tensor(&p).unwrap_err().to_string().contains("unknown data_type 99"));
    }

    #[test]
    fn sparse_densified() {
        let mut values = tp(DType::F32, &[2]);
        values.float_data = vec![5.0, 6.0];
        let mut idx = tp(DType::I64, &[2]);
        idx.int64_data = vec![1, 5];
        let sp = SparseTensorProto { values: Some(values.clone()), indices: Some(idx), dims: vec![2, 3] };
        let t = src().sparse_tensor(&sp).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![0.0, 5.0, 0.0, 0.0, 0.0, 6.0]);
        // Coordinate form.
        let mut idx = tp(DType::I64, &[2, 2]);
        idx.int64_data = vec![0, 1, 1, 2];
        let sp = SparseTensorProto { values: Some(values.clone()), indices: Some(idx), dims: vec![2, 3] };
        assert_eq!(src().sparse_tensor(&sp).unwrap().to_vec::<f32>().unwrap(), vec![0.0, 5.0, 0.0, 0.0, 0.0, 6.0]);
        let mut idx = tp(DType::I64, &[2]);
        idx.int64_data = vec![1, 6];
        let sp = SparseTensorProto { values: Some(values), indices: Some(idx), dims: vec![2, 3] };
        assert!(src().sparse_tensor(&sp).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn path_resolution() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("w.bin"), [0u8; 4]).unwrap();
        assert!(resolve_inside(d.path(), "w.bin").is_ok());
        assert!(resolve_inside(d.path(), "./sub/../w.bin").is_err()); // `sub` does not exist
        assert!(resolve_inside(d.path(), "../w.bin").unwrap_err().contains("escapes"));
        assert!(resolve_inside(d.path(), "/etc/passwd").unwrap_err().contains("absolute"));
        assert!(resolve_inside(d.path(), "nope.bin").unwrap_err().contains("not found"));
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("x.bin"), [0u8; 4]).unwrap();
            std::os::unix::fs::symlink(outside.path().join("x.bin"), d.path().join("link.bin")).unwrap();
            assert!(resolve_inside(d.path(), "link.bin").unwrap_err().contains("outside the model's folder"));
        }
    }
}
