//! `vaelab task DIR INDEX`: what one array task runs. It trains exactly the run the plan gave
//! it, under the run's lock, resuming from its checkpoint, so a task Slurm starts twice never
//! retrains a finished epoch.

use super::{Submission, SWEEP_COPY};
use crate::early_stop::Pruning;
use crate::failure::Failure;
use crate::manifest::{Manifest, Provenance};
use crate::output::note;
use crate::run::{execute, Outcome, RunJob};
use crate::sweep_file::load_sweep_file;
use anyhow::anyhow;
use candle_core::Device;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vaelab_slurm::{Cluster, TaskId};
use vaelab_track::{self as track, RunDir};

/// Stop flags raised by signals: SIGTERM / SIGINT (cancel, requeue, time limit) stop the run;
/// SIGUSR1 (`--signal=B:USR1@lead`, the time limit is near) also asks for a requeue.
struct Signals {
    stop: Arc<AtomicBool>,
    time_limit: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
        let s = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            time_limit: Arc::new(AtomicBool::new(false)),
        };
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            signal_hook::flag::register(sig, s.stop.clone())?;
        }
        signal_hook::flag::register(SIGUSR1, s.time_limit.clone())?;
        Ok(s)
    }

    /// After the task requeued itself: waits (at most a minute) for the SIGTERM with which
    /// Slurm ends this attempt, and ends at it. Exiting first races the requeue: Slurm may
    /// record the attempt's non-zero exit as the task FAILED, and the submitter stop waiting.
    fn await_requeue() {
        use signal_hook::consts::SIGTERM;
        let armed = Arc::new(AtomicBool::new(true));
        if signal_hook::flag::register_conditional_shutdown(SIGTERM, 143, armed).is_ok() {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// Trains task `index` of the array folder `dir`.
/// `resume_pruned` (`--no-prune`) trains a pruned run on and judges nothing.
pub fn run_task(
    dir: &Path,
    index: usize,
    resume_pruned: bool,
    device: &Device,
) -> Result<(), Failure> {
    let input = Failure::Input;
    let job: u64 = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            input(anyhow!(
                "{}: not an array folder results/<sweep>/slurm/<job id>",
                dir.display()
            ))
        })?;
    let sub = Submission::read(dir, job)
        .map_err(|e| input(anyhow!("{}: {e}", dir.join(super::TASKS).display())))?;
    let id = sub.runs.get(index).ok_or_else(|| {
        input(anyhow!(
            "task {index}: {} lists only {} runs",
            dir.join(super::TASKS).display(),
            sub.runs.len()
        ))
    })?;
    let file = dir.join(SWEEP_COPY);
    let plan = load_sweep_file(&file).map_err(|e| input(e.into()))?;
    let (index_in_plan, run) = plan
        .runs
        .iter()
        .enumerate()
        .find(|(_, r)| &r.id == id)
        .ok_or_else(|| input(anyhow!("{}: no run with id {id}", file.display())))?;
    let sweep_dir = dir
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| input(anyhow!("{}: not inside a sweep folder", dir.display())))?;
    let data = crate::data::load_data(std::iter::once((run.keys.data_source(), file.as_path())))
        .map_err(input)?;
    let dataset = data
        .values()
        .next()
        .ok_or_else(|| input(anyhow!("no data")))?;
    let signals = Signals::install().map_err(Failure::Run)?;
    let provenance = Provenance::detect();
    let restarts = provenance.slurm.as_ref().map_or(0, |s| s.restart_count);
    let task = TaskId { job, index };
    note!(
        "vaelab task {task}: run {id} on {} (restart {restarts})",
        provenance.host
    );
    let run_dir = RunDir::create(&sweep_dir.join("runs"), id).map_err(|e| input(e.into()))?;
    let manifest_path = run_dir.file(track::MANIFEST);
    let epochs_before = Manifest::read(&manifest_path).map_or(0, |m| m.epochs_done);
    let label = format!("{id} (task {task})");
    let ids: Vec<String> = plan.runs.iter().map(|r| r.id.clone()).collect();
    let runs_dir = sweep_dir.join("runs");
    let say = |text: String| note!("{label}: {text}");
    let pruning = Pruning::for_run(
        plan.early_stop.as_ref(),
        index_in_plan,
        &ids,
        &runs_dir,
        resume_pruned,
        &say,
    );
    let job = RunJob {
        id,
        label: label.clone(),
        keys: &run.keys,
        source: &file,
        dir: run_dir,
        data: dataset,
        device,
        force: false,
        cancel: &signals.stop,
        wait_for_lock: false,
        provenance: &provenance,
        pruning,
    };
    let epochs = run.keys.epochs;
    let on_epoch = |train: &vaelab_vae::EpochMetrics, test: &vaelab_vae::EpochMetrics| {
        note!(
            "{label}: epoch {}/{epochs}, train loss {:.2}, test loss {:.2} ({:.1} s)",
            train.epoch,
            train.loss,
            test.loss,
            train.seconds
        );
    };
    match execute(&job, &on_epoch) {
        Outcome::Done => {
            note!("{label}: done");
            Ok(())
        }
        Outcome::Skipped => {
            note!("{label}: already done");
            Ok(())
        }
        Outcome::Pruned(epoch) => {
            note!("{label}: pruned after epoch {epoch} by the sweep's early stopping");
            Ok(())
        }
        Outcome::Interrupted => {
            let epochs_after = Manifest::read(&manifest_path).map_or(0, |m| m.epochs_done);
            if signals.time_limit.load(Ordering::SeqCst) && plan.slurm.requeue {
                // No epoch finished in this attempt: another would not finish one either.
                if epochs_after <= epochs_before {
                    return Err(Failure::Interrupted(anyhow!(
                        "{label}: time limit near and no epoch finished in this attempt; not requeued (raise `time` in [slurm])"
                    )));
                }
                Cluster::requeue(task).map_err(|e| Failure::Run(e.into()))?;
                note!("{label}: time limit near: epoch {epochs_after} kept, task requeued");
                Signals::await_requeue();
            }
            Err(Failure::Interrupted(anyhow!(
                "{label}: stopped by a signal after epoch {epochs_after}; it resumes there"
            )))
        }
        Outcome::Failed(e) => Err(Failure::Run(anyhow!("{label} failed: {e}"))),
        Outcome::Diverged(e) => Err(Failure::Run(anyhow!("{label} diverged: {e}"))),
        Outcome::Busy(pid) => Err(Failure::Run(anyhow!(
            "{label}: another process{} holds the run's lock",
            pid.map_or(String::new(), |p| format!(" (pid {p})"))
        ))),
    }
}
