//! One of the encoders `--compression original` reproduces, on its own, for
//! `make bench`'s baseline of a miss (one full compression per candidate).
//!
//! Usage: encode ENCODER WORKERS < INPUT > OUTPUT, ENCODER an id of
//! `Reproducer::from_id` (pgzip-1.15.10, gostd-1, zlib6-os00, …).

use std::io::{self, BufWriter};

use anyhow::{Context, Result};
use composefs_export::compress::reproduce::Reproducer;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, id, workers] = args.as_slice() else {
        anyhow::bail!("usage: encode ENCODER WORKERS < INPUT > OUTPUT");
    };
    let encoder = Reproducer::from_id(id).with_context(|| format!("no encoder {id}"))?;
    let workers: usize = workers.parse().context("WORKERS")?;
    let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut w = encoder.writer(out, workers)?;
    io::copy(&mut io::stdin().lock(), &mut w)?;
    w.finish()?;
    Ok(())
}
