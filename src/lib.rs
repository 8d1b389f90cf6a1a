//! Export container images from a composefs repository to bit-exact OCI images.
//!
//! Each layer is rebuilt from its split-stream and proven against the config's
//! diff_id while it streams; the original config bytes are kept, so the image
//! ID (config digest) survives the trip.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod cli;
pub mod compress;
pub mod digest;
pub mod export;
pub mod image;
pub mod import;
pub mod layer;
pub mod layout;
pub mod repo;
pub mod transport;

/// A mistake in how the tool was called (exit code 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
