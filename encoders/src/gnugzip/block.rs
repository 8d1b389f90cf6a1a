//! Block output: a port of zlib 1.3.2 `trees.c` (`_tr_flush_block`,
//! `_tr_stored_block`, `send_all_trees`, `compress_block`,
//! `_tr_tally` with the old `TRUNCATE_BLOCK` heuristic, `init_block`), zlib
//! license, Copyright (C) 1995-2024 Jean-loup Gailly and Mark Adler.

use super::bltree::{build_bl_tree, send_tree};
use super::trees::{
    Heap, Kind, Tables, Tree, BL_ORDER, D_CODES, END_BLOCK, EXTRA_DBITS, EXTRA_LBITS, LITERALS,
};

/// LSB-first bit writer into a byte vector.
pub(crate) struct BitWriter {
    /// Completed output bytes.
    pub out: Vec<u8>,
    bits: u64,
    nbits: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        BitWriter {
            out: Vec::with_capacity(1 << 17),
            bits: 0,
            nbits: 0,
        }
    }

    /// Appends the low `len` bits of `value` (`len` <= 32).
    #[inline]
    pub fn send(&mut self, value: u32, len: u32) {
        self.bits |= u64::from(value) << self.nbits;
        self.nbits += len;
        if self.nbits >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.nbits -= 32;
        }
    }

    /// Pads to a byte boundary with zero bits (`bi_windup`).
    pub fn windup(&mut self) {
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }
}

/// What ends a block early, besides a full symbol buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockParams {
    /// Symbol buffer size: a block is flushed after `lit_bufsize - 1` symbols.
    pub lit_bufsize: usize,
    /// `TRUNCATE_BLOCK`-style check every time `symbols & mask == 0`.
    pub truncate_mask: Option<usize>,
    /// Compression level (the truncate check needs level > 2).
    pub level: u8,
}

/// The symbol buffer, the three dynamic trees and the bit writer.
pub(crate) struct Blocks {
    /// Output bits.
    pub w: BitWriter,
    p: BlockParams,
    t: Tables,
    heap: Heap,
    l: Box<Tree>,
    d: Box<Tree>,
    bl: Box<Tree>,
    /// Symbols: `dist << 8 | lc` (dist 0 for literals).
    syms: Vec<u32>,
    matches: usize,
}

impl Blocks {
    /// Empty block state.
    pub fn new(p: BlockParams) -> Self {
        let mut b = Blocks {
            w: BitWriter::new(),
            p,
            t: Tables::new(),
            heap: Heap::new(),
            l: Box::new(Tree::new(Kind::Lit)),
            d: Box::new(Tree::new(Kind::Dist)),
            bl: Box::new(Tree::new(Kind::BitLen)),
            syms: Vec::with_capacity(p.lit_bufsize),
            matches: 0,
        };
        b.init_block();
        b
    }

    fn init_block(&mut self) {
        self.l.clear();
        self.d.clear();
        self.bl.clear();
        self.l.freq[END_BLOCK] = 1;
        self.heap.opt_len = 0;
        self.heap.static_len = 0;
        self.syms.clear();
        self.matches = 0;
    }

    /// Records a literal; true if the block must be flushed. `in_len` is the
    /// input length of the block so far (`strstart - block_start`).
    #[inline]
    pub fn tally_lit(&mut self, c: u8, in_len: i64) -> bool {
        self.syms.push(u32::from(c));
        self.l.freq[usize::from(c)] += 1;
        self.check(in_len)
    }

    /// Records a match of `len` (3..=258) at `dist`; true if the block must
    /// be flushed.
    #[inline]
    pub fn tally_dist(&mut self, dist: usize, len: usize, in_len: i64) -> bool {
        let lc = len - 3;
        self.syms.push(((dist as u32) << 8) | lc as u32);
        self.matches += 1;
        let code = usize::from(self.t.length_code[lc]);
        self.l.freq[code + LITERALS + 1] += 1;
        let dc = self.t.d_code(dist - 1);
        self.d.freq[dc] += 1;
        self.check(in_len)
    }

    #[inline]
    fn check(&self, in_len: i64) -> bool {
        let last_lit = self.syms.len();
        if let Some(mask) = self.p.truncate_mask {
            if last_lit & mask == 0 && self.p.level > 2 && self.truncate(in_len) {
                return true;
            }
        }
        last_lit == self.p.lit_bufsize - 1
    }

    /// The `TRUNCATE_BLOCK` estimate: stop the block if it compresses well.
    fn truncate(&self, in_len: i64) -> bool {
        let last_lit = self.syms.len() as u64;
        let mut out_len = last_lit * 8;
        for (&f, &x) in self.d.freq[..D_CODES].iter().zip(&EXTRA_DBITS) {
            out_len += u64::from(f) * (5 + u64::from(x));
        }
        out_len >>= 3;
        (self.matches as u64) < last_lit / 2 && (out_len as i64) < in_len / 2
    }

    /// Writes the current block (`_tr_flush_block`); `buf` is the block's
    /// input when it is still in the window.
    pub fn flush_block(&mut self, buf: Option<&[u8]>, stored_len: u64, last: bool) {
        let t = &self.t;
        self.heap.build_tree(&mut self.l, Some(&t.static_l));
        self.heap.build_tree(&mut self.d, Some(&t.static_d));
        let max_blindex = build_bl_tree(&mut self.heap, &mut self.l, &mut self.d, &mut self.bl);
        let mut opt_lenb = (self.heap.opt_len.wrapping_add(3 + 7)) >> 3;
        let static_lenb = (self.heap.static_len.wrapping_add(3 + 7)) >> 3;
        if static_lenb <= opt_lenb {
            opt_lenb = static_lenb;
        }
        let lastbit = u32::from(last);
        match buf {
            Some(b) if stored_len + 4 <= opt_lenb => self.stored_block(b, last),
            _ if static_lenb == opt_lenb => {
                self.w.send(2 | lastbit, 3);
                self.compress_block(true);
            }
            _ => {
                self.w.send(4 | lastbit, 3);
                self.send_all_trees(max_blindex + 1);
                self.compress_block(false);
            }
        }
        self.init_block();
        if last {
            self.w.windup();
        }
    }

    /// A stored block of `buf` (`_tr_stored_block`).
    pub fn stored_block(&mut self, buf: &[u8], last: bool) {
        self.w.send(u32::from(last), 3);
        self.w.windup();
        let n = buf.len() as u16;
        self.w.out.extend_from_slice(&n.to_le_bytes());
        self.w.out.extend_from_slice(&(!n).to_le_bytes());
        self.w.out.extend_from_slice(buf);
    }

    fn send_all_trees(&mut self, blcodes: usize) {
        let lcodes = self.l.max_code + 1;
        let dcodes = self.d.max_code + 1;
        self.w.send(lcodes as u32 - 257, 5);
        self.w.send(dcodes as u32 - 1, 5);
        self.w.send(blcodes as u32 - 4, 4);
        for &o in &BL_ORDER[..blcodes] {
            self.w.send(u32::from(self.bl.len[o]), 3);
        }
        send_tree(&mut self.w, &self.bl, &self.l.len, lcodes - 1);
        send_tree(&mut self.w, &self.bl, &self.d.len, dcodes - 1);
    }

    fn compress_block(&mut self, fixed: bool) {
        let t = &self.t;
        let w = &mut self.w;
        let (l, d) = (&self.l, &self.d);
        let lcode = |n: usize| {
            if fixed {
                (u32::from(t.static_l[n].0), u32::from(t.static_l[n].1))
            } else {
                (u32::from(l.code[n]), u32::from(l.len[n]))
            }
        };
        let dcode = |n: usize| {
            if fixed {
                (u32::from(t.static_d[n].0), u32::from(t.static_d[n].1))
            } else {
                (u32::from(d.code[n]), u32::from(d.len[n]))
            }
        };
        for &s in &self.syms {
            let dist = (s >> 8) as usize;
            let lc = (s & 0xff) as usize;
            if dist == 0 {
                let (c, n) = lcode(lc);
                w.send(c, n);
                continue;
            }
            let code = usize::from(t.length_code[lc]);
            let (c, n) = lcode(code + LITERALS + 1);
            w.send(c, n);
            let extra = u32::from(EXTRA_LBITS[code]);
            if extra != 0 {
                w.send((lc - usize::from(t.base_length[code])) as u32, extra);
            }
            let dist = dist - 1;
            let code = t.d_code(dist);
            let (c, n) = dcode(code);
            w.send(c, n);
            let extra = u32::from(EXTRA_DBITS[code]);
            if extra != 0 {
                w.send((dist - usize::from(t.base_dist[code])) as u32, extra);
            }
        }
        let (c, n) = lcode(END_BLOCK);
        w.send(c, n);
    }
}
