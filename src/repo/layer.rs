//! Rebuilding a layer tar from its split-stream, bit-exact, proven by sha256
//! against the diff_id while it streams.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, Write};

use anyhow::{Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use composefs::splitstream::SplitStreamData;
use oci_spec::image::Digest;
use sha2::Sha256;

use crate::digest::HashingWriter;
use crate::repo::image::{layer_stream_id, StoredLayer};
pub use crate::repo::objects::{check_object, damaged_objects, DamagedObject, ObjectProblem};
use crate::repo::stream_check::{open_stream, Check};

/// Read buffer for object contents.
const OBJECT_BUF_SIZE: usize = 1 << 20;

/// A write to the destination failed (as opposed to damage in the repository).
#[derive(Debug, thiserror::Error)]
#[error("writing the rebuilt layer failed")]
pub struct DestinationWriteError(#[source] pub io::Error);

/// A layer whose bytes cannot be rebuilt to its diff_id.
#[derive(Debug, thiserror::Error)]
pub struct LayerDamaged {
    /// Which image.
    pub image: String,
    /// 1-based layer number.
    pub layer: usize,
    /// Its diff_id.
    pub diff_id: Digest,
    /// What went wrong while streaming.
    pub cause: String,
    /// The damaged objects found (may be empty when only the stream is off).
    pub objects: Vec<DamagedObject>,
}

impl fmt::Display for LayerDamaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer {} ({}) of image {} is damaged in the repository: {}",
            self.layer, self.diff_id, self.image, self.cause
        )?;
        if !self.objects.is_empty() {
            let list: Vec<String> = self.objects.iter().map(|o| o.to_string()).collect();
            write!(f, "; damaged: {}", list.join(", "))?;
        }
        write!(f, ". Re-pull the image to repair it")
    }
}

/// Every damaged object a layer uses: its split-stream object and the file
/// contents it references.
pub fn find_damaged_objects<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    layer: &StoredLayer<ID>,
) -> Vec<DamagedObject> {
    damaged_objects(repo, &layer_stream_id(&layer.diff_id), &layer.stream)
}

/// Rebuild one layer's tar into `out`, returning `out` and the tar's size.
///
/// The bytes are hashed as they stream; any difference from the diff_id (or
/// the size the split-stream records) is a [`LayerDamaged`] error naming the
/// damaged objects. Write failures come back as [`DestinationWriteError`].
pub fn rebuild<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    image: &str,
    layer: &StoredLayer<ID>,
    out: W,
) -> Result<(W, u64)> {
    rebuild_from(repo, image, layer, out, Restart::default())
}

/// A place a rebuild can start from instead of byte 0: an offset in the tar
/// and the hash of everything before it, so the whole layer is still proven.
#[derive(Debug, Clone)]
pub struct RestartPoint {
    /// Offset in the tar.
    pub offset: u64,
    hasher: Sha256,
}

/// Restart points are taken at chunk boundaries this far apart (or more).
pub const RESTART_SPACING: u64 = 8 << 20;

/// Where a rebuild starts, and who is told of the restart points it passes.
#[derive(Default)]
pub struct Restart<'a> {
    /// Start here (a point an earlier rebuild of this layer gave), else at 0.
    pub from: Option<RestartPoint>,
    /// Gets a restart point every [`RESTART_SPACING`] bytes or so.
    pub record: Option<&'a mut dyn FnMut(RestartPoint)>,
}

/// Copy object `id` into `out`, less the first `skip` bytes of the tar that
/// remain to be passed over (an object wholly inside them is not read).
fn copy_object<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    id: &ID,
    skip: &mut u64,
    out: &mut W,
    buf: &mut [u8],
) -> Result<()> {
    let mut file = File::from(repo.open_object(id)?);
    if *skip > 0 {
        let size = file.metadata()?.len();
        let passed = (*skip).min(size);
        *skip -= passed;
        if passed == size {
            return Ok(());
        }
        file.seek(io::SeekFrom::Start(passed))?;
    }
    loop {
        let n = match file.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {}", crate::repo::objects::object_path(id)))
            }
        };
        out.write_all(&buf[..n]).map_err(DestinationWriteError)?;
    }
}

/// The layer is damaged (`cause`); the objects to blame, where found.
fn layer_damaged<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    image: &str,
    layer: &StoredLayer<ID>,
    cause: String,
) -> anyhow::Error {
    LayerDamaged {
        image: image.to_string(),
        layer: layer.index + 1,
        diff_id: layer.diff_id.clone(),
        cause,
        objects: find_damaged_objects(repo, layer),
    }
    .into()
}

/// Why streaming a layer stopped: the destination's write failed (named as
/// such), else the repository is damaged.
fn streaming_failed<ID>(
    e: anyhow::Error,
    image: &str,
    layer: &StoredLayer<ID>,
    damaged: impl Fn(String) -> anyhow::Error,
) -> anyhow::Error {
    let destination = e
        .chain()
        .find_map(|c| c.downcast_ref::<DestinationWriteError>())
        .is_some();
    if destination {
        return e.context(format!(
            "Writing layer {} ({}) of image {image}",
            layer.index + 1,
            layer.diff_id
        ));
    }
    damaged(format!("{e:#}"))
}

/// [`rebuild`] writing only the bytes from `restart.from` on (seeking past
/// whole objects, not reading them), still proving the whole tar.
pub fn rebuild_from<ID: FsVerityHashValue, W: Write>(
    repo: &Repository<ID>,
    image: &str,
    layer: &StoredLayer<ID>,
    out: W,
    mut restart: Restart<'_>,
) -> Result<(W, u64)> {
    let damaged = |cause: String| layer_damaged(repo, image, layer, cause);
    let stream_name = layer_stream_id(&layer.diff_id);
    let mut reader = open_stream(
        repo,
        &stream_name,
        Some(&layer.stream),
        Some(composefs_oci::LAYER_CONTENT_TYPE),
        Check::Content,
    )
    .map_err(|e| damaged(format!("{e:#}")))?;
    let expected_size = reader.total_size;
    // Bytes of the tar passed over before the first one written.
    let (mut skip, mut out) = match restart.from.take() {
        Some(p) => (p.offset, HashingWriter::resume(out, p.hasher, p.offset)),
        None => (0, HashingWriter::new(out)),
    };
    let mut next_point = out.len() + RESTART_SPACING;
    let mut buf = vec![0u8; OBJECT_BUF_SIZE];
    let streamed = reader.for_each_chunk(|chunk| {
        match chunk {
            SplitStreamData::Inline(bytes) => {
                let passed = skip.min(bytes.len() as u64);
                skip -= passed;
                out.write_all(&bytes[passed as usize..])
                    .map_err(DestinationWriteError)?;
            }
            SplitStreamData::External(id) => {
                copy_object(repo, &id, &mut skip, &mut out, &mut buf)?;
            }
        }
        if out.len() >= next_point && skip == 0 {
            if let Some(record) = restart.record.as_mut() {
                let (hasher, offset) = out.state();
                record(RestartPoint { offset, hasher });
            }
            next_point = out.len() + RESTART_SPACING;
        }
        Ok(())
    });
    if let Err(e) = streamed {
        return Err(streaming_failed(e, image, layer, damaged));
    }
    let (out, digest, size) = out.finish();
    if digest != layer.diff_id || size != expected_size {
        return Err(damaged(format!(
            "the rebuilt tar hashes to {digest} ({size} bytes, the stream records {expected_size})"
        )));
    }
    Ok((out, size))
}
