//! Stage 2, compression: takes a layer's exact tar bytes and gives a blob in
//! the asked kind (none, gzip, zstd), or the original compressed bytes found
//! again ([`reproduce`], whose search feeds every candidate from one
//! rebuild: `fanout`); our parallel gzip (`pgzip`) and where a rebuild
//! can restart inside it ([`pgzip_restart`]); the remembered blobs
//! ([`blob_index`]). The bit-exact ports of other encoders live in the
//! `cfs-encoders` crate.
//!
//! Layer compression: the kinds and levels we write, and their media types.

pub mod blob_index;
mod fanout;
pub(crate) mod pgzip;
pub mod pgzip_restart;
pub mod reproduce;

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use oci_spec::image::MediaType;

use crate::compress::pgzip::ParGzEncoder;
use crate::compress::reproduce::{ReproWriter, Reproducer};

/// Default gzip level (what `gzip`, `pigz` and skopeo use).
pub const GZIP_DEFAULT_LEVEL: u32 = 6;
/// Default zstd level (what `zstd` and containers/image use).
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// A concrete compression for one layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(tag = "kind", content = "level", rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed tar (blob digest = diff_id); written `none`.
    #[serde(rename = "none")]
    Uncompressed,
    /// gzip at the given level (1–9).
    Gzip(u32),
    /// zstd at the given level (1–19).
    Zstd(i32),
    /// gzip that reproduces the original blob, byte for byte, with this encoder.
    #[serde(rename = "gzip-reproduced")]
    Reproduced(Reproducer),
}

/// What the user asked for: a fixed compression, or each layer's original kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionChoice {
    /// Restore the kind the original manifest had for each layer (default levels).
    Original,
    /// The same compression for every layer.
    Fixed(Compression),
}

/// Errors from parsing a `--compression` value.
#[derive(Debug, thiserror::Error)]
#[error("invalid compression {0:?}: expected none, gzip[:1-9], zstd[:1-19] or original")]
pub struct ParseCompressionError(String);

impl FromStr for CompressionChoice {
    type Err = ParseCompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCompressionError(s.to_string());
        let (kind, level) = match s.split_once(':') {
            Some((k, l)) => (k, Some(l)),
            None => (s, None),
        };
        let parse_level = |range: std::ops::RangeInclusive<i64>| -> Result<Option<i64>, _> {
            level
                .map(|l| {
                    l.parse::<i64>()
                        .ok()
                        .filter(|v| range.contains(v))
                        .ok_or_else(err)
                })
                .transpose()
        };
        Ok(match kind {
            "original" if level.is_none() => CompressionChoice::Original,
            "none" if level.is_none() => CompressionChoice::Fixed(Compression::Uncompressed),
            "gzip" => CompressionChoice::Fixed(Compression::Gzip(
                parse_level(1..=9)?.map_or(GZIP_DEFAULT_LEVEL, |v| v as u32),
            )),
            "zstd" => CompressionChoice::Fixed(Compression::Zstd(
                parse_level(1..=19)?.map_or(ZSTD_DEFAULT_LEVEL, |v| v as i32),
            )),
            _ => return Err(err()),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::Uncompressed => write!(f, "none"),
            Compression::Gzip(l) => write!(f, "gzip:{l}"),
            Compression::Zstd(l) => write!(f, "zstd:{l}"),
            Compression::Reproduced(r) => write!(f, "gzip:{}", r.id()),
        }
    }
}

impl Compression {
    /// The OCI layer media type for blobs of this compression.
    pub fn media_type(&self) -> MediaType {
        match self {
            Compression::Uncompressed => MediaType::ImageLayer,
            Compression::Gzip(_) | Compression::Reproduced(_) => MediaType::ImageLayerGzip,
            Compression::Zstd(_) => MediaType::ImageLayerZstd,
        }
    }

    /// The compression kind (default level) a layer media type implies, OCI or Docker.
    ///
    /// `None` for media types that are not tar layers.
    pub fn from_media_type(media_type: &MediaType) -> Option<Compression> {
        let s = media_type.to_string();
        let tar_layer = s.starts_with("application/vnd.oci.image.layer.")
            || s.starts_with("application/vnd.docker.image.rootfs.");
        if !tar_layer {
            return None;
        }
        Some(if s.ends_with("gzip") {
            Compression::Gzip(GZIP_DEFAULT_LEVEL)
        } else if s.ends_with("zstd") {
            Compression::Zstd(ZSTD_DEFAULT_LEVEL)
        } else {
            Compression::Uncompressed
        })
    }

    /// Wrap `inner` in an encoder for this compression.
    ///
    /// Output depends only on the input bytes and the level: gzip headers carry
    /// mtime 0 and no file name.
    pub fn encoder<W: Write>(&self, inner: W) -> io::Result<Encoder<W>> {
        self.encoder_on(inner, crate::cores())
    }

    /// [`Compression::encoder`] on `workers` threads (at least one); the
    /// bytes are the same for any count.
    pub fn encoder_on<W: Write>(&self, inner: W, workers: usize) -> io::Result<Encoder<W>> {
        let workers = workers.max(1);
        Ok(match *self {
            Compression::Uncompressed => Encoder::None(inner),
            // Blocks are cut by size, not by worker count: same bytes for any count.
            Compression::Gzip(level) => Encoder::Gzip(ParGzEncoder::new(inner, level, workers)?),
            Compression::Zstd(level) => {
                let mut e = zstd::Encoder::new(inner, level)?;
                // libzstd's workers split the input into jobs by size, not by
                // worker count, so the output is the same for any count >= 1.
                e.multithread(workers as u32)?;
                Encoder::Zstd(e)
            }
            Compression::Reproduced(r) => Encoder::Reproduced(r.writer(inner, workers)?),
        })
    }
}

/// A streaming encoder for one of the [`Compression`] kinds.
pub enum Encoder<W: Write> {
    /// Pass-through.
    None(W),
    /// gzip, deflated in parallel blocks.
    Gzip(ParGzEncoder<W>),
    /// zstd.
    Zstd(zstd::Encoder<'static, W>),
    /// The original blob's encoder.
    Reproduced(ReproWriter<W>),
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoder::None(_) => "Encoder::None",
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Zstd(_) => "Encoder::Zstd",
            Encoder::Reproduced(_) => "Encoder::Reproduced",
        })
    }
}

impl<W: Write> Encoder<W> {
    /// Flush the compressed trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Reproduced(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Reproduced(e) => e.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.write_all(buf),
            Encoder::Gzip(e) => e.write_all(buf),
            Encoder::Zstd(e) => e.write_all(buf),
            Encoder::Reproduced(e) => e.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Reproduced(e) => e.flush(),
        }
    }
}

/// Wrap a reader of a layer blob in the decoder its media type calls for.
pub fn decoder<'a, R: io::BufRead + 'a>(
    media_type: &MediaType,
    reader: R,
) -> io::Result<Box<dyn io::Read + 'a>> {
    Ok(match Compression::from_media_type(media_type) {
        Some(Compression::Uncompressed) => Box::new(reader),
        // Multi-member gzip and multi-frame zstd (zstd:chunked) both decode fully.
        Some(Compression::Gzip(_) | Compression::Reproduced(_)) => {
            Box::new(flate2::bufread::MultiGzDecoder::new(reader))
        }
        Some(Compression::Zstd(_)) => Box::new(zstd::Decoder::with_buffer(reader)?),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{media_type} is not a tar layer media type"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn parse_choices() {
        use Compression::*;
        let table: &[(&str, Option<CompressionChoice>)] = &[
            ("original", Some(CompressionChoice::Original)),
            ("none", Some(CompressionChoice::Fixed(Uncompressed))),
            ("gzip", Some(CompressionChoice::Fixed(Gzip(6)))),
            ("gzip:1", Some(CompressionChoice::Fixed(Gzip(1)))),
            ("gzip:9", Some(CompressionChoice::Fixed(Gzip(9)))),
            ("zstd", Some(CompressionChoice::Fixed(Zstd(3)))),
            ("zstd:19", Some(CompressionChoice::Fixed(Zstd(19)))),
            ("gzip:0", Option::None),
            ("gzip:10", Option::None),
            ("zstd:20", Option::None),
            ("zstd:-1", Option::None),
            ("none:1", Option::None),
            ("original:3", Option::None),
            ("lz4", Option::None),
            ("", Option::None),
            ("gzip:", Option::None),
        ];
        for (input, want) in table {
            assert_eq!(input.parse::<CompressionChoice>().ok(), *want, "{input}");
        }
    }

    #[test]
    fn media_types_round_trip() {
        for c in [
            Compression::Uncompressed,
            Compression::Gzip(6),
            Compression::Zstd(3),
        ] {
            assert_eq!(Compression::from_media_type(&c.media_type()), Some(c));
        }
        let docker = MediaType::Other("application/vnd.docker.image.rootfs.diff.tar.gzip".into());
        assert_eq!(
            Compression::from_media_type(&docker),
            Some(Compression::Gzip(6))
        );
        assert_eq!(Compression::from_media_type(&MediaType::ImageConfig), None);
    }

    #[test]
    fn zstd_output_independent_of_workers() {
        let data: Vec<u8> = (0..12_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 & 0x3f)
            .collect();
        let with = |workers: u32| {
            let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&data).unwrap();
            e.finish().unwrap()
        };
        let one = with(1);
        assert_eq!(one, with(2));
        assert_eq!(one, with(7));
    }

    #[test]
    fn encode_decode_deterministic() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in [
            Compression::Uncompressed,
            Compression::Gzip(6),
            Compression::Zstd(3),
        ] {
            let encode = || {
                let mut e = c.encoder(Vec::new()).unwrap();
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            };
            let a = encode();
            assert_eq!(a, encode(), "{c} output must be deterministic");
            let mut out = Vec::new();
            decoder(&c.media_type(), &a[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }
}
