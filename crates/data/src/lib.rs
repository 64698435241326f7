//! Datasets for vaelab: 28x28 grey images as f32 pixels in [0, 1] with u8 labels, loaded once
//! from an IDX folder, the Debian `dataset-fashion-mnist` package, or the hf-hub cache, and
//! shared read-only by every run.

mod binarize;
mod dataset;
mod error;
mod hub;
mod idx;
mod source;

pub use binarize::Binarize;
pub use dataset::{Dataset, Split, SplitKind};
pub use error::DataError;
pub use hub::{load_from_hub, HubDataset};
pub use idx::{load_idx_folder, read_idx, IdxArray};
pub use source::{load, DataSource, DatasetName, DEBIAN_FASHION_MNIST_DIR};
