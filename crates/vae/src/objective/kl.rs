//! The KL term: in closed form to the standard normal (one layer under N(0, I), and a
//! hierarchy's top layer), or sampled against the VampPrior, whose mixture has no closed form.

use crate::model::{Gaussian, Mixture};
use candle_core::{Result, Tensor, D};

/// The KL term of a batch: per latent dimension where the prior factorizes, else per image.
#[derive(Debug, Clone)]
pub enum Kl {
    /// (B, L): per sample and latent dimension (closed form, or a hierarchy's estimate).
    PerDim(Tensor),
    /// (B,): a Monte Carlo estimate of the whole KL, log q(z|x) − log p(z) at the draws: the
    /// VampPrior's mixture does not factorize over dimensions.
    PerImage(Tensor),
}

impl Kl {
    /// (B,) the KL of each image.
    pub fn per_image(&self) -> Result<Tensor> {
        match self {
            Kl::PerDim(t) => t.sum(D::Minus1),
            Kl::PerImage(t) => Ok(t.clone()),
        }
    }

    /// (B, L) the KL per dimension, where the prior factorizes.
    pub fn per_dim(&self) -> Option<&Tensor> {
        match self {
            Kl::PerDim(t) => Some(t),
            Kl::PerImage(_) => None,
        }
    }

    /// The same term cut from the graph (reported, not trained on).
    pub fn detach(&self) -> Kl {
        match self {
            Kl::PerDim(t) => Kl::PerDim(t.detach()),
            Kl::PerImage(t) => Kl::PerImage(t.detach()),
        }
    }
}

/// KL(N(μ, σ²) ‖ N(0, 1)) per sample and dimension: ½(μ² + σ² − 1 − log σ²), shape (B, L).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((mu.sqr()? + logvar.exp()?)? - logvar)?.affine(0.5, -0.5)
}

/// log p(z) − log q(z|x) per row at the draws z = μ + σ·ε of `q` under the mixture `prior`:
/// (rows,). Its negation is the one-draw estimate of the KL (Tomczak & Welling's).
pub fn log_prior_ratio(prior: &Mixture, q: &Gaussian, z: &Tensor, eps: &Tensor) -> Result<Tensor> {
    prior.log_density(z)? - q.log_density_of_draw(eps)?.sum(D::Minus1)?
}
