//! The models: what they are made of (`arch`), their layers on the kernels (`layers`), the
//! encoder–decoder pair that training and evaluation call (`autoencoder`), the stochastic
//! layers above z₁ (`stack`), and its seeded
//! initialization (`init`).

mod arch;
mod autoencoder;
pub mod init;
mod layers;
mod stack;

pub use arch::{Architecture, Body, BodyKind, LayerKind, LayerSpec, ModelKind, Stack};
pub use autoencoder::{Model, Posterior};
pub use stack::{log_standard, Gaussian, StackNets};
pub use vaelab_data::ImageShape;
