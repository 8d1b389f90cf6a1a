//! Compressed blocks shared by the responses of one reproduced blob.
//!
//! Fleet pulls ask for the same layers at about the same time. A pgzip
//! block depends only on its input and the previous block's tail, so when
//! several responses rebuild one blob, each block is compressed by the
//! first response to reach it and copied by the others (which wait for it
//! while it is being made). Each response still rebuilds its own tar,
//! proven by the diff_id, and is proven by the blob's digest: a copied
//! block is never trusted, only saved work. Blocks are kept up to a memory
//! budget, oldest out first; a blob whose proof failed loses its blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cfs_encoders::klauspost::{BlockClaim, Claim, SharedBlocks};

use crate::lock;

/// Compressed bytes kept for later responses, all blobs together.
pub(crate) const BUDGET: usize = 32 << 20;
/// How long a response waits for another's block before making it itself
/// (a stalled maker must not stall everyone).
const WAIT: Duration = Duration::from_secs(30);

/// A block of one blob: the blob's digest and the block's number.
type Key = (Arc<str>, u64);

enum Slot {
    /// A response is compressing it.
    Making,
    /// Compressed.
    Ready(Arc<[u8]>),
}

#[derive(Default)]
struct State {
    slots: HashMap<Key, Slot>,
    /// Ready blocks, oldest first, for eviction.
    order: VecDeque<Key>,
    bytes: usize,
}

/// The server's shared blocks (see the module doc).
pub(crate) struct BlockCache {
    state: Mutex<State>,
    changed: Condvar,
    budget: usize,
}

impl BlockCache {
    /// An empty cache keeping up to `budget` bytes.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(BlockCache {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            budget,
        })
    }

    /// The blocks of the blob `digest`, for one response's encoder.
    pub fn blob(self: &Arc<Self>, digest: &str) -> Arc<BlobBlocks> {
        Arc::new(BlobBlocks {
            cache: self.clone(),
            blob: Arc::from(digest),
            made: AtomicU64::new(0),
            copied: AtomicU64::new(0),
        })
    }

    /// Drop every block of `digest` (its proof failed).
    pub fn forget(&self, digest: &str) {
        let mut state = lock(&self.state);
        let State {
            slots,
            order,
            bytes,
        } = &mut *state;
        order.retain(|key| {
            if &*key.0 != digest {
                return true;
            }
            if let Some(Slot::Ready(b)) = slots.remove(key) {
                *bytes -= b.len();
            }
            false
        });
    }

    /// Bytes kept now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    fn claim(self: &Arc<Self>, key: Key) -> Claim {
        let mut state = lock(&self.state);
        loop {
            match state.slots.get(&key) {
                Some(Slot::Ready(b)) => return Claim::Ready(b.clone()),
                Some(Slot::Making) => {
                    let (next, waited) = self
                        .changed
                        .wait_timeout(state, WAIT)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    state = next;
                    if waited.timed_out() {
                        // Made here too; whichever finishes first is kept.
                        return Claim::Mine(Box::new(Making {
                            cache: self.clone(),
                            key: Some(key),
                        }));
                    }
                }
                None => {
                    state.slots.insert(key.clone(), Slot::Making);
                    return Claim::Mine(Box::new(Making {
                        cache: self.clone(),
                        key: Some(key),
                    }));
                }
            }
        }
    }

    fn fulfil(&self, key: Key, compressed: &[u8]) {
        let mut state = lock(&self.state);
        if let Some(Slot::Ready(_)) = state.slots.get(&key) {
            return;
        }
        state.bytes += compressed.len();
        state
            .slots
            .insert(key.clone(), Slot::Ready(compressed.into()));
        state.order.push_back(key);
        while state.bytes > self.budget {
            let Some(old) = state.order.pop_front() else {
                break;
            };
            if let Some(Slot::Ready(b)) = state.slots.remove(&old) {
                state.bytes -= b.len();
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    fn abandon(&self, key: &Key) {
        let mut state = lock(&self.state);
        if let Some(Slot::Making) = state.slots.get(key) {
            state.slots.remove(key);
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// One response's view of a blob's blocks.
pub(crate) struct BlobBlocks {
    cache: Arc<BlockCache>,
    blob: Arc<str>,
    made: AtomicU64,
    copied: AtomicU64,
}

impl BlobBlocks {
    /// Blocks this response was given to compress, and blocks it copied.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.made.load(Ordering::Relaxed),
            self.copied.load(Ordering::Relaxed),
        )
    }
}

impl SharedBlocks for BlobBlocks {
    fn claim(&self, seq: u64) -> Claim {
        let claim = self.cache.claim((self.blob.clone(), seq));
        let counter = match claim {
            Claim::Ready(_) => &self.copied,
            Claim::Mine(_) => &self.made,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        claim
    }
}

/// A response's duty to make a block; dropped unfulfilled (the response
/// ended), it lets a waiting response make the block instead.
struct Making {
    cache: Arc<BlockCache>,
    key: Option<Key>,
}

impl BlockClaim for Making {
    fn fulfil(mut self: Box<Self>, compressed: &[u8]) {
        if let Some(key) = self.key.take() {
            self.cache.fulfil(key, compressed);
        }
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.abandon(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(c: Claim) -> Option<Vec<u8>> {
        match c {
            Claim::Ready(b) => Some(b.to_vec()),
            Claim::Mine(_) => None,
        }
    }

    #[test]
    fn the_first_makes_the_others_copy() {
        let cache = BlockCache::new(1 << 20);
        let a = cache.blob("sha256:a");
        let Claim::Mine(claim) = a.claim(0) else {
            panic!("nobody made block 0 yet")
        };
        // A second response waits for the maker, then copies.
        let waiter = {
            let b = cache.blob("sha256:a");
            std::thread::spawn(move || ready(b.claim(0)))
        };
        std::thread::sleep(Duration::from_millis(50));
        claim.fulfil(b"block zero");
        assert_eq!(waiter.join().unwrap().as_deref(), Some(&b"block zero"[..]));
        // Another blob's block 0 is its own.
        let b = cache.blob("sha256:b");
        assert!(ready(b.claim(0)).is_none());
        assert_eq!((a.counts(), b.counts()), ((1, 0), (1, 0)));
    }

    #[test]
    fn an_abandoned_claim_passes_to_a_waiter() {
        let cache = BlockCache::new(1 << 20);
        let a = cache.blob("sha256:a");
        let Claim::Mine(claim) = a.claim(3) else {
            panic!("nobody made block 3 yet")
        };
        let waiter = {
            let b = cache.blob("sha256:a");
            std::thread::spawn(move || match b.claim(3) {
                Claim::Mine(c) => {
                    c.fulfil(b"made by the waiter");
                    true
                }
                Claim::Ready(_) => false,
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(claim);
        assert!(waiter.join().unwrap(), "the waiter made it");
        assert_eq!(
            ready(a.claim(3)).as_deref(),
            Some(&b"made by the waiter"[..])
        );
    }

    #[test]
    fn the_budget_evicts_the_oldest_and_forget_empties_a_blob() {
        let cache = BlockCache::new(10);
        let a = cache.blob("sha256:a");
        for seq in 0..4 {
            let Claim::Mine(c) = a.claim(seq) else {
                panic!("new block")
            };
            c.fulfil(&[seq as u8; 4]);
        }
        // 16 bytes made, 10 kept: blocks 2 and 3.
        assert_eq!(cache.bytes(), 8);
        assert!(ready(a.claim(3)).is_some());
        let Claim::Mine(_) = a.claim(0) else {
            panic!("block 0 was evicted")
        };
        let b = cache.blob("sha256:b");
        let Claim::Mine(c) = b.claim(0) else {
            panic!("new block")
        };
        c.fulfil(b"b");
        cache.forget("sha256:a");
        assert_eq!(cache.bytes(), 1);
        assert!(ready(b.claim(0)).is_some());
    }
}
