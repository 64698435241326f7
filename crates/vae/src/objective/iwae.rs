//! The IWAE training bound (Burda, Grosse & Salakhutdinov, ICLR 2016):
//! L_k = log (1/k) Σ_i w_i, w_i = p(x|z_i) p(z_i) / q(z_i|x), z_i = μ + σ·ε_i, trained with its
//! ordinary reparameterized gradient (ε held fixed; no stop-gradient or doubly-reparameterized
//! variant).

use super::elbo::{k_pass, mean_over_draws, BatchTerms};
use crate::model::Model;
use candle_core::{Result, Tensor};

/// log p(z) − log q(z|x) per row for z = μ + σ·ε under p(z) = N(0, I): Σ_j −½z_j² + ½ε_j² +
/// ½ log σ_j² (the 2π terms cancel). `logvar` has the rows of `z` and `eps`.
pub fn log_prior_minus_q(z: &Tensor, eps: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((eps.sqr()? - z.sqr()?)? + logvar)?.sum(1)? * 0.5
}

/// log (1/k) Σ_i exp(lw_i) over the k draws of (k·B,) sample-major rows: (B,). The max is a
/// constant of the gradient (it cancels), so it is detached.
fn log_mean_exp_over_draws(lw: &Tensor, k: usize) -> Result<Tensor> {
    let b = lw.dim(0)? / k;
    let lw = lw.reshape((k, b))?;
    let max = lw.max_keepdim(0)?.detach();
    let sum = lw.broadcast_sub(&max)?.exp()?.sum_keepdim(0)?;
    ((sum.log()? + max)? - (k as f64).ln())?.squeeze(0)
}

/// The IWAE loss −L_k of batch `x` (mean over images) with ε of k·B rows; `recon` and `kl`
/// report the mean recon of the draws and the closed-form KL, as the ELBO's metrics do.
pub fn iwae_terms(model: &Model, x: &Tensor, eps: &Tensor, k: usize) -> Result<BatchTerms> {
    let pass = k_pass(model, x, eps, k)?;
    let latent = match (&pass.stack, &pass.vamp_ratio) {
        (Some(draw), _) => draw.log_ratio.clone(),
        (None, Some(ratio)) => ratio.clone(),
        (None, None) => log_prior_minus_q(&pass.z, eps, &pass.logvar.repeat((k, 1))?)?,
    };
    let lw = (&pass.log_px_z + latent)?;
    let bound = log_mean_exp_over_draws(&lw, k)?;
    let recon = mean_over_draws(&pass.log_px_z.neg()?, k)?.detach();
    let kl = pass.kl(k)?.detach();
    Ok(BatchTerms {
        loss: bound.mean_all()?.neg()?,
        recon,
        kl: Some(kl),
        mu: model.mean_codes(&pass.post.mu)?.detach(),
        params: pass.params,
    })
}
