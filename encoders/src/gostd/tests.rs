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
