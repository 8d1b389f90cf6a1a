//! Issue 11 end to end: a bootc host whose repository composefs-oci's own
//! `pull` made (SHA-512, bootc's tags only), copied into real containers-storage.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, write_layout, Kind, TarBuilder};
use integration::{busybox_layers, strict, BootcHost, Storage};

/// Three versions of one runnable image, sharing the busybox base layer.
fn versions(dir: &Path) -> Result<Vec<fixture::Fixture>> {
    let base = busybox_layers()?;
    (1..=3)
        .map(|v| {
            let mut layers = base.clone();
            // composefs-oci builds each image's EROFS at pull time, which needs /usr.
            let version = TarBuilder::new()
                .dir("usr")
                .file("usr/os-release", format!("VERSION_ID={v}\n").as_bytes())
                .dir("etc")
                .file("etc/os-version", format!("VERSION={v}\n").as_bytes())
                .finish(false);
            layers.push((version, Kind::Tar));
            Ok(write_layout(
                &dir.join(format!("v{v}")),
                "os",
                "amd64",
                &layers,
            ))
        })
        .collect()
}

fn podman_id(storage: &Storage, name: &str) -> Result<String> {
    Ok(storage
        .podman(&["image", "inspect", name, "--format", "{{.Id}}"])?
        .trim()
        .to_string())
}

fn os_version(storage: &Storage, name: &str) -> Result<String> {
    storage.podman_run(name, &["/bin/cat", "/etc/os-version"])
}

fn with_storage<'a>(args: &[&'a str], flags: &'a [String]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(flags.iter().map(String::as_str));
    v
}

/// No IMAGE: the booted image, though the staged one has the same name;
/// `--source` by name: bootc's order (staged), reported; `--deployment rollback`.
pub fn bootc_host_copy_to_storage() -> Result<()> {
    let t = tempfile::tempdir()?;
    let host = BootcHost::new(&t.path().join("host"), &versions(&t.path().join("src"))?)?;
    let (rollback, booted, staged) = (&host.images[0], &host.images[1], &host.images[2]);
    let sysroot = &host.tree.sysroot;
    let storage = Storage::new(t.path());
    let flags = storage.flags();

    let (json, _) = host.cfs(
        sysroot,
        &with_storage(&["--json", "copy-to-storage"], &flags),
    )?;
    let report: serde_json::Value = serde_json::from_str(&json)?;
    ensure!(
        report["images"][0]["deployment"]["role"] == "booted",
        "{report}"
    );
    ensure!(
        report["destination"] == "containers-storage:localhost/bootc",
        "{report}"
    );
    let id = podman_id(&storage, "localhost/bootc")?;
    ensure!(
        id == booted.config_digest[7..],
        "podman Id {id} != booted config {}",
        booted.config_digest
    );
    let v = os_version(&storage, "localhost/bootc")?;
    ensure!(v.trim() == "VERSION=2", "the booted image printed {v:?}");

    let source = format!("docker://{}", BootcHost::NAME);
    let (_, err) = host.cfs(
        sysroot,
        &with_storage(
            &[
                "copy-to-storage",
                "--source",
                &source,
                "--target",
                "localhost/picked",
            ],
            &flags,
        ),
    )?;
    ensure!(
        err.contains(&format!("is the staged deployment {}", &host.ids[2][..12]))
            && err.contains(&format!(
                "also matched, not used: booted {}, rollback {}",
                &host.ids[1][..12],
                &host.ids[0][..12]
            )),
        "stderr: {err}"
    );
    ensure!(podman_id(&storage, "localhost/picked")? == staged.config_digest[7..]);

    host.cfs(
        sysroot,
        &with_storage(
            &[
                "copy-to-storage",
                "--deployment",
                "rollback",
                "--target",
                "containers-storage:localhost/rb:1",
            ],
            &flags,
        ),
    )?;
    ensure!(podman_id(&storage, "localhost/rb:1")? == rollback.config_digest[7..]);
    Ok(())
}

/// `export booted --to oci:` keeps the image ID, from a sysroot bind-mounted read-only.
pub fn bootc_host_read_only_sysroot() -> Result<()> {
    let t = tempfile::tempdir()?;
    let host = BootcHost::new(&t.path().join("host"), &versions(&t.path().join("src"))?)?;
    let before = fixture::snapshot(&host.tree.sysroot);
    let mnt = t.path().join("ro");
    std::fs::create_dir_all(&mnt)?;
    let mount = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let target = mnt.to_str().context("path")?;
    if !mount(&[
        "--bind",
        host.tree.sysroot.to_str().context("path")?,
        target,
    ]) {
        ensure!(
            !strict(),
            "bind mounts are needed under CI=true (run as root)"
        );
        eprintln!("skipped: cannot bind-mount (not root?)");
        return Ok(());
    }
    let result = (|| -> Result<()> {
        ensure!(
            mount(&["-o", "remount,ro,bind", target]),
            "remounting read-only failed"
        );
        ensure!(
            std::fs::write(mnt.join("probe"), b"x").is_err(),
            "the mount is writable"
        );
        let out = t.path().join("out");
        let (json, _) = host.cfs(
            &mnt,
            &[
                "--json",
                "export",
                "booted",
                "--to",
                &format!("oci:{}:b", out.display()),
            ],
        )?;
        let report: serde_json::Value = serde_json::from_str(&json)?;
        ensure!(
            report["images"][0]["config_digest"] == host.images[1].config_digest.as_str(),
            "{report}"
        );
        let (_, m) = fixture::manifest_for(&out, "b");
        ensure!(
            m["config"]["digest"] == host.images[1].config_digest.as_str(),
            "{m}"
        );
        let storage = Storage::new(t.path());
        host.cfs(&mnt, &with_storage(&["copy-to-storage"], &storage.flags()))?;
        ensure!(podman_id(&storage, "localhost/bootc")? == host.images[1].config_digest[7..]);
        let (v, _) = host.cfs(&mnt, &["verify", "--all"])?;
        ensure!(v.contains("all intact"), "{v}");
        Ok(())
    })();
    let unmounted = Command::new("umount")
        .arg(target)
        .status()
        .is_ok_and(|s| s.success());
    result?;
    ensure!(unmounted, "could not unmount {target}");
    fixture::assert_same_tree(&before, &fixture::snapshot(&host.tree.sysroot));
    Ok(())
}

/// `serve` on a bootc host: each deployment's image also as
/// `NAME:booted`, `NAME:staged`, `NAME:rollback` (with and without the
/// registry), so peers can pull exactly what a host booted.
pub fn bootc_host_serves_deployments_as_tags() -> Result<()> {
    use std::io::{BufRead, BufReader};
    let t = tempfile::tempdir()?;
    let host = BootcHost::new(&t.path().join("host"), &versions(&t.path().join("src"))?)?;
    let mut child = host
        .tree
        .command(
            &host.tree.sysroot,
            &["serve", "--anonymous", "--listen", "127.0.0.1:0"],
        )
        .env("XDG_CACHE_HOME", t.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<()> {
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().context("stdout")?).read_line(&mut first)?;
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("first line {first:?}"))?
            .to_string();
        let name = BootcHost::NAME.trim_end_matches(":latest");
        let short = name.trim_start_matches("quay.io/");
        for (role, img) in [
            ("rollback", &host.images[0]),
            ("booted", &host.images[1]),
            ("staged", &host.images[2]),
        ] {
            for served in [name, short] {
                let out = integration::run(Command::new("skopeo").args([
                    "inspect",
                    "--config",
                    "--raw",
                    "--tls-verify=false",
                    &format!("docker://{addr}/{served}:{role}"),
                ]))?;
                let got = fixture::sha256(&out.stdout);
                ensure!(
                    got == img.config_digest,
                    "{served}:{role} serves config {got}, the {role} deployment's is {}",
                    img.config_digest
                );
            }
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
