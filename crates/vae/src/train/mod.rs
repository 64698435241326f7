//! Training: what a run is (`config`), the epoch loop (`trainer`), one batch's updates
//! (`step`), the state they change (`state`), its checkpoint format (`checkpoint`), the
//! schedules that interleave encoder and decoder updates (`schedule`), and batches.

mod batches;
mod checkpoint;
mod config;
mod error;
pub mod schedule;
mod state;
mod step;
mod trainer;

pub(crate) use batches::batch;
pub use config::TrainConfig;
pub use error::TrainError;
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::Trainer;
