//! Datasets for vaelab: images (grey or colour, CHW) as f32 pixels in [0, 1] with u8 labels,
//! loaded once from an IDX folder, the Debian `dataset-fashion-mnist` package, or the Hub's
//! parquet conversion through the hf-hub cache, and shared read-only by every run.

mod binarize;
mod dataset;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod hub;
mod idx;
mod shape;
mod source;

pub use binarize::Binarize;
pub use dataset::{Dataset, Split, SplitKind};
pub use error::DataError;
pub use hub::{load_from_hub, HubColumns, HubRepo};
pub use idx::{load_idx_folder, read_idx, IdxArray};
pub use shape::ImageShape;
pub use source::{load, DataSource, DatasetName, DATASET_NAMES, DEBIAN_FASHION_MNIST_DIR};
