//! `cargo xtask conformance-data`: the ONNX backend node test cases, extracted from the onnx wheel.
//!
//! The wheel (`pip download --no-deps onnx==1.22.0`) is cached in `target/downloads/`; the cases are
//! extracted into `target/onnx-node-tests/<case>/` (model.onnx + test_data_set_N/*.pb). A `.complete` stamp
//! marks a finished extraction, so a second run neither downloads nor extracts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::paths::Paths;

pub const ONNX_VERSION: &str = "1.22.0";
/// Number of `node/<case>/model.onnx` in the onnx 1.22.0 wheel.
pub const EXPECTED_CASES: usize = 1765;
const PREFIX: &str = "onnx/backend/test/data/node/";
const STAMP: &str = ".complete";

pub fn run(p: &Paths) -> Result<PathBuf> {
    let out = p.node_tests();
    if let Some(count) = cached_count(&out) {
        println!(
            "conformance-data: {count} cases cached in {}",
            out.display()
        );
        return Ok(out);
    }
    let wheel = wheel(p)?;
    let tmp = cmd::tmp_sibling(&out);
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let files = extract(&wheel, &tmp)?;
    let count = count_cases(&tmp)?;
    if count != EXPECTED_CASES {
        bail!(
            "{} holds {count} node test cases, expected {EXPECTED_CASES} for onnx {ONNX_VERSION}",
            wheel.display()
        );
    }
    let stamp = format!(
        "onnx {ONNX_VERSION}\nwheel {}\nwheel_sha256 {}\nfiles {files}\ncases {count}\n",
        wheel
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        cmd::sha256_file(&wheel)?
    );
    fs::write(tmp.join(STAMP), stamp)
        .with_context(|| format!("writing the stamp in {}", tmp.display()))?;
    if out.exists() {
        // An incomplete earlier extraction (no stamp): replace it.
        fs::remove_dir_all(&out).with_context(|| format!("removing stale {}", out.display()))?;
    }
    fs::rename(&tmp, &out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    println!(
        "conformance-data: {count} cases ({files} files) extracted into {}",
        out.display()
    );
    Ok(out)
}

/// The case count from a complete extraction's stamp.
fn cached_count(out: &Path) -> Option<usize> {
    let stamp = fs::read_to_string(out.join(STAMP)).ok()?;
    if !stamp.lines().any(|l| l == format!("onnx {ONNX_VERSION}")) {
        return None;
    }
    let count = stamp
        .lines()
        .find_map(|l| l.strip_prefix("cases "))?
        .parse()
        .ok()?;
    (count == EXPECTED_CASES).then_some(count)
}

/// The cached onnx wheel, downloading it if absent.
fn wheel(p: &Paths) -> Result<PathBuf> {
    let dir = p.downloads();
    if let Some(w) = find_wheel(&dir)? {
        println!("conformance-data: using cached {}", w.display());
        return Ok(w);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    cmd::run(
        cmd::python()
            .args([
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
            ])
            .arg(&dir)
            .arg(format!("onnx=={ONNX_VERSION}")),
    )?;
    find_wheel(&dir)?.with_context(|| {
        format!(
            "pip download left no onnx-{ONNX_VERSION}-*.whl in {}",
            dir.display()
        )
    })
}

fn find_wheel(dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut found = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("onnx-{ONNX_VERSION}-")) && name.ends_with(".whl") {
            found.push(e.path());
        }
    }
    found.sort();
    Ok(found.into_iter().next())
}

/// Extracts every file under `PREFIX` into `dest` (prefix stripped); returns the number of files.
fn extract(wheel: &Path, dest: &Path) -> Result<usize> {
    let file = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file))
        .with_context(|| format!("reading zip {}", wheel.display()))?;
    let mut files = 0;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .with_context(|| format!("{}: entry {i}", wheel.display()))?;
        let name = entry
            .name()
            .with_context(|| format!("{}: entry {i} has a bad name", wheel.display()))?
            .into_owned();
        let Some(rel) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if entry.is_dir() || rel.is_empty() {
            continue;
        }
        // enclosed_name rejects absolute paths and `..`: a hostile archive cannot write outside `dest`.
        if entry.enclosed_name().is_none() {
            bail!("{}: unsafe path {name:?} in the archive", wheel.display());
        }
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut out =
            fs::File::create(&target).with_context(|| format!("creating {}", target.display()))?;
        io::copy(&mut entry, &mut out)
            .with_context(|| format!("extracting {name} from {}", wheel.display()))?;
        files += 1;
    }
    Ok(files)
}

/// Case folders: direct subfolders of `dir` that hold a model.onnx.
pub fn count_cases(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        if e.path().join("model.onnx").is_file() {
            n += 1;
        }
    }
    Ok(n)
}
