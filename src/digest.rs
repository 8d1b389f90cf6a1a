//! sha256 helpers: OCI digests computed while bytes stream through.

use std::io::{self, Read, Write};
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

/// Build an OCI `sha256:` digest from a finished hasher.
pub fn finish(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    // A 64-hex sha256 string always parses as a digest; a failure here would be a bug in sha2.
    Digest::from_str(&format!("sha256:{hex}")).unwrap_or_else(|_| unreachable!("sha256 hex"))
}

/// The sha256 digest of a byte slice.
pub fn sha256(bytes: &[u8]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    finish(hasher)
}

/// The first 12 hex digits of a digest or ID, as podman and docker show
/// them (`sha256:` or any other algorithm prefix dropped).
pub fn short_hex(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// Parse a digest string, requiring the sha256 algorithm (the only one OCI layouts here use).
pub fn parse_sha256(s: &str) -> Result<Digest> {
    let digest = Digest::from_str(s).with_context(|| format!("Invalid digest {s:?}"))?;
    anyhow::ensure!(
        digest.algorithm() == &oci_spec::image::DigestAlgorithm::Sha256,
        "Unsupported digest algorithm in {s:?}: only sha256 is supported"
    );
    Ok(digest)
}

/// A writer that hashes (sha256) and counts every byte it forwards.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Wrap `inner`, continuing a hash over `len` bytes already written elsewhere.
    pub fn resume(inner: W, hasher: Sha256, len: u64) -> Self {
        Self { inner, hasher, len }
    }

    /// The hash state and byte count so far (for [`HashingWriter::resume`]).
    pub fn state(&self) -> (Sha256, u64) {
        (self.hasher.clone(), self.len)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Return the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, finish(self.hasher), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes (sha256) and counts every byte read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The digest and byte count of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (finish(self.hasher), self.len)
    }

    /// Read to the end, discarding the bytes (they are still hashed).
    pub fn drain(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// JSON with sorted keys and no insignificant whitespace: the same document
/// always gives the same bytes (manifests, `index.json`).
pub(crate) fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, canon_json::CanonicalFormatter::new());
    value.serialize(&mut ser)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(short_hex(&format!("sha256:{hex}")), "0123456789ab");
        assert_eq!(short_hex(&format!("sha512:{hex}")), "0123456789ab");
        assert_eq!(short_hex(&hex), "0123456789ab");
        assert_eq!(short_hex("abc"), "abc");
    }

    #[test]
    fn known_digests() {
        // sha256("") and sha256("abc") from FIPS 180-2.
        assert_eq!(
            sha256(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, digest, len) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(len, 3);
        assert_eq!(
            digest.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut r = HashingReader::new(&b"abc"[..]);
        r.drain().unwrap();
        assert_eq!(r.finish().0, digest);
    }

    #[test]
    fn parse_rejects_non_sha256() {
        assert!(parse_sha256("sha256:abcd").is_err());
        assert!(parse_sha256("sha512:00").is_err());
        assert!(parse_sha256(
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
        .is_ok());
    }
}
