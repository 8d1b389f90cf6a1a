//! Writing an image once its blobs exist: the config (original bytes), the
//! manifest (original bytes when every blob is the original, else a new OCI
//! manifest), and one atomic `index.json` update.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageManifest, ImageManifestBuilder, MediaType,
    PlatformBuilder,
};

use super::plan::{layer_compression, BlobOutcome};
use super::{BlobBytes, ExportOptions, ImageReport, LayerReport};

use crate::export::layout::OciLayout;
use crate::lock;
use crate::progress::LayerKey;
use crate::repo::image::{self, StoredImage};

use oci_spec::image::ANNOTATION_REF_NAME;

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

/// An image whose blobs are in the layout, waiting for its index entry.
pub(super) struct WrittenImage {
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
pub(super) fn write_image<ID>(
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
pub(super) fn update_index(
    layout: &OciLayout,
    images: Vec<WrittenImage>,
) -> Result<Vec<ImageReport>> {
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
