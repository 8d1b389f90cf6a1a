//! Stage 3, the export: takes the selected images and options and gives an
//! OCI image written natively: an OCI layout (`layout`) or a deterministic
//! `oci-archive` (`archive`), with a typed [`ExportReport`].
//!
//! Exporting images to an OCI layout: resolve, plan, rebuild layers in
//! parallel, then write the config, manifest and index.

pub(crate) mod archive;
mod layout;
mod plan;
mod record;
mod report;
mod run;
mod write;

pub(crate) use plan::{layer_compression, with_reproduced, BlobOutcome};
pub use report::{BlobBytes, ExportReport, ImageReport, LayerReport, LayerStatus, ManifestNotKept};
pub(crate) use write::{build_manifest, image_parts, ManifestChoice, ManifestHolder};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

use plan::reproduced_into_layout;
use run::export_locked;

use crate::compress::reproduce::Reproducer;
use crate::compress::CompressionChoice;
use crate::export::layout::OciLayout;
use crate::host::Host;
use crate::lock;
use crate::progress::ProgressHandle;
use crate::repo::image::{self, StoredImage};
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
