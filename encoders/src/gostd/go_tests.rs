//! Checks every level against the real Go `compress/gzip`, run at test time:
//! inputs are made here by code, `testdata/gogzip.go` compresses them with
//! the installed Go (fed in 32 KiB writes) and the sha256 of both outputs
//! must agree. Set `CFS_GO` to use another `go` binary. Without Go the test
//! is skipped with a message, except under `CI=true` where it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{GoLevel, GzipWriter};

const GOGZIP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/gogzip.go");

/// A deterministic byte source (xorshift64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 33) % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 40) as u8).collect()
    }
}

const WORDS: &[&str] = &[
    "the",
    "layer",
    "image",
    "of",
    "a",
    "container",
    "registry",
    "digest",
    "manifest",
    "and",
    "config",
    "blob",
    "gzip",
    "deflate",
    "to",
    "is",
    "with",
    "for",
    "root",
    "usr",
    "lib",
    "share",
    "doc",
    "copyright",
    "license",
    "version",
    "package",
    "error:",
    "warning:",
    "info",
    "2026-12-06T02:45:47Z",
    "0x1f8b",
    "\n",
    "\n\n",
    "    ",
    "{",
    "}",
    "=",
    "\"value\"",
];

/// Word-generated prose with some repeated paragraphs.
fn text(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n + 64);
    let mut paragraphs: Vec<Vec<u8>> = Vec::new();
    while out.len() < n {
        if !paragraphs.is_empty() && rng.below(4) == 0 {
            let p = paragraphs[rng.below(paragraphs.len())].clone();
            out.extend_from_slice(&p);
            continue;
        }
        let mut p = Vec::new();
        for _ in 0..20 + rng.below(80) {
            p.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            p.push(b' ');
        }
        p.push(b'\n');
        out.extend_from_slice(&p);
        paragraphs.push(p);
    }
    out.truncate(n);
    out
}

/// A tar-like mix: 512-byte headers, text, random and zero-filled files
/// padded to 512, a file repeated from far back, and the end blocks.
fn tar_like(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<u8> = Vec::with_capacity(n + (1 << 17));
    let mut i = 0;
    while out.len() < n {
        let mut header = vec![0u8; 512];
        let name = format!("usr/share/doc/pkg{i}/file{}.txt", rng.below(1000));
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000644\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", rng.below(1 << 20)).as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        out.extend_from_slice(&header);
        let size = rng.below(70_000);
        let body = match rng.below(5) {
            0 => rng.bytes(size),
            1 => vec![0; size],
            2 if out.len() > 40_000 => {
                // An earlier stretch again, at a distance near 32 KiB or
                // from the previous 64 KiB block.
                let back = [32_760, 32_768, 32_769, 40_000][rng.below(4)];
                let start = out.len() - back;
                let len = size.min(back);
                out[start..start + len].to_vec()
            }
            _ => text(size, rng.next()),
        };
        out.extend_from_slice(&body);
        out.resize(out.len().next_multiple_of(512), 0);
        i += 1;
    }
    out.truncate(n);
    out.extend_from_slice(&[0; 1024]);
    out
}

/// The inputs: every kind at sizes around Go's 32 KiB writes and level 1's
/// 65535-byte blocks, and a few MiB.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    let sizes = [
        0, 1, 4, 16, 17, 127, 128, 129, 1000, 32_767, 32_768, 32_769, 65_534, 65_535, 65_536,
        131_070, 131_071, 200_000,
    ];
    for &n in &sizes {
        v.push((format!("random-{n}"), Rng::new(n as u64 + 1).bytes(n)));
        v.push((format!("text-{n}"), text(n, n as u64 + 2)));
    }
    for &n in &[0, 65_535, 65_536, 1 << 20] {
        v.push((format!("zeros-{n}"), vec![0; n]));
    }
    for (n, seed) in [(65_535 * 3 + 7, 1), (1 << 20, 2), (3 << 20, 3)] {
        v.push((format!("tar-{n}"), tar_like(n, seed)));
    }
    v.push(("text-3m".into(), text(3 << 20, 9)));
    // Random with a period of 30000 bytes: the repeats reach back into the
    // previous 65535-byte block at level 1.
    let period = Rng::new(77).bytes(30_000);
    v.push((
        "period30000".into(),
        period.iter().cycle().take(400_000).copied().collect(),
    ));
    // Four 65535-byte blocks of random bytes where the first 34 % of every
    // 2000 bytes holds one of four 4-byte words (new ones in each block)
    // every 16 bytes: level 1 removes just over a sixteenth of the tokens,
    // so it tries a dynamic block, but such short matches save so few bits
    // that the block is stored instead.
    let mut d = Vec::new();
    for seed in 1..=4 {
        let mut rng = Rng::new(seed);
        let words = rng.bytes(16);
        let mut block = rng.bytes(65_535);
        for at in (0..block.len() - 4).step_by(16) {
            if at % 2000 < 20 * 34 {
                let w = 4 * rng.below(4);
                block[at..at + 4].copy_from_slice(&words[w..w + 4]);
            }
        }
        d.extend_from_slice(&block);
    }
    v.push(("short-words".into(), d));
    // One byte value per block boundary, the rest a single repeated byte:
    // blocks whose codes have one or two symbols.
    let mut two = vec![b'a'; 300_000];
    for i in (0..two.len()).step_by(65_535) {
        two[i] = b'b';
    }
    v.push(("two-symbols".into(), two));
    v
}

fn compress(data: &[u8], level: GoLevel, chunk: usize) -> Vec<u8> {
    let mut w = GzipWriter::with_level(Vec::new(), level);
    for c in data.chunks(chunk.max(1)) {
        w.write_all(c).unwrap();
    }
    w.finish().unwrap()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The `go` binary to run, or `None` (after saying why) to skip.
fn go_binary() -> Option<PathBuf> {
    let go = PathBuf::from(std::env::var_os("CFS_GO").unwrap_or_else(|| "go".into()));
    let version = Command::new(&go).arg("version").output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let version = match version {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            assert!(!ci, "CI=true but no Go toolchain: install golang-go");
            eprintln!("SKIPPED: no `go` found (install golang-go) to check against real Go");
            return None;
        }
    };
    // "go version go1.19.8 linux/amd64"
    let minor = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.strip_prefix("go1."))
        .and_then(|v| v.split(['.', 'r', 'b']).next())
        .and_then(|v| v.parse::<u32>().ok());
    match minor {
        Some(m) if m <= 26 => {
            eprintln!("checking against {}", version.trim());
            Some(go)
        }
        _ => {
            // Go 1.27 replaced compress/flate (by klauspost/compress's
            // flate); this port follows Go ≤ 1.26.
            eprintln!("SKIPPED: {} is not a Go ≤ 1.26", version.trim());
            None
        }
    }
}

/// Compresses each (level, input) with real Go, in one `go run`.
fn go_outputs(go: &Path, dir: &Path, jobs: &[(GoLevel, &str, &[u8])]) -> Vec<Vec<u8>> {
    let mut args: Vec<String> = vec!["run".into(), GOGZIP.into()];
    for (i, (level, name, data)) in jobs.iter().enumerate() {
        let input = dir.join(format!("{name}.in"));
        std::fs::write(&input, data).unwrap();
        args.push(level.number().to_string());
        args.push(input.display().to_string());
        args.push(dir.join(format!("{i}.gz")).display().to_string());
    }
    let run = Command::new(go)
        .args(&args)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "off")
        .output()
        .expect("go runs");
    assert!(
        run.status.success(),
        "go run testdata/gogzip.go failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    (0..jobs.len())
        .map(|i| std::fs::read(dir.join(format!("{i}.gz"))).unwrap())
        .collect()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("cfs-gostd-go-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_level(level: GoLevel, chunks: &[usize]) {
    let Some(go) = go_binary() else { return };
    let dir = TempDir::new(level.id());
    let inputs = inputs();
    let jobs: Vec<(GoLevel, &str, &[u8])> = inputs
        .iter()
        .map(|(n, d)| (level, n.as_str(), d.as_slice()))
        .collect();
    let want = go_outputs(&go, &dir.0, &jobs);
    let mut failed = Vec::new();
    for ((name, data), want) in inputs.iter().zip(&want) {
        assert_eq!(want[..10], level.header(), "{name}: Go's header");
        for &chunk in chunks {
            let got = compress(data, level, chunk);
            if sha(&got) != sha(want) {
                let at = got.iter().zip(want).position(|(a, b)| a != b);
                failed.push(format!(
                    "{name} ({} bytes, {chunk}-byte writes): {} vs Go's {} bytes, first difference at {at:?}",
                    data.len(),
                    got.len(),
                    want.len()
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} differs from Go:\n{}",
        level.id(),
        failed.join("\n")
    );
    eprintln!(
        "{}: {} inputs match Go for writes of {chunks:?} bytes",
        level.id(),
        inputs.len()
    );
}

#[test]
fn best_speed_matches_go() {
    // Level 1 blocks are 65535 input bytes whatever the write sizes.
    check_level(GoLevel::BestSpeed, &[32 << 10, 7, 65_535, usize::MAX]);
}

#[test]
fn best_compression_matches_go() {
    // Levels 6 and 9 step as Go fed 32 KiB writes does, whatever the writes.
    check_level(GoLevel::BestCompression, &[32 << 10, 7, usize::MAX]);
}

#[test]
fn default_matches_go() {
    check_level(GoLevel::Default, &[32 << 10, 7]);
}

#[test]
fn headers_and_ids() {
    // XFL as Go's gzip.go sets it: 2 at BestCompression, 4 at BestSpeed.
    assert_eq!(
        hex::encode(GoLevel::BestSpeed.header()),
        "1f8b08000000000004ff"
    );
    assert_eq!(
        hex::encode(GoLevel::Default.header()),
        "1f8b08000000000000ff"
    );
    assert_eq!(
        hex::encode(GoLevel::BestCompression.header()),
        "1f8b08000000000002ff"
    );
    for level in GoLevel::ALL {
        assert_eq!(GoLevel::from_id(level.id()), Some(level));
    }
    assert_eq!(GoLevel::from_id("gostd"), Some(GoLevel::Default));
}
