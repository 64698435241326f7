//! Annealed importance sampling of log p(x) (Neal 2001) and its sandwich on simulated data,
//! bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015), as Wu, Burda, Salakhutdinov &
//! Grosse (ICLR 2017) apply them to decoder-based models.
//!
//! Each chain starts at a draw of the encoder's q(z|x) (not the prior: the path to the posterior
//! is then short) and moves through f_β(z) = q(z|x)^(1−β) p(x, z)^β, β from 0 to 1 on a
//! sigmoidal schedule, by one HMC transition per step. Its log weight Σ_t (β_t − β_{t−1})
//! [log p(x, z_{t−1}) − log q(z_{t−1}|x)] makes (1/C) Σ_c w_c an unbiased estimate of p(x), so
//! its log is a stochastic lower bound. On an image simulated from the model, (z, x) ~ p(z)p(x|z),
//! its z is an exact posterior sample: the same path run backwards from it gives an unbiased
//! estimate of 1/p(x), so a stochastic upper bound. Between the two lies the truth; their
//! distance says how far AIS is from it at these settings.

use crate::likelihood;
use crate::model::{Mixture, Model};
use crate::rng;
use crate::train::TrainError;
use candle_core::{Device, Result, Tensor, Var};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::Split;

/// HMC's first step size, its clamp, and the acceptance rate it is adapted toward by a factor of
/// [`ADAPT`] per transition (Wu et al.'s code: 0.01, [1e-4, 0.5], 0.65, 1.02).
const STEP_START: f64 = 0.01;
const STEP_MIN: f64 = 1e-4;
const STEP_MAX: f64 = 0.5;
const TARGET_ACCEPT: f64 = 0.65;
const ADAPT: f64 = 1.02;
/// Width of the sigmoidal schedule (Grosse et al.'s `sigmoid_schedule`, rad = 4).
const SCHEDULE_RADIUS: f64 = 4.0;
/// Chain rows per pass through the decoder (images × chains).
const ROWS_PER_PASS: usize = 1024;

/// How hard AIS works: intermediate distributions, chains per image, leapfrog steps per HMC
/// transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub steps: usize,
    pub chains: usize,
    pub leapfrog: usize,
}

/// One AIS pass over a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct AisEstimate {
    pub images: usize,
    /// Mean over images of log (1/C) Σ_c w_c (a stochastic lower bound on log p(x)); for a
    /// reverse pass, of −log (1/C) Σ_c 1/w_c (a stochastic upper bound).
    pub log_px: f64,
    /// Each image's estimate, in image order.
    pub per_image: Vec<f64>,
    /// Mean over images of the standard deviation of the chains' log weights.
    pub chain_sd: f64,
    /// Monte-Carlo standard error of `log_px` (the chains' delta-method variance per image).
    pub se: f64,
    /// Mean Metropolis acceptance probability over every transition.
    pub acceptance: f64,
    pub seconds: f64,
}

/// The BDMC sandwich on images simulated from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Bdmc {
    /// Forward AIS on the simulated images (a stochastic lower bound).
    pub lower: AisEstimate,
    /// Reverse AIS from the latents they were simulated from (a stochastic upper bound).
    pub upper: AisEstimate,
}

impl Bdmc {
    /// upper − lower: at most this far is forward AIS from log p(x) on such images.
    pub fn width(&self) -> f64 {
        self.upper.log_px - self.lower.log_px
    }
}

/// β_0 = 0 < … < β_T = 1: a logistic curve on [−4, 4], rescaled to end at 0 and 1 (more steps
/// near both ends, where the distributions change fastest).
pub fn schedule(steps: usize) -> Vec<f64> {
    let steps = steps.max(1);
    let sig = |i: usize| {
        let t = -SCHEDULE_RADIUS + 2.0 * SCHEDULE_RADIUS * i as f64 / steps as f64;
        1.0 / (1.0 + (-t).exp())
    };
    let (lo, hi) = (sig(0), sig(steps));
    (0..=steps).map(|i| (sig(i) - lo) / (hi - lo)).collect()
}

/// The chains of one pass: images × chains rows, image-major, and what their target needs.
struct Chains<'a> {
    model: &'a Model,
    prior: Option<&'a Mixture>,
    /// Each row's image (rows, D).
    x: Tensor,
    /// Each row's q(z|x): mean and log-variance (rows × L).
    mu: Vec<f32>,
    logvar: Vec<f32>,
    latent: usize,
    chains: usize,
    device: &'a Device,
}

/// Where the chains are: z, log p(x, z) and its gradient in z, per row.
#[derive(Clone)]
struct State {
    z: Vec<f32>,
    log_joint: Vec<f64>,
    grad: Vec<f32>,
}

impl Chains<'_> {
    fn rows(&self) -> usize {
        self.mu.len() / self.latent
    }

    /// log p(x, z) per row and its gradient in z (the decoder's weights are fixed tensors, so
    /// only z's gradient is formed). Like every density of the bound, log p(z) leaves out the
    /// −½ log 2π per dimension that log q(z|x) leaves out too.
    fn evaluate(&self, z: Vec<f32>) -> Result<State> {
        let rows = self.rows();
        let var = Var::from_vec(z, (rows, self.latent), self.device)?;
        let zt = var.as_tensor();
        let log_px_z = self.model.log_prob(&self.model.decode(zt)?, &self.x)?;
        let log_pz = match self.prior {
            Some(mix) => mix.log_density(zt)?,
            None => (zt.sqr()?.sum(1)? * -0.5)?,
        };
        let joint = (log_px_z + log_pz)?;
        let grads = joint.sum_all()?.backward()?;
        let grad = grads
            .get(zt)
            .ok_or_else(|| candle_core::Error::Msg("AIS: no gradient reached z".into()))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(State {
            z: zt.flatten_all()?.to_vec1::<f32>()?,
            log_joint: joint.to_vec1::<f32>()?.into_iter().map(f64::from).collect(),
            grad,
        })
    }

    /// log q(z|x) of row `i` (without the −½ log 2π per dimension).
    fn log_q(&self, z: &[f32], i: usize) -> f64 {
        let l = self.latent;
        (0..l)
            .map(|j| {
                let (m, lv) = (self.mu[i * l + j], self.logvar[i * l + j]);
                let d = f64::from(z[i * l + j] - m);
                -0.5 * (d * d * f64::from(-lv).exp() + f64::from(lv))
            })
            .sum()
    }

    /// log f_β(z) of row `i` and its gradient in z, written into `grad`.
    fn log_target(&self, s: &State, i: usize, beta: f64, grad: &mut [f64]) -> f64 {
        let l = self.latent;
        for (j, g) in grad.iter_mut().enumerate() {
            let k = i * l + j;
            let dq = -f64::from(s.z[k] - self.mu[k]) * f64::from(-self.logvar[k]).exp();
            *g = (1.0 - beta) * dq + beta * f64::from(s.grad[k]);
        }
        (1.0 - beta) * self.log_q(&s.z, i) + beta * s.log_joint[i]
    }

    /// One HMC transition of every row toward f_β with each image's step size (adapted in
    /// place); returns the mean acceptance probability.
    fn transition(
        &self,
        s: &mut State,
        beta: f64,
        step: &mut [f64],
        leapfrog: usize,
        r: &mut rng::Rng64,
    ) -> Result<f64> {
        let (rows, l) = (self.rows(), self.latent);
        let mut p: Vec<f64> = (0..rows * l)
            .map(|_| r.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        let kinetic =
            |p: &[f64], i: usize| 0.5 * p[i * l..(i + 1) * l].iter().map(|v| v * v).sum::<f64>();
        let mut grad = vec![0.0; l];
        let mut h0 = vec![0.0; rows];
        let mut z: Vec<f32> = s.z.clone();
        for i in 0..rows {
            h0[i] = -self.log_target(s, i, beta, &mut grad) + kinetic(&p, i);
            let eps = step[i / self.chains];
            for j in 0..l {
                p[i * l + j] += 0.5 * eps * grad[j];
            }
        }
        let mut moved = s.clone();
        for n in 0..leapfrog {
            for i in 0..rows {
                let eps = step[i / self.chains];
                for j in 0..l {
                    z[i * l + j] += (eps * p[i * l + j]) as f32;
                }
            }
            moved = self.evaluate(z.clone())?;
            let last = n + 1 == leapfrog;
            for i in 0..rows {
                self.log_target(&moved, i, beta, &mut grad);
                let eps = step[i / self.chains] * if last { 0.5 } else { 1.0 };
                for j in 0..l {
                    p[i * l + j] += eps * grad[j];
                }
            }
        }
        let images = rows / self.chains;
        let mut accepted = vec![0.0; images];
        for i in 0..rows {
            let h1 = -self.log_target(&moved, i, beta, &mut grad) + kinetic(&p, i);
            let a = if (h0[i] - h1).is_nan() {
                0.0
            } else {
                (h0[i] - h1).exp().min(1.0)
            };
            accepted[i / self.chains] += a / self.chains as f64;
            if r.random::<f64>() < a {
                s.z[i * l..(i + 1) * l].copy_from_slice(&moved.z[i * l..(i + 1) * l]);
                s.grad[i * l..(i + 1) * l].copy_from_slice(&moved.grad[i * l..(i + 1) * l]);
                s.log_joint[i] = moved.log_joint[i];
            }
        }
        for (eps, a) in step.iter_mut().zip(&accepted) {
            let f = if *a > TARGET_ACCEPT {
                ADAPT
            } else {
                1.0 / ADAPT
            };
            *eps = (*eps * f).clamp(STEP_MIN, STEP_MAX);
        }
        Ok(accepted.iter().sum::<f64>() / images.max(1) as f64)
    }

    /// Runs the chains from `z` through `betas` in the order given (0 → 1 forward, 1 → 0 in
    /// reverse): each row's log weight Σ_j (b_j − b_{j−1}) [log p(x, z) − log q(z|x)], with a
    /// transition toward each b_j but the last. Returns the log weights and the mean acceptance.
    fn anneal(
        &self,
        z: Vec<f32>,
        betas: &[f64],
        leapfrog: usize,
        r: &mut rng::Rng64,
        stop: Option<&AtomicBool>,
    ) -> std::result::Result<(Vec<f64>, f64), TrainError> {
        let rows = self.rows();
        let mut s = self.evaluate(z)?;
        let mut log_w = vec![0.0; rows];
        let mut step = vec![STEP_START; rows / self.chains];
        let (mut acceptance, mut transitions) = (0.0, 0usize);
        for j in 1..betas.len() {
            if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Err(TrainError::StoppedEvaluating("AIS"));
            }
            let db = betas[j] - betas[j - 1];
            for (i, w) in log_w.iter_mut().enumerate() {
                *w += db * (s.log_joint[i] - self.log_q(&s.z, i));
            }
            if j + 1 < betas.len() {
                acceptance += self.transition(&mut s, betas[j], &mut step, leapfrog, r)?;
                transitions += 1;
            }
        }
        Ok((log_w, acceptance / transitions.max(1) as f64))
    }
}

/// log (1/n) Σ exp(v), in f64.
fn log_mean_exp(v: &[f64]) -> f64 {
    super::iwae::log_mean_exp(v)
}

/// Per image (C consecutive rows): the estimate, the chains' spread and the estimate's
/// Monte-Carlo variance. Forward log weights (of w, E w = p(x)) give log (1/C) Σ w; reverse
/// ones (of v, E v = 1/p(x)) give −log (1/C) Σ v.
fn per_image(log_w: &[f64], chains: usize, reverse: bool) -> Vec<(f64, f64, f64)> {
    log_w
        .chunks(chains)
        .map(|c| {
            let est = if reverse {
                -log_mean_exp(c)
            } else {
                log_mean_exp(c)
            };
            let mean = c.iter().sum::<f64>() / c.len() as f64;
            let var =
                c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (c.len().max(2) - 1) as f64;
            (est, var.sqrt(), super::iwae::variances(c).0)
        })
        .collect()
}

/// Images to anneal: pixels (images × D), and optionally each one's exact posterior sample.
struct Batch {
    x: Vec<f32>,
    start: Option<Vec<f32>>,
}

/// Runs AIS over `batches` of images, forward from q(z|x) or (with `start`) in reverse from the
/// given latents.
fn run(
    model: &Model,
    batches: impl Iterator<Item = Batch>,
    d: usize,
    settings: Settings,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<AisEstimate, TrainError> {
    let start = Instant::now();
    let l = model.arch().latent_dim;
    let c = settings.chains;
    let prior = model.vamp()?.map(|m| m.detached());
    let forward = schedule(settings.steps);
    let backward: Vec<f64> = forward.iter().rev().copied().collect();
    let mut results: Vec<(f64, f64, f64)> = Vec::new();
    let (mut acceptance, mut passes) = (0.0, 0usize);
    for batch in batches {
        let n = batch.x.len() / d;
        let x = Tensor::from_vec(batch.x, (n, d), device)?;
        let post = model.encode(&x)?;
        let Some(logvar) = post.logvar else {
            let why = "AIS needs a stochastic encoder";
            return Err(candle_core::Error::Msg(why.into()).into());
        };
        let repeat = |t: &Tensor| -> Result<Vec<f32>> {
            let rows = t.to_vec2::<f32>()?;
            Ok(rows
                .iter()
                .flat_map(|row| std::iter::repeat_n(row, c).flatten().copied())
                .collect())
        };
        let rows: Vec<u32> = (0..n as u32)
            .flat_map(|i| std::iter::repeat_n(i, c))
            .collect();
        let chains = Chains {
            model,
            prior: prior.as_ref(),
            x: x.index_select(&Tensor::from_vec(rows, n * c, device)?, 0)?,
            mu: repeat(&post.mu)?,
            logvar: repeat(&logvar)?,
            latent: l,
            chains: c,
            device,
        };
        let (z0, betas, reverse) = match batch.start {
            Some(z) => {
                let z: Vec<f32> = z
                    .chunks(l)
                    .flat_map(|row| std::iter::repeat_n(row, c).flatten().copied())
                    .collect();
                (z, &backward, true)
            }
            None => {
                let eps = rng::normals(r, n * c * l);
                let z = (0..n * c * l)
                    .map(|k| chains.mu[k] + eps[k] * (0.5 * chains.logvar[k]).exp())
                    .collect();
                (z, &forward, false)
            }
        };
        let (log_w, acc) = chains.anneal(z0, betas, settings.leapfrog, r, stop)?;
        results.extend(per_image(&log_w, c, reverse));
        acceptance += acc;
        passes += 1;
    }
    let images = results.len();
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / images.max(1) as f64;
    Ok(AisEstimate {
        images,
        log_px: mean(&mut results.iter().map(|r| r.0)),
        per_image: results.iter().map(|r| r.0).collect(),
        chain_sd: mean(&mut results.iter().map(|r| r.1)),
        se: results.iter().map(|r| r.2).sum::<f64>().sqrt() / images.max(1) as f64,
        acceptance: acceptance / passes.max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Images per pass for `chains` chains each.
fn images_per_pass(chains: usize) -> usize {
    (ROWS_PER_PASS / chains.max(1)).max(1)
}

/// AIS log p(x) of the first `images` images of `split`, `r` drawing every chain's randomness.
/// A one-layer model only (N(0, I) or the VampPrior). A raised `stop` ends it between steps.
pub fn estimate(
    model: &Model,
    split: &Split,
    images: usize,
    settings: Settings,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<AisEstimate, TrainError> {
    let d = split.dim();
    let indices: Vec<usize> = (0..images.min(split.len())).collect();
    let batches = indices.chunks(images_per_pass(settings.chains)).map(|idx| {
        let mut x = Vec::new();
        split.gather(idx, None, &mut x);
        Batch { x, start: None }
    });
    run(model, batches, d, settings, r, device, stop)
}

/// `n` images simulated from the model, with the latents they came from: z ~ p(z) (under the
/// VampPrior a uniformly drawn component, then its Gaussian), x ~ p(x|z).
pub fn simulate(
    model: &Model,
    n: usize,
    r: &mut rng::Rng64,
    device: &Device,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let l = model.arch().latent_dim;
    let eps = Tensor::from_vec(rng::normals(r, n * l), (n, l), device)?;
    let z = match model.vamp()? {
        None => eps,
        Some(mix) => {
            let k = mix.len()?;
            let picks: Vec<u32> = (0..n).map(|_| r.random_range(0..k) as u32).collect();
            let idx = Tensor::from_vec(picks, n, device)?;
            let q = mix.components();
            let (mu, lv) = (q.mu.index_select(&idx, 0)?, q.logvar.index_select(&idx, 0)?);
            (mu + (eps * (lv * 0.5)?.exp()?)?)?
        }
    };
    let params = model.decode(&z)?.to_vec2::<f32>()?;
    let lik = model.arch().likelihood;
    let x = params
        .iter()
        .flat_map(|row| likelihood::draw(lik, row, r))
        .collect();
    Ok((x, z.flatten_all()?.to_vec1::<f32>()?))
}

/// The BDMC sandwich on `n` images simulated from the model: forward AIS from q(z|x) and
/// reverse AIS from the simulating latents, with the same settings.
pub fn bdmc(
    model: &Model,
    n: usize,
    settings: Settings,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<Bdmc, TrainError> {
    let (x, z) = simulate(model, n, r, device)?;
    let (d, l) = (x.len() / n.max(1), model.arch().latent_dim);
    let per = images_per_pass(settings.chains);
    let batches = |with_start: bool| {
        let (x, z) = (&x, &z);
        (0..n).step_by(per).map(move |i| {
            let m = per.min(n - i);
            Batch {
                x: x[i * d..(i + m) * d].to_vec(),
                start: with_start.then(|| z[i * l..(i + m) * l].to_vec()),
            }
        })
    };
    let lower = run(model, batches(false), d, settings, r, device, stop)?;
    let upper = run(model, batches(true), d, settings, r, device, stop)?;
    Ok(Bdmc { lower, upper })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_rises_from_zero_to_one_steepest_in_the_middle() {
        let b = schedule(100);
        assert_eq!((b.len(), b[0], b[100]), (101, 0.0, 1.0));
        assert!(b.windows(2).all(|w| w[1] > w[0]));
        // A logistic curve: the middle step is the widest, the end steps the narrowest.
        let widths: Vec<f64> = b.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(widths[49] > 10.0 * widths[0] && (widths[0] - widths[99]).abs() < 1e-12);
    }
}
