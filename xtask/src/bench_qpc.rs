//! `cargo xtask bench` part for the QPC container: pack, validate (with CRCs) and extract a QPC
//! whose constants.bin is 2 GiB, each compared with `cp` / `cat` of the same bytes in the same
//! run, with peak RSS as GNU time reports it (`/usr/bin/time -v`, Debian package `time`).
//!
//! Two inputs: a sparse 2 GiB constants.bin (a few MiB of data, the rest a hole; `cp` and
//! qaic-qpc both keep holes) and a dense one (2 GiB of pseudo-random bytes; everything is copied).
//! Each figure is the best of 3 runs, alternating tool and baseline; wall and CPU (user + system)
//! time are both reported, since wall time on a shared machine mostly measures the queue.
//! Environment: `QAIC_QPC` = path of the qaic-qpc binary (default: `<target>/release/qaic-qpc`,
//! built if missing); `QPC_BENCH_DIR` = scratch directory on a real disk (default
//! `<target>/qpc-bench`); `QPC_BENCH_GIB` = constants size in GiB (default 2).

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const RUNS: usize = 3;

/// Runs the QPC benchmark and appends a Markdown section with the figures to `out`.
pub fn run(out: &mut String) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    let bin = match std::env::var_os("QAIC_QPC") {
        Some(p) => PathBuf::from(p),
        None => {
            let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "-p", "qaic-cli", "--bin", "qaic-qpc"])
                .status()
                .context("building qaic-qpc")?;
            if !st.success() {
                bail!("cargo build of qaic-qpc failed");
            }
            target.join("release/qaic-qpc")
        }
    };
    if !Path::new("/usr/bin/time").exists() {
        bail!("/usr/bin/time not found: install GNU time (apt-get install time)");
    }
    let gib: u64 = std::env::var("QPC_BENCH_GIB").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let dir = std::env::var_os("QPC_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| target.join("qpc-bench"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        for dense in [false, true] {
            bench_one(&bin, &dir, gib << 30, dense, out)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

struct Sample {
    /// Wall-clock seconds.
    secs: f64,
    /// User + system CPU seconds (robust against a loaded machine, unlike wall time).
    cpu: f64,
    rss_mib: f64,
}

/// Runs `argv` under `/usr/bin/time -v` with stdout discarded; wall time measured here.
fn measure(argv: &[&str]) -> Result<Sample> {
    let start = Instant::now();
    let o = Command::new("/usr/bin/time")
        .arg("-v")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {argv:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr);
    if !o.status.success() {
        bail!("{argv:?} failed: {err}");
    }
    let kib: f64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .context("no 'Maximum resident set size' in GNU time output")?;
    let field = |name: &str| -> Result<f64> {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no '{name}' in GNU time output"))
    };
    let cpu = field("User time (seconds):")? + field("System time (seconds):")?;
    Ok(Sample { secs, cpu, rss_mib: kib / 1024.0 })
}

/// Best of `RUNS` of the tool and of the baseline, alternating; `prep` runs before each (it gets
/// `true` before the tool, `false` before the baseline).
fn compare(tool: &[&str], base: &[&str], prep: &dyn Fn(bool) -> Result<()>) -> Result<(Sample, Sample)> {
    let worst = || Sample { secs: f64::MAX, cpu: f64::MAX, rss_mib: 0.0 };
    let (mut t, mut b) = (worst(), worst());
    let keep = |acc: &mut Sample, s: Sample| {
        acc.rss_mib = acc.rss_mib.max(s.rss_mib);
        acc.secs = acc.secs.min(s.secs);
        acc.cpu = acc.cpu.min(s.cpu);
    };
    for _ in 0..RUNS {
        prep(true)?;
        keep(&mut t, measure(tool)?);
        prep(false)?;
        keep(&mut b, measure(base)?);
    }
    Ok((t, b))
}

fn bench_one(bin: &Path, dir: &Path, len: u64, dense: bool, out: &mut String) -> Result<()> {
    let kind = if dense { "dense" } else { "sparse" };
    let d = dir.join(kind);
    std::fs::create_dir_all(&d)?;
    let consts = d.join("constants.bin");
    make_constants(&consts, len, dense)?;
    std::fs::write(d.join("network.elf"), pseudo_random(64 << 10, 7))?;
    std::fs::write(d.join("networkdesc.bin"), TINY_DESC)?;
    let mut cdesc = [0u8; 24];
    cdesc[..8].copy_from_slice(&len.to_le_bytes());
    std::fs::write(d.join("constantsdesc.bin"), cdesc)?;
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let (b, qpc, copy, xdir) = (s(bin), s(&d.join("programqpc.bin")), s(&d.join("copy.bin")), d.join("x"));
    let crcdir = d.join("crc");
    let crcqpc = s(&crcdir.join("programqpc.bin"));
    // Warm the page cache so neither side pays for the first read.
    measure(&["cat", &s(&consts)])?;
    let rm = |p: &str| -> Result<()> {
        let _ = std::fs::remove_file(p);
        Ok(())
    };
    let pack = [b.as_str(), "create", "-n", &s(&d.join("network.elf")), "-d", &s(&d.join("networkdesc.bin")), "-c", &s(&consts),
        "-e", &s(&d.join("constantsdesc.bin")), "-o", &qpc];
    let (tp, bp) = compare(&pack, &["cp", &s(&consts), &copy], &|tool| if tool { rm(&qpc) } else { rm(&copy) })?;
    let (ta, ba) = compare(&[&b, "addCRC32", "-i", &qpc, "-o", &s(&crcdir)], &["cp", &qpc, &copy], &|tool| {
        if tool { rm(&crcqpc) } else { rm(&copy) }
    })?;
    let (tv, bv) = compare(&[&b, "validate", "-i", &crcqpc], &["cat", &crcqpc], &|_| Ok(()))?;
    let xs = s(&xdir);
    let (tx, bx) = compare(&[&b, "extract", "-i", &crcqpc, "-o", &xs], &["cp", &crcqpc, &copy], &|tool| {
        if tool {
            let _ = std::fs::remove_dir_all(&xdir);
            Ok(())
        } else {
            rm(&copy)
        }
    })?;
    let extracted = std::fs::metadata(xdir.join("constants.bin"))?.len();
    if extracted != len {
        bail!("extracted constants.bin has {extracted} bytes, expected {len}");
    }
    let gib = len as f64 / (1u64 << 30) as f64;
    writeln!(out, "\n### QPC: constants.bin {gib:.0} GiB, {kind} (best of {RUNS})\n")?;
    writeln!(
        out,
        "| operation | qaic-qpc wall s | qaic-qpc CPU s | baseline | baseline wall s | baseline CPU s | wall ratio | CPU ratio | qaic-qpc peak RSS MiB | baseline peak RSS MiB |"
    )?;
    writeln!(out, "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    for (op, t, base, bs) in [
        ("create (pack)", &tp, "cp constants.bin", &bp),
        ("addCRC32", &ta, "cp programqpc.bin", &ba),
        ("validate (with CRCs)", &tv, "cat programqpc.bin", &bv),
        ("extract", &tx, "cp programqpc.bin", &bx),
    ] {
        writeln!(
            out,
            "| {op} | {:.3} | {:.2} | {base} | {:.3} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            t.secs,
            t.cpu,
            bs.secs,
            bs.cpu,
            t.secs / bs.secs,
            if bs.cpu >= 0.05 { format!("{:.2}", t.cpu / bs.cpu) } else { "n/a (< 0.05 s)".into() },
            t.rss_mib,
            bs.rss_mib
        )?;
    }
    std::fs::remove_dir_all(&d)?;
    Ok(())
}

/// A `len`-byte constants file: sparse (1 MiB of data at the start, the middle and the end, a
/// hole elsewhere) or dense (pseudo-random throughout).
fn make_constants(path: &Path, len: u64, dense: bool) -> Result<()> {
    let f = File::create(path)?;
    f.set_len(len)?;
    let chunk = 8u64 << 20;
    if dense {
        let block = pseudo_random(chunk as usize, 1);
        let mut pos = 0;
        while pos < len {
            let n = chunk.min(len - pos) as usize;
            // Vary each chunk cheaply so no two are identical.
            let mut b = block[..n].to_vec();
            b[..8].copy_from_slice(&pos.to_le_bytes());
            f.write_all_at(&b, pos)?;
            pos += n as u64;
        }
    } else {
        let block = pseudo_random(1 << 20, 2);
        for at in [0, len / 2, len.saturating_sub(1 << 20)] {
            f.write_all_at(&block, at)?;
        }
    }
    f.sync_all()?;
    Ok(())
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The "tiny" network descriptor of the facts sheet (one input, one output, one core).
const TINY_DESC: [u8; 94] = [
    0x08, 0x09, 0x1a, 0x04, 0x74, 0x69, 0x6e, 0x79, 0x22, 0x20, 0x0a, 0x01, 0x78, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04,
    0x1a, 0x04, 0x22, 0x02, 0x01, 0x04, 0x22, 0x0d, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04,
    0x4a, 0x00, 0x30, 0x04, 0x2a, 0x24, 0x0a, 0x01, 0x79, 0x12, 0x04, 0x22, 0x02, 0x01, 0x04, 0x1a, 0x04, 0x22, 0x02,
    0x01, 0x04, 0x22, 0x11, 0x08, 0x06, 0x1d, 0x00, 0x00, 0x80, 0x3f, 0x2a, 0x02, 0x01, 0x04, 0x4a, 0x04, 0x08, 0x01,
    0x18, 0x01, 0x30, 0x04, 0x32, 0x02, 0x08, 0x10, 0x32, 0x04, 0x08, 0x10, 0x10, 0x01, 0x38, 0x01, 0x70, 0x01,
];
