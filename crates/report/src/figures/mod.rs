//! Every figure of a report: drawn when the sweep has what it shows, else skipped with why.

mod bpd;
mod curves;
mod estep;
mod gap;
mod kl_dims;
mod metric_vs_key;
mod pictures;
mod rate_distortion;

use crate::sweep::Sweep;
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

/// Mean and sample std of the runs at one point (over seeds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    pub mean: f64,
    pub std: f64,
}

/// The [`Stat`] of `v` (std 0 for a single value); `v` must not be empty.
pub(crate) fn stat(v: &[f64]) -> Stat {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stat {
        mean,
        std: var.sqrt(),
    }
}

/// What a figure module hands back: the files, or why this sweep has nothing to show.
type Drawn = Result<Result<Vec<PathBuf>, String>, ReportError>;

/// Draws every figure of the sweep into `<sweep_dir>/figures/` and writes `report.html`;
/// returns the figures in page order.
pub fn render(inputs: &Inputs) -> Result<Vec<Figure>, ReportError> {
    let sweep = Sweep::load(&inputs.sweep_dir)?;
    let dir = inputs.sweep_dir.join("figures");
    std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut figures = Vec::new();
    let mut add =
        |name: String, title: String, caption: &str, drawn: Drawn| -> Result<(), ReportError> {
            figures.push(Figure {
                name,
                title,
                caption: caption.to_string(),
                outcome: match drawn? {
                    Ok(files) => Outcome::Drawn(files),
                    Err(why) => Outcome::Skipped(why),
                },
            });
            Ok(())
        };
    let axes = metric_vs_key::axes(&sweep);
    if axes.is_empty() {
        add(
            "elbo_vs_key".into(),
            "ELBO, recon, KL and log p(x) against the swept key".into(),
            metric_vs_key::CAPTION,
            Ok(Err("no config key varies in this sweep (only seeds), so there is no axis to draw against".into())),
        )?;
    }
    for key in axes {
        add(
            format!("elbo_vs_{key}"),
            format!("ELBO, recon, KL and log p(x) against {key}"),
            metric_vs_key::CAPTION,
            metric_vs_key::draw(&sweep, &key, &dir),
        )?;
    }
    add(
        "bits_per_dim".into(),
        "Bits per dimension: the likelihood families on one scale".into(),
        bpd::CAPTION,
        bpd::draw(&sweep, &dir),
    )?;
    add(
        "rate_distortion".into(),
        "Rate–distortion plane".into(),
        rate_distortion::CAPTION,
        rate_distortion::draw(&sweep, &dir),
    )?;
    add(
        "learning_curves".into(),
        "Learning curves".into(),
        curves::CAPTION,
        curves::draw(&sweep, &dir),
    )?;
    add(
        "mi_active_units".into(),
        "Mutual information and active units per epoch".into(),
        curves::MI_CAPTION,
        curves::draw_mi(&sweep, &dir),
    )?;
    add(
        "elbo_gap".into(),
        "The ELBO gap, split: amortization and approximation".into(),
        gap::CAPTION,
        gap::draw(&sweep, &dir),
    )?;
    add(
        "estep_curve".into(),
        "The explicit E-step's convergence".into(),
        estep::CAPTION,
        estep::draw(&sweep, &dir),
    )?;
    add(
        "kl_per_dim".into(),
        "KL per latent dimension, sorted".into(),
        kl_dims::CAPTION,
        kl_dims::draw(&sweep, &dir),
    )?;
    for (name, title, caption, drawn) in pictures::draw_all(&sweep, inputs, &dir)? {
        add(name, title, caption, Ok(drawn))?;
    }
    crate::html::write(inputs, &sweep, &figures)?;
    Ok(figures)
}
