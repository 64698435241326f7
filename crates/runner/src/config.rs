//! Run files: TOML with `name` and the run keys at the top level, every key with a default.
//! The keys themselves are defined in [`crate::keys`].

use std::path::{Path, PathBuf};

pub use crate::keys::{validate, RunKeys, RUN_KEYS};

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

/// The 1-based line where `key = …` is set, for error messages.
pub(crate) fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaelab_vae::Schedule;

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

    /// The keys added for the conv net are left out at their defaults: an MLP run keeps the id
    /// it had before they existed.
    #[test]
    fn mlp_runs_keep_their_ids() {
        let mlp = RunKeys::default();
        assert!(!mlp.to_toml().contains("architecture") && !mlp.to_toml().contains("channels"));
        let conv = RunKeys {
            architecture: vaelab_vae::BodyKind::Conv,
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
