//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0).
//!
//! Reads C-order arrays of every numeric dtype and `bool`, little- or big-endian (big-endian
//! data is byte-swapped). Fortran-order arrays, structured, string and object dtypes are
//! refused with an error naming the file and the problem.
//!
//! ```
//! use qaic_compiler::npy;
//! use qaic_tensor::{DType, Tensor};
//! let t = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let bytes = npy::to_npy_bytes(&t).unwrap();
//! let back = npy::parse(&bytes, "x.npy").unwrap();
//! assert!(back.bitwise_eq(&t));
//! ```

use std::path::Path;

use bytes::Bytes;
use qaic_tensor::{DType, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Errors reading a `.npy` file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: not a .npy file ({reason})")]
    Format { file: String, reason: String },
    #[error("{file}: Fortran-order arrays are not supported; save with np.save(f, np.ascontiguousarray(a))")]
    FortranOrder { file: String },
    #[error("{file}: unsupported dtype `{descr}` (numeric and bool dtypes only)")]
    UnsupportedDType { file: String, descr: String },
    #[error("{file}: shape {shape:?} of {dtype} needs {expected} data bytes, file has {got}")]
    Size { file: String, dtype: DType, shape: Vec<usize>, expected: usize, got: usize },
}

/// Reads a `.npy` file into a tensor (the data is not copied after reading, except to
/// byte-swap big-endian arrays).
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let file = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| NpyError::Io { file: file.clone(), source })?;
    parse_bytes(Bytes::from(data), &file)
}

/// Whether a buffer starts with the `.npy` magic string.
pub fn is_npy(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Parses `.npy` bytes; `file` is used in error messages.
pub fn parse(data: &[u8], file: &str) -> Result<Tensor, NpyError> {
    parse_bytes(Bytes::copy_from_slice(data), file)
}

/// Parses `.npy` bytes without copying the array data.
pub fn parse_bytes(data: Bytes, file: &str) -> Result<Tensor, NpyError> {
    let fmt = |reason: &str| NpyError::Format { file: file.to_string(), reason: reason.to_string() };
    if !is_npy(&data) {
        return Err(fmt("missing \\x93NUMPY magic"));
    }
    if data.len() < 10 {
        return Err(fmt("truncated header"));
    }
    let major = data[6];
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 => {
            if data.len() < 12 {
                return Err(fmt("truncated header"));
            }
            (u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize, 12)
        }
        v => return Err(fmt(&format!("unknown format version {v}"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| fmt("header longer than the file"))?;
    let header = std::str::from_utf8(&data[header_start..data_start]).map_err(|_| fmt("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| fmt("header has no 'descr'"))?;
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| fmt("header has no 'fortran_order'"))?;
    let shape_text = dict_value(header, "shape").ok_or_else(|| fmt("header has no 'shape'"))?;
    if fortran.trim() == "True" {
        return Err(NpyError::FortranOrder { file: file.to_string() });
    }
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"').to_string();
    let (dtype, big_endian) = parse_descr(&descr)
        .ok_or_else(|| NpyError::UnsupportedDType { file: file.to_string(), descr: descr.clone() })?;
    let shape = parse_shape(shape_text).ok_or_else(|| fmt(&format!("bad shape {shape_text}")))?;
    let n: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| fmt("shape overflows"))?;
    let elem = dtype.size_of().unwrap_or(1);
    let expected = n.checked_mul(elem).ok_or_else(|| fmt("shape overflows"))?;
    let got = data.len() - data_start;
    if got != expected {
        return Err(NpyError::Size { file: file.to_string(), dtype, shape, expected, got });
    }
    let mut body = data.slice(data_start..);
    if big_endian && elem > 1 {
        let mut v = body.to_vec();
        // Complex numbers swap each of their two float halves.
        let unit = if matches!(dtype, DType::Complex64 | DType::Complex128) { elem / 2 } else { elem };
        for c in v.chunks_exact_mut(unit) {
            c.reverse();
        }
        body = Bytes::from(v);
    }
    Tensor::from_bytes(dtype, shape.clone(), body)
        .map(Tensor::aligned)
        .map_err(|e| fmt(&e.to_string()))
}

/// The value text of `'key': value` in the header dict (up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 && rest.starts_with(['(', '[']) {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(str::trim).filter(|t| !t.is_empty()).map(|t| t.trim_end_matches('L').parse().ok()).collect()
}

/// `<f4` → (F32, false). `None` for dtypes we do not read.
fn parse_descr(d: &str) -> Option<(DType, bool)> {
    let (order, code) = match d.as_bytes().first()? {
        b'<' | b'=' | b'|' => (false, &d[1..]),
        b'>' => (true, &d[1..]),
        _ => (false, d),
    };
    let dt = match code {
        "b1" | "?" => DType::Bool,
        "i1" => DType::I8,
        "u1" => DType::U8,
        "i2" => DType::I16,
        "u2" => DType::U16,
        "i4" => DType::I32,
        "u4" => DType::U32,
        "i8" => DType::I64,
        "u8" => DType::U64,
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "c8" => DType::Complex64,
        "c16" => DType::Complex128,
        _ => return None,
    };
    Some((dt, order))
}

fn descr_of(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::U64 => "<u8",
        DType::F16 => "<f2",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::Complex64 => "<c8",
        DType::Complex128 => "<c16",
        _ => return None,
    })
}

/// Encodes a tensor as a version 1.0 `.npy` file. `None` for element types NumPy cannot hold
/// (bfloat16, float8, sub-byte and string types).
pub fn to_npy_bytes(t: &Tensor) -> Option<Vec<u8>> {
    let descr = descr_of(t.dtype())?;
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, header ends with '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(t.raw_bytes().ok()?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qaic_tensor::f16;

    fn with_header(major: u8, header: &str, body: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[major, 0]);
        if major == 1 {
            v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn round_trips_all_numeric() {
        let ts = vec![
            Tensor::from_vec(vec![3], vec![true, false, true]).unwrap(),
            Tensor::from_vec(vec![2, 1], vec![-1i8, 5]).unwrap(),
            Tensor::from_vec(vec![2], vec![7u16, 9]).unwrap(),
            Tensor::from_vec(vec![1, 2], vec![-7i64, 9]).unwrap(),
            Tensor::from_vec(vec![], vec![3.5f64]).unwrap(),
            Tensor::from_vec(vec![2], vec![f16::from_f32(1.5), f16::from_f32(-2.0)]).unwrap(),
            Tensor::from_vec(vec![0, 4], Vec::<f32>::new()).unwrap(),
            Tensor::from_vec(vec![2], vec![u64::MAX, 1]).unwrap(),
        ];
        for t in ts {
            let b = to_npy_bytes(&t).unwrap();
            assert_eq!((b.len() - t.raw_bytes().unwrap().len()) % 64, 0);
            let back = parse(&b, "t.npy").unwrap();
            assert!(back.bitwise_eq(&t), "{t:?} vs {back:?}");
        }
    }

    #[test]
    fn versions_2_and_3_and_big_endian() {
        let h = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
        let t = parse(&with_header(2, h, &[0, 0, 0, 1, 0, 0, 1, 0]), "b.npy").unwrap();
        assert_eq!(t.to_vec::<i32>().unwrap(), vec![1, 256]);
        let h = "{\"descr\": \"<u1\", \"fortran_order\": False, \"shape\": (1, 2)}\n";
        let t = parse(&with_header(3, h, &[4, 5]), "c.npy").unwrap();
        assert_eq!(t.shape(), &[1, 2]);
    }

    #[test]
    fn refusals_name_the_file() {
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n";
        let e = parse(&with_header(1, h, &[0; 16]), "f.npy").unwrap_err().to_string();
        assert!(e.starts_with("f.npy: Fortran-order"), "{e}");
        let h = "{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }\n";
        let e = parse(&with_header(1, h, &[0; 12]), "s.npy").unwrap_err().to_string();
        assert!(e.contains("unsupported dtype `<U3`"), "{e}");
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
        let e = parse(&with_header(1, h, &[0; 8]), "z.npy").unwrap_err().to_string();
        assert!(e.contains("needs 12 data bytes, file has 8"), "{e}");
        assert!(parse(b"garbage", "g.npy").is_err());
        assert!(parse(&with_header(1, "{'descr': '<f4'", &[]), "h.npy").is_err());
        let mut bad = with_header(1, "{}", &[]);
        bad[8] = 0xff;
        assert!(parse(&bad, "l.npy").is_err());
    }
}
