//! A layer's response body: rebuilt from the repository as it is sent,
//! proven against its diff_id, its last bytes held back until the proof.
//! A part of a blob starts at the nearest restart point an earlier response
//! passed: in the tar for an uncompressed layer (`tar_into`), at a pgzip
//! block for a reproduced pgzip blob (`compressed_into`, `resume`); other
//! encoders run from the blob's start. A part that ends before the blob
//! does stops there: a range costs what precedes its end, not the whole
//! blob (its client proves the blob it assembles; a part that reaches the
//! end is proven here as a whole response is).
//!
//! Bounds, so that no client can hold what others need: at most
//! `Pool::rebuilds` layers are rebuilt at once, and a response whose client
//! stops reading gives its turn up while it waits ([`Turn`]); each client
//! address has at most [`Clients::PER_CLIENT`] layer responses at once
//! (more wait); a response whose client reads no chunk for the stall
//! timeout is dropped. No lock is held across a send.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use cfs_encoders::klauspost::SharedBlocks;
use composefs::fsverity::FsVerityHashValue;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::ranges::{Release, Window};
use super::{resume, Blob, Inner, LayerBlob, LayerServed};
use crate::compress::blob_index::BlobIndex;
use crate::compress::pgzip::ParGzEncoder;
use crate::compress::reproduce::Reproducer;
use crate::compress::{Compression, Encoder};
use crate::digest::HashingWriter;
use crate::lock;
use crate::progress::{LayerKey, ProgressWriter};
use crate::repo::layer::{self, Restart, RestartPoint};

/// Bytes per response chunk; the last one or two are held back until the layer is proven.
pub(crate) const CHUNK: usize = 256 * 1024;

/// A response body that rebuilds the layer on a blocking thread as it is
/// sent: `count` bytes of the blob from `first` on, for `client`.
pub(super) fn stream_layer<ID: FsVerityHashValue>(
    s: Arc<Inner<ID>>,
    digest: String,
    (first, count): (u64, u64),
    client: Option<IpAddr>,
) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        // Waiting for a turn ends when the client gives up.
        let turns = async {
            let mine = s.pool.clients.enter(client).await;
            let permit = s.pool.rebuilds.clone().acquire_owned().await.ok()?;
            Some((mine, permit))
        };
        let (mine, permit) = tokio::select! {
            t = turns => match t { Some(t) => t, None => return },
            _ = tx.closed() => return,
        };
        let rebuild = tokio::task::spawn_blocking(move || {
            let turn = Turn {
                rebuilds: Some(s.pool.rebuilds.clone()),
                permit: Some(permit),
            };
            let held = HeldBack::new(tx, runtime, turn, s.pool.stall);
            rebuild_into(&s, &digest, (first, count), held);
            drop(mine);
        });
        let _ = rebuild.await;
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Whether `e` is the client going away (not damage to report).
fn client_gone(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<layer::DestinationWriteError>().is_some())
}

/// Rebuild one layer into the response and log how it went.
fn rebuild_into<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    digest: &str,
    (first, count): (u64, u64),
    sender: HeldBack,
) {
    let Some(Blob::Layer(blob)) = s.blobs.get(digest) else {
        return;
    };
    let LayerBlob {
        image,
        layer,
        served,
    } = &**blob;
    let key = LayerKey {
        diff_id: layer.diff_id.clone(),
        compression: served.compression,
    };
    let started = Instant::now();
    let (tx, part_sent) = (sender.tx.clone(), sender.part_sent.clone());
    // A part that reaches the end completes what the client read before.
    let to_the_end = first + count == served.size();
    s.progress.layer_started(image, &key, served.tar_size);
    let result = match served.compression {
        Compression::Uncompressed => {
            tar_into(s, blob, digest, (first, count, to_the_end), &key, sender)
        }
        c => compressed_into(s, blob, c, &key, (first, count, to_the_end), sender),
    };
    s.progress.layer_finished(&key);
    let failed = match result {
        Ok(sender) => {
            let released = sender.release().is_ok();
            if released && to_the_end {
                let seconds = started.elapsed().as_secs_f64();
                lock(&s.log)
                    .served
                    .insert(digest.to_string(), LayerServed { seconds });
            }
            return;
        }
        // A part ending before the blob's end was sent whole: its work is done.
        Err(_) if part_sent.load(Ordering::SeqCst) => return,
        Err(e) => e,
    };
    failed_response(s, digest, &tx, failed);
}

/// A response that failed: cut short (its held-back bytes dropped, never
/// waiting for a client that does not read: the channel's end cuts it
/// too); unless its client went away, the damage is logged and the blob's
/// shared blocks and restart points forgotten.
fn failed_response<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    digest: &str,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    failed: anyhow::Error,
) {
    let _ = tx.try_send(Err(io::Error::other(format!("{failed:#}"))));
    if client_gone(&failed) {
        // A client that went away leaves the blob's shared blocks and
        // restart points to the others and to its own resumed read (a
        // wrong block or point could only fail the proof, never send
        // wrong bytes).
        return;
    }
    // A block made from damaged input must not be copied again, nor a
    // response resumed at its points.
    s.pool.blocks.forget(digest);
    s.pool.blob_points.forget(digest);
    if s.log_errors {
        tracing::error!("Serving blob {digest}: {failed:#}");
    }
    lock(&s.log).errors.push(failed);
}

/// Rebuild the uncompressed layer's bytes `first..first + count` into
/// `sender`, starting at the nearest restart point an earlier response of
/// this layer passed (a resumed read does not start over), and remembering
/// the points this one passes.
fn tar_into<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    blob: &LayerBlob<ID>,
    digest: &str,
    (first, count, to_the_end): (u64, u64, bool),
    key: &LayerKey,
    sender: HeldBack,
) -> anyhow::Result<HeldBack> {
    let from = lock(&s.pool.restarts)
        .get(digest)
        .and_then(|points| points.iter().rev().find(|p| p.offset <= first).cloned());
    let start = from.as_ref().map_or(0, |p| p.offset);
    let window = Window::new(sender, first - start, count, !to_the_end);
    let counted = ProgressWriter::new(window, &*s.progress, key);
    let mut record = |p: RestartPoint| {
        let mut all = lock(&s.pool.restarts);
        let points = all.entry(digest.to_string()).or_default();
        if let Err(at) = points.binary_search_by_key(&p.offset, |q| q.offset) {
            points.insert(at, p);
        }
    };
    let restart = Restart {
        from,
        record: Some(&mut record),
    };
    let (counted, _) = layer::rebuild_from(&s.repo, &blob.image, &blob.layer, counted, restart)?;
    Ok(counted.into_inner().into_inner()?)
}

/// Rebuild the layer through `compression`'s encoder into `sender`, bytes
/// `first..first + count` of the blob; the output must be the blob served,
/// digest and size (the original blob for a reproduced one, the indexed
/// one for gzip and zstd), or nothing more is released. A reproduced
/// pgzip blob's compressed blocks are shared with the other responses of
/// that blob (`blocks`): concurrent pulls compress each block once; and a
/// part of it starts at the nearest restart point an earlier response
/// passed (`resume`). Other encoders run from the blob's start.
fn compressed_into<ID: FsVerityHashValue, W: Release>(
    s: &Inner<ID>,
    blob: &LayerBlob<ID>,
    compression: Compression,
    key: &LayerKey,
    (first, count, to_the_end): (u64, u64, bool),
    sender: W,
) -> anyhow::Result<W> {
    let shared = s.pool.blocks.blob(blob.served.digest().as_ref());
    let share = s.pool.workers.share();
    let (window, digest, size) = match compression {
        Compression::Reproduced(Reproducer::Pgzip(version)) => {
            let span = (first, count, to_the_end);
            resume::pgzip_into(
                s,
                blob,
                version,
                key,
                span,
                sender,
                (share.threads, shared.clone()),
            )?
        }
        c => {
            let window = Window::new(sender, first, count, !to_the_end);
            // gzip's blocks are small (128 KiB): all the threads cost little memory.
            let threads = match c {
                Compression::Gzip(_) => s.pool.workers.jobs,
                _ => share.threads,
            };
            let encoder = encoder_for(c, HashingWriter::new(window), threads, shared.clone())?;
            let counted = ProgressWriter::new(encoder, &*s.progress, key);
            let (counted, _) = layer::rebuild(&s.repo, &blob.image, &blob.layer, counted)?;
            counted
                .into_inner()
                .finish()
                .map_err(|e| anyhow::Error::new(layer::DestinationWriteError(e)))?
                .finish()
        }
    };
    let expected = &blob.served.descriptor;
    if &digest != expected.digest() || size != expected.size() {
        return Err(not_served(blob, compression, &digest, size));
    }
    let (made, copied) = shared.counts();
    if made + copied > 0 {
        tracing::info!(target: "blocks", "{want}: {made} blocks compressed, {copied} copied", want = expected.digest());
    }
    Ok(window.into_inner()?)
}

/// The error of a rebuild whose output is not the blob served (`digest`,
/// `size`), saying what to do.
fn not_served<ID>(
    blob: &LayerBlob<ID>,
    compression: Compression,
    digest: &oci_spec::image::Digest,
    size: u64,
) -> anyhow::Error {
    let (layer, image) = (&blob.layer.diff_id, &blob.image);
    let expected = &blob.served.descriptor;
    let (want, want_size) = (expected.digest(), expected.size());
    match compression {
        Compression::Reproduced(_) => anyhow::anyhow!(
            "Layer {layer} of image {image}: the reproduced blob is {digest} ({size} bytes), not the original {want} ({want_size} bytes); \
             export with --compression none"
        ),
        c => {
            let entry = BlobIndex::new()
                .entry(layer, c)
                .map_or("it".to_string(), |p| p.display().to_string());
            anyhow::anyhow!(
                "Layer {layer} of image {image}: compressed with {c} it is {digest} ({size} bytes), not {want} ({want_size} bytes) \
                 as the index cache says and the manifest served: the cache entry is damaged or the encoder changed; \
                 delete {entry} and restart serve"
            )
        }
    }
}

/// The encoder a served layer is made with: the same bytes as the blob
/// whose digest its manifest holds. Reproduced pgzip blobs do not come
/// here (`resume` makes them, sharing blocks); gzip shares blocks too.
fn encoder_for<W: Write>(
    compression: Compression,
    inner: W,
    workers: usize,
    shared: Arc<dyn SharedBlocks>,
) -> std::io::Result<Encoder<W>> {
    Ok(match compression {
        Compression::Gzip(level) => {
            Encoder::Gzip(ParGzEncoder::sharing(inner, level, workers, Some(shared))?)
        }
        c => c.encoder_on(inner, workers)?,
    })
}

/// Compression threads for the responses compressing at once: `jobs` for
/// the first, fewer for each one more (it has its share of the cores in
/// running beside the others), so many clients do not mean many threads
/// each with blocks in flight.
pub(super) struct Workers {
    jobs: usize,
    running: AtomicUsize,
    /// Every response gets all `jobs` (one client, few responses).
    each: bool,
}

impl Workers {
    /// Up to `jobs` threads for one response.
    pub fn new(jobs: usize) -> Self {
        Workers {
            jobs: jobs.max(1),
            running: AtomicUsize::new(0),
            each: false,
        }
    }

    /// `jobs` threads for every response: the hand-off's one client reads
    /// a few blobs at once, and a large one that started second must not
    /// compress on one thread after the others are done.
    pub fn each(jobs: usize) -> Self {
        Workers {
            each: true,
            ..Workers::new(jobs)
        }
    }

    /// Threads for one more response, counted as running until dropped.
    fn share(&self) -> Share<'_> {
        let before = self.running.fetch_add(1, Ordering::SeqCst);
        Share {
            threads: match self.each {
                true => self.jobs,
                false => self.jobs.div_ceil(before + 1),
            },
            running: &self.running,
        }
    }
}

/// One response's [`Workers::share`].
struct Share<'a> {
    threads: usize,
    running: &'a AtomicUsize,
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Layer responses at once per client address: one address cannot take
/// every rebuild slot (a client pulling in parallel opens a few).
pub(super) struct Clients {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

impl Clients {
    /// Layer responses one client address may have at once (skopeo and
    /// podman pull up to 6 blobs in parallel).
    pub const PER_CLIENT: usize = 6;

    /// At most `per_client` responses per address.
    pub fn new(per_client: usize) -> Self {
        Clients {
            per_client: per_client.max(1),
            open: Mutex::default(),
        }
    }

    /// Wait for one of `client`'s slots (no limit without an address).
    async fn enter(&self, client: Option<IpAddr>) -> Option<OwnedSemaphorePermit> {
        let slots = {
            let mut open = lock(&self.open);
            // Forget addresses with nothing running, now and then.
            if open.len() > 1024 {
                let all = self.per_client;
                open.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < all);
            }
            open.entry(client?)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
                .clone()
        };
        slots.acquire_owned().await.ok()
    }
}

/// A response's turn at rebuilding (a rebuild slot), given up while its
/// client does not read and taken again before it goes on.
pub(crate) struct Turn {
    /// The slots (none: unbounded, in tests).
    pub rebuilds: Option<Arc<Semaphore>>,
    /// The slot held now.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// A writer into the response that keeps the latest chunk back until
/// [`HeldBack::release`]: nothing proves a layer but its last byte.
pub(crate) struct HeldBack {
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    turn: Turn,
    /// How long a chunk may wait for the client before the response is dropped.
    stall: Duration,
    held: Option<Bytes>,
    current: Vec<u8>,
    /// Set once a part that ends before the blob's end is all sent.
    part_sent: Arc<AtomicBool>,
}

impl HeldBack {
    pub fn new(
        tx: mpsc::Sender<io::Result<Bytes>>,
        runtime: tokio::runtime::Handle,
        turn: Turn,
        stall: Duration,
    ) -> Self {
        HeldBack {
            tx,
            runtime,
            turn,
            stall,
            held: None,
            current: Vec::with_capacity(CHUNK),
            part_sent: Arc::default(),
        }
    }

    fn send(&mut self, b: Bytes) -> io::Result<()> {
        let b = match self.tx.try_send(Ok(b)) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(gone()),
            Err(mpsc::error::TrySendError::Full(b)) => b,
        };
        // The client is not reading now: let another response rebuild
        // while this one waits.
        self.turn.permit = None;
        match self.runtime.block_on(self.tx.send_timeout(b, self.stall)) {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} s", self.stall.as_secs()),
                ))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(gone()),
        }
        if let Some(rebuilds) = &self.turn.rebuilds {
            let permit = self.runtime.block_on(rebuilds.clone().acquire_owned());
            self.turn.permit = Some(permit.map_err(|_| gone())?);
        }
        Ok(())
    }

    /// Send what is held back.
    fn send_held(&mut self) -> io::Result<()> {
        if let Some(b) = self.held.take() {
            self.send(b)?;
        }
        let last = std::mem::take(&mut self.current);
        if !last.is_empty() {
            self.send(Bytes::from(last))?;
        }
        Ok(())
    }

    /// The layer is proven: send what was held back.
    pub fn release(mut self) -> io::Result<()> {
        self.send_held()
    }
}

/// The error of a response whose client went away.
fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
}

impl Release for HeldBack {
    fn release_part(&mut self) -> io::Result<()> {
        self.send_held()?;
        self.part_sent.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Write for HeldBack {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.current.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            if let Some(previous) = self.held.replace(Bytes::from(full)) {
                self.send(previous)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
