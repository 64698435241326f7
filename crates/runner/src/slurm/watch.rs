//! Waiting for submitted tasks: progress read from the run manifests and squeue, until every
//! watched task has ended or Ctrl-C detaches (the jobs belong to the cluster, not the terminal).

use crate::dispatch::Reporter;
use crate::manifest::Status;
use crate::plan::Plan;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vaelab_slurm::commands::Live;
use vaelab_slurm::{Cluster, TaskId};

/// A run being trained by a task.
#[derive(Debug, Clone, Copy)]
pub struct Watched {
    /// Index into the plan's runs.
    pub run: usize,
    pub task: TaskId,
}

/// The distinct array jobs of `watched`, in order.
pub fn arrays(watched: &[Watched]) -> Vec<u64> {
    let mut jobs: Vec<u64> = watched.iter().map(|w| w.task.job).collect();
    jobs.sort_unstable();
    jobs.dedup();
    jobs
}

/// How waiting ended.
pub enum Waited {
    /// Every task ended.
    Ended,
    /// Ctrl-C: the tasks go on without us.
    Detached,
}

/// Longest pause between two squeue calls (each is one request to slurmctld).
const MAX_POLL: Duration = Duration::from_secs(10);
/// squeue failing this many times in a row ends the wait with its error.
const MAX_FAILURES: usize = 10;

/// What a finished task left in its run's manifest, in a few words.
fn verdict(sweep_dir: &Path, id: &str, live: Option<&Live>) -> String {
    let m = super::manifest_of(sweep_dir, id);
    let state = live.map_or("no longer listed by squeue".to_string(), |l| {
        l.state.to_string()
    });
    match m {
        Some(m) if m.status == Status::Done => "done".into(),
        Some(m) if m.status == Status::Pruned => format!("pruned after epoch {}", m.epochs_done),
        Some(m) if matches!(m.status, Status::Failed | Status::Diverged) => format!(
            "{}: {}",
            m.status.as_str().to_uppercase(),
            m.error.unwrap_or_default()
        ),
        Some(m) => format!(
            "task {state}, run {} after {} of {} epochs",
            m.status.as_str(),
            m.epochs_done,
            m.epochs
        ),
        None => format!("task {state} before the run started"),
    }
}

/// Waits for every task in `watched`, showing runs ended / total and the tasks' states.
pub fn wait(
    cluster: &Cluster,
    plan: &Plan,
    sweep_dir: &Path,
    watched: &[Watched],
    cancel: &AtomicBool,
) -> anyhow::Result<Waited> {
    let reporter = Reporter::new(watched.len(), 0);
    let jobs = arrays(watched);
    let mut ended: HashSet<TaskId> = HashSet::new();
    let (mut failures, mut delay) = (0, Duration::from_secs(1));
    let mut last_counts = String::new();
    loop {
        match cluster.states(&jobs) {
            Ok(live) => {
                failures = 0;
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for w in watched {
                    let l = live.get(&w.task);
                    match l {
                        Some(l) if !l.state.has_ended() => {
                            *counts.entry(l.state.to_string()).or_default() += 1;
                        }
                        _ => {
                            if ended.insert(w.task) {
                                let id = &plan.runs[w.run].id;
                                let v = verdict(sweep_dir, id, l);
                                reporter.finished(format!("{id} (task {}): {v}", w.task));
                                delay = Duration::from_secs(1);
                            }
                        }
                    }
                }
                if ended.len() == watched.len() {
                    reporter.close();
                    return Ok(Waited::Ended);
                }
                let text = counts
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if text != last_counts {
                    reporter.status(text.clone());
                    last_counts = text;
                    delay = Duration::from_secs(1);
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    reporter.close();
                    return Err(anyhow::Error::new(e).context("squeue kept failing"));
                }
                reporter.note(format!("warning: {e} (retrying)"));
            }
        }
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if cancel.load(Ordering::SeqCst) {
                reporter.close();
                return Ok(Waited::Detached);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        delay = (delay * 3 / 2).min(MAX_POLL);
    }
}
