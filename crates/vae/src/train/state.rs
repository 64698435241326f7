//! The training state: the weights, the model built on them, its optimizers and where the
//! schedule stands. Everything a checkpoint must hold to resume bit for bit.

use super::config::TrainConfig;
use super::error::TrainError;
use super::schedule::AggressiveState;
use crate::model::{init, Architecture, Model};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use vaelab_kernels::{Adam, Kernels};

/// Which weights an update moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    All,
    Encoder,
    Decoder,
}

/// Weights, model, optimizers and schedule state of a run.
pub(crate) struct TrainState {
    pub varmap: VarMap,
    pub model: Model,
    /// One Adam over every weight (joint), or the encoder's then the decoder's.
    pub opts: Vec<Adam>,
    /// Where the aggressive schedule stands (unused by the others).
    pub aggressive: AggressiveState,
}

impl TrainState {
    /// A freshly initialized model of `arch` (seeded by `cfg.seed`) and its optimizers.
    pub fn new(
        cfg: &TrainConfig,
        arch: Architecture,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Self, TrainError> {
        let varmap = VarMap::new();
        init::seeded(&arch, &varmap, cfg.seed, device)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = Model::with_kernels(arch, vb, kernels)?;
        let named: Vec<(String, Var)> = vars(&varmap)?;
        let opts = if cfg.schedule.splits_optimizers() {
            let (enc, dec): (Vec<_>, Vec<_>) = named
                .into_iter()
                .partition(|(name, _): &(String, _)| name.starts_with("enc."));
            vec![
                Adam::with_kernels(enc, cfg.lr, model.kernels())?,
                Adam::with_kernels(dec, cfg.lr, model.kernels())?,
            ]
        } else {
            vec![Adam::with_kernels(named, cfg.lr, model.kernels())?]
        };
        Ok(Self {
            varmap,
            model,
            opts,
            aggressive: AggressiveState::default(),
        })
    }

    /// Backpropagates `loss` and updates `part`'s weights: joint training has one optimizer
    /// over everything; split schedules the encoder's, then the decoder's.
    pub fn update(&mut self, part: Part, loss: &Tensor) -> Result<(), TrainError> {
        match (part, self.opts.len()) {
            (_, 1) | (Part::Encoder, _) => self.opts[0].backward_step(loss)?,
            (Part::Decoder, _) => self.opts[1].backward_step(loss)?,
            (Part::All, _) => {
                let grads = vaelab_kernels::backward(loss)?;
                for opt in &mut self.opts {
                    opt.step(&grads)?;
                }
            }
        }
        Ok(())
    }

    /// The model's weights by layer name.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>, TrainError> {
        Ok(vars(&self.varmap)?
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect())
    }

    /// The model on detached copies of its weights: the E-step's gradients then stop at z.
    pub fn frozen_model(&self, device: &Device) -> Result<Model, TrainError> {
        let tensors = self.weights()?.into_iter();
        let detached = tensors.map(|(k, t)| (k, t.detach())).collect();
        let vb = VarBuilder::from_tensors(detached, DType::F32, device);
        Ok(Model::with_kernels(
            self.model.arch().clone(),
            vb,
            self.model.kernels(),
        )?)
    }
}

/// The variables of `varmap` by name.
pub(crate) fn vars(varmap: &VarMap) -> Result<Vec<(String, Var)>, TrainError> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}
