//! Where containers-storage keeps its data when it is given no `--storage-*`
//! option: the `storage.conf` files, environment variables and defaults
//! read as containers/storage 1.57 (skopeo 1.18, podman 5) reads them
//! (`types/options.go`, `types/utils.go`, `types/options_linux.go`,
//! `pkg/homedir`), so the graph root we check and write into is the one the
//! `skopeo copy` we start will use.
//!
//! containers/storage 1.45 (Debian bookworm's skopeo 1.9.3) finds the same
//! files and graph root; it took the UID from the effective rather than the
//! real UID, did not require `runroot`/`graphroot` in a file it read, and
//! fell back to other rootless run roots. Neither version reads
//! `storage.conf.d` drop-ins.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The graph root, run root and driver containers-storage uses by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConf {
    /// The `storage.conf` the settings came from (`None`: built-in defaults).
    pub file: Option<PathBuf>,
    /// Whether the per-user (rootless) storage applies.
    pub rootless: bool,
    /// Storage driver, where one is configured (else containers-storage picks one).
    pub driver: Option<String>,
    /// Graph root: where layers and images are kept.
    pub graph_root: PathBuf,
    /// Run root: locks and mount state, lost on reboot.
    pub run_root: PathBuf,
    /// Separate image store (`imagestore`): pulled images' layers go there.
    pub image_store: Option<PathBuf>,
}

/// What the resolution reads from outside: the environment, the user and
/// the system's files. [`StorageEnv::from_process`] for real use; tests
/// build one around a temp dir.
#[derive(Debug, Clone)]
pub struct StorageEnv {
    /// The environment variables.
    vars: HashMap<OsString, OsString>,
    /// The real UID.
    uid: u32,
    /// The effective UID (owner check of the run directory).
    euid: u32,
    /// `/` on a host: `etc/containers`, `usr/share/containers`, `run/user`
    /// and `etc/passwd` are looked up under it.
    system_root: PathBuf,
}

impl StorageEnv {
    /// This process's environment and user, and the host's files.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os().collect(),
            uid: rustix::process::getuid().as_raw(),
            euid: rustix::process::geteuid().as_raw(),
            system_root: PathBuf::from("/"),
        }
    }

    /// A set variable, possibly empty (Go's `os.LookupEnv`).
    fn lookup(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// A set, non-empty variable (Go's `os.Getenv(..) != ""`).
    fn non_empty(&self, name: &str) -> Option<&OsStr> {
        self.lookup(name).filter(|v| !v.is_empty())
    }

    /// `unshare.GetRootlessUID`: `_CONTAINERS_ROOTLESS_UID` (0 when not a
    /// number, as Go's `Atoi` gives), else the real UID.
    fn rootless_uid(&self) -> i64 {
        match self.non_empty("_CONTAINERS_ROOTLESS_UID") {
            Some(v) => v.to_str().and_then(|s| s.parse().ok()).unwrap_or(0),
            None => i64::from(self.uid),
        }
    }

    /// A system path (`/etc/...`) under [`StorageEnv::system_root`].
    fn system_path(&self, path: &str) -> PathBuf {
        self.system_root.join(path.trim_start_matches('/'))
    }

    /// `homedir.Get`: `$HOME`, else the user's passwd entry.
    fn home(&self) -> Option<PathBuf> {
        if let Some(home) = self.non_empty("HOME") {
            return Some(PathBuf::from(home));
        }
        let passwd = std::fs::read(self.system_path("/etc/passwd")).ok()?;
        let uid = self.rootless_uid().to_string();
        passwd.split(|b| *b == b'\n').find_map(|line| {
            let fields: Vec<&[u8]> = line.split(|b| *b == b':').collect();
            (fields.len() >= 6 && fields[2] == uid.as_bytes())
                .then(|| PathBuf::from(OsStr::from_bytes(fields[5])))
        })
    }
}

/// The `[storage]` settings of one `storage.conf`, empty strings as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FileSettings {
    driver: Option<String>,
    graph_root: Option<String>,
    run_root: Option<String>,
    image_store: Option<String>,
    rootless_storage_path: Option<String>,
}

/// The part of `storage.conf` that places the storage.
#[derive(serde::Deserialize, Default)]
struct TomlConfig {
    #[serde(default)]
    storage: TomlStorage,
}

#[derive(serde::Deserialize, Default)]
struct TomlStorage {
    driver: Option<String>,
    graphroot: Option<String>,
    runroot: Option<String>,
    imagestore: Option<String>,
    rootless_storage_path: Option<String>,
}

/// Read `path` as `ReloadConfigurationFile` does (`STORAGE_DRIVER`
/// overrides the driver; `overlay2` means `overlay`); `None` when it does
/// not exist.
fn read_file(path: &Path, env: &StorageEnv) -> Result<Option<FileSettings>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "Reading {}, containers-storage's configuration",
                    path.display()
                )
            })
        }
    };
    let config: TomlConfig = toml::from_str(&text).map_err(|e| {
        // toml's own rendering draws the line over several lines; one is enough.
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            format!(" (line {line}, column {column})")
        });
        anyhow::anyhow!(
            "{} is not a valid storage.conf{at}: {}; skopeo and podman cannot use it either: \
             fix it, point CONTAINERS_STORAGE_CONF at a good one, \
             or name the storage with --storage-root",
            path.display(),
            e.message().trim_end()
        )
    })?;
    let set = |v: Option<String>| v.filter(|s| !s.is_empty());
    let s = config.storage;
    let driver = env
        .non_empty("STORAGE_DRIVER")
        .map(|d| d.to_string_lossy().into_owned())
        .or_else(|| set(s.driver));
    Ok(Some(FileSettings {
        driver: driver.map(|d| if d == "overlay2" { "overlay".into() } else { d }),
        graph_root: set(s.graphroot),
        run_root: set(s.runroot),
        image_store: set(s.imagestore),
        rootless_storage_path: set(s.rootless_storage_path),
    }))
}

/// Go's `os.Expand`: `$NAME`, `${NAME}` and the shell's one-character
/// specials replaced by `lookup`; bad syntax eaten, a lone `$` kept.
fn expand(s: &[u8], lookup: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let special = |c: u8| b"*#$@!?-0123456789".contains(&c);
    let alnum = |c: u8| c == b'_' || c.is_ascii_alphanumeric();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'$' || i + 1 == s.len() {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        // (name, bytes consumed after the `$`)
        let (name, used): (&[u8], usize) = if rest[0] == b'{' {
            if rest.len() > 2 && special(rest[1]) && rest[2] == b'}' {
                (&rest[1..2], 3)
            } else {
                match rest.iter().position(|c| *c == b'}') {
                    Some(1) => (&[], 2),
                    Some(end) => (&rest[1..end], end + 1),
                    None => (&[], 1),
                }
            }
        } else if special(rest[0]) {
            (&rest[..1], 1)
        } else {
            let n = rest.iter().take_while(|c| alnum(**c)).count();
            (&rest[..n], n)
        };
        if !name.is_empty() {
            out.extend(lookup(name));
        } else if used == 0 {
            out.push(b'$');
        }
        i += 1 + used;
    }
    out
}

/// Go's `filepath.Clean`: the shortest lexically equal path.
fn clean(path: &Path) -> PathBuf {
    let mut parts: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match parts.last() {
                Some(Component::Normal(_)) => {
                    parts.pop();
                }
                Some(Component::RootDir) => {}
                _ => parts.push(c),
            },
            _ => parts.push(c),
        }
    }
    if parts.is_empty() {
        return PathBuf::from(".");
    }
    parts.iter().collect()
}

/// `expandEnvPath`: `$UID` replaced by the rootless UID, then the
/// environment expanded, then symlinks resolved (lexically cleaned where
/// the path does not exist).
fn expand_path(path: &str, env: &StorageEnv) -> PathBuf {
    let with_uid = path.replace("$UID", &env.rootless_uid().to_string());
    let expanded = expand(with_uid.as_bytes(), |name| {
        env.vars
            .get(OsStr::from_bytes(name))
            .map_or_else(Vec::new, |v| v.clone().into_vec())
    });
    let expanded = PathBuf::from(OsString::from_vec(expanded));
    std::fs::canonicalize(&expanded).unwrap_or_else(|_| clean(&expanded))
}

/// Does `path` exist (`fileutils.Exists`, following symlinks)? Errors other
/// than "not found" are failures, as there.
fn exists(path: &Path) -> Result<bool> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("Checking {}", path.display())),
    }
}

/// The system-wide settings (`loadDefaultStoreOptions`): the one file
/// read, its settings, and those settings with the built-in roots filled in.
struct SystemSettings {
    file: Option<(PathBuf, FileSettings)>,
    with_defaults: FileSettings,
}

const DEFAULT_GRAPH_ROOT: &str = "/var/lib/containers/storage";
const DEFAULT_RUN_ROOT: &str = "/run/containers/storage";

fn system_settings(env: &StorageEnv) -> Result<SystemSettings> {
    let file = if let Some(path) = env.lookup("CONTAINERS_STORAGE_CONF") {
        // Named explicitly: it must exist.
        let path = PathBuf::from(path);
        match read_file(&path, env)? {
            Some(s) => Some((path, s)),
            None => bail!(
                "CONTAINERS_STORAGE_CONF names {}, which does not exist (skopeo and podman \
                 would fail too): create it, or unset CONTAINERS_STORAGE_CONF",
                path.display()
            ),
        }
    } else {
        // `$XDG_CONFIG_HOME/containers/storage.conf` replaces the /etc file
        // here even for root, when the variable is set and the file exists.
        let mut override_file = env.system_path("/etc/containers/storage.conf");
        if let Some(config_home) = env.lookup("XDG_CONFIG_HOME") {
            let home_file = Path::new(config_home).join("containers/storage.conf");
            if exists(&home_file)? {
                override_file = home_file;
            }
        }
        let path = if exists(&override_file)? {
            override_file
        } else {
            env.system_path("/usr/share/containers/storage.conf")
        };
        read_file(&path, env)?.map(|s| (path, s))
    };
    let mut with_defaults = file.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
    with_defaults
        .graph_root
        .get_or_insert_with(|| DEFAULT_GRAPH_ROOT.into());
    with_defaults
        .run_root
        .get_or_insert_with(|| DEFAULT_RUN_ROOT.into());
    Ok(SystemSettings {
        file,
        with_defaults,
    })
}

/// `homedir.GetRuntimeDir`: `$XDG_RUNTIME_DIR`, else `/run/user/UID` when
/// it is the user's own private directory, else `$TMPDIR/storage-run-UID`.
fn runtime_dir(env: &StorageEnv) -> Result<PathBuf> {
    if let Some(dir) = env.non_empty("XDG_RUNTIME_DIR") {
        return std::fs::canonicalize(dir).with_context(|| {
            format!(
                "Resolving XDG_RUNTIME_DIR={} (containers-storage's rootless run root is under it)",
                Path::new(dir).display()
            )
        });
    }
    let uid = env.rootless_uid();
    let private = |dir: &Path| {
        dir.symlink_metadata()
            .map(|m| m.uid() == env.euid && m.mode() & 0o722 == 0o700)
    };
    let run_user = env.system_path(&format!("/run/user/{uid}"));
    if private(&run_user).unwrap_or(false) {
        return Ok(run_user);
    }
    let tmp = env
        .non_empty("TMPDIR")
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
        .join(format!("storage-run-{uid}"));
    // containers-storage creates it when missing.
    match private(&tmp) {
        Ok(false) => bail!(
            "{} exists and is not writable only by the current user: containers-storage \
             refuses it as its run directory; remove it or set XDG_RUNTIME_DIR",
            tmp.display()
        ),
        _ => Ok(tmp),
    }
}

/// `getRootlessStorageOpts`: the per-user defaults, given the system settings.
fn rootless_defaults(env: &StorageEnv, system: &FileSettings) -> Result<FileSettings> {
    let data_home = match env.non_empty("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d),
        None => env
            .home()
            .context("Finding the rootless containers-storage graph root: set XDG_DATA_HOME or HOME, or give --storage-root")?
            .join(".local/share"),
    };
    let graph_root = match &system.rootless_storage_path {
        Some(p) => expand_path(p, env),
        None => data_home.join("containers/storage"),
    };
    let run_root = runtime_dir(env)?.join("containers");
    let rootless_driver = system
        .driver
        .clone()
        .filter(|d| ["btrfs", "overlay", "overlay2", "vfs"].contains(&d.as_str()));
    let driver = env
        .non_empty("STORAGE_DRIVER")
        .map(|d| d.to_string_lossy().into_owned())
        .or(rootless_driver)
        .map(|d| if d == "overlay2" { "overlay".into() } else { d });
    Ok(FileSettings {
        driver,
        graph_root: Some(graph_root.to_string_lossy().into_owned()),
        run_root: Some(run_root.to_string_lossy().into_owned()),
        // Kept from the system file only when a program sets the file
        // explicitly (SetDefaultConfigFilePath), which skopeo does not.
        image_store: None,
        rootless_storage_path: None,
    })
}

/// The rootless storage: the user's `storage.conf` (its unset roots from
/// the rootless defaults), else the rootless defaults.
fn rootless_settings(
    env: &StorageEnv,
    system: SystemSettings,
) -> Result<(Option<PathBuf>, FileSettings)> {
    let defaults = rootless_defaults(env, &system.with_defaults)?;
    let user_file = if let Some(p) = env.lookup("CONTAINERS_STORAGE_CONF") {
        PathBuf::from(p)
    } else if let Some(config_home) = env.non_empty("XDG_CONFIG_HOME") {
        Path::new(config_home).join("containers/storage.conf")
    } else {
        env.home()
            .context("Finding the user's storage.conf: set HOME or XDG_CONFIG_HOME, or give --storage-root")?
            .join(".config/containers/storage.conf")
    };
    if exists(&user_file)? {
        // containers-storage only warns about a file it cannot read
        // here and goes on with the defaults; so do we.
        let own = read_file(&user_file, env).unwrap_or_else(|e| {
            tracing::warn!("{e:#}; using the default rootless storage");
            None
        });
        let own = own.unwrap_or_default();
        let settings = FileSettings {
            run_root: own.run_root.clone().or(defaults.run_root),
            graph_root: own
                .graph_root
                .clone()
                .or(own.rootless_storage_path.clone())
                .or(defaults.graph_root),
            ..own
        };
        Ok((Some(user_file), settings))
    } else {
        Ok((system.file.map(|(p, _)| p), defaults))
    }
}

impl StorageConf {
    /// Resolve the default storage as `types.DefaultStoreOptions` does.
    pub fn resolve(env: &StorageEnv) -> Result<Self> {
        let system = system_settings(env)?;
        // `usePerUserStorage`: a rootless UID other than 0 (being rootless
        // follows from a non-zero UID).
        let rootless = env.rootless_uid() != 0;
        let (file, settings) = if rootless {
            rootless_settings(env, system)?
        } else {
            // The file that was read is read again on its own: a file
            // without runroot or graphroot gets no defaults.
            match system.file {
                Some((path, settings)) => (Some(path), settings),
                None => (None, system.with_defaults),
            }
        };
        let from = || {
            file.as_ref()
                .map_or_else(|| "the defaults".into(), |f| f.display().to_string())
        };
        let Some(run_root) = settings.run_root else {
            bail!(
                "{} sets no runroot, which containers-storage requires: add one, or give --storage-root and --storage-runroot",
                from()
            );
        };
        let Some(graph_root) = settings.graph_root else {
            bail!(
                "{} sets no graphroot, which containers-storage requires: add one, or give --storage-root",
                from()
            );
        };
        let graph_root = expand_path(&graph_root, env);
        let run_root = expand_path(&run_root, env);
        // Compared unexpanded, as containers-storage does.
        if settings.image_store.as_deref().map(Path::new) == Some(graph_root.as_path()) {
            bail!(
                "{}: imagestore must be unset or differ from graphroot {}",
                from(),
                graph_root.display()
            );
        }
        Ok(Self {
            file,
            rootless,
            driver: settings.driver,
            graph_root,
            run_root,
            image_store: settings.image_store.map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests;
