//! Σ_pixels log p(x|params) with candle's stock ops: the reference the fused op is tested
//! against, and what every device other than the CPU runs.

use super::bounds::{LOG_SCALE_FLOOR, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
use super::family::Likelihood;
use super::mass::{last_level, Mass};
use candle_core::{Result, Tensor, D};
use candle_nn::ops::sigmoid;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Σ_pixels log p(x|params) per row with candle's ops; same contract as the fused op:
/// params (B, P·D), x (B', D) with B a multiple of B' (each x row scores B/B' params rows).
pub fn log_prob(lik: Likelihood, params: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (b, _) = params.dims2()?;
    let (bx, d) = x.dims2()?;
    if bx == 0 || b % bx != 0 {
        candle_core::bail!("log_prob: {b} params rows do not fit {bx} images")
    }
    let x = if b == bx {
        x.clone()
    } else {
        x.unsqueeze(1)?
            .broadcast_as((bx, b / bx, d))?
            .reshape((b, d))?
    };
    let a = params.narrow(1, 0, d)?;
    let per_pixel = match lik {
        Likelihood::Bernoulli => (x.mul(&a)? - softplus(&a)?)?,
        Likelihood::ContinuousBernoulli => ((x.mul(&a)? - softplus(&a)?)? + cb_log_norm(&a)?)?,
        Likelihood::Gaussian { sigma } => {
            let r = (x - sigmoid(&a)?)?;
            r.sqr()?.affine(
                -0.5 / f64::from(sigma * sigma),
                -f64::from(sigma).ln() - HALF_LN_2PI,
            )?
        }
        Likelihood::Laplace { scale } => {
            let r = (x - sigmoid(&a)?)?;
            r.abs()?
                .affine(-1.0 / f64::from(scale), -(2.0 * f64::from(scale)).ln())?
        }
        Likelihood::GaussianLearned => {
            let log_sigma = params
                .narrow(1, d, d)?
                .clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)?;
            let r = (x - sigmoid(&a)?)?;
            let quad = (r.sqr()? * (log_sigma.affine(-2.0, 0.0)?.exp())?)?;
            (quad.affine(-0.5, -HALF_LN_2PI)? - log_sigma)?
        }
        Likelihood::Discretized { mass, levels } => discretized(mass, levels, params, &x, d)?,
    };
    per_pixel.sum(D::Minus1)
}

/// Per-pixel log-mass of each bin, written the plain way: log(F(hi) − F(lo)) with F(−∞) = 0 and
/// F(+∞) = 1 at the end levels. candle has erf but no erfc, so past ~3 scales from the mean the
/// Gaussian's f32 tail loses digits, and the mass is floored at 1e-12 (as DDPM's code does);
/// the fused CPU kernel stays exact there. The tests compare the two where both resolve it.
fn discretized(mass: Mass, levels: u16, params: &Tensor, x: &Tensor, d: usize) -> Result<Tensor> {
    let last = f64::from(last_level(levels));
    let a = params.narrow(1, 0, d)?;
    // Bins are placed by the integer level k, not by the float pixel.
    let k = x.affine(last, 0.0)?.round()?;
    let (open_lo, open_hi) = (k.le(0.0)?, k.ge(last)?);
    let (lo, hi) = (
        k.affine(1.0, -0.5)?.affine(1.0 / last, 0.0)?,
        k.affine(1.0, 0.5)?.affine(1.0 / last, 0.0)?,
    );
    let (zeros, ones) = (x.zeros_like()?, x.ones_like()?);
    let (lo, hi) = (
        open_lo.where_cond(&zeros, &lo)?,
        open_hi.where_cond(&ones, &hi)?,
    );
    if mass == Mass::ContinuousBernoulli {
        // η·lo + ln w + h(ηw) − h(η), as in the fused kernel's derivation.
        let w = (hi - &lo)?;
        return (a.mul(&lo)? + w.log()?)? + (cb_h(&a.mul(&w)?)? - cb_h(&a)?)?;
    }
    let log_s = match mass {
        Mass::Gaussian { sigma } => a.ones_like()?.affine(f64::from(sigma.ln()), 0.0)?,
        Mass::Laplace { scale } => a.ones_like()?.affine(f64::from(scale.ln()), 0.0)?,
        Mass::GaussianLearned { log_sigma_min } => params
            .narrow(1, d, d)?
            .clamp(log_sigma_min, LOG_SIGMA_MAX)?,
        Mass::Logistic => params
            .narrow(1, d, d)?
            .clamp(LOG_SCALE_FLOOR, LOG_SIGMA_MAX)?,
        Mass::ContinuousBernoulli => unreachable!("handled above"),
    };
    let mu = sigmoid(&a)?;
    let inv_s = log_s.neg()?.exp()?;
    let (t_lo, t_hi) = (((lo - &mu)? * &inv_s)?, ((hi - &mu)? * &inv_s)?);
    let cdf = |t: &Tensor| -> Result<Tensor> {
        match mass {
            Mass::Gaussian { .. } | Mass::GaussianLearned { .. } => (t
                * std::f64::consts::FRAC_1_SQRT_2)?
                .erf()?
                .affine(0.5, 0.5),
            Mass::Logistic => sigmoid(t),
            _ => {
                // Laplace: ½e^t below the mean, 1 − ½e^−t above it.
                let half_tail = t.abs()?.neg()?.exp()?.affine(0.5, 0.0)?;
                t.lt(0.0)?
                    .where_cond(&half_tail, &half_tail.affine(-1.0, 1.0)?)
            }
        }
    };
    // F(hi) − F(lo) below the mean; above it the same mass from the upper tail, F(−lo) − F(−hi)
    // (the families are symmetric), so that f32 does not subtract two numbers close to 1.
    let below =
        (open_hi.where_cond(&ones, &cdf(&t_hi)?)? - open_lo.where_cond(&zeros, &cdf(&t_lo)?)?)?;
    let above = (open_lo.where_cond(&ones, &cdf(&t_lo.neg()?)?)?
        - open_hi.where_cond(&zeros, &cdf(&t_hi.neg()?)?)?)?;
    let centre_above = (&t_lo + &t_hi)?.gt(0.0)?;
    centre_above
        .where_cond(&above, &below)?
        .maximum(1e-12)?
        .log()
}

/// h(y) = ln(expm1(y)/y), with its series y/2 + y²/24 − y⁴/2880 below |y| = 0.01.
fn cb_h(y: &Tensor) -> Result<Tensor> {
    let m = y.abs()?;
    let safe = m.maximum(1e-2)?;
    let big = ((y.relu()? + safe.neg()?.exp()?.affine(-1.0, 1.0)?.log()?)? - safe.log()?)?;
    let y2 = y.sqr()?;
    let series = (y * (y * (y2.affine(-1.0 / 2880.0, 1.0 / 24.0))?)?.affine(1.0, 0.5)?)?;
    m.lt(1e-2)?.where_cond(&series, &big)
}

/// log(1 + eᵃ), stable for large |a|.
fn softplus(a: &Tensor) -> Result<Tensor> {
    a.relu()? + (a.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The continuous Bernoulli's log normalizer log(a / tanh(a/2)), with the Taylor series
/// ln 2 + a²/12 − 7a⁴/1440 near 0, where the closed form cancels (and its gradient is 0/0).
fn cb_log_norm(a: &Tensor) -> Result<Tensor> {
    let m = a.abs()?;
    let near_zero = m.lt(1e-2)?;
    let safe = m.maximum(1e-2)?;
    let exact = (safe.log()? - safe.affine(0.5, 0.0)?.tanh()?.log()?)?;
    let a2 = a.sqr()?;
    let series = ((&a2 * (1.0 / 12.0))? - (a2.sqr()? * (7.0 / 1440.0))?)?
        .affine(1.0, std::f64::consts::LN_2)?;
    near_zero.where_cond(&series, &exact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use vaelab_kernels::Kernels;

    /// Every likelihood: the fused op and the reference agree in value and gradient, also when
    /// x rows are shared by several params rows (the IWAE layout).
    #[test]
    fn fused_likelihoods_match_the_reference_ops() {
        let dev = Device::Cpu;
        let (bx, repeat, d) = (3, 2, 300);
        let liks = [
            Likelihood::Bernoulli,
            Likelihood::ContinuousBernoulli,
            Likelihood::Gaussian { sigma: 0.3 },
            Likelihood::Laplace { scale: 0.2 },
            Likelihood::GaussianLearned,
        ];
        let on = |mass, levels| Likelihood::Discretized { mass, levels };
        let discretized = [
            on(Mass::Gaussian { sigma: 0.3 }, 256),
            on(Mass::Laplace { scale: 0.2 }, 256),
            on(
                Mass::GaussianLearned {
                    log_sigma_min: LOG_SCALE_FLOOR,
                },
                256,
            ),
            on(Mass::Logistic, 256),
            on(Mass::ContinuousBernoulli, 256),
            on(Mass::Gaussian { sigma: 0.3 }, 2),
            on(Mass::ContinuousBernoulli, 2),
        ];
        for lik in liks.into_iter().chain(discretized) {
            let p = lik.params_per_pixel();
            let params: Vec<f32> = (0..bx * repeat * p * d)
                .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 8.0)
                .collect();
            // Pixels include exact 0 and 1 (saturated) and values in between.
            let x: Vec<f32> = (0..bx * d).map(|i| (i * 13 % 11) as f32 / 10.0).collect();
            let mut x: Vec<f32> = x.into_iter().map(|v| v.min(1.0)).collect();
            let mut params = params;
            if let Likelihood::Discretized { levels, .. } = lik {
                // Levels on the grid, the end ones included; means in [0.12, 0.88] and learned
                // scales ≥ 0.37, so that no edge is past 2.4 scales from the mean: beyond that
                // the reference's f32 erf is within a few ulps of ±1 and loses the tail's digits
                // (the fused kernel does not: see `super::mass`'s f64 tests).
                let last = (levels - 1) as usize;
                x = (0..bx * d)
                    .map(|i| ((i * 37) % (last + 1)) as f32 / last as f32)
                    .collect();
                for (i, v) in params.iter_mut().enumerate() {
                    let second = p == 2 && (i % (p * d)) >= d;
                    *v = if second { *v / 8.0 - 0.5 } else { *v / 2.0 };
                }
            }
            let x = Tensor::from_vec(x, (bx, d), &dev).unwrap();
            let run = |kernels: Kernels| {
                let v = Var::from_slice(&params, (bx * repeat, p * d), &dev).unwrap();
                let out = crate::likelihood::log_prob(kernels, lik, v.as_tensor(), &x).unwrap();
                let g = out.sum_all().unwrap().backward().unwrap();
                let grad = g.get(v.as_tensor()).unwrap().flatten_all().unwrap();
                (
                    out.to_vec1::<f32>().unwrap(),
                    grad.to_vec1::<f32>().unwrap(),
                )
            };
            let (fv, fg) = run(Kernels::Fused);
            let (rv, rg) = run(Kernels::Reference);
            for (f, r) in fv.iter().zip(&rv) {
                assert!(
                    (f - r).abs() <= 1e-3 * r.abs().max(1.0),
                    "{lik:?}: {f} vs {r}"
                );
            }
            for (f, r) in fg.iter().zip(&rg) {
                assert!(
                    (f - r).abs() <= 1e-4 + 1e-3 * r.abs(),
                    "{lik:?} grad: {f} vs {r}"
                );
            }
        }
    }
}
