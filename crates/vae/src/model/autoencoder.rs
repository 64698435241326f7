//! The model: encoder q(z|x) and decoder p(x|z) built from a `VarBuilder`, and the likelihood
//! that reads the decoder's output.

use super::arch::{Architecture, ModelKind};
use super::gaussian::Gaussian;
use super::layers::{networks, Net};
use super::prior::{pseudo_pixels, Mixture, Prior, PSEUDO_INPUTS};
use super::stack::StackNets;
use crate::likelihood::{self, Likelihood, StreamedScore};
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
    /// The layers above z₁, if any.
    stack: Option<StackNets>,
    /// The VampPrior's raw pseudo-inputs (K, pixels), if the prior is one.
    pseudo_inputs: Option<Tensor>,
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
        let stack = StackNets::new(&arch, &vb, kernels)?;
        let pseudo_inputs = match arch.prior {
            Prior::Standard => None,
            Prior::Vamp { pseudo_inputs } => {
                Some(vb.get((pseudo_inputs, arch.input_dim()), PSEUDO_INPUTS)?)
            }
        };
        Ok(Self {
            encoder,
            decoder,
            stack,
            pseudo_inputs,
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

    /// The stochastic layers above z₁ (`None`: one layer).
    pub fn stack(&self) -> Option<&StackNets> {
        self.stack.as_ref()
    }

    /// The VampPrior's pseudo-inputs as images, (K, pixels) in [0, 1]; `None` under N(0, I).
    pub fn pseudo_inputs(&self) -> Result<Option<Tensor>> {
        self.pseudo_inputs.as_ref().map(pseudo_pixels).transpose()
    }

    /// The VampPrior, (1/K) Σ_k q(z|u_k): the encoder's posteriors at the pseudo-inputs, so it
    /// is recomputed per call (it moves with the encoder and the u_k); `None` under N(0, I).
    pub fn vamp(&self) -> Result<Option<Mixture>> {
        let Some(u) = self.pseudo_inputs()? else {
            return Ok(None);
        };
        let post = self.encode(&u)?;
        let Some(logvar) = post.logvar else {
            candle_core::bail!("the VampPrior needs a stochastic encoder (model = \"vae\")");
        };
        Mixture::new(Gaussian {
            mu: post.mu,
            logvar,
        })
        .map(Some)
    }

    /// Each layer's posterior mean along the mean path, μ₁ then μ₂(μ₁), … : (B, Σ L_n), the
    /// codes whose spread over x counts active units (μ₁ alone for one layer). Metrics only:
    /// the layers above are read off the graph.
    pub fn mean_codes(&self, mu1: &Tensor) -> Result<Tensor> {
        let Some(stack) = &self.stack else {
            return Ok(mu1.clone());
        };
        let mu1 = mu1.detach();
        let mut codes = vec![mu1.clone()];
        codes.extend(stack.mean_path(&mu1)?.into_iter().map(|q| q.mu));
        Tensor::cat(&codes, 1)
    }

    /// Ancestral draws of z₁ from the prior, one per row of ε (B, Σ L_n): z_top = ε_top, then
    /// each layer below from p(z_n|z_{n+1}) (ε itself for one layer under N(0, I); under the
    /// VampPrior, row i from pseudo-input ⌊i·K/B⌋).
    pub fn prior_sample(&self, eps: &Tensor) -> Result<Tensor> {
        if let Some(mix) = self.vamp()? {
            return mix.sample(eps);
        }
        let Some(stack) = &self.stack else {
            return Ok(eps.clone());
        };
        let sizes = self.arch.latent_sizes();
        let starts: Vec<usize> = sizes
            .iter()
            .scan(0, |at, s| {
                let start = *at;
                *at += s;
                Some(start)
            })
            .collect();
        let top = sizes.len() - 1;
        let mut z = eps.narrow(1, starts[top], sizes[top])?;
        for n in (0..stack.depth()).rev() {
            let e = eps.narrow(1, starts[n], sizes[n])?;
            z = stack.conditional(n, &z)?.sample(&e)?;
        }
        Ok(z)
    }

    /// p(x|z): (B, L) latents → (B, P·D) likelihood parameters.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(z)
    }

    /// The decoder's dense head packed to score its output as it is computed (by the model's
    /// likelihood and `mass`, if given), with [`Model::decode_body`] giving what it reads;
    /// `None` off the fused CPU kernels, for a conv decoder, or where the head or a family is
    /// not covered (see [`StreamedScore::new`]).
    pub fn streamed_score(&self, mass: Option<Likelihood>) -> Result<Option<StreamedScore>> {
        match &self.decoder {
            Net::Mlp(mlp) if self.kernels == Kernels::Fused => {
                let (w, b) = mlp.head();
                if !w.device().is_cpu() {
                    return Ok(None);
                }
                StreamedScore::new(w, b, self.arch.likelihood, mass)
            }
            _ => Ok(None),
        }
    }

    /// The decoder up to its head: what [`Model::streamed_score`]'s head reads (the whole
    /// decoder's output where it has no dense head).
    pub fn decode_body(&self, z: &Tensor) -> Result<Tensor> {
        match &self.decoder {
            Net::Mlp(mlp) => mlp.body(z),
            other => other.forward(z),
        }
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
            stack: Default::default(),
            prior: Prior::Standard,
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

    /// A one-layer MLP VAE on `side`×`side` grey images, and the same with `above` stacked on it.
    fn one_and_two(
        side: usize,
        hidden: &[usize],
        latent: usize,
        above: usize,
        between: &[usize],
    ) -> (Architecture, Architecture) {
        let one = Architecture {
            kind: ModelKind::Vae,
            image: ImageShape::grey(side, side),
            body: Body::Mlp {
                hidden: hidden.to_vec(),
            },
            latent_dim: latent,
            likelihood: Likelihood::Bernoulli,
            stack: Default::default(),
            prior: Prior::Standard,
        };
        let two = Architecture {
            stack: crate::model::Stack {
                above: vec![above],
                hidden: between.to_vec(),
            },
            ..one.clone()
        };
        (one, two)
    }

    /// Burda et al.'s two-layer MNIST network, 784-200-200-100-100-50: the body's layers are
    /// the one-layer model's, first and in its order, and the stack's follow.
    #[test]
    fn two_layers_add_the_stack_after_the_one_layer_models_layers() {
        let (one, two) = one_and_two(28, &[200, 200], 100, 50, &[100, 100]);
        let layers = two.layers();
        assert_eq!(layers[..one.layers().len()], one.layers()[..]);
        let s = |n: &str, v: &[usize]| (n.to_string(), v.to_vec());
        assert_eq!(
            shapes(&two)[one.layers().len()..],
            [
                s("enc.z2.0", &[100, 100]),
                s("enc.z2.1", &[100, 100]),
                s("enc.z2.head", &[100, 100]),
                s("dec.z1.0", &[100, 50]),
                s("dec.z1.1", &[100, 100]),
                s("dec.z1.head", &[200, 100]),
            ]
        );
        assert_eq!(
            (two.latent_sizes(), two.latent_width()),
            (vec![100, 50], 150)
        );
    }

    /// The two-layer model with its top layer removed is the one-layer model: the same seeded
    /// weights for the shared layers, and the same q(z₁|x) and p(x|z₁) bit for bit.
    #[test]
    fn the_two_layer_model_without_its_top_layer_is_the_one_layer_model() {
        let (one, two) = one_and_two(6, &[16], 4, 3, &[8]);
        let (v1, v2) = (VarMap::new(), VarMap::new());
        crate::model::init::seeded(&one, &v1, 7, &Device::Cpu).unwrap();
        crate::model::init::seeded(&two, &v2, 7, &Device::Cpu).unwrap();
        let vec_of = |v: &VarMap, name: &str| {
            let data = v.data().lock().unwrap();
            data[name]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        for l in one.layers() {
            for part in ["weight", "bias"] {
                let name = format!("{}.{part}", l.name);
                assert_eq!(vec_of(&v1, &name), vec_of(&v2, &name), "{name}");
            }
        }
        // The two-layer checkpoint read as a one-layer model: its extra tensors are ignored.
        let vb = VarBuilder::from_varmap(&v2, DType::F32, &Device::Cpu);
        let cut = Model::new(one.clone(), vb.clone()).unwrap();
        let full = Model::new(two, vb).unwrap();
        let vb1 = VarBuilder::from_varmap(&v1, DType::F32, &Device::Cpu);
        let today = Model::new(one, vb1).unwrap();
        assert!(cut.stack().is_none() && full.stack().is_some());
        let x = Tensor::from_vec(
            (0..72).map(|i| (i as f32 * 0.1).sin().abs()).collect(),
            (2, 36),
            &Device::Cpu,
        )
        .unwrap();
        let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for m in [&cut, &full] {
            let (p, q) = (m.encode(&x).unwrap(), today.encode(&x).unwrap());
            assert_eq!(flat(p.mu.clone()), flat(q.mu.clone()));
            assert_eq!(flat(p.logvar.unwrap()), flat(q.logvar.unwrap()));
            assert_eq!(
                flat(m.decode(&p.mu).unwrap()),
                flat(today.decode(&q.mu).unwrap())
            );
        }
    }
}
