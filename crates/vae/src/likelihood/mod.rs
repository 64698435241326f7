//! Observation models p(x|z): the families and their fixed parameters (`family`), the masses of
//! quantized pixels behind bits/dim (`mass`), the clamps they share (`bounds`), and how a batch
//! is scored: the fused CPU op (`fused`) or candle's ops (`reference`), picked by [`log_prob`], or
//! straight from a dense head's output as it is computed (`streamed`); images drawn from the
//! model (`sample`).

mod bounds;
mod family;
mod fused;
mod mass;
mod reference;
mod sample;
mod streamed;

pub use bounds::{LEVELS_8BIT, LOG_SCALE_FLOOR, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
pub use family::{cb_log_norm, Likelihood, LikelihoodKind};
pub use mass::{bits_per_dim, edges, last_level, Mass};
pub use sample::draw;
pub use streamed::StreamedScore;

use candle_core::{Result, Tensor};
use vaelab_kernels::Kernels;

/// Σ over pixels of log p(x|params) for each row: `params` is (B, P·D), `x` is (B', D) with B a
/// multiple of B' (each x row scores B/B' params rows); returns (B,). Differentiable with
/// respect to `params`.
pub fn log_prob(kernels: Kernels, lik: Likelihood, params: &Tensor, x: &Tensor) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => fused::log_prob(lik, params, x),
        Kernels::Reference => reference::log_prob(lik, params, x),
    }
}
