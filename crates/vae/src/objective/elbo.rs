//! −ELBO = recon + β·KL (KL after free bits; in closed form for one layer under N(0, I),
//! sampled under the VampPrior, see `stack.rs` for a hierarchy), from one or k draws of z.

use super::kl::{kl_per_dim, log_prior_ratio, Kl};
use super::stack::{amortized, split_columns, LatentDraw};
use crate::model::{Gaussian, Model, Posterior};
use candle_core::{Result, Tensor};

/// One batch through the model: the loss to minimize and the pieces the metrics need.
#[derive(Debug)]
pub struct BatchTerms {
    /// Scalar: mean over the batch of recon + β·KL (KL after free bits).
    pub loss: Tensor,
    /// (B,): −log p(x|z) per sample.
    pub recon: Tensor,
    /// The KL per sample, per latent dimension where the prior factorizes; `None` for the AE.
    pub kl: Option<Kl>,
    /// (B, L): posterior means (the AE's codes).
    pub mu: Tensor,
    /// (B, P·D): the decoder's output for the sampled z, to score it in other ways.
    pub params: Tensor,
}

/// Runs a batch: encode, reparameterize with `eps` (ignored by the AE), decode, score. With
/// layers above z₁, `eps` has a column per latent value of every layer (see
/// [`crate::model::Architecture::latent_width`]).
pub fn batch_terms(
    model: &Model,
    x: &Tensor,
    eps: &Tensor,
    beta: f64,
    free_bits: f64,
) -> Result<BatchTerms> {
    let post = model.encode(x)?;
    let (z, kl, mu) = match (&post.logvar, model.stack()) {
        (Some(logvar), None) => {
            let std = (logvar * 0.5)?.exp()?;
            let z = (&post.mu + (eps * std)?)?;
            let kl = match model.vamp()? {
                None => Kl::PerDim(kl_per_dim(&post.mu, logvar)?),
                Some(prior) => {
                    let q = Gaussian {
                        mu: post.mu.clone(),
                        logvar: logvar.clone(),
                    };
                    Kl::PerImage(log_prior_ratio(&prior, &q, &z, eps)?.neg()?)
                }
            };
            (z, Some(kl), post.mu)
        }
        (Some(logvar), Some(stack)) => {
            let q1 = Gaussian {
                mu: post.mu.clone(),
                logvar: logvar.clone(),
            };
            let parts = split_columns(eps, &model.arch().latent_sizes())?;
            let draw = amortized(stack, q1, &parts)?;
            (
                draw.z1,
                Some(Kl::PerDim(draw.kl)),
                model.mean_codes(&post.mu)?,
            )
        }
        (None, _) => (post.mu.clone(), None, post.mu),
    };
    let params = model.decode(&z)?;
    let recon = model.log_prob(&params, x)?.neg()?;
    let mut loss = recon.mean_all()?;
    if let Some(kl) = &kl {
        loss = (loss + (kl_penalty(kl, free_bits)? * beta)?)?;
    }
    Ok(BatchTerms {
        loss,
        recon,
        kl,
        mu,
        params,
    })
}

/// The KL term the loss weights by β: the batch mean of Σ_d KL_d, or with free bits
/// Σ_d max(mean_batch KL_d, λ) (which needs a KL per dimension).
fn kl_penalty(kl: &Kl, free_bits: f64) -> Result<Tensor> {
    match (kl, free_bits > 0.0) {
        (Kl::PerDim(kl), true) => kl.mean(0)?.maximum(free_bits)?.sum_all(),
        (Kl::PerDim(kl), false) => kl.sum_all()? / kl.dim(0)? as f64,
        (Kl::PerImage(kl), false) => kl.sum_all()? / kl.dim(0)? as f64,
        (Kl::PerImage(_), true) => {
            candle_core::bail!(
                "free bits need a KL per latent dimension; the VampPrior's is per image"
            )
        }
    }
}

/// k draws of z per image of `x` through the decoder as one batch of k·B rows.
pub(crate) struct KPass {
    pub post: Posterior,
    /// (B, L) log σ² of q(z|x).
    pub logvar: Tensor,
    /// (k·B, L) the draws of z₁, sample-major: row s·B + i is image i's s-th draw.
    pub z: Tensor,
    /// The layers above z₁, drawn with z (`None` for one layer).
    pub stack: Option<LatentDraw>,
    /// (k·B,) log p(z) − log q(z|x) of each draw under a VampPrior (`None` under N(0, I)).
    pub vamp_ratio: Option<Tensor>,
    /// (k·B, P·D) the decoder's output.
    pub params: Tensor,
    /// (k·B,) log p(x_i | z) per row.
    pub log_px_z: Tensor,
}

/// Encodes `x` (B rows), draws z = μ + σ·ε for `eps` of k·B rows and scores each draw.
pub(crate) fn k_pass(model: &Model, x: &Tensor, eps: &Tensor, k: usize) -> Result<KPass> {
    let post = model.encode(x)?;
    let Some(logvar) = post.logvar.clone() else {
        candle_core::bail!("{k} samples of z need a stochastic encoder (model = \"vae\")");
    };
    let mut vamp_ratio = None;
    let (z, stack) = match model.stack() {
        None => {
            let std = (&logvar * 0.5)?.exp()?;
            let z = (post.mu.repeat((k, 1))? + (eps * std.repeat((k, 1))?)?)?;
            if let Some(prior) = model.vamp()? {
                let q = Gaussian {
                    mu: post.mu.repeat((k, 1))?,
                    logvar: logvar.repeat((k, 1))?,
                };
                vamp_ratio = Some(log_prior_ratio(&prior, &q, &z, eps)?);
            }
            (z, None)
        }
        Some(stack) => {
            let q1 = Gaussian {
                mu: post.mu.repeat((k, 1))?,
                logvar: logvar.repeat((k, 1))?,
            };
            let parts = split_columns(eps, &model.arch().latent_sizes())?;
            let draw = amortized(stack, q1, &parts)?;
            (draw.z1.clone(), Some(draw))
        }
    };
    let params = model.decode(&z)?;
    let log_px_z = model.log_prob(&params, &x.repeat((k, 1))?)?;
    Ok(KPass {
        post,
        logvar,
        z,
        stack,
        vamp_ratio,
        params,
        log_px_z,
    })
}

impl KPass {
    /// The KL: per dimension in closed form for one layer under N(0, I), the mean over the k
    /// draws of the VampPrior's estimate per image, or of the stack's per dimension.
    pub fn kl(&self, k: usize) -> Result<Kl> {
        match (&self.stack, &self.vamp_ratio) {
            (Some(draw), _) => {
                let (rows, w) = draw.kl.dims2()?;
                Ok(Kl::PerDim(draw.kl.reshape((k, rows / k, w))?.mean(0)?))
            }
            (None, Some(ratio)) => Ok(Kl::PerImage(mean_over_draws(&ratio.neg()?, k)?)),
            (None, None) => Ok(Kl::PerDim(kl_per_dim(&self.post.mu, &self.logvar)?)),
        }
    }
}

/// The mean over draws of (k, B) rows: (B,).
pub(crate) fn mean_over_draws(rows: &Tensor, k: usize) -> Result<Tensor> {
    let b = rows.dim(0)? / k;
    rows.reshape((k, b))?.mean(0)
}

/// The mean of k one-sample ELBOs per image (closed-form KL, so only the recon is averaged):
/// the k-sample "VAE" of Burda et al.
pub fn k_sample_elbo(
    model: &Model,
    x: &Tensor,
    eps: &Tensor,
    k: usize,
    beta: f64,
    free_bits: f64,
) -> Result<BatchTerms> {
    let pass = k_pass(model, x, eps, k)?;
    let recon = mean_over_draws(&pass.log_px_z.neg()?, k)?;
    let kl = pass.kl(k)?;
    let loss = (recon.mean_all()? + (kl_penalty(&kl, free_bits)? * beta)?)?;
    Ok(BatchTerms {
        loss,
        recon,
        kl: Some(kl),
        mu: model.mean_codes(&pass.post.mu)?,
        params: pass.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;
    use candle_core::Device;

    #[test]
    fn analytic_kl_matches_monte_carlo() {
        // KL(q‖p) = E_q[log q(z) − log p(z)], estimated with 200k draws per dimension.
        let mu = [0.0f32, 1.5, -0.7];
        let logvar = [0.0f32, -1.2, 0.8];
        let dev = Device::Cpu;
        let kl = kl_per_dim(
            &Tensor::from_slice(&mu, (1, 3), &dev).unwrap(),
            &Tensor::from_slice(&logvar, (1, 3), &dev).unwrap(),
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let mut r = rng::stream(7, rng::Stream::Noise, 0);
        let n = 200_000;
        for d in 0..3 {
            let s = (0.5 * logvar[d] as f64).exp();
            let eps = rng::normals(&mut r, n);
            let mc: f64 = eps
                .iter()
                .map(|&e| {
                    let z = mu[d] as f64 + s * e as f64;
                    let log_q = -0.5 * (e as f64).powi(2) - s.ln();
                    let log_p = -0.5 * z * z;
                    log_q - log_p
                })
                .sum::<f64>()
                / n as f64;
            let tol = 0.02 * (1.0 + mc.abs());
            assert!(
                (kl[0][d] as f64 - mc).abs() < tol,
                "dim {d}: {} vs {mc}",
                kl[0][d]
            );
        }
        assert!(kl[0][0].abs() < 1e-7, "KL(N(0,1)‖N(0,1)) = 0");
    }
}
