//! Every figure of a report: drawn when the sweep has what it shows, else skipped with why.

mod bpd;
mod curves;
mod estep;
mod gap;
mod kl_dims;
mod metric_vs_key;
mod pictures;
mod rate_distortion;
mod search;
mod stats;

use crate::figure::{Drawn, Figure, Inputs, Outcome};
use crate::sweep::Sweep;
use crate::ReportError;

/// Draws every figure of the sweep into `<sweep_dir>/figures/`; returns them in page order.
pub fn draw(inputs: &Inputs, sweep: &Sweep) -> Result<Vec<Figure>, ReportError> {
    let dir = inputs.sweep_dir.join("figures");
    std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut figures = Vec::new();
    let stopped = || {
        inputs
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    };
    let mut add =
        |name: String, title: String, caption: &str, drawn: Drawn| -> Result<(), ReportError> {
            // Ctrl-C stops the report between figures; what is drawn stays.
            if stopped() {
                return Err(ReportError::Stopped {
                    drawn: figures.len(),
                });
            }
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
    let axes = metric_vs_key::axes(sweep);
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
            metric_vs_key::draw(sweep, &key, &dir),
        )?;
    }
    add(
        "bits_per_dim".into(),
        "Bits per dimension: the likelihood families on one scale".into(),
        bpd::CAPTION,
        bpd::draw(sweep, &dir),
    )?;
    add(
        "rate_distortion".into(),
        "Rate–distortion plane".into(),
        rate_distortion::CAPTION,
        rate_distortion::draw(sweep, &dir),
    )?;
    add(
        "learning_curves".into(),
        "Learning curves".into(),
        curves::CAPTION,
        curves::draw(sweep, &dir),
    )?;
    add(
        "mi_active_units".into(),
        "Mutual information and active units per epoch".into(),
        curves::MI_CAPTION,
        curves::draw_mi(sweep, &dir),
    )?;
    add(
        "elbo_gap".into(),
        "The ELBO gap, split: amortization and approximation".into(),
        gap::CAPTION,
        gap::draw(sweep, &dir),
    )?;
    add(
        "estep_curve".into(),
        "The explicit E-step's convergence".into(),
        estep::CAPTION,
        estep::draw(sweep, &dir),
    )?;
    add(
        "kl_per_dim".into(),
        "KL per latent dimension, sorted".into(),
        kl_dims::CAPTION,
        kl_dims::draw(sweep, &dir),
    )?;
    let toml = &inputs.sweep_toml;
    add(
        "search_progress".into(),
        "Search: the best run against the epochs trained".into(),
        search::PROGRESS_CAPTION,
        search::draw_progress(sweep, toml, &dir),
    )?;
    add(
        "search_parallel".into(),
        "Search: the trials as parallel coordinates".into(),
        search::PARALLEL_CAPTION,
        search::draw_parallel(sweep, toml, &dir),
    )?;
    add(
        "search_importance".into(),
        "Search: each key's importance (Spearman ρ with test −ELBO)".into(),
        search::IMPORTANCE_CAPTION,
        search::draw_importance(sweep, toml, &dir),
    )?;
    for (name, title, caption, drawn) in pictures::draw_all(sweep, inputs, &dir)? {
        add(name, title, caption, Ok(drawn))?;
    }
    Ok(figures)
}
