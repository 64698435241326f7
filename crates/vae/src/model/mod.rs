//! The models: what they are made of (`arch`), their layers on the kernels (`layers`), the
//! encoder–decoder pair that training and evaluation call (`autoencoder`), the stochastic
//! layers above z₁ (`stack`), the
//! diagonal Gaussians they are made of (`gaussian`), the prior p(z) (`prior`), and its seeded
//! initialization (`init`).

mod arch;
mod autoencoder;
mod gaussian;
pub mod init;
mod layers;
mod prior;
mod stack;

pub use arch::{Architecture, Body, BodyKind, LayerKind, LayerSpec, ModelKind, Stack};
pub use autoencoder::{Model, Posterior};
pub use gaussian::{log_standard, Gaussian};
pub use prior::{pseudo_pixels, Mixture, Prior, PriorKind, PSEUDO_INIT, PSEUDO_INPUTS};
pub use stack::StackNets;
pub use vaelab_data::ImageShape;
