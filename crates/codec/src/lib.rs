//! Lossless compression of images with a trained VAE: bits-back coding with ANS (BB-ANS;
//! Townsend, Bird & Barber, ICLR 2019) on `constriction`'s stack coder, and its file format.
//!
//! Per image x, the coder pops z ~ q(z|x) off the stack (getting back the bits of an earlier
//! image), pushes x with p(x|z), then pushes z with p(z): net −log p(x|z) − log p(z) + log q(z|x)
//! bits, a one-sample −ELBO. The first image of each chunk has no bits on the stack to pop: it
//! takes z at the posterior mean's bucket and pays for its latent in full (the "clean" start
//! of the paper's §3.3, here one image's L·bits per chunk, not random initial bits).

mod coder;
mod format;
mod latent;
mod pixels;

pub use coder::{Coder, Stats, CHUNK_IMAGES};
pub use format::{File, Header};
pub use latent::Buckets;

/// Why coding failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The model cannot code images (an AE, a hierarchy, the VampPrior) or gave bad masses.
    #[error("{0}")]
    Model(String),
    /// The file is not one this build can read: foreign, truncated, corrupt.
    #[error("{0}")]
    Format(String),
    /// The file or the images do not belong to this model.
    #[error("{0}")]
    Mismatch(String),
    /// The entropy coder refused a symbol.
    #[error("the ANS coder: {0}")]
    Coder(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
