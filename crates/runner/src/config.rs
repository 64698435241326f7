//! Run files: TOML with `name` and the run keys at the top level, every key with a default.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use vaelab_data::{Binarize, DataSource, DatasetName, HubColumns};
use vaelab_track::Cell;
use vaelab_vae::{Body, Likelihood, LikelihoodKind, ModelKind, Objective, Schedule, TrainConfig};

/// Largest latent size accepted.
pub const MAX_LATENT: usize = 1024;
/// Largest hidden layer accepted.
pub const MAX_HIDDEN: usize = 16384;

/// A config file that cannot be used, with what is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}{}: key `{key}` = {value} is not allowed; allowed: {allowed}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: &'static str,
        value: String,
        allowed: String,
    },
}

/// Every key of a run file, in the order of [`RunKeys`].
pub const RUN_KEYS: &[&str] = &[
    "name",
    "dataset",
    "data_dir",
    "image_column",
    "label_column",
    "image_size",
    "model",
    "likelihood",
    "discretized",
    "sigma",
    "latent_dim",
    "architecture",
    "hidden",
    "channels",
    "beta",
    "kl_warmup_epochs",
    "free_bits",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "binarize",
    "train_subset",
    "test_subset",
    "iw_samples",
    "iw_test_n",
    "gap_test_n",
    "estep_iters",
    "schedule",
    "e_steps",
    "m_steps",
];

/// The keys of one run, with their defaults (see the README's table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunKeys {
    /// The run's folder name under the results directory (letters, digits, `.`, `_`, `-`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub dataset: DatasetName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The column of encoded images of a `hub:` dataset (default: the only such column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_column: Option<String>,
    /// The column of integer labels of a `hub:` dataset (default: `label`, else `labels`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// Bring every image of a `hub:` dataset to this square side (shorter side resized with a
    /// triangle filter, then a centre crop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    pub model: ModelKind,
    pub likelihood: LikelihoodKind,
    /// Train `gaussian`, `gaussian-learned` or `laplace` on 8-bit bin masses, not densities.
    /// Left out of the resolved TOML when false, so earlier runs keep their ids.
    #[serde(skip_serializing_if = "is_false")]
    pub discretized: bool,
    pub sigma: f64,
    pub latent_dim: usize,
    /// `mlp` or `conv`; left out of the resolved TOML when `mlp`, so earlier runs keep their ids.
    #[serde(skip_serializing_if = "ArchitectureName::is_mlp")]
    pub architecture: ArchitectureName,
    /// Widths of the MLP's hidden layers (architecture = "mlp").
    pub hidden: Vec<usize>,
    /// Channels of the convolutional layers (architecture = "conv"), one stride-2 layer each;
    /// left out of the resolved TOML at its default.
    #[serde(skip_serializing_if = "is_default_channels")]
    pub channels: Vec<usize>,
    pub beta: f64,
    pub kl_warmup_epochs: usize,
    pub free_bits: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub binarize: Binarize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    pub iw_samples: usize,
    pub iw_test_n: usize,
    /// Test images whose ELBO gap an explicit E-step splits (0: skip); left out of the resolved
    /// TOML at its default, so earlier runs keep their ids.
    #[serde(skip_serializing_if = "is_default_gap_test_n")]
    pub gap_test_n: usize,
    /// Adam steps of that E-step; left out at its default.
    #[serde(skip_serializing_if = "is_default_estep_iters")]
    pub estep_iters: usize,
    /// How encoder and decoder updates interleave; left out at `joint`, so earlier runs keep
    /// their ids.
    #[serde(skip_serializing_if = "ScheduleName::is_joint")]
    pub schedule: ScheduleName,
    /// Encoder-only updates per batch of `alternating`; left out at 1.
    #[serde(skip_serializing_if = "is_one")]
    pub e_steps: usize,
    /// Decoder-only updates per batch of `alternating`; left out at 1.
    #[serde(skip_serializing_if = "is_one")]
    pub m_steps: usize,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// The `schedule` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleName {
    /// One update of every weight per batch.
    #[default]
    Joint,
    /// `e_steps` encoder-only then `m_steps` decoder-only updates per batch.
    Alternating,
    /// He et al.'s lagging-inference-network schedule.
    Aggressive,
}

impl ScheduleName {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleName::Joint => "joint",
            ScheduleName::Alternating => "alternating",
            ScheduleName::Aggressive => "aggressive",
        }
    }

    fn is_joint(&self) -> bool {
        *self == ScheduleName::Joint
    }
}

/// Images of the gap split by default (capped by `iw_test_n`).
pub const DEFAULT_GAP_TEST_N: usize = 1000;
/// E-step Adam steps by default (README, "The EM view": where the curve flattens).
pub const DEFAULT_ESTEP_ITERS: usize = 200;

fn is_default_gap_test_n(n: &usize) -> bool {
    *n == DEFAULT_GAP_TEST_N
}

fn is_default_estep_iters(n: &usize) -> bool {
    *n == DEFAULT_ESTEP_ITERS
}

impl Default for RunKeys {
    fn default() -> Self {
        Self {
            name: None,
            dataset: DatasetName::FashionMnist,
            data_dir: None,
            image_column: None,
            label_column: None,
            image_size: None,
            model: ModelKind::Vae,
            likelihood: LikelihoodKind::Bernoulli,
            discretized: false,
            sigma: 0.1,
            latent_dim: 20,
            architecture: ArchitectureName::Mlp,
            hidden: vec![400],
            channels: DEFAULT_CHANNELS.to_vec(),
            beta: 1.0,
            kl_warmup_epochs: 0,
            free_bits: 0.0,
            epochs: 10,
            batch_size: 128,
            lr: 1e-3,
            seed: 0,
            binarize: Binarize::None,
            train_subset: None,
            test_subset: None,
            iw_samples: 1000,
            iw_test_n: 1000,
            gap_test_n: DEFAULT_GAP_TEST_N,
            estep_iters: DEFAULT_ESTEP_ITERS,
            schedule: ScheduleName::Joint,
            e_steps: 1,
            m_steps: 1,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The channels of `../shared/anchors/torch_vae.py --arch conv`: 1×28×28 → 32×14×14 → 64×7×7.
pub const DEFAULT_CHANNELS: [usize; 2] = [32, 64];

fn is_default_channels(c: &[usize]) -> bool {
    c == DEFAULT_CHANNELS
}

/// The `architecture` key: what lies between pixels and latents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchitectureName {
    /// Fully connected layers (`hidden`).
    #[default]
    Mlp,
    /// DCGAN-style 4×4 stride-2 convolutions (`channels`).
    Conv,
}

impl ArchitectureName {
    /// The name as written in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchitectureName::Mlp => "mlp",
            ArchitectureName::Conv => "conv",
        }
    }

    fn is_mlp(&self) -> bool {
        *self == ArchitectureName::Mlp
    }
}

/// A checked run: its name, keys and the file they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub name: String,
    pub keys: RunKeys,
    pub source: PathBuf,
}

/// Reads and checks a run file; nothing is trained when this fails.
pub fn load_run_file(path: &Path) -> Result<RunSpec, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let keys: RunKeys = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: plain_types(e.to_string().trim_end()),
    })?;
    let invalid = |key: &'static str, value: String, allowed: &str| ConfigError::Invalid {
        path: path.into(),
        line: line_of(&text, key),
        key,
        value,
        allowed: allowed.into(),
    };
    let name = match &keys.name {
        None => {
            return Err(invalid(
                "name",
                "(missing)".into(),
                "a run name of letters, digits, `.`, `_` and `-`, e.g. name = \"vae-z20\"",
            ))
        }
        Some(n) => n.clone(),
    };
    if !is_safe_name(&name) {
        return Err(invalid("name", format!("{name:?}"), "letters, digits, `.`, `_` and `-` only (1 to 100 characters, not `.` or `..`), so the run stays inside the results folder"));
    }
    validate(&keys).map_err(|(key, value, allowed)| invalid(key, value, &allowed))?;
    Ok(RunSpec {
        name,
        keys,
        source: path.into(),
    })
}

/// serde names Rust types ("expected usize"); say what a TOML writer should put instead.
pub(crate) fn plain_types(message: &str) -> String {
    message
        .replace("expected usize", "expected an integer ≥ 0")
        .replace("expected u64", "expected an integer ≥ 0")
        .replace("expected f64", "expected a number")
}

/// A name that can only ever be a single folder under the results directory.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks every range; returns (key, value, what is allowed) for the first bad key.
pub fn validate(k: &RunKeys) -> Result<(), (&'static str, String, String)> {
    fn check(
        ok: bool,
        key: &'static str,
        value: impl std::fmt::Display,
        allowed: &str,
    ) -> Result<(), (&'static str, String, String)> {
        if ok {
            Ok(())
        } else {
            Err((key, value.to_string(), allowed.to_string()))
        }
    }
    check(
        (1..=MAX_LATENT).contains(&k.latent_dim),
        "latent_dim",
        k.latent_dim,
        &format!("an integer from 1 to {MAX_LATENT}"),
    )?;
    check(
        k.hidden.len() <= 8 && k.hidden.iter().all(|h| (1..=MAX_HIDDEN).contains(h)),
        "hidden",
        format!("{:?}", k.hidden),
        &format!("a list of at most 8 layer widths, each from 1 to {MAX_HIDDEN}, e.g. [400] or [512, 256]"),
    )?;
    check(
        (1..=5).contains(&k.channels.len()) && k.channels.iter().all(|c| (1..=1024).contains(c)),
        "channels",
        format!("{:?}", k.channels),
        "1 to 5 channel counts from 1 to 1024, one stride-2 layer each (the image sides must be divisible by 2^layers)",
    )?;
    check(
        k.beta.is_finite() && k.beta >= 0.0,
        "beta",
        k.beta,
        "a number ≥ 0 (1 is the plain ELBO)",
    )?;
    check(
        k.sigma.is_finite() && k.sigma > 0.0,
        "sigma",
        k.sigma,
        "a number > 0 (the fixed σ of `gaussian`, the scale of `laplace`)",
    )?;
    check(
        k.free_bits.is_finite() && k.free_bits >= 0.0,
        "free_bits",
        k.free_bits,
        "a number ≥ 0 of nats per latent dimension (0: off)",
    )?;
    check(
        (1..=100_000).contains(&k.epochs),
        "epochs",
        k.epochs,
        "an integer from 1 to 100000",
    )?;
    check(
        (1..=1_000_000).contains(&k.batch_size),
        "batch_size",
        k.batch_size,
        "an integer from 1 to 1000000",
    )?;
    check(k.lr.is_finite() && k.lr > 0.0, "lr", k.lr, "a number > 0")?;
    check(
        k.train_subset.is_none_or(|n| n >= 1),
        "train_subset",
        format!("{:?}", k.train_subset),
        "an integer ≥ 1 (the first N training images), or leave it out",
    )?;
    check(
        k.test_subset.is_none_or(|n| n >= 1),
        "test_subset",
        format!("{:?}", k.test_subset),
        "an integer ≥ 1 (the first N test images), or leave it out",
    )?;
    check(
        (1..=100_000).contains(&k.iw_samples),
        "iw_samples",
        k.iw_samples,
        "an integer from 1 to 100000 (K of the IWAE bound; set iw_test_n = 0 to skip it)",
    )?;
    check(
        k.gap_test_n <= 100_000,
        "gap_test_n",
        k.gap_test_n,
        "an integer from 0 to 100000 (test images whose ELBO gap an E-step splits, at most iw_test_n of them are used; 0 skips it)",
    )?;
    check(
        (1..=100_000).contains(&k.estep_iters),
        "estep_iters",
        k.estep_iters,
        "an integer from 1 to 100000 (Adam steps of the per-image E-step)",
    )?;
    for (key, n) in [("e_steps", k.e_steps), ("m_steps", k.m_steps)] {
        check(
            (1..=1000).contains(&n),
            key,
            n,
            "an integer from 1 to 1000 (updates per batch of schedule = \"alternating\")",
        )?;
        check(
            n == 1 || k.schedule == ScheduleName::Alternating,
            key,
            n,
            &format!(
                "only with schedule = \"alternating\" (here \"{}\"); leave it out",
                k.schedule.as_str()
            ),
        )?;
    }
    check(
        k.schedule == ScheduleName::Joint || k.model == vaelab_vae::ModelKind::Vae,
        "schedule",
        format!("{:?}", k.schedule.as_str()),
        "\"joint\" for model = \"ae\" (the EM schedules split the ELBO's encoder and decoder updates; an AE has no ELBO)",
    )?;
    check(
        !k.discretized || k.likelihood.can_discretize(),
        "discretized",
        k.discretized,
        &format!(
            "true only with likelihood = \"gaussian\", \"gaussian-learned\" or \"laplace\" (here \"{}\"; \"discretized-logistic\" always is)",
            k.likelihood.as_str()
        ),
    )?;
    let on_masses = k.discretized || k.likelihood == LikelihoodKind::DiscretizedLogistic;
    check(
        !on_masses || k.binarize == Binarize::None,
        "binarize",
        binarize_str(k.binarize),
        "\"none\" for a likelihood trained on 8-bit masses (discretized); binarized pixels have 2 levels: use bernoulli",
    )?;
    let hub = matches!(k.dataset, DatasetName::Hub(_));
    for (key, set) in [
        ("image_column", k.image_column.is_some()),
        ("label_column", k.label_column.is_some()),
        ("image_size", k.image_size.is_some()),
    ] {
        check(
            hub || !set,
            key,
            "(set)",
            &format!(
                "only with dataset = \"hub:<owner>/<name>\" (here \"{}\"); leave it out",
                k.dataset
            ),
        )?;
    }
    check(
        k.image_size.is_none_or(|s| (4..=1024).contains(&s)),
        "image_size",
        format!("{:?}", k.image_size),
        "an integer from 4 to 1024 (the side every image is resized and centre-cropped to), or leave it out",
    )?;
    check(
        k.dataset != DatasetName::Idx || k.data_dir.is_some(),
        "data_dir",
        "(missing)",
        "dataset = \"idx\" needs data_dir = \"<folder of IDX files>\"",
    )?;
    Ok(())
}

/// The 1-based line where `key = …` is set, for error messages.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

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

    /// Whether `key` means anything for this run: the AE has no KL, no IWAE bound and no gap
    /// split, only `gaussian` and `laplace` read `sigma`, only the families that can be trained
    /// on masses read `discretized`, the MLP reads `hidden` and the conv net `channels`, only
    /// `hub:` datasets read the image keys and only `alternating` the step counts. The one
    /// source of truth: `sweep_file::canonical` resets the others to their defaults.
    pub fn uses(&self, key: &str) -> bool {
        match key {
            "beta" | "kl_warmup_epochs" | "free_bits" | "iw_samples" | "iw_test_n"
            | "gap_test_n" | "estep_iters" => self.model == vaelab_vae::ModelKind::Vae,
            "e_steps" | "m_steps" => self.schedule == ScheduleName::Alternating,
            "sigma" => self.likelihood.uses_sigma(),
            "discretized" => self.likelihood.can_discretize(),
            "hidden" => self.architecture == ArchitectureName::Mlp,
            "channels" => self.architecture == ArchitectureName::Conv,
            "image_column" | "label_column" | "image_size" => {
                matches!(self.dataset, DatasetName::Hub(_))
            }
            _ => true,
        }
    }

    /// The resolved keys as TOML (defaults included, `name` first when set).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }

    /// A short hash of the resolved keys without `name`: same config and seed → same id.
    pub fn run_id(&self) -> String {
        let canonical = RunKeys {
            name: None,
            ..self.clone()
        }
        .to_toml();
        Sha256::digest(canonical.as_bytes())[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Every key as a typed table cell (absent optional keys as nulls).
    pub fn cells(&self) -> Vec<(String, Cell)> {
        let int = |v: usize| Cell::Int(Some(v as i64));
        let opt_int = |v: Option<usize>| Cell::Int(v.map(|v| v as i64));
        let float = |v: f64| Cell::Float(Some(v));
        let text = |v: &str| Cell::Str(Some(v.to_string()));
        let list = |v: &[usize]| {
            v.iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        [
            ("name", Cell::Str(self.name.clone())),
            ("dataset", text(&self.dataset.to_string())),
            (
                "data_dir",
                Cell::Str(self.data_dir.as_ref().map(|p| p.display().to_string())),
            ),
            ("image_column", Cell::Str(self.image_column.clone())),
            ("label_column", Cell::Str(self.label_column.clone())),
            ("image_size", opt_int(self.image_size)),
            ("model", text(self.model.as_str())),
            ("likelihood", text(self.likelihood.as_str())),
            (
                "discretized",
                text(if self.discretized { "true" } else { "false" }),
            ),
            ("sigma", float(self.sigma)),
            ("latent_dim", int(self.latent_dim)),
            ("architecture", text(self.architecture.as_str())),
            ("hidden", Cell::Str(Some(list(&self.hidden)))),
            ("channels", Cell::Str(Some(list(&self.channels)))),
            ("beta", float(self.beta)),
            ("kl_warmup_epochs", int(self.kl_warmup_epochs)),
            ("free_bits", float(self.free_bits)),
            ("epochs", int(self.epochs)),
            ("batch_size", int(self.batch_size)),
            ("lr", float(self.lr)),
            ("seed", Cell::Int(Some(self.seed as i64))),
            ("binarize", text(binarize_str(self.binarize))),
            ("train_subset", opt_int(self.train_subset)),
            ("test_subset", opt_int(self.test_subset)),
            ("iw_samples", int(self.iw_samples)),
            ("iw_test_n", int(self.iw_test_n)),
            ("gap_test_n", int(self.gap_test_n)),
            ("estep_iters", int(self.estep_iters)),
            ("schedule", text(self.schedule.as_str())),
            ("e_steps", int(self.e_steps)),
            ("m_steps", int(self.m_steps)),
        ]
        .into_iter()
        // A key that means nothing for this run (the AE's β) is null, not its reset default.
        .map(|(k, v)| (k.to_string(), if self.uses(k) { v } else { v.null() }))
        .collect()
    }
}

fn binarize_str(b: Binarize) -> &'static str {
    match b {
        Binarize::None => "none",
        Binarize::Static => "static",
        Binarize::Dynamic => "dynamic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RunSpec, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.toml");
        std::fs::write(&p, text).unwrap();
        load_run_file(&p)
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_fill_missing_keys() {
        let spec = load("name = \"a\"\n").unwrap();
        assert_eq!(
            spec.keys,
            RunKeys {
                name: Some("a".into()),
                ..RunKeys::default()
            }
        );
    }

    #[test]
    fn unknown_key_names_the_key_and_the_allowed_ones() {
        let e = err("name = \"a\"\nlatent_dimm = 3\n");
        assert!(
            e.contains("run.toml") && e.contains("latent_dimm") && e.contains("latent_dim"),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("name = \"a\"\nepochs = \"ten\"\n");
        assert!(
            e.contains("run.toml") && e.contains("epochs") && e.contains("integer"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_values_say_what_is_allowed() {
        for (line, key) in [
            ("latent_dim = 0", "latent_dim"),
            ("latent_dim = 5000", "latent_dim"),
            ("beta = -1.0", "beta"),
            ("lr = 0", "lr"),
            ("batch_size = 0", "batch_size"),
            ("epochs = 0", "epochs"),
            ("sigma = 0.0", "sigma"),
            ("iw_samples = 0", "iw_samples"),
            ("hidden = [0]", "hidden"),
        ] {
            let e = err(&format!("name = \"a\"\n{line}\n"));
            assert!(
                e.contains(&format!("run.toml:2: key `{key}`")) && e.contains("allowed"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_likelihood_lists_the_families() {
        let e = err("name = \"a\"\nlikelihood = \"poisson\"\n");
        assert!(
            e.contains("poisson") && e.contains("continuous-bernoulli"),
            "{e}"
        );
        let e = err("name = \"a\"\ndataset = \"cifar\"\n");
        assert!(e.contains("cifar") && e.contains("fashion-mnist"), "{e}");
        let e = err("name = \"a\"\nmodel = \"gan\"\n");
        assert!(e.contains("gan") && e.contains("vae"), "{e}");
    }

    #[test]
    fn names_cannot_escape_the_results_folder() {
        for bad in ["../x", "/tmp/x", "a/b", "..", ""] {
            let e = err(&format!("name = {bad:?}\n"));
            assert!(e.contains("key `name`"), "{bad}: {e}");
        }
        assert!(err("latent_dim = 3\n").contains("key `name`"));
    }

    #[test]
    fn malformed_toml_and_duplicates_are_parse_errors() {
        assert!(err("name = \"a\nx").contains("run.toml"));
        let e = err("name = \"a\"\nbeta = 1.0\nbeta = 2.0\n");
        assert!(e.contains("beta") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn run_id_ignores_name_and_follows_every_key() {
        let a = RunKeys {
            name: Some("a".into()),
            ..RunKeys::default()
        };
        let b = RunKeys {
            name: Some("b".into()),
            ..RunKeys::default()
        };
        assert_eq!(a.run_id(), b.run_id());
        assert_eq!(a.run_id().len(), 12);
        let c = RunKeys {
            seed: 1,
            ..a.clone()
        };
        assert_ne!(a.run_id(), c.run_id());
    }

    #[test]
    fn run_keys_lists_every_field() {
        let all = RunKeys {
            name: Some("n".into()),
            data_dir: Some("/d".into()),
            image_column: Some("img".into()),
            label_column: Some("label".into()),
            image_size: Some(32),
            gap_test_n: 7,
            estep_iters: 7,
            schedule: ScheduleName::Alternating,
            e_steps: 2,
            m_steps: 3,
            train_subset: Some(1),
            test_subset: Some(1),
            discretized: true,
            architecture: ArchitectureName::Conv,
            channels: vec![16],
            ..RunKeys::default()
        };
        let table = toml::Table::try_from(&all).unwrap();
        let fields: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut listed = RUN_KEYS.to_vec();
        listed.sort();
        assert_eq!(fields, listed);
    }

    /// The keys added for the conv net are left out at their defaults: an MLP run keeps the id
    /// it had before they existed.
    #[test]
    fn mlp_runs_keep_their_ids() {
        let mlp = RunKeys::default();
        assert!(!mlp.to_toml().contains("architecture") && !mlp.to_toml().contains("channels"));
        let conv = RunKeys {
            architecture: ArchitectureName::Conv,
            ..RunKeys::default()
        };
        assert!(conv.to_toml().contains("architecture = \"conv\""));
        assert_ne!(mlp.run_id(), conv.run_id());
    }

    #[test]
    fn hub_datasets_and_their_keys_are_checked() {
        let spec =
            load("name = \"a\"\ndataset = \"hub:uoft-cs/cifar10\"\nimage_size = 32\n").unwrap();
        assert_eq!(spec.keys.dataset.to_string(), "hub:uoft-cs/cifar10");
        let back: RunKeys = toml::from_str(&spec.keys.to_toml()).unwrap();
        assert_eq!(back, spec.keys);
        let e = err("name = \"a\"\ndataset = \"cifar10\"\n");
        assert!(
            e.contains("cifar10") && e.contains("hub:<owner>/<name>"),
            "{e}"
        );
        let e = err("name = \"a\"\nimage_column = \"img\"\n");
        assert!(
            e.contains(":2") && e.contains("image_column") && e.contains("hub:"),
            "{e}"
        );
        let e = err("name = \"a\"\ndataset = \"hub:a/b\"\nimage_size = 2\n");
        assert!(e.contains("image_size") && e.contains("4 to 1024"), "{e}");
        // The new keys stay out of earlier runs' resolved TOML, so their ids hold.
        let plain = RunKeys::default().to_toml();
        assert!(plain.contains("dataset = \"fashion-mnist\"") && !plain.contains("image_"));
    }

    #[test]
    fn schedule_keys_are_checked() {
        let spec = load("name = \"a\"\nschedule = \"alternating\"\ne_steps = 3\n").unwrap();
        assert_eq!(
            spec.keys.train_config().schedule,
            Schedule::Alternating {
                e_steps: 3,
                m_steps: 1
            }
        );
        let e = err("name = \"a\"\ne_steps = 2\n");
        assert!(
            e.contains(":2") && e.contains("e_steps") && e.contains("alternating"),
            "{e}"
        );
        let e = err("name = \"a\"\nschedule = \"alternating\"\nm_steps = 0\n");
        assert!(e.contains("m_steps") && e.contains("1 to 1000"), "{e}");
        let e = err("name = \"a\"\nmodel = \"ae\"\nschedule = \"aggressive\"\n");
        assert!(
            e.contains("schedule") && e.contains("\"joint\" for model = \"ae\""),
            "{e}"
        );
        let e = err("name = \"a\"\nschedule = \"lagging\"\n");
        assert!(e.contains("schedule") && e.contains("aggressive"), "{e}");
        // Joint runs keep the ids they had before the schedules existed.
        assert!(!RunKeys::default().to_toml().contains("schedule"));
    }

    #[test]
    fn resolved_toml_reads_back_identically() {
        let k = RunKeys {
            name: Some("x".into()),
            train_subset: Some(100),
            hidden: vec![64, 32],
            ..RunKeys::default()
        };
        let back: RunKeys = toml::from_str(&k.to_toml()).unwrap();
        assert_eq!(back, k);
    }
}
