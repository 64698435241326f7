//! Draws x ~ p(x|z) from decoder output, each family by its inverse CDF: the images BDMC
//! simulates from the model, whose latent is then an exact posterior sample.

use super::bounds::{LOG_SCALE_FLOOR, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
use super::mass::Mass;
use super::Likelihood;
use rand::Rng;
use rand_distr::StandardNormal;

fn sigmoid(a: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(a)).exp())
}

/// A uniform draw in the open interval (0, 1).
fn open_uniform(r: &mut impl Rng) -> f64 {
    r.random_range(f64::EPSILON..1.0)
}

/// The continuous Bernoulli of logit η, density η e^{ηx} / expm1(η) on [0, 1], at quantile u.
fn continuous_bernoulli(eta: f64, u: f64) -> f64 {
    if eta.abs() < 1e-6 {
        return u;
    }
    ((u * eta.exp_m1()).ln_1p() / eta).clamp(0.0, 1.0)
}

/// A logistic draw of location `mu` and scale `s`.
fn logistic(mu: f64, s: f64, u: f64) -> f64 {
    mu + s * (u / (1.0 - u)).ln()
}

/// A Laplace draw of location `mu` and scale `b`.
fn laplace(mu: f64, b: f64, u: f64) -> f64 {
    let v = u - 0.5;
    mu - b * v.signum() * (1.0 - 2.0 * v.abs()).ln()
}

/// One pixel of a density family (or a mass's underlying density) from its decoder outputs.
fn continuous(mass: Mass, a: f32, b: f32, r: &mut impl Rng) -> f64 {
    let normal = |r: &mut _| -> f64 { rand::Rng::sample(r, StandardNormal) };
    let scale = |b: f32, floor: f32| f64::from(b.max(floor).min(LOG_SIGMA_MAX)).exp();
    match mass {
        Mass::ContinuousBernoulli => continuous_bernoulli(f64::from(a), open_uniform(r)),
        Mass::Gaussian { sigma } => sigmoid(a) + f64::from(sigma) * normal(r),
        Mass::GaussianLearned { log_sigma_min } => sigmoid(a) + scale(b, log_sigma_min) * normal(r),
        Mass::Laplace { scale } => laplace(sigmoid(a), f64::from(scale), open_uniform(r)),
        Mass::Logistic => logistic(sigmoid(a), scale(b, LOG_SCALE_FLOOR), open_uniform(r)),
    }
}

/// One image x ~ p(x | params) for a decoder output row `params` (P·D values: the D first
/// outputs, then the D second ones where the family has two). Binary for the Bernoulli, on the
/// `levels` grid for the discretized families (the bins at the ends take the tails, as their
/// masses do), real-valued for the densities.
pub fn draw(lik: Likelihood, params: &[f32], r: &mut impl Rng) -> Vec<f32> {
    let d = params.len() / lik.params_per_pixel();
    let b = |j: usize| params.get(d + j).copied().unwrap_or(0.0);
    (0..d)
        .map(|j| {
            let a = params[j];
            let x = match lik {
                Likelihood::Bernoulli => f64::from(u8::from(open_uniform(r) < sigmoid(a))),
                Likelihood::ContinuousBernoulli => continuous(Mass::ContinuousBernoulli, a, 0.0, r),
                Likelihood::Gaussian { sigma } => continuous(Mass::Gaussian { sigma }, a, 0.0, r),
                Likelihood::GaussianLearned => continuous(
                    Mass::GaussianLearned {
                        log_sigma_min: LOG_SIGMA_MIN,
                    },
                    a,
                    b(j),
                    r,
                ),
                Likelihood::Laplace { scale } => continuous(Mass::Laplace { scale }, a, 0.0, r),
                Likelihood::Discretized { mass, levels } => {
                    let last = f64::from(levels - 1);
                    let k = (continuous(mass, a, b(j), r) * last)
                        .round()
                        .clamp(0.0, last);
                    k / last
                }
            };
            x as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::likelihood::LEVELS_8BIT;
    use rand_chacha::rand_core::SeedableRng;

    const DRAWS: usize = 200_000;

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(11)
    }

    /// Draws of one pixel with decoder outputs (a, b).
    fn draws(lik: Likelihood, a: f32, b: f32) -> Vec<f32> {
        let params: Vec<f32> = if lik.params_per_pixel() == 2 {
            vec![a, b]
        } else {
            vec![a]
        };
        let mut r = rng();
        (0..DRAWS).map(|_| draw(lik, &params, &mut r)[0]).collect()
    }

    #[test]
    fn discretized_draws_land_in_each_bin_as_often_as_its_mass_says() {
        // The bins' frequencies against the masses `Likelihood::pixel` scores (CDF differences,
        // an independent route from the inverse CDFs above), within 4 standard errors.
        let masses = [
            (Mass::Logistic, 0.3, -2.5),
            (
                Mass::GaussianLearned {
                    log_sigma_min: LOG_SIGMA_MIN,
                },
                -1.0,
                -3.0,
            ),
            (Mass::Laplace { scale: 0.05 }, 2.0, 0.0),
            (Mass::Gaussian { sigma: 0.1 }, 0.0, 0.0),
            (Mass::ContinuousBernoulli, 2.5, 0.0),
        ];
        for (mass, a, b) in masses {
            let lik = Likelihood::Discretized {
                mass,
                levels: LEVELS_8BIT,
            };
            let xs = draws(lik, a, b);
            let mut counts = vec![0usize; 256];
            for x in &xs {
                let k = (x * 255.0).round();
                assert_eq!(k / 255.0, *x, "{mass:?}: {x} is off the grid");
                counts[k as usize] += 1;
            }
            let mut total = 0.0;
            for (k, &c) in counts.iter().enumerate() {
                let p = f64::from(lik.pixel(a, b, k as f32 / 255.0).0).exp();
                total += p;
                let se = (p * (1.0 - p) / DRAWS as f64).sqrt();
                let freq = c as f64 / DRAWS as f64;
                assert!(
                    (freq - p).abs() < 4.0 * se + 1e-4,
                    "{mass:?} bin {k}: drawn {freq}, mass {p}"
                );
            }
            assert!(
                (total - 1.0).abs() < 1e-3,
                "{mass:?}: masses sum to {total}"
            );
        }
    }

    #[test]
    fn density_draws_follow_their_cdf() {
        // The empirical CDF at a few points against the density's integral (trapezoids over
        // `Likelihood::pixel`'s log-density): within 0.005.
        let families = [
            (Likelihood::ContinuousBernoulli, -1.5, 0.0, (0.0, 1.0)),
            (Likelihood::Gaussian { sigma: 0.2 }, 0.4, 0.0, (-1.0, 2.0)),
            (Likelihood::GaussianLearned, -0.3, -1.5, (-1.0, 2.0)),
            (Likelihood::Laplace { scale: 0.1 }, 1.0, 0.0, (-1.0, 2.0)),
        ];
        for (lik, a, b, (lo, hi)) in families {
            let xs = draws(lik, a, b);
            let steps = 20_000;
            let h = (hi - lo) / steps as f64;
            let dens = |x: f64| f64::from(lik.pixel(a, b, x as f32).0).exp();
            let mut cdf = 0.0;
            for s in 0..steps {
                let x0 = lo + s as f64 * h;
                cdf += 0.5 * h * (dens(x0) + dens(x0 + h));
                if (s + 1) % 4000 == 0 {
                    let at = x0 + h;
                    let emp = xs.iter().filter(|&&x| f64::from(x) <= at).count() as f64;
                    let emp = emp / DRAWS as f64;
                    assert!((emp - cdf).abs() < 0.005, "{lik:?} at {at}: {emp} vs {cdf}");
                }
            }
        }
    }

    #[test]
    fn bernoulli_draws_are_binary_with_the_decoders_mean() {
        let xs = draws(Likelihood::Bernoulli, 0.8, 0.0);
        assert!(xs.iter().all(|&x| x == 0.0 || x == 1.0));
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / DRAWS as f64;
        assert!((mean - sigmoid(0.8)).abs() < 0.005, "{mean}");
    }
}
