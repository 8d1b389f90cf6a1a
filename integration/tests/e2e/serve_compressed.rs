//! `cfs-export serve --compression gzip|zstd`: deterministic compressed
//! layers under a new manifest, their digests learned once at the first
//! start and remembered in the index cache; a damaged index entry cuts the
//! blob instead of serving wrong bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256};
use integration::run;

use super::serve::{copied_layout, os_tars, skopeo, Image, Serve, SERVED, TAGGED};

/// The announced manifest digest and index report of a `--json` start.
fn announced(serve: &Serve) -> Result<(String, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_str(&serve.first)?;
    let entry = &v["images"][0];
    ensure!(
        entry["image"] == TAGGED && entry["original_manifest"] == false,
        "announced {v}"
    );
    let digest = entry["manifest_digest"]
        .as_str()
        .context("manifest_digest")?
        .to_string();
    Ok((digest, v["indexed"].clone()))
}

/// `skopeo copy` of the served image into `oci:OUT:os`.
fn copy(serve: &Serve, out: &Path) -> Result<Vec<u8>> {
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &serve.docker(&format!("{SERVED}:1")),
        &format!("oci:{}:os", out.display()),
    ])
}

/// The index entries of `kind` under the image's cache.
fn entries(img: &Image, kind: &str) -> Result<Vec<PathBuf>> {
    let dir = img.cache.join("cfs-export/index");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| Ok(e?.path()))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&format!("-{kind}")))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// HEAD of a compressed blob answers its size and digest (from the index,
/// nothing compressed); a range is that part of the blob skopeo copied.
fn head_and_range(serve: &Serve, layer: &serde_json::Value, copied: &Path) -> Result<()> {
    let digest = layer["digest"].as_str().context("digest")?;
    let url = format!("http://{}/v2/{SERVED}/blobs/{digest}", serve.addr);
    let head = run(Command::new("curl").args(["-sS", "-I", &url]))?.stdout;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    for want in [
        format!("content-length: {}", layer["size"]),
        format!("docker-content-digest: {digest}"),
    ] {
        ensure!(
            head.contains(&want),
            "HEAD {digest}: no {want:?} in\n{head}"
        );
    }
    let part = run(Command::new("curl").args(["-sS", "-r", "100000-100999", &url]))?.stdout;
    let whole = fixture::read_blob(copied, digest);
    ensure!(
        part == whole[100_000..101_000],
        "range 100000-100999 of {digest}: {} bytes, not the copied blob's",
        part.len()
    );
    Ok(())
}

/// gzip and zstd: skopeo copies the image, each blob hashes to its digest
/// and decompresses to its diff_id, the config is kept; a restart serves
/// the same manifest without compressing anything; a wrong digest in the
/// index cuts the blob (skopeo fails, nothing lands) and says what to do.
pub fn compressed_layers_from_the_index() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars(), &[TAGGED])?;
    for (kind, media_type) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let args = ["--anonymous", "--json", "--compression", kind];
        let started = Instant::now();
        let first = Serve::start(&img, &args)?;
        let startup = started.elapsed();
        let (digest, indexed) = announced(&first)?;
        let note = format!("note: compressing 2 layers once to learn their {kind} digests");
        ensure!(
            first.log_text().contains(&note),
            "{kind}: no {note:?} on stderr:\n{}",
            first.log_text()
        );
        ensure!(
            indexed["compressed"] == 2 && indexed["layers"] == 2,
            "{kind}: indexed {indexed}"
        );
        eprintln!("{kind}: first start {startup:?}, manifest {digest}, indexed {indexed}");
        ensure!(
            entries(&img, kind)?.len() == 2,
            "{kind}: index entries {:?}",
            entries(&img, kind)?
        );

        let out = t.path().join(format!("copy-{kind}"));
        copy(&first, &out)?;
        let (copied, manifest) = copied_layout(&out, &img.config_digest)?;
        ensure!(
            copied == digest,
            "{kind}: copied manifest {copied}, served {digest}"
        );
        for l in manifest["layers"].as_array().context("layers")? {
            ensure!(
                l["mediaType"] == media_type,
                "{kind}: layer media type {}",
                l["mediaType"]
            );
        }
        ensure!(
            super::diff_ids_of_layout(&out, "os")? == img.diff_ids,
            "{kind}: decompressed layers are not the diff_ids"
        );
        let layer = &manifest["layers"][0];
        head_and_range(&first, layer, &out)?;
        drop(first);

        // A restart compresses nothing and serves the same manifest.
        let started = Instant::now();
        let second = Serve::start(&img, &args)?;
        let restart = started.elapsed();
        let (again, indexed) = announced(&second)?;
        ensure!(
            again == digest,
            "{kind}: restart served {again}, first {digest}"
        );
        ensure!(
            indexed["compressed"] == 0 && !second.log_text().contains("note: compress"),
            "{kind}: the restart compressed ({indexed}):\n{}",
            second.log_text()
        );
        eprintln!("{kind}: restart {restart:?}, manifest {again}");
        let out = t.path().join(format!("copy-{kind}-again"));
        copy(&second, &out)?;
        ensure!(
            copied_layout(&out, &img.config_digest)?.0 == digest,
            "{kind}: second copy"
        );
        drop(second);

        // A damaged entry: a wrong digest (well formed) for the first layer.
        let entry = entries(&img, kind)?
            .into_iter()
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| img.diff_ids[0].ends_with(n.split('-').next().unwrap_or("")))
            })
            .context("the first layer's index entry")?;
        let text = std::fs::read_to_string(&entry)?;
        let (_, size) = text.trim().split_once(' ').context("entry")?;
        let wrong = sha256(b"not this layer");
        std::fs::write(&entry, format!("{wrong} {size}\n"))?;
        let damaged = Serve::start(&img, &args)?;
        let out = t.path().join(format!("copy-{kind}-damaged"));
        let failed = copy(&damaged, &out);
        ensure!(
            failed.is_err(),
            "{kind}: skopeo copied a blob the index lied about"
        );
        let landed = out.join("blobs/sha256").join(&wrong[7..]);
        ensure!(
            !landed.exists(),
            "{kind}: the wrong blob landed in the layout"
        );
        let index: Option<serde_json::Value> = std::fs::read(out.join("index.json"))
            .ok()
            .map(|b| serde_json::from_slice(&b))
            .transpose()?;
        ensure!(
            index
                .as_ref()
                .and_then(|i| i["manifests"].as_array())
                .is_none_or(|m| m.is_empty()),
            "{kind}: an image landed: {index:?}"
        );
        let log = damaged.log_text();
        let advice = format!("delete {} and restart serve", entry.display());
        ensure!(
            log.contains(&wrong) && log.contains(&advice),
            "{kind}: serve's log does not name the entry and what to do ({advice:?}):\n{log}"
        );
        if let Some(line) = log.lines().find(|l| l.contains(&advice)) {
            eprintln!("{kind}: damaged entry: {line}");
        }
        drop(damaged);
        std::fs::remove_file(&entry)?;
        // With the entry gone the next start learns it again.
        let healed = Serve::start(&img, &args)?;
        let (healed_digest, indexed) = announced(&healed)?;
        ensure!(
            healed_digest == digest && indexed["compressed"] == 1,
            "{kind}: after deleting the entry: {healed_digest}, {indexed}"
        );
    }
    Ok(())
}
