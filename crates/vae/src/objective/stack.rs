//! The latent part of the bound for a hierarchy of stochastic layers (Burda et al. 2016, §5):
//! q(z₁|x) q(z₂|z₁) … and p(z_top) … p(z₁|z₂). The KL of a layer under a learned conditional
//! prior has no closed form: each layer below the top is estimated from the draw itself,
//! log q(z_n|·) − log p(z_n|z_{n+1}); the top layer's KL to N(0, I) is in closed form given the
//! draw beneath it (as in Burda's and Sønderby's code). The IWAE weight uses every layer's
//! sampled densities.

use super::kl::kl_per_dim;
use crate::model::{Gaussian, StackNets};
use candle_core::{Result, Tensor, D};

/// The latent terms of a batch of draws (one row per draw).
#[derive(Debug)]
pub struct LatentDraw {
    /// (rows, L₁): the bottom layer's sample, what the decoder reads.
    pub z1: Tensor,
    /// (rows, Σ L_n): the KL estimate per dimension, layer after layer.
    pub kl: Tensor,
    /// (rows,): log p(z₁, …) − log q(z₁, … | x), every layer sampled.
    pub log_ratio: Tensor,
}

/// Columns of `eps` layer after layer: (rows, L_n) for each size.
pub fn split_columns(eps: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let mut at = 0;
    sizes
        .iter()
        .map(|&s| {
            let part = eps.narrow(1, at, s)?;
            at += s;
            Ok(part)
        })
        .collect()
}

/// Per-layer Gaussians from μ and log σ² of every layer side by side in the columns.
pub fn per_layer(mu: &Tensor, logvar: &Tensor, sizes: &[usize]) -> Result<Vec<Gaussian>> {
    Ok(split_columns(mu, sizes)?
        .into_iter()
        .zip(split_columns(logvar, sizes)?)
        .map(|(mu, logvar)| Gaussian { mu, logvar })
        .collect())
}

/// Draws every layer from the amortized posterior: z₁ from `q1`, each layer above from the
/// stack's q(z_{n+1}|z_n), with `eps` split layer by layer.
pub fn amortized(stack: &StackNets, q1: Gaussian, eps: &[Tensor]) -> Result<LatentDraw> {
    let mut qs = vec![q1];
    let mut zs = vec![qs[0].sample(&eps[0])?];
    for n in 0..stack.depth() {
        let q = stack.posterior(n, &zs[n])?;
        zs.push(q.sample(&eps[n + 1])?);
        qs.push(q);
    }
    terms(stack, &zs, &qs, eps)
}

/// Draws every layer from its own Gaussian `qs[n]` (a mean-field q, e.g. the E-step's).
pub fn mean_field(stack: &StackNets, qs: &[Gaussian], eps: &[Tensor]) -> Result<LatentDraw> {
    let zs = qs
        .iter()
        .zip(eps)
        .map(|(q, e)| q.sample(e))
        .collect::<Result<Vec<_>>>()?;
    terms(stack, &zs, qs, eps)
}

/// The KL estimate and log-ratio of draws `zs[n] = μ_n + σ_n ε_n` of `qs`.
fn terms(stack: &StackNets, zs: &[Tensor], qs: &[Gaussian], eps: &[Tensor]) -> Result<LatentDraw> {
    let top = zs.len() - 1;
    // log q of its own draw: −½ε² − ½ log σ² (no 2π, as in every density here).
    let log_q = |n: usize| (eps[n].sqr()? + &qs[n].logvar)? * -0.5;
    let mut kl = Vec::with_capacity(zs.len());
    // Each layer's Σ_d (log p − log q), summed layer after layer below.
    let mut ratios = Vec::with_capacity(zs.len());
    for n in 0..top {
        let log_p = stack.conditional(n, &zs[n + 1])?.log_density(&zs[n])?;
        let diff = (log_q(n)? - log_p)?;
        ratios.push(diff.neg()?.sum(D::Minus1)?);
        kl.push(diff);
    }
    ratios.push((crate::model::log_standard(&zs[top])? - log_q(top)?)?.sum(D::Minus1)?);
    kl.push(kl_per_dim(&qs[top].mu, &qs[top].logvar)?);
    let mut ratios = ratios.into_iter();
    let first = ratios
        .next()
        .ok_or_else(|| candle_core::Error::Msg("no latent layer".into()))?;
    Ok(LatentDraw {
        z1: zs[0].clone(),
        kl: Tensor::cat(&kl, 1)?,
        log_ratio: ratios.try_fold(first, |acc, r| acc + r)?,
    })
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
