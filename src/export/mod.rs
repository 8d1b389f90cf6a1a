//! Stage 3, the export: takes the selected images and options and gives an
//! OCI image written natively: an OCI layout ([`layout`]) or a deterministic
//! `oci-archive` ([`archive`]), with a typed [`ExportReport`].
//!
//! Exporting images to an OCI layout: resolve, plan, rebuild layers in
//! parallel, then write the config, manifest and index.

pub(crate) mod archive;
mod layout;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageManifest, ImageManifestBuilder, MediaType,
    PlatformBuilder,
};
use serde::Serialize;

use crate::compress::reproduce::{self, Reproducer};
use crate::compress::{Compression, CompressionChoice};
use crate::export::layout::{BlobRecord, OciLayout, PendingBlob};
use crate::host::{DeploymentChoice, Host};
use crate::lock;
use crate::progress::{LayerKey, ProgressHandle, ProgressWriter};
use crate::repo::image::{self, StoredImage, StoredLayer};
use crate::repo::layer;
pub use crate::repo::select::{ImageSelection, Selected};

pub use oci_spec::image::ANNOTATION_REF_NAME;

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Layer compression.
    pub compression: CompressionChoice,
    /// Layers rebuilt at once (at least 1).
    pub jobs: usize,
    /// The ref name to give the image in the layout (one image only).
    pub tag: Option<String>,
    /// Where progress goes.
    pub progress: ProgressHandle,
    /// Sync blobs to disk before naming them. Off only for private staging
    /// layouts that are deleted after a hand-off.
    pub durable: bool,
    /// Layers (by diff_id) whose original gzip blob an encoder reproduces;
    /// filled by the export itself for [`CompressionChoice::Original`].
    pub reproduced: Arc<HashMap<Digest, Reproducer>>,
}

impl ExportOptions {
    /// Take the tag a destination names (`oci:DIR:TAG`) as the one tag; a
    /// different [`ExportOptions::tag`] as well is a usage error.
    pub fn with_destination_tag(
        mut self,
        dest_tag: Option<&str>,
    ) -> Result<Self, crate::UsageError> {
        match (dest_tag, self.tag.as_deref()) {
            (Some(d), Some(t)) if d != t => Err(crate::UsageError(format!(
                "two tags for one destination: {t} and {d}; give one"
            ))),
            (Some(d), _) => {
                self.tag = Some(d.to_string());
                Ok(self)
            }
            (None, _) => Ok(self),
        }
    }

    /// The tag to give the one image exported; a tag names one image only.
    pub(crate) fn single_tag(&self, images: usize) -> Result<Option<&str>, crate::UsageError> {
        match (&self.tag, images) {
            (Some(_), n) if n > 1 => Err(crate::UsageError(
                "a tag (--tag or the destination's :TAG) names one image; export several images without one so each keeps its repository tag".into(),
            )),
            (tag, _) => Ok(tag.as_deref()),
        }
    }
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            compression: CompressionChoice::Original,
            jobs: crate::cores(),
            tag: None,
            progress: ProgressHandle::default(),
            durable: true,
            reproduced: Arc::default(),
        }
    }
}

/// Whether a layer blob was written by this export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    /// Rebuilt and written.
    Written,
    /// Already in the destination.
    Skipped,
}

/// What happened to one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// sha256 of the uncompressed tar (from the config, proven while streaming).
    pub diff_id: String,
    /// Digest of the blob in the destination.
    pub blob_digest: String,
    /// Its media type.
    pub media_type: String,
    /// The compression used.
    pub compression: Compression,
    /// Uncompressed tar size.
    pub size: u64,
    /// Blob size.
    pub blob_size: u64,
    /// Written or skipped.
    pub status: LayerStatus,
    /// Seconds spent rebuilding it (0 when skipped).
    pub seconds: f64,
    /// How the blob relates to the original manifest's.
    pub blob: BlobBytes,
}

/// A layer blob against the one in the original manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBytes {
    /// The original blob as it was (an uncompressed original, exported uncompressed).
    Original,
    /// The original compressed bytes, reproduced by the encoder named in `compression`.
    Reproduced,
    /// A blob the original manifest does not have (recompressed, decompressed,
    /// or no original manifest is stored).
    New,
}

impl BlobBytes {
    /// What `blob_digest` is, given the layer's original descriptor and our compression.
    pub(crate) fn of<ID>(layer: &StoredLayer<ID>, blob_digest: &Digest, c: Compression) -> Self {
        match (&layer.original, c) {
            (Some(o), Compression::Reproduced(_)) if o.digest() == blob_digest => {
                BlobBytes::Reproduced
            }
            (Some(o), _) if o.digest() == blob_digest => BlobBytes::Original,
            _ => BlobBytes::New,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The image, as named in the repository.
    pub image: String,
    /// The ref name it got in the layout.
    pub tag: Option<String>,
    /// Digest of the manifest written.
    pub manifest_digest: String,
    /// Config digest: the image ID, identical to the repository's.
    pub config_digest: String,
    /// True when the original manifest bytes were written unchanged.
    pub original_manifest: bool,
    /// `os/architecture[/variant]` from the config.
    pub platform: String,
    /// The bootc deployment that named the image, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentChoice>,
    /// Per layer, bottom first.
    pub layers: Vec<LayerReport>,
}

/// The result of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Where it went.
    pub destination: String,
    /// Per image.
    pub images: Vec<ImageReport>,
    /// Wall time of the export into the OCI layout (ours).
    pub export_seconds: f64,
    /// Wall time of the hand-off to skopeo or the archive writer, if any.
    pub transfer_seconds: Option<f64>,
    /// True when the image was served to skopeo as it read it (no temporary
    /// layout): `export_seconds` then overlaps `transfer_seconds`.
    pub streamed: bool,
}

/// Load the selected images from the repository.
pub fn load_images<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    selection: &ImageSelection,
    host: Option<&Host>,
) -> Result<Vec<StoredImage<ID>>> {
    let picked = selection.resolve(&image::catalog(repo)?, host)?;
    if picked.is_empty() {
        bail!("The repository holds no container images");
    }
    picked
        .into_iter()
        .map(|s| {
            let mut img = image::load(repo, &s.entry)?;
            img.deployment = s.deployment;
            Ok(img)
        })
        .collect()
}

/// One layer blob to produce.
struct Job<ID> {
    image: String,
    layer: StoredLayer<ID>,
    key: LayerKey,
    /// Uncompressed size, from the split-stream header.
    size: u64,
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
    let found = reproduce::find_all(repo, images, opts.jobs, sink, keep);
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
fn reproduced_into_layout<ID: FsVerityHashValue>(
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

fn run_job<'a, ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    layout: &'a OciLayout,
    job: &Job<ID>,
    progress: &ProgressHandle,
) -> Result<(BlobOutcome, PendingBlob<'a>)> {
    let start = Instant::now();
    let compression = job.key.compression;
    progress.layer_started(&job.image, &job.key, job.size);
    let result = (|| {
        // Uncompressed, the blob is the tar that `rebuild` hashes and proves:
        // one hash per byte is enough.
        let writer = match compression {
            Compression::Uncompressed => layout.create_trusted_blob()?,
            _ => layout.create_blob()?,
        };
        let encoder = compression.encoder(writer)?;
        let counted = ProgressWriter::new(encoder, &**progress, &job.key);
        let (counted, tar_size) = layer::rebuild(repo, &job.image, &job.layer, counted)?;
        let writer = counted.into_inner().finish().with_context(|| {
            format!(
                "Compressing layer {} of image {}",
                job.layer.diff_id, job.image
            )
        })?;
        let expected = (compression == Compression::Uncompressed).then_some(&job.layer.diff_id);
        let blob = writer.finish(expected).with_context(|| {
            format!("Writing layer {} of image {}", job.layer.diff_id, job.image)
        })?;
        Ok((
            BlobOutcome {
                digest: blob.digest.clone(),
                blob_size: blob.size,
                tar_size,
                status: LayerStatus::Written,
                seconds: start.elapsed().as_secs_f64(),
            },
            blob,
        ))
    })();
    progress.layer_finished(&job.key);
    result
}

/// Run jobs on `jobs` threads; stop handing out work after the first failure.
///
/// Blobs are named only once every job has succeeded, so a failed run never
/// adds a name to the layout.
fn run_jobs<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    layout: &OciLayout,
    work: &[Job<ID>],
    opts: &ExportOptions,
    created: &Mutex<Vec<Digest>>,
) -> Result<Vec<BlobOutcome>> {
    let jobs = opts.jobs;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    type Slot<'a> = Option<Result<(BlobOutcome, PendingBlob<'a>)>>;
    let results: Mutex<Vec<Slot<'_>>> = Mutex::new((0..work.len()).map(|_| None).collect());
    // Largest layers first: the last layer to start is then a small one, so the
    // threads finish close together instead of one big layer running alone.
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(work[i].size));
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, work.len().max(1)) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let job = &work[i];
                let result = run_job(repo, layout, job, &opts.progress);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                lock(&results)[i] = Some(result);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut finished = Vec::with_capacity(work.len());
    for r in results {
        match r {
            Some(Ok(o)) => finished.push(o),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if finished.len() != work.len() {
        bail!("export stopped before every layer was written");
    }
    let mut outcomes = Vec::with_capacity(finished.len());
    for (outcome, pending) in finished {
        if pending.commit()?.created {
            lock(created).push(outcome.digest.clone());
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The manifest to write: the original bytes when every blob is identical to
/// the original's, else a new OCI manifest with the same config.
pub(crate) fn build_manifest<ID>(
    img: &StoredImage<ID>,
    layers: &[Descriptor],
) -> Result<(Vec<u8>, bool)> {
    if let Some(orig) = &img.manifest {
        let same = orig.is_oci()
            && orig.manifest.layers().len() == layers.len()
            && orig
                .manifest
                .layers()
                .iter()
                .zip(layers)
                .all(|(o, n)| o.digest() == n.digest() && o.size() == n.size());
        if same {
            return Ok((orig.bytes.clone(), true));
        }
    }
    let mut config = DescriptorBuilder::default()
        .media_type(MediaType::ImageConfig)
        .digest(img.config_digest().clone())
        .size(img.config_bytes.len() as u64)
        .build()?;
    let annotations = img
        .manifest
        .as_ref()
        .and_then(|m| m.manifest.annotations().clone());
    if let Some(orig) = &img.manifest {
        config.set_annotations(orig.manifest.config().annotations().clone());
    }
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers.to_vec());
    if let Some(a) = annotations {
        builder = builder.annotations(a);
    }
    let manifest: ImageManifest = builder.build()?;
    Ok((crate::digest::canonical_json(&manifest)?, false))
}

/// Export images from `repo` into the OCI layout at `dest`.
///
/// Either every image lands (blobs, then config and manifest, then one atomic
/// `index.json` update) or the layout is left as it was: blobs this run
/// created are removed again on failure.
pub fn export_to_oci_dir<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    dest: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    let tag_override = opts.single_tag(images.len())?;
    let mut layout = OciLayout::open_or_create(dest)?;
    if !opts.durable {
        layout = layout.scratch();
    }
    let created = Mutex::new(Vec::new());
    let started = Instant::now();
    let result = reproduced_into_layout(repo, images, &layout, opts, &created)
        .and_then(|(opts, searched)| {
            export_locked(
                repo,
                images,
                &layout,
                tag_override,
                &opts,
                &created,
                searched,
            )
        })
        .map(|mut report| {
            // The search wrote blobs too: its time counts.
            report.export_seconds = started.elapsed().as_secs_f64();
            report
        })
        .map_err(|e| no_space_hint(e, dest));
    if result.is_err() {
        for digest in lock(&created).iter() {
            if let Err(e) = layout.remove_blob(digest) {
                tracing::warn!("rollback: {e:#}");
            }
        }
    }
    result
}

/// Say plainly when the destination filesystem is full.
fn no_space_hint(e: anyhow::Error, dest: &Path) -> anyhow::Error {
    let enospc = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            == Some(rustix::io::Errno::NOSPC.raw_os_error())
    });
    if enospc {
        e.context(format!(
            "No space left in {}: free some space or export elsewhere; nothing was added to the layout",
            dest.display()
        ))
    } else {
        e
    }
}

fn export_locked<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    layout: &OciLayout,
    tag_override: Option<&str>,
    opts: &ExportOptions,
    created: &Mutex<Vec<Digest>>,
    searched: HashMap<Digest, BlobOutcome>,
) -> Result<ExportReport> {
    let started = Instant::now();
    let mut record = layout.read_blob_record();
    let Plan { mut outcomes, work } = plan(repo, layout, &record, images, opts, searched)?;
    let written = run_jobs(repo, layout, &work, opts, created)?;
    for (job, outcome) in work.into_iter().zip(written) {
        if job.key.compression != Compression::Uncompressed {
            let compression = job.key.compression.to_string();
            record.insert(
                &job.key.diff_id,
                &compression,
                &outcome.digest,
                outcome.blob_size,
            );
        }
        outcomes.insert(job.key, outcome);
    }

    // Config (original bytes) and manifest per image, then one index update.
    let mut written_images = Vec::new();
    for img in images {
        written_images.push(write_image(
            layout,
            img,
            &outcomes,
            tag_override,
            opts,
            created,
        )?);
    }
    let reports = update_index(layout, written_images)?;
    // After the index: a lost record only costs a recompression next time.
    if let Err(e) = layout.write_blob_record(&record) {
        tracing::warn!("{e:#}");
    }
    Ok(ExportReport {
        destination: format!("oci:{}", layout.path().display()),
        images: reports,
        export_seconds: started.elapsed().as_secs_f64(),
        transfer_seconds: None,
        streamed: false,
    })
}

/// What an export must do: blobs already present, and jobs for the rest.
struct Plan<ID> {
    outcomes: HashMap<LayerKey, BlobOutcome>,
    work: Vec<Job<ID>>,
}

/// One job per distinct (diff_id, compression) the destination lacks;
/// `searched` are the reproduced blobs the search already wrote.
fn plan<ID: FsVerityHashValue>(
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

/// An image whose blobs are in the layout, waiting for its index entry.
struct WrittenImage {
    desc: Descriptor,
    report: ImageReport,
}

/// What an image becomes in a destination, before anything is written.
pub(crate) struct ImageParts {
    /// The manifest's bytes.
    pub(crate) manifest: Vec<u8>,
    /// Their digest.
    pub(crate) manifest_digest: Digest,
    /// The image's `index.json` entry.
    pub(crate) desc: Descriptor,
    /// What the export did with it.
    pub(crate) report: ImageReport,
}

/// An image's manifest, index entry and report, from the blobs its layers
/// became (`outcomes`).
pub(crate) fn image_parts<ID>(
    img: &StoredImage<ID>,
    outcomes: &HashMap<LayerKey, BlobOutcome>,
    tag_override: Option<&str>,
    opts: &ExportOptions,
) -> Result<ImageParts> {
    let mut layer_descs = Vec::new();
    let mut layer_reports = Vec::new();
    for l in &img.layers {
        let compression = layer_compression(opts, l);
        let key = LayerKey {
            diff_id: l.diff_id.clone(),
            compression,
        };
        let outcome = outcomes
            .get(&key)
            .with_context(|| format!("internal: no blob for layer {}", l.diff_id))?;
        let desc = DescriptorBuilder::default()
            .media_type(compression.media_type())
            .digest(outcome.digest.clone())
            .size(outcome.blob_size)
            .build()?;
        layer_reports.push(LayerReport {
            diff_id: l.diff_id.to_string(),
            blob_digest: outcome.digest.to_string(),
            media_type: compression.media_type().to_string(),
            compression,
            size: outcome.tar_size,
            blob_size: outcome.blob_size,
            status: outcome.status,
            seconds: outcome.seconds,
            blob: BlobBytes::of(l, &outcome.digest, compression),
        });
        layer_descs.push(desc);
    }
    let (manifest, original) = build_manifest(img, &layer_descs)?;
    let manifest_digest = crate::digest::sha256(&manifest);
    let tag = tag_override
        .map(str::to_string)
        .or_else(|| img.entry.tags.first().cloned());
    let desc = index_descriptor(img, &manifest_digest, manifest.len(), tag.as_deref())?;
    let report = ImageReport {
        image: img.name(),
        tag,
        manifest_digest: manifest_digest.to_string(),
        config_digest: img.config_digest().to_string(),
        original_manifest: original,
        platform: image::platform_of(&img.config),
        deployment: img.deployment.clone(),
        layers: layer_reports,
    };
    Ok(ImageParts {
        manifest,
        manifest_digest,
        desc,
        report,
    })
}

/// Write one image's config (original bytes) and manifest.
fn write_image<ID>(
    layout: &OciLayout,
    img: &StoredImage<ID>,
    outcomes: &HashMap<LayerKey, BlobOutcome>,
    tag_override: Option<&str>,
    opts: &ExportOptions,
    created: &Mutex<Vec<Digest>>,
) -> Result<WrittenImage> {
    let name = img.name();
    let parts = image_parts(img, outcomes, tag_override, opts)?;
    let config = layout
        .write_blob(&img.config_bytes, img.config_digest())
        .with_context(|| format!("Writing config of image {name}"))?;
    if config.created {
        lock(created).push(config.digest.clone());
    }
    let m = layout
        .write_blob(&parts.manifest, &parts.manifest_digest)
        .with_context(|| format!("Writing manifest of image {name}"))?;
    if m.created {
        lock(created).push(m.digest.clone());
    }
    Ok(WrittenImage {
        desc: parts.desc,
        report: parts.report,
    })
}

/// The image's `index.json` entry: its manifest, the platform from its
/// config (not the host's), and its ref name.
fn index_descriptor<ID>(
    img: &StoredImage<ID>,
    manifest_digest: &Digest,
    manifest_len: usize,
    tag: Option<&str>,
) -> Result<Descriptor> {
    let mut platform = PlatformBuilder::default()
        .os(img.config.os().clone())
        .architecture(img.config.architecture().clone());
    if let Some(v) = img.config.variant() {
        platform = platform.variant(v.clone());
    }
    let mut desc = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(manifest_digest.clone())
        .size(manifest_len as u64)
        .platform(platform.build()?);
    if let Some(t) = tag {
        desc = desc.annotations(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            t.to_string(),
        )]));
    }
    Ok(desc.build()?)
}

/// Add the images to `index.json` in one atomic replace: each replaces the
/// entry with its tag (or, untagged, the same manifest untagged).
fn update_index(layout: &OciLayout, images: Vec<WrittenImage>) -> Result<Vec<ImageReport>> {
    let mut index = layout.index_or_empty()?;
    let mut manifests = index.manifests().clone();
    let mut reports = Vec::new();
    for WrittenImage { desc, report } in images {
        manifests.retain(|d| {
            let ref_name = d
                .annotations()
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME));
            match &report.tag {
                Some(t) => ref_name != Some(t),
                None => !(ref_name.is_none() && d.digest() == desc.digest()),
            }
        });
        manifests.push(desc);
        reports.push(report);
    }
    index.set_manifests(manifests);
    layout.write_index(&index)?;
    Ok(reports)
}
