//! `manifest.json`: what happened to a run, readable while it trains and after it stopped.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Done,
    Failed,
    Diverged,
    Interrupted,
}

impl Status {
    /// The name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Diverged => "diverged",
            Status::Interrupted => "interrupted",
        }
    }
}

/// The manifest of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub status: Status,
    pub seed: u64,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub epochs: usize,
    /// Epochs finished and checkpointed.
    pub epochs_done: usize,
    /// The last epoch whose metrics are finite and on disk.
    pub last_good_epoch: usize,
    pub vaelab_version: String,
    pub git_commit: Option<String>,
    pub host: String,
    /// The CPU that trained (or last resumed) the run and the conv kernels' width: its seconds
    /// hold on that CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    pub error: Option<String>,
    /// The Slurm task that trained (or last resumed) the run, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmTask>,
}

/// Where in Slurm a run trained, from the variables Slurm sets for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmTask {
    /// `SLURM_JOB_ID`: the task's own job id.
    pub job_id: String,
    /// `SLURM_ARRAY_JOB_ID` and `SLURM_ARRAY_TASK_ID`: `scontrol requeue <array>_<task>`.
    pub array_job_id: Option<String>,
    pub array_task_id: Option<String>,
    /// `SLURM_RESTART_COUNT`: how often Slurm requeued the task before this start.
    pub restart_count: u32,
    /// `SLURMD_NODENAME`.
    pub node: Option<String>,
}

impl SlurmTask {
    /// The task this process runs in, if Slurm started it.
    pub fn from_env() -> Option<SlurmTask> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(SlurmTask {
            job_id: var("SLURM_JOB_ID")?,
            array_job_id: var("SLURM_ARRAY_JOB_ID"),
            array_task_id: var("SLURM_ARRAY_TASK_ID"),
            restart_count: var("SLURM_RESTART_COUNT")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            node: var("SLURMD_NODENAME"),
        })
    }
}

/// Facts about this invocation recorded in every manifest.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub git_commit: Option<String>,
    pub host: String,
    pub cpu: String,
    pub slurm: Option<SlurmTask>,
}

impl Provenance {
    /// Reads the git commit and host name once.
    pub fn detect() -> Self {
        Self {
            git_commit: git_commit(),
            host: host(),
            cpu: vaelab_vae::cpu_line(),
            slurm: SlurmTask::from_env(),
        }
    }
}

impl Manifest {
    /// The manifest of a run starting now.
    pub fn new(id: &str, keys: &crate::config::RunKeys, provenance: &Provenance) -> Self {
        Manifest {
            id: id.to_string(),
            status: Status::Running,
            seed: keys.seed,
            started_at: now(),
            ended_at: None,
            duration_seconds: None,
            epochs: keys.epochs,
            epochs_done: 0,
            last_good_epoch: 0,
            vaelab_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: provenance.git_commit.clone(),
            host: provenance.host.clone(),
            cpu: Some(provenance.cpu.clone()),
            error: None,
            slurm: provenance.slurm.clone(),
        }
    }

    /// Reads a manifest; `None` when absent or unreadable (then the run starts over).
    pub fn read(path: &Path) -> Option<Manifest> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        Ok(vaelab_track::write_atomic(path, &bytes)?)
    }
}

/// Now, RFC 3339 in UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// This machine's name.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The commit of the checkout vaelab runs in, if it is a git checkout.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
