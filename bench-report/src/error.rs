//! What can go wrong, typed.

use std::path::PathBuf;

/// A failure of `bench-report`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A document is not the JSON its name says.
    #[error("{} is not the expected JSON: {source}", path.display())]
    Parse {
        /// Which.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The page's generated part cannot be found: its two marker lines
    /// ([`crate::report::BEGIN`], [`crate::report::END`]) must each appear
    /// once, in that order, so that nothing written by hand is replaced.
    #[error("{0}; the generated part must sit between the lines `{begin}` and `{end}`, each once", begin = crate::report::BEGIN, end = crate::report::END)]
    Markers(String),
    /// A benchmark or tool failed.
    #[error("{what}: {why}")]
    Run {
        /// Which step.
        what: String,
        /// Why (never a URL with its password).
        why: String,
    },
}

impl Error {
    /// A failed step.
    pub fn run(what: impl Into<String>, why: impl std::fmt::Display) -> Self {
        Self::Run {
            what: what.into(),
            why: why.to_string(),
        }
    }
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
