//! The objectives checked by independent routes: image-by-image f64 arithmetic, the
//! evaluator's IWAE estimator, the expectation identities, candle's stock ops and finite
//! differences.

use super::*;
use crate::eval::iwae::{self, Plan};
use crate::likelihood::Likelihood;
use crate::model::{init, Architecture, Body, ImageShape, ModelKind};
use crate::rng;
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use vaelab_data::Split;
use vaelab_kernels::Kernels;

/// The toy images' side and latent size (shared with `vamp_tests.rs`).
pub(super) const SIDE: usize = 6;
pub(super) const LATENT: usize = 3;

fn arch() -> Architecture {
    Architecture {
        kind: ModelKind::Vae,
        image: ImageShape::grey(SIDE, SIDE),
        body: Body::Mlp { hidden: vec![16] },
        latent_dim: LATENT,
        likelihood: Likelihood::Bernoulli,
        stack: Default::default(),
        prior: crate::model::Prior::Standard,
    }
}

/// A seeded toy model on `kernels`, with its variables.
fn model(kernels: Kernels) -> (Model, VarMap) {
    let varmap = VarMap::new();
    init::seeded(&arch(), &varmap, 3, &Device::Cpu).unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    (Model::with_kernels(arch(), vb, kernels).unwrap(), varmap)
}

/// `n` images of smooth grey pixels in [0, 1].
pub(super) fn pixels(n: usize) -> Vec<f32> {
    (0..n * SIDE * SIDE)
        .map(|i| (0.5 + 0.45 * ((i as f32) * 0.37).sin()).clamp(0.0, 1.0))
        .collect()
}

pub(super) fn images(n: usize) -> Tensor {
    Tensor::from_vec(pixels(n), (n, SIDE * SIDE), &Device::Cpu).unwrap()
}

pub(super) fn noise(seed: u64, rows: usize) -> Tensor {
    let mut r = rng::stream(seed, rng::Stream::Noise, 0);
    rng::normal_tensor(&mut r, (rows, LATENT), &Device::Cpu).unwrap()
}

pub(super) fn scalar(t: &Tensor) -> f64 {
    f64::from(t.to_scalar::<f32>().unwrap())
}

fn iwae(k: usize) -> Objective {
    Objective {
        bound: Bound::Iwae,
        samples: k,
        ..Objective::default()
    }
}

#[test]
fn warmup_ramps_beta_linearly() {
    let o = Objective {
        beta: 2.0,
        kl_warmup_epochs: 4,
        ..Objective::default()
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

/// The k-sample path at k = 1 (repeat, reshape, mean over draws) gives the one-sample loss.
#[test]
fn one_draw_of_the_k_sample_elbo_is_the_one_sample_elbo() {
    let (m, _) = model(Kernels::Fused);
    let (x, eps) = (images(4), noise(1, 4));
    let one = batch_terms(&m, &x, &eps, 0.7, 0.1).unwrap();
    let k = k_sample_elbo(&m, &x, &eps, 1, 0.7, 0.1).unwrap();
    assert_eq!(scalar(&one.loss), scalar(&k.loss));
}

/// The IWAE loss of a batch equals −mean_i log (1/k) Σ_s w_is computed in f64 image by image:
/// each z decoded on its own, log p(x|z) from the logits by hand, log p(z) and log q(z|x)
/// from their densities.
#[test]
fn the_iwae_loss_is_the_log_mean_weight_computed_image_by_image() {
    let (m, _) = model(Kernels::Fused);
    let (b, k) = (3, 7);
    let (x, eps) = (images(b), noise(2, b * k));
    let loss = scalar(&iwae(k).terms(&m, &x, &eps, 1.0).unwrap().loss);
    let post = m.encode(&x).unwrap();
    let mu = post.mu.to_vec2::<f32>().unwrap();
    let lv = post.logvar.unwrap().to_vec2::<f32>().unwrap();
    let e = eps.to_vec2::<f32>().unwrap();
    let xs = pixels(b);
    let gauss = |v: f64, m: f64, var: f64| {
        -0.5 * ((v - m).powi(2) / var + var.ln() + (2.0 * std::f64::consts::PI).ln())
    };
    let mut total = 0.0;
    for i in 0..b {
        let mut lw = Vec::new();
        for s in 0..k {
            let row = &e[s * b + i];
            let z: Vec<f32> = (0..LATENT)
                .map(|j| mu[i][j] + row[j] * (0.5 * lv[i][j]).exp())
                .collect();
            let zt = Tensor::from_vec(z.clone(), (1, LATENT), &Device::Cpu).unwrap();
            let logits = m.decode(&zt).unwrap().to_vec2::<f32>().unwrap();
            let log_px: f64 = logits[0]
                .iter()
                .zip(&xs[i * SIDE * SIDE..])
                .map(|(&a, &v)| {
                    let a = f64::from(a);
                    f64::from(v) * a - (a.exp() + 1.0).ln()
                })
                .sum();
            let (mut lp, mut lq) = (0.0, 0.0);
            for j in 0..LATENT {
                let zj = f64::from(z[j]);
                lp += gauss(zj, 0.0, 1.0);
                lq += gauss(zj, f64::from(mu[i][j]), f64::from(lv[i][j]).exp());
            }
            lw.push(log_px + lp - lq);
        }
        total += iwae::log_mean_exp(&lw);
    }
    let want = -total / b as f64;
    assert!(
        (loss - want).abs() < 1e-4 * want.abs(),
        "{loss} vs {want} (f64, image by image)"
    );
}

/// With one draw the IWAE bound is the ELBO with a sampled KL (`iwae_terms` at k = 1; runs
/// train it with the closed-form KL): over many draws its mean agrees with the closed-form
/// ELBO's within three standard errors.
#[test]
fn iwae_at_one_draw_is_the_elbo_in_expectation() {
    let (m, _) = model(Kernels::Fused);
    let x = images(4);
    let (mut a, mut b, mut sq) = (0.0, 0.0, 0.0);
    let n = 400;
    for s in 0..n {
        let eps = noise(100 + s, 4);
        let i = scalar(&iwae_terms(&m, &x, &eps, 1).unwrap().loss);
        let e = scalar(&Objective::default().terms(&m, &x, &eps, 1.0).unwrap().loss);
        a += i;
        b += e;
        sq += (i - e).powi(2);
    }
    let (a, b) = (a / n as f64, b / n as f64);
    let se = (sq / n as f64 - (a - b).powi(2)).max(0.0).sqrt() / (n as f64).sqrt();
    assert!(se > 0.0, "the two estimators differ draw by draw");
    assert!(
        (a - b).abs() < 3.0 * se,
        "IWAE k=1 {a} vs ELBO {b} (se {se})"
    );
}

/// The bound tightens with k (Burda et al.'s Theorem 1) and at large k reaches the
/// evaluator's IWAE estimate, a separate implementation (f64, per image, its own stream).
#[test]
fn the_training_bound_tightens_with_k_to_the_evaluators_estimate() {
    let (m, _) = model(Kernels::Fused);
    let n = 6;
    let x = images(n);
    let mean_bound = |k: usize, draws: u64| {
        (0..draws)
            .map(|s| {
                -scalar(
                    &iwae(k)
                        .terms(&m, &x, &noise(500 + s, n * k), 1.0)
                        .unwrap()
                        .loss,
                )
            })
            .sum::<f64>()
            / draws as f64
    };
    let (l1, l5, l50) = (mean_bound(1, 400), mean_bound(5, 100), mean_bound(50, 20));
    assert!(l1 < l5 && l5 < l50, "L1 {l1}, L5 {l5}, L50 {l50}");
    let l2000 = mean_bound(2000, 1);
    let split = Split::new(pixels(n), vec![0; n], ImageShape::grey(SIDE, SIDE));
    let plan = Plan {
        images: n,
        samples: 2000,
        mass: None,
    };
    let mut r = rng::stream(9, rng::Stream::Iwae, 0);
    let est = iwae::estimate(&m, &split, plan, &mut r, &Device::Cpu).unwrap();
    assert!(
        l50 <= est.log_px + 0.05,
        "L50 {l50} vs log p(x) {}",
        est.log_px
    );
    assert!(
        (l2000 - est.log_px).abs() < 0.05,
        "L2000 {l2000} vs the evaluator's {}",
        est.log_px
    );
}

/// The gradients of every variable (in the order of [`sorted`]), for `objective` on a fixed
/// batch and ε, β = 0.5.
pub(crate) fn grads(
    m: &Model,
    vars: &VarMap,
    objective: &Objective,
    x: &Tensor,
    eps: &Tensor,
) -> Vec<Vec<f32>> {
    let loss = objective.terms(m, x, eps, 0.5).unwrap().loss;
    let g = loss.backward().unwrap();
    sorted(vars)
        .iter()
        .map(|(_, v)| {
            g.get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

/// The model's variables by name.
pub(crate) fn sorted(vars: &VarMap) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The IWAE bound and the k-sample ELBO, at k draws.
fn both(k: usize) -> [Objective; 2] {
    [
        iwae(k),
        Objective {
            samples: k,
            ..Objective::default()
        },
    ]
}

/// The fused kernels' gradients of both k-sample objectives match candle's stock ops.
#[test]
fn k_sample_gradients_match_candles_reference_ops() {
    let (fused, vars) = model(Kernels::Fused);
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let reference = Model::with_kernels(arch(), vb, Kernels::Reference).unwrap();
    let (x, eps) = (images(5), noise(3, 5 * 6));
    for objective in both(6) {
        let f = grads(&fused, &vars, &objective, &x, &eps);
        let r = grads(&reference, &vars, &objective, &x, &eps);
        for (gf, gr) in f.iter().zip(&r) {
            assert_grads_agree(gf, gr, &format!("{objective:?}"));
        }
    }
}

/// The IWAE gradient (and the k-sample ELBO's) agrees with central finite differences of the
/// loss at the entries with the largest gradients.
#[test]
fn k_sample_gradients_match_finite_differences() {
    let (m, vars) = model(Kernels::Reference);
    let (x, eps) = (images(4), noise(4, 4 * 5));
    for objective in both(5) {
        let g = grads(&m, &vars, &objective, &x, &eps);
        let loss = |m: &Model| scalar(&objective.terms(m, &x, &eps, 0.5).unwrap().loss);
        let what = format!("{objective:?}");
        let checked = assert_finite_differences(&vars, &g, || loss(&m), 1e-2, &what);
        assert_eq!(checked, arch().layers().len() * 2);
    }
}

/// Checks the entry with the largest gradient of every variable against the central finite
/// difference of `loss` with step `h`; `grads` are in the order of [`sorted`]. Returns how many
/// variables were checked.
pub(crate) fn assert_finite_differences(
    vars: &VarMap,
    grads: &[Vec<f32>],
    loss: impl Fn() -> f64,
    h: f32,
    what: &str,
) -> usize {
    let mut checked = 0;
    for ((name, var), gv) in sorted(vars).iter().zip(grads) {
        let (at, &want) = gv
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let at_shift = |d: f32| {
            let mut w = base.clone();
            w[at] += d;
            var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss()
        };
        let fd = (at_shift(h) - at_shift(-h)) / (2.0 * f64::from(h));
        at_shift(0.0);
        let want = f64::from(want);
        assert!(
            (fd - want).abs() < 2e-2 * want.abs().max(0.1),
            "{what} {name}[{at}]: finite difference {fd} vs gradient {want}"
        );
        checked += 1;
    }
    checked
}

/// Fused gradients `a` against the reference's `b`, entry by entry, to 1e-4 relative
/// (shared with `vamp_tests.rs` and `stack_tests.rs`).
pub(super) fn assert_grads_agree(a: &[f32], b: &[f32], what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{what}: {x} vs {y}");
    }
}
