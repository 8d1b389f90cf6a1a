//! Throughput and differential check for [`GnuGzipWriter`]: compresses each
//! FILE (or standard input for `-`, streamed) in 32 KiB writes into a
//! hashing sink and prints the sizes, MB/s and the output sha256, to compare
//! with `gzip -n -c FILE | sha256sum`.
//!
//! usage: gnugzip_speed FILE...

use std::io::{self, Read, Write};
use std::time::Instant;

use cfs_encoders::gnugzip::GnuGzipWriter;
use sha2::{Digest, Sha256};

/// A sink that only hashes and counts what it is given.
struct HashSink {
    hash: Sha256,
    len: u64,
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

/// Compresses everything `src` yields; returns (input bytes, sink).
fn compress(mut src: impl Read) -> io::Result<(u64, HashSink)> {
    let sink = HashSink {
        hash: Sha256::new(),
        len: 0,
    };
    let mut w = GnuGzipWriter::new(sink);
    let mut buf = vec![0u8; 32 << 10];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        w.write_all(&buf[..n])?;
    }
    Ok((total, w.finish()?))
}

fn main() -> io::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: gnugzip_speed FILE...");
        std::process::exit(2);
    }
    for f in files {
        let start = Instant::now();
        let (n, sink) = if f == "-" {
            compress(io::stdin().lock())?
        } else {
            compress(std::fs::File::open(&f)?)?
        };
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{f}: {n} -> {} bytes, {:.1} MB/s, sha256 {}",
            sink.len,
            n as f64 / secs / 1e6,
            hex::encode(sink.hash.finalize())
        );
    }
    Ok(())
}
