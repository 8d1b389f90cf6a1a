//! Stage 4, delivery: takes a destination in skopeo's syntax
//! ([`transport`]) and gives the image there, natively through [`crate::export`]
//! or through one `skopeo copy` ([`skopeo`]): streamed from our loopback
//! server (`stream`) or from a private layout, with the destination's
//! storage settings ([`storage_conf`], [`transfer`]).
//!
//! Every destination: `oci:` and `oci-archive:` written natively, every
//! other one streamed to one `skopeo copy` (no temporary layout; `stream`);
//! with `--via-layout`, or when a layer needs a new blob made whole before
//! its digest is known (an original compression none of our encoders
//! reproduces), through one `skopeo copy` from a private layout under
//! `$TMPDIR` (default `/var/tmp`).

pub mod skopeo;
pub mod storage_conf;
mod stream;
pub mod transfer;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;

use crate::compress::{Compression, CompressionChoice};
use crate::deliver::skopeo::CopyOptions;
use crate::deliver::stream::Streamed;
use crate::deliver::transfer::{
    check_space, default_tmpdir, read_creds_file, registry_host, storage_reference,
    write_authfile_as, write_source_policy, DEST_AUTH_FILE,
};
pub use crate::deliver::transfer::{StorageOptions, TransferOptions};
use crate::deliver::transport::ImageLocation;
use crate::export::{self, ExportOptions, ExportReport, ImageSelection};
use crate::host::Host;
use crate::repo::image::{self, StoredImage};
use crate::UsageError;

/// Ref name inside private temp layouts.
const TEMP_TAG: &str = "cfs-export";

/// Export the selected images to any destination.
pub async fn export<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    selection: ImageSelection,
    host: Option<Host>,
    dest: ImageLocation,
    opts: ExportOptions,
    transfer: TransferOptions,
) -> Result<ExportReport> {
    transfer.validate(&dest)?;
    let loader = Arc::clone(&repo);
    let images = blocking(move || export::load_images(&loader, &selection, host.as_ref())).await?;
    match dest {
        ImageLocation::OciDir { path, tag } => {
            blocking(move || {
                let opts = opts.with_destination_tag(tag.as_deref())?;
                export::export_to_oci_dir(&repo, &images, &path, &opts)
            })
            .await
        }
        ImageLocation::OciArchive { path, tag } => {
            let opts = opts.with_destination_tag(tag.as_deref())?;
            blocking(move || crate::export::archive::export_archive(&repo, &images, &path, &opts))
                .await
        }
        dest if !transfer.via_layout => {
            match stream::stream_to_skopeo(repo.clone(), images, &dest, opts, &transfer).await? {
                Streamed::Copied(report) => Ok(report),
                Streamed::NeedsLayout { images, opts, why } => {
                    tracing::warn!(
                        "{why}: copying to {dest} through a private layout in {}",
                        transfer
                            .tmpdir
                            .clone()
                            .unwrap_or_else(default_tmpdir)
                            .display()
                    );
                    copy_with_skopeo(repo, images, dest, opts, transfer).await
                }
            }
        }
        dest => copy_with_skopeo(repo, images, dest, opts, transfer).await,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("export worker")?
}

fn temp_dir(transfer: &TransferOptions) -> Result<tempfile::TempDir> {
    let base = transfer.tmpdir.clone().unwrap_or_else(default_tmpdir);
    tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .prefix("cfs-export-")
        .tempdir_in(&base)
        .with_context(|| {
            format!(
                "Creating a temp directory in {} (set TMPDIR to use another)",
                base.display()
            )
        })
}

/// Bytes the private layout may need: each layer's size at its target
/// compression (uncompressed size when unknown), plus configs.
fn space_needed<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
) -> u64 {
    let mut total = 0u64;
    for img in images {
        total += img.config_bytes.len() as u64;
        for l in &img.layers {
            let original = l.original.as_ref();
            let same_kind = match opts.compression {
                CompressionChoice::Original => true,
                CompressionChoice::Fixed(c) => {
                    original.and_then(|d| Compression::from_media_type(d.media_type())) == Some(c)
                }
            };
            total += match (same_kind, original) {
                (true, Some(d)) => d.size(),
                _ => image::layer_size(repo, l).unwrap_or(0),
            };
        }
    }
    total
}

/// Export into a private layout for skopeo to read, under [`TEMP_TAG`].
async fn export_to_private_layout<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    images: Vec<StoredImage<ID>>,
    layout: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    let mut export_opts = opts.clone();
    export_opts.tag = Some(TEMP_TAG.to_string());
    // skopeo reads the layout and it is deleted: syncing it would be wasted I/O.
    export_opts.durable = false;
    let layout = layout.to_path_buf();
    blocking(move || export::export_to_oci_dir(&repo, &images, &layout, &export_opts)).await
}

/// The auth file skopeo gets for the destination: one written (mode 0600)
/// into `dir` from `--creds-file` for a registry, else `--authfile`.
fn dest_authfile(
    dir: &Path,
    location: &ImageLocation,
    transfer: &TransferOptions,
) -> Result<Option<PathBuf>> {
    match (&transfer.creds_file, location) {
        (Some(creds), ImageLocation::Docker(r)) => Ok(Some(write_authfile_as(
            &dir.join(DEST_AUTH_FILE),
            &registry_host(r),
            &read_creds_file(creds)?,
        )?)),
        (Some(_), _) => bail!(UsageError(format!(
            "--creds-file is for docker:// destinations, not {location}"
        ))),
        (None, _) => Ok(transfer.authfile.clone()),
    }
}

/// A signature policy (in `dir`) that accepts our layout: it is proven by
/// digest; the host's policy (which may reject by default) is for images
/// from elsewhere.
fn layout_policy(dir: &Path, layout: &Path) -> Result<PathBuf> {
    let scope = layout
        .canonicalize()
        .with_context(|| format!("Resolving {}", layout.display()))?;
    write_source_policy(dir, "oci", &scope.to_string_lossy())
}

async fn copy_with_skopeo<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    images: Vec<StoredImage<ID>>,
    location: ImageLocation,
    mut opts: ExportOptions,
    transfer: TransferOptions,
) -> Result<ExportReport> {
    let reference = location.to_string();
    if images.len() != 1 {
        bail!(UsageError(format!(
            "{reference} takes one image; got {}",
            images.len()
        )));
    }
    let storage = matches!(location, ImageLocation::ContainersStorage(_));
    // docker-archive holds a Docker schema2 manifest, which skopeo converts
    // ours to: digests cannot be preserved there.
    let docker_archive = matches!(location, ImageLocation::DockerArchive(_));
    let dest = match &location {
        ImageLocation::ContainersStorage(r) => storage_reference(r, &transfer.storage)?,
        _ => reference.clone(),
    };
    if docker_archive && opts.compression == CompressionChoice::Original {
        // `docker save` archives hold plain tars: compressing would be
        // wasted work. (Storage takes the original bytes, when asked.)
        opts.compression = CompressionChoice::Fixed(Compression::Uncompressed);
    }
    let tmp = temp_dir(&transfer)?;
    let needed = space_needed(&repo, &images, &opts);
    check_space(tmp.path(), needed, "set TMPDIR to a larger filesystem")?;
    let layout = tmp.path().join("layout");
    let mut report = export_to_private_layout(repo, images, &layout, &opts).await?;
    let dest_authfile = dest_authfile(tmp.path(), &location, &transfer)?;
    let copy = CopyOptions {
        // What lands must be exactly what we wrote.
        preserve_digests: !storage && !docker_archive,
        dest_tls_verify: transfer.dest_tls_verify,
        dest_authfile,
        policy: Some(layout_policy(tmp.path(), &layout)?),
        ..CopyOptions::default()
    };
    opts.progress
        .stage(&format!("Copying to {reference} with skopeo"));
    let started = Instant::now();
    let copied = crate::deliver::skopeo::copy_from_layout(&layout, TEMP_TAG, &dest, &copy).await;
    opts.progress.stage_finished();
    copied.with_context(|| format!("Copying to {reference}"))?;
    report.transfer_seconds = Some(started.elapsed().as_secs_f64());
    drop(tmp);
    report.destination = reference;
    for img in &mut report.images {
        img.tag = None;
    }
    Ok(report)
}
