//! The stochastic layers above z₁ as networks: q(z_{n+1}|z_n) and p(z_n|z_{n+1}), diagonal
//! Gaussians whose μ and log σ² an MLP gives, under p(z_top) = N(0, I).

use super::arch::Architecture;
use super::gaussian::Gaussian;
use super::layers::Mlp;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use vaelab_kernels::Kernels;

/// One level between z_n and z_{n+1}.
#[derive(Debug, Clone)]
struct Level {
    up: Mlp,
    down: Mlp,
}

/// The networks of every level above z₁, bottom to top.
#[derive(Debug, Clone)]
pub struct StackNets {
    levels: Vec<Level>,
}

impl StackNets {
    /// The levels of `arch.stack` from `vb`; `None` for a one-layer model.
    pub(super) fn new(
        arch: &Architecture,
        vb: &VarBuilder,
        kernels: Kernels,
    ) -> Result<Option<Self>> {
        let specs = arch.stack_layers();
        let levels = (1..arch.latent_sizes().len())
            .map(|n| {
                Ok(Level {
                    up: Mlp::new(&format!("enc.z{}.", n + 1), &specs, vb, kernels)?,
                    down: Mlp::new(&format!("dec.z{n}."), &specs, vb, kernels)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((!levels.is_empty()).then_some(Self { levels }))
    }

    /// Levels above z₁.
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// q(z_{n+2} | z_{n+1}) for level `n` (0-based: level 0 reads z₁).
    pub fn posterior(&self, n: usize, z: &Tensor) -> Result<Gaussian> {
        Gaussian::from_head(&self.levels[n].up.forward(z)?)
    }

    /// The posteriors of the layers above z₁ along the mean path from `mu1`: q(z₂|μ₁), then
    /// q(z₃|μ₂), … (each read at the mean of the one below).
    pub fn mean_path(&self, mu1: &Tensor) -> Result<Vec<Gaussian>> {
        let mut path: Vec<Gaussian> = Vec::with_capacity(self.depth());
        for n in 0..self.depth() {
            let below = path.last().map_or(mu1, |q| &q.mu);
            let q = self.posterior(n, below)?;
            path.push(q);
        }
        Ok(path)
    }

    /// p(z_{n+1} | z_{n+2}) for level `n`.
    pub fn conditional(&self, n: usize, z_above: &Tensor) -> Result<Gaussian> {
        Gaussian::from_head(&self.levels[n].down.forward(z_above)?)
    }
}
