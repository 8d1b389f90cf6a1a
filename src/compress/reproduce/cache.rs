//! Remembered outcomes of the original-bytes search (match or miss),
//! outside the repository.

use std::path::PathBuf;

use oci_spec::image::Digest;

use super::{Reproducer, MISS};

/// Remembered outcomes: `<cache dir>/cfs-export/reproduce/<diff_id>-<blob>`
/// holding the encoder's id, or [`MISS`].
pub(super) struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    /// Under [`crate::cache_dir`]; none (no caching) without one.
    pub(super) fn new() -> Self {
        Cache {
            dir: crate::cache_dir().map(|d| d.join("reproduce")),
        }
    }

    fn path(&self, diff_id: &Digest, blob: &Digest) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{}-{}", diff_id.digest(), blob.digest())))
    }

    /// `Some(outcome)` when remembered.
    pub(super) fn get(&self, diff_id: &Digest, blob: &Digest) -> Option<Option<Reproducer>> {
        let text = std::fs::read_to_string(self.path(diff_id, blob)?).ok()?;
        match text.trim() {
            MISS => Some(None),
            id => Reproducer::from_id(id).map(Some),
        }
    }

    pub(super) fn put(&self, diff_id: &Digest, blob: &Digest, outcome: Option<Reproducer>) {
        let (Some(dir), Some(path)) = (&self.dir, self.path(diff_id, blob)) else {
            return;
        };
        let text = outcome.map_or(MISS, Reproducer::id);
        let written = crate::create_private_dirs(dir).and_then(|()| {
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::fs::write(tmp.path(), text)?;
            tmp.persist(&path)?;
            Ok(())
        });
        if let Err(e) = written {
            tracing::warn!("Remembering how layer {diff_id} was compressed: {e:#}");
        }
    }
}
