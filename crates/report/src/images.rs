//! Runs brought back from their checkpoints: encode test images, decode latents into pixel
//! means, for the image figures.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::Path;
use vaelab_vae::{Architecture, Likelihood, Model};

/// A trained model restored from its checkpoint, on the CPU.
pub struct Restored {
    model: Model,
}

impl Restored {
    /// Loads the weights of `checkpoint` (the optimizer's moments in it are ignored).
    pub fn load(checkpoint: &Path, arch: Architecture) -> Result<Self, String> {
        let fail = |e: candle_core::Error| format!("{}: {e}", checkpoint.display());
        let tensors = candle_core::safetensors::load(checkpoint, &Device::Cpu).map_err(fail)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Ok(Self {
            model: Model::new(arch, vb).map_err(fail)?,
        })
    }

    /// Posterior means (the AE's codes) of `n` images given as rows of `pixels`.
    pub fn encode(&self, pixels: &[f32], n: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let x = Tensor::from_slice(pixels, (n, self.model.arch().input_dim()), &Device::Cpu)?;
        self.model.encode(&x)?.mu.to_vec2::<f32>()
    }

    /// Pixel means of p(x|z) for each latent row.
    pub fn decode(&self, z: &[Vec<f32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.decode_tensor(&rows(z)?)
    }

    /// Pixel means of p(x|z₁) for z₁ drawn from the prior, one per row of standard normals of
    /// every layer (z₁ = ε for one layer).
    pub fn sample(&self, eps: &[Vec<f32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.decode_tensor(&self.model.prior_sample(&rows(eps)?)?)
    }

    /// The VampPrior's learned pseudo-inputs as pixel rows (at most `n`), or None under N(0, I).
    pub fn pseudo_inputs(&self, n: usize) -> candle_core::Result<Option<Vec<Vec<f32>>>> {
        let Some(u) = self.model.pseudo_inputs()? else {
            return Ok(None);
        };
        let n = n.min(u.dim(0)?);
        Ok(Some(u.narrow(0, 0, n)?.to_vec2::<f32>()?))
    }

    /// Latent values per image over every layer.
    pub fn latent_width(&self) -> usize {
        self.model.arch().latent_width()
    }

    fn decode_tensor(&self, zt: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
        let params = self
            .model
            .decode(zt)?
            .narrow(1, 0, self.model.arch().input_dim())?;
        let rows = params.to_vec2::<f32>()?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|a| pixel_mean(self.model.arch().likelihood, a))
                    .collect()
            })
            .collect())
    }

    /// Reconstructions: decode(encode(x)) through the posterior means.
    pub fn reconstruct(&self, pixels: &[f32], n: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        self.decode(&self.encode(pixels, n)?)
    }
}

/// Rows of equal length as a (rows, len) tensor.
fn rows(z: &[Vec<f32>]) -> candle_core::Result<Tensor> {
    let l = z.first().map_or(0, Vec::len);
    let flat: Vec<f32> = z.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (z.len(), l), &Device::Cpu)
}

/// E[x | a] of one pixel: sigmoid(a) for every family but the continuous Bernoulli, whose
/// mean is λ/(2λ−1) + 1/(2 artanh(1−2λ)) with λ = sigmoid(a) (½ at λ = ½).
pub fn pixel_mean(lik: Likelihood, a: f32) -> f32 {
    let lambda = 1.0 / (1.0 + (-f64::from(a)).exp());
    let mean = match lik {
        Likelihood::ContinuousBernoulli if (lambda - 0.5).abs() > 1e-3 => {
            lambda / (2.0 * lambda - 1.0) + 1.0 / (2.0 * (1.0 - 2.0 * lambda).atanh())
        }
        Likelihood::ContinuousBernoulli => 0.5,
        _ => lambda,
    };
    mean.clamp(0.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_bernoulli_mean_is_continuous_at_one_half_and_monotone() {
        let lik = Likelihood::ContinuousBernoulli;
        let near = pixel_mean(lik, 0.0041);
        assert!((near - 0.5).abs() < 1e-3, "{near}");
        let means: Vec<f32> = (-40..=40)
            .map(|a| pixel_mean(lik, a as f32 / 4.0))
            .collect();
        assert!(means.windows(2).all(|w| w[1] >= w[0]), "{means:?}");
        // The CB mean is pulled toward ½ relative to λ.
        assert!(pixel_mean(lik, 2.0) < pixel_mean(Likelihood::Bernoulli, 2.0));
    }
}
