//! What the trainer and the data loader read from the keys.

use super::{ArchitectureName, RunKeys, ScheduleName};
use vaelab_data::{DataSource, HubColumns};
use vaelab_vae::{Body, Likelihood, Objective, Schedule, TrainConfig};

impl RunKeys {
    /// What the trainer needs.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            model: self.model,
            likelihood: Likelihood::new(self.likelihood, self.sigma as f32, self.discretized),
            latent_dim: self.latent_dim,
            body: match self.architecture {
                ArchitectureName::Mlp => Body::Mlp {
                    hidden: self.hidden.clone(),
                },
                ArchitectureName::Conv => Body::Conv {
                    channels: self.channels.clone(),
                },
            },
            objective: Objective {
                beta: self.beta,
                kl_warmup_epochs: self.kl_warmup_epochs,
                free_bits: self.free_bits,
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
            schedule: match self.schedule {
                ScheduleName::Joint => Schedule::Joint,
                ScheduleName::Alternating => Schedule::Alternating {
                    e_steps: self.e_steps,
                    m_steps: self.m_steps,
                },
                ScheduleName::Aggressive => Schedule::Aggressive,
            },
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
