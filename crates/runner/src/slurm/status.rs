//! `vaelab status DIR`: each run's state from its manifest, next to its Slurm task's.

use super::{latest_tasks, submissions};
use crate::output::print;
use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use vaelab_slurm::Cluster;

/// Prints one line per planned run: its status and epochs, its task and Slurm's state.
pub fn status(sweep_dir: &Path) -> anyhow::Result<()> {
    let file = sweep_dir.join(super::SWEEP_COPY);
    if !file.exists() {
        anyhow::bail!(
            "{}: no sweep.toml here; give a sweep folder such as results/<sweep name>",
            sweep_dir.display()
        );
    }
    let plan = crate::sweep_file::load_sweep_file(&file).context("the sweep folder's copy")?;
    let subs = submissions(sweep_dir);
    let latest = latest_tasks(&subs);
    // Without submissions there is nothing to ask Slurm (and a local sweep needs no Slurm).
    let (live, note) = if subs.is_empty() {
        (HashMap::new(), None)
    } else {
        match Cluster::detect().and_then(|c| c.states(&super::jobs(&subs))) {
            Ok(live) => (live, None),
            Err(e) => (
                HashMap::new(),
                Some(format!("Slurm's states unavailable: {e}")),
            ),
        }
    };
    let varying = plan.varying();
    let mut rows = vec![["run_id", "status", "epochs"]
        .iter()
        .map(|s| s.to_string())
        .chain(varying.iter().map(|k| k.to_string()))
        .chain(["task".to_string(), "slurm".to_string()])
        .collect::<Vec<_>>()];
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for (i, run) in plan.runs.iter().enumerate() {
        let m = super::manifest_of(sweep_dir, &run.id);
        let status = m.as_ref().map_or("pending", |m| m.status.as_str());
        *totals.entry(status.to_string()).or_default() += 1;
        let epochs = m.as_ref().map_or(format!("0/{}", run.keys.epochs), |m| {
            format!("{}/{}", m.epochs_done, m.epochs)
        });
        let (task, slurm) = match latest.get(&run.id) {
            None => ("-".to_string(), "-".to_string()),
            Some((task, _)) => {
                let state = match live.get(task) {
                    Some(l) if l.reason.is_empty() || l.reason == "None" => l.state.to_string(),
                    Some(l) => format!("{} ({})", l.state, l.reason),
                    None if note.is_some() => "?".into(),
                    None => "ended (no longer listed)".into(),
                };
                (task.to_string(), state)
            }
        };
        rows.push(
            [run.id.clone(), status.to_string(), epochs]
                .into_iter()
                .chain(varying.iter().map(|k| plan.value(i, k)))
                .chain([task, slurm])
                .collect(),
        );
    }
    let totals: Vec<String> = totals.iter().map(|(s, n)| format!("{n} {s}")).collect();
    print(format_args!(
        "{}{}: {} runs: {}\n",
        crate::inspect::text_table(&rows),
        plan.name,
        plan.runs.len(),
        totals.join(", ")
    ))?;
    if let Some(note) = note {
        print(format_args!("{note}\n"))?;
    }
    Ok(())
}
