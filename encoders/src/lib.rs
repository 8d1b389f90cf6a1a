//! Encoders that reproduce, byte for byte, the compressed layers real
//! container tools write, so an exported image keeps its original blob
//! digests. Each module names the BSD- or zlib-licensed code whose algorithm
//! it follows.
//!
//! Every encoder is a streaming [`std::io::Write`] with a `finish` that writes
//! the trailer and returns the inner writer; output depends only on the input.

pub mod gnugzip;
pub mod gostd;
pub mod gzip_header;
pub mod klauspost;
mod member;
pub mod zlibng;
