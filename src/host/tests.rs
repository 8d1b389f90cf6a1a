use super::boot::*;
use super::origin::*;
use super::*;
use cap_std_ext::cap_std::{ambient_authority, fs::Dir};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn transports() {
    for (s, t, n) in [
        ("docker://quay.io/x/y:1", "docker://", "quay.io/x/y:1"),
        (
            "containers-storage:localhost/os",
            "containers-storage:",
            "localhost/os",
        ),
        ("oci:/srv/os:1", "oci:", "/srv/os:1"),
        ("oci-archive:/a.tar", "oci-archive:", "/a.tar"),
        ("registry:quay.io/x", "registry:", "quay.io/x"),
        ("quay.io/x/y:1", "", "quay.io/x/y:1"),
        ("localhost:5000/x", "", "localhost:5000/x"),
    ] {
        assert_eq!(split_transport(s), (t, n), "{s}");
    }
}

#[test]
fn ostree_prefixes() {
    let ok = |s: &str| strip_ostree_prefix(s).unwrap();
    assert_eq!(
        ok("ostree-unverified-image:docker://q/x:1"),
        "docker://q/x:1"
    );
    assert_eq!(ok("ostree-unverified-registry:q/x:1"), "docker://q/x:1");
    assert_eq!(ok("ostree-image-signed:docker://q/x"), "docker://q/x");
    assert_eq!(
        ok("ostree-remote-image:fedora:docker://q/x"),
        "docker://q/x"
    );
    assert_eq!(ok("ostree-remote-registry:fedora:q/x"), "docker://q/x");
    assert!(strip_ostree_prefix("docker://q/x").is_err());
    assert!(strip_ostree_prefix("ostree-remote-image:noremote").is_err());
}

#[test]
fn ini() {
    let t = "# c\n[origin]\ncontainer-image-reference = x = y\n\n[image]\n manifest_digest=sha256:1 \n[other]\nmanifest_digest = no\n";
    assert_eq!(
        ini_get(t, "origin", "container-image-reference"),
        Some("x = y")
    );
    assert_eq!(ini_get(t, "image", "manifest_digest"), Some("sha256:1"));
    assert_eq!(ini_get(t, "boot", "boot_type"), None);
    assert_eq!(ini_get(t, "origin", "manifest_digest"), None);
}

#[test]
fn kernel_arguments() {
    assert_eq!(
        composefs_arg(&format!("rw composefs={A} quiet")),
        Ok(Some(A.into()))
    );
    assert_eq!(
        composefs_arg(&format!("composefs=?{B}")),
        Ok(Some(B.into()))
    );
    assert_eq!(composefs_arg("rw quiet"), Ok(None));
    assert_eq!(
        uki_id(&format!("efi /EFI/Linux/bootc/bootc_composefs-{A}.efi")),
        Ok(Some(A.into()))
    );
    assert_eq!(uki_id("efi /EFI/Linux/other.efi"), Ok(None));
    // Anything but 64 or 128 lowercase hex digits is refused, and said so.
    for bad in [
        A[..40].to_string(),
        A.to_uppercase(),
        "/tmp/x".to_string(),
        "../../etc".to_string(),
        format!("{}g", &A[..63]),
        format!("{A}a"),
        String::new(),
    ] {
        let e = composefs_arg(&format!("rw composefs={bad}")).unwrap_err();
        assert!(e.contains("is not a deployment ID"), "{bad}: {e}");
        assert!(
            uki_id(&format!("/EFI/bootc_composefs-{bad}.efi")).is_err(),
            "{bad}"
        );
        assert!(!is_deployment_id(&bad), "{bad}");
    }
    assert!(is_deployment_id(A) && is_deployment_id(B));
}

#[test]
fn deployment_ids_from_the_mount_table() {
    let line = |source: &str| format!("22 1 0:21 / / ro shared:1 - overlay {source} ro\n");
    assert_eq!(
        root_mount_id(&line(&format!("composefs:{A}"))),
        Ok(Some(A.into()))
    );
    assert_eq!(root_mount_id(&line("/dev/sda1")), Ok(None));
    let e = root_mount_id(&line("composefs:../x")).unwrap_err();
    assert!(e.contains("not a deployment ID"), "{e}");
}

#[test]
fn staged_marker_ids_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let p = paths(t.path());
    let mut warnings = Vec::new();
    assert_eq!(staged_id(&p, &mut warnings), None);
    assert!(warnings.is_empty());
    std::fs::create_dir_all(p.run.join("composefs")).unwrap();
    let marker = p.run.join("composefs/staged-deployment");
    for (text, want) in [
        (
            r#"{"depl_id": "/tmp/x"}"#.to_string(),
            "\"/tmp/x\" is not a deployment ID",
        ),
        ("not json".to_string(), "not the JSON bootc writes"),
        (
            format!(r#"{{"depl_id": "{}"}}"#, A.to_uppercase()),
            "not a deployment ID",
        ),
    ] {
        std::fs::write(&marker, text).unwrap();
        let mut warnings = Vec::new();
        assert_eq!(staged_id(&p, &mut warnings), None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains(want), "{warnings:?}");
        assert!(warnings[0].contains("staged-deployment"), "{warnings:?}");
    }
    std::fs::write(&marker, format!(r#"{{"depl_id": "{A}"}}"#)).unwrap();
    assert_eq!(staged_id(&p, &mut warnings), Some(A.into()));
    assert!(warnings.is_empty());
}

fn paths(dir: &Path) -> HostPaths {
    HostPaths {
        sysroot: dir.join("sysroot"),
        cmdline: dir.join("cmdline"),
        mountinfo: dir.join("mountinfo"),
        run: dir.join("run"),
    }
}

#[test]
fn the_root_mount_wins_over_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let p = paths(t.path());
    let booted = |p: &HostPaths| booted_id(p, &mut Vec::new()).unwrap();
    std::fs::write(&p.cmdline, format!("rw composefs=?{A}\n")).unwrap();
    assert_eq!(booted(&p), Booted::Id(A.into()));
    // After a soft reboot into B, the mount names B.
    std::fs::write(
        &p.mountinfo,
        format!("22 1 0:21 / / ro,relatime shared:1 - overlay composefs:{B} ro\n"),
    )
    .unwrap();
    assert_eq!(booted(&p), Booted::Id(B.into()));
    std::fs::write(
        &p.mountinfo,
        format!("22 1 0:21 / / ro shared:1 - erofs transient:composefs={A} ro\n"),
    )
    .unwrap();
    assert_eq!(booted(&p), Booted::Id(A.into()));
    // Not composefs: the command line decides.
    std::fs::write(
        &p.mountinfo,
        "22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n",
    )
    .unwrap();
    std::fs::write(&p.cmdline, "rw quiet\n").unwrap();
    assert_eq!(booted(&p), Booted::NotComposefs);
    std::fs::write(&p.cmdline, "rw composefs=\x1b]0;owned\x07\n").unwrap();
    match booted(&p) {
        Booted::Invalid(why) => {
            assert!(why.contains("not a deployment ID"), "{why}");
            assert!(!why.contains('\x1b'), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn boot_entries_in_boot_order() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let entry = |name: &str, key: Option<&str>, id: &str| {
        let key = key.map(|k| format!("sort-key {k}\n")).unwrap_or_default();
        std::fs::write(
            dir.join(name),
            format!("title x\n{key}options rw composefs={id}\n"),
        )
        .unwrap();
    };
    let c = "c".repeat(64);
    let d = "d".repeat(64);
    entry("a-1.conf", None, A);
    entry("a-2.conf", None, B);
    entry("z.conf", Some("2"), &c);
    entry("y.conf", Some("1"), &d);
    std::fs::write(dir.join("notes.txt"), "options composefs=x").unwrap();
    std::fs::write(dir.join("plain.conf"), "title plain\noptions rw\n").unwrap();
    // What another system, or someone else, left there: each skipped with a warning.
    std::fs::write(dir.join("latin1.conf"), b"title caf\xe9\noptions rw\n").unwrap();
    std::fs::write(dir.join("bad-id.conf"), "options rw composefs=/tmp/x\n").unwrap();
    std::os::unix::fs::symlink("gone.conf", dir.join("dangling.conf")).unwrap();
    std::fs::create_dir(dir.join("dir.conf")).unwrap();
    let root = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
    let mut warnings = Vec::new();
    let ids: Vec<String> = read_entries(&root, Path::new("/shown"), ".", &mut warnings)
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![d, c, B.to_string(), A.to_string()]);
    warnings.sort();
    let want = [
        ("bad-id.conf", "is not a deployment ID"),
        ("dangling.conf", "symbolic link to nothing"),
        ("dir.conf", "a directory"),
        ("latin1.conf", "not UTF-8"),
    ];
    assert_eq!(warnings.len(), want.len(), "{warnings:?}");
    for (w, (file, why)) in warnings.iter().zip(want) {
        assert!(w.starts_with(&format!("boot entry /shown/./{file}")), "{w}");
        assert!(w.contains(why) && w.ends_with("skipped"), "{w}");
    }
}

#[test]
fn old_hosts_name_the_image_by_config_digest() {
    let t = tempfile::tempdir().unwrap();
    let cfg = format!("sha256:{}", "c".repeat(64));
    std::fs::write(
        t.path().join(format!("{A}.imginfo")),
        format!(
            r#"{{"manifest":{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":1}},"layers":[]}},"config":{{}}}}"#
        ),
    )
    .unwrap();
    let origin = "[origin]\ncontainer-image-reference = ostree-unverified-image:docker://q/x:1\n";
    let imginfo = |id: &str| {
        let p = t.path().join(format!("{id}.imginfo"));
        move || imginfo_config(std::fs::read(&p), &p)
    };
    let img = origin_image(origin, imginfo(A)).unwrap();
    assert_eq!(img.name, "q/x:1");
    assert_eq!(img.transport, "docker://");
    assert_eq!(img.manifest_digest, None);
    assert_eq!(img.config_digest.map(|d| d.to_string()), Some(cfg));
    // Neither [image] nor image info: a clear problem.
    let err = origin_image(origin, imginfo(B)).unwrap_err();
    assert!(
        format!("{err:#}").contains("no [image] manifest_digest"),
        "{err:#}"
    );
    let err = origin_image("[origin]\n", imginfo(A)).unwrap_err();
    assert!(
        err.to_string().contains("container-image-reference"),
        "{err}"
    );
}
