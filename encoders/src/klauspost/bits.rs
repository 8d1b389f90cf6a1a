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

/// Tokens coded per stack-buffer round; each token is at most 48 bits.
const TOKENS_PER_ROUND: usize = 1024;
/// Round buffer: a power of two above `TOKENS_PER_ROUND * 6`, plus room
/// for one 8-byte store at any masked position.
const ROUND_MASK: usize = 8192 - 1;
const _: () = assert!(TOKENS_PER_ROUND * 6 + 8 <= ROUND_MASK + 1);

/// klauspost `writeTokens`; a trailing EOB token is written with `le_codes`.
///
/// The bit stream is klauspost's; only the flushing differs: after every
/// token all whole bytes are stored with one unconditional 8-byte write into
/// a stack buffer, so fewer than 8 bits stay pending and a whole match (at
/// most 48 bits) fits without checks or data-dependent branches.
pub(super) fn write_tokens(bw: &mut Bits, tokens: &[u32], le_codes: &[HCode], oe_codes: &[HCode]) {
    let (tokens, defer_eob) = match tokens.split_last() {
        None => return,
        Some((&END_BLOCK_MARKER, rest)) => (rest, true),
        Some(_) => (tokens, false),
    };
    let lits = &le_codes[..256];
    let lengths = &le_codes[LENGTH_CODES_START..LITERAL_COUNT];
    let offs = &oe_codes[..OFFSET_CODE_COUNT];
    // Pending whole bytes first, so fewer than 8 bits are left.
    while bw.nbits >= 8 {
        bw.out.push(bw.bits as u8);
        bw.bits >>= 8;
        bw.nbits -= 8;
    }
    let (mut bits, mut nbits) = (bw.bits, bw.nbits);
    let mut buf = [0u8; ROUND_MASK + 1 + 8];
    for round in tokens.chunks(TOKENS_PER_ROUND) {
        let mut pos = 0usize;
        for &t in round {
            if t < 256 {
                let c = lits[t as usize];
                bits |= ((c >> 8) as u64) << nbits;
                nbits += hlen(c);
            } else {
                let length = (t >> LENGTH_SHIFT) as u8;
                let length_code = LENGTH_CODES[length as usize] as usize & 31;
                let c = lengths[length_code];
                bits |= ((c >> 8) as u64) << nbits;
                nbits += hlen(c);
                // Zero for the codes without extra bits.
                let extra = (length - LENGTH_BASE[length_code]) as u64;
                bits |= extra << nbits;
                nbits += LENGTH_EXTRA_BITS[length_code] as u32;
                let offset = t & OFFSET_MASK;
                let oc = ((offset >> 16) & 31) as usize;
                let c = offs[oc];
                bits |= ((c >> 8) as u64) << nbits;
                nbits += hlen(c);
                let (base, nb) = offset_code_extra(oc);
                // Zero for offset codes 0..3, whose base is the offset.
                bits |= (((offset.wrapping_sub(base)) & MATCH_OFFSET_ONLY_MASK) as u64) << nbits;
                nbits += nb;
            }
            let p = pos & ROUND_MASK;
            buf[p..p + 8].copy_from_slice(&bits.to_le_bytes());
            let whole = nbits & !7;
            pos += (whole >> 3) as usize;
            // `whole` is at most 48: fewer than 8 bits were pending before the token.
            bits >>= whole;
            nbits -= whole;
        }
        bw.out.extend_from_slice(&buf[..pos & ROUND_MASK]);
    }
    bw.bits = bits;
    bw.nbits = nbits;
    if defer_eob {
        bw.write_code(le_codes[END_BLOCK_MARKER as usize]);
    }
}
