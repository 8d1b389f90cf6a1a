//! `oci-archive:` output: a deterministic tar of an OCI layout, written to a
//! temp file beside the target and renamed into place.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::layout::BLOB_RECORD_FILE;

/// mtime of every entry: `$SOURCE_DATE_EPOCH` when set, else 0.
fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Write the layout at `layout` as a tar to `out`: sorted names, fixed
/// owners, modes and mtimes, so the same layout always gives the same bytes.
pub fn write_archive(layout: &Path, out: &Path) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .with_context(|| format!("Reading {}", layout.display()))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    blobs.sort();
    // Created 0666 less the umask, as skopeo and podman create archives.
    let tmp = tempfile::Builder::new()
        .prefix(".cfs-export-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(parent)
        .with_context(|| format!("Creating a temp file in {}", parent.display()))?;
    let mtime = mtime();
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
        builder.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut files: Vec<String> = blobs.iter().map(|b| format!("blobs/sha256/{b}")).collect();
    files.extend(["index.json".to_string(), "oci-layout".to_string()]);
    for name in files.iter().filter(|n| n.as_str() != BLOB_RECORD_FILE) {
        let path = layout.join(name);
        let file =
            std::fs::File::open(&path).with_context(|| format!("Opening {}", path.display()))?;
        let len = file.metadata()?.len();
        let mut h = header(tar::EntryType::Regular, 0o644, len, mtime);
        builder
            .append_data(&mut h, name, file)
            .with_context(|| format!("Archiving {name}"))?;
    }
    let mut w = builder.into_inner().context("Finishing the archive")?;
    w.flush()?;
    drop(w);
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("Renaming the archive to {}", out.display()))?;
    Ok(())
}
