//! What `list` shows: each image with its IDs, size and, on a bootc host,
//! the deployments made from it.

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use serde::Serialize;

use crate::host::{Deployment, Host, Role};
use crate::repo::image::{self, CatalogEntry};

/// A deployment made from a listed image.
#[derive(Debug, Clone, Serialize)]
pub struct ListedDeployment {
    /// Deployment ID.
    pub id: String,
    /// booted, staged, rollback or other.
    pub role: Role,
    /// The image name in its origin (`quay.io/x/y:tag`).
    pub image: String,
}

/// One row of `list`.
#[derive(Debug, Serialize)]
pub struct ListRow {
    /// Tags (empty when untagged).
    pub tags: Vec<String>,
    /// Manifest digest, when the repository stores the manifest.
    pub manifest_digest: Option<String>,
    /// Image ID: the config digest (`null` only for a damaged manifest that no longer names it).
    pub image_id: Option<String>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Number of layers.
    pub layers: usize,
    /// Sum of uncompressed layer sizes.
    pub size: u64,
    /// bootc deployments made from this image, in bootc's order.
    pub deployments: Vec<ListedDeployment>,
    /// Why the image cannot be exported as stored (its manifest is damaged); `null` when intact.
    pub damaged: Option<String>,
}

/// What `list` found: the rows, and deployments whose image is not in the repository.
#[derive(Debug)]
pub struct Listing {
    /// One per image.
    pub rows: Vec<ListRow>,
    /// Problems to tell: what was skipped reading the host ([`Host::warnings`]),
    /// damaged manifests, and deployments whose image could not be found
    /// (origin problems or garbage-collected), with why.
    pub problems: Vec<String>,
}

/// Is `d`'s image this catalogue entry?
fn made_from(d: &Deployment, entry: &CatalogEntry) -> bool {
    d.image
        .as_ref()
        .is_some_and(|i| match (&i.manifest_digest, &i.config_digest) {
            (Some(m), _) => entry.manifest_digest.as_ref() == Some(m),
            (None, Some(c)) => &entry.config_digest == c,
            (None, None) => false,
        })
}

/// The deployments made from one image.
fn listed(
    deployments: &[Deployment],
    made_from: impl Fn(&Deployment) -> bool,
) -> Vec<ListedDeployment> {
    deployments
        .iter()
        .filter(|d| made_from(d))
        .map(|d| ListedDeployment {
            id: d.id.clone(),
            role: d.role,
            image: d.image.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
        })
        .collect()
}

/// Platform, layer count and uncompressed size of an image.
fn image_summary<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    entry: &CatalogEntry,
) -> Result<(String, usize, u64)> {
    let img = image::load(repo, entry)?;
    let mut size = 0;
    for l in &img.layers {
        size += image::layer_size(repo, l)
            .with_context(|| format!("Layer {} of {}", l.diff_id, img.name()))?;
    }
    Ok((image::platform_of(&img.config), img.layers.len(), size))
}

/// Why each deployment that no listed image was made from has none.
fn unmatched(deployments: &[Deployment], images: &[CatalogEntry], rows: &[ListRow]) -> Vec<String> {
    deployments
        .iter()
        .filter(|d| {
            !images.iter().any(|e| made_from(d, e))
                && !rows
                    .iter()
                    .any(|r| r.deployments.iter().any(|l| l.id == d.id))
        })
        .map(|d| match d.require_image() {
            Err(e) => format!("{e:#}"),
            Ok(_) => format!(
                "the {}'s image is not in the repository (garbage-collected?)",
                d.describe()
            ),
        })
        .collect()
}

/// Every image in the repository, with sizes and the deployments made from it.
pub fn list<ID: FsVerityHashValue>(repo: &Repository<ID>, host: Option<&Host>) -> Result<Listing> {
    let deployments = host.map_or(&[][..], |h| &h.deployments[..]);
    let catalog = image::catalog(repo)?;
    let mut rows = Vec::new();
    for entry in &catalog.images {
        // One damaged image must not hide the others: its row says what is wrong.
        let (platform, layers, size, damaged) = match image_summary(repo, entry) {
            Ok((platform, layers, size)) => (platform, layers, size, None),
            Err(e) => ("unknown".to_string(), 0, 0, Some(format!("{e:#}"))),
        };
        rows.push(ListRow {
            tags: entry.tags.clone(),
            manifest_digest: entry.manifest_digest.as_ref().map(|d| d.to_string()),
            image_id: Some(entry.config_digest.to_string()),
            platform,
            layers,
            size,
            deployments: listed(deployments, |d| made_from(d, entry)),
            damaged,
        });
    }
    for d in &catalog.damaged {
        rows.push(ListRow {
            tags: d.tags.clone(),
            manifest_digest: Some(d.digest.to_string()),
            image_id: d.config_digest.as_ref().map(|c| c.to_string()),
            platform: "unknown".into(),
            layers: 0,
            size: 0,
            deployments: listed(deployments, |dep| {
                dep.image
                    .as_ref()
                    .is_some_and(|i| i.manifest_digest.as_ref() == Some(&d.digest))
            }),
            damaged: Some(d.to_string()),
        });
    }
    // On a host: staged, booted, rollback first (bootc's order); stable otherwise.
    rows.sort_by_key(|r| {
        r.deployments
            .iter()
            .map(|d| d.role)
            .min()
            .unwrap_or(Role::Other)
    });
    let mut problems: Vec<String> = host.map_or_else(Vec::new, |h| h.warnings.clone());
    problems.extend(rows.iter().filter_map(|r| r.damaged.clone()));
    problems.extend(unmatched(deployments, &catalog.images, &rows));
    Ok(Listing { rows, problems })
}
