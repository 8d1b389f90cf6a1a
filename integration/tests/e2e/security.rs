//! Issue 17: the streamed hand-off under attack by a local unprivileged user
//! (setpriv to `nobody`) with real skopeo and podman: the URL from `/proc`
//! yields nothing but 401, floods do not stall the copy, and a host policy
//! that rejects by default does not refuse our own source.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, Kind, TarBuilder};
use integration::{run, Storage};

/// The attacker, run as nobody beside the real skopeo. Args: the pid whose
/// argv holds the URL, cfs-export's pid, the flood, the output prefix, the
/// blob digests to try.
const ATTACKER: &str = r#"
import os, resource, socket, sys, time, urllib.request, urllib.error
pid, victim, flood, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
blobs = sys.argv[5:]
argv = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
src = [a.decode() for a in argv if a.startswith(b"docker://")][0][len("docker://"):]
host, path = src.split("/", 1)
name, tag = path.rsplit(":", 1)
def status(p):
    try:
        return urllib.request.urlopen("http://" + host + p, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
lines = ["GET /v2/ %d" % status("/v2/"),
         "GET manifest %d" % status("/v2/%s/manifests/%s" % (name, tag))]
lines += ["GET blob %d" % status("/v2/%s/blobs/%s" % (name, b)) for b in blobs]
h, port = host.split(":")
held = []
if flood == "idle":
    for _ in range(1100):
        held.append(socket.create_connection((h, int(port))))
elif flood == "noread":
    for i in range(520):
        s = socket.create_connection((h, int(port)))
        s.sendall(("GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (name, blobs[-1], host)).encode())
        held.append(s)
lines.append("held %d" % len(held))
open(out + ".probes", "w").write("\n".join(lines) + "\n")
open(out + ".ready", "w").close()
threads = rss = 0
while os.path.exists("/proc/%s" % pid):
    try:
        for l in open("/proc/%s/status" % victim):
            if l.startswith("Threads:"):
                threads = max(threads, int(l.split()[1]))
            if l.startswith("VmRSS:"):
                rss = max(rss, int(l.split()[1]))
    except OSError:
        break
    time.sleep(0.05)
open(out + ".peak", "w").write("%d %d\n" % (threads, rss))
"#;

/// A skopeo wrapper that lets the attacker in first, then runs the real one.
fn wrapper(dir: &Path, flood: &str, out: &Path, blobs: &[String]) -> Result<PathBuf> {
    let attacker = dir.join("attacker.py");
    std::fs::write(&attacker, ATTACKER)?;
    let p = dir.join(format!("skopeo-{flood}"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\n\
             prlimit --nofile=4096:4096 setpriv --reuid=65534 --regid=65534 --clear-groups -- \
             /usr/bin/python3 {attacker} $$ $PPID {flood} {out} {blobs} 2>{out}.err &\n\
             i=0; while [ ! -e {out}.ready ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n\
             date +%s.%N > {out}.start\n\
             exec skopeo \"$@\"\n",
            attacker = attacker.display(),
            out = out.display(),
            blobs = blobs.join(" "),
        ),
    )?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

/// An image big enough that a copy takes a moment: two 24 MiB layers.
fn big_repo(dir: &Path) -> Result<(PathBuf, fixture::Fixture)> {
    let layers = (0..2u64)
        .map(|i| {
            (
                TarBuilder::new()
                    .file("data", &fixture::noise(24 << 20, 40 + i))
                    .finish(false),
                Kind::Gzip,
            )
        })
        .collect::<Vec<_>>();
    let (repo, f) = fixture::imported(dir, "app:1", &layers);
    Ok((repo, f))
}

/// One copy-to-storage under `ulimit -Sn 1024` (the common default), with `skopeo` as SKOPEO; its wall time.
fn timed_copy(repo: &Path, storage: &Storage, skopeo: &Path) -> Result<Duration> {
    let started = Instant::now();
    run(Command::new("prlimit")
        .arg("--nofile=1024:4096")
        .arg(fixture::bin())
        .env("SKOPEO", skopeo)
        .arg("--repo")
        .arg(repo)
        .args(["copy-to-storage", "app:1", "--target", "localhost/app:1"])
        .args(storage.flags()))?;
    Ok(started.elapsed())
}

/// nobody reads the URL from `/proc` and gets 401 for `/v2/`, the manifest
/// and every blob; 1100 idle connections, or 520 GETs that never read, do
/// not stall the copy; the image ID is kept every time.
pub fn unprivileged_user_is_refused_and_cannot_stall() -> Result<()> {
    let t = tempfile::tempdir()?;
    // nobody must reach the attacker script and write its results.
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755))?;
    let shared = t.path().join("attack");
    std::fs::create_dir(&shared)?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777))?;
    let (repo, f) = big_repo(t.path())?;
    let mut blobs = vec![f.config_digest.clone()];
    blobs.extend(f.diff_ids.iter().cloned());
    let mut baseline = Duration::ZERO;
    let mut summary = String::new();
    for flood in ["none", "idle", "noread"] {
        let storage = Storage::new(&t.path().join(flood));
        let out = shared.join(flood);
        let skopeo = wrapper(&shared, flood, &out, &blobs)?;
        timed_copy(&repo, &storage, &skopeo)?;
        // From the flood in place to the copy's end.
        let start: f64 = std::fs::read_to_string(out.with_extension("start"))?
            .trim()
            .parse()?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let took = now.saturating_sub(Duration::from_secs_f64(start));
        let id = storage.podman(&["image", "inspect", "--format", "{{.Id}}", "localhost/app:1"])?;
        ensure!(
            format!("sha256:{}", id.trim()) == f.config_digest,
            "image ID changed under the {flood} flood"
        );
        let probes = std::fs::read_to_string(out.with_extension("probes")).with_context(|| {
            let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
            format!("the attacker did not run: {err}")
        })?;
        let mut want = "GET /v2/ 401\nGET manifest 401\n".to_string();
        for _ in &blobs {
            want.push_str("GET blob 401\n");
        }
        let held = match flood {
            "idle" => 1100,
            "noread" => 520,
            _ => 0,
        };
        want.push_str(&format!("held {held}\n"));
        ensure!(probes == want, "the attacker got:\n{probes}");
        let peak = std::fs::read_to_string(out.with_extension("peak")).unwrap_or_default();
        if flood == "none" {
            baseline = took;
        }
        summary.push_str(&format!(
            "{flood} flood: copy {:.2}s (peak threads, RSS kB: {}); ",
            took.as_secs_f64(),
            peak.trim()
        ));
        ensure!(
            took < baseline * 3 + Duration::from_secs(5),
            "the {flood} flood stalled the copy: {summary}"
        );
    }
    eprintln!("{summary}");
    Ok(())
}

/// `$HOME/.config/containers/policy.json` rejecting everything: the streamed
/// and the layout hand-off still copy, image ID kept.
pub fn reject_by_default_policy_does_not_refuse_our_source() -> Result<()> {
    let t = tempfile::tempdir()?;
    let (repo, f) = big_repo(t.path())?;
    let home = t.path().join("home");
    std::fs::create_dir_all(home.join(".config/containers"))?;
    std::fs::write(
        home.join(".config/containers/policy.json"),
        r#"{"default":[{"type":"reject"}]}"#,
    )?;
    // skopeo obeys that policy for images from elsewhere.
    let refused = Command::new("skopeo")
        .env("HOME", &home)
        .args(["inspect", &format!("oci:{}:app:1", f.layout.display())])
        .output()?;
    let plain = Command::new("skopeo")
        .env("HOME", &home)
        .args(["copy", "-q"])
        .arg(format!("oci:{}:app:1", f.layout.display()))
        .arg(format!("dir:{}", t.path().join("d").display()))
        .output()?;
    ensure!(
        !plain.status.success() && String::from_utf8_lossy(&plain.stderr).contains("rejected"),
        "the policy should reject a plain copy: {plain:?} ({refused:?})"
    );
    for via_layout in [false, true] {
        let storage = Storage::new(&t.path().join(format!("s{via_layout}")));
        let mut cmd = Command::new(fixture::bin());
        cmd.env("HOME", &home)
            .arg("--repo")
            .arg(&repo)
            .args(["copy-to-storage", "app:1", "--target", "localhost/app:1"])
            .args(storage.flags());
        if via_layout {
            cmd.arg("--via-layout");
        }
        run(&mut cmd)?;
        let id = storage.podman(&["image", "inspect", "--format", "{{.Id}}", "localhost/app:1"])?;
        ensure!(
            format!("sha256:{}", id.trim()) == f.config_digest,
            "image ID changed (via layout: {via_layout})"
        );
    }
    Ok(())
}
