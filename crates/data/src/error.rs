use std::path::PathBuf;

/// Everything that can go wrong while finding or reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data folder {0} does not exist")]
    MissingFolder(PathBuf),
    #[error("{folder} holds no `{stem}` or `{stem}.gz` (an IDX folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, raw or .gz)")]
    MissingFile { folder: PathBuf, stem: String },
    #[error("{path} is not an IDX file: magic number {found:#010x}, expected {expected:#010x}")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "{path} is truncated: its header promises {expected} bytes of data, the file holds {found}"
    )]
    Truncated {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("train and test disagree: {0}")]
    Mismatch(String),
    #[error("dataset {dataset}: column `{column}` of {file}: {reason}")]
    Column {
        dataset: String,
        file: PathBuf,
        column: String,
        reason: String,
    },
    #[error("hf-hub: {0}")]
    Hub(String),
    #[error("{name} not found. Tried: {tried}.\n  Offline: {offline}\n  Online: let vaelab fetch it through hf-hub (needs network; the files land in the hf-hub cache, HF_HOME or HF_HUB_CACHE)")]
    NotFound {
        name: String,
        tried: String,
        offline: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
