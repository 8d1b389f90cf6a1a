//! Export container images from a composefs repository to bit-exact OCI images.
//!
//! Each layer is rebuilt from its split-stream and proven against the config's
//! diff_id while it streams; the original config bytes are kept, so the image
//! ID (config digest) survives the trip.
//!
//! The modules are the stages an image passes through, bottom up: [`host`]
//! (a bootc host's state, read-only), [`repo`] (the repository: images, each
//! layer rebuilt and proven), [`compress`] (a tar to a blob, the original
//! bytes found again), [`export`] (an OCI layout or archive), [`serve`] (the
//! read-only registry), [`deliver`] (any destination, through skopeo where
//! needed) and [`import`] (the way back). [`progress`] is how the library
//! reports to its caller; [`digest`] is shared by all.
//!
//! Exporting an image to an OCI layout:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use composefs_export::export::{self, ExportOptions, ImageSelection};
//! use composefs_export::repo::{self, RepoLocation};
//! use composefs_export::with_repo;
//!
//! let repo = repo::open(&RepoLocation::System)?;
//! let wanted = ImageSelection::Named(vec!["quay.io/fedora/fedora-bootc:42".into()]);
//! let report = with_repo!(&repo, r => {
//!     let images = export::load_images(r, &wanted, None)?;
//!     export::export_to_oci_dir(r, &images, "/var/tmp/out".as_ref(), &ExportOptions::default())
//! })?;
//! for layer in &report.images[0].layers {
//!     println!("{} -> {} ({:?})", layer.diff_id, layer.blob_digest, layer.status);
//! }
//! # Ok(()) }
//! ```
//!
//! Compression and destinations use skopeo's syntax:
//!
//! ```
//! use composefs_export::compress::{Compression, CompressionChoice};
//! use composefs_export::deliver::transport::ImageLocation;
//!
//! let c: CompressionChoice = "zstd:7".parse().unwrap();
//! assert_eq!(c, CompressionChoice::Fixed(Compression::Zstd(7)));
//! let dest = ImageLocation::parse("oci:/var/tmp/out:quay.io/fedora/fedora-bootc:42").unwrap();
//! assert_eq!(dest.to_string(), "oci:/var/tmp/out:quay.io/fedora/fedora-bootc:42");
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod compress;
pub mod deliver;
pub mod digest;
pub mod export;
pub mod host;
pub mod import;
pub mod progress;
pub mod repo;
pub mod serve;

/// A mistake in how the tool was called (exit code 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A mutex's guard, also after another thread panicked holding it: every
/// value we guard stays consistent between statements.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The machine's cores: the default `--jobs`, and the compression workers per layer.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Our directory under the user's cache directory (`$XDG_CACHE_HOME` or
/// `~/.cache`), never inside a repository; none (no caching) without either.
pub(crate) fn cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")));
    base.map(|b| b.join("cfs-export"))
}

/// Create `dir` and its missing parents with mode 0700 (as skopeo and
/// containers-storage make theirs).
pub(crate) fn create_private_dirs(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("Creating {}", dir.display()))
}

/// `work` on each of `items`, `jobs` at a time; the first error stops
/// handing out more and is returned.
pub(crate) fn for_each_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    work: &(dyn Fn(&T) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let first_error = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(e) = work(item) {
                        lock(&first_error).get_or_insert(e);
                        next.store(items.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Human-readable byte count.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The topmost directory of `path` that does not exist yet (`None` when `path` exists).
pub fn first_missing_ancestor(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut missing = None;
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if p.symlink_metadata().is_ok() {
            break;
        }
        missing = Some(p.to_path_buf());
    }
    missing
}
