//! The level-5 compressor glue (klauspost/compress `flate/deflate.go`:
//! `ResetDict`, `fillWindow`, `write`, `storeFast`, `syncFlush`, `close`) for
//! the fixed call sequence pgzip makes per block.

use super::bitwriter::BitWriter;
use super::level5::{FastEncL5, TABLE_SIZE, TABLE_SIZE_1_10_1};
use super::token::{Tokens, MAX_STORE_BLOCK_SIZE};
use super::Version;

/// Longest dictionary the fast encoders use (`maxMatchOffset`).
const MAX_DICT: usize = 1 << 15;

/// The level-5 match finder with the hash table size of its version.
enum Encoder {
    Small(FastEncL5<TABLE_SIZE>),
    Large(Box<FastEncL5<TABLE_SIZE_1_10_1>>),
}

impl Encoder {
    fn reset(&mut self) {
        match self {
            Encoder::Small(e) => e.reset(),
            Encoder::Large(e) => e.reset(),
        }
    }

    fn encode(&mut self, dst: &mut Tokens, src: &[u8]) {
        match self {
            Encoder::Small(e) => e.encode(dst, src),
            Encoder::Large(e) => e.encode(dst, src),
        }
    }
}

/// One reusable level-5 flate writer (pgzip pools these; reuse does not
/// change output because `reset` puts every old table entry out of reach).
pub(super) struct Compressor {
    enc: Encoder,
    /// klauspost ≤ 1.10.0 never fills the window with the dictionary.
    ignores_dict: bool,
    tokens: Tokens,
    w: BitWriter,
}

impl Compressor {
    pub fn new(version: Version) -> Self {
        Compressor {
            ignores_dict: version <= Version::V1_9_8,
            enc: if version >= Version::V1_10_2 {
                Encoder::Small(FastEncL5::new(version))
            } else {
                Encoder::Large(Box::new(FastEncL5::new(version)))
            },
            tokens: Tokens::new(version),
            w: BitWriter::new(version),
        }
    }

    /// What pgzip's `compressBlock` writes for `data`: `ResetDict(dict)`,
    /// `Write(data)`, `Flush()`, and `Close()` when `last`. The output is
    /// appended to `out`, which is returned.
    pub fn compress_block(
        &mut self,
        dict: &[u8],
        data: &[u8],
        last: bool,
        out: Vec<u8>,
    ) -> Vec<u8> {
        self.w.reset();
        self.w.bw.out = out;
        // Stored blocks bound the output; reserving once keeps the bit writer's
        // appends from reallocating.
        self.w.bw.out.reserve(data.len() + data.len() / 64 + 1024);
        self.enc.reset();
        self.tokens.reset();

        let dict = if self.ignores_dict {
            &[]
        } else {
            &dict[dict.len().saturating_sub(MAX_DICT)..]
        };
        self.enc.encode(&mut self.tokens, dict);
        self.tokens.reset();

        // `write` hands a full 65535-byte window to `storeFast` only when more
        // input arrives, so every chunk but the last is encoded without sync
        // and the last one (full or not) by the flush.
        let mut rest = data;
        while rest.len() > MAX_STORE_BLOCK_SIZE {
            let (chunk, tail) = rest.split_at(MAX_STORE_BLOCK_SIZE);
            self.store_fast(chunk, false);
            rest = tail;
        }
        self.store_fast(rest, true);
        self.w.write_stored_header(0, false);
        self.w.flush();
        if last {
            self.w.write_stored_header(0, true);
            self.w.flush();
        }
        std::mem::take(&mut self.w.bw.out)
    }

    fn store_fast(&mut self, window: &[u8], sync: bool) {
        let len = window.len();
        if len < MAX_STORE_BLOCK_SIZE {
            if !sync {
                return;
            }
            if len < 128 {
                if len == 0 {
                    return;
                }
                if len <= 32 {
                    self.w.write_stored_header(len, false);
                    self.w.write_bytes(window);
                } else {
                    self.w.write_block_huff(false, window, true);
                }
                self.tokens.reset();
                self.enc.reset();
                return;
            }
        }
        self.enc.encode(&mut self.tokens, window);
        if self.tokens.n() == 0 {
            self.w.write_stored_header(len, false);
            self.w.write_bytes(window);
        } else if self.tokens.n() > len - (len >> 4) {
            // Matches removed less than 1/16 of the literals.
            self.w.write_block_huff(false, window, sync);
        } else {
            self.w
                .write_block_dynamic(&mut self.tokens, false, window, sync);
        }
        self.tokens.reset();
    }
}
