//! The block writer's choices before klauspost 1.14 (`writeBlockDynamic`
//! with filled tables) and before 1.12.3 (`writeBlockHuff` with Shannon
//! estimates), for the old [`Version`](super::super::Version)s.

use super::super::bits::write_tokens;
use super::super::golog::log2;
use super::super::token::{m_fast_log2, Tokens, END_BLOCK_MARKER, MAX_STORE_BLOCK_SIZE};
use super::{BitWriter, HuffEstimate};

impl BitWriter {
    /// klauspost 1.10.2–1.12.2 `writeBlockHuff` after clearing the
    /// histograms: a Shannon estimate decides between stored, the previous
    /// table and a new one.
    pub(super) fn write_block_huff_shannon(&mut self, eof: bool, input: &[u8], sync: bool) {
        const NUM_LITERALS: usize = END_BLOCK_MARKER as usize + 1;
        const GUESS_HEADER_SIZE_BITS: i32 = 70 * 8;
        let fill = !eof && !sync;
        let h = &mut self.literal_freq[..256];
        for &b in input {
            h[b as usize] += 1;
        }
        // Go's float32 arithmetic, in the same order.
        let at_least_one = |v: f32| if v < 1.0 { 1.0 } else { v };
        if self.huff_estimate == HuffEstimate::Float64 {
            return self.write_block_huff_float64(eof, input, sync);
        }
        let (mut est_bits, est_extra) = if self.huff_estimate == HuffEstimate::FilledInPlace {
            let inv_total = 1.0f32 / input.len() as f32;
            let mut shannon = 0f32;
            let mut extra = 0f32;
            let one_bits = at_least_one(-m_fast_log2(inv_total));
            for v in h.iter_mut() {
                if *v > 0 {
                    let n = *v as f32;
                    shannon += at_least_one(-m_fast_log2(n * inv_total)) * n;
                } else if fill {
                    *v = 1;
                    extra += one_bits;
                }
            }
            ((shannon + 0.99) as i32 + 15, (extra + 0.99) as i32)
        } else {
            let mut total = input.len();
            if fill {
                total += h.iter().filter(|&&v| v == 0).count();
            }
            let inv_total = 1.0f32 / total as f32;
            let mut shannon = 0f32;
            for &v in h.iter() {
                if v > 0 {
                    let n = v as f32;
                    shannon += at_least_one(-m_fast_log2(n * inv_total)) * n;
                }
            }
            ((shannon + 0.99) as i32 + (input.len() / 32) as i32, 0)
        };
        est_bits += self.last_header;
        if self.last_header == 0 {
            est_bits += GUESS_HEADER_SIZE_BITS;
        }
        est_bits += est_bits >> self.log_new_table_penalty;
        let ssize = (input.len() as i32 + 5) * 8;
        if input.len() <= MAX_STORE_BLOCK_SIZE && ssize < est_bits {
            self.write_stored(input, eof);
            return;
        }
        if self.last_header > 0 {
            let reuse_size = self.literal_encoding.bit_length(&self.literal_freq[..256]);
            if est_bits + est_extra < reuse_size {
                self.write_eob_owed();
            }
        }
        if self.last_header == 0 {
            if fill && self.huff_estimate == HuffEstimate::Shannon {
                for v in &mut self.literal_freq[..NUM_LITERALS] {
                    if *v == 0 {
                        *v = 1;
                    }
                }
            }
            self.literal_freq[END_BLOCK_MARKER as usize] = 1;
            self.literal_encoding
                .generate(&self.literal_freq[..NUM_LITERALS], 15);
            self.generate_codegen(NUM_LITERALS, 1, true);
            self.codegen_encoding.generate(&self.codegen_freq, 7);
            let num_codegens = self.codegens();
            self.write_dynamic_header(NUM_LITERALS, 1, num_codegens, eof);
            self.last_huff_man = true;
            self.last_header = self.header_size().0;
        }
        self.write_literals(input, eof || sync);
    }

    /// klauspost 1.9.0–1.9.7 `writeBlockHuff` after counting the literals.
    pub(super) fn write_block_huff_float64(&mut self, eof: bool, input: &[u8], sync: bool) {
        const NUM_LITERALS: usize = END_BLOCK_MARKER as usize + 1;
        let fill = !eof && !sync;
        let inv_total = 1.0f64 / input.len() as f64;
        let single = (-log2(inv_total)).ceil();
        let mut shannon = 0f64;
        for v in &mut self.literal_freq[..256] {
            if *v > 0 {
                let n = *v as f64;
                shannon += (-log2(n * inv_total) * n).ceil();
            } else if fill {
                shannon += single;
                *v = 1;
            }
        }
        let mut est_bits = (shannon + 0.99) as i32 + 15;
        let ssize = (input.len() as i32 + 5) * 8;
        if input.len() <= MAX_STORE_BLOCK_SIZE && ssize < est_bits + (est_bits >> 4) {
            self.write_stored(input, eof);
            return;
        }
        if self.last_header > 0 {
            let size = self.header_size().0
                + self.literal_encoding.bit_length(&self.literal_freq)
                + self.huff_offset.bit_length(&self.offset_freq)
                + self.last_header;
            est_bits += est_bits >> self.log_new_table_penalty;
            if est_bits < size {
                self.write_eob_owed();
            }
        }
        if self.last_header == 0 {
            self.literal_freq[END_BLOCK_MARKER as usize] = 1;
            self.literal_encoding
                .generate(&self.literal_freq[..NUM_LITERALS], 15);
            self.generate_codegen(NUM_LITERALS, 1, true);
            self.codegen_encoding.generate(&self.codegen_freq, 7);
            let num_codegens = self.codegens();
            self.write_dynamic_header(NUM_LITERALS, 1, num_codegens, eof);
            self.last_huff_man = true;
            self.last_header = self.header_size().0;
        }
        self.write_literals(input, eof || sync);
    }

    /// klauspost 1.12.3–1.13.6 `writeBlockDynamic` after the end-of-block
    /// token: a continued block declares every code so its table can be
    /// reused without checking, stored wins unless the table saves a
    /// sixteenth, and the fixed code is never tried.
    pub(super) fn write_block_filled(
        &mut self,
        tokens: &mut Tokens,
        eof: bool,
        input: &[u8],
        sync: bool,
    ) {
        if (self.last_huff_man || eof) && self.last_header > 0 {
            self.write_eob_owed();
            self.last_huff_man = false;
        }
        if !sync {
            tokens.fill();
        }
        let (num_literals, num_offsets) = self.index_tokens(tokens, !sync);
        let storable = input.len() <= MAX_STORE_BLOCK_SIZE;
        let ssize = (input.len() as i32 + 5) * 8;
        if self.last_header > 0 {
            let mut new_size = self.last_header + tokens.estimated_bits();
            new_size += new_size >> self.log_new_table_penalty;
            // Before 1.9.8 the reuse cost counted a header too.
            let reuse_size = if self.reuse_costs_header {
                self.dynamic_size(self.extra_bit_size()).0
            } else {
                self.dynamic_reuse_size() + self.extra_bit_size()
            };
            let size = if new_size < reuse_size {
                self.write_eob_owed();
                new_size
            } else {
                reuse_size
            };
            if storable && ssize < size + (size >> 4) {
                self.write_stored(input, eof);
                self.last_header = 0;
                return;
            }
        }
        if self.last_header == 0 {
            self.generate();
            self.generate_codegen(num_literals, num_offsets, false);
            self.codegen_encoding.generate(&self.codegen_freq, 7);
            let (size, num_codegens) = self.dynamic_size(self.extra_bit_size());
            if storable && ssize < size + (size >> 4) {
                self.write_stored(input, eof);
                self.last_header = 0;
                return;
            }
            self.write_dynamic_header(num_literals, num_offsets, num_codegens, eof);
            self.last_header = self.header_size().0;
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
}
