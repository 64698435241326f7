//! The sweep-level tables, rebuilt from the run folders: `runs.parquet` (one row per run) and
//! `metrics.parquet` (every run's per-epoch rows with its config columns).

use crate::manifest::Manifest;
use crate::plan::Plan;
use polars::prelude::*;
use std::path::{Path, PathBuf};
use vaelab_track::{self as track, Cell};

/// `results/<sweep>/runs/<id>`.
pub fn run_dir(sweep_dir: &Path, id: &str) -> PathBuf {
    sweep_dir.join("runs").join(id)
}

/// Config columns of a run (its `name` is the sweep's, so it is left out).
fn config_cells(run: &crate::plan::PlannedRun) -> Vec<(String, Cell)> {
    let mut cells = vec![("run_id".to_string(), Cell::Str(Some(run.id.clone())))];
    cells.extend(run.keys.cells().into_iter().filter(|(k, _)| k != "name"));
    cells
}

/// Rewrites both tables atomically from what the run folders hold now. A lock serializes the
/// rewrites of concurrent sweeps on one folder, so the last rewrite always saw the last run end.
pub fn write_sweep_tables(sweep_dir: &Path, plan: &Plan) -> anyhow::Result<()> {
    let _lock = track::Lock::acquire(&sweep_dir.join(".tables.lock"))?;
    let mut runs = Vec::new();
    let mut metrics = Vec::new();
    for run in &plan.runs {
        let dir = run_dir(sweep_dir, &run.id);
        let manifest = Manifest::read(&dir.join(track::MANIFEST));
        let status = manifest.as_ref().map_or("pending", |m| m.status.as_str());
        // Why a run failed (its error, or Slurm's reason), next to its status.
        let error = manifest.and_then(|m| m.error);
        let summary = dir.join(track::SUMMARY);
        let mut row = match track::read_frame(&summary) {
            Ok(df) => df.drop_many(["name"]),
            Err(_) => track::frame_of_cells(&config_cells(run), 1)?,
        };
        row.with_column(Series::new("status".into(), [status]).into())?;
        row.with_column(Series::new("error".into(), [error]).into())?;
        runs.push(row);
        if let Ok(df) = track::read_frame(&dir.join(track::METRICS)) {
            let config = track::frame_of_cells(&config_cells(run)[1..], df.height())?;
            metrics.push(df.hstack(config.columns())?);
        }
    }
    let runs = polars::functions::concat_df_diagonal(&runs)?;
    track::write_frame(&sweep_dir.join("runs.parquet"), runs)?;
    if !metrics.is_empty() {
        let metrics = polars::functions::concat_df_diagonal(&metrics)?;
        track::write_frame(&sweep_dir.join("metrics.parquet"), metrics)?;
    }
    Ok(())
}
