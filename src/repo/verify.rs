//! `verify`: read everything an export would, rebuild every layer against its
//! diff_id, and name the damaged objects. Writes nothing.

use std::collections::HashMap;

use anyhow::Result;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use serde::Serialize;

use crate::repo::image::{self, CatalogEntry, DamagedManifest, StoredLayer};
use crate::repo::layer::{self, DamagedObject, LayerDamaged};

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Images affected (their names).
    pub images: Vec<String>,
    /// The layer, when the problem is in one: 1-based number and diff_id.
    pub layer: Option<(usize, String)>,
    /// What is wrong.
    pub problem: String,
    /// Damaged objects, with their paths in the repository.
    pub objects: Vec<DamagedObject>,
}

/// The result of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Images checked.
    pub images_checked: usize,
    /// Distinct layers rebuilt.
    pub layers_checked: usize,
    /// Uncompressed bytes rebuilt and hashed.
    pub bytes_checked: u64,
    /// Everything found; empty means the images are intact.
    pub findings: Vec<Finding>,
    /// bootc deployments that chose the images (set by the caller that resolved them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<crate::host::DeploymentChoice>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verify the given catalogue entries (and report the damaged manifests given).
///
/// Every object an export of an image reads is checked: the manifest's and
/// config's split-stream objects and the objects they reference (by their
/// fs-verity digests, recomputed here), each layer rebuilt against its
/// diff_id, and each layer's split-stream object by its digest too.
pub fn verify<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    entries: &[CatalogEntry],
    damaged: &[DamagedManifest],
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        images_checked: entries.len() + damaged.len(),
        layers_checked: 0,
        bytes_checked: 0,
        findings: damaged
            .iter()
            .map(|d| Finding {
                images: vec![d.display_name()],
                layer: None,
                problem: d.to_string(),
                objects: d.objects.clone(),
            })
            .collect(),
        deployments: Vec::new(),
    };
    let checks = layers_to_check(repo, entries, &mut report)?;
    for (l, users) in checks {
        report.layers_checked += 1;
        check_layer(repo, l, users, &mut report);
    }
    Ok(report)
}

/// Each distinct layer stream of the images whose manifest and config are
/// intact, with the images using it; findings for the others.
fn layers_to_check<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    entries: &[CatalogEntry],
    report: &mut VerifyReport,
) -> Result<Vec<(StoredLayer<ID>, Vec<String>)>> {
    let mut checks: Vec<(StoredLayer<ID>, Vec<String>)> = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for entry in entries {
        let name = entry.display_name();
        let damaged = metadata_damage(repo, entry)?;
        if !damaged.is_empty() {
            for (what, objects) in damaged {
                report.findings.push(Finding {
                    images: vec![name.clone()],
                    layer: None,
                    problem: format!(
                        "the {what} of {name} is damaged in the repository; re-pull the image"
                    ),
                    objects,
                });
            }
            continue;
        }
        let img = match image::load(repo, entry) {
            Ok(img) => img,
            Err(e) => {
                report.findings.push(Finding {
                    images: vec![name],
                    layer: None,
                    problem: format!("{e:#}"),
                    objects: Vec::new(),
                });
                continue;
            }
        };
        for l in img.layers {
            let key = (l.diff_id.to_string(), l.stream.to_hex());
            match seen.get(&key) {
                Some(&i) => checks[i].1.push(name.clone()),
                None => {
                    seen.insert(key, checks.len());
                    checks.push((l, vec![name.clone()]));
                }
            }
        }
    }
    Ok(checks)
}

/// Rebuild one layer against its diff_id and check its stream object.
fn check_layer<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    l: StoredLayer<ID>,
    users: Vec<String>,
    report: &mut VerifyReport,
) {
    let layer = Some((l.index + 1, l.diff_id.to_string()));
    match layer::rebuild(repo, &users[0], &l, std::io::sink()) {
        Ok((_, size)) => {
            report.bytes_checked += size;
            // The tar can come out right from a stream object with a flipped
            // bit in a part that is not read: still damage.
            if let Some(o) = layer::check_object(repo, &l.stream) {
                report.findings.push(Finding {
                    images: users,
                    layer,
                    problem: "its split-stream object is damaged (the rebuilt tar still matches the diff_id)".into(),
                    objects: vec![o],
                });
            }
        }
        Err(e) => {
            let (problem, objects) = match e.downcast_ref::<LayerDamaged>() {
                Some(d) => (d.cause.clone(), d.objects.clone()),
                None => (format!("{e:#}"), Vec::new()),
            };
            report.findings.push(Finding {
                images: users,
                layer,
                problem,
                objects,
            });
        }
    }
}

/// Damaged objects of an image's manifest and config split-streams, by
/// which of the two (`manifest sha256:…`, `config sha256:…`) they belong to.
fn metadata_damage<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    entry: &CatalogEntry,
) -> Result<Vec<(String, Vec<DamagedObject>)>> {
    let mut streams = vec![(
        format!("config {}", entry.config_digest),
        image::config_stream_id(&entry.config_digest),
    )];
    if let Some(m) = &entry.manifest_digest {
        streams.push((format!("manifest {m}"), image::manifest_stream_id(m)));
    }
    let mut damaged = Vec::new();
    for (what, name) in streams {
        if let Some(id) = repo.has_stream(&name)? {
            let objects = layer::damaged_objects(repo, &name, &id);
            if !objects.is_empty() {
                damaged.push((what, objects));
            }
        }
    }
    Ok(damaged)
}
