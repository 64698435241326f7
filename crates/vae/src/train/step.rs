//! One batch's updates: a forward pass with fresh ε and an update of the weights the schedule
//! names, and the aggressive schedule's inner loop of encoder-only steps.

use super::batches::batch;
use super::config::TrainConfig;
use super::error::TrainError;
use super::schedule::{Plateau, Schedule};
use super::state::{Part, TrainState};
use crate::objective::BatchTerms;
use crate::rng;
use candle_core::{Device, Tensor};
use rand::Rng;
use vaelab_data::{Binarize, Split};

/// The random streams of an epoch's updates: ε, and the aggressive schedule's extra batches.
pub(crate) struct Draws {
    pub noise: rng::Rng64,
    pub extra: rng::Rng64,
}

/// Encoder and decoder updates of an epoch.
#[derive(Debug, Default)]
pub(crate) struct Updates {
    pub encoder: u64,
    pub decoder: u64,
}

/// Where a step stands: (epoch, 1-based step, β), for the divergence error and the KL weight.
pub(crate) type At = (usize, usize, f64);

/// What one batch's updates read besides the state.
pub(crate) struct StepCtx<'a> {
    pub cfg: &'a TrainConfig,
    pub device: &'a Device,
    /// The training split and how many of its images are used.
    pub split: &'a Split,
    pub n_train: usize,
}

/// The updates `cfg.schedule` makes on batch `x`; returns the terms and loss of the batch's
/// first forward pass (for the aggressive schedule, its decoder step's), counting updates.
pub(crate) fn train_batch(
    state: &mut TrainState,
    ctx: &StepCtx<'_>,
    x: &Tensor,
    draws: &mut Draws,
    at: At,
    updates: &mut Updates,
) -> Result<(BatchTerms, f64), TrainError> {
    Ok(match ctx.cfg.schedule {
        Schedule::Alternating { e_steps, m_steps } => {
            let first = descend(state, ctx, Part::Encoder, x, draws, at)?;
            for _ in 1..e_steps {
                descend(state, ctx, Part::Encoder, x, draws, at)?;
            }
            for _ in 0..m_steps {
                descend(state, ctx, Part::Decoder, x, draws, at)?;
            }
            updates.encoder += e_steps as u64;
            updates.decoder += m_steps as u64;
            first
        }
        Schedule::Aggressive if state.aggressive.active => {
            updates.encoder += lag_encoder(state, ctx, x, draws, at)?;
            updates.decoder += 1;
            descend(state, ctx, Part::Decoder, x, draws, at)?
        }
        Schedule::Joint | Schedule::Aggressive => {
            updates.encoder += 1;
            updates.decoder += 1;
            descend(state, ctx, Part::All, x, draws, at)?
        }
    })
}

/// One forward pass on `x` with fresh ε (k rows per image for k-sample objectives) and one
/// update of `part`'s weights; returns the pass's terms and loss.
pub(super) fn descend(
    state: &mut TrainState,
    ctx: &StepCtx<'_>,
    part: Part,
    x: &Tensor,
    draws: &mut Draws,
    (epoch, step, beta): At,
) -> Result<(BatchTerms, f64), TrainError> {
    let objective = &ctx.cfg.objective;
    let eps = rng::normal_tensor(
        &mut draws.noise,
        (objective.noise_rows(x.dim(0)?), ctx.cfg.latent_width()),
        ctx.device,
    )?;
    let terms = objective.terms(&state.model, x, &eps, beta)?;
    let loss = f64::from(terms.loss.to_scalar::<f32>()?);
    if !loss.is_finite() {
        return Err(TrainError::Diverged { epoch, step });
    }
    state.update(part, &terms.loss)?;
    Ok((terms, loss))
}

/// The aggressive inner loop: encoder-only steps, first on `x`, then on random training
/// batches, until [`Plateau`] says stop; returns how many.
fn lag_encoder(
    state: &mut TrainState,
    ctx: &StepCtx<'_>,
    x: &Tensor,
    draws: &mut Draws,
    at: At,
) -> Result<u64, TrainError> {
    let size = x.dim(0)?;
    let dynamic = ctx.cfg.binarize == Binarize::Dynamic;
    let mut plateau = Plateau::default();
    let mut xe = x.clone();
    let mut buf = Vec::new();
    let mut steps = 0;
    loop {
        let (_, loss) = descend(state, ctx, Part::Encoder, &xe, draws, at)?;
        steps += 1;
        if !plateau.go_on(loss) {
            return Ok(steps);
        }
        let idx: Vec<usize> = (0..size)
            .map(|_| draws.extra.random_range(0..ctx.n_train))
            .collect();
        xe = batch(
            ctx.split,
            &idx,
            dynamic.then_some(&mut draws.extra),
            &mut buf,
            ctx.device,
        )?;
    }
}
