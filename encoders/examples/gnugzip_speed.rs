//! Throughput and differential check for [`GnuGzipWriter`]: compresses each
//! FILE (or standard input for `-`, streamed) in 32 KiB writes into a
//! hashing sink and prints the sizes, MB/s and the output sha256, to compare
//! with `gzip -n -c FILE | sha256sum`.
//!
//! usage: gnugzip_speed [-1|-6|-9] FILE...

use std::io::{self, Read};
use std::time::Instant;

use cfs_encoders::gnugzip::{GnuGzipWriter, GnuLevel};
use sha2::Digest;

mod common;

use common::{feed, HashSink};

/// Compresses everything `src` yields; returns (input bytes, sink).
fn compress(level: GnuLevel, src: impl Read) -> io::Result<(u64, HashSink)> {
    let mut w = GnuGzipWriter::with_level(HashSink::new(), level);
    let total = feed(src, &mut w, 32 << 10)?;
    Ok((total, w.finish()?))
}

fn main() -> io::Result<()> {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    let level = match files.first().map(String::as_str) {
        Some("-1") => GnuLevel::Fastest,
        Some("-9") => GnuLevel::Best,
        _ => GnuLevel::Default,
    };
    if files
        .first()
        .is_some_and(|f| ["-1", "-6", "-9"].contains(&f.as_str()))
    {
        files.remove(0);
    }
    if files.is_empty() {
        eprintln!("usage: gnugzip_speed [-1|-6|-9] FILE...");
        std::process::exit(2);
    }
    for f in files {
        let start = Instant::now();
        let (n, sink) = if f == "-" {
            compress(level, io::stdin().lock())?
        } else {
            compress(level, std::fs::File::open(&f)?)?
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
