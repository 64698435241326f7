//! The importance-weighted bound (Burda et al., 2016) on log p(x):
//! log p(x) ≥ log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), tight as K → ∞.

use crate::{rng, Model};
use candle_core::{Device, Result, Tensor};
use std::time::Instant;
use vaelab_data::Split;

/// Decoder rows per forward pass (images × K).
const ROWS_PER_PASS: usize = 8192;

/// Mean IWAE log p(x) over test images, with the ELBO estimated from the same samples.
#[derive(Debug, Clone, PartialEq)]
pub struct IwaeEstimate {
    /// Mean over images of the K-sample bound.
    pub log_px: f64,
    /// Mean over images and samples of log w (an unbiased ELBO estimate on the same images).
    pub elbo: f64,
    /// log_px − elbo ≥ 0 up to noise: how loose the ELBO is, E[KL(q(z|x) ‖ p(z|x))] bounded.
    pub gap: f64,
    pub images: usize,
    pub samples: usize,
    pub seconds: f64,
}

/// log-mean-exp of log weights, in f64.
pub fn log_mean_exp(w: &[f64]) -> f64 {
    let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + (w.iter().map(|x| (x - max).exp()).sum::<f64>() / w.len() as f64).ln()
}

/// The IWAE bound with `k` samples on the first `n` images of `split`.
pub fn estimate(
    model: &Model,
    split: &Split,
    n: usize,
    k: usize,
    r: &mut rng::Rng64,
    device: &Device,
) -> Result<IwaeEstimate> {
    let start = Instant::now();
    let (d, l) = (split.dim(), model.arch().latent_dim);
    let per_pass = (ROWS_PER_PASS / k).max(1);
    let (mut sum_bound, mut sum_elbo) = (0f64, 0f64);
    let mut buf = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    for idx in indices.chunks(per_pass) {
        split.gather(idx, None, &mut buf);
        let x = Tensor::from_slice(&buf, (idx.len(), d), device)?;
        let post = model.encode(&x)?;
        let mu = post.mu.to_vec2::<f32>()?;
        let logvar = match post.logvar {
            Some(lv) => lv.to_vec2::<f32>()?,
            None => candle_core::bail!("the IWAE bound needs a stochastic encoder"),
        };
        let rows = idx.len() * k;
        let mut z = Vec::with_capacity(rows * l);
        let mut log_prior_minus_q = Vec::with_capacity(rows);
        let eps = rng::normals(r, rows * l);
        for (i, (mu, lv)) in mu.iter().zip(&logvar).enumerate() {
            for s in 0..k {
                let e = &eps[(i * k + s) * l..(i * k + s + 1) * l];
                let mut acc = 0f64;
                for j in 0..l {
                    let zj = mu[j] + e[j] * (0.5 * lv[j]).exp();
                    z.push(zj);
                    // log p(z) − log q(z|x); the 2π terms cancel.
                    acc += -0.5 * f64::from(zj).powi(2)
                        + 0.5 * f64::from(e[j]).powi(2)
                        + 0.5 * f64::from(lv[j]);
                }
                log_prior_minus_q.push(acc);
            }
        }
        let params = model.decode(&Tensor::from_vec(z, (rows, l), device)?)?;
        // Each image's row of x serves its K rows of decoder output (no K-fold copy).
        let log_px_z = model.log_prob(&params, &x)?.to_vec1::<f32>()?;
        for i in 0..idx.len() {
            let w: Vec<f64> = (0..k)
                .map(|s| f64::from(log_px_z[i * k + s]) + log_prior_minus_q[i * k + s])
                .collect();
            sum_bound += log_mean_exp(&w);
            sum_elbo += w.iter().sum::<f64>() / k as f64;
        }
    }
    let n_f = n.max(1) as f64;
    let (log_px, elbo) = (sum_bound / n_f, sum_elbo / n_f);
    Ok(IwaeEstimate {
        log_px,
        elbo,
        gap: log_px - elbo,
        images: n,
        samples: k,
        seconds: start.elapsed().as_secs_f64(),
    })
}
