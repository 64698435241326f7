//! The state of one array task as `squeue` reports it.

/// A job state (squeue(1) "JOB STATE CODES"); the run manifests stay the record of what a run
/// did, this is the cluster's live view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Running,
    Requeued,
    Suspended,
    Completing,
    Completed,
    Failed,
    Timeout,
    OutOfMemory,
    NodeFail,
    Cancelled,
    Preempted,
    BootFail,
    Deadline,
    /// A state this list does not know, as Slurm spelled it.
    Other(String),
}

impl TaskState {
    /// Parses squeue's `%T`.
    pub fn parse(s: &str) -> TaskState {
        match s.trim() {
            "PENDING" => Self::Pending,
            "RUNNING" | "CONFIGURING" | "RESIZING" | "SIGNALING" | "STAGE_OUT" => Self::Running,
            "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" => Self::Requeued,
            "SUSPENDED" | "STOPPED" => Self::Suspended,
            "COMPLETING" => Self::Completing,
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            "TIMEOUT" => Self::Timeout,
            "OUT_OF_MEMORY" => Self::OutOfMemory,
            "NODE_FAIL" => Self::NodeFail,
            "CANCELLED" | "REVOKED" => Self::Cancelled,
            "PREEMPTED" => Self::Preempted,
            "BOOT_FAIL" => Self::BootFail,
            "DEADLINE" => Self::Deadline,
            other => Self::Other(other.to_string()),
        }
    }

    /// Slurm's name of the state.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Requeued => "REQUEUED",
            Self::Suspended => "SUSPENDED",
            Self::Completing => "COMPLETING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::OutOfMemory => "OUT_OF_MEMORY",
            Self::NodeFail => "NODE_FAIL",
            Self::Cancelled => "CANCELLED",
            Self::Preempted => "PREEMPTED",
            Self::BootFail => "BOOT_FAIL",
            Self::Deadline => "DEADLINE",
            Self::Other(s) => s,
        }
    }

    /// The task has ended and will not run again unless someone requeues it. A preempted task
    /// counts as ended: with `--requeue` Slurm moves it back to PENDING itself.
    pub fn has_ended(&self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Timeout
                | Self::OutOfMemory
                | Self::NodeFail
                | Self::Cancelled
                | Self::Preempted
                | Self::BootFail
                | Self::Deadline
        )
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState;

    #[test]
    fn names_round_trip_and_only_final_states_end() {
        for name in [
            "PENDING",
            "RUNNING",
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "CANCELLED",
            "PREEMPTED",
            "REQUEUED",
            "COMPLETING",
        ] {
            assert_eq!(TaskState::parse(name).as_str(), name);
        }
        assert!(!TaskState::parse("PENDING").has_ended());
        assert!(!TaskState::parse("COMPLETING").has_ended());
        assert!(!TaskState::parse("REQUEUED").has_ended());
        assert!(TaskState::parse("OUT_OF_MEMORY").has_ended());
        assert_eq!(TaskState::parse("WEIRD"), TaskState::Other("WEIRD".into()));
    }
}
