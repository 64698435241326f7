//! Why training stopped early.

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the loss became non-finite in epoch {epoch} at step {step} (last good epoch: {})", epoch - 1)]
    Diverged { epoch: usize, step: usize },
    /// The stop flag was raised mid-epoch; the epoch is dropped, the last checkpoint stands.
    #[error("stopped during epoch {epoch}")]
    Stopped { epoch: usize },
    /// The stop flag was raised during the final evaluation (the IWAE bound or the E-step):
    /// its partial sums are dropped; every epoch stands, and a resume evaluates again.
    #[error("stopped during the final evaluation ({0})")]
    StoppedEvaluating(&'static str),
}
