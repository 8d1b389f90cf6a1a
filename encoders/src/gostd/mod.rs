//! Go's `compress/gzip.NewWriter` at `DefaultCompression`, bit-exact.
//!
//! A port of the path Go's standard library takes at level 6: Go 1.19
//! `compress/flate` (`deflate.go`, `huffman_bit_writer.go`, `huffman_code.go`,
//! `token.go`) under `compress/gzip` (`gzip.go`), BSD-licensed, Copyright 2009
//! The Go Authors. The reference vectors were made by Go 1.19.8; their README
//! reports the same bytes from Go 1.23 and 1.24.
//!
//! The stream is the 10-byte header `1f8b 0800 00000000 00ff` (zero `Header`:
//! no name, no mtime, OS 255), deflate blocks that are never final, an empty
//! final stored block, then CRC-32 and ISIZE.
//!
//! Go's output can depend on how the input is split into `Write` calls: its
//! window shift, which bounds match distances, happens at the first write that
//! finds the window nearly processed. This writer always behaves like Go fed
//! with writes that fill the window before it is compressed (`io.Copy`'s
//! 32 KiB writes, or one big write), whatever sizes its own callers use.

mod bitwriter;
mod deflate;
mod huffman;
#[cfg(test)]
mod tests;

use std::io::{self, Write};

use deflate::Compressor;

/// Go's gzip header with a zero `Header`.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

/// Input handed to the compressor between drains of its output, so the
/// pending compressed bytes stay bounded whatever the caller's write size.
const INPUT_CHUNK: usize = 1 << 16;

/// Go's compress/gzip.NewWriter at DefaultCompression.
///
/// Streaming with constant memory (about 900 KiB of tables and buffers).
/// After an error from the inner writer every later call fails, as Go's
/// writers do.
pub struct GzipWriter<W: Write> {
    inner: W,
    compressor: Box<Compressor>,
    crc: crc32fast::Hasher,
    size: u32,
    failed: bool,
}

impl<W: Write> GzipWriter<W> {
    /// Starts a gzip member; nothing reaches `inner` until the first write,
    /// flush or finish.
    pub fn new(inner: W) -> Self {
        let mut compressor = Box::new(Compressor::new());
        compressor.w.out.extend_from_slice(&HEADER);
        GzipWriter {
            inner,
            compressor,
            crc: crc32fast::Hasher::new(),
            size: 0,
            failed: false,
        }
    }

    /// Compress what is left, write the trailer, return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        self.compressor.close();
        let crc = std::mem::take(&mut self.crc).finalize();
        let out = &mut self.compressor.w.out;
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

    /// Hands the finished compressed bytes to `inner`.
    fn drain(&mut self) -> io::Result<()> {
        let out = &mut self.compressor.w.out;
        if out.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.inner.write_all(out) {
            self.failed = true;
            return Err(e);
        }
        out.clear();
        Ok(())
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        for chunk in buf.chunks(INPUT_CHUNK) {
            self.compressor.write(chunk);
            self.drain()?;
        }
        self.crc.update(buf);
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.size = self.size.wrapping_add(buf.len() as u32);
        Ok(buf.len())
    }

    /// Passes on what is already compressed; unlike Go's `Flush` this never
    /// emits a sync block, which would change the output.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.drain()?;
        self.inner.flush()
    }
}
