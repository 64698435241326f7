//! The objectives under the VampPrior, checked by independent routes: the Gaussian KL in
//! closed form (one pseudo-input), the IWAE weight computed image by image in f64, candle's
//! stock ops, finite differences (the pseudo-inputs included) and the evaluator's estimator.

use super::tests::{
    assert_finite_differences, assert_grads_agree, grads, images, noise, pixels, scalar, sorted,
    LATENT, SIDE,
};
use super::*;
use crate::eval::iwae::{self, Plan};
use crate::likelihood::Likelihood;
use crate::model::{init, Architecture, Body, ImageShape, ModelKind, Prior, PSEUDO_INPUTS};
use crate::rng;
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use vaelab_data::Split;
use vaelab_kernels::Kernels;

fn arch(pseudo_inputs: usize) -> Architecture {
    Architecture {
        kind: ModelKind::Vae,
        image: ImageShape::grey(SIDE, SIDE),
        body: Body::Mlp { hidden: vec![16] },
        latent_dim: LATENT,
        likelihood: Likelihood::Bernoulli,
        stack: Default::default(),
        prior: Prior::Vamp { pseudo_inputs },
    }
}

/// A seeded toy model with `k` pseudo-inputs on `kernels`; the pseudo-inputs are spread over
/// [0.1, 0.9] so their posteriors differ (the init's 0.05 ± 0.01 puts them all together).
fn model(k: usize, kernels: Kernels) -> (Model, VarMap) {
    let varmap = VarMap::new();
    init::seeded(&arch(k), &varmap, 3, &Device::Cpu).unwrap();
    let u: Vec<f32> = (0..k * SIDE * SIDE)
        .map(|i| 0.5 + 0.4 * ((i as f32) * 0.71).cos())
        .collect();
    let u = Tensor::from_vec(u, (k, SIDE * SIDE), &Device::Cpu).unwrap();
    varmap.data().lock().unwrap()[PSEUDO_INPUTS]
        .set(&u)
        .unwrap();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    (Model::with_kernels(arch(k), vb, kernels).unwrap(), varmap)
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect()
}

/// Rows of a matrix, in f64.
type Rows = Vec<Vec<f64>>;

/// In f64: q(z|x)'s means and log-variances for the rows of `x`, and the VampPrior's components'.
fn posterior_and_prior(m: &Model, x: &Tensor) -> ((Rows, Rows), (Rows, Rows)) {
    let post = m.encode(x).unwrap();
    let prior = m.vamp().unwrap().unwrap();
    let c = prior.components();
    (
        (rows(&post.mu), rows(&post.logvar.unwrap())),
        (rows(&c.mu), rows(&c.logvar)),
    )
}

/// With one pseudo-input the VampPrior is the Gaussian q(z|u): the sampled KL of the
/// one-sample ELBO averages, over many draws, to KL(N(μ, σ²) ‖ N(m, s²)) in closed form.
#[test]
fn with_one_pseudo_input_the_sampled_kl_averages_to_the_gaussian_kl() {
    let (m, _) = model(1, Kernels::Fused);
    let x = images(3);
    let ((mu, lv), (pm, plv)) = posterior_and_prior(&m, &x);
    let closed: Vec<f64> = (0..3)
        .map(|i| {
            (0..LATENT)
                .map(|d| {
                    let (v, s2) = (lv[i][d].exp(), plv[0][d].exp());
                    0.5 * ((s2 / v).ln() + (v + (mu[i][d] - pm[0][d]).powi(2)) / s2 - 1.0)
                })
                .sum()
        })
        .collect();
    let n = 3000;
    let (mut sum, mut sq) = (vec![0.0; 3], vec![0.0; 3]);
    for s in 0..n {
        let t = batch_terms(&m, &x, &noise(10 + s, 3), 1.0, 0.0).unwrap();
        let kl = t.kl.unwrap();
        assert!(kl.per_dim().is_none(), "the VampPrior's KL is per image");
        for (i, v) in kl
            .per_image()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .enumerate()
        {
            sum[i] += f64::from(*v);
            sq[i] += f64::from(*v).powi(2);
        }
    }
    for i in 0..3 {
        let mean = sum[i] / n as f64;
        let se = ((sq[i] / n as f64 - mean * mean).max(0.0) / n as f64).sqrt();
        assert!(
            (mean - closed[i]).abs() < 4.0 * se + 1e-4,
            "image {i}: sampled {mean} ± {se} vs closed form {}",
            closed[i]
        );
    }
}

/// The IWAE loss under the VampPrior equals −mean_i log (1/k) Σ_s w_is computed in f64 image
/// by image: log p(z) as (1/K) Σ_k Π_j N(z_j; m_kj, s_kj²) summed term by term, 2π included.
#[test]
fn the_vamp_iwae_loss_is_the_mixture_weight_computed_image_by_image() {
    let (m, _) = model(4, Kernels::Fused);
    let (b, k) = (3, 6);
    let (x, eps) = (images(b), noise(2, b * k));
    let objective = Objective {
        bound: Bound::Iwae,
        samples: k,
        ..Objective::default()
    };
    let loss = scalar(&objective.terms(&m, &x, &eps, 1.0).unwrap().loss);
    let ((mu, lv), (pm, plv)) = posterior_and_prior(&m, &x);
    let e = rows(&eps);
    let xs = pixels(b);
    let gauss = |v: f64, m: f64, lv: f64| {
        -0.5 * ((v - m).powi(2) / lv.exp() + lv + (2.0 * std::f64::consts::PI).ln())
    };
    let mut total = 0.0;
    for i in 0..b {
        let mut lw = Vec::new();
        for s in 0..k {
            let z: Vec<f64> = (0..LATENT)
                .map(|j| mu[i][j] + e[s * b + i][j] * (0.5 * lv[i][j]).exp())
                .collect();
            let zt: Vec<f32> = z.iter().map(|&v| v as f32).collect();
            let zt = Tensor::from_vec(zt, (1, LATENT), &Device::Cpu).unwrap();
            let logits = m.decode(&zt).unwrap().to_vec2::<f32>().unwrap();
            let log_px: f64 = logits[0]
                .iter()
                .zip(&xs[i * SIDE * SIDE..])
                .map(|(&a, &v)| f64::from(v) * f64::from(a) - (f64::from(a).exp() + 1.0).ln())
                .sum();
            let p: f64 = (0..pm.len())
                .map(|c| {
                    (0..LATENT)
                        .map(|j| gauss(z[j], pm[c][j], plv[c][j]))
                        .sum::<f64>()
                        .exp()
                })
                .sum::<f64>()
                / pm.len() as f64;
            let lq: f64 = (0..LATENT).map(|j| gauss(z[j], mu[i][j], lv[i][j])).sum();
            lw.push(log_px + p.ln() - lq);
        }
        total += iwae::log_mean_exp(&lw);
    }
    let want = -total / b as f64;
    assert!(
        (loss - want).abs() < 1e-4 * want.abs(),
        "{loss} vs {want} (f64, image by image)"
    );
}

/// The one-sample ELBO, the k-sample ELBO and the IWAE bound under the VampPrior.
fn objectives() -> [Objective; 3] {
    [
        Objective::default(),
        Objective {
            samples: 4,
            ..Objective::default()
        },
        Objective {
            bound: Bound::Iwae,
            samples: 4,
            ..Objective::default()
        },
    ]
}

/// The fused kernels' gradients match candle's stock ops, the pseudo-inputs' included.
#[test]
fn vamp_gradients_match_candles_reference_ops() {
    let (fused, vars) = model(5, Kernels::Fused);
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let reference = Model::with_kernels(arch(5), vb, Kernels::Reference).unwrap();
    let x = images(4);
    for objective in objectives() {
        let eps = noise(3, objective.noise_rows(4));
        let f = grads(&fused, &vars, &objective, &x, &eps);
        let r = grads(&reference, &vars, &objective, &x, &eps);
        for ((name, _), (gf, gr)) in sorted(&vars).iter().zip(f.iter().zip(&r)) {
            if name == PSEUDO_INPUTS {
                assert!(
                    gf.iter().any(|g| g.abs() > 0.0),
                    "no gradient reaches {name}"
                );
            }
            assert_grads_agree(gf, gr, &format!("{objective:?} {name}"));
        }
    }
}

/// The gradients agree with central finite differences of the loss, every variable's largest
/// entry, the pseudo-inputs' included.
#[test]
fn vamp_gradients_match_finite_differences() {
    let (m, vars) = model(5, Kernels::Reference);
    let x = images(4);
    for objective in objectives() {
        let eps = noise(4, objective.noise_rows(4));
        let g = grads(&m, &vars, &objective, &x, &eps);
        let loss = |m: &Model| scalar(&objective.terms(m, &x, &eps, 0.5).unwrap().loss);
        let what = format!("VampPrior {objective:?}");
        let checked = assert_finite_differences(&vars, &g, || loss(&m), 1e-2, &what);
        assert_eq!(checked, arch(5).layers().len() * 2 + 1);
    }
}

/// The training bound at large k reaches the evaluator's IWAE estimate (host-side q, the
/// mixture on the device in blocks), and the bound tightens with k.
#[test]
fn the_vamp_training_bound_reaches_the_evaluators_estimate() {
    let (m, _) = model(4, Kernels::Fused);
    let n = 5;
    let x = images(n);
    let bound = |k: usize, seed: u64| {
        let objective = Objective {
            bound: Bound::Iwae,
            samples: k,
            ..Objective::default()
        };
        -scalar(
            &objective
                .terms(&m, &x, &noise(seed, n * k), 1.0)
                .unwrap()
                .loss,
        )
    };
    let l1: f64 = (0..200).map(|s| bound(1, 700 + s)).sum::<f64>() / 200.0;
    let l2000 = bound(2000, 1);
    assert!(l1 < l2000, "L1 {l1} vs L2000 {l2000}");
    let split = Split::new(pixels(n), vec![0; n], ImageShape::grey(SIDE, SIDE));
    let plan = Plan {
        images: n,
        samples: 2000,
        mass: None,
    };
    let mut r = rng::stream(9, rng::Stream::Iwae, 0);
    let est = iwae::estimate(&m, &split, plan, &mut r, &Device::Cpu).unwrap();
    assert!(
        (l2000 - est.log_px).abs() < 0.05,
        "L2000 {l2000} vs the evaluator's {}",
        est.log_px
    );
    assert!(est.gap > 0.0, "log p(x) above the ELBO: {est:?}");
}
