//! Seeded random streams: one per purpose and epoch, so a run resumed at any epoch draws the
//! same numbers as an uninterrupted one.

use candle_core::{Device, Result, Tensor};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub use rand_chacha::ChaCha8Rng as Rng64;

/// What a stream of random numbers is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    Init = 1,
    Shuffle = 2,
    Noise = 3,
    Binarize = 4,
    Eval = 5,
    Iwae = 6,
    /// Prior samples decoded for report figures.
    Samples = 7,
    /// The explicit E-step's ε and its optimum's ELBO samples.
    EStep = 8,
    /// The z draws of the mutual-information estimate.
    Mi = 9,
    /// The aggressive schedule's extra encoder batches.
    Aggressive = 10,
    /// AIS's starting draws, momenta and Metropolis decisions on test images.
    Ais = 11,
    /// The images BDMC simulates and its chains' randomness.
    Bdmc = 12,
}

/// The stream for `purpose` in `epoch` of a run seeded with `seed`.
pub fn stream(seed: u64, purpose: Stream, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((purpose as u64) << 32) | epoch as u64);
    rng
}

/// `n` standard normal draws.
pub fn normals(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.sample(StandardNormal)).collect()
}

/// A tensor of standard normal draws.
pub fn normal_tensor(
    rng: &mut ChaCha8Rng,
    shape: (usize, usize),
    device: &Device,
) -> Result<Tensor> {
    Tensor::from_vec(normals(rng, shape.0 * shape.1), shape, device)
}

/// A uniformly random permutation of 0..n (Fisher–Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.random_range(0..=i));
    }
    p
}
