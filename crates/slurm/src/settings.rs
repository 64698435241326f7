//! The `[slurm]` table of a sweep file: what each array task asks Slurm for.

use serde::{Deserialize, Serialize};

/// Where a task's tensors live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskDevice {
    Cpu,
    Cuda,
}

/// Slurm settings of a sweep; every key is optional and the CLI's flags override the file's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
    pub time: Option<String>,
    /// `--cpus-per-task`, also each task's `--threads` (default 1).
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `"8G"`.
    pub mem: Option<String>,
    /// `--gres`, e.g. `"gpu:1"` (which makes the tasks train on CUDA unless `device` says cpu).
    pub gres: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Shell lines run in the batch script before vaelab, e.g. `["module load cuda"]`.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Raw `sbatch` arguments, e.g. `["--constraint=a100"]`; they come last and win.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Submit with `--requeue` (else the cluster's `JobRequeue` decides); a task warned of its
    /// time limit keeps its last epoch and requeues itself.
    #[serde(default)]
    pub requeue: bool,
    /// Seconds before the time limit that the warning signal comes (`--signal=B:USR1@N`).
    pub signal_lead: Option<u32>,
    /// The tasks' device; default: `cuda` when `gres` asks for a GPU, else the CLI's `--device`.
    pub device: Option<TaskDevice>,
}

/// Default warning lead before the time limit: one epoch of a big run fits in it.
pub const DEFAULT_SIGNAL_LEAD: u32 = 120;

impl Settings {
    /// Every key set in `over` replaces this one's.
    pub fn overridden_by(mut self, over: Settings) -> Settings {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            partition,
            time,
            cpus_per_task,
            mem,
            gres,
            account,
            qos,
            signal_lead,
            device
        );
        if !over.setup.is_empty() {
            self.setup = over.setup;
        }
        if !over.extra_args.is_empty() {
            self.extra_args = over.extra_args;
        }
        self.requeue |= over.requeue;
        self
    }

    /// Where and under whose name jobs run: `--partition`, `--time`, `--account`, `--qos`.
    pub fn placement_args(&self) -> Vec<String> {
        [
            ("partition", &self.partition),
            ("time", &self.time),
            ("account", &self.account),
            ("qos", &self.qos),
        ]
        .into_iter()
        .filter_map(|(flag, v)| v.as_ref().map(|v| format!("--{flag}={v}")))
        .collect()
    }

    /// Threads of each task: its CPUs.
    pub fn threads(&self) -> usize {
        self.cpus_per_task.unwrap_or(1) as usize
    }

    /// Whether `gres` asks for a GPU.
    pub fn wants_gpu(&self) -> bool {
        self.gres.as_deref().is_some_and(|g| {
            g.split(',')
                .any(|r| r.trim() == "gpu" || r.trim().starts_with("gpu:"))
        })
    }

    /// The first bad value as (key, value, what is allowed).
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        if let Some(t) = &self.time {
            if !is_time(t) {
                return Err(("time", format!("{t:?}"), "a Slurm time: minutes (\"90\"), \"MM:SS\", \"HH:MM:SS\", \"D-HH\", \"D-HH:MM\" or \"D-HH:MM:SS\"".into()));
            }
        }
        if let Some(m) = &self.mem {
            if !is_mem(m) {
                return Err((
                    "mem",
                    format!("{m:?}"),
                    "a size in megabytes or with a unit K, M, G or T, e.g. \"8G\"".into(),
                ));
            }
        }
        if self.cpus_per_task == Some(0) {
            return Err(("cpus_per_task", "0".into(), "an integer ≥ 1".into()));
        }
        if self.signal_lead == Some(0) {
            return Err((
                "signal_lead",
                "0".into(),
                "seconds ≥ 1 before the time limit".into(),
            ));
        }
        for (key, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("gres", &self.gres),
        ] {
            if let Some(v) = v {
                if v.is_empty() || v.chars().any(char::is_whitespace) {
                    return Err((key, format!("{v:?}"), "a name without spaces".into()));
                }
            }
        }
        Ok(())
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Slurm's time formats (sbatch(1) `--time`).
fn is_time(t: &str) -> bool {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !parts.iter().all(|p| digits(p)) || days.is_some_and(|d| !digits(d)) {
        return false;
    }
    (1..=3).contains(&parts.len())
}

/// `--mem` sizes: an integer with an optional unit.
fn is_mem(m: &str) -> bool {
    let n = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    digits(n) && m.len() - n.len() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_time_formats() {
        for ok in ["90", "10:00", "1:30:00", "2-0", "2-12:00", "1-00:00:00"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in ["", "1h", "1:2:3:4", "a-1", "-5", "1:", "1 h"] {
            assert!(!is_time(bad), "{bad}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert!(is_mem("8G") && is_mem("4000") && is_mem("512M"));
        assert!(!is_mem("8GB") && !is_mem("G") && !is_mem("lots"));
    }

    #[test]
    fn flags_override_the_file() {
        let file = Settings {
            partition: Some("gpu".into()),
            cpus_per_task: Some(4),
            setup: vec!["module load cuda".into()],
            ..Settings::default()
        };
        let cli = Settings {
            partition: Some("debug".into()),
            requeue: true,
            ..Settings::default()
        };
        let s = file.overridden_by(cli);
        assert_eq!(s.partition.as_deref(), Some("debug"));
        assert_eq!(s.threads(), 4);
        assert_eq!(s.setup, ["module load cuda"]);
        assert!(s.requeue);
    }

    #[test]
    fn gpu_requests() {
        let with = |g: &str| Settings {
            gres: Some(g.into()),
            ..Settings::default()
        };
        assert!(with("gpu:1").wants_gpu() && with("gpu").wants_gpu());
        assert!(with("tmpfs:10G,gpu:a100:2").wants_gpu());
        assert!(!with("tmpfs:10G").wants_gpu() && !Settings::default().wants_gpu());
    }

    #[test]
    fn bad_values_name_their_key() {
        let s = Settings {
            time: Some("1h".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "time");
        let s = Settings {
            partition: Some("a b".into()),
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "partition");
    }
}
