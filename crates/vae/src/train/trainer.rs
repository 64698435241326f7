//! The one training loop: every model kind, likelihood and schedule goes through [`Trainer`].

use super::batches::batch;
use super::checkpoint;
use super::config::TrainConfig;
use super::error::TrainError;
use super::schedule::Schedule;
use super::state::TrainState;
use super::step::{train_batch, Draws, StepCtx, Updates};
use crate::eval::{
    self, AisEstimate, Bdmc, EpochMetrics, Evaluator, GapSplit, IwaeEstimate, Subject, Sums,
};
use crate::likelihood::Likelihood;
use crate::model::Model;
use crate::rng;
use candle_core::Device;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::{Binarize, Dataset, SplitKind};
use vaelab_kernels::Kernels;

/// A model, its optimizers and the data it trains on.
pub struct Trainer<'d> {
    cfg: TrainConfig,
    data: &'d Dataset,
    device: Device,
    state: TrainState,
    evaluator: Evaluator,
    /// Raised by a signal (Ctrl-C, Slurm's SIGTERM): stop at the next step.
    stop: Option<&'d AtomicBool>,
}

/// The evaluator's view of a trainer's fields (disjoint from `evaluator`, so both can be
/// borrowed at once).
macro_rules! subject {
    ($t:expr) => {
        Subject {
            model: &$t.state.model,
            cfg: &$t.cfg,
            data: $t.data,
            device: &$t.device,
            stop: $t.stop,
        }
    };
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
        let state = TrainState::new(&cfg, cfg.architecture(data), &device, kernels)?;
        Ok(Self {
            cfg,
            data,
            device,
            state,
            evaluator: Evaluator::default(),
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
        &self.state.model
    }

    /// One pass over the (shuffled) training set; `epoch` is 1-based. The schedule decides
    /// which weights each batch updates; the epoch's metrics are the running means of each
    /// batch's first forward pass (for the aggressive schedule, its decoder step's).
    pub fn train_epoch(&mut self, epoch: usize) -> Result<EpochMetrics, TrainError> {
        let start = Instant::now();
        self.evaluator.forget();
        let seed = self.cfg.seed;
        let n_train = self.cfg.images(self.data, SplitKind::Train);
        let order = rng::permutation(&mut rng::stream(seed, rng::Stream::Shuffle, epoch), n_train);
        let mut draws = Draws {
            noise: rng::stream(seed, rng::Stream::Noise, epoch),
            extra: rng::stream(seed, rng::Stream::Aggressive, epoch),
        };
        let mut bin_rng = rng::stream(seed, rng::Stream::Binarize, epoch);
        let dynamic = self.cfg.binarize == Binarize::Dynamic;
        let split = self.data.split(SplitKind::Train, self.cfg.binarize);
        let steps = n_train.div_ceil(self.cfg.batch_size);
        let ctx = StepCtx {
            cfg: &self.cfg,
            device: &self.device,
            split,
            n_train,
        };
        let mut sums = Sums::new(&self.cfg.latent_sizes());
        let mut buf = Vec::new();
        let mut beta = self.cfg.objective.beta;
        let mut updates = Updates::default();
        for (step, idx) in order.chunks(self.cfg.batch_size).enumerate() {
            if self.stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                return Err(TrainError::Stopped { epoch });
            }
            let x = batch(
                split,
                idx,
                dynamic.then_some(&mut bin_rng),
                &mut buf,
                &self.device,
            )?;
            beta = self
                .cfg
                .objective
                .beta_at((epoch - 1) as f64 + step as f64 / steps as f64);
            let at = (epoch, step + 1, beta);
            let (terms, loss) =
                train_batch(&mut self.state, &ctx, &x, &mut draws, at, &mut updates)?;
            sums.add(&terms, loss)?;
        }
        if self.cfg.schedule == Schedule::Aggressive && self.state.aggressive.active {
            if let Some(mi) = self.mutual_information(epoch)? {
                self.state.aggressive.observe(mi);
            }
        }
        let mut m = sums.finish(
            self.cfg.model,
            epoch,
            SplitKind::Train,
            beta,
            start.elapsed().as_secs_f64(),
            self.data.dim(),
        );
        m.encoder_updates = Some(updates.encoder);
        m.decoder_updates = Some(updates.decoder);
        Ok(m)
    }

    /// I_q(x; z) over the first [`eval::MI_IMAGES`] test images (`None` for the AE), one z per
    /// image drawn from the stream of `epoch`.
    pub fn mutual_information(&mut self, epoch: usize) -> Result<Option<f64>, TrainError> {
        self.evaluator.mutual_information(subject!(self), epoch)
    }

    /// Scores a split without training, with one z sample per image (seeded by `epoch`).
    pub fn evaluate(&mut self, kind: SplitKind, epoch: usize) -> Result<EpochMetrics, TrainError> {
        self.evaluator.evaluate(subject!(self), kind, epoch)
    }

    /// The IWAE estimate of test log p(x) (`None` for the AE or when `iw_samples` is 0), also
    /// scored as the mass of the quantized images (bits/dim).
    pub fn iwae(&self) -> Result<Option<IwaeEstimate>, TrainError> {
        self.iwae_with(Some(self.cfg.mass()), 0)
    }

    /// As [`Trainer::iwae`], scoring the samples also with `mass` when given; `draw` picks the
    /// estimator's random stream (0 in runs; others measure its Monte-Carlo spread).
    pub fn iwae_with(
        &self,
        mass: Option<Likelihood>,
        draw: usize,
    ) -> Result<Option<IwaeEstimate>, TrainError> {
        eval::iwae_bound(subject!(self), mass, draw)
    }

    /// The ELBO gap of `iw` split into amortization and approximation gaps by an explicit
    /// E-step on the first `gap_test_n` of its images (`None` for the AE or when skipped).
    pub fn gap_split(&self, iw: &IwaeEstimate) -> Result<Option<GapSplit>, TrainError> {
        self.gap_split_with(iw, 0)
    }

    /// As [`Trainer::gap_split`], on the estimator's random stream `draw`.
    pub fn gap_split_with(
        &self,
        iw: &IwaeEstimate,
        draw: usize,
    ) -> Result<Option<GapSplit>, TrainError> {
        let frozen = || self.state.frozen_model(&self.device);
        eval::gap_split(subject!(self), frozen, iw, draw)
    }

    /// The AIS estimate of log p(x) on the first `ais_test_n` test images (`None` for the AE or
    /// when skipped).
    pub fn ais(&self) -> Result<Option<AisEstimate>, TrainError> {
        let frozen = || self.state.frozen_model(&self.device);
        eval::ais(subject!(self), frozen)
    }

    /// The BDMC sandwich on `bdmc_n` images simulated from the model (`None` for the AE or when
    /// skipped).
    pub fn bdmc(&self) -> Result<Option<Bdmc>, TrainError> {
        let frozen = || self.state.frozen_model(&self.device);
        eval::bdmc(subject!(self), frozen)
    }

    /// Writes a resumable checkpoint (see [`checkpoint`] for its tensors).
    pub fn save_checkpoint(&self, path: &Path, epochs_done: usize) -> Result<(), TrainError> {
        checkpoint::save(&self.state, path, epochs_done)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`]; returns its finished
    /// epochs. The next epoch then draws exactly what it would have drawn uninterrupted.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<usize, TrainError> {
        checkpoint::load(&mut self.state, path, &self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::Part;
    use super::*;
    use crate::eval::{estep, iwae};
    use crate::model::{Body, ModelKind};
    use crate::objective::Objective;
    use candle_core::{DType, Tensor};
    use candle_nn::VarBuilder;
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

    /// The IWAE objective at `samples` draws.
    fn iwae(samples: usize) -> Objective {
        Objective {
            bound: crate::Bound::Iwae,
            samples,
            ..Objective::default()
        }
    }

    fn cfg(model: ModelKind) -> TrainConfig {
        TrainConfig {
            model,
            likelihood: Likelihood::Bernoulli,
            latent_dim: 2,
            stack: Default::default(),
            prior: crate::model::Prior::Standard,
            body: Body::Mlp { hidden: vec![32] },
            objective: Objective::default(),
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
            estep_tol: 0.0,
            ais_test_n: 0,
            bdmc_n: 0,
            ais: crate::eval::ais::Settings {
                steps: 100,
                chains: 4,
                leapfrog: 5,
            },
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
        let mut fresh = Trainer::new(cfg(ModelKind::Vae), &data, Device::Cpu).unwrap();
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

    /// At one draw the IWAE objective trains exactly the ELBO's model; at k = 5 it gives an
    /// IWAE log p(x) at least as good as the ELBO-trained one's (Burda et al.'s finding; here
    /// on the toy).
    #[test]
    fn iwae_at_one_draw_is_the_elbo_and_five_draws_tighten_log_px() {
        let data = toy_data();
        let run = |objective: Objective| {
            let c = TrainConfig {
                objective,
                ..cfg(ModelKind::Vae)
            };
            let mut t = Trainer::new(c, &data, Device::Cpu).unwrap();
            for e in 1..=8 {
                t.train_epoch(e).unwrap();
            }
            let test = t.evaluate(SplitKind::Test, 8).unwrap().neg_elbo.unwrap();
            (test, t.iwae().unwrap().unwrap().log_px)
        };
        let (elbo_test, elbo_bound) = run(Objective::default());
        assert_eq!(run(iwae(1)), (elbo_test, elbo_bound), "k = 1 is the ELBO");
        let (_, five_bound) = run(iwae(5));
        assert!(
            five_bound > elbo_bound - 0.1,
            "log p(x): IWAE k=5 {five_bound} vs ELBO-trained {elbo_bound}"
        );
    }

    /// 200 samples on the first 128 test images, and the ε stream the E-step tests score with.
    fn star_plan() -> (iwae::Plan, rng::Rng64) {
        let plan = iwae::Plan {
            images: 128,
            samples: 200,
            mass: None,
        };
        (plan, rng::stream(3, rng::Stream::Iwae, 7))
    }

    /// The E-step's optimum q* on the first 128 test images after `steps`, and its estimate
    /// from [`star_plan`]'s samples.
    fn estep_optimum(
        frozen: &Model,
        split: &vaelab_data::Split,
        steps: estep::Steps,
    ) -> (estep::EStep, iwae::IwaeEstimate) {
        let mut r = rng::stream(3, rng::Stream::EStep, 7);
        let best = estep::optimize(frozen, split, 128, steps, &mut r, &Device::Cpu, None).unwrap();
        let (plan, mut same) = star_plan();
        let mus = Some((&best.mu[..], &best.logvar[..]));
        let star =
            iwae::estimate_with(frozen, split, plan, mus, &mut same, &Device::Cpu, None).unwrap();
        (best, star)
    }

    /// The E-step's early stop: with a tolerance it ends before its cap once the gain at
    /// fixed draws flattens, and its optimum scores (200 samples, the same ε for both) within
    /// 0.02 nats of the full run's; without one it takes every step.
    #[test]
    fn estep_stops_where_it_has_converged_and_lands_where_the_full_run_does() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let split = data.split(SplitKind::Test, Binarize::None);
        let frozen = t.state.frozen_model(&Device::Cpu).unwrap();
        let run = |steps: estep::Steps| {
            let (best, star) = estep_optimum(&frozen, split, steps);
            (best, star.elbo)
        };
        let (full, full_star) = run(estep::Steps::fixed(600));
        assert_eq!(full.steps_mean, 600.0);
        assert_eq!(full.curve.len(), 601);
        let (early, early_star) = run(estep::Steps {
            max: 600,
            tol: 1e-3,
        });
        assert!(early.steps_mean < 600.0, "{}", early.steps_mean);
        assert_eq!(early.steps_mean % estep::CHECK_EVERY as f64, 0.0);
        assert_eq!(early.curve.len(), early.steps_mean as usize + 1);
        assert!(
            (early_star - full_star).abs() < 0.02,
            "ELBO* after {} steps {early_star} vs 600 steps {full_star}",
            early.steps_mean
        );
    }

    /// The explicit E-step on a trained VAE, checked against its own estimates computed here
    /// separately: ELBO* ≥ the encoder's ELBO, per image up to Monte-Carlo noise (0.05 nats:
    /// each is a 200-sample mean with the same ε) and in the mean by 0.036 nats on this toy
    /// (~10 standard errors); the split's ELBO* is the mean of the per-image ELBO* computed
    /// here from its optimum; and IWAE log p(x) ≥ ELBO*, with K = 2000 up to the same noise.
    #[test]
    fn estep_raises_the_elbo_and_the_bound_stays_above_it() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        let gap = t.gap_split(&iw).unwrap().unwrap();
        assert_eq!(gap.images, 128);
        assert!(gap.amortization_gap > 0.01, "{gap:?}");
        assert!(
            gap.elbo_star > iw.elbo + 0.01,
            "ELBO* {} vs ELBO {}",
            gap.elbo_star,
            iw.elbo
        );
        assert!(
            iw.log_px > gap.elbo_star - 0.05,
            "log p(x) {} < ELBO* {}",
            iw.log_px,
            gap.elbo_star
        );
        // Step 0 and every step's 4-sample estimate (too noisy here to compare ends).
        assert_eq!(gap.curve.len(), 100 + 1);
        // Per image: the optimum's ELBO against the encoder's, both from 200 samples.
        let split = data.split(SplitKind::Test, Binarize::None);
        let frozen = t.state.frozen_model(&Device::Cpu).unwrap();
        let (_, star) = estep_optimum(&frozen, split, estep::Steps::fixed(100));
        let (plan, mut same) = star_plan();
        let enc = iwae::estimate(&frozen, split, plan, &mut same, &Device::Cpu).unwrap();
        for (i, (s, e)) in star.elbos.iter().zip(&enc.elbos).enumerate() {
            assert!(s > &(e - 0.05), "image {i}: ELBO* {s} < encoder's {e}");
        }
        let mean_star = star.elbos.iter().sum::<f64>() / star.elbos.len() as f64;
        eprintln!("ELBO*: split {} vs here {mean_star}", gap.elbo_star);
        assert!(
            (mean_star - gap.elbo_star).abs() < 0.01,
            "{mean_star} vs {}",
            gap.elbo_star
        );
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
                    &mut rng::stream(3, rng::Stream::Iwae, 8),
                    &Device::Cpu,
                )
                .unwrap(),
            )
            .unwrap()
            .unwrap();
        assert!(big.approximation_gap > -0.05, "{big:?}");
        // Split against the tightest bound: IWAE with q* is at least its own mean log weight
        // (ELBO*) image by image, so the approximation gap cannot be negative.
        assert!(big.approximation_gap >= 0.0, "{big:?}");
        assert_eq!(big.log_px_split, big.log_px.max(big.log_px_star), "{big:?}");
    }

    /// log p(x|z) + log p(z) (with its −log 2π) of image `xi` at each point of a `side` × `side`
    /// grid on the box `[a0, a1] × [b0, b1]`, and the grid's cell area.
    fn joint_on_grid(model: &Model, xi: &Tensor, bx: [f64; 4], side: usize) -> (Vec<f64>, f64) {
        let (ha, hb) = (
            (bx[1] - bx[0]) / (side - 1) as f64,
            (bx[3] - bx[2]) / (side - 1) as f64,
        );
        let mut grid = Vec::with_capacity(side * side * 2);
        for a in 0..side {
            for b in 0..side {
                grid.push((bx[0] + a as f64 * ha) as f32);
                grid.push((bx[2] + b as f64 * hb) as f32);
            }
        }
        let z = Tensor::from_vec(grid.clone(), (side * side, 2), &Device::Cpu).unwrap();
        let lp = model.log_prob(&model.decode(&z).unwrap(), xi).unwrap();
        let terms = lp
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(grid.chunks(2))
            .map(|(&l, z)| {
                let sq = f64::from(z[0]).powi(2) + f64::from(z[1]).powi(2);
                f64::from(l) - 0.5 * sq - (2.0 * std::f64::consts::PI).ln()
            })
            .collect();
        (terms, ha * hb)
    }

    /// log p(x) of each row of `x` (n, D) by quadrature over a 2-D latent, in f64: a coarse
    /// 361 × 361 grid on [−9, 9]² finds where the posterior's mass is (within e^−25 of its
    /// peak), then a 401 × 401 grid over that box sums it. The truth the estimators are held to.
    fn quadrature(model: &Model, x: &[f32], d: usize) -> Vec<f64> {
        let lse = |t: &[f64], area: f64| {
            let max = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + (t.iter().map(|v| (v - max).exp()).sum::<f64>() * area).ln()
        };
        x.chunks(d)
            .map(|row| {
                let xi = Tensor::from_slice(row, (1, d), &Device::Cpu).unwrap();
                let side = 361;
                let (coarse, _) = joint_on_grid(model, &xi, [-9.0, 9.0, -9.0, 9.0], side);
                let h = 18.0 / (side - 1) as f64;
                let max = coarse.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut bx = [f64::MAX, f64::MIN, f64::MAX, f64::MIN];
                for (k, t) in coarse.iter().enumerate() {
                    if *t > max - 25.0 {
                        let (a, b) = (-9.0 + (k / side) as f64 * h, -9.0 + (k % side) as f64 * h);
                        bx = [
                            bx[0].min(a - h),
                            bx[1].max(a + h),
                            bx[2].min(b - h),
                            bx[3].max(b + h),
                        ];
                    }
                }
                assert!(
                    bx[0] > -9.0 && bx[1] < 9.0 && bx[2] > -9.0 && bx[3] < 9.0,
                    "the posterior reaches the grid's edge: {bx:?}"
                );
                let (fine, area) = joint_on_grid(model, &xi, bx, 401);
                lse(&fine, area)
            })
            .collect()
    }

    /// Every estimator of log p(x) against quadrature on a trained 2-D-latent model: the ELBO,
    /// ELBO*, the IWAE bounds and AIS below the truth (AIS within 0.05 nats of it), the gap split
    /// adding up to the tightest of them, and BDMC's sandwich around the truth on simulated images.
    #[test]
    fn every_estimator_is_held_to_log_px_by_quadrature() {
        let data = toy_data();
        let mut t = trained(ModelKind::Vae, &data);
        t.cfg.ais_test_n = 16;
        t.cfg.bdmc_n = 16;
        t.cfg.gap_test_n = 16;
        t.cfg.ais = crate::eval::ais::Settings {
            steps: 300,
            chains: 8,
            leapfrog: 5,
        };
        let frozen = t.state.frozen_model(&Device::Cpu).unwrap();
        let split = data.split(SplitKind::Test, Binarize::None);
        let mut x = Vec::new();
        split.gather(&(0..16).collect::<Vec<_>>(), None, &mut x);
        let truth = quadrature(&frozen, &x, 64);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let true_mean = mean(&truth);

        // The IWAE bound: at K = 100,000 on the truth (to 0.005 nats), its ELBO below it; at
        // K = 1000 within its noise (0.03 nats measured) above it at most.
        let iwae_at = |k: usize, seed: u64| {
            let mut r = rng::stream(seed, rng::Stream::Iwae, 0);
            iwae::estimate(&frozen, split, plan(16, k), &mut r, &Device::Cpu).unwrap()
        };
        let (iw, big) = (iwae_at(1000, 1), iwae_at(100_000, 2));
        let ais = t.ais().unwrap().unwrap();
        for i in 0..16 {
            let truth = truth[i];
            assert!(
                big.elbos[i] < truth,
                "image {i}: ELBO {} vs {truth}",
                big.elbos[i]
            );
            assert!(
                (big.bounds[i] - truth).abs() < 0.005,
                "image {i}: IWAE {} vs {truth}",
                big.bounds[i]
            );
            assert!(
                iw.bounds[i] < truth + 0.05,
                "image {i}: IWAE {} vs {truth}",
                iw.bounds[i]
            );
            assert!(
                (ais.per_image[i] - truth).abs() < 0.05,
                "image {i}: AIS {} vs {truth}",
                ais.per_image[i]
            );
        }
        assert!(
            (ais.log_px - true_mean).abs() < 0.01,
            "AIS {} vs {true_mean}",
            ais.log_px
        );
        assert!(
            ais.acceptance > 0.3 && ais.acceptance < 1.0,
            "{}",
            ais.acceptance
        );

        let iw_run = t.iwae().unwrap().unwrap();
        let mut gap = t.gap_split(&iw_run).unwrap().unwrap();
        assert!(
            gap.elbo_star < true_mean && gap.elbo_star > gap.elbo,
            "{} {}",
            gap.elbo_star,
            gap.elbo
        );
        gap.tighten(ais.log_px, crate::eval::LogPxSource::Ais);
        // ELBO + amortization + approximation = the tightest of the three bounds, on the truth.
        let top = gap.elbo + gap.amortization_gap + gap.approximation_gap;
        let tightest = gap.log_px.max(gap.log_px_star).max(ais.log_px);
        assert!((top - tightest).abs() < 1e-9 && gap.log_px_split == tightest);
        assert!(
            (top - true_mean).abs() < 0.02,
            "split top {top} vs truth {true_mean}"
        );

        // BDMC on images simulated from the model: the truth of each lies in its sandwich.
        let mut r = rng::stream(t.cfg.seed, rng::Stream::Bdmc, 0);
        let (sim, _) = crate::eval::ais::simulate(&frozen, 16, &mut r, &Device::Cpu).unwrap();
        let sim_truth = quadrature(&frozen, &sim, 64);
        let b = t.bdmc().unwrap().unwrap();
        // Both are stochastic bounds, in expectation: their means over the images hold the
        // mean truth (each image's chains alone scatter by up to ~0.2 nats).
        let sim_mean = mean(&sim_truth);
        assert!(
            b.lower.log_px < sim_mean + 0.02,
            "BDMC lower {} vs {sim_mean}",
            b.lower.log_px
        );
        assert!(
            b.upper.log_px > sim_mean - 0.02,
            "BDMC upper {} vs {sim_mean}",
            b.upper.log_px
        );
        for (i, &truth) in sim_truth.iter().enumerate() {
            let (lo, up) = (b.lower.per_image[i], b.upper.per_image[i]);
            assert!(
                lo < truth + 0.3 && up > truth - 0.3,
                "image {i}: {lo} {truth} {up}"
            );
        }
        assert!(b.width() >= 0.0 && b.width() < 0.1, "width {}", b.width());
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
        // The bound's prefix brackets the split's optimum: ELBO ≤ ELBO* ≤ log p(x) (noise aside).
        assert!(gap.elbo_star > prefix.elbo, "{gap:?} vs {prefix:?}");
        assert!(
            prefix.log_px > gap.elbo_star - 0.05,
            "{gap:?} vs {prefix:?}"
        );
    }

    /// A raised stop flag ends the final evaluation with its own error, not a number: the IWAE
    /// bound and the gap split each refuse to finish, and lowered again both give the estimates
    /// they give without a flag.
    #[test]
    fn the_final_evaluation_stops_at_the_flag() {
        let data = toy_data();
        let mut t = trained(ModelKind::Vae, &data);
        let free = t.iwae_with(None, 0).unwrap().unwrap();
        let gap_free = t.gap_split(&free).unwrap().unwrap();
        let flag = AtomicBool::new(true);
        t.stop_when(&flag);
        assert!(matches!(
            t.iwae_with(None, 0),
            Err(TrainError::StoppedEvaluating("the IWAE bound"))
        ));
        assert!(matches!(
            t.gap_split(&free),
            Err(TrainError::StoppedEvaluating("the E-step"))
        ));
        flag.store(false, Ordering::SeqCst);
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        assert_eq!((iw.log_px, iw.elbo), (free.log_px, free.elbo));
        let gap = t.gap_split(&iw).unwrap().unwrap();
        assert_eq!(gap.elbo_star, gap_free.elbo_star);
    }

    /// The E-step moves only the per-image (μ, log σ²): the model's weights are bit-identical.
    #[test]
    fn estep_leaves_the_model_untouched() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let weights = |t: &Trainer<'_>| {
            t.state
                .varmap
                .all_vars()
                .iter()
                .map(|v| v.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect::<Vec<_>>()
        };
        let before = weights(&t);
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        t.gap_split(&iw).unwrap().unwrap();
        assert_eq!(before, weights(&t));
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

    /// A two-layer model trains on either body, and its IWAE bound (every layer sampled) sits
    /// above its ELBO.
    #[test]
    fn a_two_layer_model_trains_on_the_mlp_and_the_conv_body() {
        let data = toy_data();
        for body in [
            Body::Mlp { hidden: vec![32] },
            Body::Conv {
                channels: vec![8, 16],
            },
        ] {
            let cfg = TrainConfig {
                body,
                stack: crate::model::Stack {
                    above: vec![2],
                    hidden: vec![16],
                },
                ..cfg(ModelKind::Vae)
            };
            let mut t = Trainer::new(cfg.clone(), &data, Device::Cpu).unwrap();
            let before = t.evaluate(SplitKind::Test, 0).unwrap().neg_elbo.unwrap();
            for epoch in 1..=cfg.epochs {
                t.train_epoch(epoch).unwrap();
            }
            let m = t.evaluate(SplitKind::Test, 8).unwrap();
            let after = m.neg_elbo.unwrap();
            assert!(
                after < before - 5.0,
                "{:?}: test -ELBO {before} -> {after}",
                cfg.body
            );
            assert_eq!(m.kl_per_dim.unwrap().len(), 4);
            assert_eq!(m.active_by_layer.unwrap().len(), 2);
            let split = data.split(SplitKind::Test, Binarize::None);
            let mut r = rng::stream(7, rng::Stream::Iwae, 1);
            let iw = iwae::estimate(t.model(), split, plan(50, 300), &mut r, &Device::Cpu).unwrap();
            assert!(iw.log_px > iw.elbo, "{iw:?}");
        }
    }

    /// A VampPrior model trains: its test −ELBO falls, its KL has no per-dimension split, its
    /// pseudo-inputs move (with the decoder) and stay images, its IWAE bound sits above its
    /// ELBO, and the E-step's optimum beats the encoder's q.
    #[test]
    fn a_vampprior_model_trains_and_its_gap_splits() {
        let data = toy_data();
        let cfg = TrainConfig {
            prior: crate::model::Prior::Vamp { pseudo_inputs: 10 },
            ..cfg(ModelKind::Vae)
        };
        let mut t = Trainer::new(cfg.clone(), &data, Device::Cpu).unwrap();
        let pseudo = |t: &Trainer<'_>| weights_of(t, crate::model::PSEUDO_INPUTS);
        let (start, before) = (
            pseudo(&t),
            t.evaluate(SplitKind::Test, 0).unwrap().neg_elbo.unwrap(),
        );
        for epoch in 1..=cfg.epochs {
            t.train_epoch(epoch).unwrap();
        }
        let m = t.evaluate(SplitKind::Test, 8).unwrap();
        let after = m.neg_elbo.unwrap();
        assert!(after < before - 5.0, "test -ELBO {before} -> {after}");
        assert!(m.kl_per_dim.is_none() && m.kl.unwrap() > 0.0, "{m:?}");
        assert_ne!(pseudo(&t), start, "the pseudo-inputs did not move");
        let u = t.model().pseudo_inputs().unwrap().unwrap();
        let u = u.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(u.iter().all(|p| (0.0..=1.0).contains(p)));
        let iw = t.iwae_with(None, 0).unwrap().unwrap();
        assert!(iw.log_px > iw.elbo, "{iw:?}");
        let gap = t.gap_split(&iw).unwrap().unwrap();
        assert!(gap.elbo_star > iw.elbo, "{gap:?}");
    }

    /// Scoring images side by side on single-threaded lanes gives the numbers of one thread,
    /// and the reference ops agree with the fused ones.
    #[test]
    fn iwae_is_the_same_on_one_thread_on_lanes_and_on_the_reference_ops() {
        let data = toy_data();
        let t = trained(ModelKind::Vae, &data);
        let split = data.split(SplitKind::Test, Binarize::None);
        let run = |threads: usize| {
            vaelab_kernels::threads::in_pool(threads, || {
                let mut r = rng::stream(7, rng::Stream::Iwae, 1);
                iwae::estimate(t.model(), split, plan(50, 300), &mut r, &Device::Cpu).unwrap()
            })
            .unwrap()
        };
        let (one, two) = (run(1), run(2));
        assert_eq!((one.log_px, one.elbo), (two.log_px, two.elbo));
        let vb = VarBuilder::from_varmap(&t.state.varmap, DType::F32, &Device::Cpu);
        let reference =
            Model::with_kernels(t.model().arch().clone(), vb, Kernels::Reference).unwrap();
        let mut r = rng::stream(7, rng::Stream::Iwae, 1);
        let slow = iwae::estimate(&reference, split, plan(50, 300), &mut r, &Device::Cpu).unwrap();
        assert!((slow.log_px - one.log_px).abs() < 1e-3 * one.log_px.abs());
    }

    #[test]
    fn iwae_k1_is_the_elbo_in_expectation_and_more_samples_tighten_it() {
        let data = toy_data();
        let mut t = trained(ModelKind::Vae, &data);
        let split = data.split(SplitKind::Test, Binarize::None);
        // The ELBO with the analytic KL, averaged over 20 independent single-sample passes.
        let elbo = -(1..=20)
            .map(|e| t.evaluate(SplitKind::Test, e).unwrap().neg_elbo.unwrap())
            .sum::<f64>()
            / 20.0;
        let mut r = rng::stream(99, rng::Stream::Iwae, 1);
        let mut est = |k: usize| {
            iwae::estimate(t.model(), split, plan(split.len(), k), &mut r, &Device::Cpu).unwrap()
        };
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
        let mut t = trained(ModelKind::Vae, &data);
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
        let mut t = trained(ModelKind::Ae, &data);
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
        let standard = crate::model::Prior::Standard;
        let vamp = crate::model::Prior::Vamp { pseudo_inputs: 6 };
        let runs = schedules
            .map(|s| (s, Objective::default(), standard))
            .into_iter()
            .chain([
                (Schedule::Joint, iwae(3), standard),
                (Schedule::Aggressive, Objective::default(), vamp),
            ]);
        for (schedule, objective, prior) in runs {
            let data = toy_data();
            let c = TrainConfig {
                binarize: Binarize::Dynamic,
                schedule,
                objective,
                prior,
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
            assert_eq!(
                got,
                want[2..],
                "{schedule:?} {objective:?} {prior:?}: bit-identical after a resume"
            );
        }
    }

    fn weights_of(t: &Trainer<'_>, prefix: &str) -> Vec<(String, Vec<f32>)> {
        let mut w: Vec<_> = t
            .state
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
        let ctx_cfg = t.cfg.clone();
        let ctx = StepCtx {
            cfg: &ctx_cfg,
            device: &Device::Cpu,
            split,
            n_train: split.len(),
        };
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
            super::super::step::descend(&mut t.state, &ctx, part, &x, &mut draws, (1, 1, 1.0))
                .unwrap();
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
