//! The catalogue of a repository: which images it holds (tags, manifests,
//! config-only images), which stored manifests are damaged, and finding the
//! one a selector names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Digest, ImageManifest, MediaType};

use crate::digest::parse_sha256;
use crate::repo::image::{
    manifest_stream_id, read_manifest_stream, DOCKER_CONFIG_MEDIA_TYPE, MIN_ID_PREFIX,
};
use crate::repo::objects::DamagedObject;
use crate::repo::stream_check::{open_stream, Check};

/// One image the repository holds, as found by [`catalog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Tags pointing at it (sorted; empty when untagged).
    pub tags: Vec<String>,
    /// The stored manifest, if the repository has one (older repos store only config + layers).
    pub manifest_digest: Option<Digest>,
    /// The config digest, i.e. the image ID.
    pub config_digest: Digest,
}

impl CatalogEntry {
    /// A name for messages: the first tag, else the manifest or config digest.
    pub fn display_name(&self) -> String {
        match (self.tags.first(), &self.manifest_digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(m)) => m.to_string(),
            (None, None) => self.config_digest.to_string(),
        }
    }
}

fn stream_names(repo_fd: impl rustix::fd::AsFd) -> Result<Vec<String>> {
    let fd = match rustix::fs::openat(
        repo_fd,
        "streams",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e).context("Opening streams/ of the repository"),
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd).context("Listing streams/")? {
        let entry = entry.context("Listing streams/")?;
        if let Ok(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// A stored manifest that does not read back intact: its image cannot be
/// exported as it was, and must be named (never skipped quietly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedManifest {
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Its digest.
    pub digest: Digest,
    /// Its config digest, when the manifest's split-stream still names it.
    pub config_digest: Option<Digest>,
    /// What reading it said.
    pub problem: String,
    /// The damaged objects found: the manifest's split-stream object and the objects it references.
    pub objects: Vec<DamagedObject>,
}

impl DamagedManifest {
    /// A name for messages: the first tag, else the digest.
    pub fn display_name(&self) -> String {
        self.tags
            .first()
            .cloned()
            .unwrap_or_else(|| self.digest.to_string())
    }
}

impl fmt::Display for DamagedManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the manifest of {} ({}) is damaged in the repository: ",
            self.display_name(),
            self.digest
        )?;
        if self.objects.is_empty() {
            f.write_str(&self.problem)?;
        } else {
            let list: Vec<String> = self.objects.iter().map(|o| o.to_string()).collect();
            f.write_str(&list.join(", "))?;
        }
        f.write_str("; re-pull the image")
    }
}

/// What the repository holds: the images, and the manifests that are damaged.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Images whose manifest (if any) reads back intact.
    pub images: Vec<CatalogEntry>,
    /// Stored manifests that do not.
    pub damaged: Vec<DamagedManifest>,
}

impl Catalog {
    /// The damaged manifest `selector` names (tag, `tag:latest`, or digest), if any.
    pub fn damaged_match(&self, selector: &str) -> Option<&DamagedManifest> {
        let hex = selector.strip_prefix("sha256:").unwrap_or(selector);
        self.damaged.iter().find(|d| {
            d.tags
                .iter()
                .any(|t| t == selector || *t == format!("{selector}:latest"))
                || d.digest.digest() == hex
        })
    }
}

/// The manifests and the configs the repository stores, by digest string
/// (oci-spec digests are not `Ord`).
#[allow(clippy::type_complexity)]
fn stored_digests<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
) -> Result<(BTreeMap<String, Digest>, BTreeMap<String, Digest>)> {
    let mut manifests: BTreeMap<String, Digest> = BTreeMap::new();
    let mut configs: BTreeMap<String, Digest> = BTreeMap::new();
    for name in stream_names(repo.repo_fd())? {
        if let Some(d) = name.strip_prefix("oci-manifest-") {
            if let Ok(d) = parse_sha256(d) {
                manifests.insert(d.to_string(), d);
            }
        } else if let Some(d) = name.strip_prefix("oci-config-") {
            if let Ok(d) = parse_sha256(d) {
                configs.insert(d.to_string(), d);
            }
        }
    }
    Ok((manifests, configs))
}

/// Every container image in the repository: tagged and untagged manifests, and
/// configs stored without a manifest (by older composefs-oci and bootc);
/// manifests that do not read back intact are listed as damaged.
pub fn catalog<ID: FsVerityHashValue>(repo: &Repository<ID>) -> Result<Catalog> {
    let (manifests, configs) = stored_digests(repo)?;

    let (mut manifest_tags, mut config_tags) = tags_by_digest(repo)?;

    let mut entries = Vec::new();
    let mut damaged = Vec::new();
    let mut configs_with_manifest = BTreeSet::new();
    for (key, digest) in manifests {
        let manifest = match read_manifest(repo, &digest) {
            Ok((_, m)) => m,
            Err(e) => {
                let mut tags = manifest_tags.remove(&key).unwrap_or_default();
                tags.sort();
                let d = damaged_manifest(repo, digest, tags, &e);
                if let Some(c) = &d.config_digest {
                    configs_with_manifest.insert(c.to_string());
                }
                damaged.push(d);
                continue;
            }
        };
        if !is_image_config(manifest.config().media_type()) {
            continue;
        }
        let config_digest = manifest.config().digest().clone();
        configs_with_manifest.insert(config_digest.to_string());
        let mut tags = manifest_tags.remove(&key).unwrap_or_default();
        tags.sort();
        entries.push(CatalogEntry {
            tags,
            manifest_digest: Some(digest),
            config_digest,
        });
    }
    for (key, digest) in configs {
        let mut tags = config_tags.remove(&key).unwrap_or_default();
        if configs_with_manifest.contains(&key) && tags.is_empty() {
            continue;
        }
        tags.sort();
        entries.push(CatalogEntry {
            tags,
            manifest_digest: None,
            config_digest: digest,
        });
    }
    entries.sort_by_key(|e| {
        (
            e.tags.is_empty(),
            e.tags.clone(),
            e.manifest_digest.as_ref().map(|d| d.to_string()),
        )
    });
    Ok(Catalog {
        images: entries,
        damaged,
    })
}

/// Tags by the manifest digest they name, and (config-only repositories)
/// refs outside `oci/` by the config digest they name.
#[allow(clippy::type_complexity)]
fn tags_by_digest<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
) -> Result<(BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>)> {
    let mut manifest_tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tag, digest) in composefs_oci::list_refs(repo)? {
        manifest_tags
            .entry(digest.to_string())
            .or_default()
            .push(tag);
    }
    let mut config_tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, target) in repo.list_stream_refs("")? {
        if name.starts_with("oci/") {
            continue;
        }
        let last = target.rsplit('/').next().unwrap_or(&target);
        if let Some(d) = last.strip_prefix("oci-config-") {
            config_tags.entry(d.to_string()).or_default().push(name);
        }
    }
    Ok((manifest_tags, config_tags))
}

/// What is known of a manifest that failed to read: its config (from the
/// stream's named refs, if they still parse) and the damaged objects.
fn damaged_manifest<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    digest: Digest,
    tags: Vec<String>,
    error: &anyhow::Error,
) -> DamagedManifest {
    let stream_name = manifest_stream_id(&digest);
    let stream = repo.has_stream(&stream_name).ok().flatten();
    let config_digest = stream.as_ref().and_then(|id| {
        let reader = open_stream(repo, &stream_name, Some(id), None, Check::Header).ok()?;
        let config = reader
            .iter_named_refs()
            .find_map(|(k, _)| parse_sha256(k.strip_prefix("config:")?).ok());
        config
    });
    let objects = match &stream {
        Some(id) => crate::repo::objects::damaged_objects(repo, &stream_name, id),
        None => Vec::new(),
    };
    DamagedManifest {
        tags,
        digest,
        config_digest,
        problem: format!("{error:#}"),
        objects,
    }
}

fn is_image_config(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageConfig || media_type.to_string() == DOCKER_CONFIG_MEDIA_TYPE
}

fn read_manifest<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    digest: &Digest,
) -> Result<(Vec<u8>, ImageManifest)> {
    let (bytes, _) = read_manifest_stream(repo, digest)?;
    let manifest = ImageManifest::from_reader(&bytes[..])
        .with_context(|| format!("Parsing manifest {digest}"))?;
    Ok((bytes, manifest))
}

/// Why an image selector matched nothing or too much.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// Nothing matched.
    #[error("image {selector:?} not found in the repository; {}", list_available(.suggestions, .available))]
    NotFound {
        /// What the user asked for.
        selector: String,
        /// Tags close to what was asked for.
        suggestions: Vec<String>,
        /// Names of the images there are.
        available: Vec<String>,
    },
    /// An ID prefix matched several images.
    #[error("image ID prefix {selector:?} is ambiguous; it matches: {}", .candidates.join(", "))]
    Ambiguous {
        /// What the user asked for.
        selector: String,
        /// What it matched.
        candidates: Vec<String>,
    },
    /// An ID prefix that is too short to be safe.
    #[error(
        "image ID prefix {0:?} is too short: give at least 12 hex digits, a tag, or a full digest"
    )]
    PrefixTooShort(String),
}

/// Most names listed in a not-found error.
const MAX_LISTED: usize = 10;

fn list_available(suggestions: &[String], names: &[String]) -> String {
    if names.is_empty() {
        return "the repository holds no container images".to_string();
    }
    let mut s = String::new();
    if !suggestions.is_empty() {
        s.push_str(&format!("did you mean {}? ", suggestions.join(" or ")));
    }
    s.push_str(&format!(
        "available: {}",
        names
            .iter()
            .take(MAX_LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if names.len() > MAX_LISTED {
        s.push_str(&format!(
            " and {} more (see `cfs-export list`)",
            names.len() - MAX_LISTED
        ));
    }
    s
}

/// Tags that look like what the user meant: similar spelling, or containing it.
fn close_names(catalog: &[CatalogEntry], selector: &str) -> Vec<String> {
    let wanted = selector.to_ascii_lowercase();
    let mut scored: Vec<(f64, &String)> = catalog
        .iter()
        .flat_map(|e| e.tags.iter())
        .map(|t| {
            let tl = t.to_ascii_lowercase();
            let name = tl.split(':').next().unwrap_or(&tl);
            let score = strsim::jaro_winkler(&wanted, &tl).max(strsim::jaro_winkler(&wanted, name));
            let score = if tl.contains(&wanted) && wanted.len() >= 3 {
                score.max(0.95)
            } else {
                score
            };
            (score, t)
        })
        .filter(|(score, _)| *score >= 0.85)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, t)| t.clone()).collect()
}

impl fmt::Display for CatalogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ID {})",
            self.display_name(),
            crate::digest::short_hex(self.config_digest.digest())
        )
    }
}

/// Find the one catalogue entry `selector` names: a tag (`name` also tries
/// `name:latest`), a manifest or config digest, or an image-ID prefix of at
/// least [`MIN_ID_PREFIX`] hex digits.
pub fn select<'a>(
    catalog: &'a [CatalogEntry],
    selector: &str,
) -> Result<&'a CatalogEntry, SelectError> {
    let by_tag = |t: &str| catalog.iter().find(|e| e.tags.iter().any(|x| x == t));
    if let Some(e) = by_tag(selector) {
        return Ok(e);
    }
    if !selector.contains(':') {
        if let Some(e) = by_tag(&format!("{selector}:latest")) {
            return Ok(e);
        }
    }
    let hex = selector
        .strip_prefix("sha256:")
        .or_else(|| selector.strip_prefix("@sha256:"))
        .unwrap_or(selector);
    let is_hex = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex {
        let hex = hex.to_ascii_lowercase();
        if hex.len() == 64 {
            if let Some(e) = catalog.iter().find(|e| {
                e.manifest_digest
                    .as_ref()
                    .is_some_and(|m| m.digest() == hex)
                    || e.config_digest.digest() == hex
            }) {
                return Ok(e);
            }
        } else if hex.len() < MIN_ID_PREFIX {
            return Err(SelectError::PrefixTooShort(selector.to_string()));
        }
        let matches: Vec<&CatalogEntry> = catalog
            .iter()
            .filter(|e| e.config_digest.digest().starts_with(&hex))
            .collect();
        match matches.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                return Err(SelectError::Ambiguous {
                    selector: selector.to_string(),
                    candidates: many
                        .iter()
                        .map(|e| match &e.manifest_digest {
                            Some(m) => format!("{} (manifest {m})", e.display_name()),
                            None => e.display_name(),
                        })
                        .collect(),
                })
            }
        }
    }
    Err(SelectError::NotFound {
        selector: selector.to_string(),
        suggestions: close_names(catalog, selector),
        available: catalog.iter().map(|e| e.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        parse_sha256(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn entry(tags: &[&str], m: Option<char>, c: char) -> CatalogEntry {
        CatalogEntry {
            tags: tags.iter().map(|s| s.to_string()).collect(),
            manifest_digest: m.map(d),
            config_digest: d(c),
        }
    }

    #[test]
    fn select_table() {
        let cat = vec![
            entry(&["app:latest"], Some('1'), 'a'),
            entry(&["base:1"], Some('2'), 'b'),
            entry(&[], Some('3'), 'b'),
            entry(&["legacy"], None, 'c'),
        ];
        let ok = |s: &str| select(&cat, s).cloned().ok();
        assert_eq!(ok("app:latest"), Some(cat[0].clone()));
        assert_eq!(ok("app"), Some(cat[0].clone()));
        assert_eq!(ok("legacy"), Some(cat[3].clone()));
        assert_eq!(ok(&"a".repeat(12)), Some(cat[0].clone()));
        assert_eq!(
            ok(&format!("sha256:{}", "c".repeat(20))),
            Some(cat[3].clone())
        );
        assert_eq!(
            ok(&format!("sha256:{}", "3".repeat(64))),
            Some(cat[2].clone())
        );
        assert!(matches!(
            select(&cat, &"b".repeat(12)),
            Err(SelectError::Ambiguous { .. })
        ));
        assert!(matches!(
            select(&cat, "aaaa"),
            Err(SelectError::PrefixTooShort(_))
        ));
        let err = select(&cat, "nope").unwrap_err().to_string();
        assert!(
            err.contains("app:latest") && err.contains("legacy"),
            "{err}"
        );
        assert!(select(&[], "x")
            .unwrap_err()
            .to_string()
            .contains("holds no container images"));
    }
}
