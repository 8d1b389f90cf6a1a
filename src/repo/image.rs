//! The images a composefs repository holds: finding them by tag, digest or ID
//! prefix, and loading their original manifest and config bytes.

use std::collections::HashMap;
use std::fmt;

use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest, MediaType};

use crate::digest::{parse_sha256, sha256};
pub use crate::repo::catalog::{
    catalog, select, Catalog, CatalogEntry, DamagedManifest, SelectError,
};
use crate::repo::stream_check::{open_stream, Check};

/// Content type of config split-streams (`"ociconfg"`, as composefs-oci writes them).
pub(crate) const CONFIG_CONTENT_TYPE: u64 = u64::from_le_bytes(*b"ociconfg");
/// Content type of manifest split-streams (`"ocimanif"`).
pub(crate) const MANIFEST_CONTENT_TYPE: u64 = u64::from_le_bytes(*b"ocimanif");
/// Docker's config media type, which Docker-schema2 manifests reference.
pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's schema2 image manifest media type (Docker Hub's images).
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Shortest image-ID prefix accepted (as podman and docker display IDs).
pub const MIN_ID_PREFIX: usize = 12;

/// Stream name of a config.
pub(crate) fn config_stream_id(digest: &Digest) -> String {
    format!("oci-config-{digest}")
}

/// Stream name of a manifest.
pub(crate) fn manifest_stream_id(digest: &Digest) -> String {
    composefs_oci::oci_image::manifest_identifier(digest)
}

/// Stream name of a layer.
pub(crate) fn layer_stream_id(diff_id: &Digest) -> String {
    composefs_oci::layer_content_id(diff_id)
}

/// Read a split-stream's whole content and its named refs.
pub(crate) fn read_stream<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    content_id: &str,
    verity: Option<&ID>,
    content_type: u64,
) -> Result<(Vec<u8>, HashMap<String, ID>)> {
    let mut reader = open_stream(repo, content_id, verity, Some(content_type), Check::Content)?;
    let refs = reader
        .iter_named_refs()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut data = Vec::new();
    reader.cat(repo, &mut data)?;
    Ok((data, refs))
}

pub(crate) fn read_manifest_stream<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    digest: &Digest,
) -> Result<(Vec<u8>, HashMap<String, ID>)> {
    let id = manifest_stream_id(digest);
    let (bytes, refs) = read_stream(repo, &id, None, MANIFEST_CONTENT_TYPE)
        .with_context(|| format!("Reading manifest {digest}"))?;
    let got = sha256(&bytes);
    if &got != digest {
        bail!("Manifest {digest} is damaged in the repository: its stored bytes hash to {got}");
    }
    Ok((bytes, refs))
}

/// The original manifest as stored in the repository.
#[derive(Debug, Clone)]
pub struct OriginalManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its exact bytes.
    pub bytes: Vec<u8>,
    /// Parsed.
    pub manifest: ImageManifest,
}

impl OriginalManifest {
    /// True for OCI image manifests (as opposed to Docker schema2).
    pub fn is_oci(&self) -> bool {
        match self.manifest.media_type() {
            None => true,
            Some(t) => *t == MediaType::ImageManifest,
        }
    }

    /// True for Docker schema2 image manifests.
    pub fn is_docker_schema2(&self) -> bool {
        self.manifest
            .media_type()
            .as_ref()
            .is_some_and(|t| t.to_string() == DOCKER_MANIFEST_MEDIA_TYPE)
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone)]
pub struct StoredLayer<ID> {
    /// Position in the image, from 0.
    pub index: usize,
    /// sha256 of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// fs-verity digest of the layer's split-stream object.
    pub stream: ID,
    /// The layer's descriptor in the original manifest, if there was one.
    pub original: Option<Descriptor>,
}

/// An image loaded from the repository: original bytes and layer streams.
#[derive(Debug, Clone)]
pub struct StoredImage<ID> {
    /// Where it was found.
    pub entry: CatalogEntry,
    /// The original manifest, if stored.
    pub manifest: Option<OriginalManifest>,
    /// The config's exact original bytes (their sha256 is the image ID).
    pub config_bytes: Vec<u8>,
    /// Parsed config.
    pub config: ImageConfiguration,
    /// Layers, bottom first.
    pub layers: Vec<StoredLayer<ID>>,
    /// The bootc deployment that named it, when one did.
    pub deployment: Option<crate::host::DeploymentChoice>,
}

impl<ID> StoredImage<ID> {
    /// The image ID (config digest).
    pub fn config_digest(&self) -> &Digest {
        &self.entry.config_digest
    }

    /// A name for messages.
    pub fn name(&self) -> String {
        self.entry.display_name()
    }
}

/// Load the image a catalogue entry names, checking the manifest and config
/// bytes against their digests.
pub fn load<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    entry: &CatalogEntry,
) -> Result<StoredImage<ID>> {
    let name = entry.display_name();
    let (manifest, config_verity) = match &entry.manifest_digest {
        Some(digest) => {
            let (m, refs) = load_manifest(repo, digest, &name)?;
            let verity = refs
                .get(&format!("config:{}", entry.config_digest))
                .cloned();
            (Some(m), verity)
        }
        None => (None, None),
    };
    let (config_bytes, config, layer_refs) =
        load_config(repo, &entry.config_digest, config_verity, &name)?;
    let layers = stored_layers(repo, &config, manifest.as_ref(), &layer_refs, entry, &name)?;
    Ok(StoredImage {
        entry: entry.clone(),
        manifest,
        config_bytes,
        config,
        layers,
        deployment: None,
    })
}

/// The stored manifest, checked against its digest, and its named refs.
fn load_manifest<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    digest: &Digest,
    name: &str,
) -> Result<(OriginalManifest, HashMap<String, ID>)> {
    let (bytes, refs) =
        read_manifest_stream(repo, digest).with_context(|| format!("Loading image {name}"))?;
    let manifest = ImageManifest::from_reader(&bytes[..])
        .with_context(|| format!("Parsing manifest {digest} of image {name}"))?;
    let original = OriginalManifest {
        digest: digest.clone(),
        bytes,
        manifest,
    };
    Ok((original, refs))
}

/// The config's original bytes (checked against its digest), parsed, and
/// its refs to the layer streams.
fn load_config<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    config_digest: &Digest,
    verity: Option<ID>,
    name: &str,
) -> Result<(Vec<u8>, ImageConfiguration, HashMap<String, ID>)> {
    let stream_name = config_stream_id(config_digest);
    let verity = match verity {
        Some(v) => Some(v),
        None => repo.has_stream(&stream_name)?,
    };
    let Some(verity) = verity else {
        bail!(
            "Config {config_digest} of image {name} is missing from the repository (no stream {stream_name}); re-pull the image"
        );
    };
    // What to say when it does not read back: which objects are damaged.
    let damaged = || {
        let objects = crate::repo::objects::damaged_objects(repo, &stream_name, &verity);
        let list: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
        match list.is_empty() {
            true => String::new(),
            false => format!(": {}", list.join(", ")),
        }
    };
    let (bytes, layer_refs) = read_stream(repo, &stream_name, Some(&verity), CONFIG_CONTENT_TYPE)
        .with_context(|| {
            format!(
                "The config {config_digest} of image {name} is damaged in the repository{}; re-pull the image",
                damaged()
            )
        })?;
    let got = sha256(&bytes);
    if &got != config_digest {
        bail!(
            "The config {config_digest} of image {name} is damaged in the repository{}: its stored bytes hash to {got}; re-pull the image",
            damaged()
        );
    }
    let config = ImageConfiguration::from_reader(&bytes[..])
        .with_context(|| format!("Parsing config {config_digest} of image {name}"))?;
    Ok((bytes, config, layer_refs))
}

/// Each diff_id of the config with its layer stream and original descriptor.
fn stored_layers<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    config: &ImageConfiguration,
    manifest: Option<&OriginalManifest>,
    layer_refs: &HashMap<String, ID>,
    entry: &CatalogEntry,
    name: &str,
) -> Result<Vec<StoredLayer<ID>>> {
    let config_digest = &entry.config_digest;
    let diff_ids = config.rootfs().diff_ids();
    let originals: Vec<Option<Descriptor>> = match manifest {
        Some(m) => {
            let layers = m.manifest.layers();
            if layers.len() != diff_ids.len() {
                bail!(
                    "Image {name}: manifest {} lists {} layers but config {config_digest} has {} diff_ids",
                    m.digest,
                    layers.len(),
                    diff_ids.len()
                );
            }
            layers.iter().cloned().map(Some).collect()
        }
        None => vec![None; diff_ids.len()],
    };
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (index, (diff_id, original)) in diff_ids.iter().zip(originals).enumerate() {
        let diff_id = parse_sha256(diff_id).with_context(|| {
            format!(
                "Config {config_digest} of image {name}, layer {}",
                index + 1
            )
        })?;
        let stream = match layer_refs.get(diff_id.as_ref()) {
            Some(v) => v.clone(),
            None => repo.has_stream(&layer_stream_id(&diff_id))?.with_context(|| {
                format!(
                    "Layer {} ({diff_id}) of image {name} is missing from the repository; re-pull the image",
                    index + 1
                )
            })?,
        };
        layers.push(StoredLayer {
            index,
            diff_id,
            stream,
            original,
        });
    }
    Ok(layers)
}

/// `os/arch[/variant]` of an image config.
pub fn platform_of(config: &ImageConfiguration) -> String {
    platform_string(
        config.os(),
        config.architecture(),
        config.variant().as_deref(),
    )
}

/// `os/arch[/variant]`.
pub fn platform_string(
    os: &impl fmt::Display,
    arch: &impl fmt::Display,
    variant: Option<&str>,
) -> String {
    match variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    }
}

/// Uncompressed size of a stored layer, from its split-stream header.
pub fn layer_size<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    layer: &StoredLayer<ID>,
) -> Result<u64> {
    let reader = open_stream(
        repo,
        &layer_stream_id(&layer.diff_id),
        Some(&layer.stream),
        Some(composefs_oci::LAYER_CONTENT_TYPE),
        Check::Header,
    )?;
    Ok(reader.total_size)
}
