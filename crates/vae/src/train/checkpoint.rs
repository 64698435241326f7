//! The checkpoint format: safetensors with the weights under their layer names (`enc.0.weight`,
//! …), Adam's moments under `optim.m.*` / `optim.v.*`, `optim.step_epoch` (step count and
//! finished epochs), and for split schedules `optim.dec_step` and `schedule.state`.

use super::error::TrainError;
use super::schedule::AggressiveState;
use super::state::{vars, TrainState};
use candle_core::{Device, Tensor};
use std::path::Path;
use vaelab_kernels::AdamState;

/// Writes `state` after `epochs_done` finished epochs to `path`.
pub(crate) fn save(state: &TrainState, path: &Path, epochs_done: usize) -> Result<(), TrainError> {
    let mut tensors = state.weights()?;
    let mut steps = Vec::new();
    for opt in &state.opts {
        let s = opt.state()?;
        for ((name, m), v) in opt.names().zip(s.m).zip(s.v) {
            let n = m.len();
            tensors.insert(
                format!("optim.m.{name}"),
                Tensor::from_vec(m, n, &Device::Cpu)?,
            );
            tensors.insert(
                format!("optim.v.{name}"),
                Tensor::from_vec(v, n, &Device::Cpu)?,
            );
        }
        steps.push(s.step as i64);
    }
    let counters = [steps[0], epochs_done as i64];
    tensors.insert(
        "optim.step_epoch".into(),
        Tensor::from_slice(&counters, 2, &Device::Cpu)?,
    );
    // Split optimizers: the decoder's step count, and the aggressive schedule's state.
    if let Some(&dec) = steps.get(1) {
        tensors.insert(
            "optim.dec_step".into(),
            Tensor::from_slice(&[dec], 1, &Device::Cpu)?,
        );
        let schedule = state.aggressive.to_vec();
        tensors.insert(
            "schedule.state".into(),
            Tensor::from_vec(schedule, 3, &Device::Cpu)?,
        );
    }
    Ok(candle_core::safetensors::save(&tensors, path)?)
}

/// Restores into `state` a checkpoint written by [`save`]; returns its finished epochs. The
/// next epoch then draws exactly what it would have drawn uninterrupted.
pub(crate) fn load(
    state: &mut TrainState,
    path: &Path,
    device: &Device,
) -> Result<usize, TrainError> {
    let mut tensors = candle_core::safetensors::load(path, device)?;
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: no tensor {name}", path.display())))
    };
    for (name, var) in vars(&state.varmap)? {
        var.set(&take(&name)?)?;
    }
    let bad = |what: &str| candle_core::Error::Msg(format!("{}: bad {what}", path.display()));
    let counters = take("optim.step_epoch")?.to_vec1::<i64>()?;
    let (step, epochs) = match counters[..] {
        [s, e] if s >= 0 && e >= 0 => (s as u64, e as usize),
        _ => return Err(bad("optim.step_epoch").into()),
    };
    let mut steps = vec![step];
    if state.opts.len() == 2 {
        match take("optim.dec_step")?.to_vec1::<i64>()?[..] {
            [s] if s >= 0 => steps.push(s as u64),
            _ => return Err(bad("optim.dec_step").into()),
        }
        let schedule = take("schedule.state")?.to_vec1::<f64>()?;
        state.aggressive =
            AggressiveState::from_slice(&schedule).ok_or_else(|| bad("schedule.state"))?;
    }
    for (opt, step) in state.opts.iter_mut().zip(steps) {
        let names: Vec<String> = opt.names().map(String::from).collect();
        let mut m = Vec::with_capacity(names.len());
        let mut v = Vec::with_capacity(names.len());
        for name in &names {
            m.push(take(&format!("optim.m.{name}"))?.to_vec1::<f32>()?);
            v.push(take(&format!("optim.v.{name}"))?.to_vec1::<f32>()?);
        }
        opt.restore(AdamState { step, m, v })?;
    }
    Ok(epochs)
}
