//! Bit output and token coding (klauspost/compress
//! `flate/huffman_bit_writer.go`: the bit accumulator and `writeTokens`).
//!
//! klauspost buffers bytes in 6-byte steps before handing them to its writer;
//! only the bit stream matters, so this writes straight into a `Vec`.

use super::huffman::{hlen, HCode};
use super::token::{
    offset_code_extra, END_BLOCK_MARKER, LENGTH_BASE, LENGTH_CODES, LENGTH_EXTRA_BITS,
    LENGTH_SHIFT, LITERAL_COUNT, MATCH_OFFSET_ONLY_MASK, OFFSET_CODE_COUNT, OFFSET_MASK,
};

const LENGTH_CODES_START: usize = 257;

/// LSB-first bit accumulator over the output buffer.
pub(super) struct Bits {
    pub out: Vec<u8>,
    pub bits: u64,
    pub nbits: u32,
}

impl Bits {
    #[inline(always)]
    pub fn write_bits(&mut self, b: u32, nb: u32) {
        self.bits |= (b as u64) << (self.nbits & 63);
        self.nbits += nb;
        if self.nbits >= 48 {
            self.write_out();
        }
    }

    #[inline(always)]
    pub fn write_code(&mut self, c: HCode) {
        self.write_bits(c >> 8, hlen(c));
    }

    #[inline(always)]
    pub fn write_out(&mut self) {
        self.out.extend_from_slice(&self.bits.to_le_bytes()[..6]);
        self.bits >>= 48;
        self.nbits -= 48;
    }

    /// Pads to a byte boundary and emits everything pending.
    pub fn flush_bytes(&mut self) {
        while self.nbits != 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }
}

/// klauspost `writeTokens`; a trailing EOB token is written with `le_codes`.
pub(super) fn write_tokens(bw: &mut Bits, tokens: &[u32], le_codes: &[HCode], oe_codes: &[HCode]) {
    let (tokens, defer_eob) = match tokens.split_last() {
        None => return,
        Some((&END_BLOCK_MARKER, rest)) => (rest, true),
        Some(_) => (tokens, false),
    };
    let lits = &le_codes[..256];
    let lengths = &le_codes[LENGTH_CODES_START..LITERAL_COUNT];
    let offs = &oe_codes[..OFFSET_CODE_COUNT];
    let (mut bits, mut nbits) = (bw.bits, bw.nbits);
    let out = &mut bw.out;
    macro_rules! put {
        ($v:expr, $n:expr) => {
            bits |= ($v as u64) << (nbits & 63);
            nbits += $n;
            if nbits >= 48 {
                out.extend_from_slice(&bits.to_le_bytes()[..6]);
                bits >>= 48;
                nbits -= 48;
            }
        };
    }
    for &t in tokens {
        if t < 256 {
            let c = lits[t as usize];
            put!(c >> 8, hlen(c));
            continue;
        }
        let length = (t >> LENGTH_SHIFT) as u8;
        let length_code = LENGTH_CODES[length as usize] as usize & 31;
        let c = lengths[length_code];
        put!(c >> 8, hlen(c));
        if length_code >= 8 {
            let extra = (length - LENGTH_BASE[length_code]) as u32;
            put!(extra, LENGTH_EXTRA_BITS[length_code] as u32);
        }
        let offset = t & OFFSET_MASK;
        let oc = ((offset >> 16) & 31) as usize;
        let c = offs[oc];
        put!(c >> 8, hlen(c));
        if oc >= 4 {
            let (base, nb) = offset_code_extra(oc);
            put!((offset.wrapping_sub(base)) & MATCH_OFFSET_ONLY_MASK, nb);
        }
    }
    bw.bits = bits;
    bw.nbits = nbits;
    if defer_eob {
        bw.write_code(le_codes[END_BLOCK_MARKER as usize]);
    }
}
