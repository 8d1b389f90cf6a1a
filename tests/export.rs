//! End-to-end tests of import + export through the `cfs-export` binary, with
//! fixtures built in code and digests computed independently.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fixtures::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Export and return the parsed JSON report.
fn export_json(repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--json", "export"];
    full.extend_from_slice(args);
    serde_json::from_str(&cfs_ok(repo, &full)).unwrap()
}

fn layer_statuses(report: &serde_json::Value) -> Vec<String> {
    report["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_export_keeps_identity_and_original_compression() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(
        &t.path().join("src"),
        "app:1.0",
        "amd64",
        &standard_layers(),
    );
    import(&repo, &f);
    let out = t.path().join("out");
    cfs_ok(
        &repo,
        &[
            "export",
            "app:1.0",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );

    let (_, manifest) = manifest_for(&out, "app:1.0");
    // The config blob is the original bytes: same digest, same image ID.
    assert_eq!(manifest["config"]["digest"], f.config_digest.as_str());
    assert_eq!(read_blob(&out, &f.config_digest), f.config_bytes);
    assert_eq!(manifest["annotations"]["org.example.fixture"], "1");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let want_kinds = [Kind::Gzip, Kind::Zstd, Kind::Tar];
    for (i, l) in layers.iter().enumerate() {
        let mt = l["mediaType"].as_str().unwrap();
        assert_eq!(Kind::from_media_type(mt), want_kinds[i], "layer {i} kind");
        let blob = read_blob(&out, l["digest"].as_str().unwrap());
        assert_eq!(sha256(&blob), l["digest"].as_str().unwrap());
        assert_eq!(blob.len() as u64, l["size"].as_u64().unwrap());
        let tar = decompress(mt, &blob);
        assert_eq!(sha256(&tar), f.diff_ids[i], "layer {i} diff_id");
        assert_eq!(tar, f.tars[i], "layer {i} bytes");
    }
    // The uncompressed layer's blob is the diff_id itself.
    assert_eq!(layers[2]["digest"], f.diff_ids[2].as_str());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["platform"]["os"], "linux");
    assert_eq!(entry["platform"]["architecture"], "amd64");
    assert_eq!(
        std::fs::read_to_string(out.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
}

#[test]
fn uncompressed_original_keeps_manifest_digest() {
    let t = tmp();
    let repo = t.path().join("repo");
    let layers: Vec<_> = standard_layers()
        .into_iter()
        .map(|(tar, _)| (tar, Kind::Tar))
        .collect();
    let f = write_layout(&t.path().join("src"), "plain", "amd64", &layers);
    import(&repo, &f);
    let out = t.path().join("out");
    let report = export_json(
        &repo,
        &[
            "plain",
            "--compression",
            "none",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    assert_eq!(report["images"][0]["original_manifest"], true);
    let (digest, _) = manifest_for(&out, "plain");
    assert_eq!(digest, f.manifest_digest);
    assert_eq!(read_blob(&out, &digest), f.manifest_bytes);
}

#[test]
fn exports_are_reproducible_and_incremental() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app", "amd64", &standard_layers());
    import(&repo, &f);
    for compression in ["original", "gzip:9", "zstd:7", "none"] {
        let a = t.path().join(format!("a-{compression}"));
        let b = t.path().join(format!("b-{compression}"));
        for (dir, jobs) in [(&a, "1"), (&b, "3")] {
            cfs_ok(
                &repo,
                &[
                    "export",
                    "app",
                    "--compression",
                    compression,
                    "--jobs",
                    jobs,
                    "--to",
                    &format!("oci:{}", dir.display()),
                ],
            );
        }
        let bytes = |d: &Path| -> Vec<_> {
            snapshot(d)
                .into_iter()
                .map(|(p, (data, _, _))| (p, data))
                .collect()
        };
        assert_eq!(bytes(&a), bytes(&b), "{compression}: layouts differ");

        // Into the same layout again: nothing written, every layer skipped.
        let before = snapshot(&a.join("blobs"));
        let report = export_json(
            &repo,
            &[
                "app",
                "--compression",
                compression,
                "--to",
                &format!("oci:{}", a.display()),
            ],
        );
        assert_eq!(layer_statuses(&report), ["skipped"; 3], "{compression}");
        assert_same_tree(&before, &snapshot(&a.join("blobs")));
    }
}

#[test]
fn damaged_object_fails_and_leaves_destination_unchanged() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app", "amd64", &standard_layers());
    import(&repo, &f);
    let out = t.path().join("out");
    let dest = format!("oci:{}", out.display());
    // An existing layout with content, which the failed export must not touch.
    cfs_ok(
        &repo,
        &["export", "app", "--compression", "none", "--to", &dest],
    );
    let before = snapshot(&out);

    let object = biggest_object(&repo);
    rewrite(&object, |d| d[1000] ^= 0x01);
    let res = cfs(
        &repo,
        &[
            "export",
            "app",
            "--compression",
            "zstd",
            "--tag",
            "other",
            "--to",
            &dest,
        ],
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("layer 1"), "{stderr}");
    assert!(stderr.contains(&f.diff_ids[0]), "{stderr}");
    let rel = object.strip_prefix(&repo).unwrap().display().to_string();
    assert!(
        stderr.contains(&rel),
        "names the damaged object {rel}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_same_tree(&before, &snapshot(&out));

    // A fresh destination is not left half-written either.
    let fresh = t.path().join("fresh");
    let res = cfs(
        &repo,
        &["export", "app", "--to", &format!("oci:{}", fresh.display())],
    );
    assert_eq!(res.status.code(), Some(1));
    assert!(!fresh.join("index.json").exists());
    assert_eq!(
        std::fs::read_dir(fresh.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn config_only_repository_exports() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app", "amd64", &standard_layers());
    import(&repo, &f);
    // Turn it into what older composefs-oci/bootc stored: config + layers, no manifest.
    let config_stream = format!("oci-config-{}", f.config_digest);
    {
        use composefs::fsverity::Sha256HashValue;
        let r =
            composefs::repository::Repository::<Sha256HashValue>::open_path(rustix::fs::CWD, &repo)
                .unwrap();
        r.name_stream(&config_stream, "legacy-image").unwrap();
    }
    std::fs::remove_file(repo.join(format!("streams/oci-manifest-{}", f.manifest_digest))).unwrap();
    std::fs::remove_file(repo.join("streams/refs/oci/app")).unwrap();

    let list: serde_json::Value =
        serde_json::from_str(&cfs_ok(&repo, &["--json", "list"])).unwrap();
    assert_eq!(list[0]["tags"][0], "legacy-image");
    assert!(list[0]["manifest_digest"].is_null());

    let out = t.path().join("out");
    cfs_ok(
        &repo,
        &[
            "export",
            "legacy-image",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    let (_, manifest) = manifest_for(&out, "legacy-image");
    assert_eq!(manifest["config"]["digest"], f.config_digest.as_str());
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let blob = read_blob(&out, l["digest"].as_str().unwrap());
        let tar = decompress(l["mediaType"].as_str().unwrap(), &blob);
        assert_eq!(sha256(&tar), f.diff_ids[i]);
    }
}

#[test]
fn selectors_and_helpful_errors() {
    let t = tmp();
    let repo = t.path().join("repo");
    let f = write_layout(&t.path().join("src"), "app:1", "amd64", &standard_layers());
    import(&repo, &f);
    let out = t.path().join("out");
    let dest = format!("oci:{}:x", out.display());
    let id_prefix = &f.config_digest["sha256:".len()..][..12];
    cfs_ok(&repo, &["export", id_prefix, "--to", &dest]);
    cfs_ok(&repo, &["export", &f.manifest_digest, "--to", &dest]);
    cfs_ok(&repo, &["export", &f.config_digest, "--to", &dest]);

    let res = cfs(&repo, &["export", "nope", "--to", &dest]);
    assert_eq!(res.status.code(), Some(1));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("not found") && err.contains("app:1"), "{err}");

    let res = cfs(&repo, &["export", &id_prefix[..6], "--to", &dest]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("at least 12"));

    // Usage errors exit 2.
    for bad in [
        vec!["export", "app:1"],
        vec!["export", "app:1", "--to", "nowhere"],
        vec!["export", "app:1", "--to", &dest, "--compression", "lz4"],
    ] {
        assert_eq!(cfs(&repo, &bad).status.code(), Some(2), "{bad:?}");
    }
    // A missing repository says where it looked and how to choose.
    let res = cfs(&t.path().join("missing"), &["list"]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("--repo"));
}

#[test]
fn import_verifies_every_blob() {
    let t = tmp();
    let repo = t.path().join("repo");
    // A flipped byte in the uncompressed layer blob: its digest no longer matches.
    let f = write_layout(&t.path().join("src"), "app", "amd64", &standard_layers());
    let (digest, blob) = &f.blobs[2];
    let path = f
        .layout
        .join("blobs/sha256")
        .join(&digest["sha256:".len()..]);
    let mut bad = blob.clone();
    bad[600] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    // Into an existing repository (a failed import into a new one removes it).
    let other = write_layout(
        &t.path().join("other"),
        "other",
        "amd64",
        &[(TarBuilder::new().file("o", b"o").finish(false), Kind::Tar)],
    );
    import(&repo, &other);
    let res = cfs(
        &repo,
        &["import", &format!("oci:{}:app", f.layout.display())],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("damaged") && err.contains(digest.as_str()),
        "{err}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&cfs_ok(&repo, &["--json", "list"])).unwrap();
    let tags: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["tags"])
        .collect();
    assert_eq!(
        tags,
        [&serde_json::json!(["other"])],
        "nothing new may be tagged"
    );
    let streams: Vec<_> = std::fs::read_dir(repo.join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n != "refs"
                && !n.contains(&other.config_digest)
                && !n.contains(&other.manifest_digest)
                && !n.contains(&other.diff_ids[0])
        })
        .collect();
    assert!(streams.is_empty(), "no stream may be named: {streams:?}");

    // A consistent blob whose content is not what the config's diff_id says.
    let repo = t.path().join("repo2");
    let mut layers = standard_layers();
    let f = write_layout(&t.path().join("src2"), "app", "amd64", &layers);
    layers[1].0 = TarBuilder::new()
        .file("other", b"not the original")
        .finish(false);
    let swapped = write_layout(&t.path().join("src3"), "app", "amd64", &layers);
    let mut config: serde_json::Value = serde_json::from_slice(&swapped.config_bytes).unwrap();
    config["rootfs"]["diff_ids"] = serde_json::json!(f.diff_ids);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config_bytes);
    std::fs::write(
        swapped
            .layout
            .join("blobs/sha256")
            .join(&config_digest["sha256:".len()..]),
        &config_bytes,
    )
    .unwrap();
    let manifest = String::from_utf8(swapped.manifest_bytes.clone())
        .unwrap()
        .replace(&swapped.config_digest, &config_digest)
        .replace(
            &format!("\"size\":{}}},\"layers\"", swapped.config_bytes.len()),
            &format!("\"size\":{}}},\"layers\"", config_bytes.len()),
        );
    let mdigest = sha256(manifest.as_bytes());
    std::fs::write(
        swapped
            .layout
            .join("blobs/sha256")
            .join(&mdigest["sha256:".len()..]),
        &manifest,
    )
    .unwrap();
    std::fs::write(
        swapped.layout.join("index.json"),
        format!(
            "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{mdigest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"app\"}}}}]}}",
            manifest.len()
        ),
    )
    .unwrap();
    let res = cfs(
        &repo,
        &["import", &format!("oci:{}:app", swapped.layout.display())],
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(
        err.contains("diff_id") && err.contains(&f.diff_ids[1]),
        "{err}"
    );
    assert!(
        !repo.exists(),
        "the failed import left a new repository behind"
    );
}

#[test]
fn import_takes_any_platform() {
    let t = tmp();
    let repo = t.path().join("repo");
    let small = |seed| {
        vec![(
            TarBuilder::new()
                .file("f", &noise(5000, seed))
                .finish(false),
            Kind::Gzip,
        )]
    };
    let fx = write_multiarch_layout(
        &t.path().join("src"),
        "multi",
        &[("arm64", small(1)), ("s390x", small(2))],
    );
    let src = format!("oci:{}:multi", fx[0].layout.display());
    let res = cfs(&repo, &["import", &src]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1));
    assert!(
        err.contains("linux/arm64") && err.contains("linux/s390x"),
        "{err}"
    );
    cfs_ok(
        &repo,
        &[
            "import",
            &src,
            "--platform",
            "linux/s390x",
            "--tag",
            "multi:s390x",
        ],
    );
    let list: serde_json::Value =
        serde_json::from_str(&cfs_ok(&repo, &["--json", "list"])).unwrap();
    assert_eq!(list[0]["platform"], "linux/s390x");
    assert_eq!(list[0]["image_id"], fx[1].config_digest.as_str());

    let out = t.path().join("out");
    cfs_ok(
        &repo,
        &[
            "export",
            "multi:s390x",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "s390x");
}

#[test]
fn several_images_share_blobs_in_one_layout() {
    let t = tmp();
    let repo = t.path().join("repo");
    let layers = standard_layers();
    let a = write_layout(&t.path().join("a"), "a", "amd64", &layers[..2]);
    let b = write_layout(
        &t.path().join("b"),
        "b",
        "amd64",
        &[layers[0].clone(), layers[2].clone()],
    );
    import(&repo, &a);
    import(&repo, &b);
    let out = t.path().join("out");
    let report = export_json(
        &repo,
        &[
            "--all",
            "--compression",
            "none",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    );
    assert_eq!(report["images"].as_array().unwrap().len(), 2);
    // 3 distinct layers + 2 configs + 2 manifests.
    assert_eq!(
        std::fs::read_dir(out.join("blobs/sha256")).unwrap().count(),
        7
    );
    manifest_for(&out, "a");
    manifest_for(&out, "b");
    // A tag names one image only.
    let res = cfs(
        &repo,
        &[
            "export",
            "a",
            "b",
            "--to",
            &format!("oci:{}:t", out.display()),
        ],
    );
    assert_eq!(res.status.code(), Some(2));
}

#[test]
fn sha512_repository_round_trips() {
    use composefs::fsverity::{Algorithm, Sha512HashValue};
    use composefs::repository::{Repository, RepositoryConfig};
    let t = tmp();
    let repo = t.path().join("repo512");
    Repository::<Sha512HashValue>::init_path(
        rustix::fs::CWD,
        &repo,
        RepositoryConfig::new(Algorithm::for_hash::<Sha512HashValue>()).set_insecure(),
    )
    .unwrap();
    let f = write_layout(&t.path().join("src"), "app", "amd64", &standard_layers());
    import(&repo, &f);
    let meta = std::fs::read_to_string(repo.join("meta.json")).unwrap();
    assert!(meta.contains("sha512"), "{meta}");
    let out = t.path().join("out");
    cfs_ok(
        &repo,
        &["export", "app", "--to", &format!("oci:{}", out.display())],
    );
    let (_, manifest) = manifest_for(&out, "app");
    assert_eq!(manifest["config"]["digest"], f.config_digest.as_str());
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let blob = read_blob(&out, l["digest"].as_str().unwrap());
        assert_eq!(
            sha256(&decompress(l["mediaType"].as_str().unwrap(), &blob)),
            f.diff_ids[i]
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&cfs_ok(&repo, &["--json", "verify", "--all"])).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
}

/// Layers deflated by Debian's zlib at level 6 under other tools' gzip
/// headers: zlib's own framing (Python's `gzip.compress`, OS 03) and Java's
/// `GZIPOutputStream` before JDK 16 (jib, OS 00: zlib's raw body in Java's
/// header). The search hashes the one zlib-6 body under each header, and
/// the export keeps the manifest digest.
#[test]
fn zlib_bodies_under_other_headers_keep_the_manifest_digest() {
    let t = tmp();
    let repo = t.path().join("repo");
    let text: Vec<u8> = (0..60_000u32)
        .flat_map(|i| format!("{} etc/{}.conf\n", i % 4099, i % 29).into_bytes())
        .collect();
    let layers = vec![
        (TarBuilder::new().file("a", &text).finish(false), Kind::Gzip),
        (
            TarBuilder::new().file("b", &text[7..]).finish(false),
            Kind::Gzip,
        ),
    ];
    let zlib_framing =
        "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 6, mtime=0))";
    let java_old = "import sys,zlib,struct; d=sys.stdin.buffer.read(); c=zlib.compressobj(6, zlib.DEFLATED, -15); \
        sys.stdout.buffer.write(bytes([0x1f,0x8b,8,0,0,0,0,0,0,0]) + c.compress(d) + c.flush() + struct.pack('<II', zlib.crc32(d), len(d) & 0xffffffff))";
    let f = write_layout_with(
        &t.path().join("src"),
        "jib",
        "amd64",
        &layers,
        &|i, _, tar| python([zlib_framing, java_old][i], tar),
    );
    import(&repo, &f);
    let out = t.path().join("out");
    let report = export_json(&repo, &["jib", "--to", &format!("oci:{}", out.display())]);
    let (digest, _) = manifest_for(&out, "jib");
    assert_eq!(digest, f.manifest_digest, "{report}");
    let layers = report["images"][0]["layers"].as_array().unwrap();
    let encoders: Vec<String> = layers
        .iter()
        .map(|l| format!("{} {}", l["blob"], l["compression"]))
        .collect();
    assert!(encoders[0].contains("zlib6-os03"), "{encoders:?}");
    assert!(encoders[1].contains("zlib6-os00"), "{encoders:?}");
}
