//! Waiting for submitted tasks: progress read from the run manifests and squeue, until every
//! watched task has ended or Ctrl-C detaches (the jobs belong to the cluster, not the terminal).

use crate::dispatch::Reporter;
use crate::manifest::Status;
use crate::plan::Plan;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use vaelab_slurm::commands::Live;
use vaelab_slurm::{Cluster, TaskId, TaskState};

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
/// The first pause after a running task's manifest says its run has ended: slurmd reports the
/// task's exit within a fraction of a second, so waiting the backed-off pause would add seconds
/// to every wave of tasks.
const AFTER_MANIFEST: Duration = Duration::from_millis(250);
/// How often the manifests of running tasks are looked at between two squeue calls (a stat
/// each, on the sweep's filesystem, not a request to slurmctld).
const MANIFEST_TICK: Duration = Duration::from_millis(250);

/// The manifests of the tasks squeue last showed running, looked at between squeue calls: a run
/// whose manifest changed to an ended status wakes the watcher, so the next squeue call comes
/// as the task exits, not up to `MAX_POLL` later.
struct ManifestWake {
    /// The run id of each watched task.
    ids: Vec<String>,
    /// Each watched run's manifest modification time when last looked at.
    seen: Vec<Option<SystemTime>>,
}

impl ManifestWake {
    fn new(sweep_dir: &Path, ids: Vec<String>) -> ManifestWake {
        let seen = ids.iter().map(|id| modified(sweep_dir, id)).collect();
        ManifestWake { ids, seen }
    }

    /// Whether the manifest of one of the `running` watched tasks changed to an ended run.
    fn run_ended(&mut self, sweep_dir: &Path, running: &[usize]) -> bool {
        let mut woke = false;
        for &i in running {
            let now = modified(sweep_dir, &self.ids[i]);
            if now != self.seen[i] {
                self.seen[i] = now;
                woke |= super::manifest_of(sweep_dir, &self.ids[i])
                    .is_some_and(|m| m.status != Status::Running);
            }
        }
        woke
    }
}

/// When the manifest of run `id` was last written, if it exists.
fn modified(sweep_dir: &Path, id: &str) -> Option<SystemTime> {
    let path = crate::tables::run_dir(sweep_dir, id).join(vaelab_track::MANIFEST);
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

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
    let ids = watched
        .iter()
        .map(|w| plan.runs[w.run].id.clone())
        .collect();
    let mut wake = ManifestWake::new(sweep_dir, ids);
    // Indices into `watched` of the tasks squeue last showed running.
    let mut running: Vec<usize> = Vec::new();
    loop {
        match cluster.states(&jobs) {
            Ok(live) => {
                failures = 0;
                running.clear();
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for (i, w) in watched.iter().enumerate() {
                    let l = live.get(&w.task);
                    match l {
                        Some(l) if !l.state.has_ended() => {
                            if l.state == TaskState::Running {
                                running.push(i);
                            }
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
        let mut next_look = Instant::now() + MANIFEST_TICK;
        delay = (delay * 3 / 2).min(MAX_POLL);
        while Instant::now() < until {
            if cancel.load(Ordering::SeqCst) {
                reporter.close();
                return Ok(Waited::Detached);
            }
            if Instant::now() >= next_look {
                next_look = Instant::now() + MANIFEST_TICK;
                if wake.run_ended(sweep_dir, &running) {
                    delay = AFTER_MANIFEST;
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, Provenance};

    /// Writes run `id`'s manifest with `status`, a little later than the last write so that
    /// its modification time moves on coarse clocks too.
    fn write(sweep_dir: &Path, id: &str, status: Status) {
        std::thread::sleep(Duration::from_millis(20));
        let provenance = Provenance {
            git_commit: None,
            git_dirty: None,
            host: "test".into(),
            cpu: "test".into(),
            slurm: None,
        };
        let mut m = Manifest::new(id, &crate::config::RunKeys::default(), &provenance);
        m.status = status;
        let dir = crate::tables::run_dir(sweep_dir, id);
        std::fs::create_dir_all(&dir).unwrap();
        m.write(&dir.join(vaelab_track::MANIFEST)).unwrap();
    }

    #[test]
    fn a_running_task_s_manifest_that_says_done_wakes_the_watcher_once() {
        let tmp = tempfile::tempdir().unwrap();
        let sweep = tmp.path();
        write(sweep, "a", Status::Running);
        let mut wake = ManifestWake::new(sweep, vec!["a".into(), "b".into()]);
        assert!(!wake.run_ended(sweep, &[0, 1]), "nothing changed");
        // A new epoch rewrites the manifest, still running: no wake.
        write(sweep, "a", Status::Running);
        assert!(!wake.run_ended(sweep, &[0, 1]));
        // b ends, but squeue did not show its task running: not looked at.
        write(sweep, "b", Status::Done);
        assert!(!wake.run_ended(sweep, &[0]));
        write(sweep, "a", Status::Failed);
        assert!(wake.run_ended(sweep, &[0]));
        assert!(!wake.run_ended(sweep, &[0]), "the same write wakes once");
        assert!(
            wake.run_ended(sweep, &[0, 1]),
            "b, once its task shows running"
        );
    }
}
