//! Restart points inside the reproduced pgzip blobs served: every response
//! of such a blob records one every
//! [`BLOB_POINT_SPACING`](crate::compress::pgzip_restart::BLOB_POINT_SPACING) blob bytes, and a
//! `Range` request starts at the latest one before its first byte instead
//! of compressing the blob from byte 0 ([`crate::compress::pgzip_restart`]). The
//! response is still proven by the blob's digest and size, so a wrong point
//! costs a failed response, never wrong bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use cfs_encoders::klauspost::{SharedBlocks, Version};
use composefs::fsverity::FsVerityHashValue;
use oci_spec::image::Digest;

use super::ranges::{Release, Window};
use super::{Inner, LayerBlob};
use crate::compress::pgzip_restart::{rebuild_pgzip, BlobPoint, BlobRestart, PgzipBlob};
use crate::lock;
use crate::progress::LayerKey;

/// The restart points of each reproduced pgzip blob, by blob digest, in
/// blob order.
#[derive(Default)]
pub(super) struct BlobPoints(Mutex<HashMap<String, Vec<BlobPoint>>>);

impl BlobPoints {
    /// The latest point of `digest` at or before blob byte `offset`.
    fn before(&self, digest: &str, offset: u64) -> Option<BlobPoint> {
        lock(&self.0)
            .get(digest)
            .and_then(|points| points.iter().rev().find(|p| p.offset <= offset).cloned())
    }

    fn add(&self, digest: &str, point: BlobPoint) {
        let mut all = lock(&self.0);
        let points = all.entry(digest.to_string()).or_default();
        if let Err(at) = points.binary_search_by_key(&point.offset, |q| q.offset) {
            points.insert(at, point);
        }
    }

    /// Drop `digest`'s points (a response of it failed its proof).
    pub fn forget(&self, digest: &str) {
        lock(&self.0).remove(digest);
    }
}

/// Rebuild the reproduced pgzip blob into `sender`:
/// bytes `first..first + count`, from the latest restart point before
/// `first` (from byte 0 without one), recording the points passed. Returns
/// the window and the whole blob's digest and size, for the proof.
pub(super) fn pgzip_into<ID: FsVerityHashValue, W: Release>(
    s: &Inner<ID>,
    blob: &LayerBlob<ID>,
    version: Version,
    key: &LayerKey,
    (first, count, to_the_end): (u64, u64, bool),
    sender: W,
    (workers, shared): (usize, Arc<dyn SharedBlocks>),
) -> Result<(Window<W>, Digest, u64)> {
    let digest = blob.served.digest().to_string();
    let from = match first {
        0 => None,
        _ => s.pool.blob_points.before(&digest, first),
    };
    let start = from.as_ref().map_or(0, |p| p.offset);
    if let Some(p) = &from {
        tracing::info!(
            target: "blocks",
            "{digest}: bytes from {first} restart at block {} ({} bytes into the blob, tar from {})",
            p.block,
            p.offset,
            p.tar_offset()
        );
    }
    let points = s.pool.blob_points.clone();
    let record = Box::new(move |p: BlobPoint| points.add(&digest, p));
    let encoder = PgzipBlob {
        version,
        workers,
        shared: Some(shared),
        progress: (&*s.progress, key),
    };
    let restart = BlobRestart {
        from,
        record: Some(record),
    };
    let window = Window::new(sender, first - start, count, !to_the_end);
    rebuild_pgzip(&s.repo, &blob.image, &blob.layer, encoder, window, restart)
}
