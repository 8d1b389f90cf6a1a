//! Issue 20: `cfs-export serve` as a mirror: podman through
//! `registries.conf`, containerd through `hosts.toml`, and composefs-oci
//! filling a second repository from it (the fleet case).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration::{cfs_with, run, Storage};

use super::serve::{os_tars, same_path_other_registry, Image, Serve, SERVED, TAGGED};

/// podman pulls `quay.io/demo/os:1` through a `registries.conf` mirror that
/// is our server: podman records the image ID and the original manifest
/// digest, and the access log shows the mirror answered.
pub fn podman_pulls_through_a_mirror() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let conf = t.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = []\n\n\
             [[registry]]\nlocation = \"quay.io/demo\"\n\n\
             [[registry.mirror]]\nlocation = \"{}/demo\"\ninsecure = true\n",
            serve.addr
        ),
    )?;
    let storage = Storage::new(t.path());
    let env = [("CONTAINERS_REGISTRIES_CONF", conf.as_path())];
    storage.podman_with_env(&["pull", "-q", TAGGED], &env)?;
    let got = storage.podman_with_env(
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Digest}}",
            TAGGED,
        ],
        &env,
    )?;
    let want = format!(
        "{} {}",
        img.config_digest.trim_start_matches("sha256:"),
        img.manifest_digest
    );
    ensure!(got.trim() == want, "podman has {got:?}, want {want:?}");
    let log = serve.log_text();
    for request in [
        format!("GET /v2/{SERVED}/manifests/1 200"),
        format!("GET /v2/{SERVED}/blobs/{} 200", img.blobs[0].0),
    ] {
        ensure!(
            log.contains(&request),
            "no {request:?} in the access log:\n{log}"
        );
    }
    eprintln!("podman image inspect via the mirror: {}", got.trim());
    Ok(())
}

/// buildah pulls from serve into its own storage: the image ID and the
/// original manifest digest, as buildah records them.
pub fn buildah_pulls_the_original() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let storage = Storage::new(t.path());
    let buildah = |args: &[&str]| -> Result<String> {
        let out = run(Command::new("buildah")
            .arg("--root")
            .arg(&storage.root)
            .arg("--runroot")
            .arg(&storage.runroot)
            .args(["--storage-driver", "vfs"])
            .args(args))?;
        Ok(String::from_utf8(out.stdout)?)
    };
    let src = serve.docker(&format!("{SERVED}:1"));
    buildah(&["pull", "-q", "--tls-verify=false", &src])?;
    let got = buildah(&[
        "inspect",
        "--type",
        "image",
        "--format",
        "{{.FromImageID}} {{.FromImageDigest}}",
        &format!("{}/{SERVED}:1", serve.addr),
    ])?;
    let want = format!(
        "{} {}",
        img.config_digest.trim_start_matches("sha256:"),
        img.manifest_digest
    );
    ensure!(got.trim() == want, "buildah has {got:?}, want {want:?}");
    Ok(())
}

/// A fresh insecure SHA-512 repository, as bootc makes them.
fn fresh_repo(
    path: &Path,
) -> Result<Arc<composefs::repository::Repository<composefs::fsverity::Sha512HashValue>>> {
    use composefs::fsverity::{Algorithm, Sha512HashValue};
    use composefs::repository::{Repository, RepositoryConfig};
    let config = RepositoryConfig::new(Algorithm::for_hash::<Sha512HashValue>()).set_insecure();
    let (repo, _) = Repository::<Sha512HashValue>::init_path(rustix::fs::CWD, path, config)?;
    Ok(Arc::new(repo))
}

/// The fleet case: host B's composefs-oci (through skopeo's image proxy)
/// pulls from host A's `serve` into a second repository: the same config and
/// diff_ids, and B exports the original manifest digest again.
pub fn composefs_oci_pulls_from_serve() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let second = t.path().join("host-b");
    let repo = fresh_repo(&second)?;
    let source = serve.docker(&format!("{SERVED}:1"));
    let mut proxy = containers_image_proxy::ImageProxyConfig::default();
    proxy.insecure_skip_tls_verification = Some(true);
    proxy.auth_anonymous = true;
    let opts = composefs_oci::PullOptions {
        img_proxy_config: Some(proxy),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    let pulled = rt
        .block_on(composefs_oci::pull(&repo, &source, None, opts))
        .with_context(|| format!("composefs_oci::pull {source}"))?;
    ensure!(
        pulled.manifest_digest.to_string() == img.manifest_digest,
        "pulled manifest {}, served {}",
        pulled.manifest_digest,
        img.manifest_digest
    );
    ensure!(
        pulled.config_digest.to_string() == img.config_digest,
        "pulled config {}",
        pulled.config_digest
    );
    let opened = composefs_oci::open_config(&repo, &pulled.config_digest, None)?;
    let ids: Vec<&String> = opened.config.rootfs().diff_ids().iter().collect();
    ensure!(ids.iter().copied().eq(&img.diff_ids), "diff_ids {ids:?}");
    composefs_oci::tag_image(&repo, &pulled.manifest_digest, TAGGED)?;
    drop(repo);
    ensure!(
        serve
            .log_text()
            .contains(&format!("GET /v2/{SERVED}/manifests/1 200")),
        "no manifest request in the access log:\n{}",
        serve.log_text()
    );
    drop(serve);

    // Host B, with a cache of its own, exports the original manifest again.
    let out = t.path().join("from-b");
    cfs_with(
        &second,
        &["export", TAGGED, "--to", &format!("oci:{}", out.display())],
        &[("XDG_CACHE_HOME", &t.path().join("cache-b"))],
    )?;
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("index.json"))?)?;
    let digest = index["manifests"][0]["digest"].as_str().context("index")?;
    ensure!(
        digest == img.manifest_digest,
        "host B exported manifest {digest}, the original is {}",
        img.manifest_digest
    );
    Ok(())
}

/// A private containerd (its own root, state and socket; no CRI), killed by
/// its PID when dropped.
struct Containerd {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let sock = dir.join("c.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = sock.display(),
            ),
        )?;
        let log = dir.join("containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting containerd")?;
        let c = Containerd { child, sock, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.ctr(&["version"]).is_err() {
            ensure!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                std::fs::read_to_string(&c.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    /// `ctr -a SOCK -n cfs-export-test ARGS…`, its stdout.
    fn ctr(&self, args: &[&str]) -> Result<String> {
        let out = run(Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(["-n", "cfs-export-test"])
            .args(args))?;
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// containerd's `ctr images pull` through `hosts.toml` mirrors that are our
/// server: `?ns=` picks the image of each registry among two served as
/// `demo/os:1`; the original manifest digest and config are kept.
pub fn containerd_pulls_through_hosts_toml() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED])?;
    let other = same_path_other_registry(&img, "other.example")?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let hosts = t.path().join("hosts");
    for registry in ["quay.io", "other.example"] {
        std::fs::create_dir_all(hosts.join(registry))?;
        std::fs::write(
            hosts.join(registry).join("hosts.toml"),
            format!(
                "server = \"https://{registry}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                serve.addr
            ),
        )?;
    }
    let containerd = Containerd::start(&t.path().join("containerd"))?;
    let hosts_dir = hosts.display().to_string();
    for (reference, manifest) in [
        (TAGGED.to_string(), &img.manifest_digest),
        ("other.example/demo/os:1".to_string(), &other),
    ] {
        containerd.ctr(&[
            "images",
            "pull",
            "--hosts-dir",
            &hosts_dir,
            "--snapshotter",
            "native",
            &reference,
        ])?;
        let listed = containerd.ctr(&["images", "ls"])?;
        let digest = listed
            .lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(reference.as_str())).then(|| cols.nth(1))?
            })
            .with_context(|| format!("{reference} not in ctr images ls:\n{listed}"))?;
        ensure!(
            digest == manifest,
            "containerd pulled {reference} as {digest}, want {manifest}:\n{listed}"
        );
        if reference == TAGGED {
            let raw = containerd.ctr(&["content", "get", digest])?;
            let m: serde_json::Value = serde_json::from_str(&raw)?;
            ensure!(
                m["config"]["digest"] == img.config_digest.as_str(),
                "config {}",
                m["config"]["digest"]
            );
            eprintln!(
                "ctr images ls: {}",
                listed.lines().find(|l| l.starts_with(TAGGED)).unwrap_or("")
            );
        }
    }
    let log = serve.log_text();
    ensure!(
        log.contains(&format!("/v2/{SERVED}/manifests/1 200")),
        "no mirror request in the access log:\n{log}"
    );
    Ok(())
}
