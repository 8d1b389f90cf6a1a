use std::io::Write;

use sha2::{Digest, Sha256};

use super::*;
use crate::zlibng::fixture::{hex, ostree_like_tar, Recorder, KNOWN};

/// The re-cutter gives back exactly tar-rs's writes, whatever the input pieces.
#[test]
fn chunks_are_tar_rs_writes() {
    let real = ostree_like_tar();
    assert!(
        real.sizes.contains(&1),
        "a GNU long name's NUL is a write of its own"
    );
    for piece in [1, 1000, 8192, 100_000, real.bytes.len()] {
        let mut c = TarRsChunks::new(Recorder::default());
        for p in real.bytes.chunks(piece) {
            c.write_all(p).unwrap();
        }
        let got = c.finish().unwrap();
        assert_eq!(got.bytes, real.bytes);
        assert_eq!(got.sizes, real.sizes, "fed in {piece}-byte writes");
    }
}

#[test]
fn equals_zlib_ng_2_3_3() {
    let real = ostree_like_tar();
    if let Some(dir) = std::env::var_os("ZLIBNG_DUMP") {
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("tar"), &real.bytes).unwrap();
        let sizes: Vec<String> = real.sizes.iter().map(|s| s.to_string()).collect();
        std::fs::write(dir.join("sizes"), sizes.join("\n")).unwrap();
    }
    let mut w = ZlibNg6Writer::new(Vec::new());
    for p in real.bytes.chunks(5000) {
        w.write_all(p).unwrap();
    }
    let gz = w.finish().unwrap();
    let (_, sha, size) = KNOWN[0];
    assert_eq!(
        (hex(&Sha256::digest(&gz)).as_str(), gz.len() as u64),
        (sha, size)
    );
    for (v, other, _) in &KNOWN[1..] {
        assert_ne!(*other, sha, "zlib-ng {v} is another era");
    }
}

#[test]
fn entry_sizes() {
    let mut h = [0u8; 512];
    h[124..136].copy_from_slice(b"00000001750\0");
    assert_eq!(entry_size(&h), 1000);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1]);
    assert_eq!(entry_size(&h), (2 << 32) + 1);
}
