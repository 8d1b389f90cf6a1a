//! Blocks shared between writers of the same stream.
//!
//! pgzip blocks depend only on their own input and the previous block's
//! tail, so writers producing the same blob (several clients pulling one
//! layer at once) need compress each block only once: a writer first asks
//! the [`SharedBlocks`] for it, and either copies a block another writer
//! made or compresses it and hands it over.

use std::sync::Arc;

/// Where writers of one stream find and leave compressed blocks.
pub trait SharedBlocks: Send + Sync {
    /// Block `seq` of the stream: its bytes when another writer made it
    /// (waiting while one is making it), else a claim to make it.
    fn claim(&self, seq: u64) -> Claim;
}

/// The answer to [`SharedBlocks::claim`].
pub enum Claim {
    /// The block, made by another writer.
    Ready(Arc<[u8]>),
    /// Nobody has it: compress it and [`BlockClaim::fulfil`] the claim.
    /// A claim dropped unfulfilled lets another writer make the block.
    Mine(Box<dyn BlockClaim>),
}

/// The duty to make one block.
pub trait BlockClaim: Send {
    /// The block is `compressed`.
    fn fulfil(self: Box<Self>, compressed: &[u8]);
}
