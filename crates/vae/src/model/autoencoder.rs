//! The model: encoder q(z|x) and decoder p(x|z) built from a `VarBuilder`, and the likelihood
//! that reads the decoder's output.

use super::arch::{Architecture, ModelKind};
use super::layers::{networks, Net};
use crate::likelihood::{self, Likelihood};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use vaelab_kernels::Kernels;

/// The encoder's output for a batch: posterior means, and log-variances for the VAE.
#[derive(Debug, Clone)]
pub struct Posterior {
    pub mu: Tensor,
    pub logvar: Option<Tensor>,
}

/// A VAE or AE: encoder, decoder and the likelihood that reads the decoder's output.
#[derive(Debug, Clone)]
pub struct Model {
    arch: Architecture,
    encoder: Net,
    decoder: Net,
    kernels: Kernels,
}

impl Model {
    /// Builds the model's layers from `vb` (existing variables are reused, see [`crate::model::init`]),
    /// with the fused kernels on the CPU and candle's ops elsewhere.
    pub fn new(arch: Architecture, vb: VarBuilder) -> Result<Self> {
        Self::with_kernels(arch, vb, Kernels::Fused)
    }

    /// As [`Model::new`], with `kernels` on the CPU (other devices always take the reference).
    pub fn with_kernels(arch: Architecture, vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        let kernels = kernels.for_device(vb.device());
        let (encoder, decoder) = networks(&arch, &vb, kernels)?;
        Ok(Self {
            encoder,
            decoder,
            arch,
            kernels,
        })
    }

    /// The kernels this model runs on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Σ_pixels log p(x | params) per row, for decoder output `params` (see
    /// [`Likelihood::log_prob`]).
    pub fn log_prob(&self, params: &Tensor, x: &Tensor) -> Result<Tensor> {
        self.log_prob_as(self.arch.likelihood, params, x)
    }

    /// As [`Model::log_prob`], scoring the decoder output with `lik` (e.g. as a bin mass).
    pub fn log_prob_as(&self, lik: Likelihood, params: &Tensor, x: &Tensor) -> Result<Tensor> {
        likelihood::log_prob(self.kernels, lik, params, x)
    }

    /// The architecture this model was built from.
    pub fn arch(&self) -> &Architecture {
        &self.arch
    }

    /// q(z|x): (B, D) pixels → μ (B, L) and, for the VAE, log σ² (B, L).
    pub fn encode(&self, x: &Tensor) -> Result<Posterior> {
        let out = self.encoder.forward(x)?;
        let l = self.arch.latent_dim;
        Ok(match self.arch.kind {
            ModelKind::Vae => Posterior {
                mu: out.narrow(1, 0, l)?,
                logvar: Some(out.narrow(1, l, l)?),
            },
            ModelKind::Ae => Posterior {
                mu: out,
                logvar: None,
            },
        })
    }

    /// p(x|z): (B, L) latents → (B, P·D) likelihood parameters.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, ImageShape};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn conv(image: ImageShape, channels: &[usize], likelihood: Likelihood) -> Architecture {
        Architecture {
            kind: ModelKind::Vae,
            image,
            body: Body::Conv {
                channels: channels.to_vec(),
            },
            latent_dim: 16,
            likelihood,
        }
    }

    fn shapes(arch: &Architecture) -> Vec<(String, Vec<usize>)> {
        arch.layers()
            .into_iter()
            .map(|l| (l.name.clone(), l.weight_shape()))
            .collect()
    }

    /// Builds the model and runs a batch of 3 through it: (μ shape, decoder output shape).
    fn run(arch: &Architecture) -> (Vec<usize>, Vec<usize>) {
        let varmap = VarMap::new();
        crate::model::init::seeded(arch, &varmap, 1, &Device::Cpu).unwrap();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Model::new(arch.clone(), vb).unwrap();
        let x = Tensor::zeros((3, arch.input_dim()), DType::F32, &Device::Cpu).unwrap();
        let post = model.encode(&x).unwrap();
        let out = model.decode(&post.mu).unwrap();
        (post.mu.dims().to_vec(), out.dims().to_vec())
    }

    /// 1×28×28 gives exactly the anchor's `--arch conv` network (torch_vae.py).
    #[test]
    fn conv_layers_for_28x28_grey_are_the_anchor_network() {
        let grey = ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        };
        let arch = conv(grey, &[32, 64], Likelihood::GaussianLearned);
        let s = |n: &str, v: &[usize]| (n.to_string(), v.to_vec());
        assert_eq!(
            shapes(&arch),
            vec![
                s("enc.conv0", &[32, 1, 4, 4]),
                s("enc.conv1", &[64, 32, 4, 4]),
                s("enc.head", &[32, 64 * 7 * 7]),
                s("dec.fc", &[64 * 7 * 7, 16]),
                s("dec.deconv0", &[64, 32, 4, 4]),
                // Two parameters per pixel for the learned Gaussian.
                s("dec.deconv1", &[32, 2, 4, 4]),
            ]
        );
        assert_eq!(arch.conv_top(), Some((64, 7, 7)));
        assert_eq!(run(&arch), (vec![3, 16], vec![3, 2 * 784]));
        // The anchor's count at latent 20, Bernoulli: ~3.6 M multiply-adds per image forward.
        let anchor = Architecture {
            latent_dim: 20,
            ..conv(grey, &[32, 64], Likelihood::Bernoulli)
        };
        assert_eq!(anchor.macs(), 3_600_128);
        let mlp = Architecture {
            body: Body::Mlp { hidden: vec![400] },
            ..anchor
        };
        assert_eq!(mlp.macs(), 651_200);
        // PyTorch's fan-in: ConvTranspose2d reads dim 1 of its (in, out, k, k) weight.
        assert_eq!(arch.layers()[4].init_fan_in(), 32 * 16);
    }

    #[test]
    fn conv_layers_for_32x32_colour_add_a_layer_per_channel_entry() {
        let colour = ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        };
        let arch = conv(colour, &[32, 64, 128], Likelihood::Bernoulli);
        let names: Vec<String> = arch.layers().into_iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "enc.conv0",
                "enc.conv1",
                "enc.conv2",
                "enc.head",
                "dec.fc",
                "dec.deconv0",
                "dec.deconv1",
                "dec.deconv2"
            ]
        );
        assert_eq!(arch.conv_top(), Some((128, 4, 4)));
        assert_eq!(arch.layers()[0].weight_shape(), vec![32, 3, 4, 4]);
        assert_eq!(arch.layers()[7].weight_shape(), vec![32, 3, 4, 4]);
        assert_eq!(run(&arch), (vec![3, 16], vec![3, 3 * 32 * 32]));
    }

    #[test]
    fn sides_not_divisible_by_the_halvings_are_refused() {
        let grey = ImageShape {
            channels: 1,
            height: 28,
            width: 28,
        };
        let arch = conv(grey, &[32, 64, 128], Likelihood::Bernoulli);
        let err = arch.check().unwrap_err().to_string();
        assert!(
            err.contains("divisible by 8") && err.contains("28×28"),
            "{err}"
        );
        assert!(conv(grey, &[32, 64], Likelihood::Bernoulli).check().is_ok());
    }
}
