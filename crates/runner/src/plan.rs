//! The expanded runs of a sweep.

use crate::config::RunKeys;
use std::path::PathBuf;
use vaelab_track::Cell;

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
    /// Lines to show with the plan: what a `[search]` drew, and its warnings.
    pub notes: Vec<String>,
    /// The `[early_stop]` table, when the file has one.
    pub early_stop: Option<crate::early_stop::EarlyStop>,
}

impl Plan {
    /// Keys whose value differs between runs, in the order of the run keys.
    pub fn varying(&self) -> Vec<&'static str> {
        let cells: Vec<Vec<(String, Cell)>> = self.runs.iter().map(|r| r.keys.cells()).collect();
        crate::config::RUN_KEYS
            .iter()
            .copied()
            .filter(|k| {
                // Only among the runs the key means something for (not the AE's β).
                let mut values = self
                    .runs
                    .iter()
                    .zip(&cells)
                    .filter(|(r, _)| r.keys.uses(k))
                    .map(|(_, c)| c.iter().find(|(name, _)| name == k).map(|(_, v)| v));
                match values.next() {
                    Some(first) => values.any(|v| v != first),
                    None => false,
                }
            })
            .collect()
    }

    /// The value of `key` in run `i`, as text ("-" where the key means nothing for the run).
    /// Read from the typed cells, so keys left out of the resolved TOML at their defaults (to
    /// keep earlier ids) show their value too.
    pub fn value(&self, i: usize, key: &str) -> String {
        let cells = self.runs[i].keys.cells();
        match cells
            .into_iter()
            .find(|(name, _)| name == key)
            .map(|(_, c)| c)
        {
            // An empty list (a one-layer run's `latent_layers`) reads as nothing set.
            Some(Cell::Str(Some(s))) if s.is_empty() => "-".into(),
            Some(Cell::Str(Some(s))) => s,
            Some(Cell::Int(Some(v))) => v.to_string(),
            // As TOML writes floats: 1.0, 0.5, 0.001.
            Some(Cell::Float(Some(v))) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.1}"),
            Some(Cell::Float(Some(v))) => v.to_string(),
            _ => "-".into(),
        }
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

    /// How many runs, and what was merged or excluded; then the notes, a line each.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "sweep {}: {} runs ({} identical runs merged, {} combinations excluded)",
            self.name,
            self.runs.len(),
            self.merged,
            self.excluded
        );
        for note in &self.notes {
            text.push('\n');
            text.push_str(note);
        }
        text
    }
}
