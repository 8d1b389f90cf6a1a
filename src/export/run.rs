//! Running the planned jobs: layers rebuilt and compressed on `--jobs`
//! threads into pending blobs, named only once every job has succeeded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

use super::plan::{plan, BlobOutcome, Job, Plan};
use super::write::{update_index, write_image};
use super::{ExportOptions, ExportReport, LayerStatus};

use crate::compress::Compression;
use crate::export::layout::{OciLayout, PendingBlob};
use crate::lock;
use crate::progress::{ProgressHandle, ProgressWriter};
use crate::repo::image::StoredImage;
use crate::repo::layer;

pub(super) fn export_locked<ID: FsVerityHashValue>(
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
