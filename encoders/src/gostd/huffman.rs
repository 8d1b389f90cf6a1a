//! Length-limited Huffman code construction, ported from Go 1.19
//! `compress/flate/huffman_code.go`.
//!
//! Go builds its codes with a package-merge style level walk (`bitCounts`)
//! rather than zlib's heap algorithm; the two give different code lengths for
//! the same histogram, so the walk is reproduced step for step.

/// One code word: `code` is already bit-reversed for LSB-first output.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(super) struct HCode {
    pub(super) code: u16,
    pub(super) len: u16,
}

#[derive(Clone, Copy, Default)]
struct LiteralNode {
    literal: u16,
    freq: i32,
}

#[derive(Clone, Copy, Default)]
struct LevelInfo {
    level: i32,
    last_freq: i32,
    next_char_freq: i32,
    next_pair_freq: i32,
    needed: i32,
}

/// Number of literal/length symbols (`maxNumLit`).
pub(super) const MAX_NUM_LIT: usize = 286;
const MAX_BITS_LIMIT: usize = 16;

/// A reusable code table (`huffmanEncoder`). `codes` keeps stale `code` values
/// for unused symbols across blocks, exactly like Go; only `len` is reset.
pub(super) struct HuffmanEncoder {
    pub(super) codes: Vec<HCode>,
    freqcache: Vec<LiteralNode>,
    bit_count: [i32; 17],
}

impl HuffmanEncoder {
    pub(super) fn new(size: usize) -> Self {
        HuffmanEncoder {
            codes: vec![HCode::default(); size],
            freqcache: vec![LiteralNode::default(); MAX_NUM_LIT + 1],
            bit_count: [0; 17],
        }
    }

    /// The fixed literal/length table of RFC 1951 3.2.6.
    pub(super) fn fixed_literal() -> Self {
        let mut h = HuffmanEncoder::new(MAX_NUM_LIT);
        for (ch, c) in h.codes.iter_mut().enumerate() {
            let ch = ch as u16;
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            *c = HCode {
                code: reverse_bits(bits, size),
                len: size,
            };
        }
        h
    }

    /// The fixed distance table: 5 bits each.
    pub(super) fn fixed_offset() -> Self {
        let mut h = HuffmanEncoder::new(30);
        for (ch, c) in h.codes.iter_mut().enumerate() {
            *c = HCode {
                code: reverse_bits(ch as u16, 5),
                len: 5,
            };
        }
        h
    }

    /// Total bits to encode `freq` with this table (`bitLength`).
    pub(super) fn bit_length(&self, freq: &[i32]) -> i64 {
        freq.iter()
            .zip(&self.codes)
            .filter(|(f, _)| **f != 0)
            .map(|(f, c)| i64::from(*f) * i64::from(c.len))
            .sum()
    }

    /// Rebuilds the table as a `max_bits`-limited code for `freq` (`generate`).
    pub(super) fn generate(&mut self, freq: &[i32], max_bits: i32) {
        let mut count = 0;
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                self.freqcache[count] = LiteralNode {
                    literal: i as u16,
                    freq: f,
                };
                count += 1;
            } else {
                self.codes[i].len = 0;
            }
        }
        if count <= 2 {
            // Go gives one or two symbols 1-bit codes in literal order.
            for i in 0..count {
                let lit = self.freqcache[i].literal as usize;
                self.codes[lit] = HCode {
                    code: i as u16,
                    len: 1,
                };
            }
            return;
        }
        // (freq, literal) is a total order, so any sort reproduces Go's.
        self.freqcache[..count].sort_unstable_by_key(|n| (n.freq, n.literal));
        let max_bits = self.bit_counts(count, max_bits);
        self.assign_encoding_and_size(count, max_bits);
    }

    /// Go's `bitCounts`: fills `bit_count[1..=max_bits]` and returns the
    /// effective `max_bits`. Needs `count >= 3` sorted nodes in `freqcache`.
    fn bit_counts(&mut self, count: usize, max_bits: i32) -> usize {
        let list = &mut self.freqcache;
        let n = count as i32;
        list[count] = LiteralNode {
            literal: u16::MAX,
            freq: i32::MAX,
        };
        let max_bits = max_bits.min(n - 1) as usize;

        // One spare level so the "ran out" branch can poison level+1 safely.
        let mut levels = [LevelInfo::default(); MAX_BITS_LIMIT + 1];
        let mut leaf_counts = [[0i32; MAX_BITS_LIMIT]; MAX_BITS_LIMIT];

        for level in 1..=max_bits {
            levels[level] = LevelInfo {
                level: level as i32,
                last_freq: list[1].freq,
                next_char_freq: list[2].freq,
                next_pair_freq: list[0].freq.wrapping_add(list[1].freq),
                needed: 0,
            };
            leaf_counts[level][level] = 2;
            if level == 1 {
                levels[level].next_pair_freq = i32::MAX;
            }
        }
        levels[max_bits].needed = 2 * n - 4;

        let mut level = max_bits;
        loop {
            let l = levels[level];
            if l.next_pair_freq == i32::MAX && l.next_char_freq == i32::MAX {
                levels[level].needed = 0;
                levels[level + 1].next_pair_freq = i32::MAX;
                level += 1;
                continue;
            }
            let prev_freq = l.last_freq;
            let mut l = l;
            if l.next_char_freq < l.next_pair_freq {
                let nn = leaf_counts[level][level] + 1;
                l.last_freq = l.next_char_freq;
                leaf_counts[level][level] = nn;
                l.next_char_freq = list[nn as usize].freq;
            } else {
                l.last_freq = l.next_pair_freq;
                let (lower, upper) = leaf_counts.split_at_mut(level);
                upper[0][..level].copy_from_slice(&lower[level - 1][..level]);
                levels[l.level as usize - 1].needed = 2;
            }
            l.needed -= 1;
            levels[level] = l;
            if l.needed == 0 {
                if l.level as usize == max_bits {
                    break;
                }
                levels[l.level as usize + 1].next_pair_freq = prev_freq.wrapping_add(l.last_freq);
                level += 1;
            } else {
                while levels[level - 1].needed > 0 {
                    level -= 1;
                }
            }
        }
        debug_assert_eq!(leaf_counts[max_bits][max_bits], n);

        // Leaves hanging at depth `level` get `max_bits + 1 - level` bits.
        let counts = &leaf_counts[max_bits];
        for level in 1..=max_bits {
            self.bit_count[max_bits + 1 - level] = counts[level] - counts[level - 1];
        }
        max_bits
    }

    /// Go's `assignEncodingAndSize`: canonical codes, literal order within a
    /// length, longest codes taken from the low-frequency end of the list.
    fn assign_encoding_and_size(&mut self, count: usize, max_bits: usize) {
        let mut code: u16 = 0;
        let mut end = count;
        for n in 0..=max_bits {
            code <<= 1;
            let bits = self.bit_count[n] as usize;
            if n == 0 || bits == 0 {
                continue;
            }
            let chunk = &mut self.freqcache[end - bits..end];
            chunk.sort_unstable_by_key(|node| node.literal);
            for node in chunk.iter() {
                self.codes[node.literal as usize] = HCode {
                    code: reverse_bits(code, n as u16),
                    len: n as u16,
                };
                code = code.wrapping_add(1);
            }
            end -= bits;
        }
    }
}

fn reverse_bits(number: u16, bit_length: u16) -> u16 {
    (number << (16 - bit_length)).reverse_bits()
}
