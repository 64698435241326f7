//! The error of every step of a report.

use std::path::PathBuf;

/// Why a report could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Polars {
        path: PathBuf,
        source: polars::error::PolarsError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Track(#[from] vaelab_track::TrackError),
    #[error("{path}: {reason}")]
    Table { path: PathBuf, reason: String },
    #[error("figure {figure}: {reason}")]
    Draw { figure: String, reason: String },
    #[error("stopped before the report was finished (after {drawn} figures)")]
    Stopped { drawn: usize },
}
