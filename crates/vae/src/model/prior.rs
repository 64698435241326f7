//! The prior p(z) over the latent layer: N(0, I), or the VampPrior of Tomczak & Welling
//! (AISTATS 2018), p(z) = (1/K) Σ_k q(z | u_k), the mixture of the encoder's posteriors at K
//! learned pseudo-inputs u_k.

use super::gaussian::Gaussian;
use candle_core::{Result, Tensor, D};

/// The `prior` key: which [`Prior`], as named in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PriorKind {
    /// N(0, I).
    #[default]
    Standard,
    /// The VampPrior (`pseudo_inputs` of them).
    Vamp,
}

/// Which prior a model has (the `prior` and `pseudo_inputs` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prior {
    /// N(0, I).
    #[default]
    Standard,
    /// The VampPrior with this many pseudo-inputs.
    Vamp { pseudo_inputs: usize },
}

impl Prior {
    /// The prior of `kind`, with `pseudo_inputs` components if it is the VampPrior.
    pub fn new(kind: PriorKind, pseudo_inputs: usize) -> Self {
        match kind {
            PriorKind::Standard => Prior::Standard,
            PriorKind::Vamp => Prior::Vamp { pseudo_inputs },
        }
    }
}

/// The pseudo-inputs' name in the `VarMap` and the checkpoint, (K, pixels): outside `enc.`, so
/// split schedules move it with the decoder (p(z) is part of the generative model, an M-step).
pub const PSEUDO_INPUTS: &str = "prior.pseudo_inputs";

/// Mean and standard deviation of the pseudo-inputs' initial pixels: Tomczak's defaults for
/// (binarized) MNIST, `--pseudoinputs_mean 0.05 --pseudoinputs_std 0.01`.
pub const PSEUDO_INIT: (f32, f32) = (0.05, 0.01);

/// The pseudo-inputs as images from their raw variable: clamped to [0, 1] (Tomczak's hardtanh,
/// whose gradient is 1 inside and 0 outside).
pub fn pseudo_pixels(raw: &Tensor) -> Result<Tensor> {
    raw.clamp(0f32, 1f32)
}

/// An equal-weight mixture of K diagonal Gaussians, (K, L) means and log-variances.
#[derive(Debug, Clone)]
pub struct Mixture {
    components: Gaussian,
}

impl Mixture {
    /// The mixture of these components, one per row (stored contiguous: an encoder head's μ
    /// and log σ² are column slices of one tensor, and row selection needs whole rows).
    pub fn new(components: Gaussian) -> Result<Self> {
        Ok(Self {
            components: Gaussian {
                mu: components.mu.contiguous()?,
                logvar: components.logvar.contiguous()?,
            },
        })
    }

    /// The same mixture cut from the graph (for evaluation).
    pub fn detached(&self) -> Self {
        Self {
            components: Gaussian {
                mu: self.components.mu.detach(),
                logvar: self.components.logvar.detach(),
            },
        }
    }

    /// Components in the mixture.
    pub fn len(&self) -> Result<usize> {
        self.components.mu.dim(0)
    }

    /// Whether the mixture has no component (never, for a built model).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The components (means and log-variances, a row each).
    pub fn components(&self) -> &Gaussian {
        &self.components
    }

    /// log (1/K) Σ_k N(z; μ_k, σ_k²) per row of `z` (rows, L) → (rows,), without the −½ log 2π
    /// per dimension every density of the bound leaves out. Two products instead of a
    /// (rows, K, L) tensor: Σ_d (z_d − μ_kd)²/σ²_kd = z²·(1/σ²_k) − 2 z·(μ_k/σ²_k) + Σ_d μ²_kd/σ²_kd.
    pub fn log_density(&self, z: &Tensor) -> Result<Tensor> {
        let Gaussian { mu, logvar } = &self.components;
        let k = mu.dim(0)?;
        let inv = logvar.neg()?.exp()?;
        let quad = z.sqr()?.matmul(&inv.t()?)?;
        let cross = z.matmul(&(mu * &inv)?.t()?)?;
        let constant = ((mu.sqr()? * &inv)? + logvar)?.sum(1)?;
        let per_component =
            ((quad - (cross * 2.0)?)?.broadcast_add(&constant.unsqueeze(0)?)? * -0.5)?;
        // log-sum-exp over the components; the max is a constant of the gradient.
        let max = per_component.max_keepdim(D::Minus1)?.detach();
        let sum = per_component
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?;
        ((sum.log()? + max)? - (k as f64).ln())?.squeeze(D::Minus1)
    }

    /// One draw per row of `eps` (rows, L), row i from component ⌊i·K/rows⌋: the rows spread
    /// evenly over the components (prior samples for figures).
    pub fn sample(&self, eps: &Tensor) -> Result<Tensor> {
        let (rows, k) = (eps.dim(0)?, self.len()?);
        let picks: Vec<u32> = (0..rows).map(|i| (i * k / rows.max(1)) as u32).collect();
        let idx = Tensor::from_vec(picks, rows, eps.device())?;
        Gaussian {
            mu: self.components.mu.index_select(&idx, 0)?,
            logvar: self.components.logvar.index_select(&idx, 0)?,
        }
        .sample(eps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;
    use candle_core::Device;

    fn tensor(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    /// The two-product form against the mixture summed term by term in f64 (an independent
    /// route): components near and far, narrow and wide.
    #[test]
    fn log_density_matches_the_mixture_summed_directly() {
        let (k, l, rows) = (7, 5, 11);
        let mut r = rng::stream(3, rng::Stream::Noise, 0);
        let mu: Vec<f32> = rng::normals(&mut r, k * l)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let lv: Vec<f32> = rng::normals(&mut r, k * l)
            .iter()
            .map(|v| v - 1.0)
            .collect();
        let z: Vec<f32> = rng::normals(&mut r, rows * l)
            .iter()
            .map(|v| 1.5 * v)
            .collect();
        let mix = Mixture::new(Gaussian {
            mu: tensor(&mu, (k, l)),
            logvar: tensor(&lv, (k, l)),
        })
        .unwrap();
        let got = mix
            .log_density(&tensor(&z, (rows, l)))
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for i in 0..rows {
            let p: f64 = (0..k)
                .map(|c| {
                    let log_n: f64 = (0..l)
                        .map(|d| {
                            let (m, v) = (f64::from(mu[c * l + d]), f64::from(lv[c * l + d]));
                            let x = f64::from(z[i * l + d]);
                            -0.5 * ((x - m).powi(2) / v.exp() + v)
                        })
                        .sum();
                    log_n.exp() / k as f64
                })
                .sum();
            let want = p.ln();
            assert!(
                (f64::from(got[i]) - want).abs() < 1e-3 * (1.0 + want.abs()),
                "row {i}: {} vs {want}",
                got[i]
            );
        }
    }

    /// One component is that Gaussian's own density; K copies of it are too (the 1/K cancels).
    #[test]
    fn a_mixture_of_copies_is_its_component() {
        let g = Gaussian {
            mu: tensor(&[0.3, -1.0], (1, 2)),
            logvar: tensor(&[-0.5, 0.2], (1, 2)),
        };
        let z = tensor(&[0.1, 0.0, -2.0, 1.0], (2, 2));
        let rows = Gaussian {
            mu: g.mu.repeat((2, 1)).unwrap(),
            logvar: g.logvar.repeat((2, 1)).unwrap(),
        };
        let one = rows.log_density(&z).unwrap().sum(1).unwrap();
        let copies = Mixture::new(Gaussian {
            mu: g.mu.repeat((4, 1)).unwrap(),
            logvar: g.logvar.repeat((4, 1)).unwrap(),
        })
        .unwrap();
        let (a, b) = (
            one.to_vec1::<f32>().unwrap(),
            copies.log_density(&z).unwrap().to_vec1::<f32>().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// Rows spread over the components in order; a draw with ε = 0 is its component's mean.
    #[test]
    fn samples_spread_over_the_components() {
        let mix = Mixture::new(Gaussian {
            mu: tensor(&[0.0, 10.0, 20.0, 30.0], (4, 1)),
            logvar: tensor(&[0.0; 4], (4, 1)),
        })
        .unwrap();
        let z = mix.sample(&tensor(&[0.0; 8], (8, 1))).unwrap();
        assert_eq!(
            z.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0]
        );
    }
}
