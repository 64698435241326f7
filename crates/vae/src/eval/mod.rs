//! Estimators of a trained (or training) model: per-epoch metrics (`metrics`) and the
//! evaluator that computes them (`evaluator`), the IWAE bound (`iwae`), annealed importance
//! sampling and its BDMC sandwich (`ais`), the explicit E-step and
//! gap split (`estep`), the mutual information (`mi`), and the reliability of importance weights
//! (`psis`). A new estimator is a file here.

pub mod ais;
pub mod estep;
mod evaluator;
pub mod iwae;
mod metrics;
pub mod mi;
pub mod psis;

pub use ais::{AisEstimate, Bdmc};
pub use estep::{GapSplit, LogPxSource};
pub use evaluator::{ais, bdmc, gap_split, iwae_bound, Evaluator, Subject, MI_IMAGES};
pub use iwae::IwaeEstimate;
pub(crate) use metrics::Sums;
pub use metrics::{EpochMetrics, ACTIVE_UNIT_THRESHOLD};
