//! VAE and plain-autoencoder models on candle: likelihoods, the −ELBO objective with β, KL
//! warm-up and free bits, seeded training with a fused Adam, evaluation and the IWAE bound.

pub mod conv;
pub mod dense;
#[cfg(target_arch = "x86_64")]
mod direct;
pub mod discrete;
pub mod estep;
mod fastmath;
pub mod init;
pub mod iwae;
pub mod kernels;
mod likelihood;
mod loglik_op;
mod metrics;
pub mod mi;
mod model;
pub mod objective;
pub mod optim;
pub mod rng;
pub mod schedule;
#[cfg(test)]
mod testing;
pub mod threads;
mod train;

pub use discrete::{bits_per_dim, Mass};
pub use estep::GapSplit;
pub use iwae::IwaeEstimate;
pub use kernels::Kernels;
pub use likelihood::{Likelihood, LikelihoodKind, LEVELS_8BIT, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
pub use metrics::{EpochMetrics, ACTIVE_UNIT_THRESHOLD};
pub use model::{
    Architecture, Body, ImageShape, LayerKind, LayerSpec, Model, ModelKind, Posterior,
};
pub use objective::Objective;
pub use schedule::Schedule;
pub use train::{TrainConfig, TrainError, Trainer, MI_IMAGES};
