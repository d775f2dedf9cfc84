//! Model inputs: `-input-list-file`, `-json-input-file`, `.npy` and raw files, random inputs
//! and `-dump-input-buffers`.
//!
//! The interpreter and runtime describe what the model expects with [`InputSpec`]s (name,
//! element type, declared shape) and get [`Tensor`]s back, checked against them.
//!
//! ## `-input-list-file`
//! One line per inference. A line lists that inference's files in model-input order,
//! separated by commas (then paths may contain spaces) or, if the line has no comma, by
//! whitespace. Blank lines and lines starting with `#` are skipped. A relative path is
//! resolved against the list file's folder (the rule the vendor documents for JSON input
//! files); when it does not exist there but exists relative to the current directory, that
//! one is used, because scripts written for the vendor tool often use such paths.
//!
//! ## Files
//! A file starting with the `.npy` magic is read as NumPy (its dtype must equal the input's
//! and its shape must fit the declared shape); any other file is raw little-endian data whose
//! size must be exactly what the input needs. A declared shape with one unknown or symbolic
//! dimension takes it from the file.
//!
//! ## Random inputs
//! Generated once per run (every iteration reuses them) from a 64-bit seed with a built-in
//! xoshiro256** generator, so the same seed gives the same bytes on every machine and
//! version. Floats: uniform in [0, 1) or standard normal. Booleans: 0 or 1. Integers: 0 or 1
//! for both distributions, because integer inputs are usually token ids, positions, masks or
//! indices, and 0 and 1 are valid for any vocabulary or mask. `-unbound-random` fills every
//! byte with 0..=255 regardless of type (floats may then be NaN or infinite).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use qaic_tensor::{bf16, f16, DType, Dim, Shape, Tensor};
use serde::Deserialize;

use crate::exec_options::{Distribution, RandomInputs};
use crate::fsutil::{write_atomic, FileError};
use crate::npy::{self, NpyError};

/// What the model expects for one input.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    /// Declared shape; symbolic or unknown dimensions are bound by the data.
    pub shape: Shape,
}

/// Errors of input handling. Every message names the file, line or input concerned.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Npy(#[from] NpyError),
    #[error("{file}:{line}: {message}")]
    ListLine { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Json { file: String, message: String },
    #[error("input `{input}` ({file}): expected {expected} bytes ({dtype} {shape}), got {got} bytes")]
    Size { input: String, file: String, dtype: DType, shape: String, expected: usize, got: usize },
    #[error("input `{input}` ({file}): {message}")]
    Mismatch { input: String, file: String, message: String },
    #[error("input `{input}`: {message}")]
    Input { input: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// The files of one inference in an `-input-list-file`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputFileSet {
    /// 1-based line number in the list file.
    pub line: usize,
    pub files: Vec<PathBuf>,
}

/// A parsed `-input-list-file`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputList {
    /// The list file, for messages.
    pub file: String,
    pub inferences: Vec<InputFileSet>,
}

/// Reads an `-input-list-file` (see the module doc for the rules).
pub fn read_input_list(path: &Path) -> Result<InputList, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_input_list(&text, base, &path.display().to_string())
}

/// Parses list-file text; relative paths are resolved against `base_dir`.
pub fn parse_input_list(text: &str, base_dir: &Path, file: &str) -> Result<InputList, InputError> {
    let mut inferences = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let items: Vec<&str> = if line.contains(',') {
            line.split(',').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        if let Some(pos) = items.iter().position(|s| s.is_empty()) {
            return Err(InputError::ListLine {
                file: file.to_string(),
                line: i + 1,
                message: format!("empty file name at position {} (doubled or trailing comma?)", pos + 1),
            });
        }
        let files = items.iter().map(|s| resolve(base_dir, s)).collect();
        inferences.push(InputFileSet { line: i + 1, files });
    }
    if inferences.is_empty() {
        return Err(InputError::Other(format!("{file}: the input list has no input lines")));
    }
    Ok(InputList { file: file.to_string(), inferences })
}

/// Resolves `p` against `base`, falling back to the current directory (see module doc).
fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() || base.as_os_str().is_empty() {
        return path;
    }
    let joined = base.join(&path);
    if !joined.exists() && path.exists() {
        tracing::debug!("{p}: not found beside the list file, using the current directory's");
        return path;
    }
    joined
}

impl InputList {
    /// Loads the tensors of inference `index` (0-based), checking the number of files on the
    /// line and each file's size or `.npy` header against `specs`.
    pub fn load(&self, index: usize, specs: &[InputSpec]) -> Result<Vec<Tensor>, InputError> {
        let set = self.inferences.get(index).ok_or_else(|| {
            InputError::Other(format!("{}: no line for inference {index}", self.file))
        })?;
        if set.files.len() != specs.len() {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(InputError::ListLine {
                file: self.file.clone(),
                line: set.line,
                message: format!(
                    "{} file(s) given, the model has {} input(s) ({})",
                    set.files.len(),
                    specs.len(),
                    names.join(", ")
                ),
            });
        }
        set.files.iter().zip(specs).map(|(f, s)| load_input_file(f, s)).collect()
    }
}

/// Reads one input file (`.npy` or raw) for `spec`.
pub fn load_input_file(path: &Path, spec: &InputSpec) -> Result<Tensor, InputError> {
    let data = std::fs::read(path).map_err(|e| FileError::new(path, e))?;
    let file = path.display().to_string();
    let data = Bytes::from(data);
    if npy::is_npy(&data) {
        let t = npy::parse_bytes(data, &file)?;
        check_npy(&t, spec, &file)?;
        return Ok(t);
    }
    raw_tensor(data, spec, None, &file)
}

fn check_npy(t: &Tensor, spec: &InputSpec, file: &str) -> Result<(), InputError> {
    let mismatch = |message: String| InputError::Mismatch { input: spec.name.clone(), file: file.into(), message };
    if t.dtype() != spec.dtype {
        return Err(mismatch(format!("the .npy holds {} but the input is {}", t.dtype(), spec.dtype)));
    }
    if !fits(&spec.shape, t.shape()) {
        return Err(mismatch(format!("the .npy has shape {:?} but the input is declared {}", t.shape(), fmt_shape(&spec.shape))));
    }
    Ok(())
}

/// Whether concrete `dims` fit the declared shape (known dims equal; the same symbol binds one
/// value).
pub fn fits(decl: &Shape, dims: &[usize]) -> bool {
    if decl.rank() != dims.len() {
        return false;
    }
    let mut bound: Vec<(&str, usize)> = Vec::new();
    for (d, &v) in decl.0.iter().zip(dims) {
        match d {
            Dim::Known(k) if *k != v => return false,
            Dim::Sym(s) => match bound.iter().find(|(n, _)| n == s) {
                Some((_, b)) if *b != v => return false,
                Some(_) => {}
                None => bound.push((s, v)),
            },
            _ => {}
        }
    }
    true
}

fn fmt_shape(s: &Shape) -> String {
    format!("[{}]", s.0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// Raw bytes → tensor of `spec` (with `dims` overriding the declared shape when given).
fn raw_tensor(data: Bytes, spec: &InputSpec, dims: Option<&[usize]>, file: &str) -> Result<Tensor, InputError> {
    let shape = match dims {
        Some(d) => {
            if !fits(&spec.shape, d) {
                return Err(InputError::Mismatch {
                    input: spec.name.clone(),
                    file: file.into(),
                    message: format!("dims {d:?} do not fit the declared shape {}", fmt_shape(&spec.shape)),
                });
            }
            d.to_vec()
        }
        None => concrete_from_size(spec, data.len(), file)?,
    };
    let n: usize = shape.iter().product();
    let expected = spec.dtype.storage_bytes(n);
    if data.len() != expected {
        return Err(InputError::Size {
            input: spec.name.clone(),
            file: file.into(),
            dtype: spec.dtype,
            shape: format!("{shape:?}"),
            expected,
            got: data.len(),
        });
    }
    Tensor::from_bytes(spec.dtype, shape, data)
        .map(Tensor::aligned)
        .map_err(|e| InputError::Input { input: spec.name.clone(), message: e.to_string() })
}

/// The declared shape made concrete; a single unknown/symbolic dimension is taken from the
/// file size.
fn concrete_from_size(spec: &InputSpec, len: usize, file: &str) -> Result<Vec<usize>, InputError> {
    if let Some(c) = spec.shape.concrete() {
        return Ok(c);
    }
    let open: Vec<usize> = (0..spec.shape.rank()).filter(|&i| spec.shape.0[i].known().is_none()).collect();
    let known: usize = spec.shape.0.iter().filter_map(Dim::known).product();
    let elem = spec.dtype.size_of().ok_or_else(|| InputError::Input {
        input: spec.name.clone(),
        message: format!("{} inputs with unbound dimensions cannot be read from raw files", spec.dtype),
    })?;
    let row = known * elem;
    if open.len() != 1 || row == 0 || len % row != 0 {
        return Err(InputError::Mismatch {
            input: spec.name.clone(),
            file: file.into(),
            message: format!(
                "cannot infer the dimensions of {} from a {len}-byte file; bind symbols with -onnx-define-symbol or use -json-input-file with dims",
                fmt_shape(&spec.shape)
            ),
        });
    }
    let mut c: Vec<usize> = spec.shape.0.iter().map(|d| d.known().unwrap_or(0)).collect();
    c[open[0]] = len / row;
    Ok(c)
}

// ---------------------------------------------------------------- JSON input files

/// Direction of a `-json-input-file` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDirection {
    In,
    Out,
}

/// One entry of a `-json-input-file` inference.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonIoEntry {
    /// Resolved against the JSON file's folder when relative.
    pub path: PathBuf,
    pub direction: IoDirection,
    /// `map-to`: the binding name; entries without it are matched by position.
    pub map_to: Option<String>,
    /// From `data-type`.
    pub dtype: Option<DType>,
    /// `elem-size` (overrides `data-type`'s size).
    pub elem_size: Option<usize>,
    /// Binds the input's shape (`[0]` = empty buffer).
    pub dims: Option<Vec<usize>>,
    pub skip_validation: bool,
}

/// A parsed `-json-input-file`.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonInputs {
    pub file: String,
    pub inferences: Vec<Vec<JsonIoEntry>>,
}

#[derive(Deserialize)]
struct RawJson {
    #[serde(rename = "IO-files")]
    io_files: Vec<Vec<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: String,
    #[serde(rename = "io-direction", alias = "io-diretion")]
    io_direction: Option<serde_json::Value>,
    #[serde(rename = "map-to")]
    map_to: Option<String>,
    #[serde(rename = "data-type")]
    data_type: Option<String>,
    #[serde(rename = "elem-size")]
    elem_size: Option<usize>,
    dims: Option<Vec<usize>>,
    #[serde(rename = "skip-validation")]
    skip_validation: Option<bool>,
}

/// The vendor's `data-type` names (and their sizes), plus ONNX-style spellings.
pub fn json_data_type(name: &str) -> Option<DType> {
    Some(match name {
        "int" | "int32_t" | "int32" => DType::I32,
        "uint" | "uint32_t" | "uint32" => DType::U32,
        "float" | "float32" => DType::F32,
        "float16" | "half" => DType::F16,
        "bfloat16" => DType::BF16,
        "double" | "float64" => DType::F64,
        "uint8_t" | "uint8" => DType::U8,
        "int8_t" | "int8" => DType::I8,
        "int16_t" | "int16" => DType::I16,
        "uint16_t" | "uint16" => DType::U16,
        "int64_t" | "int64" => DType::I64,
        "uint64_t" | "uint64" => DType::U64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// Reads a `-json-input-file`: `{"IO-files": [[entry, ...], ...]}`, one inner list per inference.
/// Both `io-direction` and the vendor docs' misspelling `io-diretion` are accepted, as a string
/// or a one-element list.
pub fn read_json_inputs(path: &Path) -> Result<JsonInputs, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::new(path, e))?;
    parse_json_inputs(&text, path.parent().unwrap_or(Path::new("")), &path.display().to_string())
}

/// Parses JSON input text; relative paths are resolved against `base_dir`.
pub fn parse_json_inputs(text: &str, base_dir: &Path, file: &str) -> Result<JsonInputs, InputError> {
    let err = |message: String| InputError::Json { file: file.to_string(), message };
    let raw: RawJson = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    if raw.io_files.is_empty() {
        return Err(err("\"IO-files\" is empty".into()));
    }
    let mut inferences = Vec::new();
    for (i, set) in raw.io_files.into_iter().enumerate() {
        let mut entries = Vec::new();
        for (j, e) in set.into_iter().enumerate() {
            let at = |m: String| err(format!("IO-files[{i}][{j}]: {m}"));
            let direction = match &e.io_direction {
                None => IoDirection::In,
                Some(v) => {
                    let s = match v {
                        serde_json::Value::String(s) => Some(s.as_str()),
                        serde_json::Value::Array(a) if a.len() == 1 => a[0].as_str(),
                        _ => None,
                    };
                    match s {
                        Some("in") => IoDirection::In,
                        Some("out") => IoDirection::Out,
                        _ => return Err(at(format!("io-direction must be \"in\" or \"out\", got {v}"))),
                    }
                }
            };
            let dtype = match &e.data_type {
                None => None,
                Some(n) => Some(json_data_type(n).ok_or_else(|| {
                    at(format!(
                        "unknown data-type `{n}` (valid: int, float, uint, float16, uint8_t, int8_t, int16_t, uint16_t, int64_t, uint64_t)"
                    ))
                })?),
            };
            if let Some(s) = e.elem_size
                && !matches!(s, 1 | 2 | 4 | 8)
            {
                return Err(at(format!("elem-size {s} is not 1, 2, 4 or 8")));
            }
            if let Some(d) = &e.dims
                && (d.is_empty() || d.len() > 8)
            {
                return Err(at(format!("dims must have 1 to 8 entries, got {}", d.len())));
            }
            entries.push(JsonIoEntry {
                path: resolve(base_dir, &e.path),
                direction,
                map_to: e.map_to,
                dtype,
                elem_size: e.elem_size,
                dims: e.dims,
                skip_validation: e.skip_validation.unwrap_or(false),
            });
        }
        inferences.push(entries);
    }
    Ok(JsonInputs { file: file.to_string(), inferences })
}

impl JsonInputs {
    /// Loads the input tensors of inference `index`, in `specs` order. Entries with `map-to`
    /// bind by name, the others in order; `dims` bind the shape; `elem-size`/`data-type` must
    /// agree with the model's element type.
    pub fn load(&self, index: usize, specs: &[InputSpec]) -> Result<Vec<Tensor>, InputError> {
        let set = self.inferences.get(index).ok_or_else(|| {
            InputError::Other(format!("{}: no IO-files entry for inference {index}", self.file))
        })?;
        let ins: Vec<&JsonIoEntry> = set.iter().filter(|e| e.direction == IoDirection::In).collect();
        let err = |m: String| InputError::Json { file: self.file.clone(), message: format!("IO-files[{index}]: {m}") };
        if ins.len() != specs.len() {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(err(format!(
                "{} input entries, the model has {} input(s) ({})",
                ins.len(),
                specs.len(),
                names.join(", ")
            )));
        }
        let mut unnamed = ins.iter().filter(|e| e.map_to.is_none());
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let entry = match ins.iter().find(|e| e.map_to.as_deref() == Some(spec.name.as_str())) {
                Some(e) => *e,
                None => *unnamed.next().ok_or_else(|| err(format!("no entry maps to input `{}`", spec.name)))?,
            };
            out.push(load_json_entry(entry, spec)?);
        }
        if let Some(e) = ins.iter().find(|e| e.map_to.as_ref().is_some_and(|m| !specs.iter().any(|s| &s.name == m))) {
            return Err(err(format!("map-to `{}` is not an input of the model", e.map_to.as_deref().unwrap_or(""))));
        }
        Ok(out)
    }
}

fn load_json_entry(e: &JsonIoEntry, spec: &InputSpec) -> Result<Tensor, InputError> {
    let file = e.path.display().to_string();
    let mismatch = |message: String| InputError::Mismatch { input: spec.name.clone(), file: file.clone(), message };
    let model_size = spec.dtype.size_of();
    if let Some(s) = e.elem_size {
        if Some(s) != model_size {
            return Err(mismatch(format!("elem-size {s} but the input is {} ({} bytes)", spec.dtype, model_size.unwrap_or(0))));
        }
    } else if let Some(dt) = e.dtype
        && dt.size_of() != model_size
    {
        return Err(mismatch(format!("data-type {dt} but the input is {}", spec.dtype)));
    }
    let data = std::fs::read(&e.path).map_err(|err| FileError::new(&e.path, err))?;
    let data = Bytes::from(data);
    if npy::is_npy(&data) {
        let t = npy::parse_bytes(data, &file)?;
        check_npy(&t, spec, &file)?;
        if let Some(d) = &e.dims
            && d.as_slice() != t.shape()
        {
            return Err(mismatch(format!("dims {d:?} but the .npy has shape {:?}", t.shape())));
        }
        return Ok(t);
    }
    // `[0]` is the documented empty buffer.
    let dims = e.dims.as_deref().map(|d| if d == [0] { &[][..] } else { d });
    if dims == Some(&[][..]) {
        return Tensor::from_bytes(spec.dtype, vec![0], Bytes::new())
            .map_err(|er| InputError::Input { input: spec.name.clone(), message: er.to_string() });
    }
    raw_tensor(data, spec, dims, &file)
}

// ---------------------------------------------------------------- random inputs

/// xoshiro256** seeded with splitmix64: small, fast, and fixed forever so seeds reproduce.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Random tensors for `specs` (see the module doc for value ranges). Every dimension must be
/// known: bind symbols first.
pub fn random_inputs(specs: &[InputSpec], cfg: &RandomInputs) -> Result<Vec<Tensor>, InputError> {
    let mut rng = Rng::new(cfg.seed);
    specs.iter().map(|s| random_tensor(s, cfg, &mut rng)).collect()
}

fn random_tensor(spec: &InputSpec, cfg: &RandomInputs, rng: &mut Rng) -> Result<Tensor, InputError> {
    let shape = spec.shape.concrete().ok_or_else(|| InputError::Input {
        input: spec.name.clone(),
        message: format!(
            "shape {} has unbound dimensions; bind them with -onnx-define-symbol=NAME,VALUE or -batchsize",
            fmt_shape(&spec.shape)
        ),
    })?;
    let n: usize = shape.iter().product();
    let bad = |m: String| InputError::Input { input: spec.name.clone(), message: m };
    if spec.dtype == DType::String {
        return Err(bad("random string inputs are not supported".into()));
    }
    if cfg.unbound {
        let nbytes = spec.dtype.storage_bytes(n);
        let bytes: Vec<u8> = (0..nbytes).map(|_| (rng.next_u64() >> 56) as u8).collect();
        return Tensor::from_bytes(spec.dtype, shape, Bytes::from(bytes)).map_err(|e| bad(e.to_string()));
    }
    let dist = cfg.distribution;
    let real = |rng: &mut Rng| match dist {
        Distribution::Uniform => rng.uniform(),
        Distribution::Gaussian => rng.gaussian(),
    };
    // Integers and booleans are a fair coin for both distributions (see the module doc).
    let bit = |rng: &mut Rng| (rng.next_u64() >> 63) as u8;
    macro_rules! ints {
        ($t:ty) => {{
            let v: Vec<$t> = (0..n).map(|_| bit(rng) as $t).collect();
            Tensor::from_vec(shape, v)
        }};
    }
    let t = match spec.dtype {
        DType::F32 => Tensor::from_vec(shape, (0..n).map(|_| real(rng) as f32).collect()),
        DType::F64 => Tensor::from_vec(shape, (0..n).map(|_| real(rng)).collect()),
        DType::F16 => Tensor::from_vec(shape, (0..n).map(|_| f16::from_f64(real(rng))).collect()),
        DType::BF16 => Tensor::from_vec(shape, (0..n).map(|_| bf16::from_f64(real(rng))).collect()),
        DType::Bool => Tensor::from_vec(shape, (0..n).map(|_| bit(rng) == 1).collect()),
        DType::I8 => ints!(i8),
        DType::U8 => ints!(u8),
        DType::I16 => ints!(i16),
        DType::U16 => ints!(u16),
        DType::I32 => ints!(i32),
        DType::U32 => ints!(u32),
        DType::I64 => ints!(i64),
        DType::U64 => ints!(u64),
        other => return Err(bad(format!("random {other} inputs are not supported yet; use -unbound-random or input files"))),
    };
    t.map_err(|e| bad(e.to_string()))
}

// ---------------------------------------------------------------- dumps

/// File name used by `-dump-input-buffers` for input `name` of inference `inf`:
/// `<name>-input-inf-<inf>.bin` with `/` replaced by `_` (the vendor's name is undocumented).
pub fn input_dump_file_name(name: &str, inf: u64) -> String {
    format!("{}-input-inf-{inf}.bin", crate::outputs::sanitize(name))
}

/// Writes the raw bytes of each input into `dir` (atomically) and returns the paths as
/// `<dir>/<file>` strings, in input order.
pub fn dump_input_buffers(
    dir: &str,
    inf: u64,
    specs: &[InputSpec],
    tensors: &[Tensor],
) -> Result<Vec<String>, InputError> {
    let mut written = Vec::new();
    // Inputs are dumped before the first output is written, so the directory may not exist yet.
    if !Path::new(dir).is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    }
    for (s, t) in specs.iter().zip(tensors) {
        let shown = crate::outputs::join_dir(dir, &input_dump_file_name(&s.name, inf));
        let bytes = t
            .raw_bytes()
            .map_err(|e| InputError::Input { input: s.name.clone(), message: e.to_string() })?;
        write_atomic(Path::new(&shown), bytes)?;
        written.push(shown);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: DType, dims: &[usize]) -> InputSpec {
        InputSpec { name: name.into(), dtype, shape: Shape::known(dims) }
    }

    #[test]
    fn list_file_syntax() {
        let text = "# comment\n\n a.bin, b.bin \r\nc.bin   d.bin\n/abs/e.bin,f with space.bin\n";
        let l = parse_input_list(text, Path::new("/base"), "list.txt").unwrap();
        assert_eq!(l.inferences.len(), 3);
        assert_eq!(l.inferences[0].line, 3);
        assert_eq!(l.inferences[0].files, vec![PathBuf::from("/base/a.bin"), PathBuf::from("/base/b.bin")]);
        assert_eq!(l.inferences[1].files[1], PathBuf::from("/base/d.bin"));
        assert_eq!(l.inferences[2].files, vec![PathBuf::from("/abs/e.bin"), PathBuf::from("/base/f with space.bin")]);
        let e = parse_input_list("a.bin,,b.bin\n", Path::new(""), "l.txt").unwrap_err().to_string();
        assert!(e.starts_with("l.txt:1: empty file name at position 2"), "{e}");
        assert!(parse_input_list("# only comments\n\n", Path::new(""), "l.txt").is_err());
    }

    #[test]
    fn list_loading_checks_counts_and_sizes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x.bin"), 1.5f32.to_le_bytes().repeat(2)).unwrap();
        std::fs::write(d.path().join("short.bin"), [0u8; 4]).unwrap();
        std::fs::write(d.path().join("l.txt"), "x.bin\nx.bin x.bin\nshort.bin\n").unwrap();
        let l = read_input_list(&d.path().join("l.txt")).unwrap();
        let specs = [spec("in/0", DType::F32, &[1, 2])];
        assert_eq!(l.load(0, &specs).unwrap()[0].to_vec::<f32>().unwrap(), vec![1.5, 1.5]);
        let e = l.load(1, &specs).unwrap_err().to_string();
        assert!(e.ends_with("l.txt:2: 2 file(s) given, the model has 1 input(s) (in/0)"), "{e}");
        let e = l.load(2, &specs).unwrap_err().to_string();
        assert!(e.contains("input `in/0`") && e.contains("expected 8 bytes") && e.contains("got 4 bytes"), "{e}");
    }

    #[test]
    fn npy_inputs_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let t = Tensor::from_vec(vec![2, 3], vec![1i64; 6]).unwrap();
        let p = d.path().join("ids.npy");
        std::fs::write(&p, npy::to_npy_bytes(&t).unwrap()).unwrap();
        let sym = InputSpec { name: "ids".into(), dtype: DType::I64, shape: Shape(vec![Dim::Sym("b".into()), 3.into()]) };
        assert!(load_input_file(&p, &sym).unwrap().bitwise_eq(&t));
        let e = load_input_file(&p, &spec("ids", DType::I32, &[2, 3])).unwrap_err().to_string();
        assert!(e.contains("holds i64 but the input is i32"), "{e}");
        let e = load_input_file(&p, &spec("ids", DType::I64, &[3, 2])).unwrap_err().to_string();
        assert!(e.contains("shape [2, 3]"), "{e}");
        // one symbolic dim of a raw file is inferred from its size
        let r = d.path().join("ids.raw");
        std::fs::write(&r, [0u8; 48]).unwrap();
        assert_eq!(load_input_file(&r, &sym).unwrap().shape(), &[2, 3]);
    }

    #[test]
    fn json_inputs() {
        let text = r#"{"IO-files": [
            [ {"path": "a.raw", "io-diretion": ["in"], "data-type": "int64_t", "map-to": "ids", "dims": [1, 2]},
              {"path": "m.raw", "io-direction": "in", "elem-size": 8, "map-to": "mask", "dims": [1, 2]},
              {"path": "o.raw", "io-direction": "out", "elem-size": 4, "skip-validation": true} ]
        ]}"#;
        let d = tempfile::tempdir().unwrap();
        let j = parse_json_inputs(text, d.path(), "io.json").unwrap();
        assert_eq!(j.inferences[0].len(), 3);
        assert_eq!(j.inferences[0][0].direction, IoDirection::In);
        assert_eq!(j.inferences[0][0].dtype, Some(DType::I64));
        assert_eq!(j.inferences[0][2].direction, IoDirection::Out);
        assert!(j.inferences[0][2].skip_validation);
        std::fs::write(d.path().join("a.raw"), 7i64.to_le_bytes().repeat(2)).unwrap();
        std::fs::write(d.path().join("m.raw"), 1i64.to_le_bytes().repeat(2)).unwrap();
        let sym = |n: &str| InputSpec {
            name: n.into(),
            dtype: DType::I64,
            shape: Shape(vec![Dim::Sym("batch".into()), Dim::Sym("seq".into())]),
        };
        let ts = j.load(0, &[sym("mask"), sym("ids")]).unwrap();
        assert_eq!(ts[0].to_vec::<i64>().unwrap(), vec![1, 1]);
        assert_eq!(ts[1].to_vec::<i64>().unwrap(), vec![7, 7]);
        assert_eq!(ts[1].shape(), &[1, 2]);
        let e = j.load(0, &[sym("mask")]).unwrap_err().to_string();
        assert!(e.contains("2 input entries, the model has 1"), "{e}");
        let f32spec = InputSpec { name: "ids".into(), dtype: DType::F32, shape: Shape::known(&[1, 2]) };
        let e = j.load(0, &[f32spec, sym("mask")]).unwrap_err().to_string();
        assert!(e.contains("data-type i64 but the input is f32"), "{e}");
        for bad in [
            r#"{"IO-files": [[{"path": "a", "io-direction": "sideways"}]]}"#,
            r#"{"IO-files": [[{"path": "a", "data-type": "quad"}]]}"#,
            r#"{"IO-files": [[{"path": "a", "elem-size": 3}]]}"#,
            r#"{"IO-files": [[{"path": "a", "dims": []}]]}"#,
            r#"{"IO-files": [[{"path": "a", "colour": 1}]]}"#,
            r#"{"IO-files": []}"#,
            r#"{"files": []}"#,
        ] {
            let e = parse_json_inputs(bad, Path::new(""), "bad.json").unwrap_err().to_string();
            assert!(e.starts_with("bad.json: "), "{e}");
        }
    }

    #[test]
    fn random_is_deterministic_and_bounded() {
        let specs = [spec("x", DType::F32, &[1000]), spec("ids", DType::I64, &[1000]), spec("h", DType::F16, &[4])];
        let cfg = RandomInputs { distribution: Distribution::Uniform, unbound: false, seed: 5 };
        let a = random_inputs(&specs, &cfg).unwrap();
        let b = random_inputs(&specs, &cfg).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| x.bitwise_eq(y)));
        let c = random_inputs(&specs, &RandomInputs { seed: 6, ..cfg }).unwrap();
        assert!(!a[0].bitwise_eq(&c[0]));
        let xs = a[0].to_vec::<f32>().unwrap();
        assert!(xs.iter().all(|v| (0.0..1.0).contains(v)));
        let ids = a[1].to_vec::<i64>().unwrap();
        assert!(ids.iter().all(|v| *v == 0 || *v == 1));
        let ones = ids.iter().filter(|v| **v == 1).count();
        assert!((350..650).contains(&ones), "{ones}");
        let g = random_inputs(&specs, &RandomInputs { distribution: Distribution::Gaussian, ..cfg }).unwrap();
        let gs = g[0].to_vec::<f32>().unwrap();
        let mean: f32 = gs.iter().sum::<f32>() / gs.len() as f32;
        assert!(mean.abs() < 0.15 && gs.iter().any(|v| *v < 0.0), "{mean}");
        let gi = g[1].to_vec::<i64>().unwrap().iter().filter(|v| **v == 1).count();
        assert!((350..650).contains(&gi), "{gi}");
        let u = random_inputs(&specs[..1], &RandomInputs { unbound: true, ..cfg }).unwrap();
        assert!(u[0].raw_bytes().unwrap().iter().any(|b| *b > 200));
        let unbound_sym = InputSpec { name: "s".into(), dtype: DType::F32, shape: Shape(vec![Dim::Sym("n".into())]) };
        let e = random_inputs(&[unbound_sym], &cfg).unwrap_err().to_string();
        assert!(e.contains("-onnx-define-symbol"), "{e}");
    }

    #[test]
    fn dump_names_and_contents() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().display().to_string();
        let specs = [spec("a/b", DType::U8, &[2])];
        let t = [Tensor::from_vec(vec![2], vec![3u8, 4]).unwrap()];
        let w = dump_input_buffers(&dir, 2, &specs, &t).unwrap();
        assert_eq!(w, vec![format!("{dir}/a_b-input-inf-2.bin")]);
        assert_eq!(std::fs::read(&w[0]).unwrap(), vec![3, 4]);
    }
}
