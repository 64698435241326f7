//! Per-epoch metrics and the running sums they are computed from.

use crate::likelihood::bits_per_dim;
use crate::model::ModelKind;
use crate::objective::BatchTerms;
use candle_core::Result;
use vaelab_data::SplitKind;

/// Threshold on Var_x(E_q[z_d]) above which a latent dimension counts as active (Burda et al.).
pub const ACTIVE_UNIT_THRESHOLD: f64 = 0.01;

/// The metrics of one split after one epoch. Per-sample means, in nats.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub split: SplitKind,
    /// The optimized objective: recon + β·KL (KL after free bits).
    pub loss: f64,
    /// −ELBO = recon + KL; `None` for the AE, which has no ELBO.
    pub neg_elbo: Option<f64>,
    /// −E_q[log p(x|z)] (for the AE: −log p(x|z = enc(x))).
    pub recon: f64,
    /// KL(q(z|x) ‖ p(z)); `None` for the AE.
    pub kl: Option<f64>,
    /// The KL as it entered the loss (β, warm-up, free bits); `None` for the AE.
    pub kl_weighted: Option<f64>,
    /// The KL weight in force (at the end of the epoch for train).
    pub beta: f64,
    /// KL per latent dimension; `None` for the AE and under the VampPrior (no per-dimension
    /// KL: its mixture does not factorize).
    pub kl_per_dim: Option<Vec<f64>>,
    /// Latent dimensions with Var(μ_d) > 0.01 over the split; `None` for the AE.
    pub active_units: Option<usize>,
    /// The same count per stochastic layer, z₁ first (a layer above z₁ counted on its mean
    /// along the mean path, μ₂(μ₁(x))); `None` for the AE.
    pub active_by_layer: Option<Vec<usize>>,
    /// −E_q[log P(k|z)] in bits/dim, with P the mass of the quantized image (evaluation only).
    pub recon_bpd: Option<f64>,
    /// −ELBO with that mass, in bits/dim: the discrete bound; `None` for the AE and in training.
    pub elbo_bpd: Option<f64>,
    /// I_q(x; z) on the test images (test rows of VAE runs).
    pub mi: Option<f64>,
    /// Encoder (E-step) updates in this epoch (train rows).
    pub encoder_updates: Option<u64>,
    /// Decoder (M-step) updates in this epoch (train rows).
    pub decoder_updates: Option<u64>,
    /// Wall seconds spent on this split in this epoch.
    pub seconds: f64,
    /// Images per second.
    pub samples_per_sec: f64,
}

/// Sums over the batches of an epoch.
#[derive(Debug)]
pub(crate) struct Sums {
    /// Each stochastic layer's size, z₁ first.
    sizes: Vec<usize>,
    n: usize,
    loss: f64,
    recon: f64,
    /// Σ KL over images and dimensions.
    kl: f64,
    kl_dim: Vec<f64>,
    /// Whether every batch had a KL per dimension (not under the VampPrior).
    per_dim: bool,
    mu: Vec<f64>,
    mu_sq: Vec<f64>,
    /// Σ −log P(k|z) over images, when the batches were also scored as masses.
    neg_log_mass: Option<f64>,
}

impl Sums {
    /// Sums over latents of these layer sizes, z₁ first.
    pub fn new(sizes: &[usize]) -> Self {
        let latent = sizes.iter().sum();
        Self {
            sizes: sizes.to_vec(),
            n: 0,
            loss: 0.0,
            recon: 0.0,
            kl: 0.0,
            kl_dim: vec![0.0; latent],
            per_dim: true,
            mu: vec![0.0; latent],
            mu_sq: vec![0.0; latent],
            neg_log_mass: None,
        }
    }

    /// Adds a batch's Σ log P(k|z) (the mass of its quantized images, in nats).
    pub fn add_log_mass(&mut self, log_mass: f64) {
        *self.neg_log_mass.get_or_insert(0.0) -= log_mass;
    }

    /// Adds a batch whose mean loss was `loss`.
    pub fn add(&mut self, terms: &BatchTerms, loss: f64) -> Result<()> {
        let b = terms.recon.dim(0)?;
        self.n += b;
        self.loss += loss * b as f64;
        self.recon += f64::from(terms.recon.sum_all()?.to_scalar::<f32>()?);
        if let Some(kl) = &terms.kl {
            match kl.per_dim() {
                Some(per_dim) => {
                    let sums = per_dim.sum(0)?.to_vec1::<f32>()?;
                    self.kl += sums.iter().map(|&v| f64::from(v)).sum::<f64>();
                    add_into(&mut self.kl_dim, &sums);
                }
                None => {
                    self.per_dim = false;
                    self.kl += f64::from(kl.per_image()?.sum_all()?.to_scalar::<f32>()?);
                }
            }
        }
        add_into(&mut self.mu, &terms.mu.sum(0)?.to_vec1::<f32>()?);
        add_into(&mut self.mu_sq, &terms.mu.sqr()?.sum(0)?.to_vec1::<f32>()?);
        Ok(())
    }

    pub fn finish(
        self,
        kind: ModelKind,
        epoch: usize,
        split: SplitKind,
        beta: f64,
        seconds: f64,
        dims: usize,
    ) -> EpochMetrics {
        let n = self.n.max(1) as f64;
        let recon = self.recon / n;
        let loss = self.loss / n;
        let vae = kind == ModelKind::Vae;
        let kl_per_dim: Vec<f64> = self.kl_dim.iter().map(|s| s / n).collect();
        let kl: f64 = if self.per_dim {
            kl_per_dim.iter().sum()
        } else {
            self.kl / n
        };
        let is_active: Vec<bool> = self
            .mu
            .iter()
            .zip(&self.mu_sq)
            .map(|(s, sq)| *sq / n - (*s / n).powi(2) > ACTIVE_UNIT_THRESHOLD)
            .collect();
        let active = is_active.iter().filter(|&&a| a).count();
        let mut at = 0;
        let by_layer: Vec<usize> = self
            .sizes
            .iter()
            .map(|&size| {
                let count = is_active[at..at + size].iter().filter(|&&a| a).count();
                at += size;
                count
            })
            .collect();
        EpochMetrics {
            epoch,
            split,
            loss,
            neg_elbo: vae.then_some(recon + kl),
            recon,
            kl: vae.then_some(kl),
            kl_weighted: vae.then_some(loss - recon),
            beta,
            kl_per_dim: (vae && self.per_dim).then_some(kl_per_dim),
            active_units: vae.then_some(active),
            active_by_layer: vae.then_some(by_layer),
            recon_bpd: self.neg_log_mass.map(|m| bits_per_dim(m / n, dims)),
            elbo_bpd: self
                .neg_log_mass
                .filter(|_| vae)
                .map(|m| bits_per_dim(m / n + kl, dims)),
            mi: None,
            encoder_updates: None,
            decoder_updates: None,
            seconds,
            samples_per_sec: self.n as f64 / seconds.max(1e-9),
        }
    }
}

fn add_into(acc: &mut [f64], v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, &b)| *a += f64::from(b));
}
