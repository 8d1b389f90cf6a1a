//! Serving images read-only over the OCI distribution API: one image for the
//! length of one `skopeo copy` (the private hand-off, `handoff`: no
//! temporary layout at all), or a whole repository as a registry
//! (`cfs-export serve`, [`registry`]). One server, split by job.
//!
//! Only those `access` admits are answered (the hand-off's per-run
//! credential, htpasswd users, or anyone), within bounds on connections,
//! time and concurrent rebuilds (`conn`, `body`); GET and HEAD only
//! (`routes`), with ranges (`ranges`), under the names `names` knows. Layers are rebuilt as
//! skopeo reads them, proven against the diff_id while they stream:
//! uncompressed (blob digest = diff_id), or, when every layer's original
//! compressed bytes are reproducible ([`crate::compress::reproduce`]), those bytes,
//! proven also by the original blob's digest and size, under the original
//! manifest; or (`serve --compression gzip|zstd`) through our deterministic
//! encoder, proven also by the digest and size the index
//! ([`crate::compress::blob_index`]) learned. The last bytes are held back until the proofs succeed, so a
//! damaged layer's response is cut short and can never be committed.
//! A range starts at the nearest restart point an earlier response of the
//! blob passed: a tar offset and hash state for an uncompressed layer, a
//! pgzip block start for a reproduced pgzip blob (`resume`,
//! [`crate::compress::pgzip_restart`]), still proven whole.
//! skopeo asks only for the blobs its destination lacks.

mod access;
pub(crate) mod blocks;
mod body;
mod conn;
mod handoff;
mod names;
mod ranges;
pub mod registry;
mod resume;
mod routes;
pub mod tls;

pub(crate) use handoff::Served;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::routing::get;
use axum::Router;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, DescriptorBuilder, Digest, MediaType};

use crate::compress::blob_index::IndexedBlob;
use crate::compress::reproduce::Reproducer;
use crate::compress::Compression;
use crate::export::{ManifestChoice, ManifestHolder};
use crate::progress::ProgressHandle;
use crate::repo::image::{self, StoredImage, StoredLayer};
use names::Names;

/// A blob the server can send.
enum Blob<ID> {
    /// Small, in memory (the config's original bytes).
    Bytes(Bytes),
    /// A layer, rebuilt on request.
    Layer(Box<LayerBlob<ID>>),
}

/// A layer to rebuild when asked for.
struct LayerBlob<ID> {
    image: String,
    layer: StoredLayer<ID>,
    served: ServedLayer,
}

/// One layer as served.
#[derive(Debug, Clone)]
pub(crate) struct ServedLayer {
    /// Its descriptor in the served manifest.
    pub descriptor: Descriptor,
    /// The uncompressed tar's size.
    pub tar_size: u64,
    /// How the blob is made from the tar: as it is, by the encoder that
    /// reproduces the original blob, or by our deterministic gzip or zstd.
    pub compression: Compression,
}

impl ServedLayer {
    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.descriptor.size()
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        self.descriptor.digest()
    }
}

/// How one layer fared, for the report.
#[derive(Debug, Clone)]
pub(crate) struct LayerServed {
    /// Seconds spent rebuilding and sending it.
    pub seconds: f64,
}

/// What the server learned while skopeo read from it.
#[derive(Default)]
struct Log {
    served: HashMap<String, LayerServed>,
    errors: Vec<anyhow::Error>,
}

struct Inner<ID: FsVerityHashValue> {
    repo: Arc<Repository<ID>>,
    names: Names,
    images: Vec<ServedImage>,
    blobs: HashMap<String, Blob<ID>>,
    progress: ProgressHandle,
    log: Mutex<Log>,
    /// Log layer errors as they happen (`serve`: no caller reads [`Log`]).
    log_errors: bool,
    /// What every generation of the served content shares (a SIGHUP
    /// rescan makes a new `Inner`, not new bounds).
    pool: Arc<Pool>,
}

/// The bounds and caches of a server, shared by the content it serves now
/// and the responses still running from before a rescan.
struct Pool {
    /// Layer rebuilds running at once; a response whose client stops
    /// reading gives its turn up while it waits.
    rebuilds: Arc<tokio::sync::Semaphore>,
    /// Layer responses at once per client address.
    clients: body::Clients,
    /// Compression threads per compressed layer.
    workers: body::Workers,
    /// How long a response may wait for its client to read a chunk.
    stall: std::time::Duration,
    /// Where earlier responses of each uncompressed layer can be resumed.
    restarts: Mutex<HashMap<String, Vec<crate::repo::layer::RestartPoint>>>,
    /// Compressed blocks of reproduced blobs, shared between responses.
    blocks: Arc<blocks::BlockCache>,
    /// Where earlier responses of each reproduced pgzip blob can be resumed.
    blob_points: Arc<resume::BlobPoints>,
}

/// One image's manifest as served.
struct ServedImage {
    manifest: Bytes,
    digest: Digest,
    media_type: String,
}

/// What [`add_image`] made of an image.
struct Added {
    image: ServedImage,
    layers: Vec<ServedLayer>,
    original_manifest: bool,
}

/// How the layers of served images become blobs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LayerChoice<'a> {
    /// The original blobs and manifest when this has an encoder for every
    /// compressed layer; else every layer uncompressed (the fastest for a
    /// destination that unpacks them, and deterministic).
    Original(&'a HashMap<Digest, Reproducer>),
    /// Every layer through this encoder, its blob (by diff_id) as indexed.
    Indexed(Compression, &'a HashMap<Digest, IndexedBlob>),
}

/// Add `img`'s config and layers to `blobs` and make its manifest, the
/// layers as `choice` says.
fn add_image<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    choice: LayerChoice<'_>,
    blobs: &mut HashMap<String, Blob<ID>>,
) -> Result<Added> {
    blobs.insert(
        img.config_digest().to_string(),
        Blob::Bytes(Bytes::from(img.config_bytes.clone())),
    );
    let originals = match choice {
        LayerChoice::Original(reproduced) => original_blobs(img, reproduced),
        LayerChoice::Indexed(..) => None,
    };
    let mut layers = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let tar_size = image::layer_size(repo, l)
            .with_context(|| format!("Layer {} of image {}", l.index + 1, img.name()))?;
        let original = originals.as_ref().map(|o| &o[i]);
        let (descriptor, compression) = layer_blob(img, l, tar_size, original, choice)?;
        let served = ServedLayer {
            descriptor,
            tar_size,
            compression,
        };
        layers.push(served.clone());
        blobs.insert(
            served.digest().to_string(),
            Blob::Layer(Box::new(LayerBlob {
                image: img.name(),
                layer: l.clone(),
                served,
            })),
        );
    }
    let descriptors: Vec<Descriptor> = layers.iter().map(|l| l.descriptor.clone()).collect();
    let (manifest, choice) =
        crate::export::build_manifest(img, &descriptors, ManifestHolder::Registry)?;
    let original_manifest = choice == ManifestChoice::Original;
    let media_type = serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_string))
        .unwrap_or_else(|| MediaType::ImageManifest.to_string());
    Ok(Added {
        image: ServedImage {
            digest: crate::digest::sha256(&manifest),
            manifest: Bytes::from(manifest),
            media_type,
        },
        layers,
        original_manifest,
    })
}

/// The descriptor and encoder of layer `l` as served: its `original` blob
/// when every original is served, else as `choice` says.
fn layer_blob<ID>(
    img: &StoredImage<ID>,
    l: &StoredLayer<ID>,
    tar_size: u64,
    original: Option<&(Descriptor, Compression)>,
    choice: LayerChoice<'_>,
) -> Result<(Descriptor, Compression)> {
    Ok(match (original, choice) {
        (Some((descriptor, c)), _) => (descriptor.clone(), *c),
        (None, LayerChoice::Indexed(c, indexed)) => {
            let blob = indexed.get(&l.diff_id).with_context(|| {
                format!(
                    "internal: layer {} of image {} not indexed",
                    l.diff_id,
                    img.name()
                )
            })?;
            (descriptor(c.media_type(), &blob.digest, blob.size)?, c)
        }
        (None, LayerChoice::Original(_)) => (
            descriptor(MediaType::ImageLayer, &l.diff_id, tar_size)?,
            Compression::Uncompressed,
        ),
    })
}

/// The original blobs of `img`, if each is served: reproduced by the
/// encoder in `reproduced`, or uncompressed ones as they are.
fn original_blobs<ID>(
    img: &StoredImage<ID>,
    reproduced: &HashMap<Digest, Reproducer>,
) -> Option<Vec<(Descriptor, Compression)>> {
    img.layers
        .iter()
        .map(|l| {
            let o = l.original.as_ref()?;
            match reproduced.get(&l.diff_id) {
                Some(r) => Some((o.clone(), Compression::Reproduced(*r))),
                None => (o.digest() == &l.diff_id).then(|| (o.clone(), Compression::Uncompressed)),
            }
        })
        .collect()
}

/// A layer descriptor.
fn descriptor(media_type: MediaType, digest: &Digest, size: u64) -> Result<Descriptor> {
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest.clone())
        .size(size)
        .build()?)
}

/// The routes over `inner`.
fn router<ID: FsVerityHashValue>(inner: Arc<Inner<ID>>) -> Router {
    Router::new()
        .route(
            "/v2/",
            get(routes::api_version)
                .head(routes::api_version)
                .fallback(routes::unsupported),
        )
        .route(
            "/v2/{*path}",
            get(routes::get_path)
                .head(routes::head_path)
                .fallback(routes::unsupported),
        )
        .with_state(inner)
}
