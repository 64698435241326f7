//! The encoder's and decoder's layers as candle modules: linear and 4×4 stride-2 conv layers
//! on the kernels the model resolved, and the MLP and conv networks made of them.

use super::arch::{Architecture, Body, LayerKind, LayerSpec};
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use vaelab_data::ImageShape;
use vaelab_kernels::{ops, Kernels};

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
        ops::dense(self.kernels, x, &self.weight, &self.bias, relu)
    }
}

/// Linear layers with ReLU between them and none after the last.
#[derive(Debug, Clone)]
pub(super) struct Mlp {
    hidden: Vec<Linear>,
    head: Linear,
}

impl Mlp {
    /// The layers of `specs` named `prefix…`, the last one the head.
    pub(super) fn new(
        prefix: &str,
        specs: &[LayerSpec],
        vb: &VarBuilder,
        kernels: Kernels,
    ) -> Result<Self> {
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

impl Mlp {
    /// The hidden layers' output: what the head reads.
    pub(super) fn body(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.forward(&h, true)?;
        }
        Ok(h)
    }

    /// The head's weight (out, in) and bias (out).
    pub(super) fn head(&self) -> (&Tensor, &Tensor) {
        (&self.head.weight, &self.head.bias)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.body(x)?, false)
    }
}

/// A 4×4, stride-2 convolution or transposed convolution with a bias: the fused ops of
/// `vaelab_kernels::conv` on the CPU, candle's stock ops for the reference path.
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
        ops::conv(self.kernels, x, w, b, relu, t)
    }
}

/// Convolutions with ReLU after each, then a linear head: (B, C·H·W) → (B, out).
#[derive(Debug, Clone)]
pub(super) struct ConvEncoder {
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
pub(super) struct ConvDecoder {
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
pub(super) enum Net {
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
pub(super) fn networks(
    arch: &Architecture,
    vb: &VarBuilder,
    kernels: Kernels,
) -> Result<(Net, Net)> {
    let specs = arch.body_layers();
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
