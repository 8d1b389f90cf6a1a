//! The way back: takes an `oci:` layout or `oci-archive:` file and gives an
//! image in the repository, tagged, stored through composefs-oci.
//!
//! Importing an OCI layout or archive into the repository, every blob
//! verified before anything is named in the repository.

mod source;
mod store;

use source::read_source;
use store::{store_config_and_manifest, store_layers};

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::{ambient_authority, fs::Dir};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use ocidir::prelude::*;
use serde::Serialize;

use crate::deliver::transport::ImageLocation;
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
