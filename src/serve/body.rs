//! A layer's response body: rebuilt from the repository as it is sent,
//! proven against its diff_id, its last bytes held back until the proof.
//! A part of a blob starts at the nearest restart point an earlier response
//! passed: in the tar for an uncompressed layer (`tar_into`), at a pgzip
//! block for a reproduced pgzip blob (`compressed_into`, `resume`); other
//! encoders run from the blob's start.
//!
//! At most `--jobs` layers are rebuilt at once (a semaphore taken before the
//! rebuild thread starts), and a client that stops reading for
//! [`SEND_TIMEOUT`] loses its response, so no client can hold rebuild
//! threads or memory indefinitely.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use cfs_encoders::klauspost::SharedBlocks;
use composefs::fsverity::FsVerityHashValue;
use tokio::sync::mpsc;

use super::ranges::Window;
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
/// How long a chunk may wait for the client to read before the response is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// A response body that rebuilds the layer on a blocking thread as it is
/// sent: `count` bytes of the blob from `first` on.
pub(super) fn stream_layer<ID: FsVerityHashValue>(
    s: Arc<Inner<ID>>,
    digest: String,
    first: u64,
    count: u64,
) -> Body {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let Ok(permit) = s.rebuilds.clone().acquire_owned().await else {
            return;
        };
        // The client may have given up while it waited for its turn.
        if tx.is_closed() {
            return;
        }
        let rebuild = tokio::task::spawn_blocking(move || {
            rebuild_into(&s, &digest, (first, count), tx, runtime);
            drop(permit);
        });
        let _ = rebuild.await;
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Rebuild one layer into the response channel and log how it went.
fn rebuild_into<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    digest: &str,
    (first, count): (u64, u64),
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
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
    s.progress.layer_started(image, &key, served.tar_size);
    let sender = HeldBack::new(tx.clone(), runtime);
    let result = match served.compression {
        Compression::Uncompressed => tar_into(s, blob, digest, (first, count), &key, sender),
        c => {
            let sent = compressed_into(s, blob, c, &key, (first, count), sender);
            if let Err(e) = &sent {
                // A block made from damaged input must not be copied again,
                // nor a response resumed at its points; but a client that
                // went away leaves both to the others and to its own resumed
                // read (a wrong block or point could only fail the proof,
                // never send wrong bytes).
                let gone = e
                    .chain()
                    .any(|c| c.downcast_ref::<layer::DestinationWriteError>().is_some());
                if !gone {
                    s.blocks.forget(digest);
                    s.blob_points.forget(digest);
                }
            }
            sent
        }
    };
    s.progress.layer_finished(&key);
    let mut log = lock(&s.log);
    match result {
        Ok(sender) => {
            // A part that reaches the end completes what skopeo read before.
            let to_the_end = first + count == served.size();
            if sender.release().is_ok() && to_the_end {
                let seconds = started.elapsed().as_secs_f64();
                log.served
                    .insert(digest.to_string(), LayerServed { seconds });
            }
        }
        Err(e) => {
            // The held-back bytes are dropped: the response stops short.
            let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
            let gone = e
                .chain()
                .any(|c| c.downcast_ref::<layer::DestinationWriteError>().is_some());
            if !gone {
                if s.log_errors {
                    tracing::error!("Serving blob {digest}: {e:#}");
                }
                log.errors.push(e);
            }
        }
    }
}

/// Rebuild the uncompressed layer's bytes `first..first + count` into
/// `sender`, starting at the nearest restart point an earlier response of
/// this layer passed (a resumed read does not start over), and remembering
/// the points this one passes.
fn tar_into<ID: FsVerityHashValue>(
    s: &Inner<ID>,
    blob: &LayerBlob<ID>,
    digest: &str,
    (first, count): (u64, u64),
    key: &LayerKey,
    sender: HeldBack,
) -> anyhow::Result<HeldBack> {
    let from = lock(&s.restarts)
        .get(digest)
        .and_then(|points| points.iter().rev().find(|p| p.offset <= first).cloned());
    let start = from.as_ref().map_or(0, |p| p.offset);
    let window = Window::new(sender, first - start, count);
    let counted = ProgressWriter::new(window, &*s.progress, key);
    let mut record = |p: RestartPoint| {
        let mut all = lock(&s.restarts);
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
    Ok(counted.into_inner().into_inner())
}

/// Rebuild the layer through `compression`'s encoder into `sender`, bytes
/// `first..first + count` of the blob; the output must be the blob served,
/// digest and size (the original blob for a reproduced one, the indexed
/// one for gzip and zstd), or nothing more is released. A reproduced
/// pgzip blob's compressed blocks are shared with the other responses of
/// that blob (`blocks`): concurrent pulls compress each block once; and a
/// part of it starts at the nearest restart point an earlier response
/// passed (`resume`). Other encoders run from the blob's start.
fn compressed_into<ID: FsVerityHashValue, W: Write>(
    s: &Inner<ID>,
    blob: &LayerBlob<ID>,
    compression: Compression,
    key: &LayerKey,
    (first, count): (u64, u64),
    sender: W,
) -> anyhow::Result<W> {
    let shared = s.blocks.blob(blob.served.digest().as_ref());
    let share = s.workers.share();
    let (window, digest, size) = match compression {
        Compression::Reproduced(Reproducer::Pgzip(version)) => {
            let span = (first, count);
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
            let window = Window::new(sender, first, count);
            // gzip's blocks are small (128 KiB): all the threads cost little memory.
            let threads = match c {
                Compression::Gzip(_) => s.workers.jobs,
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
        let (layer, image) = (&blob.layer.diff_id, &blob.image);
        let (want, want_size) = (expected.digest(), expected.size());
        match compression {
            Compression::Reproduced(_) => anyhow::bail!(
                "Layer {layer} of image {image}: the reproduced blob is {digest} ({size} bytes), not the original {want} ({want_size} bytes); \
                 export with --compression none"
            ),
            c => {
                let entry = BlobIndex::new()
                    .entry(layer, c)
                    .map_or("it".to_string(), |p| p.display().to_string());
                anyhow::bail!(
                    "Layer {layer} of image {image}: compressed with {c} it is {digest} ({size} bytes), not {want} ({want_size} bytes) \
                     as the index cache says and the manifest served: the cache entry is damaged or the encoder changed; \
                     delete {entry} and restart serve"
                )
            }
        }
    }
    let (made, copied) = shared.counts();
    if made + copied > 0 {
        tracing::info!(target: "blocks", "{want}: {made} blocks compressed, {copied} copied", want = expected.digest());
    }
    Ok(window.into_inner())
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
}

impl Workers {
    /// Up to `jobs` threads for one response.
    pub fn new(jobs: usize) -> Self {
        Workers {
            jobs: jobs.max(1),
            running: AtomicUsize::new(0),
        }
    }

    /// Threads for one more response, counted as running until dropped.
    fn share(&self) -> Share<'_> {
        let before = self.running.fetch_add(1, Ordering::SeqCst);
        Share {
            threads: self.jobs.div_ceil(before + 1),
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

/// A writer into the response that keeps the latest chunk back until
/// [`HeldBack::release`]: nothing proves a layer but its last byte.
pub(crate) struct HeldBack {
    tx: mpsc::Sender<io::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    held: Option<Bytes>,
    current: Vec<u8>,
}

impl HeldBack {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>, runtime: tokio::runtime::Handle) -> Self {
        HeldBack {
            tx,
            runtime,
            held: None,
            current: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&self, b: Bytes) -> io::Result<()> {
        match self
            .runtime
            .block_on(self.tx.send_timeout(Ok(b), SEND_TIMEOUT))
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", SEND_TIMEOUT.as_secs()),
            )),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
        }
    }

    /// The layer is proven: send what was held back.
    pub fn release(mut self) -> io::Result<()> {
        if let Some(b) = self.held.take() {
            self.send(b)?;
        }
        let last = std::mem::take(&mut self.current);
        if !last.is_empty() {
            self.send(Bytes::from(last))?;
        }
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
mod tests {
    use super::*;

    #[test]
    fn held_back_until_released() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tx, mut rx) = mpsc::channel(64);
        let mut w = HeldBack::new(tx, rt.handle().clone());
        let data = vec![7u8; CHUNK * 3 + 100];
        let writer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            (w, data)
        });
        let (w, data) = writer.join().unwrap();
        // Two full chunks went out; the third and the tail are held.
        let mut got = Vec::new();
        while let Ok(Ok(b)) = rx.try_recv() {
            got.extend_from_slice(&b);
        }
        assert_eq!(got.len(), 2 * CHUNK);
        let released = std::thread::spawn(move || w.release());
        rt.block_on(async {
            while let Some(Ok(b)) = rx.recv().await {
                got.extend_from_slice(&b);
            }
        });
        released.join().unwrap().unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn later_responses_get_fewer_threads() {
        let w = Workers::new(4);
        let first = w.share();
        let second = w.share();
        let third = w.share();
        assert_eq!((first.threads, second.threads, third.threads), (4, 2, 2));
        drop((first, second, third));
        assert_eq!(w.share().threads, 4, "all ended: a new one gets them all");
        assert_eq!(Workers::new(0).share().threads, 1);
    }

    #[test]
    fn a_client_that_went_away_stops_the_rebuild() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = HeldBack::new(tx, rt.handle().clone());
        let err = std::thread::spawn(move || w.write_all(&vec![0u8; CHUNK * 3]))
            .join()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
