//! A finished sweep as the report sees it: one row per run from `runs.parquet`, every epoch
//! from `metrics.parquet`, and which config keys the sweep varies.

use crate::ReportError;
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use vaelab_track::{MetricsRow, SUMMARY_METRICS};

/// A config value: numbers compare numerically, the rest as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(f64),
    Text(String),
    Null,
}

impl Value {
    /// As written in labels: integers without a decimal point, floats in short form.
    pub fn label(&self) -> String {
        match self {
            Value::Num(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", *v as i64),
            Value::Num(v) => format!("{v}"),
            Value::Text(s) => s.clone(),
            Value::Null => "-".into(),
        }
    }

    /// Orders numbers numerically before text.
    fn sort_key(&self) -> (u8, f64, String) {
        match self {
            Value::Num(v) => (0, *v, String::new()),
            Value::Text(s) => (1, 0.0, s.clone()),
            Value::Null => (2, 0.0, String::new()),
        }
    }
}

/// One run's row: its id, status, config and final metrics.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub config: BTreeMap<String, Value>,
    /// Non-null final metrics by column name.
    pub metrics: BTreeMap<String, f64>,
}

impl Run {
    /// A config value (`Null` when the key is absent).
    pub fn key(&self, key: &str) -> &Value {
        self.config.get(key).unwrap_or(&Value::Null)
    }

    /// A final metric, if the run has it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }

    /// Whether this is a VAE run (the AE has no KL, ELBO or IWAE).
    pub fn is_vae(&self) -> bool {
        self.key("model").label() == "vae"
    }

    /// Whether `key` means anything for this run: the tables hold null where it does not
    /// (the AE's β, warm-up, free bits and IWAE keys; `sigma` of a Bernoulli run).
    pub fn uses(&self, key: &str) -> bool {
        *self.key(key) != Value::Null
    }

    /// Whether the run finished.
    pub fn is_done(&self) -> bool {
        self.status == "done"
    }

    /// A finished run with these config values and final metrics, for tests of the figures.
    #[cfg(test)]
    pub fn done_with(id: &str, config: Vec<(&str, Value)>, metrics: Vec<(&str, f64)>) -> Run {
        Run {
            id: id.into(),
            status: "done".into(),
            config: config
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            metrics: metrics
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// A sweep's tables.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub name: String,
    pub runs: Vec<Run>,
    pub epochs: Vec<MetricsRow>,
    /// Config keys with more than one value across runs, seed excluded, in table order.
    pub varying: Vec<String>,
    /// Each run's E-step curve (`runs/<id>/estep.parquet`), where it has one.
    pub estep: BTreeMap<String, Vec<f64>>,
}

impl Sweep {
    /// Reads `runs.parquet` and (when present) `metrics.parquet` of a sweep folder.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let runs_path = dir.join("runs.parquet");
        let df = vaelab_track::read_frame(&runs_path)?;
        let mut runs = runs_of(&df, &runs_path)?;
        name_layers(&mut runs);
        let metrics_path = dir.join("metrics.parquet");
        let epochs = if metrics_path.exists() {
            vaelab_track::read_metrics(&metrics_path)?
        } else {
            Vec::new()
        };
        let keys: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|c| c.to_string())
            .filter(|c| is_config_key(c))
            .collect();
        let varying = keys
            .into_iter()
            .filter(|k| k != "seed" && distinct(&runs, k).len() > 1)
            .collect();
        let name = dir
            .file_name()
            .map_or("sweep".into(), |n| n.to_string_lossy().into_owned());
        let estep = runs
            .iter()
            .filter_map(|r| {
                let path = dir.join("runs").join(&r.id).join(vaelab_track::ESTEP);
                let df = vaelab_track::read_frame(&path).ok()?;
                let elbo = df
                    .column("elbo")
                    .ok()?
                    .f64()
                    .ok()?
                    .iter()
                    .flatten()
                    .collect();
                Some((r.id.clone(), elbo))
            })
            .collect();
        Ok(Self {
            name,
            runs,
            epochs,
            varying,
            estep,
        })
    }

    /// Finished runs.
    pub fn done(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.is_done())
    }

    /// The distinct values of `key` over all runs, sorted.
    pub fn values(&self, key: &str) -> Vec<Value> {
        distinct(&self.runs, key)
    }

    /// How a run differs from the others: `key=value` for every varying key but `skip`.
    pub fn label(&self, run: &Run, skip: &[&str]) -> String {
        let parts: Vec<String> = self
            .varying
            .iter()
            .filter(|k| !skip.contains(&k.as_str()) && run.uses(k))
            .map(|k| format!("{k}={}", run.key(k).label()))
            .collect();
        if parts.is_empty() {
            self.name.clone()
        } else {
            parts.join(", ")
        }
    }

    /// Runs in reading order: by the numeric swept keys (numerically), then the other swept
    /// keys, then the seed, so that e.g. the VAE and AE of one latent size sit together.
    pub fn ordered<'a>(&self, runs: impl Iterator<Item = &'a Run>) -> Vec<&'a Run> {
        let numeric = self.numeric_varying();
        let keys: Vec<&str> = numeric
            .iter()
            .copied()
            .chain(
                self.varying
                    .iter()
                    .map(String::as_str)
                    .filter(|k| !numeric.contains(k)),
            )
            .chain(["seed"])
            .collect();
        let mut keyed: Vec<(Vec<Value>, &Run)> = runs
            .map(|r| (keys.iter().map(|k| r.key(k).clone()).collect(), r))
            .collect();
        keyed.sort_by(|a, b| compare_values(&a.0, &b.0));
        keyed.into_iter().map(|(_, r)| r).collect()
    }

    /// The varying keys, comma-separated, as a legend title ("seed" when nothing else varies).
    pub fn label_keys(&self) -> String {
        if self.varying.is_empty() {
            "seed".into()
        } else {
            self.varying.join(", ")
        }
    }

    /// The varying keys whose values are all numbers (axes), in table order.
    pub fn numeric_varying(&self) -> Vec<&str> {
        self.varying
            .iter()
            .filter(|k| self.values(k).iter().all(|v| matches!(v, Value::Num(_))))
            .map(String::as_str)
            .collect()
    }

    /// Per-epoch rows of one run and split, in epoch order.
    pub fn curve(&self, run_id: &str, split: &str) -> Vec<&MetricsRow> {
        let mut rows: Vec<&MetricsRow> = self
            .epochs
            .iter()
            .filter(|r| r.run_id == run_id && r.split == split)
            .collect();
        rows.sort_by_key(|r| r.epoch);
        rows
    }
}

/// Orders lists of values element by element, numbers numerically.
pub fn compare_values(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = x
            .sort_key()
            .partial_cmp(&y.sort_key())
            .unwrap_or(std::cmp::Ordering::Equal);
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn is_config_key(column: &str) -> bool {
    !SUMMARY_METRICS.contains(&column) && column != "run_id" && column != "status"
}

/// The non-null values of `key`, sorted. Nulls are keys that mean nothing for a run (or an
/// optional key left unset), so they never make a key "vary".
fn distinct(runs: &[Run], key: &str) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    for r in runs {
        let v = r.key(key);
        if *v != Value::Null && !seen.contains(v) {
            seen.push(v.clone());
        }
    }
    seen.sort_by(|a, b| compare_values(std::slice::from_ref(a), std::slice::from_ref(b)));
    seen
}

/// Every cell of a column as a [`Value`].
fn values_of(column: &Column) -> PolarsResult<Vec<Value>> {
    let s = column.as_materialized_series();
    if s.dtype().is_primitive_numeric() {
        let f = s.cast(&DataType::Float64)?;
        Ok(f.f64()?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Num))
            .collect())
    } else if s.dtype() == &DataType::String {
        Ok(s.str()?
            .iter()
            .map(|v| v.map_or(Value::Null, |t| Value::Text(t.to_string())))
            .collect())
    } else {
        Ok(vec![Value::Null; s.len()])
    }
}

/// In a sweep that mixes depths, a one-layer run's `latent_layers` (empty, or absent from files
/// written before the key) reads as its `latent_dim`, so the figures tell "50" from "100,50";
/// a sweep of one-layer runs alone is left as it is (its layers never vary beside latent_dim).
fn name_layers(runs: &mut [Run]) {
    let deep = |r: &Run| matches!(r.key("latent_layers"), Value::Text(t) if t.contains(','));
    if !runs.iter().any(deep) {
        return;
    }
    for r in runs.iter_mut() {
        let one_layer = match r.key("latent_layers") {
            Value::Null => true,
            Value::Text(t) => t.is_empty(),
            Value::Num(_) => false,
        };
        if let (true, Value::Num(d)) = (one_layer, r.key("latent_dim").clone()) {
            r.config
                .insert("latent_layers".into(), Value::Text(format!("{d}")));
        }
    }
}

fn runs_of(df: &DataFrame, path: &Path) -> Result<Vec<Run>, ReportError> {
    let polars_err = |source| ReportError::Polars {
        path: path.into(),
        source,
    };
    let text = |name: &str| -> Result<Vec<Value>, ReportError> {
        let c = df.column(name).map_err(|_| ReportError::Table {
            path: path.into(),
            reason: format!("no column `{name}`"),
        })?;
        values_of(c).map_err(polars_err)
    };
    let (ids, status) = (text("run_id")?, text("status")?);
    let mut runs: Vec<Run> = (0..df.height())
        .map(|i| Run {
            id: ids[i].label(),
            status: status[i].label(),
            config: BTreeMap::new(),
            metrics: BTreeMap::new(),
        })
        .collect();
    let metric_set: BTreeSet<&str> = SUMMARY_METRICS.iter().copied().collect();
    for column in df.columns() {
        let name = column.name().to_string();
        if name == "run_id" || name == "status" {
            continue;
        }
        let values = values_of(column).map_err(polars_err)?;
        for (run, v) in runs.iter_mut().zip(values) {
            if metric_set.contains(name.as_str()) {
                if let Value::Num(x) = v {
                    if x.is_finite() {
                        run.metrics.insert(name.clone(), x);
                    }
                }
            } else {
                run.config.insert(name.clone(), v);
            }
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, latent_dim: Value, layers: Value) -> Run {
        Run::done_with(
            id,
            vec![("latent_dim", latent_dim), ("latent_layers", layers)],
            vec![],
        )
    }

    /// One- and two-layer runs side by side read "50" and "100,50" (an older file's null and a
    /// new file's empty list alike); one-layer runs alone keep their empty layers.
    #[test]
    fn a_sweep_mixing_depths_names_every_runs_layers() {
        let mut mixed = vec![
            run("old", Value::Num(50.0), Value::Null),
            run("new", Value::Num(50.0), Value::Text(String::new())),
            run("two", Value::Null, Value::Text("100,50".into())),
        ];
        name_layers(&mut mixed);
        let layers: Vec<String> = mixed
            .iter()
            .map(|r| r.key("latent_layers").label())
            .collect();
        assert_eq!(layers, ["50", "50", "100,50"]);
        let mut flat = vec![
            run("a", Value::Num(2.0), Value::Text(String::new())),
            run("b", Value::Num(5.0), Value::Text(String::new())),
        ];
        name_layers(&mut flat);
        assert_eq!(
            distinct(&flat, "latent_layers"),
            [Value::Text(String::new())]
        );
    }
}
