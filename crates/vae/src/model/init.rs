//! Seeded parameter initialization (candle's own CPU RNG cannot be seeded).

use super::arch::Architecture;
use super::prior::{Prior, PSEUDO_INIT, PSEUDO_INPUTS};
use crate::rng;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;

/// Fills `varmap` with PyTorch's default init of `nn.Linear`, `nn.Conv2d` and
/// `nn.ConvTranspose2d`, U(−1/√fan_in, 1/√fan_in) for weights and biases (fan_in: PyTorch's,
/// dim 1 of the weight times the kernel area), drawn from a stream of `seed` in layer order;
/// then a VampPrior's pseudo-inputs, N(0.05, 0.01²) per pixel (Tomczak & Welling's init).
pub fn seeded(arch: &Architecture, varmap: &VarMap, seed: u64, device: &Device) -> Result<()> {
    let mut rng = rng::stream(seed, rng::Stream::Init, 0);
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
    for spec in arch.layers() {
        let bound = 1.0 / (spec.init_fan_in() as f32).sqrt();
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let shape = spec.weight_shape();
        let w = Tensor::from_vec(uniform(shape.iter().product()), shape, device)?;
        let b = Tensor::from_vec(uniform(spec.fan_out), spec.fan_out, device)?;
        data.insert(
            format!("{}.weight", spec.name),
            Var::from_tensor(&w.to_dtype(DType::F32)?)?,
        );
        data.insert(format!("{}.bias", spec.name), Var::from_tensor(&b)?);
    }
    // After every layer, so the layers' draws are those of the same model under N(0, I).
    if let Prior::Vamp { pseudo_inputs } = arch.prior {
        let (mean, std) = PSEUDO_INIT;
        let n = pseudo_inputs * arch.input_dim();
        let pixels = rng::normals(&mut rng, n)
            .iter()
            .map(|e| mean + std * e)
            .collect();
        let u = Tensor::from_vec(pixels, (pseudo_inputs, arch.input_dim()), device)?;
        data.insert(PSEUDO_INPUTS.into(), Var::from_tensor(&u)?);
    }
    Ok(())
}
