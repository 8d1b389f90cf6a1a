//! Level 1 (`BestSpeed`), ported from Go 1.19 `compress/flate`:
//! `deflatefast.go` (the Snappy-style LZ77 encoder, Copyright 2016 The Go
//! Authors) and the `fillStore`/`encSpeed` steps of `deflate.go`. Go 1.15 to
//! 1.26 have the same code (only `clear()` for zeroing loops and comments
//! differ); Go 1.27 replaced the package and writes other bytes. Go releases
//! without the fix for golang.org/issue/41420 (Go 1.16, 2020-09) rebased
//! their offsets by `maxMatchOffset` instead of `maxMatchOffset + 1`, so
//! their output (then sometimes corrupt) differs after about 2 GiB of input.
//!
//! Go collects input in a window of `maxStoreBlockSize` (65535) bytes and
//! encodes it only when it is full (or at `Close`), so every block is exactly
//! 65535 input bytes whatever the sizes of the writes that filled it: the
//! output does not depend on how the caller splits its input, and this
//! writer needs no rule like level 6's window shift. Only `Flush` would cut
//! a block short; this port never emits one.

use super::bitwriter::{match_token, BitWriter, END_BLOCK_MARKER, MAX_STORE_BLOCK_SIZE};

const TABLE_BITS: u32 = 14;
const TABLE_SIZE: usize = 1 << TABLE_BITS;
const TABLE_MASK: u32 = (TABLE_SIZE as u32) - 1;
const TABLE_SHIFT: u32 = 32 - TABLE_BITS;
const MAX_MATCH_OFFSET: i32 = 1 << 15;
const MAX_MATCH_LENGTH: i32 = 258;
const BASE_MATCH_LENGTH: i32 = 3;
const BASE_MATCH_OFFSET: i32 = 1;
/// `e.cur` at which Go rebases the table offsets so they stay in an `int32`.
const BUFFER_RESET: i32 = i32::MAX - 2 * MAX_STORE_BLOCK_SIZE as i32;
const INPUT_MARGIN: usize = 16 - 1;
const MIN_NON_LITERAL_BLOCK_SIZE: usize = 1 + 1 + INPUT_MARGIN;

#[inline(always)]
fn load32(b: &[u8], i: i32) -> u32 {
    let i = i as usize;
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[inline(always)]
fn load64(b: &[u8], i: i32) -> u64 {
    let i = i as usize;
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn hash(u: u32) -> u32 {
    u.wrapping_mul(0x1e35a7bd) >> TABLE_SHIFT
}

/// Length of the common prefix of `a` and `b` (which are equally long).
#[inline(always)]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let mut x = [0u8; 8];
        let mut y = [0u8; 8];
        x.copy_from_slice(&a[i..i + 8]);
        y.copy_from_slice(&b[i..i + 8]);
        let d = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if d != 0 {
            return i + (d.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

#[derive(Clone, Copy, Default)]
struct TableEntry {
    /// The four bytes at `offset`.
    val: u32,
    /// Position plus `cur` at the time of insertion.
    offset: i32,
}

/// Go's `deflateFast`: the hash table and the previous block, which matches
/// may reach into.
struct DeflateFast {
    table: Box<[TableEntry]>,
    prev: Vec<u8>,
    cur: i32,
}

impl DeflateFast {
    fn new() -> Self {
        DeflateFast {
            table: vec![TableEntry::default(); TABLE_SIZE].into_boxed_slice(),
            prev: Vec::with_capacity(MAX_STORE_BLOCK_SIZE),
            cur: MAX_STORE_BLOCK_SIZE as i32,
        }
    }

    #[inline(always)]
    fn slot(h: u32) -> usize {
        (h & TABLE_MASK) as usize
    }

    /// Go's `encode`: appends the tokens of `src` to `dst`.
    fn encode(&mut self, dst: &mut Vec<u32>, src: &[u8]) {
        if self.cur >= BUFFER_RESET {
            self.shift_offsets();
        }
        if src.len() < MIN_NON_LITERAL_BLOCK_SIZE {
            self.cur += MAX_STORE_BLOCK_SIZE as i32;
            self.prev.clear();
            dst.extend(src.iter().map(|&b| u32::from(b)));
            return;
        }
        let s_limit = (src.len() - INPUT_MARGIN) as i32;
        let mut next_emit: i32 = 0;
        let mut s: i32 = 0;
        let mut cv = load32(src, s);
        let mut next_hash = hash(cv);

        'outer: loop {
            // Snappy's skipping: after 32 bytes without a match, look at
            // every second byte, after 32 more at every third, and so on.
            let mut skip: i32 = 32;
            let mut next_s = s;
            let mut candidate;
            loop {
                s = next_s;
                let step = skip >> 5;
                next_s = s + step;
                skip += step;
                if next_s > s_limit {
                    break 'outer;
                }
                candidate = self.table[Self::slot(next_hash)];
                let now = load32(src, next_s);
                self.table[Self::slot(next_hash)] = TableEntry {
                    offset: s + self.cur,
                    val: cv,
                };
                next_hash = hash(now);
                let offset = s - (candidate.offset - self.cur);
                if offset > MAX_MATCH_OFFSET || cv != candidate.val {
                    cv = now;
                    continue;
                }
                break;
            }
            dst.extend(
                src[next_emit as usize..s as usize]
                    .iter()
                    .map(|&b| u32::from(b)),
            );

            loop {
                // A 4-byte match at `s`; extend it.
                s += 4;
                let t = candidate.offset - self.cur + 4;
                let l = self.match_len(s, t, src);
                dst.push(match_token(
                    (l + 4 - BASE_MATCH_LENGTH) as u32,
                    (s - t - BASE_MATCH_OFFSET) as u32,
                ));
                s += l;
                next_emit = s;
                if s >= s_limit {
                    break 'outer;
                }
                // Hash s-1 and s, and test s for an immediate next match.
                let mut x = load64(src, s - 1);
                let prev_hash = hash(x as u32);
                self.table[Self::slot(prev_hash)] = TableEntry {
                    offset: self.cur + s - 1,
                    val: x as u32,
                };
                x >>= 8;
                let curr_hash = hash(x as u32);
                candidate = self.table[Self::slot(curr_hash)];
                self.table[Self::slot(curr_hash)] = TableEntry {
                    offset: self.cur + s,
                    val: x as u32,
                };
                let offset = s - (candidate.offset - self.cur);
                if offset > MAX_MATCH_OFFSET || x as u32 != candidate.val {
                    cv = (x >> 8) as u32;
                    next_hash = hash(cv);
                    s += 1;
                    break;
                }
            }
        }

        if (next_emit as usize) < src.len() {
            dst.extend(src[next_emit as usize..].iter().map(|&b| u32::from(b)));
        }
        self.cur += src.len() as i32;
        self.prev.clear();
        self.prev.extend_from_slice(src);
    }

    /// Go's `matchLen`: how far `src[s..]` repeats `src[t..]`, at most up to
    /// a 258-byte match; a negative `t` starts in the previous block.
    fn match_len(&self, s: i32, t: i32, src: &[u8]) -> i32 {
        let s = s as usize;
        let s1 = (s + (MAX_MATCH_LENGTH - 4) as usize).min(src.len());
        let a = &src[s..s1];
        if t >= 0 {
            let t = t as usize;
            return common_prefix(a, &src[t..t + a.len()]) as i32;
        }
        let tp = self.prev.len() as i32 + t;
        if tp < 0 {
            return 0;
        }
        let b = &self.prev[tp as usize..];
        let b = &b[..b.len().min(a.len())];
        let n = common_prefix(&a[..b.len()], b);
        if n < b.len() {
            return n as i32;
        }
        if s + n == s1 {
            return n as i32;
        }
        // The match runs off the end of the previous block into this one.
        let a = &src[s + n..s1];
        (common_prefix(a, &src[..a.len()]) + n) as i32
    }

    /// Go's `reset`: forget the history (after a block that was not encoded
    /// by [`Self::encode`]).
    fn reset(&mut self) {
        self.prev.clear();
        self.cur += MAX_MATCH_OFFSET;
        if self.cur >= BUFFER_RESET {
            self.shift_offsets();
        }
    }

    /// Go's `shiftOffsets` (as fixed by golang.org/issue/41420): rebases
    /// `cur` to `MAX_MATCH_OFFSET + 1` after about 2 GiB of input.
    fn shift_offsets(&mut self) {
        if self.prev.is_empty() {
            self.table.fill(TableEntry::default());
            self.cur = MAX_MATCH_OFFSET + 1;
            return;
        }
        let cur = self.cur;
        for e in self.table.iter_mut() {
            e.offset = (e.offset - cur + MAX_MATCH_OFFSET + 1).max(0);
        }
        self.cur = MAX_MATCH_OFFSET + 1;
    }
}

/// Go's `compressor` at `BestSpeed`: `fillStore` plus `encSpeed`.
pub(super) struct FastCompressor {
    pub(super) w: BitWriter,
    window: Box<[u8]>,
    window_end: usize,
    fast: DeflateFast,
    tokens: Vec<u32>,
}

impl FastCompressor {
    pub(super) fn new() -> Self {
        FastCompressor {
            w: BitWriter::new(),
            window: vec![0; MAX_STORE_BLOCK_SIZE].into_boxed_slice(),
            window_end: 0,
            fast: DeflateFast::new(),
            tokens: Vec::with_capacity(MAX_STORE_BLOCK_SIZE + 1),
        }
    }

    /// Consumes input; encodes each window as it fills up.
    pub(super) fn write(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.window_end == MAX_STORE_BLOCK_SIZE {
                self.enc_speed(false);
            }
            let n = b.len().min(MAX_STORE_BLOCK_SIZE - self.window_end);
            self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
            self.window_end += n;
            b = &b[n..];
        }
    }

    /// Go's `close` up to the trailer: the last block, then an empty final
    /// stored block, byte-aligned.
    pub(super) fn close(&mut self) {
        self.enc_speed(true);
        self.w.write_stored_header(0, true);
        self.w.flush();
    }

    /// Go's `encSpeed`.
    fn enc_speed(&mut self, sync: bool) {
        let n = self.window_end;
        if n < MAX_STORE_BLOCK_SIZE {
            if !sync {
                return;
            }
            if n < 128 {
                match n {
                    0 => return,
                    1..=16 => {
                        self.w.write_stored_header(n, false);
                        self.w.write_bytes(&self.window[..n]);
                    }
                    _ => self.w.write_block_huff(false, &self.window[..n]),
                }
                self.window_end = 0;
                self.fast.reset();
                return;
            }
        }
        self.tokens.clear();
        self.fast.encode(&mut self.tokens, &self.window[..n]);
        // Less than a sixteenth removed: Huffman-code the bytes instead.
        if self.tokens.len() > n - (n >> 4) {
            self.w.write_block_huff(false, &self.window[..n]);
        } else {
            self.tokens.push(END_BLOCK_MARKER);
            self.w
                .write_block_dynamic(&self.tokens, false, &self.window[..n]);
        }
        self.window_end = 0;
    }
}
