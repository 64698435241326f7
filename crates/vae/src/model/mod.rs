//! The models: what they are made of (`arch`), their layers on the kernels (`layers`), the
//! encoder–decoder pair that training and evaluation call (`autoencoder`), and its seeded
//! initialization (`init`).

mod arch;
mod autoencoder;
pub mod init;
mod layers;

pub use arch::{Architecture, Body, BodyKind, LayerKind, LayerSpec, ModelKind};
pub use autoencoder::{Model, Posterior};
pub use vaelab_data::ImageShape;
