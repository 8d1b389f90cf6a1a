//! GNU `gzip -n` output, bit-exact: `tar | gzip -n` layers.
//!
//! The deflate code is a Rust port of **madler zlib 1.3.2** (`deflate.c`:
//! `deflate_slow`, `deflate_fast`, `longest_match`, `fill_window`'s slide;
//! `trees.c`: `_tr_flush_block`, `build_tree`, `gen_bitlen`, `gen_codes`,
//! `build_bl_tree`, `send_all_trees`, `compress_block`, `_tr_stored_block`,
//! `_tr_tally` with the `TRUNCATE_BLOCK` heuristic of older zlib), zlib
//! license, Copyright (C) 1995-2024 Jean-loup Gailly and Mark Adler. It is
//! not derived from GNU gzip's (GPL) source. zlib's code is made
//! configurable by [`lz::Params`]; the parameters that give GNU gzip's
//! output were found by measurement against Debian's gzip 1.12 (bookworm).
//! See [`GNU_LEVEL_6`] for them.

mod block;
mod bltree;
mod lz;
#[cfg(test)]
mod tests;
mod trees;

use std::io::{self, Write};

use block::BlockParams;
pub use lz::Params;

/// The 10-byte header of `gzip -n` at level 6: no name, mtime 0, XFL 0, OS 3.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// The deflate parameters that reproduce GNU gzip 1.12 at its default
/// level 6 (found by measurement): zlib's level-6 table (good 8, lazy 16,
/// nice 128, chain 128), 15 hash bits (zlib memLevel 8) but a 32 Ki-symbol
/// buffer (memLevel 9's), a `TRUNCATE_BLOCK` early-flush check every 4096
/// symbols, and gzip's end of input (no clamp of `nice` to the lookahead,
/// strings inserted past the end, no search in the last 261 window bytes).
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
/// Memory is bounded (a 64 KiB window, 64 KiB hash table, 128 KiB symbol
/// buffer and the pending output). After an error from the inner writer
/// every later call fails.
pub struct GnuGzipWriter<W: Write> {
    inner: W,
    d: Box<lz::Deflater>,
    crc: crc32fast::Hasher,
    size: u32,
    failed: bool,
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
            inner,
            d,
            crc: crc32fast::Hasher::new(),
            size: 0,
            failed: false,
        }
    }

    /// Compresses what is left, writes CRC-32 and ISIZE, returns the inner
    /// writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.d.finish();
        let crc = std::mem::take(&mut self.crc).finalize();
        let out = &mut self.d.blocks.w.out;
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        self.drain()?;
        Ok(self.inner)
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "gzip writer unusable after an earlier write error",
            ));
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        let out = &mut self.d.blocks.w.out;
        if let Err(e) = self.inner.write_all(out) {
            self.failed = true;
            return Err(e);
        }
        out.clear();
        Ok(())
    }
}

impl<W: Write> Write for GnuGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.crc.update(buf);
        self.size = self.size.wrapping_add(buf.len() as u32);
        let mut rest = buf;
        while !rest.is_empty() {
            let n = self.d.write(rest);
            rest = &rest[n..];
            if self.d.blocks.w.out.len() >= DRAIN_AT {
                self.drain()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.drain()?;
        self.inner.flush()
    }
}
