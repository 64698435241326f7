//! Submission: the runs to train as job arrays (split under `MaxArraySize`), each array's
//! folder written before any of its tasks can start.

use super::{slurm_dir, Submission, SWEEP_COPY, TASKS};
use crate::plan::Plan;
use anyhow::Context;
use std::path::{Path, PathBuf};
use vaelab_slurm::{chunks, Cluster, Script, Settings};
use vaelab_track as track;

/// What every task runs: `program args… <array folder> <task index>`.
#[derive(Debug, Clone)]
pub struct TaskCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Submits one array per chunk of `runs` (indices into `plan`); `jobs` caps the tasks running
/// at once (`--array=…%jobs`). `sweep_dir` must be absolute: the nodes resolve it.
pub fn submit(
    cluster: &Cluster,
    plan: &Plan,
    sweep_dir: &Path,
    runs: &[usize],
    settings: &Settings,
    jobs: Option<usize>,
    command: &TaskCommand,
) -> anyhow::Result<Vec<Submission>> {
    let dir = slurm_dir(sweep_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let script = Script {
        job_name: format!("vaelab-{}", plan.name),
        slurm_dir: dir.clone(),
        settings,
        program: command.program.clone(),
        args: command.args.clone(),
    }
    .render();
    let mut subs = Vec::new();
    for (k, chunk) in chunks(runs.len(), cluster.max_array_size())
        .into_iter()
        .enumerate()
    {
        let ids: Vec<&str> = runs[chunk]
            .iter()
            .map(|&i| plan.runs[i].id.as_str())
            .collect();
        let sub = submit_array(cluster, sweep_dir, &dir, k, &script, &ids, settings, jobs)
            .with_context(|| {
                let sent: Vec<String> = subs
                    .iter()
                    .map(|s: &Submission| s.job.to_string())
                    .collect();
                if sent.is_empty() {
                    "nothing was submitted".to_string()
                } else {
                    format!("arrays {} were submitted and keep running", sent.join(", "))
                }
            })?;
        subs.push(sub);
    }
    Ok(subs)
}

/// One array: its folder is staged, the array submitted held, the folder renamed to the job id
/// (where the tasks and their logs look), and only then released.
#[allow(clippy::too_many_arguments)]
fn submit_array(
    cluster: &Cluster,
    sweep_dir: &Path,
    dir: &Path,
    k: usize,
    script: &str,
    ids: &[&str],
    settings: &Settings,
    jobs: Option<usize>,
) -> anyhow::Result<Submission> {
    let staging = dir.join(format!(".staging-{}-{k}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    track::write_atomic(&staging.join("job.sh"), script.as_bytes())?;
    track::write_atomic(&staging.join(TASKS), (ids.join("\n") + "\n").as_bytes())?;
    track::copy_atomic(&sweep_dir.join(SWEEP_COPY), &staging.join(SWEEP_COPY))
        .with_context(|| format!("copying {}", sweep_dir.join(SWEEP_COPY).display()))?;
    let n = ids.len();
    let array = match jobs {
        Some(p) if p < n => format!("0-{}%{p}", n - 1),
        _ => format!("0-{}", n - 1),
    };
    let job =
        match cluster.submit_array(&staging.join("job.sh"), &array, true, &settings.extra_args) {
            Ok(job) => job,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e.into());
            }
        };
    let release = || -> anyhow::Result<Submission> {
        let folder = dir.join(job.to_string());
        std::fs::rename(&staging, &folder)
            .with_context(|| format!("moving {} to {}", staging.display(), folder.display()))?;
        let record = serde_json::json!({
            "job": job,
            "tasks": n,
            "array": array,
            "extra_args": settings.extra_args,
            "submitted_at": crate::manifest::now(),
            "host": crate::manifest::host(),
        });
        track::write_atomic(
            &folder.join("submission.json"),
            &serde_json::to_vec_pretty(&record)?,
        )?;
        cluster.release(job)?;
        Ok(Submission::read(&folder, job)?)
    };
    release().map_err(|e| {
        // A held array nobody will release would sit in the queue forever.
        let _ = cluster.cancel(job);
        e.context(format!("array {job} was cancelled"))
    })
}
