//! A guard in front of composefs' split-stream reader.
//!
//! `SplitStreamReader::new` (composefs 0.9.4, `splitstream.rs`: `read_range`)
//! allocates `Vec::with_capacity(end - start)` for every section the header
//! names, and its chunk readers (`for_each_chunk`, `cat`) resize a buffer to
//! each inline length read from the stream, before checking either against
//! the file. In a damaged (insecure, no kernel fs-verity) repository those
//! numbers can be anything, and an allocation of 2^48 bytes aborts the
//! process. So every stream is checked here first, without allocating by any
//! number read from disk: each section inside the file, each inline chunk no
//! longer than the data that follows it, each external reference in range.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use anyhow::{bail, ensure, Context, Result};
use composefs::fsverity::FsVerityHashValue;
use composefs::repository::Repository;
use composefs::splitstream::SplitStreamReader;

const MAGIC: &[u8; 11] = b"SplitStream";
const HEADER_LEN: usize = 32;
/// Four file ranges, content type and stream size.
const INFO_LEN: u64 = 4 * 16 + 8 + 8;

/// A byte range of the stream file, as the header records it.
#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
}

impl Range {
    fn parse(b: &[u8]) -> Range {
        let le = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        Range {
            start: le(&b[0..8]),
            end: le(&b[8..16]),
        }
    }

    fn check(self, what: &str, file_len: u64) -> Result<Range> {
        ensure!(
            self.start <= self.end && self.end <= file_len,
            "the split-stream header is damaged: its {what} section {}..{} lies outside the {file_len}-byte file",
            self.start,
            self.end
        );
        Ok(self)
    }

    fn len(self) -> u64 {
        self.end - self.start
    }
}

/// How much of a stream to check before composefs opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The header's ranges: enough to open it and read its refs and size.
    Header,
    /// The header and every chunk: enough to read its content.
    Content,
}

/// Check a split-stream file: header ranges inside the file and, for
/// [`Check::Content`], every chunk of the compressed stream well-formed.
pub(crate) fn check_file<ID: FsVerityHashValue>(file: &File, check: Check) -> Result<()> {
    let file_len = file.metadata().context("Reading the stream's size")?.len();
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .context("the split-stream is shorter than its header")?;
    // bootc ≤ 1.15 wrote the header fields in another order: info first, magic at 18.
    let info = if &header[0..11] == MAGIC {
        Range::parse(&header[16..32])
    } else if &header[18..29] == MAGIC {
        Range::parse(&header[0..16])
    } else {
        bail!("the split-stream header is damaged: no SplitStream magic");
    };
    let info = info.check("info", file_len)?;
    ensure!(
        info.len() >= INFO_LEN,
        "the split-stream header is damaged: its info section is {} bytes",
        info.len()
    );
    let mut info_bytes = [0u8; INFO_LEN as usize];
    file.read_exact_at(&mut info_bytes, info.start)
        .context("Reading the split-stream info section")?;
    Range::parse(&info_bytes[0..16]).check("stream refs", file_len)?;
    let object_refs = Range::parse(&info_bytes[16..32]).check("object refs", file_len)?;
    let stream = Range::parse(&info_bytes[32..48]).check("data", file_len)?;
    Range::parse(&info_bytes[48..64]).check("named refs", file_len)?;
    let id_len = std::mem::size_of::<ID>() as u64;
    ensure!(
        object_refs.len() % id_len == 0,
        "the split-stream header is damaged: its object refs are not whole digests"
    );
    match check {
        Check::Header => Ok(()),
        Check::Content => check_chunks(file, stream, object_refs.len() / id_len),
    }
}

/// Walk the compressed stream: an i64 per chunk, negative for that many
/// inline bytes (which must follow), else an index into the object refs.
fn check_chunks(file: &File, stream: Range, n_refs: u64) -> Result<()> {
    let section = ReadAt {
        file,
        pos: stream.start,
        end: stream.end,
    };
    let mut data = zstd::Decoder::new(section).context("the split-stream data is damaged")?;
    loop {
        let mut word = [0u8; 8];
        match read_full(&mut data, &mut word)? {
            0 => return Ok(()),
            8 => {}
            _ => bail!("the split-stream data is damaged: it ends inside a chunk header"),
        }
        match i64::from_le_bytes(word) {
            n if n < 0 => {
                let want = n.unsigned_abs();
                let got = io::copy(&mut (&mut data).take(want), &mut io::sink())
                    .context("the split-stream data is damaged")?;
                ensure!(
                    got == want,
                    "the split-stream data is damaged: an inline chunk of {want} bytes has only {got}"
                );
            }
            n => ensure!(
                (n as u64) < n_refs,
                "the split-stream data is damaged: it references object {n} of {n_refs}"
            ),
        }
    }
}

/// Fill `buf` as far as the reader goes; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("the split-stream data is damaged"),
        }
    }
    Ok(n)
}

/// A section of a file as a reader (positional reads: the file is shared).
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// [`Repository::open_stream`], after [`check_file`] on the same object.
pub(crate) fn open_stream<ID: FsVerityHashValue>(
    repo: &Repository<ID>,
    content_id: &str,
    verity: Option<&ID>,
    content_type: Option<u64>,
    check: Check,
) -> Result<SplitStreamReader<ID>> {
    let fd = match verity {
        Some(id) => rustix::fs::openat(
            repo.repo_fd(),
            format!("objects/{}", id.to_object_pathname()),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ),
        None => rustix::fs::openat(
            repo.repo_fd(),
            format!("streams/{content_id}"),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ),
    }
    .with_context(|| format!("Opening stream {content_id}"))?;
    check_file::<ID>(&File::from(fd), check)
        .with_context(|| format!("Reading stream {content_id}"))?;
    repo.open_stream(content_id, verity, content_type)
}

#[cfg(test)]
mod tests;
