//! Helpers for the end-to-end tests: fixtures (shared with the library tests),
//! real-tool discovery, and command running that keeps the tool's stderr.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

pub mod stack;

pub use fixtures as fixture;
pub use stack::Stack;

pub use fixture::have_tool;

/// Under `CI=true` a missing tool is a failure, elsewhere a skip.
pub fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Run a command; a non-zero exit is an error carrying its stdout and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// [`run`] with `input` on the command's stdin (fed from a thread, so a
/// command writing as it reads cannot stall on a full pipe).
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("feeding {cmd:?}"))?
        .with_context(|| format!("writing to {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A fake `skopeo` (Python, stdlib only) at `dir/name`, for `SKOPEO=`: a
/// preamble finds the served source (`host`, `prefix`) and the credential
/// (`auth`, `authfile`) cfs-export passes; `body` does the rest.
pub fn python_skopeo(dir: &Path, name: &str, body: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!(
            r#"#!/usr/bin/env python3
import base64, hashlib, http.client, json, os, stat, sys, urllib.request
argv = sys.argv[1:]
src = [a for a in argv if a.startswith("docker://")][0][len("docker://"):]
host, prefix, rest = src.split("/", 2)
authfile = argv[argv.index("--src-authfile") + 1]
auth = json.load(open(authfile))["auths"][host]["auth"]
{body}"#
        ),
    )?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

/// A certificate for 127.0.0.1 and its key, `dir/cert.pem` and `dir/key.pem`.
pub fn self_signed_cert(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert))?;
    Ok((cert, key))
}

/// `copy-to-storage app:1` from `repo` with `SKOPEO=fake` (see
/// [`python_skopeo`]); what the fake wrote to `<fake>.out`.
pub fn copy_with_fake_skopeo(repo: &Path, fake: &Path, dir: &Path) -> Result<String> {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    run(Command::new(fixture::bin())
        .env("SKOPEO", fake)
        .arg("--repo")
        .arg(repo)
        .args(["copy-to-storage", "app:1", "--tmpdir"])
        .arg(&tmp))?;
    let mut out = fake.as_os_str().to_owned();
    out.push(".out");
    std::fs::read_to_string(&out).context("the fake skopeo wrote nothing")
}

/// `skopeo copy --dest-compress` of `plain:tag` into `out:tag`: layers
/// compressed as podman and buildah push them (klauspost pgzip).
pub fn skopeo_pgzip(plain: &Path, out: &Path, tag: &str) -> Result<()> {
    run(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
        ])
        .arg(format!("oci:{}:{tag}", plain.display()))
        .arg(format!("oci:{}:{tag}", out.display())))?;
    Ok(())
}

/// Text like a package's docs: `lines` numbered lines of words.
pub fn doc_words(lines: u32) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| {
            format!("line {} of /usr/share/doc/pkg{} ", i * 7919 % 1000, i % 97).into_bytes()
        })
        .collect()
}

/// Run `cfs-export --repo REPO ARGS…`, requiring success.
pub fn cfs(repo: &Path, args: &[&str]) -> Result<String> {
    cfs_with(repo, args, &[])
}

/// [`cfs`] with extra environment variables.
pub fn cfs_with(repo: &Path, args: &[&str], env: &[(&str, &Path)]) -> Result<String> {
    let bin = fixture::bin();
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build` first (make test does)",
            bin.display()
        );
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--repo").arg(repo).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd)?;
    Ok(String::from_utf8(out.stdout)?)
}

/// A runnable image: static busybox with a few applets, plus a layer with a
/// file whose content the tests read back through `podman run`.
pub fn busybox_layers() -> Result<Vec<fixture::LayerSpec>> {
    use fixture::{Kind, TarBuilder};
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (Debian package busybox-static)")?;
    let base = TarBuilder::new()
        .dir("bin")
        .file_with_mode("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .symlink("bin/cat", "busybox")
        .dir("etc")
        .file("etc/os-release", b"ID=cfs-export-test\n")
        .finish(true);
    let top = TarBuilder::new()
        .dir("etc")
        .file("etc/motd", b"exported bit-exact by cfs-export\n")
        .dir("srv")
        .file("srv/blob", &fixture::noise(3 << 20, 9))
        .finish(false);
    Ok(vec![(base, Kind::Gzip), (top, Kind::Zstd)])
}

/// A private containers-storage (vfs driver) under a temp dir.
pub struct Storage {
    /// Graph root.
    pub root: std::path::PathBuf,
    /// Run root.
    pub runroot: std::path::PathBuf,
}

impl Storage {
    /// Storage under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            root: dir.join("storage/root"),
            runroot: dir.join("storage/run"),
        }
    }

    /// The `[vfs@root+runroot]` specifier.
    pub fn reference(&self, name: &str) -> String {
        format!(
            "containers-storage:[vfs@{}+{}]{name}",
            self.root.display(),
            self.runroot.display()
        )
    }

    /// The cfs-export flags naming this storage.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--storage-driver".into(),
            "vfs".into(),
            "--storage-root".into(),
            self.root.display().to_string(),
            "--storage-runroot".into(),
            self.runroot.display().to_string(),
        ]
    }

    /// `podman run` a command in `image` (no network, runc, modest limits); its stdout.
    pub fn podman_run(&self, image: &str, argv: &[&str]) -> Result<String> {
        let mut args = vec![
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            image,
        ];
        args.extend_from_slice(argv);
        self.podman(&args)
    }

    /// Run podman against this storage.
    pub fn podman(&self, args: &[&str]) -> Result<String> {
        let out = run(&mut self.podman_command(args))?;
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Run podman against this storage with extra environment variables
    /// (`CONTAINERS_REGISTRIES_CONF`, …).
    pub fn podman_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Result<String> {
        let mut cmd = self.podman_command(args);
        cmd.envs(env.iter().copied());
        Ok(String::from_utf8(run(&mut cmd)?.stdout)?)
    }

    /// Does this storage hold an image named `name`?
    pub fn has_image(&self, name: &str) -> Result<bool> {
        Ok(self
            .podman_command(&["image", "exists", name])
            .status()?
            .success())
    }

    fn podman_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .args(args);
        cmd
    }
}

/// A `docker-registry` on 127.0.0.1 with TLS and htpasswd auth, stopped on drop.
pub struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its log (access log included).
    pub log: std::path::PathBuf,
}

impl Registry {
    /// Start one under `dir` with a single user.
    pub fn start(dir: &Path, user: &str, password: &str) -> Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let (cert, key) = self_signed_cert(dir)?;
        let htpasswd = dir.join("htpasswd");
        run(Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&htpasswd)
            .args([user, password]))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: cfs-export-test\n    path: {}\n",
                dir.join("data").display(),
                cert.display(),
                key.display(),
                htpasswd.display()
            ),
        )?;
        let log = dir.join("registry.log");
        let logf = std::fs::File::create(&log)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("starting docker-registry")?;
        let reg = Registry { child, addr, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            if std::time::Instant::now() > deadline {
                bail!(
                    "registry did not start: {}",
                    std::fs::read_to_string(&reg.log).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(reg)
    }

    /// Log lines so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bootc host as bootc ≥ 1.16 makes it: images pulled by composefs-oci's
/// own `pull` (bootc's direct-pull path, through skopeo's image proxy) into a
/// SHA-512 repository at `sysroot/composefs`, tagged only
/// `localhost/bootc-<manifest digest>`, with three deployments of one name.
pub struct BootcHost {
    /// The generated tree.
    pub tree: fixture::HostTree,
    /// The images pulled: rollback, booted, staged.
    pub images: Vec<fixture::Fixture>,
    /// Deployment IDs in the same order.
    pub ids: Vec<String>,
}

impl BootcHost {
    /// The image name of every deployment.
    pub const NAME: &'static str = "quay.io/example/os:latest";

    /// Pull `layouts[i]` (each tagged `os`) and deploy them under `dir`.
    pub fn new(dir: &Path, layouts: &[fixture::Fixture]) -> Result<Self> {
        use composefs::fsverity::{Algorithm, Sha512HashValue};
        use composefs::repository::{Repository, RepositoryConfig};
        let tree = fixture::HostTree::new(dir);
        let config = RepositoryConfig::new(Algorithm::for_hash::<Sha512HashValue>()).set_insecure();
        let (repo, _) =
            Repository::<Sha512HashValue>::init_path(rustix::fs::CWD, tree.repo(), config)?;
        let repo = std::sync::Arc::new(repo);
        let rt = tokio::runtime::Runtime::new()?;
        let mut manifests = Vec::new();
        for f in layouts {
            let source = format!("oci:{}:{}", f.layout.display(), f.tag);
            let pulled = rt
                .block_on(composefs_oci::pull(
                    &repo,
                    &source,
                    None,
                    Default::default(),
                ))
                .with_context(|| format!("composefs_oci::pull {source}"))?;
            let digest = pulled.manifest_digest.to_string();
            if digest != f.manifest_digest {
                bail!(
                    "pull stored manifest {digest}, the layout has {}",
                    f.manifest_digest
                );
            }
            composefs_oci::tag_image(
                &repo,
                &pulled.manifest_digest,
                &format!("localhost/bootc-{digest}"),
            )?;
            manifests.push(digest);
        }
        drop(repo);
        let ids = tree.upgraded(Self::NAME, &manifests);
        Ok(Self {
            tree,
            images: layouts.to_vec(),
            ids,
        })
    }

    /// Run `cfs-export --sysroot SYSROOT ARGS…` on this host, requiring success; returns (stdout, stderr).
    pub fn cfs(&self, sysroot: &Path, args: &[&str]) -> Result<(String, String)> {
        let out = run(&mut self.tree.command(sysroot, args))?;
        Ok((
            String::from_utf8(out.stdout)?,
            String::from_utf8(out.stderr)?,
        ))
    }
}
