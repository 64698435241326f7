//! The diagonal Gaussians of the bound: every q, the stack's conditional priors, the VampPrior's
//! components, and N(0, I).

use candle_core::{Result, Tensor};

/// A diagonal Gaussian per row: means and log-variances, (rows, size) each.
#[derive(Debug, Clone)]
pub struct Gaussian {
    pub mu: Tensor,
    pub logvar: Tensor,
}

impl Gaussian {
    /// Splits a head's output (rows, 2·size) into μ and log σ².
    pub(super) fn from_head(out: &Tensor) -> Result<Self> {
        let size = out.dim(1)? / 2;
        Ok(Self {
            mu: out.narrow(1, 0, size)?,
            logvar: out.narrow(1, size, size)?,
        })
    }

    /// μ + σ·ε.
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        &self.mu + (eps * (&self.logvar * 0.5)?.exp()?)?
    }

    /// log q(z) per row and dimension of its own draw z = μ + σ·ε: −½ε² − ½ log σ² (without
    /// the −½ log 2π, as [`Gaussian::log_density`]).
    pub fn log_density_of_draw(&self, eps: &Tensor) -> Result<Tensor> {
        (eps.sqr()? + &self.logvar)? * -0.5
    }

    /// log N(z; μ, σ²) per row and dimension, without the −½ log 2π every Gaussian of the
    /// bound shares (they cancel between p and q).
    pub fn log_density(&self, z: &Tensor) -> Result<Tensor> {
        let d = (z - &self.mu)?;
        ((d.sqr()? * (self.logvar.neg()?.exp()?))? + &self.logvar)? * -0.5
    }
}

/// log N(z; 0, I) per row and dimension, without the −½ log 2π.
pub fn log_standard(z: &Tensor) -> Result<Tensor> {
    z.sqr()? * -0.5
}
