//! What a deployment came from: its origin file (the image name, bootc's
//! `[origin]` keys) and the config digest bootc recorded beside it, read
//! beneath the sysroot.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use oci_spec::image::Digest;

use super::read::{read_beneath, shown, text, IMGINFO_CAP, SMALL_FILE_CAP};
use super::{Deployment, HostPaths, OriginImage, Role};
use crate::digest::parse_sha256;

/// Transports as bootc displays them in origin files.
pub(super) const TRANSPORTS: &[&str] = &[
    "docker://",
    "containers-storage:",
    "oci-archive:",
    "oci:",
    "registry:",
    "dir:",
    "docker-archive:",
    "docker-daemon:",
];

/// Split `docker://quay.io/x:1` into (`docker://`, `quay.io/x:1`); no transport gives ("", s).
pub fn split_transport(s: &str) -> (&str, &str) {
    for t in TRANSPORTS {
        if let Some(rest) = s.strip_prefix(t) {
            return (&s[..t.len()], rest);
        }
    }
    ("", s)
}

pub(super) fn has_tag_or_digest(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.contains(':') || last.contains('@')
}

/// `ostree-unverified-image:docker://x` → `docker://x` (and the signed/remote forms).
pub(super) fn strip_ostree_prefix(s: &str) -> Result<String> {
    if let Some(rest) = s.strip_prefix("ostree-unverified-image:") {
        return Ok(rest.to_string());
    }
    if let Some(rest) = s.strip_prefix("ostree-unverified-registry:") {
        return Ok(format!("docker://{rest}"));
    }
    if let Some(rest) = s.strip_prefix("ostree-image-signed:") {
        return Ok(rest.to_string());
    }
    for p in ["ostree-remote-image:", "ostree-remote-registry:"] {
        if let Some(rest) = s.strip_prefix(p) {
            let (_, img) = rest
                .split_once(':')
                .with_context(|| format!("{} has no remote name", shown(s)))?;
            return Ok(if p == "ostree-remote-registry:" {
                format!("docker://{img}")
            } else {
                img.to_string()
            });
        }
    }
    bail!(
        "{} is not an ostree image reference (expected ostree-unverified-image:TRANSPORT:NAME)",
        shown(s)
    )
}

/// A minimal INI reader for origin files: `[section]` and `key = value`.
pub(super) fn ini_get<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut current = "";
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.trim();
        } else if current == section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim());
                }
            }
        }
    }
    None
}

pub(super) fn read_deployment(
    sysroot: &Dir,
    paths: &HostPaths,
    id: &str,
    role: Role,
) -> Deployment {
    // `id` is a checked deployment ID: no `/` or `..` in these paths.
    let dir = Path::new("state/deploy").join(id);
    let origin_rel = dir.join(format!("{id}.origin"));
    let origin_path = paths.sysroot.join(&origin_rel);
    let mut d = Deployment {
        id: id.to_string(),
        role,
        boot_type: None,
        image: None,
        problem: None,
    };
    let text = match read_beneath(sysroot, &origin_rel, SMALL_FILE_CAP).and_then(text) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            d.problem = Some(format!(
                "its origin file {} is missing",
                origin_path.display()
            ));
            return d;
        }
        Err(e) => {
            d.problem = Some(format!("its origin file {}: {e}", origin_path.display()));
            return d;
        }
    };
    d.boot_type = ini_get(&text, "boot", "boot_type").map(str::to_string);
    let imginfo = || {
        let rel = dir.join(format!("{id}.imginfo"));
        let shown = paths.sysroot.join(&rel);
        imginfo_config(read_beneath(sysroot, &rel, IMGINFO_CAP), &shown)
    };
    match origin_image(&text, imginfo) {
        Ok(i) => d.image = Some(i),
        Err(e) => d.problem = Some(format!("{}: {e:#}", origin_path.display())),
    }
    d
}

/// The image an origin file names; `imginfo` gives the config digest from
/// `<id>.imginfo` when the origin has no manifest digest (older hosts).
pub(super) fn origin_image(
    text: &str,
    imginfo: impl FnOnce() -> Result<Digest>,
) -> Result<OriginImage> {
    let Some(raw) = ini_get(text, "origin", "container-image-reference") else {
        bail!("no container-image-reference in its [origin] section");
    };
    let reference = strip_ostree_prefix(raw)?;
    let (transport, name) = split_transport(&reference);
    let (transport, name) = (transport.to_string(), name.to_string());
    if name.is_empty() {
        bail!("the image reference {} names no image", shown(raw));
    }
    let manifest_digest = match ini_get(text, "image", "manifest_digest") {
        Some(m) => Some(parse_sha256(m).map_err(|e| {
            anyhow::anyhow!(
                "[image] manifest_digest {} is not a sha256 digest{}",
                shown(m),
                // The parser's own message repeats the value; only say more for short ones.
                if m.len() <= 80 {
                    format!(" ({e:#})")
                } else {
                    String::new()
                }
            )
        })?),
        None => None,
    };
    let config_digest = match manifest_digest {
        Some(_) => None,
        None => Some(imginfo()?),
    };
    Ok(OriginImage {
        reference,
        transport,
        name,
        manifest_digest,
        config_digest,
    })
}

/// Older hosts: `<id>.imginfo` holds a re-serialized manifest, so only the
/// config digest it names can be trusted (the config is checked by it on load).
pub(super) fn imginfo_config(bytes: std::io::Result<Vec<u8>>, path: &Path) -> Result<Digest> {
    #[derive(serde::Deserialize)]
    struct ImgInfo {
        manifest: oci_spec::image::ImageManifest,
    }
    let bytes = bytes.with_context(|| {
        format!(
            "no [image] manifest_digest, and its image info {} cannot be read",
            path.display()
        )
    })?;
    let info: ImgInfo =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(info.manifest.config().digest().clone())
}
