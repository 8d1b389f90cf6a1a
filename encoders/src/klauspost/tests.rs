//! Reproduces the recorded real-encoder vectors byte for byte.

use super::{PgzipWriter, Version};
use std::io::Write;
use std::path::{Path, PathBuf};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/compress-vectors");

fn compress(data: &[u8], version: Version, workers: usize, chunk: usize) -> Vec<u8> {
    let mut w = PgzipWriter::new(Vec::new(), version, workers).expect("new");
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).expect("write");
    }
    w.finish().expect("finish")
}

fn gen_inputs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cfs-pgzip-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let status = std::process::Command::new("python3")
        .arg(Path::new(VECTORS).join("gen_inputs.py"))
        .arg(&dir)
        .arg("--check")
        .status()
        .expect("python3");
    assert!(status.success(), "gen_inputs.py failed");
    dir
}

#[test]
fn reproduces_vectors() {
    let dir = gen_inputs();
    let cases = [
        (Version::V1_15_10, "pgzip-B"),
        (Version::V1_18_2, "pgzip-D"),
        (Version::V1_18_2, "pgzip-E"),
    ];
    let mut checked = 0;
    for input in ["tiny.tar", "text.tar", "mixed.tar", "empty.tar"] {
        let data = std::fs::read(dir.join(input)).expect("input");
        for (version, enc) in cases {
            let want = std::fs::read(Path::new(VECTORS).join(format!("{input}.{enc}.gz")))
                .expect("vector");
            for (workers, chunk) in [(1, 32768), (3, 1000), (3, usize::MAX), (2, 1 << 20)] {
                let got = compress(&data, version, workers, chunk);
                assert!(
                    got == want,
                    "{input} {enc} workers {workers} chunk {chunk}: {} bytes, want {}",
                    got.len(),
                    want.len()
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 48);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chunking_and_workers_do_not_change_output() {
    let mut data = Vec::new();
    let mut x = 1u32;
    for i in 0..(7 << 20) + 12345u32 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        data.push(if i % 7 < 4 {
            b"abcdefgh"[(x >> 29) as usize]
        } else {
            (x >> 24) as u8
        });
    }
    for version in Version::ALL {
        let a = compress(&data, version, 1, 1 << 30);
        for (workers, chunk) in [(1, 7), (2, 65535), (4, 1 << 20), (3, (1 << 20) + 1)] {
            assert!(compress(&data, version, workers, chunk) == a);
        }
    }
}

#[test]
fn version_ids_round_trip() {
    for v in Version::ALL {
        assert_eq!(Version::from_id(v.id()), Some(v));
        assert!(!v.describe().is_empty());
    }
    assert_eq!(Version::from_id("pgzip-0"), None);
}
