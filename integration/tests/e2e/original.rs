//! Issue 18: the original compressed bytes come back, so the manifest digest
//! survives. Layers made by the real encoders: skopeo 1.9.3 `--dest-compress`
//! (pgzip), a Go stdlib program (compress/gzip), Python's zlib at level 6,
//! and one uncompressed.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::{cfs_with, run, run_with_stdin, Registry, Storage};

/// Layer-like tars: text that compresses, noise that does not, several MiB
/// so pgzip's 1 MiB blocks are crossed.
fn tars() -> Vec<Vec<u8>> {
    let words = integration::doc_words(400_000);
    vec![
        TarBuilder::new()
            .dir("usr")
            .file("usr/words", &words)
            .file("usr/blob", &fixture::noise(1 << 20, 3))
            .finish(true),
        TarBuilder::new()
            .file("etc/noise", &fixture::noise(2 << 20, 4))
            .file("etc/words", &words[..1 << 20])
            .finish(false),
        TarBuilder::new()
            .file("srv/words", &words[3 << 20..])
            .finish(false),
        TarBuilder::new()
            .file("tiny", b"uncompressed\n")
            .finish(false),
        TarBuilder::new()
            .dir("app")
            .file("app/words", &words[1 << 20..(3 << 20) + 777])
            .file("app/noise", &fixture::noise(300_000, 5))
            .finish(false),
    ]
}

/// Go's compress/gzip (DefaultCompression) over stdin, as BuildKit writes layers.
pub(crate) fn go_gzip(dir: &Path, data: &[u8], level: u8) -> Result<Vec<u8>> {
    let src = dir.join("gogzip.go");
    // As go-containerregistry writes a layer (level 1) and BuildKit (default):
    // io.Copy into gzip.NewWriterLevel, then Close.
    std::fs::write(
        &src,
        "package main\nimport (\"compress/gzip\"; \"io\"; \"os\"; \"strconv\")\n\
         func main() { l, _ := strconv.Atoi(os.Args[1]); w, err := gzip.NewWriterLevel(os.Stdout, l); if err != nil { panic(err) }; if _, err := io.Copy(w, os.Stdin); err != nil { panic(err) }; if err := w.Close(); err != nil { panic(err) } }\n",
    )?;
    let out = run_with_stdin(
        Command::new("go")
            .arg("run")
            .arg(&src)
            .arg(level.to_string())
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("gocache")),
        data,
    )?;
    Ok(out.stdout)
}

/// zlib level 6 in flate2's gzip framing, made by Python's zlib.
fn zlib6(dir: &Path, data: &[u8]) -> Result<Vec<u8>> {
    let input = dir.join("zlib-in");
    std::fs::write(&input, data)?;
    let out = run(Command::new("python3").arg("-c").arg(
        "import sys, zlib, struct\n\
         d = open(sys.argv[1], 'rb').read()\n\
         c = zlib.compressobj(6, zlib.DEFLATED, -15, 8)\n\
         body = c.compress(d) + c.flush()\n\
         sys.stdout.buffer.write(b'\\x1f\\x8b\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\xff' + body + struct.pack('<II', zlib.crc32(d), len(d) & 0xffffffff))",
    ).arg(&input))?;
    Ok(out.stdout)
}

/// An OCI layout at `dir` with `config` and these (media type, blob) layers; its manifest digest.
pub(crate) fn layout(dir: &Path, config: &[u8], layers: &[(&str, Vec<u8>)]) -> Result<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |b: &[u8]| -> Result<String> {
        let d = sha256(b);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), b)?;
        Ok(d)
    };
    let descs: Vec<String> = layers
        .iter()
        .map(|(mt, b)| {
            Ok(format!(
                r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#,
                put(b)?,
                b.len()
            ))
        })
        .collect::<Result<_>>()?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        put(config)?,
        config.len(),
        descs.join(",")
    );
    let digest = put(manifest.as_bytes())?;
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"app:1"}}}}]}}"#,
            manifest.len()
        ),
    )?;
    Ok(digest)
}

/// The manifest digest `index.json` in `dir` names first.
pub(crate) fn index_manifest(index: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(index)?;
    Ok(v["manifests"][0]["digest"]
        .as_str()
        .context("digest")?
        .to_string())
}

/// skopeo-made (pgzip) layers, and a mixed image (pgzip, Go, zlib 6,
/// uncompressed): exported to oci:, oci-archive:, a registry and
/// containers-storage, every layer is reproduced and the manifest digest is
/// the original's.
pub fn original_compressed_bytes_keep_the_manifest_digest() -> Result<()> {
    let t = tempfile::tempdir()?;
    let tars = tars();
    let plain = t.path().join("plain");
    let layers: Vec<_> = tars.iter().map(|b| (b.clone(), Kind::Tar)).collect();
    let f = fixture::write_layout(&plain, "app:1", "amd64", &layers);
    let pg = t.path().join("pg");
    integration::skopeo_pgzip(&plain, &pg, "app:1")?;
    let pg_manifest = index_manifest(&std::fs::read_to_string(pg.join("index.json"))?)?;
    let pg_blob = |i: usize| -> Result<Vec<u8>> {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(
            pg.join("blobs/sha256")
                .join(pg_manifest.trim_start_matches("sha256:")),
        )?)?;
        let d = m["layers"][i]["digest"].as_str().context("layer")?;
        Ok(std::fs::read(
            pg.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )?)
    };
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let mixed = t.path().join("mixed");
    let mixed_manifest = layout(
        &mixed,
        &f.config_bytes,
        &[
            (gz, pg_blob(0)?),
            (gz, go_gzip(t.path(), &tars[1], 6)?),
            (gz, zlib6(t.path(), &tars[2])?),
            ("application/vnd.oci.image.layer.v1.tar", tars[3].clone()),
            // crane, ko, kaniko: Go's BestSpeed.
            (gz, go_gzip(t.path(), &tars[4], 1)?),
        ],
    )?;

    // A cache of our own: the first export searches, the next ones remember.
    let cache = t.path().join("cache");
    let cfs = |repo: &Path, args: &[&str]| cfs_with(repo, args, &[("XDG_CACHE_HOME", &cache)]);
    let mut summary = String::new();
    for (name, src, manifest) in [
        ("pgzip", &pg, &pg_manifest),
        ("mixed", &mixed, &mixed_manifest),
    ] {
        let repo = t.path().join(format!("repo-{name}"));
        cfs(&repo, &["import", &format!("oci:{}:app:1", src.display())])?;
        let out = t.path().join(format!("out-{name}"));
        let report = cfs(
            &repo,
            &[
                "--json",
                "export",
                "app:1",
                "--to",
                &format!("oci:{}", out.display()),
            ],
        )?;
        let got = index_manifest(&std::fs::read_to_string(out.join("index.json"))?)?;
        ensure!(
            &got == manifest,
            "{name}: manifest {got}, original {manifest}: {report}"
        );
        let remembered = std::fs::read_dir(cache.join("cfs-export/reproduce"))?.count();
        ensure!(
            remembered == 5 + usize::from(name == "mixed") * 3,
            "{name}: {remembered} outcomes remembered"
        );
        let r: serde_json::Value = serde_json::from_str(&report)?;
        let blobs: Vec<String> = r["images"][0]["layers"]
            .as_array()
            .context("layers")?
            .iter()
            .map(|l| {
                format!(
                    "{}:{}",
                    l["blob"].as_str().unwrap_or("?"),
                    l["compression"]["level"]
                )
            })
            .collect();
        summary.push_str(&format!("{name}: {}; ", blobs.join(" ")));
        let archive = t.path().join(format!("{name}.tar"));
        cfs(
            &repo,
            &[
                "export",
                "app:1",
                "--to",
                &format!("oci-archive:{}", archive.display()),
            ],
        )?;
        let index = run(Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("index.json"))?;
        let got = index_manifest(&String::from_utf8(index.stdout)?)?;
        ensure!(
            &got == manifest,
            "{name} archive: manifest {got}, original {manifest}"
        );
        // A second export finds the encoder in the cache (no search).
        let again = t.path().join(format!("again-{name}"));
        cfs(
            &repo,
            &[
                "export",
                "app:1",
                "--to",
                &format!("oci:{}", again.display()),
            ],
        )?;
        ensure!(
            index_manifest(&std::fs::read_to_string(again.join("index.json"))?)? == *manifest,
            "{name}: second export"
        );
        // containers-storage, streamed and through a layout: podman records
        // the original manifest digest and the image ID.
        for via_layout in [false, true] {
            let storage = Storage::new(&t.path().join(format!("storage-{name}-{via_layout}")));
            let mut args = vec![
                "--json",
                "copy-to-storage",
                "app:1",
                "--target",
                "localhost/app:1",
                "--compression",
                "original",
            ];
            if via_layout {
                args.push("--via-layout");
            }
            let flags = storage.flags();
            args.extend(flags.iter().map(String::as_str));
            let report = cfs(&repo, &args)?;
            let got = storage.podman(&[
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Digest}}",
                "localhost/app:1",
            ])?;
            let want = format!(
                "{} {manifest}",
                f.config_digest.trim_start_matches("sha256:")
            );
            ensure!(
                got.trim() == want,
                "{name} storage (via layout: {via_layout}): podman has {got:?}, want {want:?}: {report}"
            );
        }
        if name == "mixed" {
            let password = "Pa55-original";
            let reg = Registry::start(&t.path().join("registry"), "tester", password)?;
            let creds = t.path().join("creds");
            std::fs::write(&creds, format!("tester:{password}\n"))?;
            let dest = format!("docker://{}/app:1", reg.addr);
            cfs(
                &repo,
                &[
                    "export",
                    "app:1",
                    "--to",
                    &dest,
                    "--creds-file",
                    &creds.display().to_string(),
                    "--dest-tls-verify",
                    "false",
                ],
            )?;
            let raw = run(Command::new("skopeo").args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds",
                &format!("tester:{password}"),
                &dest,
            ]))?;
            let got = sha256(&raw.stdout);
            ensure!(
                &got == manifest,
                "registry: manifest {got}, original {manifest}"
            );
        }
    }
    // A miss: GNU gzip -9 is none of our encoders. The layer is recompressed
    // and the user is told why the manifest digest changes.
    let tar0 = t.path().join("tar0");
    std::fs::write(&tar0, &tars[0])?;
    let gz9 = run(Command::new("gzip").args(["-9", "-n", "-c"]).arg(&tar0))?.stdout;
    let missed = t.path().join("missed");
    let config = fixture::config_json("amd64", &f.diff_ids[..1]);
    layout(&missed, &config, &[(gz, gz9)])?;
    let repo = t.path().join("repo-missed");
    cfs(
        &repo,
        &["import", &format!("oci:{}:app:1", missed.display())],
    )?;
    let out = Command::new(fixture::bin())
        .env("XDG_CACHE_HOME", &cache)
        .arg("--repo")
        .arg(&repo)
        .args(["export", "app:1", "--to"])
        .arg(format!("oci:{}", t.path().join("out-missed").display()))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("recompressed")
            && stderr.contains("no encoder we know")
            && stderr.contains("gzip of layer 1;"),
        "a miss: {out:?}"
    );
    eprintln!("{summary}");
    Ok(())
}
