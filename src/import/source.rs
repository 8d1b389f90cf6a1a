//! Reading the source: its index or manifest (one platform picked from a
//! multi-platform index), config and layer descriptors, every blob checked
//! against its digest as it is read.

use std::io::Read;

use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};
use ocidir::prelude::*;

use super::ImportOptions;
use crate::deliver::transport::validate_tag;
use crate::digest::{parse_sha256, sha256};
use crate::export::ANNOTATION_REF_NAME;

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

/// The image a source names, its blobs read and checked, not yet stored.
pub(super) struct SourceImage {
    pub(super) manifest_digest: Digest,
    pub(super) manifest_bytes: Vec<u8>,
    pub(super) manifest: ImageManifest,
    pub(super) config_digest: Digest,
    pub(super) config_bytes: Vec<u8>,
    pub(super) config: ImageConfiguration,
    pub(super) diff_ids: Vec<Digest>,
    pub(super) tag: String,
}

/// Resolve the source's image and check manifest and config against their digests.
pub(super) fn read_source<T: OciRead>(
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
