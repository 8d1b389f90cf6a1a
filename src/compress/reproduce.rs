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
use cfs_encoders::gostd::{GoLevel, GzipWriter};
use cfs_encoders::klauspost::{PgzipWriter, Version, UMOCI_BLOCK_SIZE};
use cfs_encoders::zlibng::ZlibNg6Writer;
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::{Digest as _, Sha256};

use super::fanout;
use crate::lock;
use crate::progress::Progress;
use crate::repo::image::{StoredImage, StoredLayer};
use crate::repo::layer;
use cache::Cache;

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
    /// zlib-ng 2.2.5 – 2.3 level 6 in flate2's gzip framing, fed as ostree-ext's tar-rs
    /// feeds it (rpm-ostree / bootc base images built on Fedora ≥ 40 with
    /// zlib-ng-compat): zlib-rs, whose output equals zlib-ng 2.3.3's C build.
    ZlibNg6,
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
const DEFAULT_ORDER: [Reproducer; 15] = [
    Reproducer::Pgzip(Version::V1_15_10),
    Reproducer::Pgzip(Version::V1_18_2),
    Reproducer::GoGzip(GoLevel::Default),
    Reproducer::GoGzip(GoLevel::BestSpeed),
    Reproducer::Pgzip256(Version::V1_15_10),
    Reproducer::Zlib6,
    Reproducer::ZlibNg6,
    Reproducer::ZlibNg6Era22,
    Reproducer::Pgzip(Version::V1_15_0),
    Reproducer::Pgzip(Version::V1_14_3),
    Reproducer::Pgzip(Version::V1_10_2),
    Reproducer::Pgzip(Version::V1_12_3),
    Reproducer::Pgzip256(Version::V1_10_2),
    Reproducer::Pgzip256(Version::V1_9_8),
    Reproducer::GoGzip(GoLevel::BestCompression),
];

/// The ids of the 256 KiB-block eras searched ([`Reproducer::id`]).
const PGZIP_256_IDS: [(Version, &str); 3] = [
    (Version::V1_15_10, "pgzip-1.15.10-b256k"),
    (Version::V1_10_2, "pgzip-1.10.2-b256k"),
    (Version::V1_9_8, "pgzip-1.9.8-b256k"),
];

/// Cache entry meaning "no candidate matched"; the suffix changes whenever
/// the candidate set does, so a newer cfs-export searches again.
const MISS: &str = "none-5";

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
            Reproducer::ZlibNg6 => "zlibng6-2.3",
            Reproducer::ZlibNg6Era22 => "zlibng6-2.2",
        }
    }

    /// The encoder named by [`Reproducer::id`].
    pub fn from_id(s: &str) -> Option<Self> {
        DEFAULT_ORDER.into_iter().find(|r| r.id() == s)
    }

    /// An encoder writing into `inner`, on `workers` threads where the format allows.
    pub fn writer<W: Write>(self, inner: W, workers: usize) -> io::Result<ReproWriter<W>> {
        Ok(match self {
            Reproducer::Pgzip(v) => ReproWriter::Pgzip(PgzipWriter::new(inner, v, workers)?),
            Reproducer::Pgzip256(v) => ReproWriter::Pgzip(PgzipWriter::with_block_size(
                inner,
                v,
                UMOCI_BLOCK_SIZE,
                workers,
            )?),
            Reproducer::GoGzip(level) => ReproWriter::Go(GzipWriter::with_level(inner, level)),
            Reproducer::Zlib6 => ReproWriter::Zlib(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::new(6),
            )),
            Reproducer::ZlibNg6 => ReproWriter::ZlibNg(ZlibNg6Writer::new(inner)),
            Reproducer::ZlibNg6Era22 => ReproWriter::ZlibNg22(cfs_zng22::writer(inner)?),
        })
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
            Reproducer::ZlibNg6 => write!(f, "zlib-ng 2.3 level 6"),
            Reproducer::ZlibNg6Era22 => write!(f, "zlib-ng 2.2 level 6"),
        }
    }
}

impl serde::Serialize for Reproducer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// A streaming encoder for one [`Reproducer`].
pub enum ReproWriter<W: Write> {
    /// klauspost pgzip.
    Pgzip(PgzipWriter<W>),
    /// Go compress/gzip.
    Go(GzipWriter<W>),
    /// zlib 6 (madler zlib bundled by libz-sys, through flate2).
    Zlib(flate2::write::GzEncoder<W>),
    /// zlib-ng 2.3 level 6 (zlib-rs), fed like tar-rs feeds flate2.
    ZlibNg(ZlibNg6Writer<W>),
    /// zlib-ng 2.2.0–2.2.4 level 6 (zlib-rs 0.4.2), fed the same way.
    ZlibNg22(ZlibNg6Writer<W, cfs_zng22::Deflate22>),
}

impl<W: Write> ReproWriter<W> {
    /// Write the trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            ReproWriter::Pgzip(w) => w.finish(),
            ReproWriter::Go(w) => w.finish(),
            ReproWriter::Zlib(w) => w.finish(),
            ReproWriter::ZlibNg(w) => w.finish(),
            ReproWriter::ZlibNg22(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for ReproWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ReproWriter::Pgzip(w) => w.write(buf),
            ReproWriter::Go(w) => w.write(buf),
            ReproWriter::Zlib(w) => w.write(buf),
            ReproWriter::ZlibNg(w) => w.write(buf),
            ReproWriter::ZlibNg22(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ReproWriter::Pgzip(w) => w.flush(),
            ReproWriter::Go(w) => w.flush(),
            ReproWriter::Zlib(w) => w.flush(),
            ReproWriter::ZlibNg(w) => w.flush(),
            ReproWriter::ZlibNg22(w) => w.flush(),
        }
    }
}

/// The candidates for a layer, most likely first: what built the image
/// (its history's `created_by`, its config's author) moves that tool's
/// encoder to the front.
fn candidates(created_by: &str) -> Vec<Reproducer> {
    let ggcr = [
        "ko-build",
        "google/ko",
        "kaniko",
        "crane",
        "buildpacks",
        "paketo",
        "go-containerregistry",
    ];
    let hinted: &[Reproducer] = if created_by.contains("buildkit") || created_by.contains("moby") {
        &[Reproducer::GoGzip(GoLevel::Default)]
    } else if ggcr.iter().any(|t| created_by.contains(t)) {
        &[Reproducer::GoGzip(GoLevel::BestSpeed)]
    } else if created_by.contains("umoci") {
        &[
            Reproducer::Pgzip256(Version::V1_15_10),
            Reproducer::Pgzip(Version::V1_10_2),
        ]
    } else if ["ostree", "chunkah", "ocidir"]
        .iter()
        .any(|t| created_by.contains(t))
    {
        // The build host's libz: zlib-ng on Fedora ≥ 40 (2.2 on Fedora 41
        // and EL10, 2.3 from Fedora 43), madler zlib elsewhere.
        &[
            Reproducer::ZlibNg6Era22,
            Reproducer::ZlibNg6,
            Reproducer::Zlib6,
        ]
    } else {
        &[]
    };
    let mut order = hinted.to_vec();
    order.extend(DEFAULT_ORDER.iter().filter(|r| !hinted.contains(r)));
    order
}

/// A match: the encoder, and the blob it wrote when it was found by a
/// search rather than remembered (or found in the one-pass search, which
/// writes nothing: the caller compresses with the encoder found).
pub type Found<W> = (Reproducer, Option<W>);

/// Which encoder reproduces `original`, the layer's blob in the original
/// manifest, if any. Only gzip layers are tried; the answer is cached.
/// The most likely candidate runs alone, writing into a fresh `sink()`, so
/// that when it matches it has written the whole blob (which a destination
/// may keep: no second pass, and a hit costs one compression). The others
/// then run together on one rebuild of the tar (`fanout`),
/// hashing only; `progress` hears how many are left.
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
    let order = candidates(&history_text(img));
    let Some((&first, rest)) = order.split_first() else {
        return Ok(None);
    };
    if let Some(written) = matches(repo, img, layer, original, first, workers, sink()?)? {
        cache.put(&layer.diff_id, original.digest(), Some(first));
        return Ok(Some((first, Some(written))));
    }
    let found = search_together(repo, img, layer, original, rest, progress)?;
    cache.put(&layer.diff_id, original.digest(), found);
    Ok(found.map(|r| (r, None)))
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
    let consumers = candidates
        .iter()
        .map(|&candidate| -> fanout::Consumer<'_, Option<Reproducer>> {
            Box::new(move |chunks: &fanout::Chunks| {
                let sink = BoundedHasher::new(original.size(), io::sink());
                // One thread each: the candidates run beside each other.
                let mut encoder = candidate.writer(sink, 1).ok()?;
                for chunk in chunks.iter() {
                    // Past the recorded size (or failed): not this one.
                    encoder.write_all(&chunk).ok()?;
                }
                let sink = encoder.finish().ok()?;
                let digest = format!("sha256:{}", hex::encode(sink.hasher.finalize()));
                let same = sink.written == original.size() && digest == original.digest().as_ref();
                same.then_some(candidate)
            })
        })
        .collect();
    let alive = AtomicUsize::new(candidates.len());
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
                        candidates.len()
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

/// Does `candidate` turn the layer into exactly `original`'s bytes? Then
/// `out`, which got them all.
fn matches<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    layer: &StoredLayer<ID>,
    original: &Descriptor,
    candidate: Reproducer,
    workers: usize,
    out: W,
) -> Result<Option<W>> {
    let sink = BoundedHasher::new(original.size(), out);
    let encoder = candidate.writer(sink, workers)?;
    let (encoder, _) = match layer::rebuild(repo, &img.name(), layer, encoder) {
        Ok(done) => done,
        // Past the recorded size: not this encoder, and no need to finish.
        Err(e) if is_over(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let sink = match encoder.finish() {
        Ok(sink) => sink,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let digest = format!("sha256:{}", hex::encode(sink.hasher.finalize()));
    let same = sink.written == original.size() && digest == original.digest().to_string();
    Ok(same.then_some(sink.out))
}

/// The sink refused more bytes (a write error's source chain holds its io::Error).
fn is_over(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::FileTooLarge)
    })
}

/// Hashes what is written on its way to `out`, and fails once more than
/// `limit` bytes arrive.
struct BoundedHasher<W> {
    hasher: Sha256,
    written: u64,
    limit: u64,
    out: W,
}

impl<W> BoundedHasher<W> {
    fn new(limit: u64, out: W) -> Self {
        BoundedHasher {
            hasher: Sha256::new(),
            written: 0,
            limit,
            out,
        }
    }
}

impl<W: Write> Write for BoundedHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "output passed the original blob's size",
            ));
        }
        let n = self.out.write(buf)?;
        self.written += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

mod cache;
#[cfg(test)]
mod tests;
