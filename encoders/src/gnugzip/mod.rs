//! GNU `gzip -n` output, bit-exact, at levels 6 (the default: `tar | gzip
//! -n` layers), 1 and 9 ([`GnuLevel`]).
//!
//! The deflate code is a Rust port of **madler zlib 1.3.2** (`deflate.c`:
//! `deflate_slow`, `deflate_fast`, `longest_match`, `fill_window`'s slide;
//! `trees.c`: `_tr_flush_block`, `build_tree`, `gen_bitlen`, `gen_codes`,
//! `scan_tree`, `send_tree`, `build_bl_tree`, `send_all_trees`,
//! `compress_block`, `_tr_stored_block`, and `_tr_tally` with the early
//! block flush older zlib kept under `#ifdef TRUNCATE_BLOCK`), zlib license,
//! Copyright (C) 1995-2024 Jean-loup Gailly and Mark Adler. It is not derived
//! from GNU gzip's (GPL) source. zlib's code is made configurable by
//! [`Params`]; with zlib's own values ([`Params::zlib`]) it writes what
//! zlib 1.3.2 writes (tested against flate2's C backend at levels 1, 6 and 9).
//!
//! The values that give GNU gzip's output were found by measurement against
//! Debian's gzip 1.12 (bookworm), and Debian trixie's gzip 1.13
//! (1.13-1+deb13u1) wrote the same bytes on every test input and on whole
//! tars of `/usr/include`, `/usr/share/doc` and 200 MB of `/usr/lib` at
//! levels 1, 6 and 9. Each value differs from zlib's and changes some output
//! (`tests.rs`, `gnugzip_each_parameter_matters`):
//!
//! - 15 hash bits (zlib memLevel 8) but a 32 Ki-symbol buffer (memLevel
//!   9's): a block ends after 32767 symbols;
//! - the `TRUNCATE_BLOCK` check every 4096 symbols (mask `0xfff`; old zlib
//!   used `0x1fff`) at levels above 2: end the block when fewer than half its
//!   symbols are matches and an estimate of its compressed size is under
//!   half its input;
//! - at the end of the input: no clamp of `nice` to the lookahead (the
//!   search compares the stale window bytes after the end), the two bytes
//!   after the end zeroed, and no window slide once the input has ended, so
//!   no match search for strings in the window's last 261 bytes.
//!
//! The level table is zlib's. Levels 1 to 3 use `deflate_fast`, with the
//! early-flush check only at level 3. The header is `1f8b 0800 00000000 XX03`
//! (no name, mtime 0, OS 3; XFL `XX` is 04 at level 1, 02 at level 9, 00
//! otherwise), then the deflate blocks (the last one final), CRC-32 and
//! ISIZE.
//!
//! The output depends only on the input bytes, never on how writes split
//! it: the writer behaves like gzip reading a regular file, whose reads fill
//! the window. (gzip reading a pipe with short reads could in principle
//! slide its window one step earlier; that could only turn a stored block
//! into a compressed one, and was never seen.)

mod block;
mod bltree;
mod lz;
#[cfg(test)]
mod tests;
mod trees;

use std::io::{self, Write};

use block::BlockParams;

use crate::member::Member;
pub use lz::Params;

/// The 10-byte header of `gzip -n` at level 6: no name, mtime 0, XFL 0, OS 3.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// The deflate parameters that reproduce GNU gzip 1.12 and 1.13 at their
/// default level 6 (see the module doc): zlib's level-6 row (good 8, lazy
/// 16, nice 128, chain 128), 15 hash bits, 32 Ki symbols a block, the early
/// flush every 4096 symbols and gzip's end of input.
pub const GNU_LEVEL_6: Params = Params {
    hash_bits: 15,
    good: 8,
    lazy: 16,
    nice: 128,
    chain: 128,
    fast: false,
    clamp_nice: false,
    slide_at_end: false,
    zero_after_end: true,
    insert_guard: false,
    block: BlockParams {
        lit_bufsize: 0x8000,
        truncate_mask: Some(0xfff),
        level: 6,
    },
};

/// A compression level of GNU gzip this module reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GnuLevel {
    /// `gzip -1` (`--fast`): zlib's `deflate_fast`, XFL 4.
    Fastest,
    /// `gzip -6`, the default.
    Default,
    /// `gzip -9` (`--best`): XFL 2.
    Best,
}

impl GnuLevel {
    /// The level number gzip takes.
    pub fn number(self) -> u8 {
        match self {
            GnuLevel::Fastest => 1,
            GnuLevel::Default => 6,
            GnuLevel::Best => 9,
        }
    }

    /// The deflate parameters: [`GNU_LEVEL_6`] with this level's table row.
    pub fn params(self) -> Params {
        let level = self.number();
        let (good, lazy, nice, chain) = lz::config(level);
        let mut p = GNU_LEVEL_6;
        (p.good, p.lazy, p.nice, p.chain) = (good, lazy, nice, chain);
        p.fast = level <= 3;
        p.block.level = level;
        p
    }

    /// The 10-byte `gzip -n` header at this level.
    pub fn header(self) -> [u8; 10] {
        let mut h = HEADER;
        h[8] = match self {
            GnuLevel::Fastest => 4,
            GnuLevel::Default => 0,
            GnuLevel::Best => 2,
        };
        h
    }
}

/// Output buffered before it is handed to the inner writer.
const DRAIN_AT: usize = 1 << 16;

/// A streaming writer of one gzip member as GNU `gzip -n` (level 6) writes it.
///
/// Memory is bounded: about 450 KiB (64 KiB window, 128 KiB of hash head
/// and chain tables, 128 KiB symbol buffer, the pending output). After an
/// error from the inner writer every later call fails.
pub struct GnuGzipWriter<W: Write> {
    member: Member<W>,
    d: Box<lz::Deflater>,
}

impl<W: Write> GnuGzipWriter<W> {
    /// Starts a member at level 6, as `gzip -n` does.
    pub fn new(inner: W) -> Self {
        Self::with_params(inner, GNU_LEVEL_6, HEADER)
    }

    /// Starts a member at `level`, as `gzip -n -LEVEL` does.
    pub fn with_level(inner: W, level: GnuLevel) -> Self {
        Self::with_params(inner, level.params(), level.header())
    }

    /// Starts a member with any deflate parameters and header.
    pub fn with_params(inner: W, p: Params, header: [u8; 10]) -> Self {
        let mut d = Box::new(lz::Deflater::new(p));
        d.blocks.w.out.extend_from_slice(&header);
        GnuGzipWriter {
            member: Member::new(inner),
            d,
        }
    }

    /// Compresses what is left, writes CRC-32 and ISIZE, returns the inner
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.member.check()?;
        self.d.finish();
        self.member.finish(&mut self.d.blocks.w.out)
    }
}

impl<W: Write> Write for GnuGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.member.check()?;
        self.member.saw(buf);
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.d.write(rest);
            rest = &rest[n..];
            if self.d.blocks.w.out.len() >= DRAIN_AT {
                self.member.drain(&mut self.d.blocks.w.out)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.member.flush(&mut self.d.blocks.w.out)
    }
}
