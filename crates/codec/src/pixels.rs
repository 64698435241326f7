//! Each pixel's entropy model: the likelihood's own mass on every grey level (the masses that
//! bits/dim scores), quantized to the coder's 24-bit fixed point.

use crate::CodecError;
use constriction::stream::model::{DefaultContiguousCategoricalEntropyModel, EncoderModel};
use vaelab_kernels::fastmath::exp_clamped;
use vaelab_vae::likelihood::last_level;
use vaelab_vae::{Likelihood, Mass};

/// One pixel's coding model over levels 0..L.
pub type PixelModel = DefaultContiguousCategoricalEntropyModel;

/// The coder's fixed-point precision (bits) of every model.
pub const PRECISION: usize = 24;

/// The models of every pixel of one image from its decoder output row (P·D values: the D first
/// outputs, then the D second ones where the family has two), with `mass` the likelihood as a
/// pmf on `levels` grey levels.
pub fn models(
    mass: Likelihood,
    levels: u16,
    params: &[f32],
) -> Result<Vec<PixelModel>, CodecError> {
    let d = params.len() / mass.params_per_pixel();
    let grid: Vec<f32> = (0..levels)
        .map(|k| f32::from(k) / f32::from(levels - 1))
        .collect();
    let mut probs = vec![0f32; grid.len()];
    (0..d)
        .map(|j| {
            let (a, b) = (params[j], params.get(d + j).copied().unwrap_or(0.0));
            masses(mass, a, b, &grid, &mut probs);
            PixelModel::from_floating_point_probabilities_fast(&probs, None).map_err(|()| {
                CodecError::Model(format!(
                    "pixel {j}: the decoder's masses are not a distribution (a = {a}, b = {b})"
                ))
            })
        })
        .collect()
}

/// Every level's mass of one pixel: one loop per family, so each is a plain loop over the
/// levels that the compiler vectorizes (at AVX2's width where the CPU has it; the same bits
/// either way, as Rust never fuses a multiply and an add on its own).
fn masses(mass: Likelihood, a: f32, b: f32, grid: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: both features were just detected.
        return unsafe { masses_avx2(mass, a, b, grid, out) };
    }
    masses_by_family(mass, a, b, grid, out)
}

/// [`masses`] compiled for AVX2 and FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn masses_avx2(mass: Likelihood, a: f32, b: f32, grid: &[f32], out: &mut [f32]) {
    masses_by_family(mass, a, b, grid, out)
}

#[inline(always)]
fn masses_by_family(lik: Likelihood, a: f32, b: f32, grid: &[f32], out: &mut [f32]) {
    macro_rules! fill {
        // An expression of `x`, not a closure: closures do not inherit `target_feature`.
        ($x:ident => $e:expr) => {
            for (p, &$x) in out.iter_mut().zip(grid) {
                *p = exp_clamped($e);
            }
        };
    }
    match lik {
        Likelihood::Discretized { mass, levels } => {
            let last = last_level(levels);
            match mass {
                Mass::Logistic => fill!(x => Mass::Logistic.pixel(a, b, x, last).0),
                Mass::ContinuousBernoulli => {
                    fill!(x => Mass::ContinuousBernoulli.pixel(a, b, x, last).0)
                }
                Mass::Gaussian { sigma } => {
                    fill!(x => Mass::Gaussian { sigma }.pixel(a, b, x, last).0)
                }
                Mass::GaussianLearned { log_sigma_min } => {
                    fill!(x => Mass::GaussianLearned { log_sigma_min }.pixel(a, b, x, last).0)
                }
                Mass::Laplace { scale } => {
                    fill!(x => Mass::Laplace { scale }.pixel(a, b, x, last).0)
                }
            }
        }
        other => fill!(x => other.pixel(a, b, x).0),
    }
}

/// −log₂ of the coder's probability of `symbol` under `model` (what coding it costs).
pub fn cost<M: EncoderModel<PRECISION, Probability = u32>>(model: M, symbol: M::Symbol) -> f64 {
    model
        .left_cumulative_and_probability(symbol)
        .map_or(f64::INFINITY, |(_, p)| {
            PRECISION as f64 - f64::from(p.get()).log2()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaelab_vae::{LikelihoodKind, LEVELS_8BIT};

    /// Every family's masses: the loop as compiled for this CPU (AVX2 where it has it) gives
    /// the bits of the portable build, and sums to 1 over the levels.
    #[test]
    fn masses_are_the_same_bits_on_every_path_and_sum_to_one() {
        let families = [
            Likelihood::new(LikelihoodKind::DiscretizedLogistic, 0.1, true),
            Likelihood::new(LikelihoodKind::Gaussian, 0.1, true),
            Likelihood::new(LikelihoodKind::GaussianLearned, 0.1, true),
            Likelihood::new(LikelihoodKind::Laplace, 0.1, true),
            Likelihood::Bernoulli.scored_on(LEVELS_8BIT),
            Likelihood::Bernoulli.scored_on(2),
        ];
        for lik in families {
            let levels = match lik {
                Likelihood::Discretized { levels, .. } => levels,
                _ => 2,
            };
            let grid: Vec<f32> = (0..levels)
                .map(|k| f32::from(k) / f32::from(levels - 1))
                .collect();
            for (a, b) in [(-3.0f32, -4.0f32), (0.2, -1.5), (2.5, -6.0), (0.0, 0.5)] {
                let (mut fast, mut portable) = (vec![0f32; grid.len()], vec![0f32; grid.len()]);
                masses(lik, a, b, &grid, &mut fast);
                masses_by_family(lik, a, b, &grid, &mut portable);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&portable), "{lik:?} at ({a}, {b})");
                let total: f64 = fast.iter().map(|&p| f64::from(p)).sum();
                assert!((total - 1.0).abs() < 1e-4, "{lik:?} at ({a}, {b}): {total}");
            }
        }
    }
}
