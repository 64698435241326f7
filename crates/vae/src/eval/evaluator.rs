//! Scoring a model between updates: the per-epoch metrics of a split, the mutual information
//! (cached for the epoch it was drawn in), and the final IWAE bound and gap split.

use super::ais::{self, AisEstimate, Bdmc};
use super::estep::{self, GapSplit};
use super::iwae::{self, IwaeEstimate};
use super::metrics::{EpochMetrics, Sums};
use super::mi;
use crate::likelihood::Likelihood;
use crate::model::{Model, ModelKind};
use crate::objective::batch_terms;
use crate::rng;
use crate::train::{batch, TrainConfig, TrainError};
use candle_core::Device;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use vaelab_data::{Dataset, SplitKind};

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 1000;
/// Test images of the mutual-information estimate: it cannot exceed log of this (9.2 nats; a
/// Fashion-MNIST VAE's rate is ~15 nats, so fewer images saturate it sooner: 2000 gave 7.47 of
/// a 7.60 ceiling at latent 10).
pub const MI_IMAGES: usize = 10_000;

/// What is scored: a model, the run it belongs to, its data and device, and the signal flag
/// the final evaluation stops at.
#[derive(Clone, Copy)]
pub struct Subject<'a> {
    pub model: &'a Model,
    pub cfg: &'a TrainConfig,
    pub data: &'a Dataset,
    pub device: &'a Device,
    pub stop: Option<&'a AtomicBool>,
}

/// Evaluates a run's model; owns the MI estimate of the current epoch, which the aggressive
/// schedule's check and the test metrics share (the model does not change between them).
#[derive(Debug, Default)]
pub struct Evaluator {
    mi: Option<(usize, f64)>,
}

impl Evaluator {
    /// The model is about to change: no estimate of the old one may be reused.
    pub fn forget(&mut self) {
        self.mi = None;
    }

    /// I_q(x; z) over the first [`MI_IMAGES`] test images (`None` for the AE), one z per image
    /// drawn from the stream of `epoch`.
    pub fn mutual_information(
        &mut self,
        s: Subject<'_>,
        epoch: usize,
    ) -> Result<Option<f64>, TrainError> {
        if s.cfg.model == ModelKind::Ae {
            return Ok(None);
        }
        if let Some((_, mi)) = self.mi.filter(|(e, _)| *e == epoch) {
            return Ok(Some(mi));
        }
        let split = s.data.split(SplitKind::Test, s.cfg.binarize);
        let n = s.cfg.images(s.data, SplitKind::Test).min(MI_IMAGES);
        let (mut mu, mut logvar) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut buf = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        for idx in indices.chunks(EVAL_BATCH) {
            let x = batch(split, idx, None, &mut buf, s.device)?;
            let post = s.model.encode(&x)?;
            mu.extend(post.mu.to_vec2::<f32>()?);
            if let Some(lv) = post.logvar {
                logvar.extend(lv.to_vec2::<f32>()?);
            }
        }
        let mut r = rng::stream(s.cfg.seed, rng::Stream::Mi, epoch);
        let eps: Vec<Vec<f32>> = (0..n)
            .map(|_| rng::normals(&mut r, s.cfg.latent_dim))
            .collect();
        let mi = mi::mutual_information(&mu, &logvar, &eps);
        self.mi = Some((epoch, mi));
        Ok(Some(mi))
    }

    /// Scores a split without training, with one z sample per image (seeded by `epoch`).
    pub fn evaluate(
        &mut self,
        s: Subject<'_>,
        kind: SplitKind,
        epoch: usize,
    ) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let cfg = s.cfg;
        let split = s.data.split(kind, cfg.binarize);
        let n = cfg.images(s.data, kind);
        let beta = cfg.objective.beta_at(epoch as f64);
        let mut noise = rng::stream(cfg.seed, rng::Stream::Eval, epoch);
        let mut sums = Sums::new(&cfg.latent_sizes());
        let mass = cfg.mass();
        let mut buf = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        for idx in indices.chunks(EVAL_BATCH) {
            let x = batch(split, idx, None, &mut buf, s.device)?;
            let eps = rng::normal_tensor(&mut noise, (idx.len(), cfg.latent_width()), s.device)?;
            let terms = batch_terms(s.model, &x, &eps, beta, cfg.objective.free_bits)?;
            let loss = f64::from(terms.loss.to_scalar::<f32>()?);
            sums.add(&terms, loss)?;
            // The same z's decoder output, scored as the mass of the quantized image; a model
            // trained on the mass already has it as its recon.
            let log_mass = if mass == cfg.likelihood {
                terms.recon.neg()?
            } else {
                s.model.log_prob_as(mass, &terms.params.detach(), &x)?
            };
            sums.add_log_mass(f64::from(log_mass.sum_all()?.to_scalar::<f32>()?));
        }
        let mut m = sums.finish(
            cfg.model,
            epoch,
            kind,
            beta,
            start.elapsed().as_secs_f64(),
            s.data.dim(),
        );
        if kind == SplitKind::Test {
            m.mi = self.mutual_information(s, epoch)?;
        }
        Ok(m)
    }
}

/// The IWAE estimate of test log p(x) (`None` for the AE or when `iw_samples` is 0), the
/// samples also scored with `mass` when given; `draw` picks the estimator's random stream (0 in
/// runs; others measure its Monte-Carlo spread).
pub fn iwae_bound(
    s: Subject<'_>,
    mass: Option<Likelihood>,
    draw: usize,
) -> Result<Option<IwaeEstimate>, TrainError> {
    if s.cfg.model == ModelKind::Ae || s.cfg.iw_samples == 0 {
        return Ok(None);
    }
    let split = s.data.split(SplitKind::Test, s.cfg.binarize);
    let n = s.cfg.iw_test_n.min(split.len());
    let mut r = rng::stream(s.cfg.seed, rng::Stream::Iwae, draw);
    let plan = iwae::Plan {
        images: n,
        samples: s.cfg.iw_samples,
        mass,
    };
    let iw = iwae::estimate_with(s.model, split, plan, None, &mut r, s.device, s.stop)?;
    Ok(Some(iw))
}

/// The ELBO gap of `iw` split into amortization and approximation gaps by an explicit E-step
/// on the first `gap_test_n` of its images (`None` for the AE or when skipped), with `frozen`
/// the model on detached weights; `draw` picks the estimator's random stream.
pub fn gap_split(
    s: Subject<'_>,
    frozen: impl FnOnce() -> Result<Model, TrainError>,
    iw: &IwaeEstimate,
    draw: usize,
) -> Result<Option<GapSplit>, TrainError> {
    let n = s.cfg.gap_test_n.min(iw.images);
    if s.cfg.model == ModelKind::Ae || n == 0 {
        return Ok(None);
    }
    let split = s.data.split(SplitKind::Test, s.cfg.binarize);
    // The bound's own per-image values on the split's images: no second IWAE pass.
    let base = iw.first(n);
    let mut r = rng::stream(s.cfg.seed, rng::Stream::EStep, draw);
    Ok(Some(estep::split_gap(
        &frozen()?,
        split,
        &base,
        estep::Steps {
            max: s.cfg.estep_iters,
            tol: s.cfg.estep_tol,
        },
        &mut r,
        s.device,
        s.stop,
    )?))
}

/// The AIS estimate of test log p(x) on the first `ais_test_n` test images (`None` for the AE
/// or when `ais_test_n` is 0), with `frozen` the model on detached weights.
pub fn ais(
    s: Subject<'_>,
    frozen: impl FnOnce() -> Result<Model, TrainError>,
) -> Result<Option<AisEstimate>, TrainError> {
    if s.cfg.model == ModelKind::Ae || s.cfg.ais_test_n == 0 {
        return Ok(None);
    }
    let split = s.data.split(SplitKind::Test, s.cfg.binarize);
    let n = s.cfg.ais_test_n.min(s.cfg.images(s.data, SplitKind::Test));
    let mut r = rng::stream(s.cfg.seed, rng::Stream::Ais, 0);
    let est = ais::estimate(&frozen()?, split, n, s.cfg.ais, &mut r, s.device, s.stop)?;
    Ok(Some(est))
}

/// The BDMC sandwich on `bdmc_n` images simulated from the model (`None` for the AE or when
/// `bdmc_n` is 0), with `frozen` the model on detached weights.
pub fn bdmc(
    s: Subject<'_>,
    frozen: impl FnOnce() -> Result<Model, TrainError>,
) -> Result<Option<Bdmc>, TrainError> {
    if s.cfg.model == ModelKind::Ae || s.cfg.bdmc_n == 0 {
        return Ok(None);
    }
    let mut r = rng::stream(s.cfg.seed, rng::Stream::Bdmc, 0);
    let sandwich = ais::bdmc(
        &frozen()?,
        s.cfg.bdmc_n,
        s.cfg.ais,
        &mut r,
        s.device,
        s.stop,
    )?;
    Ok(Some(sandwich))
}
