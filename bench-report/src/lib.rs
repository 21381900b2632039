#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod docs;
pub mod error;
pub mod report;
pub mod run;

use std::path::PathBuf;

pub use error::{Error, Result};

/// The repository root (this crate's parent directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}
