//! VAE and plain-autoencoder models on candle, in the order a run meets them: the models
//! (`model`), the likelihoods p(x|z) and their bin masses (`likelihood`), the objectives
//! (−ELBO with β, KL warm-up and free bits, from k draws; the IWAE bound) (`objective`),
//! seeded training under the joint, alternating and aggressive schedules (`train`), and the
//! estimators: per-epoch metrics, the IWAE bound, the explicit E-step and the mutual
//! information (`eval`). The CPU kernels live in
//! `vaelab-kernels`; `rng` holds the one random stream per purpose that training and
//! evaluation share.

pub mod eval;
pub mod likelihood;
pub mod model;
pub mod objective;
pub mod rng;
pub mod train;

pub use eval::{
    AisEstimate, Bdmc, EpochMetrics, GapSplit, IwaeEstimate, LogPxSource, ACTIVE_UNIT_THRESHOLD,
    MI_IMAGES,
};
pub use likelihood::{
    bits_per_dim, Likelihood, LikelihoodKind, Mass, LEVELS_8BIT, LOG_SCALE_FLOOR, LOG_SIGMA_MAX,
    LOG_SIGMA_MIN,
};
pub use model::{
    Architecture, Body, BodyKind, ImageShape, LayerKind, LayerSpec, Model, ModelKind, Posterior,
    Prior, PriorKind, Stack,
};
pub use objective::{Bound, Objective};
pub use train::{Schedule, ScheduleKind, TrainConfig, TrainError, Trainer};
pub use vaelab_kernels::{conv_simd, cpu_line, loop_simd, threads, Kernels, Simd};
