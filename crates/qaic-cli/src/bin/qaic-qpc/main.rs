//! `qaic-qpc`: pack, unpack, validate, checksum and describe QPC containers (`programqpc.bin`).
//!
//! Sub-commands and flags follow the vendor tool (network-compilation reference, section 5.2);
//! `info` is ours. All work is done by the `qaic-qpc` library; this binary parses options and
//! prints.
//!
//! Exit codes: 0 success; 1 the container is invalid (a structural error, or `validate` found
//! an error); 2 bad command line; 3 any other failure (file not found, I/O error, bad input
//! files for `create`).

mod glob;

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use qaic_qpc::{
    CONSTANTS, CONSTANTS_DESC, NETWORK_BIN, NETWORK_DESC, NETWORK_ELF, Qpc, QpcError, QpcWriter, Report, Severity,
};

/// Exit code: container invalid.
const EXIT_INVALID: u8 = 1;
/// Exit code: any other failure.
const EXIT_FAILURE: u8 = 3;

#[derive(Parser)]
#[command(name = "qaic-qpc", version, about = "Pack, unpack, validate and checksum QPC containers (programqpc.bin)")]
#[command(after_help = "Exit codes: 0 success, 1 invalid container (or validation errors), 2 bad command line, 3 other failure.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pack files into a QPC (Layout F: base 0, segments sorted by name, no padding).
    #[command(visible_alias = "pack")]
    Create(CreateArgs),
    /// Unpack the segments of a QPC into a directory.
    #[command(visible_alias = "unpack")]
    Extract(ExtractArgs),
    /// Check a QPC: structure, mandatory segments, descriptors, constants, CRCs.
    Validate(ValidateArgs),
    /// Add CRC-32 segments to a QPC, written as OUTPUT_DIR/programqpc.bin.
    #[command(name = "addCRC32", alias = "addcrc32")]
    AddCrc32(AddCrcArgs),
    /// Describe a QPC: header, segments, network descriptor.
    Info(InfoArgs),
    /// List the device program of a qaic-rs QPC: I/O bindings, DDR buffers, then every core's
    /// instructions (decoded from network.elf).
    #[command(visible_alias = "listing")]
    List(ListArgs),
}

#[derive(Args)]
struct ListArgs {
    /// QPC file whose program to list.
    #[arg(short = 'i', long = "input-file", visible_alias = "qpc")]
    input: PathBuf,
    /// Only this core's instructions (with the header and buffers).
    #[arg(long)]
    core: Option<usize>,
}

#[derive(Args)]
struct CreateArgs {
    /// Input directory: every regular file in it (recursively) except *.json; segment name =
    /// path relative to the directory.
    #[arg(short = 'i', long = "input-dir")]
    input_dir: Option<PathBuf>,
    /// Network ELF file (segment network.elf).
    #[arg(short = 'n', long = "input-networkelf")]
    networkelf: Option<PathBuf>,
    /// Network descriptor file (segment networkdesc.bin).
    #[arg(short = 'd', long = "input-networkdesc")]
    networkdesc: Option<PathBuf>,
    /// Constants file (segment constants.bin).
    #[arg(short = 'c', long = "input-constant")]
    constant: Option<PathBuf>,
    /// Constants descriptor file (segment constantsdesc.bin).
    #[arg(short = 'e', long = "input-constantdesc")]
    constantdesc: Option<PathBuf>,
    /// Network binary (segment network.bin).
    #[arg(short = 'b', long = "input-networkbin")]
    networkbin: Option<PathBuf>,
    /// Output QPC file.
    #[arg(short = 'o', long = "output-file", default_value = "programqpc.bin")]
    output: PathBuf,
}

#[derive(Args)]
struct ExtractArgs {
    /// QPC file to unpack.
    #[arg(short = 'i', long = "input-file", visible_alias = "qpc")]
    input: PathBuf,
    /// Directory receiving the segments (created if needed).
    #[arg(short = 'o', long = "output-dir", default_value = ".")]
    output_dir: PathBuf,
    /// Only segments whose name (or output path) matches this glob; may be repeated.
    #[arg(short = 's', long = "select")]
    select: Vec<String>,
}

#[derive(Args)]
struct ValidateArgs {
    /// QPC file to check.
    #[arg(short = 'i', long = "input-file", visible_alias = "qpc")]
    input: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AddCrcArgs {
    /// QPC file to checksum.
    #[arg(short = 'i', long = "input-file", visible_alias = "qpc")]
    input: PathBuf,
    /// Directory receiving the output.
    #[arg(short = 'o', long = "output-dir", default_value = ".")]
    output_dir: PathBuf,
    /// Output file name inside the output directory.
    #[arg(default_value = "programqpc.bin")]
    name: String,
}

#[derive(Args)]
struct InfoArgs {
    /// QPC file to describe.
    #[arg(short = 'i', long = "input-file", visible_alias = "qpc")]
    input: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(a) => create(a),
        Command::Extract(a) => extract(a),
        Command::Validate(a) => validate(a),
        Command::AddCrc32(a) => add_crc32(a),
        Command::Info(a) => info(a),
        Command::List(a) => list(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("qaic-qpc: error: {e:#}");
            let invalid = e.chain().any(|c| matches!(c.downcast_ref::<QpcError>(), Some(q) if !matches!(q, QpcError::Io { .. })));
            ExitCode::from(if invalid { EXIT_INVALID } else { EXIT_FAILURE })
        }
    }
}

fn open(path: &Path) -> Result<Qpc<'static>> {
    match Qpc::open(path) {
        Ok(q) => Ok(q),
        Err(e @ QpcError::Io { .. }) => Err(e.into()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("{}: not a valid QPC", path.display()))),
    }
}

fn create(a: CreateArgs) -> Result<u8> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(dir) = &a.input_dir {
        let out = std::fs::canonicalize(&a.output).ok();
        collect_dir(dir, dir, &mut files)?;
        // Re-packing into the input directory must not swallow the previous output.
        files.retain(|(_, p)| out.is_none() || std::fs::canonicalize(p).ok() != out);
        if files.is_empty() {
            bail!("{}: no input files (every file except *.json is packed)", dir.display());
        }
    }
    let singles = [
        (NETWORK_ELF, &a.networkelf),
        (NETWORK_DESC, &a.networkdesc),
        (CONSTANTS, &a.constant),
        (CONSTANTS_DESC, &a.constantdesc),
        (NETWORK_BIN, &a.networkbin),
    ];
    for (name, path) in singles {
        if let Some(p) = path {
            files.retain(|(n, _)| n != name);
            files.push((name.to_owned(), p.clone()));
        }
    }
    if files.is_empty() {
        bail!("nothing to pack: give -i DIR or individual files (-n, -d, -c, -e, -b)");
    }
    if !files.iter().any(|(n, _)| n == NETWORK_ELF) {
        bail!("no network.elf: give -n FILE or put network.elf in the input directory (a QPC requires it)");
    }
    let mut w = QpcWriter::new();
    for (name, path) in &files {
        w.add_file(name.clone(), path.clone());
    }
    // Errors here concern the input files, not a container: plain text, exit code 3.
    let size = w.write(&a.output).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("Created {} ({} segments, {size} bytes)", a.output.display(), files.len());
    Ok(0)
}

fn collect_dir(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read directory", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot read directory", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let md = std::fs::metadata(&path).with_context(|| format!("{}: cannot stat", path.display()))?;
        if md.is_dir() {
            collect_dir(root, &path, out)?;
        } else if md.is_file() {
            if path.extension().is_some_and(|x| x == "json") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("{}: file name is not UTF-8", path.display()))?
                .join("/");
            out.push((name, path));
        }
    }
    Ok(())
}

/// A segment name is untrusted: it must stay inside the output directory.
fn safe_relative(name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if name.contains('\\') || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("segment name {name:?} is not a safe relative path (absolute, '..', '.' or empty components); not extracted");
    }
    Ok(p.to_path_buf())
}

fn extract(a: ExtractArgs) -> Result<u8> {
    let qpc = open(&a.input)?;
    let n = extract_into(&qpc, &a.output_dir, &a.select)?;
    println!("Extracted {n} segment(s) from {} into {}", a.input.display(), a.output_dir.display());
    Ok(0)
}

fn extract_into(qpc: &Qpc<'_>, out_dir: &Path, select: &[String]) -> Result<usize> {
    let mut count = 0;
    for seg in qpc.segments() {
        let rel = safe_relative(seg.name())?;
        let path = out_dir.join(&rel);
        let shown = path.to_string_lossy();
        if !select.is_empty() && !select.iter().any(|g| glob::matches(g, seg.name()) || glob::matches(g, &shown)) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create directory", parent.display()))?;
        }
        qpc.save_segment(seg, &path).with_context(|| format!("extracting {}", seg.name()))?;
        count += 1;
        if seg.name() == NETWORK_DESC {
            match qpc.network_descriptor() {
                Ok(Some(nd)) => {
                    let json_path = out_dir.join(format!("{}.json", rel.display()));
                    let json = nd.to_json().context("rendering networkdesc.bin as JSON")?;
                    write_atomic(&json_path, format!("{json}\n").as_bytes())?;
                }
                Ok(None) => {}
                Err(e) => eprintln!("qaic-qpc: warning: networkdesc.bin not rendered as JSON: {e}"),
            }
        }
        // A segment that is itself a QPC (multi-device programs) is unpacked beside it.
        let data = qpc.data(seg);
        if data.starts_with(&qaic_qpc::MAGIC.to_le_bytes()) {
            if let Ok(inner) = Qpc::from_bytes(data) {
                let dir = out_dir.join(format!("{}_dir", rel.display()));
                count += extract_into(&inner, &dir, &[])?;
            }
        }
    }
    Ok(count)
}

/// Writes a small file through a temporary file in the same directory, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", path.display()))
}

fn validate(a: ValidateArgs) -> Result<u8> {
    let qpc = match Qpc::open(&a.input) {
        Ok(q) => q,
        Err(e @ QpcError::Io { .. }) => return Err(e.into()),
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({ "file": a.input, "valid": false, "structure_error": e.to_string() }));
            } else {
                println!("QPC: {}", a.input.display());
                println!("error: [structure] {e}");
                println!("Validation FAILED (1 error)");
            }
            return Ok(EXIT_INVALID);
        }
    };
    let report = qaic_qpc::validate(&qpc);
    if a.json {
        let v = serde_json::json!({ "file": a.input, "valid": report.is_ok(), "report": report });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&qpc, &a.input);
        print_report(&report);
    }
    Ok(if report.is_ok() { 0 } else { EXIT_INVALID })
}

fn print_summary(qpc: &Qpc<'_>, path: &Path) {
    let h = qpc.header();
    println!(
        "QPC: {} ({} bytes, version {}.{}, base 0x{:X}, {} segments)",
        path.display(),
        h.size,
        h.major_version,
        h.minor_version,
        h.base,
        qpc.segments().len()
    );
    for s in qpc.segments() {
        let split = if s.name() == CONSTANTS { format!("  (static {}, dynamic {})", s.static_size(), s.len() - s.static_size()) } else { String::new() };
        println!("  {:<24} {:>14} bytes at 0x{:X}{split}", s.name(), s.len(), s.data_offset());
    }
}

fn print_report(r: &Report) {
    if let Some(name) = &r.network_name {
        println!("Network: {name:?}, batch size {}", r.batch_size.unwrap_or(0));
    }
    if let Some(n) = r.num_cores {
        println!("Number of NSP required: {n}");
    }
    if !r.io.is_empty() {
        println!("I/O bindings:");
        for io in &r.io {
            let bytes = io.bytes.map_or("?".to_owned(), |b| b.to_string());
            let dma = match (io.dma_buffer, io.dma_offset) {
                (Some(b), Some(o)) => format!("DMA buffer {b} @ {o}"),
                _ => "no DMA copy".to_owned(),
            };
            let partial = if io.partial { ", partial allowed" } else { "" };
            println!("  [{}] {:<6} {:?} {} {:?} {bytes} bytes, {dma}{partial}", io.buffer_index, io.direction, io.name, io.dtype, io.dims);
        }
    }
    if !r.dma_buffers.is_empty() {
        println!("DMA buffers:");
        for (i, (size, dir)) in r.dma_buffers.iter().enumerate() {
            println!("  [{i}] {dir:<3} {size} bytes");
        }
    }
    if let Some(c) = &r.constants {
        println!(
            "Constants: static {} bytes{}, dynamic {} bytes{}",
            c.static_size,
            if c.static_ecc { " (ECC)" } else { "" },
            c.dynamic_size,
            if c.dynamic_ecc { " (ECC)" } else { "" }
        );
    }
    for c in &r.crcs {
        let fmt = |v: Option<u32>| v.map_or("-".to_owned(), |v| format!("0x{v:08X}"));
        let ok = c.stored.is_some() && c.stored == c.computed;
        println!("CRC {}: stored {}, computed {} {}", c.segment, fmt(c.stored), fmt(c.computed), if ok { "OK" } else { "MISMATCH" });
    }
    for f in &r.findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "note",
        };
        println!("{tag}: [{}] {}", f.check, f.message);
    }
    let errors = r.with_severity(Severity::Error).count();
    let warnings = r.with_severity(Severity::Warning).count();
    if errors == 0 {
        println!("Validation PASSED ({warnings} warning(s))");
    } else {
        println!("Validation FAILED ({errors} error(s), {warnings} warning(s))");
    }
}

fn add_crc32(a: AddCrcArgs) -> Result<u8> {
    let qpc = open(&a.input)?;
    if a.name.contains('/') {
        bail!("output name {:?} must be a file name; use -o for the directory", a.name);
    }
    std::fs::create_dir_all(&a.output_dir).with_context(|| format!("{}: cannot create directory", a.output_dir.display()))?;
    let out = a.output_dir.join(&a.name);
    let crcs = qaic_qpc::crc_segments(&qpc)?;
    let size = qaic_qpc::add_crc32(&qpc)?.write(&out)?;
    for (name, v) in &crcs {
        println!("{name}: 0x{v:08X}");
    }
    println!("Wrote {} ({size} bytes, {} CRC segment(s))", out.display(), crcs.len());
    Ok(0)
}

/// `list`: the program listing (qaic-device's text form), preceded by the descriptor's I/O.
fn list(a: ListArgs) -> Result<u8> {
    let qpc = open(&a.input)?;
    let elf = qpc.segment(NETWORK_ELF).with_context(|| format!("{}: no network.elf segment", a.input.display()))?;
    let program = match qaic_device::Program::from_elf(elf) {
        Ok(p) => p,
        Err(e) => bail!("{}: network.elf: {e}", a.input.display()),
    };
    if let Some(c) = a.core
        && c >= program.cores.len()
    {
        bail!("--core {c}: the program has {} core(s) (0 to {})", program.cores.len(), program.cores.len() - 1);
    }
    if let Ok(Some(d)) = qpc.network_descriptor() {
        for (dir, ios) in [("input", &d.inputs), ("output", &d.outputs)] {
            for b in ios.iter() {
                let t = if dir == "input" { b.io_initial.as_ref() } else { b.io_transformed.as_ref() };
                let buf = b.copy_step().and_then(|s| s.copy_dma_buffer.as_ref()).map_or(-1, |c| c.buffer_num as i64);
                println!("{dir} {:?} dims {:?} dma buffer {buf} ({} transform step(s))", b.name, t.map(|t| t.dims.clone()).unwrap_or_default(), b.transformseq.len());
            }
        }
    }
    let text = program.listing();
    for line in text.lines() {
        let keep = match a.core {
            None => true,
            Some(c) => !line.starts_with("core ") || line.starts_with(&format!("core {c}:")),
        };
        if keep {
            println!("{line}");
        }
    }
    Ok(0)
}

fn info(a: InfoArgs) -> Result<u8> {
    let qpc = open(&a.input)?;
    let desc = qpc.network_descriptor();
    let cdesc = qpc.constants_descriptor();
    if a.json {
        let nd = match &desc {
            Ok(Some(d)) => serde_json::to_value(d)?,
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let cd = match &cdesc {
            Ok(Some(d)) => serde_json::to_value(d)?,
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let v = serde_json::json!({
            "file": a.input,
            "header": qpc.header(),
            "segments": qpc.segments(),
            "networkdesc": nd,
            "constantsdesc": cd,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    print_summary(&qpc, &a.input);
    match desc {
        Ok(Some(d)) => {
            println!("Network descriptor v{}.{}: {:?}, batch size {}", d.major_version, d.minor_version, d.network_name, d.batch_size);
            println!("Number of NSP required: {}", d.num_cores);
            println!("Inputs: {}, outputs: {}, DMA buffers: {}", d.inputs.len(), d.outputs.len(), d.dma_buffers.len());
            for (k, io) in d.inputs.iter().chain(&d.outputs).enumerate() {
                let t = if k < d.inputs.len() { io.io_initial.as_ref() } else { io.io_transformed.as_ref() };
                let ty = t.and_then(|t| qaic_qpc::DataType::try_from(t.r#type).ok()).map_or("?".into(), |t| t.to_string());
                println!("  [{k}] {:?} {ty} {:?}", io.name, t.map(|t| t.dims.clone()).unwrap_or_default());
            }
        }
        Ok(None) => println!("No networkdesc.bin"),
        Err(e) => println!("networkdesc.bin: {e}"),
    }
    match cdesc {
        Ok(Some(c)) => println!("Constants descriptor: static {} bytes, dynamic {} bytes", c.static_size, c.dynamic_size),
        Ok(None) => {}
        Err(e) => println!("constantsdesc.bin: {e}"),
    }
    Ok(0)
}
