//! `oci-archive:` output: a deterministic tar of an OCI layout, written
//! straight from the repository to a temp file beside the target and renamed
//! into place.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Digest, ImageIndexBuilder, MediaType};

use crate::compress::Compression;
use crate::digest::HashingWriter;
use crate::export::{self, BlobOutcome, ExportOptions, ExportReport, LayerStatus};
use crate::progress::{LayerKey, ProgressWriter};
use crate::repo::image::{StoredImage, StoredLayer};
use crate::repo::layer;

/// mtime of every entry: `$SOURCE_DATE_EPOCH` when set, else 0.
fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Export images straight into an `oci-archive:` file: no temporary layout.
///
/// Uncompressed layers stream into the archive as they are rebuilt (their
/// name, the diff_id, is known first); a compressed layer is spooled to an
/// anonymous file beside the archive, one at a time, since its name is its
/// digest. Entries come in a fixed order (layers as first used, then
/// configs and manifests, `index.json`, `oci-layout`), so the same images
/// always give the same bytes. The archive is a temp file renamed into place
/// once complete and synced.
pub(crate) fn export_archive<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    let started = Instant::now();
    let tag = opts.single_tag(images.len())?;
    let opts = &export::with_reproduced(repo, images, opts)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Created 0666 less the umask, as skopeo and podman create archives.
    let tmp = tempfile::Builder::new()
        .prefix(".cfs-export-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(parent)
        .with_context(|| format!("Creating a temp file in {}", parent.display()))?;
    let mtime = mtime();
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
        builder.append_data(&mut h, dir, std::io::empty())?;
    }
    let outcomes = append_layers(&mut builder, repo, images, parent, opts, mtime)
        .map_err(|e| e.context(format!("Writing {}", out.display())))?;
    let reports = append_images(&mut builder, images, &outcomes, tag, opts, mtime)?;
    let mut w = builder.into_inner().context("Finishing the archive")?;
    w.flush()?;
    drop(w);
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("Renaming the archive to {}", out.display()))?;
    Ok(ExportReport {
        destination: format!("oci-archive:{}", out.display()),
        images: reports,
        export_seconds: started.elapsed().as_secs_f64(),
        transfer_seconds: None,
        streamed: false,
    })
}

/// Every distinct layer blob of the images, in the order they are first used.
fn append_layers<ID: FsVerityHashValue, W: Write + Seek>(
    builder: &mut tar::Builder<W>,
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    spool_dir: &Path,
    opts: &ExportOptions,
    mtime: u64,
) -> Result<HashMap<LayerKey, BlobOutcome>> {
    let mut outcomes: HashMap<LayerKey, BlobOutcome> = HashMap::new();
    for img in images {
        for l in &img.layers {
            let key = LayerKey {
                diff_id: l.diff_id.clone(),
                compression: export::layer_compression(opts, l),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = outcomes.entry(key) {
                let outcome =
                    append_layer(builder, repo, img, l, slot.key(), spool_dir, opts, mtime)?;
                slot.insert(outcome);
            }
        }
    }
    Ok(outcomes)
}

/// The configs (original bytes) and manifests, then `index.json` and `oci-layout`.
fn append_images<ID, W: Write>(
    builder: &mut tar::Builder<W>,
    images: &[StoredImage<ID>],
    outcomes: &HashMap<LayerKey, BlobOutcome>,
    tag: Option<&str>,
    opts: &ExportOptions,
    mtime: u64,
) -> Result<Vec<export::ImageReport>> {
    let mut written = HashSet::new();
    let mut manifests = Vec::new();
    let mut reports = Vec::new();
    for img in images {
        let parts = export::image_parts(img, outcomes, tag, opts)?;
        for (digest, bytes) in [
            (img.config_digest(), &img.config_bytes),
            (&parts.manifest_digest, &parts.manifest),
        ] {
            if written.insert(digest.to_string()) {
                let name = format!("blobs/sha256/{}", digest.digest());
                append_bytes(builder, &name, bytes, mtime)?;
            }
        }
        manifests.push(parts.desc);
        reports.push(parts.report);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()?;
    append_bytes(
        builder,
        "index.json",
        &crate::digest::canonical_json(&index)?,
        mtime,
    )?;
    append_bytes(
        builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        mtime,
    )?;
    Ok(reports)
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mtime: u64,
) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64, mtime);
    builder
        .append_data(&mut h, name, bytes)
        .with_context(|| format!("Archiving {name}"))
}

/// Rebuild one layer into the archive: straight in when uncompressed, else
/// through a spool file (its name is the compressed digest).
#[allow(clippy::too_many_arguments)]
fn append_layer<ID: FsVerityHashValue, W: Write + Seek>(
    builder: &mut tar::Builder<W>,
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    layer: &StoredLayer<ID>,
    key: &LayerKey,
    spool_dir: &Path,
    opts: &ExportOptions,
    mtime: u64,
) -> Result<BlobOutcome> {
    let started = Instant::now();
    let image = img.name();
    let total = crate::repo::image::layer_size(repo, layer).unwrap_or(0);
    opts.progress.layer_started(&image, key, total);
    let result = (|| -> Result<(Digest, u64, u64)> {
        if key.compression == Compression::Uncompressed {
            // The rebuild proves the bytes against the diff_id, the entry's name.
            let mut h = header(tar::EntryType::Regular, 0o644, 0, mtime);
            let name = format!("blobs/sha256/{}", layer.diff_id.digest());
            let mut entry = builder.append_writer(&mut h, &name)?;
            let counted = ProgressWriter::new(&mut entry, &*opts.progress, key);
            let (counted, size) = layer::rebuild(repo, &image, layer, counted)?;
            counted.into_inner();
            entry.finish()?;
            return Ok((layer.diff_id.clone(), size, size));
        }
        let spool = tempfile::tempfile_in(spool_dir)
            .with_context(|| format!("Creating a spool file in {}", spool_dir.display()))?;
        let hashed = HashingWriter::new(BufWriter::new(&spool));
        let counted = ProgressWriter::new(key.compression.encoder(hashed)?, &*opts.progress, key);
        let (counted, tar_size) = layer::rebuild(repo, &image, layer, counted)?;
        let (buffered, digest, size) = counted.into_inner().finish()?.finish();
        buffered.into_inner().map_err(|e| e.into_error())?;
        let mut spooled = &spool;
        spooled.seek(SeekFrom::Start(0))?;
        let mut h = header(tar::EntryType::Regular, 0o644, size, mtime);
        builder.append_data(&mut h, format!("blobs/sha256/{}", digest.digest()), spooled)?;
        Ok((digest, size, tar_size))
    })();
    opts.progress.layer_finished(key);
    let (digest, blob_size, tar_size) = result?;
    Ok(BlobOutcome {
        digest,
        blob_size,
        tar_size,
        status: LayerStatus::Written,
        seconds: started.elapsed().as_secs_f64(),
    })
}
