//! Every destination: `oci:` and `oci-archive:` written natively,
//! containers-storage streamed to one `skopeo copy` (no temporary layout), and
//! everything else through one `skopeo copy` from a private layout under
//! `$TMPDIR` (default `/var/tmp`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;

use crate::compress::{Compression, CompressionChoice};
use crate::export::{self, ExportOptions, ExportReport, ImageSelection};
use crate::host::Host;
use crate::image::{self, StoredImage};
use crate::skopeo::CopyOptions;
use crate::transport::ImageLocation;
use crate::UsageError;

/// Where a containers-storage destination keeps its data (skopeo's `[driver@root+runroot]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageOptions {
    /// Storage driver (e.g. `overlay`, `vfs`).
    pub driver: Option<String>,
    /// Graph root.
    pub root: Option<PathBuf>,
    /// Run root.
    pub runroot: Option<PathBuf>,
}

/// Options passed through to skopeo for non-OCI destinations.
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    /// Registry auth file (`--authfile`).
    pub authfile: Option<PathBuf>,
    /// Require HTTPS and verify certificates (`--dest-tls-verify`).
    pub dest_tls_verify: Option<bool>,
    /// File holding `user:password` for the destination registry.
    pub creds_file: Option<PathBuf>,
    /// containers-storage location.
    pub storage: StorageOptions,
    /// Where temporary data goes: the private layout (default `$TMPDIR`, else
    /// `/var/tmp`), or, when streaming into containers-storage, skopeo's own
    /// copies of the blobs (default: the storage's `tmp/`).
    pub tmpdir: Option<PathBuf>,
    /// Export to a private OCI layout and copy from it, even where the image
    /// could be streamed to skopeo.
    pub via_layout: bool,
}

impl TransferOptions {
    /// Check these options fit `dest`, before any work is done.
    pub fn validate(&self, dest: &ImageLocation) -> Result<(), UsageError> {
        if !dest.via_skopeo() {
            let skopeo_only = [
                ("--authfile", self.authfile.is_some()),
                ("--dest-tls-verify", self.dest_tls_verify.is_some()),
                ("--creds-file", self.creds_file.is_some()),
                ("--storage-driver", self.storage.driver.is_some()),
                ("--storage-root", self.storage.root.is_some()),
                ("--storage-runroot", self.storage.runroot.is_some()),
            ];
            return match skopeo_only.iter().find(|(_, given)| *given) {
                Some((flag, _)) => Err(UsageError(format!(
                    "{flag} does not apply to {dest}: it is for registry and containers-storage destinations"
                ))),
                None => Ok(()),
            };
        }
        if self.creds_file.is_some() && self.authfile.is_some() {
            return Err(UsageError(
                "give --creds-file or --authfile, not both".into(),
            ));
        }
        if self.creds_file.is_some() && !matches!(dest, ImageLocation::Docker(_)) {
            return Err(UsageError(format!(
                "--creds-file is for docker:// destinations, not {dest}"
            )));
        }
        match dest {
            ImageLocation::ContainersStorage(r) => storage_reference(r, &self.storage).map(|_| ()),
            _ if self.storage != StorageOptions::default() => Err(UsageError(format!(
                "--storage-driver/--storage-root/--storage-runroot are for containers-storage: destinations, not {dest}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The default temp directory: `$TMPDIR`, else `/var/tmp` (layers can be large).
pub fn default_tmpdir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from)
}

/// Ref name inside private temp layouts.
const TEMP_TAG: &str = "cfs-export";

/// Export the selected images to any destination.
pub async fn export<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    selection: ImageSelection,
    host: Option<Host>,
    dest: ImageLocation,
    opts: ExportOptions,
    transfer: TransferOptions,
) -> Result<ExportReport> {
    transfer.validate(&dest)?;
    let loader = Arc::clone(&repo);
    let images = blocking(move || export::load_images(&loader, &selection, host.as_ref())).await?;
    match dest {
        ImageLocation::OciDir { path, tag } => {
            blocking(move || {
                let opts = opts.with_destination_tag(tag.as_deref())?;
                export::export_to_oci_dir(&repo, &images, &path, &opts)
            })
            .await
        }
        ImageLocation::OciArchive { path, tag } => {
            let opts = opts.with_destination_tag(tag.as_deref())?;
            blocking(move || crate::archive::export_archive(&repo, &images, &path, &opts)).await
        }
        ImageLocation::ContainersStorage(r) if !transfer.via_layout => {
            crate::stream::stream_to_storage(repo, images, &r, opts, &transfer).await
        }
        dest => copy_with_skopeo(repo, images, dest, opts, transfer).await,
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("export worker")?
}

fn temp_dir(transfer: &TransferOptions) -> Result<tempfile::TempDir> {
    let base = transfer.tmpdir.clone().unwrap_or_else(default_tmpdir);
    tempfile::Builder::new()
        .prefix("cfs-export-")
        .tempdir_in(&base)
        .with_context(|| {
            format!(
                "Creating a temp directory in {} (set TMPDIR to use another)",
                base.display()
            )
        })
}

/// The `containers-storage:` reference for skopeo, with the storage options
/// as its `[driver@root+runroot]` specifier.
pub fn storage_reference(reference: &str, storage: &StorageOptions) -> Result<String, UsageError> {
    let Some(root) = &storage.root else {
        if storage.driver.is_some() || storage.runroot.is_some() {
            return Err(UsageError(
                "--storage-driver and --storage-runroot need --storage-root".into(),
            ));
        }
        return Ok(format!("containers-storage:{reference}"));
    };
    if reference.starts_with('[') {
        return Err(UsageError(format!(
            "containers-storage:{reference} already names a storage location; drop --storage-root or the [..] part"
        )));
    }
    let mut spec = String::from("[");
    if let Some(d) = &storage.driver {
        spec.push_str(d);
        spec.push('@');
    }
    spec.push_str(&root.to_string_lossy());
    if let Some(r) = &storage.runroot {
        spec.push('+');
        spec.push_str(&r.to_string_lossy());
    }
    spec.push(']');
    Ok(format!("containers-storage:{spec}{reference}"))
}

/// The registry host a `docker://` reference (given without `docker://`)
/// names: Docker Hub for bare names.
pub fn registry_host(reference: &str) -> String {
    let first = reference.split('/').next().unwrap_or(reference);
    if reference.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        first.to_string()
    } else {
        "docker.io".to_string()
    }
}

/// Write a 0600 auth file for `host` from a `user:password` file.
fn write_authfile(dir: &Path, host: &str, creds_file: &Path) -> Result<PathBuf> {
    let creds = std::fs::read_to_string(creds_file)
        .with_context(|| format!("Reading credentials from {}", creds_file.display()))?;
    let creds = creds.trim_end_matches(['\n', '\r']);
    if !creds.contains(':') || creds.starts_with(':') {
        bail!(
            "{} must hold user:password on one line",
            creds_file.display()
        );
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(creds);
    let doc = serde_json::json!({ "auths": { host: { "auth": auth } } });
    let path = dir.join("auth.json");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("Creating {}", path.display()))?;
    f.write_all(doc.to_string().as_bytes())?;
    f.sync_all()?;
    Ok(path)
}

/// Bytes the private layout may need: each layer's size at its target
/// compression (uncompressed size when unknown), plus configs.
fn space_needed<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    opts: &ExportOptions,
) -> u64 {
    let mut total = 0u64;
    for img in images {
        total += img.config_bytes.len() as u64;
        for l in &img.layers {
            let original = l.original.as_ref();
            let same_kind = match opts.compression {
                CompressionChoice::Original => true,
                CompressionChoice::Fixed(c) => {
                    original.and_then(|d| Compression::from_media_type(d.media_type())) == Some(c)
                }
            };
            total += match (same_kind, original) {
                (true, Some(d)) => d.size(),
                _ => image::layer_size(repo, l).unwrap_or(0),
            };
        }
    }
    total
}

pub(crate) fn check_space(dir: &Path, needed: u64, hint: &str) -> Result<()> {
    let st = rustix::fs::statvfs(dir)
        .with_context(|| format!("Checking free space in {}", dir.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    if free < needed {
        bail!(
            "Not enough space in {}: the export needs about {} but only {} are free; {hint}",
            dir.display(),
            crate::human_size(needed),
            crate::human_size(free)
        );
    }
    Ok(())
}

async fn copy_with_skopeo<ID: FsVerityHashValue>(
    repo: Arc<Repository<ID>>,
    images: Vec<StoredImage<ID>>,
    location: ImageLocation,
    mut opts: ExportOptions,
    transfer: TransferOptions,
) -> Result<ExportReport> {
    let reference = location.to_string();
    if images.len() != 1 {
        bail!(UsageError(format!(
            "{reference} takes one image; got {}",
            images.len()
        )));
    }
    let storage = matches!(location, ImageLocation::ContainersStorage(_));
    // docker-archive holds a Docker schema2 manifest, which skopeo converts
    // ours to: digests cannot be preserved there.
    let docker_archive = matches!(location, ImageLocation::DockerArchive(_));
    let dest = match &location {
        ImageLocation::ContainersStorage(r) => storage_reference(r, &transfer.storage)?,
        _ => reference.clone(),
    };
    if (storage || docker_archive) && opts.compression == CompressionChoice::Original {
        // Storage unpacks layers anyway and `docker save` archives hold plain
        // tars: compressing would be wasted work.
        opts.compression = CompressionChoice::Fixed(Compression::Uncompressed);
    }
    let tmp = temp_dir(&transfer)?;
    let needed = space_needed(&repo, &images, &opts);
    check_space(tmp.path(), needed, "set TMPDIR to a larger filesystem")?;
    let layout = tmp.path().join("layout");
    let mut export_opts = opts.clone();
    export_opts.tag = Some(TEMP_TAG.to_string());
    // skopeo reads the layout and it is deleted: syncing it would be wasted I/O.
    export_opts.durable = false;
    let layout_for_export = layout.clone();
    let mut report = blocking(move || {
        export::export_to_oci_dir(&repo, &images, &layout_for_export, &export_opts)
    })
    .await?;

    let dest_authfile = match (&transfer.creds_file, &location) {
        (Some(creds), ImageLocation::Docker(r)) => {
            Some(write_authfile(tmp.path(), &registry_host(r), creds)?)
        }
        (Some(_), _) => bail!(UsageError(format!(
            "--creds-file is for docker:// destinations, not {reference}"
        ))),
        (None, _) => transfer.authfile.clone(),
    };
    let copy = CopyOptions {
        // What lands must be exactly what we wrote.
        preserve_digests: !storage && !docker_archive,
        dest_tls_verify: transfer.dest_tls_verify,
        dest_authfile,
        ..CopyOptions::default()
    };
    opts.progress
        .stage(&format!("Copying to {reference} with skopeo"));
    let started = Instant::now();
    let copied = crate::skopeo::copy_from_layout(&layout, TEMP_TAG, &dest, &copy).await;
    opts.progress.stage_finished();
    copied.with_context(|| format!("Copying to {reference}"))?;
    report.transfer_seconds = Some(started.elapsed().as_secs_f64());
    drop(tmp);
    report.destination = reference;
    for img in &mut report.images {
        img.tag = None;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_specifier() {
        let s = StorageOptions {
            driver: Some("vfs".into()),
            root: Some("/r".into()),
            runroot: Some("/rr".into()),
        };
        assert_eq!(
            storage_reference("localhost/bootc", &s).unwrap(),
            "containers-storage:[vfs@/r+/rr]localhost/bootc"
        );
        let root_only = StorageOptions {
            root: Some("/r".into()),
            ..Default::default()
        };
        assert_eq!(
            storage_reference("x", &root_only).unwrap(),
            "containers-storage:[/r]x"
        );
        assert!(storage_reference("[/a]x", &s).is_err());
        assert_eq!(
            storage_reference("x", &Default::default()).unwrap(),
            "containers-storage:x"
        );
        let runroot_only = StorageOptions {
            runroot: Some("/rr".into()),
            ..Default::default()
        };
        assert!(storage_reference("x", &runroot_only).is_err());
    }

    #[test]
    fn registry_hosts() {
        for (r, h) in [
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000"),
            ("quay.io/fedora/fedora:42", "quay.io"),
            ("localhost/x", "localhost"),
            ("fedora", "docker.io"),
            ("library/fedora", "docker.io"),
        ] {
            assert_eq!(registry_host(r), h, "{r}");
        }
    }

    #[test]
    fn authfile_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let creds = t.path().join("creds");
        std::fs::write(&creds, "user:s3cret\n").unwrap();
        let p = write_authfile(t.path(), "h:1", &creds).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(doc["auths"]["h:1"]["auth"], "dXNlcjpzM2NyZXQ=");
        std::fs::write(&creds, "nocolon").unwrap();
        assert!(write_authfile(&t.path().join("x"), "h", &creds).is_err());
    }
}
