//! Issue 25, what it must show: images whose gzip layers the REAL encoders
//! made keep their original manifest digest through a composefs repository
//! and `export --compression original`, in every destination that holds a
//! manifest: a registry (`docker://`, TLS and htpasswd), podman's
//! `containers-storage:`, `dir:` and `oci:`. The encoders: Go's
//! compress/gzip at `BestSpeed` as crane / go-containerregistry writes
//! layers, Debian's umoci 0.4.7 (pgzip, 256 KiB blocks; its own image too,
//! manifest as umoci wrote it), and ostree-ext's tar-rs → flate2 `GzEncoder`
//! linked to the zlib-ng C library (2.2.3 as on Fedora 41 / CentOS Stream 10,
//! 2.3.3 as on Fedora ≥ 43; `integration/zlibng-layer`, built here), and
//! GNU `gzip -n` (Debian's gzip) as shell pipelines write layers. Every
//! digest checked is computed here from the bytes the tools wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256, TarBuilder};
use integration::{cfs_with, run, run_with_stdin, Registry, Storage};

use crate::original::{go_gzip, index_manifest, layout};

/// A real encoder of gzip layers.
struct Encoder {
    /// The history `created_by` of a layer it made, as its tool writes one.
    created_by: &'static str,
    /// The candidate expected to reproduce its layers (`--json`'s
    /// `compression.level`).
    candidate: &'static str,
    /// Its gzip layer of a tar's contents (umoci and ostree-ext write a tar of their own).
    make: fn(&Path, &[u8]) -> Result<Vec<u8>>,
}

/// One layer per encoder, bottom first: one line each.
const ENCODERS: &[Encoder] = &[
    Encoder {
        created_by: "crane append -f layer.tar.gz (go-containerregistry)",
        candidate: "gostd-1",
        make: crane,
    },
    Encoder {
        created_by: "umoci repack",
        candidate: "pgzip-1.15.10-b256k",
        make: umoci_layer,
    },
    Encoder {
        created_by: "ostree-ext encapsulate (zlib-ng 2.2.3)",
        candidate: "zlibng6-2.2",
        make: |_, tar| zlibng(tar, &ZLIBNG_22),
    },
    Encoder {
        created_by: "ostree-ext encapsulate (zlib-ng 2.3.3)",
        candidate: "zlibng6-2.3",
        make: |_, tar| zlibng(tar, &ZLIBNG_23),
    },
    Encoder {
        created_by: "/bin/sh -c tar -c . | gzip -n",
        candidate: "gnugzip6",
        make: |_, tar| Ok(run_with_stdin(Command::new("gzip").args(["-n", "-c"]), tar)?.stdout),
    },
];

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Layer `i`'s contents: a few MiB of text and noise (pgzip's 1 MiB and
/// umoci's 256 KiB blocks crossed), directories, links and a path over 100
/// bytes (tar-rs writes it as a GNU long name).
fn contents(i: usize) -> Vec<u8> {
    let words = integration::doc_words(90_000 + 11_111 * i as u32);
    let top = format!("usr/share/layer{i}");
    let deep = format!("{top}/{}", "d".repeat(70));
    TarBuilder::new()
        .dir("usr")
        .dir("usr/share")
        .dir(&top)
        .dir(&deep)
        .file(&format!("{top}/words"), &words)
        .file(
            &format!("{top}/noise"),
            &fixture::noise(600_000 + i * 4099, i as u64),
        )
        .hardlink(&format!("{top}/words-link"), &format!("{top}/words"))
        .symlink(&format!("{top}/latest"), "words")
        .file(&format!("{deep}/{}", "f".repeat(60)), &words[..70_001])
        .file(&format!("{top}/empty"), b"")
        .finish(false)
}

/// crane / ko / kaniko: Go's compress/gzip at `BestSpeed`.
fn crane(dir: &Path, tar: &[u8]) -> Result<Vec<u8>> {
    go_gzip(dir, tar, 1)
}

/// An image umoci 0.4.7 makes of `tar`'s contents, as `make demo` does
/// (`init`, `new`, `unpack`, files in, `repack`): its layout, tag `umoci`.
fn umoci_image(dir: &Path, tar: &[u8]) -> Result<PathBuf> {
    let layout = dir.join("umoci-layout");
    let image = format!("{}:umoci", layout.display());
    let bundle = dir.join("umoci-bundle");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle))?;
    tar::Archive::new(tar)
        .unpack(bundle.join("rootfs"))
        .context("unpacking the contents into umoci's bundle")?;
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    Ok(layout)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The manifest digest `index.json` of `layout` names first.
fn index_digest(layout: &Path) -> Result<String> {
    index_manifest(&String::from_utf8(read(&layout.join("index.json"))?)?)
}

/// The manifest bytes `index.json` of `layout` names first.
fn layout_manifest(layout: &Path) -> Result<Vec<u8>> {
    Ok(fixture::read_blob(layout, &index_digest(layout)?))
}

/// umoci's layer: the last one of its image.
fn umoci_layer(dir: &Path, tar: &[u8]) -> Result<Vec<u8>> {
    let layout = umoci_image(dir, tar)?;
    let manifest: serde_json::Value = serde_json::from_slice(&layout_manifest(&layout)?)?;
    let layer = manifest["layers"]
        .as_array()
        .and_then(|l| l.last())
        .context("umoci wrote no layer")?;
    ensure!(layer["mediaType"] == GZIP, "umoci's layer: {layer}");
    Ok(fixture::read_blob(
        &layout,
        layer["digest"].as_str().context("digest")?,
    ))
}

/// A build of `integration/zlibng-layer`: its manifest dir, its binary, and
/// the zlib-ng release (compat mode) it links.
struct ZlibNg {
    manifest_dir: &'static str,
    bin: &'static str,
    version: &'static str,
}

/// zlib-ng 2.2.3 (libz-sys 1.1.21), as Fedora 41 and CentOS Stream 10 ship it.
const ZLIBNG_22: ZlibNg = ZlibNg {
    manifest_dir: "zlibng-layer",
    bin: "zlibng22-layer",
    version: "2.2.3",
};
/// The same main.rs on zlib-ng 2.3.3 (libz-sys 1.1.25), as Fedora ≥ 43.
const ZLIBNG_23: ZlibNg = ZlibNg {
    manifest_dir: "zlibng-layer/zlibng-2.3",
    bin: "zlibng23-layer",
    version: "2.3.3",
};

/// Build the ostree-ext-like layer writer `w` from zlib-ng's C sources
/// (cmake; crates from the registry) under the target dir, kept for the
/// next run; its path, checked to run on that zlib-ng release.
fn zlibng_writer(w: &ZlibNg) -> Result<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| here.join("../target"), PathBuf::from)
        .join("zlibng-layer");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--release", "--locked", "--quiet"])
        .arg("--manifest-path")
        .arg(here.join(w.manifest_dir).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target))?;
    let path = target.join("release").join(w.bin);
    // zlibVersion() of zlib-ng's compat build, and the release of its zlib.h.
    let version = run(Command::new(&path).arg("--version"))?.stdout;
    let want = format!("1.3.1.zlib-ng {}", w.version);
    ensure!(
        String::from_utf8_lossy(&version).trim() == want,
        "{} says it links {:?}, not {want:?}",
        w.bin,
        String::from_utf8_lossy(&version)
    );
    Ok(path)
}

/// ostree-ext's layer of `tar`'s contents, written on zlib-ng `w`.
fn zlibng(tar: &[u8], w: &ZlibNg) -> Result<Vec<u8>> {
    Ok(run_with_stdin(&mut Command::new(zlibng_writer(w)?), tar)?.stdout)
}

/// A config naming these layers' diff_ids, one history entry each.
fn config(diff_ids: &[String]) -> Vec<u8> {
    let history: Vec<String> = ENCODERS
        .iter()
        .map(|e| {
            format!(
                r#"{{"created":"2026-11-01T00:00:00Z","created_by":"{}"}}"#,
                e.created_by
            )
        })
        .collect();
    format!(
        r#"{{"created":"2026-11-01T00:00:00Z","architecture":"amd64","os":"linux","config":{{"Env":["PATH=/usr/bin:/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":[{}]}}"#,
        diff_ids.join(r#"",""#),
        history.join(",")
    )
    .into_bytes()
}

/// An image in the repository: its name there, the repository it gets in
/// a registry and in containers-storage, its original manifest and config
/// digests (computed from the layout), the candidates expected.
struct Original {
    name: &'static str,
    path: &'static str,
    manifest: String,
    config: String,
    candidates: Vec<&'static str>,
}

/// Where the exports go, and how they run.
struct Dests {
    dir: PathBuf,
    repo: PathBuf,
    cache: PathBuf,
    registry: Registry,
    creds: PathBuf,
    password: &'static str,
    storage: Storage,
}

impl Dests {
    fn cfs(&self, args: &[&str]) -> Result<String> {
        cfs_with(&self.repo, args, &[("XDG_CACHE_HOME", &self.cache)])
    }

    /// Export `img` everywhere; what each destination holds, checked
    /// against the original digests.
    fn check(&self, img: &Original) -> Result<String> {
        let want = &img.manifest;
        // oci: the first export searches; its report says per layer how.
        let oci = self.dir.join(format!("oci-{}", img.path));
        let report = self.cfs(&[
            "--json",
            "export",
            img.name,
            "--compression",
            "original",
            "--to",
            &format!("oci:{}", oci.display()),
        ])?;
        let r: serde_json::Value = serde_json::from_str(&report)?;
        let layers = r["images"][0]["layers"].as_array().context("layers")?;
        let how: Vec<String> = layers
            .iter()
            .map(|l| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
                format!("{}:{}", text(&l["blob"]), text(&l["compression"]["level"]))
            })
            .collect();
        let expected: Vec<String> = img
            .candidates
            .iter()
            .map(|c| format!("reproduced:{c}"))
            .collect();
        ensure!(
            how == expected,
            "{}: layers {how:?}, expected {expected:?}: {report}",
            img.name
        );
        let got = index_digest(&oci)?;
        ensure!(
            &got == want,
            "{} oci: manifest {got}, original {want}",
            img.name
        );
        ensure!(
            sha256(&fixture::read_blob(&oci, &got)) == *want,
            "{} oci: the manifest blob is not its digest",
            img.name
        );

        // dir: manifest.json is the original's bytes.
        let dir = self.dir.join(format!("dir-{}", img.path));
        self.cfs(&[
            "export",
            img.name,
            "--to",
            &format!("dir:{}", dir.display()),
        ])?;
        let got = sha256(&read(&dir.join("manifest.json"))?);
        ensure!(
            &got == want,
            "{} dir: manifest {got}, original {want}",
            img.name
        );

        // docker://: what the registry serves.
        let dest = format!("docker://{}/{}:1", self.registry.addr, img.path);
        self.cfs(&[
            "export",
            img.name,
            "--to",
            &dest,
            "--creds-file",
            &self.creds.display().to_string(),
            "--dest-tls-verify",
            "false",
        ])?;
        let raw = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
            .arg(format!("tester:{}", self.password))
            .arg(&dest))?
        .stdout;
        let got = sha256(&raw);
        ensure!(
            &got == want,
            "{} registry: manifest {got}, original {want}",
            img.name
        );

        // containers-storage: podman records the manifest digest and image ID.
        let target = format!("localhost/{}:1", img.path);
        let flags = self.storage.flags();
        let mut args = vec![
            "copy-to-storage",
            img.name,
            "--target",
            &target,
            "--compression",
            "original",
        ];
        args.extend(flags.iter().map(String::as_str));
        self.cfs(&args)?;
        let got = self.storage.podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Digest}}",
            &target,
        ])?;
        let id = img.config.trim_start_matches("sha256:");
        ensure!(
            got.trim() == format!("{id} {want}"),
            "{} containers-storage: podman has {got:?}, want {id} {want}",
            img.name
        );
        Ok(format!("{} {want}: {}", img.name, how.join(" ")))
    }
}

/// A multi-layer image, each layer by another real encoder (as images are
/// after `FROM`), and umoci's own image: imported, then exported to
/// `oci:`, `dir:`, a registry and containers-storage, each keeps the
/// original manifest digest.
pub fn real_encoders_keep_the_manifest_digest() -> Result<()> {
    let t = tempfile::tempdir()?;
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, e) in ENCODERS.iter().enumerate() {
        let work = t.path().join(format!("encoder-{i}"));
        std::fs::create_dir_all(&work)?;
        let blob = (e.make)(&work, &contents(i)).with_context(|| e.created_by)?;
        diff_ids.push(sha256(&fixture::decompress(GZIP, &blob)));
        blobs.push((GZIP, blob));
    }
    let config = config(&diff_ids);
    let mixed = t.path().join("mixed");
    let mixed_manifest = layout(&mixed, &config, &blobs)?;

    // umoci's own image, its manifest and config as umoci wrote them.
    let own = umoci_image(&t.path().join("umoci-own"), &contents(9))?;
    let own_manifest = layout_manifest(&own)?;
    let own_parsed: serde_json::Value = serde_json::from_slice(&own_manifest)?;

    let password = "Pa55-identity";
    let registry = Registry::start(&t.path().join("registry"), "tester", password)?;
    let creds = t.path().join("creds");
    std::fs::write(&creds, format!("tester:{password}\n"))?;
    let dests = Dests {
        dir: t.path().to_path_buf(),
        repo: t.path().join("repo"),
        cache: t.path().join("cache"),
        registry,
        creds,
        password,
        storage: Storage::new(&t.path().join("storage")),
    };
    dests.cfs(&["import", &format!("oci:{}:app:1", mixed.display())])?;
    dests.cfs(&["import", &format!("oci:{}:umoci", own.display())])?;
    let images = [
        Original {
            name: "app:1",
            path: "mixed",
            manifest: mixed_manifest,
            config: sha256(&config),
            candidates: ENCODERS.iter().map(|e| e.candidate).collect(),
        },
        Original {
            name: "umoci",
            path: "umoci",
            manifest: sha256(&own_manifest),
            config: own_parsed["config"]["digest"]
                .as_str()
                .context("umoci's config")?
                .to_string(),
            candidates: vec!["pgzip-1.15.10-b256k"],
        },
    ];
    let sizes: Vec<String> = blobs
        .iter()
        .zip(&diff_ids)
        .map(|((_, b), d)| format!("{} bytes (tar {d})", b.len()))
        .collect();
    let mut summary = vec![format!("layers: {}", sizes.join(", "))];
    for img in &images {
        summary.push(dests.check(img)?);
    }
    eprintln!("{}", summary.join("\n"));
    Ok(())
}
