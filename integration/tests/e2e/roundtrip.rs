//! Issue 19: `bootc switch --transport containers-storage` after our
//! `copy-to-storage`: composefs-oci pulls the image back out of
//! containers-storage through skopeo's image proxy into a fresh repository.

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use composefs::fsverity::{Algorithm, Sha512HashValue};
use composefs::repository::{Repository, RepositoryConfig};
use composefs_oci::OciDigest;
use integration::fixture::{self, sha256, Kind, TarBuilder};
use integration::{busybox_layers, cfs, Storage};

type Repo = Arc<Repository<Sha512HashValue>>;

/// A fresh insecure SHA-512 repository, as bootc makes them.
fn fresh_repo(path: &Path) -> Result<Repo> {
    let config = RepositoryConfig::new(Algorithm::for_hash::<Sha512HashValue>()).set_insecure();
    let (repo, _) = Repository::<Sha512HashValue>::init_path(rustix::fs::CWD, path, config)?;
    Ok(Arc::new(repo))
}

/// composefs-oci's own pull of `source` into `repo`: the config digest and,
/// per diff_id, the object ID of the layer's split-stream.
fn pull(
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    source: &str,
) -> Result<(String, Vec<(String, Sha512HashValue)>)> {
    let pulled = rt
        .block_on(composefs_oci::pull(repo, source, None, Default::default()))
        .with_context(|| format!("composefs_oci::pull {source}"))?;
    let opened = composefs_oci::open_config(repo, &pulled.config_digest, None)?;
    let layers = opened
        .config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|id| {
            let verity = opened
                .layer_refs
                .get(id.as_str())
                .with_context(|| format!("no split-stream for layer {id}"))?;
            Ok((id.clone(), verity.clone()))
        })
        .collect::<Result<_>>()?;
    Ok((pulled.config_digest.to_string(), layers))
}

/// The sha256 of the tar a layer's split-stream rebuilds.
fn rebuilt_tar_digest(repo: &Repo, diff_id: &str, verity: &Sha512HashValue) -> Result<String> {
    let digest: OciDigest = diff_id.try_into()?;
    let mut reader = repo.open_stream(
        &composefs_oci::layer_content_id(&digest),
        Some(verity),
        None,
    )?;
    let mut tar = Vec::new();
    reader.cat(repo, &mut tar)?;
    Ok(sha256(&tar))
}

/// copy-to-storage, then a pull from `containers-storage:` through skopeo's
/// image proxy: the same config digest and diff_ids as the original image,
/// and the same split-stream per layer as a pull straight from its OCI
/// layout, each rebuilding a tar that hashes to its diff_id.
pub fn composefs_round_trip_the_bootc_way() -> Result<()> {
    let t = tempfile::tempdir()?;
    let mut layers = busybox_layers()?;
    // composefs-oci builds the image's EROFS at pull time, which needs /usr.
    layers.push((
        TarBuilder::new()
            .dir("usr")
            .file("usr/os-release", b"ID=cfs-export-round-trip\n")
            .file("usr/blob", &fixture::noise(1 << 20, 19))
            .finish(false),
        Kind::Tar,
    ));
    // A tag without a colon: composefs-oci reads `oci:DIR:app:1` as DIR `DIR:app`.
    let (repo, f) = fixture::imported(t.path(), "os", &layers);
    let storage = Storage::new(t.path());
    let mut args = vec!["copy-to-storage", "os", "--target", "localhost/round-trip"];
    let flags = storage.flags();
    args.extend(flags.iter().map(String::as_str));
    cfs(&repo, &args)?;

    let rt = tokio::runtime::Runtime::new()?;
    let storage_repo = fresh_repo(&t.path().join("from-storage"))?;
    let from_storage = pull(
        &rt,
        &storage_repo,
        &storage.reference("localhost/round-trip"),
    )?;
    let direct = pull(
        &rt,
        &fresh_repo(&t.path().join("direct"))?,
        &format!("oci:{}:{}", f.layout.display(), f.tag),
    )?;

    ensure!(
        from_storage.0 == f.config_digest,
        "config {} pulled from storage, the image has {}",
        from_storage.0,
        f.config_digest
    );
    let diff_ids: Vec<&String> = from_storage.1.iter().map(|(id, _)| id).collect();
    ensure!(
        diff_ids.iter().copied().eq(&f.diff_ids),
        "diff_ids from storage {diff_ids:?}, the image has {:?}",
        f.diff_ids
    );
    ensure!(
        from_storage.1 == direct.1,
        "split-streams differ from a direct pull:\n{:?}\n{:?}",
        from_storage.1,
        direct.1
    );
    for (id, verity) in &from_storage.1 {
        let got = rebuilt_tar_digest(&storage_repo, id, verity)?;
        ensure!(&got == id, "layer {id} rebuilds a tar hashing to {got}");
    }
    Ok(())
}
