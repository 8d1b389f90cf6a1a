//! Importing an OCI layout or archive into the repository, every blob
//! verified before anything is named in the repository.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use ocidir::prelude::*;
use serde::Serialize;

use crate::compress;
use crate::deliver::transport::{validate_tag, ImageLocation};
use crate::digest::{parse_sha256, sha256, HashingReader};
use crate::export::ANNOTATION_REF_NAME;
use crate::repo::image::{
    config_stream_id, layer_stream_id, manifest_stream_id, MANIFEST_CONTENT_TYPE,
};

/// Options for [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Tag to give the image in the repository (default: the source's ref name).
    pub tag: Option<String>,
    /// `os/arch[/variant]` to pick from a multi-platform index.
    pub platform: Option<String>,
}

/// One imported layer.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedLayer {
    /// Uncompressed digest (verified).
    pub diff_id: String,
    /// Blob digest in the source (verified).
    pub blob_digest: String,
    /// False when the repository already had it.
    pub stored: bool,
}

/// The result of an import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// What was imported.
    pub source: String,
    /// The tag given in the repository.
    pub tag: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Config digest (image ID).
    pub config_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Per layer.
    pub layers: Vec<ImportedLayer>,
}

/// A wanted platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlatformWanted {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl PlatformWanted {
    fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Self {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => bail!(crate::UsageError(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64/v8"
            ))),
        }
    }

    fn matches(&self, d: &Descriptor) -> bool {
        d.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == self.os
                && p.architecture().to_string() == self.arch
                && (self.variant.is_none() || p.variant() == &self.variant)
        })
    }
}

fn platform_of(d: &Descriptor) -> String {
    match d.platform() {
        Some(p) => {
            crate::repo::image::platform_string(p.os(), p.architecture(), p.variant().as_deref())
        }
        None => "unknown platform".to_string(),
    }
}

/// Read a (small) blob whole and check its size and digest against `desc`.
fn read_verified<T: OciRead>(oci: &T, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let digest = parse_sha256(desc.digest().as_ref())?;
    let mut data = Vec::new();
    oci.read_blob(desc)
        .with_context(|| format!("Reading {what} {digest}"))?
        .take(desc.size() + 1)
        .read_to_end(&mut data)
        .with_context(|| format!("Reading {what} {digest}"))?;
    let got = sha256(&data);
    if got != digest || data.len() as u64 != desc.size() {
        bail!(
            "{what} blob {digest} is damaged: it hashes to {got} ({} bytes, descriptor says {})",
            data.len(),
            desc.size()
        );
    }
    Ok(data)
}

fn is_index(mt: &MediaType) -> bool {
    *mt == MediaType::ImageIndex
        || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Find the manifest the source names: by tag, else the only one; through
/// an index by platform.
fn resolve_manifest<T: OciRead>(
    oci: &T,
    tag: Option<&str>,
    platform: Option<&PlatformWanted>,
) -> Result<(Descriptor, Vec<u8>, Option<String>)> {
    let index = oci.read_index().context("Reading index.json")?;
    let ref_name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .cloned()
    };
    let all = index.manifests();
    let candidates: Vec<&Descriptor> = match tag {
        Some(t) => all
            .iter()
            .filter(|d| ref_name(d).as_deref() == Some(t))
            .collect(),
        None => all.iter().collect(),
    };
    let names = || {
        let v: Vec<String> = all.iter().filter_map(ref_name).collect();
        if v.is_empty() {
            "none has a ref name".to_string()
        } else {
            format!("available: {}", v.join(", "))
        }
    };
    let chosen: &Descriptor = match (candidates.as_slice(), platform) {
        ([], _) => match tag {
            Some(t) => bail!("No image tagged {t:?} in the source; {}", names()),
            None => bail!("The source holds no images"),
        },
        ([one], _) => one,
        (many, Some(p)) => {
            let m: Vec<&&Descriptor> = many.iter().filter(|d| p.matches(d)).collect();
            match m.as_slice() {
                [one] => one,
                _ => bail!(
                    "The source holds {} images; name one with oci:PATH:TAG ({})",
                    many.len(),
                    names()
                ),
            }
        }
        (many, None) => bail!(
            "The source holds {} images; name one with oci:PATH:TAG ({})",
            many.len(),
            names()
        ),
    };
    let name = ref_name(chosen);
    if !is_index(chosen.media_type()) {
        let bytes = read_verified(oci, chosen, "manifest")?;
        return Ok((chosen.clone(), bytes, name));
    }
    let pick = pick_from_index(oci, chosen, platform)?;
    let bytes = read_verified(oci, &pick, "manifest")?;
    Ok((pick, bytes, name))
}

/// The image manifest for `platform` in a multi-platform index (the only
/// image when no platform is asked for).
fn pick_from_index<T: OciRead>(
    oci: &T,
    index: &Descriptor,
    platform: Option<&PlatformWanted>,
) -> Result<Descriptor> {
    let nested = ImageIndex::from_reader(&read_verified(oci, index, "index")?[..])
        .context("Parsing the image index")?;
    let images: Vec<&Descriptor> = nested
        .manifests()
        .iter()
        .filter(|d| !is_index(d.media_type()))
        .filter(|d| {
            d.platform()
                .as_ref()
                .is_none_or(|p| p.os().to_string() != "unknown")
        })
        .collect();
    let available = || {
        images
            .iter()
            .map(|d| platform_of(d))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pick: &Descriptor = match platform {
        Some(p) => match images.iter().find(|d| p.matches(d)) {
            Some(d) => d,
            None => bail!(
                "No manifest for platform {}/{}{} in the index; available: {}",
                p.os,
                p.arch,
                p.variant
                    .as_ref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default(),
                available()
            ),
        },
        None => match images.as_slice() {
            [one] => one,
            _ => bail!(
                "The index holds several platforms ({}); choose one with --platform",
                available()
            ),
        },
    };
    Ok(pick.clone())
}

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

/// The image a source names, its blobs read and checked, not yet stored.
struct SourceImage {
    manifest_digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: ImageManifest,
    config_digest: Digest,
    config_bytes: Vec<u8>,
    config: ImageConfiguration,
    diff_ids: Vec<Digest>,
    tag: String,
}

/// Resolve the source's image and check manifest and config against their digests.
fn read_source<T: OciRead>(
    oci: &T,
    source: &str,
    source_tag: Option<&str>,
    opts: &ImportOptions,
) -> Result<SourceImage> {
    let platform = opts
        .platform
        .as_deref()
        .map(PlatformWanted::parse)
        .transpose()?;
    let (mdesc, manifest_bytes, ref_name) = resolve_manifest(oci, source_tag, platform.as_ref())?;
    let tag = opts
        .tag
        .clone()
        .or_else(|| source_tag.map(str::to_string))
        .or(ref_name)
        .ok_or_else(|| {
            crate::UsageError(format!(
                "{source} has no ref name for this image: give one with --tag"
            ))
        })?;
    validate_tag(&tag).map_err(|e| crate::UsageError(e.to_string()))?;
    let manifest_digest = parse_sha256(mdesc.digest().as_ref())?;
    let manifest = ImageManifest::from_reader(&manifest_bytes[..])
        .with_context(|| format!("Parsing manifest {manifest_digest}"))?;
    let cdesc = manifest.config();
    let config_bytes = read_verified(oci, cdesc, "config")?;
    let config_digest = parse_sha256(cdesc.digest().as_ref())?;
    let config = ImageConfiguration::from_reader(&config_bytes[..])
        .with_context(|| format!("Parsing config {config_digest}"))?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| parse_sha256(d))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "Manifest {manifest_digest} lists {} layers but its config has {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    Ok(SourceImage {
        manifest_digest,
        manifest_bytes,
        manifest,
        config_digest,
        config_bytes,
        config,
        diff_ids,
        tag,
    })
}

/// Store every layer the repository lacks, verified, then name them all:
/// a bad blob leaves only unreferenced objects, which the repository's GC removes.
async fn store_layers<ID: FsVerityHashValue, T: OciRead>(
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
fn store_config_and_manifest<ID: FsVerityHashValue>(
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

async fn import_from<ID: FsVerityHashValue, T: OciRead>(
    repo: &Arc<Repository<ID>>,
    oci: &T,
    source: &str,
    source_tag: Option<&str>,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let img = read_source(oci, source, source_tag, opts)?;
    let (layers, layer_refs) = store_layers(repo, oci, source, &img).await?;
    store_config_and_manifest(repo, &img, &layer_refs)?;
    composefs_oci::tag_image(repo, &img.manifest_digest, &img.tag)?;
    Ok(ImportReport {
        source: source.to_string(),
        tag: img.tag,
        manifest_digest: img.manifest_digest.to_string(),
        config_digest: img.config_digest.to_string(),
        platform: crate::repo::image::platform_of(&img.config),
        layers,
    })
}

/// Import `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]` into `repo` and tag it.
///
/// Every blob is checked first against its descriptor digest (and each layer's
/// uncompressed bytes against the config's diff_id); on any mismatch nothing
/// is named in the repository and no tag is set. Any platform can be imported.
pub async fn import<ID: FsVerityHashValue>(
    repo: &Arc<Repository<ID>>,
    source: &ImageLocation,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let name = source.to_string();
    match source {
        ImageLocation::OciDir { path, tag } => {
            let oci = open_dir(path)?;
            import_from(repo, &oci, &name, tag.as_deref(), opts).await
        }
        ImageLocation::OciArchive { path, tag } => {
            check_archive(path)?;
            let oci = ocidir::OciArchive::open(path)
                .with_context(|| format!("Opening OCI archive {}", path.display()))?;
            import_from(repo, &oci, &name, tag.as_deref(), opts).await
        }
        other => bail!(crate::UsageError(format!(
            "import reads oci:DIR[:TAG] or oci-archive:FILE[:TAG], not {other}"
        ))),
    }
    .with_context(|| format!("Importing {name}"))
}

/// Refuse archives with entries no OCI archive has: absolute paths, `..`,
/// links or devices. (Nothing is ever extracted, but such an archive is not
/// what it claims to be.)
fn check_archive(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("Opening OCI archive {}", path.display()))?;
    let damaged = || {
        format!(
            "OCI archive {} is truncated or damaged: its tar entries cannot be read to the end",
            path.display()
        )
    };
    let mut archive = tar::Archive::new(BufReader::new(file));
    for entry in archive.entries().with_context(damaged)? {
        let entry = entry.with_context(damaged)?;
        let name = entry.path()?.into_owned();
        let safe_path = name.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        let kind = entry.header().entry_type();
        let safe_kind = kind.is_file() || kind.is_dir() || kind.is_pax_global_extensions();
        if !safe_path || !safe_kind {
            bail!(
                "Refusing OCI archive {}: unsafe entry {:?} ({:?})",
                path.display(),
                name,
                kind
            );
        }
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<ocidir::OciDir> {
    let dir = Dir::open_ambient_dir(path, ambient_authority())
        .with_context(|| format!("Opening OCI layout {}", path.display()))?;
    ocidir::OciDir::open(dir).with_context(|| format!("{} is not an OCI layout", path.display()))
}
