//! `cargo xtask setup`: installs the Python packages and Debian tools the project needs, skipping what is
//! already there.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// PyPI packages, pinned. onnx 1.22.0 is the version whose backend node tests we run; onnxruntime 1.32.0
/// produced the zoo's reference outputs. numpy 2.4.6 and protobuf 7.36.2 are pinned too: with them the
/// light_resnet50_rand recipe gives the zoo's SHA-256 (checked; see tools/light_resnet50_rand.py).
pub const PY_PACKAGES: &[(&str, &str)] = &[
    ("onnx", "1.22.0"),
    ("onnxruntime", "1.32.0"),
    ("numpy", "2.4.6"),
    ("protobuf", "7.36.2"),
];

/// Debian packages, with how to tell each is present.
struct AptNeed {
    package: &'static str,
    why: &'static str,
    present: fn() -> bool,
}

fn gnu_time_present() -> bool {
    Command::new("/usr/bin/time")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains("GNU")
                || String::from_utf8_lossy(&o.stderr).contains("GNU")
        })
}

fn python_present() -> bool {
    cmd::succeeds(cmd::python().arg("--version"))
}

fn pip_present() -> bool {
    cmd::succeeds(cmd::python().args(["-m", "pip", "--version"]))
}

const APT_NEEDS: &[AptNeed] = &[
    AptNeed {
        package: "time",
        why: "GNU time (/usr/bin/time -v) for peak-memory measurements",
        present: gnu_time_present,
    },
    AptNeed {
        package: "python3",
        why: "the Python tools under tools/",
        present: python_present,
    },
    AptNeed {
        package: "python3-pip",
        why: "installing the pinned PyPI packages",
        present: pip_present,
    },
];

pub fn run() -> Result<()> {
    apt()?;
    pip()?;
    println!("setup: done");
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&AptNeed> = APT_NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        println!(
            "setup: apt packages present: {}",
            APT_NEEDS
                .iter()
                .map(|n| n.package)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|n| n.package).collect();
    for n in &missing {
        println!("setup: missing {} ({})", n.package, n.why);
    }
    let uid = cmd::output(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        bail!(
            "need Debian packages {}; run as root: apt-get update && apt-get install -y {}",
            names.join(" "),
            names.join(" ")
        );
    }
    cmd::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&names)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if let Some(n) = missing.iter().find(|n| !(n.present)()) {
        bail!("apt-get installed {} but it is still not usable", n.package);
    }
    println!("setup: installed apt packages: {}", names.join(", "));
    Ok(())
}

/// Versions of `names` installed for our Python (None = not installed).
fn installed_versions(names: &[&str]) -> Result<BTreeMap<String, Option<String>>> {
    let script = "import json, sys, importlib.metadata as m\n\
                  out = {}\n\
                  for n in sys.argv[1:]:\n\
                  \x20   try: out[n] = m.version(n)\n\
                  \x20   except m.PackageNotFoundError: out[n] = None\n\
                  print(json.dumps(out))\n";
    let text = cmd::output(cmd::python().arg("-c").arg(script).args(names))?;
    serde_json::from_str(text.trim())
        .with_context(|| format!("parsing installed package versions from {text:?}"))
}

fn pip() -> Result<()> {
    let names: Vec<&str> = PY_PACKAGES.iter().map(|(n, _)| *n).collect();
    let have = installed_versions(&names)?;
    let wrong: Vec<String> = PY_PACKAGES
        .iter()
        .filter(|(n, v)| have.get(*n).and_then(|x| x.as_deref()) != Some(*v))
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    let pinned: Vec<String> = PY_PACKAGES
        .iter()
        .map(|(n, v)| format!("{n}=={v}"))
        .collect();
    if wrong.is_empty() {
        println!("setup: python packages present: {}", pinned.join(" "));
        return Ok(());
    }
    for (n, v) in PY_PACKAGES {
        match have.get(*n).and_then(|x| x.as_deref()) {
            Some(h) if h == *v => {}
            Some(h) => println!("setup: {n} {h} installed, want {v}"),
            None => println!("setup: {n} not installed, want {v}"),
        }
    }
    // All pins in one pip call so the resolver sees them together.
    let mut c = cmd::python();
    c.args([
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
    ]);
    if externally_managed()? {
        // Debian's own python3 refuses pip installs without this; a pyenv/venv python does not need it.
        c.arg("--break-system-packages");
    }
    cmd::run(c.args(&pinned))?;
    let after = installed_versions(&names)?;
    for (n, v) in PY_PACKAGES {
        let got = after.get(*n).and_then(|x| x.as_deref());
        if got != Some(*v) {
            bail!("after pip install, {n} is {got:?}, want {v}");
        }
    }
    println!("setup: installed python packages: {}", wrong.join(" "));
    Ok(())
}

fn externally_managed() -> Result<bool> {
    let script = "import os, sysconfig; print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))";
    Ok(cmd::output(cmd::python().args(["-c", script]))?.trim() == "True")
}
