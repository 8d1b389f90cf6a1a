//! Bit-exact klauspost/pgzip `NewWriter` output, the gzip layers podman,
//! buildah and skopeo (containers/image) write.
//!
//! pgzip cuts the input into 1 MiB blocks and compresses each with
//! klauspost/compress flate at level 5 (`DefaultCompression`), the previous
//! block's last 16 KiB as preset dictionary, ending each block with a sync
//! flush and the last one also with an empty final block. Blocks therefore
//! compress independently and run on worker threads here.
//!
//! This follows, and is a port of the level-5 path of, BSD-licensed code:
//! github.com/klauspost/pgzip `gzip.go` (Copyright (c) 2014 Klaus Post,
//! Copyright (c) 2012 The Go Authors) and github.com/klauspost/compress
//! `flate/` (`deflate.go`, `fast_encoder.go`, `level5.go`, `token.go`,
//! `huffman_bit_writer.go`, `huffman_code.go`, `huffman_sortByFreq.go`;
//! Copyright (c) 2015 Klaus Post, Copyright (c) 2011 The Snappy-Go Authors,
//! Copyright (c) 2009 The Go Authors).
//!
//! klauspost/compress changed its output twice in the versions that matter:
//! 1.15.10 to 1.18.0 produce one stream ([`Version::V1_15_10`]), 1.18.2 and
//! later another ([`Version::V1_18_2`]): from 1.18.2 a dynamic block that may
//! be continued counts an end-of-block symbol and declares only the codes it
//! uses. (1.18.1 is a third variant, not reproduced here.)

mod bits;
mod bitwriter;
mod deflate;
mod huffman;
mod level5;
mod pgzip;
mod shared;
mod token;

#[cfg(test)]
mod tests;

pub use pgzip::{BlockMark, BlockObserver, BlockStart, PgzipWriter, BLOCK_SIZE, TAIL_SIZE};
pub use shared::{BlockClaim, Claim, SharedBlocks};

/// Which klauspost/compress output generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// 1.15.10 to 1.18.0
    V1_15_10,
    /// 1.18.2 and newer
    V1_18_2,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 2] = [Version::V1_15_10, Version::V1_18_2];

    /// Human-readable range of library versions, e.g. "klauspost 1.15.10–1.18.0".
    pub fn describe(self) -> &'static str {
        match self {
            Version::V1_15_10 => "klauspost 1.15.10–1.18.0",
            Version::V1_18_2 => "klauspost 1.18.2 and newer",
        }
    }

    /// Stable id for a cache file, e.g. "pgzip-1.15.10".
    pub fn id(self) -> &'static str {
        match self {
            Version::V1_15_10 => "pgzip-1.15.10",
            Version::V1_18_2 => "pgzip-1.18.2",
        }
    }

    /// The version whose [`Version::id`] is `s`.
    pub fn from_id(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.id() == s)
    }
}
