//! The figures of a sweep and its `report.html`, redrawn from `runs.parquet`, `metrics.parquet`
//! and the run checkpoints alone: no retraining.
//!
//! The path reads top to bottom: [`sweep::Sweep`] loads the tables, each module of
//! [`figures`] draws one kind of figure (or says why it does not apply to this sweep), and
//! [`html`] writes the page that shows them. [`render`] calls them in that order; what they
//! pass along ([`Inputs`], [`Figure`]) lives in its own module, so the figures and the page
//! never name each other.

mod canvas;
mod error;
mod figure;
pub mod figures;
pub mod html;
mod images;
pub mod sweep;

pub use error::ReportError;
pub use figure::{Figure, Inputs, ModelRef, Outcome};
pub use sweep::Sweep;

/// Draws every figure of the sweep into `<sweep_dir>/figures/`, then writes `report.html`;
/// returns the figures in page order.
pub fn render(inputs: &Inputs) -> Result<Vec<Figure>, ReportError> {
    let sweep = Sweep::load(&inputs.sweep_dir)?;
    let figures = figures::draw(inputs, &sweep)?;
    html::write(inputs, &sweep, &figures)?;
    Ok(figures)
}
