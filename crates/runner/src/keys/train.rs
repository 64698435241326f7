//! What the trainer and the data loader read from the keys.

use super::RunKeys;
use vaelab_data::{DataSource, HubColumns};
use vaelab_vae::{Body, Likelihood, Objective, Prior, Schedule, Stack, TrainConfig};

impl RunKeys {
    /// What the trainer needs.
    pub fn train_config(&self) -> TrainConfig {
        let sizes = self.latent_sizes();
        TrainConfig {
            model: self.model,
            likelihood: Likelihood::new(self.likelihood, self.sigma as f32, self.discretized),
            latent_dim: sizes[0],
            stack: Stack {
                above: sizes[1..].to_vec(),
                hidden: self.latent_hidden.clone(),
            },
            prior: Prior::new(self.prior, self.pseudo_inputs),
            body: Body::new(self.architecture, &self.hidden, &self.channels),
            objective: Objective {
                beta: self.beta,
                kl_warmup_epochs: self.kl_warmup_epochs,
                free_bits: self.free_bits,
                bound: self.objective,
                samples: self.train_samples,
            },
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: self.seed,
            binarize: self.binarize,
            train_subset: self.train_subset,
            test_subset: self.test_subset,
            iw_samples: self.iw_samples,
            iw_test_n: self.iw_test_n,
            gap_test_n: self.gap_test_n,
            estep_iters: self.estep_iters,
            estep_tol: self.estep_tol,
            ais_test_n: self.ais_test_n,
            bdmc_n: self.bdmc_n,
            ais: vaelab_vae::eval::ais::Settings {
                steps: self.ais_steps,
                chains: self.ais_chains,
                leapfrog: self.ais_leapfrog,
            },
            schedule: Schedule::new(self.schedule, self.e_steps, self.m_steps),
        }
    }

    /// Where the data comes from.
    pub fn data_source(&self) -> DataSource {
        DataSource {
            name: self.dataset.clone(),
            data_dir: self.data_dir.clone(),
            hub: HubColumns {
                image_column: self.image_column.clone(),
                label_column: self.label_column.clone(),
                image_size: self.image_size,
            },
        }
    }
}
