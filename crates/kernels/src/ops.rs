//! The layers as the model calls them: one entry per op, dispatching on [`Kernels`].

use crate::{conv, dense, reference, Kernels};
use candle_core::{Result, Tensor};

/// act(x·Wᵀ + b) for x (B, I), W (O, I), b (O); `relu` picks the activation (else identity).
pub fn dense(kernels: Kernels, x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => dense::dense(x, w, b, relu),
        Kernels::Reference => reference::dense(x, w, b, relu),
    }
}

/// act(conv(x, W) + b) for the conv body's 4×4 stride-2 layers (see [`conv::conv`]).
pub fn conv(
    kernels: Kernels,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    relu: bool,
    transposed: bool,
) -> Result<Tensor> {
    match kernels {
        Kernels::Fused => conv::conv(x, w, b, relu, transposed),
        Kernels::Reference => reference::conv(x, w, b, relu, transposed),
    }
}
