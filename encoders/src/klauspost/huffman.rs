//! Huffman code construction (klauspost/compress `flate/huffman_code.go` and
//! `huffman_sortByFreq.go`).
//!
//! The frequency sort is ported as is, not replaced by a library sort: when
//! its depth limit is hit it falls back to a heap sort *by literal*, and the
//! code lengths depend on that order.

use super::token::LITERAL_COUNT;

/// A code: bit length in the low 8 bits, bit-reversed code above (klauspost `hcode`).
pub(super) type HCode = u32;

#[inline]
pub(super) fn hlen(c: HCode) -> u32 {
    c & 0xff
}

#[inline]
fn new_hcode(code: u16, length: u8) -> HCode {
    length as u32 | (code as u32) << 8
}

fn reverse_bits(number: u16, bit_length: u8) -> u16 {
    (number << ((16 - bit_length as u32) & 15)).reverse_bits()
}

#[derive(Clone, Copy, Default)]
struct LiteralNode {
    literal: u16,
    freq: u16,
}

const MAX_NODE: LiteralNode = LiteralNode {
    literal: u16::MAX,
    freq: u16::MAX,
};

#[derive(Clone, Copy, Default)]
struct LevelInfo {
    level: i32,
    last_freq: i32,
    next_char_freq: i32,
    next_pair_freq: i32,
    needed: i32,
}

const MAX_BITS_LIMIT: usize = 16;

/// A Huffman code for one alphabet (klauspost `huffmanEncoder`).
pub(super) struct HuffmanEncoder {
    pub codes: Vec<HCode>,
    bit_count: [i32; 17],
    freqcache: [LiteralNode; LITERAL_COUNT + 1],
}

impl HuffmanEncoder {
    pub fn new(size: usize) -> Self {
        HuffmanEncoder {
            codes: vec![0; size],
            bit_count: [0; 17],
            freqcache: [LiteralNode::default(); LITERAL_COUNT + 1],
        }
    }

    /// The fixed literal/length code of RFC 1951 3.2.6.
    pub fn fixed_literal() -> Self {
        let mut h = Self::new(LITERAL_COUNT);
        for ch in 0..LITERAL_COUNT as u16 {
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            h.codes[ch as usize] = new_hcode(reverse_bits(bits, size), size);
        }
        h
    }

    /// The fixed offset code of RFC 1951 3.2.6.
    pub fn fixed_offset() -> Self {
        let mut h = Self::new(30);
        for ch in 0..30u16 {
            h.codes[ch as usize] = new_hcode(reverse_bits(ch, 5), 5);
        }
        h
    }

    /// Bits needed for `freq` with this code; zero-frequency symbols are skipped.
    pub fn bit_length(&self, freq: &[u16]) -> i32 {
        let mut total = 0i32;
        for (&f, &c) in freq.iter().zip(self.codes.iter()) {
            if f != 0 {
                total += f as i32 * hlen(c) as i32;
            }
        }
        total
    }

    /// Bits needed for `freq`, or `i32::MAX` if a used symbol has no code.
    pub fn can_reuse_bits(&self, freq: &[u16]) -> i32 {
        let mut total = 0i32;
        for (&f, &c) in freq.iter().zip(self.codes.iter()) {
            if f != 0 {
                if c == 0 {
                    return i32::MAX;
                }
                total += f as i32 * hlen(c) as i32;
            }
        }
        total
    }

    /// Length-limited code for `freq` (klauspost `generate`).
    pub fn generate(&mut self, freq: &[u16], max_bits: i32) {
        let mut count = 0usize;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.freqcache[count] = LiteralNode {
                    literal: i as u16,
                    freq: f,
                };
                count += 1;
            } else {
                self.codes[i] = 0;
            }
        }
        self.freqcache[count] = LiteralNode::default();
        if count <= 2 {
            // Two or fewer symbols all get length 1, in literal order.
            for i in 0..count {
                let node = self.freqcache[i];
                self.codes[node.literal as usize] = new_hcode(i as u16, 1);
            }
            return;
        }
        sort_by_freq(&mut self.freqcache[..count]);
        let max_bits = bit_counts(
            &mut self.freqcache[..count + 1],
            max_bits,
            &mut self.bit_count,
        );
        let bit_count = self.bit_count;
        assign_encoding_and_size(
            &bit_count[..max_bits as usize + 1],
            &mut self.freqcache[..count],
            &mut self.codes,
        );
    }
}

/// How many symbols get each bit length; `list` is sorted by frequency and
/// has room for a sentinel at the end. Returns the clamped maximum length.
fn bit_counts(list: &mut [LiteralNode], mut max_bits: i32, bit_count: &mut [i32; 17]) -> i32 {
    let n = (list.len() - 1) as i32;
    list[n as usize] = MAX_NODE;
    if max_bits > n - 1 {
        max_bits = n - 1;
    }
    let mut levels = [LevelInfo::default(); MAX_BITS_LIMIT];
    let mut leaf_counts = [[0i32; MAX_BITS_LIMIT]; MAX_BITS_LIMIT];

    let l2f = list[2].freq as i32;
    let l1f = list[1].freq as i32;
    let l0f = list[0].freq as i32 + list[1].freq as i32;
    for level in 1..=max_bits {
        levels[level as usize] = LevelInfo {
            level,
            last_freq: l1f,
            next_char_freq: l2f,
            next_pair_freq: l0f,
            needed: 0,
        };
        leaf_counts[level as usize][level as usize] = 2;
        if level == 1 {
            levels[level as usize].next_pair_freq = i32::MAX;
        }
    }
    levels[max_bits as usize].needed = 2 * n - 4;

    let mut level = max_bits as usize;
    while level < 16 {
        let l = levels[level];
        if l.next_pair_freq == i32::MAX && l.next_char_freq == i32::MAX {
            // Out of leaves and pairs: never come back to this level.
            levels[level].needed = 0;
            levels[level + 1].next_pair_freq = i32::MAX;
            level += 1;
            continue;
        }
        let prev_freq = l.last_freq;
        if l.next_char_freq < l.next_pair_freq {
            let nn = leaf_counts[level][level] + 1;
            levels[level].last_freq = l.next_char_freq;
            leaf_counts[level][level] = nn;
            let e = list[nn as usize];
            levels[level].next_char_freq = if e.literal < u16::MAX {
                e.freq as i32
            } else {
                i32::MAX
            };
        } else {
            levels[level].last_freq = l.next_pair_freq;
            let save = leaf_counts[level][level];
            leaf_counts[level] = leaf_counts[level - 1];
            leaf_counts[level][level] = save;
            levels[(l.level - 1) as usize].needed = 2;
        }
        levels[level].needed -= 1;
        if levels[level].needed == 0 {
            if l.level == max_bits {
                break;
            }
            levels[(l.level + 1) as usize].next_pair_freq = prev_freq + levels[level].last_freq;
            level += 1;
        } else {
            while levels[level - 1].needed > 0 {
                level -= 1;
            }
        }
    }
    debug_assert_eq!(leaf_counts[max_bits as usize][max_bits as usize], n);

    let counts = &leaf_counts[max_bits as usize];
    let mut bits = 1usize;
    let mut level = max_bits as usize;
    while level > 0 {
        bit_count[bits] = counts[level] - counts[level - 1];
        bits += 1;
        level -= 1;
    }
    max_bits
}

/// Canonical codes: the least frequent symbols get the longest codes, and
/// within one length codes go up in literal order (RFC 1951 3.2.2).
fn assign_encoding_and_size(bit_count: &[i32], list: &mut [LiteralNode], codes: &mut [HCode]) {
    let mut code = 0u16;
    let mut end = list.len();
    for (n, &bits) in bit_count.iter().enumerate() {
        code <<= 1;
        if n == 0 || bits == 0 {
            continue;
        }
        let chunk = &mut list[end - bits as usize..end];
        chunk.sort_unstable_by_key(|x| x.literal);
        for node in chunk.iter() {
            codes[node.literal as usize] = new_hcode(reverse_bits(code, n as u8), n as u8);
            code = code.wrapping_add(1);
        }
        end -= bits as usize;
    }
}

#[inline]
fn less(a: LiteralNode, b: LiteralNode) -> bool {
    a.freq < b.freq || (a.freq == b.freq && a.literal < b.literal)
}

fn sort_by_freq(data: &mut [LiteralNode]) {
    let n = data.len();
    quick_sort_by_freq(data, 0, n, max_depth(n));
}

fn max_depth(n: usize) -> usize {
    let mut depth = 0;
    let mut i = n;
    while i > 0 {
        depth += 1;
        i >>= 1;
    }
    depth * 2
}

fn quick_sort_by_freq(data: &mut [LiteralNode], mut a: usize, mut b: usize, mut depth: usize) {
    while b - a > 12 {
        if depth == 0 {
            // Go's generated code calls the by-literal heap sort here.
            heap_sort_by_literal(data, a, b);
            return;
        }
        depth -= 1;
        let (mlo, mhi) = do_pivot_by_freq(data, a, b);
        if mlo - a < b - mhi {
            quick_sort_by_freq(data, a, mlo, depth);
            a = mhi;
        } else {
            quick_sort_by_freq(data, mhi, b, depth);
            b = mlo;
        }
    }
    if b - a > 1 {
        // Shell sort pass with gap 6, then insertion sort.
        for i in a + 6..b {
            if less(data[i], data[i - 6]) {
                data.swap(i, i - 6);
            }
        }
        for i in a + 1..b {
            let mut j = i;
            while j > a && less(data[j], data[j - 1]) {
                data.swap(j, j - 1);
                j -= 1;
            }
        }
    }
}

fn median_of_three(data: &mut [LiteralNode], m1: usize, m0: usize, m2: usize) {
    if less(data[m1], data[m0]) {
        data.swap(m1, m0);
    }
    if less(data[m2], data[m1]) {
        data.swap(m2, m1);
        if less(data[m1], data[m0]) {
            data.swap(m1, m0);
        }
    }
}

fn do_pivot_by_freq(data: &mut [LiteralNode], lo: usize, hi: usize) -> (usize, usize) {
    let m = (lo + hi) >> 1;
    if hi - lo > 40 {
        let s = (hi - lo) / 8;
        median_of_three(data, lo, lo + s, lo + 2 * s);
        median_of_three(data, m, m - s, m + s);
        median_of_three(data, hi - 1, hi - 1 - s, hi - 1 - 2 * s);
    }
    median_of_three(data, lo, m, hi - 1);

    let pivot = lo;
    let (mut a, mut c) = (lo + 1, hi - 1);
    while a < c && less(data[a], data[pivot]) {
        a += 1;
    }
    let mut b = a;
    loop {
        while b < c && less(data[b], data[pivot]) {
            b += 1;
        }
        while b < c && less(data[pivot], data[c - 1]) {
            c -= 1;
        }
        if b >= c {
            break;
        }
        data.swap(b, c - 1);
        b += 1;
        c -= 1;
    }
    let mut protect = hi - c < 5;
    if !protect && hi - c < (hi - lo) / 4 {
        let mut dups = 0;
        if less(data[hi - 1], data[pivot]) {
            data.swap(c, hi - 1);
            c += 1;
            dups += 1;
        }
        if less(data[pivot], data[b - 1]) {
            b -= 1;
            dups += 1;
        }
        if less(data[pivot], data[m]) {
            data.swap(m, b - 1);
            b -= 1;
            dups += 1;
        }
        protect = dups > 1;
    }
    if protect {
        loop {
            while a < b && less(data[pivot], data[b - 1]) {
                b -= 1;
            }
            while a < b && less(data[a], data[pivot]) {
                a += 1;
            }
            if a >= b {
                break;
            }
            data.swap(a, b - 1);
            a += 1;
            b -= 1;
        }
    }
    data.swap(pivot, b - 1);
    (b - 1, c)
}

fn heap_sort_by_literal(data: &mut [LiteralNode], a: usize, b: usize) {
    let first = a;
    let hi = b - a;
    let mut i = (hi as isize - 1) / 2;
    while i >= 0 {
        sift_down_by_literal(data, i as usize, hi, first);
        i -= 1;
    }
    let mut i = hi as isize - 1;
    while i >= 0 {
        data.swap(first, first + i as usize);
        sift_down_by_literal(data, 0, i as usize, first);
        i -= 1;
    }
}

fn sift_down_by_literal(data: &mut [LiteralNode], lo: usize, hi: usize, first: usize) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            break;
        }
        if child + 1 < hi && data[first + child].literal < data[first + child + 1].literal {
            child += 1;
        }
        if data[first + root].literal > data[first + child].literal {
            return;
        }
        data.swap(first + root, first + child);
        root = child;
    }
}
