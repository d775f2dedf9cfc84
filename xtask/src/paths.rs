//! Where things live: the repository, the shared data folder, the data caches under `target/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The folders every task works with.
pub struct Paths {
    /// Repository root (the folder with the workspace Cargo.toml).
    pub repo: PathBuf,
    /// `<repo>/target`: downloads and generated data. Always the repository's own `target/`, even when
    /// `CARGO_TARGET_DIR` points elsewhere, so every developer and CI share one cache.
    pub data: PathBuf,
    /// Cargo's target folder (`$CARGO_TARGET_DIR` or `<repo>/target`): where built binaries are.
    pub cargo_target: PathBuf,
}

impl Paths {
    pub fn new() -> Result<Self> {
        // xtask/ is one level below the root; known at compile time, so the binary works from any cwd.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask's manifest folder has no parent")?
            .to_path_buf();
        let data = repo.join("target");
        let cargo_target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => std::path::absolute(PathBuf::from(dir))?,
            _ => data.clone(),
        };
        Ok(Paths {
            repo,
            data,
            cargo_target,
        })
    }

    /// The shared reference folder: `$QAIC_SHARED`, else `<repo>/../shared`. Must hold `zoo/manifest.json`.
    pub fn shared(&self) -> Result<PathBuf> {
        let (dir, how) = match std::env::var_os("QAIC_SHARED") {
            Some(d) if !d.is_empty() => (PathBuf::from(d), "$QAIC_SHARED"),
            _ => (self.repo.join("..").join("shared"), "<repo>/../shared"),
        };
        let manifest = dir.join("zoo").join("manifest.json");
        if !manifest.is_file() {
            bail!(
                "shared data folder not found: {} ({how}) has no zoo/manifest.json; set QAIC_SHARED to the shared/ folder",
                dir.display()
            );
        }
        dir.canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))
    }

    /// Cached wheels and other downloads.
    pub fn downloads(&self) -> PathBuf {
        self.data.join("downloads")
    }

    /// ONNX backend node test cases (`<case>/model.onnx`, `<case>/test_data_set_N/`).
    pub fn node_tests(&self) -> PathBuf {
        self.data.join("onnx-node-tests")
    }

    /// Models the project builds itself (light_resnet50_rand.onnx).
    pub fn zoo_built(&self) -> PathBuf {
        self.data.join("zoo")
    }

    /// Prepared benchmark inputs and results.
    pub fn bench(&self) -> PathBuf {
        self.data.join("bench")
    }

    pub fn tool(&self, script: &str) -> PathBuf {
        self.repo.join("tools").join(script)
    }

    /// The qaic-exec binary as `cargo build --release -p qaic-cli` leaves it.
    pub fn qaic_exec(&self) -> PathBuf {
        self.cargo_target.join("release").join("qaic-exec")
    }
}
