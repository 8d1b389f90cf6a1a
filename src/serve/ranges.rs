//! `Range: bytes=…` on blobs (RFC 9110 §14): one range is answered 206 with
//! its `Content-Range`, an unsatisfiable one 416, anything else (several
//! ranges, another unit, bad syntax) with the whole blob, as the RFC allows.
//! skopeo asks for `bytes=N-` when it resumes a response that was cut.

use std::io::{self, Write};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// What to send of a blob of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// All of it (200).
    Whole,
    /// Bytes `first..=last` (206).
    Part { first: u64, last: u64 },
    /// Nothing: the range starts past the end (416).
    Unsatisfiable,
}

impl Answer {
    /// The answer to the request's `Range` header for a blob of `len` bytes.
    pub(super) fn for_request(headers: &HeaderMap, len: u64) -> Self {
        let mut values = headers.get_all(header::RANGE).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().map_or(Answer::Whole, |v| parse(v, len)),
            _ => Answer::Whole,
        }
    }

    /// The bytes to send, as `(first, count)`.
    pub(super) fn span(self, len: u64) -> (u64, u64) {
        match self {
            Answer::Part { first, last } => (first, last - first + 1),
            Answer::Whole | Answer::Unsatisfiable => (0, len),
        }
    }

    /// Status and range headers on a response whose body is already [`Answer::span`].
    pub(super) fn apply(self, r: &mut Response, len: u64) {
        let h = r.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let content_range = match self {
            Answer::Whole => return,
            Answer::Part { first, last } => format!("bytes {first}-{last}/{len}"),
            Answer::Unsatisfiable => format!("bytes */{len}"),
        };
        if let Ok(v) = HeaderValue::from_str(&content_range) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *r.status_mut() = match self {
            Answer::Part { .. } => StatusCode::PARTIAL_CONTENT,
            _ => StatusCode::RANGE_NOT_SATISFIABLE,
        };
    }
}

/// A response sink that can send a part of a blob without the whole
/// blob's proof: the part ends before the blob does, and its client proves
/// the blob it assembles.
pub(super) trait Release: Write {
    /// Send everything written so far.
    fn release_part(&mut self) -> io::Result<()>;
}

impl Release for Vec<u8> {
    fn release_part(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The error that stops a rebuild once a part ending before the blob's
/// end is sent: nothing after it is wanted.
#[derive(Debug, thiserror::Error)]
#[error("the part asked for is sent")]
pub(super) struct PartSent;

/// A writer passing on `count` bytes after the first `skip` ones, and
/// dropping the rest (which the rebuild still hashes, to prove the blob) —
/// or, for a part that ends before the blob (`stop`), releasing what it
/// passed and stopping the rebuild with [`PartSent`].
pub(super) struct Window<W> {
    inner: W,
    skip: u64,
    count: u64,
    stop: bool,
    sent: bool,
}

impl<W: Release> Window<W> {
    pub(super) fn new(inner: W, skip: u64, count: u64, stop: bool) -> Self {
        Window {
            inner,
            skip,
            count,
            stop,
            sent: false,
        }
    }

    /// The sink, once the rebuild went to the end.
    pub(super) fn into_inner(self) -> io::Result<W> {
        match self.sent {
            true => Err(io::Error::other(PartSent)),
            false => Ok(self.inner),
        }
    }
}

impl<W: Release> Write for Window<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.sent {
            return Err(io::Error::other(PartSent));
        }
        let skipped = self.skip.min(buf.len() as u64) as usize;
        self.skip -= skipped as u64;
        let rest = &buf[skipped..];
        let passed = self.count.min(rest.len() as u64) as usize;
        if passed > 0 {
            self.inner.write_all(&rest[..passed])?;
            self.count -= passed as u64;
            if self.count == 0 && self.stop {
                self.inner.release_part()?;
                self.sent = true;
                return Err(io::Error::other(PartSent));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One `bytes=` range; the end is clamped to the blob.
fn parse(value: &str, len: u64) -> Answer {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return Answer::Whole;
    };
    if spec.contains(',') {
        return Answer::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Answer::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (number(a), number(b), a.is_empty()) {
        // `-n`: the last n bytes.
        (None, Some(n), true) if n > 0 && len > 0 => Answer::Part {
            first: len.saturating_sub(n),
            last: len - 1,
        },
        (None, Some(_), true) => Answer::Unsatisfiable,
        (Some(first), None, _) if b.is_empty() => part(first, len.saturating_sub(1), len),
        (Some(first), Some(last), _) if last >= first => {
            part(first, last.min(len.saturating_sub(1)), len)
        }
        _ => Answer::Whole,
    }
}

fn part(first: u64, last: u64, len: u64) -> Answer {
    if first >= len {
        Answer::Unsatisfiable
    } else {
        Answer::Part { first, last }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_says() {
        let len = 1000;
        let part = |first, last| Answer::Part { first, last };
        for (value, want) in [
            ("bytes=0-99", part(0, 99)),
            ("bytes=500-", part(500, 999)),
            ("BYTES=500-", part(500, 999)),
            ("Bytes=0-0", part(0, 0)),
            ("bytes=999-", part(999, 999)),
            ("bytes=-100", part(900, 999)),
            ("bytes=-5000", part(0, 999)),
            ("bytes=900-5000", part(900, 999)),
            (" bytes=10-20 ", part(10, 20)),
            ("bytes=1000-", Answer::Unsatisfiable),
            ("bytes=2000-3000", Answer::Unsatisfiable),
            ("bytes=-0", Answer::Unsatisfiable),
            ("bytes=0-1,5-6", Answer::Whole),
            ("items=0-1", Answer::Whole),
            ("bytes=20-10", Answer::Whole),
            ("bytes=a-", Answer::Whole),
            ("bytes=+1-", Answer::Whole),
            ("bytes=-", Answer::Whole),
            ("bytes=18446744073709551616-", Answer::Whole),
        ] {
            assert_eq!(parse(value, len), want, "{value}");
        }
        assert_eq!(parse("bytes=0-", 0), Answer::Unsatisfiable);
        assert_eq!(parse("bytes=-1", 0), Answer::Unsatisfiable);
    }

    #[test]
    fn several_range_headers_get_the_whole_blob() {
        let mut h = HeaderMap::new();
        h.append(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert_eq!(Answer::for_request(&h, 10), part_of(0, 1));
        h.append(header::RANGE, HeaderValue::from_static("bytes=2-3"));
        assert_eq!(Answer::for_request(&h, 10), Answer::Whole);
        assert_eq!(Answer::for_request(&HeaderMap::new(), 10), Answer::Whole);
    }

    #[test]
    fn window_passes_only_its_bytes() {
        let data: Vec<u8> = (0..100u8).collect();
        for (skip, count) in [(0, 100), (10, 20), (99, 1), (0, 0), (50, 500)] {
            let mut w = Window::new(Vec::new(), skip, count, false);
            for piece in data.chunks(7) {
                w.write_all(piece).unwrap();
            }
            let end = (skip + count).min(100) as usize;
            assert_eq!(
                w.into_inner().unwrap(),
                &data[skip as usize..end],
                "{skip} {count}"
            );
        }
    }

    /// A sink that records what it was asked to release.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        released: Option<usize>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Release for Recorder {
        fn release_part(&mut self) -> io::Result<()> {
            self.released = Some(self.bytes.len());
            Ok(())
        }
    }

    #[test]
    fn a_part_before_the_end_stops_the_rebuild_once_sent() {
        let data: Vec<u8> = (0..100u8).collect();
        for (skip, count) in [(0, 1), (10, 20), (93, 6)] {
            let mut w = Window::new(Recorder::default(), skip, count, true);
            let mut written = 0;
            let err = data
                .chunks(7)
                .find_map(|piece| match w.write_all(piece) {
                    Ok(()) => {
                        written += piece.len();
                        None
                    }
                    Err(e) => Some(e),
                })
                .expect("stopped");
            assert!(err.get_ref().is_some_and(|e| e.is::<PartSent>()), "{err}");
            // It stopped at the piece holding the part's last byte.
            assert!(written < (skip + count) as usize, "{skip} {count}");
            assert!(w.write_all(&[0]).is_err(), "stays stopped");
            assert!(w.into_inner().is_err());
        }
        let mut w = Window::new(Recorder::default(), 10, 20, true);
        let _ = w.write_all(&data);
        let Window { inner, .. } = w;
        assert_eq!(inner.bytes, &data[10..30]);
        assert_eq!(inner.released, Some(20));
    }

    fn part_of(first: u64, last: u64) -> Answer {
        Answer::Part { first, last }
    }
}
