use crate::TrackError;
use std::path::{Path, PathBuf};

/// The resolved config of a run.
pub const CONFIG: &str = "config.toml";
/// One row per epoch and split.
pub const METRICS: &str = "metrics.parquet";
/// One row: config and final metrics.
pub const SUMMARY: &str = "summary.parquet";
/// What happened to the run (status, times, errors).
pub const MANIFEST: &str = "manifest.json";
/// The trained weights.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The explicit E-step's convergence curve (VAE runs with a gap split).
pub const ESTEP: &str = "estep.parquet";

/// The folder of one run: `<results>/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates (or reuses) `results_dir/name`.
    pub fn create(results_dir: &Path, name: &str) -> Result<Self, TrackError> {
        let path = results_dir.join(name);
        std::fs::create_dir_all(&path).map_err(|source| TrackError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside the folder (one of the constants of this module).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}
