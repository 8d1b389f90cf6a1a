//! Fault injection: damage in the repository is found and named, exports fail
//! with exit 1 and leave the destination exactly as it was.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use fixtures::*;

struct Setup {
    _t: tempfile::TempDir,
    repo: PathBuf,
    out: PathBuf,
    f: Fixture,
}

/// A repo with the standard image and an existing export of it (uncompressed).
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let (repo, f) = imported(t.path(), "app", &standard_layers());
    let out = t.path().join("out");
    cfs_ok(
        &repo,
        &[
            "export",
            "app",
            "--compression",
            "none",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    Setup {
        _t: t,
        repo,
        out,
        f,
    }
}

/// The object a stream symlink points at.
fn stream_object(repo: &Path, stream: &str) -> PathBuf {
    let target = std::fs::read_link(repo.join("streams").join(stream)).unwrap();
    repo.join("streams").join(target)
}

fn rel(repo: &Path, p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or(p.to_path_buf())
        .strip_prefix(std::fs::canonicalize(repo).unwrap())
        .unwrap()
        .display()
        .to_string()
}

/// `verify` and `export` both fail with exit 1 and say `expect`; the export
/// destination is untouched.
fn assert_fails(s: &Setup, expect: &[&str]) {
    let v = cfs(&s.repo, &["verify", "--all"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(v.status.code(), Some(1), "verify: {text}");
    for e in expect {
        assert!(text.contains(e), "verify output lacks {e:?}: {text}");
    }
    assert!(!text.contains("panicked"), "{text}");

    let before = snapshot(&s.out);
    let x = cfs(
        &s.repo,
        &[
            "export",
            "app",
            "--compression",
            "gzip",
            "--tag",
            "again",
            "--to",
            &format!("oci:{}", s.out.display()),
        ],
    );
    let err = String::from_utf8_lossy(&x.stderr);
    assert_eq!(x.status.code(), Some(1), "export: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("app"), "export error names the image: {err}");
    assert_same_tree(&before, &snapshot(&s.out));
}

#[test]
fn intact_repository_verifies() {
    let s = setup();
    let out = cfs_ok(&s.repo, &["--json", "verify", "--all"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["layers_checked"], 3);
    let total: usize = s.f.tars.iter().map(Vec::len).sum();
    assert_eq!(report["bytes_checked"], total as u64);
}

#[test]
fn flipped_byte_in_object() {
    let s = setup();
    let obj = biggest_object(&s.repo);
    rewrite(&obj, |d| d[12345] ^= 0x80);
    let path = rel(&s.repo, &obj);
    assert_fails(
        &s,
        &[
            "layer 1",
            &s.f.diff_ids[0],
            &path,
            "does not match its name",
        ],
    );
}

#[test]
fn object_missing() {
    let s = setup();
    let obj = biggest_object(&s.repo);
    std::fs::remove_file(&obj).unwrap();
    assert_fails(&s, &["layer 1", &rel_missing(&s.repo, &obj), "is missing"]);
}

fn rel_missing(repo: &Path, p: &Path) -> String {
    p.strip_prefix(repo).unwrap().display().to_string()
}

#[test]
fn object_truncated() {
    let s = setup();
    let obj = biggest_object(&s.repo);
    rewrite(&obj, |d| d.truncate(d.len() / 2));
    assert_fails(&s, &["layer 1", &rel(&s.repo, &obj)]);
}

#[test]
fn split_stream_truncated() {
    let s = setup();
    let obj = stream_object(&s.repo, &format!("oci-layer-{}", s.f.diff_ids[1]));
    rewrite(&obj, |d| d.truncate(d.len() / 2));
    assert_fails(&s, &["layer 2", &s.f.diff_ids[1], &rel(&s.repo, &obj)]);
}

#[test]
fn split_stream_garbled() {
    let s = setup();
    let obj = stream_object(&s.repo, &format!("oci-layer-{}", s.f.diff_ids[0]));
    rewrite(&obj, |d| {
        let n = d.len();
        for b in &mut d[n / 2..n / 2 + 64] {
            *b ^= 0x5a;
        }
    });
    assert_fails(&s, &["layer 1", &s.f.diff_ids[0], &rel(&s.repo, &obj)]);
}

#[test]
fn config_stream_missing() {
    let s = setup();
    let obj = stream_object(&s.repo, &format!("oci-config-{}", s.f.config_digest));
    std::fs::remove_file(&obj).unwrap();
    assert_fails(&s, &[&s.f.config_digest, "re-pull"]);
}

#[test]
fn manifest_refers_to_missing_config() {
    let s = setup();
    let link = s
        .repo
        .join("streams")
        .join(format!("oci-config-{}", s.f.config_digest));
    let obj = stream_object(&s.repo, &format!("oci-config-{}", s.f.config_digest));
    std::fs::remove_file(&obj).unwrap();
    std::fs::remove_file(&link).unwrap();
    assert_fails(&s, &[&s.f.config_digest]);
}

#[test]
fn repository_locked_by_another_process() {
    let s = setup();
    use std::os::unix::process::CommandExt;
    // Its own process group, so that stopping it also stops the `sleep`
    // that inherits the lock.
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&s.repo)
        .args(["sleep", "60"])
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until the lock is really held.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let probe = Command::new("flock")
            .args(["-n", "-s"])
            .arg(&s.repo)
            .arg("true")
            .status()
            .unwrap();
        if !probe.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = snapshot(&s.out);
    for args in [
        vec!["list"],
        vec!["verify", "--all"],
        vec!["export", "app", "--to", &format!("oci:{}", s.out.display())],
    ] {
        let r = cfs(&s.repo, &args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("locked exclusively by another process"),
            "{err}"
        );
    }
    assert_same_tree(&before, &snapshot(&s.out));
    let group = format!("-{}", holder.id());
    Command::new("kill")
        .args(["-TERM", "--", &group])
        .status()
        .unwrap();
    holder.wait().unwrap();
    // The `sleep` that inherited the lock may outlive `flock` by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !Command::new("flock")
        .args(["-n", "-s"])
        .arg(&s.repo)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never released"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cfs_ok(&s.repo, &["list"]);
}

/// The object file whose content is exactly `bytes`.
fn object_holding(repo: &Path, bytes: &[u8]) -> PathBuf {
    for d in std::fs::read_dir(repo.join("objects")).unwrap() {
        let d = d.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&d).unwrap() {
            let p = f.unwrap().path();
            if std::fs::read(&p).unwrap() == bytes {
                return p;
            }
        }
    }
    panic!("no object holds those bytes");
}

/// Issue 14: a damaged manifest does not make the image vanish: `list` marks
/// it, `export` and `verify` name the tag and the damaged object.
#[test]
fn damaged_manifest_is_named_not_hidden() {
    let s = setup();
    let obj = object_holding(&s.repo, &s.f.manifest_bytes);
    rewrite(&obj, |d| d[10] ^= 0x01);
    let path = rel(&s.repo, &obj);
    assert_fails(&s, &["the manifest of app", &path, "re-pull the image"]);

    let list = cfs(&s.repo, &["list"]);
    let (out, err) = (
        String::from_utf8_lossy(&list.stdout),
        String::from_utf8_lossy(&list.stderr),
    );
    assert!(list.status.success(), "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("app "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("DAMAGED") && row.contains(&s.f.config_digest[7..19]),
        "{out}"
    );
    assert!(
        err.contains("the manifest of app") && err.contains(&path),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cfs_ok(&s.repo, &["--json", "list"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "no <none> row: {json}");
    assert!(
        json[0]["damaged"].as_str().unwrap().contains(&path),
        "{json}"
    );

    let x = cfs(
        &s.repo,
        &["export", "app", "--to", &format!("oci:{}", s.out.display())],
    );
    let err = String::from_utf8_lossy(&x.stderr);
    assert!(
        err.contains("the manifest of app") && !err.contains("not found"),
        "{err}"
    );
}

/// Issue 14: a bit flipped where a layer's split-stream is not read still
/// makes `verify` fail, naming the stream object.
#[test]
fn damaged_layer_stream_object_is_found_by_verify() {
    let s = setup();
    let stream = stream_object(&s.repo, &format!("oci-layer-{}", s.f.diff_ids[2]));
    // Byte 13 is the header's flags field, which readers ignore.
    rewrite(&stream, |d| d[13] ^= 0x01);
    let v = cfs(&s.repo, &["verify", "--all"]);
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{err}");
    assert!(
        err.contains("layer 3") && err.contains(&rel(&s.repo, &stream)),
        "{err}"
    );
}
