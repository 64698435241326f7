//! Every run key, once: its doc, type and default, then what it allows (`allowed`), which runs
//! read it (`uses`, default: every run), its check (`check`, default: none) and whether the
//! resolved TOML leaves it out at its default (`omitted_at_default`, default: false). The
//! order is the order of the resolved TOML, of the table columns and of `vaelab keys`; the
//! fields, order and `omitted_at_default` of existing keys fix the run ids.
//!
//! Cross-key checks sit with the key they name: `e_steps` knows it needs `alternating`,
//! `discretized` which likelihoods it suits, the image keys that they need a `hub:` dataset.

use super::{allowed_if, name_of, requires, run_keys, Check};
use crate::config::is_safe_name;
use std::path::PathBuf;
use vaelab_data::{Binarize, DatasetName, DATASET_NAMES};
use vaelab_vae::{BodyKind, Bound, LikelihoodKind, ModelKind, PriorKind, ScheduleKind};

run_keys! {
    /// The run's folder under the results directory (required in a run file; a sweep names
    /// its runs by id).
    name: Option<String> = None => {
        allowed: "letters, digits, `.`, `_` and `-` only (1 to 100 characters, not `.` or `..`), so the run stays inside the results folder",
        check: |k| allowed_if(k.name.as_deref().is_none_or(is_safe_name)),
    },
    /// Where the images come from (see Data sources).
    dataset: DatasetName = DatasetName::FashionMnist => {
        allowed: DATASET_NAMES,
    },
    /// A folder of IDX files; overrides every other source.
    data_dir: Option<PathBuf> = None => {
        allowed: "a folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (raw or .gz); required for dataset = \"idx\"",
        check: |k| requires(k.dataset != DatasetName::Idx || k.data_dir.is_some(), || {
            "dataset = \"idx\" needs data_dir = \"<folder of IDX files>\"".into()
        }),
    },
    /// The column of encoded images of a `hub:` dataset (default: the only such column).
    image_column: Option<String> = None => {
        allowed: "a column of the dataset's parquet files, only with dataset = \"hub:<owner>/<name>\"",
        uses: hub,
        check: |k| hub_only(k, k.image_column.is_some()),
    },
    /// The column of integer labels of a `hub:` dataset (default: `label`, else `labels`, else
    /// every label is 0).
    label_column: Option<String> = None => {
        allowed: "a column of integers in 0..=255, only with dataset = \"hub:<owner>/<name>\"",
        uses: hub,
        check: |k| hub_only(k, k.label_column.is_some()),
    },
    /// Brings every image of a `hub:` dataset to N×N: shorter side resized with a triangle
    /// filter, then a centre crop (default: the images' own size).
    image_size: Option<usize> = None => {
        allowed: "an integer from 4 to 1024 (the side every image is resized and centre-cropped to), or leave it out",
        uses: hub,
        check: |k| {
            hub_only(k, k.image_size.is_some())?;
            allowed_if(k.image_size.is_none_or(|s| (4..=1024).contains(&s)))
        },
    },
    /// `vae`, or `ae`: deterministic z and no KL, the baseline.
    model: ModelKind = ModelKind::Vae => {},
    /// The observation model p(x|z).
    likelihood: LikelihoodKind = LikelihoodKind::Bernoulli => {},
    /// Trains `gaussian`, `gaussian-learned` or `laplace` on 8-bit bin masses, not densities.
    discretized: bool = false => {
        allowed: "true or false; true only with likelihood = \"gaussian\", \"gaussian-learned\" or \"laplace\"",
        uses: |k| k.likelihood.can_discretize(),
        check: |k| requires(!k.discretized || k.likelihood.can_discretize(), || format!(
            "true only with likelihood = \"gaussian\", \"gaussian-learned\" or \"laplace\" (here \"{}\"; \"discretized-logistic\" always is)",
            name_of(&k.likelihood)
        )),
        omitted_at_default: true,
    },
    /// The fixed σ of `gaussian`, the scale b of `laplace`.
    sigma: f64 = 0.1 => {
        allowed: "a number > 0 (the fixed σ of `gaussian`, the scale of `laplace`)",
        uses: |k| k.likelihood.uses_sigma(),
        check: |k| allowed_if(k.sigma.is_finite() && k.sigma > 0.0),
    },
    /// The size of the latent code z.
    latent_dim: usize = 20 => {
        allowed: "an integer from 1 to 1024",
        uses: |k| k.latent_layers.is_empty(),
        check: |k| allowed_if((1..=1024).contains(&k.latent_dim)),
    },
    /// What lies between pixels and latents: fully connected layers (`hidden`) or DCGAN-style
    /// 4×4 stride-2 convolutions (`channels`).
    architecture: BodyKind = BodyKind::Mlp => {
        omitted_at_default: true,
    },
    /// The MLP's hidden layer widths, encoder side; the decoder mirrors them.
    hidden: Vec<usize> = vec![400] => {
        allowed: "a list of at most 8 layer widths, each from 1 to 16384, e.g. [400] or [512, 256]",
        uses: |k| k.architecture == BodyKind::Mlp,
        check: |k| {
            allowed_if(k.hidden.len() <= 8 && k.hidden.iter().all(|h| (1..=16384).contains(h)))
        },
    },
    /// The conv net's channels, one 4×4 stride-2 layer each (the default is
    /// `../shared/anchors/torch_vae.py --arch conv`: 1×28×28 → 32×14×14 → 64×7×7).
    channels: Vec<usize> = vec![32, 64] => {
        allowed: "1 to 5 channel counts from 1 to 1024, one stride-2 layer each (the image sides must be divisible by 2^layers)",
        uses: |k| k.architecture == BodyKind::Conv,
        check: |k| {
            let layers = (1..=5).contains(&k.channels.len());
            allowed_if(layers && k.channels.iter().all(|c| (1..=1024).contains(c)))
        },
        omitted_at_default: true,
    },
    /// The weight of the KL (β-VAE).
    beta: f64 = 1.0 => {
        allowed: "a number ≥ 0 (1 is the plain ELBO)",
        uses: vae,
        check: |k| allowed_if(k.beta.is_finite() && k.beta >= 0.0),
    },
    /// β ramps linearly from 0 over this many epochs (per step).
    kl_warmup_epochs: usize = 0 => {
        allowed: "an integer ≥ 0 (0: off)",
        uses: vae,
    },
    /// Nats per latent dimension not penalized: Σ_d max(KL_d, λ), KL_d batch-averaged.
    free_bits: f64 = 0.0 => {
        allowed: "a number ≥ 0 of nats per latent dimension (0: off)",
        uses: vae,
        check: |k| allowed_if(k.free_bits.is_finite() && k.free_bits >= 0.0),
    },
    /// Passes over the training images.
    epochs: usize = 10 => {
        allowed: "an integer from 1 to 100000",
        check: |k| allowed_if((1..=100_000).contains(&k.epochs)),
    },
    /// Images per Adam step.
    batch_size: usize = 128 => {
        allowed: "an integer from 1 to 1000000",
        check: |k| allowed_if((1..=1_000_000).contains(&k.batch_size)),
    },
    /// Adam's learning rate (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay).
    lr: f64 = 1e-3 => {
        allowed: "a number > 0",
        check: |k| allowed_if(k.lr.is_finite() && k.lr > 0.0),
    },
    /// Seeds the initial weights, shuffles, ε and binarization.
    seed: u64 = 0 => {
        allowed: "an integer ≥ 0",
    },
    /// `none`, `static` (one fixed draw of both splits) or `dynamic` (a fresh draw per training
    /// batch, tested on the fixed binary copy).
    binarize: Binarize = Binarize::None => {
        allowed: "\"none\" for a likelihood trained on 8-bit masses",
        check: |k| {
            let on_masses = k.discretized || k.likelihood == LikelihoodKind::DiscretizedLogistic;
            requires(!on_masses || k.binarize == Binarize::None, || {
                "\"none\" for a likelihood trained on 8-bit masses (discretized); binarized pixels have 2 levels: use bernoulli".into()
            })
        },
    },
    /// Trains on the first N training images (default: all).
    train_subset: Option<usize> = None => {
        allowed: "an integer ≥ 1 (the first N training images), or leave it out",
        check: |k| allowed_if(k.train_subset.is_none_or(|n| n >= 1)),
    },
    /// Tests on the first N test images (default: all).
    test_subset: Option<usize> = None => {
        allowed: "an integer ≥ 1 (the first N test images), or leave it out",
        check: |k| allowed_if(k.test_subset.is_none_or(|n| n >= 1)),
    },
    /// K of the IWAE bound.
    iw_samples: usize = 1000 => {
        allowed: "an integer from 1 to 100000 (K of the IWAE bound; set iw_test_n = 0 to skip it)",
        uses: vae,
        check: |k| allowed_if((1..=100_000).contains(&k.iw_samples)),
    },
    /// Test images for the IWAE bound (0 skips it).
    iw_test_n: usize = 1000 => {
        allowed: "an integer ≥ 0 (0 skips the IWAE bound)",
        uses: vae,
    },
    /// Test images whose ELBO gap an explicit E-step splits (at most iw_test_n of them; 0
    /// skips it).
    gap_test_n: usize = 1000 => {
        allowed: "an integer from 0 to 100000 (test images whose ELBO gap an E-step splits, at most iw_test_n of them are used; 0 skips it)",
        uses: vae,
        check: |k| allowed_if(k.gap_test_n <= 100_000),
        omitted_at_default: true,
    },
    /// Adam steps of that per-image E-step (where the curve flattens, see "The EM view").
    estep_iters: usize = 200 => {
        allowed: "an integer from 1 to 100000 (Adam steps of the per-image E-step)",
        uses: vae,
        check: |k| allowed_if((1..=100_000).contains(&k.estep_iters)),
        omitted_at_default: true,
    },
    /// The E-step stops early for a chunk of images whose mean ELBO gained less than this many
    /// nats per image over 25 steps (checked at fixed draws); 0 runs all estep_iters steps.
    estep_tol: f64 = 0.0 => {
        allowed: "a number from 0 to 1 of nats per image over 25 steps (0: always estep_iters steps)",
        uses: vae,
        check: |k| allowed_if((0.0..=1.0).contains(&k.estep_tol)),
        omitted_at_default: true,
    },
    /// How encoder and decoder updates interleave (see "The EM view").
    schedule: ScheduleKind = ScheduleKind::Joint => {
        allowed: "\"joint\" only for model = \"ae\"",
        check: |k| requires(k.schedule == ScheduleKind::Joint || k.model == ModelKind::Vae, || {
            "\"joint\" for model = \"ae\" (the EM schedules split the ELBO's encoder and decoder updates; an AE has no ELBO)".into()
        }),
        omitted_at_default: true,
    },
    /// Encoder-only updates per batch of `alternating`.
    e_steps: usize = 1 => {
        allowed: "an integer from 1 to 1000 (updates per batch of schedule = \"alternating\")",
        uses: alternating,
        check: |k| steps(k, k.e_steps),
        omitted_at_default: true,
    },
    /// Decoder-only updates per batch of `alternating`.
    m_steps: usize = 1 => {
        allowed: "an integer from 1 to 1000 (updates per batch of schedule = \"alternating\")",
        uses: alternating,
        check: |k| steps(k, k.m_steps),
        omitted_at_default: true,
    },
    /// The bound training maximizes: `elbo`, or `iwae`, the importance-weighted bound of Burda
    /// et al. (2016) on `train_samples` draws; at one draw both are the ELBO, one run (see
    /// "Tighter bounds").
    objective: Bound = Bound::Elbo => {
        allowed: "\"elbo\" | \"iwae\"; \"iwae\" only with model = \"vae\", beta = 1, kl_warmup_epochs = 0 and free_bits = 0",
        uses: |k| vae(k) && k.train_samples > 1,
        check: |k| iwae_alone(k),
        omitted_at_default: true,
    },
    /// z draws per image and step: `elbo` averages their ELBOs, `iwae` is the bound on them.
    train_samples: usize = 1 => {
        allowed: "an integer from 1 to 5000 (z draws per training image and step; more than 1 only with model = \"vae\")",
        uses: vae,
        check: |k| {
            allowed_if((1..=5000).contains(&k.train_samples))?;
            requires(k.train_samples == 1 || vae(k), || {
                "1 for model = \"ae\" (its z is deterministic: one draw is all there is); leave it out".into()
            })
        },
        omitted_at_default: true,
    },
    /// Stochastic layers, bottom (read by the decoder) to top, e.g. `[100, 50]` for Burda et
    /// al.'s two-layer model; replaces `latent_dim` (one entry is that one-layer model).
    latent_layers: Vec<usize> = vec![] => {
        allowed: "a list of 1 to 4 layer sizes, each from 1 to 1024, bottom to top, e.g. [100, 50]; more than one only with model = \"vae\"",
        check: |k| {
            let sizes = k.latent_layers.len() <= 4 && k.latent_layers.iter().all(|s| (1..=1024).contains(s));
            allowed_if(sizes)?;
            requires(k.latent_layers.len() < 2 || vae(k), || {
                "at most one size for model = \"ae\" (a hierarchy needs q(z|x) and its priors at every layer)".into()
            })
        },
        omitted_at_default: true,
    },
    /// Deterministic widths between two stochastic layers, in q(z_{n+1}|z_n) and reversed in
    /// p(z_n|z_{n+1}) (Burda et al.: 100, 100; ReLU here, tanh in the paper).
    latent_hidden: Vec<usize> = vec![100, 100] => {
        allowed: "a list of at most 8 widths, each from 1 to 16384 (used with two or more latent_layers)",
        uses: |k| k.latent_layers.len() > 1,
        check: |k| {
            allowed_if(k.latent_hidden.len() <= 8 && k.latent_hidden.iter().all(|h| (1..=16384).contains(h)))
        },
        omitted_at_default: true,
    },
    /// p(z): `standard`, N(0, I), or `vamp`, the VampPrior of Tomczak & Welling (2018): the
    /// mixture of the encoder's posteriors at `pseudo_inputs` learned pseudo-inputs, its KL
    /// estimated by Monte Carlo (see "A learned prior").
    prior: PriorKind = PriorKind::Standard => {
        allowed: "\"standard\" | \"vamp\"; \"vamp\" only with model = \"vae\", one latent layer and free_bits = 0",
        uses: vae,
        check: |k| vamp_alone(k),
        omitted_at_default: true,
    },
    /// K, the VampPrior's pseudo-inputs (its mixture's components), learned with the decoder.
    pseudo_inputs: usize = 500 => {
        allowed: "an integer from 1 to 100000, at most the training images (train_subset, if set); used with prior = \"vamp\"",
        uses: |k| vae(k) && k.prior == PriorKind::Vamp,
        check: |k| {
            allowed_if((1..=100_000).contains(&k.pseudo_inputs))?;
            requires(k.prior == PriorKind::Standard || k.train_subset.is_none_or(|n| k.pseudo_inputs <= n), || {
                format!("at most train_subset = {} (no more pseudo-inputs than training images)", k.train_subset.unwrap_or(0))
            })
        },
        omitted_at_default: true,
    },
    /// Test images whose log p(x) annealed importance sampling estimates (0 skips it; see
    /// "Checking the numbers").
    ais_test_n: usize = 0 => {
        allowed: "an integer from 0 to 100000, at most the test images (0 skips AIS); AIS needs one latent layer",
        uses: vae,
        check: |k| {
            allowed_if(k.ais_test_n <= 100_000)?;
            one_layer_for(k, k.ais_test_n)
        },
        omitted_at_default: true,
    },
    /// Intermediate distributions on AIS's path from q(z|x) to the posterior.
    ais_steps: usize = 500 => {
        allowed: "an integer from 2 to 100000 (AIS's intermediate distributions)",
        uses: ais,
        check: |k| allowed_if((2..=100_000).contains(&k.ais_steps)),
        omitted_at_default: true,
    },
    /// Independent AIS chains per image.
    ais_chains: usize = 16 => {
        allowed: "an integer from 1 to 1024 (AIS chains per image)",
        uses: ais,
        check: |k| allowed_if((1..=1024).contains(&k.ais_chains)),
        omitted_at_default: true,
    },
    /// Leapfrog steps of each HMC transition of AIS.
    ais_leapfrog: usize = 10 => {
        allowed: "an integer from 1 to 1000 (leapfrog steps per HMC transition)",
        uses: ais,
        check: |k| allowed_if((1..=1000).contains(&k.ais_leapfrog)),
        omitted_at_default: true,
    },
    /// Images simulated from the model on which forward and reverse AIS sandwich log p(x)
    /// (BDMC; 0 skips it).
    bdmc_n: usize = 0 => {
        allowed: "an integer from 0 to 100000 (images simulated from the model for the BDMC sandwich; 0 skips it); BDMC needs one latent layer",
        uses: vae,
        check: |k| {
            allowed_if(k.bdmc_n <= 100_000)?;
            one_layer_for(k, k.bdmc_n)
        },
        omitted_at_default: true,
    },
}

impl RunKeys {
    /// Every stochastic layer's size, z₁ first: `latent_layers`, or `latent_dim` alone.
    pub fn latent_sizes(&self) -> Vec<usize> {
        if self.latent_layers.is_empty() {
            vec![self.latent_dim]
        } else {
            self.latent_layers.clone()
        }
    }
}

/// `objective = "iwae"`: a VAE's bound with no KL term to weight, warm or cut.
fn iwae_alone(k: &RunKeys) -> Check {
    if k.objective == Bound::Elbo {
        return Ok(());
    }
    requires(vae(k), || {
        "\"elbo\" for model = \"ae\" (the IWAE bound needs q(z|x) and p(z); an AE has neither)"
            .into()
    })?;
    let set: Vec<&str> = [
        (k.beta != 1.0, "beta"),
        (k.kl_warmup_epochs != 0, "kl_warmup_epochs"),
        (k.free_bits != 0.0, "free_bits"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    requires(set.is_empty(), || {
        format!(
            "\"elbo\" with {} set (the IWAE bound has no separate KL term to weight, warm up or cut: leave them at beta = 1, kl_warmup_epochs = 0, free_bits = 0)",
            set.join(", ")
        )
    })
}

/// `prior = "vamp"`: a one-layer VAE whose KL is not cut per dimension.
fn vamp_alone(k: &RunKeys) -> Check {
    if k.prior == PriorKind::Standard {
        return Ok(());
    }
    requires(vae(k), || {
        "\"standard\" for model = \"ae\" (the VampPrior is a mixture of q(z|x) at pseudo-inputs; an AE has no q and no prior)".into()
    })?;
    requires(k.latent_layers.len() < 2, || {
        "\"standard\" with more than one latent layer (the VampPrior over a hierarchy's top layer is not built; use one latent layer)".into()
    })?;
    requires(k.free_bits == 0.0, || {
        "\"standard\" with free_bits set (free bits cut the KL per latent dimension; the VampPrior's KL is one number per image: leave free_bits = 0)".into()
    })
}

/// AIS and BDMC anneal one latent layer's posterior: `n` images of either need one.
fn one_layer_for(k: &RunKeys, n: usize) -> Check {
    requires(n == 0 || k.latent_layers.len() < 2, || {
        "0 with more than one latent layer (AIS over a hierarchy's latents is not built; use one latent layer)".into()
    })
}

/// The AIS settings: read where AIS or BDMC runs.
fn ais(k: &RunKeys) -> bool {
    vae(k) && (k.ais_test_n > 0 || k.bdmc_n > 0)
}

/// Keys of the ELBO and the IWAE bound: an AE has neither.
fn vae(k: &RunKeys) -> bool {
    k.model == ModelKind::Vae
}

fn hub(k: &RunKeys) -> bool {
    matches!(k.dataset, DatasetName::Hub(_))
}

fn alternating(k: &RunKeys) -> bool {
    k.schedule == ScheduleKind::Alternating
}

/// An image key set without a `hub:` dataset.
fn hub_only(k: &RunKeys, set: bool) -> Check {
    requires(hub(k) || !set, || {
        format!(
            "only with dataset = \"hub:<owner>/<name>\" (here \"{}\"); leave it out",
            k.dataset
        )
    })
}

/// `e_steps` and `m_steps`: a count, and only for `alternating`.
fn steps(k: &RunKeys, n: usize) -> Check {
    allowed_if((1..=1000).contains(&n))?;
    requires(n == 1 || alternating(k), || {
        format!(
            "only with schedule = \"alternating\" (here \"{}\"); leave it out",
            name_of(&k.schedule)
        )
    })
}
