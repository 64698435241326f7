//! `vaelab report`: the sweep's figures and report.html, from its folder alone.

use crate::output::note;
use crate::sweep_file::load_sweep_file;
use crate::tables::run_dir;
use anyhow::Context;
use std::path::Path;
use vaelab_report::{Figure, Inputs, ModelRef, Outcome};

/// The inputs of a sweep folder's report: its tables, its copy of the sweep file (which says
/// how to rebuild each run's model) and the checkpoints under `runs/`.
pub fn inputs(sweep_dir: &Path) -> anyhow::Result<Inputs> {
    let toml = sweep_dir.join("sweep.toml");
    let sweep_toml = std::fs::read_to_string(&toml).with_context(|| {
        format!(
            "{}: not a sweep folder (run `vaelab sweep` first)",
            toml.display()
        )
    })?;
    let plan = load_sweep_file(&toml)?;
    let models = plan
        .runs
        .iter()
        .map(|run| ModelRef {
            run_id: run.id.clone(),
            config: run.keys.train_config(),
            checkpoint: run_dir(sweep_dir, &run.id).join(vaelab_track::CHECKPOINT),
            data: run.keys.data_source(),
        })
        .collect();
    Ok(Inputs {
        sweep_dir: sweep_dir.to_path_buf(),
        sweep_toml,
        models,
        stop: None,
    })
}

/// Draws every figure and the page; prints one line per figure. A raised `stop` ends it
/// between figures with [`vaelab_report::ReportError::Stopped`].
pub fn draw(
    sweep_dir: &Path,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<Vec<Figure>> {
    let mut inputs = inputs(sweep_dir)?;
    inputs.stop = stop;
    // Two sweeps ending together on one folder draw one after the other.
    let _lock = vaelab_track::Lock::acquire(&sweep_dir.join(".report.lock"))?;
    let figures = vaelab_report::render(&inputs)?;
    for f in &figures {
        match &f.outcome {
            Outcome::Drawn(files) => note!(
                "  {}: {}",
                f.name,
                files
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Outcome::Skipped(why) => note!("  {}: skipped ({why})", f.name),
        }
    }
    note!("report: {}", sweep_dir.join("report.html").display());
    Ok(figures)
}
