//! The expanded runs of a sweep.

use crate::config::RunKeys;
use std::path::PathBuf;
use toml::Value;

/// One run of a sweep: its id (a hash of its resolved keys) and the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    pub id: String,
    pub keys: RunKeys,
}

/// What a sweep file expands to.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// Runs trained at once, if the file says.
    pub jobs: Option<usize>,
    pub runs: Vec<PlannedRun>,
    /// Runs dropped because an identical run was already planned (e.g. an AE under several β).
    pub merged: usize,
    /// Grid combinations dropped by `[[exclude]]`.
    pub excluded: usize,
    pub source: PathBuf,
    /// The `[slurm]` table (all defaults when the file has none).
    pub slurm: vaelab_slurm::Settings,
}

fn show(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| show(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

impl Plan {
    /// Keys whose value differs between runs, in the order of the run keys.
    pub fn varying(&self) -> Vec<&'static str> {
        let tables: Vec<(toml::Table, &PlannedRun)> = self
            .runs
            .iter()
            .map(|r| (toml::Table::try_from(&r.keys).unwrap_or_default(), r))
            .collect();
        crate::config::RUN_KEYS
            .iter()
            .copied()
            .filter(|k| {
                // Only among the runs the key means something for (not the AE's β).
                let mut values = tables
                    .iter()
                    .filter(|(_, r)| r.keys.uses(k))
                    .map(|(t, _)| t.get(*k));
                match values.next() {
                    Some(first) => values.any(|v| v != first),
                    None => false,
                }
            })
            .collect()
    }

    /// The value of `key` in run `i`, as text ("-" where the key means nothing for the run).
    pub fn value(&self, i: usize, key: &str) -> String {
        let keys = &self.runs[i].keys;
        if !keys.uses(key) {
            return "-".into();
        }
        // Keys left out of the resolved TOML at their defaults (to keep earlier ids) still apply.
        match key {
            "discretized" => return keys.discretized.to_string(),
            "architecture" => return keys.architecture.as_str().to_string(),
            "channels" => return show(toml::Value::try_from(&keys.channels).ok().as_ref()),
            "gap_test_n" => return keys.gap_test_n.to_string(),
            "estep_iters" => return keys.estep_iters.to_string(),
            "schedule" => return keys.schedule.as_str().to_string(),
            "e_steps" => return keys.e_steps.to_string(),
            "m_steps" => return keys.m_steps.to_string(),
            _ => {}
        }
        show(toml::Table::try_from(keys).unwrap_or_default().get(key))
    }

    /// The plan as a text table: id and the varying keys.
    pub fn table(&self) -> String {
        let keys = self.varying();
        let mut rows = vec![std::iter::once("id".to_string())
            .chain(keys.iter().map(|k| k.to_string()))
            .collect::<Vec<_>>()];
        for (i, run) in self.runs.iter().enumerate() {
            rows.push(
                std::iter::once(run.id.clone())
                    .chain(keys.iter().map(|k| self.value(i, k)))
                    .collect(),
            );
        }
        crate::inspect::text_table(&rows)
    }

    /// One line: how many runs, and what was merged or excluded.
    pub fn summary(&self) -> String {
        format!(
            "sweep {}: {} runs ({} identical runs merged, {} combinations excluded)",
            self.name,
            self.runs.len(),
            self.merged,
            self.excluded
        )
    }
}
