//! Where a dataset comes from: a configured folder, the Debian package, or the hf-hub cache.

use crate::{hub, idx::load_idx_folder, DataError, Dataset, HubDataset};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts its IDX files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The datasets vaelab knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Zalando's Fashion-MNIST.
    #[default]
    FashionMnist,
    /// LeCun's MNIST digits.
    Mnist,
    /// Any folder of IDX files, given by `data_dir`.
    Idx,
}

impl DatasetName {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Mnist => "mnist",
            DatasetName::Idx => "idx",
        }
    }
}

/// A dataset request: its name and an optional folder that overrides every other source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataSource {
    pub name: DatasetName,
    pub data_dir: Option<PathBuf>,
}

/// Loads a dataset: `data_dir` when given (and nothing else); otherwise, for Fashion-MNIST the
/// Debian package folder, then the hf-hub cache, then an hf-hub download; for MNIST the hf-hub
/// cache, then a download. Set `HF_HUB_OFFLINE=1` to never touch the network.
pub fn load(src: &DataSource) -> Result<Dataset, DataError> {
    let name = src.name.as_str();
    if let Some(dir) = &src.data_dir {
        return from_folder(name, dir);
    }
    let mut tried = Vec::new();
    let hub_set = match src.name {
        DatasetName::Idx => {
            return Err(DataError::NotFound {
                name: name.into(),
                tried: "nothing: dataset \"idx\" needs `data_dir`".into(),
                offline: "set `data_dir` to a folder of IDX files".into(),
            })
        }
        DatasetName::FashionMnist => {
            let debian = Path::new(DEBIAN_FASHION_MNIST_DIR);
            if debian.is_dir() {
                return from_folder(name, debian);
            }
            tried.push(format!("{DEBIAN_FASHION_MNIST_DIR} (absent)"));
            HubDataset::FashionMnist
        }
        DatasetName::Mnist => HubDataset::Mnist,
    };
    match hub::load_from_hub(hub_set, None, !hub::offline()) {
        Ok(d) => Ok(d),
        Err(e) => {
            tried.push(format!("hf-hub {} ({e})", hub_set.repo_id()));
            let offline = match src.name {
                DatasetName::FashionMnist => "`sudo apt-get install -y dataset-fashion-mnist` (or `just data`) puts the IDX files in /usr/share/datasets/fashion-mnist",
                _ => "download the four IDX files (train-images-idx3-ubyte.gz, …) into a folder and set `data_dir` to it",
            };
            Err(DataError::NotFound {
                name: name.into(),
                tried: tried.join("; "),
                offline: offline.into(),
            })
        }
    }
}

fn from_folder(name: &str, dir: &Path) -> Result<Dataset, DataError> {
    let (train, test) = load_idx_folder(dir)?;
    if train.shape() != test.shape() {
        return Err(DataError::Mismatch(format!(
            "train images are {:?}, test images {:?} in {}",
            train.shape(),
            test.shape(),
            dir.display()
        )));
    }
    Ok(Dataset::new(name, dir.display().to_string(), train, test))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idx::tests::{write_folder, write_idx};

    #[test]
    fn data_dir_overrides_everything() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), 4, 2, true);
        let d = load(&DataSource {
            name: DatasetName::FashionMnist,
            data_dir: Some(dir.path().into()),
        })
        .unwrap();
        assert_eq!(
            d.split(crate::SplitKind::Train, crate::Binarize::None)
                .len(),
            4
        );
        assert_eq!(d.origin(), dir.path().display().to_string());
    }

    #[test]
    fn idx_without_folder_says_what_to_set() {
        let err = load(&DataSource {
            name: DatasetName::Idx,
            data_dir: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("data_dir"), "{err}");
    }

    #[test]
    fn train_and_test_sizes_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), 4, 2, false);
        let pixels = vec![0u8; 2 * 14 * 14];
        write_idx(
            &dir.path().join("t10k-images-idx3-ubyte"),
            &[2, 14, 14],
            &pixels,
            false,
        );
        let err = load(&DataSource {
            name: DatasetName::Idx,
            data_dir: Some(dir.path().into()),
        })
        .unwrap_err();
        assert!(matches!(err, DataError::Mismatch(_)), "{err}");
    }
}
