//! Where a dataset comes from: a configured folder, the Debian package, or the hf-hub cache.

use crate::cache::{self, cache_dir, Identity};
use crate::hub::{self, HubColumns, HubRepo};
use crate::{idx::load_idx_folder, DataError, Dataset};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package puts its IDX files.
pub const DEBIAN_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The datasets vaelab knows by name, and any image dataset on the Hub.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetName {
    /// Zalando's Fashion-MNIST.
    #[default]
    FashionMnist,
    /// LeCun's MNIST digits.
    Mnist,
    /// Any folder of IDX files, given by `data_dir`.
    Idx,
    /// `hub:<owner>/<name>[/<config>]`: the Hub's parquet conversion of an image dataset.
    Hub(HubRepo),
}

/// What the `dataset` key accepts, for error messages.
pub const DATASET_NAMES: &str = "\"fashion-mnist\", \"mnist\", \"idx\" (with data_dir) or \"hub:<owner>/<name>[/<config>]\" (e.g. \"hub:uoft-cs/cifar10\")";

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatasetName::FashionMnist => f.write_str("fashion-mnist"),
            DatasetName::Mnist => f.write_str("mnist"),
            DatasetName::Idx => f.write_str("idx"),
            DatasetName::Hub(repo) => write!(f, "hub:{repo}"),
        }
    }
}

impl std::str::FromStr for DatasetName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fashion-mnist" => Ok(DatasetName::FashionMnist),
            "mnist" => Ok(DatasetName::Mnist),
            "idx" => Ok(DatasetName::Idx),
            _ => match s.strip_prefix("hub:") {
                Some(id) => id.parse().map(DatasetName::Hub),
                None => Err(format!("unknown dataset {s:?}; allowed: {DATASET_NAMES}")),
            },
        }
    }
}

impl TryFrom<String> for DatasetName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DatasetName> for String {
    fn from(d: DatasetName) -> String {
        d.to_string()
    }
}

/// A dataset request: its name, an optional folder that overrides every other source, and how
/// to read a Hub dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct DataSource {
    pub name: DatasetName,
    pub data_dir: Option<PathBuf>,
    pub hub: HubColumns,
}

/// Loads a dataset: `data_dir` when given (and nothing else); otherwise, for Fashion-MNIST the
/// Debian package folder, then the hf-hub cache, then an hf-hub download; for MNIST and
/// `hub:` datasets the hf-hub cache, then a download. Set `HF_HUB_OFFLINE=1` to never touch the
/// network.
pub fn load(src: &DataSource) -> Result<Dataset, DataError> {
    let name = src.name.to_string();
    if let Some(dir) = &src.data_dir {
        return from_folder(&name, dir);
    }
    let mut tried = Vec::new();
    let (repo, columns) = match &src.name {
        DatasetName::Idx => {
            return Err(DataError::NotFound {
                name,
                tried: "nothing: dataset \"idx\" needs `data_dir`".into(),
                offline: "set `data_dir` to a folder of IDX files".into(),
            })
        }
        DatasetName::FashionMnist => {
            let debian = Path::new(DEBIAN_FASHION_MNIST_DIR);
            if debian.is_dir() {
                return from_folder(&name, debian);
            }
            tried.push(format!("{DEBIAN_FASHION_MNIST_DIR} (absent)"));
            (HubRepo::fashion_mnist(), HubColumns::default())
        }
        DatasetName::Mnist => (HubRepo::mnist(), HubColumns::default()),
        DatasetName::Hub(repo) => (repo.clone(), src.hub.clone()),
    };
    match hub::load_from_hub(&name, &repo, &columns, None, !hub::offline()) {
        Ok(d) => Ok(d),
        // A dataset that is there but unreadable as asked is the user's to fix, not "not found".
        Err(e @ (DataError::Column { .. } | DataError::Malformed { .. })) => Err(e),
        Err(e) => {
            tried.push(format!("hf-hub {repo} ({e})"));
            let offline = match src.name {
                DatasetName::FashionMnist => "`sudo apt-get install -y dataset-fashion-mnist` (or `just data`) puts the IDX files in /usr/share/datasets/fashion-mnist; or set `data_dir` to a folder of IDX files",
                DatasetName::Hub(_) => "copy an hf-hub cache holding the dataset's refs/convert/parquet files to HF_HUB_CACHE (or HF_HOME/hub)",
                _ => "download the four IDX files (train-images-idx3-ubyte.gz, …) into a folder and set `data_dir` to it",
            };
            Err(DataError::NotFound {
                name,
                tried: tried.join("; "),
                offline: offline.into(),
            })
        }
    }
}

fn from_folder(name: &str, dir: &Path) -> Result<Dataset, DataError> {
    let files = crate::idx::folder_files(dir)?;
    let identity = Identity::of(format!("idx {name}"), &files)?;
    let (train, test, cache) =
        cache::load_or_decode(cache_dir().as_deref(), name, &identity, || {
            load_idx_folder(dir)
        })?;
    if train.shape() != test.shape() {
        return Err(DataError::Mismatch(format!(
            "train images are {}, test images {} in {}",
            train.shape(),
            test.shape(),
            dir.display()
        )));
    }
    Ok(Dataset::new(name, dir.display().to_string(), train, test).with_cache(cache))
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
            ..DataSource::default()
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
            ..DataSource::default()
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
            ..DataSource::default()
        })
        .unwrap_err();
        assert!(matches!(err, DataError::Mismatch(_)), "{err}");
    }

    #[test]
    fn dataset_names_round_trip_and_bad_ones_say_what_is_allowed() {
        for s in [
            "fashion-mnist",
            "mnist",
            "idx",
            "hub:uoft-cs/cifar10",
            "hub:a/b/plain_text",
        ] {
            let d: DatasetName = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        for bad in ["cifar", "hub:", "hub:cifar10", "hub:a/b/c/d", "hub:a b/c"] {
            let e = bad.parse::<DatasetName>().unwrap_err();
            assert!(e.contains("hub:<owner>/<name>"), "{bad}: {e}");
        }
    }
}
