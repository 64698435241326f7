//! Datasets for vaelab: images (grey or colour, CHW) as 8-bit pixels (read as f32 in [0, 1]
//! per batch) with u8 labels,
//! loaded once from an IDX folder, the Debian `dataset-fashion-mnist` package, or the Hub's
//! parquet conversion through the hf-hub cache, decoded once into a cache file that later loads
//! map, and shared read-only by every run.

mod binarize;
mod cache;
mod dataset;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod hub;
mod idx;
mod pixels;
mod shape;
mod source;
mod split;

pub use binarize::Binarize;
pub use cache::{cache_dir, CacheStatus, Identity, CACHE_ENV};
pub use dataset::Dataset;
pub use error::DataError;
pub use hub::{load_from_hub, HubColumns, HubRepo};
pub use idx::{load_idx_folder, read_idx, IdxArray};
pub use shape::ImageShape;
pub use source::{load, DataSource, DatasetName, DATASET_NAMES, DEBIAN_FASHION_MNIST_DIR};
pub use split::{Split, SplitKind};
