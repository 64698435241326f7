//! The KL of a diagonal Gaussian to the standard normal, in closed form: the KL of one layer
//! under N(0, I), and of a hierarchy's top layer.

use candle_core::{Result, Tensor};

/// KL(N(μ, σ²) ‖ N(0, 1)) per sample and dimension: ½(μ² + σ² − 1 − log σ²), shape (B, L).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((mu.sqr()? + logvar.exp()?)? - logvar)?.affine(0.5, -0.5)
}
