//! Throughput check for the pgzip encoder: compresses a file with
//! [`PgzipWriter`] into a hashing sink and prints MB/s and the output sha256,
//! so a speed change can be checked not to change a byte.
//!
//! usage: pgzip_speed FILE [WORKERS] [VERSION-ID] [REPEAT] [BLOCK-SIZE]

use std::io;
use std::time::Instant;

use cfs_encoders::klauspost::{PgzipWriter, Version, BLOCK_SIZE};
use sha2::Digest;

mod common;

use common::{feed, HashSink};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: pgzip_speed FILE [WORKERS] [VERSION-ID] [REPEAT] [BLOCK-SIZE]");
        std::process::exit(2);
    };
    let workers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let version = args
        .next()
        .and_then(|s| Version::from_id(&s))
        .unwrap_or(Version::V1_15_10);
    let repeat: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let block: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(BLOCK_SIZE);
    let data = std::fs::read(&path)?;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        let mut w = PgzipWriter::with_block_size(HashSink::new(), version, block, workers)?;
        feed(data.as_slice(), &mut w, 128 << 10)?;
        let sink = w.finish()?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} workers={} {}: {} -> {} bytes, {:.1} MB/s, sha256 {}",
            path,
            workers,
            version.id(),
            data.len(),
            sink.len,
            data.len() as f64 / secs / 1e6,
            hex::encode(sink.hash.finalize())
        );
    }
    Ok(())
}
