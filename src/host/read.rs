//! Reading a host's small text files without trusting them: the sysroot may
//! be a mounted disk image made by someone else. Files under the sysroot are
//! opened beneath it (cap-std: `openat2(RESOLVE_BENEATH)`, so no symlink or
//! `..` leads out of it); every file is opened non-blocking (a FIFO never
//! hangs the command), must be a regular file, and is read only up to a cap
//! (a symlink to `/dev/zero` or a huge file cannot eat the memory).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use cap_std_ext::cap_std::fs::{Dir, FileTypeExt as _, OpenOptions, OpenOptionsExt as _};

/// Cap for origin files, boot entries, `user.cfg`, the kernel command line
/// and the staged-deployment marker: each is a few hundred bytes.
pub(crate) const SMALL_FILE_CAP: u64 = 1 << 20;
/// Cap for `<id>.imginfo` (a manifest and an image config).
pub(crate) const IMGINFO_CAP: u64 = 64 << 20;
/// Cap for the mount table: a host running many containers has thousands of mounts.
pub(crate) const MOUNTINFO_CAP: u64 = 16 << 20;

/// `O_NONBLOCK`: opening a FIFO does not wait for a writer; `O_NOCTTY`: a
/// terminal never becomes the controlling one.
fn open_flags() -> i32 {
    (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32
}

/// What kind of file this is, for messages (std's and cap-std's file types
/// have the same methods, from different traits).
macro_rules! not_regular {
    ($t:expr) => {{
        let t = $t;
        let kind = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_char_device() {
            "a character device"
        } else {
            "of an unknown kind"
        };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({kind})"),
        )
    }};
}

/// `1 MiB`, `100 B`: the caps as they are set.
fn cap_size(cap: u64) -> String {
    if cap >= 1 << 20 && cap.is_multiple_of(1 << 20) {
        format!("{} MiB", cap >> 20)
    } else {
        format!("{cap} B")
    }
}

fn too_big(cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "larger than {}, far more than such a file holds",
            cap_size(cap)
        ),
    )
}

/// Read an opened regular file: at most `cap` bytes, else an error. procfs
/// files report size 0, so the size is only a first check; the read itself
/// stops at `cap + 1` bytes.
fn read_opened(file: File, cap: u64) -> io::Result<Vec<u8>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular!(meta.file_type()));
    }
    if meta.len() > cap {
        return Err(too_big(cap));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big(cap));
    }
    Ok(bytes)
}

/// Read `path` beneath `dir`: regular files only, at most `cap` bytes. A
/// path that leads out of `dir` is refused, never opened.
pub(crate) fn read_beneath(dir: &Dir, path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // Look before opening: opening a device node can have effects of its own.
    let meta = dir.metadata(path).map_err(escape_named)?;
    if !meta.is_file() {
        return Err(not_regular!(meta.file_type()));
    }
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(open_flags());
    let file = dir.open_with(path, &options).map_err(escape_named)?;
    // Checked again on the open file: it may have been swapped since.
    read_opened(file.into_std(), cap)
}

/// Read a file outside any sysroot (`/proc/cmdline`, the mount table, the
/// marker in `/run`) the same careful way.
pub(crate) fn read_ambient(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular!(meta.file_type()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(open_flags())
        .open(path)?;
    read_opened(file, cap)
}

/// As text: UTF-8 required.
pub(crate) fn text(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// cap-std's "a path led outside of the filesystem" (no OS error code) said
/// in the sysroot's terms.
pub(crate) fn escape_named(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_none() {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it leads outside the sysroot (a symbolic link out of it)",
        )
    } else {
        e
    }
}

/// A value from a host file, quoted and cut short for a message.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std_ext::cap_std::ambient_authority;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
    }

    #[test]
    fn only_small_regular_files_beneath_the_dir() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/ok"), b"hello").unwrap();
        std::fs::write(t.path().join("outside"), b"secret").unwrap();
        std::fs::write(root.join("big"), vec![b'x'; 101]).unwrap();
        std::fs::write(root.join("exact"), vec![b'x'; 100]).unwrap();
        mkfifo(&root.join("fifo"));
        std::os::unix::fs::symlink("sub/ok", root.join("inside-link")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("up-link")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), root.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
        let dir = Dir::open_ambient_dir(&root, ambient_authority()).unwrap();

        let started = Instant::now();
        let read = |p: &str| read_beneath(&dir, Path::new(p), 100);
        assert_eq!(read("sub/ok").unwrap(), b"hello");
        assert_eq!(read("inside-link").unwrap(), b"hello");
        assert_eq!(read("exact").unwrap().len(), 100);
        for (path, want) in [
            ("big", "larger than 100 B"),
            ("fifo", "a FIFO"),
            ("sub", "a directory"),
            ("up-link", "outside the sysroot"),
            ("abs-link", "outside the sysroot"),
            ("zero", "outside the sysroot"),
            ("../outside", "outside the sysroot"),
            ("/etc/passwd", "outside the sysroot"),
        ] {
            let e = read(path).unwrap_err().to_string();
            assert!(e.contains(want), "{path}: {e}");
            assert!(!e.contains("secret"), "{path}: {e}");
        }
        assert_eq!(
            read("dangling").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(started.elapsed() < Duration::from_secs(5), "a read blocked");
    }

    #[test]
    fn files_outside_a_sysroot_get_the_same_checks() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("fifo");
        mkfifo(&fifo);
        let e = read_ambient(&fifo, 100).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        let e = read_ambient(Path::new("/dev/zero"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a character device"), "{e}");
        // procfs reports size 0; the read stops at the cap all the same.
        let cmdline = read_ambient(Path::new("/proc/self/cmdline"), 1 << 20).unwrap();
        assert!(!cmdline.is_empty());
        let e = read_ambient(Path::new("/proc/self/mountinfo"), 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than 10 B"), "{e}");
    }

    #[test]
    fn text_and_quoting() {
        assert_eq!(text(b"ok".to_vec()).unwrap(), "ok");
        let e = text(b"ab\xffc".to_vec()).unwrap_err().to_string();
        assert!(e.contains("not UTF-8") && e.contains("offset 2"), "{e}");
        assert_eq!(shown("a\x1bb"), "\"a\\u{1b}b\"");
        let long = "x".repeat(200);
        assert_eq!(shown(&long), format!("{:?}…", "x".repeat(80)));
    }
}
