//! Issue 12: containers-storage fed by our own read-only server, no
//! temporary layout: real skopeo and podman, a fake skopeo to probe the server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use integration::fixture::{self, Kind, TarBuilder};
use integration::{run, Storage};

fn stream_repo(dir: &Path) -> Result<(PathBuf, fixture::Fixture)> {
    let layers = vec![
        (
            TarBuilder::new()
                .file("big", &fixture::noise(6 << 20, 1))
                .finish(true),
            Kind::Gzip,
        ),
        (
            TarBuilder::new()
                .file("small", &fixture::noise(50_000, 2))
                .finish(false),
            Kind::Zstd,
        ),
    ];
    let (repo, f) = fixture::imported(dir, "app:1", &layers);
    Ok((repo, f))
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

fn dir_is_empty(p: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(p)?.next().is_none())
}

/// Streamed: image ID kept, nothing in $TMPDIR (a 1 MiB tmpfs would not hold
/// the image); a second copy rebuilds nothing; a damaged object fails the
/// copy naming the layer, and no image lands.
pub fn copy_to_storage_streams_without_temp_layout() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, f) = stream_repo(t.path())?;
    let storage = Storage::new(t.path());
    let tiny = t.path().join("tiny-tmp");
    std::fs::create_dir_all(&tiny)?;
    let mut args = vec!["--json", "copy-to-storage", "app:1"];
    let flags = storage.flags();
    args.extend(flags.iter().map(String::as_str));
    let copy = |args: &[&str]| -> Result<serde_json::Value> {
        let out = run(Command::new(fixture::bin())
            .env("TMPDIR", &tiny)
            .arg("--repo")
            .arg(&repo)
            .args(args))?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let first = copy(&args)?;
    ensure!(statuses(&first) == ["written", "written"], "{first}");
    ensure!(dir_is_empty(&tiny)?, "something landed in $TMPDIR");
    let id = storage.podman(&["image", "inspect", "localhost/bootc", "--format", "{{.Id}}"])?;
    ensure!(
        id.trim() == &f.config_digest[7..],
        "podman Id {id} != {}",
        f.config_digest
    );
    let storage_tmp = storage.root.join("tmp");
    ensure!(
        !storage_tmp.exists() || dir_is_empty(&storage_tmp)?,
        "skopeo's temp files were left in {}",
        storage_tmp.display()
    );

    // Again, under another name: storage has every layer, skopeo asks for none.
    let mut again = args.clone();
    again.extend(["--target", "localhost/again"]);
    let second = copy(&again)?;
    ensure!(statuses(&second) == ["skipped", "skipped"], "{second}");
    let id = storage.podman(&["image", "inspect", "localhost/again", "--format", "{{.Id}}"])?;
    ensure!(id.trim() == &f.config_digest[7..]);

    // A damaged object: the copy fails naming the layer; no image lands.
    let fresh = Storage::new(&t.path().join("fresh"));
    let obj = fixture::biggest_object(&repo);
    fixture::rewrite(&obj, |d| d[4096] ^= 0x10);
    let mut bad = vec!["copy-to-storage", "app:1", "--target", "localhost/bad"];
    let fresh_flags = fresh.flags();
    bad.extend(fresh_flags.iter().map(String::as_str));
    let out = Command::new(fixture::bin())
        .arg("--repo")
        .arg(&repo)
        .args(&bad)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "exit {:?}: {err}", out.status);
    ensure!(
        err.contains("layer 1") && err.contains(&f.diff_ids[0]) && err.contains("objects/"),
        "{err}"
    );
    ensure!(
        !fresh.has_image("localhost/bad")?,
        "a damaged image landed in storage"
    );
    Ok(())
}

/// A fake skopeo (python) that probes the server while the "copy" runs.
fn probing_skopeo(dir: &Path) -> Result<PathBuf> {
    integration::python_skopeo(dir, "probing-skopeo", PROBING)
}

const PROBING: &str = r#"policy = argv[argv.index("--policy") + 1]
def mode(p):
    return oct(stat.S_IMODE(os.stat(p).st_mode))
def status(path, method, credential):
    req = urllib.request.Request("http://" + host + path, method=method)
    if credential:
        req.add_header("Authorization", "Basic " + auth)
    try:
        return urllib.request.urlopen(req).status
    except urllib.error.HTTPError as e:
        return e.code
probes = [
    ("/v2/", "GET"),
    ("/v2/" + prefix + "/image/manifests/cfs-export", "GET"),
    ("/v2/" + prefix + "/image/manifests/cfs-export", "HEAD"),
    ("/v2/" + "0" * 32 + "/image/manifests/cfs-export", "GET"),
    ("/v2/image/manifests/cfs-export", "GET"),
    ("/v2/" + prefix + "/image/blobs/sha256:" + "0" * 64, "GET"),
    ("/v2/" + prefix + "/image/manifests/cfs-export", "DELETE"),
    ("/v2/" + prefix + "/image/blobs/uploads/", "POST"),
    ("/v2/_catalog", "GET"),
]
with open(sys.argv[0] + ".out", "w") as f:
    f.write("modes %s %s %s\n" % (mode(os.path.dirname(authfile)), mode(authfile), mode(policy)))
    f.write("policy %s\n" % json.dumps(json.load(open(policy)), sort_keys=True).replace(prefix, "PREFIX").replace(host, "HOST"))
    for path, method in probes:
        f.write("%s %s %d %d\n" % (method, path.replace(prefix, "PREFIX"), status(path, method, False), status(path, method, True)))
"#;

/// Only our skopeo is answered (its credential in a 0600 file in a 0700
/// dir, with a policy for our source alone): without it 401 everywhere; with
/// it, other paths 404, other methods 405.
pub fn server_answers_only_the_expected_requests() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, _) = stream_repo(t.path())?;
    let fake = probing_skopeo(t.path())?;
    let got = integration::copy_with_fake_skopeo(&repo, &fake, t.path())?;
    // Without the credential everything is refused; with it, only the
    // expected requests are answered.
    let want = "modes 0o700 0o600 0o600\n\
        policy {\"default\": [{\"type\": \"reject\"}], \"transports\": {\"docker\": {\"HOST/PREFIX/image\": [{\"type\": \"insecureAcceptAnything\"}]}}}\n\
        GET /v2/ 401 200\n\
        GET /v2/PREFIX/image/manifests/cfs-export 401 200\n\
        HEAD /v2/PREFIX/image/manifests/cfs-export 401 200\n\
        GET /v2/00000000000000000000000000000000/image/manifests/cfs-export 401 404\n\
        GET /v2/image/manifests/cfs-export 401 404\n\
        GET /v2/PREFIX/image/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000 401 404\n\
        DELETE /v2/PREFIX/image/manifests/cfs-export 401 405\n\
        POST /v2/PREFIX/image/blobs/uploads/ 401 405\n\
        GET /v2/_catalog 401 404\n";
    ensure!(got == want, "server answers:\n{got}");
    ensure!(dir_is_empty(&t.path().join("tmp"))?, "temp dir left behind");
    Ok(())
}

/// SIGINT mid-copy: skopeo stopped, the port closed, the temp dir empty.
pub fn sigint_mid_stream_leaves_nothing() -> Result<()> {
    interrupted_mid_stream("INT")
}

/// kill -9 mid-copy: the kernel stops skopeo (setpriv --pdeathsig), the port
/// closes with us; the next run removes our empty private temp dir.
pub fn kill_mid_stream_leaves_nothing() -> Result<()> {
    interrupted_mid_stream("KILL")
}

fn interrupted_mid_stream(signal: &str) -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, _) = stream_repo(t.path())?;
    let info = t.path().join("skopeo.info");
    let fake = t.path().join("sleepy-skopeo");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do case $a in docker://*) src=$a;; esac; done\necho \"$$ $src\" > {}\nexec sleep 300\n",
                info.display()
            ),
        )?;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    }
    let tmp = t.path().join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let mut child = Command::new(fixture::bin())
        .env("SKOPEO", &fake)
        .arg("--repo")
        .arg(&repo)
        .args(["copy-to-storage", "app:1", "--tmpdir"])
        .arg(&tmp)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (pid, addr) = loop {
        if let Ok(s) = std::fs::read_to_string(&info) {
            if let Some((pid, src)) = s.trim().split_once(' ') {
                let addr = src
                    .trim_start_matches("docker://")
                    .split('/')
                    .next()
                    .unwrap_or("");
                break (pid.to_string(), addr.to_string());
            }
        }
        ensure!(Instant::now() < deadline, "fake skopeo never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "server not up at {addr}"
    );
    ensure!(
        !dir_is_empty(&tmp)?,
        "skopeo's temp dir should exist while it runs"
    );
    run(Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]))?;
    let status = child.wait()?;
    match signal {
        "INT" => ensure!(status.code() == Some(130), "exit status {status}"),
        _ => ensure!(status.code().is_none(), "exit status {status}"),
    }
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
    if signal == "KILL" {
        // Nothing could remove our private directory; the next run does.
        let out = Command::new(fixture::bin())
            .env("SKOPEO", "/bin/false")
            .arg("--repo")
            .arg(&repo)
            .args(["copy-to-storage", "app:1", "--tmpdir"])
            .arg(&tmp)
            .output()?;
        ensure!(out.status.code() == Some(1), "the next run: {out:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    ensure!(left.is_empty(), "temp dir left behind: {left:?}");
    Ok(())
}
