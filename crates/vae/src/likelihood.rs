//! Observation models p(x|z): per-pixel log-densities of the data given the decoder's output.
//!
//! Every likelihood is a scalar function of one or two decoder outputs per pixel. They run as
//! one fused candle op ([`crate::loglik_op`]) that sums over pixels and carries a hand-written
//! gradient, so the training step never materializes the per-pixel intermediate tensors.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
/// Learned Gaussian log σ is clamped to [ln 0.01, ln e]: below σ = 0.01 the density of flat
/// background pixels grows without bound and training diverges.
pub const LOG_SIGMA_MIN: f32 = -4.605_170_2;
/// Upper clamp of the learned log σ.
pub const LOG_SIGMA_MAX: f32 = 1.0;
/// Below this |logit| the continuous Bernoulli normalizer uses its Taylor series (λ ≈ 0.5).
const CB_SERIES_BELOW: f64 = 1e-2;

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
        }
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
    Gaussian { sigma: f32 },
    GaussianLearned,
    ContinuousBernoulli,
    Laplace { scale: f32 },
}

impl Likelihood {
    /// Resolves a family with the config's `sigma` (ignored by families without a fixed scale).
    pub fn new(kind: LikelihoodKind, sigma: f32) -> Self {
        match kind {
            LikelihoodKind::Bernoulli => Likelihood::Bernoulli,
            LikelihoodKind::Gaussian => Likelihood::Gaussian { sigma },
            LikelihoodKind::GaussianLearned => Likelihood::GaussianLearned,
            LikelihoodKind::ContinuousBernoulli => Likelihood::ContinuousBernoulli,
            LikelihoodKind::Laplace => Likelihood::Laplace { scale: sigma },
        }
    }

    /// Decoder outputs per pixel: 2 for the learned Gaussian (mean, log σ), else 1.
    pub fn params_per_pixel(self) -> usize {
        match self {
            Likelihood::GaussianLearned => 2,
            _ => 1,
        }
    }

    /// Σ over pixels of log p(x|params) for each row: `params` is (B, P·D), `x` is (B, D);
    /// returns (B,). Differentiable with respect to `params`.
    pub fn log_prob(self, params: &Tensor, x: &Tensor) -> Result<Tensor> {
        crate::loglik_op::log_prob(self, params, x)
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
                let inv_var = (-2.0 * log_sigma).exp();
                let f = -0.5 * r * r * inv_var - log_sigma - HALF_LN_2PI as f32;
                let db = if b > LOG_SIGMA_MIN && b < LOG_SIGMA_MAX {
                    r * r * inv_var - 1.0
                } else {
                    0.0
                };
                (f, r * inv_var * mu * (1.0 - mu), db)
            }
        }
    }
}

/// e^x for x ≤ 0, branch-free so loops over it vectorize: Cody–Waite reduction
/// x = n·ln 2 + r, |r| ≤ ln 2 / 2, a degree-6 Taylor polynomial for e^r (relative error
/// < 2e-7), and 2^n built in the exponent bits. Below −87 the result is 0-ish (≤ 1.7e-38).
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 0.0);
    // Round to nearest by adding and removing 1.5·2^23: vectorizes without SSE4.1's roundps.
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFTER) - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// ln(1 + e) for e in [0, 1], branch-free: 2·atanh(s) with s = e / (2 + e) ≤ 1/3, seven terms
/// of the series (absolute error < 1e-8).
#[inline(always)]
pub fn ln_1p_unit(e: f32) -> f32 {
    let s = e / (2.0 + e);
    let s2 = s * s;
    2.0 * s
        * (1.0
            + s2 * (1.0 / 3.0
                + s2 * (1.0 / 5.0
                    + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0)))))))
}

/// (softplus(a), sigmoid(a)) = (log(1 + e^a), 1 / (1 + e^-a)), from one e^-|a|.
#[inline(always)]
pub fn softplus_sigmoid(a: f32) -> (f32, f32) {
    let e = exp_neg(-a.abs());
    let inv = 1.0 / (1.0 + e);
    (
        a.max(0.0) + ln_1p_unit(e),
        if a >= 0.0 { inv } else { e * inv },
    )
}

/// 1 / (1 + e^-a) without overflow.
#[inline(always)]
pub fn sigmoid(a: f32) -> f32 {
    softplus_sigmoid(a).1
}

/// The continuous Bernoulli's log normalizer log C(λ) with λ = sigmoid(a), and d/da.
///
/// C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ), which in logits is a / tanh(a/2): even in a, 2 at a = 0.
/// Near a = 0 both forms cancel catastrophically, so a Taylor series takes over there:
/// log C ≈ ln 2 + a²/12 − 7a⁴/1440 and d/da ≈ a/6 − 7a³/360. Computed in f64.
#[inline]
pub fn cb_log_norm(a: f32) -> (f32, f32) {
    let a = f64::from(a);
    let (f, d) = if a.abs() < CB_SERIES_BELOW {
        let a2 = a * a;
        (
            std::f64::consts::LN_2 + a2 / 12.0 - 7.0 * a2 * a2 / 1440.0,
            a / 6.0 - 7.0 * a2 * a / 360.0,
        )
    } else {
        let m = a.abs();
        (m.ln() - (0.5 * m).tanh().ln(), 1.0 / a - 1.0 / a.sinh())
    };
    (f as f32, d as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
        let below = cb_log_norm(0.0099999).0;
        let above = cb_log_norm(0.0100001).0;
        assert!((below - above).abs() < 1e-6, "{below} vs {above}");
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

    #[test]
    fn fast_exp_and_log1p_match_libm() {
        let mut a = -90.0f32;
        while a <= 0.0 {
            let (got, want) = (exp_neg(a), f64::from(a).exp());
            assert!(
                (f64::from(got) - want).abs() <= 3e-7 * want + 1e-37,
                "exp({a}) = {got} vs {want}"
            );
            a += 0.0137;
        }
        for i in 0..=1000 {
            let e = i as f32 / 1000.0;
            let (got, want) = (ln_1p_unit(e), f64::from(e).ln_1p());
            assert!(
                (f64::from(got) - want).abs() <= 2e-7 * want + 1e-9,
                "ln1p({e}) = {got} vs {want}"
            );
        }
        for &a in &[-200.0f32, -20.0, -1.0, 0.0, 1e-3, 3.0, 50.0, 200.0] {
            let (sp, sg) = softplus_sigmoid(a);
            let (a64, sp64) = (f64::from(a), f64::from(a).exp().ln_1p());
            let sp_want = if a > 30.0 { a64 } else { sp64 };
            assert!(
                (f64::from(sp) - sp_want).abs() <= 1e-6 * (1.0 + sp_want),
                "softplus({a})"
            );
            assert!(
                (f64::from(sg) - 1.0 / (1.0 + (-a64).exp())).abs() <= 1e-6,
                "sigmoid({a})"
            );
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
            let got = lik.log_prob(&pt, &xt).unwrap().to_vec1::<f32>().unwrap();
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
        let out = lik.log_prob(params.as_tensor(), &x).unwrap();
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
