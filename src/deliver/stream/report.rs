//! The report of a streamed copy.

use crate::export::{BlobBytes, ExportReport, ImageReport, LayerReport, LayerStatus};
use crate::repo::image::{self, StoredImage};
use crate::serve::ServedLayer;

/// The report of a streamed copy: a layer skopeo did not ask for was already
/// in the storage.
pub(super) fn streamed_report<ID>(
    img: &StoredImage<ID>,
    served: &[ServedLayer],
    log: &std::collections::HashMap<String, crate::serve::LayerServed>,
    destination: &str,
    (manifest_digest, original_manifest): (String, bool),
) -> ExportReport {
    let layers: Vec<LayerReport> = img
        .layers
        .iter()
        .zip(served)
        .map(|(l, d)| {
            let logged = log.get(d.digest().as_ref());
            let compression = d.compression;
            LayerReport {
                diff_id: l.diff_id.to_string(),
                blob_digest: d.digest().to_string(),
                media_type: d.descriptor.media_type().to_string(),
                compression,
                size: d.tar_size,
                blob_size: d.size(),
                status: match logged {
                    Some(_) => LayerStatus::Written,
                    None => LayerStatus::Skipped,
                },
                seconds: logged.map_or(0.0, |s| s.seconds),
                blob: BlobBytes::of(l, d.digest(), compression),
            }
        })
        .collect();
    let export_seconds = layers.iter().map(|l| l.seconds).sum();
    ExportReport {
        destination: destination.to_string(),
        images: vec![ImageReport {
            image: img.name(),
            tag: None,
            manifest_digest,
            config_digest: img.config_digest().to_string(),
            original_manifest,
            // The hand-off serves any manifest kind: nothing to say.
            manifest_not_kept: None,
            platform: image::platform_of(&img.config),
            deployment: img.deployment.clone(),
            layers,
        }],
        export_seconds,
        transfer_seconds: None,
        streamed: true,
    }
}
