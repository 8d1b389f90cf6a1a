//! Header variants: the deflate body one of our encoders makes, under the
//! gzip header another tool writes around the same body.
//!
//! Java's `GZIPOutputStream` (jib) and zlib's own gzip framing deflate
//! exactly as madler zlib level 6 does, as flate2 does; only the 10-byte
//! header differs (RFC 1952 OS byte). The search therefore makes such a
//! body once and hashes it under every header still in the race
//! ([`cfs_encoders::gzip_header::BodyTee`]); writing one is the body's
//! encoder with its header swapped on the way out ([`Reframe`]).

use std::io::{self, Write};

use cfs_encoders::gzip_header::GzipHeader;

/// A gzip header other tools write around the zlib level-6 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Java's `GZIPOutputStream` on JDK ≤ 15 (jib's layers): OS `00`
    /// (JDK 16 and later write `ff`, flate2's header).
    JavaOld,
    /// zlib's own gzip framing (`deflateInit2` with window bits 31: Python ≥
    /// 3.11 `gzip.compress(…, 6, mtime=0)`, `zlib.compressobj(6, wbits=31)`,
    /// C tools on zlib's gz API): OS `03`.
    Zlib,
}

impl Frame {
    /// The header this frame starts a member with.
    pub fn header(self) -> GzipHeader {
        match self {
            Frame::JavaOld => GzipHeader::JAVA_OLD,
            Frame::Zlib => GzipHeader::new(0, 0, 3),
        }
    }
}

/// Replaces the 10-byte gzip header written through it (one without
/// optional fields, as every encoder of ours writes) with `header`.
pub struct Reframe<W> {
    inner: W,
    header: [u8; 10],
    /// Header bytes already replaced.
    at: usize,
}

impl<W> Reframe<W> {
    /// Swap the header of the member written into `inner` for `header`.
    pub fn new(inner: W, header: GzipHeader) -> Self {
        Reframe {
            inner,
            header: header.bytes(),
            at: 0,
        }
    }

    /// The writer the member went to.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Reframe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.at < self.header.len() {
            let n = (self.header.len() - self.at).min(buf.len());
            self.inner.write_all(&self.header[self.at..self.at + n])?;
            self.at += n;
            return Ok(n);
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_swapped_and_the_rest_passes() {
        let member: Vec<u8> = (0u8..40).collect();
        for piece in [1, 3, 10, 11, 40] {
            let mut w = Reframe::new(Vec::new(), Frame::Zlib.header());
            for part in member.chunks(piece) {
                w.write_all(part).unwrap();
            }
            let out = w.into_inner();
            assert_eq!(out[..10], Frame::Zlib.header().bytes(), "{piece}");
            assert_eq!(out[10..], member[10..], "{piece}");
        }
    }
}
