//! Checks against the Go 1.19.8 vectors in `shared/compress-vectors`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::GzipWriter;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/compress-vectors");

fn compress(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut w = GzipWriter::new(Vec::new());
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).unwrap();
    }
    w.finish().unwrap()
}

/// Runs gen_inputs.py once per test into its own directory.
struct Inputs(PathBuf);

impl Inputs {
    fn generate(tag: &str) -> Inputs {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("cfs-gostd-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = Command::new("python3")
            .arg(Path::new(VECTORS).join("gen_inputs.py"))
            .arg(&dir)
            .arg("--check")
            .output()
            .expect("python3 runs gen_inputs.py");
        assert!(
            run.status.success(),
            "gen_inputs.py failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        Inputs(dir)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.0.join(name)).unwrap()
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn empty_input_matches_go() {
    let out = compress(&[], 1);
    assert_eq!(
        hex::encode(out),
        "1f8b08000000000000ff010000ffff0000000000000000"
    );
}

#[test]
fn reproduces_every_gostd_vector() {
    let inputs = Inputs::generate("vectors");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(VECTORS).join("vectors.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for v in json["vectors"].as_array().unwrap() {
        if v["encoder"] != "gostd" {
            continue;
        }
        let input_name = v["input"].as_str().unwrap();
        let file = v["file"].as_str().unwrap();
        let expected = std::fs::read(Path::new(VECTORS).join(file)).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&expected)),
            v["output_sha256"].as_str().unwrap(),
            "{file} does not match vectors.json"
        );
        let out = compress(&inputs.read(input_name), 32 * 1024);
        assert_eq!(out.len(), expected.len(), "{file}: length");
        if let Some(at) = out.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!("{file}: first differing byte at {at}");
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "expected four gostd vectors");
}

#[test]
fn output_does_not_depend_on_write_sizes() {
    let inputs = Inputs::generate("chunks");
    let text = inputs.read("text.tar");
    let mixed = inputs.read("mixed.tar");
    let want_text = std::fs::read(Path::new(VECTORS).join("text.tar.gostd.gz")).unwrap();
    let want_mixed = std::fs::read(Path::new(VECTORS).join("mixed.tar.gostd.gz")).unwrap();
    for chunk in [7, 1000, 1 << 20, usize::MAX] {
        assert!(
            compress(&text, chunk) == want_text,
            "text.tar, {chunk}-byte writes"
        );
        assert!(
            compress(&mixed, chunk) == want_mixed,
            "mixed.tar, {chunk}-byte writes"
        );
    }
    // One-byte writes over a prefix that still crosses several window shifts.
    let prefix = &text[..300_000];
    assert!(compress(prefix, 1) == compress(prefix, usize::MAX));
}

#[test]
fn flush_adds_no_bytes_to_the_stream() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = GzipWriter::new(Vec::new());
    for c in data.chunks(10_000) {
        w.write_all(c).unwrap();
        w.flush().unwrap();
    }
    assert!(w.finish().unwrap() == compress(&data, usize::MAX));
}

fn xorshift_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect()
}

/// sha256 of what Go 1.19.8 `gzip.NewWriter` wrote for these inputs, fed in
/// 32 KiB writes (from a throwaway Go driver, not from this encoder).
#[test]
fn matches_go_on_edge_inputs() {
    // Random bytes with one 8-byte repeat at distance 32600 starting exactly
    // where Go's window shift may fall: Go fed 1-byte writes shifts first and
    // loses the match (output sha256 a3d9d2f6…); whole-window writes keep it.
    let mut edge = xorshift_bytes(100_000, 1);
    edge.copy_within(65_274 - 32_600..65_274 - 32_600 + 8, 65_274);
    let period = xorshift_bytes(300, 3);
    let mut cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "edge_shift".into(),
            edge,
            "714d0853c4f53f72cfac78aa1a3a48158e9fa1e1cbc283aebdeef4b962fe2367",
        ),
        (
            // Blocks spanning window shifts can no longer be stored raw.
            "zeros_5m".into(),
            vec![0; 5 << 20],
            "dbf1c7664037a01dd4093c8c150f30c3b21f3857e236c0bc98ba15271555581f",
        ),
        (
            "rand_200k".into(),
            xorshift_bytes(200_000, 2),
            "01176d0251d99f6e20eda3157ca10e3edeec6c4b3f295ff03f4bc6a0e0ee23c7",
        ),
        (
            "period300_1m".into(),
            period.iter().cycle().take(1 << 20).copied().collect(),
            "96245cde9b581603c8ab6f8d51cde064ca3dca4ae1f4499dc4e8e87d8eec525a",
        ),
    ];
    for (n, sha) in [
        (
            1,
            "65c3e62ce2192d47dd75ebf2d2acb62019f1c1e4bd0fe471afddf5e2d82bf9cf",
        ),
        (
            3,
            "10638cc3ca1cbc2bf7c1a1c770fc6cb244e8e62466b12d652528f675fbe0e2bf",
        ),
        (
            4,
            "0f1b056010e42a0360599f3b30708c4b662347d482d00785f1ad2c7919fa3af7",
        ),
        (
            262,
            "9f41951fb179af2d28b2a7b59374700f276e5f8b69cb06b730687c38f98fc77f",
        ),
        (
            263,
            "5dea327d003c99a9cd3231206751c97e3647b51251aceef65aa8a16e325cd70c",
        ),
        (
            65_536,
            "67c8c75e9e2a6b3fa803f2f3c50dbab572f9da0d283261b575d1ef5bb49a4f03",
        ),
        (
            65_537,
            "f467f64d61cb4242074c9d2a6bed850e31507488e5aa9b9a1a5bec33df9ba25a",
        ),
    ] {
        cases.push((format!("rand_{n}"), xorshift_bytes(n, n as u64), sha));
    }
    for (name, data, sha) in &cases {
        for chunk in [32 * 1024, usize::MAX] {
            let got = hex::encode(Sha256::digest(compress(data, chunk)));
            assert_eq!(&got, sha, "{name}, {chunk}-byte writes");
        }
    }
    // The shift case again with the write size that makes Go itself differ.
    let got = hex::encode(Sha256::digest(compress(&cases[0].1, 1)));
    assert_eq!(got, cases[0].2, "edge_shift, 1-byte writes");
}
