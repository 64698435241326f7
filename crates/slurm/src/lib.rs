//! Slurm for vaelab, through Slurm's own commands (`sbatch`, `squeue`, `scontrol`, `scancel`):
//! the `[slurm]` settings of a sweep file, the batch script of a job array, arrays split under
//! `MaxArraySize`, and the live state of each array task. Nothing here knows about VAEs.

pub mod commands;
pub mod script;
pub mod settings;
pub mod state;

pub use commands::{Cluster, TaskId};
pub use script::{chunks, Script};
pub use settings::Settings;
pub use state::TaskState;

/// A Slurm command that could not be run or refused what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` is not on PATH: --backend slurm submits through Slurm's commands; run on a machine that has them (a cluster's login node), or use --backend local")]
    Missing { command: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Refused {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` printed {output:?}, which is not {expected}")]
    Unexpected {
        command: String,
        output: String,
        expected: &'static str,
    },
}
