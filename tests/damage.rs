//! Issue 14: seeded random bit flips in every kind of repository file
//! (file objects, split-stream objects, meta.json, tag links' targets), on
//! sha256 and sha512 repositories. Each export either delivers the exact
//! image (checked independently) or fails with a clean error; nothing aborts
//! or panics; `verify --all` catches every flip in an object the image uses.
#![allow(clippy::unwrap_used)]

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fixtures::*;

/// Cases per repository algorithm; the seeds are 0..CASES, so a failure
/// reproduces with the seed it names.
const CASES: u64 = 160;

/// What a flip hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A file object (content of a file in a layer).
    FileObject,
    /// A split-stream object (layer, config or manifest stream).
    StreamObject,
    /// `meta.json`.
    Meta,
    /// The target of a tag's symlink.
    TagLink,
}

/// xorshift64*: small, seedable, good enough to pick files and bits.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn layers() -> Vec<LayerSpec> {
    let l1 = TarBuilder::new()
        .dir("usr")
        .file("usr/big", &noise(150_000, 1))
        .file("usr/small", b"tiny\n")
        .symlink("usr/link", "big")
        .finish(true);
    let l2 = TarBuilder::new()
        .dir("etc")
        .file("etc/medium", &noise(20_000, 2))
        .file_with_xattrs("etc/x", b"x", &[("user.k", b"v")])
        .finish(false);
    let l3 = TarBuilder::new()
        .file("top", &noise(9_000, 3))
        .finish(false);
    vec![(l1, Kind::Gzip), (l2, Kind::Zstd), (l3, Kind::Tar)]
}

fn repository(dir: &Path, sha512: bool) -> (PathBuf, Fixture) {
    let repo = dir.join("repo");
    if sha512 {
        use composefs::fsverity::{Algorithm, Sha512HashValue};
        use composefs::repository::{Repository, RepositoryConfig};
        Repository::<Sha512HashValue>::init_path(
            rustix::fs::CWD,
            &repo,
            RepositoryConfig::new(Algorithm::for_hash::<Sha512HashValue>()).set_insecure(),
        )
        .unwrap();
    }
    let f = write_layout(&dir.join("src"), "fixture", "amd64", &layers());
    import(&repo, &f);
    (repo, f)
}

/// Every file of `repo` a flip may hit, by kind.
fn targets(repo: &Path) -> Vec<(Target, PathBuf)> {
    let streams: Vec<PathBuf> = std::fs::read_dir(repo.join("streams"))
        .unwrap()
        .filter_map(|e| std::fs::canonicalize(e.unwrap().path()).ok())
        .filter(|p| p.is_file())
        .collect();
    let mut out = vec![(Target::Meta, repo.join("meta.json"))];
    for d in std::fs::read_dir(repo.join("objects")).unwrap() {
        let d = d.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&d).unwrap() {
            let p = std::fs::canonicalize(f.unwrap().path()).unwrap();
            let kind = if streams.contains(&p) {
                Target::StreamObject
            } else {
                Target::FileObject
            };
            out.push((kind, p));
        }
    }
    for tag in std::fs::read_dir(repo.join("streams/refs/oci")).unwrap() {
        out.push((Target::TagLink, tag.unwrap().path()));
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Flip one bit of `path` (for a tag link: of its target's text).
fn flip(target: Target, path: &Path, rng: &mut Rng) {
    if target == Target::TagLink {
        let mut link = std::fs::read_link(path)
            .unwrap()
            .into_os_string()
            .into_vec();
        let i = rng.below(link.len());
        link[i] ^= 1 << rng.below(7);
        if link[i] == 0 {
            link[i] = b'_';
        }
        std::fs::remove_file(path).unwrap();
        std::os::unix::fs::symlink(std::ffi::OsString::from_vec(link), path).unwrap();
        return;
    }
    rewrite(path, |d| {
        if !d.is_empty() {
            let i = rng.below(d.len());
            d[i] ^= 1 << rng.below(8);
        }
    });
}

/// Exit 1 with a clean report: for an export one `error: …` line, for
/// `verify` only `DAMAGED …` lines, their indented objects and one `error: …`
/// line; never a panic or a backtrace.
fn clean_failure(out: &Output, verify: bool) -> Result<(), String> {
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) {
        return Err(format!("exit {:?}: {err}", out.status));
    }
    if err.contains("panicked") || err.contains("backtrace") {
        return Err(format!("panic or backtrace: {err}"));
    }
    let lines: Vec<&str> = err.lines().collect();
    let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
    let clean = match verify {
        false => lines.len() == 1 && errors == 1,
        true => {
            errors == 1
                && lines.iter().all(|l| {
                    l.starts_with("error: ") || l.starts_with("DAMAGED ") || l.starts_with("  ")
                })
        }
    };
    match clean {
        true => Ok(()),
        false => Err(format!("unexpected stderr: {err}")),
    }
}

/// The export in `layout` is exactly the fixture: config bytes and every
/// layer's uncompressed sha256, recomputed here.
fn exact(layout: &Path, f: &Fixture) -> Result<(), String> {
    let (_, m) = manifest_for(layout, "x");
    let config = read_blob(layout, m["config"]["digest"].as_str().unwrap());
    if config != f.config_bytes {
        return Err("config bytes differ".into());
    }
    for (i, l) in m["layers"].as_array().unwrap().iter().enumerate() {
        let blob = read_blob(layout, l["digest"].as_str().unwrap());
        let tar = decompress(l["mediaType"].as_str().unwrap(), &blob);
        if sha256(&tar) != f.diff_ids[i] {
            return Err(format!("layer {} differs", i + 1));
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    cases: u64,
    refused: u64,
    exact: u64,
    aborts: u64,
    verify_misses: u64,
    failures: Vec<String>,
}

impl Counts {
    /// A run that neither succeeded nor failed cleanly: an abort or a panic.
    fn died(&mut self, what: &str, command: &str, out: &Output) {
        self.aborts += 1;
        self.failures.push(format!(
            "{what}: {command} died ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

fn run_case(base: &Path, f: &Fixture, seed: u64, scratch: &Path, counts: &mut Counts) {
    let case = scratch.join(format!("case-{seed}"));
    let repo = case.join("repo");
    copy_tree(base, &repo);
    let mut rng = Rng::new(seed);
    let all = targets(&repo);
    // Each kind equally often, whatever their numbers of files.
    let kinds = [
        Target::FileObject,
        Target::StreamObject,
        Target::Meta,
        Target::TagLink,
    ];
    let kind = kinds[rng.below(kinds.len())];
    let of_kind: Vec<&(Target, PathBuf)> = all.iter().filter(|(k, _)| *k == kind).collect();
    let (target, path) = of_kind[rng.below(of_kind.len())].clone();
    flip(target, &path, &mut rng);
    let what = format!("seed {seed}: {target:?} {}", path.display());

    counts.cases += 1;
    let out_dir = case.join("out");
    let export = Command::new(bin())
        .arg("--repo")
        .arg(&repo)
        .args(["export", "fixture", "--compression", "none", "--to"])
        .arg(format!("oci:{}:x", out_dir.display()))
        .output()
        .unwrap();
    match export.status.code() {
        Some(0) => match exact(&out_dir, f) {
            Ok(()) => counts.exact += 1,
            Err(e) => counts.failures.push(format!("{what}: WRONG IMAGE: {e}")),
        },
        Some(1) => {
            counts.refused += 1;
            if let Err(e) = clean_failure(&export, false) {
                counts.failures.push(format!("{what}: export: {e}"));
            }
        }
        _ => counts.died(&what, "export", &export),
    }
    let verify = Command::new(bin())
        .arg("--repo")
        .arg(&repo)
        .args(["verify", "--all"])
        .output()
        .unwrap();
    match verify.status.code() {
        Some(0) if matches!(target, Target::FileObject | Target::StreamObject) => {
            counts.verify_misses += 1;
            counts
                .failures
                .push(format!("{what}: verify --all said intact"));
        }
        Some(0) => {}
        Some(1) => {
            if let Err(e) = clean_failure(&verify, true) {
                counts.failures.push(format!("{what}: verify: {e}"));
            }
        }
        _ => counts.died(&what, "verify", &verify),
    }
    std::fs::remove_dir_all(&case).unwrap();
}

fn fuzz(sha512: bool) {
    let t = tempfile::tempdir().unwrap();
    let (base, f) = repository(t.path(), sha512);
    let scratch = t.path().join("cases");
    let workers = 2;
    let results: Vec<Counts> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (base, f, scratch) = (&base, &f, &scratch);
                s.spawn(move || {
                    let mut counts = Counts::default();
                    for seed in (w..CASES).step_by(workers as usize) {
                        run_case(base, f, seed, scratch, &mut counts);
                    }
                    counts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Counts::default();
    for c in results {
        total.cases += c.cases;
        total.refused += c.refused;
        total.exact += c.exact;
        total.aborts += c.aborts;
        total.verify_misses += c.verify_misses;
        total.failures.extend(c.failures);
    }
    println!(
        "damage fuzz ({}): cases {}, refused {}, exact {}, aborts {}, verify misses {}",
        if sha512 { "sha512" } else { "sha256" },
        total.cases,
        total.refused,
        total.exact,
        total.aborts,
        total.verify_misses
    );
    assert!(total.failures.is_empty(), "{}", total.failures.join("\n"));
    assert_eq!(total.cases, CASES);
}

#[test]
fn damage_fuzz_sha256() {
    fuzz(false);
}

#[test]
fn damage_fuzz_sha512() {
    fuzz(true);
}
