//! The training objective: −ELBO = recon + KL, with β, KL warm-up and free bits on the KL.

use crate::model::Model;
use candle_core::{Result, Tensor};

/// How the KL term is weighted during training (the reported −ELBO always uses β = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// Weight of the KL (β-VAE); 1 is the plain ELBO.
    pub beta: f64,
    /// Epochs over which β ramps linearly from 0 (0: no warm-up).
    pub kl_warmup_epochs: usize,
    /// Free bits: nats per latent dimension below which the KL is not penalized (0: off).
    pub free_bits: f64,
}

impl Objective {
    /// The KL weight after `progress` epochs of training (fractional within an epoch).
    pub fn beta_at(&self, progress: f64) -> f64 {
        if self.kl_warmup_epochs == 0 {
            self.beta
        } else {
            self.beta * (progress / self.kl_warmup_epochs as f64).min(1.0)
        }
    }
}

/// KL(N(μ, σ²) ‖ N(0, 1)) per sample and dimension: ½(μ² + σ² − 1 − log σ²), shape (B, L).
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((mu.sqr()? + logvar.exp()?)? - logvar)?.affine(0.5, -0.5)
}

/// One batch through the model: the loss to minimize and the pieces the metrics need.
#[derive(Debug)]
pub struct BatchTerms {
    /// Scalar: mean over the batch of recon + β·KL (KL after free bits).
    pub loss: Tensor,
    /// (B,): −log p(x|z) per sample.
    pub recon: Tensor,
    /// (B, L): KL per sample and latent dimension; `None` for the AE.
    pub kl: Option<Tensor>,
    /// (B, L): posterior means (the AE's codes).
    pub mu: Tensor,
    /// (B, P·D): the decoder's output for the sampled z, to score it in other ways.
    pub params: Tensor,
}

/// Runs a batch: encode, reparameterize with `eps` (ignored by the AE), decode, score.
pub fn batch_terms(
    model: &Model,
    x: &Tensor,
    eps: &Tensor,
    beta: f64,
    free_bits: f64,
) -> Result<BatchTerms> {
    let post = model.encode(x)?;
    let (z, kl) = match &post.logvar {
        Some(logvar) => {
            let std = (logvar * 0.5)?.exp()?;
            let z = (&post.mu + (eps * std)?)?;
            (z, Some(kl_per_dim(&post.mu, logvar)?))
        }
        None => (post.mu.clone(), None),
    };
    let params = model.decode(&z)?;
    let recon = model.log_prob(&params, x)?.neg()?;
    let mut loss = recon.mean_all()?;
    if let Some(kl) = &kl {
        let penalized = if free_bits > 0.0 {
            kl.mean(0)?.maximum(free_bits)?.sum_all()?
        } else {
            (kl.sum_all()? / x.dim(0)? as f64)?
        };
        loss = (loss + (penalized * beta)?)?;
    }
    Ok(BatchTerms {
        loss,
        recon,
        kl,
        mu: post.mu,
        params,
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

    #[test]
    fn warmup_ramps_beta_linearly() {
        let o = Objective {
            beta: 2.0,
            kl_warmup_epochs: 4,
            free_bits: 0.0,
        };
        assert_eq!(o.beta_at(0.0), 0.0);
        assert_eq!(o.beta_at(1.0), 0.5);
        assert_eq!(o.beta_at(10.0), 2.0);
        let plain = Objective {
            kl_warmup_epochs: 0,
            ..o
        };
        assert_eq!(plain.beta_at(0.0), 2.0);
    }
}
