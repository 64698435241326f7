//! Probability masses of quantized pixels: every family's mass on the bin of each grey level.
//!
//! A pixel with L grey levels is x = k / (L − 1), k ∈ {0..L−1} (L = 256 for 8-bit images, 2 for
//! binarized ones). The bin of k is [(k − ½)/(L − 1), (k + ½)/(L − 1)], with the end bins open to
//! ±∞ for the families on the whole real line (Gaussian, Laplace, logistic) — the convention of
//! PixelCNN++, VDVAE, DDPM and NVAE — and clipped to [0, 1] for the continuous Bernoulli, whose
//! bins then tile its support. Edge bins are decided on the integer k, not on a float compare.
//!
//! Masses are log-space differences of log-CDFs: a bin above the mean is mirrored below it (the
//! families are symmetric), so log P = log F(hi) + log(1 − F(lo)/F(hi)) with F(lo) the smaller
//! CDF, finite however deep in the tail. When a bin is so narrow against the density's local
//! scale that this difference would cancel, the mass is the density at the bin's centre times
//! its width (PixelCNN++'s fallback). Everything is f32 arithmetic and selects, so the pixel
//! loops vectorize; the tests hold it to f64 references.

use super::bounds::{LOG_SCALE_FLOOR, LOG_SIGMA_MAX};
use std::f32::consts::{FRAC_1_SQRT_2, LN_2};
use vaelab_kernels::fastmath::{
    exp_clamped, exp_neg, ln_1m_exp, ln_1p_unit, ln_pos, one_minus_exp_neg_parts, sigmoid,
};

/// Below this |log(F(lo)/F(hi))| a bin counts as narrow and takes the midpoint rule (whose
/// relative error is then under 1e-6, where the f32 difference would lose digits).
const NARROW: f32 = 1e-3;
/// Standardized edges are kept within ±T_MAX so that t² stays finite in f32.
const T_MAX: f32 = 1e6;

/// A family scored by the probability mass of each pixel's bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mass {
    /// Gaussian with mean sigmoid(a) and fixed σ.
    Gaussian { sigma: f32 },
    /// Gaussian with mean sigmoid(a) and log σ = b, clamped to [`log_sigma_min`, ln e].
    GaussianLearned { log_sigma_min: f32 },
    /// Laplace with mean sigmoid(a) and fixed scale.
    Laplace { scale: f32 },
    /// Logistic with mean sigmoid(a) and log-scale b (one component of PixelCNN++'s mixture).
    Logistic,
    /// Continuous Bernoulli with logit a; its bins tile [0, 1].
    ContinuousBernoulli,
}

impl Mass {
    /// Decoder outputs per pixel: 2 where the scale is learned, else 1.
    pub fn params_per_pixel(self) -> usize {
        match self {
            Mass::GaussianLearned { .. } | Mass::Logistic => 2,
            _ => 1,
        }
    }

    /// The family's name in labels ("discretized gaussian", …).
    pub fn name(self) -> &'static str {
        match self {
            Mass::Gaussian { .. } => "gaussian",
            Mass::GaussianLearned { .. } => "gaussian-learned",
            Mass::Laplace { .. } => "laplace",
            Mass::Logistic => "logistic",
            Mass::ContinuousBernoulli => "continuous-bernoulli",
        }
    }

    /// log P(bin of x | a, b) for a pixel x = k / `last` (data of `last` + 1 levels), with its
    /// derivatives (d/da, d/db).
    #[inline(always)]
    pub fn pixel(self, a: f32, b: f32, x: f32, last: f32) -> (f32, f32, f32) {
        // Round to the nearest integer by adding and removing 1.5·2^23 (vectorizes).
        const SHIFTER: f32 = 12_582_912.0;
        // max/min, not clamp: clamp's assert on a runtime bound keeps the loop from vectorizing.
        let k = ((x * last + SHIFTER) - SHIFTER).max(0.0).min(last);
        match self {
            Mass::ContinuousBernoulli => {
                let (f, da) = continuous_bernoulli(a, k, last);
                (f, da, 0.0)
            }
            Mass::Gaussian { sigma } => fixed_scale::<Normal>(a, sigma, k, last),
            Mass::Laplace { scale } => fixed_scale::<Laplace>(a, scale, k, last),
            Mass::GaussianLearned { log_sigma_min } => {
                learned_scale::<Normal>(a, b, log_sigma_min, k, last)
            }
            Mass::Logistic => learned_scale::<Logistic>(a, b, LOG_SCALE_FLOOR, k, last),
        }
    }
}

/// A symmetric standardized density f on the real line: log F and log f.
trait Standard {
    fn log_cdf(t: f32) -> f32;
    fn log_pdf(t: f32) -> f32;
}

struct Normal;
struct Logistic;
struct Laplace;

/// ln erfc(z) for z ≥ 0 straight in log space, so it never underflows: Numerical Recipes'
/// Chebyshev fit erfc(z) ≈ τ·exp(−z² + P(τ)), τ = 1/(1 + z/2), relative error < 1.2e-7.
#[inline(always)]
fn ln_erfc(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_515_9 + t * (-0.822_152_2 + t * 0.170_872_77))))))));
    ln_pos(t) - z * z + p
}

impl Standard for Normal {
    #[inline(always)]
    fn log_cdf(t: f32) -> f32 {
        let le = ln_erfc(t.abs() * FRAC_1_SQRT_2);
        if t <= 0.0 {
            le - LN_2
        } else {
            ln_pos(1.0 - 0.5 * exp_neg(le))
        }
    }
    #[inline(always)]
    fn log_pdf(t: f32) -> f32 {
        -0.5 * t * t - 0.918_938_5
    }
}

impl Standard for Logistic {
    #[inline(always)]
    fn log_cdf(t: f32) -> f32 {
        // log σ(t) = −softplus(−t).
        -((-t).max(0.0) + ln_1p_unit(exp_neg(-t.abs())))
    }
    #[inline(always)]
    fn log_pdf(t: f32) -> f32 {
        -t.abs() - 2.0 * ln_1p_unit(exp_neg(-t.abs()))
    }
}

impl Standard for Laplace {
    #[inline(always)]
    fn log_cdf(t: f32) -> f32 {
        if t <= 0.0 {
            t - LN_2
        } else {
            ln_pos(1.0 - 0.5 * exp_neg(-t))
        }
    }
    #[inline(always)]
    fn log_pdf(t: f32) -> f32 {
        -t.abs() - LN_2
    }
}

/// The edges (k − ½)/last and (k + ½)/last of level k's bin. Both come from the same product
/// (j + ½)·(1/last), so the upper edge of bin k is bit for bit the lower edge of bin k + 1 and the
/// masses telescope to 1 (edges rounded separately put the sum off by 1e-5 at σ = 0.003).
#[inline(always)]
pub fn edges(k: f32, last: f32) -> (f32, f32) {
    let inv_last = 1.0 / last;
    ((k - 0.5) * inv_last, (k + 0.5) * inv_last)
}

/// (log P, d log P / dμ, d log P / d log s) of the bin of level k for location μ, scale e^log_s.
#[inline(always)]
fn located<F: Standard>(mu: f32, log_s: f32, k: f32, last: f32) -> (f32, f32, f32) {
    let inv_s = exp_clamped(-log_s);
    let (lo, hi) = edges(k, last);
    let t_lo = ((lo - mu) * inv_s).clamp(-T_MAX, T_MAX);
    let t_hi = ((hi - mu) * inv_s).clamp(-T_MAX, T_MAX);
    // An open end lies so far out that its CDF vanishes beside the other end's.
    let t_lo = if k <= 0.0 {
        -2.0 * t_hi.abs() - 100.0
    } else {
        t_lo
    };
    let t_hi = if k >= last {
        2.0 * t_lo.abs() + 100.0
    } else {
        t_hi
    };
    let flip = t_lo + t_hi > 0.0;
    let (u_lo, u_hi) = if flip { (-t_hi, -t_lo) } else { (t_lo, t_hi) };
    let (c_lo, c_hi) = (F::log_cdf(u_lo), F::log_cdf(u_hi));
    let d = (c_lo - c_hi).min(-1e-30);
    let exact = c_hi + ln_1m_exp(d);
    // d log P: the densities at the two edges over the mass (0 at an open end).
    let r_lo = exp_clamped(F::log_pdf(t_lo) - exact);
    let r_hi = exp_clamped(F::log_pdf(t_hi) - exact);
    // A narrow bin: density at its centre times its width. Its derivatives take the slope of
    // log f across the bin (the secant), which is right also where the bin straddles a kink
    // (the Laplace at its mean), where the slope at the centre is not.
    let t = 0.5 * (t_lo + t_hi);
    let secant = (F::log_pdf(t_hi) - F::log_pdf(t_lo)) / (t_hi - t_lo).max(1e-30);
    let midpoint = F::log_pdf(t) + ln_pos(inv_s / last);
    if d > -NARROW {
        (midpoint, -secant * inv_s, -secant * t - 1.0)
    } else {
        (exact, (r_lo - r_hi) * inv_s, t_lo * r_lo - t_hi * r_hi)
    }
}

/// μ = sigmoid(a) and dμ/da.
#[inline(always)]
fn mean(a: f32) -> (f32, f32) {
    let mu = sigmoid(a);
    (mu, mu * (1.0 - mu))
}

#[inline(always)]
fn fixed_scale<F: Standard>(a: f32, scale: f32, k: f32, last: f32) -> (f32, f32, f32) {
    let (mu, dmu) = mean(a);
    let (f, d_mu, _) = located::<F>(mu, scale.ln(), k, last);
    (f, d_mu * dmu, 0.0)
}

#[inline(always)]
fn learned_scale<F: Standard>(a: f32, b: f32, floor: f32, k: f32, last: f32) -> (f32, f32, f32) {
    let (mu, dmu) = mean(a);
    let log_s = b.max(floor).min(LOG_SIGMA_MAX);
    let (f, d_mu, d_log_s) = located::<F>(mu, log_s, k, last);
    let db = if b > floor && b < LOG_SIGMA_MAX {
        d_log_s
    } else {
        0.0
    };
    (f, d_mu * dmu, db)
}

/// The continuous Bernoulli with logit η is the exponential density η e^{ηx} / expm1(η) on
/// [0, 1], so a bin [lo, lo + w] holds e^{η·lo}·expm1(ηw)/expm1(η), which in logs is
/// η·lo + ln w + h(ηw) − h(η) with h(y) = ln(expm1(y)/y) = max(y, 0) + ln q(|y|) and
/// q(m) = (1 − e^−m)/m (a series near 0: smooth through η = 0). The three logs are taken as
/// one, ln(w·q(|ηw|)/q(|η|)), of a ratio that stays near w·max(1, |η|/2): no overflow.
/// Returns (log P, d log P / dη).
#[inline(always)]
fn continuous_bernoulli(eta: f32, k: f32, last: f32) -> (f32, f32) {
    let (lo, hi) = edges(k, last);
    let lo = if k <= 0.0 { 0.0 } else { lo };
    let hi = if k >= last { 1.0 } else { hi };
    let w = hi - lo;
    let y = eta * w;
    let (p_w, p_1) = (
        one_minus_exp_neg_parts(y.abs()),
        one_minus_exp_neg_parts(eta.abs()),
    );
    let ratio = (w * p_w.q_num * p_1.q_den) / (p_w.q_den * p_1.q_num);
    let log_p = eta * lo + (y.max(0.0) - eta.max(0.0)) + ln_pos(ratio);
    (
        log_p,
        lo + w * h_slope(y, p_w.om, p_w.e) - h_slope(eta, p_1.om, p_1.e),
    )
}

/// h'(y) = 1/(1 − e^{−y}) − 1/y from m = |y|'s 1 − e^−m and e^−m; its series below |y| = 0.01.
#[inline(always)]
fn h_slope(y: f32, om: f32, e: f32) -> f32 {
    let big = (if y > 0.0 { 1.0 } else { -e }) / om.max(1e-30) - 1.0 / y;
    let small = 0.5 + y * (1.0 / 12.0 - y * y / 720.0);
    if y.abs() < 1e-2 {
        small
    } else {
        big
    }
}

/// The highest level k of data with `levels` grey levels (255 for 8-bit), as the kernels take it.
pub fn last_level(levels: u16) -> f32 {
    f32::from(levels.max(2) - 1)
}

/// Bits per dimension of a negative log-probability in nats summed over `dims` pixels.
pub fn bits_per_dim(neg_log_prob_nats: f64, dims: usize) -> f64 {
    neg_log_prob_nats / (dims.max(1) as f64 * std::f64::consts::LN_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAST: f32 = 255.0;

    /// Φ(t) in f64, from libm's erfc (accurate relative to its value far into the tails).
    fn phi(t: f64) -> f64 {
        0.5 * libm::erfc(-t / std::f64::consts::SQRT_2)
    }

    /// Reference masses in f64, written from the CDFs and not from the kernels. The mean and
    /// the bin edges are the kernel's f32 values (an f32 model places them no finer), and a bin
    /// above the mean is taken from the upper tail so that f64 itself does not cancel.
    fn reference(mass: Mass, a: f64, b: f64, k: u32, last: u32) -> f64 {
        let (lo, hi) = edges(k as f32, last as f32);
        let (lo, hi) = (f64::from(lo), f64::from(hi));
        let mu = f64::from(sigmoid(a as f32));
        reference_at(mass, a, mu, b, k, last, lo, hi)
    }

    /// As [`reference`], with the mean from `a` in f64 (for derivatives by finite differences).
    fn reference_f64(mass: Mass, a: f64, b: f64, k: u32, last: u32) -> f64 {
        let half = 0.5 / f64::from(last);
        let x = f64::from(k) / f64::from(last);
        let mu = 1.0 / (1.0 + (-a).exp());
        reference_at(mass, a, mu, b, k, last, x - half, x + half)
    }

    #[allow(clippy::too_many_arguments)]
    fn reference_at(
        mass: Mass,
        a: f64,
        mu: f64,
        b: f64,
        k: u32,
        last: u32,
        lo: f64,
        hi: f64,
    ) -> f64 {
        let (lo_open, hi_open) = (k == 0, k == last);
        let mass_of = |cdf: &dyn Fn(f64) -> f64, s: f64| {
            let t_lo = if lo_open {
                f64::NEG_INFINITY
            } else {
                (lo - mu) / s
            };
            let t_hi = if hi_open {
                f64::INFINITY
            } else {
                (hi - mu) / s
            };
            if t_lo + t_hi > 0.0 {
                cdf(-t_lo) - cdf(-t_hi)
            } else {
                cdf(t_hi) - cdf(t_lo)
            }
        };
        let logistic = |t: f64| 1.0 / (1.0 + (-t).exp());
        let laplace = |t: f64| {
            if t < 0.0 {
                0.5 * t.exp()
            } else {
                1.0 - 0.5 * (-t).exp()
            }
        };
        let clamp = |b: f64, min: f32| b.clamp(f64::from(min), f64::from(LOG_SIGMA_MAX)).exp();
        match mass {
            Mass::Gaussian { sigma } => mass_of(&phi, f64::from(sigma)),
            Mass::GaussianLearned { log_sigma_min } => mass_of(&phi, clamp(b, log_sigma_min)),
            Mass::Laplace { scale } => mass_of(&laplace, f64::from(scale)),
            Mass::Logistic => mass_of(&logistic, clamp(b, LOG_SCALE_FLOOR)),
            Mass::ContinuousBernoulli => {
                let lo = if lo_open { 0.0 } else { lo };
                let hi = if hi_open { 1.0 } else { hi };
                if a.abs() < 1e-9 {
                    hi - lo
                } else {
                    ((a * hi).exp() - (a * lo).exp()) / a.exp_m1()
                }
            }
        }
    }

    fn families() -> Vec<Mass> {
        vec![
            Mass::Gaussian { sigma: 1e-4 },
            Mass::Gaussian { sigma: 0.003 },
            Mass::Gaussian { sigma: 0.1 },
            Mass::Gaussian { sigma: 1.0 },
            Mass::Gaussian { sigma: 100.0 },
            Mass::GaussianLearned {
                log_sigma_min: LOG_SCALE_FLOOR,
            },
            Mass::GaussianLearned {
                log_sigma_min: crate::LOG_SIGMA_MIN,
            },
            Mass::Laplace { scale: 1e-4 },
            Mass::Laplace { scale: 0.05 },
            Mass::Laplace { scale: 30.0 },
            Mass::Logistic,
            Mass::ContinuousBernoulli,
        ]
    }

    /// Decoder outputs from saturated to central: logits ±30, λ near 0, ½ and 1.
    const A: [f32; 9] = [-30.0, -8.0, -1.3, -1e-4, 0.0, 2e-3, 0.7, 8.0, 30.0];
    /// Learned log-scales from below the floor (σ tiny) to above the cap (σ huge).
    const B: [f32; 6] = [-20.0, -8.0, -4.0, -1.5, 0.5, 5.0];

    #[test]
    fn the_masses_of_every_level_sum_to_one() {
        for mass in families() {
            for &a in &A {
                for &b in &B {
                    for levels in [256u32, 2] {
                        let last = (levels - 1) as f32;
                        let total: f64 = (0..levels)
                            .map(|k| f64::from(mass.pixel(a, b, k as f32 / last, last).0).exp())
                            .sum();
                        assert!(
                            (total - 1.0).abs() < 1e-5,
                            "{mass:?} a={a} b={b} levels={levels}: Σ P = {total}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn log_masses_match_f64_references_into_the_tails() {
        for mass in families() {
            for &a in &A {
                for &b in &B {
                    for k in [0u32, 1, 2, 40, 127, 128, 200, 253, 254, 255] {
                        let got = f64::from(mass.pixel(a, b, k as f32 / LAST, LAST).0);
                        let p = reference(mass, f64::from(a), f64::from(b), k, 255);
                        assert!(
                            got.is_finite() && got <= 1e-6,
                            "{mass:?} a={a} k={k}: {got}"
                        );
                        // Where f64 still resolves the difference of CDFs, agree with it.
                        if p > 1e-200 {
                            let tol = 2e-4 * p.ln().abs().max(1.0);
                            assert!(
                                (got - p.ln()).abs() < tol,
                                "{mass:?} a={a} b={b} k={k}: {got} vs {}",
                                p.ln()
                            );
                        }
                    }
                }
            }
        }
    }

    /// A pixel far in a Gaussian's tail: its log-mass follows the asymptote of log Φ.
    #[test]
    fn deep_tails_stay_finite_and_right() {
        let mass = Mass::Gaussian { sigma: 1e-3 };
        // μ = sigmoid(5) ≈ 0.993, pixel 0: the open bin (−∞, 0.5/255], t ≈ −991.
        let (got, da, _) = mass.pixel(5.0, 0.0, 0.0, LAST);
        let mu = f64::from(sigmoid(5.0));
        let t = (0.5 / 255.0 - mu) / 1e-3;
        let asymptote = -0.5 * t * t - (-t).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
        assert!((f64::from(got) - asymptote).abs() < 1e-4 * asymptote.abs());
        assert!(da.is_finite() && da < 0.0, "lowering the mean helps: {da}");
    }

    /// Far in a Gaussian's tail, where the learned σ of a model on masses ends up, the gradient
    /// is still the exact one: d log P / dμ = (φ(t_lo) − φ(t_hi)) / (σ·P), here up to 35 scales
    /// out (where P ≈ 1e-268), for an open end bin and an interior one.
    #[test]
    fn tail_gradients_are_exact() {
        let sigma = 0.01f64;
        let pdf = |t: f64| (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
        for k in [0u32, 100] {
            for t_target in [-3.0f64, -8.0, -20.0, -35.0] {
                let (lo, hi) = edges(k as f32, LAST);
                let (lo, hi) = (f64::from(lo), f64::from(hi));
                let mu = hi - t_target * sigma;
                let a = (mu / (1.0 - mu)).ln() as f32;
                let mu = f64::from(sigmoid(a));
                let (t_lo, t_hi) = ((lo - mu) / sigma, (hi - mu) / sigma);
                let (p, f_lo) = if k == 0 {
                    (phi(t_hi), 0.0)
                } else {
                    (phi(t_hi) - phi(t_lo), pdf(t_lo))
                };
                let want = (f_lo - pdf(t_hi)) / (sigma * p) * mu * (1.0 - mu);
                let (f, da, _) =
                    Mass::Gaussian { sigma: 0.01 }.pixel(a, 0.0, k as f32 / LAST, LAST);
                assert!(
                    (f64::from(f) - p.ln()).abs() < 1e-4 * p.ln().abs().max(1.0),
                    "k={k} t={t_target}: {f} vs {}",
                    p.ln()
                );
                assert!(
                    (f64::from(da) - want).abs() < 2e-3 * want.abs(),
                    "k={k} t={t_target}: d/da {da} vs {want}"
                );
            }
        }
    }

    #[test]
    fn the_end_levels_get_open_bins() {
        let g = Mass::Gaussian { sigma: 0.3 };
        let mu = 1.0 / (1.0 + (-0.4f64).exp());
        let p0 = phi((0.5 / 255.0 - mu) / 0.3);
        let p255 = phi(-(254.5 / 255.0 - mu) / 0.3);
        let got0 = f64::from(g.pixel(0.4, 0.0, 0.0, LAST).0).exp();
        let got255 = f64::from(g.pixel(0.4, 0.0, 1.0, LAST).0).exp();
        assert!((got0 / p0 - 1.0).abs() < 1e-4, "{got0} vs {p0}");
        assert!((got255 / p255 - 1.0).abs() < 1e-4, "{got255} vs {p255}");
        // The open bins hold far more than a closed bin of the same width would.
        let closed = phi((0.5 / 255.0 - mu) / 0.3) - phi((-0.5 / 255.0 - mu) / 0.3);
        assert!(p0 > 10.0 * closed);
        // The edge is decided on the integer level, even for a pixel a hair off 0 or 1.
        assert_eq!(
            g.pixel(0.4, 0.0, 1e-7, LAST).0,
            g.pixel(0.4, 0.0, 0.0, LAST).0
        );
        assert_eq!(
            g.pixel(0.4, 0.0, 1.0 - 1e-7, LAST).0,
            g.pixel(0.4, 0.0, 1.0, LAST).0
        );
        // The continuous Bernoulli's end bins are half bins clipped at 0 and 1: at λ = ½ it is
        // uniform on [0, 1], so they hold 1/510 and the others 1/255 (to the f32 rounding of
        // the edge 254.5/255, which the top bin's width inherits).
        let cb = Mass::ContinuousBernoulli;
        let at = |k: f32| f64::from(cb.pixel(0.0, 0.0, k / LAST, LAST).0).exp();
        assert!((at(0.0) * 510.0 - 1.0).abs() < 1e-6);
        assert!((at(255.0) * 510.0 - 1.0).abs() < 1e-4);
        assert!((at(100.0) * 255.0 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let h = 1e-3f64;
        for mass in families() {
            for &a in &[-3.0f32, -0.4, 0.01, 1.2] {
                for &b in &[-5.0f32, -2.5, -1.0] {
                    for k in [0u32, 3, 90, 128, 250, 255] {
                        let x = k as f32 / LAST;
                        let (f, da, db) = mass.pixel(a, b, x, LAST);
                        let (a64, b64) = (f64::from(a), f64::from(b));
                        let lp = |a: f64, b: f64| reference_f64(mass, a, b, k, 255).ln();
                        if lp(a64, b64) < -200.0 {
                            continue;
                        }
                        let num_a = (lp(a64 + h, b64) - lp(a64 - h, b64)) / (2.0 * h);
                        let num_b = (lp(a64, b64 + h) - lp(a64, b64 - h)) / (2.0 * h);
                        let tol = |n: f64| 2e-3 * (1.0 + n.abs());
                        assert!(
                            (f64::from(da) - num_a).abs() < tol(num_a),
                            "{mass:?} d/da a={a} b={b} k={k} (log P {f}): {da} vs {num_a}"
                        );
                        assert!(
                            (f64::from(db) - num_b).abs() < tol(num_b),
                            "{mass:?} d/db a={a} b={b} k={k}: {db} vs {num_b}"
                        );
                    }
                }
            }
        }
    }

    /// Bits/dim of a tiny 8-bit image under a discretized Laplace, against its masses worked
    /// out by hand in f64 from the closed-form CDF (end bins open to ±∞); and a fair coin on
    /// binary pixels scores exactly 1 bit/dim.
    #[test]
    fn bits_per_dim_of_a_tiny_image_match_its_hand_computed_mass() {
        let (levels, scale) = ([0u8, 37, 128, 255], 0.1f64);
        let logits = [-1.0f64, 0.3, 0.0, 2.0];
        let mut hand = 0.0;
        for (&k, &a) in levels.iter().zip(&logits) {
            let mu = 1.0 / (1.0 + (-a).exp());
            let cdf = |x: f64| {
                if x < mu {
                    0.5 * ((x - mu) / scale).exp()
                } else {
                    1.0 - 0.5 * (-(x - mu) / scale).exp()
                }
            };
            let (lo, hi) = ((f64::from(k) - 0.5) / 255.0, (f64::from(k) + 0.5) / 255.0);
            let p = match k {
                0 => cdf(hi),
                255 => 1.0 - cdf(lo),
                _ => cdf(hi) - cdf(lo),
            };
            hand -= p.ln();
        }
        let hand_bpd = hand / (4.0 * std::f64::consts::LN_2);
        let lap = Mass::Laplace {
            scale: scale as f32,
        };
        let nats: f64 = levels
            .iter()
            .zip(&logits)
            .map(|(&k, &a)| -f64::from(lap.pixel(a as f32, 0.0, f32::from(k) / 255.0, 255.0).0))
            .sum();
        assert!(
            (bits_per_dim(nats, 4) - hand_bpd).abs() < 1e-5 * hand_bpd,
            "{} vs {hand_bpd} by hand",
            bits_per_dim(nats, 4)
        );
        let d = 784;
        // The continuous Bernoulli at λ = ½ on binary pixels: two half-unit bins of mass ½.
        let cb = Mass::ContinuousBernoulli;
        let nats: f64 = (0..d)
            .map(|i| -f64::from(cb.pixel(0.0, 0.0, (i % 2) as f32, 1.0).0))
            .sum();
        assert!((bits_per_dim(nats, d) - 1.0).abs() < 1e-7);
    }
}
