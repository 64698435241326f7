//! `vaelab run`: one run from its file to its folder of results.

use crate::config::{load_run_file, RunSpec};
use crate::failure::Failure;
use anyhow::{anyhow, Context};
use candle_core::Device;
use std::path::Path;
use std::time::Instant;
use vaelab_data::{Dataset, SplitKind};
use vaelab_track::{self as track, Cell, MetricsRow, RunDir};
use vaelab_vae::{EpochMetrics, IwaeEstimate, Trainer};

/// Checks the file, loads the data, prepares the folder, then trains.
pub fn run_file(file: &Path, results_dir: &Path) -> Result<(), Failure> {
    let spec = load_run_file(file).map_err(|e| Failure::Input(e.into()))?;
    let data = load_data(&spec).map_err(Failure::Input)?;
    let dir = RunDir::create(results_dir, &spec.name)
        .with_context(|| format!("results folder {} (--results-dir)", results_dir.display()))
        .map_err(Failure::Input)?;
    eprintln!("{}: {} from {}", spec.name, data.name(), data.origin());
    train(&spec, &data, &dir).map_err(Failure::Run)
}

/// Loads the run's dataset; errors say which key of which file to change.
pub fn load_data(spec: &RunSpec) -> anyhow::Result<Dataset> {
    let key = if spec.keys.data_dir.is_some() {
        "data_dir"
    } else {
        "dataset"
    };
    vaelab_data::load(&spec.keys.data_source())
        .with_context(|| format!("{}: key `{key}`", spec.source.display()))
}

fn row(run_id: &str, m: &EpochMetrics) -> MetricsRow {
    MetricsRow {
        run_id: run_id.to_string(),
        epoch: m.epoch as u32,
        split: m.split.as_str(),
        loss: m.loss,
        neg_elbo: m.neg_elbo,
        recon: m.recon,
        kl: m.kl,
        kl_weighted: m.kl_weighted,
        beta: m.beta,
        kl_per_dim: m.kl_per_dim.clone(),
        active_units: m.active_units.map(|a| a as u32),
        seconds: m.seconds,
        samples_per_sec: m.samples_per_sec,
    }
}

/// Trains `spec` on `data`, writing config, per-epoch metrics, checkpoint and summary.
pub fn train(spec: &RunSpec, data: &Dataset, dir: &RunDir) -> anyhow::Result<()> {
    let start = Instant::now();
    let run_id = spec.keys.run_id();
    let header = format!(
        "# vaelab run {} (id {run_id}), resolved from {}\n",
        spec.name,
        spec.source.display()
    );
    track::write_atomic(
        &dir.file(track::CONFIG),
        (header + &spec.keys.to_toml()).as_bytes(),
    )?;

    let cfg = spec.keys.train_config();
    let mut trainer = Trainer::new(cfg.clone(), data, Device::Cpu)?;
    let mut rows = Vec::new();
    let mut last: Option<(EpochMetrics, EpochMetrics)> = None;
    for epoch in 1..=cfg.epochs {
        let train = trainer.train_epoch(epoch)?;
        let test = trainer.evaluate(SplitKind::Test, epoch)?;
        rows.push(row(&run_id, &train));
        rows.push(row(&run_id, &test));
        track::write_metrics(&dir.file(track::METRICS), &rows)?;
        eprintln!(
            "{} epoch {epoch}/{}: train loss {:.2}, test -ELBO {}, recon {:.2}  ({:.1} s, {:.0} img/s)",
            spec.name,
            cfg.epochs,
            train.loss,
            test.neg_elbo.map_or("n/a".into(), |v| format!("{v:.2}")),
            test.recon,
            train.seconds,
            train.samples_per_sec
        );
        last = Some((train, test));
    }
    let (train, test) = last.ok_or_else(|| anyhow!("no epoch was trained"))?;
    let iw = if cfg.iw_test_n > 0 {
        trainer.iwae()?
    } else {
        None
    };
    if let Some(iw) = &iw {
        eprintln!(
            "{} IWAE(K={}) log p(x) on {} test images: {:.2} (ELBO {:.2}, gap {:.2}; {:.1} s)",
            spec.name, iw.samples, iw.images, iw.log_px, iw.elbo, iw.gap, iw.seconds
        );
    }
    let ckpt = dir.file(track::CHECKPOINT);
    track::write_atomic_with(&ckpt, |tmp| {
        trainer
            .save_checkpoint(tmp, cfg.epochs)
            .map_err(|e| e.to_string())
    })?;
    let mut cells = vec![("run_id".to_string(), Cell::Str(Some(run_id)))];
    cells.extend(spec.keys.cells());
    cells.extend(summary_cells(
        &train,
        &test,
        iw.as_ref(),
        start.elapsed().as_secs_f64(),
    ));
    track::write_summary(&dir.file(track::SUMMARY), &cells)?;
    eprintln!(
        "{}: done in {:.1} s -> {}",
        spec.name,
        start.elapsed().as_secs_f64(),
        dir.path().display()
    );
    Ok(())
}

/// The final metrics of `summary.parquet`; nulls where a figure is undefined (the AE's KL).
fn summary_cells(
    train: &EpochMetrics,
    test: &EpochMetrics,
    iw: Option<&IwaeEstimate>,
    wall: f64,
) -> Vec<(String, Cell)> {
    let f = |v: Option<f64>| Cell::Float(v);
    [
        ("test_neg_elbo", f(test.neg_elbo)),
        ("test_recon", f(Some(test.recon))),
        ("test_kl", f(test.kl)),
        ("test_loss", f(Some(test.loss))),
        ("train_neg_elbo", f(train.neg_elbo)),
        ("train_recon", f(Some(train.recon))),
        ("log_px_iw", f(iw.map(|i| i.log_px))),
        ("elbo_iw", f(iw.map(|i| i.elbo))),
        ("elbo_gap", f(iw.map(|i| i.gap))),
        ("iw_seconds", f(iw.map(|i| i.seconds))),
        (
            "active_units",
            Cell::Int(test.active_units.map(|a| a as i64)),
        ),
        ("wall_seconds", f(Some(wall))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
