//! Which implementation runs the hot ops: the fused CPU kernels, or candle's stock tensor ops.
//!
//! The stock path is the reference the fused kernels are tested against, and the one every
//! device other than the CPU (CUDA) runs, since the fused kernels are written for the CPU only.

use crate::likelihood::{LOG_SIGMA_MAX, LOG_SIGMA_MIN};
use crate::Likelihood;
use candle_core::{Device, Result, Tensor, D};
use candle_nn::ops::sigmoid;

/// The implementation of dense layers, likelihoods and Adam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Hand-written CPU kernels with fused backward passes (the default on the CPU).
    #[default]
    Fused,
    /// candle's tensor ops with autograd: slower, device-agnostic, the unoptimized reference.
    Reference,
}

impl Kernels {
    /// `self` on the CPU; the reference ops on any other device.
    pub fn for_device(self, device: &Device) -> Self {
        if device.is_cpu() {
            self
        } else {
            Kernels::Reference
        }
    }
}

/// act(x·Wᵀ + b) with candle's ops.
pub fn dense(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

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
    };
    per_pixel.sum(D::Minus1)
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
    use candle_core::Var;

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
        for lik in liks {
            let p = lik.params_per_pixel();
            let params: Vec<f32> = (0..bx * repeat * p * d)
                .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 8.0)
                .collect();
            // Pixels include exact 0 and 1 (saturated) and values in between.
            let x: Vec<f32> = (0..bx * d).map(|i| (i * 13 % 11) as f32 / 10.0).collect();
            let x: Vec<f32> = x.into_iter().map(|v| v.min(1.0)).collect();
            let x = Tensor::from_vec(x, (bx, d), &dev).unwrap();
            let run = |kernels: Kernels| {
                let v = Var::from_slice(&params, (bx * repeat, p * d), &dev).unwrap();
                let out = match kernels {
                    Kernels::Fused => lik.log_prob(v.as_tensor(), &x),
                    Kernels::Reference => log_prob(lik, v.as_tensor(), &x),
                }
                .unwrap();
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
