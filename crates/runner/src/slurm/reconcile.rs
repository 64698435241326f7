//! Runs whose Slurm task ended without finishing them are marked `failed`, with Slurm's reason,
//! so the manifests (the record of what each run did) and the tables say what happened.

use super::{last_line, latest_tasks, Submission};
use crate::manifest::{Manifest, Provenance, SlurmTask, Status};
use crate::plan::Plan;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vaelab_slurm::commands::Live;
use vaelab_slurm::TaskId;
use vaelab_track::{self as track, RunDir};

/// Why task `task` ended without a finished run, from squeue and the task's stderr.
fn reason(task: TaskId, live: Option<&Live>, sub: &Submission) -> String {
    let ended = match live {
        Some(l) if l.reason.is_empty() || l.reason == "None" => {
            format!("Slurm task {task} ended {}", l.state)
        }
        Some(l) => format!("Slurm task {task} ended {} ({})", l.state, l.reason),
        None => format!("Slurm no longer lists task {task}"),
    };
    let log = sub.log(task.index, "err");
    match last_line(&log) {
        Some(line) => format!(
            "{ended} before the run finished; last line of {}: {line}",
            log.display()
        ),
        None => format!("{ended} before the run finished"),
    }
}

/// The run's lock, waiting up to `patience` for its holder to let go.
fn lock_within(path: &Path, patience: Duration) -> anyhow::Result<Option<track::Lock>> {
    let until = Instant::now() + patience;
    loop {
        if let Some(lock) = track::Lock::try_acquire(path)? {
            return Ok(Some(lock));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `m` already records how the run ended in `task`.
fn settled_in(m: &Manifest, task: TaskId) -> bool {
    match m.status {
        Status::Done | Status::Pruned => true,
        Status::Failed | Status::Diverged => m.slurm.as_ref().is_some_and(|s| {
            s.array_job_id.as_deref() == Some(&task.job.to_string())
                && s.array_task_id.as_deref() == Some(&task.index.to_string())
        }),
        Status::Running | Status::Interrupted => false,
    }
}

/// Marks every run of `plan` whose latest task has ended (per `live`, squeue's view; a task it
/// no longer lists has ended) without a finished run. Returns the ids marked.
pub fn mark_ended_runs(
    plan: &Plan,
    sweep_dir: &Path,
    subs: &[Submission],
    live: &HashMap<TaskId, Live>,
) -> anyhow::Result<Vec<String>> {
    let latest = latest_tasks(subs);
    let provenance = Provenance::detect();
    let mut marked = Vec::new();
    for run in &plan.runs {
        let Some(&(task, sub)) = latest.get(&run.id) else {
            continue;
        };
        let state = live.get(&task);
        if state.is_some_and(|l| !l.state.has_ended()) {
            continue;
        }
        let dir = RunDir::create(&sweep_dir.join("runs"), &run.id)?;
        // The task has ended, but its process may still be writing its last words (Slurm
        // gives it KillWait, 30 s by default); one that holds the run longer is someone else.
        let Some(_lock) = lock_within(&dir.file(track::LOCK), Duration::from_secs(45))? else {
            continue;
        };
        let path = dir.file(track::MANIFEST);
        let previous = super::manifest_of(sweep_dir, &run.id);
        if previous.as_ref().is_some_and(|m| settled_in(m, task)) {
            continue;
        }
        let mut m = previous.unwrap_or_else(|| Manifest::new(&run.id, &run.keys, &provenance));
        m.status = Status::Failed;
        m.error = Some(reason(task, state, sub));
        m.ended_at = Some(crate::manifest::now());
        // Keep what the task itself recorded when it got as far as starting the run.
        let own = m
            .slurm
            .take()
            .filter(|s| s.array_job_id.as_deref() == Some(&task.job.to_string()));
        m.slurm = Some(SlurmTask {
            job_id: own
                .as_ref()
                .map_or_else(|| task.to_string(), |s| s.job_id.clone()),
            array_job_id: Some(task.job.to_string()),
            array_task_id: Some(task.index.to_string()),
            restart_count: own.as_ref().map_or(0, |s| s.restart_count),
            node: own.and_then(|s| s.node),
        });
        m.write(&path)?;
        marked.push(run.id.clone());
    }
    Ok(marked)
}
