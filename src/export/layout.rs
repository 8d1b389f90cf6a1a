//! The OCI image-layout destination: locked, verify-then-commit blob writes,
//! and an `index.json` replaced atomically, last.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cap_std_ext::cap_std::fs::Dir;
use cap_std_ext::cap_tempfile::TempFile;
use cap_std_ext::dirext::CapStdExtDirExt;
use oci_spec::image::{Digest, ImageIndex, ImageIndexBuilder, MediaType};

use super::record::BlobRecord;
use crate::digest::HashingWriter;

/// Buffer between the encoder and the blob file.
const BLOB_BUF_SIZE: usize = 1 << 20;
/// Name of our record of compressed blobs, at the layout root.
pub const BLOB_RECORD_FILE: &str = ".cfs-export-blobs.json";
/// The `oci-layout` file content.
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout opened for writing, with an exclusive lock held.
#[derive(Debug)]
pub struct OciLayout {
    path: PathBuf,
    /// Holds the exclusive flock for as long as the layout is open.
    _lock: rustix::fd::OwnedFd,
    dir: Dir,
    blobs: Dir,
    /// Sync blobs before naming them (see [`OciLayout::scratch`]).
    durable: bool,
}

/// A blob now in `blobs/sha256/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// True when this write created it; false when an identical blob was there.
    pub created: bool,
}

/// Streams a blob into an anonymous temp file in `blobs/sha256/`, hashing as
/// it goes unless the caller already proves the digest.
pub struct BlobWriter<'a> {
    blobs: &'a Dir,
    out: BlobSink<'a>,
}

/// The temp file, with or without our own sha256 on the way.
enum BlobSink<'a> {
    Hashed(HashingWriter<BufWriter<EarlySync<'a>>>),
    /// The writer upstream hashes these exact bytes (an uncompressed layer
    /// proven against its diff_id): hashing again would only cost time.
    Trusted(BufWriter<EarlySync<'a>>, u64),
}

/// A temp file that starts writing its data to disk while it is being written.
///
/// Every [`WRITEBACK_CHUNK`] bytes a helper thread runs `fdatasync` on it, so the
/// disk works while we hash and compress, and the final sync that makes the
/// blob durable before it is named finds little left to do.
struct EarlySync<'a> {
    tmp: TempFile<'a>,
    /// False for scratch layouts: no syncing at all.
    durable: bool,
    unsynced: u64,
    syncing: Option<std::thread::JoinHandle<io::Result<()>>>,
}

/// Bytes written between two background syncs.
const WRITEBACK_CHUNK: u64 = 32 << 20;

impl<'a> EarlySync<'a> {
    fn new(tmp: TempFile<'a>, durable: bool) -> Self {
        Self {
            tmp,
            durable,
            unsynced: 0,
            syncing: None,
        }
    }

    fn start_sync(&mut self) -> io::Result<()> {
        if self.syncing.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        self.wait_sync()?;
        let file = self.tmp.as_file().try_clone()?;
        self.syncing = Some(
            std::thread::Builder::new()
                .name("blob-writeback".into())
                .spawn(move || file.sync_data())?,
        );
        self.unsynced = 0;
        Ok(())
    }

    fn wait_sync(&mut self) -> io::Result<()> {
        match self.syncing.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("background sync thread panicked")),
            None => Ok(()),
        }
    }

    /// Wait for the background sync, sync everything, and return the file.
    fn finish(mut self) -> io::Result<TempFile<'a>> {
        self.wait_sync()?;
        if self.durable {
            self.tmp.as_file().sync_all()?;
        }
        Ok(self.tmp)
    }
}

impl Write for EarlySync<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.write(buf)?;
        self.unsynced += n as u64;
        if self.durable && self.unsynced >= WRITEBACK_CHUNK {
            self.start_sync()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

impl std::fmt::Debug for BlobWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobWriter")
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            BlobSink::Hashed(w) => w.write(buf),
            BlobSink::Trusted(w, len) => {
                let n = w.write(buf)?;
                *len += n as u64;
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            BlobSink::Hashed(w) => w.flush(),
            BlobSink::Trusted(w, _) => w.flush(),
        }
    }
}

/// A finished blob not yet named: an anonymous temp file with its digest.
pub struct PendingBlob<'a> {
    blobs: &'a Dir,
    tmp: TempFile<'a>,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

impl std::fmt::Debug for PendingBlob<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingBlob")
            .field("digest", &self.digest)
            .field("size", &self.size)
            .finish()
    }
}

impl<'a> BlobWriter<'a> {
    /// Flush and sync the data and check it against `expected` (if given;
    /// required for writers from [`OciLayout::create_trusted_blob`]).
    /// The blob has no name yet: dropping the result leaves no trace.
    pub fn finish(self, expected: Option<&Digest>) -> Result<PendingBlob<'a>> {
        let (buf, digest, size) = match (self.out, expected) {
            (BlobSink::Hashed(w), _) => {
                let (buf, digest, size) = w.finish();
                if let Some(expected) = expected {
                    if &digest != expected {
                        bail!("blob hashes to {digest}, expected {expected}");
                    }
                }
                (buf, digest, size)
            }
            (BlobSink::Trusted(buf, size), Some(expected)) => (buf, expected.clone(), size),
            (BlobSink::Trusted(..), None) => bail!("internal: an unhashed blob needs its digest"),
        };
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        rustix::fs::fchmod(file.tmp.as_file(), rustix::fs::Mode::from_raw_mode(0o644))?;
        let tmp = file.finish()?;
        Ok(PendingBlob {
            blobs: self.blobs,
            tmp,
            digest,
            size,
        })
    }

    /// [`finish`](Self::finish), then [`PendingBlob::commit`].
    pub fn commit(self, expected: Option<&Digest>) -> Result<CommittedBlob> {
        self.finish(expected)?.commit()
    }
}

impl PendingBlob<'_> {
    /// Give the blob its digest as name (unless an identical blob is there).
    pub fn commit(self) -> Result<CommittedBlob> {
        let name = self.digest.digest().to_string();
        if let Some(meta) = self.blobs.symlink_metadata_optional(&name)? {
            if meta.is_file() && meta.len() == self.size {
                return Ok(CommittedBlob {
                    digest: self.digest,
                    size: self.size,
                    created: false,
                });
            }
        }
        self.tmp
            .replace(&name)
            .with_context(|| format!("Naming blob {}", self.digest))?;
        Ok(CommittedBlob {
            digest: self.digest,
            size: self.size,
            created: true,
        })
    }
}

impl OciLayout {
    /// Open (creating if needed) the layout at `path` and take its exclusive lock,
    /// waiting for other writers.
    pub fn open_or_create(path: &Path) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "Destination {} exists and is not a directory",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(path)
                .with_context(|| format!("Creating OCI layout directory {}", path.display()))?,
            Err(e) => {
                return Err(e).with_context(|| format!("Inspecting destination {}", path.display()))
            }
        }
        // cap-std opens directories O_PATH, which flock refuses: lock a plain fd.
        let lock = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .with_context(|| format!("Opening OCI layout directory {}", path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("Locking OCI layout directory {}", path.display()))?;
        let dir = Dir::reopen_dir(&lock)
            .with_context(|| format!("Opening OCI layout directory {}", path.display()))?;
        let ctx = || format!("Preparing OCI layout {}", path.display());
        for sub in ["blobs", "blobs/sha256"] {
            match dir.symlink_metadata_optional(sub).with_context(ctx)? {
                Some(m) if m.is_dir() => {}
                Some(_) => bail!(
                    "{}/{sub} is not a directory (symlinks are refused); not an OCI layout",
                    path.display()
                ),
                None => dir.create_dir(sub).with_context(ctx)?,
            }
        }
        match dir
            .symlink_metadata_optional("oci-layout")
            .with_context(ctx)?
        {
            Some(m) if m.is_file() => {}
            Some(_) => bail!("{}/oci-layout is not a regular file", path.display()),
            None => dir
                .atomic_write("oci-layout", OCI_LAYOUT_CONTENT)
                .with_context(ctx)?,
        }
        let blobs = dir.open_dir("blobs/sha256").with_context(ctx)?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            dir,
            blobs,
            durable: true,
        })
    }

    /// Skip syncing blobs to disk: for private staging layouts that another
    /// tool reads and that are deleted right after (a crash loses nothing
    /// anyone can see, and unsynced data of deleted files is never written).
    pub fn scratch(mut self) -> Self {
        self.durable = false;
        self
    }

    /// The layout's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of blob `digest`, if present as a regular file.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .blobs
            .symlink_metadata_optional(digest.digest())?
            .filter(|m| m.is_file())
            .map(|m| m.len()))
    }

    /// Start writing a blob.
    pub fn create_blob(&self) -> Result<BlobWriter<'_>> {
        Ok(BlobWriter {
            blobs: &self.blobs,
            out: BlobSink::Hashed(HashingWriter::new(self.temp_file()?)),
        })
    }

    /// Start writing a blob whose bytes the caller hashes itself (and passes
    /// as `expected` to [`BlobWriter::finish`]).
    pub fn create_trusted_blob(&self) -> Result<BlobWriter<'_>> {
        Ok(BlobWriter {
            blobs: &self.blobs,
            out: BlobSink::Trusted(self.temp_file()?, 0),
        })
    }

    fn temp_file(&self) -> Result<BufWriter<EarlySync<'_>>> {
        let tmp = TempFile::new(&self.blobs).with_context(|| {
            format!(
                "Creating a temp file in {}/blobs/sha256",
                self.path.display()
            )
        })?;
        Ok(BufWriter::with_capacity(
            BLOB_BUF_SIZE,
            EarlySync::new(tmp, self.durable),
        ))
    }

    /// Write `bytes` as a blob, which must hash to `expected`.
    pub fn write_blob(&self, bytes: &[u8], expected: &Digest) -> Result<CommittedBlob> {
        if self.blob_size(expected)? == Some(bytes.len() as u64) {
            return Ok(CommittedBlob {
                digest: expected.clone(),
                size: bytes.len() as u64,
                created: false,
            });
        }
        let mut w = self.create_blob()?;
        w.write_all(bytes)?;
        w.commit(Some(expected))
    }

    /// Remove a blob this run created (rollback after a failure).
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        self.blobs
            .remove_file_optional(digest.digest())
            .with_context(|| format!("Removing blob {digest}"))?;
        Ok(())
    }

    /// The current `index.json`, if any.
    pub fn read_index(&self) -> Result<Option<ImageIndex>> {
        let Some(f) = self.dir.open_optional("index.json")? else {
            return Ok(None);
        };
        let index = ImageIndex::from_reader(io::BufReader::new(f))
            .with_context(|| format!("Parsing {}/index.json", self.path.display()))?;
        Ok(Some(index))
    }

    /// The current index, or an empty one.
    pub fn index_or_empty(&self) -> Result<ImageIndex> {
        match self.read_index()? {
            Some(i) => Ok(i),
            None => Ok(ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(Vec::new())
                .build()?),
        }
    }

    /// Replace `index.json` atomically (temp file, fsync, rename).
    pub fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = crate::digest::canonical_json(index)?;
        self.dir
            .atomic_write("index.json", bytes)
            .with_context(|| format!("Writing {}/index.json", self.path.display()))
    }

    /// Our record of compressed blobs: `"<diff_id> <compression>"` → blob digest.
    pub fn read_blob_record(&self) -> BlobRecord {
        let parsed = self
            .dir
            .read_to_string(BLOB_RECORD_FILE)
            .ok()
            .and_then(|s| serde_json::from_str::<BTreeMap<String, String>>(&s).ok());
        BlobRecord(parsed.unwrap_or_default())
    }

    /// Replace the blob record atomically.
    pub fn write_blob_record(&self, record: &BlobRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&record.0)?;
        self.dir
            .atomic_write(BLOB_RECORD_FILE, bytes)
            .context("Writing the blob record")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    #[test]
    fn blob_write_verify_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = OciLayout::open_or_create(&tmp.path().join("l")).unwrap();
        let good = sha256(b"hello");
        let c = layout.write_blob(b"hello", &good).unwrap();
        assert!(c.created);
        assert_eq!(layout.blob_size(&good).unwrap(), Some(5));
        assert!(!layout.write_blob(b"hello", &good).unwrap().created);
        // A mismatching blob is never given a name, and leaves no temp file.
        let wrong = sha256(b"other");
        assert!(layout.write_blob(b"hello!", &wrong).is_err());
        assert_eq!(layout.blob_size(&wrong).unwrap(), None);
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("l/blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        layout.remove_blob(&good).unwrap();
        assert_eq!(layout.blob_size(&good).unwrap(), None);
    }

    #[test]
    fn refuses_symlinked_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let l = tmp.path().join("l");
        std::fs::create_dir(&l).unwrap();
        std::os::unix::fs::symlink(&outside, l.join("blobs")).unwrap();
        let err = OciLayout::open_or_create(&l).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn record_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = OciLayout::open_or_create(tmp.path()).unwrap();
        let mut r = layout.read_blob_record();
        let d = sha256(b"x");
        r.insert(&d, "gzip:6", &d, 12);
        layout.write_blob_record(&r).unwrap();
        assert_eq!(
            layout.read_blob_record().get(&d, "gzip:6"),
            Some((d.clone(), 12))
        );
        assert_eq!(layout.read_blob_record().get(&d, "zstd:3"), None);
    }
}
