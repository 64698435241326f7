//! The batch script of a job array and the split of a plan into arrays.

use crate::settings::{Settings, DEFAULT_SIGNAL_LEAD};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One batch script: every task `exec`s `program args… <dir>/<array job id> <task id>`, so the
/// signals Slurm sends to the batch shell (`--signal=B:…`) land in vaelab itself.
#[derive(Debug, Clone)]
pub struct Script<'a> {
    pub job_name: String,
    /// Where each array job gets its folder `<array job id>/`, holding `tasks.txt` and the logs.
    pub slurm_dir: PathBuf,
    pub settings: &'a Settings,
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Quotes a word for bash.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

impl Script<'_> {
    /// The `#SBATCH` lines the settings ask for.
    fn directives(&self) -> Vec<String> {
        let s = self.settings;
        let logs = self.slurm_dir.join("%A");
        let mut d = vec![
            format!("--job-name={}", quote(&self.job_name)),
            format!("--output={}", path(&logs.join("%a.out"))),
            format!("--error={}", path(&logs.join("%a.err"))),
            // A requeued task appends to its logs instead of truncating them.
            "--open-mode=append".to_string(),
            format!("--cpus-per-task={}", s.threads()),
        ];
        d.extend(s.placement_args());
        d.extend(
            [("mem", &s.mem), ("gres", &s.gres)]
                .into_iter()
                .filter_map(|(flag, v)| v.as_ref().map(|v| format!("--{flag}={v}"))),
        );
        if s.requeue {
            d.push("--requeue".into());
            let lead = s.signal_lead.unwrap_or(DEFAULT_SIGNAL_LEAD);
            d.push(format!("--signal=B:USR1@{lead}"));
        }
        // Otherwise the cluster's default (`JobRequeue`) decides; tasks resume either way.
        d
    }

    /// The script's text.
    pub fn render(&self) -> String {
        let mut out =
            String::from("#!/bin/bash\n# written by vaelab: one array task trains one run\n");
        for d in self.directives() {
            out.push_str(&format!("#SBATCH {d}\n"));
        }
        for line in &self.settings.setup {
            out.push_str(line);
            out.push('\n');
        }
        let program = path(&self.program);
        let slurm_dir = path(&self.slurm_dir);
        out.push_str(&format!(
            r#"dir={slurm_dir}/"$SLURM_ARRAY_JOB_ID"
# The results folder and the binary must be on a filesystem this node shares with the submit host.
if [ ! -x {program} ]; then
  echo "vaelab: {program} is not on node $(hostname): build vaelab on a filesystem the nodes share, and submit with that binary" >&2
  exit 2
fi
if [ ! -f "$dir/tasks.txt" ]; then
  echo "vaelab: $dir/tasks.txt is not visible on node $(hostname): the results folder must be on a filesystem the nodes share (--results-dir)" >&2
  exit 2
fi
exec {program}"#
        ));
        for a in &self.args {
            out.push(' ');
            out.push_str(&quote(a));
        }
        out.push_str(" \"$dir\" \"$SLURM_ARRAY_TASK_ID\"\n");
        out
    }
}

/// Splits `n` tasks into arrays whose largest index stays under `max_array_size` (Slurm's
/// `MaxArraySize` caps the index, not the count), each array numbered from 0.
pub fn chunks(n: usize, max_array_size: usize) -> Vec<Range<usize>> {
    let size = max_array_size.max(1);
    (0..n)
        .step_by(size)
        .map(|start| start..(start + size).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_stay_under_max_array_size() {
        assert_eq!(chunks(0, 1001), Vec::<Range<usize>>::new());
        assert_eq!(chunks(5, 1001), vec![0..5]);
        assert_eq!(chunks(1001, 1001), vec![0..1001]);
        assert_eq!(chunks(1002, 1001), vec![0..1001, 1001..1002]);
        assert_eq!(chunks(8, 5), vec![0..5, 5..8]);
        let all: Vec<usize> = chunks(2500, 1001).into_iter().flatten().collect();
        assert_eq!(all, (0..2500).collect::<Vec<_>>());
    }

    #[test]
    fn quoting_survives_bash() {
        assert_eq!(quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(quote("it's here"), r"'it'\''s here'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn script_execs_vaelab_and_keeps_logs_on_requeue() {
        let settings = Settings {
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            cpus_per_task: Some(4),
            requeue: true,
            setup: vec!["module load cuda".into()],
            ..Settings::default()
        };
        let s = Script {
            job_name: "vaelab-smoke".into(),
            slurm_dir: "/shared/results/smoke/slurm".into(),
            settings: &settings,
            program: "/shared/bin/vaelab".into(),
            args: vec!["--threads".into(), "4".into(), "task".into()],
        }
        .render();
        for needle in [
            "#SBATCH --output=/shared/results/smoke/slurm/%A/%a.out\n",
            "#SBATCH --open-mode=append\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --time=1:00:00\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --requeue\n",
            "#SBATCH --signal=B:USR1@120\n",
            "module load cuda\n",
            "exec /shared/bin/vaelab --threads 4 task \"$dir\" \"$SLURM_ARRAY_TASK_ID\"\n",
        ] {
            assert!(s.contains(needle), "{needle} not in\n{s}");
        }
        assert!(s.starts_with("#!/bin/bash\n"));
    }

    /// Runs a rendered script as Slurm would (bash, the array variables set); (code, stderr).
    fn run_script(dir: &Path, program: &str) -> (Option<i32>, String) {
        let settings = Settings::default();
        let script = Script {
            job_name: "t".into(),
            slurm_dir: dir.to_path_buf(),
            settings: &settings,
            program: program.into(),
            args: vec!["task".into()],
        };
        let path = dir.join("job.sh");
        std::fs::write(&path, script.render()).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&path)
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn a_node_without_the_binary_or_the_results_folder_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let (code, err) = run_script(tmp.path(), "/nonexistent/vaelab");
        assert_eq!(code, Some(2));
        assert!(err.contains("/nonexistent/vaelab is not on node"), "{err}");
        let (code, err) = run_script(tmp.path(), "/bin/echo");
        assert_eq!(code, Some(2));
        assert!(err.contains("7/tasks.txt is not visible on node"), "{err}");
        // With the folder in place the task execs the program with the folder and its index.
        std::fs::create_dir_all(tmp.path().join("7")).unwrap();
        std::fs::write(tmp.path().join("7/tasks.txt"), "abc\n").unwrap();
        let out = std::process::Command::new("bash")
            .arg(tmp.path().join("job.sh"))
            .env("SLURM_ARRAY_JOB_ID", "7")
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(said.trim(), format!("task {}/7 3", tmp.path().display()));
    }
}
