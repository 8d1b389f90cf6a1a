//! The layout's record of compressed blobs (`.cfs-export-blobs.json`): which
//! blob a layer became at each compression, so a re-export skips it.

use std::collections::BTreeMap;

use oci_spec::image::Digest;

/// Which blob a (diff_id, compression) pair compressed to, remembered in the
/// layout so re-exports can skip compressed layers. An entry is only trusted
/// when the blob it names is present with the recorded size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobRecord(pub(super) BTreeMap<String, String>);

impl BlobRecord {
    fn key(diff_id: &Digest, compression: &str) -> String {
        format!("{diff_id} {compression}")
    }

    /// The recorded `(digest, size)` for this layer and compression.
    pub fn get(&self, diff_id: &Digest, compression: &str) -> Option<(Digest, u64)> {
        let value = self.0.get(&Self::key(diff_id, compression))?;
        let (digest, size) = value.split_once(' ')?;
        Some((
            crate::digest::parse_sha256(digest).ok()?,
            size.parse().ok()?,
        ))
    }

    /// Remember a blob.
    pub fn insert(&mut self, diff_id: &Digest, compression: &str, blob: &Digest, size: u64) {
        self.0
            .insert(Self::key(diff_id, compression), format!("{blob} {size}"));
    }
}
