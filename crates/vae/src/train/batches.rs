//! Batches: the images at a list of indices as a (B, D) tensor.

use crate::rng::Rng64;
use candle_core::{Device, Result, Tensor};
use vaelab_data::Split;

/// Copies the images at `idx` into `buf` and returns them as a (B, D) tensor on `device`;
/// with `binarize`, each pixel is drawn as a Bernoulli of its grey level (dynamic binarization).
pub(crate) fn batch(
    split: &Split,
    idx: &[usize],
    binarize: Option<&mut Rng64>,
    buf: &mut Vec<f32>,
    device: &Device,
) -> Result<Tensor> {
    split.gather(idx, binarize, buf);
    Tensor::from_slice(buf, (idx.len(), split.dim()), device)
}
