//! The streaming encoder of each [`Reproducer`].

use std::io::{self, Write};

use cfs_encoders::gnugzip::GnuGzipWriter;
use cfs_encoders::gostd::GzipWriter;
use cfs_encoders::klauspost::{PgzipWriter, UMOCI_BLOCK_SIZE};
use cfs_encoders::zlibng::ZlibNg6Writer;

use super::frame::Reframe;
use super::Reproducer;

/// zlib level 6 in flate2's gzip framing.
type Zlib6<W> = flate2::write::GzEncoder<W>;

fn zlib6<W: Write>(inner: W) -> Zlib6<W> {
    flate2::write::GzEncoder::new(inner, flate2::Compression::new(6))
}

impl Reproducer {
    /// An encoder writing into `inner`, on `workers` threads where the format allows.
    pub fn writer<W: Write>(self, inner: W, workers: usize) -> io::Result<ReproWriter<W>> {
        Ok(match self {
            Reproducer::Pgzip(v) => ReproWriter::Pgzip(PgzipWriter::new(inner, v, workers)?),
            Reproducer::Pgzip256(v) => ReproWriter::Pgzip(PgzipWriter::with_block_size(
                inner,
                v,
                UMOCI_BLOCK_SIZE,
                workers,
            )?),
            Reproducer::GoGzip(level) => ReproWriter::Go(GzipWriter::with_level(inner, level)),
            Reproducer::Zlib6 => ReproWriter::Zlib(zlib6(inner)),
            Reproducer::Zlib6Framed(frame) => {
                ReproWriter::ZlibFramed(zlib6(Reframe::new(inner, frame.header())))
            }
            Reproducer::ZlibNg6 => ReproWriter::ZlibNg(ZlibNg6Writer::new(inner)),
            Reproducer::ZlibNg6Era22 => ReproWriter::ZlibNg22(cfs_zng22::writer(inner)?),
            Reproducer::GnuGzip6 => ReproWriter::Gnu(GnuGzipWriter::new(inner)),
        })
    }
}

/// A streaming encoder for one [`Reproducer`].
pub enum ReproWriter<W: Write> {
    /// klauspost pgzip.
    Pgzip(PgzipWriter<W>),
    /// Go compress/gzip.
    Go(GzipWriter<W>),
    /// zlib 6 (madler zlib bundled by libz-sys, through flate2).
    Zlib(Zlib6<W>),
    /// zlib 6 under another tool's gzip header.
    ZlibFramed(Zlib6<Reframe<W>>),
    /// zlib-ng 2.3 level 6 (zlib-rs), fed like tar-rs feeds flate2.
    ZlibNg(ZlibNg6Writer<W>),
    /// zlib-ng 2.2.0–2.2.4 level 6 (zlib-rs 0.4.2), fed the same way.
    ZlibNg22(ZlibNg6Writer<W, cfs_zng22::Deflate22>),
    /// GNU gzip -n level 6.
    Gnu(GnuGzipWriter<W>),
}

impl<W: Write> ReproWriter<W> {
    /// Write the trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            ReproWriter::Pgzip(w) => w.finish(),
            ReproWriter::Go(w) => w.finish(),
            ReproWriter::Zlib(w) => w.finish(),
            ReproWriter::ZlibFramed(w) => Ok(w.finish()?.into_inner()),
            ReproWriter::ZlibNg(w) => w.finish(),
            ReproWriter::ZlibNg22(w) => w.finish(),
            ReproWriter::Gnu(w) => w.finish(),
        }
    }
}

impl<W: Write> Write for ReproWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ReproWriter::Pgzip(w) => w.write(buf),
            ReproWriter::Go(w) => w.write(buf),
            ReproWriter::Zlib(w) => w.write(buf),
            ReproWriter::ZlibFramed(w) => w.write(buf),
            ReproWriter::ZlibNg(w) => w.write(buf),
            ReproWriter::ZlibNg22(w) => w.write(buf),
            ReproWriter::Gnu(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ReproWriter::Pgzip(w) => w.flush(),
            ReproWriter::Go(w) => w.flush(),
            ReproWriter::Zlib(w) => w.flush(),
            ReproWriter::ZlibFramed(w) => w.flush(),
            ReproWriter::ZlibNg(w) => w.flush(),
            ReproWriter::ZlibNg22(w) => w.flush(),
            ReproWriter::Gnu(w) => w.flush(),
        }
    }
}
