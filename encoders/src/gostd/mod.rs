//! Go's `compress/gzip` writer, bit-exact, at the three levels container
//! tools use: `DefaultCompression` (6: BuildKit, moby, containerd),
//! `BestSpeed` (1: go-containerregistry, so crane, ko, kaniko and buildpacks)
//! and `BestCompression` (9). Choose one with [`GoLevel`];
//! [`GzipWriter::new`] is level 6.
//!
//! A port of Go 1.19 `compress/flate` (`deflate.go`, `deflatefast.go`,
//! `huffman_bit_writer.go`, `huffman_code.go`, `token.go`) under
//! `compress/gzip` (`gzip.go`), BSD-licensed, Copyright 2009 (2016 for
//! `deflatefast.go`) The Go Authors. These files are the same code from Go
//! 1.15 to Go 1.26 (the diffs of Debian's go1.15.15, go1.21.13, go1.24.4 and
//! go1.26.10 against go1.19.8 only drop an unused field, replace zeroing
//! loops by `clear()`, drop redundant `break`s, reorder struct fields and
//! edit comments), and each of those Go releases wrote the same bytes as
//! this module in the tests and the differential runs. So one variant per
//! level covers Go 1.15 to 1.26; the tests compare against whichever Go is
//! installed. **Go 1.27** replaced the package with a port of
//! klauspost/compress/flate ("compress/flate: improve compression speed",
//! golang.org/issue/75532): go1.27.3 differs at every level, even for a
//! 1-byte input, and is not reproduced here. Its deflate streams equal those
//! of klauspost/compress 1.20.3's `gzip` at the same level (checked on four
//! inputs at levels 1, 6 and 9; 1.18.0 and 1.15.12 differ), so that era
//! belongs with the klauspost ports, under Go's header.
//!
//! The stream is the 10-byte header `1f8b 0800 00000000 XXff` (zero
//! `Header`: no name, no mtime, OS 255; XFL `XX` is 04 at level 1, 02 at
//! level 9, 00 otherwise), deflate blocks that are never final, an empty
//! final stored block, then CRC-32 and ISIZE.
//!
//! Go's output can depend on how the input is split into `Write` calls. At
//! levels 6 and 9 its window shift, which bounds match distances, happens
//! at the first write that finds the window nearly processed; this writer
//! always behaves like Go fed with writes that fill the window before it is
//! compressed (`io.Copy`'s 32 KiB writes, or one big write), whatever sizes
//! its own callers use. At level 1 Go encodes blocks of exactly 65535 input
//! bytes whatever the write sizes (see `fast.rs`), so there is nothing to
//! choose. Go's `Flush` would change the output and has no equivalent here.

mod bitwriter;
mod deflate;
mod fast;
#[cfg(test)]
mod go_tests;
mod huffman;
#[cfg(test)]
mod tests;

use std::io::{self, Write};

use bitwriter::BitWriter;

use crate::member::Member;
use deflate::Compressor;
use fast::FastCompressor;

/// A compression level of Go's `gzip.NewWriterLevel`, in the Go versions
/// this module follows (1.15 to 1.26).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoLevel {
    /// Level 1, `gzip.BestSpeed` (`deflatefast.go`).
    BestSpeed,
    /// Level 6, `gzip.DefaultCompression`.
    Default,
    /// Level 9, `gzip.BestCompression`.
    BestCompression,
}

impl GoLevel {
    /// Every level, most used first.
    pub const ALL: [GoLevel; 3] = [
        GoLevel::Default,
        GoLevel::BestSpeed,
        GoLevel::BestCompression,
    ];

    /// A stable name for caches and reports: `gostd` (level 6, the name it
    /// had before levels existed), `gostd-1`, `gostd-9`.
    pub fn id(self) -> &'static str {
        match self {
            GoLevel::BestSpeed => "gostd-1",
            GoLevel::Default => "gostd",
            GoLevel::BestCompression => "gostd-9",
        }
    }

    /// The level named by [`GoLevel::id`].
    pub fn from_id(s: &str) -> Option<Self> {
        GoLevel::ALL.into_iter().find(|l| l.id() == s)
    }

    /// The number Go's API takes.
    pub fn number(self) -> u8 {
        match self {
            GoLevel::BestSpeed => 1,
            GoLevel::Default => 6,
            GoLevel::BestCompression => 9,
        }
    }

    /// The 10-byte header Go writes for a zero `Header` at this level.
    pub fn header(self) -> [u8; 10] {
        let xfl = match self {
            GoLevel::BestSpeed => 4,
            GoLevel::Default => 0,
            GoLevel::BestCompression => 2,
        };
        [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, xfl, 0xff]
    }
}

/// The LZ77 stage of one level; both kinds own the block writer.
enum Engine {
    /// Levels 6 and 9: `deflate.go`'s lazy matcher.
    Lazy(Box<Compressor>),
    /// Level 1: `deflatefast.go`.
    Fast(Box<FastCompressor>),
}

impl Engine {
    fn bits(&mut self) -> &mut BitWriter {
        match self {
            Engine::Lazy(c) => &mut c.w,
            Engine::Fast(c) => &mut c.w,
        }
    }

    fn write(&mut self, b: &[u8]) {
        match self {
            Engine::Lazy(c) => c.write(b),
            Engine::Fast(c) => c.write(b),
        }
    }

    fn close(&mut self) {
        match self {
            Engine::Lazy(c) => c.close(),
            Engine::Fast(c) => c.close(),
        }
    }
}

/// Input handed to the compressor between drains of its output, so the
/// pending compressed bytes stay bounded whatever the caller's write size.
const INPUT_CHUNK: usize = 1 << 16;

/// Go's `compress/gzip` writer at one [`GoLevel`].
///
/// Streaming with constant memory (about 900 KiB of tables and buffers at
/// levels 6 and 9, 600 KiB at level 1).
/// After an error from the inner writer every later call fails, as Go's
/// writers do.
pub struct GzipWriter<W: Write> {
    member: Member<W>,
    engine: Engine,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a gzip member at `DefaultCompression` (level 6); nothing
    /// reaches `inner` until the first write, flush or finish.
    pub fn new(inner: W) -> Self {
        GzipWriter::with_level(inner, GoLevel::Default)
    }

    /// Starts a gzip member at `level`, as `gzip.NewWriterLevel` does.
    pub fn with_level(inner: W, level: GoLevel) -> Self {
        let mut engine = match level {
            GoLevel::BestSpeed => Engine::Fast(Box::new(FastCompressor::new())),
            GoLevel::Default => Engine::Lazy(Box::new(Compressor::new(deflate::LEVEL_6))),
            GoLevel::BestCompression => Engine::Lazy(Box::new(Compressor::new(deflate::LEVEL_9))),
        };
        engine.bits().out.extend_from_slice(&level.header());
        GzipWriter {
            member: Member::new(inner),
            engine,
        }
    }

    /// Compress what is left, write the trailer, return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.member.check()?;
        self.engine.close();
        self.member.finish(&mut self.engine.bits().out)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.member.check()?;
        for chunk in buf.chunks(INPUT_CHUNK) {
            self.engine.write(chunk);
            self.member.drain(&mut self.engine.bits().out)?;
        }
        self.member.saw(buf);
        Ok(buf.len())
    }

    /// Passes on what is already compressed; unlike Go's `Flush` this never
    /// emits a sync block, which would change the output.
    fn flush(&mut self) -> io::Result<()> {
        self.member.flush(&mut self.engine.bits().out)
    }
}
