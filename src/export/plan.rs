//! Planning an export: which blob each layer becomes (its compression, the
//! original bytes a search reproduced), which the destination already has,
//! and one job for each blob still to write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

use super::{ExportOptions, LayerStatus};

use crate::compress::reproduce::{self};
use crate::compress::{Compression, CompressionChoice};
use crate::export::layout::OciLayout;
use crate::export::record::BlobRecord;
use crate::lock;
use crate::progress::LayerKey;
use crate::repo::image::{self, StoredImage, StoredLayer};

/// One layer blob to produce.
pub(super) struct Job<ID> {
    pub(super) image: String,
    pub(super) layer: StoredLayer<ID>,
    pub(super) key: LayerKey,
    /// Uncompressed size, from the split-stream header.
    pub(super) size: u64,
}

/// A layer blob that exists in the destination after the run.
#[derive(Debug, Clone)]
pub(crate) struct BlobOutcome {
    pub(crate) digest: Digest,
    /// Size of the blob (compressed, if it is).
    pub(crate) blob_size: u64,
    /// Size of the uncompressed tar.
    pub(crate) tar_size: u64,
    pub(crate) status: LayerStatus,
    pub(crate) seconds: f64,
}

pub(crate) fn layer_compression<ID>(opts: &ExportOptions, layer: &StoredLayer<ID>) -> Compression {
    match opts.compression {
        CompressionChoice::Fixed(c) => c,
        // Without an original manifest, uncompressed is lossless and cheapest.
        CompressionChoice::Original => match opts.reproduced.get(&layer.diff_id) {
            Some(r) => Compression::Reproduced(*r),
            None => layer
                .original
                .as_ref()
                .and_then(|d| Compression::from_media_type(d.media_type()))
                .unwrap_or(Compression::Uncompressed),
        },
    }
}

/// `opts` with [`ExportOptions::reproduced`] filled: for `original`, each
/// gzip layer whose original bytes one of our encoders reproduces. A search
/// writes into `sink()`; `keep` gets the blob of each match.
fn reproduced_into<ID: FsVerityHashValue, W: std::io::Write>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
    sink: &(dyn Fn() -> Result<W> + Sync),
    keep: &reproduce::Keep<'_, ID, W>,
) -> Result<ExportOptions> {
    let mut opts = opts.clone();
    if opts.compression != CompressionChoice::Original {
        return Ok(opts);
    }
    opts.progress
        .stage("Finding which encoder made each original gzip layer");
    let found = reproduce::find_all(repo, images, opts.jobs, sink, keep, &*opts.progress);
    opts.progress.stage_finished();
    opts.reproduced = Arc::new(found?);
    Ok(opts)
}

/// [`reproduced_into`] for a destination that compresses the layers itself
/// (what a search writes is dropped).
pub(crate) fn with_reproduced<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
) -> Result<ExportOptions> {
    reproduced_into(repo, images, opts, &|| Ok(std::io::sink()), &|_, _, _| {
        Ok(())
    })
}

/// [`reproduced_into`] a layout: the blob a search reproduced is committed
/// (and counted in `created`), so it is not compressed a second time.
pub(super) fn reproduced_into_layout<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    layout: &OciLayout,
    opts: &ExportOptions,
    created: &Mutex<Vec<Digest>>,
) -> Result<(ExportOptions, HashMap<Digest, BlobOutcome>)> {
    let written = Mutex::new(HashMap::new());
    let opts = reproduced_into(
        repo,
        images,
        opts,
        &|| layout.create_trusted_blob(),
        &|l, blob, seconds| {
            let original = l.original.as_ref().context("internal: no original blob")?;
            let blob = blob.commit(Some(original.digest()))?;
            if blob.created {
                lock(created).push(blob.digest.clone());
            }
            let outcome = BlobOutcome {
                digest: blob.digest,
                blob_size: blob.size,
                tar_size: image::layer_size(repo, l)?,
                status: LayerStatus::Written,
                seconds,
            };
            lock(&written).insert(l.diff_id.clone(), outcome);
            Ok(())
        },
    )?;
    Ok((
        opts,
        written.into_inner().unwrap_or_else(|p| p.into_inner()),
    ))
}

/// A blob already in the layout for this layer and compression, if known:
/// an uncompressed one is the diff_id with the tar's size, a reproduced one
/// the original blob, another compressed one comes from the record; each
/// counts only when present with that size.
fn existing_blob<ID>(
    layout: &OciLayout,
    record: &BlobRecord,
    layer: &StoredLayer<ID>,
    tar_size: u64,
    compression: Compression,
) -> Result<Option<(Digest, u64)>> {
    let diff_id = &layer.diff_id;
    let known = match (compression, &layer.original) {
        (Compression::Uncompressed, _) => Some((diff_id.clone(), tar_size)),
        (Compression::Reproduced(_), Some(o)) => Some((o.digest().clone(), o.size())),
        (c, _) => record.get(diff_id, &c.to_string()),
    };
    Ok(match known {
        Some((digest, size)) if layout.blob_size(&digest)? == Some(size) => Some((digest, size)),
        _ => None,
    })
}

/// What an export must do: blobs already present, and jobs for the rest.
pub(super) struct Plan<ID> {
    pub(super) outcomes: HashMap<LayerKey, BlobOutcome>,
    pub(super) work: Vec<Job<ID>>,
}

/// One job per distinct (diff_id, compression) the destination lacks;
/// `searched` are the reproduced blobs the search already wrote.
pub(super) fn plan<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    layout: &OciLayout,
    record: &BlobRecord,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
    searched: HashMap<Digest, BlobOutcome>,
) -> Result<Plan<ID>> {
    let mut outcomes: HashMap<LayerKey, BlobOutcome> = searched
        .into_iter()
        .filter_map(|(diff_id, outcome)| {
            let r = opts.reproduced.get(&diff_id)?;
            let key = LayerKey {
                diff_id,
                compression: Compression::Reproduced(*r),
            };
            Some((key, outcome))
        })
        .collect();
    let mut work: Vec<Job<ID>> = Vec::new();
    for img in images {
        for l in &img.layers {
            let key = LayerKey {
                diff_id: l.diff_id.clone(),
                compression: layer_compression(opts, l),
            };
            if outcomes.contains_key(&key) || work.iter().any(|j| j.key == key) {
                continue;
            }
            let tar_size = image::layer_size(repo, l).unwrap_or(0);
            match existing_blob(layout, record, l, tar_size, key.compression)? {
                Some((digest, blob_size)) => {
                    opts.progress.layer_skipped(&img.name(), &key, tar_size);
                    let skipped = BlobOutcome {
                        digest,
                        blob_size,
                        tar_size,
                        status: LayerStatus::Skipped,
                        seconds: 0.0,
                    };
                    outcomes.insert(key, skipped);
                }
                None => work.push(Job {
                    image: img.name(),
                    layer: l.clone(),
                    key,
                    size: tar_size,
                }),
            }
        }
    }
    tracing::debug!(
        "{} layer blobs to write, {} present",
        work.len(),
        outcomes.len()
    );
    Ok(Plan { outcomes, work })
}
