//! The encoder q(z|x) and decoder p(x|z): MLPs built from a `VarBuilder`.

use crate::kernels::{self, Kernels};
use crate::Likelihood;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// VAE (stochastic z, KL to the prior) or plain autoencoder (deterministic z, no KL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    #[default]
    Vae,
    Ae,
}

impl ModelKind {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Vae => "vae",
            ModelKind::Ae => "ae",
        }
    }
}

/// Everything that fixes the shapes of a model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub kind: ModelKind,
    pub input_dim: usize,
    pub hidden: Vec<usize>,
    pub latent_dim: usize,
    pub likelihood: Likelihood,
}

/// One linear layer of the architecture: its name in the `VarMap`, fan-in and fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    pub name: String,
    pub fan_in: usize,
    pub fan_out: usize,
}

impl Architecture {
    /// Width of the encoder's output: μ and log σ² for the VAE, z alone for the AE.
    fn encoder_out(&self) -> usize {
        match self.kind {
            ModelKind::Vae => 2 * self.latent_dim,
            ModelKind::Ae => self.latent_dim,
        }
    }

    /// Every linear layer, encoder then decoder; the decoder mirrors the encoder's widths.
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        let mut push = |name: String, fan_in: usize, fan_out: usize| {
            out.push(LayerSpec {
                name,
                fan_in,
                fan_out,
            })
        };
        let mut width = self.input_dim;
        for (i, &h) in self.hidden.iter().enumerate() {
            push(format!("enc.{i}"), width, h);
            width = h;
        }
        push("enc.head".into(), width, self.encoder_out());
        width = self.latent_dim;
        for (i, &h) in self.hidden.iter().rev().enumerate() {
            push(format!("dec.{i}"), width, h);
            width = h;
        }
        push(
            "dec.head".into(),
            width,
            self.likelihood.params_per_pixel() * self.input_dim,
        );
        out
    }
}

/// A linear layer: `weight` (out, in) and `bias` (out), named as in candle-nn's `linear`.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
    kernels: Kernels,
}

impl Linear {
    fn new(spec: &LayerSpec, vb: &VarBuilder, kernels: Kernels) -> Result<Self> {
        let vb = vb.pp(&spec.name);
        Ok(Self {
            weight: vb.get((spec.fan_out, spec.fan_in), "weight")?,
            bias: vb.get(spec.fan_out, "bias")?,
            kernels,
        })
    }

    fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        match self.kernels {
            Kernels::Fused => crate::dense::dense(x, &self.weight, &self.bias, relu),
            Kernels::Reference => kernels::dense(x, &self.weight, &self.bias, relu),
        }
    }
}

/// Linear layers with ReLU between them and none after the last.
#[derive(Debug, Clone)]
struct Mlp {
    hidden: Vec<Linear>,
    head: Linear,
}

impl Mlp {
    fn new(prefix: &str, specs: &[LayerSpec], vb: &VarBuilder, kernels: Kernels) -> Result<Self> {
        let mut layers = specs
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| Linear::new(s, vb, kernels))
            .collect::<Result<Vec<_>>>()?;
        let head = layers
            .pop()
            .ok_or_else(|| candle_core::Error::Msg(format!("no {prefix} layers")))?;
        Ok(Self {
            hidden: layers,
            head,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.forward(&h, true)?;
        }
        self.head.forward(&h, false)
    }
}

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
    encoder: Mlp,
    decoder: Mlp,
    kernels: Kernels,
}

impl Model {
    /// Builds the model's layers from `vb` (existing variables are reused, see [`crate::init`]),
    /// with the fused kernels on the CPU and candle's ops elsewhere.
    pub fn new(arch: Architecture, vb: VarBuilder) -> Result<Self> {
        Self::with_kernels(arch, vb, Kernels::Fused)
    }

    /// As [`Model::new`], with `kernels` on the CPU (other devices always take the reference).
    pub fn with_kernels(arch: Architecture, vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        let kernels = kernels.for_device(vb.device());
        let specs = arch.layers();
        Ok(Self {
            encoder: Mlp::new("enc.", &specs, &vb, kernels)?,
            decoder: Mlp::new("dec.", &specs, &vb, kernels)?,
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
        match self.kernels {
            Kernels::Fused => lik.log_prob(params, x),
            Kernels::Reference => kernels::log_prob(lik, params, x),
        }
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
