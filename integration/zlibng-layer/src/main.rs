//! Writes a gzip layer the way ostree-ext does (`ostree container
//! encapsulate`, rpm-ostree and bootc base images): a `tar::Builder` straight
//! over flate2's `GzEncoder` at `Compression::default()` (level 6), each
//! entry with a GNU header, regular files through `append_data` from a
//! 128 KiB `BufReader`, directories from `io::empty()`, links through
//! `append_link` (GNU long-name records for paths over 100 bytes), then
//! `into_inner` (the 1024-byte end) and `finish`. flate2 `zlib` is linked to
//! the zlib-ng C library libz-sys bundles (compat mode), as flate2 on Fedora
//! is linked to zlib-ng-compat.
//!
//! Usage: `zlibngNN-layer < TAR > LAYER.gz` re-writes each entry of TAR
//! (types, modes, owners, mtimes, paths, link targets, contents);
//! `zlibngNN-layer --version` prints the linked zlib's `zlibVersion()` and
//! the zlib-ng release of the zlib.h it was built with.

use std::ffi::CStr;
use std::io::{self, BufReader, Read, Write};

fn version() -> String {
    // SAFETY: zlibVersion() returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(libz_sys::zlibVersion()) };
    format!("{} {}", v.to_string_lossy(), env!("ZLIBNG_VERSION"))
}

fn main() -> io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("{}", version());
        return Ok(());
    }
    let mut input = tar::Archive::new(io::stdin().lock());
    let gz = flate2::write::GzEncoder::new(io::stdout().lock(), flate2::Compression::default());
    let mut out = tar::Builder::new(gz);
    for entry in input.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let link = entry.link_name()?.map(|l| l.into_owned());
        let src = entry.header();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(src.entry_type());
        h.set_mode(src.mode()?);
        h.set_uid(src.uid()?);
        h.set_gid(src.gid()?);
        h.set_mtime(src.mtime()?);
        match (src.entry_type(), link) {
            (tar::EntryType::Symlink | tar::EntryType::Link, Some(target)) => {
                h.set_size(0);
                out.append_link(&mut h, &path, &target)?;
            }
            (tar::EntryType::Directory, _) => {
                h.set_size(0);
                out.append_data(&mut h, &path, io::empty())?;
            }
            (tar::EntryType::Regular, _) => {
                // Whole in memory first, so every read fills io::copy's
                // buffer as reading an ostree object does.
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                h.set_size(data.len() as u64);
                let reader = BufReader::with_capacity(131_072, &data[..]);
                out.append_data(&mut h, &path, reader)?;
            }
            (t, _) => {
                return Err(io::Error::other(format!(
                    "{}: entry type {t:?} not handled",
                    path.display()
                )))
            }
        }
    }
    out.into_inner()?.finish()?.flush()
}
