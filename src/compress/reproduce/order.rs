//! The order the original-bytes search tries its candidates in: what
//! built the image, as its config tells, first.
//!
//! Evidence read: the history's `created_by` and comments and the config's
//! author (the tool), and for ostree-made images the OS version label,
//! which says which zlib-ng the build host had.

use cfs_encoders::gostd::GoLevel;
use cfs_encoders::klauspost::Version;

use super::{Frame, Reproducer, DEFAULT_ORDER};
use crate::repo::image::StoredImage;

/// Candidates in two stages: those the evidence names (tried first, the
/// first of all alone), then every other one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Order {
    /// The tool's encoders, most likely first.
    pub(super) hinted: Vec<Reproducer>,
    /// The rest of [`DEFAULT_ORDER`], in its order.
    pub(super) rest: Vec<Reproducer>,
}

/// go-containerregistry's tools (`gzip.BestSpeed`).
const GGCR: [&str; 7] = [
    "ko-build",
    "google/ko",
    "kaniko",
    "crane",
    "buildpacks",
    "paketo",
    "go-containerregistry",
];

impl Order {
    /// The order for `img`'s layers.
    pub(super) fn for_image<ID>(img: &StoredImage<ID>) -> Self {
        let labels = img
            .config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref());
        let version = labels.and_then(|l| l.get("org.opencontainers.image.version"));
        Order::from_evidence(&history_text(img), version.map(String::as_str))
    }

    /// The order given the image's history text (lowercase) and its
    /// `org.opencontainers.image.version` label.
    pub(super) fn from_evidence(text: &str, os_version: Option<&str>) -> Self {
        let hinted = hinted(text, os_version);
        let rest = DEFAULT_ORDER
            .iter()
            .copied()
            .filter(|r| !hinted.contains(r))
            .collect();
        Order { hinted, rest }
    }

    /// Every candidate, in order.
    pub(super) fn all(&self) -> impl Iterator<Item = Reproducer> + '_ {
        self.hinted.iter().chain(&self.rest).copied()
    }
}

/// The encoders the tool named in `text` writes.
fn hinted(text: &str, os_version: Option<&str>) -> Vec<Reproducer> {
    if text.contains("buildkit") || text.contains("moby") {
        vec![Reproducer::GoGzip(GoLevel::Default)]
    } else if GGCR.iter().any(|t| text.contains(t)) {
        vec![Reproducer::GoGzip(GoLevel::BestSpeed)]
    } else if text.contains("jib-") {
        // JDK ≥ 16 writes flate2's header, older ones OS 00.
        vec![Reproducer::Zlib6, Reproducer::Zlib6Framed(Frame::JavaOld)]
    } else if ["bazel", "rules_docker", "gzip -n"]
        .iter()
        .any(|t| text.contains(t))
    {
        vec![Reproducer::GnuGzip6]
    } else if text.contains("apko") {
        // Chainguard's apko: compress 1.18.2+ now, 1.18.1 for a while, 1.15.10–1.18.0 before.
        vec![
            Reproducer::Pgzip(Version::V1_18_2),
            Reproducer::Pgzip(Version::V1_18_1),
            Reproducer::Pgzip(Version::V1_15_10),
        ]
    } else if text.contains("umoci") {
        vec![
            Reproducer::Pgzip256(Version::V1_15_10),
            Reproducer::Pgzip(Version::V1_10_2),
        ]
    } else if ["ostree", "chunkah", "ocidir"]
        .iter()
        .any(|t| text.contains(t))
    {
        ostree_host_zlib(os_version)
    } else {
        Vec::new()
    }
}

/// The build host's libz, for ostree-ext's flate2: zlib-ng on Fedora ≥ 40,
/// 2.2.0–2.2.4 on Fedora 41–42 and CentOS Stream / RHEL 10 (versions like
/// `stream10.…`, `10.1`), 2.2.5 and later from Fedora 43; madler zlib
/// elsewhere.
fn ostree_host_zlib(os_version: Option<&str>) -> Vec<Reproducer> {
    let major: Option<u32> = os_version.and_then(|v| {
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    match major {
        Some(m) if m >= 43 => vec![
            Reproducer::ZlibNg6,
            Reproducer::ZlibNg6Era22,
            Reproducer::Zlib6,
        ],
        _ => vec![
            Reproducer::ZlibNg6Era22,
            Reproducer::ZlibNg6,
            Reproducer::Zlib6,
        ],
    }
}

/// Every `created_by` and `comment` of the image's history and its
/// config's author, lowercased, for hints.
fn history_text<ID>(img: &StoredImage<ID>) -> String {
    let history = img.config.history().iter().flatten();
    history
        .flat_map(|h| [h.created_by().as_deref(), h.comment().as_deref()])
        .chain([img.config.author().as_deref()])
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase()
}
