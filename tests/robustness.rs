//! Interruption, full disks, concurrent writers and hostile input: an export
//! is complete and proven, or it changed nothing.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fixtures::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Every manifest in the index resolves to blobs that exist with the right
/// digest, no blob is misnamed, and no stray file lies in the layout.
fn assert_layout_consistent(layout: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let bytes = read_blob(layout, digest);
        assert_eq!(sha256(&bytes), digest);
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut refs = vec![manifest["config"].clone()];
        refs.extend(manifest["layers"].as_array().unwrap().iter().cloned());
        for d in refs {
            let blob = read_blob(layout, d["digest"].as_str().unwrap());
            assert_eq!(sha256(&blob), d["digest"].as_str().unwrap());
            assert_eq!(blob.len() as u64, d["size"].as_u64().unwrap());
        }
    }
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            sha256(&std::fs::read(&p).unwrap()),
            format!("sha256:{name}"),
            "misnamed blob"
        );
    }
    for e in std::fs::read_dir(layout).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            [
                "blobs",
                "index.json",
                "oci-layout",
                ".cfs-export-blobs.json"
            ]
            .contains(&name.as_str()),
            "stray file {name}"
        );
    }
}

/// A small deterministic random source (no clock in the results).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

#[test]
fn kill_during_export_leaves_old_or_new_layout() {
    let t = tmp();
    let repo = t.path().join("repo");
    let big = TarBuilder::new()
        .file("big1", &noise(24 << 20, 11))
        .file("big2", &noise(8 << 20, 12))
        .finish(true);
    let small = TarBuilder::new().file("s", b"small").finish(false);
    let f = write_layout(
        &t.path().join("src"),
        "app",
        "amd64",
        &[(big, Kind::Gzip), (small, Kind::Tar)],
    );
    import(&repo, &f);
    let out = t.path().join("out");
    let dest = format!("oci:{}", out.display());
    cfs_ok(
        &repo,
        &[
            "export",
            "app",
            "--compression",
            "none",
            "--tag",
            "old",
            "--to",
            &dest,
        ],
    );
    // How long a full export takes, to kill at points spread across it.
    let start = Instant::now();
    let timing = format!("oci:{}", t.path().join("timing").display());
    cfs_ok(
        &repo,
        &["export", "app", "--compression", "gzip:1", "--to", &timing],
    );
    let full = start.elapsed();
    let mut rng = Lcg(0x5eed);
    for (i, signal) in ["KILL", "TERM", "INT", "KILL", "KILL", "TERM"]
        .iter()
        .enumerate()
    {
        let compression = ["zstd:3", "gzip:1", "zstd:9"][i % 3];
        let child = Command::new(bin())
            .arg("--repo")
            .arg(&repo)
            .args([
                "export",
                "app",
                "--compression",
                compression,
                "--tag",
                "new",
                "--to",
                &dest,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.next(full.as_millis() as u64 + 50));
        std::thread::sleep(delay);
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let mut child = child;
        child.wait().unwrap();
        assert_layout_consistent(&out);
        let (_, old) = manifest_for(&out, "old");
        assert_eq!(old["config"]["digest"], f.config_digest.as_str());
    }
    // Re-running completes, and the layout is whole.
    cfs_ok(
        &repo,
        &[
            "export",
            "app",
            "--compression",
            "zstd:3",
            "--tag",
            "new",
            "--to",
            &dest,
        ],
    );
    assert_layout_consistent(&out);
    let (_, new) = manifest_for(&out, "new");
    assert_eq!(new["config"]["digest"], f.config_digest.as_str());
}

/// Mount a small tmpfs (root only); `None` where mounting is not allowed.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[test]
fn full_disk_fails_cleanly() {
    let t = tmp();
    let Some(mnt) = Tmpfs::mount(&t.path().join("small"), "1m") else {
        assert!(
            !strict(),
            "mounting a tmpfs failed under CI=true (the tests run as root)"
        );
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    };
    let (repo, _f) = imported(t.path(), "app", &standard_layers());
    let out = mnt.0.join("out");
    let r = cfs(
        &repo,
        &["export", "app", "--to", &format!("oci:{}", out.display())],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(!out.join("index.json").exists());
    assert_eq!(
        std::fs::read_dir(out.join("blobs/sha256")).unwrap().count(),
        0,
        "partial blob"
    );

    // The skopeo hand-off checks the temp dir's space before writing anything:
    // through a layout ($TMPDIR), and streaming (skopeo's --tmpdir).
    for (extra, hint) in [
        (vec!["--via-layout"], "set TMPDIR"),
        (
            vec!["--tmpdir", mnt.0.to_str().unwrap()],
            "choose another with --tmpdir",
        ),
    ] {
        let r = Command::new(bin())
            .env("TMPDIR", &mnt.0)
            .env("SKOPEO", "/bin/false")
            .arg("--repo")
            .arg(&repo)
            .args(["export", "app", "--to", "containers-storage:localhost/x"])
            .args(&extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{err}");
        assert!(
            err.contains("Not enough space") && err.contains(hint),
            "{extra:?}: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(&mnt.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "out")
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }
}

#[test]
fn concurrent_writers() {
    let t = tmp();
    let repo = t.path().join("repo");
    let layers = standard_layers();
    let a = write_layout(&t.path().join("a"), "a", "amd64", &layers[..2]);
    let b = write_layout(&t.path().join("b"), "b", "arm64", &layers[1..]);
    let c = write_layout(&t.path().join("c"), "c", "amd64", &[layers[2].clone()]);
    import(&repo, &a);
    import(&repo, &b);
    let out = t.path().join("out");
    let spawn = |args: Vec<String>| {
        Command::new(bin())
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for round in 0..3 {
        let dest = format!("oci:{}", out.display());
        let x = spawn(vec![
            "export".into(),
            "a".into(),
            "--compression".into(),
            "zstd".into(),
            "--to".into(),
            dest.clone(),
        ]);
        let y = spawn(vec![
            "export".into(),
            "b".into(),
            "--to".into(),
            dest.clone(),
        ]);
        // An import into the repository while it is being read.
        let z = spawn(vec![
            "import".into(),
            format!("oci:{}:c", c.layout.display()),
            "--tag".into(),
            format!("c{round}"),
        ]);
        for p in [x, y, z] {
            let o = p.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        assert_layout_consistent(&out);
        manifest_for(&out, "a");
        manifest_for(&out, "b");
    }
    let list: serde_json::Value =
        serde_json::from_str(&cfs_ok(&repo, &["--json", "list"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3);
}

#[test]
fn hostile_destinations_and_tags() {
    let t = tmp();
    let (repo, _f) = imported(t.path(), "app", &standard_layers()[2..]);
    let out = t.path().join("out");
    for bad in [
        format!("oci:{}:../x", out.display()),
        format!("oci:{}:a/../b", out.display()),
        format!("oci:{}:{}", out.display(), "t".repeat(300)),
        format!("oci:{}:-rm", out.display()),
        "oci:".to_string(),
        "nonsense:/x".to_string(),
    ] {
        let r = cfs(&repo, &["export", "app", "--to", &bad]);
        assert_eq!(
            r.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    assert!(!out.exists());
    for bad in ["../x", "a\tb"] {
        let r = cfs(
            &repo,
            &[
                "export",
                "app",
                "--tag",
                bad,
                "--to",
                &format!("oci:{}", out.display()),
            ],
        );
        assert_eq!(r.status.code(), Some(2), "{bad}");
    }

    // index.json as a symlink to a file outside: replaced, never written through.
    let outside = t.path().join("outside.json");
    std::fs::write(&outside, b"do not touch").unwrap();
    std::fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("index.json")).unwrap();
    let r = cfs(
        &repo,
        &["export", "app", "--to", &format!("oci:{}", out.display())],
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
    if r.status.success() {
        assert!(!std::fs::symlink_metadata(out.join("index.json"))
            .unwrap()
            .is_symlink());
    }

    // blobs/sha256 as a symlink pointing outside: refused, nothing written there.
    let out2 = t.path().join("out2");
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(out2.join("blobs")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out2.join("blobs/sha256")).unwrap();
    let r = cfs(
        &repo,
        &["export", "app", "--to", &format!("oci:{}", out2.display())],
    );
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// Build a tar archive of `layout` with extra raw entries appended.
fn archive_with(layout: &Path, extra: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", layout).unwrap();
    for (name, kind, target) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(0);
        h.set_mode(0o644);
        // Raw names: the tar crate refuses to write `..` through set_path.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if !target.is_empty() {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_import_sources() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(
        &t.path().join("src"),
        "app",
        "amd64",
        &standard_layers()[2..],
    );
    let cases: [(&str, tar::EntryType, &str); 4] = [
        ("../escape", tar::EntryType::Regular, ""),
        ("/abs/escape", tar::EntryType::Regular, ""),
        ("blobs/sha256/link", tar::EntryType::Symlink, "/etc/passwd"),
        ("blobs/sha256/hard", tar::EntryType::Link, "/etc/passwd"),
    ];
    for (i, case) in cases.iter().enumerate() {
        let archive = t.path().join(format!("a{i}.tar"));
        std::fs::write(&archive, archive_with(&f.layout, &[*case])).unwrap();
        let r = cfs(
            &repo,
            &["import", &format!("oci-archive:{}:app", archive.display())],
        );
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{case:?}: {err}");
        assert!(err.contains("unsafe entry"), "{err}");
    }
    assert!(!t.path().join("escape").exists());
    // A clean archive of the same layout imports.
    let archive = t.path().join("clean.tar");
    std::fs::write(&archive, archive_with(&f.layout, &[])).unwrap();
    cfs_ok(
        &repo,
        &["import", &format!("oci-archive:{}:app", archive.display())],
    );

    // An oci: source whose blob is a symlink to a file outside the layout, even
    // one with the right content, is refused.
    let repo2 = t.path().join("repo2");
    let (digest, blob) = &f.blobs[0];
    let outside = t.path().join("outside-blob");
    std::fs::write(&outside, blob).unwrap();
    let p = f.layout.join("blobs/sha256").join(&digest[7..]);
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&outside, &p).unwrap();
    let r = cfs(
        &repo2,
        &["import", &format!("oci:{}:app", f.layout.display())],
    );
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}
