//! Embeds the git commit of the source tree (if any) as `QAIC_GIT_SHA` for `-version-extended`.
use std::path::Path;
use std::process::Command;

fn main() {
    let sha = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=QAIC_GIT_SHA={sha}");
    // Rebuild when HEAD moves; the ref file HEAD points at changes on every commit.
    let git_dir = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    if let Some(dir) = git_dir {
        let dir = Path::new(&dir);
        let head = dir.join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head)
            && let Some(r) = text.strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed={}", dir.join(r.trim()).display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
