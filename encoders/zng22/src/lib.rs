//! zlib-ng 2.2.0 – 2.2.4 at level 6, bit-exact: the zlib-ng that Fedora 41
//! and CentOS Stream / RHEL 10 ship as zlib-ng-compat (2.2.3), so the libz
//! rpm-ostree / ostree-ext compress their bootc base images with there.
//!
//! zlib-ng's level-6 output comes in three eras (measured against C builds,
//! `encoders/src/zlibng.rs`): 2.0–2.1, 2.2.0–2.2.4, and 2.2.5 on. zlib-rs
//! (a Rust port of zlib-ng, Zlib license) 0.4.2 writes exactly the
//! 2.2.0–2.2.4 era's bytes; zlib-rs 0.6 the newest. zlib-rs 0.4 can be
//! streamed call by call (which zlib-ng's output depends on) only through
//! an `unsafe fn` (`DeflateStream::from_stream_mut`), so this small crate is
//! the one place in cfs-export that allows unsafe code: one block per call,
//! each with its safety argument. Everything else (flate2's call pattern,
//! the gzip framing, tar-rs's writes) is `cfs_encoders::zlibng`.

#![allow(unsafe_code)]

use std::io::{self, Write};

use cfs_encoders::zlibng::{DeflateCalls, ZlibNg6Writer};
use zlib_rs::c_api::z_stream;
use zlib_rs::deflate::{self, DeflateConfig, DeflateStream, Method, Strategy};
use zlib_rs::{DeflateFlush, ReturnCode};

/// The zlib-ng releases whose level-6 output [`Deflate22`] reproduces.
pub const ZLIB_NG_VERSIONS: &str = "2.2.0–2.2.4";

/// zlib-ng 2.2.0–2.2.4 level 6 in flate2's gzip framing, fed as ostree-ext's
/// tar-rs feeds it.
pub fn writer<W: Write>(inner: W) -> io::Result<ZlibNg6Writer<W, Deflate22>> {
    Ok(ZlibNg6Writer::with_engine(inner, Deflate22::new(6)?))
}

/// A raw deflate (window bits 15, memLevel 8, default strategy) of zlib-rs
/// 0.4.2, driven call by call.
pub struct Deflate22 {
    /// Boxed: zlib-rs keeps a pointer back to it in its state.
    strm: Box<z_stream>,
}

impl Deflate22 {
    /// A raw deflate at `level`.
    pub fn new(level: i32) -> io::Result<Self> {
        let mut strm = Box::<z_stream>::default();
        let config = DeflateConfig {
            level,
            method: Method::Deflated,
            window_bits: -15,
            mem_level: 8,
            strategy: Strategy::Default,
        };
        match deflate::init(&mut strm, config) {
            ReturnCode::Ok => Ok(Deflate22 { strm }),
            rc => Err(io::Error::other(format!(
                "zlib-rs 0.4 deflateInit2: {rc:?}"
            ))),
        }
    }

    /// The initialised stream.
    fn stream(&mut self) -> io::Result<&mut DeflateStream<'_>> {
        let strm: *mut z_stream = &mut *self.strm;
        // SAFETY: `strm` points to the boxed z_stream that `init` set up and
        // that lives as long as `self`; the returned borrow is tied to
        // `&mut self` by the callers, which use it within one call only.
        // `from_stream_mut` checks the state and returns None when it is not
        // a deflate stream.
        unsafe { DeflateStream::from_stream_mut(strm) }
            .ok_or_else(|| io::Error::other("zlib-rs 0.4: the deflate stream is not initialised"))
    }
}

impl DeflateCalls for Deflate22 {
    fn call(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        finish: bool,
    ) -> io::Result<(usize, usize, bool)> {
        // A call takes at most u32::MAX bytes each way, as a C zlib's does.
        let input = &input[..input.len().min(u32::MAX as usize)];
        let len = out.len().min(u32::MAX as usize);
        let out = &mut out[..len];
        self.strm.next_in = input.as_ptr();
        self.strm.avail_in = input.len() as u32;
        self.strm.next_out = out.as_mut_ptr();
        self.strm.avail_out = out.len() as u32;
        let flush = match finish {
            true => DeflateFlush::Finish,
            false => DeflateFlush::NoFlush,
        };
        // `input` and `out` outlive this call; the pointers are cleared after it.
        let rc = deflate::deflate(self.stream()?, flush);
        let taken = input.len() - self.strm.avail_in as usize;
        let made = out.len() - self.strm.avail_out as usize;
        self.strm.next_in = std::ptr::null();
        self.strm.avail_in = 0;
        self.strm.next_out = std::ptr::null_mut();
        self.strm.avail_out = 0;
        match rc {
            ReturnCode::Ok | ReturnCode::BufError => Ok((taken, made, false)),
            ReturnCode::StreamEnd => Ok((taken, made, true)),
            rc => Err(io::Error::other(format!("zlib-rs 0.4 deflate: {rc:?}"))),
        }
    }
}

impl Drop for Deflate22 {
    fn drop(&mut self) {
        if let Ok(stream) = self.stream() {
            let _ = deflate::end(stream);
        }
    }
}

#[cfg(test)]
mod tests;
