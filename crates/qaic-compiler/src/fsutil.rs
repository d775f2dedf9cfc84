//! Writing user-visible files safely: to a temporary file in the same folder, then renamed,
//! so an error never leaves a partial file behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An I/O error with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> FileError {
        FileError { path: path.into(), source }
    }
}

/// Writes `data` to `path` atomically (temp file in the same folder + rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::new(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn writes_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_atomic(&p, b"xyz").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"xyz");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let bad = d.path().join("missing-dir").join("b.bin");
        let e = write_atomic(&bad, b"x").unwrap_err();
        assert!(e.to_string().contains("b.bin"));
    }
}
