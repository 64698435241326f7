//! The explicit E-step and the split of the ELBO gap (Cremer, Li & Duvenaud, "Inference
//! Suboptimality in Variational Autoencoders", ICML 2018).
//!
//! For a trained VAE, each image's Gaussian posterior parameters (μ, log σ²) start at the
//! encoder's output and are optimized alone, decoder and encoder frozen, to maximize that image's
//! ELBO: the best q of the diagonal-Gaussian family for this decoder, ELBO*. Then
//! log p(x) − ELBO = (ELBO* − ELBO) + (log p(x) − ELBO*): what amortizing inference costs plus
//! what the Gaussian family costs.

use super::iwae::{self, IwaeEstimate};
use crate::model::{Gaussian, Model};
use crate::objective::{kl_per_dim, log_prior_ratio, mean_field, per_layer, split_columns};
use crate::rng;
use crate::train::TrainError;
use candle_core::{Device, Result, Tensor, Var};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::Split;
use vaelab_kernels::Adam;

/// ε draws per image and optimization step.
pub const SAMPLES_PER_STEP: usize = 4;
/// Adam's step size for the per-image (μ, log σ²): latents live on the N(0, 1) scale.
pub const LEARNING_RATE: f64 = 1e-2;
/// Images optimized side by side (independent problems; one batch through the decoder).
const CHUNK: usize = 500;
/// Steps between two convergence checks of a chunk (see [`Steps::tol`]).
pub const CHECK_EVERY: usize = 25;

/// How long the E-step runs: at most `max` Adam steps per image, fewer where it has converged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    /// Adam steps at most.
    pub max: usize,
    /// A chunk of images stops when its mean ELBO, scored every [`CHECK_EVERY`] steps at one
    /// fixed set of ε draws (common random numbers: the difference of two checks carries
    /// little Monte-Carlo noise), gained less than `tol` nats per image since the last check.
    /// 0: always `max` steps, the draws of a fixed-length E-step.
    pub tol: f64,
}

impl Steps {
    /// Exactly `max` steps.
    pub fn fixed(max: usize) -> Self {
        Steps { max, tol: 0.0 }
    }
}

/// The per-image optimum found, and the mean ELBO estimate along the way.
#[derive(Debug, Clone, PartialEq)]
pub struct EStep {
    /// Optimized posterior means, one row per image.
    pub mu: Vec<Vec<f32>>,
    /// Optimized posterior log-variances.
    pub logvar: Vec<Vec<f32>>,
    /// Mean over the images of the [`SAMPLES_PER_STEP`]-sample ELBO estimate before step t
    /// (t = 0: the encoder's q) and after the last step, up to the longest-running chunk's
    /// last step; a chunk that converged earlier holds its last estimate.
    pub curve: Vec<f64>,
    /// Adam steps each image took (its chunk's; see [`Steps::tol`]).
    pub steps_mean: f64,
}

/// Optimizes (μ, log σ²) of each of the first `images` images of `split` for up to `steps.max`
/// Adam steps, starting from the encoder's output; `r` draws the ε. A raised `stop` ends it
/// between steps.
pub fn optimize(
    model: &Model,
    split: &Split,
    images: usize,
    steps: Steps,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<EStep, TrainError> {
    let (d, l) = (split.dim(), model.arch().latent_width());
    let iters = steps.max;
    let mut out = EStep {
        mu: Vec::with_capacity(images),
        logvar: Vec::with_capacity(images),
        curve: vec![0.0; iters + 1],
        steps_mean: 0.0,
    };
    let (mut longest, mut steps_sum) = (0, 0usize);
    let mut buf = Vec::new();
    let indices: Vec<usize> = (0..images).collect();
    for idx in indices.chunks(CHUNK) {
        let n = idx.len();
        split.gather(idx, None, &mut buf);
        let x = Tensor::from_slice(&buf, (n, d), device)?;
        let post = model.encode(&x)?;
        let Some(logvar) = post.logvar else {
            let why = "the E-step needs a stochastic encoder";
            return Err(candle_core::Error::Msg(why.into()).into());
        };
        let (mu0, lv0) = start(model, post.mu, logvar)?;
        let mu = Var::from_tensor(&mu0.detach().contiguous()?)?;
        let lv = Var::from_tensor(&lv0.detach().contiguous()?)?;
        let mut adam = Adam::new(
            vec![("mu".into(), mu.clone()), ("logvar".into(), lv.clone())],
            LEARNING_RATE,
        );
        let xs = Tensor::cat(&[&x; SAMPLES_PER_STEP], 0)?;
        // The checks' fixed draws, only when there are checks: tol = 0 keeps the stream of a
        // fixed-length E-step.
        let fixed = (steps.tol > 0.0)
            .then(|| rng::normal_tensor(r, (SAMPLES_PER_STEP * n, l), device))
            .transpose()?;
        let mut last_check: Option<f64> = None;
        let mut ran = iters;
        for t in 0..=iters {
            if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Err(TrainError::StoppedEvaluating("the E-step"));
            }
            let eps = rng::normal_tensor(r, (SAMPLES_PER_STEP * n, l), device)?;
            let elbo = elbo_sum(model, &xs, mu.as_tensor(), lv.as_tensor(), &eps)?;
            let estimate = f64::from(elbo.to_scalar::<f32>()?);
            out.curve[t] += estimate;
            let converged = match &fixed {
                Some(fixed) if t % CHECK_EVERY == 0 && t < iters => {
                    let (m, v) = (mu.as_tensor().detach(), lv.as_tensor().detach());
                    let now = f64::from(elbo_sum(model, &xs, &m, &v, fixed)?.to_scalar::<f32>()?);
                    let gain = last_check.map(|before| (now - before) / n as f64);
                    last_check = Some(now);
                    gain.is_some_and(|g| g < steps.tol)
                }
                _ => false,
            };
            if converged {
                // Later steps of the curve hold this chunk's last estimate.
                out.curve[t + 1..].iter_mut().for_each(|c| *c += estimate);
                ran = t;
                break;
            }
            if t < iters {
                adam.backward_step(&elbo.neg()?)?;
            }
        }
        longest = longest.max(ran);
        steps_sum += ran * n;
        out.mu.extend(mu.as_tensor().to_vec2::<f32>()?);
        out.logvar.extend(lv.as_tensor().to_vec2::<f32>()?);
    }
    out.curve.truncate(longest + 1);
    out.curve
        .iter_mut()
        .for_each(|c| *c /= images.max(1) as f64);
    out.steps_mean = steps_sum as f64 / images.max(1) as f64;
    Ok(out)
}

/// Where each image's q starts: the encoder's q(z₁|x), and for a hierarchy each layer above at
/// q(z_{n+1}|z_n) along the mean path, side by side in the columns.
fn start(model: &Model, mu: Tensor, logvar: Tensor) -> Result<(Tensor, Tensor)> {
    let Some(stack) = model.stack() else {
        return Ok((mu, logvar));
    };
    let path = stack.mean_path(&mu)?;
    let mus: Vec<&Tensor> = std::iter::once(&mu)
        .chain(path.iter().map(|q| &q.mu))
        .collect();
    let lvs: Vec<&Tensor> = std::iter::once(&logvar)
        .chain(path.iter().map(|q| &q.logvar))
        .collect();
    Ok((Tensor::cat(&mus, 1)?, Tensor::cat(&lvs, 1)?))
}

/// Σ over images of the S-sample ELBO, (1/S) Σ_s log p(x|z_s) − KL(q ‖ p), with z_s = μ + σ ε_s;
/// `xs` and `eps` hold S copies of the images' rows, sample after sample. A hierarchy's q is
/// a Gaussian per layer (every layer's parameters optimized), its KL as in training; under the
/// VampPrior the KL is sampled at the same draws.
fn elbo_sum(model: &Model, xs: &Tensor, mu: &Tensor, lv: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let s = xs.dim(0)? / mu.dim(0)?;
    let rep = |t: &Tensor| Tensor::cat(&vec![t; s], 0);
    let Some(stack) = model.stack() else {
        let std = (lv * 0.5)?.exp()?;
        let z = (rep(mu)? + (eps * rep(&std)?)?)?;
        let log_px = model.log_prob(&model.decode(&z)?, xs)?.sum_all()?;
        let Some(prior) = model.vamp()? else {
            let kl = kl_per_dim(mu, lv)?.sum_all()?;
            return (log_px / s as f64)? - kl;
        };
        // The VampPrior's KL has no closed form: sampled at the same S draws, as in training.
        let q = Gaussian {
            mu: rep(mu)?,
            logvar: rep(lv)?,
        };
        let ratio = log_prior_ratio(&prior.detached(), &q, &z, eps)?.sum_all()?;
        return (log_px + ratio)? / s as f64;
    };
    let sizes = model.arch().latent_sizes();
    let qs = per_layer(&rep(mu)?, &rep(lv)?, &sizes)?;
    let draw = mean_field(stack, &qs, &split_columns(eps, &sizes)?)?;
    let log_px = model.log_prob(&model.decode(&draw.z1)?, xs)?.sum_all()?;
    (log_px - draw.kl.sum_all()?)? / s as f64
}

/// Which estimate of log p(x) a gap split is measured against: the tightest of the lower
/// bounds it has on the same images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPxSource {
    /// The IWAE bound with the encoder's q as proposal.
    IwaeEncoder,
    /// The IWAE bound with the E-step's optimum q* as proposal.
    IwaeOptimum,
    /// Annealed importance sampling.
    Ais,
}

impl LogPxSource {
    /// The name the tables carry.
    pub fn as_str(self) -> &'static str {
        match self {
            LogPxSource::IwaeEncoder => "iwae_q",
            LogPxSource::IwaeOptimum => "iwae_qstar",
            LogPxSource::Ais => "ais",
        }
    }
}

/// The gap of one run split in two, in nats, averaged over the same test images.
#[derive(Debug, Clone, PartialEq)]
pub struct GapSplit {
    pub images: usize,
    /// ELBO of the encoder's q (the IWAE pass's mean log weight).
    pub elbo: f64,
    /// ELBO of the optimized q, from as many samples as the IWAE bound.
    pub elbo_star: f64,
    /// IWAE log p(x) with the encoder's q as proposal.
    pub log_px: f64,
    /// IWAE log p(x) with the E-step's q* as proposal, as many samples.
    pub log_px_star: f64,
    /// Monte-Carlo standard errors of `log_px_star` and `elbo_star` (see
    /// [`IwaeEstimate::standard_errors`]).
    pub star_se: (f64, f64),
    /// The log p(x) the split is against: the largest (tightest) of the lower bounds.
    pub log_px_split: f64,
    /// Which estimate that is.
    pub log_px_from: LogPxSource,
    /// ELBO* − ELBO: what amortizing inference costs.
    pub amortization_gap: f64,
    /// `log_px_split` − ELBO*: what the diagonal Gaussian family costs. Against the amortized
    /// q's IWAE bound alone it could go negative where the encoder is poor.
    pub approximation_gap: f64,
    /// The E-step's convergence curve (see [`EStep::curve`]).
    pub curve: Vec<f64>,
    /// Adam steps per image the E-step took (see [`EStep::steps_mean`]).
    pub estep_steps: f64,
    pub seconds: f64,
}

/// Splits `base`'s gap (an IWAE estimate on the first `base.images` images of `split`) with an
/// E-step of up to `steps.max` steps; `r` draws the E-step's ε, then the ELBO* samples. A raised `stop`
/// ends it between steps or passes.
pub fn split_gap(
    model: &Model,
    split: &Split,
    base: &IwaeEstimate,
    steps: Steps,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<GapSplit, TrainError> {
    let start = Instant::now();
    let n = base.images;
    let best = optimize(model, split, n, steps, r, device, stop)?;
    let plan = iwae::Plan {
        images: n,
        samples: base.samples,
        mass: None,
    };
    let star = iwae::estimate_with(
        model,
        split,
        plan,
        Some((&best.mu, &best.logvar)),
        r,
        device,
        stop,
    )?;
    let mut split = GapSplit {
        images: n,
        elbo: base.elbo,
        elbo_star: star.elbo,
        log_px: base.log_px,
        log_px_star: star.log_px,
        star_se: star.standard_errors(),
        log_px_split: base.log_px,
        log_px_from: LogPxSource::IwaeEncoder,
        amortization_gap: star.elbo - base.elbo,
        approximation_gap: base.log_px - star.elbo,
        curve: best.curve,
        estep_steps: best.steps_mean,
        seconds: start.elapsed().as_secs_f64(),
    };
    split.tighten(star.log_px, LogPxSource::IwaeOptimum);
    Ok(split)
}

impl GapSplit {
    /// Splits against `log_px` (another lower bound on the same images) if it is tighter.
    pub fn tighten(&mut self, log_px: f64, from: LogPxSource) {
        if log_px > self.log_px_split {
            self.log_px_split = log_px;
            self.log_px_from = from;
            self.approximation_gap = log_px - self.elbo_star;
        }
    }
}
