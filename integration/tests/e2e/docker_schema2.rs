//! Issue 25: a Docker schema2 image, pushed to a real registry as Docker Hub
//! holds images and pulled back from it, keeps its manifest digest wherever
//! the destination can hold a Docker manifest (`docker://`,
//! `containers-storage:`, `dir:`, `cfs-export serve`); an OCI layout gets an
//! OCI manifest, and the report says why in one line.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256, Kind};
use integration::{run, Registry, Storage};

use crate::serve::{os_tars, Image, Serve};

/// Docker's schema2 manifest media type.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The image's name in the repository (served as `library/hello:1`).
const TAG: &str = "docker.io/library/hello:1";

/// An OCI layout naming the manifest of skopeo's `dir:` copy `pulled` as it
/// is, Docker schema2 included (composefs-oci's pull stores a manifest as it
/// comes; `import` reads an image in from a layout).
fn layout_of_dir(pulled: &Path, layout: &Path, manifest: &[u8]) -> Result<()> {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    for e in std::fs::read_dir(pulled)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            std::fs::copy(e.path(), blobs.join(&name))?;
        }
    }
    let digest = sha256(manifest);
    std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), manifest)?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"hello"}}}}]}}"#,
            manifest.len()
        ),
    )?;
    Ok(())
}

/// Push pgzip layers (skopeo `--dest-compress`) to a registry as Docker
/// schema2 and pull the image back; export it to every destination kind.
pub fn docker_schema2_original_kept_where_it_fits() -> Result<()> {
    let t = tempfile::tempdir()?;
    let plain = t.path().join("plain");
    let layers: Vec<_> = os_tars().into_iter().map(|b| (b, Kind::Tar)).collect();
    let f = fixture::write_layout(&plain, "hello", "amd64", &layers);
    let pg = t.path().join("pgzip");
    integration::skopeo_pgzip(&plain, &pg, "hello")?;

    let password = "Pa55-schema2";
    let creds = format!("tester:{password}");
    let reg = Registry::start(&t.path().join("registry"), "tester", password)?;
    let hub = format!("docker://{}/library/hello:1", reg.addr);
    run(Command::new("skopeo")
        .args(["copy", "-q", "--format", "v2s2", "--dest-tls-verify=false"])
        .args(["--dest-creds", &creds])
        .arg(format!("oci:{}:hello", pg.display()))
        .arg(&hub))?;
    let pulled = t.path().join("pulled");
    run(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
        ])
        .arg(&hub)
        .arg(format!("dir:{}", pulled.display())))?;
    let manifest = std::fs::read(pulled.join("manifest.json"))?;
    let original = sha256(&manifest);
    let parsed: serde_json::Value = serde_json::from_slice(&manifest)?;
    ensure!(
        parsed["mediaType"] == DOCKER_MANIFEST && parsed["config"]["digest"] == f.config_digest,
        "the registry's manifest is not Docker schema2 of our config: {parsed}"
    );

    let src = t.path().join("src");
    layout_of_dir(&pulled, &src, &manifest)?;
    let img = Image {
        dir: t.path().to_path_buf(),
        repo: t.path().join("repo"),
        cache: t.path().join("cache"),
        manifest_digest: original.clone(),
        manifest_bytes: manifest.clone(),
        config_digest: f.config_digest.clone(),
        diff_ids: f.diff_ids.clone(),
        blobs: Vec::new(),
    };
    img.cfs(&[
        "import",
        &format!("oci:{}:hello", src.display()),
        "--tag",
        TAG,
    ])?;
    let mut summary = Vec::new();

    // oci: and oci-archive: cannot hold it: a new OCI manifest, said so.
    let out = t.path().join("out");
    let oci = format!("oci:{}", out.display());
    let report: serde_json::Value =
        serde_json::from_str(&img.cfs(&["--json", "export", TAG, "--to", &oci])?)?;
    let r = &report["images"][0];
    let new = r["manifest_digest"].as_str().context("manifest_digest")?;
    ensure!(
        new != original
            && r["original_manifest"] == false
            && r["config_digest"] == f.config_digest
            && r["manifest_not_kept"]
                == serde_json::json!({"reason": "docker-in-oci-layout", "original": original})
            && r["layers"]
                .as_array()
                .context("layers")?
                .iter()
                .all(|l| l["blob"] == "reproduced"),
        "oci: report {report}"
    );
    let (written, _) = fixture::manifest_for(&out, r["tag"].as_str().context("tag")?);
    ensure!(written == new, "oci: index names {written}, report {new}");
    let text = img.cfs(&[
        "export",
        TAG,
        "--to",
        &format!("oci:{}", t.path().join("out2").display()),
    ])?;
    let line = format!(
        "  image ID {} (kept); manifest {new} (new: an OCI layout cannot hold the original Docker manifest {original})",
        f.config_digest
    );
    ensure!(
        text.lines().any(|l| l == line),
        "oci: text report lacks {line:?}:\n{text}"
    );
    summary.push(format!("oci: {new} (new)"));
    let archive = t.path().join("hello.tar");
    let report: serde_json::Value = serde_json::from_str(&img.cfs(&[
        "--json",
        "export",
        TAG,
        "--to",
        &format!("oci-archive:{}", archive.display()),
    ])?)?;
    ensure!(
        report["images"][0]["manifest_digest"] == new
            && report["images"][0]["manifest_not_kept"]["original"] == original,
        "oci-archive: report {report}"
    );

    // A registry: the original bytes, Content-Type and all.
    let creds_file = t.path().join("creds");
    std::fs::write(&creds_file, format!("{creds}\n"))?;
    let dest = format!("docker://{}/copy/hello:1", reg.addr);
    let report: serde_json::Value = serde_json::from_str(&img.cfs(&[
        "--json",
        "export",
        TAG,
        "--to",
        &dest,
        "--creds-file",
        &creds_file.display().to_string(),
        "--dest-tls-verify",
        "false",
    ])?)?;
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
        .arg(&dest))?
    .stdout;
    ensure!(
        raw == manifest
            && report["streamed"] == true
            && report["images"][0]["original_manifest"] == true
            && report["images"][0]["manifest_digest"] == original,
        "registry: manifest {} (original {original}); report {report}",
        sha256(&raw)
    );
    summary.push(format!("docker://: {}", sha256(&raw)));

    // dir: the manifest file is the original.
    let dir = t.path().join("dir");
    img.cfs(&["export", TAG, "--to", &format!("dir:{}", dir.display())])?;
    let got = std::fs::read(dir.join("manifest.json"))?;
    ensure!(
        got == manifest,
        "dir: manifest {} (original {original})",
        sha256(&got)
    );
    summary.push(format!("dir: {}", sha256(&got)));

    // containers-storage: podman records the original digest and the image ID.
    let storage = Storage::new(&t.path().join("storage"));
    let flags = storage.flags();
    let mut args = vec![
        "copy-to-storage",
        TAG,
        "--target",
        "localhost/hello:1",
        "--compression",
        "original",
    ];
    args.extend(flags.iter().map(String::as_str));
    img.cfs(&args)?;
    let got = storage.podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Digest}}",
        "localhost/hello:1",
    ])?;
    let want = format!(
        "{} {original}",
        f.config_digest.trim_start_matches("sha256:")
    );
    ensure!(
        got.trim() == want,
        "containers-storage: podman has {got:?}, want {want:?}"
    );
    summary.push(format!("containers-storage: {}", got.trim()));

    // serve: the original bytes under the Docker media type.
    let serve = Serve::start(&img, &["--anonymous"])?;
    let listed = serve.more_lines(1, std::time::Duration::from_secs(5));
    let want = format!("  {TAG} manifest {original} (original)");
    ensure!(
        listed == [want.clone()],
        "serve lists {listed:?}, want {want:?}"
    );
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(serve.docker("library/hello:1")))?
    .stdout;
    ensure!(
        raw == manifest,
        "serve: manifest {} (original {original})",
        sha256(&raw)
    );
    let head = run(Command::new("curl")
        .args(["-sSI", "-H", &format!("Accept: {DOCKER_MANIFEST}")])
        .arg(format!(
            "http://{}/v2/library/hello/manifests/1",
            serve.addr
        )))?
    .stdout;
    let head = String::from_utf8_lossy(&head).to_lowercase();
    ensure!(
        head.contains(&format!("content-type: {DOCKER_MANIFEST}")),
        "serve: headers {head}"
    );
    summary.push(format!("serve: {}", sha256(&raw)));
    eprintln!("original {original}; {}", summary.join("; "));
    Ok(())
}
