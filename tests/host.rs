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

/// Run with a deadline: a read that blocks (a FIFO) fails the test instead of hanging it.
fn run_timed(mut cmd: std::process::Command) -> Output {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let t = tempfile::tempdir().unwrap();
    let (o, e) = (t.path().join("stdout"), t.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cfs-export hung (killed after 60s); stderr so far: {}",
                std::fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    }
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// What one hostile host gave: exit code, stdout, stderr (checked for raw
/// control characters, panics and names from outside the sysroot).
struct Seen {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Host {
    fn hostile(&self, case: &str, args: &[&str], forbidden: &[&str]) -> Seen {
        let out = run_timed(self.tree.command(&self.tree.sysroot, args));
        let seen = Seen {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for (what, text) in [("stdout", &seen.stdout), ("stderr", &seen.stderr)] {
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\n'),
                "{case}: raw control characters on {what}: {text:?}"
            );
            for f in forbidden {
                assert!(!text.contains(f), "{case}: {f:?} on {what}: {text}");
            }
        }
        assert!(!seen.stderr.contains("panicked"), "{case}: {}", seen.stderr);
        eprintln!(
            "--- {case}: exit {:?}\n{}{}",
            seen.code, seen.stdout, seen.stderr
        );
        seen
    }

    /// `list` still lists, exit 0, with a warning containing every part.
    fn lists_with_warning(&self, case: &str, parts: &[&str], forbidden: &[&str]) -> Seen {
        let seen = self.hostile(case, &["list"], forbidden);
        assert_eq!(seen.code, Some(0), "{case}: {}", seen.stderr);
        let warning = seen
            .stderr
            .lines()
            .find(|l| l.starts_with("warning: ") && parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("{case}: no warning with {parts:?} in {}", seen.stderr));
        assert!(!warning.is_empty());
        // The healthy deployments are still there.
        assert!(
            seen.stdout
                .contains(&format!("booted {}", &self.ids[1][..12])),
            "{case}: {}",
            seen.stdout
        );
        seen
    }
}

impl Host {
    /// After every hostile case is undone: `list` is clean again.
    fn lists_with_warning_free(&self) {
        let seen = self.hostile("restored", &["list"], &[]);
        assert_eq!(seen.code, Some(0), "{}", seen.stderr);
        assert_eq!(seen.stderr, "", "a warning is left over");
        assert_eq!(seen.stdout.lines().count(), 4, "{}", seen.stdout);
    }
}

#[test]
fn hostile_host_files_are_warnings_not_hangs_or_leaks() {
    let h = host();
    let sysroot = &h.tree.sysroot;
    let origin = |i: usize| sysroot.join(format!("state/deploy/{0}/{0}.origin", h.ids[i]));
    let shown = |p: &Path| p.display().to_string();
    let saved = std::fs::read(origin(0)).unwrap();
    let restore = || {
        let _ = std::fs::remove_file(origin(0));
        std::fs::write(origin(0), &saved).unwrap();
    };
    // A file outside the sysroot, which must never be read nor named.
    let outside = sysroot.parent().unwrap().join("outside-secret.origin");
    std::fs::write(
        &outside,
        HostTree::origin(
            "docker://quay.io/secret/leak:1",
            &h.images[0].manifest_digest,
        ),
    )
    .unwrap();
    let secret = ["outside-secret", "quay.io/secret/leak"];

    // An origin file that is a FIFO.
    mkfifo(&origin(0));
    h.lists_with_warning("FIFO origin", &[&shown(&origin(0)), "a FIFO"], &[]);
    restore();

    // An origin that is a symbolic link to /dev/zero, then to a file outside DIR
    // (absolute and relative), then a file far too big.
    for (case, target) in [
        ("origin -> /dev/zero", PathBuf::from("/dev/zero")),
        ("origin -> outside (absolute)", outside.clone()),
        (
            "origin -> outside (relative)",
            PathBuf::from("../../../../").join(outside.file_name().unwrap()),
        ),
    ] {
        std::fs::remove_file(origin(0)).unwrap();
        std::os::unix::fs::symlink(&target, origin(0)).unwrap();
        let mut forbidden = secret.to_vec();
        forbidden.push("/dev/zero");
        h.lists_with_warning(
            case,
            &[&shown(&origin(0)), "outside the sysroot"],
            &forbidden,
        );
        restore();
    }
    std::fs::write(origin(0), vec![b'#'; (1 << 20) + 1]).unwrap();
    h.lists_with_warning(
        "2 MiB origin",
        &[&shown(&origin(0)), "larger than 1 MiB"],
        &[],
    );
    restore();

    // An old-style origin whose image info is a FIFO.
    let imginfo = sysroot.join(format!("state/deploy/{0}/{0}.imginfo", h.ids[0]));
    std::fs::write(
        origin(0),
        format!("[origin]\ncontainer-image-reference = ostree-unverified-image:docker://{NAME}\n"),
    )
    .unwrap();
    mkfifo(&imginfo);
    h.lists_with_warning("FIFO .imginfo", &[&shown(&imginfo), "a FIFO"], &[]);
    std::fs::remove_file(&imginfo).unwrap();
    restore();

    // Boot entries that cannot be read: each a warning naming it; the rest listed.
    let entries = sysroot.join("boot/loader/entries");
    let fifo = entries.join("fifo.conf");
    mkfifo(&fifo);
    h.lists_with_warning("FIFO BLS entry", &[&shown(&fifo), "a FIFO"], &[]);
    std::fs::remove_file(&fifo).unwrap();
    let bad = [
        ("zero.conf", "outside the sysroot"),
        ("latin1.conf", "not UTF-8"),
        ("dangling.conf", "symbolic link to nothing"),
        ("dir.conf", "a directory"),
    ];
    std::os::unix::fs::symlink("/dev/zero", entries.join("zero.conf")).unwrap();
    std::fs::write(
        entries.join("latin1.conf"),
        b"title Caf\xe9 OS\noptions rw\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("gone.conf", entries.join("dangling.conf")).unwrap();
    std::fs::create_dir(entries.join("dir.conf")).unwrap();
    let seen = h.lists_with_warning("bad BLS entries", &["latin1.conf", "not UTF-8"], &[]);
    for (file, why) in bad {
        let path = shown(&entries.join(file));
        assert!(
            seen.stderr
                .lines()
                .any(|l| l.starts_with("warning: boot entry")
                    && l.contains(&path)
                    && l.contains(why)),
            "{file}: {}",
            seen.stderr
        );
    }
    for (file, _) in bad {
        let p = entries.join(file);
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    // GRUB's user.cfg as a FIFO.
    let user_cfg = sysroot.join("boot/grub2/user.cfg");
    std::fs::create_dir_all(user_cfg.parent().unwrap()).unwrap();
    mkfifo(&user_cfg);
    h.lists_with_warning("FIFO user.cfg", &[&shown(&user_cfg), "a FIFO"], &[]);
    std::fs::remove_file(&user_cfg).unwrap();

    // A staged marker naming a path, not a deployment.
    let marker = h.tree.run.join("composefs/staged-deployment");
    let saved_marker = std::fs::read(&marker).unwrap();
    std::fs::write(
        &marker,
        r#"{"depl_id": "/tmp/x", "finalization_locked": false}"#,
    )
    .unwrap();
    h.lists_with_warning(
        "staged marker /tmp/x",
        &["staged-deployment", "\"/tmp/x\" is not a deployment ID"],
        &["/tmp/x.origin"],
    );
    let to = format!("oci:{}:x", out_dir(&h, "never").display());
    let seen = h.hostile(
        "export staged, marker /tmp/x",
        &["export", "staged", "--to", &to],
        &[],
    );
    assert_eq!(seen.code, Some(1), "{}", seen.stderr);
    assert!(
        seen.stderr.contains("error: There is no staged deployment"),
        "{}",
        seen.stderr
    );
    std::fs::write(&marker, saved_marker).unwrap();

    // composefs= on the kernel command line that is not a deployment ID.
    std::fs::write(
        &h.tree.cmdline,
        "root=/dev/sda1 composefs=../../etc/passwd rw\n",
    )
    .unwrap();
    let seen = h.hostile("non-hex composefs=", &["list"], &[]);
    assert_eq!(seen.code, Some(0), "{}", seen.stderr);
    assert!(
        seen.stderr
            .contains("composefs=\"../../etc/passwd\" is not a deployment ID"),
        "{}",
        seen.stderr
    );
    let seen = h.hostile(
        "export booted, non-hex composefs=",
        &["export", "booted", "--to", &to],
        &[],
    );
    assert_eq!(seen.code, Some(1), "{}", seen.stderr);
    assert!(
        seen.stderr
            .contains("error: No booted deployment: the booted deployment is unknown"),
        "{}",
        seen.stderr
    );
    h.tree.boot(&h.ids[1]);

    // The repository itself symlinked out of the sysroot: not used.
    let elsewhere = sysroot.parent().unwrap().join("elsewhere-secret");
    std::fs::rename(h.tree.repo(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, h.tree.repo()).unwrap();
    let seen = h.hostile("composefs -> outside", &["list"], &["elsewhere-secret"]);
    assert_eq!(seen.code, Some(1), "{}", seen.stderr);
    assert!(
        seen.stderr.starts_with("error: ")
            && seen
                .stderr
                .contains("is not a repository directory inside the sysroot")
            && seen.stderr.contains("--repo"),
        "{}",
        seen.stderr
    );
    std::fs::remove_file(h.tree.repo()).unwrap();
    std::fs::rename(&elsewhere, h.tree.repo()).unwrap();
    h.lists_with_warning_free();
    assert!(!out_dir(&h, "never").exists());
}

#[test]
fn terminal_escapes_in_an_origin_are_shown_escaped() {
    let h = host();
    let origin = h
        .tree
        .sysroot
        .join(format!("state/deploy/{0}/{0}.origin", h.ids[0]));
    let evil = "quay.io/x/\u{1b}]0;owned\u{7}\u{1b}[2J\u{1b}[H\u{9b}31mos:1";
    std::fs::write(
        &origin,
        HostTree::origin(&format!("docker://{evil}"), &h.images[0].manifest_digest),
    )
    .unwrap();
    let seen = h.hostile("ESC/OSC in an image name", &["list"], &[]);
    assert_eq!(seen.code, Some(0), "{}", seen.stderr);
    assert!(
        seen.stdout.contains("rollback ")
            && seen
                .stdout
                .contains("quay.io/x/\\x1b]0;owned\\x07\\x1b[2J\\x1b[H\\u{9b}31mos:1"),
        "{}",
        seen.stdout
    );
    // JSON stays exact (serde escapes it).
    let seen = h.hostile("ESC/OSC, --json", &["--json", "list"], &[]);
    let rows: serde_json::Value = serde_json::from_str(&seen.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["deployments"].as_array().unwrap())
        .map(|d| d["image"].as_str().unwrap())
        .collect();
    assert!(names.contains(&evil), "{names:?}");
    // Warnings and errors naming it are escaped too.
    let gone = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        &origin,
        HostTree::origin(&format!("docker://{evil}"), &gone),
    )
    .unwrap();
    let seen = h.hostile("ESC/OSC in a warning", &["list"], &[]);
    assert_eq!(seen.code, Some(0), "{}", seen.stderr);
    assert!(
        seen.stderr.contains("warning: the rollback deployment"),
        "{}",
        seen.stderr
    );
    assert!(seen.stderr.contains("\\x1b]0;owned"), "{}", seen.stderr);
    let to = format!("oci:{}:x", out_dir(&h, "never").display());
    let seen = h.hostile(
        "ESC/OSC in an error",
        &["export", "--deployment", "rollback", "--to", &to],
        &[],
    );
    assert_eq!(seen.code, Some(1), "{}", seen.stderr);
    assert!(
        seen.stderr.starts_with("error: The rollback deployment"),
        "{}",
        seen.stderr
    );
    assert!(seen.stderr.contains("\\x1b]0;owned"), "{}", seen.stderr);
}
