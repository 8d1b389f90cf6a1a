//! Progress reporting: a trait the library calls, rendered by the caller
//! (the CLI draws indicatif bars; library users plug in their own).

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use oci_spec::image::Digest;

use crate::compress::Compression;

/// One layer blob of an export: a diff_id at one compression (one export may
/// produce a layer at several compressions, each its own blob).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerKey {
    /// The layer's uncompressed digest.
    pub diff_id: Digest,
    /// The blob's compression.
    pub compression: Compression,
}

impl fmt::Display for LayerKey {
    /// `8c3c37c51679` for uncompressed blobs, `8c3c37c51679 zstd:3` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::digest::short_hex(self.diff_id.digest()))?;
        match self.compression {
            Compression::Uncompressed => Ok(()),
            c => write!(f, " {c}"),
        }
    }
}

/// Receives progress events from an export. All methods default to no-ops.
pub trait Progress: Send + Sync {
    /// A layer blob starts being built; `total` is the layer's uncompressed size.
    fn layer_started(&self, _image: &str, _layer: &LayerKey, _total: u64) {}
    /// `bytes` more uncompressed bytes of the layer were written.
    fn layer_advanced(&self, _layer: &LayerKey, _bytes: u64) {}
    /// The layer blob is done (written or failed).
    fn layer_finished(&self, _layer: &LayerKey) {}
    /// A layer blob was already present in the destination.
    fn layer_skipped(&self, _image: &str, _layer: &LayerKey, _total: u64) {}
    /// A stage with no byte count began (e.g. "copying with skopeo").
    fn stage(&self, _message: &str) {}
    /// The stage is over.
    fn stage_finished(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// A shareable progress sink.
#[derive(Clone)]
pub struct ProgressHandle(pub Arc<dyn Progress>);

impl Default for ProgressHandle {
    fn default() -> Self {
        Self(Arc::new(NoProgress))
    }
}

impl fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressHandle")
    }
}

impl std::ops::Deref for ProgressHandle {
    type Target = dyn Progress;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

/// Report granularity: one event per this many bytes.
const STEP: u64 = 4 << 20;

/// A writer that reports the bytes passing through it.
pub struct ProgressWriter<'a, W> {
    inner: W,
    progress: &'a dyn Progress,
    layer: &'a LayerKey,
    pending: u64,
}

impl<'a, W: Write> ProgressWriter<'a, W> {
    /// Wrap `inner`, reporting against `layer`.
    pub fn new(inner: W, progress: &'a dyn Progress, layer: &'a LayerKey) -> Self {
        Self {
            inner,
            progress,
            layer,
            pending: 0,
        }
    }

    /// Report what is left and return the inner writer.
    pub fn into_inner(self) -> W {
        if self.pending > 0 {
            self.progress.layer_advanced(self.layer, self.pending);
        }
        self.inner
    }
}

impl<W: Write> Write for ProgressWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending += n as u64;
        if self.pending >= STEP {
            self.progress.layer_advanced(self.layer, self.pending);
            self.pending = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
