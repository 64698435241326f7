//! The one training loop: every model kind and likelihood goes through [`Trainer`].

use crate::metrics::{EpochMetrics, Sums};
use crate::objective::{batch_terms, BatchTerms, Objective};
use crate::optim::{Adam, AdamState};
use crate::schedule::{AggressiveState, Plateau, Schedule};
use crate::{
    estep, init, iwae, rng, Architecture, Body, GapSplit, Kernels, Likelihood, Model, ModelKind,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::{Binarize, Dataset, Split, SplitKind};

/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 1000;
/// Test images of the mutual-information estimate: it cannot exceed log of this (9.2 nats; a
/// Fashion-MNIST VAE's rate is ~15 nats, so fewer images saturate it sooner: 2000 gave 7.47 of
/// a 7.60 ceiling at latent 10).
pub const MI_IMAGES: usize = 10_000;

/// Which weights an update moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Encoder,
    Decoder,
}

/// Encoder and decoder updates of an epoch.
#[derive(Debug, Default)]
struct Updates {
    encoder: u64,
    decoder: u64,
}

/// The random streams of an epoch's updates: ε, and the aggressive schedule's extra batches.
struct Draws {
    noise: rng::Rng64,
    extra: rng::Rng64,
}

/// Everything a training run needs besides its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub likelihood: Likelihood,
    pub latent_dim: usize,
    /// The encoder's and decoder's network.
    pub body: Body,
    pub objective: Objective,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub binarize: Binarize,
    /// Train on the first N training images only.
    pub train_subset: Option<usize>,
    /// Evaluate on the first N test images only.
    pub test_subset: Option<usize>,
    /// K of the IWAE bound (0: skip the estimate).
    pub iw_samples: usize,
    /// Test images the IWAE bound is computed on.
    pub iw_test_n: usize,
    /// Test images whose ELBO gap is split by an explicit E-step (0: skip; at most iw_test_n
    /// are used, the IWAE bound's images).
    pub gap_test_n: usize,
    /// Adam steps of the per-image E-step.
    pub estep_iters: usize,
    /// How encoder and decoder updates interleave.
    pub schedule: Schedule,
}

impl TrainConfig {
    /// Grey levels of the pixels trained on: 256 (8-bit), or 2 when binarized.
    pub fn data_levels(&self) -> u16 {
        match self.binarize {
            Binarize::None => crate::LEVELS_8BIT,
            Binarize::Static | Binarize::Dynamic => 2,
        }
    }

    /// The likelihood that scores bits/dim: the model's as a mass on [`Self::data_levels`].
    pub fn mass(&self) -> Likelihood {
        self.likelihood.scored_on(self.data_levels())
    }

    /// The model this configuration trains on `data`'s images.
    pub fn architecture(&self, data: &Dataset) -> Architecture {
        Architecture {
            kind: self.model,
            image: data.shape(),
            body: self.body.clone(),
            latent_dim: self.latent_dim,
            likelihood: self.likelihood,
        }
    }
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the loss became non-finite in epoch {epoch} at step {step} (last good epoch: {})", epoch - 1)]
    Diverged { epoch: usize, step: usize },
    /// The stop flag was raised mid-epoch; the epoch is dropped, the last checkpoint stands.
    #[error("stopped during epoch {epoch}")]
    Stopped { epoch: usize },
}

/// A model, its optimizer and the data it trains on.
pub struct Trainer<'d> {
    cfg: TrainConfig,
    data: &'d Dataset,
    device: Device,
    varmap: VarMap,
    model: Model,
    /// One Adam over every weight (joint), or the encoder's then the decoder's.
    opts: Vec<Adam>,
    /// Where the aggressive schedule stands (unused by the others).
    aggressive: AggressiveState,
    /// The last MI estimate and the epoch it was drawn for: the aggressive schedule's check
    /// and the test metrics of the same epoch share it (the model does not change between).
    mi_cache: std::sync::Mutex<Option<(usize, f64)>>,
    /// Raised by a signal (Ctrl-C, Slurm's SIGTERM): stop at the next step.
    stop: Option<&'d AtomicBool>,
}

impl<'d> Trainer<'d> {
    /// A freshly initialized model (seeded by `cfg.seed`), on the fused kernels where it can.
    pub fn new(cfg: TrainConfig, data: &'d Dataset, device: Device) -> Result<Self, TrainError> {
        Self::with_kernels(cfg, data, device, Kernels::Fused)
    }

    /// As [`Trainer::new`], with `kernels` on the CPU (other devices take the reference ops).
    pub fn with_kernels(
        cfg: TrainConfig,
        data: &'d Dataset,
        device: Device,
        kernels: Kernels,
    ) -> Result<Self, TrainError> {
        let arch = cfg.architecture(data);
        let varmap = VarMap::new();
        init::seeded(&arch, &varmap, cfg.seed, &device)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let model = Model::with_kernels(arch, vb, kernels)?;
        let named: Vec<(String, candle_core::Var)> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let opts = if cfg.schedule.splits_optimizers() {
            let (enc, dec): (Vec<_>, Vec<_>) = named
                .into_iter()
                .partition(|(name, _): &(String, _)| name.starts_with("enc."));
            vec![
                Adam::with_kernels(enc, cfg.lr, model.kernels())?,
                Adam::with_kernels(dec, cfg.lr, model.kernels())?,
            ]
        } else {
            vec![Adam::with_kernels(named, cfg.lr, model.kernels())?]
        };
        Ok(Self {
            cfg,
            data,
            device,
            varmap,
            model,
            opts,
            aggressive: AggressiveState::default(),
            mi_cache: std::sync::Mutex::new(None),
            stop: None,
        })
    }

    /// Makes [`Trainer::train_epoch`] give up at the next step once `flag` is raised, so a
    /// process told to stop exits in a step's time, not an epoch's.
    pub fn stop_when(&mut self, flag: &'d AtomicBool) {
        self.stop = Some(flag);
    }

    /// The configuration being trained.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    fn len(&self, kind: SplitKind) -> usize {
        let n = self.data.split(kind, self.cfg.binarize).len();
        let subset = match kind {
            SplitKind::Train => self.cfg.train_subset,
            SplitKind::Test => self.cfg.test_subset,
        };
        subset.map_or(n, |s| s.min(n))
    }

    fn steps_per_epoch(&self) -> usize {
        self.len(SplitKind::Train).div_ceil(self.cfg.batch_size)
    }

    /// One pass over the (shuffled) training set; `epoch` is 1-based. The schedule decides
    /// which weights each batch updates; the epoch's metrics are the running means of each
    /// batch's first forward pass (for the aggressive schedule, its decoder step's).
    pub fn train_epoch(&mut self, epoch: usize) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        // The model is about to change: no MI estimate of the old one may be reused.
        if let Ok(cache) = self.mi_cache.get_mut() {
            *cache = None;
        }
        let seed = self.cfg.seed;
        let n_train = self.len(SplitKind::Train);
        let order = rng::permutation(&mut rng::stream(seed, rng::Stream::Shuffle, epoch), n_train);
        let mut draws = Draws {
            noise: rng::stream(seed, rng::Stream::Noise, epoch),
            extra: rng::stream(seed, rng::Stream::Aggressive, epoch),
        };
        let mut bin_rng = rng::stream(seed, rng::Stream::Binarize, epoch);
        let dynamic = self.cfg.binarize == Binarize::Dynamic;
        let split = self.data.split(SplitKind::Train, self.cfg.binarize);
        let steps = self.steps_per_epoch();
        let (dim, latent) = (self.data.dim(), self.cfg.latent_dim);
        let mut sums = Sums::new(latent);
        let mut buf = Vec::new();
        let mut beta = self.cfg.objective.beta;
        let mut updates = Updates::default();
        for (step, idx) in order.chunks(self.cfg.batch_size).enumerate() {
            if self.stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Err(TrainError::Stopped { epoch });
            }
            split.gather(idx, dynamic.then_some(&mut bin_rng), &mut buf);
            let x = Tensor::from_slice(&buf, (idx.len(), dim), &self.device)?;
            beta = self
                .cfg
                .objective
                .beta_at((epoch - 1) as f64 + step as f64 / steps as f64);
            let at = (epoch, step + 1, beta);
            let (terms, loss) = match self.cfg.schedule {
                Schedule::Alternating { e_steps, m_steps } => {
                    let first = self.descend(Part::Encoder, &x, &mut draws, at)?;
                    for _ in 1..e_steps {
                        self.descend(Part::Encoder, &x, &mut draws, at)?;
                    }
                    for _ in 0..m_steps {
                        self.descend(Part::Decoder, &x, &mut draws, at)?;
                    }
                    updates.encoder += e_steps as u64;
                    updates.decoder += m_steps as u64;
                    first
                }
                Schedule::Aggressive if self.aggressive.active => {
                    updates.encoder += self.lag_encoder(&x, split, &mut draws, at)?;
                    updates.decoder += 1;
                    self.descend(Part::Decoder, &x, &mut draws, at)?
                }
                Schedule::Joint | Schedule::Aggressive => {
                    updates.encoder += 1;
                    updates.decoder += 1;
                    self.descend(Part::All, &x, &mut draws, at)?
                }
            };
            sums.add(&terms, loss)?;
        }
        if self.cfg.schedule == Schedule::Aggressive && self.aggressive.active {
            if let Some(mi) = self.mutual_information(epoch)? {
                self.aggressive.observe(mi);
            }
        }
        let mut m = sums.finish(
            self.cfg.model,
            epoch,
            SplitKind::Train,
            beta,
            start.elapsed().as_secs_f64(),
            dim,
        );
        m.encoder_updates = Some(updates.encoder);
        m.decoder_updates = Some(updates.decoder);
        Ok(m)
    }

    /// One forward pass on `x` with fresh ε and one update of `part`'s weights; returns the
    /// pass's terms and loss. `at` is (epoch, 1-based step, β), for the divergence error.
    fn descend(
        &mut self,
        part: Part,
        x: &Tensor,
        draws: &mut Draws,
        (epoch, step, beta): (usize, usize, f64),
    ) -> Result<(BatchTerms, f64), TrainError> {
        let eps = rng::normal_tensor(
            &mut draws.noise,
            (x.dim(0)?, self.cfg.latent_dim),
            &self.device,
        )?;
        let terms = batch_terms(&self.model, x, &eps, beta, self.cfg.objective.free_bits)?;
        let loss = f64::from(terms.loss.to_scalar::<f32>()?);
        if !loss.is_finite() {
            return Err(TrainError::Diverged { epoch, step });
        }
        // Joint: one optimizer over everything; split: the encoder's, then the decoder's.
        match (part, self.opts.len()) {
            (_, 1) | (Part::Encoder, _) => self.opts[0].backward_step(&terms.loss)?,
            (Part::Decoder, _) => self.opts[1].backward_step(&terms.loss)?,
            (Part::All, _) => {
                let grads = terms.loss.backward()?;
                for opt in &mut self.opts {
                    opt.step(&grads)?;
                }
            }
        }
        Ok((terms, loss))
    }

    /// The aggressive inner loop: encoder-only steps, first on `x`, then on random training
    /// batches, until [`Plateau`] says stop; returns how many.
    fn lag_encoder(
        &mut self,
        x: &Tensor,
        split: &Split,
        draws: &mut Draws,
        at: (usize, usize, f64),
    ) -> Result<u64, TrainError> {
        let n_train = self.len(SplitKind::Train);
        let (batch, dim) = (x.dim(0)?, self.data.dim());
        let dynamic = self.cfg.binarize == Binarize::Dynamic;
        let mut plateau = Plateau::default();
        let mut xe = x.clone();
        let mut buf = Vec::new();
        let mut steps = 0;
        loop {
            let (_, loss) = self.descend(Part::Encoder, &xe, draws, at)?;
            steps += 1;
            if !plateau.go_on(loss) {
                return Ok(steps);
            }
            let idx: Vec<usize> = (0..batch)
                .map(|_| draws.extra.random_range(0..n_train))
                .collect();
            split.gather(&idx, dynamic.then_some(&mut draws.extra), &mut buf);
            xe = Tensor::from_slice(&buf, (batch, dim), &self.device)?;
        }
    }

    /// I_q(x; z) over the first [`MI_IMAGES`] test images (`None` for the AE), one z per image
    /// drawn from the stream of `epoch`.
    pub fn mutual_information(&self, epoch: usize) -> Result<Option<f64>, TrainError> {
        if self.cfg.model == ModelKind::Ae {
            return Ok(None);
        }
        let cached = *self
            .mi_cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("MI cache lock poisoned".into()))?;
        if let Some((_, mi)) = cached.filter(|(e, _)| *e == epoch) {
            return Ok(Some(mi));
        }
        let split = self.data.split(SplitKind::Test, self.cfg.binarize);
        let n = self.len(SplitKind::Test).min(MI_IMAGES);
        let (mut mu, mut logvar) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut buf = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        for idx in indices.chunks(EVAL_BATCH) {
            split.gather(idx, None, &mut buf);
            let x = Tensor::from_slice(&buf, (idx.len(), self.data.dim()), &self.device)?;
            let post = self.model.encode(&x)?;
            mu.extend(post.mu.to_vec2::<f32>()?);
            if let Some(lv) = post.logvar {
                logvar.extend(lv.to_vec2::<f32>()?);
            }
        }
        let mut r = rng::stream(self.cfg.seed, rng::Stream::Mi, epoch);
        let eps: Vec<Vec<f32>> = (0..n)
            .map(|_| rng::normals(&mut r, self.cfg.latent_dim))
            .collect();
        let mi = crate::mi::mutual_information(&mu, &logvar, &eps);
        if let Ok(mut c) = self.mi_cache.lock() {
            *c = Some((epoch, mi));
        }
        Ok(Some(mi))
    }

    /// Scores a split without training, with one z sample per image (seeded by `epoch`).
    pub fn evaluate(&self, kind: SplitKind, epoch: usize) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        let split = self.data.split(kind, self.cfg.binarize);
        let n = self.len(kind);
        let beta = self.cfg.objective.beta_at(epoch as f64);
        let mut noise = rng::stream(self.cfg.seed, rng::Stream::Eval, epoch);
        let mut sums = Sums::new(self.cfg.latent_dim);
        let mass = self.cfg.mass();
        let mut buf = Vec::new();
        let indices: Vec<usize> = (0..n).collect();
        for idx in indices.chunks(EVAL_BATCH) {
            split.gather(idx, None, &mut buf);
            let x = Tensor::from_slice(&buf, (idx.len(), self.data.dim()), &self.device)?;
            let eps =
                rng::normal_tensor(&mut noise, (idx.len(), self.cfg.latent_dim), &self.device)?;
            let terms = batch_terms(&self.model, &x, &eps, beta, self.cfg.objective.free_bits)?;
            let loss = f64::from(terms.loss.to_scalar::<f32>()?);
            sums.add(&terms, loss)?;
            // The same z's decoder output, scored as the mass of the quantized image; a model
            // trained on the mass already has it as its recon.
            let log_mass = if mass == self.cfg.likelihood {
                terms.recon.neg()?
            } else {
                self.model.log_prob_as(mass, &terms.params.detach(), &x)?
            };
            sums.add_log_mass(f64::from(log_mass.sum_all()?.to_scalar::<f32>()?));
        }
        let mut m = sums.finish(
            self.cfg.model,
            epoch,
            kind,
            beta,
            start.elapsed().as_secs_f64(),
            self.data.dim(),
        );
        if kind == SplitKind::Test {
            m.mi = self.mutual_information(epoch)?;
        }
        Ok(m)
    }

    /// The IWAE estimate of test log p(x) (`None` for the AE or when `iw_samples` is 0), also
    /// scored as the mass of the quantized images (bits/dim).
    pub fn iwae(&self) -> Result<Option<iwae::IwaeEstimate>, TrainError> {
        self.iwae_with(Some(self.cfg.mass()), 0)
    }

    /// As [`Trainer::iwae`], scoring the samples also with `mass` when given; `draw` picks the
    /// estimator's random stream (0 in runs; others measure its Monte-Carlo spread).
    pub fn iwae_with(
        &self,
        mass: Option<Likelihood>,
        draw: usize,
    ) -> Result<Option<iwae::IwaeEstimate>, TrainError> {
        if self.cfg.model == ModelKind::Ae || self.cfg.iw_samples == 0 {
            return Ok(None);
        }
        let split = self.data.split(SplitKind::Test, self.cfg.binarize);
        let n = self.cfg.iw_test_n.min(split.len());
        let mut r = rng::stream(self.cfg.seed, rng::Stream::Iwae, draw);
        Ok(Some(iwae::estimate(
            &self.model,
            split,
            iwae::Plan {
                images: n,
                samples: self.cfg.iw_samples,
                mass,
            },
            &mut r,
            &self.device,
        )?))
    }

    /// The ELBO gap of `iw` split into amortization and approximation gaps by an explicit
    /// E-step on the first `gap_test_n` of its images (`None` for the AE or when skipped).
    pub fn gap_split(&self, iw: &iwae::IwaeEstimate) -> Result<Option<GapSplit>, TrainError> {
        self.gap_split_with(iw, 0)
    }

    /// As [`Trainer::gap_split`], on the estimator's random stream `draw`.
    pub fn gap_split_with(
        &self,
        iw: &iwae::IwaeEstimate,
        draw: usize,
    ) -> Result<Option<GapSplit>, TrainError> {
        let n = self.cfg.gap_test_n.min(iw.images);
        if self.cfg.model == ModelKind::Ae || n == 0 {
            return Ok(None);
        }
        let split = self.data.split(SplitKind::Test, self.cfg.binarize);
        // The bound's own per-image values on the split's images: no second IWAE pass.
        let base = iw.first(n);
        let mut r = rng::stream(self.cfg.seed, rng::Stream::EStep, draw);
        Ok(Some(estep::split_gap(
            &self.frozen_model()?,
            split,
            &base,
            self.cfg.estep_iters,
            &mut r,
            &self.device,
        )?))
    }

    /// The model's weights by layer name.
    fn weights(&self) -> Result<HashMap<String, Tensor>, TrainError> {
        Ok(self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect())
    }

    /// The model on detached copies of its weights: the E-step's gradients then stop at z.
    fn frozen_model(&self) -> Result<Model, TrainError> {
        let tensors = self.weights()?.into_iter();
        let detached = tensors.map(|(k, t)| (k, t.detach())).collect();
        let vb = VarBuilder::from_tensors(detached, DType::F32, &self.device);
        Ok(Model::with_kernels(
            self.model.arch().clone(),
            vb,
            self.model.kernels(),
        )?)
    }

    /// Writes a resumable checkpoint as safetensors: the weights under their layer names
    /// (`enc.0.weight`, …), Adam's moments under `optim.m.*` / `optim.v.*`, its step count
    /// and the number of finished epochs.
    pub fn save_checkpoint(&self, path: &Path, epochs_done: usize) -> Result<(), TrainError> {
        let mut tensors = self.weights()?;
        let mut steps = Vec::new();
        for opt in &self.opts {
            let state = opt.state()?;
            for ((name, m), v) in opt.names().zip(state.m).zip(state.v) {
                let n = m.len();
                tensors.insert(
                    format!("optim.m.{name}"),
                    Tensor::from_vec(m, n, &Device::Cpu)?,
                );
                tensors.insert(
                    format!("optim.v.{name}"),
                    Tensor::from_vec(v, n, &Device::Cpu)?,
                );
            }
            steps.push(state.step as i64);
        }
        let counters = [steps[0], epochs_done as i64];
        tensors.insert(
            "optim.step_epoch".into(),
            Tensor::from_slice(&counters, 2, &Device::Cpu)?,
        );
        // Split optimizers: the decoder's step count, and the aggressive schedule's state.
        if let Some(&dec) = steps.get(1) {
            tensors.insert(
                "optim.dec_step".into(),
                Tensor::from_slice(&[dec], 1, &Device::Cpu)?,
            );
            let state = self.aggressive.to_vec();
            tensors.insert(
                "schedule.state".into(),
                Tensor::from_vec(state, 3, &Device::Cpu)?,
            );
        }
        Ok(candle_core::safetensors::save(&tensors, path)?)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`]; returns its finished
    /// epochs. The next epoch then draws exactly what it would have drawn uninterrupted.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<usize, TrainError> {
        let mut tensors = candle_core::safetensors::load(path, &self.device)?;
        let mut take = |name: &str| {
            tensors.remove(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("{}: no tensor {name}", path.display()))
            })
        };
        {
            let vars = self
                .varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
            for (name, var) in vars.iter() {
                var.set(&take(name)?)?;
            }
        }
        let bad = |what: &str| candle_core::Error::Msg(format!("{}: bad {what}", path.display()));
        let counters = take("optim.step_epoch")?.to_vec1::<i64>()?;
        let (step, epochs) = match counters[..] {
            [s, e] if s >= 0 && e >= 0 => (s as u64, e as usize),
            _ => return Err(bad("optim.step_epoch").into()),
        };
        let mut steps = vec![step];
        if self.opts.len() == 2 {
            match take("optim.dec_step")?.to_vec1::<i64>()?[..] {
                [s] if s >= 0 => steps.push(s as u64),
                _ => return Err(bad("optim.dec_step").into()),
            }
            let state = take("schedule.state")?.to_vec1::<f64>()?;
            self.aggressive =
                AggressiveState::from_slice(&state).ok_or_else(|| bad("schedule.state"))?;
        }
        for (opt, step) in self.opts.iter_mut().zip(steps) {
            let names: Vec<String> = opt.names().map(String::from).collect();
            let mut m = Vec::with_capacity(names.len());
            let mut v = Vec::with_capacity(names.len());
            for name in &names {
                m.push(take(&format!("optim.m.{name}"))?.to_vec1::<f32>()?);
                v.push(take(&format!("optim.v.{name}"))?.to_vec1::<f32>()?);
            }
            opt.restore(AdamState { step, m, v })?;
        }
        Ok(epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaelab_data::Split;

    /// 8x8 images of one bright row and one bright column, with grey noise: 2 latent factors.
    fn toy(n: usize, offset: usize) -> Split {
        let mut images = Vec::with_capacity(n * 64);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let k = i + offset;
            let (r, c) = ((k * 7) % 8, (k * 3 + k / 8) % 8);
            for p in 0..64 {
                let on = p / 8 == r || p % 8 == c;
                images.push(if on {
                    0.95
                } else {
                    0.05 + 0.02 * ((k + p) % 3) as f32
                });
            }
            labels.push(r as u8);
        }
        Split::new(images, labels, vaelab_data::ImageShape::grey(8, 8))
    }

    fn toy_data() -> Dataset {
        Dataset::new("toy", "memory", toy(512, 0), toy(128, 1000))
    }

    fn cfg(model: ModelKind) -> TrainConfig {
        TrainConfig {
            model,
            likelihood: Likelihood::Bernoulli,
            latent_dim: 2,
            body: Body::Mlp { hidden: vec![32] },
            objective: Objective {
                beta: 1.0,
                kl_warmup_epochs: 0,
                free_bits: 0.0,
            },
            epochs: 8,
            batch_size: 32,
            lr: 3e-3,
            seed: 11,
            binarize: Binarize::None,
            train_subset: None,
            test_subset: None,
            iw_samples: 200,
            iw_test_n: 128,
            gap_test_n: 128,
            estep_iters: 100,
            schedule: Schedule::Joint,
        }
    }

    fn plan(images: usize, samples: usize) -> iwae::Plan {
        iwae::Plan {
            images,
            samples,
            mass: Some(Likelihood::Bernoulli.scored_on(256)),
        }
    }

    /// A fresh VAE trainer of `cfg` with another likelihood.
    fn vae_with(likelihood: Likelihood, data: &Dataset) -> Trainer<'_> {
        let c = TrainConfig {
            likelihood,
            ..cfg(ModelKind::Vae)
        };
        Trainer::new(c, data, Device::Cpu).unwrap()
    }

    /// The training loss of epoch 1 and of epoch `epochs`.
    fn first_and_last_loss(t: &mut Trainer<'_>, epochs: usize) -> (f64, f64) {
        let first = t.train_epoch(1).unwrap().loss;
        let last = (2..=epochs).map(|e| t.train_epoch(e).unwrap().loss).last();
        (first, last.unwrap_or(first))
    }

    fn trained(model: ModelKind, data: &Dataset) -> Trainer<'_> {
        let c = cfg(model);
        let mut t = Trainer::new(c.clone(), data, Device::Cpu).unwrap();
        for e in 1..=c.epochs {
            t.train_epoch(e).unwrap();
        }
        t
    }

    fn without_time(mut m: EpochMetrics) -> EpochMetrics {
        m.seconds = 0.0;
        m.samples_per_sec = 0.0;
        m
    }

    #[test]
    fn same_seed_gives_identical_metrics_and_another_seed_does_not() {
        let data = toy_data();
        let run = |seed: u64| {
            let mut t = Trainer::new(
                TrainConfig {
                    seed,
                    binarize: Binarize::Dynamic,
                    ..cfg(ModelKind::Vae)
                },
                &data,
                Device::Cpu,
            )
            .unwrap();
            (1..=2)
                .map(|e| without_time(t.train_epoch(e).unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn training_lowers_the_test_loss() {
        let data = toy_data();
        let fresh = Trainer::new(cfg(ModelKind::Vae), &data, Device::Cpu).unwrap();
        let before = fresh
            .evaluate(SplitKind::Test, 0)
            .unwrap()
            .neg_elbo
            .unwrap();
        let after = trained(ModelKind::Vae, &data)
            .evaluate(SplitKind::Test, 9)
            .unwrap()
            .neg_elbo
            .unwrap();
        assert!(after < before - 5.0, "test -ELBO {before} -> {after}");
    }

    /// The explicit E-step on a trained VAE: it raises the mean ELBO (by 0.036 nats on this toy,
    /// ~10 standard errors), lowers no image's ELBO by more than Monte-Carlo noise (0.05 nats:
    /// each image's ELBO is a 200-sample mean, the encoder's and the optimum's drawn with the
    /// same ε), the two gaps sum to the ELBO gap, and with K = 2000 the approximation gap is
    /// ≥ 0 up to the same noise.
    #[test]
    fn estep_raises_the_elbo_and_the_gaps_sum_to_the_elbo_gap() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        let gap = t.gap_split(&iw).unwrap().unwrap();
        assert_eq!(gap.images, 128);
        assert!(gap.amortization_gap > 0.01, "{gap:?}");
        let sum = gap.amortization_gap + gap.approximation_gap;
        assert!((sum - iw.gap).abs() < 1e-9, "{sum} vs {}", iw.gap);
        // Step 0 and every step's 4-sample estimate (too noisy here to compare ends).
        assert_eq!(gap.curve.len(), 100 + 1);
        // Per image: the optimum's ELBO against the encoder's, both from 200 samples.
        let split = data.split(SplitKind::Test, Binarize::None);
        let frozen = t.frozen_model().unwrap();
        let mut r = rng::stream(3, rng::Stream::EStep, 7);
        let best = estep::optimize(&frozen, split, 128, 100, &mut r, &Device::Cpu).unwrap();
        let plan = iwae::Plan {
            images: 128,
            samples: 200,
            mass: None,
        };
        let mut same = rng::stream(3, rng::Stream::Iwae, 7);
        let star = iwae::estimate_with(
            &frozen,
            split,
            plan,
            Some((&best.mu, &best.logvar)),
            &mut same.clone(),
            &Device::Cpu,
        )
        .unwrap();
        let enc = iwae::estimate(&frozen, split, plan, &mut same, &Device::Cpu).unwrap();
        for (i, (s, e)) in star.elbos.iter().zip(&enc.elbos).enumerate() {
            assert!(s > &(e - 0.05), "image {i}: ELBO* {s} < encoder's {e}");
        }
        // log p(x) from K = 2000 against ELBO*: the approximation gap is not negative.
        let big = t
            .gap_split(
                &iwae::estimate(
                    &frozen,
                    split,
                    iwae::Plan {
                        samples: 2000,
                        ..plan
                    },
                    &mut r,
                    &Device::Cpu,
                )
                .unwrap(),
            )
            .unwrap()
            .unwrap();
        assert!(big.approximation_gap > -0.05, "{big:?}");
    }

    /// On fewer images than the bound's, the split reads the bound's own per-image values.
    #[test]
    fn gap_split_on_a_prefix_of_the_bounds_images() {
        let data = toy_data();
        let mut t = trained(ModelKind::Vae, &data);
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        assert_eq!(iw.first(iw.images).log_px, iw.log_px);
        t.cfg.gap_test_n = 40;
        let gap = t.gap_split(&iw).unwrap().unwrap();
        let prefix = iw.first(40);
        assert_eq!(
            (gap.images, gap.log_px, gap.elbo),
            (40, prefix.log_px, prefix.elbo)
        );
        let sum = gap.amortization_gap + gap.approximation_gap;
        assert!((sum - prefix.gap).abs() < 1e-9);
    }

    /// The E-step moves only the per-image (μ, log σ²): the model's weights are bit-identical.
    #[test]
    fn estep_leaves_the_model_untouched() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let before = t
            .varmap
            .all_vars()
            .iter()
            .map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect::<Vec<_>>();
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        t.gap_split(&iw).unwrap().unwrap();
        let after = t
            .varmap
            .all_vars()
            .iter()
            .map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(before, after);
        let ae = trained(ModelKind::Ae, &data);
        assert!(ae.gap_split(&iw).unwrap().is_none());
    }

    /// The convolutional body trains through the same loop: on the 8×8 toy images (two
    /// stride-2 layers: 8 → 4 → 2) the test −ELBO falls by more than 5 nats in 8 epochs.
    #[test]
    fn the_conv_body_trains() {
        let data = toy_data();
        let cfg = TrainConfig {
            body: Body::Conv {
                channels: vec![8, 16],
            },
            ..cfg(ModelKind::Vae)
        };
        let mut t = Trainer::new(cfg.clone(), &data, Device::Cpu).unwrap();
        let before = t.evaluate(SplitKind::Test, 0).unwrap().neg_elbo.unwrap();
        for epoch in 1..=cfg.epochs {
            t.train_epoch(epoch).unwrap();
        }
        let after = t.evaluate(SplitKind::Test, 8).unwrap().neg_elbo.unwrap();
        assert!(after < before - 5.0, "test -ELBO {before} -> {after}");
    }

    /// Scoring images side by side on single-threaded lanes gives the numbers of one thread,
    /// and the reference ops agree with the fused ones.
    #[test]
    fn iwae_is_the_same_on_one_thread_on_lanes_and_on_the_reference_ops() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let split = data.split(SplitKind::Test, Binarize::None);
        let run = |threads: usize| {
            crate::threads::in_pool(threads, || {
                let mut r = rng::stream(7, rng::Stream::Iwae, 1);
                iwae::estimate(t.model(), split, plan(50, 300), &mut r, &Device::Cpu).unwrap()
            })
            .unwrap()
        };
        let (one, two) = (run(1), run(2));
        assert_eq!((one.log_px, one.elbo), (two.log_px, two.elbo));
        let vb = VarBuilder::from_varmap(&t.varmap, DType::F32, &Device::Cpu);
        let reference =
            Model::with_kernels(t.model().arch().clone(), vb, Kernels::Reference).unwrap();
        let mut r = rng::stream(7, rng::Stream::Iwae, 1);
        let slow = iwae::estimate(&reference, split, plan(50, 300), &mut r, &Device::Cpu).unwrap();
        assert!((slow.log_px - one.log_px).abs() < 1e-3 * one.log_px.abs());
    }

    #[test]
    fn iwae_k1_is_the_elbo_in_expectation_and_more_samples_tighten_it() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let split = data.split(SplitKind::Test, Binarize::None);
        let mut r = rng::stream(99, rng::Stream::Iwae, 1);
        let mut est = |k: usize| {
            iwae::estimate(t.model(), split, plan(split.len(), k), &mut r, &Device::Cpu).unwrap()
        };
        // The ELBO with the analytic KL, averaged over 20 independent single-sample passes.
        let elbo = -(1..=20)
            .map(|e| t.evaluate(SplitKind::Test, e).unwrap().neg_elbo.unwrap())
            .sum::<f64>()
            / 20.0;
        let k1 = (0..20).map(|_| est(1).log_px).sum::<f64>() / 20.0;
        assert!(
            (k1 - elbo).abs() < 0.01 * elbo.abs(),
            "IWAE(K=1) {k1} vs ELBO {elbo}"
        );
        let k200 = est(200);
        assert!(
            k200.log_px > elbo,
            "IWAE(K=200) {} should exceed the ELBO {elbo}",
            k200.log_px
        );
        assert!(
            k200.log_px > est(5).log_px,
            "more samples give a tighter bound"
        );
        assert!(
            (k200.elbo - elbo).abs() < 0.01 * elbo.abs(),
            "mean log w is the ELBO"
        );
    }

    /// On a trained model the IWAE bound on the mass is tighter than the discrete ELBO, the
    /// IWAE pass's mean log weight is that ELBO, and the AE reports its reconstruction alone.
    #[test]
    fn bits_per_dim_of_the_mass_and_the_iwae_bound_below_it() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let m = t.evaluate(SplitKind::Test, 9).unwrap();
        let (recon, elbo) = (m.recon_bpd.unwrap(), m.elbo_bpd.unwrap());
        assert!(recon > 0.0 && elbo > recon && elbo < 8.0, "{recon} {elbo}");
        let iw = t.iwae().unwrap().unwrap();
        let nll = crate::bits_per_dim(-iw.log_px_mass.unwrap(), 64);
        let elbo_iw = crate::bits_per_dim(-iw.elbo_mass.unwrap(), 64);
        assert!(nll < elbo_iw, "IWAE {nll} vs ELBO {elbo_iw} bits/dim");
        assert!((elbo_iw - elbo).abs() < 0.02 * elbo, "{elbo_iw} vs {elbo}");
        // The mass is not the Bernoulli's own number: grey pixels are scored as CB masses.
        assert!((iw.log_px_mass.unwrap() - iw.log_px).abs() > 1.0);
        // Training rows carry no bits/dim: it is an evaluation metric.
        let m = vae_with(Likelihood::Bernoulli, &data)
            .train_epoch(1)
            .unwrap();
        assert_eq!((m.recon_bpd, m.elbo_bpd), (None, None));

        let ae = trained(ModelKind::Ae, &data)
            .evaluate(SplitKind::Test, 1)
            .unwrap();
        assert!(ae.recon_bpd.is_some() && ae.elbo_bpd.is_none());
    }

    /// Trained on masses, a learned σ has no clamp at 0.01 to lean on and needs none: the loss
    /// stays finite and falls, and the model's bits/dim beat the uniform 8 (the toy's background
    /// is uniform over 3 levels: about 1.6 bits/dim at best).
    #[test]
    fn the_discretized_families_train_on_the_mass() {
        let data = toy_data();
        for kind in [
            crate::LikelihoodKind::GaussianLearned,
            crate::LikelihoodKind::Laplace,
            crate::LikelihoodKind::DiscretizedLogistic,
        ] {
            let mut t = vae_with(Likelihood::new(kind, 0.05, true), &data);
            let (first, last) = first_and_last_loss(&mut t, 30);
            assert!(last < first, "{kind:?}: {first} -> {last}");
            let m = t.evaluate(SplitKind::Test, 30).unwrap();
            // Trained on the mass, the recon is the mass: nats and bits/dim say the same.
            let recon_bpd = crate::bits_per_dim(m.recon, 64);
            assert!((recon_bpd - m.recon_bpd.unwrap()).abs() < 1e-4, "{kind:?}");
            if kind != crate::LikelihoodKind::Laplace {
                // A fixed scale of 0.05 caps even a perfect mean at 4.7 bits/dim and gets there
                // slowly; the learned scales pass 8 within these 480 steps.
                assert!(m.elbo_bpd.unwrap() < 8.0, "{kind:?}: {:?}", m.elbo_bpd);
            }
        }
    }

    #[test]
    fn autoencoder_has_no_kl_and_no_iwae() {
        let data = toy_data();
        let t = trained(ModelKind::Ae, &data);
        let m = t.evaluate(SplitKind::Test, 1).unwrap();
        assert_eq!(
            (m.kl, m.neg_elbo, m.kl_weighted, m.active_units),
            (None, None, None, None)
        );
        assert!(
            (m.loss - m.recon).abs() < 1e-9,
            "the AE's loss is its reconstruction"
        );
        assert!(t.iwae().unwrap().is_none());
    }

    #[test]
    fn resuming_from_a_checkpoint_reproduces_the_uninterrupted_run() {
        let schedules = [
            Schedule::Joint,
            Schedule::Alternating {
                e_steps: 2,
                m_steps: 1,
            },
            Schedule::Aggressive,
        ];
        for schedule in schedules {
            let data = toy_data();
            let c = TrainConfig {
                binarize: Binarize::Dynamic,
                schedule,
                ..cfg(ModelKind::Vae)
            };
            let mut straight = Trainer::new(c.clone(), &data, Device::Cpu).unwrap();
            let want: Vec<_> = (1..=4)
                .map(|e| without_time(straight.train_epoch(e).unwrap()))
                .collect();

            let dir = tempfile::tempdir().unwrap();
            let ckpt = dir.path().join("c.safetensors");
            let mut first = Trainer::new(c.clone(), &data, Device::Cpu).unwrap();
            for e in 1..=2 {
                first.train_epoch(e).unwrap();
            }
            first.save_checkpoint(&ckpt, 2).unwrap();
            drop(first);
            let mut resumed = Trainer::new(c, &data, Device::Cpu).unwrap();
            assert_eq!(resumed.load_checkpoint(&ckpt).unwrap(), 2);
            let got: Vec<_> = (3..=4)
                .map(|e| without_time(resumed.train_epoch(e).unwrap()))
                .collect();
            assert_eq!(got, want[2..], "{schedule:?}: bit-identical after a resume");
        }
    }

    fn weights_of(t: &Trainer<'_>, prefix: &str) -> Vec<(String, Vec<f32>)> {
        let mut w: Vec<_> = t
            .weights()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    }

    /// An alternating E-step moves only the encoder (every decoder weight bit-identical) and an
    /// M-step only the decoder; the epoch counts both kinds of updates.
    #[test]
    fn alternating_steps_move_only_their_half() {
        let data = toy_data();
        let c = TrainConfig {
            schedule: Schedule::Alternating {
                e_steps: 3,
                m_steps: 2,
            },
            ..cfg(ModelKind::Vae)
        };
        let mut t = Trainer::new(c, &data, Device::Cpu).unwrap();
        let split = data.split(SplitKind::Train, Binarize::None);
        let mut buf = Vec::new();
        split.gather(&(0..32).collect::<Vec<_>>(), None, &mut buf);
        let x = Tensor::from_slice(&buf, (32, 64), &Device::Cpu).unwrap();
        let mut draws = Draws {
            noise: rng::stream(1, rng::Stream::Noise, 1),
            extra: rng::stream(1, rng::Stream::Aggressive, 1),
        };
        for (part, moves, stays) in [
            (Part::Encoder, "enc.", "dec."),
            (Part::Decoder, "dec.", "enc."),
        ] {
            let (before_moves, before_stays) = (weights_of(&t, moves), weights_of(&t, stays));
            t.descend(part, &x, &mut draws, (1, 1, 1.0)).unwrap();
            assert_eq!(
                weights_of(&t, stays),
                before_stays,
                "{part:?} moved {stays}"
            );
            assert_ne!(
                weights_of(&t, moves),
                before_moves,
                "{part:?} left {moves} alone"
            );
        }
        let m = t.train_epoch(1).unwrap();
        assert_eq!(
            (m.encoder_updates, m.decoder_updates),
            (Some(3 * 16), Some(2 * 16))
        );
    }

    /// The aggressive schedule runs extra encoder steps (at least one per batch, at most 100),
    /// and its MI is logged on test rows.
    #[test]
    fn aggressive_schedule_lags_the_decoder() {
        let data = toy_data();
        let c = TrainConfig {
            schedule: Schedule::Aggressive,
            ..cfg(ModelKind::Vae)
        };
        let mut t = Trainer::new(c, &data, Device::Cpu).unwrap();
        let m = t.train_epoch(1).unwrap();
        let (enc, dec) = (m.encoder_updates.unwrap(), m.decoder_updates.unwrap());
        assert_eq!(dec, 16);
        assert!(enc > dec && enc <= 100 * dec, "{enc} encoder updates");
        let test = t.evaluate(SplitKind::Test, 1).unwrap();
        let mi = test.mi.unwrap();
        assert!(mi > 0.0 && mi <= (128f64).ln() + 0.1, "{mi}");
    }

    #[test]
    fn divergence_is_reported_not_written() {
        let data = toy_data();
        let c = TrainConfig {
            lr: 1e6,
            likelihood: Likelihood::GaussianLearned,
            ..cfg(ModelKind::Vae)
        };
        let mut t = Trainer::new(c, &data, Device::Cpu).unwrap();
        let err = (1..=20).find_map(|e| t.train_epoch(e).err());
        assert!(matches!(err, Some(TrainError::Diverged { .. })), "{err:?}");
    }

    #[test]
    fn every_likelihood_trains() {
        let data = toy_data();
        for lik in [
            Likelihood::Bernoulli,
            Likelihood::Gaussian { sigma: 0.1 },
            Likelihood::GaussianLearned,
            Likelihood::ContinuousBernoulli,
            Likelihood::Laplace { scale: 0.1 },
        ] {
            let mut t = vae_with(lik, &data);
            let (first, last) = first_and_last_loss(&mut t, 4);
            assert!(last < first, "{lik:?}: {first} -> {last}");
        }
    }

    /// The fused kernels (dense, likelihood, Adam) train the same model as candle's stock ops:
    /// the same loss curve within float tolerance, for the VAE and the AE, two likelihoods.
    #[test]
    fn fused_kernels_train_like_the_reference_ops() {
        let data = toy_data();
        for (model, likelihood) in [
            (ModelKind::Vae, Likelihood::Bernoulli),
            (ModelKind::Vae, Likelihood::GaussianLearned),
            (ModelKind::Ae, Likelihood::Bernoulli),
            (
                ModelKind::Vae,
                Likelihood::new(crate::LikelihoodKind::DiscretizedLogistic, 0.1, false),
            ),
        ] {
            let c = TrainConfig {
                likelihood,
                ..cfg(model)
            };
            let curve = |kernels: Kernels| {
                let mut t = Trainer::with_kernels(c.clone(), &data, Device::Cpu, kernels).unwrap();
                let mut losses: Vec<f64> =
                    (1..=3).map(|e| t.train_epoch(e).unwrap().loss).collect();
                losses.push(t.evaluate(SplitKind::Test, 3).unwrap().loss);
                losses
            };
            let (fused, reference) = (curve(Kernels::Fused), curve(Kernels::Reference));
            for (f, r) in fused.iter().zip(&reference) {
                let tol = 1e-3 * r.abs().max(1.0);
                assert!(
                    (f - r).abs() < tol,
                    "{model:?} {likelihood:?}: {fused:?} vs {reference:?}"
                );
            }
        }
    }
}
