//! A two-layer model checked by independent routes: log p(x) by quadrature over (z₁, z₂),
//! the evaluator's estimator, expectations over many draws, finite differences, and the model
//! with its top layer removed.

use crate::eval::estep;
use crate::eval::iwae::{self, Plan};
use crate::likelihood::Likelihood;
use crate::model::{init, Architecture, Body, ImageShape, Model, ModelKind, Stack};
use crate::objective::batch_terms;
use crate::objective::tests::{assert_finite_differences, assert_grads_agree, grads, sorted};
use crate::objective::{Bound, Objective};
use crate::rng;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use vaelab_data::Split;
use vaelab_kernels::Kernels;

const SIDE: usize = 4;

/// A VAE with z₁ of `l1` and z₂ of `l2` values, 8 hidden units everywhere.
fn arch(l1: usize, l2: usize) -> Architecture {
    Architecture {
        kind: ModelKind::Vae,
        image: ImageShape::grey(SIDE, SIDE),
        body: Body::Mlp { hidden: vec![8] },
        latent_dim: l1,
        likelihood: Likelihood::Bernoulli,
        stack: Stack {
            above: vec![l2],
            hidden: vec![8],
        },
        prior: crate::model::Prior::Standard,
    }
}

/// A seeded model with PyTorch's init scaled by `scale` (larger weights make p(z₁|z₂) and
/// p(x|z₁) depend more on their inputs).
fn model(a: &Architecture, kernels: Kernels, scale: f64) -> (Model, VarMap) {
    let varmap = VarMap::new();
    init::seeded(a, &varmap, 5, &Device::Cpu).unwrap();
    for (_, v) in varmap.data().lock().unwrap().iter() {
        v.set(&(v.as_tensor() * scale).unwrap()).unwrap();
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    (Model::with_kernels(a.clone(), vb, kernels).unwrap(), varmap)
}

fn pixels(n: usize) -> Vec<f32> {
    (0..n * SIDE * SIDE)
        .map(|i| {
            if ((i as f32) * 0.61).sin() > 0.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

fn noise(seed: u64, rows: usize, width: usize) -> Tensor {
    let mut r = rng::stream(seed, rng::Stream::Noise, 0);
    rng::normal_tensor(&mut r, (rows, width), &Device::Cpu).unwrap()
}

/// K samples on the first `images` images, no mass.
fn plan(images: usize, samples: usize) -> Plan {
    Plan {
        images,
        samples,
        mass: None,
    }
}

fn scalar(t: &Tensor) -> f64 {
    f64::from(t.to_scalar::<f32>().unwrap())
}

/// log p(x) of each image by the midpoint rule over a grid of (z₁, z₂) ∈ [−R, R]², for
/// one-value layers: p(x) = ∫∫ p(x|z₁) N(z₁; μ(z₂), σ²(z₂)) N(z₂; 0, 1), densities in f64
/// with their 2π terms.
fn log_px_by_quadrature(m: &Model, x: &[f32], n: usize) -> Vec<f64> {
    const R: f64 = 7.0;
    const G: usize = 281;
    let h = 2.0 * R / G as f64;
    let grid: Vec<f32> = (0..G).map(|i| (-R + (i as f64 + 0.5) * h) as f32).collect();
    let col = |v: &[f32]| Tensor::from_slice(v, (v.len(), 1), &Device::Cpu).unwrap();
    let stack = m.stack().unwrap();
    let cond = stack.conditional(0, &col(&grid)).unwrap();
    let (mu, lv) = (
        cond.mu.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        cond.logvar.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let params = m.decode(&col(&grid)).unwrap();
    let log_norm = |z: f64, mu: f64, lv: f64| {
        -0.5 * ((2.0 * std::f64::consts::PI).ln() + lv + (z - mu).powi(2) / lv.exp())
    };
    (0..n)
        .map(|i| {
            let xi = Tensor::from_slice(
                &x[i * SIDE * SIDE..(i + 1) * SIDE * SIDE],
                (1, SIDE * SIDE),
                &Device::Cpu,
            )
            .unwrap();
            let log_px_z: Vec<f32> = m.log_prob(&params, &xi).unwrap().to_vec1().unwrap();
            let mut terms = Vec::with_capacity(G * G);
            for (b, &z2) in grid.iter().enumerate() {
                for (a, &z1) in grid.iter().enumerate() {
                    terms.push(
                        f64::from(log_px_z[a])
                            + log_norm(f64::from(z1), f64::from(mu[b]), f64::from(lv[b]))
                            + log_norm(f64::from(z2), 0.0, 0.0)
                            + 2.0 * h.ln(),
                    );
                }
            }
            let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
        })
        .collect()
}

/// The evaluator's IWAE bound of a two-layer model, with the amortized q(z₁|x) q(z₂|z₁) and with
/// a mean-field q of every layer as proposal, reaches log p(x) by quadrature from below.
#[test]
fn the_two_layer_iwae_bound_reaches_log_px_by_quadrature() {
    let a = arch(1, 1);
    let (m, _) = model(&a, Kernels::Fused, 1.5);
    let n = 3;
    let px = pixels(n);
    let exact = log_px_by_quadrature(&m, &px, n);
    let split = Split::new(px.clone(), vec![0; n], a.image);
    let plan = |samples| plan(n, samples);
    let mut r = rng::stream(2, rng::Stream::Iwae, 0);
    let est = iwae::estimate(&m, &split, plan(5000), &mut r, &Device::Cpu).unwrap();
    // A broad mean-field proposal: N(0, 2²) for both layers.
    let (mu, lv) = (vec![vec![0.0f32; 2]; n], vec![vec![(4.0f32).ln(); 2]; n]);
    let given = iwae::estimate_with(
        &m,
        &split,
        plan(20_000),
        Some((&mu, &lv)),
        &mut r,
        &Device::Cpu,
        None,
    )
    .unwrap();
    for (i, &exact) in exact.iter().enumerate() {
        for (what, bound, elbo) in [
            ("amortized", est.bounds[i], est.elbos[i]),
            ("mean-field", given.bounds[i], given.elbos[i]),
        ] {
            assert!(
                (bound - exact).abs() < 0.03,
                "image {i}, {what}: IWAE {bound} vs quadrature {exact}"
            );
            assert!(
                elbo < exact,
                "image {i}, {what}: ELBO {elbo} above log p(x) {exact}"
            );
        }
    }
}

/// The training loss's ELBO (top KL in closed form, the lower layer's KL sampled) and the
/// evaluator's mean log weight (every layer sampled) estimate the same ELBO; the training
/// bound at large k reaches the evaluator's IWAE estimate.
#[test]
fn the_two_layer_training_bounds_agree_with_the_evaluator() {
    let a = arch(3, 2);
    let (m, _) = model(&a, Kernels::Fused, 1.0);
    let n = 4;
    let px = pixels(n);
    let x = Tensor::from_vec(px.clone(), (n, SIDE * SIDE), &Device::Cpu).unwrap();
    let w = a.latent_width();
    let draws = 2000;
    let elbo: f64 = (0..draws)
        .map(|s| {
            let t = batch_terms(&m, &x, &noise(s, n, w), 1.0, 0.0).unwrap();
            let kl = scalar(&t.kl.unwrap().per_dim().unwrap().sum_all().unwrap());
            -(scalar(&t.recon.sum_all().unwrap()) + kl) / n as f64
        })
        .sum::<f64>()
        / draws as f64;
    let split = Split::new(px, vec![0; n], a.image);
    let plan = plan(n, 4000);
    let mut r = rng::stream(3, rng::Stream::Iwae, 0);
    let est = iwae::estimate(&m, &split, plan, &mut r, &Device::Cpu).unwrap();
    assert!(
        (elbo - est.elbo).abs() < 0.1,
        "training ELBO {elbo} vs the evaluator's {}",
        est.elbo
    );
    let iwae = Objective {
        bound: Bound::Iwae,
        samples: 3000,
        ..Objective::default()
    };
    let l = -scalar(
        &iwae
            .terms(&m, &x, &noise(7, n * 3000, w), 1.0)
            .unwrap()
            .loss,
    );
    assert!(
        (l - est.log_px).abs() < 0.05 && est.log_px > est.elbo + 0.1,
        "L3000 {l} vs the evaluator's {} (ELBO {})",
        est.log_px,
        est.elbo
    );
}

/// Every variable's gradient of the one-sample ELBO, the k-sample ELBO and the IWAE bound of
/// a two-layer model agrees with central finite differences (the largest entry of each) and,
/// on the fused kernels, with candle's stock ops.
#[test]
fn two_layer_gradients_match_finite_differences_and_the_reference_ops() {
    let a = arch(3, 2);
    let (m, vars) = model(&a, Kernels::Reference, 1.0);
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let fused = Model::with_kernels(a.clone(), vb, Kernels::Fused).unwrap();
    let n = 4;
    let x = Tensor::from_vec(pixels(n), (n, SIDE * SIDE), &Device::Cpu).unwrap();
    let objectives = [
        Objective::default(),
        Objective {
            samples: 3,
            ..Objective::default()
        },
        Objective {
            bound: Bound::Iwae,
            samples: 3,
            ..Objective::default()
        },
    ];
    for objective in objectives {
        let eps = noise(11, objective.noise_rows(n), a.latent_width());
        let loss = |m: &Model| objective.terms(m, &x, &eps, 0.5).unwrap().loss;
        let g = grads(&m, &vars, &objective, &x, &eps);
        let gf = grads(&fused, &vars, &objective, &x, &eps);
        for ((name, _), (gv, gfv)) in sorted(&vars).iter().zip(g.iter().zip(&gf)) {
            assert_grads_agree(gfv, gv, &format!("{objective:?} {name}: fused"));
        }
        let what = format!("{objective:?}");
        let checked = assert_finite_differences(&vars, &g, || scalar(&loss(&m)), 3e-3, &what);
        assert_eq!(checked, 2 * a.layers().len());
    }
}

/// The E-step optimizes every layer's q: its ELBO rises from the encoder's, stays below log p(x)
/// by quadrature, and the mean-field IWAE bound with q* reaches log p(x) too.
#[test]
fn the_two_layer_estep_improves_every_layers_q() {
    let a = arch(1, 1);
    let (m, _) = model(&a, Kernels::Fused, 1.5);
    let n = 3;
    let px = pixels(n);
    let exact = log_px_by_quadrature(&m, &px, n);
    let split = Split::new(px, vec![0; n], a.image);
    let mut r = rng::stream(4, rng::Stream::EStep, 0);
    let best = estep::optimize(
        &m,
        &split,
        n,
        estep::Steps::fixed(300),
        &mut r,
        &Device::Cpu,
        None,
    )
    .unwrap();
    assert_eq!(
        best.mu[0].len(),
        2,
        "one (μ, log σ²) per value of each layer"
    );
    let (first, last) = (best.curve[0], *best.curve.last().unwrap());
    let plan = plan(n, 5000);
    let star = iwae::estimate_with(
        &m,
        &split,
        plan,
        Some((&best.mu, &best.logvar)),
        &mut r,
        &Device::Cpu,
        None,
    )
    .unwrap();
    let mean_exact = exact.iter().sum::<f64>() / n as f64;
    assert!(last > first + 0.05, "E-step curve {first} → {last}");
    assert!(
        star.elbo < mean_exact,
        "ELBO* {} vs log p(x) {mean_exact}",
        star.elbo
    );
    assert!(
        (star.log_px - mean_exact).abs() < 0.03,
        "IWAE with q* {} vs quadrature {mean_exact}",
        star.log_px
    );
}
