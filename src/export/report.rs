//! What an export did, per image and per layer: the typed report the CLI
//! prints and `--json` serialises.

use oci_spec::image::Digest;
use serde::Serialize;

use crate::compress::Compression;
use crate::host::DeploymentChoice;
use crate::repo::image::StoredLayer;

/// Whether a layer blob was written by this export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerStatus {
    /// Rebuilt and written.
    Written,
    /// Already in the destination.
    Skipped,
}

/// What happened to one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// sha256 of the uncompressed tar (from the config, proven while streaming).
    pub diff_id: String,
    /// Digest of the blob in the destination.
    pub blob_digest: String,
    /// Its media type.
    pub media_type: String,
    /// The compression used.
    pub compression: Compression,
    /// Uncompressed tar size.
    pub size: u64,
    /// Blob size.
    pub blob_size: u64,
    /// Written or skipped.
    pub status: LayerStatus,
    /// Seconds spent rebuilding it (0 when skipped).
    pub seconds: f64,
    /// How the blob relates to the original manifest's.
    pub blob: BlobBytes,
}

/// A layer blob against the one in the original manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBytes {
    /// The original blob as it was (an uncompressed original, exported uncompressed).
    Original,
    /// The original compressed bytes, reproduced by the encoder named in `compression`.
    Reproduced,
    /// A blob the original manifest does not have (recompressed, decompressed,
    /// or no original manifest is stored).
    New,
}

impl BlobBytes {
    /// What `blob_digest` is, given the layer's original descriptor and our compression.
    pub(crate) fn of<ID>(layer: &StoredLayer<ID>, blob_digest: &Digest, c: Compression) -> Self {
        match (&layer.original, c) {
            (Some(o), Compression::Reproduced(_)) if o.digest() == blob_digest => {
                BlobBytes::Reproduced
            }
            (Some(o), _) if o.digest() == blob_digest => BlobBytes::Original,
            _ => BlobBytes::New,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The image, as named in the repository.
    pub image: String,
    /// The ref name it got in the layout.
    pub tag: Option<String>,
    /// Digest of the manifest written.
    pub manifest_digest: String,
    /// Config digest: the image ID, identical to the repository's.
    pub config_digest: String,
    /// True when the original manifest bytes were written unchanged.
    pub original_manifest: bool,
    /// Why the manifest is new although every layer blob is the original's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_not_kept: Option<ManifestNotKept>,
    /// `os/architecture[/variant]` from the config.
    pub platform: String,
    /// The bootc deployment that named the image, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentChoice>,
    /// Per layer, bottom first.
    pub layers: Vec<LayerReport>,
}

/// Why an export wrote a new manifest although every layer blob is the original's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum ManifestNotKept {
    /// The original is a Docker schema2 manifest and the destination an OCI
    /// layout, which cannot hold one.
    DockerInOciLayout {
        /// The original manifest's digest.
        original: String,
    },
}

impl std::fmt::Display for ManifestNotKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestNotKept::DockerInOciLayout { original } => write!(
                f,
                "an OCI layout cannot hold the original Docker manifest {original}"
            ),
        }
    }
}

/// The result of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Where it went.
    pub destination: String,
    /// Per image.
    pub images: Vec<ImageReport>,
    /// Wall time of the export into the OCI layout (ours).
    pub export_seconds: f64,
    /// Wall time of the hand-off to skopeo or the archive writer, if any.
    pub transfer_seconds: Option<f64>,
    /// True when the image was served to skopeo as it read it (no temporary
    /// layout): `export_seconds` then overlaps `transfer_seconds`.
    pub streamed: bool,
}
