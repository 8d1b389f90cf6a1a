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
use super::{add_image, conn, router, Inner, LayerChoice, Log, Pool};
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
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// What is served now; a [`Reloader`] replaces it.
    site: tokio::sync::watch::Sender<conn::Site>,
    reloader: Reloader<ID>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Whether it answers HTTPS.
    pub https: bool,
    /// What it serves.
    pub content: ContentReport,
}

/// What a registry serves: its images and how their layers were prepared.
#[derive(Debug, Clone)]
pub struct ContentReport {
    /// The images served.
    pub images: Vec<ServedImageReport>,
    /// Short names that several registries' images share (`name:tag`,
    /// registries): served only as `REGISTRY/name` or with `?ns=`.
    pub ambiguous: Vec<(String, Vec<String>)>,
    /// For gzip and zstd: how the blobs' digests were learned.
    pub indexed: Option<IndexReport>,
}

/// Makes what a registry serves anew (SIGHUP): the users from their file,
/// the images from the repository; responses running go on with what
/// they started with.
pub struct Reloader<ID: FsVerityHashValue> {
    maker: Arc<SiteMaker<ID>>,
    site: tokio::sync::watch::Sender<conn::Site>,
}

impl<ID: FsVerityHashValue> Clone for Reloader<ID> {
    fn clone(&self) -> Self {
        Reloader {
            maker: self.maker.clone(),
            site: self.site.clone(),
        }
    }
}

impl<ID: FsVerityHashValue> Reloader<ID> {
    /// Serve `images` (and `extra_tags`, as for [`Registry::bind`]) to the
    /// users the htpasswd file names now, from the next request on. On an
    /// error what was served stays.
    pub async fn reload(
        &self,
        images: Vec<StoredImage<ID>>,
        extra_tags: &[(oci_spec::image::Digest, String)],
    ) -> Result<ContentReport> {
        let (site, report) = self.maker.site(images, extra_tags).await?;
        self.site.send_replace(site);
        Ok(report)
    }
}

/// What makes a registry's site: the repository, who may read, how layers
/// are served, and the bounds every site shares.
struct SiteMaker<ID: FsVerityHashValue> {
    repo: Arc<Repository<ID>>,
    users: Users,
    opts: ExportOptions,
    pool: Arc<Pool>,
}

impl<ID: FsVerityHashValue> SiteMaker<ID> {
    /// The site for `images`, and what it serves.
    async fn site(
        &self,
        images: Vec<StoredImage<ID>>,
        extra_tags: &[(oci_spec::image::Digest, String)],
    ) -> Result<(conn::Site, ContentReport)> {
        let access = Arc::new(match &self.users {
            Users::Anyone => Access::Anyone,
            Users::Htpasswd(path) => Access::Users(Htpasswd::read(path)?),
        });
        let (inner, report) = self.content(&images, extra_tags).await?;
        Ok((
            conn::Site {
                router: router(Arc::new(inner)),
                access,
            },
            report,
        ))
    }

    /// The served content of `images`: their layers prepared (see
    /// [`Registry::bind`]), names, blobs and manifests.
    async fn content(
        &self,
        images: &[StoredImage<ID>],
        extra_tags: &[(oci_spec::image::Digest, String)],
    ) -> Result<(Inner<ID>, ContentReport)> {
        let (opts, indexed) = prepare_layers(&self.repo, images, &self.opts).await?;
        let choice = match &indexed {
            Some((c, (blobs, _))) => LayerChoice::Indexed(*c, blobs),
            None => LayerChoice::Original(&opts.reproduced),
        };
        let mut names = Names::default();
        names.listing = true;
        let mut blobs = HashMap::new();
        let mut served = Vec::new();
        let mut reports = Vec::new();
        for img in images {
            let added = add_image(&self.repo, img, choice, &mut blobs)?;
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
        let inner = Inner {
            repo: self.repo.clone(),
            names,
            images: served,
            blobs,
            progress: opts.progress.clone(),
            log: Mutex::new(Log::default()),
            log_errors: true,
            pool: self.pool.clone(),
        };
        let report = ContentReport {
            images: reports,
            ambiguous,
            indexed: indexed.map(|(_, (_, report))| report),
        };
        Ok((inner, report))
    }
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
        let pool = Arc::new(Pool {
            rebuilds: Arc::new(tokio::sync::Semaphore::new(
                opts.jobs.max(1) * RESPONSES_PER_JOB,
            )),
            clients: super::body::Clients::new(super::body::Clients::PER_CLIENT),
            workers: super::body::Workers::new(opts.jobs),
            stall: conn::IDLE_TIMEOUT,
            restarts: Mutex::default(),
            blob_points: Arc::default(),
            blocks: BlockCache::new(super::blocks::BUDGET),
        });
        let maker = Arc::new(SiteMaker {
            repo,
            users: users.clone(),
            opts: opts.clone(),
            pool,
        });
        let (site, content) = maker.site(images, extra_tags).await?;
        let reloader = Reloader {
            maker,
            site: tokio::sync::watch::channel(site).0,
        };
        let listener = bind_listener(listen).await?;
        let addr = listener.local_addr()?;
        Ok(Registry {
            listener,
            https: tls.is_some(),
            tls,
            site: reloader.site.clone(),
            reloader,
            addr,
            content,
        })
    }

    /// A handle that makes what is served anew (SIGHUP).
    pub fn reloader(&self) -> Reloader<ID> {
        self.reloader.clone()
    }

    /// Serve until `stop` resolves; then stop accepting and give running
    /// responses [`GRACE`] to finish.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let bounds = conn::Bounds {
            grace: GRACE,
            access_log: true,
            idle: conn::IDLE_TIMEOUT,
            per_client: conn::PER_CLIENT_CONNECTIONS,
        };
        let server = conn::serve(self.listener, self.site.subscribe(), bounds, self.tls, rx);
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
