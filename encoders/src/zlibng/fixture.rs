//! The tar the zlib-ng known answers were computed on (made by real tar-rs
//! as ostree-ext writes one), and those answers. Shared by the tests of
//! `cfs_encoders::zlibng` and of the `cfs-zng22` crate (included by path).

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// Records every write tar-rs makes: the stream and the size of each write.
#[derive(Default)]
pub struct Recorder {
    /// The stream.
    pub bytes: Vec<u8>,
    /// The size of each write.
    pub sizes: Vec<usize>,
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

/// Deterministic content: prose-like words with runs and noise.
fn content(len: usize, seed: u32) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"ostree ",
        b"sysroot/",
        b"objects ",
        b"\n",
        b"fedora ",
        b"0000",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        match x % 9 {
            0 => out.extend((0..(x >> 24) % 64).map(|i| (x >> (i % 23)) as u8)),
            1 => out.extend(std::iter::repeat_n(b'\0', ((x >> 9) % 300) as usize)),
            n => out.extend_from_slice(words[n as usize % words.len()]),
        }
    }
    out.truncate(len);
    out
}

/// Log-like lines: long repeats with small changes, where match choices
/// (and so zlib-ng's hash functions) show.
fn log_lines(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0u32;
    while out.len() < len {
        let line = format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}Z host{} systemd[{}]: Started unit-{}.service (pid {})\n",
            1 + i % 28,
            i % 24,
            (i * 7) % 60,
            (i * 13) % 60,
            i % 5,
            1000 + i % 97,
            i % 41,
            i.wrapping_mul(2_654_435_761) % 65_536
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A tar made by real tar-rs the way ostree-ext's export writes one (GNU
/// headers, `append_data` / `append_link`, long object paths), with the
/// sizes of its writes.
pub fn ostree_like_tar() -> Recorder {
    let mut b = tar::Builder::new(Recorder::default());
    let dir = |b: &mut tar::Builder<Recorder>, p: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, p, io::empty()).unwrap();
    };
    dir(&mut b, "./");
    dir(&mut b, "sysroot/ostree/repo/objects");
    let sizes = [
        0, 1, 511, 512, 513, 8191, 8192, 8193, 40_000, 131_072, 200_001, 3000,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let sum = hex(&Sha256::digest((i as u32).to_le_bytes()));
        let path = format!(
            "sysroot/ostree/repo/objects/{}/{}.file",
            &sum[..2],
            &sum[2..]
        );
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(len as u64);
        let data = content(len, 7 + i as u32);
        // ostree-ext reads through a 128 KiB BufReader; io::copy still
        // moves 8 KiB at a time.
        let reader = io::BufReader::with_capacity(131_072, &data[..]);
        b.append_data(&mut h, &path, reader).unwrap();
        // xattrs link: a long name and a long link target (GNU L and K).
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_mode(0o644);
        l.set_size(0);
        let link = format!("{}-xattrs-link", path);
        let target = format!(
            "sysroot/ostree/repo/objects/{}/{}.file-xattrs",
            &sum[..2],
            &sum[2..]
        );
        b.append_link(&mut l, &link, &target).unwrap();
        let mut s = tar::Header::new_gnu();
        s.set_entry_type(tar::EntryType::Symlink);
        s.set_mode(0o777);
        s.set_size(0);
        b.append_link(&mut s, format!("usr/lib/l{i}"), "../../usr/share/x")
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    let log = log_lines(300_000);
    h.set_size(log.len() as u64);
    b.append_data(&mut h, "var/log/journal.txt", &log[..])
        .unwrap();
    b.into_inner().unwrap()
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Known answers from the real zlib-ng C library (built at the tag with
/// `cmake -DZLIB_COMPAT=ON -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release`,
/// gcc 12, x86-64), fed the tar-rs writes above by a C driver that calls
/// `deflateInit2(6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY)` and `deflate()`
/// the way flate2's writer does (each write with a fresh 32 KiB output, then
/// `Z_FINISH` with no input), framed as flate2's GzEncoder frames it.
/// (sha256 of the whole gzip member, size.) Tags 2.0.7 … 2.2.2 from
/// github.com/zlib-ng/zlib-ng; 2.2.3, 2.2.4, 2.2.5 and 2.3.3 from the sources
/// libz-sys 1.1.21, 1.1.22, 1.1.23 and 1.1.31 bundle. The three eras:
/// 2.2.5 = 2.3.3; 2.2.0 = 2.2.2 = 2.2.3 = 2.2.4; 2.0.7 = 2.1.6 = 2.1.8
/// (SSE4.2 CPU). madler zlib 1.2.13 gives a fourth (ed70da3f…, 86725 bytes).
pub const KNOWN: [(&str, &str, u64); 3] = [
    (
        "2.3.3",
        "f53c3d2d164fdc58ad9ec8c675db5ec3974a65b9322671a2a36d47a550b4f2b8",
        89725,
    ),
    (
        "2.2.4",
        "fc9ec7437384c3c775a9b179dc3b0acb3842d718ea46829055c9b9594f05e403",
        89534,
    ),
    (
        "2.1.6",
        "abd2de3eaae6390857d921dd9b9011aba703d19e240fe1e6fef853ba1269c45f",
        89726,
    ),
];
