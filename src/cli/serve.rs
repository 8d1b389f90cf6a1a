//! `cfs-export serve`: flags, refusals, the first line (the address), and
//! running until SIGINT/SIGTERM; SIGHUP reads the users and the repository anew.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use composefs_export::compress::blob_index::BlobIndex;
use composefs_export::compress::{Compression, CompressionChoice};
use composefs_export::export::{self, ImageSelection};
use composefs_export::host::{split_transport, Host};
use composefs_export::repo::image::StoredImage;
use composefs_export::serve::registry::{Listen, Registry, Reloader, Users, GRACE};
use composefs_export::serve::tls::TlsFiles;
use composefs_export::{repo, with_repo, UsageError};
use listenfd::ListenFd;
use oci_spec::image::Digest;

use super::source::{tell_host_warnings, Source};
use super::{export_options, runtime, Cli};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on (port 0: a free one); a socket passed by systemd
    /// socket activation (LISTEN_FDS) is used instead.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Answer anyone, without credentials.
    #[arg(long, conflicts_with = "htpasswd")]
    anonymous: bool,
    /// Basic auth for the users of this htpasswd file (bcrypt: `htpasswd -B`).
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (pulls cross the network in clear).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_http: bool,
    /// original: the original compressed layers and manifest where every
    /// layer is reproduced, else uncompressed; none: always uncompressed;
    /// gzip[:1-9], zstd[:1-19]: every layer compressed so, deterministically
    /// (the same bytes on every host and restart), under a new manifest.
    /// gzip and zstd blob digests are computed once per layer at startup and
    /// remembered under the cache dir ($XDG_CACHE_HOME or ~/.cache,
    /// cfs-export/index), so later starts compress nothing.
    #[arg(long, value_name = "KIND", default_value = "original", value_parser = serve_compression)]
    compression: CompressionChoice,
    /// Layers rebuilt at once (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
}

/// `--compression` of serve: what export takes.
fn serve_compression(s: &str) -> Result<CompressionChoice, String> {
    s.parse::<CompressionChoice>().map_err(|e| e.to_string())
}

impl ServeArgs {
    /// The socket systemd passed, else `--listen`; plain HTTP beyond
    /// loopback only when asked.
    fn listen(&self) -> Result<Listen> {
        let activated = ListenFd::from_env()
            .take_tcp_listener(0)
            .context("Taking the socket systemd passed (LISTEN_FDS)")?;
        let addr = match &activated {
            Some(s) => s.local_addr()?,
            None => self.listen,
        };
        if !addr.ip().is_loopback() && !self.insecure_http && self.tls().is_none() {
            return Err(UsageError(format!(
                "{addr} is not a loopback address: serve HTTPS with --tls-cert and --tls-key, or plain HTTP with --insecure-http"
            ))
            .into());
        }
        Ok(activated.map_or(Listen::Addr(self.listen), Listen::Socket))
    }

    fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    fn users(&self) -> Result<Users, UsageError> {
        match (&self.htpasswd, self.anonymous) {
            (Some(f), _) => Ok(Users::Htpasswd(f.clone())),
            (None, true) => Ok(Users::Anyone),
            (None, false) => Err(UsageError(
                "serve answers no one by default: pass --htpasswd FILE (bcrypt users) or --anonymous".into(),
            )),
        }
    }
}

pub(super) fn serve_command(cli: &Cli, args: &ServeArgs, out: &mut dyn Write) -> Result<()> {
    let users = args.users()?;
    // Before any thread starts: it reads and clears LISTEN_FDS.
    let listen = args.listen()?;
    let source = Source::from_cli(cli)?;
    tell_host_warnings(&source, cli.quiet);
    let repo = repo::open(&source.location)?;
    let opts = export_options(args.compression, args.jobs, None);
    let rt = runtime()?;
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("Installing a SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("Installing a SIGTERM handler")?;
        let mut signals = Signals::install()?;
        with_repo!(repo, r => {
            let images = load_all(&r).await?;
            let deployed = deployment_tags(&r, source.host.as_ref()).await?;
            if !cli.quiet {
                tell_indexing(&images, args.compression);
            }
            let registry =
                Registry::bind(r.clone(), images, &deployed, listen, &users, args.tls().as_ref(), &opts)
                    .await?;
            announce(cli, &registry, out)?;
            let reloads = reload_on_sighup(&r, cli, args, &source, registry.reloader(), &mut signals);
            let stop = async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if !cli.quiet {
                    eprintln!("stopping: running responses get {} s to finish", GRACE.as_secs());
                }
            };
            tokio::select! {
                _ = registry.run(stop) => {}
                _ = reloads => {}
            }
            Ok(())
        })
    });
    rt.shutdown_background();
    result
}

/// On each SIGHUP, serve the repository's images and the htpasswd users as
/// they are now; say how it went on stderr.
async fn reload_on_sighup<ID: composefs::fsverity::FsVerityHashValue>(
    repo: &std::sync::Arc<composefs::repository::Repository<ID>>,
    cli: &Cli,
    args: &ServeArgs,
    source: &Source,
    reloader: Reloader<ID>,
    signals: &mut Signals,
) {
    while signals.next().await {
        let rescanned = async {
            let images = load_all(repo).await?;
            let deployed = deployment_tags(repo, source.host.as_ref()).await?;
            if !cli.quiet {
                tell_indexing(&images, args.compression);
            }
            reloader.reload(images, &deployed).await
        };
        match rescanned.await {
            Ok(content) if !cli.quiet => eprintln!(
                "reloaded (SIGHUP): {} images, users and repository read anew",
                content.images.len()
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!("warning: reload (SIGHUP) failed, serving what was served before: {e:#}")
            }
        }
    }
}

/// SIGHUP asks for a reload; SIGUSR1 and SIGUSR2, which would kill the
/// server, are caught and ignored.
struct Signals {
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            hup: signal(SignalKind::hangup()).context("Installing a SIGHUP handler")?,
            usr1: signal(SignalKind::user_defined1()).context("Installing a SIGUSR1 handler")?,
            usr2: signal(SignalKind::user_defined2()).context("Installing a SIGUSR2 handler")?,
        })
    }

    /// The next SIGHUP (false: no more signals come).
    async fn next(&mut self) -> bool {
        loop {
            tokio::select! {
                h = self.hup.recv() => return h.is_some(),
                _ = self.usr1.recv() => {}
                _ = self.usr2.recv() => {}
            }
        }
    }
}

/// Every image of the repository.
async fn load_all<ID: composefs::fsverity::FsVerityHashValue>(
    repo: &std::sync::Arc<composefs::repository::Repository<ID>>,
) -> Result<Vec<StoredImage<ID>>> {
    let r = repo.clone();
    tokio::task::spawn_blocking(move || export::load_images(&r, &ImageSelection::All, None))
        .await
        .context("loading images")?
}

/// On a bootc host, each deployment's image also as `NAME:booted`,
/// `NAME:staged`, `NAME:rollback` (NAME from its origin, without tag).
async fn deployment_tags<ID: composefs::fsverity::FsVerityHashValue>(
    repo: &std::sync::Arc<composefs::repository::Repository<ID>>,
    host: Option<&Host>,
) -> Result<Vec<(Digest, String)>> {
    let Some(host) = host.cloned() else {
        return Ok(Vec::new());
    };
    let repo = repo.clone();
    tokio::task::spawn_blocking(move || {
        let mut tags = Vec::new();
        for role in ["booted", "staged", "rollback"] {
            let wanted = ImageSelection::Deployment(role.to_string());
            // A role without a deployment (or its image) is simply not served.
            let Ok(images) = export::load_images(&repo, &wanted, Some(&host)) else {
                continue;
            };
            for img in images {
                let Some(d) = &img.deployment else { continue };
                let (_, name) = split_transport(&d.image);
                let name = match name.rsplit_once(':') {
                    Some((n, tag)) if !tag.contains('/') => n,
                    _ => name,
                };
                let name = name.split_once('@').map_or(name, |(n, _)| n);
                tags.push((img.config_digest().clone(), format!("{name}:{role}")));
            }
        }
        tags
    })
    .await
    .context("reading the deployments")
}

/// Say on stderr which layers must be compressed once before serving, to
/// learn their gzip or zstd digests (the index has the others).
fn tell_indexing<ID>(images: &[StoredImage<ID>], choice: CompressionChoice) {
    let CompressionChoice::Fixed(c @ (Compression::Gzip(_) | Compression::Zstd(_))) = choice else {
        return;
    };
    let index = BlobIndex::new();
    let n = index.missing(images, c).len();
    if n == 0 {
        return;
    }
    let (layers, their) = if n == 1 {
        ("layer", "its")
    } else {
        ("layers", "their")
    };
    let kind = match c {
        Compression::Zstd(_) => "zstd",
        _ => "gzip",
    };
    let remembered = match index.dir() {
        Some(d) => format!("remembered in {}", d.display()),
        None => "not remembered: no cache dir ($XDG_CACHE_HOME or $HOME)".to_string(),
    };
    eprintln!("note: compressing {n} {layers} once to learn {their} {kind} digests ({remembered})");
}

/// The first stdout line is the address (a JSON line with `--json`), then
/// one line per image.
fn announce<ID: composefs::fsverity::FsVerityHashValue>(
    cli: &Cli,
    registry: &Registry<ID>,
    out: &mut dyn Write,
) -> Result<()> {
    let scheme = if registry.https { "https" } else { "http" };
    let url = format!("{scheme}://{}", registry.addr);
    if cli.json {
        let mut line = serde_json::json!({"listening": url, "images": registry.content.images});
        if let Some(indexed) = &registry.content.indexed {
            line["indexed"] = serde_json::to_value(indexed)?;
        }
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "listening on {url}")?;
        if !cli.quiet {
            for i in &registry.content.images {
                let names = match i.tags.as_slice() {
                    [] => i.image.clone(),
                    tags => tags.join(", "),
                };
                let kind = if i.original_manifest {
                    "original"
                } else {
                    "new"
                };
                writeln!(
                    out,
                    "  {} manifest {} ({kind})",
                    super::print::escape_control(&names),
                    i.manifest_digest,
                )?;
            }
        }
    }
    if !cli.quiet {
        if let Some(i) = registry
            .content
            .indexed
            .as_ref()
            .filter(|i| i.compressed > 0)
        {
            eprintln!(
                "note: compressed {} of {} distinct layers ({}) in {:.1} s",
                i.compressed, i.layers, i.compression, i.seconds
            );
        }
        for (name, registries) in &registry.content.ambiguous {
            eprintln!(
                "warning: {} is the short name of images from {}: it is served only as REGISTRY/{0} or with ?ns=REGISTRY; point mirrors at ADDR/REGISTRY/…",
                super::print::escape_control(name),
                registries.join(", ")
            );
        }
    }
    out.flush()?;
    Ok(())
}
