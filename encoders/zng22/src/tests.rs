//! [`Deflate22`] against the real zlib-ng C builds' known answers.

use std::io::Write;

use sha2::{Digest, Sha256};

#[path = "../../src/zlibng/fixture.rs"]
mod fixture;

use fixture::{hex, ostree_like_tar, KNOWN};

/// The tar as ostree-ext writes it, compressed in writes of `piece` bytes:
/// (sha256, size) of the gzip member.
fn compressed(piece: usize) -> (String, u64) {
    let tar = ostree_like_tar();
    let mut w = super::writer(Vec::new()).unwrap();
    for p in tar.bytes.chunks(piece) {
        w.write_all(p).unwrap();
    }
    let gz = w.finish().unwrap();
    (hex(&Sha256::digest(&gz)), gz.len() as u64)
}

#[test]
fn equals_zlib_ng_2_2_4_whatever_the_write_sizes() {
    let (version, sha, size) = KNOWN[1];
    assert_eq!(version, "2.2.4");
    for piece in [1, 5000, 8192, 1 << 20] {
        assert_eq!(
            compressed(piece),
            (sha.to_string(), size),
            "writes of {piece}"
        );
    }
    for (v, other, _) in [KNOWN[0], KNOWN[2]] {
        assert_ne!(other, sha, "zlib-ng {v} is another era");
    }
}

#[test]
fn the_output_is_gzip_of_the_input() {
    let tar = ostree_like_tar();
    let mut w = super::writer(Vec::new()).unwrap();
    w.write_all(&tar.bytes).unwrap();
    let gz = w.finish().unwrap();
    let mut back = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
    assert!(back == tar.bytes);
}
