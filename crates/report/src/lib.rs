//! The figures of a sweep and its `report.html`, redrawn from `runs.parquet`, `metrics.parquet`
//! and the run checkpoints alone: no retraining.
//!
//! The path reads top to bottom: [`sweep::Sweep`] loads the tables, each module of
//! [`figures`] draws one kind of figure (or says why it does not apply to this sweep), and
//! [`html`] writes the page that shows them.

mod canvas;
pub mod figures;
pub mod html;
mod images;
pub mod sweep;

pub use figures::{render, Figure, Inputs, ModelRef, Outcome};
pub use sweep::Sweep;

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
}
