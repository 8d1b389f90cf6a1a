//! Tests of the storage.conf resolution, against containers/storage's rules.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// A machine in a temp dir: `sys/` is its `/`, `home/` the user's home,
/// `run/` its XDG_RUNTIME_DIR.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "sys/etc/containers",
            "sys/usr/share/containers",
            "home",
            "run",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        // Canonical, so symlink resolution in the code under test is a no-op.
        self.dir.path().canonicalize().unwrap().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The environment of a process with real UID `uid` and `vars`
    /// (`@` in a value stands for the temp dir).
    fn env(&self, uid: u32, vars: &[(&str, &str)]) -> StorageEnv {
        let at = self.path("");
        let at = at.to_str().unwrap().trim_end_matches('/');
        StorageEnv {
            vars: vars
                .iter()
                .map(|(k, v)| (k.into(), v.replace('@', at).into()))
                .collect(),
            uid,
            euid: rustix::process::geteuid().as_raw(),
            system_root: self.path("sys"),
        }
    }

    fn resolve(&self, uid: u32, vars: &[(&str, &str)]) -> Result<StorageConf> {
        StorageConf::resolve(&self.env(uid, vars))
    }
}

fn conf(graph: &str, run: &str) -> String {
    format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{graph}\"\nrunroot = \"{run}\"\n")
}

/// (graph root, run root) with the temp dir written as `@`.
fn roots(m: &Machine, c: &StorageConf) -> (String, String) {
    let at = m.path("");
    let at = at.to_str().unwrap().trim_end_matches('/');
    let show = |p: &Path| p.to_str().unwrap().replace(at, "@");
    (show(&c.graph_root), show(&c.run_root))
}

#[test]
fn rootful_files_in_order() {
    let m = Machine::new();
    let none = m.resolve(0, &[]).unwrap();
    assert_eq!(none.file, None);
    assert!(!none.rootless);
    assert_eq!(
        roots(&m, &none),
        (DEFAULT_GRAPH_ROOT.into(), DEFAULT_RUN_ROOT.into())
    );

    let usr = m.write(
        "sys/usr/share/containers/storage.conf",
        &conf("/usr-graph", "/usr-run"),
    );
    let c = m.resolve(0, &[]).unwrap();
    assert_eq!(c.file.as_deref(), Some(usr.as_path()));
    assert_eq!(roots(&m, &c), ("/usr-graph".into(), "/usr-run".into()));
    assert_eq!(c.driver.as_deref(), Some("vfs"));

    let etc = m.write(
        "sys/etc/containers/storage.conf",
        &conf("/etc-graph", "/etc-run"),
    );
    let c = m.resolve(0, &[]).unwrap();
    assert_eq!(c.file.as_deref(), Some(etc.as_path()));
    assert_eq!(roots(&m, &c), ("/etc-graph".into(), "/etc-run".into()));

    // XDG_CONFIG_HOME's file wins over /etc even for root, when it exists.
    let c = m.resolve(0, &[("XDG_CONFIG_HOME", "@/cfg")]).unwrap();
    assert_eq!(c.file.as_deref(), Some(etc.as_path()));
    m.write(
        "cfg/containers/storage.conf",
        &conf("/xdg-graph", "/xdg-run"),
    );
    let c = m.resolve(0, &[("XDG_CONFIG_HOME", "@/cfg")]).unwrap();
    assert_eq!(roots(&m, &c), ("/xdg-graph".into(), "/xdg-run".into()));

    // CONTAINERS_STORAGE_CONF beats them all.
    m.write("env.conf", &conf("@/env-graph", "@/env-run"));
    let c = m
        .resolve(
            0,
            &[
                ("CONTAINERS_STORAGE_CONF", "@/env.conf"),
                ("XDG_CONFIG_HOME", "@/cfg"),
            ],
        )
        .unwrap();
    assert_eq!(c.file, Some(m.path("env.conf")));
    assert_eq!(roots(&m, &c), ("@/env-graph".into(), "@/env-run".into()));
}

#[test]
fn errors_name_the_file() {
    let m = Machine::new();
    for (what, file, text, vars, expected) in [
        (
            "missing CONTAINERS_STORAGE_CONF",
            "unused.conf",
            "",
            &[("CONTAINERS_STORAGE_CONF", "@/nope.conf")][..],
            "CONTAINERS_STORAGE_CONF names @/nope.conf, which does not exist",
        ),
        (
            "malformed",
            "sys/etc/containers/storage.conf",
            "[storage\ngraphroot = \"/x\"\n",
            &[],
            "@/sys/etc/containers/storage.conf is not a valid storage.conf (line 1, column 9)",
        ),
        (
            "wrong type",
            "sys/etc/containers/storage.conf",
            "[storage]\ngraphroot = 5\nrunroot = \"/r\"\n",
            &[],
            "@/sys/etc/containers/storage.conf is not a valid storage.conf",
        ),
        (
            "no runroot: no defaults for a file read",
            "sys/etc/containers/storage.conf",
            "[storage]\ngraphroot = \"/g\"\n",
            &[],
            "@/sys/etc/containers/storage.conf sets no runroot",
        ),
        (
            "no graphroot",
            "sys/usr/share/containers/storage.conf",
            "[storage]\nrunroot = \"/r\"\n",
            &[],
            "@/sys/usr/share/containers/storage.conf sets no graphroot",
        ),
        (
            "imagestore is graphroot",
            "sys/etc/containers/storage.conf",
            "[storage]\ngraphroot = \"/g\"\nrunroot = \"/r\"\nimagestore = \"/g\"\n",
            &[],
            "imagestore must be unset or differ from graphroot /g",
        ),
    ] {
        let _ = std::fs::remove_file(m.path("sys/etc/containers/storage.conf"));
        let _ = std::fs::remove_file(m.path("sys/usr/share/containers/storage.conf"));
        m.write(file, text);
        let err = format!("{:#}", m.resolve(0, vars).unwrap_err());
        let at = m.path("");
        let err = err.replace(at.to_str().unwrap().trim_end_matches('/'), "@");
        assert!(err.contains(expected), "{what}: {err}");
    }
}

#[test]
fn rootless() {
    let m = Machine::new();
    let user = [
        ("HOME", "@/home"),
        ("XDG_RUNTIME_DIR", "@/run"),
        ("USER", "alice"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = user.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // Defaults: under HOME and XDG_RUNTIME_DIR; /etc's roots are root's.
    m.write(
        "sys/etc/containers/storage.conf",
        &conf("/etc-graph", "/etc-run"),
    );
    let c = m.resolve(1000, &user).unwrap();
    assert!(c.rootless);
    assert_eq!(
        roots(&m, &c),
        (
            "@/home/.local/share/containers/storage".into(),
            "@/run/containers".into()
        )
    );
    assert_eq!(
        c.driver.as_deref(),
        Some("vfs"),
        "a rootless driver is kept"
    );
    let c = m
        .resolve(1000, &with(&[("XDG_DATA_HOME", "@/data")]))
        .unwrap();
    assert_eq!(roots(&m, &c).0, "@/data/containers/storage");

    // The system's rootless_storage_path, with $HOME, $UID and $USER.
    m.write(
        "sys/etc/containers/storage.conf",
        "[storage]\ndriver = \"zfs\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n\
         rootless_storage_path = \"$HOME/st/$UID/${USER}\"\n",
    );
    let c = m.resolve(1000, &user).unwrap();
    assert_eq!(roots(&m, &c).0, "@/home/st/1000/alice");
    assert_eq!(c.driver, None, "zfs is not for rootless use");

    // The user's own file: its graphroot, else its rootless_storage_path,
    // else the defaults; the system file is not merged in.
    let own = "home/.config/containers/storage.conf";
    m.write(own, "[storage]\ngraphroot = \"/own-graph\"\n");
    let c = m.resolve(1000, &user).unwrap();
    assert_eq!(c.file, Some(m.path(own)));
    assert_eq!(
        roots(&m, &c),
        ("/own-graph".into(), "@/run/containers".into())
    );
    m.write(
        own,
        "[storage]\nrootless_storage_path = \"/own-rsp/$UID\"\n",
    );
    assert_eq!(
        roots(&m, &m.resolve(1000, &user).unwrap()).0,
        "/own-rsp/1000"
    );
    m.write(own, "[storage]\n");
    assert_eq!(
        roots(&m, &m.resolve(1000, &user).unwrap()).0,
        "@/home/st/1000/alice"
    );
    // A broken user file is only warned about by containers-storage...
    m.write(own, "[storage\n");
    assert_eq!(
        roots(&m, &m.resolve(1000, &user).unwrap()).0,
        "@/home/st/1000/alice"
    );
    // ...unless XDG_CONFIG_HOME made it the file read first.
    let err = m
        .resolve(1000, &with(&[("XDG_CONFIG_HOME", "@/home/.config")]))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("is not a valid storage.conf"),
        "{err:#}"
    );

    // CONTAINERS_STORAGE_CONF: its graphroot as is, else its
    // rootless_storage_path, else the defaults.
    m.write("env.conf", &conf("/env-graph", "/env-run"));
    let env_conf = with(&[("CONTAINERS_STORAGE_CONF", "@/env.conf")]);
    let c = m.resolve(1000, &env_conf).unwrap();
    assert_eq!(roots(&m, &c), ("/env-graph".into(), "/env-run".into()));
    m.write(
        "env.conf",
        "[storage]\nrootless_storage_path = \"/env-rsp\"\n",
    );
    let c = m.resolve(1000, &env_conf).unwrap();
    assert_eq!(
        roots(&m, &c),
        ("/env-rsp".into(), "@/run/containers".into())
    );
    m.write("env.conf", "[storage]\n");
    assert_eq!(
        roots(&m, &m.resolve(1000, &env_conf).unwrap()).0,
        "@/home/.local/share/containers/storage"
    );
}

#[test]
fn who_is_rootless() {
    let m = Machine::new();
    let home = ("HOME", "@/home");
    let run = ("XDG_RUNTIME_DIR", "@/run");
    for (uid, rootless_env, rootless) in [
        (0, None, false),
        (1000, None, true),
        (1000, Some("0"), false),
        (0, Some("1000"), true),
        (1000, Some("not-a-number"), false),
    ] {
        let mut vars = vec![home, run];
        vars.extend(rootless_env.map(|v| ("_CONTAINERS_ROOTLESS_UID", v)));
        let c = m.resolve(uid, &vars).unwrap();
        assert_eq!(c.rootless, rootless, "uid {uid}, {rootless_env:?}");
    }
}

#[test]
fn rootless_run_root_without_xdg_runtime_dir() {
    let m = Machine::new();
    let vars = [("HOME", "@/home"), ("TMPDIR", "@/tmp")];
    let run_user = m.path("sys/run/user/1000");
    std::fs::create_dir_all(&run_user).unwrap();
    std::fs::set_permissions(&run_user, std::fs::Permissions::from_mode(0o700)).unwrap();
    let c = m.resolve(1000, &vars).unwrap();
    assert_eq!(c.run_root, run_user.join("containers"));
    // Readable by others is fine, writable by the group is not.
    std::fs::set_permissions(&run_user, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        m.resolve(1000, &vars).unwrap().run_root,
        run_user.join("containers")
    );
    std::fs::set_permissions(&run_user, std::fs::Permissions::from_mode(0o775)).unwrap();
    let c = m.resolve(1000, &vars).unwrap();
    assert_eq!(c.run_root, m.path("tmp/storage-run-1000/containers"));
    // HOME from the passwd file when unset.
    m.write(
        "sys/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    );
    let c = m.resolve(1000, &[("TMPDIR", "@/tmp")]).unwrap();
    assert_eq!(
        c.graph_root,
        Path::new("/home/alice/.local/share/containers/storage")
    );
}

#[test]
fn storage_driver_variable() {
    let m = Machine::new();
    m.write(
        "sys/etc/containers/storage.conf",
        "[storage]\ndriver = \"overlay2\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n",
    );
    assert_eq!(
        m.resolve(0, &[]).unwrap().driver.as_deref(),
        Some("overlay")
    );
    let c = m.resolve(0, &[("STORAGE_DRIVER", "vfs")]).unwrap();
    assert_eq!(c.driver.as_deref(), Some("vfs"));
}

#[test]
fn go_expand() {
    let vars: HashMap<&str, &str> = [("A", "x"), ("AB", "yy"), ("1", "one"), ("_u", "u")]
        .into_iter()
        .collect();
    let lookup = |n: &[u8]| {
        vars.get(std::str::from_utf8(n).unwrap())
            .map_or_else(Vec::new, |v| v.as_bytes().to_vec())
    };
    for (input, out) in [
        ("/plain", "/plain"),
        ("$A/$AB", "x/yy"),
        ("${A}B", "xB"),
        ("$A-z", "x-z"),
        ("$_u.", "u."),
        ("$unset/x", "/x"),
        ("$1x", "onex"),
        ("${1}", "one"),
        ("a$", "a$"),
        ("a$/b", "a$/b"),
        ("${}x", "x"),
        ("${A", "A"),
        ("$$", ""),
    ] {
        assert_eq!(
            String::from_utf8(expand(input.as_bytes(), lookup)).unwrap(),
            out,
            "{input}"
        );
    }
}

#[test]
fn go_clean() {
    for (input, out) in [
        ("/a//b/./c/", "/a/b/c"),
        ("/a/../../b", "/b"),
        ("a/../..", ".."),
        ("", "."),
        ("./", "."),
    ] {
        assert_eq!(clean(Path::new(input)), Path::new(out), "{input}");
    }
}
