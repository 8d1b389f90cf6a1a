//! What the skopeo hand-offs share: the options passed through to skopeo,
//! containers-storage locations, private auth files and the free-space check.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;

use crate::deliver::storage_conf::{StorageConf, StorageEnv};
use crate::deliver::transport::ImageLocation;
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
    /// Where temporary data goes: when streaming into containers-storage,
    /// skopeo's own copies of the blobs (default: the storage's `tmp/`);
    /// when streaming elsewhere, our private credential and policy (default:
    /// `$XDG_RUNTIME_DIR`, else `/dev/shm`); through a layout, the layout
    /// (default `$TMPDIR`, else `/var/tmp`).
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

/// The graph root a containers-storage destination uses: `--storage-root`,
/// the `[driver@ROOT+runroot]` in the reference, else the one
/// containers-storage finds itself (`storage.conf`, environment, user; see
/// [`crate::deliver::storage_conf`]), as the skopeo we start will.
pub fn graph_root(reference: &str, storage: &StorageOptions) -> Result<PathBuf> {
    if let Some(root) = &storage.root {
        return Ok(root.clone());
    }
    if let Some(spec) = reference
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(spec, _)| spec)
    {
        let root = spec.split_once('@').map_or(spec, |(_, r)| r);
        let root = root.split_once('+').map_or(root, |(r, _)| r);
        return Ok(PathBuf::from(root));
    }
    let conf = StorageConf::resolve(&StorageEnv::from_process())
        .context("Finding containers-storage's graph root as skopeo will")?;
    tracing::debug!(
        "containers-storage from {}: graph root {}, run root {}, driver {}",
        conf.file
            .as_ref()
            .map_or_else(|| "built-in defaults".into(), |f| f.display().to_string()),
        conf.graph_root.display(),
        conf.run_root.display(),
        conf.driver
            .as_deref()
            .unwrap_or("(picked by containers-storage)")
    );
    Ok(conf.graph_root)
}

/// Where containers-storage keeps image layers apart from the graph root
/// (storage.conf's `imagestore`), when no `--storage-*` option or reference
/// specifier names the store.
pub fn image_store(reference: &str, storage: &StorageOptions) -> Option<PathBuf> {
    if storage.root.is_some() || reference.starts_with('[') {
        return None;
    }
    StorageConf::resolve(&StorageEnv::from_process())
        .ok()?
        .image_store
}

/// The auth file we write into a private directory for skopeo.
pub(crate) const AUTH_FILE: &str = "auth.json";
/// The auth file we write for the destination registry (from `--creds-file`).
pub(crate) const DEST_AUTH_FILE: &str = "dest-auth.json";
/// The signature policy we write beside it.
pub(crate) const POLICY_FILE: &str = "policy.json";

/// A `user:password` credentials file's content, checked.
pub(crate) fn read_creds_file(creds_file: &Path) -> Result<String> {
    let creds = std::fs::read_to_string(creds_file)
        .with_context(|| format!("Reading credentials from {}", creds_file.display()))?;
    let creds = creds.trim_end_matches(['\n', '\r']);
    if !creds.contains(':') || creds.starts_with(':') {
        bail!(
            "{} must hold user:password on one line",
            creds_file.display()
        );
    }
    Ok(creds.to_string())
}

/// Write a 0600 `auth.json` into the private `dir` giving `user:password` for `host`.
pub(crate) fn write_authfile(dir: &Path, host: &str, user_password: &str) -> Result<PathBuf> {
    write_authfile_as(&dir.join(AUTH_FILE), host, user_password)
}

/// Write a 0600 auth file at `path` giving `user:password` for `host`.
pub(crate) fn write_authfile_as(path: &Path, host: &str, user_password: &str) -> Result<PathBuf> {
    let auth = base64::engine::general_purpose::STANDARD.encode(user_password);
    let doc = serde_json::json!({ "auths": { host: { "auth": auth } } });
    write_private(path, doc.to_string().as_bytes())
}

/// Write a 0600 `policy.json` into the private `dir` that accepts only
/// `scope` of `transport` (our own source) and rejects everything else.
///
/// skopeo evaluates the policy for the source alone, so the destination is
/// untouched; our source needs no signature: it is proven by digest.
pub(crate) fn write_source_policy(dir: &Path, transport: &str, scope: &str) -> Result<PathBuf> {
    let doc = serde_json::json!({
        "default": [{ "type": "reject" }],
        "transports": { transport: { scope: [{ "type": "insecureAcceptAnything" }] } },
    });
    write_private(&dir.join(POLICY_FILE), doc.to_string().as_bytes())
}

/// Create `path` (which must not exist) with mode 0600 holding `bytes`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(path.to_path_buf())
}

/// Fail when `dir` has less than `needed` bytes free, naming both numbers.
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
        let p = write_authfile(t.path(), "h:1", &read_creds_file(&creds).unwrap()).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!(doc["auths"]["h:1"]["auth"], "dXNlcjpzM2NyZXQ=");
        std::fs::write(&creds, "nocolon").unwrap();
        assert!(read_creds_file(&creds).is_err());
        assert!(
            write_authfile(t.path(), "h:1", "a:b").is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn graph_roots() {
        let none = StorageOptions::default();
        let root = StorageOptions {
            root: Some("/r".into()),
            ..Default::default()
        };
        assert_eq!(graph_root("x", &root).unwrap(), Path::new("/r"));
        assert_eq!(
            graph_root("[vfs@/a/b+/run/c]x", &none).unwrap(),
            Path::new("/a/b")
        );
        assert_eq!(graph_root("[/a]x", &none).unwrap(), Path::new("/a"));
    }
}
