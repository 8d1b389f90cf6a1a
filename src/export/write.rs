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
use super::{BlobBytes, ExportOptions, ImageReport, LayerReport, ManifestNotKept};

use crate::export::layout::OciLayout;
use crate::lock;
use crate::progress::LayerKey;
use crate::repo::image::{self, OriginalManifest, StoredImage};

use oci_spec::image::ANNOTATION_REF_NAME;

/// What a destination can hold as an image manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ManifestHolder {
    /// An OCI layout (`oci:`, `oci-archive:`, the private layout skopeo
    /// reads): OCI manifests only (skopeo refuses a Docker manifest there).
    OciLayout,
    /// A registry, containers-storage, `dir:` or `cfs-export serve`: OCI and
    /// Docker schema2 manifests alike.
    Registry,
}

/// The manifest an image gets in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ManifestChoice {
    /// The original bytes.
    Original,
    /// A new OCI manifest; why, when every layer blob is the original's.
    New(Option<ManifestNotKept>),
}

/// Whether the original manifest's bytes go to a `holder` destination whose
/// layer blobs are `layers`: only when every blob is the original's, and the
/// destination can hold the original's kind (OCI anywhere; Docker schema2
/// everywhere but an OCI layout).
pub(crate) fn choose_manifest(
    original: Option<&OriginalManifest>,
    layers: &[Descriptor],
    holder: ManifestHolder,
) -> ManifestChoice {
    let Some(orig) = original else {
        return ManifestChoice::New(None);
    };
    let same_blobs = orig.manifest.layers().len() == layers.len()
        && orig
            .manifest
            .layers()
            .iter()
            .zip(layers)
            .all(|(o, n)| o.digest() == n.digest() && o.size() == n.size());
    match (same_blobs, orig.is_oci(), orig.is_docker_schema2(), holder) {
        (false, ..) => ManifestChoice::New(None),
        (true, true, _, _) | (true, _, true, ManifestHolder::Registry) => ManifestChoice::Original,
        (true, _, true, ManifestHolder::OciLayout) => {
            ManifestChoice::New(Some(ManifestNotKept::DockerInOciLayout {
                original: orig.digest.to_string(),
            }))
        }
        (true, false, false, _) => ManifestChoice::New(None),
    }
}

/// The manifest to write to a `holder` destination: the original bytes when
/// [`choose_manifest`] says so, else a new OCI manifest with the same config.
pub(crate) fn build_manifest<ID>(
    img: &StoredImage<ID>,
    layers: &[Descriptor],
    holder: ManifestHolder,
) -> Result<(Vec<u8>, ManifestChoice)> {
    let choice = choose_manifest(img.manifest.as_ref(), layers, holder);
    if let (ManifestChoice::Original, Some(orig)) = (&choice, &img.manifest) {
        return Ok((orig.bytes.clone(), choice));
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
    Ok((crate::digest::canonical_json(&manifest)?, choice))
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
    let (layer_descs, layer_reports) = layer_parts(img, outcomes, opts)?;
    let (manifest, choice) = build_manifest(img, &layer_descs, ManifestHolder::OciLayout)?;
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
        original_manifest: choice == ManifestChoice::Original,
        manifest_not_kept: match choice {
            ManifestChoice::New(why) => why,
            ManifestChoice::Original => None,
        },
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

/// Each layer's descriptor and report, from the blob written for it.
fn layer_parts<ID>(
    img: &StoredImage<ID>,
    outcomes: &HashMap<LayerKey, BlobOutcome>,
    opts: &ExportOptions,
) -> Result<(Vec<Descriptor>, Vec<LayerReport>)> {
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
    Ok((layer_descs, layer_reports))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(hex: char, size: u64) -> Descriptor {
        DescriptorBuilder::default()
            .media_type(MediaType::ImageLayerGzip)
            .digest(
                crate::digest::parse_sha256(&format!("sha256:{}", hex.to_string().repeat(64)))
                    .unwrap(),
            )
            .size(size)
            .build()
            .unwrap()
    }

    /// An original manifest of `media_type` (none: OCI without the field)
    /// over layers `a` and `b`.
    fn original(media_type: Option<&str>) -> OriginalManifest {
        let mt = media_type
            .map(|t| format!(r#""mediaType":"{t}","#))
            .unwrap_or_default();
        let bytes = format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{c}","size":7}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{a}","size":10}},{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{b}","size":20}}]}}"#,
            c = "c".repeat(64),
            a = "a".repeat(64),
            b = "b".repeat(64),
        );
        OriginalManifest {
            digest: crate::digest::sha256(bytes.as_bytes()),
            manifest: ImageManifest::from_reader(bytes.as_bytes()).unwrap(),
            bytes: bytes.into_bytes(),
        }
    }

    /// (the original's media type, if stored; the blobs written; where; the choice).
    type Case<'a> = (
        Option<Option<&'a str>>,
        &'a [Descriptor],
        ManifestHolder,
        ManifestChoice,
    );

    #[test]
    fn the_original_manifest_where_the_destination_holds_it() {
        use ManifestHolder::{OciLayout, Registry};
        const OCI: Option<&str> = Some("application/vnd.oci.image.manifest.v1+json");
        const DOCKER: Option<&str> = Some(image::DOCKER_MANIFEST_MEDIA_TYPE);
        const OTHER: Option<&str> = Some("application/vnd.example.manifest+json");
        let same = [layer('a', 10), layer('b', 20)];
        let recompressed = [layer('a', 10), layer('d', 18)];
        let resized = [layer('a', 10), layer('b', 21)];
        let docker_digest = original(DOCKER).digest.to_string();
        let not_kept = || {
            ManifestChoice::New(Some(ManifestNotKept::DockerInOciLayout {
                original: docker_digest.clone(),
            }))
        };
        #[rustfmt::skip]
        let cases: [Case; 14] = [
            (Some(OCI), &same, OciLayout, ManifestChoice::Original),
            (Some(OCI), &same, Registry, ManifestChoice::Original),
            (Some(None), &same, OciLayout, ManifestChoice::Original),
            (Some(OCI), &recompressed, OciLayout, ManifestChoice::New(None)),
            (Some(OCI), &resized, Registry, ManifestChoice::New(None)),
            (Some(OCI), &same[..1], Registry, ManifestChoice::New(None)),
            (Some(DOCKER), &same, Registry, ManifestChoice::Original),
            (Some(DOCKER), &same, OciLayout, not_kept()),
            (Some(DOCKER), &recompressed, Registry, ManifestChoice::New(None)),
            (Some(DOCKER), &recompressed, OciLayout, ManifestChoice::New(None)),
            (Some(OTHER), &same, Registry, ManifestChoice::New(None)),
            (Some(OTHER), &same, OciLayout, ManifestChoice::New(None)),
            (None, &same, Registry, ManifestChoice::New(None)),
            (None, &same, OciLayout, ManifestChoice::New(None)),
        ];
        for (i, (kind, layers, holder, want)) in cases.into_iter().enumerate() {
            let orig = kind.map(original);
            let got = choose_manifest(orig.as_ref(), layers, holder);
            assert_eq!(got, want, "case {i}: {kind:?} {holder:?}");
        }
    }

    #[test]
    fn the_report_line_names_the_original_docker_manifest() {
        let why = ManifestNotKept::DockerInOciLayout {
            original: "sha256:0123".into(),
        };
        assert_eq!(
            why.to_string(),
            "an OCI layout cannot hold the original Docker manifest sha256:0123"
        );
        let json = serde_json::to_value(&why).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"reason": "docker-in-oci-layout", "original": "sha256:0123"})
        );
    }
}
