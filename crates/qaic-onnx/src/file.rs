//! Reading ONNX protobuf files: binary (memory-mapped, zero-copy) or protobuf text format.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::proto::ModelProto;
use crate::OnnxError;

/// The encoded `FileDescriptorSet` of `proto/onnx/*.proto`, generated with the Rust code
/// (see `tests/proto_codegen.rs`); prost-reflect needs it to parse protobuf text format.
static DESCRIPTOR_SET: &[u8] = include_bytes!("generated/onnx.fds.bin");

fn descriptor_pool() -> Result<&'static DescriptorPool, OnnxError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| OnnxError::Internal(format!("embedded ONNX descriptor set: {e}")))
}

/// How a file's bytes are to be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Binary protobuf (`.onnx`, `.pb`).
    Binary,
    /// Protobuf text format (`.onnxtxt`, `.pbtxt`, `.textproto`, `.prototxt`, `.txt`).
    Text,
}

impl Format {
    /// The format implied by a file name's extension (binary unless a text extension).
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("onnxtxt" | "pbtxt" | "textproto" | "prototxt" | "txtpb" | "txt") => Format::Text,
            _ => Format::Binary,
        }
    }
}

/// Memory-maps a whole file. The returned `Bytes` keeps the map alive, so tensors sliced from it
/// stay valid after the loader returns. An empty file gives an empty buffer (mapping zero bytes
/// is not portable).
///
/// The map is read-only and private to this process; if another process truncates the file
/// while it is mapped, reading the missing pages faults (the usual memory-map caveat).
pub fn map_file(path: &Path) -> Result<Bytes, OnnxError> {
    let io = |source| OnnxError::Io { path: path.to_path_buf(), source };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a folder, not a file")));
    }
    if meta.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the map is read-only; the file is opened read-only by us. Concurrent truncation by
    // another process is the documented memory-map caveat above.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

/// Decodes a binary protobuf message from `bytes`. Byte fields (`raw_data`, `string_data`) of
/// the result are slices of `bytes` (no copy).
pub fn decode_binary<M: Message + Default>(bytes: Bytes, origin: &str, what: &'static str) -> Result<M, OnnxError> {
    M::decode(bytes).map_err(|source| OnnxError::Decode { origin: origin.to_string(), what, source })
}

/// Parses protobuf text format into message `M` whose full protobuf name is `full_name`
/// (e.g. `onnx.ModelProto`).
pub fn parse_text<M: Message + Default>(text: &[u8], full_name: &str, origin: &str) -> Result<M, OnnxError> {
    let text = std::str::from_utf8(text).map_err(|e| OnnxError::Text {
        origin: origin.to_string(),
        msg: format!("not UTF-8 text (byte {}); is this a binary .onnx file?", e.valid_up_to()),
    })?;
    let pool = descriptor_pool()?;
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| OnnxError::Internal(format!("message {full_name} missing from the descriptor set")))?;
    let dynamic = DynamicMessage::parse_text_format(desc, text)
        .map_err(|e| OnnxError::Text { origin: origin.to_string(), msg: describe_text_error(text, &e) })?;
    // Re-encoding is cheap next to parsing text, and gives the same typed messages (and the same
    // validation) as the binary path.
    let encoded = Bytes::from(dynamic.encode_to_vec());
    decode_binary(encoded, origin, "message re-encoded from text format")
}

/// A text-format error with its line and column.
fn describe_text_error(text: &str, e: &prost_reflect::text_format::ParseError) -> String {
    use miette::Diagnostic;
    let msg = e.to_string();
    match e.labels().and_then(|mut l| l.next()) {
        Some(label) => {
            let (line, col) = line_col(text, label.offset());
            format!("line {line}, column {col}: {msg}")
        }
        // Errors without a position are at the end of the input (unexpected end of file).
        None => {
            let (line, col) = line_col(text, text.len());
            format!("line {line}, column {col} (end of file): {msg}")
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// A parsed ONNX model file, still in protobuf form, with what is needed to resolve its
/// external data. The buffer the model was decoded from stays alive as long as the tensors
/// sliced from it.
#[derive(Clone, Debug)]
pub struct OnnxFile {
    /// The decoded model.
    pub model: ModelProto,
    /// The file it came from (used in messages and to resolve external data).
    pub path: PathBuf,
    /// The folder external data paths are relative to.
    pub dir: PathBuf,
    /// The file's bytes (its memory map). For a binary model the tensors' raw data are slices
    /// of it; a text-format model's tensors live in a separate re-encoded buffer instead.
    pub buffer: Bytes,
}

impl OnnxFile {
    /// Reads a model file: binary protobuf, or text format for `.onnxtxt` and the other text
    /// extensions of [`Format::from_path`]. A file with an unknown extension that fails to decode
    /// as binary but is UTF-8 text is tried as text format.
    ///
    /// ```no_run
    /// let f = qaic_onnx::OnnxFile::read("model.onnx".as_ref())?;
    /// println!("{} nodes", f.model.graph.as_ref().map_or(0, |g| g.node.len()));
    /// # Ok::<(), qaic_onnx::OnnxError>(())
    /// ```
    pub fn read(path: &Path) -> Result<OnnxFile, OnnxError> {
        let bytes = map_file(path)?;
        if bytes.is_empty() {
            return Err(OnnxError::Empty { path: path.to_path_buf(), what: "model" });
        }
        let origin = path.display().to_string();
        let model = match Format::from_path(path) {
            Format::Text => parse_text::<ModelProto>(&bytes, "onnx.ModelProto", &origin)?,
            Format::Binary => match decode_binary::<ModelProto>(bytes.clone(), &origin, "model") {
                Ok(m) => m,
                Err(bin_err) => {
                    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                    let texty = !matches!(ext, "onnx" | "pb") && std::str::from_utf8(&bytes).is_ok();
                    match texty {
                        true => parse_text::<ModelProto>(&bytes, "onnx.ModelProto", &origin).map_err(|_| bin_err)?,
                        false => return Err(bin_err),
                    }
                }
            },
        };
        tracing::debug!("{origin}: read {} bytes", bytes.len());
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let f = OnnxFile { model, path: path.to_path_buf(), dir, buffer: bytes };
        f.check_shape()?;
        Ok(f)
    }

    /// Wraps an in-memory model. External data, if any, is resolved relative to `dir`.
    pub fn from_model(model: ModelProto, label: &str, dir: &Path) -> Result<OnnxFile, OnnxError> {
        let f = OnnxFile { model, path: PathBuf::from(label), dir: dir.to_path_buf(), buffer: Bytes::new() };
        f.check_shape()?;
        Ok(f)
    }

    /// Decodes a binary model held in memory (zero-copy: tensors slice `bytes`).
    pub fn from_bytes(bytes: Bytes, label: &str, dir: &Path) -> Result<OnnxFile, OnnxError> {
        if bytes.is_empty() {
            return Err(OnnxError::Empty { path: PathBuf::from(label), what: "model" });
        }
        let model = decode_binary::<ModelProto>(bytes.clone(), label, "model")?;
        let mut f = OnnxFile::from_model(model, label, dir)?;
        f.buffer = bytes;
        Ok(f)
    }

    /// The label used in messages (the file path).
    pub fn origin(&self) -> String {
        self.path.display().to_string()
    }

    /// Checks that decoding produced something model-like: protobuf decodes many non-ONNX byte
    /// strings "successfully" into a message with unknown fields skipped.
    fn check_shape(&self) -> Result<(), OnnxError> {
        let origin = self.origin();
        let Some(g) = &self.model.graph else {
            return Err(OnnxError::invalid(
                &origin,
                "the model has no graph (ModelProto.graph is missing): not an ONNX model, or a corrupt one",
            ));
        };
        if self.model.ir_version.is_none() && g.node.is_empty() && g.input.is_empty() && g.output.is_empty() {
            return Err(OnnxError::invalid(&origin, "the model has no ir_version and an empty graph: not an ONNX model?"));
        }
        Ok(())
    }
}
