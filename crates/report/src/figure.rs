//! What a report is drawn from ([`Inputs`], [`ModelRef`]) and what each figure came to
//! ([`Figure`], [`Outcome`]): made by the modules of `figures/`, shown by `html`, so that
//! neither names the other.

use crate::ReportError;
use std::path::PathBuf;
use vaelab_data::DataSource;
use vaelab_vae::TrainConfig;

/// What a run's checkpoint needs to become a model again (the input size comes from the data).
#[derive(Debug, Clone)]
pub struct ModelRef {
    pub run_id: String,
    pub config: TrainConfig,
    pub checkpoint: PathBuf,
    pub data: DataSource,
}

/// Everything a report is drawn from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// `results/<sweep>`: holds runs.parquet, metrics.parquet and runs/<id>/.
    pub sweep_dir: PathBuf,
    /// The sweep file's text, shown on the page.
    pub sweep_toml: String,
    /// Runs whose checkpoints the image figures may decode.
    pub models: Vec<ModelRef>,
    /// Raised (Ctrl-C): stop after the figure being drawn, with [`ReportError::Stopped`].
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// One figure of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File stem under `figures/`.
    pub name: String,
    pub title: String,
    /// What to look for.
    pub caption: String,
    pub outcome: Outcome,
}

/// Drawn (with its files) or skipped (with the reason).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Drawn(Vec<PathBuf>),
    Skipped(String),
}

/// What a figure module hands back: the files, or why this sweep has nothing to show.
pub(crate) type Drawn = Result<Result<Vec<PathBuf>, String>, ReportError>;
