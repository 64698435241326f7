//! The Slurm backend: a sweep's runs as Slurm job arrays, one task per run, into the same
//! results folder as a local sweep. Slurm schedules; vaelab only submits, trains one run per
//! task and reads the run folders back. Layout: `results/<sweep>/slurm/<array job id>/` holds
//! `tasks.txt` (line i: the run of task i), `sweep.toml` (the plan the tasks read), `job.sh`,
//! `submission.json` and the tasks' logs `<task>.out` / `<task>.err`.

pub mod reconcile;
pub mod status;
pub mod submit;
pub mod sweep;
pub mod task;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vaelab_slurm::TaskId;

/// The task → run list of an array.
pub const TASKS: &str = "tasks.txt";
/// The sweep file the tasks plan from, frozen at submission.
pub const SWEEP_COPY: &str = "sweep.toml";

/// `results/<sweep>/slurm`.
pub fn slurm_dir(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join("slurm")
}

/// One submitted array, as its folder records it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job: u64,
    pub dir: PathBuf,
    /// Run id of each task, by task index.
    pub runs: Vec<String>,
}

impl Submission {
    /// Reads `dir/tasks.txt`, one run id a line.
    pub fn read(dir: &Path, job: u64) -> std::io::Result<Submission> {
        let text = std::fs::read_to_string(dir.join(TASKS))?;
        Ok(Submission {
            job,
            dir: dir.to_path_buf(),
            runs: text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    /// The log of task `index` (`out` or `err`).
    pub fn log(&self, index: usize, stream: &str) -> PathBuf {
        self.dir.join(format!("{index}.{stream}"))
    }
}

/// Every array submitted for a sweep, oldest first.
pub fn submissions(sweep_dir: &Path) -> Vec<Submission> {
    let Ok(entries) = std::fs::read_dir(slurm_dir(sweep_dir)) else {
        return Vec::new();
    };
    let mut subs: Vec<Submission> = entries
        .flatten()
        .filter_map(|e| {
            let job = e.file_name().to_str()?.parse::<u64>().ok()?;
            Submission::read(&e.path(), job).ok()
        })
        .collect();
    subs.sort_by_key(|s| s.job);
    subs
}

/// The array job ids of `subs`.
pub fn jobs(subs: &[Submission]) -> Vec<u64> {
    subs.iter().map(|s| s.job).collect()
}

/// The manifest of run `id` in a sweep folder, if it has one and it is that run's.
pub fn manifest_of(sweep_dir: &Path, id: &str) -> Option<crate::manifest::Manifest> {
    crate::manifest::Manifest::read(
        &crate::tables::run_dir(sweep_dir, id).join(vaelab_track::MANIFEST),
    )
    .filter(|m| m.id == id)
}

/// The latest task each run was given, over all submissions.
pub fn latest_tasks(subs: &[Submission]) -> HashMap<String, (TaskId, &Submission)> {
    let mut latest = HashMap::new();
    for sub in subs {
        for (index, run) in sub.runs.iter().enumerate() {
            latest.insert(
                run.clone(),
                (
                    TaskId {
                        job: sub.job,
                        index,
                    },
                    sub,
                ),
            );
        }
    }
    latest
}

/// The last non-empty line of a file (a task's stderr says why it died).
pub fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_s_task_supersedes_the_earlier_one() {
        let tmp = tempfile::tempdir().unwrap();
        for (job, runs) in [(7, "a\nb\n"), (12, "b\n")] {
            let dir = slurm_dir(tmp.path()).join(job.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(TASKS), runs).unwrap();
        }
        // Staging folders and other files are not submissions.
        std::fs::create_dir_all(slurm_dir(tmp.path()).join(".staging-1-0")).unwrap();
        let subs = submissions(tmp.path());
        assert_eq!(subs.iter().map(|s| s.job).collect::<Vec<_>>(), [7, 12]);
        let latest = latest_tasks(&subs);
        assert_eq!(latest["a"].0, TaskId { job: 7, index: 0 });
        assert_eq!(latest["b"].0, TaskId { job: 12, index: 0 });
        assert_eq!(
            subs[1].log(0, "err"),
            slurm_dir(tmp.path()).join("12/0.err")
        );
    }

    #[test]
    fn the_last_line_of_a_log_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("0.err");
        std::fs::write(&log, "starting\nvaelab: /x/vaelab is not on node n1\n\n").unwrap();
        assert_eq!(
            last_line(&log).as_deref(),
            Some("vaelab: /x/vaelab is not on node n1")
        );
        assert_eq!(last_line(&tmp.path().join("missing")), None);
    }
}
