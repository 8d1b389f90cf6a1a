//! The reference export algorithm `make bench` compares against, as bootc's
//! export does it today: rebuild each layer, re-emit every entry through
//! `tar::Builder`, gzip it at level 6 on one thread into a temp OCI layout,
//! with a new config (re-archived tars have new diff_ids), for `skopeo copy`.
//!
//! Usage: reference-export REPO IMAGE OUT_LAYOUT

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use composefs_export::digest::{sha256, HashingWriter};
use composefs_export::export::{self, ImageSelection};
use composefs_export::repo::{self, layer};
use composefs_export::with_repo;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, repo_path, image, out] = args.as_slice() else {
        anyhow::bail!("usage: reference-export REPO IMAGE OUT_LAYOUT");
    };
    let repo = repo::open(&repo::RepoLocation::Path(repo_path.into()))?;
    with_repo!(&repo, r => run(r, image, Path::new(out)))
}

fn put(out: &Path, data: &[u8]) -> Result<String> {
    let digest = sha256(data).to_string();
    std::fs::write(out.join("blobs/sha256").join(&digest[7..]), data)?;
    Ok(digest)
}

fn run<ID: FsVerityHashValue>(repo: &Repository<ID>, image: &str, out: &Path) -> Result<()> {
    let images = export::load_images(repo, &ImageSelection::Named(vec![image.to_string()]), None)?;
    let img = &images[0];
    std::fs::create_dir_all(out.join("blobs/sha256"))?;
    std::fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for l in &img.layers {
        let (reader, writer) = std::io::pipe()?;
        let name = img.name();
        let layer = l.clone();
        let tmp = out.join("blobs/layer.tmp");
        let archiver = std::thread::scope(|s| -> Result<(String, String, u64)> {
            let feeder = s.spawn(move || layer::rebuild(repo, &name, &layer, writer).map(|_| ()));
            let file = std::fs::File::create(&tmp)?;
            let gz = HashingWriter::new(std::io::BufWriter::new(file));
            let gz = flate2::write::GzEncoder::new(gz, flate2::Compression::new(6));
            let tar_out = HashingWriter::new(gz);
            let mut builder = tar::Builder::new(tar_out);
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries()? {
                let mut entry = entry?;
                let mut header = entry.header().clone();
                let path = entry.path()?.into_owned();
                if let Some(target) = entry.link_name()?.map(|t| t.into_owned()) {
                    builder.append_link(&mut header, &path, &target)?;
                } else {
                    builder.append_data(&mut header, &path, &mut entry)?;
                }
            }
            let tar_out = builder.into_inner()?;
            let (gz, tar_digest, _) = tar_out.finish();
            let (mut buf, blob_digest, size) = gz.finish()?.finish();
            buf.flush()?;
            feeder
                .join()
                .map_err(|_| anyhow::anyhow!("rebuild thread panicked"))??;
            Ok((tar_digest.to_string(), blob_digest.to_string(), size))
        })?;
        let (tar_digest, blob_digest, size) = archiver;
        std::fs::rename(&tmp, out.join("blobs/sha256").join(&blob_digest[7..]))?;
        diff_ids.push(tar_digest);
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": blob_digest,
            "size": size,
        }));
    }
    let mut config: serde_json::Value = serde_json::from_slice(&img.config_bytes)?;
    config["rootfs"]["diff_ids"] = serde_json::json!(diff_ids);
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = put(out, &config_bytes)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": layers,
    }))?;
    let manifest_digest = put(out, &manifest)?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "ref"}}]});
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index)?).context("index.json")?;
    Ok(())
}
