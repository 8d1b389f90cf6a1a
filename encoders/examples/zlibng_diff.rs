//! Differential harness for `zlibng::ZlibNg6Writer` against the real zlib-ng.
//!
//! `zlibng_diff OUT DIR...` writes a tar of DIRs the way ostree-ext's export
//! lays one out (tar-rs `Builder`, GNU headers, content under long
//! `sysroot/ostree/repo/objects/xx/….file` names read through a 128 KiB
//! `BufReader`, a hard link per path), and records:
//! - `OUT.tar`: the tar; `OUT.sizes`: the size of every write tar-rs made,
//!   one a line (feed them to a C driver linked with zlib-ng);
//! - `OUT.gz`: our `ZlibNg6Writer` output for the tar, fed in 64 KiB pieces.

use std::fs;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cfs_encoders::zlibng::ZlibNg6Writer;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Recorder {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        self.sizes.push(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        out.push(p.clone());
        if e.file_type()?.is_dir() {
            walk(&p, out)?;
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, dirs)) = args.split_first() else {
        eprintln!("usage: zlibng_diff OUT DIR...");
        std::process::exit(2);
    };
    let mut paths = Vec::new();
    for d in dirs {
        walk(Path::new(d), &mut paths)?;
    }
    let mut b = tar::Builder::new(Recorder::default());
    for p in &paths {
        let meta = fs::symlink_metadata(p)?;
        let name = p.to_string_lossy().trim_start_matches('/').to_string();
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.permissions().mode() & 0o7777);
        if meta.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &name, io::empty())?;
        } else if meta.file_type().is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &name, fs::read_link(p)?)?;
        } else if meta.is_file() {
            let Ok(file) = fs::File::open(p) else {
                continue;
            };
            let sum: String = Sha256::digest(name.as_bytes())
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            let object = format!(
                "sysroot/ostree/repo/objects/{}/{}.file",
                &sum[..2],
                &sum[2..]
            );
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            b.append_data(&mut h, &object, BufReader::with_capacity(131_072, file))?;
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Link);
            l.set_size(0);
            b.append_link(&mut l, &name, &object)?;
        }
    }
    let rec = b.into_inner()?;
    fs::write(format!("{out}.tar"), &rec.bytes)?;
    let sizes: Vec<String> = rec.sizes.iter().map(|s| s.to_string()).collect();
    fs::write(format!("{out}.sizes"), sizes.join("\n") + "\n")?;
    let mut w = ZlibNg6Writer::new(Vec::new());
    for piece in rec.bytes.chunks(65_536) {
        w.write_all(piece)?;
    }
    fs::write(format!("{out}.gz"), w.finish()?)?;
    Ok(())
}
