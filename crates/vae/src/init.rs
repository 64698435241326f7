//! Seeded parameter initialization (candle's own CPU RNG cannot be seeded).

use crate::{rng, Architecture};
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;

/// Fills `varmap` with PyTorch's `nn.Linear` default init, U(−1/√fan_in, 1/√fan_in) for
/// weights and biases, drawn from a stream of `seed` in layer order.
pub fn seeded(arch: &Architecture, varmap: &VarMap, seed: u64, device: &Device) -> Result<()> {
    let mut rng = rng::stream(seed, rng::Stream::Init, 0);
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?;
    for spec in arch.layers() {
        let bound = 1.0 / (spec.fan_in as f32).sqrt();
        let mut uniform =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let w = Tensor::from_vec(
            uniform(spec.fan_out * spec.fan_in),
            (spec.fan_out, spec.fan_in),
            device,
        )?;
        let b = Tensor::from_vec(uniform(spec.fan_out), spec.fan_out, device)?;
        data.insert(
            format!("{}.weight", spec.name),
            Var::from_tensor(&w.to_dtype(DType::F32)?)?,
        );
        data.insert(format!("{}.bias", spec.name), Var::from_tensor(&b)?);
    }
    Ok(())
}
