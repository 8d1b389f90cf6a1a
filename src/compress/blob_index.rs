//! Compressed layer blobs' digests and sizes, remembered by layer and
//! encoder, so that `serve --compression gzip|zstd` can serve a manifest
//! (and answer HEAD) without compressing every layer on every start.
//!
//! `<cache dir>/cfs-export/index/<diff_id hex>-<encoder key>` holds
//! `<blob digest> <size>`. The key names everything the compressed bytes
//! depend on (kind, level, block size, the encoder library's version), so an
//! entry is never read for bytes another encoder would write. An entry is
//! still only a claim: whoever serves the blob proves the bytes against it.
//! Without a usable cache directory nothing is remembered (a warning), and an
//! entry that does not parse is computed again.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;

use crate::compress::Compression;
use crate::digest::HashingWriter;
use crate::lock;
use crate::repo::image::{StoredImage, StoredLayer};
use crate::repo::layer;

/// The zlib-rs release `src/pgzip.rs` deflates with (tied to Cargo.lock by a test).
const ZLIB_RS_VERSION: &str = "0.6.8";
/// Revision of our own gzip framing (`src/pgzip.rs`): bump it when the bytes change.
const PGZIP_FORMAT: u32 = 1;

/// A compressed blob's identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IndexedBlob {
    /// sha256 of the compressed bytes.
    pub digest: Digest,
    /// Their count.
    pub size: u64,
}

/// The name for an encoder's output in the index, changing whenever its
/// bytes could: none for blobs whose identity is known without compressing
/// (uncompressed: the diff_id; reproduced: the original blob).
pub fn encoder_key(c: Compression) -> Option<String> {
    match c {
        Compression::Gzip(level) => Some(format!(
            "gzip{level}-pgzip{PGZIP_FORMAT}-b{}-zlibrs{ZLIB_RS_VERSION}",
            crate::compress::pgzip::BLOCK_SIZE
        )),
        // Multithreaded libzstd (any worker count) writes other bytes than
        // single-threaded: "mt" names that mode.
        Compression::Zstd(level) => Some(format!(
            "zstd{level}-mt-libzstd{}",
            zstd::zstd_safe::version_number()
        )),
        Compression::Uncompressed | Compression::Reproduced(_) => None,
    }
}

/// The index directory; see the module docs.
#[derive(Debug, Clone)]
pub struct BlobIndex {
    dir: Option<PathBuf>,
}

impl Default for BlobIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl BlobIndex {
    /// The index under the user's cache dir (`$XDG_CACHE_HOME` or `~/.cache`,
    /// `cfs-export/index`); none without one.
    pub fn new() -> Self {
        Self::at(crate::cache_dir().map(|d| d.join("index")))
    }

    /// The index in `dir` (none: nothing is remembered).
    pub fn at(dir: Option<PathBuf>) -> Self {
        BlobIndex { dir }
    }

    /// Where entries go, if anywhere.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// The entry file for this layer under `c`.
    pub fn entry(&self, diff_id: &Digest, c: Compression) -> Option<PathBuf> {
        let key = encoder_key(c)?;
        Some(
            self.dir
                .as_ref()?
                .join(format!("{}-{key}", diff_id.digest())),
        )
    }

    /// The remembered blob, if its entry is there and well formed.
    pub fn get(&self, diff_id: &Digest, c: Compression) -> Option<IndexedBlob> {
        parse_entry(&std::fs::read_to_string(self.entry(diff_id, c)?).ok()?)
    }

    /// Remember `blob` (atomically); a failure only costs a recompression
    /// next time, so it is a warning.
    pub fn put(&self, diff_id: &Digest, c: Compression, blob: &IndexedBlob) {
        let (Some(dir), Some(path)) = (&self.dir, self.entry(diff_id, c)) else {
            return;
        };
        let written = crate::create_private_dirs(dir).and_then(|()| {
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), format!("{} {}\n", blob.digest, blob.size))?;
            tmp.persist(&path)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("Remembering layer {diff_id}'s {c} digest: {e:#}");
        }
    }

    /// The distinct layers of `images` whose blob under `c` is not
    /// remembered, bottom first, each with an image it is in.
    pub fn missing<'a, ID>(
        &self,
        images: &'a [StoredImage<ID>],
        c: Compression,
    ) -> Vec<(&'a StoredImage<ID>, &'a StoredLayer<ID>)> {
        let mut todo: Vec<(&StoredImage<ID>, &StoredLayer<ID>)> = Vec::new();
        for img in images {
            for l in &img.layers {
                let seen = todo.iter().any(|(_, t)| t.diff_id == l.diff_id);
                if !seen && self.get(&l.diff_id, c).is_none() {
                    todo.push((img, l));
                }
            }
        }
        todo
    }
}

/// `sha256:<hex> <size>`.
fn parse_entry(text: &str) -> Option<IndexedBlob> {
    let (digest, size) = text.trim().split_once(' ')?;
    let digest = crate::digest::parse_sha256(digest).ok()?;
    let size = size.parse().ok()?;
    Some(IndexedBlob { digest, size })
}

/// What indexing the served layers took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IndexReport {
    /// The compression indexed.
    pub compression: Compression,
    /// Distinct layers served.
    pub layers: usize,
    /// Layers compressed now because the index did not know them.
    pub compressed: usize,
    /// Seconds that took.
    pub seconds: f64,
    /// Where they are remembered (none: nowhere).
    pub dir: Option<PathBuf>,
}

/// The blob of every layer of `images` under `c`, by diff_id: from the
/// index, else compressed once (`jobs` layers at a time) into a hash and
/// remembered.
pub(crate) fn index_layers<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    images: &[StoredImage<ID>],
    c: Compression,
    jobs: usize,
) -> Result<(HashMap<Digest, IndexedBlob>, IndexReport)> {
    let started = Instant::now();
    let index = BlobIndex::new();
    let todo = index.missing(images, c);
    let found = Mutex::new(HashMap::new());
    crate::for_each_parallel(&todo, jobs, &|&(img, l)| {
        if let Some(damaged) = index.entry(&l.diff_id, c).filter(|p| p.exists()) {
            tracing::warn!(
                "Ignoring the index entry {}, which does not parse: computing it again",
                damaged.display()
            );
        }
        let blob = compress_to_learn(repo, img, l, c, jobs)?;
        index.put(&l.diff_id, c, &blob);
        lock(&found).insert(l.diff_id.clone(), blob);
        Ok(())
    })?;
    let mut blobs = found.into_inner().unwrap_or_else(|p| p.into_inner());
    for l in images.iter().flat_map(|i| &i.layers) {
        if !blobs.contains_key(&l.diff_id) {
            // Remembered: `missing` read it a moment ago.
            let blob = index
                .get(&l.diff_id, c)
                .with_context(|| format!("Layer {}: its index entry went away", l.diff_id))?;
            blobs.insert(l.diff_id.clone(), blob);
        }
    }
    let report = IndexReport {
        compression: c,
        layers: blobs.len(),
        compressed: todo.len(),
        seconds: started.elapsed().as_secs_f64(),
        dir: index.dir,
    };
    Ok((blobs, report))
}

/// Rebuild the layer (proven against its diff_id) through `c`'s encoder
/// into a hash: the blob's digest and size.
fn compress_to_learn<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    img: &StoredImage<ID>,
    l: &StoredLayer<ID>,
    c: Compression,
    workers: usize,
) -> Result<IndexedBlob> {
    let encoder = c.encoder_on(HashingWriter::new(io::sink()), workers)?;
    let (encoder, _) = layer::rebuild(repo, &img.name(), l, encoder)?;
    let (_, digest, size) = encoder
        .finish()
        .with_context(|| format!("Compressing layer {} of image {}", l.diff_id, img.name()))?
        .finish();
    Ok(IndexedBlob { digest, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blob(n: u8) -> IndexedBlob {
        IndexedBlob {
            digest: crate::digest::sha256(&[n]),
            size: 1000 + u64::from(n),
        }
    }

    fn diff_id() -> Digest {
        crate::digest::sha256(b"layer")
    }

    #[test]
    fn round_trip() {
        let t = tempfile::tempdir().unwrap();
        let index = BlobIndex::at(Some(t.path().join("a/index")));
        let c = Compression::Gzip(6);
        assert_eq!(index.get(&diff_id(), c), None);
        index.put(&diff_id(), c, &blob(1));
        assert_eq!(index.get(&diff_id(), c), Some(blob(1)));
        let entry = index.entry(&diff_id(), c).unwrap();
        let name = entry.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with(&format!("{}-gzip6-", diff_id().digest())),
            "{name}"
        );
        // Replaced, not appended.
        index.put(&diff_id(), c, &blob(2));
        assert_eq!(index.get(&diff_id(), c), Some(blob(2)));
        // Only the entry is left behind, no temp files.
        assert_eq!(std::fs::read_dir(index.dir().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn key_changes_with_kind_and_level() {
        let t = tempfile::tempdir().unwrap();
        let index = BlobIndex::at(Some(t.path().to_path_buf()));
        let kinds = [
            Compression::Gzip(1),
            Compression::Gzip(6),
            Compression::Gzip(9),
            Compression::Zstd(3),
            Compression::Zstd(19),
        ];
        let keys: std::collections::HashSet<String> =
            kinds.iter().map(|c| encoder_key(*c).unwrap()).collect();
        assert_eq!(keys.len(), kinds.len(), "{keys:?}");
        index.put(&diff_id(), Compression::Gzip(6), &blob(6));
        for c in kinds {
            let want = (c == Compression::Gzip(6)).then(|| blob(6));
            assert_eq!(index.get(&diff_id(), c), want, "{c}");
        }
        assert_eq!(encoder_key(Compression::Uncompressed), None);
        assert_eq!(index.entry(&diff_id(), Compression::Uncompressed), None);
    }

    #[test]
    fn damaged_entries_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let index = BlobIndex::at(Some(t.path().to_path_buf()));
        let c = Compression::Zstd(3);
        let entry = index.entry(&diff_id(), c).unwrap();
        for text in [
            "",
            "garbage",
            "sha256:abc 12",
            &format!("{} ", blob(1).digest),
            &format!("{} -1", blob(1).digest),
            &format!("md5:{} 12", "0".repeat(32)),
        ] {
            std::fs::write(&entry, text).unwrap();
            assert_eq!(index.get(&diff_id(), c), None, "{text:?}");
        }
        index.put(&diff_id(), c, &blob(3));
        assert_eq!(index.get(&diff_id(), c), Some(blob(3)));
    }

    #[test]
    fn unusable_dir_means_no_cache() {
        let t = tempfile::tempdir().unwrap();
        // A file where the directory should be: even root cannot create it.
        let file = t.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let c = Compression::Gzip(6);
        for index in [BlobIndex::at(Some(file.join("index"))), BlobIndex::at(None)] {
            index.put(&diff_id(), c, &blob(1));
            assert_eq!(index.get(&diff_id(), c), None);
        }
    }

    /// Cargo.lock names the zlib-rs the key claims: upgrading zlib-rs fails
    /// here until [`ZLIB_RS_VERSION`] follows (and old entries stop matching).
    /// Another zlib-rs may be locked beside it (`cfs-zng22` pins 0.4.2):
    /// ours is the one this crate depends on.
    #[test]
    fn zlib_rs_version_is_the_locked_one() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let packages: Vec<&str> = lock.split("[[package]]").collect();
        let locked: Vec<&str> = packages
            .iter()
            .filter(|p| p.contains("\nname = \"zlib-rs\"\n"))
            .filter_map(|p| p.split("\nversion = \"").nth(1)?.split('"').next())
            .collect();
        let ours = packages
            .iter()
            .find(|p| p.contains("\nname = \"composefs-export\"\n"))
            .and_then(|p| {
                p.lines()
                    .find_map(|l| l.trim().strip_prefix("\"zlib-rs")?.strip_suffix("\","))
            })
            .unwrap();
        let ours = match ours.trim() {
            // One zlib-rs locked: Cargo.lock names no version.
            "" => locked[0],
            v => v,
        };
        assert!(locked.contains(&ours), "{locked:?} {ours}");
        assert_eq!(ours, ZLIB_RS_VERSION);
    }

    /// Known answers: a change in our gzip framing or in an encoder library
    /// changes these bytes; it must change [`encoder_key`] with them (bump
    /// [`PGZIP_FORMAT`] or the version), or old index entries would claim
    /// digests the encoder no longer writes.
    #[test]
    fn encoders_give_the_known_answers() {
        let input: Vec<u8> = (0..400_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 17) as u8 % 23 + b'a')
            .collect();
        let sha = |c: Compression, workers| {
            let mut e = c.encoder_on(Vec::new(), workers).unwrap();
            e.write_all(&input).unwrap();
            crate::digest::sha256(&e.finish().unwrap()).to_string()
        };
        let table = [
            (
                Compression::Gzip(1),
                "gzip1-pgzip1-b131072-zlibrs0.6.8",
                "sha256:58bee843b6b827c1d83f447bad7c4deb34e024aa2e54d69fefa923d262f7dfc3",
            ),
            (
                Compression::Gzip(6),
                "gzip6-pgzip1-b131072-zlibrs0.6.8",
                "sha256:b5e95d6e89dbdb1134f705e59f732f1d506b809953a485335efb5ae883e2aa00",
            ),
            (
                Compression::Zstd(3),
                "zstd3-mt-libzstd10507",
                "sha256:f02693199a6e913596c3fda2cc1bb5e4ed075877dfd20aaa1a689cbaa54296ce",
            ),
        ];
        for (c, key, digest) in table {
            for workers in [1, 3] {
                assert_eq!(
                    (encoder_key(c).unwrap().as_str(), sha(c, workers).as_str()),
                    (key, digest),
                    "{c} on {workers} workers"
                );
            }
        }
    }
}
