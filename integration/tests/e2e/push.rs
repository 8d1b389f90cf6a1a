//! Issue 27: a push (and every other skopeo destination) reads from our
//! loopback server, no temporary layout: a real docker-registry (TLS,
//! htpasswd), `$TMPDIR` sampled while the push runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::{run, Registry};

const USER: &str = "tester";
const PASSWORD: &str = "Pa55-push";

/// An image whose gzip layers skopeo made (pgzip, an encoder we reproduce),
/// imported into `dir/repo`; the repo and the original manifest digest.
fn pgzip_repo(dir: &Path) -> Result<(PathBuf, String)> {
    let words = integration::doc_words(150_000);
    let layers = vec![
        (
            TarBuilder::new()
                .dir("usr")
                .file("usr/words", &words)
                .file("usr/noise", &fixture::noise(2 << 20, 11))
                .finish(true),
            Kind::Tar,
        ),
        (
            TarBuilder::new()
                .file("srv/noise", &fixture::noise(3 << 20, 12))
                .finish(false),
            Kind::Tar,
        ),
        (
            TarBuilder::new()
                .file("etc/motd", b"pushed without a temporary layout\n")
                .finish(false),
            Kind::Tar,
        ),
    ];
    let plain = dir.join("plain");
    fixture::write_layout(&plain, "app:1", "amd64", &layers);
    let pg = dir.join("pg");
    integration::skopeo_pgzip(&plain, &pg, "app:1")?;
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(pg.join("index.json"))?)?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json")?
        .to_string();
    let repo = dir.join("repo");
    integration::cfs(&repo, &["import", &format!("oci:{}:app:1", pg.display())])?;
    Ok((repo, manifest))
}

/// What a sampler saw in a directory while a command ran.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// Most entries (files and directories, recursively) at once.
    entries: usize,
    /// Most bytes (regular files, recursively) at once.
    bytes: u64,
    /// Samples taken.
    samples: usize,
}

fn walk(dir: &Path, entries: &mut usize, bytes: &mut u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        *entries += 1;
        match e.metadata() {
            Ok(m) if m.is_dir() => walk(&e.path(), entries, bytes),
            Ok(m) => *bytes += m.len(),
            Err(_) => {}
        }
    }
}

/// Sample `dirs` from a thread every few milliseconds until `stop`.
fn sampler(dirs: Vec<PathBuf>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let mut seen = vec![Seen::default(); dirs.len()];
        loop {
            let last = stop.load(Ordering::SeqCst);
            for (d, s) in dirs.iter().zip(&mut seen) {
                let (mut entries, mut bytes) = (0, 0);
                walk(d, &mut entries, &mut bytes);
                s.entries = s.entries.max(entries);
                s.bytes = s.bytes.max(bytes);
                s.samples += 1;
            }
            if last {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// A push's outcome: the JSON report (when it succeeded), stderr, and what
/// was seen in `$TMPDIR` and in the runtime directory while it ran.
struct Pushed {
    ok: bool,
    code: Option<i32>,
    report: serde_json::Value,
    stderr: String,
    tmpdir: Seen,
    runtime: Seen,
    seconds: f64,
}

/// A directory for one test's `$TMPDIR`, `$XDG_RUNTIME_DIR` and cache.
struct Env {
    tmp: PathBuf,
    runtime: PathBuf,
    cache: PathBuf,
    creds: PathBuf,
}

impl Env {
    fn new(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let env = Env {
            tmp: dir.join("tmpdir"),
            runtime: dir.join("runtime"),
            cache: dir.join("cache"),
            creds: dir.join("creds"),
        };
        std::fs::create_dir_all(&env.tmp)?;
        std::fs::create_dir_all(&env.runtime)?;
        std::fs::set_permissions(&env.runtime, std::fs::Permissions::from_mode(0o700))?;
        std::fs::write(&env.creds, format!("{USER}:{PASSWORD}\n"))?;
        Ok(env)
    }

    fn command(&self, repo: &Path) -> Command {
        let mut cmd = Command::new(fixture::bin());
        cmd.env("TMPDIR", &self.tmp)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("XDG_CACHE_HOME", &self.cache)
            .arg("--repo")
            .arg(repo);
        cmd
    }

    /// `export app:1 --to DEST EXTRA…` to a registry, sampled.
    fn push(&self, repo: &Path, dest: &str, extra: &[&str]) -> Result<Pushed> {
        let mut cmd = self.command(repo);
        cmd.args(["-v", "--json", "export", "app:1", "--to", dest])
            .args(["--dest-tls-verify", "false", "--creds-file"])
            .arg(&self.creds)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stop = Arc::new(AtomicBool::new(false));
        let sampling = sampler(vec![self.tmp.clone(), self.runtime.clone()], stop.clone());
        let started = Instant::now();
        let out = cmd.spawn()?.wait_with_output()?;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        let seen = sampling
            .join()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
        Ok(Pushed {
            ok: out.status.success(),
            code: out.status.code(),
            report: serde_json::from_slice(&out.stdout).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            tmpdir: seen[0],
            runtime: seen[1],
            seconds,
        })
    }

    /// Nothing left in `$TMPDIR` or the runtime directory.
    fn clean(&self) -> Result<()> {
        for d in [&self.tmp, &self.runtime] {
            let left: Vec<_> = std::fs::read_dir(d)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            ensure!(left.is_empty(), "left behind in {}: {left:?}", d.display());
        }
        Ok(())
    }
}

fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["images"][0]["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| l["status"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The manifest the registry holds for `dest`, if any.
fn registry_manifest(dest: &str) -> Result<Vec<u8>> {
    Ok(run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        dest,
    ]))?
    .stdout)
}

/// Manifests the registry stored for repository `name` (its revisions).
fn stored_manifests(reg_dir: &Path, name: &str) -> usize {
    let revisions = reg_dir.join(format!(
        "data/docker/registry/v2/repositories/{name}/_manifests/revisions/sha256"
    ));
    std::fs::read_dir(revisions).map_or(0, Iterator::count)
}

/// Blob uploads the registry logged for repository `name`.
fn blob_uploads(reg: &Registry, name: &str) -> usize {
    reg.log_text()
        .lines()
        .filter(|l| l.contains(&format!("\"PUT /v2/{name}/blobs/uploads/")))
        .count()
}

fn check_streamed(what: &str, p: &Pushed) -> Result<()> {
    ensure!(p.ok, "{what} failed: {}", p.stderr);
    ensure!(
        p.report["streamed"] == true,
        "{what}: not streamed: {}",
        p.report
    );
    ensure!(
        p.tmpdir.entries == 0 && p.tmpdir.samples > 2,
        "{what}: something landed in $TMPDIR: {:?}",
        p.tmpdir
    );
    // Only our credential and policy, never a blob.
    ensure!(
        p.runtime.bytes < 16 << 10,
        "{what}: {} bytes in the runtime dir",
        p.runtime.bytes
    );
    Ok(())
}

/// `--compression original` with every encoder known: the original manifest
/// digest lands, nothing is staged (sampled), a second push asks our server
/// for no layer (the registry has them: skopeo's HEAD), and a damaged layer
/// never lands in a registry.
pub fn push_original_streams_and_keeps_the_manifest_digest() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, manifest) = pgzip_repo(t.path())?;
    let env = Env::new(t.path())?;
    let reg_dir = t.path().join("registry");
    let reg = Registry::start(&reg_dir, USER, PASSWORD)?;
    let dest = format!("docker://{}/app:1", reg.addr);
    let original = ["--compression", "original"];

    let first = env.push(&repo, &dest, &original)?;
    check_streamed("first push", &first)?;
    env.clean()?;
    let image = &first.report["images"][0];
    ensure!(
        image["original_manifest"] == true && image["manifest_digest"] == manifest.as_str(),
        "not the original manifest {manifest}: {}",
        first.report
    );
    ensure!(
        statuses(&first.report) == ["written"; 3],
        "{}",
        first.report
    );
    let got = sha256(&registry_manifest(&dest)?);
    ensure!(got == manifest, "registry has {got}, original {manifest}");
    let uploads = blob_uploads(&reg, "app");
    ensure!(uploads >= 4, "{uploads} uploads:\n{}", reg.log_text());

    // Again: skopeo finds every blob in the registry and asks our server
    // for none (the server's log: every layer skipped); nothing uploaded.
    let second = env.push(&repo, &dest, &original)?;
    check_streamed("second push", &second)?;
    ensure!(
        statuses(&second.report) == ["skipped"; 3],
        "second push served layers: {}",
        second.report
    );
    ensure!(
        blob_uploads(&reg, "app") == uploads,
        "second push uploaded blobs"
    );
    env.clean()?;

    // A damaged object, pushed to a registry that lacks the layer: the
    // response is cut before its last bytes, the push fails naming the
    // layer, and the registry has no manifest.
    let obj = fixture::biggest_object(&repo);
    fixture::rewrite(&obj, |d| d[4096] ^= 0x10);
    let fresh_dir = t.path().join("fresh");
    let fresh = Registry::start(&fresh_dir, USER, PASSWORD)?;
    let bad = format!("docker://{}/bad:1", fresh.addr);
    let damaged = env.push(&repo, &bad, &original)?;
    ensure!(
        damaged.code == Some(1),
        "a damaged push: exit {:?}: {}",
        damaged.code,
        damaged.stderr
    );
    let error = damaged.report["error"].as_str().unwrap_or("");
    ensure!(
        error.contains("objects/") && error.contains("layer 1"),
        "the error names no layer or object: {}",
        damaged.report
    );
    ensure!(
        registry_manifest(&bad).is_err(),
        "the registry serves a manifest for the damaged image"
    );
    ensure!(
        stored_manifests(&fresh_dir, "bad") == 0,
        "the registry stored a manifest for the damaged image"
    );
    env.clean()?;
    eprintln!(
        "push original: first {:.2}s, second {:.2}s; $TMPDIR max {} entries over {} samples; runtime dir max {} bytes",
        first.seconds, second.seconds, first.tmpdir.entries, first.tmpdir.samples, first.runtime.bytes
    );
    Ok(())
}

/// The index entries' names and modification times.
fn index_state(cache: &Path) -> Result<Vec<(String, std::time::SystemTime)>> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(cache.join("cfs-export/index"))? {
        let e = e?;
        all.push((
            e.file_name().to_string_lossy().into_owned(),
            e.metadata()?.modified()?,
        ));
    }
    all.sort();
    Ok(all)
}

/// `--compression gzip`: the first push learns the blob digests once (the
/// index), a push to another registry compresses only while uploading (the
/// index untouched, every layer served), the same bytes as an oci: export.
pub fn push_gzip_learns_digests_once() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, _) = pgzip_repo(t.path())?;
    let env = Env::new(t.path())?;
    let reg = Registry::start(&t.path().join("registry"), USER, PASSWORD)?;
    let dest = format!("docker://{}/app:1", reg.addr);
    let gzip = ["--compression", "gzip"];

    let first = env.push(&repo, &dest, &gzip)?;
    check_streamed("first gzip push", &first)?;
    env.clean()?;
    ensure!(
        first
            .stderr
            .contains("3 of 3 layer(s) compressed to learn their gzip"),
        "{}",
        first.stderr
    );
    ensure!(
        statuses(&first.report) == ["written"; 3],
        "{}",
        first.report
    );
    let learned = index_state(&env.cache)?;
    ensure!(learned.len() == 3, "index: {learned:?}");
    let digest = first.report["images"][0]["manifest_digest"]
        .as_str()
        .context("manifest digest")?
        .to_string();
    ensure!(sha256(&registry_manifest(&dest)?) == digest);
    // The same bytes as a local export.
    let local = t.path().join("local");
    integration::cfs(
        &repo,
        &[
            "export",
            "app:1",
            "--compression",
            "gzip",
            "--to",
            &format!("oci:{}", local.display()),
        ],
    )?;
    let (local_digest, _) = fixture::manifest_for(&local, "app:1");
    ensure!(
        local_digest == digest,
        "local {local_digest}, pushed {digest}"
    );

    // Another registry: nothing learned again, every layer compressed while
    // skopeo uploads it.
    let other = Registry::start(&t.path().join("other"), USER, PASSWORD)?;
    let other_dest = format!("docker://{}/app:1", other.addr);
    let second = env.push(&repo, &other_dest, &gzip)?;
    check_streamed("second gzip push", &second)?;
    env.clean()?;
    ensure!(
        index_state(&env.cache)? == learned,
        "the index was written again"
    );
    ensure!(
        second
            .stderr
            .contains("0 of 3 layer(s) compressed to learn their gzip"),
        "{}",
        second.stderr
    );
    ensure!(
        statuses(&second.report) == ["written"; 3],
        "{}",
        second.report
    );
    ensure!(sha256(&registry_manifest(&other_dest)?) == digest);

    // The first registry again: nothing served, nothing uploaded.
    let uploads = blob_uploads(&reg, "app");
    let third = env.push(&repo, &dest, &gzip)?;
    check_streamed("third gzip push", &third)?;
    ensure!(
        statuses(&third.report) == ["skipped"; 3],
        "{}",
        third.report
    );
    ensure!(blob_uploads(&reg, "app") == uploads, "blobs uploaded again");
    eprintln!(
        "push gzip: first (learning) {:.2}s, second (compressing while uploading) {:.2}s, third (nothing to send) {:.2}s",
        first.seconds, second.seconds, third.seconds
    );
    Ok(())
}

/// SIGINT while skopeo pushes: skopeo killed, the port closed, our private
/// directory gone, `$TMPDIR` untouched throughout.
pub fn sigint_mid_push_leaves_nothing() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir()?;
    let (repo, _) = pgzip_repo(t.path())?;
    let env = Env::new(t.path())?;
    let info = t.path().join("skopeo.info");
    let fake = t.path().join("sleepy-skopeo");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do case $a in docker://*) [ -z \"$src\" ] && src=$a;; esac; done\necho \"$$ $src\" > {}\nexec sleep 300\n",
            info.display()
        ),
    )?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let mut child = env
        .command(&repo)
        .env("SKOPEO", &fake)
        .args([
            "export",
            "app:1",
            "--compression",
            "none",
            "--to",
            "docker://127.0.0.1:9/x:1",
        ])
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (pid, addr) = loop {
        if let Ok(s) = std::fs::read_to_string(&info) {
            if let Some((pid, src)) = s.trim().split_once(' ') {
                let addr = src
                    .trim_start_matches("docker://")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                break (pid.to_string(), addr);
            }
        }
        ensure!(Instant::now() < deadline, "fake skopeo never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(addr.starts_with("127.0.0.1:"), "source {addr}");
    ensure!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "server not up at {addr}"
    );
    ensure!(
        std::fs::read_dir(&env.runtime)?.next().is_some(),
        "our private directory should be in the runtime dir while skopeo runs"
    );
    ensure!(
        std::fs::read_dir(&env.tmp)?.next().is_none(),
        "something in $TMPDIR while skopeo runs"
    );
    run(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
    let status = child.wait()?;
    ensure!(status.code() == Some(130), "exit status {status}");
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone() {
        ensure!(Instant::now() < deadline, "skopeo {pid} still running");
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(
        std::net::TcpStream::connect(&addr).is_err(),
        "port {addr} still open"
    );
    env.clean()
}
