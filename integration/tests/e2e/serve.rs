//! Issue 20: `cfs-export serve`, the repository as a read-only registry,
//! pulled by real clients: skopeo (by tag, by digest, by the
//! registry-qualified name, both compressions), podman through a
//! `registries.conf` mirror, htpasswd users and the refusals, curl for the
//! HTTP details, four parallel pulls, SIGTERM mid-pull, and composefs-oci
//! filling a second repository from the first (the fleet case).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::{cfs_with, run, Storage};

/// The name the images are tagged with in the repository, and the names it is served as.
const TAGGED: &str = "quay.io/demo/os:1";
const SERVED: &str = "demo/os";
const QUALIFIED: &str = "quay.io/demo/os";

/// A running `cfs-export serve`, killed (by its PID) when dropped, so a
/// failing test leaves no server behind.
struct Serve {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    /// The first stdout line.
    first: String,
    /// The stdout lines after the first, as they come.
    lines: mpsc::Receiver<String>,
    /// stderr: messages and the access log.
    log: PathBuf,
}

impl Serve {
    /// `cfs-export --repo REPO serve --listen 127.0.0.1:0 ARGS…` with the
    /// image's cache and the access log on; waits for the address line.
    fn start(img: &Image, args: &[&str]) -> Result<Self> {
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
            .env("RUST_LOG", "warn,access=info")
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
            .with_context(|| format!("address {url:?}"))?
            .to_string();
        serve.first = first;
        Ok(serve)
    }

    /// The stdout lines after the first that have come within `wait`.
    fn more_lines(&self, n: usize, wait: Duration) -> Vec<String> {
        (0..n)
            .map_while(|_| self.lines.recv_timeout(wait).ok())
            .collect()
    }

    /// `docker://ADDR/NAME`.
    fn docker(&self, name: &str) -> String {
        format!("docker://{}/{name}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal` (`TERM`, `INT`) and wait up to `limit` for the exit.
    fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> Result<(ExitStatus, Duration)> {
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
struct Image {
    /// The test's temp dir (logs go here).
    dir: PathBuf,
    repo: PathBuf,
    /// `XDG_CACHE_HOME` of every cfs-export run on this repo.
    cache: PathBuf,
    /// The digest and bytes of the manifest that was imported.
    manifest_digest: String,
    manifest_bytes: Vec<u8>,
    config_digest: String,
    diff_ids: Vec<String>,
    /// (digest, bytes) of each imported layer blob.
    blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// `tars` as pgzip layers written by skopeo's `--dest-compress` (which
    /// cfs-export reproduces, so the original manifest is served), imported
    /// under `tags` (the first is [`TAGGED`]).
    fn reproducible(dir: &Path, tars: &[Vec<u8>], tags: &[&str]) -> Result<Self> {
        let plain = dir.join("plain");
        let layers: Vec<_> = tars.iter().map(|b| (b.clone(), Kind::Tar)).collect();
        let f = fixture::write_layout(&plain, "os", "amd64", &layers);
        let pg = dir.join("pgzip");
        run(Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--dest-compress",
                "--dest-compress-format",
                "gzip",
            ])
            .arg(format!("oci:{}:os", plain.display()))
            .arg(format!("oci:{}:os", pg.display())))?;
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

    /// `layers` as they are (uncompressed tars), imported under `tags`.
    fn plain(dir: &Path, tars: &[Vec<u8>], tags: &[&str]) -> Result<Self> {
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

    fn import(
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
    fn cfs(&self, args: &[&str]) -> Result<String> {
        cfs_with(&self.repo, args, &[("XDG_CACHE_HOME", &self.cache)])
    }
}

/// A small OS-like tree (composefs-oci wants `/usr`): text that compresses
/// and noise that does not, over 1 MiB so pgzip's blocks are crossed.
fn os_tars() -> Vec<Vec<u8>> {
    let words: Vec<u8> = (0..60_000u32)
        .flat_map(|i| {
            format!("line {} of /usr/share/doc/pkg{} ", i * 7919 % 1000, i % 97).into_bytes()
        })
        .collect();
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

fn skopeo(args: &[&str]) -> Result<Vec<u8>> {
    Ok(run(Command::new("skopeo").args(args))?.stdout)
}

/// (manifest digest, manifest) of the image `oci:DIR:os`, its config digest
/// checked against `config_digest` and each layer against its digest.
fn copied_layout(layout: &Path, config_digest: &str) -> Result<(String, serde_json::Value)> {
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

/// One `curl -i` exchange: status, headers (lowercase names) and body.
struct Exchange {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    transcript: String,
}

impl Exchange {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `errors[0].code` of a JSON error body.
    fn error_code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// `curl -sS -i [-X METHOD] [-H HEADER…] http://ADDR/PATH`.
fn curl(serve: &Serve, method: &str, path: &str, headers: &[&str]) -> Result<Exchange> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "-X", method]);
    if method == "HEAD" {
        cmd.arg("-I");
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = run(cmd.arg(format!("http://{}{path}", serve.addr)))?.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let body = out[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().context("status line")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let response_headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let shown = if body.len() <= 300 && body.is_ascii() {
        String::from_utf8_lossy(&body).to_string()
    } else {
        format!("<{} bytes>", body.len())
    };
    let transcript = format!(
        "$ curl -i -X {method} {}{path}\n{head}\n\n{shown}\n",
        headers
            .iter()
            .map(|h| format!("-H '{h}' "))
            .collect::<String>()
    );
    Ok(Exchange {
        status,
        headers: response_headers,
        body,
        transcript,
    })
}

/// The HTTP details clients rely on, with curl: headers of manifests and
/// blobs, ranges (206, 416), paginated `tags/list` with `Link`, `_catalog`,
/// the spec's JSON errors, 405 for writes, the empty referrers index.
pub fn http_details_with_curl() -> Result<()> {
    let t = tempfile::tempdir()?;
    let img = Image::reproducible(t.path(), &os_tars(), &[TAGGED, "quay.io/demo/os:2"])?;
    let serve = Serve::start(&img, &["--anonymous"])?;
    let mut transcript = String::new();
    let mut check = |method: &str,
                     path: &str,
                     headers: &[&str],
                     status: u16,
                     f: &dyn Fn(&Exchange) -> Result<()>|
     -> Result<()> {
        let x = curl(&serve, method, path, headers)?;
        transcript.push_str(&x.transcript);
        ensure!(x.status == status, "want {status}:\n{}", x.transcript);
        f(&x).with_context(|| x.transcript.clone())
    };
    let m = &img.manifest_digest;
    let (layer, blob) = &img.blobs[0];
    let n = blob.len();
    let result = (|| -> Result<()> {
        check("GET", "/v2/", &[], 200, &|x| {
            ensure!(x.header("docker-distribution-api-version") == Some("registry/2.0"));
            Ok(())
        })?;
        check(
            "HEAD",
            &format!("/v2/{SERVED}/manifests/1"),
            &["Accept: application/vnd.oci.image.manifest.v1+json"],
            200,
            &|x| {
                ensure!(x.header("docker-content-digest") == Some(m.as_str()));
                ensure!(
                    x.header("content-type") == Some("application/vnd.oci.image.manifest.v1+json")
                );
                ensure!(x.header("content-length") == Some(&*img.manifest_bytes.len().to_string()));
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &["Range: bytes=10-19"],
            206,
            &|x| {
                ensure!(x.body == blob[10..20], "range body");
                ensure!(x.header("content-range") == Some(&*format!("bytes 10-19/{n}")));
                ensure!(x.header("accept-ranges") == Some("bytes"));
                ensure!(x.header("docker-content-digest") == Some(layer.as_str()));
                ensure!(x.header("content-encoding").is_none());
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &["Range: bytes=-7"],
            206,
            &|x| {
                ensure!(x.body == blob[n - 7..], "suffix body");
                ensure!(
                    x.header("content-range") == Some(&*format!("bytes {}-{}/{n}", n - 7, n - 1))
                );
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/{layer}"),
            &[&format!("Range: bytes={n}-")],
            416,
            &|x| {
                ensure!(x.header("content-range") == Some(&*format!("bytes */{n}")));
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/tags/list?n=1"),
            &[],
            200,
            &|x| {
                ensure!(x.body == br#"{"name":"demo/os","tags":["1"]}"#);
                ensure!(
                    x.header("link")
                        == Some(&*format!(
                            "</v2/{SERVED}/tags/list?n=1&last=1>; rel=\"next\""
                        ))
                );
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/tags/list?n=1&last=1"),
            &[],
            200,
            &|x| {
                ensure!(x.body == br#"{"name":"demo/os","tags":["2"]}"#);
                ensure!(x.header("link").is_none());
                Ok(())
            },
        )?;
        check("GET", "/v2/_catalog", &[], 200, &|x| {
            ensure!(x.body == br#"{"repositories":["demo/os","quay.io/demo/os"]}"#);
            Ok(())
        })?;
        check("GET", "/v2/nosuch/os/manifests/1", &[], 404, &|x| {
            ensure!(x.error_code() == "NAME_UNKNOWN");
            ensure!(x.header("content-type") == Some("application/json"));
            Ok(())
        })?;
        check(
            "GET",
            &format!("/v2/{SERVED}/manifests/3"),
            &[],
            404,
            &|x| {
                ensure!(x.error_code() == "MANIFEST_UNKNOWN");
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/sha256:{}", "0".repeat(64)),
            &[],
            404,
            &|x| {
                ensure!(x.error_code() == "BLOB_UNKNOWN");
                Ok(())
            },
        )?;
        check(
            "GET",
            &format!("/v2/{SERVED}/blobs/sha256:xyz"),
            &[],
            400,
            &|x| {
                ensure!(x.error_code() == "DIGEST_INVALID");
                Ok(())
            },
        )?;
        for (method, path) in [
            ("DELETE", format!("/v2/{SERVED}/manifests/{m}")),
            ("PUT", format!("/v2/{SERVED}/manifests/1")),
            ("POST", format!("/v2/{SERVED}/blobs/uploads/")),
        ] {
            check(method, &path, &[], 405, &|x| {
                ensure!(x.error_code() == "UNSUPPORTED");
                Ok(())
            })?;
        }
        check(
            "GET",
            &format!("/v2/{SERVED}/referrers/{m}"),
            &[],
            200,
            &|x| {
                let v: serde_json::Value = serde_json::from_slice(&x.body)?;
                ensure!(v["manifests"] == serde_json::json!([]) && v["schemaVersion"] == 2);
                ensure!(
                    x.header("content-type") == Some("application/vnd.oci.image.index.v1+json")
                );
                Ok(())
            },
        )?;
        Ok(())
    })();
    result.with_context(|| format!("exchanges so far:\n{transcript}"))
}

/// Four `skopeo copy … dir:` pulls at once all complete, each blob proven
/// by its digest and all four copies byte-identical.
pub fn four_parallel_pulls() -> Result<()> {
    let t = tempfile::tempdir()?;
    let mut tars = os_tars();
    tars.push(
        TarBuilder::new()
            .dir("srv")
            .file("srv/noise", &fixture::noise(12 << 20, 41))
            .finish(false),
    );
    let img = Image::reproducible(t.path(), &tars, &[TAGGED])?;
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
        first.iter().filter(|(n, _)| n.len() == 64).count() == 1 + tars.len(),
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
    Ok(())
}

/// Bytes in `path` so far (0 if it is not there yet).
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// SIGTERM while two rate-limited clients read layers: the listener closes
/// at once, the response that can finish within the grace does, the one
/// that cannot is cut at the grace, serve exits 0 and the port is closed.
pub fn sigterm_mid_pull() -> Result<()> {
    let t = tempfile::tempdir()?;
    let big = TarBuilder::new()
        .file("big", &fixture::noise(48 << 20, 51))
        .finish(false);
    let small = TarBuilder::new()
        .file("small", &fixture::noise(3 << 20, 52))
        .finish(false);
    let img = Image::plain(t.path(), &[big, small], &[TAGGED])?;
    let mut serve = Serve::start(&img, &["--anonymous"])?;
    let fetch = |i: usize, rate: &str| -> Result<(Child, PathBuf)> {
        let out = t.path().join(format!("blob{i}"));
        let child = Command::new("curl")
            .args(["-sS", "--fail", "--limit-rate", rate, "-o"])
            .arg(&out)
            .arg(format!(
                "http://{}/v2/{SERVED}/blobs/{}",
                serve.addr, img.blobs[i].0
            ))
            .stderr(Stdio::piped())
            .spawn()?;
        Ok((child, out))
    };
    // 48 MiB at 2 MiB/s cannot finish within 10 s; 3 MiB at 1 MiB/s can.
    let (cut, cut_out) = fetch(0, "2M")?;
    let (mut whole, whole_out) = fetch(1, "1M")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while size_of(&cut_out) == 0 || size_of(&whole_out) == 0 {
        ensure!(Instant::now() < deadline, "the pulls did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let addr = serve.addr.clone();
    let prober = std::thread::spawn(move || {
        // Soon after the signal, a new connection is refused.
        std::thread::sleep(Duration::from_millis(500));
        TcpStream::connect(&addr).is_err()
    });
    let (status, took) = serve.signal_and_wait("TERM", Duration::from_secs(20))?;
    let refused_during_grace = prober.join().map_err(|_| anyhow::anyhow!("prober"))?;
    let log = serve.log_text();
    ensure!(status.code() == Some(0), "serve exited {status}: {log}");
    ensure!(
        took >= Duration::from_secs(8) && took <= Duration::from_secs(12),
        "serve exited {took:.2?} after SIGTERM with a response still running; the grace is 10 s: {log}"
    );
    ensure!(
        refused_during_grace,
        "a new connection was accepted during the grace"
    );
    ensure!(
        TcpStream::connect(&serve.addr).is_err(),
        "port still open after exit"
    );

    let whole_status = whole.wait()?;
    ensure!(
        whole_status.success(),
        "the response within the grace failed: {whole_status}"
    );
    ensure!(
        sha256(&std::fs::read(&whole_out)?) == img.blobs[1].0,
        "the response within the grace is not the blob"
    );
    let cut_status = cut.wait_with_output()?;
    let got = size_of(&cut_out);
    ensure!(
        !cut_status.status.success() && got < img.blobs[0].1.len() as u64,
        "the response past the grace: {} with {got} bytes",
        cut_status.status
    );
    eprintln!(
        "SIGTERM: exit {status} after {took:.2?}; cut response at {got} of {} bytes ({})",
        img.blobs[0].1.len(),
        String::from_utf8_lossy(&cut_status.stderr).trim()
    );
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
