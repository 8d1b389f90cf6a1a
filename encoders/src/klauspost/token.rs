//! Token stream and histograms (klauspost/compress `flate/token.go`).
//!
//! A token is a literal byte (`< 256`), the end-of-block marker (256), or a
//! match: `MATCH_TYPE | (length - 3) << 22 | offset_code << 16 | (offset - 1)`.
//! The histograms are kept while tokens are added because the block writer's
//! size estimates read them, exactly as klauspost does.

use super::golog::log2;
use super::Version;

/// Largest window chunk one `storeFast` step encodes.
pub(super) const MAX_STORE_BLOCK_SIZE: usize = 65535;
pub(super) const END_BLOCK_MARKER: u32 = 256;
pub(super) const MATCH_TYPE: u32 = 1 << 30;
pub(super) const LENGTH_SHIFT: u32 = 22;
pub(super) const OFFSET_MASK: u32 = (1 << LENGTH_SHIFT) - 1;
pub(super) const MATCH_OFFSET_ONLY_MASK: u32 = 0xffff;
pub(super) const LITERAL_COUNT: usize = 286;
pub(super) const OFFSET_CODE_COUNT: usize = 30;

/// Length code for `length - 3`.
pub(super) static LENGTH_CODES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut code = 0usize;
    let mut i = 0usize;
    while i < 256 {
        // Code `c` covers lengths from LENGTH_BASE[c]; the last entry (258) is code 28.
        while code + 1 < 29 && (LENGTH_BASE[code + 1] as usize) <= i {
            code += 1;
        }
        t[i] = code as u8;
        i += 1;
    }
    t[255] = 28;
    t
};

/// `length - 3` at which each length code starts.
pub(super) static LENGTH_BASE: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255, 0, 0, 0,
];

/// Extra bits of each length code.
pub(super) static LENGTH_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0, 0, 0, 0,
];

/// Extra bits of each offset code (30 and 31 are klauspost's unused extended window).
pub(super) static OFFSET_EXTRA_BITS: [u8; 32] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13, 14, 14,
];

/// First offset (minus one) of each offset code.
pub(super) static OFFSET_BASE: [u32; 32] = [
    0x000000, 0x000001, 0x000002, 0x000003, 0x000004, 0x000006, 0x000008, 0x00000c, 0x000010,
    0x000018, 0x000020, 0x000030, 0x000040, 0x000060, 0x000080, 0x0000c0, 0x000100, 0x000180,
    0x000200, 0x000300, 0x000400, 0x000600, 0x000800, 0x000c00, 0x001000, 0x001800, 0x002000,
    0x003000, 0x004000, 0x006000, 0x008000, 0x00c000,
];

/// `offsetCodes`: offset code of `offset - 1` for values below 256.
static OFFSET_CODES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0usize;
    while i < 256 {
        let mut c = 0usize;
        while c + 1 < 16 && OFFSET_BASE[c + 1] as usize <= i {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// Offset code of `offset - 1` (offsets up to 32768).
#[inline]
pub(super) fn offset_code(off: u32) -> u32 {
    if off < 256 {
        OFFSET_CODES[off as usize] as u32
    } else {
        OFFSET_CODES[(off >> 7) as usize & 255] as u32 + 14
    }
}

/// Tokens of one block plus their histograms (klauspost `tokens`).
pub(super) struct Tokens {
    /// Symbols 256..288 (index 0 is the end-of-block marker).
    pub extra_hist: [u16; 32],
    pub off_hist: [u16; 32],
    pub lit_hist: [u16; 256],
    /// klauspost's fixed token array: a window of at most
    /// `MAX_STORE_BLOCK_SIZE` bytes gives at most that many tokens, plus EOB.
    toks: Box<[u32; MAX_STORE_BLOCK_SIZE + 1]>,
    n: usize,
    /// Histogram entries [`Tokens::fill`] raised from 0 to 1.
    n_filled: usize,
    /// Whether an end-of-block token was added.
    has_eob: bool,
    /// [`Tokens::estimated_bits`] counts the end-of-block token (klauspost
    /// 1.14.0 and later).
    count_eob: bool,
    /// [`Tokens::estimated_bits`] counts every symbol as 1 to 15 bits
    /// (klauspost 1.12.3 and later; before, the plain Shannon estimate).
    clamp_estimate: bool,
    /// klauspost < 1.9.8: [`Tokens::estimated_bits`] in float64.
    float64_estimate: bool,
    /// A match longer than 261 is cut into 258 + the rest (klauspost
    /// 1.15.0 and later); before, every piece but the last was 255 long.
    cut_at_258: bool,
}

impl Tokens {
    pub fn new(version: Version) -> Self {
        Tokens {
            n_filled: 0,
            has_eob: false,
            count_eob: version >= Version::V1_14_0,
            clamp_estimate: version >= Version::V1_12_3,
            float64_estimate: version < Version::V1_9_8,
            cut_at_258: version >= Version::V1_15_0,
            extra_hist: [0; 32],
            off_hist: [0; 32],
            lit_hist: [0; 256],
            toks: Box::new([0; MAX_STORE_BLOCK_SIZE + 1]),
            n: 0,
        }
    }

    /// Number of tokens (klauspost's `n`).
    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    /// The tokens added since the last reset.
    pub fn tokens(&self) -> &[u32] {
        &self.toks[..self.n]
    }

    pub fn reset(&mut self) {
        if self.n == 0 {
            return;
        }
        self.n = 0;
        self.n_filled = 0;
        self.has_eob = false;
        self.lit_hist = [0; 256];
        self.extra_hist = [0; 32];
        self.off_hist = [0; 32];
    }

    #[inline]
    pub fn add_literals(&mut self, lits: &[u8]) {
        // One bounds check per call, then one loop.
        let dst = &mut self.toks[self.n..self.n + lits.len()];
        for (d, &v) in dst.iter_mut().zip(lits) {
            *d = u32::from(v);
            self.lit_hist[v as usize] += 1;
        }
        self.n += lits.len();
    }

    /// `AddMatchLong`: `length` without the base subtracted, `xoffset` = offset - 1.
    #[inline]
    pub fn add_match_long(&mut self, mut length: i32, xoffset: u32) {
        let oc = offset_code(xoffset);
        let xoffset = xoffset | (oc << 16);
        while length > 0 {
            let mut xl = length;
            if xl > 258 {
                // Leave at least 3 bytes for the next token.
                xl = if self.cut_at_258 && xl > 258 + 3 {
                    258
                } else {
                    258 - 3
                };
            }
            length -= xl;
            let xl = (xl - 3) as u32;
            self.extra_hist[LENGTH_CODES[xl as usize & 255] as usize + 1] += 1;
            self.off_hist[oc as usize & 31] += 1;
            self.toks[self.n] = MATCH_TYPE | (xl << LENGTH_SHIFT) | xoffset;
            self.n += 1;
        }
    }

    /// klauspost 1.9.0–1.9.7 `EstimatedBits`: float64 Go `math.Log2`, each
    /// symbol rounded up, and the extra bits looked up by count, not by code
    /// (as that code did).
    fn estimated_bits_f64(&self) -> i32 {
        let mut total = self.n + self.n_filled;
        if self.has_eob && !self.count_eob {
            total -= 1;
        }
        let mut shannon = 0f64;
        let mut bits = 0i32;
        let mut n_matches = 0i32;
        if total > 0 {
            let inv_total = 1.0f64 / total as f64;
            for &v in &self.lit_hist {
                if v > 0 {
                    let n = v as f64;
                    shannon += (-log2(n * inv_total) * n).ceil();
                }
            }
            shannon += 15.0;
            for &v in &self.extra_hist[1..LITERAL_COUNT - 256] {
                if v > 0 {
                    let n = v as f64;
                    shannon += (-log2(n * inv_total) * n).ceil();
                    bits += LENGTH_EXTRA_BITS[v as usize & 31] as i32 * v as i32;
                    n_matches += v as i32;
                }
            }
        }
        if n_matches > 0 {
            let inv_total = 1.0f64 / n_matches as f64;
            for &v in &self.off_hist[..OFFSET_CODE_COUNT] {
                if v > 0 {
                    let n = v as f64;
                    shannon += (-log2(n * inv_total) * n).ceil();
                    bits += OFFSET_EXTRA_BITS[v as usize & 31] as i32 * v as i32;
                }
            }
        }
        shannon as i32 + bits
    }

    /// klauspost < 1.14 `Fill`: every literal, length and offset code of a
    /// block that may be continued gets a count, so its table can always be
    /// reused.
    pub fn fill(&mut self) {
        if self.n == 0 {
            return;
        }
        let hists = self
            .lit_hist
            .iter_mut()
            .chain(&mut self.extra_hist[..LITERAL_COUNT - 256]);
        for v in hists {
            if *v == 0 {
                *v = 1;
                self.n_filled += 1;
            }
        }
        for v in &mut self.off_hist[..OFFSET_CODE_COUNT] {
            if *v == 0 {
                *v = 1;
            }
        }
    }

    pub fn add_eob(&mut self) {
        self.toks[self.n] = END_BLOCK_MARKER;
        self.n += 1;
        self.has_eob = true;
        self.extra_hist[0] += 1;
    }

    /// `EstimatedBits`: Shannon estimate in float32, the same operations in the
    /// same order as Go so the reuse decision matches.
    pub fn estimated_bits(&self) -> i32 {
        if self.float64_estimate {
            return self.estimated_bits_f64();
        }
        let clamp = self.clamp_estimate;
        let bits_of = |p: f32| {
            if clamp {
                at_least_one(-m_fast_log2(p))
            } else {
                -m_fast_log2(p)
            }
        };
        let mut shannon = 0f32;
        let mut bits = 0i32;
        let mut n_matches = 0i32;
        let mut total = self.n + self.n_filled;
        if self.has_eob && !self.count_eob {
            total -= 1;
        }
        if total > 0 {
            let inv_total = 1.0f32 / total as f32;
            for &v in &self.lit_hist {
                if v > 0 {
                    let n = v as f32;
                    shannon += bits_of(n * inv_total) * n;
                }
            }
            shannon += 15.0;
            for (i, &v) in self.extra_hist[1..LITERAL_COUNT - 256].iter().enumerate() {
                if v > 0 {
                    let n = v as f32;
                    shannon += bits_of(n * inv_total) * n;
                    bits += LENGTH_EXTRA_BITS[i & 31] as i32 * v as i32;
                    n_matches += v as i32;
                }
            }
        }
        if n_matches > 0 {
            let inv_total = 1.0f32 / n_matches as f32;
            for (i, &v) in self.off_hist[..OFFSET_CODE_COUNT].iter().enumerate() {
                if v > 0 {
                    let n = v as f32;
                    shannon += bits_of(n * inv_total) * n;
                    bits += OFFSET_EXTRA_BITS[i & 31] as i32 * v as i32;
                }
            }
        }
        shannon as i32 + bits
    }
}

pub(super) fn at_least_one(v: f32) -> f32 {
    if v < 1.0 {
        return 1.0;
    }
    if v > 15.0 {
        return 15.0;
    }
    v
}

/// klauspost's `mFastLog2` (from https://stackoverflow.com/a/28730362).
// The constants are Go's literals, rounded to float32 exactly as Go does.
#[allow(clippy::excessive_precision)]
pub(super) fn m_fast_log2(val: f32) -> f32 {
    let mut ux = val.to_bits() as i32;
    let mut log2 = (((ux >> 23) & 255) - 128) as f32;
    ux &= -0x7f80_0001;
    ux += 127 << 23;
    let uval = f32::from_bits(ux as u32);
    log2 += ((-0.34484843f32) * uval + 2.02466578f32) * uval - 0.67487759f32;
    log2
}

/// Base and extra-bit count of offset code `oc` (klauspost `offsetCombined`).
#[inline]
pub(super) fn offset_code_extra(oc: usize) -> (u32, u32) {
    (OFFSET_BASE[oc & 31], OFFSET_EXTRA_BITS[oc & 31] as u32)
}
