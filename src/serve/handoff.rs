//! The private hand-off: one image served on 127.0.0.1 (a free port) to one
//! `skopeo copy`, under a random prefix, to the holder of a per-run
//! credential only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

use super::access::{self, Access, Credential};
use super::names::Names;
use super::{add_image, conn, router, Inner, LayerChoice, LayerServed, Log, Pool, ServedLayer};
use crate::progress::ProgressHandle;
use crate::repo::image::StoredImage;

/// The repository name of the served image under the prefix.
const NAME: &str = "image";
/// Its tag.
pub(crate) const TAG: &str = "cfs-export";
/// How long a chunk may wait for skopeo to read it before the response is dropped.
const STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// The hand-off's bounds: one client, `jobs` layers at once.
fn hand_off_pool(jobs: usize) -> Pool {
    Pool {
        rebuilds: Arc::new(tokio::sync::Semaphore::new(jobs.max(1))),
        // One client: its own slots are all of them.
        clients: super::body::Clients::new(jobs.max(1)),
        workers: super::body::Workers::each(jobs),
        // skopeo may pause a blob while it commits another.
        stall: STALL,
        restarts: Mutex::default(),
        blob_points: Arc::default(),
        // One client: nothing to share, so nothing kept.
        blocks: super::blocks::BlockCache::new(0),
    }
}

/// The image as served: its manifest and where it is.
pub(crate) struct Served<ID: FsVerityHashValue> {
    inner: Arc<Inner<ID>>,
    prefix: String,
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
    /// `jobs` layers at once, its layers as `choice` says (see [`add_image`]).
    pub async fn start(
        repo: Arc<Repository<ID>>,
        img: &StoredImage<ID>,
        choice: LayerChoice<'_>,
        progress: ProgressHandle,
        jobs: usize,
    ) -> Result<Self> {
        let mut blobs = HashMap::new();
        let added = add_image(&repo, img, choice, &mut blobs)?;
        let manifest_digest = added.image.digest.clone();
        let prefix = access::random_hex(16)?;
        let inner = Arc::new(Inner {
            repo,
            names: Names::single(&format!("{prefix}/{NAME}"), TAG),
            images: vec![added.image],
            blobs,
            progress,
            log: Mutex::new(Log::default()),
            log_errors: false,
            pool: Arc::new(hand_off_pool(jobs)),
        });
        let credential = Arc::new(Credential::random()?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("Listening on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let site = conn::Site {
            router: router(inner.clone()),
            access: Arc::new(Access::Token(credential.clone())),
        };
        let task = tokio::spawn(conn::serve(
            listener,
            tokio::sync::watch::channel(site).1,
            conn::Bounds::hand_off(),
            None,
            stop,
        ));
        Ok(Served {
            inner,
            prefix,
            addr,
            manifest_digest,
            original_manifest: added.original_manifest,
            layers: added.layers,
            credential,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The reference skopeo copies from (`docker://127.0.0.1:PORT/<prefix>/image:cfs-export`).
    pub fn source(&self) -> String {
        format!("docker://{}/{}/{NAME}:{TAG}", self.addr, self.prefix)
    }

    /// `user:password` our skopeo must present (for its auth file; never argv).
    pub fn user_password(&self) -> String {
        self.credential.user_password()
    }

    /// The policy scope naming exactly the served image (`127.0.0.1:PORT/<prefix>/image`).
    pub fn policy_scope(&self) -> String {
        format!("{}/{}/{NAME}", self.addr, self.prefix)
    }

    /// Stop serving; what was served, and the first layer error, if any.
    pub async fn stop(mut self) -> (HashMap<String, LayerServed>, Option<anyhow::Error>) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        // Connections still open (skopeo is gone) must not hold the port.
        self.task.abort();
        let _ = (&mut self.task).await;
        let mut log = std::mem::take(&mut *crate::lock(&self.inner.log));
        let error = (!log.errors.is_empty()).then(|| log.errors.remove(0));
        (log.served, error)
    }
}

impl<ID: FsVerityHashValue> Drop for Served<ID> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
