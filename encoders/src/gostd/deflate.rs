//! The LZ77 stage, ported from Go 1.19 `compress/flate/deflate.go`: the
//! `deflate` step (hash chains, lazy matching) that levels 2 to 9 share, with
//! the parameters of level 6 (`DefaultCompression`) or 9 (`BestCompression`).
//!
//! Go's window is `2 * WINDOW_SIZE` bytes. A write that finds the processed
//! position at `2 * WINDOW_SIZE - MIN_LOOKAHEAD` or beyond first shifts the
//! upper half down, and after a shift matches cannot reach back past the
//! window start. A write that leaves the window a few bytes short of full lets
//! Go stop one token early and shift there instead, so in rare cases Go's
//! output depends on its callers' write sizes. [`Compressor::write`] steps
//! only on a full window: the output is Go's for 32 KiB `io.Copy` writes or a
//! single write, whatever sizes reach this writer.

use super::bitwriter::{match_token, BitWriter, END_BLOCK_MARKER};

const LOG_WINDOW_SIZE: usize = 15;
const WINDOW_SIZE: usize = 1 << LOG_WINDOW_SIZE;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;
const MIN_MATCH_LENGTH: usize = 4;
const MAX_MATCH_LENGTH: usize = 258;
const BASE_MATCH_LENGTH: usize = 3;
const BASE_MATCH_OFFSET: usize = 1;
/// Go stops a step when fewer bytes than this are left unprocessed.
const MIN_LOOKAHEAD: usize = MIN_MATCH_LENGTH + MAX_MATCH_LENGTH;
const MAX_FLATE_BLOCK_TOKENS: usize = 1 << 14;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;
const MAX_HASH_OFFSET: i64 = 1 << 24;
const HASH_MUL: u32 = 0x1e35a7bd;

/// One row of Go's `levels` table (levels 4 to 9, whose `fastSkipHashing`
/// is `skipNever`: lazy matching).
#[derive(Clone, Copy, Debug)]
pub(super) struct Params {
    /// A previous match this long quarters the chain searched (never the
    /// case here: Go always passes `minMatchLength - 1`).
    good: usize,
    /// No lazy search after a match this long.
    lazy: usize,
    /// A match this long ends the search.
    nice: usize,
    /// Chain entries tried.
    chain: usize,
}

/// Level 6, `DefaultCompression`.
pub(super) const LEVEL_6: Params = Params {
    good: 8,
    lazy: 16,
    nice: 128,
    chain: 128,
};

/// Level 9, `BestCompression`.
pub(super) const LEVEL_9: Params = Params {
    good: 32,
    lazy: 258,
    nice: 258,
    chain: 4096,
};

/// `blockStart` after the bytes of the open block were shifted out of the
/// window (Go's `math.MaxInt32`): such a block can no longer be stored raw.
const BLOCK_START_GONE: usize = usize::MAX;

#[inline(always)]
fn hash4(b: &[u8]) -> u32 {
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    v.wrapping_mul(HASH_MUL) >> (32 - HASH_BITS)
}

/// Length of the common prefix of `a` and `b`, at most `max`; both hold at
/// least `max` bytes.
#[inline(always)]
fn match_len(a: &[u8], b: &[u8], max: usize) -> usize {
    let a = &a[..max];
    let b = &b[..max];
    let mut i = 0;
    while i + 8 <= max {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let d = x ^ y;
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < max {
        if a[i] != b[i] {
            return i;
        }
        i += 1;
    }
    max
}

/// A zeroed heap array; fixed sizes let masked indexes skip bounds checks.
fn boxed_zeroes<T: Copy + Default, const N: usize>() -> Box<[T; N]> {
    match vec![T::default(); N].into_boxed_slice().try_into() {
        Ok(a) => a,
        Err(_) => unreachable!("a vec of N elements converts to [T; N]"),
    }
}

/// Go's `compressor` restricted to the `deflate` step.
pub(super) struct Compressor {
    pub(super) w: BitWriter,
    params: Params,
    window: Box<[u8; 2 * WINDOW_SIZE]>,
    hash_head: Box<[u32; HASH_SIZE]>,
    hash_prev: Box<[u32; WINDOW_SIZE]>,
    /// Added to window positions before they enter the hash tables, so the
    /// tables survive window shifts (0 means "empty", hence the start at 1).
    hash_offset: i64,
    chain_head: i64,
    index: usize,
    window_end: usize,
    block_start: usize,
    /// Whether `window[index-1]` still awaits its literal-or-match decision.
    byte_available: bool,
    tokens: Vec<u32>,
    length: usize,
    offset: usize,
    max_insert_index: usize,
}

impl Compressor {
    pub(super) fn new(params: Params) -> Self {
        Compressor {
            w: BitWriter::new(),
            params,
            window: boxed_zeroes(),
            hash_head: boxed_zeroes(),
            hash_prev: boxed_zeroes(),
            hash_offset: 1,
            chain_head: -1,
            index: 0,
            window_end: 0,
            block_start: 0,
            byte_available: false,
            tokens: Vec::with_capacity(MAX_FLATE_BLOCK_TOKENS + 1),
            length: MIN_MATCH_LENGTH - 1,
            offset: 0,
            max_insert_index: 0,
        }
    }

    /// Consumes input; may produce output in `self.w.out`. Steps only when the
    /// window is full and more input is waiting, as Go does with big writes.
    pub(super) fn write(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.window_end == self.window.len() {
                self.deflate(false);
            }
            let n = self.fill(b);
            b = &b[n..];
        }
    }

    /// Go's `close` up to the trailer: the last data block, then an empty
    /// final stored block, byte-aligned.
    pub(super) fn close(&mut self) {
        self.deflate(true);
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    /// Go's `fillDeflate`.
    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW_SIZE - MIN_LOOKAHEAD {
            self.window.copy_within(WINDOW_SIZE..2 * WINDOW_SIZE, 0);
            self.index -= WINDOW_SIZE;
            self.window_end -= WINDOW_SIZE;
            if self.block_start >= WINDOW_SIZE && self.block_start != BLOCK_START_GONE {
                self.block_start -= WINDOW_SIZE;
            } else {
                self.block_start = BLOCK_START_GONE;
            }
            self.hash_offset += WINDOW_SIZE as i64;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta;
                let rebase = |v: &mut u32| {
                    *v = if i64::from(*v) > delta {
                        (i64::from(*v) - delta) as u32
                    } else {
                        0
                    };
                };
                self.hash_prev.iter_mut().for_each(rebase);
                self.hash_head.iter_mut().for_each(rebase);
            }
        }
        let n = b.len().min(self.window.len() - self.window_end);
        self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
        self.window_end += n;
        n
    }

    /// Go's `compressor.writeBlock`: emits the queued tokens as one block.
    fn write_block(&mut self, index: usize) {
        if index > 0 {
            let input = if self.block_start <= index {
                Some(&self.window[self.block_start..index])
            } else {
                None
            };
            self.block_start = index;
            self.tokens.push(END_BLOCK_MARKER);
            self.w.write_block(&self.tokens, false, input);
        }
        self.tokens.clear();
    }

    #[inline(always)]
    fn insert(&mut self, index: usize) -> u32 {
        let hash = (hash4(&self.window[index..index + MIN_MATCH_LENGTH]) & HASH_MASK) as usize;
        let prev = self.hash_head[hash];
        self.hash_prev[index & WINDOW_MASK] = prev;
        self.hash_head[hash] = (index as i64 + self.hash_offset) as u32;
        prev
    }

    /// Go's `findMatch` with `prevLength` = 3 (the only value Go passes).
    /// Returns (length, offset), length 0 when nothing qualifies.
    fn find_match(&self, pos: usize, prev_head: i64, lookahead: usize) -> (usize, usize) {
        let min_match_look = MAX_MATCH_LENGTH.min(lookahead);
        let win = &self.window[..pos + min_match_look];
        let nice = self.params.nice.min(min_match_look);
        // Go quarters `tries` when the previous length is at least `good`;
        // it always passes 3, below every level's `good`.
        let mut tries = self.params.chain;
        let mut length = MIN_MATCH_LENGTH - 1;
        debug_assert!(length < self.params.good);
        let (mut best_len, mut best_off) = (0, 0);
        let mut w_end = win[pos + length];
        let w_pos = &win[pos..];
        let min_index = pos as i64 - WINDOW_SIZE as i64;
        let mut i = prev_head;
        while tries > 0 {
            let iu = i as usize;
            if w_end == win[iu + length] {
                let n = match_len(&win[iu..], w_pos, min_match_look);
                if n > length && (n > MIN_MATCH_LENGTH || pos - iu <= 4096) {
                    length = n;
                    best_len = n;
                    best_off = pos - iu;
                    if n >= nice {
                        break;
                    }
                    w_end = win[pos + n];
                }
            }
            if i == min_index {
                // hash_prev[i & WINDOW_MASK] already belongs to `pos`.
                break;
            }
            i = i64::from(self.hash_prev[iu & WINDOW_MASK]) - self.hash_offset;
            if i < min_index || i < 0 {
                break;
            }
            tries -= 1;
        }
        (best_len, best_off)
    }

    /// Go's `deflate` for levels 4 to 9 (lazy matching, `fastSkipHashing`
    /// never).
    fn deflate(&mut self, sync: bool) {
        if self.window_end - self.index < MIN_LOOKAHEAD && !sync {
            return;
        }
        self.max_insert_index = self.window_end.saturating_sub(MIN_MATCH_LENGTH - 1);
        // Go's maxInsertIndex may be negative; saturating to 0 keeps every
        // `index < max_insert_index` test false in exactly the same cases.

        loop {
            let lookahead = self.window_end - self.index;
            if lookahead < MIN_LOOKAHEAD {
                if !sync {
                    break;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens.push(u32::from(self.window[self.index - 1]));
                        self.byte_available = false;
                    }
                    if !self.tokens.is_empty() {
                        self.write_block(self.index);
                    }
                    break;
                }
            }
            if self.index < self.max_insert_index {
                self.chain_head = i64::from(self.insert(self.index));
            }
            let prev_length = self.length;
            let prev_offset = self.offset;
            self.length = MIN_MATCH_LENGTH - 1;
            self.offset = 0;
            let min_index = self.index.saturating_sub(WINDOW_SIZE) as i64;

            if self.chain_head - self.hash_offset >= min_index
                && lookahead > prev_length
                && prev_length < self.params.lazy
            {
                let (l, o) =
                    self.find_match(self.index, self.chain_head - self.hash_offset, lookahead);
                if l > 0 {
                    self.length = l;
                    self.offset = o;
                }
            }
            if prev_length >= MIN_MATCH_LENGTH && self.length <= prev_length {
                // The previous position's match wins over this one.
                self.tokens.push(match_token(
                    (prev_length - BASE_MATCH_LENGTH) as u32,
                    (prev_offset - BASE_MATCH_OFFSET) as u32,
                ));
                let new_index = self.index + prev_length - 1;
                let mut index = self.index + 1;
                while index < new_index {
                    if index < self.max_insert_index {
                        self.insert(index);
                    }
                    index += 1;
                }
                self.index = index;
                self.byte_available = false;
                self.length = MIN_MATCH_LENGTH - 1;
                if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            } else {
                if self.byte_available {
                    let i = self.index - 1;
                    self.tokens.push(u32::from(self.window[i]));
                    if self.tokens.len() == MAX_FLATE_BLOCK_TOKENS {
                        self.write_block(i + 1);
                    }
                }
                self.index += 1;
                self.byte_available = true;
            }
        }
    }
}
