//! Issue 20: `cfs-export serve`, the repository as a read-only registry,
//! pulled by real clients. Here the harness (a server started on a free
//! port and killed by its PID on drop, images built in code), skopeo (by
//! tag, by digest, by the registry-qualified name, both compressions),
//! htpasswd users and the refusals, and four parallel pulls; the HTTP
//! details and SIGTERM in `serve_http`, the mirrors (podman, containerd)
//! and the fleet case in `serve_mirrors`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::{cfs_with, run};

/// The name the images are tagged with in the repository, and the names it is served as.
pub(crate) const TAGGED: &str = "quay.io/demo/os:1";
pub(crate) const SERVED: &str = "demo/os";
pub(crate) const QUALIFIED: &str = "quay.io/demo/os";

/// A running `cfs-export serve`, killed (by its PID) when dropped, so a
/// failing test leaves no server behind.
pub(crate) struct Serve {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    /// The first stdout line.
    pub(crate) first: String,
    /// The stdout lines after the first, as they come.
    lines: mpsc::Receiver<String>,
    /// stderr: messages and the access log.
    pub(crate) log: PathBuf,
}

impl Serve {
    /// `cfs-export --repo REPO serve --listen 127.0.0.1:0 ARGS…` with the
    /// image's cache and the access log on; waits for the address line.
    pub(crate) fn start(img: &Image, args: &[&str]) -> Result<Self> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let log = img
            .dir
            .join(format!("serve-{}.log", N.fetch_add(1, Ordering::Relaxed)));
        let mut child = Command::new(fixture::bin())
            .arg("--repo")
            .arg(&img.repo)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("XDG_CACHE_HOME", &img.cache)
            .env("RUST_LOG", "warn,access=info,blocks=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting cfs-export serve")?;
        let stdout = child.stdout.take().context("serve's stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child,
            addr: String::new(),
            first: String::new(),
            lines,
            log,
        };
        let Ok(first) = serve.lines.recv_timeout(Duration::from_secs(120)) else {
            bail!(
                "serve printed no address; its stderr:\n{}",
                serve.log_text()
            );
        };
        let url = if first.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&first)?;
            v["listening"].as_str().context("listening")?.to_string()
        } else {
            first
                .strip_prefix("listening on ")
                .with_context(|| format!("first line {first:?}"))?
                .to_string()
        };
        serve.addr = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .with_context(|| format!("address {url:?}"))?
            .to_string();
        serve.first = first;
        Ok(serve)
    }

    /// The stdout lines after the first that have come within `wait`.
    pub(crate) fn more_lines(&self, n: usize, wait: Duration) -> Vec<String> {
        (0..n)
            .map_while(|_| self.lines.recv_timeout(wait).ok())
            .collect()
    }

    /// The server's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server is still running (not exited, not a zombie).
    pub(crate) fn child_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    }

    /// `docker://ADDR/NAME`.
    pub(crate) fn docker(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` (`TERM`, `INT`) and wait up to `limit` for the exit.
    pub(crate) fn signal_and_wait(
        &mut self,
        signal: &str,
        limit: Duration,
    ) -> Result<(ExitStatus, Duration)> {
        let start = Instant::now();
        run(Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]))?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, start.elapsed()));
            }
            ensure!(
                start.elapsed() < limit,
                "serve still running {limit:?} after SIG{signal}; stderr:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Child::kill signals this PID only, and not after it was reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image in a repository of its own, tagged [`TAGGED`].
pub(crate) struct Image {
    /// The test's temp dir (logs go here).
    pub(crate) dir: PathBuf,
    pub(crate) repo: PathBuf,
    /// `XDG_CACHE_HOME` of every cfs-export run on this repo.
    pub(crate) cache: PathBuf,
    /// The digest and bytes of the manifest that was imported.
    pub(crate) manifest_digest: String,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) config_digest: String,
    pub(crate) diff_ids: Vec<String>,
    /// (digest, bytes) of each imported layer blob.
    pub(crate) blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// `tars` as pgzip layers written by skopeo's `--dest-compress` (which
    /// cfs-export reproduces, so the original manifest is served), imported
    /// under `tags` (the first is [`TAGGED`]).
    pub(crate) fn reproducible(dir: &Path, tars: &[Vec<u8>], tags: &[&str]) -> Result<Self> {
        let plain = dir.join("plain");
        let layers: Vec<_> = tars.iter().map(|b| (b.clone(), Kind::Tar)).collect();
        let f = fixture::write_layout(&plain, "os", "amd64", &layers);
        let pg = dir.join("pgzip");
        integration::skopeo_pgzip(&plain, &pg, "os")?;
        let (manifest_digest, manifest) = fixture::manifest_for(&pg, "os");
        let manifest_bytes = fixture::read_blob(&pg, &manifest_digest);
        let blobs = manifest["layers"]
            .as_array()
            .context("layers")?
            .iter()
            .map(|l| {
                let d = l["digest"].as_str().context("digest")?.to_string();
                Ok((d.clone(), fixture::read_blob(&pg, &d)))
            })
            .collect::<Result<_>>()?;
        Self::import(dir, &pg, tags, manifest_digest, manifest_bytes, &f, blobs)
    }

    /// `tars` as uncompressed layers, imported under `tags`.
    pub(crate) fn plain(dir: &Path, tars: &[Vec<u8>], tags: &[&str]) -> Result<Self> {
        let plain = dir.join("plain");
        let layers: Vec<_> = tars.iter().map(|b| (b.clone(), Kind::Tar)).collect();
        let f = fixture::write_layout(&plain, "os", "amd64", &layers);
        let blobs = f.blobs.clone();
        Self::import(
            dir,
            &plain,
            tags,
            f.manifest_digest.clone(),
            f.manifest_bytes.clone(),
            &f,
            blobs,
        )
    }

    pub(crate) fn import(
        dir: &Path,
        layout: &Path,
        tags: &[&str],
        manifest_digest: String,
        manifest_bytes: Vec<u8>,
        f: &fixture::Fixture,
        blobs: Vec<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let img = Image {
            dir: dir.to_path_buf(),
            repo: dir.join("repo"),
            cache: dir.join("cache"),
            manifest_digest,
            manifest_bytes,
            config_digest: f.config_digest.clone(),
            diff_ids: f.diff_ids.clone(),
            blobs,
        };
        for tag in tags {
            img.cfs(&[
                "import",
                &format!("oci:{}:os", layout.display()),
                "--tag",
                tag,
            ])?;
        }
        Ok(img)
    }

    /// cfs-export on this repo with this image's cache.
    pub(crate) fn cfs(&self, args: &[&str]) -> Result<String> {
        cfs_with(&self.repo, args, &[("XDG_CACHE_HOME", &self.cache)])
    }
}

/// A small OS-like tree (composefs-oci wants `/usr`): text that compresses
/// and noise that does not, over 1 MiB so pgzip's blocks are crossed.
pub(crate) fn os_tars() -> Vec<Vec<u8>> {
    let words = integration::doc_words(60_000);
    vec![
        TarBuilder::new()
            .dir("usr")
            .file("usr/words", &words)
            .file("usr/blob", &fixture::noise(1 << 20, 31))
            .finish(true),
        TarBuilder::new()
            .dir("etc")
            .file("etc/os-release", b"ID=cfs-export-serve\n")
            .finish(false),
    ]
}

pub(crate) fn skopeo(args: &[&str]) -> Result<Vec<u8>> {
    Ok(run(Command::new("skopeo").args(args))?.stdout)
}

/// (manifest digest, manifest) of the image `oci:DIR:os`, its config digest
/// checked against `config_digest` and each layer against its digest.
pub(crate) fn copied_layout(
    layout: &Path,
    config_digest: &str,
) -> Result<(String, serde_json::Value)> {
    let (digest, manifest) = fixture::manifest_for(layout, "os");
    ensure!(
        sha256(&fixture::read_blob(layout, &digest)) == digest,
        "manifest blob {digest} does not hash to its name"
    );
    ensure!(
        manifest["config"]["digest"] == config_digest,
        "config {} copied, the image has {config_digest}",
        manifest["config"]["digest"]
    );
    for l in manifest["layers"].as_array().context("layers")? {
        let d = l["digest"].as_str().context("digest")?;
        ensure!(sha256(&fixture::read_blob(layout, d)) == d, "blob {d}");
    }
    Ok((digest, manifest))
}

/// skopeo inspect and copy, by tag, by digest and by the registry-qualified
/// name: the original manifest, bytes and digest; with `--compression none`
/// a new manifest whose layers are the diff_ids, the config unchanged.
pub fn skopeo_pulls_the_original_manifest() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    ensure!(
        serve.first == format!("listening on http://{}", serve.addr),
        "first line {:?}",
        serve.first
    );
    let listed = serve.more_lines(1, Duration::from_secs(5));
    let want = format!("  {TAGGED} manifest {} (original)", img.manifest_digest);
    ensure!(
        listed == [want.clone()],
        "image lines {listed:?}, want {want:?}"
    );

    let tls = "--tls-verify=false";
    for name in [
        format!("{SERVED}:1"),
        format!("{QUALIFIED}:1"),
        format!("{SERVED}@{}", img.manifest_digest),
        format!("{QUALIFIED}@{}", img.manifest_digest),
    ] {
        let raw = skopeo(&["inspect", "--raw", tls, &serve.docker(&name)])?;
        ensure!(
            raw == img.manifest_bytes,
            "{name}: served manifest {} is not the original {}",
            sha256(&raw),
            img.manifest_digest
        );
    }
    let config = skopeo(&[
        "inspect",
        "--raw",
        "--config",
        tls,
        &serve.docker(&format!("{SERVED}:1")),
    ])?;
    ensure!(
        sha256(&config) == img.config_digest,
        "config digest changed"
    );

    for (i, name) in [
        format!("{SERVED}:1"),
        format!("{QUALIFIED}@{}", img.manifest_digest),
    ]
    .into_iter()
    .enumerate()
    {
        let out = t.path().join(format!("copy-{i}"));
        skopeo(&[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &serve.docker(&name),
            &format!("oci:{}:os", out.display()),
        ])?;
        let (digest, _) = copied_layout(&out, &img.config_digest)?;
        ensure!(
            digest == img.manifest_digest,
            "{name}: copied manifest {digest}, original {}",
            img.manifest_digest
        );
        ensure!(
            super::diff_ids_of_layout(&out, "os")? == img.diff_ids,
            "{name}: diff_ids"
        );
    }
    // Unknown tags and digests of other images are not served.
    for name in [
        format!("{SERVED}:2"),
        format!("{SERVED}@sha256:{}", "0".repeat(64)),
    ] {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", tls, &serve.docker(&name)])
            .output()?;
        ensure!(!out.status.success(), "{name} was served");
    }
    drop(serve);

    // Uncompressed: a new manifest (as announced), the config kept, each layer its diff_id.
    let serve = Serve::start(&img, &["--anonymous", "--compression", "none", "--json"])?;
    let announced: serde_json::Value = serde_json::from_str(&serve.first)?;
    let entry = &announced["images"][0];
    ensure!(
        entry["image"] == TAGGED && entry["original_manifest"] == false,
        "announced {announced}"
    );
    let new_digest = entry["manifest_digest"]
        .as_str()
        .context("manifest_digest")?;
    ensure!(
        new_digest != img.manifest_digest,
        "none served the original manifest"
    );
    // dir: keeps layers as served (oci: would compress them).
    let out = t.path().join("copy-none");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &serve.docker(&format!("{QUALIFIED}:1")),
        &format!("dir:{}", out.display()),
    ])?;
    let raw = std::fs::read(out.join("manifest.json"))?;
    ensure!(
        sha256(&raw) == new_digest,
        "copied manifest {}, announced {new_digest}",
        sha256(&raw)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&raw)?;
    ensure!(
        manifest["config"]["digest"] == img.config_digest.as_str(),
        "config {}",
        manifest["config"]["digest"]
    );
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .context("layers")?
        .iter()
        .map(|l| {
            ensure!(
                l["mediaType"] == Kind::Tar.media_type(),
                "layer media type {}",
                l["mediaType"]
            );
            let d = l["digest"].as_str().context("digest")?;
            let tar = std::fs::read(out.join(d.trim_start_matches("sha256:")))?;
            ensure!(sha256(&tar) == d, "layer {d} does not hash to its digest");
            Ok(d)
        })
        .collect::<Result<_>>()?;
    ensure!(
        layers == img.diff_ids,
        "layers {layers:?}, diff_ids {:?}",
        img.diff_ids
    );
    Ok(())
}

/// `--htpasswd`: the right password is answered, a wrong one and none get
/// 401; without `--htpasswd` or `--anonymous`, or on a non-loopback address
/// without `--insecure-http`, serve refuses to start (exit 2).
pub fn htpasswd_users_and_refusals() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars()[1..], &[TAGGED])?;
    let htpasswd = t.path().join("htpasswd");
    run(Command::new("htpasswd")
        .arg("-Bbc")
        .arg(&htpasswd)
        .args(["reader", "Right-pass"]))?;
    let serve = Serve::start(&img, &["--htpasswd", &htpasswd.display().to_string()])?;
    let src = serve.docker(&format!("{SERVED}:1"));
    let inspect = |creds: Option<&str>| {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--raw", "--tls-verify=false"]);
        match creds {
            Some(c) => cmd.args(["--creds", c]),
            None => cmd.arg("--no-creds"),
        };
        cmd.arg(&src).output()
    };
    let ok = inspect(Some("reader:Right-pass"))?;
    ensure!(
        ok.status.success() && ok.stdout == img.manifest_bytes,
        "right password: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for creds in [Some("reader:Wrong-pass"), Some("nobody:Right-pass"), None] {
        let out = inspect(creds)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{creds:?} was answered");
        ensure!(
            err.contains("401") || err.contains("unauthorized"),
            "{creds:?}: {err}"
        );
        if creds == Some("reader:Wrong-pass") {
            eprintln!("wrong password: {}", err.trim());
        }
    }
    // Each of the three was refused by the server (not given up by skopeo).
    let log = serve.log_text();
    let refused = log
        .matches(&format!("GET /v2/{SERVED}/manifests/1 401"))
        .count();
    ensure!(refused >= 3, "{refused} manifest requests refused:\n{log}");
    drop(serve);

    for (args, words) in [
        (
            &["--listen", "127.0.0.1:0"][..],
            &["--htpasswd", "--anonymous"][..],
        ),
        (
            &["--listen", "0.0.0.0:0", "--anonymous"][..],
            &["--insecure-http", "0.0.0.0:0"][..],
        ),
        (
            &["--listen", "127.0.0.1:0", "--anonymous", "--htpasswd", "x"][..],
            &["--htpasswd", "--anonymous"][..],
        ),
    ] {
        let out = Command::new(fixture::bin())
            .arg("--repo")
            .arg(&img.repo)
            .arg("serve")
            .args(args)
            .env("XDG_CACHE_HOME", &img.cache)
            .stdin(Stdio::null())
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2),
            "{args:?}: exit {:?}: {err}",
            out.status.code()
        );
        for w in words {
            ensure!(err.contains(w), "{args:?}: no {w} in {err}");
        }
    }
    Ok(())
}

/// HTTPS (a certificate of our own) with htpasswd users: skopeo trusting
/// that certificate and presenting the password reads the original
/// manifest; without trusting it, or over plain HTTP, nothing.
pub fn tls_with_htpasswd() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::plain(t.path(), &os_tars()[1..], &[TAGGED])?;
    let (cert, key) = integration::self_signed_cert(t.path())?;
    let certs = t.path().join("certs.d");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(&cert, certs.join("ca.crt"))?;
    let htpasswd = t.path().join("htpasswd");
    run(Command::new("htpasswd")
        .arg("-Bbc")
        .arg(&htpasswd)
        .args(["reader", "Tls-pass"]))?;
    let serve = Serve::start(
        &img,
        &[
            "--htpasswd",
            &htpasswd.display().to_string(),
            "--tls-cert",
            &cert.display().to_string(),
            "--tls-key",
            &key.display().to_string(),
        ],
    )?;
    ensure!(
        serve.first.starts_with("listening on https://"),
        "{}",
        serve.first
    );
    let src = serve.docker(&format!("{SERVED}:1"));
    let inspect = |extra: &[&str]| {
        Command::new("skopeo")
            .args(["inspect", "--raw", "--creds", "reader:Tls-pass"])
            .args(extra)
            .arg(&src)
            .output()
    };
    let ok = inspect(&["--cert-dir", &certs.display().to_string()])?;
    ensure!(
        ok.status.success() && ok.stdout == img.manifest_bytes,
        "trusted certificate: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let untrusted = inspect(&[])?;
    let err = String::from_utf8_lossy(&untrusted.stderr);
    ensure!(
        !untrusted.status.success() && err.contains("certificate"),
        "untrusted certificate was accepted: {err}"
    );
    let plain = Command::new("curl")
        .args(["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/", serve.addr))
        .output()?;
    ensure!(
        String::from_utf8_lossy(&plain.stdout) == "000",
        "plain HTTP was answered: {plain:?}"
    );
    Ok(())
}

/// Four `skopeo copy … dir:` pulls at once all complete, each blob proven
/// by its digest and all four copies byte-identical, and each pgzip block
/// of the reproduced layers was compressed once for all four.
pub fn four_parallel_pulls() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (img, layers) = with_noise(t.path(), 12 << 20, 41)?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let started = Instant::now();
    let pulls: Vec<_> = (0..4)
        .map(|i| {
            let dir = t.path().join(format!("dir{i}"));
            let src = serve.docker(&format!("{SERVED}:1"));
            std::thread::spawn(move || -> Result<PathBuf> {
                skopeo(&[
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    &src,
                    &format!("dir:{}", dir.display()),
                ])?;
                Ok(dir)
            })
        })
        .collect();
    let dirs: Vec<PathBuf> = pulls
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("pull thread panicked"))?
        })
        .collect::<Result<_>>()?;
    let took = started.elapsed();
    let files = |dir: &Path| -> Result<Vec<(String, Vec<u8>)>> {
        let mut v: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| {
                let e = e?;
                Ok((
                    e.file_name().to_string_lossy().to_string(),
                    std::fs::read(e.path())?,
                ))
            })
            .collect::<Result<_>>()?;
        v.sort();
        Ok(v)
    };
    let first = files(&dirs[0])?;
    let manifest = first
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .context("manifest.json")?;
    ensure!(
        sha256(&manifest.1) == img.manifest_digest,
        "manifest changed"
    );
    for (name, bytes) in &first {
        if name.len() == 64 {
            ensure!(sha256(bytes) == format!("sha256:{name}"), "blob {name}");
        }
    }
    ensure!(
        first.iter().filter(|(n, _)| n.len() == 64).count() == 1 + layers,
        "blobs: {:?}",
        first.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for d in &dirs[1..] {
        ensure!(
            files(d)? == first,
            "{} differs from {}",
            d.display(),
            dirs[0].display()
        );
    }
    eprintln!("four parallel pulls: {took:.2?}");
    shared_blocks_made_once(&serve.log_text())
}

/// The reproduced pgzip blobs' responses (the `blocks` log lines: `DIGEST:
/// M blocks compressed, C copied`) compressed each block once between them:
/// per blob, the blocks made add up to the blocks one response wrote.
fn shared_blocks_made_once(log: &str) -> Result<()> {
    let mut blobs: std::collections::BTreeMap<&str, Vec<(u64, u64)>> = Default::default();
    for line in log.lines() {
        let Some(at) = line.find("sha256:") else {
            continue;
        };
        let Some((digest, rest)) = line[at..].split_once(": ") else {
            continue;
        };
        let Some((made, rest)) = rest.split_once(" blocks compressed, ") else {
            continue;
        };
        let copied = rest.trim_end_matches(" copied");
        blobs
            .entry(digest)
            .or_default()
            .push((made.parse()?, copied.parse()?));
    }
    ensure!(!blobs.is_empty(), "no reproduced blob was logged:\n{log}");
    for (digest, responses) in &blobs {
        let made: u64 = responses.iter().map(|r| r.0).sum();
        let blocks = responses.iter().map(|r| r.0 + r.1).max().unwrap_or(0);
        ensure!(
            responses.len() >= 4 && made == blocks,
            "{digest}: {} responses made {made} of {blocks} blocks: {responses:?}",
            responses.len()
        );
        eprintln!("{digest}: {blocks} blocks, made once across {responses:?}");
    }
    Ok(())
}

/// [`TAGGED`] with reproduced layers: [`os_tars`] and one of `size` bytes
/// of noise (`seed`), many pgzip blocks. The image and its layer count.
pub(crate) fn with_noise(dir: &Path, size: usize, seed: u64) -> Result<(Image, usize)> {
    let mut tars = os_tars();
    tars.push(
        TarBuilder::new()
            .dir("srv")
            .file("srv/noise", &fixture::noise(size, seed))
            .finish(false),
    );
    Ok((Image::reproducible(dir, &tars, &[TAGGED])?, tars.len()))
}

/// An image of other content tagged `REGISTRY/demo/os:1` in `img`'s
/// repository beside [`TAGGED`]: both are served as `demo/os:1`, and
/// containerd's `?ns=REGISTRY` chooses. Its manifest digest.
pub(crate) fn same_path_other_registry(img: &Image, registry: &str) -> Result<String> {
    let layers = vec![(
        TarBuilder::new()
            .dir("usr")
            .file("usr/os-release", format!("ID={registry}\n").as_bytes())
            .finish(false),
        Kind::Tar,
    )];
    let f = fixture::write_layout(&img.dir.join("other"), "os", "amd64", &layers);
    img.cfs(&[
        "import",
        &format!("oci:{}:os", f.layout.display()),
        "--tag",
        &format!("{registry}/demo/os:1"),
    ])?;
    Ok(f.manifest_digest)
}
