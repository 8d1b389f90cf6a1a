//! A sink that hashes what a candidate writes and refuses more than the
//! original blob's size: a candidate past it is not the encoder.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// The sink refused more bytes (a write error's source chain holds its io::Error).
pub(super) fn is_over(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::FileTooLarge)
    })
}

/// Hashes what is written on its way to `out`, and fails once more than
/// `limit` bytes arrive.
pub(super) struct BoundedHasher<W> {
    pub(super) hasher: Sha256,
    pub(super) written: u64,
    limit: u64,
    pub(super) out: W,
}

impl<W> BoundedHasher<W> {
    pub(super) fn new(limit: u64, out: W) -> Self {
        BoundedHasher {
            hasher: Sha256::new(),
            written: 0,
            limit,
            out,
        }
    }
}

impl<W: Write> Write for BoundedHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "output passed the original blob's size",
            ));
        }
        let n = self.out.write(buf)?;
        self.written += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
