//! Image references in skopeo's transport syntax (`oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, …).

use std::fmt;
use std::path::PathBuf;

/// Longest tag / reference name we accept (OCI puts no limit; registries use 128 for tags).
pub const MAX_TAG_LEN: usize = 255;

/// A parsed image location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLocation {
    /// `oci:DIR[:TAG]`: an OCI image layout directory.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to read or write.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a tar of an OCI image layout.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to read or write.
        tag: Option<String>,
    },
    /// `containers-storage:[[driver@]root[+runroot]]REF`: podman's storage, through skopeo.
    ContainersStorage(String),
    /// `docker://REF`: a registry, through skopeo.
    Docker(String),
    /// `docker-archive:FILE[:REF]`: a `docker save` tar, through skopeo.
    DockerArchive(String),
    /// `docker-daemon:REF`: a Docker engine, through skopeo.
    DockerDaemon(String),
    /// `dir:DIR`: skopeo's directory format, through skopeo.
    Dir(String),
}

impl ImageLocation {
    /// The ref name an `oci:` / `oci-archive:` location gives, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            ImageLocation::OciDir { tag, .. } | ImageLocation::OciArchive { tag, .. } => {
                tag.as_deref()
            }
            _ => None,
        }
    }

    /// True for destinations written through `skopeo copy` (all but `oci:` and `oci-archive:`).
    pub fn via_skopeo(&self) -> bool {
        !matches!(
            self,
            ImageLocation::OciDir { .. } | ImageLocation::OciArchive { .. }
        )
    }
}

/// A reference the user gave that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// No `transport:` prefix.
    #[error("{0:?} has no transport: use oci:DIR[:TAG], oci-archive:FILE[:TAG], containers-storage:REF, docker://REF, docker-archive:FILE or dir:DIR")]
    NoTransport(String),
    /// A transport we do not know.
    #[error("unknown transport {transport:?} in {reference:?}: use oci:, oci-archive:, containers-storage:, docker://, docker-archive: or dir:")]
    UnknownTransport {
        /// The transport name.
        transport: String,
        /// The whole reference.
        reference: String,
    },
    /// An empty path.
    #[error("{0:?} names no path")]
    EmptyPath(String),
    /// A tag that is not a valid reference name.
    #[error("invalid tag {tag:?}: {why}")]
    InvalidTag {
        /// The tag.
        tag: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Check a tag / `org.opencontainers.image.ref.name` value.
///
/// Follows the OCI image-layout grammar for ref names: components of
/// `[A-Za-z0-9]` joined by `-._:@/+`, never `..`, at most [`MAX_TAG_LEN`] bytes.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    let bad = |why| {
        Err(ReferenceError::InvalidTag {
            tag: tag.to_string(),
            why,
        })
    };
    if tag.is_empty() {
        return bad("it is empty");
    }
    if tag.len() > MAX_TAG_LEN {
        return bad("it is longer than 255 bytes");
    }
    if !tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:@/+".contains(c))
    {
        return bad("only letters, digits and - . _ : @ / + are allowed");
    }
    let separator = |c: char| "-._:@/+".contains(c);
    if tag.starts_with(separator) || tag.ends_with(separator) {
        return bad("it must start and end with a letter or digit");
    }
    if tag.contains("..") || tag.contains("//") {
        return bad("it must not contain '..' or '//'");
    }
    Ok(())
}

/// Split `PATH[:TAG]` at the first colon, as skopeo does, so a tag may itself
/// hold colons and slashes (`oci:/x:quay.io/fedora/fedora:42`).
fn split_path_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(':') {
        Some((path, tag)) => (path, Some(tag)),
        None => (rest, None),
    }
}

impl ImageLocation {
    /// Parse a `transport:reference` string.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let (transport, rest) = s
            .split_once(':')
            .ok_or_else(|| ReferenceError::NoTransport(s.to_string()))?;
        match transport {
            "oci" | "oci-archive" => {
                let (path, tag) = split_path_tag(rest);
                if path.is_empty() {
                    return Err(ReferenceError::EmptyPath(s.to_string()));
                }
                if let Some(tag) = tag {
                    validate_tag(tag)?;
                }
                let path = PathBuf::from(path);
                let tag = tag.map(str::to_string);
                Ok(if transport == "oci" {
                    ImageLocation::OciDir { path, tag }
                } else {
                    ImageLocation::OciArchive { path, tag }
                })
            }
            _ => {
                let rest = match transport {
                    "docker" => rest.strip_prefix("//").unwrap_or(rest),
                    _ => rest,
                };
                let rest = rest.to_string();
                let location = match transport {
                    "containers-storage" => ImageLocation::ContainersStorage(rest),
                    "docker" => ImageLocation::Docker(rest),
                    "docker-archive" => ImageLocation::DockerArchive(rest),
                    "docker-daemon" => ImageLocation::DockerDaemon(rest),
                    "dir" => ImageLocation::Dir(rest),
                    _ => {
                        return Err(ReferenceError::UnknownTransport {
                            transport: transport.to_string(),
                            reference: s.to_string(),
                        })
                    }
                };
                let (_, reference) = location.skopeo_parts().unwrap_or_default();
                if reference.is_empty() || reference.contains('\0') {
                    return Err(ReferenceError::EmptyPath(s.to_string()));
                }
                Ok(location)
            }
        }
    }
}

impl ImageLocation {
    /// skopeo's transport prefix and the reference after it.
    fn skopeo_parts(&self) -> Option<(&'static str, &str)> {
        Some(match self {
            ImageLocation::ContainersStorage(r) => ("containers-storage:", r),
            ImageLocation::Docker(r) => ("docker://", r),
            ImageLocation::DockerArchive(r) => ("docker-archive:", r),
            ImageLocation::DockerDaemon(r) => ("docker-daemon:", r),
            ImageLocation::Dir(r) => ("dir:", r),
            ImageLocation::OciDir { .. } | ImageLocation::OciArchive { .. } => return None,
        })
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((transport, reference)) = self.skopeo_parts() {
            return write!(f, "{transport}{reference}");
        }
        let (transport, path, tag) = match self {
            ImageLocation::OciDir { path, tag } => ("oci", path, tag),
            ImageLocation::OciArchive { path, tag } => ("oci-archive", path, tag),
            _ => return Ok(()),
        };
        write!(f, "{transport}:{}", path.display())?;
        if let Some(tag) = tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(path: &str, tag: Option<&str>) -> ImageLocation {
        ImageLocation::OciDir {
            path: path.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<ImageLocation, ()>)] = &[
            ("oci:/tmp/x", Ok(oci("/tmp/x", None))),
            ("oci:/tmp/x:latest", Ok(oci("/tmp/x", Some("latest")))),
            ("oci:rel/dir:v1.2", Ok(oci("rel/dir", Some("v1.2")))),
            ("oci:/a:b/c", Ok(oci("/a", Some("b/c")))),
            (
                "oci:/tmp/x:quay.io/foo:1",
                Ok(oci("/tmp/x", Some("quay.io/foo:1"))),
            ),
            (
                "oci-archive:/tmp/a.tar:t",
                Ok(ImageLocation::OciArchive {
                    path: "/tmp/a.tar".into(),
                    tag: Some("t".into()),
                }),
            ),
            (
                "containers-storage:localhost/bootc",
                Ok(ImageLocation::ContainersStorage("localhost/bootc".into())),
            ),
            (
                "docker://127.0.0.1:5000/x:y",
                Ok(ImageLocation::Docker("127.0.0.1:5000/x:y".into())),
            ),
            (
                "docker-archive:/tmp/d.tar:x:1",
                Ok(ImageLocation::DockerArchive("/tmp/d.tar:x:1".into())),
            ),
            ("dir:/tmp/d", Ok(ImageLocation::Dir("/tmp/d".into()))),
            (
                "docker-daemon:x:1",
                Ok(ImageLocation::DockerDaemon("x:1".into())),
            ),
            ("oci:", Err(())),
            ("oci::tag", Err(())),
            ("oci:/x:..", Err(())),
            ("oci:/x:a..b", Err(())),
            ("oci:/x:-a", Err(())),
            ("oci:/x:a b", Err(())),
            ("/tmp/x", Err(())),
            ("ftp:/x", Err(())),
            ("docker:", Err(())),
            ("docker://", Err(())),
            ("dir:", Err(())),
        ];
        for (input, want) in table {
            let got = ImageLocation::parse(input).map_err(|_| ());
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tag("latest").is_ok());
        assert!(validate_tag("quay.io/fedora/fedora-bootc:42").is_ok());
        assert!(validate_tag(&"a".repeat(255)).is_ok());
        assert!(validate_tag(&"a".repeat(256)).is_err());
        assert!(validate_tag("a\0b").is_err());
        assert!(validate_tag("").is_err());
        assert!(validate_tag("../x").is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,80}", t in "[a-z:/@.+_\\-\\[\\]0-9]{0,300}") {
            for input in [&s, &t] {
                let _ = ImageLocation::parse(input);
                let _ = validate_tag(input);
                let _ = input.parse::<crate::compress::CompressionChoice>();
                let _ = crate::repo::image::select(&[], input);
                let _ = crate::deliver::transfer::registry_host(input);
                let _ = crate::deliver::transfer::storage_reference(input, &Default::default());
                if let Ok(loc) = ImageLocation::parse(input) {
                    // What parses prints back to something that parses the same.
                    proptest::prop_assert_eq!(ImageLocation::parse(&loc.to_string()), Ok(loc));
                }
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "oci:/tmp/x",
            "oci:/tmp/x:t",
            "oci-archive:/a.tar:t",
            "dir:/x",
        ] {
            assert_eq!(ImageLocation::parse(s).unwrap().to_string(), s);
        }
    }
}
