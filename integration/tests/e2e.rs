//! End-to-end tests driving the built `cfs-export` against real tools.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use anyhow::{ensure, Result};
use integration::fixture::{self, sha256, standard_layers, write_layout, Kind};
use integration::{cfs, have_tool, run, strict};
use libtest_mimic::{Arguments, Failed, Trial};

type TestFn = fn() -> Result<()>;

/// A test and the tools it needs.
fn trial(name: &'static str, tools: &'static [&'static str], f: TestFn) -> Trial {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if !missing.is_empty() && !strict() {
        return Trial::test(name, || Ok(())).with_ignored_flag(true);
    }
    Trial::test(name, move || {
        if !missing.is_empty() {
            return Err(Failed::from(format!(
                "missing tools under CI=true: {} (make install-deps installs them)",
                missing.join(", ")
            )));
        }
        f().map_err(|e| Failed::from(format!("{e:#}")))
    })
}

fn main() {
    let args = Arguments::from_args();
    let tests = vec![trial(
        "skopeo_reads_exported_layout",
        &["skopeo"],
        skopeo_reads_exported_layout,
    )];
    libtest_mimic::run(&args, tests).exit();
}

fn skopeo(args: &[&str]) -> Result<Vec<u8>> {
    Ok(run(Command::new("skopeo").args(args))?.stdout)
}

/// Issue 3: the default export is an image skopeo accepts, with the original
/// image ID and every layer decompressing to its diff_id.
fn skopeo_reads_exported_layout() -> Result<()> {
    let t = tempfile::tempdir()?;
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app:1", "amd64", &standard_layers());
    cfs(
        &repo,
        &["import", &format!("oci:{}:app:1", f.layout.display())],
    )?;
    let out = t.path().join("out");
    cfs(
        &repo,
        &["export", "app:1", "--to", &format!("oci:{}", out.display())],
    )?;
    let src = format!("oci:{}:app:1", out.display());

    let config = skopeo(&["inspect", "--raw", "--config", &src])?;
    ensure!(sha256(&config) == f.config_digest, "config digest changed");
    let inspect: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &src])?)?;
    ensure!(
        inspect["Architecture"] == "amd64" && inspect["Os"] == "linux",
        "{inspect}"
    );

    let dir = t.path().join("dir");
    skopeo(&["copy", "-q", &src, &format!("dir:{}", dir.display())])?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    ensure!(manifest["config"]["digest"] == f.config_digest.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    ensure!(layers.len() == 3);
    let kinds = [Kind::Gzip, Kind::Zstd, Kind::Tar];
    for (i, l) in layers.iter().enumerate() {
        let mt = l["mediaType"].as_str().unwrap();
        ensure!(Kind::from_media_type(mt) == kinds[i], "layer {i} is {mt}");
        let blob = std::fs::read(dir.join(&l["digest"].as_str().unwrap()[7..]))?;
        let tar = fixture::decompress(mt, &blob);
        ensure!(sha256(&tar) == f.diff_ids[i], "layer {i} diff_id");
    }
    ensure!(
        sha256(&std::fs::read(dir.join(&f.config_digest[7..]))?) == f.config_digest,
        "config in dir: differs"
    );
    Ok(())
}
