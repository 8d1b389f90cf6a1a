//! Helpers for the end-to-end tests: fixtures (shared with the library tests),
//! real-tool discovery, and command running that keeps the tool's stderr.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

#[path = "../../tests/common/mod.rs"]
pub mod fixture;

/// Is `name` on PATH?
pub fn have_tool(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
}

/// Under `CI=true` a missing tool is a failure, elsewhere a skip.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run a command; a non-zero exit is an error carrying its stdout and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Run `cfs-export --repo REPO ARGS…`, requiring success.
pub fn cfs(repo: &Path, args: &[&str]) -> Result<String> {
    let bin = fixture::bin();
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build` first (make test does)",
            bin.display()
        );
    }
    let out = run(Command::new(bin).arg("--repo").arg(repo).args(args))?;
    Ok(String::from_utf8(out.stdout)?)
}
