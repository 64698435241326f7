//! Runs on disk: a folder per run holding its resolved config, checkpoint and metrics as
//! Parquet, every file written atomically (temp file in the same folder, fsync, rename).

mod atomic;
mod lock;
mod run_dir;
mod table;

pub use atomic::{copy_atomic, sha256_of, stage_with, write_atomic, write_atomic_with, Staged};
pub use lock::{holder, Lock, LOCK};
pub use run_dir::{RunDir, CHECKPOINT, CONFIG, ESTEP, MANIFEST, METRICS, SUMMARY};
pub use table::{
    frame_of_cells, read_frame, read_metrics, stage_frame, stage_metrics, write_estep_curve,
    write_frame, write_metrics, write_summary, Cell, MetricsRow, SUMMARY_METRICS,
};

use std::path::PathBuf;

/// Errors while writing or reading results.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Polars {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    #[error("cannot write {path}: {reason}")]
    Other { path: PathBuf, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
}
