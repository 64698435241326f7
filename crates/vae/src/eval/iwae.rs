//! The importance-weighted bound (Burda et al., 2016) on log p(x):
//! log p(x) ≥ log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), tight as K → ∞.

use super::psis::{self, Reliability};
use crate::likelihood::{Likelihood, StreamedScore};
use crate::model::{Gaussian, Mixture, Model, StackNets};
use crate::objective::{amortized, mean_field, per_layer, split_columns};
use crate::rng;
use crate::train::TrainError;
use candle_core::{Device, Result, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::Split;
use vaelab_kernels::Kernels;

/// Decoder rows per forward pass (images × K) of the encoder and the sampling.
const ROWS_PER_PASS: usize = 8192;
/// Decoder rows scored at once: small enough that the decoder's output (rows × pixels) is still
/// in cache when the likelihood reads it. Measured (K = 1000, 2 threads, parallel gemm): 8192
/// rows 4.5–4.7 s, 1000 rows 3.8–3.9 s; 256 and 512 rows were slower than 1000.
const ROWS_PER_BLOCK: usize = 1024;

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
    /// The same bound with p(x|z) replaced by the mass of the quantized image (nats).
    pub log_px_mass: Option<f64>,
    /// The ELBO from the same samples with that mass.
    pub elbo_mass: Option<f64>,
    /// Each image's mean log weight (its ELBO estimate), in image order.
    pub elbos: Vec<f64>,
    /// Each image's K-sample bound, in image order.
    pub bounds: Vec<f64>,
    /// Each image's PSIS k̂ of its K weights (`None` where it has none), in image order.
    pub khats: Vec<Option<f64>>,
    /// Each image's Monte-Carlo variance of its bound and of its ELBO estimate (delta method
    /// and sample variance over its K draws; the first is not to be trusted where k̂ is large).
    pub variances: Vec<(f64, f64)>,
}

impl IwaeEstimate {
    /// The same estimate restricted to its first `n` images (the density terms; the masses are
    /// left out).
    pub fn first(&self, n: usize) -> IwaeEstimate {
        let n = n.min(self.images);
        let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n.max(1) as f64;
        let (log_px, elbo) = (mean(&self.bounds), mean(&self.elbos));
        IwaeEstimate {
            log_px,
            elbo,
            gap: log_px - elbo,
            images: n,
            samples: self.samples,
            seconds: self.seconds,
            log_px_mass: None,
            elbo_mass: None,
            elbos: self.elbos[..n].to_vec(),
            bounds: self.bounds[..n].to_vec(),
            khats: self.khats[..n].to_vec(),
            variances: self.variances[..n].to_vec(),
        }
    }

    /// Monte-Carlo standard errors of the mean bound and of the mean ELBO over the images.
    pub fn standard_errors(&self) -> (f64, f64) {
        let n = self.variances.len().max(1) as f64;
        let sum = |f: fn(&(f64, f64)) -> f64| self.variances.iter().map(f).sum::<f64>();
        (sum(|v| v.0).sqrt() / n, sum(|v| v.1).sqrt() / n)
    }

    /// How far the bound's weights can be trusted: the k̂ of its images against K's bound.
    pub fn reliability(&self) -> Option<Reliability> {
        psis::reliability(&self.khats, self.samples)
    }
}

/// What to estimate: K samples on the first `images` images, also scored as `mass` if given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub images: usize,
    pub samples: usize,
    pub mass: Option<Likelihood>,
}

/// log-mean-exp of log weights, in f64.
pub fn log_mean_exp(w: &[f64]) -> f64 {
    let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + (w.iter().map(|x| (x - max).exp()).sum::<f64>() / w.len() as f64).ln()
}

/// log p(x_i | z) for the `k` latent rows of image i of `x`, and the log-masses when `mass` is
/// given: each block of decoder output is scored both ways while it is in cache, or with
/// `streamed` while it is computed (the same values, never stored).
fn score_image(
    model: &Model,
    x: &Tensor,
    z: &Tensor,
    (i, k): (usize, usize),
    mass: Option<Likelihood>,
    streamed: Option<&StreamedScore>,
) -> Result<Scores> {
    // The image's row of x serves each block's rows of decoder output (no K-fold copy of x).
    let xi = x.narrow(0, i, 1)?;
    let pixels = match streamed {
        Some(_) => xi.flatten_all()?.to_vec1::<f32>()?,
        None => Vec::new(),
    };
    let mut out = Scores::default();
    for start in (0..k).step_by(ROWS_PER_BLOCK) {
        let len = ROWS_PER_BLOCK.min(k - start);
        let z = z.narrow(0, i * k + start, len)?;
        if let Some(s) = streamed {
            let (density, masses) = s.score(&model.decode_body(&z)?, &pixels)?;
            out.density.extend(density);
            out.mass.extend(masses.unwrap_or_default());
            continue;
        }
        let params = model.decode(&z)?;
        out.density
            .extend(model.log_prob(&params, &xi)?.to_vec1::<f32>()?);
        if let Some(m) = mass {
            out.mass
                .extend(model.log_prob_as(m, &params, &xi)?.to_vec1::<f32>()?);
        }
    }
    Ok(out)
}

/// Per-sample log p(x|z) under the model's likelihood and, if asked, as a mass.
#[derive(Debug, Default)]
struct Scores {
    density: Vec<f32>,
    mass: Vec<f32>,
}

impl Scores {
    fn append(&mut self, other: Scores) {
        self.density.extend(other.density);
        self.mass.extend(other.mass);
    }
}

/// One lane's results: (image index, its K scores).
type Scored = Vec<(usize, Scores)>;

/// Scores every image of a pass: on the calling thread, or spread over `lanes` (one
/// single-threaded pool per lane, image i on lane i mod lanes).
fn score(
    model: &Model,
    (x, z): (&Tensor, &Tensor),
    k: usize,
    (mass, streamed): (Option<Likelihood>, Option<&StreamedScore>),
    lanes: Option<&[rayon::ThreadPool]>,
) -> Result<Scores> {
    let images = x.dim(0)?;
    let Some(lanes) = lanes else {
        let mut out = Scores::default();
        for i in 0..images {
            out.append(score_image(model, x, z, (i, k), mass, streamed)?);
        }
        return Ok(out);
    };
    let per_lane: Vec<Result<Scored>> = std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .iter()
            .enumerate()
            .map(|(t, pool)| {
                s.spawn(move || {
                    pool.install(|| {
                        (t..images)
                            .step_by(lanes.len())
                            .map(|i| Ok((i, score_image(model, x, z, (i, k), mass, streamed)?)))
                            .collect::<Result<Vec<_>>>()
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(candle_core::Error::Msg("an IWAE lane panicked".into()))
                })
            })
            .collect()
    });
    let mut by_image: Vec<Option<Scores>> = (0..images).map(|_| None).collect();
    for lane in per_lane {
        for (i, v) in lane? {
            by_image[i] = Some(v);
        }
    }
    let mut out = Scores::default();
    for s in by_image.into_iter().flatten() {
        out.append(s);
    }
    Ok(out)
}

/// K draws of z per image of a one-layer model from q = N(μ, σ²) given as rows, with each
/// draw's log p(z) − log q(z|x), in f64 on the host: (rows of z, log ratios). Under a
/// VampPrior `vamp`, log p(z) is the mixture's, on the device in blocks of rows.
fn one_layer_draws(
    mu: &[Vec<f32>],
    logvar: &[Vec<f32>],
    k: usize,
    vamp: Option<&Mixture>,
    r: &mut rng::Rng64,
    device: &Device,
) -> Result<(Tensor, Vec<f64>)> {
    let l = mu.first().map_or(0, Vec::len);
    let rows = mu.len() * k;
    let mut z = Vec::with_capacity(rows * l);
    let mut log_prior_minus_q = Vec::with_capacity(rows);
    let eps = rng::normals(r, rows * l);
    for (i, (mu, lv)) in mu.iter().zip(logvar).enumerate() {
        let std: Vec<f32> = lv.iter().map(|v| (0.5 * v).exp()).collect();
        for s in 0..k {
            let e = &eps[(i * k + s) * l..(i * k + s + 1) * l];
            let mut acc = 0f64;
            for j in 0..l {
                let zj = mu[j] + e[j] * std[j];
                z.push(zj);
                // log p(z) − log q(z|x); the 2π terms cancel. The VampPrior's log p(z) is
                // added below.
                let log_p = if vamp.is_some() {
                    0.0
                } else {
                    -0.5 * f64::from(zj).powi(2)
                };
                acc += log_p + 0.5 * f64::from(e[j]).powi(2) + 0.5 * f64::from(lv[j]);
            }
            log_prior_minus_q.push(acc);
        }
    }
    let z = Tensor::from_vec(z, (rows, l), device)?;
    if let Some(prior) = vamp {
        for start in (0..rows).step_by(ROWS_PER_PASS) {
            let len = ROWS_PER_PASS.min(rows - start);
            let log_p = prior.log_density(&z.narrow(0, start, len)?)?;
            for (acc, p) in log_prior_minus_q[start..start + len]
                .iter_mut()
                .zip(log_p.to_vec1::<f32>()?)
            {
                *acc += f64::from(p);
            }
        }
    }
    Ok((z, log_prior_minus_q))
}

/// Where the draws of a hierarchy come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proposal {
    /// z₁ from the given rows of q(z₁|x), the layers above from the model's q(z_{n+1}|z_n).
    Amortized,
    /// Every layer from its own Gaussian, the given rows holding all layers (the E-step's q*).
    MeanField,
}

/// K draws per image of every layer of a hierarchy (one ε row of the whole latent width per
/// draw): z₁'s rows and each draw's log p(z) − log q(z|x).
fn stack_draws(
    model: &Model,
    stack: &StackNets,
    (mu, logvar): (&[Vec<f32>], &[Vec<f32>]),
    from: Proposal,
    k: usize,
    r: &mut rng::Rng64,
    device: &Device,
) -> Result<(Tensor, Vec<f64>)> {
    let sizes = model.arch().latent_sizes();
    let width: usize = sizes.iter().sum();
    let rows = mu.len() * k;
    let repeat = |v: &[Vec<f32>]| -> Result<Tensor> {
        let cols = v.first().map_or(0, Vec::len);
        let flat: Vec<f32> = v
            .iter()
            .flat_map(|row| std::iter::repeat_n(row, k).flatten().copied())
            .collect();
        Tensor::from_vec(flat, (rows, cols), device)
    };
    let (mu, logvar) = (repeat(mu)?, repeat(logvar)?);
    let eps = Tensor::from_vec(rng::normals(r, rows * width), (rows, width), device)?;
    let parts = split_columns(&eps, &sizes)?;
    let draw = match from {
        Proposal::Amortized => amortized(stack, Gaussian { mu, logvar }, &parts)?,
        Proposal::MeanField => mean_field(stack, &per_layer(&mu, &logvar, &sizes)?, &parts)?,
    };
    let ratio = draw.log_ratio.to_vec1::<f32>()?;
    Ok((draw.z1, ratio.into_iter().map(f64::from).collect()))
}

/// One image's log weights log p(x|z_k) + log p(z_k) − log q(z_k|x).
fn log_weights(log_px_z: &[f32], log_prior_minus_q: &[f64]) -> Vec<f64> {
    log_px_z
        .iter()
        .zip(log_prior_minus_q)
        .map(|(&l, &r)| f64::from(l) + r)
        .collect()
}

/// Monte-Carlo variances of log (1/K) Σ w (delta method: Var(w) / (K E[w]²), from the
/// normalized weights) and of the mean log weight (Var(log w) / K).
pub fn variances(w: &[f64]) -> (f64, f64) {
    let k = w.len().max(1) as f64;
    let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (s1, s2) = w.iter().fold((0.0, 0.0), |(a, b), v| {
        let e = (v - max).exp();
        (a + e, b + e * e)
    });
    let mean = w.iter().sum::<f64>() / k;
    let var_log = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    ((k * s2 / (s1 * s1) - 1.0).max(0.0) / k, var_log / k)
}

/// Per image: the K-sample bound and the mean log weight, from its log weights.
fn bound_and_elbo(w: &[f64]) -> (f64, f64) {
    (
        log_mean_exp(w),
        w.iter().sum::<f64>() / w.len().max(1) as f64,
    )
}

/// The IWAE bound with `plan.samples` samples on the first `plan.images` images of `split`.
pub fn estimate(
    model: &Model,
    split: &Split,
    plan: Plan,
    r: &mut rng::Rng64,
    device: &Device,
) -> std::result::Result<IwaeEstimate, TrainError> {
    estimate_with(model, split, plan, None, r, device, None)
}

/// Per-image posterior parameters (μ rows, log σ² rows) given instead of the encoder's.
pub type Given<'a> = (&'a [Vec<f32>], &'a [Vec<f32>]);

/// As [`estimate`], with the proposal q(z|x) given per image instead of encoded (the E-step's
/// optimum): then `elbo` is that q's ELBO and `log_px` the bound with it as proposal. A raised
/// `stop` ends it between passes (a pass is ~8,000 decoder rows: milliseconds).
pub fn estimate_with(
    model: &Model,
    split: &Split,
    plan: Plan,
    given: Option<Given>,
    r: &mut rng::Rng64,
    device: &Device,
    stop: Option<&AtomicBool>,
) -> std::result::Result<IwaeEstimate, TrainError> {
    let start = Instant::now();
    let (n, k) = (plan.images, plan.samples);
    // A model trained on the mass is scored once: its density already is the mass.
    let mass = plan.mass.filter(|&m| m != model.arch().likelihood);
    let (mut mass_bound, mut mass_elbo) = (0f64, 0f64);
    let d = split.dim();
    let per_pass = (ROWS_PER_PASS / k).max(1);
    let (mut sum_bound, mut sum_elbo) = (0f64, 0f64);
    let (mut elbos, mut bounds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut khats = Vec::with_capacity(n);
    let mut vars = Vec::with_capacity(n);
    let mut buf = Vec::new();
    let indices: Vec<usize> = (0..n).collect();
    // The VampPrior's components, once: the model is fixed while it is evaluated.
    let vamp = model.vamp()?.map(|m| m.detached());
    // The fused CPU kernels score images side by side, one single-threaded lane per core:
    // no synchronization inside the products, and each core's tile stays in its cache.
    let threads = rayon::current_num_threads();
    let lanes = if threads > 1 && device.is_cpu() && model.kernels() == Kernels::Fused {
        let pools = (0..threads)
            .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Some(pools)
    } else {
        None
    };
    // The decoder's head scored as it is computed, where the kernels cover it.
    let streamed = if device.is_cpu() {
        model.streamed_score(mass)?
    } else {
        None
    };
    for idx in indices.chunks(per_pass) {
        if stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Err(TrainError::StoppedEvaluating("the IWAE bound"));
        }
        split.gather(idx, None, &mut buf);
        let x = Tensor::from_slice(&buf, (idx.len(), d), device)?;
        let (mu, logvar) = match given {
            Some((mu, lv)) => {
                let rows = idx[0]..idx[0] + idx.len();
                (mu[rows.clone()].to_vec(), lv[rows].to_vec())
            }
            None => {
                let post = model.encode(&x)?;
                match post.logvar {
                    Some(lv) => (post.mu.to_vec2::<f32>()?, lv.to_vec2::<f32>()?),
                    None => {
                        let why = "the IWAE bound needs a stochastic encoder";
                        return Err(candle_core::Error::Msg(why.into()).into());
                    }
                }
            }
        };
        let (z, log_prior_minus_q) = match model.stack() {
            None => one_layer_draws(&mu, &logvar, k, vamp.as_ref(), r, device)?,
            Some(stack) => {
                let from = if given.is_some() {
                    Proposal::MeanField
                } else {
                    Proposal::Amortized
                };
                stack_draws(model, stack, (&mu, &logvar), from, k, r, device)?
            }
        };
        let scores = score(
            model,
            (&x, &z),
            k,
            (mass, streamed.as_ref()),
            lanes.as_deref(),
        )?;
        for i in 0..idx.len() {
            let rows = i * k..(i + 1) * k;
            let w = log_weights(
                &scores.density[rows.clone()],
                &log_prior_minus_q[rows.clone()],
            );
            let (b, e) = bound_and_elbo(&w);
            sum_bound += b;
            sum_elbo += e;
            elbos.push(e);
            bounds.push(b);
            khats.push(psis::khat(&w));
            vars.push(variances(&w));
            if mass.is_some() {
                let w = log_weights(&scores.mass[rows.clone()], &log_prior_minus_q[rows]);
                let (b, e) = bound_and_elbo(&w);
                mass_bound += b;
                mass_elbo += e;
            }
        }
    }
    let n_f = n.max(1) as f64;
    let (log_px, elbo) = (sum_bound / n_f, sum_elbo / n_f);
    let (log_px_mass, elbo_mass) = match (plan.mass, mass) {
        (Some(_), Some(_)) => (Some(mass_bound / n_f), Some(mass_elbo / n_f)),
        (Some(_), None) => (Some(log_px), Some(elbo)),
        (None, _) => (None, None),
    };
    Ok(IwaeEstimate {
        log_px,
        elbo,
        gap: log_px - elbo,
        images: n,
        samples: k,
        seconds: start.elapsed().as_secs_f64(),
        log_px_mass,
        elbo_mass,
        elbos,
        bounds,
        khats,
        variances: vars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::Mass;
    use crate::model::{init, Architecture, Body, ImageShape, ModelKind, Prior};
    use crate::rng::{normals, stream, Stream};
    use candle_nn::{VarBuilder, VarMap};

    /// Scoring the decoder's head as it is computed gives the two-step scores to the bit, the
    /// mass too, over draws that span two blocks of rows, and on lanes as on one thread.
    #[test]
    fn the_streamed_head_gives_the_two_step_scores() {
        let dev = Device::Cpu;
        let arch = Architecture {
            kind: ModelKind::Vae,
            image: ImageShape::grey(8, 8),
            body: Body::Mlp { hidden: vec![24] },
            latent_dim: 3,
            likelihood: Likelihood::Bernoulli,
            stack: Default::default(),
            prior: Prior::Standard,
        };
        let varmap = VarMap::new();
        init::seeded(&arch, &varmap, 5, &dev).unwrap();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &dev);
        let model = Model::new(arch, vb).unwrap();
        let mass = Some(Likelihood::Discretized {
            mass: Mass::ContinuousBernoulli,
            levels: 256,
        });
        let Some(streamed) = model.streamed_score(mass).unwrap() else {
            assert!(
                vaelab_kernels::loop_simd().unwrap().is_none(),
                "head refused"
            );
            return;
        };
        let (images, k) = (3, ROWS_PER_BLOCK + 37);
        let x: Vec<f32> = (0..images * 64)
            .map(|i| (i * 53 % 256) as f32 / 255.0)
            .collect();
        let x = Tensor::from_vec(x, (images, 64), &dev).unwrap();
        let mut r = stream(1, Stream::Iwae, 0);
        let z = Tensor::from_vec(normals(&mut r, images * k * 3), (images * k, 3), &dev).unwrap();
        let lanes: Vec<_> = (0..2)
            .map(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .unwrap()
            })
            .collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let two_step = score(&model, (&x, &z), k, (mass, None), None).unwrap();
        assert_eq!(two_step.density.len(), images * k);
        for on in [None, Some(lanes.as_slice())] {
            let fast = score(&model, (&x, &z), k, (mass, Some(&streamed)), on).unwrap();
            assert_eq!(bits(&fast.density), bits(&two_step.density));
            assert_eq!(bits(&fast.mass), bits(&two_step.mass));
        }
    }

    /// The predicted variances against the spread of many independent replicates of the same
    /// K-sample estimate (log weights drawn from N(0, σ²), light enough for the delta method).
    #[test]
    fn variances_match_the_spread_of_replicates() {
        let (k, replicates, sigma) = (200, 4000, 0.5f64);
        let mut rng = stream(7, Stream::Iwae, 0);
        let (mut bounds, mut elbos, mut predicted) = (Vec::new(), Vec::new(), (0.0, 0.0));
        for _ in 0..replicates {
            let w: Vec<f64> = normals(&mut rng, k)
                .iter()
                .map(|&e| sigma * e as f64)
                .collect();
            let (b, e) = bound_and_elbo(&w);
            bounds.push(b);
            elbos.push(e);
            let v = variances(&w);
            predicted = (predicted.0 + v.0, predicted.1 + v.1);
        }
        let spread = |xs: &[f64]| {
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64
        };
        let r = replicates as f64;
        let (pb, pe) = (predicted.0 / r, predicted.1 / r);
        assert!(
            (pb / spread(&bounds) - 1.0).abs() < 0.1,
            "{pb} vs {}",
            spread(&bounds)
        );
        assert!(
            (pe / spread(&elbos) - 1.0).abs() < 0.1,
            "{pe} vs {}",
            spread(&elbos)
        );
        // And the exact value for lognormal weights: (e^{σ²} − 1) / K.
        assert!((pb / ((sigma * sigma).exp_m1() / k as f64) - 1.0).abs() < 0.1);
    }
}
