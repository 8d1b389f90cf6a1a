//! Serving one image read-only over the OCI distribution API, for the length
//! of one `skopeo copy`: no temporary layout at all.
//!
//! Bound to 127.0.0.1 on a free port; only the holder of a per-run
//! credential ([`access`]) is answered, within bounds on connections, time
//! and concurrent rebuilds ([`conn`], [`body`]); GET and HEAD of `/v2/`, the
//! manifest and the blobs, nothing else ([`routes`]). Layers are rebuilt as
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
mod ranges;
mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
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
use access::Credential;

/// The repository name of the served image under the prefix.
const NAME: &str = "image";
/// Its tag.
pub(crate) const TAG: &str = "cfs-export";

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
    prefix: String,
    manifest: Bytes,
    manifest_digest: Digest,
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

/// The image as served: its manifest (uncompressed layers) and where it is.
pub(crate) struct Served<ID: FsVerityHashValue> {
    inner: Arc<Inner<ID>>,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// The manifest digest served.
    pub manifest_digest: Digest,
    /// True when the manifest served is the original's bytes.
    pub original_manifest: bool,
    /// The layers, bottom first.
    pub layers: Vec<ServedLayer>,
    credential: Arc<Credential>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl<ID: FsVerityHashValue> Served<ID> {
    /// Start serving `img` on 127.0.0.1 (a free port), rebuilding at most
    /// `jobs` layers at once. When `reproduced` has an encoder for every
    /// layer, the original compressed blobs are served; else every layer
    /// uncompressed (the fastest for a destination that unpacks them).
    pub async fn start(
        repo: Arc<Repository<ID>>,
        img: &StoredImage<ID>,
        reproduced: &HashMap<Digest, Reproducer>,
        progress: ProgressHandle,
        jobs: usize,
    ) -> Result<Self> {
        let mut blobs = HashMap::new();
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
            let tar_size = image::layer_size(&repo, l)
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
        let manifest_digest = crate::digest::sha256(&manifest);
        let inner = Arc::new(Inner {
            repo,
            prefix: access::random_hex(16)?,
            manifest: Bytes::from(manifest),
            manifest_digest: manifest_digest.clone(),
            blobs,
            progress,
            log: Mutex::new(Log::default()),
            rebuilds: Arc::new(tokio::sync::Semaphore::new(jobs.max(1))),
            workers: jobs.max(1),
            restarts: Mutex::default(),
        });
        let credential = Arc::new(Credential::random()?);
        let app = Router::new()
            .route("/v2/", get(routes::api_version).head(routes::api_version))
            .route("/v2/{*path}", get(routes::get_path).head(routes::head_path))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("Listening on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(conn::serve(listener, app, credential.clone(), stop));
        Ok(Served {
            inner,
            addr,
            manifest_digest,
            original_manifest,
            layers,
            credential,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The reference skopeo copies from (`docker://127.0.0.1:PORT/<prefix>/image:cfs-export`).
    pub fn source(&self) -> String {
        format!("docker://{}/{}/{NAME}:{TAG}", self.addr, self.inner.prefix)
    }

    /// `user:password` our skopeo must present (for its auth file; never argv).
    pub fn user_password(&self) -> String {
        self.credential.user_password()
    }

    /// The policy scope naming exactly the served image (`127.0.0.1:PORT/<prefix>/image`).
    pub fn policy_scope(&self) -> String {
        format!("{}/{}/{NAME}", self.addr, self.inner.prefix)
    }

    /// Stop serving; what was served, and the first layer error, if any.
    pub async fn stop(mut self) -> (HashMap<String, LayerServed>, Option<anyhow::Error>) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        // Connections still open (skopeo is gone) must not hold the port.
        self.task.abort();
        let _ = (&mut self.task).await;
        let mut log = match self.inner.log.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        let error = (!log.errors.is_empty()).then(|| log.errors.remove(0));
        (log.served, error)
    }
}

impl<ID: FsVerityHashValue> Drop for Served<ID> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
