//! `manifest.json`: what happened to a run, readable while it trains and after it stopped.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// Stopped early by the sweep's `[early_stop]` rule: finished, its epochs and checkpoint
    /// kept (`vaelab sweep --no-prune` trains it on).
    Pruned,
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
            Status::Pruned => "pruned",
        }
    }

    /// Whether the run has nothing left to train: done, or pruned (unless `resume_pruned`).
    pub fn finished(self, resume_pruned: bool) -> bool {
        self == Status::Done || (self == Status::Pruned && !resume_pruned)
    }
}

/// What a rung decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Continue,
    Prune,
}

/// One early-stopping decision as recorded: a resumed or requeued run reuses it and never
/// decides that rung again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The rung (0 for the first), and the epoch after which it judged.
    pub rung: usize,
    pub epoch: usize,
    /// The test metric judged by, and the run's value of it there.
    pub metric: String,
    pub value: Option<f64>,
    /// The earlier runs it was judged against, in plan order, and their values there.
    pub peers: Vec<String>,
    pub peer_values: Vec<Option<f64>>,
    /// The worst value that went on (`None`: too few peers to judge).
    pub threshold: Option<f64>,
    pub verdict: Verdict,
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
    /// The commit the binary was built from (recorded at build time).
    pub git_commit: Option<String>,
    /// Whether the build's sources (`crates/`, `Cargo.toml`, `Cargo.lock`) differed from
    /// `git_commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub host: String,
    /// The CPU that trained (or last resumed) the run and the conv kernels' width: its seconds
    /// hold on that CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    pub error: Option<String>,
    /// The Slurm task that trained (or last resumed) the run, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmTask>,
    /// The SHA-256 of the checkpoint and metrics after each of the last two epochs, newest
    /// first, recorded before those files replace the old ones: a resume trains on only from
    /// files that match one (empty in manifests of vaelab before 2026-12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<EpochFiles>,
    /// The SHA-256 of the files written once a run ends (`summary.parquet`, `estep.parquet`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
    /// The sweep's early-stopping decisions about this run, one per rung judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
}

/// The SHA-256 (lowercase hex) of a run's checkpoint and metrics after `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochFiles {
    pub epoch: usize,
    pub checkpoint: String,
    pub metrics: String,
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
    pub git_dirty: Option<bool>,
    pub host: String,
    pub cpu: String,
    pub slurm: Option<SlurmTask>,
}

impl Provenance {
    /// The build's commit, the host name and the CPU, read once.
    pub fn detect() -> Self {
        let (git_commit, git_dirty) = build_commit();
        Self {
            git_commit,
            git_dirty,
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
            git_dirty: provenance.git_dirty,
            host: provenance.host.clone(),
            cpu: Some(provenance.cpu.clone()),
            error: None,
            slurm: provenance.slurm.clone(),
            checksums: Vec::new(),
            sha256: BTreeMap::new(),
            decisions: Vec::new(),
        }
    }

    /// Reads a manifest; `None` when absent or unreadable (for listings and status).
    pub fn read(path: &Path) -> Option<Manifest> {
        Manifest::load(path).ok().flatten()
    }

    /// Reads a manifest; `Ok(None)` when absent, an error naming the file when it cannot be
    /// read or is not a vaelab manifest (a run never trains on past one it cannot read).
    pub fn load(path: &Path) -> anyhow::Result<Option<Manifest>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a vaelab manifest ({e}); rerun with --force to train the run from \
                 the start",
                path.display()
            )
        })
    }

    /// The SHA-256s this manifest accepts for `file` (lowercase hex): either of the last two
    /// epochs' for the checkpoint and metrics, the one recorded at the end for the others.
    pub fn accepted_hashes(&self, file: &str) -> Vec<&str> {
        match file {
            vaelab_track::CHECKPOINT => self
                .checksums
                .iter()
                .map(|r| r.checkpoint.as_str())
                .collect(),
            vaelab_track::METRICS => self.checksums.iter().map(|r| r.metrics.as_str()).collect(),
            _ => self
                .sha256
                .get(file)
                .map(String::as_str)
                .into_iter()
                .collect(),
        }
    }

    /// Every file this manifest holds a SHA-256 of.
    pub fn hashed_files(&self) -> Vec<&str> {
        let epoch_files = [vaelab_track::CHECKPOINT, vaelab_track::METRICS];
        let per_epoch = epoch_files
            .iter()
            .copied()
            .filter(|_| !self.checksums.is_empty());
        per_epoch
            .chain(self.sha256.keys().map(String::as_str))
            .collect()
    }

    /// Records the hashes of an epoch's files, keeping the one before (a crash may strike
    /// between the manifest's rename and theirs, leaving the older files in place).
    pub fn record_epoch(&mut self, files: EpochFiles) {
        self.checksums.insert(0, files);
        self.checksums.truncate(2);
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

/// The commit this binary was built from and whether its sources differed (`build.rs`);
/// `None` for a build outside a git checkout.
pub fn build_commit() -> (Option<String>, Option<bool>) {
    let commit = Some(env!("VAELAB_GIT_COMMIT").to_string()).filter(|c| !c.is_empty());
    let dirty = match env!("VAELAB_GIT_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (commit, dirty)
}
