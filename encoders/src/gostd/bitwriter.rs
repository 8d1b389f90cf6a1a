//! Block encoding, ported from Go 1.19 `compress/flate/huffman_bit_writer.go`
//! and `token.go`: `writeBlock` (levels 2 to 9), which picks the smallest of
//! fixed Huffman, dynamic Huffman and stored with Go's exact size estimates,
//! including its quirks (a fake distance code in literal-only blocks, extra
//! bits counted only when a stored block is possible); and the two that
//! level 1 uses, `writeBlockDynamic` (always dynamic, stored unless that
//! saves a sixteenth) and `writeBlockHuff` (literals only).
//!
//! Go's writer batches 48 bits at a time into a 248-byte buffer; only the bit
//! sequence and the byte-alignment points reach the output, so this one
//! appends to a `Vec` in 32-bit steps.

use super::huffman::{HCode, HuffmanEncoder, MAX_NUM_LIT};

const OFFSET_CODE_COUNT: usize = 30;
/// The end-of-block symbol, as a token.
pub(super) const END_BLOCK_MARKER: u32 = 256;
const LENGTH_CODES_START: usize = 257;
const CODEGEN_CODE_COUNT: usize = 19;
const BAD_CODE: u8 = 255;
/// Largest payload of one stored block.
pub(super) const MAX_STORE_BLOCK_SIZE: usize = 65535;

/// Tokens are Go's packed `token`: a literal byte (or 256, end of block), or
/// `MATCH_TYPE | (length-3) << 22 | (offset-1)`.
pub(super) const MATCH_TYPE: u32 = 1 << 30;
const LENGTH_SHIFT: u32 = 22;
const OFFSET_MASK: u32 = (1 << LENGTH_SHIFT) - 1;

const LENGTH_EXTRA_BITS: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const LENGTH_BASE: [u32; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255,
];
const OFFSET_EXTRA_BITS: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const OFFSET_BASE: [u32; 30] = [
    0x000000, 0x000001, 0x000002, 0x000003, 0x000004, 0x000006, 0x000008, 0x00000c, 0x000010,
    0x000018, 0x000020, 0x000030, 0x000040, 0x000060, 0x000080, 0x0000c0, 0x000100, 0x000180,
    0x000200, 0x000300, 0x000400, 0x000600, 0x000800, 0x000c00, 0x001000, 0x001800, 0x002000,
    0x003000, 0x004000, 0x006000,
];
const CODEGEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// `lengthCodes` of token.go, built from `LENGTH_BASE` at compile time.
const LENGTH_CODES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut code = 0;
    while code < 29 {
        let end = if code == 28 {
            256
        } else {
            LENGTH_BASE[code + 1] as usize
        };
        let mut l = LENGTH_BASE[code] as usize;
        while l < end {
            t[l] = code as u8;
            l += 1;
        }
        code += 1;
    }
    t
};

/// `offsetCodes` of token.go (distance codes for offsets below 256).
const OFFSET_CODES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut code = 0;
    while code < 16 {
        let end = if code == 15 {
            256
        } else {
            OFFSET_BASE[code + 1] as usize
        };
        let mut o = OFFSET_BASE[code] as usize;
        while o < end {
            t[o] = code as u8;
            o += 1;
        }
        code += 1;
    }
    t
};

#[inline]
pub(super) fn match_token(xlength: u32, xoffset: u32) -> u32 {
    MATCH_TYPE + (xlength << LENGTH_SHIFT) + xoffset
}

#[inline]
fn length_code(xlength: u32) -> usize {
    LENGTH_CODES[xlength as usize] as usize
}

#[inline]
fn offset_code(off: u32) -> usize {
    if off < 256 {
        OFFSET_CODES[off as usize] as usize
    } else if off >> 7 < 256 {
        OFFSET_CODES[(off >> 7) as usize] as usize + 14
    } else {
        OFFSET_CODES[(off >> 14) as usize] as usize + 28
    }
}

/// Go's `huffmanBitWriter`, writing into `out` (drained by the caller).
pub(super) struct BitWriter {
    /// Finished bytes not yet handed to the inner writer.
    pub(super) out: Vec<u8>,
    bits: u64,
    nbits: u32,
    codegen_freq: [i32; CODEGEN_CODE_COUNT],
    literal_freq: Vec<i32>,
    offset_freq: Vec<i32>,
    codegen: Vec<u8>,
    literal_encoding: HuffmanEncoder,
    offset_encoding: HuffmanEncoder,
    codegen_encoding: HuffmanEncoder,
    fixed_literal: HuffmanEncoder,
    fixed_offset: HuffmanEncoder,
    /// Go's `huffOffset`: one 1-bit distance code, for literal-only blocks.
    huff_offset: HuffmanEncoder,
}

impl BitWriter {
    pub(super) fn new() -> Self {
        BitWriter {
            out: Vec::with_capacity(1 << 17),
            bits: 0,
            nbits: 0,
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            literal_freq: vec![0; MAX_NUM_LIT],
            offset_freq: vec![0; OFFSET_CODE_COUNT],
            codegen: vec![0; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
            literal_encoding: HuffmanEncoder::new(MAX_NUM_LIT),
            offset_encoding: HuffmanEncoder::new(OFFSET_CODE_COUNT),
            codegen_encoding: HuffmanEncoder::new(CODEGEN_CODE_COUNT),
            fixed_literal: HuffmanEncoder::fixed_literal(),
            fixed_offset: HuffmanEncoder::fixed_offset(),
            huff_offset: {
                let mut h = HuffmanEncoder::new(OFFSET_CODE_COUNT);
                let mut freq = [0; OFFSET_CODE_COUNT];
                freq[0] = 1;
                h.generate(&freq, 15);
                h
            },
        }
    }

    /// Pads to a byte boundary with zero bits (Go's `flush`).
    pub(super) fn flush(&mut self) {
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
        self.bits = 0;
    }

    #[inline(always)]
    fn write_bits(&mut self, b: u32, nb: u32) {
        self.bits |= u64::from(b) << self.nbits;
        self.nbits += nb;
        if self.nbits >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.nbits -= 32;
        }
    }

    #[inline(always)]
    fn write_code(&mut self, c: HCode) {
        self.write_bits(u32::from(c.code), u32::from(c.len));
    }

    pub(super) fn write_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.nbits & 7, 0);
        self.flush();
        self.out.extend_from_slice(bytes);
    }

    pub(super) fn write_stored_header(&mut self, length: usize, is_eof: bool) {
        self.write_bits(u32::from(is_eof), 3);
        self.flush();
        self.write_bits(length as u32, 16);
        self.write_bits(u32::from(!(length as u16)), 16);
    }

    /// Go's `generateCodegen`: the RFC 1951 3.2.7 run-length encoding of the
    /// two code-length arrays, into `codegen` (ended by `BAD_CODE`). The
    /// distance table is `huff_offset` when `huff`, else `offset_encoding`.
    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize, huff: bool) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let codegen = &mut self.codegen;
        let offset_codes = if huff {
            &self.huff_offset.codes
        } else {
            &self.offset_encoding.codes
        };
        for (dst, c) in codegen[..num_literals]
            .iter_mut()
            .zip(&self.literal_encoding.codes)
        {
            *dst = c.len as u8;
        }
        for (dst, c) in codegen[num_literals..num_literals + num_offsets]
            .iter_mut()
            .zip(offset_codes)
        {
            *dst = c.len as u8;
        }
        codegen[num_literals + num_offsets] = BAD_CODE;

        let freq = &mut self.codegen_freq;
        let mut size = codegen[0];
        let mut count: i32 = 1;
        let mut out_index = 0;
        let mut in_index = 1;
        while size != BAD_CODE {
            let next_size = codegen[in_index];
            in_index += 1;
            if next_size == size {
                count += 1;
                continue;
            }
            if size != 0 {
                codegen[out_index] = size;
                out_index += 1;
                freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    codegen[out_index] = 16;
                    codegen[out_index + 1] = (n - 3) as u8;
                    out_index += 2;
                    freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    codegen[out_index] = 18;
                    codegen[out_index + 1] = (n - 11) as u8;
                    out_index += 2;
                    freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    codegen[out_index] = 17;
                    codegen[out_index + 1] = (count - 3) as u8;
                    out_index += 2;
                    freq[17] += 1;
                    count = 0;
                }
            }
            while count > 0 {
                codegen[out_index] = size;
                out_index += 1;
                freq[size as usize] += 1;
                count -= 1;
            }
            size = next_size;
            count = 1;
        }
        codegen[out_index] = BAD_CODE;
    }

    /// Go's `dynamicSize`: (bits, number of codegen lengths sent); the
    /// distance table is chosen as in [`Self::generate_codegen`].
    fn dynamic_size(&self, extra_bits: i64, huff: bool) -> (i64, usize) {
        let offset_encoding = if huff {
            &self.huff_offset
        } else {
            &self.offset_encoding
        };
        let mut num_codegens = CODEGEN_CODE_COUNT;
        while num_codegens > 4 && self.codegen_freq[CODEGEN_ORDER[num_codegens - 1]] == 0 {
            num_codegens -= 1;
        }
        let header = 3
            + 5
            + 5
            + 4
            + 3 * num_codegens as i64
            + self.codegen_encoding.bit_length(&self.codegen_freq)
            + i64::from(self.codegen_freq[16]) * 2
            + i64::from(self.codegen_freq[17]) * 3
            + i64::from(self.codegen_freq[18]) * 7;
        let size = header
            + self.literal_encoding.bit_length(&self.literal_freq)
            + offset_encoding.bit_length(&self.offset_freq)
            + extra_bits;
        (size, num_codegens)
    }

    fn fixed_size(&self, extra_bits: i64) -> i64 {
        3 + self.fixed_literal.bit_length(&self.literal_freq)
            + self.fixed_offset.bit_length(&self.offset_freq)
            + extra_bits
    }

    fn write_dynamic_header(
        &mut self,
        num_literals: usize,
        num_offsets: usize,
        num_codegens: usize,
        is_eof: bool,
    ) {
        self.write_bits(if is_eof { 5 } else { 4 }, 3);
        self.write_bits((num_literals - 257) as u32, 5);
        self.write_bits((num_offsets - 1) as u32, 5);
        self.write_bits((num_codegens - 4) as u32, 4);
        for &sym in &CODEGEN_ORDER[..num_codegens] {
            let len = self.codegen_encoding.codes[sym].len;
            self.write_bits(u32::from(len), 3);
        }
        let mut i = 0;
        loop {
            let code_word = self.codegen[i];
            i += 1;
            if code_word == BAD_CODE {
                break;
            }
            let c = self.codegen_encoding.codes[code_word as usize];
            self.write_code(c);
            let extra = match code_word {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => continue,
            };
            let v = self.codegen[i];
            i += 1;
            self.write_bits(u32::from(v), extra);
        }
    }

    /// Go's `indexTokens`: histograms (with the end-of-block token already in
    /// `tokens`) and the two dynamic tables; returns (HLIT, HDIST) counts.
    fn index_tokens(&mut self, tokens: &[u32]) -> (usize, usize) {
        self.literal_freq.fill(0);
        self.offset_freq.fill(0);
        let lit = &mut self.literal_freq[..];
        let off = &mut self.offset_freq[..];
        for &t in tokens {
            if t < MATCH_TYPE {
                lit[t as usize] += 1;
                continue;
            }
            let length = (t - MATCH_TYPE) >> LENGTH_SHIFT;
            lit[LENGTH_CODES_START + length_code(length)] += 1;
            off[offset_code(t & OFFSET_MASK)] += 1;
        }
        let mut num_literals = lit.len();
        while lit[num_literals - 1] == 0 {
            num_literals -= 1;
        }
        let mut num_offsets = off.len();
        while num_offsets > 0 && off[num_offsets - 1] == 0 {
            num_offsets -= 1;
        }
        if num_offsets == 0 {
            // A dynamic header needs at least one distance code.
            off[0] = 1;
            num_offsets = 1;
        }
        self.literal_encoding.generate(&self.literal_freq, 15);
        self.offset_encoding.generate(&self.offset_freq, 15);
        (num_literals, num_offsets)
    }

    /// Go's `writeBlock`. `tokens` must end with the end-of-block token (the
    /// caller pushes it, as Go's `append` does). `input` is the block's raw
    /// bytes when Go would offer them for a stored block.
    pub(super) fn write_block(&mut self, tokens: &[u32], eof: bool, input: Option<&[u8]>) {
        let (num_literals, num_offsets) = self.index_tokens(tokens);

        let stored = input.filter(|b| b.len() <= MAX_STORE_BLOCK_SIZE);
        let mut extra_bits: i64 = 0;
        if stored.is_some() {
            for code in LENGTH_CODES_START + 8..num_literals {
                extra_bits += i64::from(self.literal_freq[code])
                    * i64::from(LENGTH_EXTRA_BITS[code - LENGTH_CODES_START]);
            }
            // The first four distance codes have no extra bits.
            for (f, e) in self.offset_freq[4..num_offsets.max(4)]
                .iter()
                .zip(&OFFSET_EXTRA_BITS[4..])
            {
                extra_bits += i64::from(*f) * i64::from(*e);
            }
        }

        let mut size = self.fixed_size(extra_bits);
        self.generate_codegen(num_literals, num_offsets, false);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (dynamic_size, num_codegens) = self.dynamic_size(extra_bits, false);
        let dynamic = dynamic_size < size;
        if dynamic {
            size = dynamic_size;
        }

        if let Some(raw) = stored {
            if (((raw.len() + 5) * 8) as i64) < size {
                self.write_stored_header(raw.len(), eof);
                self.write_bytes(raw);
                return;
            }
        }

        if dynamic {
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            self.write_tokens(tokens, true);
        } else {
            self.write_bits(if eof { 3 } else { 2 }, 3);
            self.write_tokens(tokens, false);
        }
    }

    /// Go's `writeBlockDynamic` (level 1): a dynamic block, or a stored one
    /// when the dynamic one would not be a sixteenth smaller. `tokens` ends
    /// with the end-of-block token, as in [`Self::write_block`].
    pub(super) fn write_block_dynamic(&mut self, tokens: &[u32], eof: bool, input: &[u8]) {
        let (num_literals, num_offsets) = self.index_tokens(tokens);
        self.generate_codegen(num_literals, num_offsets, false);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (size, num_codegens) = self.dynamic_size(0, false);
        if self.store_instead(input, size) {
            self.write_stored_header(input.len(), eof);
            self.write_bytes(input);
            return;
        }
        self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
        self.write_tokens(tokens, true);
    }

    /// Go's `writeBlockHuff` (level 1): `input` as literals under a dynamic
    /// code, or stored when that would not be a sixteenth smaller.
    pub(super) fn write_block_huff(&mut self, eof: bool, input: &[u8]) {
        self.literal_freq.fill(0);
        for &b in input {
            self.literal_freq[usize::from(b)] += 1;
        }
        self.literal_freq[END_BLOCK_MARKER as usize] = 1;
        // Go sets only this entry; the others keep the previous block's
        // counts, which weigh nothing against `huff_offset`'s zero lengths.
        self.offset_freq[0] = 1;
        const NUM_LITERALS: usize = END_BLOCK_MARKER as usize + 1;
        const NUM_OFFSETS: usize = 1;
        self.literal_encoding.generate(&self.literal_freq, 15);
        self.generate_codegen(NUM_LITERALS, NUM_OFFSETS, true);
        self.codegen_encoding.generate(&self.codegen_freq, 7);
        let (size, num_codegens) = self.dynamic_size(0, true);
        if self.store_instead(input, size) {
            self.write_stored_header(input.len(), eof);
            self.write_bytes(input);
            return;
        }
        self.write_dynamic_header(NUM_LITERALS, NUM_OFFSETS, num_codegens, eof);
        let codes = std::mem::take(&mut self.literal_encoding.codes);
        for &b in input {
            self.write_code(codes[usize::from(b)]);
        }
        self.write_code(codes[END_BLOCK_MARKER as usize]);
        self.literal_encoding.codes = codes;
    }

    /// Go's `storedSize(input)` test of level 1's two writers: stored when
    /// that is smaller than the coded `size` plus a sixteenth.
    fn store_instead(&self, input: &[u8], size: i64) -> bool {
        input.len() <= MAX_STORE_BLOCK_SIZE && (((input.len() + 5) * 8) as i64) < size + (size >> 4)
    }

    fn write_tokens(&mut self, tokens: &[u32], dynamic: bool) {
        // Moved out so the code tables and the bit sink can be borrowed apart.
        let (le, oe) = if dynamic {
            (
                std::mem::take(&mut self.literal_encoding.codes),
                std::mem::take(&mut self.offset_encoding.codes),
            )
        } else {
            (
                std::mem::take(&mut self.fixed_literal.codes),
                std::mem::take(&mut self.fixed_offset.codes),
            )
        };
        let le_codes: &[HCode] = &le;
        let oe_codes: &[HCode] = &oe;
        for &t in tokens {
            if t < MATCH_TYPE {
                self.write_code(le_codes[t as usize]);
                continue;
            }
            let length = (t - MATCH_TYPE) >> LENGTH_SHIFT;
            let lc = length_code(length);
            self.write_code(le_codes[lc + LENGTH_CODES_START]);
            let extra_length_bits = u32::from(LENGTH_EXTRA_BITS[lc]);
            if extra_length_bits > 0 {
                self.write_bits(length - LENGTH_BASE[lc], extra_length_bits);
            }
            let offset = t & OFFSET_MASK;
            let oc = offset_code(offset);
            self.write_code(oe_codes[oc]);
            let extra_offset_bits = u32::from(OFFSET_EXTRA_BITS[oc]);
            if extra_offset_bits > 0 {
                self.write_bits(offset - OFFSET_BASE[oc], extra_offset_bits);
            }
        }
        if dynamic {
            self.literal_encoding.codes = le;
            self.offset_encoding.codes = oe;
        } else {
            self.fixed_literal.codes = le;
            self.fixed_offset.codes = oe;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_tables_match_go() {
        // Spot values from Go's token.go tables.
        assert_eq!(length_code(0), 0);
        assert_eq!(length_code(8), 8);
        assert_eq!(length_code(9), 8);
        assert_eq!(length_code(254), 27);
        assert_eq!(length_code(255), 28);
        assert_eq!(offset_code(0), 0);
        assert_eq!(offset_code(4), 4);
        assert_eq!(offset_code(5), 4);
        assert_eq!(offset_code(255), 15);
        assert_eq!(offset_code(256), 16);
        assert_eq!(offset_code(32767), 29);
        assert_eq!(END_BLOCK_MARKER, 256);
    }
}
