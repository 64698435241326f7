//! Slurm's commands, run as child processes: submit, release, cancel, requeue, look up.

use crate::state::TaskState;
use crate::SlurmError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One task of a job array: `<array job id>_<task id>`, the name Slurm's commands take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub job: u64,
    pub index: usize,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.job, self.index)
    }
}

impl TaskId {
    /// Parses `A_a` (squeue's `%i` of an array task).
    pub fn parse(s: &str) -> Option<TaskId> {
        let (job, index) = s.trim().split_once('_')?;
        Some(TaskId {
            job: job.parse().ok()?,
            index: index.parse().ok()?,
        })
    }
}

/// What squeue says of a task: its state and Slurm's reason (e.g. `BeginTime`, `JobHeldUser`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub state: TaskState,
    pub reason: String,
}

/// The cluster the Slurm commands on PATH talk to.
#[derive(Debug, Clone)]
pub struct Cluster {
    sbatch: PathBuf,
}

/// Finds `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command; its stdout when it succeeds.
fn output(cmd: &mut Command) -> Result<String, SlurmError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SlurmError::Missing {
            command: command.clone(),
        },
        _ => SlurmError::Io {
            command: command.clone(),
            source,
        },
    })?;
    if !out.status.success() {
        return Err(SlurmError::Refused {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses `sbatch --parsable`'s `jobid[;cluster]`.
fn parse_job_id(command: &str, out: &str) -> Result<u64, SlurmError> {
    let id = out.trim().split(';').next().unwrap_or("");
    id.parse().map_err(|_| SlurmError::Unexpected {
        command: command.into(),
        output: out.trim().into(),
        expected: "a job id",
    })
}

impl Cluster {
    /// The cluster, if `sbatch` is on PATH.
    pub fn detect() -> Result<Cluster, SlurmError> {
        on_path("sbatch")
            .map(|sbatch| Cluster { sbatch })
            .ok_or(SlurmError::Missing {
                command: "sbatch".into(),
            })
    }

    /// Submits `script` as a job array over `array` (sbatch's `--array` value); `hold` keeps
    /// every task pending until [`Cluster::release`]. Returns the array's job id.
    pub fn submit_array(
        &self,
        script: &Path,
        array: &str,
        hold: bool,
        extra_args: &[String],
    ) -> Result<u64, SlurmError> {
        let mut cmd = Command::new(&self.sbatch);
        cmd.arg("--parsable").arg(format!("--array={array}"));
        if hold {
            cmd.arg("--hold");
        }
        cmd.args(extra_args).arg(script);
        parse_job_id("sbatch", &output(&mut cmd)?)
    }

    /// Submits one command (`--wrap`) that starts once every job in `after` has ended.
    pub fn submit_after(
        &self,
        after: &[u64],
        args: &[String],
        command: &str,
    ) -> Result<u64, SlurmError> {
        let ids: Vec<String> = after.iter().map(u64::to_string).collect();
        let mut cmd = Command::new(&self.sbatch);
        cmd.arg("--parsable")
            .arg(format!("--dependency=afterany:{}", ids.join(":")))
            .args(args)
            .arg(format!("--wrap={command}"));
        parse_job_id("sbatch", &output(&mut cmd)?)
    }

    /// Lets a held job's tasks start.
    pub fn release(&self, job: u64) -> Result<(), SlurmError> {
        output(Command::new("scontrol").args(["release", &job.to_string()])).map(|_| ())
    }

    /// Cancels a whole job (every task of an array).
    pub fn cancel(&self, job: u64) -> Result<(), SlurmError> {
        output(Command::new("scancel").arg(job.to_string())).map(|_| ())
    }

    /// Requeues one array task (never the bare job id, which would requeue the whole array).
    pub fn requeue(task: TaskId) -> Result<(), SlurmError> {
        output(Command::new("scontrol").args(["requeue", &task.to_string()])).map(|_| ())
    }

    /// `MaxArraySize` from `scontrol show config` (Slurm's default, 1001, if it cannot be read).
    pub fn max_array_size(&self) -> usize {
        output(Command::new("scontrol").args(["show", "config"]))
            .ok()
            .and_then(|text| parse_config_value(&text, "MaxArraySize"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1001)
    }

    /// Every task of `jobs` that squeue still lists (it forgets finished jobs after
    /// `MinJobAge`, so a missing task has ended long ago or never existed).
    pub fn states(&self, jobs: &[u64]) -> Result<HashMap<TaskId, Live>, SlurmError> {
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = jobs.iter().map(u64::to_string).collect();
        let result = output(Command::new("squeue").args([
            "--noheader",
            "--array",
            "--states=all",
            &format!("--jobs={}", ids.join(",")),
            "--format=%i|%T|%r",
        ]));
        match result {
            Ok(text) => Ok(parse_states(&text)),
            // Every job asked for is gone from squeue's memory.
            Err(SlurmError::Refused { stderr, .. }) if stderr.contains("Invalid job id") => {
                Ok(HashMap::new())
            }
            Err(e) => Err(e),
        }
    }
}

/// `Key = value` from `scontrol show config`.
fn parse_config_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// squeue lines `A_a|STATE|reason`.
fn parse_states(text: &str) -> HashMap<TaskId, Live> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let id = TaskId::parse(f.next()?)?;
            let state = TaskState::parse(f.next()?);
            let reason = f.next().unwrap_or("").trim().to_string();
            Some((id, Live { state, reason }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines() {
        let s = parse_states("4_1|PENDING|BeginTime\n4_0|COMPLETED|None\n7|RUNNING|None\n");
        assert_eq!(s.len(), 2);
        let t = TaskId { job: 4, index: 1 };
        assert_eq!(s[&t].state, TaskState::Pending);
        assert_eq!(s[&t].reason, "BeginTime");
        assert_eq!(t.to_string(), "4_1");
    }

    #[test]
    fn sbatch_parsable_ids() {
        assert_eq!(parse_job_id("sbatch", "123\n").unwrap(), 123);
        assert_eq!(parse_job_id("sbatch", "123;cluster\n").unwrap(), 123);
        assert!(parse_job_id("sbatch", "Submitted batch job 5").is_err());
    }

    #[test]
    fn config_values() {
        let text = "MailProg                = /bin/true\nMaxArraySize            = 1001\n";
        assert_eq!(
            parse_config_value(text, "MaxArraySize").as_deref(),
            Some("1001")
        );
        assert_eq!(parse_config_value(text, "MinJobAge"), None);
    }
}
