//! Storing a verified image in the repository: each layer as a split-stream
//! (through composefs-oci), then the config and manifest under the tag.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, Digest, MediaType};
use ocidir::prelude::*;

use super::source::SourceImage;
use super::ImportedLayer;
use crate::compress;
use crate::digest::{parse_sha256, HashingReader};
use crate::repo::image::{
    config_stream_id, layer_stream_id, manifest_stream_id, MANIFEST_CONTENT_TYPE,
};

/// What the reader thread saw of one layer blob.
struct BlobRead {
    /// Digest and size of the whole blob, always complete.
    blob: (Digest, u64),
    /// Digest of the decompressed tar, or why decompressing stopped.
    tar: io::Result<Digest>,
}

/// Decompress `blob` into `sink`, hashing both sides. The raw blob is always
/// hashed to its end, so a damaged blob is named as such even when the
/// decompressor or the tar parser gives up first.
fn feed_layer<R: Read>(
    blob: R,
    media_type: &MediaType,
    sink: impl io::Write,
) -> io::Result<BlobRead> {
    let mut compressed = HashingReader::new(blob);
    let tar = (|| {
        let decoder = compress::decoder(media_type, BufReader::new(&mut compressed))?;
        let mut tar = HashingReader::new(decoder);
        let mut sink = sink;
        io::copy(&mut tar, &mut sink)?;
        Ok(tar.finish().0)
    })();
    compressed.drain()?;
    Ok(BlobRead {
        blob: compressed.finish(),
        tar,
    })
}

/// Stream one layer blob into the repository as an unnamed split-stream,
/// returning its object ID once the blob digest and diff_id check out.
async fn import_layer<ID: FsVerityHashValue, R: Read + Send + 'static>(
    repo: &Arc<Repository<ID>>,
    blob: R,
    desc: &Descriptor,
    diff_id: &Digest,
) -> Result<ID> {
    let (rd, wr) = tokio::io::duplex(256 * 1024);
    let media_type = desc.media_type().clone();
    let feeder = tokio::task::spawn_blocking(move || {
        feed_layer(blob, &media_type, tokio_util::io::SyncIoBridge::new(wr))
    });
    let split =
        composefs_oci::tar::split_async(rd, repo.clone(), composefs_oci::LAYER_CONTENT_TYPE).await;
    let read = feeder
        .await
        .context("layer reader task")?
        .context("Reading the blob")?;
    let want = parse_sha256(desc.digest().as_ref())?;
    if read.blob.0 != want || read.blob.1 != desc.size() {
        bail!(
            "blob {want} is damaged: it hashes to {} ({} bytes, descriptor says {})",
            read.blob.0,
            read.blob.1,
            desc.size()
        );
    }
    let tar = match read.tar {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(e).context("Decompressing the blob")
        }
        other => other,
    };
    let (object_id, _) = split.context("Splitting the layer tar")?;
    let tar = tar.context("Decompressing the blob")?;
    if &tar != diff_id {
        bail!("blob {want} decompresses to {tar}, but the config's diff_id is {diff_id}");
    }
    Ok(object_id)
}

/// Store every layer the repository lacks, verified, then name them all:
/// a bad blob leaves only unreferenced objects, which the repository's GC removes.
pub(super) async fn store_layers<ID: FsVerityHashValue, T: OciRead>(
    repo: &Arc<Repository<ID>>,
    oci: &T,
    source: &str,
    img: &SourceImage,
) -> Result<(Vec<ImportedLayer>, Vec<(Digest, ID)>)> {
    let mut verified: Vec<(Digest, ID, bool)> = Vec::new();
    let mut layers = Vec::new();
    for (i, (desc, diff_id)) in img.manifest.layers().iter().zip(&img.diff_ids).enumerate() {
        let (object, new) = match repo.has_stream(&layer_stream_id(diff_id))? {
            Some(existing) => (existing, false),
            None => {
                let ctx = || format!("Importing layer {} ({}) of {source}", i + 1, desc.digest());
                let blob = oci.read_blob(desc).with_context(ctx)?;
                let object = import_layer(repo, blob, desc, diff_id)
                    .await
                    .with_context(ctx)?;
                (object, true)
            }
        };
        layers.push(ImportedLayer {
            diff_id: diff_id.to_string(),
            blob_digest: desc.digest().to_string(),
            stored: new,
        });
        verified.push((diff_id.clone(), object, new));
    }
    let mut layer_refs: Vec<(Digest, ID)> = Vec::new();
    for (diff_id, object, new) in verified {
        let stream = layer_stream_id(&diff_id);
        let verity = match (new, repo.has_stream(&stream)?) {
            // A concurrent import may have named it meanwhile: keep theirs.
            (true, Some(theirs)) => theirs,
            (true, None) => {
                repo.register_stream(&object, &stream, None).await?;
                object
            }
            (false, _) => object,
        };
        layer_refs.push((diff_id, verity));
    }
    Ok((layers, layer_refs))
}

/// Store the config (its original bytes) and the manifest with their refs,
/// as composefs-oci does, unless already there.
pub(super) fn store_config_and_manifest<ID: FsVerityHashValue>(
    repo: &Arc<Repository<ID>>,
    img: &SourceImage,
    layer_refs: &[(Digest, ID)],
) -> Result<()> {
    let config_digest = &img.config_digest;
    let config_verity = match repo.has_stream(&config_stream_id(config_digest))? {
        Some(v) => v,
        None => {
            let refs: HashMap<Box<str>, ID> = layer_refs
                .iter()
                .map(|(d, v)| (Box::from(d.as_ref()), v.clone()))
                .collect();
            composefs_oci::write_config_raw(
                repo,
                &img.config_bytes,
                refs,
                None,
                None,
                &HashMap::new(),
            )
            .with_context(|| format!("Storing config {config_digest}"))?
            .1
        }
    };
    let manifest_stream = manifest_stream_id(&img.manifest_digest);
    if repo.has_stream(&manifest_stream)?.is_none() {
        let mut stream = repo.create_stream(MANIFEST_CONTENT_TYPE)?;
        stream.add_named_stream_ref(&format!("config:{config_digest}"), &config_verity);
        for (diff_id, verity) in layer_refs {
            stream.add_named_stream_ref(diff_id.as_ref(), verity);
        }
        stream.write_external(&img.manifest_bytes)?;
        repo.write_stream(stream, &manifest_stream, None)
            .with_context(|| format!("Storing manifest {}", img.manifest_digest))?;
    }
    Ok(())
}
