//! What a model is made of: its kind, body, layer shapes and sizes, checked before any weight
//! exists.

use super::prior::Prior;
use crate::likelihood::Likelihood;
use candle_core::Result;
use serde::{Deserialize, Serialize};
use vaelab_kernels::conv::{K as KERNEL, S as STRIDE};

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

/// Channels, height and width of the images a model reads (the data's own shape).
use vaelab_data::ImageShape;

/// What lies between the pixels and the latent code.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Fully connected layers of these widths, ReLU between them; the decoder mirrors them.
    Mlp { hidden: Vec<usize> },
    /// The DCGAN-style network of PyTorch-VAE and pythae: 4×4 convolutions of stride 2 and
    /// padding 1 with these channel counts, each halving the image, ReLU after each, then a
    /// linear head; the decoder mirrors it with transposed convolutions.
    Conv { channels: Vec<usize> },
}

/// The `architecture` key: which [`Body`], as named in config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// Fully connected layers (`hidden`).
    #[default]
    Mlp,
    /// DCGAN-style 4×4 stride-2 convolutions (`channels`).
    Conv,
}

impl Body {
    /// The body of `kind`, reading the widths it uses.
    pub fn new(kind: BodyKind, hidden: &[usize], channels: &[usize]) -> Self {
        match kind {
            BodyKind::Mlp => Body::Mlp {
                hidden: hidden.to_vec(),
            },
            BodyKind::Conv => Body::Conv {
                channels: channels.to_vec(),
            },
        }
    }
}

/// The stochastic layers above z₁ (Burda et al.'s hierarchy): q(z_{n+1}|z_n) and
/// p(z_n|z_{n+1}) are MLPs of `hidden` widths (ReLU), p(z_top) = N(0, I). Empty: one layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stack {
    /// Sizes of the layers above z₁, bottom to top.
    pub above: Vec<usize>,
    /// Deterministic widths between two consecutive stochastic layers (both directions).
    pub hidden: Vec<usize>,
}

impl Stack {
    /// Every stochastic layer's size, z₁ (of `z1` values) first.
    pub fn sizes(&self, z1: usize) -> Vec<usize> {
        std::iter::once(z1)
            .chain(self.above.iter().copied())
            .collect()
    }
}

/// Everything that fixes the shapes of a model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub kind: ModelKind,
    pub image: ImageShape,
    pub body: Body,
    /// Size of z₁, the layer the decoder reads x from.
    pub latent_dim: usize,
    pub likelihood: Likelihood,
    /// The layers above z₁ (VAE only).
    pub stack: Stack,
    /// p(z): N(0, I) or the VampPrior (VAE with one layer only).
    pub prior: Prior,
}

/// How a layer maps its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Linear,
    /// A 4×4 convolution of stride 2, padding 1: weight (out, in, 4, 4).
    Conv,
    /// A 4×4 transposed convolution of stride 2, padding 1: weight (in, out, 4, 4).
    ConvTranspose,
}

/// One layer of the architecture: its name in the `VarMap`, kind, input and output widths
/// (features, or channels for the convolutions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    pub name: String,
    pub kind: LayerKind,
    pub fan_in: usize,
    pub fan_out: usize,
}

impl LayerSpec {
    /// The weight's shape, as PyTorch lays it out.
    pub fn weight_shape(&self) -> Vec<usize> {
        match self.kind {
            LayerKind::Linear => vec![self.fan_out, self.fan_in],
            LayerKind::Conv => vec![self.fan_out, self.fan_in, KERNEL, KERNEL],
            LayerKind::ConvTranspose => vec![self.fan_in, self.fan_out, KERNEL, KERNEL],
        }
    }

    /// PyTorch's fan-in of the weight (`dim 1 × kernel area`), which sets its default init.
    pub fn init_fan_in(&self) -> usize {
        let w = self.weight_shape();
        w[1..].iter().product()
    }
}

impl Architecture {
    /// Values per image.
    pub fn input_dim(&self) -> usize {
        self.image.dim()
    }

    /// Every stochastic layer's size, z₁ first.
    pub fn latent_sizes(&self) -> Vec<usize> {
        self.stack.sizes(self.latent_dim)
    }

    /// Latent values per image over every layer: the width of ε, of the E-step's q and of the
    /// per-dimension KL.
    pub fn latent_width(&self) -> usize {
        self.latent_sizes().iter().sum()
    }

    /// Width of the encoder's output: μ and log σ² for the VAE, z alone for the AE.
    fn encoder_out(&self) -> usize {
        match self.kind {
            ModelKind::Vae => 2 * self.latent_dim,
            ModelKind::Ae => self.latent_dim,
        }
    }

    /// Channels of the decoder's output: the likelihood's parameters of every image channel.
    fn decoder_channels(&self) -> usize {
        self.likelihood.params_per_pixel() * self.image.channels
    }

    /// The feature map at the end of the convolutional encoder: (channels, height, width).
    pub fn conv_top(&self) -> Option<(usize, usize, usize)> {
        let Body::Conv { channels } = &self.body else {
            return None;
        };
        let halvings = 1 << channels.len();
        Some((
            *channels.last()?,
            self.image.height / halvings,
            self.image.width / halvings,
        ))
    }

    /// Why this architecture cannot read its images, if it cannot: every stride-2 layer halves
    /// them, so their sides must be divisible by 2^layers.
    pub fn check(&self) -> Result<()> {
        if let Prior::Vamp { pseudo_inputs } = self.prior {
            if self.kind != ModelKind::Vae || !self.stack.above.is_empty() || pseudo_inputs == 0 {
                candle_core::bail!(
                    "the VampPrior needs a one-layer VAE and at least one pseudo-input"
                );
            }
        }
        if let Body::Conv { channels } = &self.body {
            let halvings = 1usize << channels.len();
            let (h, w) = (self.image.height, self.image.width);
            if channels.is_empty() || h % halvings != 0 || w % halvings != 0 {
                candle_core::bail!(
                    "a convolutional body of {} layers halves the image {} times: its sides must be divisible by {halvings}, and {h}×{w} is not",
                    channels.len(),
                    channels.len()
                );
            }
        }
        Ok(())
    }

    /// Multiply-adds of one image's forward pass (encoder and decoder), for GFLOP/s figures.
    pub fn macs(&self) -> usize {
        let area = KERNEL * KERNEL;
        // Side of the feature map a layer reads, walking down the encoder and up the decoder.
        let mut side = (self.image.height, self.image.width);
        self.layers()
            .iter()
            .map(|l| match l.kind {
                LayerKind::Linear => l.fan_in * l.fan_out,
                LayerKind::Conv => {
                    side = (side.0 / STRIDE, side.1 / STRIDE);
                    l.fan_in * l.fan_out * area * side.0 * side.1
                }
                LayerKind::ConvTranspose => {
                    let macs = l.fan_in * l.fan_out * area * side.0 * side.1;
                    side = (side.0 * STRIDE, side.1 * STRIDE);
                    macs
                }
            })
            .sum()
    }

    /// Every layer: the body's, then the stack's (so a one-layer model's are the first, in
    /// the same order, whatever sits above).
    pub fn layers(&self) -> Vec<LayerSpec> {
        let mut out = self.body_layers();
        out.extend(self.stack_layers());
        out
    }

    /// The layers between z_n and z_{n+1}, n = 1, 2, …: q(z_{n+1}|z_n) as `enc.z{n+1}.*` (its
    /// head gives μ and log σ²), p(z_n|z_{n+1}) as `dec.z{n}.*`, the hidden widths reversed.
    pub fn stack_layers(&self) -> Vec<LayerSpec> {
        let sizes = self.latent_sizes();
        let mut out = Vec::new();
        for n in 1..sizes.len() {
            let (below, above) = (sizes[n - 1], sizes[n]);
            let mut chain = |name: String, widths: Vec<usize>| {
                for (j, w) in widths.windows(2).enumerate() {
                    let last = j + 2 == widths.len();
                    out.push(LayerSpec {
                        name: if last {
                            format!("{name}.head")
                        } else {
                            format!("{name}.{j}")
                        },
                        kind: LayerKind::Linear,
                        fan_in: w[0],
                        fan_out: w[1],
                    });
                }
            };
            let hidden = &self.stack.hidden;
            let up = std::iter::once(below).chain(hidden.iter().copied());
            chain(format!("enc.z{}", n + 1), up.chain([2 * above]).collect());
            let down = std::iter::once(above).chain(hidden.iter().rev().copied());
            chain(format!("dec.z{n}"), down.chain([2 * below]).collect());
        }
        out
    }

    /// The body's layers, encoder then decoder; the decoder mirrors the encoder.
    pub fn body_layers(&self) -> Vec<LayerSpec> {
        let mut out = Vec::new();
        let mut push = |name: String, kind: LayerKind, fan_in: usize, fan_out: usize| {
            out.push(LayerSpec {
                name,
                kind,
                fan_in,
                fan_out,
            })
        };
        match &self.body {
            Body::Mlp { hidden } => {
                let mut width = self.input_dim();
                for (i, &h) in hidden.iter().enumerate() {
                    push(format!("enc.{i}"), LayerKind::Linear, width, h);
                    width = h;
                }
                push(
                    "enc.head".into(),
                    LayerKind::Linear,
                    width,
                    self.encoder_out(),
                );
                width = self.latent_dim;
                for (i, &h) in hidden.iter().rev().enumerate() {
                    push(format!("dec.{i}"), LayerKind::Linear, width, h);
                    width = h;
                }
                push(
                    "dec.head".into(),
                    LayerKind::Linear,
                    width,
                    self.likelihood.params_per_pixel() * self.input_dim(),
                );
            }
            Body::Conv { channels } => {
                let mut c = self.image.channels;
                for (i, &ch) in channels.iter().enumerate() {
                    push(format!("enc.conv{i}"), LayerKind::Conv, c, ch);
                    c = ch;
                }
                let (top_c, top_h, top_w) = self.conv_top().unwrap_or((0, 0, 0));
                let flat = top_c * top_h * top_w;
                push(
                    "enc.head".into(),
                    LayerKind::Linear,
                    flat,
                    self.encoder_out(),
                );
                push("dec.fc".into(), LayerKind::Linear, self.latent_dim, flat);
                let ups: Vec<usize> = channels
                    .iter()
                    .rev()
                    .skip(1)
                    .copied()
                    .chain(std::iter::once(self.decoder_channels()))
                    .collect();
                for (i, &ch) in ups.iter().enumerate() {
                    push(format!("dec.deconv{i}"), LayerKind::ConvTranspose, c, ch);
                    c = ch;
                }
            }
        }
        out
    }
}
