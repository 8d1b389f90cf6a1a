//! Bit-exact klauspost/pgzip `NewWriter` output, the gzip layers podman,
//! buildah and skopeo (containers/image) write.
//!
//! pgzip cuts the input into blocks (1 MiB unless `SetConcurrency` says
//! otherwise) and compresses each with klauspost/compress flate at level 5
//! (`DefaultCompression`), the previous block's last 16 KiB as preset
//! dictionary, ending each block with a sync flush and the last one also with
//! an empty final block. Blocks therefore compress independently and run on
//! worker threads here.
//!
//! This follows, and is a port of the level-5 path of, BSD-licensed code:
//! github.com/klauspost/pgzip `gzip.go` (Copyright (c) 2014 Klaus Post,
//! Copyright (c) 2012 The Go Authors) and github.com/klauspost/compress
//! `flate/` (`deflate.go`, `fast_encoder.go`, `level5.go`, `token.go`,
//! `huffman_bit_writer.go`, `huffman_code.go`, `huffman_sortByFreq.go`;
//! Copyright (c) 2015 Klaus Post, Copyright (c) 2011 The Snappy-Go Authors,
//! Copyright (c) 2009 The Go Authors).
//!
//! klauspost/compress changed its level-5 output many times. Measured with
//! pgzip v1.2.5 over every tag that touched the encoder (Go 1.19; 1.18.x
//! and 1.19.x with Go 1.23 and 1.24; see `encoders/testdata/pgzip/README.md`),
//! the generations are 1.9.0–1.9.7, 1.9.8–1.10.0, 1.10.1, 1.10.2–1.11.12,
//! 1.11.13–1.12.1, 1.12.2, 1.12.3–1.13.6, 1.14.0–1.14.2, 1.14.3–1.14.4,
//! 1.15.0–1.15.9, 1.15.10–1.18.0, 1.18.1, and 1.18.2 and later: one
//! [`Version`] each. Each variant's doc says how it differs from the next.
//!
//! Block sizes: pgzip ≥ 1.2.2 defaults to 1 MiB ([`BLOCK_SIZE`]), pgzip ≤
//! 1.2.1 to 256 KiB, and umoci 0.4.x sets 256 KiB ([`UMOCI_BLOCK_SIZE`]);
//! [`PgzipWriter::with_block_size`] takes any size pgzip accepts.

mod bits;
mod bitwriter;
mod deflate;
mod golog;
mod huffman;
mod level5;
mod pgzip;
mod shared;
mod token;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

pub use pgzip::{
    BlockMark, BlockObserver, BlockStart, PgzipWriter, BLOCK_SIZE, TAIL_SIZE, UMOCI_BLOCK_SIZE,
};
pub use shared::{BlockClaim, Claim, SharedBlocks};

/// Which klauspost/compress output generation (ordered oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// 1.9.0 to 1.9.7: as [`Version::V1_9_8`], but literal-only blocks are
    /// sized with a float64 estimate, reusing a table is costed with a
    /// header, and a new table with a penalty of 1/64 as well.
    V1_9_0,
    /// 1.9.8 to 1.10.0: as [`Version::V1_10_1`], but the preset dictionary is
    /// ignored (`fillWindow` checks a level that is never set), so every
    /// block is compressed on its own.
    V1_9_8,
    /// 1.10.1: as [`Version::V1_10_2`], with hash tables of 2^16 slots and
    /// the closing empty block stored instead of fixed-coded.
    V1_10_1,
    /// 1.10.2 to 1.11.12 (vendored by umoci ≥ 0.5 as 1.11.3): as
    /// [`Version::V1_11_13`], but a literal-only block counts its absent
    /// literals in its estimate and its histogram, and a new table costs more
    /// (a penalty of 1/64 instead of 1/256).
    V1_10_2,
    /// 1.11.13 to 1.12.1: as [`Version::V1_12_2`], without the check for a
    /// longer match ending where a short one ends.
    V1_11_13,
    /// 1.12.2: as [`Version::V1_12_3`], but literal-only blocks are sized by a
    /// Shannon estimate and reuse estimates are not clamped to 1–15 bits a symbol.
    V1_12_2,
    /// 1.12.3 to 1.13.6: as [`Version::V1_14_0`], but a block that may be
    /// continued declares every code (its table is always reusable), stored
    /// wins unless a table saves a sixteenth, and the fixed code is never used.
    V1_12_3,
    /// 1.14.0 to 1.14.2: as [`Version::V1_14_3`], and the fixed code is
    /// considered for blocks of any token count and near-uniform literal
    /// blocks get a table like any other.
    V1_14_0,
    /// 1.14.3 and 1.14.4: as [`Version::V1_15_0`], and a match longer than
    /// 258 is cut into 255-byte pieces.
    V1_14_3,
    /// 1.15.0 to 1.15.9 (containers/image before v5.23): no leading mismatch
    /// allowed when extending a short match.
    V1_15_0,
    /// 1.15.10 to 1.18.0: as [`Version::V1_18_1`], but a block that may be
    /// continued declares every code in its header (286 literal/length and
    /// 30 offset codes, unused ones with length 0).
    V1_15_10,
    /// 1.18.1 (retracted): as [`Version::V1_18_2`], but a block that may be
    /// continued has no end-of-block symbol in its histogram when its header
    /// is trimmed and when reusing the previous table is costed.
    V1_18_1,
    /// 1.18.2 and newer (measured up to 1.19.1).
    V1_18_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 13] = [
        Version::V1_9_0,
        Version::V1_9_8,
        Version::V1_10_1,
        Version::V1_10_2,
        Version::V1_11_13,
        Version::V1_12_2,
        Version::V1_12_3,
        Version::V1_14_0,
        Version::V1_14_3,
        Version::V1_15_0,
        Version::V1_15_10,
        Version::V1_18_1,
        Version::V1_18_2,
    ];

    /// Human-readable range of library versions, e.g. "klauspost 1.15.10–1.18.0".
    pub fn describe(self) -> &'static str {
        match self {
            Version::V1_9_0 => "klauspost 1.9.0–1.9.7",
            Version::V1_9_8 => "klauspost 1.9.8–1.10.0",
            Version::V1_10_1 => "klauspost 1.10.1",
            Version::V1_10_2 => "klauspost 1.10.2–1.11.12",
            Version::V1_11_13 => "klauspost 1.11.13–1.12.1",
            Version::V1_12_2 => "klauspost 1.12.2",
            Version::V1_12_3 => "klauspost 1.12.3–1.13.6",
            Version::V1_14_0 => "klauspost 1.14.0–1.14.2",
            Version::V1_14_3 => "klauspost 1.14.3–1.14.4",
            Version::V1_15_0 => "klauspost 1.15.0–1.15.9",
            Version::V1_15_10 => "klauspost 1.15.10–1.18.0",
            Version::V1_18_1 => "klauspost 1.18.1",
            Version::V1_18_2 => "klauspost 1.18.2 and newer",
        }
    }

    /// Stable id for a cache file, e.g. "pgzip-1.15.10".
    pub fn id(self) -> &'static str {
        match self {
            Version::V1_9_0 => "pgzip-1.9.0",
            Version::V1_9_8 => "pgzip-1.9.8",
            Version::V1_10_1 => "pgzip-1.10.1",
            Version::V1_10_2 => "pgzip-1.10.2",
            Version::V1_11_13 => "pgzip-1.11.13",
            Version::V1_12_2 => "pgzip-1.12.2",
            Version::V1_12_3 => "pgzip-1.12.3",
            Version::V1_14_0 => "pgzip-1.14.0",
            Version::V1_14_3 => "pgzip-1.14.3",
            Version::V1_15_0 => "pgzip-1.15.0",
            Version::V1_15_10 => "pgzip-1.15.10",
            Version::V1_18_1 => "pgzip-1.18.1",
            Version::V1_18_2 => "pgzip-1.18.2",
        }
    }

    /// The version whose [`Version::id`] is `s`.
    pub fn from_id(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.id() == s)
    }
}
