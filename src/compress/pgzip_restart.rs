//! Rebuilding a reproduced pgzip blob from a restart point inside it, not
//! from byte 0, still proving the whole blob.
//!
//! pgzip block `k` depends only on tar bytes `[k·1 MiB − 16 KiB, (k+1)·1 MiB)`
//! and on whether it is the last ([`cfs_encoders::klauspost`]). A
//! [`BlobPoint`] taken where a block starts holds the sha256 state of the
//! blob before it, the CRC-32 of the tar before it, and a tar
//! [`RestartPoint`] at or before the block's dictionary: the tar is rebuilt
//! from there (proven by the diff_id as ever), the bytes before the
//! dictionary dropped, and a [`PgzipWriter::resume`]d writer makes the rest
//! of the blob, hashed on from the point's state. The caller compares the
//! digest and size returned with the blob's: a point that does not belong
//! to the blob fails that proof (or the tar's).

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use cfs_encoders::klauspost::{
    BlockMark, BlockStart, PgzipWriter, SharedBlocks, Version, BLOCK_SIZE, TAIL_SIZE,
};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use oci_spec::image::Digest;
use sha2::Sha256;

use crate::digest::HashingWriter;
use crate::lock;
use crate::progress::{LayerKey, Progress, ProgressWriter};
use crate::repo::image::StoredLayer;
use crate::repo::layer::{self, DestinationWriteError, Restart, RestartPoint};

/// Blob bytes between the restart points one rebuild records (at least).
pub const BLOB_POINT_SPACING: u64 = 8 << 20;

/// A place inside a reproduced pgzip blob where a rebuild can start: the
/// beginning of one compressed block.
#[derive(Debug, Clone)]
pub struct BlobPoint {
    /// Blob bytes before the block (the gzip header included).
    pub offset: u64,
    /// sha256 state of the blob's bytes before the block.
    hash: Sha256,
    /// The block's number.
    pub block: u64,
    /// CRC-32 of the tar before the block.
    crc: u32,
    /// Where the tar is rebuilt from, at or before the block's dictionary
    /// (none: from the start).
    tar: Option<RestartPoint>,
}

impl BlobPoint {
    /// Tar offset the rebuild starts at.
    pub fn tar_offset(&self) -> u64 {
        self.tar.as_ref().map_or(0, |p| p.offset)
    }

    /// Tar offset of the block's dictionary.
    fn dictionary(&self) -> u64 {
        (self.block * BLOCK_SIZE as u64).saturating_sub(TAIL_SIZE as u64)
    }
}

/// The encoder a blob is made with and what its rebuild shares.
pub struct PgzipBlob<'a> {
    /// klauspost/compress generation.
    pub version: Version,
    /// Compression threads.
    pub workers: usize,
    /// Blocks shared with other writers of this blob.
    pub shared: Option<Arc<dyn SharedBlocks>>,
    /// Told how many tar bytes passed.
    pub progress: (&'a dyn Progress, &'a LayerKey),
}

/// Where a blob rebuild starts, and who is told of the points it passes.
#[derive(Default)]
pub struct BlobRestart {
    /// Start at this point (one an earlier rebuild of this blob gave), else at 0.
    pub from: Option<BlobPoint>,
    /// Gets a point every [`BLOB_POINT_SPACING`] blob bytes or so.
    pub record: Option<Box<dyn FnMut(BlobPoint) + Send>>,
}

/// Rebuild `layer`'s tar through pgzip into `out`: the blob's bytes from
/// `restart.from` on (all of it without a point). Returns `out` and the
/// digest and size of the whole blob, which the caller must compare with
/// the blob's before trusting what was written.
pub fn rebuild_pgzip<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    image: &str,
    layer: &StoredLayer<ID>,
    blob: PgzipBlob<'_>,
    out: W,
    restart: BlobRestart,
) -> Result<(W, Digest, u64)> {
    let BlobRestart { from, record } = restart;
    let hashing = match &from {
        Some(p) => HashingWriter::resume(out, p.hash.clone(), p.offset),
        None => HashingWriter::new(out),
    };
    // The tar points this rebuild passes, for the blob points it records.
    let tar_points: Arc<Mutex<Vec<RestartPoint>>> = Arc::new(Mutex::new(
        from.iter().filter_map(|p| p.tar.clone()).collect(),
    ));
    let mut record_tar = |p: RestartPoint| lock(&tar_points).push(p);
    let (writer, tar_from) = match from {
        None => {
            let mut w = PgzipWriter::sharing(hashing, blob.version, blob.workers, blob.shared)?;
            if let Some(record) = record {
                w.on_block(observer(record, 0, tar_points.clone()));
            }
            (Resumed::Writing(w), None)
        }
        Some(p) => {
            let Some(skip) = p.dictionary().checked_sub(p.tar_offset()) else {
                anyhow::bail!(
                    "Restart point at block {} of the blob starts the tar at {}, past the block's dictionary at {}: \
                     it is not this blob's; retry the request",
                    p.block,
                    p.tar_offset(),
                    p.dictionary()
                );
            };
            let later = Resumed::Later {
                out: hashing,
                skip,
                tail: Vec::with_capacity(TAIL_SIZE),
                at: (p.block, p.crc, p.offset),
                blob: (blob.version, blob.workers, blob.shared),
                record: record.map(|r| observer(r, p.offset, tar_points.clone())),
            };
            (later, p.tar)
        }
    };
    let counted = ProgressWriter::new(writer, blob.progress.0, blob.progress.1);
    let restart = Restart {
        from: tar_from,
        record: Some(&mut record_tar),
    };
    let (counted, _) = layer::rebuild_from(repo, image, layer, counted, restart)?;
    let hashing = counted
        .into_inner()
        .finish()
        .map_err(|e| anyhow::Error::new(DestinationWriteError(e)))?;
    Ok(hashing.finish())
}

type Observer<W> = cfs_encoders::klauspost::BlockObserver<HashingWriter<W>>;

/// Turns the writer's block marks into [`BlobPoint`]s, one per
/// [`BLOB_POINT_SPACING`], each with the latest tar point at or before the
/// block's dictionary.
fn observer<W: Write>(
    mut record: Box<dyn FnMut(BlobPoint) + Send>,
    mut last: u64,
    tar_points: Arc<Mutex<Vec<RestartPoint>>>,
) -> Observer<W> {
    Box::new(move |out: &HashingWriter<W>, mark: BlockMark| {
        let (hash, offset) = out.state();
        if offset != mark.offset || offset < last + BLOB_POINT_SPACING {
            return;
        }
        last = offset;
        let mut point = BlobPoint {
            offset,
            hash,
            block: mark.seq,
            crc: mark.crc,
            tar: None,
        };
        let dictionary = point.dictionary();
        point.tar = lock(&tar_points)
            .iter()
            .rev()
            .find(|p| p.offset <= dictionary)
            .cloned();
        record(point);
    })
}

/// The pgzip writer of a rebuild: writing, or, resumed at a block, waiting
/// for the tar to reach it (dropping the bytes before its dictionary,
/// keeping the dictionary).
enum Resumed<W: Write> {
    Writing(PgzipWriter<HashingWriter<W>>),
    Later {
        out: HashingWriter<W>,
        skip: u64,
        tail: Vec<u8>,
        /// Block, CRC-32 of the tar before it, blob offset.
        at: (u64, u32, u64),
        blob: (Version, usize, Option<Arc<dyn SharedBlocks>>),
        record: Option<Observer<W>>,
    },
    /// A start that failed.
    Failed,
}

impl<W: Write> Resumed<W> {
    /// Write the rest of the blob and return the hashed output.
    fn finish(self) -> io::Result<HashingWriter<W>> {
        match self {
            Resumed::Writing(w) => w.finish(),
            Resumed::Later { at, .. } => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the tar ended before block {} of the blob: the restart point is not this blob's",
                    at.0
                ),
            )),
            Resumed::Failed => Err(io::Error::other("the blob's writer failed to start")),
        }
    }

    /// The dictionary is complete: start the writer at the block.
    fn start(&mut self) -> io::Result<()> {
        let Resumed::Later {
            out,
            tail,
            at: (seq, crc, offset),
            blob: (version, workers, shared),
            record,
            ..
        } = std::mem::replace(self, Resumed::Failed)
        else {
            return Ok(());
        };
        let start = BlockStart {
            seq,
            tail,
            crc,
            offset,
        };
        let mut w = PgzipWriter::resume(out, version, workers, shared, start)?;
        if let Some(record) = record {
            w.on_block(record);
        }
        *self = Resumed::Writing(w);
        Ok(())
    }
}

impl<W: Write> Write for Resumed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if let Resumed::Later {
            skip,
            tail,
            at: (seq, ..),
            ..
        } = self
        {
            let dropped = (*skip).min(rest.len() as u64) as usize;
            *skip -= dropped as u64;
            rest = &rest[dropped..];
            let want = if *seq == 0 { 0 } else { TAIL_SIZE };
            let kept = (want - tail.len()).min(rest.len());
            tail.extend_from_slice(&rest[..kept]);
            rest = &rest[kept..];
            if *skip > 0 || tail.len() < want {
                return Ok(buf.len());
            }
            self.start()?;
        }
        match self {
            Resumed::Writing(w) => w.write_all(rest)?,
            _ => return Err(io::Error::other("the blob's writer failed to start")),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Resumed::Writing(w) => w.flush(),
            _ => Ok(()),
        }
    }
}
