//! Which repository names and tags the server answers, and to which image.
//!
//! An image tagged `REGISTRY/PATH:TAG` in the repository is served as
//! `PATH:TAG` and as `REGISTRY/PATH:TAG`; containerd's `?ns=REGISTRY` picks
//! among same-`PATH` images of different registries. Listings (`tags/list`,
//! `_catalog`) are sorted and paginated with `n` and `last`, as the
//! distribution spec says.

use std::collections::BTreeMap;

/// Names → tags → image index.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Served name → tag → (registry it came from, image index).
    repos: BTreeMap<String, BTreeMap<String, Vec<(String, usize)>>>,
    /// Whether `_catalog` and `tags/list` answer (not for the private hand-off).
    pub listing: bool,
}

/// What a tag names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    /// This image.
    Found(usize),
    /// Nothing.
    Unknown,
    /// Images of these registries: the client must say which (`?ns=` or
    /// the `REGISTRY/PATH` name).
    Ambiguous(Vec<&'a str>),
}

/// A page of a sorted listing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page<'a> {
    pub items: Vec<&'a str>,
    /// The last item when more follow (for the `Link` header).
    pub more_after: Option<&'a str>,
}

impl Names {
    /// One image under one fixed name and tag (the private hand-off).
    pub fn single(name: &str, tag: &str) -> Self {
        let mut n = Names::default();
        n.insert(name, tag, "", 0);
        n
    }

    fn insert(&mut self, name: &str, tag: &str, registry: &str, image: usize) {
        let entries = self
            .repos
            .entry(name.to_string())
            .or_default()
            .entry(tag.to_string())
            .or_default();
        if !entries.iter().any(|(r, _)| r == registry) {
            entries.push((registry.to_string(), image));
        }
    }

    /// Serve image `image` under a repository tag such as
    /// `quay.io/fedora/fedora-bootc:42` (also as `fedora/fedora-bootc:42`);
    /// a bare `NAME` is `NAME:latest`, as for docker and podman.
    pub fn add_tag(&mut self, repo_tag: &str, image: usize) {
        let (name, tag) = split_tag(repo_tag).unwrap_or((repo_tag, "latest"));
        if name.is_empty() {
            return;
        }
        match name.split_once('/') {
            Some((host, path)) if is_registry(host) => {
                self.insert(path, tag, host, image);
                self.insert(name, tag, host, image);
            }
            _ => self.insert(name, tag, "", image),
        }
    }

    /// Whether `name` is served.
    pub fn has(&self, name: &str) -> bool {
        self.repos.contains_key(name)
    }

    /// The image `name:tag` names; `ns` (containerd's registry hint) picks
    /// among images of different registries. Without it, a short name that
    /// several registries' images share is [`Lookup::Ambiguous`]: guessing
    /// would hand a mirror client the wrong image.
    pub fn image(&self, name: &str, tag: &str, ns: Option<&str>) -> Lookup<'_> {
        let Some(entries) = self.repos.get(name).and_then(|t| t.get(tag)) else {
            return Lookup::Unknown;
        };
        if let Some((_, i)) = ns.and_then(|ns| entries.iter().find(|(r, _)| r == ns)) {
            return Lookup::Found(*i);
        }
        match entries.as_slice() {
            [(_, i)] => Lookup::Found(*i),
            many => Lookup::Ambiguous(many.iter().map(|(r, _)| r.as_str()).collect()),
        }
    }

    /// Short names several registries' images share: `(name:tag, registries)`.
    pub fn ambiguous(&self) -> Vec<(String, Vec<&str>)> {
        let mut out = Vec::new();
        for (name, tags) in &self.repos {
            for (tag, entries) in tags {
                if entries.len() > 1 {
                    let registries = entries.iter().map(|(r, _)| r.as_str()).collect();
                    out.push((format!("{name}:{tag}"), registries));
                }
            }
        }
        out
    }

    /// The images served under `name` (any tag).
    pub fn images_of(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        self.repos
            .get(name)
            .into_iter()
            .flat_map(|tags| tags.values().flatten().map(|(_, i)| *i))
    }

    /// `name`'s tags, sorted, after `last`, at most `n`.
    pub fn tags(&self, name: &str, n: Option<usize>, last: Option<&str>) -> Option<Page<'_>> {
        let tags = self.repos.get(name)?;
        Some(page(tags.keys().map(String::as_str), n, last))
    }

    /// Every served name, sorted, after `last`, at most `n`.
    pub fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Page<'_> {
        page(self.repos.keys().map(String::as_str), n, last)
    }
}

/// `NAME:TAG`, where the tag follows the last `:` after the last `/`.
fn split_tag(s: &str) -> Option<(&str, &str)> {
    let (name, tag) = s.rsplit_once(':')?;
    (!tag.contains('/') && !name.is_empty() && !tag.is_empty()).then_some((name, tag))
}

/// The first path component names a registry when it looks like a host:
/// has a dot or a port, or is `localhost` (as containers/image decides).
fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn page<'a>(
    sorted: impl Iterator<Item = &'a str>,
    n: Option<usize>,
    last: Option<&str>,
) -> Page<'a> {
    let mut after = sorted.filter(|s| last.is_none_or(|l| *s > l)).peekable();
    let items: Vec<&str> = match n {
        Some(n) => after.by_ref().take(n).collect(),
        None => after.by_ref().collect(),
    };
    let more_after = match after.peek() {
        Some(_) => items.last().copied(),
        None => None,
    };
    Page { items, more_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut n = Names::default();
        n.add_tag("quay.io/fedora/fedora-bootc:42", 0);
        n.add_tag("quay.io/fedora/fedora-bootc:latest", 0);
        n.add_tag("ghcr.io/fedora/fedora-bootc:42", 1);
        n.add_tag("localhost/app:1", 2);
        n.add_tag("app:2", 3);
        n.add_tag("localhost:5000/x/y:t", 4);
        n.add_tag("bare", 5);
        n
    }

    #[test]
    fn tags_served_with_and_without_their_registry() {
        let n = names();
        use Lookup::*;
        let both = Ambiguous(vec!["quay.io", "ghcr.io"]);
        assert_eq!(n.image("fedora/fedora-bootc", "42", None), both);
        assert_eq!(
            n.image("fedora/fedora-bootc", "42", Some("ghcr.io")),
            Found(1)
        );
        assert_eq!(
            n.image("fedora/fedora-bootc", "42", Some("quay.io")),
            Found(0)
        );
        assert_eq!(
            n.image("fedora/fedora-bootc", "42", Some("docker.io")),
            both
        );
        assert_eq!(n.image("fedora/fedora-bootc", "latest", None), Found(0));
        assert_eq!(n.image("quay.io/fedora/fedora-bootc", "42", None), Found(0));
        assert_eq!(n.image("ghcr.io/fedora/fedora-bootc", "42", None), Found(1));
        assert_eq!(n.image("app", "1", None), Found(2));
        assert_eq!(n.image("app", "2", None), Found(3));
        assert_eq!(n.image("x/y", "t", None), Found(4));
        assert_eq!(n.image("fedora/fedora-bootc", "41", None), Unknown);
        assert_eq!(n.image("bare", "latest", None), Found(5));
        assert_eq!(
            n.ambiguous(),
            [(
                "fedora/fedora-bootc:42".to_string(),
                vec!["quay.io", "ghcr.io"]
            )]
        );
    }

    #[test]
    fn listings_sorted_and_paginated() {
        let n = names();
        let all = n.catalog(None, None);
        assert_eq!(
            all.items,
            [
                "app",
                "bare",
                "fedora/fedora-bootc",
                "ghcr.io/fedora/fedora-bootc",
                "localhost/app",
                "localhost:5000/x/y",
                "quay.io/fedora/fedora-bootc",
                "x/y"
            ]
        );
        assert_eq!(all.more_after, None);
        let first = n.catalog(Some(3), None);
        assert_eq!(first.items, ["app", "bare", "fedora/fedora-bootc"]);
        assert_eq!(first.more_after, Some("fedora/fedora-bootc"));
        let next = n.catalog(Some(2), first.more_after);
        assert_eq!(next.items, ["ghcr.io/fedora/fedora-bootc", "localhost/app"]);
        let end = n.catalog(Some(10), Some("quay.io/fedora/fedora-bootc"));
        assert_eq!(
            end,
            Page {
                items: vec!["x/y"],
                more_after: None
            }
        );
        assert_eq!(n.catalog(Some(0), None).items, Vec::<&str>::new());
        let tags = n.tags("fedora/fedora-bootc", None, None).unwrap();
        assert_eq!(tags.items, ["42", "latest"]);
        assert!(n.tags("nope", None, None).is_none());
    }
}
