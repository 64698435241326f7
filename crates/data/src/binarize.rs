use serde::{Deserialize, Serialize};

/// How pixel intensities become the data x the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binarize {
    /// Grey levels in [0, 1] as they are.
    #[default]
    None,
    /// One fixed Bernoulli draw per pixel, the same for every run.
    Static,
    /// A fresh Bernoulli draw for every training batch (the standard for likelihood numbers).
    Dynamic,
}
