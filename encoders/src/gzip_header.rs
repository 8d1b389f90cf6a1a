//! gzip framing variants around one deflate body, hashed without compressing
//! again.
//!
//! Writers that deflate the same way differ only in the 10-byte gzip header
//! (RFC 1952). Over a zlib body: flate2, Go and Python's `GzipFile` write OS
//! `ff`; zlib's own gzip framing (`deflateInit2` with window bits 31, so
//! Python ≥ 3.11 `gzip.compress`, pigz) OS `03`; Java's `GZIPOutputStream`
//! OS `00` (JDK ≤ 15) or `ff` (JDK ≥ 16). XFL is `02` after the slowest
//! level, `04` after the fastest, `00` otherwise. GNU `gzip -n` writes OS `03`
//! too, but over its own deflate, whose body differs from zlib's on most
//! inputs past a few KiB.
//!
//! [`HeaderHashes`] takes the deflate body once and keeps one sha256 per
//! header variant; [`HeaderHashes::finish`] appends the shared CRC-32 + ISIZE
//! trailer to each and yields every variant's whole-member digest and size.
//! [`BodyTee`] does the same for a whole member written by one encoder.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// The fields of a gzip member header real tools vary (FLG is 0: no name,
/// comment, extra field or header CRC, as every `-n`/no-name writer emits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GzipHeader {
    /// MTIME, little-endian in the header (0 for reproducible writers).
    pub mtime: u32,
    /// XFL: 2 = slowest level, 4 = fastest, 0 otherwise.
    pub xfl: u8,
    /// OS: 0 = FAT (old Java), 3 = Unix (GNU gzip), 255 = unknown.
    pub os: u8,
}

impl GzipHeader {
    /// flate2, Go `compress/gzip` (level 6), Python `gzip` with mtime 0, Java ≥ 16.
    pub const UNKNOWN_OS: GzipHeader = GzipHeader::new(0, 0, 0xff);
    /// GNU `gzip -n` at level 6 (`gzip -n -1` has XFL 4, `-9` XFL 2).
    pub const GNU_GZIP: GzipHeader = GzipHeader::new(0, 0, 3);
    /// Java `GZIPOutputStream` on JDK ≤ 15.
    pub const JAVA_OLD: GzipHeader = GzipHeader::new(0, 0, 0);

    /// A header with no flags.
    pub const fn new(mtime: u32, xfl: u8, os: u8) -> Self {
        GzipHeader { mtime, xfl, os }
    }

    /// Every no-flag, mtime-0 header: OS 00/03/ff × XFL 0/2/4.
    pub fn common() -> Vec<GzipHeader> {
        let mut all = Vec::new();
        for os in [0xff, 3, 0] {
            for xfl in [0, 2, 4] {
                all.push(GzipHeader::new(0, xfl, os));
            }
        }
        all
    }

    /// The 10 header bytes.
    pub fn bytes(self) -> [u8; 10] {
        let m = self.mtime.to_le_bytes();
        [0x1f, 0x8b, 8, 0, m[0], m[1], m[2], m[3], self.xfl, self.os]
    }

    /// A stable name, e.g. `os03-xfl0` (with `-mtime…` when not zero).
    pub fn id(self) -> String {
        let base = format!("os{:02x}-xfl{}", self.os, self.xfl);
        match self.mtime {
            0 => base,
            t => format!("{base}-mtime{t:08x}"),
        }
    }
}

/// One variant's whole gzip member: its sha256 and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantDigest {
    /// The header this member starts with.
    pub header: GzipHeader,
    /// sha256 of header + body + trailer.
    pub sha256: [u8; 32],
    /// Header + body + trailer length.
    pub size: u64,
}

/// Hashes one raw deflate body under several gzip headers at once.
///
/// Write the body (raw deflate, no framing) into it; each variant's hasher
/// was primed with its own header, and all see the same body bytes.
pub struct HeaderHashes {
    states: Vec<(GzipHeader, Sha256)>,
    body: u64,
}

impl HeaderHashes {
    /// Hashers for `headers`, each primed with its 10 bytes.
    pub fn new(headers: &[GzipHeader]) -> Self {
        let states = headers
            .iter()
            .map(|h| {
                let mut s = Sha256::new();
                s.update(h.bytes());
                (*h, s)
            })
            .collect();
        HeaderHashes { states, body: 0 }
    }

    /// Deflate body bytes seen so far.
    pub fn body_len(&self) -> u64 {
        self.body
    }

    /// Close every variant with the trailer: CRC-32 and ISIZE (input length
    /// mod 2^32) of the uncompressed data, both little-endian.
    pub fn finish(self, crc32: u32, input_len: u64) -> Vec<VariantDigest> {
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc32.to_le_bytes());
        trailer[4..].copy_from_slice(&(input_len as u32).to_le_bytes());
        let size = 10 + self.body + 8;
        self.states
            .into_iter()
            .map(|(header, mut s)| {
                s.update(trailer);
                VariantDigest {
                    header,
                    sha256: s.finalize().into(),
                    size,
                }
            })
            .collect()
    }
}

impl Write for HeaderHashes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (_, s) in &mut self.states {
            s.update(buf);
        }
        self.body += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Splits a gzip member written through it (header, body, trailer) so the
/// body also reaches a [`HeaderHashes`]: one encoder's output, framed by
/// `inner` as written, is hashed under every other header too.
pub struct BodyTee<W> {
    inner: W,
    hashes: HeaderHashes,
    /// Bytes seen of the 10-byte header still to skip.
    header_left: usize,
    /// The last 8 bytes seen: the trailer once the member ends.
    tail: Vec<u8>,
}

impl<W: Write> BodyTee<W> {
    /// Tee a member written to `inner` into hashers for `headers`. The
    /// member's own header must carry no optional fields (10 bytes).
    pub fn new(inner: W, headers: &[GzipHeader]) -> Self {
        BodyTee {
            inner,
            hashes: HeaderHashes::new(headers),
            header_left: 10,
            tail: Vec::with_capacity(16),
        }
    }

    /// The inner writer and every variant's digest; the trailer is the one
    /// the member ended with.
    pub fn finish(self) -> io::Result<(W, Vec<VariantDigest>)> {
        if self.header_left > 0 || self.tail.len() < 8 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "gzip member shorter than its header and trailer",
            ));
        }
        let mut crc = [0u8; 4];
        let mut isize = [0u8; 4];
        crc.copy_from_slice(&self.tail[..4]);
        isize.copy_from_slice(&self.tail[4..8]);
        let digests = self.hashes.finish(
            u32::from_le_bytes(crc),
            u64::from(u32::from_le_bytes(isize)),
        );
        Ok((self.inner, digests))
    }
}

impl<W: Write> Write for BodyTee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut rest = &buf[..n];
        let skip = self.header_left.min(rest.len());
        self.header_left -= skip;
        rest = &rest[skip..];
        // The last 8 bytes may be the trailer: hold them back from the body.
        self.tail.extend_from_slice(rest);
        if self.tail.len() > 8 {
            let body = self.tail.len() - 8;
            self.hashes.write_all(&self.tail[..body])?;
            self.tail.drain(..body);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Under `CI=true` a missing tool fails the test; elsewhere it is skipped.
    fn tool(name: &str) -> bool {
        let found = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(found || !ci, "{name} is missing under CI=true");
        found
    }

    fn run(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&feed));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "{cmd:?} failed");
        out.stdout
    }

    fn inputs() -> Vec<Vec<u8>> {
        let mut text = Vec::new();
        let mut x = 0x2545_f491_u32;
        while text.len() < 200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let word: &[u8] = match x % 5 {
                0 => b"usr/share/doc ",
                1 => b"\0\0\0\0\0\0\0\0",
                2 => b"header ",
                _ => &[(x >> 8) as u8, (x >> 16) as u8, b' '],
            };
            text.extend_from_slice(word);
        }
        vec![Vec::new(), b"a".to_vec(), text[..70_000].to_vec(), text]
    }

    /// The digest of `member` as a variant, by framing its body with `h`.
    fn variants_of(member: &[u8], headers: &[GzipHeader]) -> Vec<VariantDigest> {
        let mut tee = BodyTee::new(Vec::new(), headers);
        for piece in member.chunks(777) {
            tee.write_all(piece).unwrap();
        }
        let (inner, digests) = tee.finish().unwrap();
        assert_eq!(inner, member);
        digests
    }

    fn digest_of(member: &[u8]) -> [u8; 32] {
        Sha256::digest(member).into()
    }

    const PY_GZIPFILE: &str = "import gzip,io,sys; b=io.BytesIO(); f=gzip.GzipFile(fileobj=b, mode='wb', compresslevel=6, mtime=0); f.write(sys.stdin.buffer.read()); f.close(); sys.stdout.buffer.write(b.getvalue())";
    const PY_COMPRESS: &str =
        "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 6, mtime=0))";

    /// Python's `GzipFile` (its own header, OS ff) and `gzip.compress` (zlib's
    /// header since 3.11, OS 03) wrap the same zlib-6 body: each member is
    /// found among the other's variants, and the digest under a member's own
    /// header is the real file's.
    #[test]
    fn variants_equal_python_gzipfile_and_compress() {
        if !tool("python3") {
            return;
        }
        let all = GzipHeader::common();
        for input in inputs() {
            let file = run(Command::new("python3").args(["-c", PY_GZIPFILE]), &input);
            assert_eq!(
                &file[..10],
                &GzipHeader::UNKNOWN_OS.bytes(),
                "GzipFile's header"
            );
            let comp = run(Command::new("python3").args(["-c", PY_COMPRESS]), &input);
            assert_eq!(
                &comp[..10],
                &GzipHeader::GNU_GZIP.bytes(),
                "zlib's gzip header"
            );
            for (member, other) in [(&file, &comp), (&comp, &file)] {
                let found = variants_of(member, &all);
                assert_eq!(found.len(), all.len());
                let want = (digest_of(other), other.len() as u64);
                assert!(
                    found.iter().any(|v| (v.sha256, v.size) == want),
                    "{} bytes: the other member is a variant",
                    input.len()
                );
                let own = found.iter().find(|v| v.header.bytes() == member[..10]);
                assert_eq!(own.map(|v| v.sha256), Some(digest_of(member)));
            }
        }
    }

    /// GNU `gzip -n -6` (its own deflate, not zlib's): every variant of its
    /// member is the real file with bytes 8 and 9 replaced.
    #[test]
    fn variants_equal_gnu_gzip_with_patched_header() {
        if !tool("gzip") {
            return;
        }
        let all = GzipHeader::common();
        for input in inputs() {
            let gnu = run(Command::new("gzip").args(["-n", "-6", "-c"]), &input);
            assert_eq!(&gnu[..10], &GzipHeader::GNU_GZIP.bytes(), "gzip's header");
            for v in variants_of(&gnu, &all) {
                let mut patched = gnu.clone();
                patched[8] = v.header.xfl;
                patched[9] = v.header.os;
                assert_eq!(v.sha256, digest_of(&patched), "{}", v.header.id());
                assert_eq!(v.size, gnu.len() as u64);
            }
        }
    }

    /// GNU gzip at levels 1 and 9 writes XFL 4 and 2.
    #[test]
    fn xfl_follows_the_level() {
        if !tool("gzip") {
            return;
        }
        let input = &inputs()[2];
        for (level, xfl) in [("1", 4u8), ("9", 2)] {
            let gnu = run(
                Command::new("gzip").args(["-n", &format!("-{level}"), "-c"]),
                input,
            );
            assert_eq!(gnu[8], xfl, "gzip -{level}");
            let found = variants_of(&gnu, &[GzipHeader::new(0, xfl, 0xff)]);
            let mut expect = gnu.clone();
            expect[9] = 0xff;
            assert_eq!(found[0].sha256, digest_of(&expect));
        }
    }

    #[test]
    fn header_bytes_and_ids() {
        assert_eq!(
            GzipHeader::UNKNOWN_OS.bytes(),
            [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
        );
        assert_eq!(
            GzipHeader::new(0x886e_0900, 0, 0xff).bytes()[4..8],
            [0, 9, 0x6e, 0x88]
        );
        assert_eq!(GzipHeader::GNU_GZIP.id(), "os03-xfl0");
        assert_eq!(GzipHeader::common().len(), 9);
    }

    #[test]
    fn truncated_member_is_an_error() {
        let mut tee = BodyTee::new(Vec::new(), &[GzipHeader::UNKNOWN_OS]);
        tee.write_all(&[0x1f, 0x8b, 8]).unwrap();
        assert!(tee.finish().is_err());
    }
}
