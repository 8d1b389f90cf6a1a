//! The command line as people and scripts see it: JSON documents, exit codes,
//! help with examples, man pages, completions, quiet stderr when piped.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use fixtures::*;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
}

#[test]
fn json_documents() {
    let t = tempfile::tempdir().unwrap();
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app:1", "arm64", &standard_layers());
    let imp = json(&cfs_ok(
        &repo,
        &[
            "--json",
            "import",
            &format!("oci:{}:app:1", f.layout.display()),
        ],
    ));
    assert_eq!(imp["tag"], "app:1");
    assert_eq!(imp["config_digest"], f.config_digest.as_str());
    assert_eq!(imp["manifest_digest"], f.manifest_digest.as_str());
    assert_eq!(imp["platform"], "linux/arm64");
    assert_eq!(imp["layers"].as_array().unwrap().len(), 3);
    assert_eq!(imp["layers"][0]["stored"], true);

    let list = json(&cfs_ok(&repo, &["--json", "list"]));
    let row = &list[0];
    assert_eq!(row["tags"], serde_json::json!(["app:1"]));
    assert_eq!(row["image_id"], f.config_digest.as_str());
    assert_eq!(row["layers"], 3);
    assert_eq!(
        row["size"],
        f.tars.iter().map(Vec::len).sum::<usize>() as u64
    );

    let out = t.path().join("out");
    let exp = json(&cfs_ok(
        &repo,
        &[
            "--json",
            "export",
            "app:1",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    ));
    assert_eq!(exp["destination"], format!("oci:{}", out.display()));
    assert!(exp["export_seconds"].as_f64().unwrap() > 0.0);
    assert!(exp["transfer_seconds"].is_null(), "no hand-off for oci:");
    let img = &exp["images"][0];
    assert_eq!(img["config_digest"], f.config_digest.as_str());
    assert_eq!(img["tag"], "app:1");
    assert_eq!(img["platform"], "linux/arm64");
    for (i, l) in img["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(l["diff_id"], f.diff_ids[i].as_str());
        assert_eq!(l["size"], f.tars[i].len() as u64);
        assert_eq!(l["status"], "written");
        assert!(l["blob_digest"].as_str().unwrap().starts_with("sha256:"));
    }
    let ver = json(&cfs_ok(&repo, &["--json", "verify", "app:1"]));
    assert_eq!(ver["images_checked"], 1);
    assert_eq!(ver["findings"], serde_json::json!([]));

    // Errors are JSON too, with the exit code unchanged.
    let r = cfs(
        &repo,
        &[
            "--json",
            "export",
            "nope",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(json(&String::from_utf8_lossy(&r.stdout))["error"]
        .as_str()
        .unwrap()
        .contains("not found"));
    let r = cfs(&repo, &["--json", "export", "app:1"]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(json(&String::from_utf8_lossy(&r.stdout))["usage"], true);
}

#[test]
fn piped_output_is_quiet_and_names_are_suggested() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _f) = imported(t.path(), "myapp:1", &standard_layers()[2..]);
    let out = t.path().join("out");
    let r = cfs(
        &repo,
        &[
            "export",
            "myapp:1",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    assert!(r.status.success());
    assert!(
        r.stderr.is_empty(),
        "no progress when not a TTY: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let r = cfs(
        &repo,
        &[
            "-q",
            "export",
            "myapp:1",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    assert!(r.stdout.is_empty() && r.stderr.is_empty());
    let r = cfs(
        &repo,
        &[
            "export",
            "myap:1",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("did you mean myapp:1?"), "{err}");
}

#[test]
fn help_has_examples() {
    for cmd in [
        "list",
        "export",
        "copy-to-storage",
        "verify",
        "import",
        "man",
        "completions",
    ] {
        let out = Command::new(bin()).args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd}");
        assert!(
            text.contains("Example"),
            "{cmd} --help has no example:\n{text}"
        );
    }
}

/// Issue 26: each command's help lists only the options that apply to it,
/// the global ones under their own heading.
#[test]
fn help_fits_each_command() {
    let help = |cmd: &str| {
        let out = Command::new(bin()).args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        String::from_utf8(out.stdout).unwrap()
    };
    let storage = help("copy-to-storage");
    for flag in ["--authfile", "--dest-tls-verify", "--creds-file"] {
        assert!(
            !storage.contains(flag),
            "copy-to-storage lists {flag}:\n{storage}"
        );
    }
    for flag in ["--storage-root", "--tmpdir", "--via-layout", "--target"] {
        assert!(
            storage.contains(flag),
            "copy-to-storage lacks {flag}:\n{storage}"
        );
    }
    let export = help("export");
    for flag in [
        "--authfile",
        "--dest-tls-verify",
        "--creds-file",
        "--storage-root",
    ] {
        assert!(export.contains(flag), "export lacks {flag}:\n{export}");
    }
    for text in [&storage, &export, &help("list"), &help("verify")] {
        let (own, global) = text
            .split_once("Global options:")
            .expect("a Global options heading");
        assert!(
            global.contains("--repo") && global.contains("--json"),
            "{text}"
        );
        assert!(
            !own.contains("--repo <PATH>") && !own.contains("--json"),
            "{text}"
        );
    }
    let out = Command::new(bin())
        .args(["copy-to-storage", "--authfile", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "--authfile is a usage error there"
    );
}

#[test]
fn man_pages_render() {
    let t = tempfile::tempdir().unwrap();
    let r = Command::new(bin())
        .args(["man", "--dir"])
        .arg(t.path())
        .status()
        .unwrap();
    assert!(r.success());
    for page in [
        "cfs-export",
        "cfs-export-export",
        "cfs-export-copy-to-storage",
        "cfs-export-verify",
    ] {
        let path = t.path().join(format!("{page}.1"));
        assert!(path.exists(), "{page}.1");
        if have_tool("man") {
            let out = Command::new("man")
                .arg("-l")
                .arg(&path)
                .env("MANWIDTH", "80")
                .env("MANPAGER", "cat")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "man -l {page}.1: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("NAME") && text.contains(page), "{text}");
        } else {
            assert!(std::env::var("CI").is_err(), "man is missing under CI=true");
        }
    }
    let out = Command::new(bin()).arg("man").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH cfs-export"));
}

#[test]
fn completions_load_in_bash() {
    let script = format!(
        "source <('{}' completions bash) && complete -p cfs-export && COMP_WORDS=(cfs-export exp) COMP_CWORD=1 COMP_LINE='cfs-export exp' COMP_POINT=14 && _cfs__export cfs-export exp cfs-export && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        bin().display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _cfs__export cfs-export"), "{text}");
    assert!(
        text.lines().any(|l| l == "export"),
        "completing `exp` offers export: {text}"
    );
    for shell in ["zsh", "fish"] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}

/// Issue 13, defect 1: a reader that stops reading (`| head -1`, `| true`) is
/// a normal end: exit 0 and nothing on stderr, for every printing command.
#[test]
fn closed_stdout_is_a_normal_end() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = imported(t.path(), "app:1", &standard_layers());
    for args in [
        vec!["list"],
        vec!["--json", "list"],
        vec!["man"],
        vec!["completions", "bash"],
        vec!["verify", "--all"],
    ] {
        // The read end is closed before cfs-export starts: its first write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(bin())
            .arg("--repo")
            .arg(&repo)
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed {err}");
    }
}

/// Issue 13, defects 2 and 3: conflicting or misplaced options are usage
/// errors (exit 2) found before the repository is read, and nothing is written.
#[test]
fn options_are_checked_before_any_work() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = imported(t.path(), "app:1", &standard_layers());
    let out_dir = t.path().join("out");
    let to = format!("oci:{}", out_dir.display());
    let creds = t.path().join("creds");
    std::fs::write(&creds, "u:p\n").unwrap();
    let creds = creds.display().to_string();
    let missing_repo = t.path().join("no-repo");
    for (args, says) in [
        (
            vec!["export", "app:1", "--tag", "a", "--to", &format!("{to}:b")],
            "two tags for one destination",
        ),
        (
            vec!["export", "app:1", "--to", &to, "--creds-file", &creds],
            "--creds-file does not apply to oci:",
        ),
        (
            vec![
                "export",
                "app:1",
                "--to",
                "dir:/tmp/x",
                "--creds-file",
                &creds,
            ],
            "--creds-file is for docker:// destinations",
        ),
        (
            vec![
                "export",
                "app:1",
                "--to",
                "docker://h/x",
                "--storage-root",
                "/tmp/r",
            ],
            "are for containers-storage: destinations",
        ),
        (
            vec!["copy-to-storage", "--storage-driver", "vfs"],
            "need --storage-root",
        ),
        (
            vec!["copy-to-storage", "--target", "docker://h/x"],
            "copy-to-storage writes to containers-storage",
        ),
    ] {
        for r in [&repo, &missing_repo] {
            let out = cfs(r, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(says), "{args:?}: {err}");
        }
        assert!(!out_dir.exists(), "{args:?} wrote {}", out_dir.display());
    }
    // The one tag given either way is the tag written.
    cfs_ok(
        &repo,
        &["export", "app:1", "--tag", "b", "--to", &format!("{to}:b")],
    );
    manifest_for(&out_dir, "b");
}

/// Issue 13, defect 4: a failed import into a new repository leaves no
/// repository behind, and a truncated archive is called that.
#[test]
fn failed_import_creates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = imported(t.path(), "app:1", &standard_layers());
    let archive = t.path().join("a.tar");
    cfs_ok(
        &repo,
        &[
            "export",
            "app:1",
            "--to",
            &format!("oci-archive:{}", archive.display()),
        ],
    );
    let len = std::fs::metadata(&archive).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap();
    f.set_len(len / 2).unwrap();
    let fresh = t.path().join("new/parent/repo");
    let out = cfs(
        &fresh,
        &["import", &format!("oci-archive:{}", archive.display())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is truncated or damaged"), "{err}");
    assert!(
        !t.path().join("new").exists(),
        "the failed import left {}",
        fresh.display()
    );
    // An existing repository is left as it was.
    let before = snapshot(&repo);
    let out = cfs(
        &repo,
        &["import", &format!("oci-archive:{}", archive.display())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_same_tree(&before, &snapshot(&repo));
}

/// Issue 13, defects 5 and 6: archives are created 0666 less the umask, like
/// skopeo's and podman's; index.json is canonical JSON (sorted keys).
#[test]
fn archive_mode_and_canonical_index() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = imported(t.path(), "app:1", &standard_layers());
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let archive = t.path().join(format!("a-{umask}.tar"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(bin())
            .arg("--repo")
            .arg(&repo)
            .args([
                "export",
                "app:1",
                "--to",
                &format!("oci-archive:{}", archive.display()),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        let got = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}");
    }
    let layout = t.path().join("layout");
    cfs_ok(
        &repo,
        &[
            "export",
            "app:1",
            "--to",
            &format!("oci:{}:x", layout.display()),
        ],
    );
    cfs_ok(
        &repo,
        &[
            "export",
            "app:1",
            "--to",
            &format!("oci:{}:y", layout.display()),
        ],
    );
    let bytes = std::fs::read(layout.join("index.json")).unwrap();
    // serde_json's map is sorted: re-serializing compactly gives canonical bytes.
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
    assert_eq!(value["manifests"].as_array().unwrap().len(), 2);
}

/// Issue 12: `oci-archive:` is written straight from the repository: no
/// temporary layout (TMPDIR need not even exist), every entry named by its
/// content's digest, nothing but the archive left; a damaged layer leaves no
/// archive and no temp file.
#[test]
fn archive_streams_without_temp_layout() {
    let t = tempfile::tempdir().unwrap();
    let (repo, f) = imported(t.path(), "app:1", &standard_layers());
    let out_dir = t.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    for compression in ["original", "none", "zstd"] {
        let archive = out_dir.join(format!("{compression}.tar"));
        let out = Command::new(bin())
            .env("TMPDIR", t.path().join("no-such-dir"))
            .arg("--repo")
            .arg(&repo)
            .args(["export", "app:1", "--compression", compression, "--to"])
            .arg(format!("oci-archive:{}", archive.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut entries = std::collections::BTreeMap::new();
        let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(
                    sha256(&data),
                    format!("sha256:{hex}"),
                    "{compression}: {name}"
                );
            }
            entries.insert(name, data);
        }
        let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries[&format!("blobs/sha256/{}", &mdigest[7..])]).unwrap();
        assert_eq!(manifest["config"]["digest"], f.config_digest.as_str());
        for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
            let blob = &entries[&format!("blobs/sha256/{}", &l["digest"].as_str().unwrap()[7..])];
            let tar = decompress(l["mediaType"].as_str().unwrap(), blob);
            assert_eq!(sha256(&tar), f.diff_ids[i], "{compression}: layer {i}");
        }
    }
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "only the archives: {names:?}");

    rewrite(&biggest_object(&repo), |d| d[100] ^= 1);
    let bad = out_dir.join("bad.tar");
    let out = cfs(
        &repo,
        &[
            "export",
            "app:1",
            "--to",
            &format!("oci-archive:{}", bad.display()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("layer 1") && err.contains("objects/"), "{err}");
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        3,
        "a partial archive was left"
    );
}
