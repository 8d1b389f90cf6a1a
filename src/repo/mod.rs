//! Stage 1, the repository: takes a composefs repository (read-only, shared
//! lock) and gives its images ([`image`], [`catalog`]), the chosen ones
//! ([`select`]), each layer rebuilt bit-exact and proven against its diff_id
//! ([`layer`], [`objects`]), and the two read-only commands built on that
//! ([`list`], [`verify`]). Knows nothing of compression or destinations.
//!
//! Finding and opening the composefs repository (`--repo`, `--system`, `--user`, like cfsctl).

pub mod catalog;
pub mod image;
pub mod layer;
pub mod list;
pub mod objects;
pub mod select;
mod stream_check;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use composefs::fsverity::{Algorithm, FsVerityHashValue, Sha256HashValue, Sha512HashValue};
use composefs::repository::{Repository, RepositoryConfig, RepositoryOpenError};
use rustix::fs::CWD;

/// Where the repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// An explicit path (`--repo`).
    Path(PathBuf),
    /// The system repository, `/sysroot/composefs` (`--system`).
    System,
    /// The user repository, `~/.var/lib/composefs` (`--user`).
    User,
}

impl RepoLocation {
    /// cfsctl's default: the system repository for root, else the user's.
    pub fn default_for_user() -> Self {
        if rustix::process::geteuid().is_root() {
            RepoLocation::System
        } else {
            RepoLocation::User
        }
    }

    /// The directory this location names.
    pub fn path(&self) -> Result<PathBuf> {
        Ok(match self {
            RepoLocation::Path(p) => p.clone(),
            RepoLocation::System => composefs::repository::system_path(),
            RepoLocation::User => composefs::repository::user_path()?,
        })
    }
}

/// An opened repository of either object-digest algorithm.
#[derive(Debug, Clone)]
pub enum AnyRepository {
    /// Objects named by sha256 fs-verity digests.
    Sha256(Arc<Repository<Sha256HashValue>>),
    /// Objects named by sha512 fs-verity digests.
    Sha512(Arc<Repository<Sha512HashValue>>),
}

/// Run the same generic code on whichever algorithm the repository uses.
#[macro_export]
macro_rules! with_repo {
    ($repo:expr, $r:ident => $body:expr) => {
        match $repo {
            $crate::repo::AnyRepository::Sha256($r) => $body,
            $crate::repo::AnyRepository::Sha512($r) => $body,
        }
    };
}

fn not_found_hint(path: &Path) -> String {
    format!(
        "No composefs repository at {} (choose one with --repo PATH, --system for /sysroot/composefs, or --user for ~/.var/lib/composefs)",
        path.display()
    )
}

/// Fail clearly, instead of waiting without a word, while another process
/// holds the repository's exclusive lock (garbage collection, repair).
fn check_not_locked(dir: &rustix::fd::OwnedFd, path: &Path) -> Result<()> {
    match rustix::fs::flock(dir, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            rustix::fs::flock(dir, rustix::fs::FlockOperation::Unlock)?;
            Ok(())
        }
        Err(rustix::io::Errno::WOULDBLOCK) => anyhow::bail!(
            "Repository {} is locked exclusively by another process (garbage collection or repair?); try again when it has finished",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("Locking repository {}", path.display())),
    }
}

/// A repository written before `meta.json` existed (bootc ≤ 1.15).
fn old_format(path: &Path) -> String {
    format!(
        "Repository {} predates the current composefs format (it has no meta.json; written by bootc 1.15 or older). Booting this system once with bootc 1.16 or newer upgrades it; cfs-export reads it only after that and never upgrades it itself",
        path.display()
    )
}

fn open_typed<ID: FsVerityHashValue>(path: &Path) -> Result<Arc<Repository<ID>>> {
    let repo = Repository::<ID>::open_path(CWD, path).map_err(|e| match e {
        RepositoryOpenError::MetadataMissing => anyhow::anyhow!(not_found_hint(path)),
        RepositoryOpenError::OldFormatRepository => anyhow::anyhow!(old_format(path)),
        other => anyhow::Error::new(other)
            .context(format!("Opening composefs repository {}", path.display())),
    })?;
    Ok(Arc::new(repo))
}

/// Open an existing repository read-only, with the shared lock composefs takes.
///
/// The algorithm comes from `meta.json`; repositories without fs-verity
/// (insecure) open too, since reading never requires verity.
pub fn open(location: &RepoLocation) -> Result<AnyRepository> {
    let path = location.path()?;
    let dir = match rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => anyhow::bail!(not_found_hint(&path)),
        Err(rustix::io::Errno::ACCESS) => {
            anyhow::bail!("Permission denied opening repository {}", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("Opening repository {}", path.display())),
    };
    let algorithm = composefs::repository::read_repo_algorithm(&dir)
        .with_context(|| format!("Reading {}/meta.json", path.display()))?;
    let Some(algorithm) = algorithm else {
        if path.join("objects").is_dir() {
            bail!(old_format(&path));
        }
        bail!(not_found_hint(&path));
    };
    check_not_locked(&dir, &path)?;
    drop(dir);
    Ok(match algorithm {
        Algorithm::Sha256 { .. } => AnyRepository::Sha256(open_typed(&path)?),
        Algorithm::Sha512 { .. } => AnyRepository::Sha512(open_typed(&path)?),
    })
}

/// How a repository was opened for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    /// It already existed.
    Existing,
    /// Created with fs-verity required on every object.
    CreatedSecure,
    /// Created insecure: the filesystem has no fs-verity.
    CreatedInsecure,
}

/// Open a repository for writing, creating a sha256 one if missing.
///
/// A new repository requires fs-verity when the filesystem supports it and is
/// insecure only when it does not.
pub fn open_or_create(location: &RepoLocation) -> Result<(AnyRepository, CreateOutcome)> {
    let path = location.path()?;
    if path.join("meta.json").exists() {
        return Ok((open(location)?, CreateOutcome::Existing));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("Creating parent directories of {}", path.display()))?;
    }
    let secure = Repository::<Sha256HashValue>::init_path(
        CWD,
        &path,
        RepositoryConfig::new(Algorithm::for_hash::<Sha256HashValue>()),
    );
    let (repo, outcome) = match secure {
        Ok((repo, _)) => (repo, CreateOutcome::CreatedSecure),
        Err(secure_err) if !path.join("meta.json").exists() => {
            tracing::debug!("secure init failed, retrying insecure: {secure_err:#}");
            let (repo, _) = Repository::<Sha256HashValue>::init_path(
                CWD,
                &path,
                RepositoryConfig::new(Algorithm::for_hash::<Sha256HashValue>()).set_insecure(),
            )
            .with_context(|| format!("Creating repository {}", path.display()))?;
            (repo, CreateOutcome::CreatedInsecure)
        }
        Err(e) => return Err(e),
    };
    Ok((AnyRepository::Sha256(Arc::new(repo)), outcome))
}
