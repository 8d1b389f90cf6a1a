//! Reproducing a layer's original compressed bytes, so the original manifest
//! (and its digest, which registries, signatures and `bootc status` use)
//! survives the export.
//!
//! The repository keeps each original blob's digest and size but only the
//! uncompressed tar. A few encoders make nearly all gzip layers in the wild;
//! our bit-exact reimplementations live in the `cfs-encoders` crate. Per layer
//! the candidates are tried in order of likelihood (the config history's
//! `created_by` hints at the tool); a candidate stops as soon as its output
//! passes the recorded size, and a match is the whole blob's sha256 and size,
//! never assumed. Outcomes, matches and misses, are remembered in a small
//! cache under the user's cache directory (never inside the repository).

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use cfs_encoders::gostd::GoLevel;
use cfs_encoders::gzip_header::{BodyTee, GzipHeader};
use cfs_encoders::klauspost::Version;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::Digest as _;

use super::fanout;
use crate::lock;
use crate::progress::Progress;
use crate::repo::image::{StoredImage, StoredLayer};
use crate::repo::layer;
use bounded::{is_over, BoundedHasher};
use cache::Cache;
pub use frame::Frame;
use order::Order;
pub use writer::ReproWriter;

/// An encoder whose output we reproduce bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reproducer {
    /// `github.com/klauspost/pgzip` (podman, buildah, skopeo) over klauspost/compress.
    Pgzip(Version),
    /// The same with 256 KiB blocks: umoci 0.4.x (`SetConcurrency(256<<10, …)`)
    /// and pgzip's own default before 1.2.5.
    Pgzip256(Version),
    /// Go's `compress/gzip` (Go 1.15 – 1.26): at its default level
    /// (BuildKit, containerd, docker), level 1 (go-containerregistry's
    /// default: crane, ko, kaniko, buildpacks) or level 9.
    GoGzip(GoLevel),
    /// madler zlib level 6 in flate2's gzip framing (ocidir, ostree-ext and
    /// rpm-ostree on hosts with madler zlib): libz-sys's bundled zlib 1.3.2, whose
    /// level-6 output equals zlib 1.2.13's; never the host's libz.
    Zlib6,
    /// The same zlib level-6 body under another tool's gzip header: jib
    /// on JDK ≤ 15, zlib's own gzip framing. Searched beside [`Reproducer::Zlib6`]
    /// at no extra compression.
    Zlib6Framed(Frame),
    /// zlib-ng 2.2.5 – 2.3 level 6 in flate2's gzip framing, fed as ostree-ext's tar-rs
    /// feeds it (rpm-ostree / bootc base images built on Fedora ≥ 40 with
    /// zlib-ng-compat): zlib-rs, whose output equals zlib-ng 2.3.3's C build.
    ZlibNg6,
    /// GNU `gzip -n` at its default level 6 (shell pipelines, rules_docker):
    /// its own deflate, not zlib's; gzip 1.12 and 1.13 write the same bytes.
    GnuGzip6,
    /// zlib-ng 2.2.0 – 2.2.4 level 6, fed the same way (Fedora 41 and
    /// CentOS Stream / RHEL 10 bootc base images, zlib-ng-compat 2.2.3):
    /// zlib-rs 0.4.2 (`cfs-zng22`), whose output equals zlib-ng 2.2.4's C build.
    ZlibNg6Era22,
}

/// Candidates when nothing hints otherwise, most common first.
/// klauspost eras in the order of how many images they made: 1.15.10–1.18.0
/// (containers/image ≥ 5.23, apko), 1.18.2+ (the newest podman, buildah,
/// skopeo, apko), umoci 0.4.x (Debian's links 1.15.12, 256 KiB blocks),
/// 1.15.0–1.15.9 and 1.14.3 (containers/image before 5.23), 1.10.2–1.11.12
/// (umoci ≥ 0.5 vendors 1.11.3), 1.12.3–1.13.6. The other eras the
/// `cfs-encoders` crate reproduces are not searched by default.
const DEFAULT_ORDER: [Reproducer; 18] = [
    Reproducer::Pgzip(Version::V1_15_10),
    Reproducer::Pgzip(Version::V1_18_2),
    Reproducer::GoGzip(GoLevel::Default),
    Reproducer::GoGzip(GoLevel::BestSpeed),
    Reproducer::Pgzip256(Version::V1_15_10),
    Reproducer::Zlib6,
    Reproducer::Zlib6Framed(Frame::JavaOld),
    Reproducer::Zlib6Framed(Frame::Zlib),
    Reproducer::ZlibNg6,
    Reproducer::ZlibNg6Era22,
    Reproducer::GnuGzip6,
    Reproducer::Pgzip(Version::V1_15_0),
    Reproducer::Pgzip(Version::V1_14_3),
    Reproducer::Pgzip(Version::V1_10_2),
    Reproducer::Pgzip(Version::V1_12_3),
    Reproducer::Pgzip256(Version::V1_10_2),
    Reproducer::Pgzip256(Version::V1_9_8),
    Reproducer::GoGzip(GoLevel::BestCompression),
];

/// Candidates searched only when the evidence names their tool: klauspost
/// 1.18.1 (retracted upstream; apko used it for a while). Searching it for
/// every image would cost every miss one more compression and, measured,
/// take the search's peak RSS past 150 MiB.
const HINTED_ONLY: [Reproducer; 1] = [Reproducer::Pgzip(Version::V1_18_1)];

/// The ids of the 256 KiB-block eras searched ([`Reproducer::id`]).
const PGZIP_256_IDS: [(Version, &str); 3] = [
    (Version::V1_15_10, "pgzip-1.15.10-b256k"),
    (Version::V1_10_2, "pgzip-1.10.2-b256k"),
    (Version::V1_9_8, "pgzip-1.9.8-b256k"),
];

/// Cache entry meaning "no candidate matched"; the suffix changes whenever
/// the candidate set does, so a newer cfs-export searches again.
const MISS: &str = "none-6";

impl Reproducer {
    /// A stable name, for the cache and `--json`.
    pub fn id(self) -> &'static str {
        match self {
            Reproducer::Pgzip(v) => v.id(),
            Reproducer::Pgzip256(v) => PGZIP_256_IDS
                .iter()
                .find(|(version, _)| *version == v)
                .map_or("pgzip-256k", |(_, id)| id),
            Reproducer::GoGzip(level) => level.id(),
            Reproducer::Zlib6 => "zlib6",
            Reproducer::Zlib6Framed(Frame::JavaOld) => "zlib6-os00",
            Reproducer::Zlib6Framed(Frame::Zlib) => "zlib6-os03",
            Reproducer::ZlibNg6 => "zlibng6-2.3",
            Reproducer::ZlibNg6Era22 => "zlibng6-2.2",
            Reproducer::GnuGzip6 => "gnugzip6",
        }
    }

    /// The encoder named by [`Reproducer::id`].
    pub fn from_id(s: &str) -> Option<Self> {
        DEFAULT_ORDER
            .into_iter()
            .chain(HINTED_ONLY)
            .find(|r| r.id() == s)
    }

    /// The encoder of this one's deflate body (itself but for header variants).
    fn body(self) -> Reproducer {
        match self {
            Reproducer::Zlib6Framed(_) => Reproducer::Zlib6,
            r => r,
        }
    }

    /// The header of a body searched under several headers at once.
    fn variant_header(self) -> Option<GzipHeader> {
        match self {
            Reproducer::Zlib6 => Some(GzipHeader::UNKNOWN_OS),
            Reproducer::Zlib6Framed(frame) => Some(frame.header()),
            _ => None,
        }
    }
}

impl fmt::Display for Reproducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reproducer::Pgzip(v) => write!(f, "pgzip, {}", v.describe()),
            Reproducer::Pgzip256(v) => write!(f, "pgzip 256 KiB blocks (umoci), {}", v.describe()),
            Reproducer::GoGzip(GoLevel::Default) => write!(f, "Go compress/gzip"),
            Reproducer::GoGzip(level) => write!(f, "Go compress/gzip level {}", level.number()),
            Reproducer::Zlib6 => write!(f, "zlib level 6"),
            Reproducer::Zlib6Framed(Frame::JavaOld) => {
                write!(f, "zlib level 6, Java GZIPOutputStream header (JDK ≤ 15)")
            }
            Reproducer::Zlib6Framed(Frame::Zlib) => write!(f, "zlib level 6, zlib's gzip header"),
            Reproducer::ZlibNg6 => write!(f, "zlib-ng 2.3 level 6"),
            Reproducer::ZlibNg6Era22 => write!(f, "zlib-ng 2.2 level 6"),
            Reproducer::GnuGzip6 => write!(f, "GNU gzip -n"),
        }
    }
}

impl serde::Serialize for Reproducer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A match: the encoder, and the blob it wrote when it was found by a
/// search rather than remembered (or found in the one-pass search, which
/// writes nothing: the caller compresses with the encoder found).
pub type Found<W> = (Reproducer, Option<W>);

/// Which encoder reproduces `original`, the layer's blob in the original
/// manifest, if any. Only gzip layers are tried; the answer is cached.
/// The most likely candidate runs alone, writing into a fresh `sink()`, so
/// that when it matches it has written the whole blob (which a destination
/// may keep: no second pass, and a hit costs one compression); its header
/// variants are hashed beside it. The others then run together on one
/// rebuild of the tar each stage (`fanout`), hashing only: first the other
/// candidates the image's evidence names, then the rest; `progress` hears
/// how many are left.
pub fn find<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    layer: &StoredLayer<ID>,
    original: &Descriptor,
    workers: usize,
    sink: &dyn Fn() -> Result<W>,
    progress: &dyn Progress,
) -> Result<Option<Found<W>>> {
    if !is_gzip_type(original.media_type()) {
        return Ok(None);
    }
    let cache = Cache::new();
    if let Some(known) = cache.get(&layer.diff_id, original.digest()) {
        return Ok(known.map(|r| (r, None)));
    }
    let order = Order::for_image(img);
    let Some(first) = order.all().next() else {
        return Ok(None);
    };
    // The first candidate's header variants ride along with it.
    let siblings: Vec<Reproducer> = order
        .all()
        .filter(|r| *r != first && same_body(first, *r))
        .collect();
    let alone = matches(
        repo,
        img,
        layer,
        original,
        first,
        &siblings,
        workers,
        sink()?,
    )?;
    let mut found = alone;
    // Then the other hinted candidates together, then the rest together:
    // a hinted hit does not wait for the slowest encoder of all.
    for stage in [&order.hinted, &order.rest] {
        let todo: Vec<Reproducer> = stage
            .iter()
            .copied()
            .filter(|r| *r != first && !siblings.contains(r))
            .collect();
        if found.is_some() || todo.is_empty() {
            continue;
        }
        found = search_together(repo, img, layer, original, &todo, progress)?.map(|r| (r, None));
    }
    cache.put(
        &layer.diff_id,
        original.digest(),
        found.as_ref().map(|f| f.0),
    );
    Ok(found)
}

/// Whether `b` is a header variant of `a`'s body (hashed beside it).
fn same_body(a: Reproducer, b: Reproducer) -> bool {
    a.body() == b.body() && a.variant_header().is_some() && b.variant_header().is_some()
}

/// `candidates` grouped by deflate body, first appearance first: each
/// group is one compression, hashed under each member's header.
fn by_body(candidates: &[Reproducer]) -> Vec<Vec<Reproducer>> {
    let mut groups: Vec<Vec<Reproducer>> = Vec::new();
    for &c in candidates {
        match groups.iter_mut().find(|g| same_body(g[0], c)) {
            Some(g) => g.push(c),
            None => groups.push(vec![c]),
        }
    }
    groups
}

/// Which of `members` (one body under their headers) `tee` saw written:
/// the first member when its output as written is `original`, else the
/// member whose header variant is (`tee` hashed the body under the headers
/// of `members[1..]`: the first's own output is hashed as written); and the
/// sink.
fn found_in<W: Write>(
    tee: BodyTee<BoundedHasher<W>>,
    members: &[Reproducer],
    original: &Descriptor,
) -> io::Result<(Option<Reproducer>, BoundedHasher<W>)> {
    let (sink, digests) = tee.finish()?;
    let want = original.digest().digest();
    if sink.written == original.size() && hex::encode(sink.hasher.clone().finalize()) == want {
        return Ok((members.first().copied(), sink));
    }
    let found = digests
        .iter()
        .position(|d| d.size == original.size() && hex::encode(d.sha256) == want)
        .and_then(|i| members.get(i + 1).copied());
    Ok((found, sink))
}

/// Which of `members`, one deflate body under their headers, turns the
/// stream of `chunks` into `original`'s bytes: one compression (on this
/// thread), hashed as written and under every member's header. `None` as
/// soon as the output passes the recorded size.
fn group_matches(
    members: &[Reproducer],
    chunks: impl Iterator<Item = std::sync::Arc<[u8]>>,
    original: &Descriptor,
) -> Option<Reproducer> {
    let headers = headers_of(members.get(1..).unwrap_or_default());
    let sink = BodyTee::new(BoundedHasher::new(original.size(), io::sink()), &headers);
    let mut encoder = members.first()?.writer(sink, 1).ok()?;
    for chunk in chunks {
        // Past the recorded size (or failed): not this one.
        encoder.write_all(&chunk).ok()?;
    }
    let tee = encoder.finish().ok()?;
    found_in(tee, members, original).ok()?.0
}

/// The first of `candidates` whose output is `original`'s bytes, all of
/// them fed by one rebuild of the layer, each on its own thread; one that
/// passes the recorded size stops, and when none is left the rebuild stops.
fn search_together<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    layer: &StoredLayer<ID>,
    original: &Descriptor,
    candidates: &[Reproducer],
    progress: &dyn Progress,
) -> Result<Option<Reproducer>> {
    let groups = by_body(candidates);
    let consumers = groups
        .iter()
        .map(|members| -> fanout::Consumer<'_, Option<Reproducer>> {
            Box::new(move |chunks: &fanout::Chunks| group_matches(members, chunks.iter(), original))
        })
        .collect();
    let alive = AtomicUsize::new(groups.len());
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let found = std::thread::scope(|scope| {
        // Progress after a second: how many encoders are still in the race.
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if started.elapsed().as_secs() >= 1 && !done.load(Ordering::SeqCst) {
                    progress.stage(&format!(
                        "searching the original gzip of layer {}/{} of {}: {} of {} encoders left",
                        layer.index + 1,
                        img.layers.len(),
                        img.name(),
                        alive.load(Ordering::SeqCst),
                        groups.len()
                    ));
                }
            }
        });
        let produce = |w: &mut dyn Write| -> Result<()> {
            layer::rebuild(repo, &img.name(), layer, w)?;
            Ok(())
        };
        let found = fanout::one_pass(produce, consumers, &alive);
        done.store(true, Ordering::SeqCst);
        found
    })?;
    Ok(found.into_iter().flatten().next())
}

/// What to do with a blob a search wrote: the layer, the blob, seconds taken.
pub(crate) type Keep<'a, ID, W> = dyn Fn(&StoredLayer<ID>, W, f64) -> Result<()> + Sync + 'a;

/// [`find`] for every distinct gzip layer of `images`, `jobs` layers at a
/// time; `keep` gets each blob a search wrote (with the seconds it took).
/// The encoders found, by diff_id.
pub(crate) fn find_all<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    jobs: usize,
    sink: &(dyn Fn() -> Result<W> + Sync),
    keep: &Keep<'_, ID, W>,
    progress: &dyn Progress,
) -> Result<HashMap<Digest, Reproducer>> {
    let mut todo: Vec<(&StoredImage<ID>, &StoredLayer<ID>, &Descriptor)> = Vec::new();
    for img in images {
        for l in &img.layers {
            let Some(original) = &l.original else {
                continue;
            };
            if !todo
                .iter()
                .any(|(_, t, o)| t.diff_id == l.diff_id && o.digest() == original.digest())
            {
                todo.push((img, l, original));
            }
        }
    }
    let found = Mutex::new(HashMap::new());
    crate::for_each_parallel(&todo, jobs, &|&(img, l, original)| {
        let started = Instant::now();
        let Some((r, written)) = find(repo, img, l, original, jobs, sink, progress)? else {
            return Ok(());
        };
        if let Some(w) = written {
            keep(l, w, started.elapsed().as_secs_f64())?;
        }
        lock(&found).insert(l.diff_id.clone(), r);
        Ok(())
    })?;
    Ok(found.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn is_gzip_type(t: &MediaType) -> bool {
    match t {
        MediaType::ImageLayerGzip => true,
        MediaType::Other(s) => s == "application/vnd.docker.image.rootfs.diff.tar.gzip",
        _ => false,
    }
}

/// The gzip headers `members` are hashed under, beside the output as
/// written (none for encoders without header variants).
fn headers_of(members: &[Reproducer]) -> Vec<GzipHeader> {
    members.iter().filter_map(|m| m.variant_header()).collect()
}

/// Does `candidate`, or one of its header variants `siblings`, turn the
/// layer into exactly `original`'s bytes? Then which, and `out` when it
/// got them all (the candidate itself matched).
#[allow(clippy::too_many_arguments)]
fn matches<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    layer: &StoredLayer<ID>,
    original: &Descriptor,
    candidate: Reproducer,
    siblings: &[Reproducer],
    workers: usize,
    out: W,
) -> Result<Option<Found<W>>> {
    let members: Vec<Reproducer> = [candidate]
        .into_iter()
        .chain(siblings.iter().copied())
        .collect();
    let headers = headers_of(siblings);
    let sink = BodyTee::new(BoundedHasher::new(original.size(), out), &headers);
    let encoder = candidate.writer(sink, workers)?;
    let (encoder, _) = match layer::rebuild(repo, &img.name(), layer, encoder) {
        Ok(done) => done,
        // Past the recorded size: not this encoder, and no need to finish.
        Err(e) if is_over(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let tee = match encoder.finish() {
        Ok(tee) => tee,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(match found_in(tee, &members, original)? {
        (Some(r), sink) if r == candidate => Some((r, Some(sink.out))),
        // A sibling's header: its blob is still to be written.
        (Some(r), _) => Some((r, None)),
        (None, _) => None,
    })
}

mod bounded;
mod cache;
mod frame;
mod order;
#[cfg(test)]
mod tests;
mod writer;
