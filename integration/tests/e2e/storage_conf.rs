//! Issue 19: without `--storage-*` options the storage is the one
//! containers-storage finds itself, here through `CONTAINERS_STORAGE_CONF`:
//! cfs-export's temp files, space check and present layers go where skopeo
//! and podman put the image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Result};
use integration::fixture::{self, Kind, TarBuilder};
use integration::run;

/// The machine's default graph root, which a relocated storage must not touch.
const DEFAULT_GRAPH_ROOT: &str = "/var/lib/containers/storage";

/// A skopeo that records its arguments in `args_file`, then runs the real one.
fn recording_skopeo(dir: &Path, args_file: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("recording-skopeo");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexec skopeo \"$@\"\n",
            args_file.display()
        ),
    )?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

/// `cfs-export copy-to-storage` with `CONTAINERS_STORAGE_CONF=conf` and no `--storage-*`.
fn copy(repo: &Path, conf: &Path, skopeo: &Path, target: &str) -> Result<Output> {
    Ok(Command::new(fixture::bin())
        .env("CONTAINERS_STORAGE_CONF", conf)
        .env("SKOPEO", skopeo)
        .arg("--repo")
        .arg(repo)
        .args(["copy-to-storage", "app:1", "--target", target])
        .output()?)
}

/// The cfs-export-* directories in the default graph root's `tmp/`.
fn ours_in_default_tmp() -> Vec<String> {
    std::fs::read_dir(Path::new(DEFAULT_GRAPH_ROOT).join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cfs-export-"))
                .collect()
        })
        .unwrap_or_default()
}

pub fn copy_to_storage_finds_graph_root_in_storage_conf() -> Result<()> {
    let t = tempfile::tempdir()?;
    let layers = vec![
        (
            TarBuilder::new()
                .file("data", &fixture::noise(200_000, 3))
                .finish(true),
            Kind::Gzip,
        ),
        (
            TarBuilder::new()
                .file("more", &fixture::noise(30_000, 4))
                .finish(false),
            Kind::Zstd,
        ),
    ];
    let (repo, f) = fixture::imported(t.path(), "app:1", &layers);
    let root = t.path().join("relocated/graph");
    let runroot = t.path().join("relocated/run");
    let conf = t.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            root.display(),
            runroot.display()
        ),
    )?;
    let default_existed = Path::new(DEFAULT_GRAPH_ROOT).exists();
    let ours_before = ours_in_default_tmp();
    let args_file = t.path().join("skopeo-args");
    let skopeo = recording_skopeo(t.path(), &args_file)?;

    let out = copy(&repo, &conf, &skopeo, "localhost/relocated:1")?;
    ensure!(
        out.status.success(),
        "copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo got the plain reference (it applies storage.conf itself) and
    // kept its blobs under the relocated graph root.
    let args = std::fs::read_to_string(&args_file)?;
    let args: Vec<&str> = args.lines().collect();
    ensure!(
        args.contains(&"containers-storage:localhost/relocated:1"),
        "skopeo's destination is not the plain reference: {args:?}"
    );
    let tmpdir = args
        .iter()
        .position(|a| *a == "--tmpdir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    ensure!(
        tmpdir
            .as_ref()
            .is_some_and(|d| d.parent() == Some(root.join("tmp").as_path())),
        "skopeo's --tmpdir {tmpdir:?} is not in {}/tmp",
        root.display()
    );

    // podman, with the same storage.conf and no storage options, has the image.
    let id = run(Command::new("podman")
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .args([
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "image",
            "inspect",
            "localhost/relocated:1",
            "--format",
            "{{.Id}}",
        ]))?;
    let id = String::from_utf8(id.stdout)?;
    ensure!(
        id.trim() == &f.config_digest[7..],
        "podman image Id {} != config digest {}",
        id.trim(),
        f.config_digest
    );
    ensure!(
        root.join("vfs-images/images.json").exists(),
        "the image is not in the relocated graph root"
    );
    ensure!(
        Path::new(DEFAULT_GRAPH_ROOT).exists() == default_existed,
        "{DEFAULT_GRAPH_ROOT} was created"
    );
    ensure!(
        ours_in_default_tmp() == ours_before,
        "a cfs-export directory was left in {DEFAULT_GRAPH_ROOT}/tmp"
    );

    // Errors name the relocated graph root...
    let blocked = t.path().join("blocked");
    std::fs::create_dir_all(&blocked)?;
    std::fs::write(blocked.join("tmp"), "not a directory")?;
    let blocked_conf = t.path().join("blocked.conf");
    std::fs::write(
        &blocked_conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            blocked.display(),
            runroot.display()
        ),
    )?;
    let out = copy(&repo, &blocked_conf, &skopeo, "localhost/blocked:1")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && err.contains(&blocked.join("tmp").display().to_string()),
        "exit {:?}, error does not name {}/tmp: {err}",
        out.status.code(),
        blocked.display()
    );
    // ...and a malformed storage.conf, which skopeo would refuse too.
    let broken = t.path().join("broken.conf");
    std::fs::write(&broken, "[storage\ngraphroot = \"/x\"\n")?;
    let out = copy(&repo, &broken, &skopeo, "localhost/broken:1")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1)
            && err.contains(&format!("{} is not a valid storage.conf", broken.display())),
        "exit {:?}: {err}",
        out.status.code()
    );
    Ok(())
}
