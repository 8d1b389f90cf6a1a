//! Block writer (klauspost/compress `flate/huffman_bit_writer.go`): chooses
//! stored, fixed or dynamic Huffman per block, reuses the previous dynamic
//! table across blocks when its estimate says so, and owes the end-of-block
//! code until the next header or flush, exactly as klauspost does.

use super::bits::{write_tokens, Bits};
use super::huffman::{hlen, HCode, HuffmanEncoder};
use super::token::{
    Tokens, END_BLOCK_MARKER, LENGTH_EXTRA_BITS, LITERAL_COUNT, MAX_STORE_BLOCK_SIZE,
    OFFSET_CODE_COUNT, OFFSET_EXTRA_BITS,
};
use super::Version;

mod legacy;

const CODEGEN_CODE_COUNT: usize = 19;
const BAD_CODE: u8 = 255;
const LENGTH_CODES_START: usize = 257;
const CODEGEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// How `writeBlockHuff` estimates a literal-only block's size.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HuffEstimate {
    /// 1.9.0–1.9.7 `histogramSize`: float64 Shannon bits rounded up per
    /// literal; absent literals of a block that may be continued are counted
    /// in it and in the histogram; reuse is costed as a fresh block.
    Float64,
    /// 1.10.2–1.11.12 `histogramSize`: Shannon bits, plus the cost of the
    /// absent literals of a block that may be continued, which are counted
    /// in the histogram (and so in the reuse estimate and the table).
    FilledInPlace,
    /// 1.11.13–1.12.2 `histogramSize`: Shannon bits over the literals plus
    /// the absent ones of a block that may be continued, plus 1/32 of the
    /// input; the table gets the absent ones only when it is built.
    Shannon,
    /// 1.12.3 and later: the size with the table a fresh build would give.
    Table,
}

/// klauspost `huffmanBitWriter`.
pub(super) struct BitWriter {
    pub bw: Bits,
    /// compress ≥ 1.18.2 always counts an end-of-block symbol when indexing
    /// tokens (1.18.1 trims the header's code counts on non-final blocks too).
    always_eob: bool,
    /// compress < 1.18.1: a block that may be continued declares every code.
    declare_all: bool,
    /// Below this many tokens the fixed code is considered (250 from
    /// klauspost 1.14.3, always before).
    max_predefined_tokens: usize,
    /// A literal-only block of near-uniform bytes is stored without building
    /// a table (from klauspost 1.14.3).
    quick_store: bool,
    /// The closing empty block is fixed-coded (10 bits), not stored
    /// (klauspost 1.10.2 and later).
    fixed_empty_final: bool,
    /// klauspost < 1.14 `writeBlockDynamic`: filled tables, no fixed code.
    filled_tables: bool,
    /// How a literal-only block estimates its size.
    huff_estimate: HuffEstimate,
    /// Reusing a table is costed with a header (klauspost < 1.9.8).
    reuse_costs_header: bool,
    last_huff_man: bool,
    literal_encoding: HuffmanEncoder,
    tmp_lit_encoding: HuffmanEncoder,
    offset_encoding: HuffmanEncoder,
    codegen_encoding: HuffmanEncoder,
    fixed_literal: HuffmanEncoder,
    fixed_offset: HuffmanEncoder,
    huff_offset: HuffmanEncoder,
    /// Header size in bits of the table still in use; nonzero means an EOB is owed.
    last_header: i32,
    log_new_table_penalty: u32,
    literal_freq: [u16; LENGTH_CODES_START + 32],
    offset_freq: [u16; 32],
    codegen_freq: [u16; CODEGEN_CODE_COUNT],
    codegen: [u8; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
}

impl BitWriter {
    pub fn new(version: Version) -> Self {
        let mut huff_offset = HuffmanEncoder::new(OFFSET_CODE_COUNT);
        let mut f = [0u16; OFFSET_CODE_COUNT];
        f[0] = 1;
        huff_offset.generate(&f, 15);
        BitWriter {
            bw: Bits {
                out: Vec::new(),
                bits: 0,
                nbits: 0,
            },
            always_eob: version >= Version::V1_18_2,
            declare_all: version < Version::V1_18_1,
            max_predefined_tokens: if version >= Version::V1_14_3 {
                250
            } else {
                usize::MAX
            },
            quick_store: version >= Version::V1_14_3,
            fixed_empty_final: version >= Version::V1_10_2,
            reuse_costs_header: version < Version::V1_9_8,
            filled_tables: version < Version::V1_14_0,
            huff_estimate: if version < Version::V1_9_8 {
                HuffEstimate::Float64
            } else if version < Version::V1_11_13 {
                HuffEstimate::FilledInPlace
            } else if version < Version::V1_12_3 {
                HuffEstimate::Shannon
            } else {
                HuffEstimate::Table
            },
            last_huff_man: false,
            literal_encoding: HuffmanEncoder::new(LITERAL_COUNT),
            tmp_lit_encoding: HuffmanEncoder::new(LITERAL_COUNT),
            offset_encoding: HuffmanEncoder::new(OFFSET_CODE_COUNT),
            codegen_encoding: HuffmanEncoder::new(CODEGEN_CODE_COUNT),
            fixed_literal: HuffmanEncoder::fixed_literal(),
            fixed_offset: HuffmanEncoder::fixed_offset(),
            huff_offset,
            last_header: 0,
            log_new_table_penalty: if version < Version::V1_11_13 {
                6
            } else if version < Version::V1_14_0 {
                8
            } else {
                7
            },
            literal_freq: [0; LENGTH_CODES_START + 32],
            offset_freq: [0; 32],
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            codegen: [0; LITERAL_COUNT + OFFSET_CODE_COUNT + 1],
        }
    }

    pub fn reset(&mut self) {
        self.bw.bits = 0;
        self.bw.nbits = 0;
        self.last_header = 0;
        self.last_huff_man = false;
    }

    fn write_eob_owed(&mut self) {
        if self.last_header > 0 {
            self.bw
                .write_code(self.literal_encoding.codes[END_BLOCK_MARKER as usize]);
            self.last_header = 0;
        }
    }

    pub fn flush(&mut self) {
        self.write_eob_owed();
        self.bw.flush_bytes();
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.bw.nbits & 7, 0);
        self.bw.flush_bytes();
        self.bw.out.extend_from_slice(bytes);
    }

    /// A stored header; an empty final block becomes a 10-bit fixed block.
    pub fn write_stored_header(&mut self, length: usize, is_eof: bool) {
        self.write_eob_owed();
        if self.fixed_empty_final && length == 0 && is_eof {
            self.write_fixed_header(is_eof);
            self.bw.write_bits(0, 7);
            self.flush();
            return;
        }
        self.bw.write_bits(is_eof as u32, 3);
        self.flush();
        self.bw.write_bits(length as u32, 16);
        self.bw.write_bits(!(length as u16) as u32, 16);
    }

    fn write_fixed_header(&mut self, is_eof: bool) {
        self.write_eob_owed();
        self.bw.write_bits(if is_eof { 3 } else { 2 }, 3);
    }

    fn write_stored(&mut self, input: &[u8], eof: bool) {
        self.write_stored_header(input.len(), eof);
        self.write_bytes(input);
    }

    /// RFC 1951 3.2.7 run-length coding of the code lengths into `codegen`.
    fn generate_codegen(&mut self, num_literals: usize, num_offsets: usize, huff: bool) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let off_codes = if huff {
            &self.huff_offset.codes
        } else {
            &self.offset_encoding.codes
        };
        let codegen = &mut self.codegen;
        for (c, &h) in codegen[..num_literals]
            .iter_mut()
            .zip(&self.literal_encoding.codes)
        {
            *c = hlen(h) as u8;
        }
        for (c, &h) in codegen[num_literals..num_literals + num_offsets]
            .iter_mut()
            .zip(off_codes)
        {
            *c = hlen(h) as u8;
        }
        codegen[num_literals + num_offsets] = BAD_CODE;

        let freq = &mut self.codegen_freq;
        let mut size = codegen[0];
        let mut count: i32 = 1;
        let mut out_index = 0usize;
        let mut in_index = 1usize;
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
            count -= 1;
            while count >= 0 {
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

    fn codegens(&self) -> usize {
        let mut n = CODEGEN_CODE_COUNT;
        while n > 4 && self.codegen_freq[CODEGEN_ORDER[n - 1]] == 0 {
            n -= 1;
        }
        n
    }

    fn header_size(&self) -> (i32, usize) {
        let n = self.codegens();
        let f = &self.codegen_freq;
        let size = 3
            + 5
            + 5
            + 4
            + 3 * n as i32
            + self.codegen_encoding.bit_length(f)
            + f[16] as i32 * 2
            + f[17] as i32 * 3
            + f[18] as i32 * 7;
        (size, n)
    }

    fn dynamic_reuse_size(&self) -> i32 {
        self.literal_encoding.bit_length(&self.literal_freq)
            + self.offset_encoding.bit_length(&self.offset_freq)
    }

    fn dynamic_size(&self, extra_bits: i32) -> (i32, usize) {
        let (header, n) = self.header_size();
        (header + self.dynamic_reuse_size() + extra_bits, n)
    }

    fn extra_bit_size(&self) -> i32 {
        let mut total = 0i32;
        for (i, &n) in self.literal_freq[257..LITERAL_COUNT].iter().enumerate() {
            total += n as i32 * LENGTH_EXTRA_BITS[i & 31] as i32;
        }
        for (i, &n) in self.offset_freq[..OFFSET_CODE_COUNT].iter().enumerate() {
            total += n as i32 * OFFSET_EXTRA_BITS[i & 31] as i32;
        }
        total
    }

    fn fixed_size(&self, extra_bits: i32) -> i32 {
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
        let bw = &mut self.bw;
        bw.write_bits(if is_eof { 5 } else { 4 }, 3);
        bw.write_bits((num_literals - 257) as u32, 5);
        bw.write_bits((num_offsets - 1) as u32, 5);
        bw.write_bits((num_codegens - 4) as u32, 4);
        let cg = &self.codegen_encoding.codes;
        for &o in &CODEGEN_ORDER[..num_codegens] {
            bw.write_bits(hlen(cg[o]), 3);
        }
        let mut i = 0;
        loop {
            let code_word = self.codegen[i];
            i += 1;
            if code_word == BAD_CODE {
                break;
            }
            bw.write_code(cg[code_word as usize]);
            let extra = match code_word {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => continue,
            };
            bw.write_bits(self.codegen[i] as u32, extra);
            i += 1;
        }
    }

    fn can_reuse(&self, t: &Tokens) -> bool {
        let off = &self.offset_encoding.codes;
        let lit = &self.literal_encoding.codes;
        let used_without_code =
            |hist: &[u16], codes: &[HCode]| hist.iter().zip(codes).any(|(&v, &c)| v != 0 && c == 0);
        !(used_without_code(&t.off_hist[..OFFSET_CODE_COUNT], off)
            || used_without_code(
                &t.extra_hist[..LITERAL_COUNT - 256],
                &lit[256..LITERAL_COUNT],
            )
            || used_without_code(&t.lit_hist, &lit[..256]))
    }

    /// Copies the histograms; returns the code counts for the header.
    fn index_tokens(&mut self, t: &Tokens, filled_or_eob: bool) -> (usize, usize) {
        self.literal_freq[..256].copy_from_slice(&t.lit_hist);
        self.literal_freq[256..288].copy_from_slice(&t.extra_hist);
        self.offset_freq = t.off_hist;
        if t.n() == 0 {
            return (0, 0);
        }
        if self.always_eob {
            if filled_or_eob {
                self.literal_freq[END_BLOCK_MARKER as usize] = 1;
            }
        } else if filled_or_eob {
            // compress < 1.18.1: a block that may be continued declares every code.
            return (LITERAL_COUNT, OFFSET_CODE_COUNT);
        }
        let mut num_literals = self.literal_freq.len();
        while self.literal_freq[num_literals - 1] == 0 {
            num_literals -= 1;
        }
        let mut num_offsets = self.offset_freq.len();
        while num_offsets > 0 && self.offset_freq[num_offsets - 1] == 0 {
            num_offsets -= 1;
        }
        if num_offsets == 0 {
            // The offset tree must have one code to be encodable.
            self.offset_freq[0] = 1;
            num_offsets = 1;
        }
        (num_literals, num_offsets)
    }

    fn generate(&mut self) {
        self.literal_encoding
            .generate(&self.literal_freq[..LITERAL_COUNT], 15);
        self.offset_encoding
            .generate(&self.offset_freq[..OFFSET_CODE_COUNT], 15);
    }

    fn write_fixed_tokens(&mut self, tokens: &mut Tokens, eof: bool, sync: bool) {
        self.write_fixed_header(eof);
        if !sync {
            tokens.add_eob();
        }
        write_tokens(
            &mut self.bw,
            tokens.tokens(),
            &self.fixed_literal.codes,
            &self.fixed_offset.codes,
        );
    }

    /// klauspost `writeBlockDynamic`.
    pub fn write_block_dynamic(
        &mut self,
        tokens: &mut Tokens,
        eof: bool,
        input: &[u8],
        sync: bool,
    ) {
        let sync = sync || eof;
        if sync {
            tokens.add_eob();
        }
        if self.filled_tables {
            return self.write_block_filled(tokens, eof, input, sync);
        }
        // A pure-literal table cannot be reused, and a final block needs its own header.
        if (self.last_huff_man || eof) && self.last_header > 0 {
            self.write_eob_owed();
            self.last_huff_man = false;
        }
        if self.last_header > 0 && !self.can_reuse(tokens) {
            self.write_eob_owed();
        }
        // 1.18.1 passes `fillReuse && !sync` (always false): trimmed counts, no EOB.
        let (num_literals, num_offsets) =
            self.index_tokens(tokens, self.always_eob || (self.declare_all && !sync));
        let ssize = (input.len() as i32 + 5) * 8;
        let storable = input.len() <= MAX_STORE_BLOCK_SIZE;
        let mut extra_bits = 0;
        if storable || self.last_header > 0 {
            extra_bits = self.extra_bit_size();
        }

        if self.last_header > 0 {
            // Estimate a fresh table with the previous header size and a penalty.
            let mut new_size = self.last_header + tokens.estimated_bits();
            new_size += hlen(self.literal_encoding.codes[END_BLOCK_MARKER as usize]) as i32
                + (new_size >> self.log_new_table_penalty);
            let reuse_size = self.dynamic_reuse_size() + extra_bits;
            let size = if new_size < reuse_size {
                self.write_eob_owed();
                new_size
            } else {
                reuse_size
            };
            if tokens.n() < self.max_predefined_tokens {
                let pre_size = self.fixed_size(extra_bits) + 7;
                if pre_size < size {
                    if storable && ssize <= size {
                        self.write_stored(input, eof);
                        return;
                    }
                    self.write_fixed_tokens(tokens, eof, sync);
                    return;
                }
            }
            if storable && ssize <= size {
                self.write_stored(input, eof);
                return;
            }
        }

        if self.last_header == 0 {
            self.literal_freq[END_BLOCK_MARKER as usize] = 1;
            self.generate();
            self.generate_codegen(num_literals, num_offsets, false);
            self.codegen_encoding.generate(&self.codegen_freq, 7);
            let (size, num_codegens) = self.dynamic_size(extra_bits);
            if tokens.n() < self.max_predefined_tokens {
                let pre_size = self.fixed_size(extra_bits);
                if pre_size <= size {
                    if storable && ssize <= pre_size {
                        self.write_stored(input, eof);
                        return;
                    }
                    self.write_fixed_tokens(tokens, eof, sync);
                    return;
                }
            }
            if storable && ssize <= size {
                self.write_stored(input, eof);
                return;
            }
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            if !sync {
                self.last_header = self.header_size().0;
            }
            self.last_huff_man = false;
        }
        if sync {
            self.last_header = 0;
        }
        write_tokens(
            &mut self.bw,
            tokens.tokens(),
            &self.literal_encoding.codes,
            &self.offset_encoding.codes,
        );
    }

    /// klauspost `writeBlockHuff`: literals only, or stored if that is not smaller.
    pub fn write_block_huff(&mut self, eof: bool, input: &[u8], sync: bool) {
        self.literal_freq = [0; LENGTH_CODES_START + 32];
        if !self.last_huff_man {
            self.offset_freq = [0; 32];
        }
        if self.huff_estimate != HuffEstimate::Table {
            return self.write_block_huff_shannon(eof, input, sync);
        }
        const NUM_LITERALS: usize = END_BLOCK_MARKER as usize + 1;
        // klauspost's guess of a literal-only header: 70 bytes.
        const GUESS_HEADER_SIZE_BITS: i32 = 70 * 8;
        for &b in input {
            self.literal_freq[b as usize] += 1;
        }
        let ssize = (input.len() as i32 + 5) * 8;
        let storable = input.len() <= MAX_STORE_BLOCK_SIZE;
        if self.quick_store && storable && input.len() > 1024 {
            // Quick check for incompressible content (float64, as in Go).
            let mut abs = 0f64;
            let avg = input.len() as f64 / 256.0;
            let max = (input.len() * 2) as f64;
            for &v in &self.literal_freq[..256] {
                let diff = v as f64 - avg;
                abs += diff * diff;
                if abs > max {
                    break;
                }
            }
            if abs < max {
                self.write_stored(input, eof);
                return;
            }
        }
        self.literal_freq[END_BLOCK_MARKER as usize] = 1;
        self.tmp_lit_encoding
            .generate(&self.literal_freq[..NUM_LITERALS], 15);
        let mut est_bits = self
            .tmp_lit_encoding
            .can_reuse_bits(&self.literal_freq[..NUM_LITERALS]);
        if est_bits < i32::MAX {
            est_bits += self.last_header;
            if self.last_header == 0 {
                est_bits += GUESS_HEADER_SIZE_BITS;
            }
            est_bits += est_bits >> self.log_new_table_penalty;
        }
        if storable && ssize <= est_bits {
            self.write_stored(input, eof);
            return;
        }
        if self.last_header > 0 {
            let reuse_size = self
                .literal_encoding
                .can_reuse_bits(&self.literal_freq[..256]);
            if est_bits < reuse_size {
                self.write_eob_owed();
            }
        }
        if self.last_header == 0 {
            std::mem::swap(&mut self.literal_encoding, &mut self.tmp_lit_encoding);
            self.generate_codegen(NUM_LITERALS, 1, true);
            self.codegen_encoding.generate(&self.codegen_freq, 7);
            let num_codegens = self.codegens();
            self.write_dynamic_header(NUM_LITERALS, 1, num_codegens, eof);
            self.last_huff_man = true;
            self.last_header = self.header_size().0;
        }
        self.write_literals(input, eof || sync);
    }

    /// The literals of `input` with the current table, and the end-of-block
    /// code if the block `ends`.
    fn write_literals(&mut self, input: &[u8], ends: bool) {
        let enc = &self.literal_encoding.codes[..256];
        let bw = &mut self.bw;
        let (mut bits, mut nbits) = (bw.bits, bw.nbits);
        for &t in input {
            if nbits >= 48 {
                bw.out.extend_from_slice(&bits.to_le_bytes()[..6]);
                bits >>= 48;
                nbits -= 48;
            }
            let c = enc[t as usize];
            bits |= ((c >> 8) as u64) << (nbits & 63);
            nbits += hlen(c);
        }
        bw.bits = bits;
        bw.nbits = nbits;
        if bw.nbits >= 48 {
            bw.write_out();
        }
        if ends {
            bw.write_code(self.literal_encoding.codes[END_BLOCK_MARKER as usize]);
            self.last_header = 0;
            self.last_huff_man = false;
        }
    }
}
