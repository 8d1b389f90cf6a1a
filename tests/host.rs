//! Issue 11 at the library level: a bootc host tree (three deployments of one
//! image name, sharing layers) generated in a temp dir; images found the way
//! bootc finds them; every bad input a clear error with nothing written.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use fixtures::*;

/// The image name all three deployments were made from.
const NAME: &str = "quay.io/example/os:latest";

struct Host {
    _t: tempfile::TempDir,
    tree: HostTree,
    /// v1 (rollback), v2 (booted), v3 (staged).
    images: Vec<Fixture>,
    ids: Vec<String>,
}

fn version_layers(v: u32) -> Vec<LayerSpec> {
    let base = TarBuilder::new()
        .dir("usr")
        .file("usr/base", &noise(200_000, 1))
        .finish(true);
    let top = TarBuilder::new()
        .dir("etc")
        .file("etc/os-version", format!("VERSION={v}\n").as_bytes())
        .finish(false);
    vec![(base, Kind::Gzip), (top, Kind::Tar)]
}

/// Booted v2, staged v3 (same name, as after `bootc upgrade`), rollback v1.
fn host() -> Host {
    let t = tempfile::tempdir().unwrap();
    let tree = HostTree::new(t.path());
    let mut images = Vec::new();
    for v in 1..=3 {
        let mut f = write_layout(
            &t.path().join(format!("src{v}")),
            "os",
            "amd64",
            &version_layers(v),
        );
        // bootc tags each deployed image by its manifest digest only.
        let bootc_tag = format!("localhost/bootc-{}", f.manifest_digest);
        cfs_ok(
            &tree.repo(),
            &[
                "import",
                &format!("oci:{}:os", f.layout.display()),
                "--tag",
                &bootc_tag,
            ],
        );
        f.tag = bootc_tag;
        images.push(f);
    }
    let manifests: Vec<String> = images.iter().map(|f| f.manifest_digest.clone()).collect();
    let ids = tree.upgraded(NAME, &manifests);
    Host {
        _t: t,
        tree,
        images,
        ids,
    }
}

impl Host {
    fn run(&self, args: &[&str]) -> Output {
        self.tree.cfs(&self.tree.sysroot, args)
    }

    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cfs-export {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Exit 1 with one `error:` line containing every part; returns stderr.
    fn fails(&self, args: &[&str], parts: &[&str]) -> String {
        fails(&self.run(args), args, parts)
    }
}

fn fails(out: &Output, args: &[&str], parts: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for p in parts {
        assert!(err.contains(p), "{args:?}: {p:?} not in {err}");
    }
    err
}

/// The config digest (image ID) of the image `tag` names in an OCI layout.
fn exported_id(layout: &Path, tag: &str) -> String {
    let (_, m) = manifest_for(layout, tag);
    let id = m["config"]["digest"].as_str().unwrap().to_string();
    assert_eq!(sha256(&read_blob(layout, &id)), id);
    id
}

fn out_dir(h: &Host, name: &str) -> PathBuf {
    h.tree.sysroot.parent().unwrap().join(name)
}

#[test]
fn roles_and_names_as_bootc_sees_them() {
    let h = host();
    let list: serde_json::Value = serde_json::from_str(&h.ok(&["--json", "list"]).0).unwrap();
    let roles = |id: &str| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["image_id"] == id)
            .unwrap()["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["image"], NAME);
                d["role"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(roles(&h.images[0].config_digest), ["rollback"]);
    assert_eq!(roles(&h.images[1].config_digest), ["booted"]);
    assert_eq!(roles(&h.images[2].config_digest), ["staged"]);

    // The table stays aligned with bootc's 80-character tags.
    let (table, _) = h.ok(&["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let col = lines[0].find("IMAGE ID").unwrap();
    for line in &lines[1..] {
        let f = h
            .images
            .iter()
            .find(|f| line.starts_with(&format!("localhost/bootc-{} ", f.manifest_digest)))
            .unwrap_or_else(|| panic!("no bootc tag at the start of {line:?}"));
        assert_eq!(&line[col..col + 12], &f.config_digest[7..19], "{table}");
    }
    assert!(
        table.contains(&format!("booted {} {NAME}", &h.ids[1][..12])),
        "{table}"
    );
}

#[test]
fn images_found_the_way_bootc_finds_them() {
    let h = host();
    let (v1, v2, v3) = (&h.images[0], &h.images[1], &h.images[2]);

    // `booted` keeps the image ID, though the staged image has the same name.
    let out = out_dir(&h, "booted");
    let (_, err) = h.ok(&[
        "export",
        "booted",
        "--to",
        &format!("oci:{}:b", out.display()),
    ]);
    assert_eq!(exported_id(&out, "b"), v2.config_digest);
    assert!(err.contains("is the booted deployment"), "{err}");

    // A name matches all three: bootc's order picks staged, and says so.
    for selector in [NAME, "quay.io/example/os", &format!("docker://{NAME}")] {
        let out = out_dir(&h, "byname");
        let args = [
            "--json",
            "export",
            selector,
            "--to",
            &format!("oci:{}:n", out.display()),
        ];
        let (json, err) = h.ok(&args);
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(exported_id(&out, "n"), v3.config_digest, "{selector}");
        let d = &report["images"][0]["deployment"];
        assert_eq!(d["role"], "staged", "{report}");
        assert_eq!(d["id"], h.ids[2].as_str());
        assert_eq!(d["image"], NAME);
        assert_eq!(
            d["also_matched"],
            serde_json::json!([
                format!("booted {}", &h.ids[1][..12]),
                format!("rollback {}", &h.ids[0][..12])
            ])
        );
        assert!(err.contains("also matched, not used"), "{err}");
    }

    // --deployment by role and by ID prefix; verify takes them too.
    for (args, want) in [
        (vec!["--deployment", "rollback"], v1),
        (vec!["--deployment", &h.ids[2][..16]], v3),
        (vec!["--deployment", "booted"], v2),
        (vec!["staged"], v3),
    ] {
        let out = out_dir(&h, "dep");
        let mut a = vec!["export"];
        a.extend(args.iter().copied());
        let to = format!("oci:{}:d", out.display());
        a.extend(["--to", &to]);
        h.ok(&a);
        assert_eq!(exported_id(&out, "d"), want.config_digest, "{args:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }
    let (v, _) = h.ok(&["verify", "rollback"]);
    assert!(v.contains("all intact"), "{v}");
    let (v, _) = h.ok(&["--json", "verify", "--deployment", "staged"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["deployments"][0]["role"], "staged", "{v}");
    assert_eq!(v["deployments"][0]["id"], h.ids[2].as_str());
    // Tags and digests still work.
    let out = out_dir(&h, "tag");
    h.ok(&[
        "export",
        &v1.tag,
        "--to",
        &format!("oci:{}:t", out.display()),
    ]);
    assert_eq!(exported_id(&out, "t"), v1.config_digest);

    // No such name: bootc's wording plus what there is.
    h.fails(
        &[
            "export",
            "docker://quay.io/example/other:1",
            "--to",
            "oci:/nonexistent/x",
        ],
        &[
            "Image docker://quay.io/example/other:1 not found",
            "booted",
            NAME,
        ],
    );
}

#[test]
fn works_on_a_read_only_sysroot() {
    let h = host();
    let before = snapshot(&h.tree.sysroot);
    let mnt = out_dir(&h, "ro");
    std::fs::create_dir_all(&mnt).unwrap();
    let mount = |args: &[&str]| {
        std::process::Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let target = mnt.to_str().unwrap();
    if !mount(&["--bind", h.tree.sysroot.to_str().unwrap(), target]) {
        assert!(!strict(), "bind mounts are needed under CI (run as root)");
        eprintln!("skipped: cannot bind-mount (not root?)");
        return;
    }
    let ro = mount(&["-o", "remount,ro,bind", target]);
    let out = out_dir(&h, "from-ro");
    let result = h.tree.cfs(
        &mnt,
        &[
            "export",
            "booted",
            "--to",
            &format!("oci:{}:b", out.display()),
        ],
    );
    let listed = h.tree.cfs(&mnt, &["list"]);
    let verified = h.tree.cfs(&mnt, &["verify", "--all"]);
    let probe = std::fs::write(mnt.join("probe"), b"x");
    assert!(
        mount(&["-l", "-u", target])
            || std::process::Command::new("umount")
                .arg("-l")
                .arg(target)
                .status()
                .is_ok()
    );
    assert!(ro, "remounting read-only failed");
    assert!(probe.is_err(), "the bind mount is writable");
    for (what, o) in [
        ("export", &result),
        ("list", &listed),
        ("verify", &verified),
    ] {
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(exported_id(&out, "b"), h.images[1].config_digest);
    assert_same_tree(&before, &snapshot(&h.tree.sysroot));
}

fn strict() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

#[test]
fn bad_host_input_is_a_clear_error_and_writes_nothing() {
    let h = host();
    let out = out_dir(&h, "never");
    let to = format!("oci:{}:x", out.display());
    let origin = |i: usize| {
        h.tree
            .sysroot
            .join(format!("state/deploy/{0}/{0}.origin", h.ids[i]))
    };

    // Not booted via composefs.
    std::fs::write(
        &h.tree.cmdline,
        "root=/dev/sda1 rw
",
    )
    .unwrap();
    h.fails(
        &["export", "booted", "--to", &to],
        &["not booted from a composefs deployment", "composefs="],
    );
    h.fails(
        &["copy-to-storage"],
        &[
            "not booted from a composefs deployment",
            "holds 3 images",
            "localhost/bootc-sha256:",
        ],
    );
    h.tree.boot(&h.ids[1]);

    // A --sysroot that is not one.
    let empty = out_dir(&h, "empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails(
        &h.tree.cfs(&empty, &["list"]),
        &["list"],
        &["is not a bootc sysroot", "state/deploy"],
    );

    // The booted deployment without origin, then without image reference.
    let saved = std::fs::read(origin(1)).unwrap();
    std::fs::remove_file(origin(1)).unwrap();
    h.fails(
        &["export", "booted", "--to", &to],
        &[
            "booted deployment",
            "origin file",
            &origin(1).display().to_string(),
            "missing",
        ],
    );
    std::fs::write(
        origin(1),
        "[origin]
[boot]
boot_type = bls
",
    )
    .unwrap();
    h.fails(
        &["copy-to-storage"],
        &[
            &origin(1).display().to_string(),
            "no container-image-reference",
        ],
    );
    std::fs::write(origin(1), &saved).unwrap();

    // An origin whose manifest was garbage-collected.
    let gone = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        origin(0),
        HostTree::origin(&format!("docker://{NAME}"), &gone),
    )
    .unwrap();
    h.fails(
        &["export", "--deployment", "rollback", "--to", &to],
        &[
            "rollback deployment",
            &h.ids[0][..12],
            &gone,
            "not in the repository",
            &origin(0).display().to_string(),
        ],
    );

    // A repository from before meta.json (bootc 1.15 and older).
    let old = out_dir(&h, "old");
    std::fs::create_dir_all(old.join("composefs/objects/00")).unwrap();
    std::fs::create_dir_all(old.join("composefs/streams")).unwrap();
    std::fs::create_dir_all(old.join("state/deploy")).unwrap();
    fails(
        &h.tree.cfs(&old, &["list"]),
        &["list"],
        &[
            "predates the current composefs format",
            "bootc 1.16",
            "never upgrades it",
        ],
    );
    assert!(!old.join("composefs/meta.json").exists());

    // --deployment off a bootc host.
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = imported(t.path(), "app:1", &version_layers(1));
    let o = cfs(&repo, &["export", "--deployment", "booted", "--to", &to]);
    fails(
        &o,
        &["--deployment"],
        &["no bootc host was found", "--sysroot"],
    );

    assert!(!out.exists(), "a failed export wrote {}", out.display());
}
