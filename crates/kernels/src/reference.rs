//! The reference layers: candle's stock tensor ops with autograd, on any device.

use crate::conv::{P, S};
use candle_core::{Result, Tensor};

/// act(x·Wᵀ + b) with candle's ops.
pub fn dense(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Result<Tensor> {
    let y = x.matmul(&w.t()?)?.broadcast_add(b)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// act(conv(x, W) + b) with candle's ops for the conv body's 4×4, stride-2, padding-1 layers:
/// a convolution, or with `transposed` a transposed convolution.
pub fn conv(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool, transposed: bool) -> Result<Tensor> {
    let y = if transposed {
        x.conv_transpose2d(w, P, 0, S, 1)?
    } else {
        x.conv2d(w, P, S, 1, 1)?
    };
    let y = y.broadcast_add(&b.reshape((1, (), 1, 1))?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}
