//! `cargo xtask zoo-models`: builds the models the project makes itself (light_resnet50_rand) into
//! `target/zoo/` and checks their SHA-256 against the zoo README.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::paths::Paths;

pub const LIGHT_RESNET50: &str = "light_resnet50_rand";
/// From the zoo README (onnx 1.23.2 / protobuf 7.36.2 / numpy 2.4.6); onnx 1.22.0 gives the same bytes.
pub const LIGHT_RESNET50_SHA256: &str =
    "467d6613e55e83d21b6094ec512ebdfd3b19f1e86df9ea28947933ca61eeafd6";

/// Builds (or finds cached) light_resnet50_rand.onnx; returns its path.
pub fn run(p: &Paths) -> Result<PathBuf> {
    let dir = p.zoo_built();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join(format!("{LIGHT_RESNET50}.onnx"));
    if out.is_file() {
        let have = cmd::sha256_file(&out)?;
        if have == LIGHT_RESNET50_SHA256 {
            println!("zoo-models: {} cached (sha256 ok)", out.display());
            reference(p, &out)?;
            return Ok(out);
        }
        println!(
            "zoo-models: {} has sha256 {have}, rebuilding",
            out.display()
        );
    }
    // The script writes the staging file itself (via its own temp + rename); we rename it into place only
    // once the hash is right, so `out` is never a wrong model.
    let staging = cmd::tmp_sibling(&out);
    let script = p.tool("light_resnet50_rand.py");
    cmd::run(cmd::python().arg(&script).arg(&staging)).context(
        "building light_resnet50_rand (run `cargo xtask setup` first for onnx and numpy)",
    )?;
    let got = cmd::sha256_file(&staging)?;
    if got != LIGHT_RESNET50_SHA256 {
        let _ = fs::remove_file(&staging);
        bail!(
            "{} built a model with sha256 {got}, expected {LIGHT_RESNET50_SHA256}; check the numpy/onnx/protobuf \
             versions against `cargo xtask setup`",
            script.display()
        );
    }
    fs::rename(&staging, &out)
        .with_context(|| format!("renaming {} to {}", staging.display(), out.display()))?;
    println!("zoo-models: built {} (sha256 ok)", out.display());
    reference(p, &out)?;
    Ok(out)
}

/// Writes the reference input and onnxruntime output the tests compare against
/// (`<name>_in.npy`, `<name>_out.npy` beside the model), unless already there.
fn reference(p: &Paths, model: &std::path::Path) -> Result<()> {
    let dir = model.parent().context("model path has no folder")?;
    let input = dir.join(format!("{LIGHT_RESNET50}_in.npy"));
    let output = dir.join(format!("{LIGHT_RESNET50}_out.npy"));
    if input.is_file() && output.is_file() {
        return Ok(());
    }
    cmd::run(cmd::python().arg(p.tool("light_resnet50_ref.py")).arg(model).arg(&input).arg(&output))
        .context("computing the light_resnet50_rand reference with onnxruntime (run `cargo xtask setup` first)")?;
    println!(
        "zoo-models: wrote {} and {}",
        input.display(),
        output.display()
    );
    Ok(())
}
