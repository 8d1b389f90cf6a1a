//! `cfs-export serve`: the repository as a read-only OCI registry.
//!
//! Every tagged image is served (see the `names` module): the original
//! compressed blobs and manifest when every compressed layer is reproduced
//! (as `export --compression original` does), else uncompressed layers under
//! a new manifest, the same bytes on every host and restart; or, asked for
//! gzip or zstd, every layer through our deterministic encoder, under a new
//! manifest whose blob digests and sizes come from the index
//! ([`crate::compress::blob_index`]: each layer compressed once, at the first start,
//! then remembered). Nothing is
//! served anonymously unless asked; connections, header and idle times and
//! concurrent rebuilds are bounded as for the hand-off (more responses at
//! once: a fleet pulls one layer many times; see `blocks`), but a response has
//! no overall deadline (layers are large).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;

use super::access::{Access, Htpasswd};
use super::blocks::BlockCache;
use super::names::Names;
use super::tls::TlsFiles;
use super::{add_image, conn, router, Inner, LayerChoice, Log};
use crate::compress::blob_index::{IndexReport, IndexedBlob};
use crate::compress::{Compression, CompressionChoice};
use crate::export::ExportOptions;
use crate::repo::image::StoredImage;

/// How long running responses may finish after SIGINT/SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

/// Layer responses at once, per `--jobs`: each client pulls several layers
/// at a time, and a response mostly waits for its client, or copies the
/// blocks a response of the same blob compressed. Bounded all the same, as
/// each holds buffers and threads.
const RESPONSES_PER_JOB: usize = 4;

/// Who may pull.
#[derive(Debug, Clone)]
pub enum Users {
    /// Anyone (`--anonymous`).
    Anyone,
    /// The users of an htpasswd file with bcrypt entries.
    Htpasswd(PathBuf),
}

/// Where to listen.
#[derive(Debug)]
pub enum Listen {
    /// Bind this address.
    Addr(SocketAddr),
    /// A socket already bound (systemd socket activation).
    Socket(std::net::TcpListener),
}

/// What one served image became.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServedImageReport {
    /// The image, as named in the repository.
    pub image: String,
    /// Its tags in the repository.
    pub tags: Vec<String>,
    /// The manifest digest served.
    pub manifest_digest: String,
    /// True when it is the original manifest.
    pub original_manifest: bool,
}

/// A bound, not yet running, registry.
pub struct Registry<ID: FsVerityHashValue> {
    inner: Arc<Inner<ID>>,
    listener: tokio::net::TcpListener,
    access: Arc<Access>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The images served.
    pub images: Vec<ServedImageReport>,
    /// Whether it answers HTTPS.
    pub https: bool,
    /// Short names that several registries' images share (`name:tag`,
    /// registries): served only as `REGISTRY/name` or with `?ns=`.
    pub ambiguous: Vec<(String, Vec<String>)>,
    /// For gzip and zstd: how the blobs' digests were learned.
    pub indexed: Option<IndexReport>,
}

impl<ID: FsVerityHashValue> Registry<ID> {
    /// Prepare `images` (finding their original compression first when
    /// `opts.compression` is `original`; for gzip and zstd, the blobs'
    /// digests and sizes, from the index or by compressing each layer
    /// not indexed once, `opts.jobs` at a time) and bind `listen`. `extra_tags`
    /// serves images under more names (`quay.io/x/os:booted` for the image
    /// whose config digest is given: a bootc host's deployments).
    pub async fn bind(
        repo: Arc<Repository<ID>>,
        images: Vec<StoredImage<ID>>,
        extra_tags: &[(oci_spec::image::Digest, String)],
        listen: Listen,
        users: &Users,
        tls: Option<&TlsFiles>,
        opts: &ExportOptions,
    ) -> Result<Self> {
        let tls = tls.map(super::tls::acceptor).transpose()?;
        let access = Arc::new(match users {
            Users::Anyone => Access::Anyone,
            Users::Htpasswd(path) => Access::Users(Htpasswd::read(path)?),
        });
        let (opts, indexed) = prepare_layers(&repo, &images, opts).await?;
        let choice = match &indexed {
            Some((c, (blobs, _))) => LayerChoice::Indexed(*c, blobs),
            None => LayerChoice::Original(&opts.reproduced),
        };
        let mut names = Names::default();
        names.listing = true;
        let mut blobs = HashMap::new();
        let mut served = Vec::new();
        let mut reports = Vec::new();
        for img in &images {
            let added = add_image(&repo, img, choice, &mut blobs)?;
            for tag in &img.entry.tags {
                names.add_tag(tag, served.len());
            }
            let mut tags = img.entry.tags.clone();
            for (config, tag) in extra_tags {
                if config == img.config_digest() {
                    names.add_tag(tag, served.len());
                    tags.push(tag.clone());
                }
            }
            reports.push(ServedImageReport {
                image: img.name(),
                tags,
                manifest_digest: added.image.digest.to_string(),
                original_manifest: added.original_manifest,
            });
            served.push(added.image);
        }
        let ambiguous = names
            .ambiguous()
            .into_iter()
            .map(|(n, r)| (n, r.into_iter().map(str::to_string).collect()))
            .collect();
        let listener = bind_listener(listen).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            repo,
            names,
            images: served,
            blobs,
            progress: opts.progress.clone(),
            log: Mutex::new(Log::default()),
            rebuilds: Arc::new(tokio::sync::Semaphore::new(
                opts.jobs.max(1) * RESPONSES_PER_JOB,
            )),
            workers: super::body::Workers::new(opts.jobs),
            restarts: Mutex::default(),
            blob_points: Arc::default(),
            log_errors: true,
            blocks: BlockCache::new(super::blocks::BUDGET),
        });
        Ok(Registry {
            inner,
            listener,
            access,
            https: tls.is_some(),
            tls,
            addr,
            images: reports,
            ambiguous,
            indexed: indexed.map(|(_, (_, report))| report),
        })
    }

    /// Serve until `stop` resolves; then stop accepting and give running
    /// responses [`GRACE`] to finish.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let bounds = conn::Bounds {
            grace: GRACE,
            access_log: true,
        };
        let server = conn::serve(
            self.listener,
            router(self.inner),
            self.access,
            bounds,
            self.tls,
            rx,
        );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            _ = server.as_mut() => return,
            _ = stop => {}
        }
        let _ = tx.send(());
        server.await;
    }
}

/// The index's blobs by diff_id, and how the index was made.
type Indexed = (HashMap<oci_spec::image::Digest, IndexedBlob>, IndexReport);

/// What the layers of `images` are served as: for `original`, the encoders
/// reproducing them (in the returned options); for gzip and zstd, the
/// blobs' digests and sizes from the index, compressing each layer not
/// indexed once, `opts.jobs` at a time.
async fn prepare_layers<ID: FsVerityHashValue>(
    repo: &Arc<Repository<ID>>,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
) -> Result<(ExportOptions, Option<(Compression, Indexed)>)> {
    Ok(match opts.compression {
        CompressionChoice::Original => {
            let (r, i, o) = (repo.clone(), images.to_vec(), opts.clone());
            let opts =
                tokio::task::spawn_blocking(move || crate::export::with_reproduced(&r, &i, &o))
                    .await
                    .context("export worker")??;
            (opts, None)
        }
        CompressionChoice::Fixed(c @ (Compression::Gzip(_) | Compression::Zstd(_))) => {
            let (r, i, jobs) = (repo.clone(), images.to_vec(), opts.jobs);
            let indexed = tokio::task::spawn_blocking(move || {
                crate::compress::blob_index::index_layers(&r, &i, c, jobs)
            })
            .await
            .context("index worker")??;
            (opts.clone(), Some((c, indexed)))
        }
        CompressionChoice::Fixed(_) => (opts.clone(), None),
    })
}

/// The listening socket: `listen`'s address bound, or systemd's socket.
async fn bind_listener(listen: Listen) -> Result<tokio::net::TcpListener> {
    Ok(match listen {
        Listen::Addr(a) => tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("Listening on {a}"))?,
        Listen::Socket(s) => {
            s.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(s).context("Using the socket systemd passed")?
        }
    })
}
