//! `vaelab sweep FILE --backend slurm`: submit what is not done, wait (or detach), collect.

use super::submit::{submit, TaskCommand};
use super::watch::{arrays, wait, Waited, Watched};
use super::{jobs, latest_tasks, manifest_of, slurm_dir, submissions};
use crate::failure::Failure;
use crate::manifest::Status;
use crate::output::note;
use crate::plan::Plan;
use crate::run::Outcome;
use crate::tables::write_sweep_tables;
use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use vaelab_slurm::script::quote;
use vaelab_slurm::settings::TaskDevice;
use vaelab_slurm::{Cluster, Settings, TaskId};

/// How to submit a sweep.
#[derive(Debug, Clone)]
pub struct SlurmSweep {
    /// The file's `[slurm]` table with the CLI's flags on top.
    pub settings: Settings,
    /// Tasks running at once (`--array=…%jobs`).
    pub jobs: Option<usize>,
    /// Return after submitting; a dependent job collects the tables and draws the report.
    pub detach: bool,
    /// `--no-prune`: pruned runs are submitted too, and their tasks train them on.
    pub resume_pruned: bool,
    /// The tasks' device when neither `[slurm] device` nor a GPU in `gres` decides it.
    pub device: TaskDevice,
}

impl SlurmSweep {
    /// The tasks' device: the file's `device`, else CUDA when `gres` asks for a GPU.
    fn task_device(&self) -> TaskDevice {
        self.settings
            .device
            .unwrap_or(if self.settings.wants_gpu() {
                TaskDevice::Cuda
            } else {
                self.device
            })
    }
}

fn input(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Input(e.into())
}

/// The binary the nodes will run: this one, by its absolute path.
fn this_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the vaelab binary")?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// Submits the runs of `plan` that are neither done nor queued, waits for them unless
/// detached, then writes the tables and the report. Exit codes as a local sweep's.
pub fn sweep(
    plan: &Plan,
    sweep_dir: &Path,
    how: &SlurmSweep,
    cancel: &AtomicBool,
) -> Result<(), Failure> {
    let cluster = Cluster::detect().map_err(input)?;
    let device = how.task_device();
    if device == TaskDevice::Cuda && !candle_core::utils::cuda_is_available() {
        return Err(input(anyhow!(
            "the tasks would train on CUDA ([slurm] gres = {:?}, device = {:?}), but this vaelab was built without the `cuda` feature: build it with `just build-cuda`, or set device = \"cpu\" in [slurm]",
            how.settings.gres.as_deref().unwrap_or(""),
            how.settings.device
        )));
    }
    let sweep_dir = std::path::absolute(sweep_dir).map_err(input)?;
    let earlier = submissions(&sweep_dir);
    let live = cluster.states(&jobs(&earlier)).map_err(input)?;
    let latest = latest_tasks(&earlier);
    // A run still queued or running from an earlier submission is watched, not submitted again.
    let mut watched = Vec::new();
    let mut todo = Vec::new();
    for (i, run) in plan.runs.iter().enumerate() {
        if let Some(&(task, _)) = latest.get(&run.id) {
            if live.get(&task).is_some_and(|l| !l.state.has_ended()) {
                watched.push(Watched { run: i, task });
                continue;
            }
        }
        if !manifest_of(&sweep_dir, &run.id).is_some_and(|m| m.status.finished(how.resume_pruned)) {
            todo.push(i);
        }
    }
    let done = plan.runs.len() - todo.len() - watched.len();
    if !watched.is_empty() {
        let arrays: Vec<String> = arrays(&watched).iter().map(u64::to_string).collect();
        note!(
            "{} run(s) still queued or running in array(s) {}: watching them, not submitting them again",
            watched.len(),
            arrays.join(", ")
        );
    }
    if todo.is_empty() && watched.is_empty() {
        note!(
            "every run of {} is finished (done, or pruned by [early_stop]): nothing submitted",
            plan.name
        );
        return collect_and_conclude(plan, &sweep_dir, &cluster, &[], done);
    }
    let program = this_binary().map_err(input)?;
    let device_name = match device {
        TaskDevice::Cpu => "cpu",
        TaskDevice::Cuda => "cuda",
    };
    let command = TaskCommand {
        program: program.clone(),
        args: vec![
            "--threads".into(),
            how.settings.threads().to_string(),
            "--device".into(),
            device_name.into(),
            "task".into(),
        ]
        .into_iter()
        .chain(how.resume_pruned.then(|| "--no-prune".to_string()))
        .collect(),
    };
    let subs = if todo.is_empty() {
        Vec::new()
    } else {
        submit(
            &cluster,
            plan,
            &sweep_dir,
            &todo,
            &how.settings,
            how.jobs,
            &command,
        )
        .map_err(input)?
    };
    for sub in &subs {
        for (index, id) in sub.runs.iter().enumerate() {
            if let Some(run) = plan.runs.iter().position(|r| &r.id == id) {
                watched.push(Watched {
                    run,
                    task: TaskId {
                        job: sub.job,
                        index,
                    },
                });
            }
        }
        note!(
            "submitted array {} ({} task(s), {} thread(s) each on {device_name}) -> logs in {}",
            sub.job,
            sub.runs.len(),
            how.settings.threads(),
            sub.dir.display()
        );
    }
    let arrays = arrays(&watched);
    if how.detach {
        let report =
            submit_report_job(&cluster, plan, &sweep_dir, &how.settings, &arrays, &program)
                .map_err(Failure::Run)?;
        note!(
            "report job {report} collects the tables and draws the report when they end\n{}",
            follow_hint(&sweep_dir, &arrays, Some(report))
        );
        return Ok(());
    }
    match wait(&cluster, plan, &sweep_dir, &watched, cancel).map_err(Failure::Run)? {
        Waited::Detached => Err(Failure::Interrupted(anyhow!(
            "detached; the jobs go on\n{}",
            follow_hint(&sweep_dir, &arrays, None)
        ))),
        Waited::Ended => collect_and_conclude(plan, &sweep_dir, &cluster, &watched, done),
    }
}

/// How to follow and cancel the arrays.
fn follow_hint(sweep_dir: &Path, arrays: &[u64], report: Option<u64>) -> String {
    let ids: Vec<String> = arrays
        .iter()
        .chain(report.as_ref())
        .map(u64::to_string)
        .collect();
    format!(
        "  follow:  vaelab status {}   (or squeue -j {})\n  cancel:  scancel {}\n  collect: vaelab report {} (or run the sweep again)",
        sweep_dir.display(),
        ids.join(","),
        ids.join(" "),
        sweep_dir.display()
    )
}

/// A small job that starts once every array has ended and runs `vaelab report`, so the
/// tables and figures are complete even when the submitting shell is gone.
fn submit_report_job(
    cluster: &Cluster,
    plan: &Plan,
    sweep_dir: &Path,
    settings: &Settings,
    arrays: &[u64],
    program: &Path,
) -> anyhow::Result<u64> {
    let mut args = vec![
        format!("--job-name=vaelab-{}-report", plan.name),
        format!(
            "--output={}",
            slurm_dir(sweep_dir).join("report-%j.out").display()
        ),
        "--open-mode=append".into(),
        "--cpus-per-task=1".into(),
    ];
    args.extend(settings.placement_args());
    let command = format!(
        "exec {} report {}",
        quote(&program.to_string_lossy()),
        quote(&sweep_dir.to_string_lossy())
    );
    Ok(cluster.submit_after(arrays, &args, &command)?)
}

/// Marks runs whose task ended without finishing them, rewrites the tables, draws the report
/// and turns the watched runs' manifests into the sweep's exit code.
fn collect_and_conclude(
    plan: &Plan,
    sweep_dir: &Path,
    cluster: &Cluster,
    watched: &[Watched],
    already_done: usize,
) -> Result<(), Failure> {
    collect(plan, sweep_dir, cluster).map_err(Failure::Run)?;
    let outcomes: Vec<(usize, Outcome)> = watched
        .iter()
        .map(|w| {
            let id = &plan.runs[w.run].id;
            let m = manifest_of(sweep_dir, id);
            let outcome = match m {
                Some(m) if m.status == Status::Done => Outcome::Done,
                Some(m) if m.status == Status::Pruned => Outcome::Pruned(m.epochs_done),
                Some(m) if m.status == Status::Diverged => {
                    Outcome::Diverged(m.error.unwrap_or_default())
                }
                Some(m) => Outcome::Failed(m.error.unwrap_or_else(|| m.status.as_str().into())),
                None => Outcome::Failed("no manifest".into()),
            };
            (w.run, outcome)
        })
        .collect();
    crate::conclude::conclude(plan, sweep_dir, &outcomes, already_done, None)
}

/// Brings a sweep folder's records up to date: runs whose Slurm task ended unfinished are
/// marked failed (when Slurm can be asked), then both tables are rewritten.
pub fn collect(plan: &Plan, sweep_dir: &Path, cluster: &Cluster) -> anyhow::Result<()> {
    let subs = submissions(sweep_dir);
    if !subs.is_empty() {
        let live = cluster.states(&jobs(&subs))?;
        super::reconcile::mark_ended_runs(plan, sweep_dir, &subs, &live)?;
    }
    write_sweep_tables(sweep_dir, plan)
}
