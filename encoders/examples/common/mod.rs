//! What the speed examples share: a sink that only hashes and counts, and
//! feeding an encoder in writes of one size.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// A sink that only hashes and counts what it is given.
pub struct HashSink {
    /// sha256 of everything written.
    pub hash: Sha256,
    /// Bytes written.
    pub len: u64,
}

impl HashSink {
    /// Nothing written yet.
    pub fn new() -> Self {
        HashSink {
            hash: Sha256::new(),
            len: 0,
        }
    }
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes everything `src` yields into `w`, `chunk` bytes a write at most
/// (as a tar stream copied through a buffer); the bytes read.
pub fn feed(mut src: impl Read, w: &mut impl Write, chunk: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        w.write_all(&buf[..n])?;
    }
}
