//! Which implementation runs the hot ops: the fused CPU kernels, or candle's stock tensor ops.
//!
//! The stock path is the reference the fused kernels are tested against, and the one every
//! device other than the CPU (CUDA) runs, since the fused kernels are written for the CPU only.

use candle_core::Device;

/// The implementation of dense and conv layers, likelihoods and Adam.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Hand-written CPU kernels with fused backward passes (the default on the CPU).
    #[default]
    Fused,
    /// candle's tensor ops with autograd: slower, device-agnostic, the unoptimized reference.
    Reference,
}

impl Kernels {
    /// `self` on the CPU; the reference ops on any other device. The one place the choice is
    /// made: a model resolves it once, and every op it runs then follows it.
    pub fn for_device(self, device: &Device) -> Self {
        if device.is_cpu() {
            self
        } else {
            Kernels::Reference
        }
    }
}
