//! Serving one image read-only over the OCI distribution API, for the length
//! of one `skopeo copy`: no temporary layout at all.
//!
//! Bound to 127.0.0.1 on a free port, under an unguessable random path
//! prefix; GET and HEAD of `/v2/`, the manifest and the blobs, nothing else
//! (404, or 405 for other methods). Layers are rebuilt as skopeo reads them,
//! uncompressed (blob digest = diff_id), proven against the diff_id while
//! they stream; the last bytes are held back until the proof succeeds, so a
//! damaged layer's response is cut short and can never be committed.
//! skopeo asks only for the blobs its destination lacks.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, DescriptorBuilder, Digest, MediaType};

use crate::compress::Compression;
use crate::image::{self, StoredImage, StoredLayer};
use crate::layer;
use crate::progress::{LayerKey, ProgressHandle, ProgressWriter};

/// The repository name of the served image under the prefix.
const NAME: &str = "image";
/// Its tag.
pub(crate) const TAG: &str = "cfs-export";
/// Bytes per response chunk; the last one or two are held back until the layer is proven.
const CHUNK: usize = 256 * 1024;

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
    size: u64,
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
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// An unguessable path component: 128 random bits as hex.
fn random_prefix() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("Reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

impl<ID: FsVerityHashValue> Served<ID> {
    /// Start serving `img` on 127.0.0.1 (a free port).
    pub async fn start(
        repo: Arc<Repository<ID>>,
        img: &StoredImage<ID>,
        progress: ProgressHandle,
    ) -> Result<Self> {
        let mut blobs = HashMap::new();
        blobs.insert(
            img.config_digest().to_string(),
            Blob::Bytes(Bytes::from(img.config_bytes.clone())),
        );
        let mut layers = Vec::new();
        for l in &img.layers {
            let size = image::layer_size(&repo, l)
                .with_context(|| format!("Layer {} of image {}", l.index + 1, img.name()))?;
            layers.push(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageLayer)
                    .digest(l.diff_id.clone())
                    .size(size)
                    .build()?,
            );
            blobs.insert(
                l.diff_id.to_string(),
                Blob::Layer(Box::new(LayerBlob {
                    image: img.name(),
                    layer: l.clone(),
                    size,
                })),
            );
        }
        let (manifest, original_manifest) = crate::export::build_manifest(img, &layers)?;
        let manifest_digest = crate::digest::sha256(&manifest);
        let inner = Arc::new(Inner {
            repo,
            prefix: random_prefix()?,
            manifest: Bytes::from(manifest),
            manifest_digest: manifest_digest.clone(),
            blobs,
            progress,
            log: Mutex::new(Log::default()),
        });
        let app = Router::new()
            .route("/v2/", get(api_version).head(api_version))
            .route("/v2/{*path}", get(get_path).head(head_path))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("Listening on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop.await;
            });
            if let Err(e) = served.await {
                tracing::warn!("image server: {e}");
            }
        });
        Ok(Served {
            inner,
            addr,
            manifest_digest,
            original_manifest,
            layers,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The reference skopeo copies from (`docker://127.0.0.1:PORT/<prefix>/image:cfs-export`).
    pub fn source(&self) -> String {
        format!("docker://{}/{}/{NAME}:{TAG}", self.addr, self.inner.prefix)
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

async fn api_version() -> impl IntoResponse {
    (
        [("Docker-Distribution-API-Version", "registry/2.0")],
        Body::from("{}"),
    )
}

/// What a `/v2/…` path names under our prefix.
enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str),
}

fn parse<'a>(prefix: &str, path: &'a str) -> Option<Target<'a>> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('/')?;
    let rest = rest.strip_prefix(NAME)?.strip_prefix('/')?;
    if let Some(reference) = rest.strip_prefix("manifests/") {
        return Some(Target::Manifest(reference));
    }
    rest.strip_prefix("blobs/").map(Target::Blob)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn with_headers(mut r: Response, len: u64, digest: &str, media_type: Option<&str>) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(digest) {
        h.insert("Docker-Content-Digest", v);
    }
    if let Some(Ok(v)) = media_type.map(HeaderValue::from_str) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

async fn head_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    Path(path): Path<String>,
) -> Response {
    respond(&s, &path, Method::HEAD)
}

async fn get_path<ID: FsVerityHashValue>(
    State(s): State<Arc<Inner<ID>>>,
    Path(path): Path<String>,
) -> Response {
    respond(&s, &path, Method::GET)
}

/// In-memory bytes as a response body (none for HEAD).
fn bytes_body(bytes: &Bytes, head: bool) -> Body {
    match head {
        true => Body::empty(),
        false => Body::from(bytes.clone()),
    }
}

fn respond<ID: FsVerityHashValue>(s: &Arc<Inner<ID>>, path: &str, method: Method) -> Response {
    let head = method == Method::HEAD;
    match parse(&s.prefix, path) {
        Some(Target::Manifest(r)) if r == TAG || r == s.manifest_digest.as_ref() => {
            let media_type = MediaType::ImageManifest.to_string();
            with_headers(
                bytes_body(&s.manifest, head).into_response(),
                s.manifest.len() as u64,
                s.manifest_digest.as_ref(),
                Some(&media_type),
            )
        }
        Some(Target::Blob(digest)) => match s.blobs.get(digest) {
            Some(Blob::Bytes(b)) => with_headers(
                bytes_body(b, head).into_response(),
                b.len() as u64,
                digest,
                None,
            ),
            Some(Blob::Layer(l)) if head => {
                with_headers(Body::empty().into_response(), l.size, digest, None)
            }
            Some(Blob::Layer(l)) => {
                let body = stream_layer(s.clone(), digest.to_string());
                with_headers(body.into_response(), l.size, digest, None)
            }
            None => not_found(),
        },
        _ => not_found(),
    }
}

/// A response body that rebuilds the layer on a blocking thread as it is sent.
fn stream_layer<ID: FsVerityHashValue>(s: Arc<Inner<ID>>, digest: String) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let Some(Blob::Layer(blob)) = s.blobs.get(&digest) else {
            return;
        };
        let LayerBlob { image, layer, size } = &**blob;
        let key = LayerKey {
            diff_id: layer.diff_id.clone(),
            compression: Compression::Uncompressed,
        };
        let started = Instant::now();
        s.progress.layer_started(image, &key, *size);
        let sender = HeldBack::new(tx.clone());
        let counted = ProgressWriter::new(sender, &*s.progress, &key);
        let result = layer::rebuild(&s.repo, image, layer, counted);
        s.progress.layer_finished(&key);
        let mut log = match s.log.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        match result {
            Ok((counted, _)) => {
                if counted.into_inner().release().is_ok() {
                    let seconds = started.elapsed().as_secs_f64();
                    log.served.insert(digest, LayerServed { seconds });
                }
            }
            Err(e) => {
                // The held-back bytes are dropped: the response stops short.
                let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
                let gone = e
                    .chain()
                    .any(|c| c.downcast_ref::<layer::DestinationWriteError>().is_some());
                if !gone {
                    log.errors.push(e);
                }
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A writer into the response that keeps the latest chunk back until
/// [`HeldBack::release`]: nothing proves a layer but its last byte.
struct HeldBack {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    held: Option<Bytes>,
    current: Vec<u8>,
}

impl HeldBack {
    fn new(tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>) -> Self {
        HeldBack {
            tx,
            held: None,
            current: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&self, b: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(b))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// The layer is proven: send what was held back.
    fn release(mut self) -> io::Result<()> {
        if let Some(b) = self.held.take() {
            self.send(b)?;
        }
        let last = std::mem::take(&mut self.current);
        if !last.is_empty() {
            self.send(Bytes::from(last))?;
        }
        Ok(())
    }
}

impl Write for HeldBack {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.current.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            if let Some(previous) = self.held.replace(Bytes::from(full)) {
                self.send(previous)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_prefix_only() {
        let p = "0123abcd";
        assert!(matches!(
            parse(p, "0123abcd/image/manifests/cfs-export"),
            Some(Target::Manifest("cfs-export"))
        ));
        assert!(matches!(
            parse(p, "0123abcd/image/blobs/sha256:ab"),
            Some(Target::Blob("sha256:ab"))
        ));
        for bad in [
            "image/manifests/cfs-export",
            "0123abce/image/manifests/cfs-export",
            "0123abcd/other/manifests/x",
            "0123abcd/image/tags/list",
            "0123abcdimage/manifests/x",
        ] {
            assert!(parse(p, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn held_back_until_released() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut w = HeldBack::new(tx);
        let data = vec![7u8; CHUNK * 3 + 100];
        w.write_all(&data).unwrap();
        // Two full chunks went out; the third and the tail are held.
        let mut got = Vec::new();
        while let Ok(Ok(b)) = rx.try_recv() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got.len(), 2 * CHUNK);
        let released = std::thread::spawn(move || w.release());
        rt.block_on(async {
            while let Some(Ok(b)) = rx.recv().await {
                got.extend_from_slice(&b);
            }
        });
        released.join().unwrap().unwrap();
        assert_eq!(got, data);
    }
}
