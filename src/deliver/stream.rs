//! containers-storage without a temporary layout: the image is served from
//! the repository to one `skopeo copy` ([`crate::serve`]), and skopeo keeps
//! its copies of the blobs in the storage's own `tmp/` (like podman's
//! `image_copy_tmp_dir = "storage"`), so nothing lands in `$TMPDIR`.
//! A registry or `dir:` is streamed to the same way when the image keeps an
//! original manifest a private OCI layout cannot hold (Docker schema2).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::compress::CompressionChoice;
use crate::deliver::skopeo::CopyOptions;
use crate::deliver::transfer::{
    check_space, graph_root, image_store, storage_reference, write_authfile, write_source_policy,
    TransferOptions, AUTH_FILE, POLICY_FILE,
};
use crate::export::{
    self, BlobBytes, ExportOptions, ExportReport, ImageReport, LayerReport, LayerStatus,
};
use crate::repo::image::{self, StoredImage};
use crate::serve::{Served, ServedLayer};
use crate::{create_private_dirs, UsageError};
use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;

/// Digests, uncompressed and compressed, of the layers a graph root already
/// has (from each driver's `layers.json`); empty when it cannot be read.
fn present_layers(root: &Path) -> HashSet<String> {
    #[derive(serde::Deserialize)]
    struct StoredLayerEntry {
        #[serde(rename = "diff-digest")]
        diff_digest: Option<String>,
        #[serde(rename = "compressed-diff-digest")]
        compressed_digest: Option<String>,
    }
    let mut present = HashSet::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return present;
    };
    for d in dirs.flatten() {
        if !d.file_name().to_string_lossy().ends_with("-layers") {
            continue;
        }
        let Ok(bytes) = std::fs::read(d.path().join("layers.json")) else {
            continue;
        };
        if let Ok(layers) = serde_json::from_slice::<Vec<StoredLayerEntry>>(&bytes) {
            present.extend(
                layers
                    .into_iter()
                    .flat_map(|l| [l.diff_digest, l.compressed_digest])
                    .flatten(),
            );
        }
    }
    present
}

/// Copy one image into containers-storage, streaming it to skopeo.
pub(crate) async fn stream_to_storage<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    images: Vec<StoredImage<ID>>,
    reference: &str,
    opts: ExportOptions,
    transfer: &TransferOptions,
) -> Result<ExportReport> {
    let destination = format!("containers-storage:{reference}");
    let [img] = images.as_slice() else {
        bail!(UsageError(format!(
            "{destination} takes one image; got {}",
            images.len()
        )));
    };
    let root = graph_root(reference, &transfer.storage)?;
    let (tmp_base, hint) = match &transfer.tmpdir {
        Some(dir) => (dir.clone(), "choose another with --tmpdir"),
        None => (
            root.join("tmp"),
            "free some space there or choose another directory with --tmpdir",
        ),
    };
    let target = Target {
        image_store: image_store(reference, &transfer.storage),
        skopeo_dest: storage_reference(reference, &transfer.storage)?,
        destination,
        root: Some(root),
        tmp_base,
        hint,
    };
    // Directories made here go again if the copy fails (a storage created
    // by the copy itself stays).
    let created = crate::first_missing_ancestor(&target.tmp_base);
    create_private_dirs(&target.tmp_base)?;
    // `original`: find which layers' original bytes we reproduce (cached
    // after the first time), before the manifest to serve is chosen.
    let opts = match opts.compression {
        CompressionChoice::Original => {
            let (r, i) = (repo.clone(), images.clone());
            tokio::task::spawn_blocking(move || export::with_reproduced(&r, &i, &opts))
                .await
                .context("export worker")??
        }
        CompressionChoice::Fixed(_) => opts,
    };
    let result = copy_streaming(repo, img, &target, opts, |_| Ok(CopyOptions::default())).await;
    if let (Err(_), Some(top)) = (&result, created) {
        remove_empty_dirs(&target.tmp_base, &top);
    }
    result
}

/// Copy one image to a registry or `dir:` (`destination`, as skopeo takes
/// it), streaming it to skopeo; `opts.reproduced` already searched. `dest`
/// gives skopeo's destination options, given our private directory (for an
/// auth file). skopeo must keep the blobs and manifest as served.
pub(crate) async fn stream_to_skopeo<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    img: &StoredImage<ID>,
    destination: &str,
    tmp_base: PathBuf,
    opts: ExportOptions,
    dest: impl FnOnce(&Path) -> Result<CopyOptions>,
) -> Result<ExportReport> {
    let target = Target {
        skopeo_dest: destination.to_string(),
        destination: destination.to_string(),
        root: None,
        image_store: None,
        tmp_base,
        hint: "set TMPDIR to a larger filesystem",
    };
    copy_streaming(repo, img, &target, opts, |dir| {
        Ok(CopyOptions {
            preserve_digests: true,
            ..dest(dir)?
        })
    })
    .await
}

/// Where a streamed copy goes and keeps its temporary data.
struct Target {
    /// The destination as skopeo takes it (with the storage specifier).
    skopeo_dest: String,
    /// The destination as the user named it.
    destination: String,
    /// containers-storage's graph root (`None` for a registry or `dir:`).
    root: Option<PathBuf>,
    /// storage.conf's `imagestore`, where image layers then live.
    image_store: Option<PathBuf>,
    /// Where skopeo's private temp directory is made.
    tmp_base: PathBuf,
    /// What to do when it is full.
    hint: &'static str,
}

/// Prefix of our private temp directories for skopeo: `cfs-export-<pid>-…`.
const STALE_PREFIX: &str = "cfs-export-";

/// The files we put in our private directory (skopeo's are its own).
const OWN_FILES: [&str; 2] = [AUTH_FILE, POLICY_FILE];

/// A run killed with SIGKILL cannot remove its private temp directory (skopeo
/// removes its own files when its source goes away): remove such directories
/// when empty and their process is gone. A live run's directory is never
/// touched.
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, _)) = name
            .strip_prefix(STALE_PREFIX)
            .and_then(|rest| rest.split_once('-'))
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            for ours in OWN_FILES {
                let _ = std::fs::remove_file(e.path().join(ours));
            }
            // Fails, harmlessly, when skopeo left something.
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Remove `from` and its parents up to `top`, as long as they are empty.
fn remove_empty_dirs(from: &Path, top: &Path) {
    for dir in from.ancestors() {
        if std::fs::remove_dir(dir).is_err() || dir == top {
            break;
        }
    }
}

/// Our private (0700) temp directory under `base`, named after our PID, so a
/// later run can tell it was left by a dead one.
fn private_temp_dir(base: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .prefix(&format!("{STALE_PREFIX}{}-", std::process::id()))
        .tempdir_in(base)
        .with_context(|| format!("Creating a temp directory in {}", base.display()))
}

/// The space skopeo needs: it keeps a copy of each blob it receives until
/// the copy ends; only the layers the storage lacks are sent. Their sizes
/// are the served ones.
fn space_needed<ID>(target: &Target, img: &StoredImage<ID>, served: &[ServedLayer]) -> u64 {
    let Some(root) = &target.root else {
        // Only containers-storage keeps its own copy of what it receives.
        return 0;
    };
    let mut present = present_layers(root);
    if let Some(store) = &target.image_store {
        present.extend(present_layers(store));
    }
    img.config_bytes.len() as u64
        + served
            .iter()
            .zip(&img.layers)
            .filter(|(d, l)| {
                !present.contains(d.digest().as_ref()) && !present.contains(l.diff_id.as_ref())
            })
            .map(|(d, _)| d)
            .map(|d| d.size())
            .sum::<u64>()
}

async fn copy_streaming<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    img: &StoredImage<ID>,
    target: &Target,
    opts: ExportOptions,
    dest: impl FnOnce(&Path) -> Result<CopyOptions>,
) -> Result<ExportReport> {
    let destination = &target.destination;
    remove_stale_dirs(&target.tmp_base);
    let tmp = private_temp_dir(&target.tmp_base)?;
    let started = Instant::now();
    let served = Served::start(
        repo,
        img,
        &opts.reproduced,
        opts.progress.clone(),
        opts.jobs,
    )
    .await?;
    let needed = space_needed(target, img, &served.layers);
    check_space(tmp.path(), needed, target.hint)?;
    // Only our skopeo may read the image: the credential reaches it through
    // a 0600 file in our 0700 directory, never through argv or environment.
    let host = served.addr.to_string();
    let copy = CopyOptions {
        src_tls_verify: Some(false),
        src_authfile: Some(write_authfile(tmp.path(), &host, &served.user_password())?),
        policy: Some(write_source_policy(
            tmp.path(),
            "docker",
            &served.policy_scope(),
        )?),
        tmpdir: Some(tmp.path().to_path_buf()),
        ..dest(tmp.path())?
    };
    opts.progress
        .stage(&format!("Copying to {destination} with skopeo"));
    let copied = crate::deliver::skopeo::copy(&served.source(), &target.skopeo_dest, &copy).await;
    opts.progress.stage_finished();
    let manifest_digest = served.manifest_digest.to_string();
    let original_manifest = served.original_manifest;
    let descriptors = served.layers.clone();
    let (log, layer_error) = served.stop().await;
    drop(tmp);
    // A damaged layer is the cause; skopeo only saw its response cut short.
    if let Some(e) = layer_error {
        return Err(e.context(format!("Copying to {destination}")));
    }
    copied.with_context(|| format!("Copying to {destination}"))?;

    let manifest = (manifest_digest, original_manifest);
    let mut report = streamed_report(img, &descriptors, &log, destination, manifest);
    report.transfer_seconds = Some(started.elapsed().as_secs_f64());
    Ok(report)
}

/// The report of a streamed copy: a layer skopeo did not ask for was already
/// in the storage.
fn streamed_report<ID>(
    img: &StoredImage<ID>,
    served: &[ServedLayer],
    log: &std::collections::HashMap<String, crate::serve::LayerServed>,
    destination: &str,
    (manifest_digest, original_manifest): (String, bool),
) -> ExportReport {
    let layers: Vec<LayerReport> = img
        .layers
        .iter()
        .zip(served)
        .map(|(l, d)| {
            let logged = log.get(d.digest().as_ref());
            let compression = d.compression;
            LayerReport {
                diff_id: l.diff_id.to_string(),
                blob_digest: d.digest().to_string(),
                media_type: d.descriptor.media_type().to_string(),
                compression,
                size: d.tar_size,
                blob_size: d.size(),
                status: match logged {
                    Some(_) => LayerStatus::Written,
                    None => LayerStatus::Skipped,
                },
                seconds: logged.map_or(0.0, |s| s.seconds),
                blob: BlobBytes::of(l, d.digest(), compression),
            }
        })
        .collect();
    let export_seconds = layers.iter().map(|l| l.seconds).sum();
    ExportReport {
        destination: destination.to_string(),
        images: vec![ImageReport {
            image: img.name(),
            tag: None,
            manifest_digest,
            config_digest: img.config_digest().to_string(),
            original_manifest,
            // The hand-off serves any manifest kind: nothing to say.
            manifest_not_kept: None,
            platform: image::platform_of(&img.config),
            deployment: img.deployment.clone(),
            layers,
        }],
        export_seconds,
        transfer_seconds: None,
        streamed: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_dirs_of_dead_runs_only() {
        let t = tempfile::tempdir().unwrap();
        let dead_empty = t.path().join("cfs-export-999999999-a");
        let dead_full = t.path().join("cfs-export-999999998-b");
        let alive = t
            .path()
            .join(format!("cfs-export-{}-c", std::process::id()));
        let other = t.path().join("cfs-export-notapid");
        for d in [&dead_empty, &dead_full, &alive, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dead_full.join("blob"), b"x").unwrap();
        for ours in OWN_FILES {
            std::fs::write(dead_empty.join(ours), b"{}").unwrap();
            std::fs::write(alive.join(ours), b"{}").unwrap();
        }
        remove_stale_dirs(t.path());
        assert!(!dead_empty.exists());
        assert!(dead_full.exists() && alive.exists() && other.exists());
    }
}
