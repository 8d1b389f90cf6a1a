//! The LZ77 stage: a port of zlib 1.3.2 `deflate.c` (`fill_window`'s window
//! slide, `longest_match`, `deflate_fast`, `deflate_slow`), zlib license,
//! Copyright (C) 1995-2024 Jean-loup Gailly and Mark Adler, made
//! configurable by [`Params`].

use super::block::{BlockParams, Blocks};

/// Window size (32 KiB, window bits 15).
pub(crate) const WSIZE: usize = 1 << 15;
const WMASK: usize = WSIZE - 1;
/// The window buffer holds two windows.
pub(crate) const WINDOW_SIZE: usize = 2 * WSIZE;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Lookahead needed except at the end of the input.
pub(crate) const MIN_LOOKAHEAD: usize = MAX_MATCH + MIN_MATCH + 1;
const MAX_DIST: usize = WSIZE - MIN_LOOKAHEAD;
/// Matches of length 3 are discarded if their distance exceeds TOO_FAR.
const TOO_FAR: usize = 4096;

/// The knobs that distinguish zlib's deflate from GNU gzip's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// log2 of the hash table size (zlib: memLevel + 7).
    pub hash_bits: u32,
    /// Reduce the lazy search above this match length.
    pub good: usize,
    /// Do not lazy-search above this length (deflate_fast: max insert length).
    pub lazy: usize,
    /// Stop searching above this match length.
    pub nice: usize,
    /// Maximum hash chain length searched.
    pub chain: usize,
    /// Use `deflate_fast` (zlib levels 1 to 3) instead of `deflate_slow`.
    pub fast: bool,
    /// zlib: stop searching once a match reaches the end of the input
    /// (`nice` clamped to the lookahead). gzip searches on, comparing the
    /// stale window bytes after the end, and may pick an older match.
    pub clamp_nice: bool,
    /// zlib: keep sliding the window while the input's last bytes are
    /// compressed. gzip stops sliding at the end of input and so finds no
    /// match for strings starting in the window's last 261 bytes.
    pub slide_at_end: bool,
    /// gzip: zero the two window bytes after the end of the input.
    pub zero_after_end: bool,
    /// zlib: insert no string that runs past the end of the input (no effect
    /// on the output: only the last two positions differ).
    pub insert_guard: bool,
    /// Symbol buffer size, early-flush mask and level.
    pub(crate) block: BlockParams,
}

impl Params {
    /// madler zlib at `level` (1..=9) with memLevel `mem_level` (raw deflate,
    /// default strategy).
    pub fn zlib(level: u8, mem_level: u32) -> Params {
        let (good, lazy, nice, chain) = config(level);
        Params {
            hash_bits: mem_level + 7,
            good,
            lazy,
            nice,
            chain,
            fast: level <= 3,
            clamp_nice: true,
            slide_at_end: true,
            zero_after_end: false,
            insert_guard: true,
            block: BlockParams {
                lit_bufsize: 1 << (mem_level + 6),
                truncate_mask: None,
                level,
            },
        }
    }
}

/// zlib's `configuration_table`: (good, lazy, nice, chain) for levels 1..=9.
pub(crate) fn config(level: u8) -> (usize, usize, usize, usize) {
    match level {
        1 => (4, 4, 8, 4),
        2 => (4, 5, 16, 8),
        3 => (4, 6, 32, 32),
        4 => (4, 4, 16, 16),
        5 => (8, 16, 32, 32),
        7 => (8, 32, 128, 256),
        8 => (32, 128, 258, 1024),
        9 => (32, 258, 258, 4096),
        _ => (8, 16, 128, 128),
    }
}

/// Loads 8 window bytes little-endian.
#[inline(always)]
fn load(w: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[i..i + 8]);
    u64::from_le_bytes(b)
}

/// The deflate state of one stream.
pub(crate) struct Deflater {
    p: Params,
    hash_shift: u32,
    hash_mask: usize,
    window: Vec<u8>,
    head: Vec<u16>,
    prev: Box<[u16; WSIZE]>,
    ins_h: usize,
    strstart: usize,
    block_start: i64,
    lookahead: usize,
    match_start: usize,
    match_length: usize,
    prev_length: usize,
    prev_match: usize,
    match_available: bool,
    started: bool,
    eof: bool,
    /// Block and bit output.
    pub blocks: Blocks,
}

impl Deflater {
    /// A fresh stream.
    pub fn new(p: Params) -> Self {
        Deflater {
            p,
            hash_shift: p.hash_bits.div_ceil(3),
            hash_mask: (1 << p.hash_bits) - 1,
            window: vec![0; WINDOW_SIZE + 8],
            head: vec![0; 1 << p.hash_bits],
            prev: Box::new([0; WSIZE]),
            ins_h: 0,
            strstart: 0,
            block_start: 0,
            lookahead: 0,
            match_start: 0,
            match_length: MIN_MATCH - 1,
            prev_length: MIN_MATCH - 1,
            prev_match: 0,
            match_available: false,
            started: false,
            eof: false,
            blocks: Blocks::new(p.block),
        }
    }

    /// Copies as much of `data` as fits into the window and compresses what
    /// can be; returns the number of bytes taken.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let end = self.strstart + self.lookahead;
        let n = data.len().min(WINDOW_SIZE - end);
        self.window[end..end + n].copy_from_slice(&data[..n]);
        self.lookahead += n;
        self.run();
        n
    }

    /// Compresses the rest and writes the final block.
    pub fn finish(&mut self) {
        if self.lookahead < MIN_LOOKAHEAD {
            self.slide_if_needed();
        }
        self.eof = true;
        let end = self.strstart + self.lookahead;
        if self.p.zero_after_end {
            self.window[end..end + MIN_MATCH - 1].fill(0);
        }
        self.run();
        if self.match_available {
            let c = self.window[self.strstart - 1];
            self.blocks.tally_lit(c, self.in_len());
            self.match_available = false;
        }
        self.flush(true);
    }

    fn in_len(&self) -> i64 {
        self.strstart as i64 - self.block_start
    }

    fn flush(&mut self, last: bool) {
        let stored = self.in_len() as u64;
        let buf = if self.block_start >= 0 {
            Some(&self.window[self.block_start as usize..self.strstart])
        } else {
            None
        };
        self.blocks.flush_block(buf, stored, last);
        self.block_start = self.strstart as i64;
    }

    /// Runs the matcher while there is enough lookahead (or input ended).
    fn run(&mut self) {
        loop {
            if self.lookahead < MIN_LOOKAHEAD {
                if !self.eof {
                    if self.strstart + self.lookahead == WINDOW_SIZE {
                        self.slide_if_needed();
                    }
                    return;
                }
                if self.p.slide_at_end {
                    self.slide_if_needed();
                }
            }
            if !self.started {
                self.ins_h = usize::from(self.window[0]);
                self.ins_h = self.update_hash(self.ins_h, self.window[1]);
                self.started = true;
            }
            if self.lookahead == 0 {
                return;
            }
            if self.p.fast {
                self.fast_step();
            } else {
                self.slow_step();
            }
        }
    }

    /// `fill_window`'s slide of the upper window half down.
    fn slide_if_needed(&mut self) {
        if self.strstart < WSIZE + MAX_DIST {
            return;
        }
        self.window.copy_within(WSIZE..WINDOW_SIZE, 0);
        self.match_start = self.match_start.wrapping_sub(WSIZE);
        self.strstart -= WSIZE;
        self.block_start -= WSIZE as i64;
        let slide = |v: &mut u16| *v = v.saturating_sub(WSIZE as u16);
        self.head.iter_mut().for_each(slide);
        self.prev.iter_mut().for_each(slide);
    }

    #[inline(always)]
    fn update_hash(&self, h: usize, c: u8) -> usize {
        ((h << self.hash_shift) ^ usize::from(c)) & self.hash_mask
    }

    /// `INSERT_STRING`: returns the previous head of the chain.
    #[inline(always)]
    fn insert(&mut self, s: usize) -> usize {
        self.ins_h = self.update_hash(self.ins_h, self.window[s + MIN_MATCH - 1]);
        let h = self.head[self.ins_h];
        self.prev[s & WMASK] = h;
        self.head[self.ins_h] = s as u16;
        usize::from(h)
    }

    /// Inserts the string at `strstart`, as the configured end rule allows.
    #[inline(always)]
    fn insert_current(&mut self) -> usize {
        if !self.p.insert_guard || self.lookahead >= MIN_MATCH {
            self.insert(self.strstart)
        } else {
            0
        }
    }

    /// One step of `deflate_slow`.
    fn slow_step(&mut self) {
        let hash_head = self.insert_current();
        self.prev_length = self.match_length;
        self.prev_match = self.match_start;
        self.match_length = MIN_MATCH - 1;
        let s = self.strstart;
        if hash_head != 0
            && self.prev_length < self.p.lazy
            && s - hash_head <= MAX_DIST
            && s <= WINDOW_SIZE - MIN_LOOKAHEAD
        {
            self.match_length = self.longest_match(hash_head);
            if self.match_length == MIN_MATCH && s - self.match_start > TOO_FAR {
                self.match_length = MIN_MATCH - 1;
            }
        }
        if self.prev_length >= MIN_MATCH && self.match_length <= self.prev_length {
            let max_insert = (s + self.lookahead).saturating_sub(MIN_MATCH);
            let plen = self.prev_length;
            let flush = self
                .blocks
                .tally_dist(s - 1 - self.prev_match, plen, self.in_len());
            self.lookahead -= plen - 1;
            for _ in 0..plen - 2 {
                self.strstart += 1;
                if !self.p.insert_guard || self.strstart <= max_insert {
                    self.insert(self.strstart);
                }
            }
            self.match_available = false;
            self.match_length = MIN_MATCH - 1;
            self.strstart += 1;
            if flush {
                self.flush(false);
            }
        } else if self.match_available {
            let c = self.window[s - 1];
            if self.blocks.tally_lit(c, self.in_len()) {
                self.flush(false);
            }
            self.strstart += 1;
            self.lookahead -= 1;
        } else {
            self.match_available = true;
            self.strstart += 1;
            self.lookahead -= 1;
        }
    }

    /// One step of `deflate_fast`.
    fn fast_step(&mut self) {
        let hash_head = self.insert_current();
        let s = self.strstart;
        if hash_head != 0 && s - hash_head <= MAX_DIST && s <= WINDOW_SIZE - MIN_LOOKAHEAD {
            self.match_length = self.longest_match(hash_head);
        }
        let flush;
        if self.match_length >= MIN_MATCH {
            let len = self.match_length;
            flush = self
                .blocks
                .tally_dist(s - self.match_start, len, self.in_len());
            self.lookahead -= len;
            if len <= self.p.lazy && (!self.p.insert_guard || self.lookahead >= MIN_MATCH) {
                for _ in 0..len - 1 {
                    self.strstart += 1;
                    self.insert(self.strstart);
                }
                self.strstart += 1;
            } else {
                self.strstart += len;
                let h = usize::from(self.window[self.strstart]);
                self.ins_h = self.update_hash(h, self.window[self.strstart + 1]);
            }
            self.match_length = 0;
        } else {
            let c = self.window[s];
            flush = self.blocks.tally_lit(c, self.in_len());
            self.lookahead -= 1;
            self.strstart += 1;
        }
        if flush {
            self.flush(false);
        }
    }

    /// `longest_match`: the longest match at `strstart` along the hash chain
    /// from `cur_match`, longer than `prev_length`; sets `match_start`.
    fn longest_match(&mut self, mut cur_match: usize) -> usize {
        let mut chain = self.p.chain;
        let scan = self.strstart;
        let mut best_len = self.prev_length;
        let mut nice = self.p.nice;
        let limit = scan.saturating_sub(MAX_DIST);
        if self.prev_length >= self.p.good {
            chain >>= 2;
        }
        if self.p.clamp_nice && nice > self.lookahead {
            nice = self.lookahead;
        }
        let w = &self.window[..];
        let prev: &[u16; WSIZE] = &self.prev;
        let scan_start = u16::from_le_bytes([w[scan], w[scan + 1]]);
        let mut scan_end = u16::from_le_bytes([w[scan + best_len - 1], w[scan + best_len]]);
        loop {
            let m = cur_match;
            if u16::from_le_bytes([w[m + best_len - 1], w[m + best_len]]) == scan_end
                && u16::from_le_bytes([w[m], w[m + 1]]) == scan_start
            {
                let len = match_len(w, scan, m);
                if len > best_len {
                    self.match_start = m;
                    best_len = len;
                    if len >= nice {
                        break;
                    }
                    scan_end = u16::from_le_bytes([w[scan + best_len - 1], w[scan + best_len]]);
                }
            }
            cur_match = usize::from(prev[cur_match & WMASK]);
            if cur_match <= limit {
                break;
            }
            chain -= 1;
            if chain == 0 {
                break;
            }
        }
        best_len.min(self.lookahead)
    }
}

/// Length of the match at `m` for the string at `scan`, given that bytes 0
/// and 1 are equal; byte 2 is equal by the hash, as zlib assumes.
#[inline(always)]
fn match_len(w: &[u8], scan: usize, m: usize) -> usize {
    let mut i = 3;
    while i < MAX_MATCH {
        let x = load(w, scan + i) ^ load(w, m + i);
        if x != 0 {
            return (i + (x.trailing_zeros() / 8) as usize).min(MAX_MATCH);
        }
        i += 8;
    }
    MAX_MATCH
}
