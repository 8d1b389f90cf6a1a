//! Tests against the real `gzip -n` binary.

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;

/// Runs `gzip -n -c` on `data`; None (with a message) if gzip is absent
/// outside CI.
fn gnu_gzip(data: &[u8]) -> Option<Vec<u8>> {
    gnu_gzip_level(data, GnuLevel::Default)
}

/// Runs `gzip -n -c -LEVEL` on `data`, as [`gnu_gzip`]. `CFS_GNU_GZIP`
/// names another gzip to compare with (default: `gzip` on the PATH).
fn gnu_gzip_level(data: &[u8], level: GnuLevel) -> Option<Vec<u8>> {
    let gzip = std::env::var("CFS_GNU_GZIP").unwrap_or_else(|_| "gzip".into());
    let child = Command::new(gzip)
        .args(["-n", "-c", &format!("-{}", level.number())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "gzip is required under CI: {e}"
            );
            eprintln!("skipping: no gzip binary ({e})");
            return None;
        }
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    feeder.join().expect("feeder").expect("write to gzip");
    assert!(out.status.success());
    Some(out.stdout)
}

fn ours(data: &[u8], p: Params) -> Vec<u8> {
    let mut w = GnuGzipWriter::with_params(Vec::new(), p, HEADER);
    w.write_all(data).expect("write");
    w.finish().expect("finish")
}

/// A deterministic xorshift generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn words(n: usize, seed: u64) -> Vec<u8> {
    const W: [&str; 16] = [
        "the ",
        "layer ",
        "digest ",
        "container ",
        "image ",
        "of ",
        "and ",
        "gzip ",
        "zlib ",
        "manifest ",
        "blob ",
        "tar\n",
        "deflate ",
        "window ",
        "hash ",
        "match ",
    ];
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        let x = r.next();
        v.extend_from_slice(W[(x % 16) as usize].as_bytes());
        if x >> 60 == 0 {
            v.extend_from_slice(format!("{} ", x >> 40).as_bytes());
        }
    }
    v.truncate(n);
    v
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.next() as u8).collect()
}

fn logs(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(n + 128);
    let mut t = 1_700_000_000u64;
    while v.len() < n {
        t += r.next() % 5;
        let lvl = ["INFO", "WARN", "DEBUG", "ERROR"][(r.next() % 4) as usize];
        let line = format!(
            "{t} host-{} {lvl} request id={:x} path=/api/v1/items/{} status={}\n",
            r.next() % 8,
            r.next() >> 20,
            r.next() % 1000,
            [200, 404, 500][(r.next() % 3) as usize]
        );
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(n);
    v
}

fn runs(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed);
    let mut v = Vec::with_capacity(n + 4096);
    while v.len() < n {
        let x = r.next();
        let len = (x % 3000) as usize;
        let b = if x >> 62 == 0 { (x >> 8) as u8 } else { 0 };
        v.extend(std::iter::repeat_n(b, len));
        v.extend_from_slice(&noise((x >> 20) as usize % 40, x));
    }
    v.truncate(n);
    v
}

/// Compares our output with gzip's; returns true on a match.
fn same(name: &str, data: &[u8]) -> bool {
    let Some(want) = gnu_gzip(data) else {
        return true;
    };
    let got = ours(data, GNU_LEVEL_6);
    let ok = got == want;
    eprintln!(
        "{name} ({} bytes): {}",
        data.len(),
        if ok { "match" } else { "DIFFER" }
    );
    ok
}

#[test]
fn gnugzip_generated_inputs() {
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one byte".into(), b"a".to_vec()),
        ("two bytes".into(), b"ab".to_vec()),
        ("zeros 1M".into(), vec![0; 1 << 20]),
    ];
    for (i, n) in [
        100,
        5000,
        32767,
        32768,
        32769,
        65274,
        65536,
        65537,
        100_000,
        300_000,
        3 << 20,
    ]
    .into_iter()
    .enumerate()
    {
        let s = i as u64 + 1;
        cases.push((format!("words {n}"), words(n, s)));
        cases.push((format!("logs {n}"), logs(n, s)));
        cases.push((format!("noise {n}"), noise(n, s)));
        cases.push((format!("runs {n}"), runs(n, s)));
    }
    let total = cases.len();
    let bad: Vec<&str> = cases
        .iter()
        .filter(|(name, data)| !same(name, data))
        .map(|(n, _)| n.as_str())
        .collect();
    eprintln!("{}/{total} match", total - bad.len());
    assert!(bad.is_empty(), "differ: {bad:?}");
}

/// The raw deflate body of madler zlib (flate2's C backend) at `level`.
fn zlib_raw(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

#[test]
fn gnugzip_zlib_params_equal_zlib() {
    let mut bad = Vec::new();
    let mut total = 0;
    for level in [1u8, 6, 9] {
        for (i, n) in [0, 1, 2, 3, 100, 32768, 65537, 200_000, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let s = i as u64 + 7;
            for (kind, data) in [
                ("words", words(n, s)),
                ("logs", logs(n, s)),
                ("noise", noise(n, s)),
                ("runs", runs(n, s)),
            ] {
                total += 1;
                let got = ours(&data, Params::zlib(level, 8));
                let want = zlib_raw(&data, u32::from(level));
                if got[10..got.len() - 8] != want[..] {
                    bad.push(format!("level {level} {kind} {n}"));
                }
            }
        }
    }
    eprintln!("{}/{total} equal zlib", total - bad.len());
    assert!(bad.is_empty(), "differ: {bad:?}");
}

/// Inputs whose gzip output each of GNU gzip's parameters changes: block
/// edges, runs (the early flush), and ends in the last 261 window bytes.
fn probe_inputs() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (i, n) in [65400usize, 65500, 98100, 98250, 200_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let s = 100 + i as u64;
        v.push((format!("words {n}"), words(n, s)));
        v.push((format!("logs {n}"), logs(n, s)));
        v.push((format!("runs {n}"), runs(n, s)));
    }
    v.extend(tail_inputs());
    v
}

/// Inputs ending with a 40-byte string `S` seen twice before: once followed
/// by bytes equal to what the window holds after the end of the input with
/// its first two bytes zeroed, once followed by that without the zeroing.
/// Searching past the lookahead picks the first; zlib's clamp of `nice`
/// picks the most recent copy. In a first window (`slid` false) the bytes
/// after the end are zeros.
fn tail_inputs() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (slid, n) in [(false, 5000usize), (true, 80_000), (true, 100_000)] {
        let mut d = noise(n, n as u64);
        let s = noise(40, 1);
        let mut t = noise(20, 2);
        if !slid {
            t.fill(1);
        }
        let at = n.saturating_sub(32768);
        if slid {
            d[at..at + 20].copy_from_slice(&t);
        }
        let mut zeroed = if slid { t.clone() } else { vec![0; 20] };
        zeroed[..2].fill(0);
        for (p, after) in [(n - 3000, &zeroed), (n - 1500, &t)] {
            d[p..p + 40].copy_from_slice(&s);
            d[p + 40..p + 60].copy_from_slice(after);
        }
        d[n - 40..].copy_from_slice(&s);
        v.push((format!("tail {n}"), d));
    }
    v
}

#[test]
fn gnugzip_each_parameter_matters() {
    let inputs = probe_inputs();
    let Some(want) = inputs
        .iter()
        .map(|(_, d)| gnu_gzip(d))
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let count = |p: Params| {
        inputs
            .iter()
            .zip(&want)
            .filter(|((_, d), w)| ours(d, p) == **w)
            .count()
    };
    let total = inputs.len();
    assert_eq!(count(GNU_LEVEL_6), total, "GNU parameters");
    let mut variants: Vec<(&str, Params)> = Vec::new();
    let mut p = GNU_LEVEL_6;
    p.hash_bits = 16;
    variants.push(("hash_bits 16", p));
    let mut p = GNU_LEVEL_6;
    p.block.lit_bufsize = 0x4000;
    variants.push(("lit_bufsize 0x4000", p));
    let mut p = GNU_LEVEL_6;
    p.block.truncate_mask = None;
    variants.push(("no early flush", p));
    let mut p = GNU_LEVEL_6;
    p.block.truncate_mask = Some(0x1fff);
    variants.push(("early flush mask 0x1fff", p));
    let mut p = GNU_LEVEL_6;
    p.clamp_nice = true;
    variants.push(("zlib's nice clamp", p));
    let mut p = GNU_LEVEL_6;
    p.slide_at_end = true;
    variants.push(("zlib's slide at the end", p));
    let mut p = GNU_LEVEL_6;
    p.zero_after_end = false;
    variants.push(("no zeroing after the end", p));
    for (name, p) in variants {
        let n = count(p);
        eprintln!("{name}: {n}/{total} match");
        assert!(n < total, "{name} should change some output");
    }
}

#[test]
fn gnugzip_write_splits() {
    let mut data = logs(200_000, 42);
    data.extend_from_slice(&runs(150_000, 43));
    data.extend_from_slice(&words(120_000, 44));
    let whole = ours(&data, GNU_LEVEL_6);
    for size in [1usize, 7, 4096, 65537] {
        let mut w = GnuGzipWriter::new(Vec::new());
        for c in data.chunks(size) {
            w.write_all(c).expect("write");
        }
        assert!(w.finish().expect("finish") == whole, "write size {size}");
    }
    if let Some(want) = gnu_gzip(&data) {
        assert!(whole == want);
    }
}

/// A tar of the regular files and directories under `root` (sorted walk),
/// stopping once it holds `cap` bytes.
fn system_tar(root: &str, cap: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        entries.sort();
        for p in entries.into_iter().rev() {
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && b.get_ref().len() < cap {
                let name = p.strip_prefix("/").unwrap_or(&p).to_path_buf();
                let _ = b.append_path_with_name(&p, name);
            }
        }
    }
    b.into_inner().expect("tar")
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn gnugzip_system_tars() {
    let mut bad = Vec::new();
    for root in ["/usr/include", "/usr/share/doc"] {
        if !std::path::Path::new(root).is_dir() {
            eprintln!("skipping {root}: not a directory");
            continue;
        }
        let data = system_tar(root, 64 << 20);
        let Some(want) = gnu_gzip(&data) else {
            return;
        };
        let got = ours(&data, GNU_LEVEL_6);
        let (g, w) = (sha256(&got), sha256(&want));
        eprintln!("{root}: {} bytes tar, ours {g}, gzip {w}", data.len());
        if g != w {
            bad.push(root);
        }
    }
    assert!(bad.is_empty(), "differ: {bad:?}");
}

#[test]
fn gnugzip_levels_1_and_9() {
    let mut cases = probe_inputs();
    for (i, n) in [0usize, 1, 100, 32769, 65537, 300_000]
        .into_iter()
        .enumerate()
    {
        cases.push((format!("words {n}"), words(n, 200 + i as u64)));
        cases.push((format!("noise {n}"), noise(n, 200 + i as u64)));
    }
    cases.push(("zeros 1M".into(), vec![0; 1 << 20]));
    let mut bad = Vec::new();
    for level in [GnuLevel::Fastest, GnuLevel::Best] {
        for (name, data) in &cases {
            let Some(want) = gnu_gzip_level(data, level) else {
                return;
            };
            let mut w = GnuGzipWriter::with_level(Vec::new(), level);
            w.write_all(data).expect("write");
            if w.finish().expect("finish") != want {
                bad.push(format!("level {} {name}", level.number()));
            }
        }
    }
    eprintln!("{}/{} match", 2 * cases.len() - bad.len(), 2 * cases.len());
    assert!(bad.is_empty(), "differ: {bad:?}");
}

#[test]
fn gnugzip_mixed_inputs() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bad = Vec::new();
    let total = 60;
    for case in 0..total {
        let mut data = Vec::new();
        let target = (r.next() % 400_000) as usize;
        while data.len() < target {
            let n = (r.next() % 70_000) as usize;
            let s = r.next();
            match s % 5 {
                0 => data.extend(words(n, s)),
                1 => data.extend(logs(n, s)),
                2 => data.extend(noise(n, s)),
                3 => data.extend(runs(n, s)),
                _ => {
                    // a copy of earlier input, at distances around the window
                    let from = data.len().saturating_sub((s >> 8) as usize % 40_000);
                    let end = (from + n).min(data.len());
                    data.extend_from_within(from..end);
                    data.push(s as u8);
                }
            }
        }
        let levels = [GnuLevel::Default, GnuLevel::Fastest, GnuLevel::Best];
        let level = levels[case % 3];
        let Some(want) = gnu_gzip_level(&data, level) else {
            return;
        };
        let mut w = GnuGzipWriter::with_level(Vec::new(), level);
        w.write_all(&data).expect("write");
        if w.finish().expect("finish") != want {
            bad.push(format!(
                "case {case} level {} ({} bytes)",
                level.number(),
                data.len()
            ));
        }
    }
    eprintln!("{}/{total} match", total - bad.len());
    assert!(bad.is_empty(), "differ: {bad:?}");
}
