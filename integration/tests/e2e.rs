//! End-to-end tests driving the built `cfs-export` against real tools.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use anyhow::{ensure, Result};
use integration::fixture::{self, sha256, standard_layers, write_layout, Kind};
use integration::{busybox_layers, cfs, have_tool, run, strict, Registry, Stack, Storage};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::path::Path;

#[path = "e2e/docker_schema2.rs"]
mod docker_schema2;
#[path = "e2e/host.rs"]
mod host;
#[path = "e2e/identity.rs"]
mod identity;
#[path = "e2e/original.rs"]
mod original;
#[path = "e2e/push.rs"]
mod push;
#[path = "e2e/ranges.rs"]
mod ranges;
#[path = "e2e/roundtrip.rs"]
mod roundtrip;
#[path = "e2e/security.rs"]
mod security;
#[path = "e2e/serve.rs"]
mod serve;
#[path = "e2e/serve_attacks.rs"]
mod serve_attacks;
#[path = "e2e/serve_compressed.rs"]
mod serve_compressed;
#[path = "e2e/serve_http.rs"]
mod serve_http;
#[path = "e2e/serve_mirrors.rs"]
mod serve_mirrors;
#[path = "e2e/serve_reload.rs"]
mod serve_reload;
#[path = "e2e/storage_conf.rs"]
mod storage_conf;
#[path = "e2e/stream.rs"]
mod stream;
#[path = "e2e/tools.rs"]
mod tools;

type TestFn = fn() -> Result<()>;

/// A test and the tools it needs.
fn trial(name: &'static str, tools: &'static [&'static str], f: TestFn) -> Trial {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have_tool(t)).collect();
    if !missing.is_empty() && !strict() {
        return Trial::test(name, || Ok(())).with_ignored_flag(true);
    }
    Trial::test(name, move || {
        if !missing.is_empty() {
            return Err(Failed::from(format!(
                "missing tools under CI=true: {} (make install-deps installs them)",
                missing.join(", ")
            )));
        }
        f().map_err(|e| Failed::from(format!("{e:#}")))
    })
}

/// A test that needs skopeo `major.minor` or newer: on an older stack it is
/// ignored, saying why (the trixie stack of `make test` has it).
fn trial_needing_skopeo(
    stack: &Stack,
    (major, minor): (u32, u32),
    name: &'static str,
    tools: &'static [&'static str],
    f: TestFn,
) -> Trial {
    if stack.skopeo_at_least(major, minor) {
        return trial(name, tools, f);
    }
    let reason = format!(
        "needs skopeo >= {major}.{minor}; this stack is {}",
        stack.describe()
    );
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
}

fn main() {
    let args = Arguments::from_args();
    let stack = Stack::detect();
    let tests = vec![
        trial(
            "skopeo_runs_in_place_of_its_caller",
            &["skopeo", "kill"],
            tools::skopeo_runs_in_place_of_its_caller,
        ),
        trial(
            "skopeo_reads_exported_layout",
            &["skopeo"],
            skopeo_reads_exported_layout,
        ),
        trial(
            "parallel_gzip_read_by_go_and_gnu_gzip",
            &["skopeo", "gzip"],
            parallel_gzip_read_by_go_and_gnu_gzip,
        ),
        trial(
            "copy_to_storage_keeps_image_id_and_runs",
            &["skopeo", "podman", "runc"],
            copy_to_storage_keeps_image_id_and_runs,
        ),
        trial(
            "registry_push_with_credentials",
            &["skopeo", "docker-registry", "htpasswd", "openssl"],
            registry_push_with_credentials,
        ),
        trial("archives_and_dir", &["skopeo", "podman"], archives_and_dir),
        trial(
            "push_original_streams_and_keeps_the_manifest_digest",
            &["skopeo", "docker-registry", "htpasswd", "openssl"],
            push::push_original_streams_and_keeps_the_manifest_digest,
        ),
        trial(
            "push_gzip_learns_digests_once",
            &["skopeo", "docker-registry", "htpasswd", "openssl"],
            push::push_gzip_learns_digests_once,
        ),
        trial(
            "push_sigint_mid_push_leaves_nothing",
            &["skopeo", "kill"],
            push::sigint_mid_push_leaves_nothing,
        ),
        trial(
            "copy_to_storage_streams_without_temp_layout",
            &["skopeo", "podman"],
            stream::copy_to_storage_streams_without_temp_layout,
        ),
        trial(
            "copy_to_storage_finds_graph_root_in_storage_conf",
            &["skopeo", "podman"],
            storage_conf::copy_to_storage_finds_graph_root_in_storage_conf,
        ),
        trial(
            "server_answers_only_the_expected_requests",
            &["python3"],
            stream::server_answers_only_the_expected_requests,
        ),
        trial(
            "loopback_server_answers_ranges",
            &["python3"],
            ranges::loopback_server_answers_ranges,
        ),
        trial(
            "original_compressed_bytes_keep_the_manifest_digest",
            &[
                "skopeo",
                "podman",
                "go",
                "python3",
                "tar",
                "gzip",
                "docker-registry",
                "htpasswd",
                "openssl",
            ],
            original::original_compressed_bytes_keep_the_manifest_digest,
        ),
        trial(
            "identity_real_encoders_keep_the_manifest_digest",
            &[
                "skopeo",
                "podman",
                "go",
                "umoci",
                "cmake",
                "gzip",
                "docker-registry",
                "htpasswd",
                "openssl",
            ],
            identity::real_encoders_keep_the_manifest_digest,
        ),
        trial(
            "docker_schema2_original_kept_where_it_fits",
            &[
                "skopeo",
                "podman",
                "docker-registry",
                "htpasswd",
                "openssl",
                "curl",
            ],
            docker_schema2::docker_schema2_original_kept_where_it_fits,
        ),
        trial(
            "unprivileged_user_is_refused_and_cannot_stall",
            &["skopeo", "podman", "setpriv", "prlimit", "python3"],
            security::unprivileged_user_is_refused_and_cannot_stall,
        ),
        trial(
            "reject_by_default_policy_does_not_refuse_our_source",
            &["skopeo", "podman"],
            security::reject_by_default_policy_does_not_refuse_our_source,
        ),
        trial(
            "sigint_mid_stream_leaves_nothing",
            &[],
            stream::sigint_mid_stream_leaves_nothing,
        ),
        trial(
            "kill_mid_stream_leaves_nothing",
            &["setpriv"],
            stream::kill_mid_stream_leaves_nothing,
        ),
        trial(
            "bootc_host_copy_to_storage",
            &["skopeo", "podman", "runc"],
            host::bootc_host_copy_to_storage,
        ),
        trial(
            "bootc_host_serves_deployments_as_tags",
            &["skopeo"],
            host::bootc_host_serves_deployments_as_tags,
        ),
        trial(
            "bootc_host_read_only_sysroot",
            &["skopeo", "podman", "mount"],
            host::bootc_host_read_only_sysroot,
        ),
        trial(
            "fake_skopeo_failure_carries_stderr",
            &[],
            fake_skopeo_failure_carries_stderr,
        ),
        trial(
            "repository_unlocked_while_skopeo_copies",
            &["flock"],
            repository_unlocked_while_skopeo_copies,
        ),
        trial(
            "sigint_kills_skopeo_and_cleans_up",
            &[],
            sigint_kills_skopeo_and_cleans_up,
        ),
        // skopeo 1.9.3's image proxy lacks GetLayerInfo (protocol 0.2.5), which composefs-oci needs
        // to pull from containers-storage ("Failed to get uncompressed layer info").
        trial_needing_skopeo(
            &stack,
            (1, 18),
            "composefs_round_trip_the_bootc_way",
            &["skopeo", "podman"],
            roundtrip::composefs_round_trip_the_bootc_way,
        ),
        trial(
            "serve_skopeo_pulls_the_original_manifest",
            &["skopeo"],
            serve::skopeo_pulls_the_original_manifest,
        ),
        trial(
            "serve_compressed_layers_from_the_index",
            &["skopeo", "curl"],
            serve_compressed::compressed_layers_from_the_index,
        ),
        trial(
            "serve_buildah_pulls_the_original",
            &["skopeo", "buildah"],
            serve_mirrors::buildah_pulls_the_original,
        ),
        trial(
            "serve_podman_pulls_through_a_mirror",
            &["skopeo", "podman"],
            serve_mirrors::podman_pulls_through_a_mirror,
        ),
        trial(
            "serve_tls_with_htpasswd",
            &["skopeo", "openssl", "htpasswd", "curl"],
            serve::tls_with_htpasswd,
        ),
        trial(
            "serve_htpasswd_users_and_refusals",
            &["skopeo", "htpasswd"],
            serve::htpasswd_users_and_refusals,
        ),
        trial(
            "serve_http_details_with_curl",
            &["skopeo", "curl"],
            serve_http::http_details_with_curl,
        ),
        trial(
            "serve_four_parallel_pulls",
            &["skopeo"],
            serve::four_parallel_pulls,
        ),
        trial(
            "serve_ranges_resume_reproduced_pgzip_at_a_block",
            &["skopeo", "curl"],
            serve_http::ranges_resume_reproduced_pgzip_at_a_block,
        ),
        trial(
            "serve_attack_stalled_and_slow_readers",
            &["skopeo"],
            serve_attacks::stalled_and_slow_readers,
        ),
        trial(
            "serve_attack_bad_passwords",
            &["skopeo", "htpasswd"],
            serve_attacks::bad_passwords,
        ),
        trial(
            "serve_attack_idle_authenticated_connections",
            &["skopeo", "htpasswd"],
            serve_attacks::idle_authenticated_connections,
        ),
        trial(
            "serve_attack_first_byte_ranges",
            &["skopeo"],
            serve_attacks::first_byte_ranges,
        ),
        trial(
            "serve_unknown_user_costs_a_wrong_password",
            &["htpasswd"],
            serve_attacks::unknown_user_costs_a_wrong_password,
        ),
        trial(
            "serve_sighup_reloads_users_and_images",
            &["skopeo", "htpasswd", "kill"],
            serve_reload::sighup_reloads_users_and_images,
        ),
        trial(
            "serve_vanished_objects_answer_before_any_byte",
            &[],
            serve_reload::vanished_objects_answer_before_any_byte,
        ),
        trial(
            "serve_conformance_details",
            &[],
            serve_reload::conformance_details,
        ),
        trial(
            "serve_sigterm_mid_pull",
            &["curl", "kill"],
            serve_http::sigterm_mid_pull,
        ),
        trial(
            "serve_containerd_pulls_through_hosts_toml",
            &["containerd", "ctr"],
            serve_mirrors::containerd_pulls_through_hosts_toml,
        ),
        // As above: composefs-oci's pull needs the image proxy of skopeo >= 1.18.
        trial_needing_skopeo(
            &stack,
            (1, 18),
            "serve_composefs_oci_pulls_into_a_second_repository",
            &["skopeo"],
            serve_mirrors::composefs_oci_pulls_from_serve,
        ),
    ];
    println!("== e2e on {} ==", stack.describe());
    let conclusion = libtest_mimic::run(&args, tests);
    println!(
        "== e2e on {}: {} passed, {} failed, {} ignored ==",
        stack.describe(),
        conclusion.num_passed,
        conclusion.num_failed,
        conclusion.num_ignored
    );
    conclusion.exit();
}

fn skopeo(args: &[&str]) -> Result<Vec<u8>> {
    Ok(run(Command::new("skopeo").args(args))?.stdout)
}

/// Issue 3: the default export is an image skopeo accepts, with the original
/// image ID and every layer decompressing to its diff_id.
fn skopeo_reads_exported_layout() -> Result<()> {
    let (t, repo, f) = imported_repo(&standard_layers())?;
    let out = t.path().join("out");
    cfs(
        &repo,
        &["export", "app:1", "--to", &format!("oci:{}", out.display())],
    )?;
    let src = format!("oci:{}:app:1", out.display());

    let config = skopeo(&["inspect", "--raw", "--config", &src])?;
    ensure!(sha256(&config) == f.config_digest, "config digest changed");
    let inspect: serde_json::Value = serde_json::from_slice(&skopeo(&["inspect", &src])?)?;
    ensure!(
        inspect["Architecture"] == "amd64" && inspect["Os"] == "linux",
        "{inspect}"
    );

    let dir = t.path().join("dir");
    skopeo(&["copy", "-q", &src, &format!("dir:{}", dir.display())])?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    ensure!(manifest["config"]["digest"] == f.config_digest.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    ensure!(layers.len() == 3);
    let kinds = [Kind::Gzip, Kind::Zstd, Kind::Tar];
    for (i, l) in layers.iter().enumerate() {
        let mt = l["mediaType"].as_str().unwrap();
        ensure!(Kind::from_media_type(mt) == kinds[i], "layer {i} is {mt}");
        let blob = std::fs::read(dir.join(&l["digest"].as_str().unwrap()[7..]))?;
        let tar = fixture::decompress(mt, &blob);
        ensure!(sha256(&tar) == f.diff_ids[i], "layer {i} diff_id");
    }
    ensure!(
        sha256(&std::fs::read(dir.join(&f.config_digest[7..]))?) == f.config_digest,
        "config in dir: differs"
    );
    Ok(())
}

/// Issue 5: our block-parallel gzip is one ordinary gzip member that Go's
/// reader (skopeo --dest-decompress) and GNU gzip both decode to the diff_id.
fn parallel_gzip_read_by_go_and_gnu_gzip() -> Result<()> {
    let (t, repo, f) = imported_repo(&standard_layers())?;
    let out = t.path().join("gz");
    cfs(
        &repo,
        &[
            "export",
            "app:1",
            "--compression",
            "gzip:6",
            "--to",
            &format!("oci:{}", out.display()),
        ],
    )?;
    let (_, manifest) = fixture::manifest_for(&out, "app:1");
    for (l, id) in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&f.diff_ids)
    {
        let path = out
            .join("blobs/sha256")
            .join(&l["digest"].as_str().unwrap()[7..]);
        let plain = run(Command::new("gzip").arg("-dc").arg(&path))?.stdout;
        ensure!(
            &sha256(&plain) == id,
            "gzip -dc of {} is not {id}",
            l["digest"]
        );
    }
    let dir = t.path().join("dir");
    skopeo(&[
        "copy",
        "-q",
        "--dest-decompress",
        &format!("oci:{}:app:1", out.display()),
        &format!("dir:{}", dir.display()),
    ])?;
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    for (l, id) in copied["layers"].as_array().unwrap().iter().zip(&f.diff_ids) {
        let tar = std::fs::read(dir.join(&l["digest"].as_str().unwrap()[7..]))?;
        ensure!(&sha256(&tar) == id, "Go's gzip reader: layer is not {id}");
    }
    Ok(())
}

type ImportedRepo = (tempfile::TempDir, std::path::PathBuf, fixture::Fixture);

/// A repo holding an amd64 image of `layers` as `app:1`; returns (tempdir, repo, fixture).
fn imported_repo(layers: &[fixture::LayerSpec]) -> Result<ImportedRepo> {
    let t = tempfile::tempdir()?;
    let (repo, f) = fixture::imported(t.path(), "app:1", layers);
    Ok((t, repo, f))
}

/// A repo holding the busybox image as `app:1`.
fn busybox_repo() -> Result<ImportedRepo> {
    imported_repo(&busybox_layers()?)
}

/// The diff_ids of an image copied out to an OCI layout, each checked against its blob.
fn diff_ids_of_layout(layout: &Path, tag: &str) -> Result<Vec<String>> {
    let (_, manifest) = fixture::manifest_for(layout, tag);
    let config: serde_json::Value = serde_json::from_slice(&fixture::read_blob(
        layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))?;
    let ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    for (l, id) in manifest["layers"].as_array().unwrap().iter().zip(&ids) {
        let blob = fixture::read_blob(layout, l["digest"].as_str().unwrap());
        let tar = fixture::decompress(l["mediaType"].as_str().unwrap(), &blob);
        ensure!(
            &sha256(&tar) == id,
            "layer {} does not hash to {id}",
            l["digest"]
        );
    }
    Ok(ids)
}

/// Issue 4: bootc's copy-to-storage, checked with podman and skopeo.
fn copy_to_storage_keeps_image_id_and_runs() -> Result<()> {
    let (t, repo, f) = busybox_repo()?;
    let storage = Storage::new(t.path());
    let mut args = vec!["--json".to_string(), "copy-to-storage".to_string()];
    args.extend(storage.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report: serde_json::Value = serde_json::from_str(&cfs(&repo, &args)?)?;
    // Both stages are timed, so bootc's logs (and `make bench`) can tell them apart.
    ensure!(
        report["export_seconds"].as_f64() > Some(0.0)
            && report["transfer_seconds"].as_f64() > Some(0.0),
        "stage timings missing: {report}"
    );
    let id = storage.podman(&["image", "inspect", "localhost/bootc", "--format", "{{.Id}}"])?;
    ensure!(
        id.trim() == &f.config_digest[7..],
        "podman image Id {} != config digest {}",
        id.trim(),
        f.config_digest
    );
    // Back out with skopeo: the same diff_ids, each layer proven.
    let back = t.path().join("back");
    skopeo(&[
        "copy",
        "-q",
        &storage.reference("localhost/bootc"),
        &format!("oci:{}:back", back.display()),
    ])?;
    ensure!(
        diff_ids_of_layout(&back, "back")? == f.diff_ids,
        "diff_ids changed"
    );
    // It runs.
    let out = storage.podman_run("localhost/bootc", &["/bin/cat", "/etc/motd"])?;
    ensure!(
        out.contains("exported bit-exact by cfs-export"),
        "podman run printed {out:?}"
    );
    // An explicit image and target.
    let mut args = vec![
        "copy-to-storage".to_string(),
        "app:1".into(),
        "--target".into(),
        "localhost/other:v1".into(),
    ];
    args.extend(storage.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cfs(&repo, &args)?;
    let id = storage.podman(&[
        "image",
        "inspect",
        "localhost/other:v1",
        "--format",
        "{{.Id}}",
    ])?;
    ensure!(id.trim() == &f.config_digest[7..]);
    Ok(())
}

fn blob_uploads(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("\"PUT /v2/app/blobs/uploads/"))
        .count()
}

/// Issue 4: push to a real registry with credentials from a file.
fn registry_push_with_credentials() -> Result<()> {
    let (t, repo, _f) = busybox_repo()?;
    let password = "Pa55-only-in-the-creds-file";
    let reg = Registry::start(&t.path().join("registry"), "tester", password)?;
    let creds = t.path().join("creds");
    std::fs::write(&creds, format!("tester:{password}\n"))?;
    let dest = format!("docker://{}/app:1", reg.addr);
    let push = |creds: &Path| {
        Command::new(fixture::bin())
            .arg("--repo")
            .arg(&repo)
            .args([
                "export",
                "app:1",
                "--compression",
                "zstd",
                "--to",
                &dest,
                "--dest-tls-verify",
                "false",
                "--creds-file",
            ])
            .arg(creds)
            .output()
    };
    let first = push(&creds)?;
    ensure!(
        first.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let uploads = blob_uploads(&reg.log_text());
    ensure!(
        uploads >= 3,
        "expected layer and config uploads, registry log:\n{}",
        reg.log_text()
    );

    // The registry holds exactly our manifest: the one a local export writes.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("tester:{password}"),
        &dest,
    ])?;
    let local = t.path().join("local");
    cfs(
        &repo,
        &[
            "export",
            "app:1",
            "--compression",
            "zstd",
            "--to",
            &format!("oci:{}", local.display()),
        ],
    )?;
    let (digest, _) = fixture::manifest_for(&local, "app:1");
    ensure!(
        sha256(&raw) == digest,
        "registry manifest differs from ours"
    );

    // A second push uploads no blob again.
    let second = push(&creds)?;
    ensure!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    ensure!(
        blob_uploads(&reg.log_text()) == uploads,
        "second push uploaded blobs again"
    );

    // A wrong password: exit 1, a clear error, and the password nowhere.
    let wrong_password = "Wr0ng-secret-never-printed";
    let bad = t.path().join("bad-creds");
    std::fs::write(&bad, format!("tester:{wrong_password}"))?;
    let out = push(&bad)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.code() == Some(1),
        "exit {:?}: {text}",
        out.status.code()
    );
    ensure!(
        text.contains("unauthorized") || text.contains("authentication required"),
        "{text}"
    );
    ensure!(
        !text.contains(wrong_password) && !text.contains(password),
        "password leaked: {text}"
    );
    ensure!(
        !reg.log_text().contains(wrong_password),
        "password in registry log"
    );
    Ok(())
}

/// Issue 4: oci-archive (deterministic, read by skopeo and podman), docker-archive, dir.
fn archives_and_dir() -> Result<()> {
    let (t, repo, f) = busybox_repo()?;
    let a = t.path().join("a.tar");
    let b = t.path().join("b.tar");
    for p in [&a, &b] {
        cfs(
            &repo,
            &[
                "export",
                "app:1",
                "--to",
                &format!("oci-archive:{}:app", p.display()),
            ],
        )?;
    }
    ensure!(
        std::fs::read(&a)? == std::fs::read(&b)?,
        "two oci-archive exports differ"
    );
    let inspect: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        &format!("oci-archive:{}:app", a.display()),
    ])?)?;
    ensure!(
        inspect["Layers"].as_array().map(Vec::len) == Some(2),
        "{inspect}"
    );
    let storage = Storage::new(t.path());
    storage.podman(&["load", "-q", "-i", &a.display().to_string()])?;
    let ids = storage.podman(&["images", "--no-trunc", "--format", "{{.ID}}"])?;
    ensure!(ids.contains(&f.config_digest[7..]), "podman load: {ids}");

    // docker-archive and dir: the config (image ID) comes through unchanged.
    for (dest, inspect) in [
        (
            format!("docker-archive:{}:app:1", t.path().join("d.tar").display()),
            format!("docker-archive:{}", t.path().join("d.tar").display()),
        ),
        (
            format!("dir:{}", t.path().join("dir").display()),
            format!("dir:{}", t.path().join("dir").display()),
        ),
    ] {
        cfs(&repo, &["export", "app:1", "--to", &dest])?;
        let cfg = skopeo(&["inspect", "--raw", "--config", &inspect])?;
        ensure!(sha256(&cfg) == f.config_digest, "{dest} changed the config");
    }
    Ok(())
}

fn fake_skopeo(dir: &Path, body: &str) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fake-skopeo");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

fn small_repo() -> Result<(tempfile::TempDir, std::path::PathBuf)> {
    let t = tempfile::tempdir()?;
    let repo = t.path().join("repo");
    let layers = vec![(
        fixture::TarBuilder::new()
            .file("f", &fixture::noise(100_000, 5))
            .finish(false),
        Kind::Gzip,
    )];
    let f = write_layout(&t.path().join("src"), "small", "amd64", &layers);
    cfs(
        &repo,
        &["import", &format!("oci:{}:small", f.layout.display())],
    )?;
    std::fs::create_dir(t.path().join("tmp"))?;
    Ok((t, repo))
}

fn dir_is_empty(p: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(p)?.next().is_none())
}

/// Export `small` to containers-storage with `$SKOPEO` and `$TMPDIR` set.
/// Export `small` to containers-storage with `$SKOPEO`, `$TMPDIR` and `--tmpdir`
/// set to `dir/tmp` (so neither the layout path nor the streaming path
/// touches the machine's storage), plus `extra` flags.
fn export_with_skopeo(
    dir: &Path,
    repo: &Path,
    skopeo: &Path,
    extra: &[&str],
) -> Result<std::process::Output> {
    Ok(Command::new(fixture::bin())
        .env("SKOPEO", skopeo)
        .env("TMPDIR", dir.join("tmp"))
        .arg("--repo")
        .arg(repo)
        .args([
            "export",
            "small",
            "--to",
            "containers-storage:localhost/x",
            "--tmpdir",
        ])
        .arg(dir.join("tmp"))
        .args(extra)
        .output()?)
}

/// Issue 4: skopeo's failure reaches the user with its stderr; the temp dir goes.
fn fake_skopeo_failure_carries_stderr() -> Result<()> {
    let (t, repo) = small_repo()?;
    let fake = fake_skopeo(t.path(), "echo \"fake skopeo exploded on $*\" >&2\nexit 3")?;
    // Streaming (the default) and through a layout.
    for extra in [&[][..], &["--via-layout"][..]] {
        let out = export_with_skopeo(t.path(), &repo, &fake, extra)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(1),
            "exit {:?}: {err}",
            out.status.code()
        );
        ensure!(
            err.contains("fake skopeo exploded on") && err.contains(" copy "),
            "{err}"
        );
        ensure!(dir_is_empty(&t.path().join("tmp"))?, "temp dir left behind");
    }
    // And a missing skopeo says how to get one.
    let out = export_with_skopeo(t.path(), &repo, &t.path().join("no-such-skopeo"), &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && err.contains("install skopeo"),
        "{err}"
    );
    ensure!(dir_is_empty(&t.path().join("tmp"))?, "temp dir left behind");
    Ok(())
}

/// Issue 11: through a layout, the repository's shared lock is not held
/// while skopeo copies, so bootc's garbage collection (an exclusive flock) is
/// not stalled by it. (Streaming reads the repository during the copy, so it
/// holds the lock until the copy ends.)
fn repository_unlocked_while_skopeo_copies() -> Result<()> {
    let (t, repo) = small_repo()?;
    let fake = fake_skopeo(
        t.path(),
        &format!(
            "flock --nonblock --exclusive {} true || {{ echo 'repository still locked' >&2; exit 7; }}",
            repo.display()
        ),
    )?;
    let out = export_with_skopeo(t.path(), &repo, &fake, &["--via-layout"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: while cfs-export reads, the same flock is refused.
    let held = Command::new("flock")
        .args(["--nonblock", "--shared"])
        .arg(&repo)
        .args(["flock", "--nonblock", "--exclusive"])
        .arg(&repo)
        .arg("true")
        .status()?;
    ensure!(!held.success(), "flock does not see a held shared lock");
    Ok(())
}

/// Issue 4: SIGINT while skopeo copies from a private layout (`--via-layout`):
/// skopeo killed, temp dir removed, exit non-zero.
fn sigint_kills_skopeo_and_cleans_up() -> Result<()> {
    let (t, repo) = small_repo()?;
    let pidfile = t.path().join("skopeo.pid");
    let fake = fake_skopeo(
        t.path(),
        &format!("echo $$ > {}\nexec sleep 300", pidfile.display()),
    )?;
    let mut child = Command::new(fixture::bin())
        .env("SKOPEO", &fake)
        .env("TMPDIR", t.path().join("tmp"))
        .arg("--repo")
        .arg(&repo)
        .args([
            "export",
            "small",
            "--to",
            "docker://127.0.0.1:9/x:1",
            "--via-layout",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let skopeo_pid = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            if !s.trim().is_empty() {
                break s.trim().to_string();
            }
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "fake skopeo never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    ensure!(
        !dir_is_empty(&t.path().join("tmp"))?,
        "the temp layout should exist while skopeo runs"
    );
    run(Command::new("kill").args(["-INT", &child.id().to_string()]))?;
    let status = child.wait()?;
    ensure!(!status.success(), "exit status {status}");
    ensure!(status.code() == Some(130), "exit status {status}");
    let gone = || {
        std::fs::read_to_string(format!("/proc/{skopeo_pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !gone() {
        ensure!(
            std::time::Instant::now() < deadline,
            "skopeo {skopeo_pid} still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ensure!(dir_is_empty(&t.path().join("tmp"))?, "temp dir left behind");
    Ok(())
}
