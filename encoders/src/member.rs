//! The gzip member around a deflate body (RFC 1952), as the writers that
//! deflate into a byte buffer of their own frame it (Go's `compress/gzip`,
//! GNU gzip): the CRC-32 and ISIZE of the input, the trailer, and handing
//! the buffer to the inner writer, which once failed is never written again.

use std::io::{self, Write};

/// The inner writer and what the trailer needs.
pub(crate) struct Member<W> {
    inner: W,
    crc: crc32fast::Hasher,
    /// Input length modulo 2^32 (ISIZE).
    size: u32,
    failed: bool,
}

impl<W: Write> Member<W> {
    /// A member written to `inner` (its header goes into the encoder's buffer).
    pub(crate) fn new(inner: W) -> Self {
        Member {
            inner,
            crc: crc32fast::Hasher::new(),
            size: 0,
            failed: false,
        }
    }

    /// Fails once a write to the inner writer has failed.
    pub(crate) fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "gzip writer unusable after an earlier write error",
            ));
        }
        Ok(())
    }

    /// Counts `buf` into the trailer.
    pub(crate) fn saw(&mut self, buf: &[u8]) {
        self.crc.update(buf);
        self.size = self.size.wrapping_add(buf.len() as u32);
    }

    /// Hands the compressed bytes in `out` to the inner writer.
    pub(crate) fn drain(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
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

    /// [`Member::drain`], then flushes the inner writer.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.check()?;
        self.drain(out)?;
        self.inner.flush()
    }

    /// Appends the trailer to the body's last bytes in `out`, hands them
    /// over and returns the inner writer.
    pub(crate) fn finish(mut self, out: &mut Vec<u8>) -> io::Result<W> {
        let crc = std::mem::take(&mut self.crc).finalize();
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        self.drain(out)?;
        Ok(self.inner)
    }
}
