//! The encoder q(z|x) and decoder p(x|z), MLPs or DCGAN-style convolutional networks, built
//! from a `VarBuilder`.

use crate::conv::{K as KERNEL, S as STRIDE};
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

/// Channels, height and width of the images a model reads (the data's own shape).
pub use vaelab_data::ImageShape;

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

/// Everything that fixes the shapes of a model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub kind: ModelKind,
    pub image: ImageShape,
    pub body: Body,
    pub latent_dim: usize,
    pub likelihood: Likelihood,
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

    /// Every layer, encoder then decoder; the decoder mirrors the encoder.
    pub fn layers(&self) -> Vec<LayerSpec> {
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
        let mut layers = named(specs, prefix)
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

/// A 4×4, stride-2 convolution or transposed convolution with a bias: the fused ops of
/// [`crate::conv`] on the CPU, candle's stock ops for the reference path.
#[derive(Debug, Clone)]
struct ConvLayer {
    weight: Tensor,
    bias: Tensor,
    transposed: bool,
    kernels: Kernels,
}

impl ConvLayer {
    fn new(spec: &LayerSpec, vb: &VarBuilder, kernels: Kernels) -> Result<Self> {
        let vb = vb.pp(&spec.name);
        Ok(Self {
            weight: vb.get(spec.weight_shape(), "weight")?,
            bias: vb.get(spec.fan_out, "bias")?,
            transposed: spec.kind == LayerKind::ConvTranspose,
            kernels,
        })
    }

    fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (w, b, t) = (&self.weight, &self.bias, self.transposed);
        match self.kernels {
            Kernels::Fused => crate::conv::conv(x, w, b, relu, t),
            Kernels::Reference => kernels::conv(x, w, b, relu, t),
        }
    }
}

/// Convolutions with ReLU after each, then a linear head: (B, C·H·W) → (B, out).
#[derive(Debug, Clone)]
struct ConvEncoder {
    image: ImageShape,
    convs: Vec<ConvLayer>,
    head: Linear,
}

impl Module for ConvEncoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let i = self.image;
        let mut h = x.reshape((b, i.channels, i.height, i.width))?;
        for conv in &self.convs {
            h = conv.forward(&h, true)?;
        }
        self.head.forward(&h.flatten_from(1)?, false)
    }
}

/// A linear layer to the top feature map, ReLU, transposed convolutions with ReLU between
/// them and none after the last: (B, L) → (B, P·C·H·W), parameter-major as the MLP's head.
#[derive(Debug, Clone)]
struct ConvDecoder {
    top: (usize, usize, usize),
    fc: Linear,
    deconvs: Vec<ConvLayer>,
}

impl Module for ConvDecoder {
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let b = z.dim(0)?;
        let (c, h, w) = self.top;
        let mut y = self.fc.forward(z, true)?.reshape((b, c, h, w))?;
        let last = self.deconvs.len().saturating_sub(1);
        for (i, deconv) in self.deconvs.iter().enumerate() {
            y = deconv.forward(&y, i < last)?;
        }
        y.flatten_from(1)
    }
}

/// The encoder or decoder network of a model.
#[derive(Debug, Clone)]
enum Net {
    Mlp(Mlp),
    ConvEncoder(ConvEncoder),
    ConvDecoder(ConvDecoder),
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Net::Mlp(m) => m.forward(x),
            Net::ConvEncoder(e) => e.forward(x),
            Net::ConvDecoder(d) => d.forward(x),
        }
    }
}

/// The layers of `specs` whose names start with `prefix`, by name.
fn named<'a>(specs: &'a [LayerSpec], prefix: &str) -> impl Iterator<Item = &'a LayerSpec> {
    let prefix = prefix.to_string();
    specs.iter().filter(move |s| s.name.starts_with(&prefix))
}

/// The encoder and decoder of `arch`.
fn networks(arch: &Architecture, vb: &VarBuilder, kernels: Kernels) -> Result<(Net, Net)> {
    let specs = arch.layers();
    let find = |name: &str| {
        specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no layer {name}")))
    };
    Ok(match &arch.body {
        Body::Mlp { .. } => (
            Net::Mlp(Mlp::new("enc.", &specs, vb, kernels)?),
            Net::Mlp(Mlp::new("dec.", &specs, vb, kernels)?),
        ),
        Body::Conv { .. } => {
            arch.check()?;
            let convs = named(&specs, "enc.conv")
                .map(|s| ConvLayer::new(s, vb, kernels))
                .collect::<Result<Vec<_>>>()?;
            let deconvs = named(&specs, "dec.deconv")
                .map(|s| ConvLayer::new(s, vb, kernels))
                .collect::<Result<Vec<_>>>()?;
            (
                Net::ConvEncoder(ConvEncoder {
                    image: arch.image,
                    convs,
                    head: Linear::new(find("enc.head")?, vb, kernels)?,
                }),
                Net::ConvDecoder(ConvDecoder {
                    top: arch.conv_top().unwrap_or((0, 0, 0)),
                    fc: Linear::new(find("dec.fc")?, vb, kernels)?,
                    deconvs,
                }),
            )
        }
    })
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
    encoder: Net,
    decoder: Net,
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

#[cfg(test)]
mod tests {
    use super::*;
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
        crate::init::seeded(arch, &varmap, 1, &Device::Cpu).unwrap();
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
