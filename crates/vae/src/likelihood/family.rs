//! Observation models p(x|z): per-pixel log-densities of the data given the decoder's output.
//!
//! Every likelihood is a scalar function of one or two decoder outputs per pixel
//! ([`Likelihood::pixel`]); [`super::log_prob`] sums it over pixels, as one fused candle op
//! ([`super::fused`]) with a hand-written gradient, or with candle's ops ([`super::reference`]).

use super::bounds::{LEVELS_8BIT, LOG_SCALE_FLOOR, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
use super::mass::{last_level, Mass};
use serde::{Deserialize, Serialize};
use vaelab_kernels::fastmath::{
    exp_clamped, ln_pos, one_minus_exp_neg_parts, sigmoid, softplus_sigmoid,
};

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
/// Below this |logit| the continuous Bernoulli normalizer's slope is its Taylor series.
const CB_SERIES_BELOW: f32 = 0.5;

/// The likelihood families, as named in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LikelihoodKind {
    /// Bernoulli with logits (binary cross-entropy).
    #[default]
    Bernoulli,
    /// Gaussian with mean sigmoid(output) and fixed σ (`sigma`).
    Gaussian,
    /// Gaussian with mean and per-pixel log σ both from the decoder.
    GaussianLearned,
    /// Continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), properly normalized on [0, 1].
    ContinuousBernoulli,
    /// Laplace with mean sigmoid(output) and fixed scale (`sigma`).
    Laplace,
    /// Discretized logistic: per-pixel mean sigmoid(output) and learned log-scale, trained on
    /// the mass of each 8-bit level (the IAF / PixelCNN++ decoder with one component).
    DiscretizedLogistic,
}

impl LikelihoodKind {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            LikelihoodKind::Bernoulli => "bernoulli",
            LikelihoodKind::Gaussian => "gaussian",
            LikelihoodKind::GaussianLearned => "gaussian-learned",
            LikelihoodKind::ContinuousBernoulli => "continuous-bernoulli",
            LikelihoodKind::Laplace => "laplace",
            LikelihoodKind::DiscretizedLogistic => "discretized-logistic",
        }
    }

    /// Whether `discretized = true` applies: the densities that can also be trained on masses
    /// (the discretized logistic always is; the two Bernoullis are not location-scale families).
    pub fn can_discretize(self) -> bool {
        matches!(
            self,
            LikelihoodKind::Gaussian | LikelihoodKind::GaussianLearned | LikelihoodKind::Laplace
        )
    }

    /// Whether the family reads the fixed scale `sigma`.
    pub fn uses_sigma(self) -> bool {
        matches!(self, LikelihoodKind::Gaussian | LikelihoodKind::Laplace)
    }
}

/// A likelihood with its fixed parameters resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Likelihood {
    Bernoulli,
    Gaussian {
        sigma: f32,
    },
    GaussianLearned,
    ContinuousBernoulli,
    Laplace {
        scale: f32,
    },
    /// The probability mass of each pixel's bin among `levels` grey levels (see
    /// [`super::mass`]): a proper pmf over quantized images.
    Discretized {
        mass: Mass,
        levels: u16,
    },
}

impl Likelihood {
    /// Resolves a family with the config's `sigma` (ignored by families without a fixed scale);
    /// `discretized` trains a family that [`LikelihoodKind::can_discretize`] on 8-bit masses.
    pub fn new(kind: LikelihoodKind, sigma: f32, discretized: bool) -> Self {
        let on_8bit = |mass| Likelihood::Discretized {
            mass,
            levels: LEVELS_8BIT,
        };
        match (kind, discretized && kind.can_discretize()) {
            (LikelihoodKind::Bernoulli, _) => Likelihood::Bernoulli,
            (LikelihoodKind::ContinuousBernoulli, _) => Likelihood::ContinuousBernoulli,
            (LikelihoodKind::Gaussian, false) => Likelihood::Gaussian { sigma },
            (LikelihoodKind::GaussianLearned, false) => Likelihood::GaussianLearned,
            (LikelihoodKind::Laplace, false) => Likelihood::Laplace { scale: sigma },
            (LikelihoodKind::Gaussian, true) => on_8bit(Mass::Gaussian { sigma }),
            // On masses σ cannot run off to 0, so only a numerical floor remains.
            (LikelihoodKind::GaussianLearned, true) => on_8bit(Mass::GaussianLearned {
                log_sigma_min: LOG_SCALE_FLOOR,
            }),
            (LikelihoodKind::Laplace, true) => on_8bit(Mass::Laplace { scale: sigma }),
            (LikelihoodKind::DiscretizedLogistic, _) => on_8bit(Mass::Logistic),
        }
    }

    /// Decoder outputs per pixel: 2 where the scale is learned (mean, log-scale), else 1.
    pub fn params_per_pixel(self) -> usize {
        match self {
            Likelihood::GaussianLearned => 2,
            Likelihood::Discretized { mass, .. } => mass.params_per_pixel(),
            _ => 1,
        }
    }

    /// How this model's decoder output is scored as a probability mass on data with `levels`
    /// grey levels: each density over its bins (the learned Gaussian with the σ it was trained
    /// with), the Bernoulli by its own pmf on binary pixels and, since on grey pixels it defines
    /// no distribution, by the discretized continuous Bernoulli of its λ.
    pub fn scored_on(self, levels: u16) -> Likelihood {
        let mass = match self {
            Likelihood::Bernoulli if levels == 2 => return Likelihood::Bernoulli,
            Likelihood::Bernoulli | Likelihood::ContinuousBernoulli => Mass::ContinuousBernoulli,
            Likelihood::Gaussian { sigma } => Mass::Gaussian { sigma },
            Likelihood::GaussianLearned => Mass::GaussianLearned {
                log_sigma_min: LOG_SIGMA_MIN,
            },
            Likelihood::Laplace { scale } => Mass::Laplace { scale },
            Likelihood::Discretized { mass, .. } => mass,
        };
        Likelihood::Discretized { mass, levels }
    }

    /// What [`Likelihood::scored_on`] scores, in words, for tables and figures.
    pub fn mass_label(self, levels: u16) -> String {
        match (self, self.scored_on(levels)) {
            (_, Likelihood::Discretized { mass, .. }) => {
                let of = match self {
                    Likelihood::Bernoulli => " (of the bernoulli's λ)",
                    _ => "",
                };
                format!("discretized {}{of}, {levels} levels", mass.name())
            }
            _ => format!("bernoulli pmf, {levels} levels"),
        }
    }

    /// log p(x | a, b) of one pixel, with `a` the first decoder output and `b` the second
    /// (used only by the learned Gaussian), and its derivatives (d/da, d/db).
    #[inline(always)]
    pub fn pixel(self, a: f32, b: f32, x: f32) -> (f32, f32, f32) {
        match self {
            Likelihood::Bernoulli => {
                let (softplus, sigmoid) = softplus_sigmoid(a);
                (x * a - softplus, x - sigmoid, 0.0)
            }
            Likelihood::ContinuousBernoulli => {
                let (log_c, dlog_c) = cb_log_norm(a);
                let (softplus, sigmoid) = softplus_sigmoid(a);
                (x * a - softplus + log_c, x - sigmoid + dlog_c, 0.0)
            }
            Likelihood::Gaussian { sigma } => {
                let mu = sigmoid(a);
                let r = x - mu;
                let inv_var = 1.0 / (sigma * sigma);
                let f = -0.5 * r * r * inv_var - sigma.ln() - HALF_LN_2PI as f32;
                (f, r * inv_var * mu * (1.0 - mu), 0.0)
            }
            Likelihood::Laplace { scale } => {
                let mu = sigmoid(a);
                let r = x - mu;
                let f = -r.abs() / scale - (2.0 * scale).ln();
                (f, r.signum() / scale * mu * (1.0 - mu), 0.0)
            }
            Likelihood::GaussianLearned => {
                let mu = sigmoid(a);
                let r = x - mu;
                let log_sigma = b.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX);
                // The fast exp, not std's (a call per pixel that kept the loop scalar).
                let inv_var = exp_clamped(-2.0 * log_sigma);
                let f = -0.5 * r * r * inv_var - log_sigma - HALF_LN_2PI as f32;
                let db = if b > LOG_SIGMA_MIN && b < LOG_SIGMA_MAX {
                    r * r * inv_var - 1.0
                } else {
                    0.0
                };
                (f, r * inv_var * mu * (1.0 - mu), db)
            }
            Likelihood::Discretized { mass, levels } => mass.pixel(a, b, x, last_level(levels)),
        }
    }
}

/// The continuous Bernoulli's log normalizer log C(λ) with λ = sigmoid(a), and d/da.
///
/// C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), which in logits is a / tanh(a/2) = (1 + e^−|a|) / q with
/// q = (1 − e^−|a|)/|a|: even in a, 2 at a = 0, and q comes from a series near 0, so nothing
/// cancels. The slope 1/a − 1/sinh(a) does cancel near 0: below |a| = ½ it is its Taylor series
/// a/6 − 7a³/360 + 31a⁵/15120 − 127a⁷/604800 + 73a⁹/3421440 (truncation error < 2e-9 there).
/// f32 arithmetic and selects, so the pixel loops vectorize (libm's f64 calls kept them scalar).
#[inline(always)]
pub fn cb_log_norm(a: f32) -> (f32, f32) {
    let m = a.abs();
    let p = one_minus_exp_neg_parts(m);
    let (om, e) = (p.om, p.e);
    let log_c = ln_pos((1.0 + e) * p.q_den / p.q_num);
    let m2 = m * m;
    let series = m
        * (1.0 / 6.0
            + m2 * (-7.0 / 360.0
                + m2 * (31.0 / 15120.0 + m2 * (-127.0 / 604_800.0 + m2 * (73.0 / 3_421_440.0)))));
    // 1/m − 1/sinh m = 1/m − 2e^−m / ((1 − e^−m)(1 + e^−m)).
    let direct = 1.0 / m.max(1e-30) - 2.0 * e / (om * (1.0 + e)).max(1e-30);
    let slope = if m < CB_SERIES_BELOW { series } else { direct };
    (log_c, slope.copysign(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    const ALL: [Likelihood; 5] = [
        Likelihood::Bernoulli,
        Likelihood::Gaussian { sigma: 0.3 },
        Likelihood::GaussianLearned,
        Likelihood::ContinuousBernoulli,
        Likelihood::Laplace { scale: 0.2 },
    ];

    /// Textbook densities in f64, written from the definitions and not from `pixel`.
    fn direct(lik: Likelihood, a: f64, b: f64, x: f64) -> f64 {
        let lam = 1.0 / (1.0 + (-a).exp());
        match lik {
            Likelihood::Bernoulli => x * lam.ln() + (1.0 - x) * (1.0 - lam).ln(),
            Likelihood::ContinuousBernoulli => {
                let c = if (lam - 0.5).abs() < 1e-9 {
                    2.0
                } else {
                    2.0 * (1.0 - 2.0 * lam).atanh() / (1.0 - 2.0 * lam)
                };
                x * lam.ln() + (1.0 - x) * (1.0 - lam).ln() + c.ln()
            }
            Likelihood::Gaussian { sigma } => {
                let s = f64::from(sigma);
                -(x - lam).powi(2) / (2.0 * s * s) - (s * (2.0 * std::f64::consts::PI).sqrt()).ln()
            }
            Likelihood::Laplace { scale } => {
                let s = f64::from(scale);
                -(x - lam).abs() / s - (2.0 * s).ln()
            }
            Likelihood::GaussianLearned => {
                let s = b.clamp(LOG_SIGMA_MIN as f64, LOG_SIGMA_MAX as f64).exp();
                -(x - lam).powi(2) / (2.0 * s * s) - (s * (2.0 * std::f64::consts::PI).sqrt()).ln()
            }
            Likelihood::Discretized { .. } => unreachable!("likelihood::mass tests the masses"),
        }
    }

    #[test]
    fn pixel_log_density_matches_direct_formula() {
        for lik in ALL {
            for &a in &[-6.0f32, -1.3, -0.004, 0.0, 0.3, 2.5, 7.0] {
                for &b in &[-2.0f32, 0.1] {
                    for &x in &[0.0f32, 0.2, 0.5, 1.0] {
                        let got = f64::from(lik.pixel(a, b, x).0);
                        let want = direct(lik, f64::from(a), f64::from(b), f64::from(x));
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{lik:?} a={a} x={x}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let h = 1e-3f64;
        for lik in ALL {
            for &a in &[-3.0f32, -0.5, -0.005, 0.02, 1.7] {
                for &x in &[0.0f32, 0.35, 1.0] {
                    let b = -1.0f32;
                    let (_, da, db) = lik.pixel(a, b, x);
                    let fa = |a: f64| direct(lik, a, f64::from(b), f64::from(x));
                    let num_a = (fa(f64::from(a) + h) - fa(f64::from(a) - h)) / (2.0 * h);
                    assert!(
                        (f64::from(da) - num_a).abs() < 2e-3 * (1.0 + num_a.abs()),
                        "{lik:?} d/da at a={a} x={x}: {da} vs {num_a}"
                    );
                    let fb = |b: f64| direct(lik, f64::from(a), b, f64::from(x));
                    let num_b = (fb(f64::from(b) + h) - fb(f64::from(b) - h)) / (2.0 * h);
                    assert!(
                        (f64::from(db) - num_b).abs() < 2e-3 * (1.0 + num_b.abs()),
                        "{lik:?} d/db: {db} vs {num_b}"
                    );
                }
            }
        }
    }

    #[test]
    fn continuous_bernoulli_normalizer_is_smooth_at_half() {
        // Both sides of the series switch agree, and C(0.5) = 2.
        let (at0, _) = cb_log_norm(0.0);
        assert!((at0 - std::f32::consts::LN_2).abs() < 1e-7);
        let (below, above) = (cb_log_norm(0.4999999), cb_log_norm(0.5000001));
        assert!((below.0 - above.0).abs() < 1e-6, "{below:?} vs {above:?}");
        assert!((below.1 - above.1).abs() < 1e-6, "{below:?} vs {above:?}");
        // Against f64 from the definition, from λ = ½ to saturated logits, both signs.
        let mut m = 1e-6f64;
        while m < 80.0 {
            for a in [m, -m] {
                let (f, d) = cb_log_norm(a as f32);
                let a = f64::from(a as f32);
                let (f_want, d_want) = ((a / (0.5 * a).tanh()).ln(), 1.0 / a - 1.0 / a.sinh());
                assert!(
                    (f64::from(f) - f_want).abs() < 3e-7 * f_want,
                    "log C({a}) = {f}"
                );
                // Past the series the slope is a difference of two numbers near 1/|a|: a few
                // of their ulps, absolute.
                assert!(
                    (f64::from(d) - d_want).abs() < 4e-7 + 1e-6 * d_want.abs(),
                    "d log C({a}) = {d} vs {d_want}"
                );
            }
            m *= 1.1;
        }
        // The density integrates to one over [0, 1] (midpoint rule).
        for &a in &[-4.0f32, -0.001, 0.0, 0.7] {
            let n = 20000;
            let total: f64 = (0..n)
                .map(|i| {
                    f64::from(
                        Likelihood::ContinuousBernoulli
                            .pixel(a, 0.0, (i as f32 + 0.5) / n as f32)
                            .0,
                    )
                    .exp()
                })
                .sum::<f64>()
                / n as f64;
            assert!((total - 1.0).abs() < 1e-3, "a={a}: {total}");
        }
    }

    /// Bits/dim score each family's own distribution: densities over their bins, the Bernoulli
    /// by its pmf on binary pixels and as a continuous Bernoulli on grey ones.
    #[test]
    fn each_family_is_scored_by_a_proper_mass() {
        let disc = |mass, levels| Likelihood::Discretized { mass, levels };
        assert_eq!(Likelihood::Bernoulli.scored_on(2), Likelihood::Bernoulli);
        assert_eq!(
            Likelihood::Bernoulli.scored_on(256),
            disc(Mass::ContinuousBernoulli, 256)
        );
        assert_eq!(
            Likelihood::GaussianLearned.scored_on(256),
            disc(
                Mass::GaussianLearned {
                    log_sigma_min: LOG_SIGMA_MIN
                },
                256
            )
        );
        let trained = Likelihood::new(LikelihoodKind::GaussianLearned, 0.1, true);
        assert_eq!(
            trained,
            disc(
                Mass::GaussianLearned {
                    log_sigma_min: LOG_SCALE_FLOOR
                },
                256
            )
        );
        assert_eq!(trained.scored_on(256), trained);
        assert_eq!(
            Likelihood::new(LikelihoodKind::DiscretizedLogistic, 0.1, false),
            disc(Mass::Logistic, 256)
        );
        // `discretized` means nothing for the Bernoullis.
        assert_eq!(
            Likelihood::new(LikelihoodKind::Bernoulli, 0.1, true),
            Likelihood::Bernoulli
        );
        assert!(Likelihood::Bernoulli
            .mass_label(256)
            .contains("continuous-bernoulli (of the bernoulli's λ)"));
        // On binary pixels the Bernoulli pmf sums to one over {0, 1}.
        for a in [-7.0f32, 0.0, 2.5] {
            let p: f32 = [0.0f32, 1.0]
                .iter()
                .map(|&x| Likelihood::Bernoulli.pixel(a, 0.0, x).0.exp())
                .sum();
            assert!((p - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn saturated_pixels_stay_finite() {
        for lik in ALL {
            for &a in &[-100.0f32, -30.0, 30.0, 100.0] {
                for &x in &[0.0f32, 1.0] {
                    let (f, da, db) = lik.pixel(a, a, x);
                    assert!(
                        f.is_finite() && da.is_finite() && db.is_finite(),
                        "{lik:?} a={a} x={x}"
                    );
                }
            }
        }
    }

    #[test]
    fn tensor_op_sums_pixels_per_row() {
        let dev = Device::Cpu;
        for lik in ALL {
            let p = lik.params_per_pixel();
            let (rows, d) = (3, 5);
            let params: Vec<f32> = (0..rows * d * p)
                .map(|i| (i as f32 * 0.37).sin() * 3.0)
                .collect();
            let x: Vec<f32> = (0..rows * d)
                .map(|i| ((i * 7) % 11) as f32 / 10.0)
                .collect();
            let pt = Tensor::from_slice(&params, (rows, d * p), &dev).unwrap();
            let xt = Tensor::from_slice(&x, (rows, d), &dev).unwrap();
            let got = super::super::fused::log_prob(lik, &pt, &xt)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for r in 0..rows {
                let want: f64 = (0..d)
                    .map(|j| {
                        let a = params[r * d * p + j];
                        let b = if p == 2 {
                            params[r * d * p + d + j]
                        } else {
                            0.0
                        };
                        direct(lik, f64::from(a), f64::from(b), f64::from(x[r * d + j]))
                    })
                    .sum();
                assert!(
                    (f64::from(got[r]) - want).abs() < 1e-3,
                    "{lik:?} row {r}: {} vs {want}",
                    got[r]
                );
            }
        }
    }

    #[test]
    fn tensor_op_gradient_matches_pixel_derivatives() {
        let dev = Device::Cpu;
        let lik = Likelihood::GaussianLearned;
        let params = candle_core::Var::from_slice(
            &[0.3f32, -1.0, 2.0, -2.0, 0.5, 0.0, -0.7, 0.2],
            (2, 4),
            &dev,
        )
        .unwrap();
        let x = Tensor::from_slice(&[0.1f32, 0.9, 0.4, 0.0], (2, 2), &dev).unwrap();
        let out = super::super::fused::log_prob(lik, params.as_tensor(), &x).unwrap();
        // Weight rows differently to check the incoming gradient is applied per row.
        let w = Tensor::from_slice(&[1.0f32, -2.0], 2, &dev).unwrap();
        let grads = (out * w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(&params).unwrap().to_vec2::<f32>().unwrap();
        let p = params.as_tensor().to_vec2::<f32>().unwrap();
        let xs = [[0.1f32, 0.9], [0.4, 0.0]];
        for r in 0..2 {
            let scale = if r == 0 { 1.0 } else { -2.0 };
            for j in 0..2 {
                let (_, da, db) = lik.pixel(p[r][j], p[r][2 + j], xs[r][j]);
                assert!((g[r][j] - scale * da).abs() < 1e-5);
                assert!((g[r][2 + j] - scale * db).abs() < 1e-5);
            }
        }
    }
}
