//! Tests of `stream`.

use super::*;

#[test]
fn targets_by_destination() {
    let transfer = TransferOptions::default();
    for (dest, preserve, writes_into) in [
        ("docker://h:5000/x:1", true, None),
        ("dir:/a/b", true, Some("/a")),
        ("dir:rel", true, Some(".")),
        ("docker-archive:/c/d.tar:x:1", false, Some("/c")),
        ("docker-daemon:x:1", false, None),
    ] {
        let target = Target::new(&ImageLocation::parse(dest).unwrap(), &transfer).unwrap();
        assert_eq!(target.skopeo_dest, dest);
        assert_eq!(target.preserve_digests, preserve, "{dest}");
        assert_eq!(target.writes_into.as_deref(), writes_into.map(Path::new));
        assert!(target.storage.is_none());
        assert_eq!(target.tmp_base, runtime_dir(), "{dest}");
    }
    let tmpdir = TransferOptions {
        tmpdir: Some("/t".into()),
        ..TransferOptions::default()
    };
    let target = Target::new(&ImageLocation::parse("docker://h/x").unwrap(), &tmpdir).unwrap();
    assert_eq!(target.tmp_base, Path::new("/t"));
}

#[test]
fn stale_dirs_of_dead_runs_only() {
    let t = tempfile::tempdir().unwrap();
    let dead_empty = t.path().join("cfs-export-999999999-a");
    let dead_full = t.path().join("cfs-export-999999998-b");
    let alive = t
        .path()
        .join(format!("cfs-export-{}-c", std::process::id()));
    let other = t.path().join("cfs-export-notapid");
    for d in [&dead_empty, &dead_full, &alive, &other] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(dead_full.join("blob"), b"x").unwrap();
    for ours in OWN_FILES {
        std::fs::write(dead_empty.join(ours), b"{}").unwrap();
        std::fs::write(alive.join(ours), b"{}").unwrap();
    }
    remove_stale_dirs(t.path());
    assert!(!dead_empty.exists());
    assert!(dead_full.exists() && alive.exists() && other.exists());
}
