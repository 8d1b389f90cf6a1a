//! Throughput and differential check for the Go gzip encoders: compresses
//! each FILE (or standard input for `-`, streamed) with [`GzipWriter`] at
//! one level into a hashing sink, in 32 KiB writes, and prints the sizes,
//! MB/s and the output sha256, to compare with what real Go writes
//! (`testdata/gogzip.go`, `testdata/go_differential.sh`).
//!
//! usage: gostd_speed LEVEL-ID FILE... (LEVEL-ID: gostd, gostd-1, gostd-9)

use std::io::{self, Read};
use std::time::Instant;

use cfs_encoders::gostd::{GoLevel, GzipWriter};
use sha2::Digest;

mod common;

use common::{feed, HashSink};

/// Compresses everything `src` yields; returns (input bytes, sink).
fn compress(level: GoLevel, src: impl Read) -> io::Result<(u64, HashSink)> {
    let mut w = GzipWriter::with_level(HashSink::new(), level);
    let total = feed(src, &mut w, 32 << 10)?;
    Ok((total, w.finish()?))
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let level = args.next().and_then(|s| GoLevel::from_id(&s));
    let files: Vec<String> = args.collect();
    let Some(level) = level.filter(|_| !files.is_empty()) else {
        eprintln!("usage: gostd_speed LEVEL-ID FILE... (LEVEL-ID: gostd, gostd-1, gostd-9)");
        std::process::exit(2);
    };
    for path in files {
        let start;
        let (size, sink) = if path == "-" {
            start = Instant::now();
            compress(level, io::stdin().lock())?
        } else {
            let data = std::fs::read(&path)?;
            start = Instant::now();
            compress(level, data.as_slice())?
        };
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} {}: {} -> {} bytes, {:.3} s, {:.1} MB/s, sha256 {}",
            level.id(),
            path,
            size,
            sink.len,
            secs,
            size as f64 / secs / 1e6,
            hex::encode(sink.hash.finalize())
        );
    }
    Ok(())
}
