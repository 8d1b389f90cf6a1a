//! zlib-ng level 6 in flate2's gzip framing, as rpm-ostree / ostree-ext make
//! layers on Fedora ≥ 40 (ocidir → flate2 `zlib` → the host's libz, which is
//! zlib-ng-compat there), bit-exact.
//!
//! The deflate is zlib-rs 0.6 (a Rust port of zlib-ng). Measured against C
//! builds of zlib-ng (`-DZLIB_COMPAT=ON`, x86-64 with SSE4.2/AVX2) fed the
//! same calls, level-6 output falls into three eras:
//!
//! | era | zlib-ng | zlib-rs with equal output | here |
//! |---|---|---|---|
//! | A | 2.0.x, 2.1.x (2.0.7 also differs on tiny inputs) | 0.2.1, 0.3.1 | no |
//! | B | 2.2.0 – 2.2.4 | 0.4.2 | in the `cfs-zng22` crate, through this writer |
//! | C | 2.2.5, 2.3.3 | 0.5.5, 0.6.8 | yes |
//!
//! Era A's bytes depend on the CPU: on x86 with SSE4.2 its hash is CRC-32C;
//! built without SIMD, 2.0.7 and 2.1.6 give era C's bytes. zlib-rs before
//! 0.5 has no safe streaming API (a `DeflateStream` comes only from an
//! `unsafe fn`): era B is driven through [`DeflateCalls`] by the small
//! `cfs-zng22` crate, the one place that allows unsafe code; era A is not
//! reproduced.
//!
//! Unlike madler zlib, zlib-ng's output depends on how the input is cut into
//! `deflate()` calls and on the output space each call gets. So this writer
//! drives the deflate exactly as flate2's `GzEncoder` does (each write handed
//! whole to one call with a fresh 32 KiB output buffer, again with the rest
//! while that buffer fills; then `Z_FINISH` with no input), and
//! [`TarRsChunks`] re-cuts the tar into the writes tar-rs's `Builder` made
//! when ostree-ext wrote it (its `append`: header, data through `io::copy`'s
//! 8 KiB buffer, padding; GNU long names with their NUL written apart; the
//! 1024-byte end in one write), whatever sizes our own callers write.

use std::io::{self, Write};

use zlib_rs::{Deflate, DeflateFlush, Status};

/// The newest zlib-ng release whose level-6 output [`ZlibNg6Writer`] was
/// checked to reproduce (2.2.5 too: era C).
pub const ZLIB_NG_VERSION: &str = "2.3.3";

/// flate2's output buffer (`zio::Writer`): the space each `deflate()` call gets.
const FLATE2_OUT: usize = 32 * 1024;
/// `std::io::copy`'s stack buffer: the largest data write tar-rs makes.
const COPY_BUF: usize = 8 * 1024;
/// flate2's `GzEncoder` header: no flags, mtime 0, XFL 0, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A raw deflate driven call by call, as a C zlib's `deflate()` is.
pub trait DeflateCalls {
    /// One call: takes from `input`, writes into `out` (finishing the stream
    /// when `finish`); returns the bytes taken, the bytes written, and
    /// whether the stream ended.
    fn call(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        finish: bool,
    ) -> io::Result<(usize, usize, bool)>;
}

impl DeflateCalls for Deflate {
    fn call(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        finish: bool,
    ) -> io::Result<(usize, usize, bool)> {
        let (in0, out0) = (self.total_in(), self.total_out());
        let flush = match finish {
            true => DeflateFlush::Finish,
            false => DeflateFlush::NoFlush,
        };
        let status = self
            .compress(input, out, flush)
            .map_err(|e| io::Error::other(format!("deflate: {}", e.as_str())))?;
        Ok((
            (self.total_in() - in0) as usize,
            (self.total_out() - out0) as usize,
            status == Status::StreamEnd,
        ))
    }
}

/// zlib-ng level 6 behind flate2's gzip header and trailer, fed the way
/// ostree-ext's tar-rs `Builder` fed it. Input must be a tar stream for the
/// bytes to match; anything else is still compressed correctly. The
/// deflate is zlib-rs 0.6 (era C) unless [`ZlibNg6Writer::with_engine`]
/// gives another.
pub struct ZlibNg6Writer<W: Write, D: DeflateCalls = Deflate> {
    chunks: TarRsChunks<Flate2Gz<W, D>>,
}

impl<W: Write> ZlibNg6Writer<W> {
    /// A writer into `inner`.
    pub fn new(inner: W) -> Self {
        Self::with_engine(inner, Deflate::new(6, false, 15))
    }
}

impl<W: Write, D: DeflateCalls> ZlibNg6Writer<W, D> {
    /// A writer into `inner` over `engine`, a raw level-6 deflate (window
    /// bits 15, memLevel 8).
    pub fn with_engine(inner: W, engine: D) -> Self {
        ZlibNg6Writer {
            chunks: TarRsChunks::new(Flate2Gz::with_engine(inner, engine)),
        }
    }

    /// Write the trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.chunks.finish()?.finish()
    }
}

impl<W: Write, D: DeflateCalls> Write for ZlibNg6Writer<W, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.chunks.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.chunks.flush()
    }
}

/// zlib-rs driven like flate2's `write::GzEncoder` over a C zlib: each
/// `write` is the input of `deflate()` calls with a fresh 32 KiB output each.
pub struct Flate2Gz<W: Write, D: DeflateCalls = Deflate> {
    deflate: D,
    out: Vec<u8>,
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
    header_written: bool,
}

impl<W: Write> Flate2Gz<W> {
    /// Raw deflate at `level` (window bits 15, memLevel 8), gzip framed.
    pub fn new(inner: W, level: i32) -> Self {
        Self::with_engine(inner, Deflate::new(level, false, 15))
    }
}

impl<W: Write, D: DeflateCalls> Flate2Gz<W, D> {
    /// `engine`'s raw deflate, gzip framed.
    pub fn with_engine(inner: W, engine: D) -> Self {
        Flate2Gz {
            deflate: engine,
            out: vec![0; FLATE2_OUT],
            inner,
            crc: crc32fast::Hasher::new(),
            len: 0,
            header_written: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.inner.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// One `deflate()` call; its output goes to `inner`. Returns the input
    /// taken, the output made and whether the stream ended.
    fn step(&mut self, input: &[u8], finish: bool) -> io::Result<(usize, usize, bool)> {
        let (taken, produced, end) = self.deflate.call(input, &mut self.out, finish)?;
        self.inner.write_all(&self.out[..produced])?;
        Ok((taken, produced, end))
    }

    /// Finish the stream (flate2's `try_finish`), write the trailer, return `inner`.
    pub fn finish(mut self) -> io::Result<W> {
        self.header()?;
        loop {
            let (_, produced, end) = self.step(&[], true)?;
            if end || produced == 0 {
                break;
            }
        }
        self.inner
            .write_all(&self.crc.clone().finalize().to_le_bytes())?;
        self.inner.write_all(&(self.len as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write, D: DeflateCalls> Write for Flate2Gz<W, D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.header()?;
        // flate2 consumes what one call takes and `write_all` comes back with
        // the rest: the same sequence of calls as this loop.
        let mut rest = buf;
        while !rest.is_empty() {
            let (taken, _, _) = self.step(rest, false)?;
            self.crc.update(&rest[..taken]);
            rest = &rest[taken..];
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where a tar stream's parse is.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Expecting a 512-byte header block.
    Header,
    /// Inside an entry's data: `left` bytes to go, of which the last `nul`
    /// (1 for GNU long names, 0 otherwise) were a separate read; `pad` bytes follow.
    Data { left: u64, nul: u64, pad: usize },
    /// Padding to the next block.
    Pad(usize),
}

/// Re-cuts a tar stream into the writes tar-rs 0.4's `Builder::append_data`
/// makes: each header block, entry data in 8 KiB pieces (one `io::copy`),
/// a GNU long name's NUL apart (`data.chain(repeat(0).take(1))`), the padding
/// in one write, and the end-of-archive zero blocks in one write (`finish`).
pub struct TarRsChunks<W: Write> {
    inner: W,
    buf: Vec<u8>,
    pos: usize,
    part: Part,
    /// All-zero header blocks seen and not yet passed on.
    zero_blocks: usize,
}

impl<W: Write> TarRsChunks<W> {
    /// A re-cutter writing into `inner`.
    pub fn new(inner: W) -> Self {
        TarRsChunks {
            inner,
            buf: Vec::new(),
            pos: 0,
            part: Part::Header,
            zero_blocks: 0,
        }
    }

    /// Pass on everything held (the end-of-archive blocks in one write) and
    /// return `inner`.
    pub fn finish(mut self) -> io::Result<W> {
        self.pump()?;
        let mut tail = vec![0u8; self.zero_blocks * 512];
        tail.extend_from_slice(&self.buf[self.pos..]);
        if !tail.is_empty() {
            self.inner.write_all(&tail)?;
        }
        Ok(self.inner)
    }

    fn emit(&mut self, n: usize) -> io::Result<()> {
        self.inner.write_all(&self.buf[self.pos..self.pos + n])?;
        self.pos += n;
        Ok(())
    }

    /// Write every piece that is complete.
    fn pump(&mut self) -> io::Result<()> {
        loop {
            let avail = self.buf.len() - self.pos;
            match self.part {
                Part::Header => {
                    if avail < 512 {
                        break;
                    }
                    let block = &self.buf[self.pos..self.pos + 512];
                    if block.iter().all(|&b| b == 0) {
                        self.zero_blocks += 1;
                        self.pos += 512;
                        continue;
                    }
                    let (size, long_name) = (entry_size(block), matches!(block[156], b'L' | b'K'));
                    // Zero blocks inside an archive: tar-rs never writes them,
                    // pass them on one by one.
                    for _ in 0..std::mem::take(&mut self.zero_blocks) {
                        self.inner.write_all(&[0u8; 512])?;
                    }
                    self.emit(512)?;
                    let pad = ((512 - size % 512) % 512) as usize;
                    self.part = if size == 0 {
                        Part::Header
                    } else {
                        Part::Data {
                            left: size,
                            nul: u64::from(long_name),
                            pad,
                        }
                    };
                }
                Part::Data { left, nul, pad } => {
                    let piece = if left > nul {
                        (left - nul).min(COPY_BUF as u64)
                    } else {
                        left
                    } as usize;
                    if avail < piece {
                        break;
                    }
                    self.emit(piece)?;
                    let left = left - piece as u64;
                    self.part = match (left, pad) {
                        (0, 0) => Part::Header,
                        (0, pad) => Part::Pad(pad),
                        _ => Part::Data { left, nul, pad },
                    };
                }
                Part::Pad(n) => {
                    if avail < n {
                        break;
                    }
                    self.emit(n)?;
                    self.part = Part::Header;
                }
            }
        }
        if self.pos > 1 << 16 || self.pos == self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(())
    }
}

impl<W: Write> Write for TarRsChunks<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        self.pump()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A header's size field: octal, or GNU base-256 when the top bit is set.
fn entry_size(block: &[u8]) -> u64 {
    let field = &block[124..136];
    if field[0] & 0x80 != 0 {
        return field[4..]
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0u64, |n, &b| (n << 3) | u64::from(b - b'0'))
}

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;
