//! Which images an export takes: tags, digests and ID prefixes from the
//! catalogue, and on a bootc host the deployments' image names and roles.

use std::collections::HashSet;

use anyhow::{bail, Result};

use crate::host::{Deployment, DeploymentChoice, Host};
use crate::repo::image::{self, Catalog};

/// Which images to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSelection {
    /// These selectors: tag, digest or ID prefix; on a bootc host also an
    /// image name from a deployment's origin or `booted` / `staged` / `rollback`.
    Named(Vec<String>),
    /// Every image in the repository.
    All,
    /// The image of one deployment (`--deployment booted|staged|rollback|ID`).
    Deployment(String),
}

/// One image picked by a selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The image.
    pub entry: image::CatalogEntry,
    /// The deployment that named it, when a deployment did.
    pub deployment: Option<DeploymentChoice>,
}

impl ImageSelection {
    /// `--all`, or the IMAGE arguments.
    pub fn from_args(all: bool, images: &[String]) -> Self {
        if all {
            ImageSelection::All
        } else {
            ImageSelection::Named(images.to_vec())
        }
    }

    /// The images this selection names, each once. `host` (a bootc host's
    /// deployments) lets image names and role keywords select too.
    pub fn resolve(&self, catalog: &Catalog, host: Option<&Host>) -> Result<Vec<Selected>> {
        let picked: Vec<Selected> = match self {
            ImageSelection::All => {
                if let Some(d) = catalog.damaged.first() {
                    bail!("{d} (`verify --all` lists every damaged image)");
                }
                catalog
                    .images
                    .iter()
                    .map(|e| Selected {
                        entry: e.clone(),
                        deployment: None,
                    })
                    .collect()
            }
            ImageSelection::Named(selectors) => selectors
                .iter()
                .map(|s| select_one(catalog, host, s))
                .collect::<Result<_>>()?,
            ImageSelection::Deployment(wanted) => {
                let host = require_host(host, "--deployment")?;
                let d = host.deployment(wanted)?;
                vec![deployment_image(catalog, host, d, wanted, &[])?]
            }
        };
        let mut seen = HashSet::new();
        Ok(picked
            .into_iter()
            .filter(|s| {
                seen.insert((
                    s.entry.manifest_digest.clone(),
                    s.entry.config_digest.to_string(),
                ))
            })
            .collect())
    }
}

fn require_host<'a>(host: Option<&'a Host>, what: &str) -> Result<&'a Host> {
    host.ok_or_else(|| {
        anyhow::anyhow!(
            "{what} names a bootc deployment, but no bootc host was found: no {}/state/deploy, or the repository is not its composefs/ (use --sysroot DIR)",
            crate::host::DEFAULT_SYSROOT
        )
    })
}

/// One selector: a deployment (role keyword, or image name from an origin)
/// first on a bootc host, then tags, digests and ID prefixes.
fn select_one(catalog: &Catalog, host: Option<&Host>, selector: &str) -> Result<Selected> {
    if Host::is_host_selector(selector) {
        let host = require_host(host, selector)?;
        return match host.choose(selector)? {
            Some((d, others)) => deployment_image(catalog, host, d, selector, &others),
            None => bail!(
                "Image {selector} not found: no deployment has this image name; deployments: {}",
                host.summary()
            ),
        };
    }
    if let Some(host) = host {
        if let Some((d, others)) = host.choose(selector)? {
            return deployment_image(catalog, host, d, selector, &others);
        }
    }
    if let Some(d) = catalog.damaged_match(selector) {
        bail!("{d}");
    }
    match image::select(&catalog.images, selector) {
        Ok(entry) => Ok(Selected {
            entry: entry.clone(),
            deployment: None,
        }),
        Err(e) => match host.filter(|h| !h.deployments.is_empty()) {
            Some(h) => Err(anyhow::Error::new(e)
                .context(format!("bootc deployments on this host: {}", h.summary()))),
            None => Err(e.into()),
        },
    }
}

/// The catalogue entry of a deployment's image: by the manifest digest its
/// origin records, else by the config digest of its (older) image info.
fn deployment_image(
    catalog: &Catalog,
    host: &Host,
    d: &Deployment,
    selector: &str,
    also_matched: &[&Deployment],
) -> Result<Selected> {
    let img = d.require_image()?;
    if let Some(damaged) = img
        .manifest_digest
        .as_ref()
        .and_then(|m| catalog.damaged_match(m.as_ref()))
    {
        bail!(
            "The {} was made from an image whose {damaged}",
            d.describe()
        );
    }
    let found = match (&img.manifest_digest, &img.config_digest) {
        (Some(m), _) => catalog
            .images
            .iter()
            .find(|e| e.manifest_digest.as_ref() == Some(m)),
        (None, Some(c)) => catalog
            .images
            .iter()
            .filter(|e| &e.config_digest == c)
            .min_by_key(|e| e.manifest_digest.is_none()),
        (None, None) => None,
    };
    let Some(entry) = found else {
        let what = match (&img.manifest_digest, &img.config_digest) {
            (Some(m), _) => format!("manifest {m}"),
            (None, Some(c)) => format!("config {c}"),
            (None, None) => "no digest".into(),
        };
        bail!(
            "The {} was made from {what}, which is not in the repository {} (garbage-collected, or not this host's repository); its origin is {}",
            d.describe(),
            host.paths.repository().display(),
            host.origin_path(&d.id).display()
        );
    };
    Ok(Selected {
        entry: entry.clone(),
        deployment: Some(DeploymentChoice {
            selector: selector.to_string(),
            id: d.id.clone(),
            role: d.role,
            image: img.name.clone(),
            also_matched: also_matched
                .iter()
                .map(|o| format!("{} {}", o.role, crate::digest::short_hex(&o.id)))
                .collect(),
        }),
    })
}
