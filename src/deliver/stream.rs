//! Every skopeo destination without a temporary layout: the image is
//! served from the repository to one `skopeo copy` ([`crate::serve`]),
//! layers rebuilt (and compressed, for a registry or `dir:`) while skopeo
//! reads them, so nothing is staged. Into containers-storage skopeo keeps
//! its copies of the blobs in the storage's own `tmp/` (like podman's
//! `image_copy_tmp_dir = "storage"`); elsewhere it keeps none (every blob's
//! digest and size are known), and our private directory (the credential,
//! the policy) is in the runtime directory: nothing lands in `$TMPDIR`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use std::collections::HashMap;

use crate::compress::blob_index::{BlobIndex, IndexedBlob};
use crate::compress::reproduce::Reproducer;
use crate::compress::{Compression, CompressionChoice};
use crate::deliver::skopeo::CopyOptions;
use crate::deliver::transfer::{
    check_space, default_tmpdir, graph_root, image_store, storage_reference, write_authfile,
    write_source_policy, TransferOptions, AUTH_FILE, DEST_AUTH_FILE, POLICY_FILE,
};
use crate::deliver::transport::ImageLocation;
use crate::export::{self, ExportOptions, ExportReport};
use crate::repo::image::StoredImage;
use crate::serve::{LayerChoice, Served, ServedLayer};
use crate::{create_private_dirs, UsageError};
use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

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

/// What a streamed copy came to.
pub(crate) enum Streamed<ID> {
    /// The image is there.
    Copied(ExportReport),
    /// The image cannot be served as asked (`why`): copy it through a
    /// private layout instead.
    NeedsLayout {
        /// The image.
        images: Vec<StoredImage<ID>>,
        /// The options, as given.
        opts: ExportOptions,
        /// One line saying why.
        why: String,
    },
}

/// What the layers are served as.
enum Layers {
    /// The original blobs where `opts.reproduced` covers every compressed
    /// layer, else uncompressed (see [`LayerChoice::Original`]).
    Original,
    /// Our deterministic encoder, the blobs' digests and sizes from the index.
    Indexed(Compression, HashMap<Digest, IndexedBlob>),
}

/// Copy one image to `location` (any destination skopeo writes), streaming
/// it to skopeo.
pub(crate) async fn stream_to_skopeo<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    images: Vec<StoredImage<ID>>,
    location: &ImageLocation,
    opts: ExportOptions,
    transfer: &TransferOptions,
) -> Result<Streamed<ID>> {
    let destination = location.to_string();
    let [img] = images.as_slice() else {
        bail!(UsageError(format!(
            "{destination} takes one image; got {}",
            images.len()
        )));
    };
    let target = Target::new(location, transfer)?;
    let (opts, layers) = match choose_layers(&repo, &images, location, opts).await? {
        Ok(chosen) => chosen,
        Err((opts, why)) => return Ok(Streamed::NeedsLayout { images, opts, why }),
    };
    // Directories made here go again if the copy fails (a storage created
    // by the copy itself stays).
    let created = crate::first_missing_ancestor(&target.tmp_base);
    create_private_dirs(&target.tmp_base)?;
    let result = copy_streaming(repo, img, &target, opts, layers, transfer).await;
    if let (Err(_), Some(top)) = (&result, created) {
        remove_empty_dirs(&target.tmp_base, &top);
    }
    result.map(Streamed::Copied)
}

/// What the layers of `images` are served as at `location`, and the options
/// (for `original`, with the encoders that reproduce the original blobs);
/// or, as an error, why they cannot be served so.
async fn choose_layers<ID: FsVerityHashValue>(
    repo: &Arc<Repository<ID>>,
    images: &[StoredImage<ID>],
    location: &ImageLocation,
    mut opts: ExportOptions,
) -> Result<Result<(ExportOptions, Layers), (ExportOptions, String)>> {
    match location {
        // Storage unpacks every layer: uncompressed unless the original
        // blobs are asked for (so the original manifest digest is recorded).
        ImageLocation::ContainersStorage(_) => {}
        // `docker save` archives (and the engine) hold plain tars: skopeo
        // would only decompress what we compressed.
        ImageLocation::DockerArchive(_) | ImageLocation::DockerDaemon(_) => {
            opts.compression = CompressionChoice::Fixed(Compression::Uncompressed);
        }
        _ => {
            if let CompressionChoice::Fixed(c @ (Compression::Gzip(_) | Compression::Zstd(_))) =
                opts.compression
            {
                let indexed = index(repo, images, c, &opts).await?;
                return Ok(Ok((opts, Layers::Indexed(c, indexed))));
            }
        }
    }
    if opts.compression != CompressionChoice::Original {
        return Ok(Ok((opts, Layers::Original)));
    }
    // Which layers' original bytes we reproduce (cached after the first
    // time), before the manifest to serve is chosen.
    let given = opts.clone();
    let (r, i) = (repo.clone(), images.to_vec());
    let opts = tokio::task::spawn_blocking(move || export::with_reproduced(&r, &i, &opts))
        .await
        .context("export worker")??;
    if !matches!(location, ImageLocation::ContainersStorage(_)) {
        if let Some(why) = not_reproduced(images, &opts.reproduced) {
            return Ok(Err((given, why)));
        }
    }
    Ok(Ok((opts, Layers::Original)))
}

/// Why the original blobs of `images` cannot all be served: the first
/// compressed one no encoder of ours reproduces (it needs a new blob, made
/// whole before its digest is known).
fn not_reproduced<ID>(
    images: &[StoredImage<ID>],
    reproduced: &HashMap<Digest, Reproducer>,
) -> Option<String> {
    images.iter().find_map(|img| {
        img.layers.iter().find_map(|l| {
            let o = l.original.as_ref()?;
            (o.digest() != &l.diff_id && !reproduced.contains_key(&l.diff_id)).then(|| {
                let media_type = o.media_type().to_string();
                let kind = media_type.rsplit(['+', '.']).next().unwrap_or("blob");
                format!(
                    "layer {} of {}: no encoder we know made its original {kind}, so its new blob is made whole first",
                    l.index + 1,
                    img.name(),
                )
            })
        })
    })
}

/// The digest and size of every layer's blob under `c`: from the index, else
/// learned once (`--jobs` layers at a time) and remembered, so that later
/// copies compress only while skopeo reads.
async fn index<ID: FsVerityHashValue>(
    repo: &Arc<Repository<ID>>,
    images: &[StoredImage<ID>],
    c: Compression,
    opts: &ExportOptions,
) -> Result<HashMap<Digest, IndexedBlob>> {
    let missing = BlobIndex::new().missing(images, c).len();
    if missing > 0 {
        opts.progress.stage(&format!(
            "Learning the {c} blob digests of {missing} layer(s), once (remembered)"
        ));
    }
    let (r, i, jobs) = (repo.clone(), images.to_vec(), opts.jobs);
    let indexed = tokio::task::spawn_blocking(move || {
        crate::compress::blob_index::index_layers(&r, &i, c, jobs)
    })
    .await
    .context("index worker");
    if missing > 0 {
        opts.progress.stage_finished();
    }
    let (blobs, report) = indexed??;
    tracing::info!(
        "{} of {} layer(s) compressed to learn their {c} digests in {:.1}s",
        report.compressed,
        report.layers,
        report.seconds
    );
    Ok(blobs)
}

/// Where a streamed copy goes and keeps its temporary data.
struct Target {
    /// The destination.
    location: ImageLocation,
    /// The destination as skopeo takes it (with the storage specifier).
    skopeo_dest: String,
    /// The destination as the user named it.
    destination: String,
    /// containers-storage: its graph root and storage.conf's `imagestore`
    /// (where image layers then live), for the layers it has.
    storage: Option<(PathBuf, Option<PathBuf>)>,
    /// `dir:` and `docker-archive:`: the directory skopeo writes the blobs into.
    writes_into: Option<PathBuf>,
    /// Where our private temp directory (skopeo's `--tmpdir`) is made.
    tmp_base: PathBuf,
    /// What to do when it is full.
    hint: &'static str,
    /// What lands must be exactly the blobs served.
    preserve_digests: bool,
}

impl Target {
    fn new(location: &ImageLocation, transfer: &TransferOptions) -> Result<Self> {
        let destination = location.to_string();
        let (tmp_base, hint) = match &transfer.tmpdir {
            Some(dir) => (dir.clone(), "choose another with --tmpdir"),
            None => (runtime_dir(), "choose another directory with --tmpdir"),
        };
        let mut target = Target {
            location: location.clone(),
            skopeo_dest: destination.clone(),
            destination,
            storage: None,
            writes_into: None,
            tmp_base,
            hint,
            // docker-archive holds a Docker schema2 manifest, which skopeo
            // converts ours to: digests cannot be preserved there.
            preserve_digests: matches!(location, ImageLocation::Docker(_) | ImageLocation::Dir(_)),
        };
        match location {
            ImageLocation::ContainersStorage(reference) => {
                let root = graph_root(reference, &transfer.storage)?;
                if transfer.tmpdir.is_none() {
                    target.tmp_base = root.join("tmp");
                    target.hint = "free some space there or choose another directory with --tmpdir";
                }
                target.skopeo_dest = storage_reference(reference, &transfer.storage)?;
                target.storage = Some((root, image_store(reference, &transfer.storage)));
            }
            ImageLocation::Dir(path) => target.writes_into = Some(parent_dir(path)),
            ImageLocation::DockerArchive(file_ref) => {
                let file = file_ref
                    .split_once(':')
                    .map_or(file_ref.as_str(), |(f, _)| f);
                target.writes_into = Some(parent_dir(file));
            }
            _ => {}
        }
        Ok(target)
    }
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &str) -> PathBuf {
    match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Where a streamed copy that stages nothing keeps its private directory
/// (two small files): `$XDG_RUNTIME_DIR`, else `/dev/shm`, else
/// [`default_tmpdir`].
fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/dev/shm")])
        .find(|d| d.is_dir())
        .unwrap_or_else(default_tmpdir)
}

/// Prefix of our private temp directories for skopeo: `cfs-export-<pid>-…`.
const STALE_PREFIX: &str = "cfs-export-";

/// The files we put in our private directory (skopeo's are its own).
const OWN_FILES: [&str; 3] = [AUTH_FILE, DEST_AUTH_FILE, POLICY_FILE];

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

/// The space skopeo needs on `target`'s storage: it keeps a copy of each
/// blob it receives until the copy ends; only the layers the storage lacks
/// are sent. Their sizes are the served ones.
fn space_needed<ID>(
    (root, image_store): &(PathBuf, Option<PathBuf>),
    img: &StoredImage<ID>,
    served: &[ServedLayer],
) -> u64 {
    let mut present = present_layers(root);
    if let Some(store) = image_store {
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

/// Check the space the copy needs: containers-storage's for the layers it
/// lacks, a `dir:` or `docker-archive:` destination's for every blob.
fn check_target_space<ID>(
    target: &Target,
    tmp: &Path,
    img: &StoredImage<ID>,
    served: &[ServedLayer],
) -> Result<()> {
    if let Some(storage) = &target.storage {
        check_space(tmp, space_needed(storage, img, served), target.hint)?;
    }
    if let Some(dir) = &target.writes_into {
        let needed = img.config_bytes.len() as u64 + served.iter().map(|d| d.size()).sum::<u64>();
        check_space(dir, needed, "free some space there")?;
    }
    Ok(())
}

async fn copy_streaming<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    img: &StoredImage<ID>,
    target: &Target,
    opts: ExportOptions,
    layers: Layers,
    transfer: &TransferOptions,
) -> Result<ExportReport> {
    let destination = &target.destination;
    remove_stale_dirs(&target.tmp_base);
    let tmp = private_temp_dir(&target.tmp_base)?;
    let started = Instant::now();
    let choice = match &layers {
        Layers::Original => LayerChoice::Original(&opts.reproduced),
        Layers::Indexed(c, blobs) => LayerChoice::Indexed(*c, blobs),
    };
    let served = Served::start(repo, img, choice, opts.progress.clone(), opts.jobs).await?;
    check_target_space(target, tmp.path(), img, &served.layers)?;
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
        preserve_digests: target.preserve_digests,
        dest_tls_verify: transfer.dest_tls_verify,
        dest_authfile: super::dest_authfile(tmp.path(), &target.location, transfer)?,
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
    let mut report = report::streamed_report(img, &descriptors, &log, destination, manifest);
    report.transfer_seconds = Some(started.elapsed().as_secs_f64());
    Ok(report)
}

mod report;
#[cfg(test)]
mod tests;
