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
//! compressed bytes are reproducible ([`crate::reproduce`]), those bytes,
//! proven also by the original blob's digest and size, under the original
//! manifest. The last bytes are held back until the proofs succeed, so a
//! damaged layer's response is cut short and can never be committed.
//! skopeo asks only for the blobs its destination lacks.

mod access;
mod body;
mod conn;
mod handoff;
mod names;
mod ranges;
pub mod registry;
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

use crate::image::{self, StoredImage, StoredLayer};
use crate::progress::ProgressHandle;
use crate::reproduce::Reproducer;
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
    /// The encoder reproducing the original blob, when that is what is served.
    pub reproduced: Option<Reproducer>,
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
    /// Layer rebuilds allowed at once.
    rebuilds: Arc<tokio::sync::Semaphore>,
    /// Compression threads per reproduced layer.
    workers: usize,
    /// Where earlier responses of each uncompressed layer can be resumed.
    restarts: Mutex<HashMap<String, Vec<crate::layer::RestartPoint>>>,
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

/// Add `img`'s config and layers to `blobs` and make its manifest. When
/// `reproduced` has an encoder for every compressed layer, the original
/// blobs and manifest are served; else every layer uncompressed (the
/// fastest for a destination that unpacks them, and deterministic).
fn add_image<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    reproduced: &HashMap<Digest, Reproducer>,
    blobs: &mut HashMap<String, Blob<ID>>,
) -> Result<Added> {
    blobs.insert(
        img.config_digest().to_string(),
        Blob::Bytes(Bytes::from(img.config_bytes.clone())),
    );
    // The original blobs: reproduced, or uncompressed ones as they are.
    let originals = img
        .layers
        .iter()
        .map(|l| {
            let o = l.original.as_ref()?;
            match reproduced.get(&l.diff_id) {
                Some(r) => Some((o.clone(), Some(*r))),
                None => (o.digest() == &l.diff_id).then(|| (o.clone(), None)),
            }
        })
        .collect::<Option<Vec<_>>>();
    let mut layers = Vec::new();
    for (i, l) in img.layers.iter().enumerate() {
        let tar_size = image::layer_size(repo, l)
            .with_context(|| format!("Layer {} of image {}", l.index + 1, img.name()))?;
        let served = match originals.as_ref().map(|o| &o[i]) {
            Some((descriptor, r)) => ServedLayer {
                descriptor: descriptor.clone(),
                tar_size,
                reproduced: *r,
            },
            None => ServedLayer {
                descriptor: DescriptorBuilder::default()
                    .media_type(MediaType::ImageLayer)
                    .digest(l.diff_id.clone())
                    .size(tar_size)
                    .build()?,
                tar_size,
                reproduced: None,
            },
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
    let (manifest, original_manifest) = crate::export::build_manifest(img, &descriptors)?;
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
