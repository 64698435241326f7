//! What one training run is: the model, its objective and schedule, the data subsets and the
//! final evaluation's settings.

use super::schedule::Schedule;
use crate::likelihood::{Likelihood, LEVELS_8BIT};
use crate::model::{Architecture, Body, ModelKind, Prior, Stack};
use crate::objective::Objective;
use vaelab_data::{Binarize, Dataset, SplitKind};

/// Everything a training run needs besides its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub likelihood: Likelihood,
    pub latent_dim: usize,
    /// The stochastic layers above z₁ (empty: one layer).
    pub stack: Stack,
    /// p(z): N(0, I) or the VampPrior.
    pub prior: Prior,
    /// The encoder's and decoder's network.
    pub body: Body,
    pub objective: Objective,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub binarize: Binarize,
    /// Train on the first N training images only.
    pub train_subset: Option<usize>,
    /// Evaluate on the first N test images only.
    pub test_subset: Option<usize>,
    /// K of the IWAE bound (0: skip the estimate).
    pub iw_samples: usize,
    /// Test images the IWAE bound is computed on.
    pub iw_test_n: usize,
    /// Test images whose ELBO gap is split by an explicit E-step (0: skip; at most iw_test_n
    /// are used, the IWAE bound's images).
    pub gap_test_n: usize,
    /// Adam steps of the per-image E-step, at most.
    pub estep_iters: usize,
    /// Where the E-step stops early (see [`crate::eval::estep::Steps::tol`]; 0: never).
    pub estep_tol: f64,
    /// Test images AIS estimates log p(x) on (0: skip).
    pub ais_test_n: usize,
    /// Images simulated from the model for the BDMC sandwich (0: skip).
    pub bdmc_n: usize,
    /// AIS's steps, chains and leapfrog steps.
    pub ais: crate::eval::ais::Settings,
    /// How encoder and decoder updates interleave.
    pub schedule: Schedule,
}

impl TrainConfig {
    /// Grey levels of the pixels trained on: 256 (8-bit), or 2 when binarized.
    pub fn data_levels(&self) -> u16 {
        match self.binarize {
            Binarize::None => LEVELS_8BIT,
            Binarize::Static | Binarize::Dynamic => 2,
        }
    }

    /// The likelihood that scores bits/dim: the model's as a mass on [`Self::data_levels`].
    pub fn mass(&self) -> Likelihood {
        self.likelihood.scored_on(self.data_levels())
    }

    /// The model this configuration trains on `data`'s images.
    pub fn architecture(&self, data: &Dataset) -> Architecture {
        self.architecture_for(data.shape())
    }

    /// The model this configuration trains on images of `image`'s shape.
    pub fn architecture_for(&self, image: vaelab_data::ImageShape) -> Architecture {
        Architecture {
            kind: self.model,
            image,
            body: self.body.clone(),
            latent_dim: self.latent_dim,
            likelihood: self.likelihood,
            stack: self.stack.clone(),
            prior: self.prior,
        }
    }

    /// Every stochastic layer's size, z₁ first.
    pub fn latent_sizes(&self) -> Vec<usize> {
        self.stack.sizes(self.latent_dim)
    }

    /// Latent values per image over every layer (the width of ε).
    pub fn latent_width(&self) -> usize {
        self.latent_sizes().iter().sum()
    }

    /// Images of `kind` this run uses: the split, cut to its subset.
    pub fn images(&self, data: &Dataset, kind: SplitKind) -> usize {
        let n = data.split(kind, self.binarize).len();
        let subset = match kind {
            SplitKind::Train => self.train_subset,
            SplitKind::Test => self.test_subset,
        };
        subset.map_or(n, |s| s.min(n))
    }
}
