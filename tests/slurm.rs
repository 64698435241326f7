//! The Slurm backend on a real one-node Slurm (scripts/local-slurm.sh, started by `just test`),
//! through the real binary: a sweep as one job array equal to the local sweep, resubmission,
//! scancel and rerun, requeue and resume, failing runs, refusals, detach, early stopping.

mod common;

use common::{read, stderr, strings, FASHION};
use polars::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `SLURM_CONF` of the test cluster: the one `just test` started, else the project's local
/// cluster, started here (as root) once for all tests.
fn slurm_conf() -> &'static str {
    static CONF: OnceLock<String> = OnceLock::new();
    CONF.get_or_init(|| {
        if let Ok(conf) = std::env::var("SLURM_CONF") {
            if Path::new(&conf).exists() {
                return conf;
            }
        }
        // Test binaries run in parallel: one of them starts the cluster, the others wait.
        let lock = std::fs::File::create(std::env::temp_dir().join("vaelab-slurm-start.lock"))
            .expect("lock file");
        lock.lock().expect("lock");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/local-slurm.sh");
        let out = Command::new(&script)
            .arg("start")
            .env("SLURM_LOCAL_MAX_ARRAY", "5")
            .output()
            .expect("scripts/local-slurm.sh runs");
        assert!(
            out.status.success(),
            "could not start the local Slurm (it needs root and apt: run `just test`): {}",
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("export SLURM_CONF="))
            .expect("an export line")
            .trim()
            .to_string()
    })
}

/// A Slurm command (or vaelab) talking to the test cluster.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env("SLURM_CONF", slurm_conf());
    c
}

fn vaelab(args: &[&str]) -> Output {
    common::require_fashion();
    cmd(env!("CARGO_BIN_EXE_vaelab"))
        .args(args)
        .output()
        .expect("vaelab runs")
}

fn text(mut c: Command) -> String {
    let out = c.output().expect("runs");
    assert!(out.status.success(), "{c:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Slurm's own record of an array: `index → state`, from squeue.
fn slurm_states(job: u64) -> Vec<(usize, String)> {
    let mut c = cmd("squeue");
    c.args([
        "-h",
        "-r",
        "--states=all",
        "-o",
        "%i|%T",
        "-j",
        &job.to_string(),
    ]);
    let mut v: Vec<(usize, String)> = text(c)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.split_once('|')?;
            Some((id.split_once('_')?.1.parse().ok()?, state.to_string()))
        })
        .collect();
    v.sort();
    v
}

/// The array jobs submitted for a sweep, from its `slurm/` folder.
fn arrays(sweep_dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(sweep_dir.join("slurm"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A sweep of `grid` over a small MLP on the first `train` Fashion-MNIST images.
/// Starts a requeued task once it has waited out Slurm's requeue window (BeginTime: the
/// credential window + 1 s, 11 s on the test cluster), as a busy cluster soon would; the test
/// cluster's scheduler looks at pending jobs only every 60 s. Forcing a start inside the window
/// (`scontrol update StartTime=now` at once) raced the last attempt's late exit message, which
/// Slurm then recorded against the new attempt: FAILED (NonZeroExitCode).
#[derive(Default)]
struct Starter {
    pending_since: Option<Instant>,
}

impl Starter {
    fn poke(&mut self, task: &str) {
        let mut c = cmd("squeue");
        c.args(["-h", "-j", task, "-o", "%T"]);
        let pending = c
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PENDING");
        if !pending {
            self.pending_since = None;
            return;
        }
        let since = *self.pending_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= Duration::from_secs(12) {
            let _ = cmd("scontrol")
                .args(["update", &format!("JobId={task}"), "StartTime=now"])
                .output();
        }
    }
}

fn sweep_file(dir: &Path, name: &str, epochs: usize, train: usize, grid: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "[sweep]\nname = \"{name}\"\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [64]\nlatent_dim = 4\nepochs = {epochs}\ntrain_subset = {train}\ntest_subset = 200\niw_samples = 5\niw_test_n = 20\n\n[grid]\n{grid}\n"
        ),
    )
}

fn slurm_sweep(file: &Path, results: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sweep",
        file.to_str().unwrap(),
        "--backend",
        "slurm",
        "--results-dir",
        results.to_str().unwrap(),
    ];
    args.extend(extra);
    vaelab(&args)
}

/// `sweep --backend slurm` in the background, stderr captured, for tests that act on it mid-run.
fn spawn_slurm_sweep(file: &Path, results: &Path) -> Child {
    cmd(env!("CARGO_BIN_EXE_vaelab"))
        .args(["sweep", file.to_str().unwrap(), "--backend", "slurm"])
        .args(["--results-dir", results.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn local_sweep(file: &Path, results: &Path) -> Output {
    vaelab(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ])
}

/// A table sorted by `keys` without the columns that time things (they differ run to run).
fn values(path: &Path, keys: &[&str]) -> DataFrame {
    let df = read(path);
    let timing = [
        "wall_seconds",
        "iw_seconds",
        "estep_seconds",
        "seconds",
        "samples_per_sec",
    ];
    let keep: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .filter(|c| !timing.contains(&c.as_str()))
        .collect();
    df.select(keep)
        .unwrap()
        .sort(keys.to_vec(), SortMultipleOptions::default())
        .unwrap()
}

/// Both tables of two sweep folders are equal, value for value (timing aside).
fn assert_same_tables(a: &Path, b: &Path) {
    let (ra, rb) = (
        values(&a.join("runs.parquet"), &["run_id"]),
        values(&b.join("runs.parquet"), &["run_id"]),
    );
    assert!(ra.equals_missing(&rb), "runs.parquet differ:\n{ra}\n{rb}");
    let keys = ["run_id", "epoch", "split"];
    let (ma, mb) = (
        values(&a.join("metrics.parquet"), &keys),
        values(&b.join("metrics.parquet"), &keys),
    );
    assert!(ma.equals_missing(&mb), "metrics.parquet differ");
}

/// Each run has epochs 1..=epochs of both splits exactly once, and no temp file is left.
fn assert_each_epoch_once(sweep_dir: &Path, epochs: u32) {
    let m = read(&sweep_dir.join("metrics.parquet"));
    let ids = strings(&m, "run_id");
    let splits = strings(&m, "split");
    let ep = common::u32s(&m, "epoch");
    let rows: BTreeSet<(String, u32, String)> = ids
        .iter()
        .cloned()
        .zip(ep.iter().copied())
        .zip(splits.iter().cloned())
        .map(|((a, b), c)| (a, b, c))
        .collect();
    assert_eq!(rows.len(), m.height(), "a duplicated epoch row");
    let runs: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(
        rows.len(),
        runs.len() * epochs as usize * 2,
        "missing epochs"
    );
    for run in std::fs::read_dir(sweep_dir.join("runs")).unwrap().flatten() {
        for f in std::fs::read_dir(run.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "temp file left: {name}");
        }
    }
}

/// Waits for `cond`, failing the test after `secs` seconds.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `epochs_done` of every run folder of a sweep.
fn epochs_done(sweep_dir: &Path) -> Vec<u64> {
    std::fs::read_dir(sweep_dir.join("runs"))
        .map(|d| {
            d.flatten()
                .filter_map(|r| {
                    let m: serde_json::Value = serde_json::from_slice(
                        &std::fs::read(r.path().join("manifest.json")).ok()?,
                    )
                    .ok()?;
                    m["epochs_done"].as_u64()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The stderr log of task 0 of a sweep's first array.
fn first_task_log(sweep_dir: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(sweep_dir.join(format!("slurm/{}/0.err", arrays(sweep_dir)[0])))
}

fn manifest(sweep_dir: &Path, id: &str) -> serde_json::Value {
    let path = sweep_dir.join("runs").join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn smoke_through_slurm_equals_the_local_sweep_and_a_second_submission_submits_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/smoke.toml");
    let (on_slurm, here) = (tmp.path().join("slurm"), tmp.path().join("local"));
    let out = slurm_sweep(&smoke, &on_slurm, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = on_slurm.join("smoke");
    let runs = read(&dir.join("runs.parquet"));
    assert!(strings(&runs, "status").iter().all(|s| s == "done"));

    // One array, one task per run, and Slurm's own record agrees.
    let jobs = arrays(&dir);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let tasks = std::fs::read_to_string(dir.join(format!("slurm/{}/tasks.txt", jobs[0]))).unwrap();
    let tasks: Vec<&str> = tasks.lines().collect();
    let ids: BTreeSet<String> = strings(&runs, "run_id").into_iter().collect();
    assert_eq!(tasks.len(), ids.len());
    assert_eq!(
        tasks.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        ids
    );
    let states = slurm_states(jobs[0]);
    assert_eq!(
        states,
        (0..tasks.len())
            .map(|i| (i, "COMPLETED".to_string()))
            .collect::<Vec<_>>()
    );
    for (i, id) in tasks.iter().enumerate() {
        let m = manifest(&dir, id);
        assert_eq!(m["slurm"]["array_job_id"], jobs[0].to_string());
        assert_eq!(m["slurm"]["array_task_id"], i.to_string());
        assert_eq!(m["slurm"]["restart_count"], 0);
        let log = std::fs::read_to_string(dir.join(format!("slurm/{}/{i}.err", jobs[0]))).unwrap();
        assert!(log.contains(&format!("run {id}")), "{log}");
    }

    // The same sweep on this machine: the same numbers, value for value.
    let out = local_sweep(&smoke, &here);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tables(&dir, &here.join("smoke"));

    // Everything is done: a second submission trains nothing and submits nothing.
    let out = slurm_sweep(&smoke, &on_slurm, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing submitted"),
        "{}",
        stderr(&out)
    );
    assert_eq!(arrays(&dir), jobs);
}

#[test]
fn scancel_mid_run_then_a_rerun_finishes_with_each_epoch_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "cancel", 16, 20000, "model = [\"vae\", \"ae\"]");
    let results = tmp.path().join("results");
    let dir = results.join("cancel");
    let child = spawn_slurm_sweep(&file, &results);
    wait_for("a first epoch", 240, || {
        epochs_done(&dir).iter().any(|&e| e >= 1)
    });
    let job = arrays(&dir)[0];
    let mut c = cmd("scancel");
    c.arg(job.to_string());
    text(c);
    let out = child.wait_with_output().unwrap();
    let msg = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    let runs = read(&dir.join("runs.parquet"));
    let errors = strings(&runs, "error");
    assert!(
        errors.iter().any(|e| e.contains("CANCELLED")),
        "Slurm's reason in the table: {errors:?}"
    );

    let out = slurm_sweep(&file, &results, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(strings(&read(&dir.join("runs.parquet")), "status")
        .iter()
        .all(|s| s == "done"));
    assert_each_epoch_once(&dir, 16);
    let straight = tmp.path().join("straight");
    let out = local_sweep(&file, &straight);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tables(&dir, &straight.join("cancel"));
}

#[test]
fn a_requeued_task_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "requeue",
        16,
        60000,
        "model = [\"vae\"]\n\n[slurm]\nrequeue = true\ntime = \"10:00\"",
    );
    let results = tmp.path().join("results");
    let dir = results.join("requeue");
    let child = spawn_slurm_sweep(&file, &results);
    wait_for("two epochs", 240, || {
        epochs_done(&dir).iter().any(|&e| e >= 2)
    });
    let task = format!("{}_0", arrays(&dir)[0]);
    let mut c = cmd("scontrol");
    c.args(["requeue", &task]);
    text(c);
    // The task stops at SIGTERM, keeping its last epoch, and waits as PENDING (BeginTime).
    let run_dirs = || {
        std::fs::read_dir(dir.join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
    };
    wait_for("the task to stop", 120, || {
        run_dirs().all(|r| {
            std::fs::read_to_string(r.join("manifest.json"))
                .is_ok_and(|m| m.contains("\"interrupted\""))
        })
    });
    let mut starter = Starter::default();
    wait_for("the task to run again", 120, || {
        starter.poke(&task);
        let log = first_task_log(&dir);
        log.is_ok_and(|l| l.contains("(restart 1)"))
    });
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let runs = read(&dir.join("runs.parquet"));
    let id = strings(&runs, "run_id")[0].clone();
    let m = manifest(&dir, &id);
    assert_eq!(m["status"], "done");
    assert_eq!(m["slurm"]["restart_count"], 1, "{m}");
    assert_each_epoch_once(&dir, 16);
    // The second start trained on from the checkpoint, not from epoch 1.
    let log = first_task_log(&dir).unwrap();
    let after = &log[log.find("(restart 1)").unwrap()..];
    let first = after
        .lines()
        .find_map(|l| {
            l.split("epoch ")
                .nth(1)?
                .split('/')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .expect("an epoch after the restart");
    assert!(first > 2, "resumed at epoch {first}:\n{log}");
    // The requeued run's numbers are the uninterrupted run's, in every column but timing.
    let local = tmp.path().join("local");
    let out = local_sweep(&file, &local);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tables(&dir, &local.join("requeue"));
}

#[test]
fn a_diverging_run_fails_alone_and_big_plans_split_under_max_array_size() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "div",
        2,
        500,
        "latent_dim = [2, 3, 4, 5, 6]\n\n[[include]]\nlatent_dim = 7\nlr = 1e6\nlikelihood = \"gaussian-learned\"",
    );
    let results = tmp.path().join("results");
    let out = slurm_sweep(&file, &results, &["--jobs", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("diverged"), "{}", stderr(&out));
    let dir = results.join("div");
    let mut status = strings(&read(&dir.join("runs.parquet")), "status");
    status.sort();
    assert_eq!(status, ["diverged", "done", "done", "done", "done", "done"]);
    // MaxArraySize caps the index: 6 runs need ⌈6 / MaxArraySize⌉ arrays.
    let config = text({
        let mut c = cmd("scontrol");
        c.args(["show", "config"]);
        c
    });
    let max: usize = config
        .lines()
        .find_map(|l| {
            l.strip_prefix("MaxArraySize")?
                .split('=')
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    let jobs = arrays(&dir);
    assert_eq!(
        jobs.len(),
        6usize.div_ceil(max),
        "{jobs:?} with MaxArraySize {max}"
    );
    let tasks: usize = jobs.iter().map(|j| slurm_states(*j).len()).sum();
    assert_eq!(tasks, 6);
}

#[test]
fn bad_slurm_input_is_refused_before_anything_is_submitted() {
    let tmp = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(sweep_file(tmp.path(), "ok", 1, 500, "model = [\"vae\"]")).unwrap();
    let results = tmp.path().join("results");
    let case = |name: &str, extra: &str| {
        write(
            tmp.path(),
            &format!("{name}.toml"),
            &format!("{base}\n{extra}"),
        )
    };

    let f = case("unknown_key", "[slurm]\npartitoin = \"gpu\"\n");
    let out = slurm_sweep(&f, &results, &[]);
    common::assert_refused(
        "unknown_key",
        &out,
        &["partitoin", "partition", "cpus_per_task"],
    );
    assert!(
        stderr(&out).contains("unknown_key.toml:"),
        "file:line:col: {}",
        stderr(&out)
    );

    let f = case("bad_time", "[slurm]\ntime = \"1h\"\n");
    let out = slurm_sweep(&f, &results, &[]);
    common::assert_refused("bad_time", &out, &["`time`", "HH:MM:SS"]);

    // No sbatch on PATH: say what to do, submit nothing.
    let f = case("no_sbatch", "");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = cmd(env!("CARGO_BIN_EXE_vaelab"))
        .args(["sweep", f.to_str().unwrap(), "--backend", "slurm"])
        .args(["--results-dir", results.to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("sbatch"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--backend local"), "{}", stderr(&out));
    assert!(arrays(&results.join("ok")).is_empty());

    let out = slurm_sweep(&f, &results, &["--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(arrays(&results.join("ok")).is_empty());
}

#[test]
fn detach_returns_at_once_and_a_dependent_job_collects_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "away", 2, 500, "model = [\"vae\", \"ae\"]");
    let results = tmp.path().join("results");
    let out = slurm_sweep(&file, &results, &["--detach"]);
    let msg = stderr(&out);
    assert!(out.status.success(), "{msg}");
    let report: u64 = msg
        .split("report job ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no report job in: {msg}"));
    assert!(msg.contains("scancel"), "{msg}");
    let dir = results.join("away");
    wait_for("the report job", 240, || {
        let mut c = cmd("squeue");
        c.args(["-h", "--states=all", "-o", "%T", "-j", &report.to_string()]);
        text(c).trim() == "COMPLETED"
    });
    assert!(dir.join("report.html").exists());
    assert!(strings(&read(&dir.join("runs.parquet")), "status")
        .iter()
        .all(|s| s == "done"));
    let out = vaelab(&["status", dir.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(table.matches("COMPLETED").count(), 2, "{table}");
    assert!(table.contains("2 done"), "{table}");
}

#[test]
fn ctrl_c_while_waiting_detaches_and_report_collects_later() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "ctrlc", 3, 5000, "model = [\"vae\", \"ae\"]");
    let results = tmp.path().join("results");
    let dir = results.join("ctrlc");
    let child = spawn_slurm_sweep(&file, &results);
    wait_for("the submission", 120, || !arrays(&dir).is_empty());
    let out = common::interrupt(child);
    let msg = stderr(&out);
    let job = arrays(&dir)[0];
    assert!(msg.contains(&format!("scancel {job}")), "{msg}");
    // The jobs belong to the cluster: they finish without the submitting process.
    wait_for("the array to end", 240, || {
        slurm_states(job).iter().all(|(_, s)| s == "COMPLETED")
    });
    let out = vaelab(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(strings(&read(&dir.join("runs.parquet")), "status")
        .iter()
        .all(|s| s == "done"));
    assert!(dir.join("report.html").exists());
}

/// Slurm's own time limit, for real: a 1-minute limit with `requeue = true` warns the task
/// (`--signal=B:USR1@25`; Slurm checks limits every 30 s, so it comes 5–35 s in) before it strikes; the task keeps its last epoch, requeues itself and
/// resumes, as often as it takes. The run ends `done`, requeued at least once, each epoch once,
/// with the numbers of an uninterrupted local run.
#[test]
fn the_time_limit_warning_requeues_the_task_until_the_run_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "limit",
        // Longer than the warning's latest (35 s) on fast CPUs: 60 epochs once ended in 33 s.
        120,
        60000,
        "model = [\"vae\"]\n\n[slurm]\nrequeue = true\ntime = \"1\"\nsignal_lead = 25",
    );
    let results = tmp.path().join("results");
    let dir = results.join("limit");
    let mut child = spawn_slurm_sweep(&file, &results);
    let mut starter = Starter::default();
    let deadline = Instant::now() + Duration::from_secs(480);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the run did not finish within 8 minutes"
        );
        if let Some(array) = arrays(&dir).first() {
            starter.poke(&format!("{array}_0"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = read(&dir.join("runs.parquet"));
    let id = strings(&runs, "run_id")[0].clone();
    let m = manifest(&dir, &id);
    assert_eq!(m["status"], "done", "{m}");
    let restarts = m["slurm"]["restart_count"].as_u64().unwrap_or(0);
    let log = first_task_log(&dir).unwrap();
    eprintln!("time limit: the task was requeued {restarts} times");
    assert!(restarts >= 1, "never requeued:\n{log}");
    assert!(log.contains("time limit near"), "{log}");
    assert_each_epoch_once(&dir, 120);
    let local = tmp.path().join("local");
    let out = local_sweep(&file, &local);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_tables(&dir, &local.join("limit"));
}

/// A task that runs into its time limit without `requeue` ends `TIMEOUT`: the run is `failed`
/// with Slurm's reason and keeps its finished epochs, each once, with a checkpoint to resume
/// from (resuming after a Slurm stop is compared with an uninterrupted run in the requeue
/// tests). 400 epochs: no CPU finishes them within the 1-minute limit.
#[test]
fn a_task_past_its_time_limit_is_marked_timeout_and_keeps_its_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(
        tmp.path(),
        "timeout",
        400,
        60000,
        "model = [\"vae\"]\n\n[slurm]\ntime = \"1\"",
    );
    let results = tmp.path().join("results");
    let dir = results.join("timeout");
    let out = slurm_sweep(&file, &results, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let runs = read(&dir.join("runs.parquet"));
    let error = runs
        .column("error")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .map(str::to_string);
    assert_eq!(strings(&runs, "status"), ["failed"]);
    assert!(
        error.as_deref().is_some_and(|e| e.contains("TIMEOUT")),
        "{error:?}"
    );
    let kept = epochs_done(&dir)[0];
    eprintln!("time limit struck after {kept} epochs: {error:?}");
    assert!(kept >= 1, "no epoch kept");
    let id = strings(&runs, "run_id")[0].clone();
    let m = read(&dir.join("runs").join(&id).join("metrics.parquet"));
    let epochs: BTreeSet<u32> = common::u32s(&m, "epoch").into_iter().collect();
    assert_eq!(
        m.height(),
        2 * epochs.len(),
        "each kept epoch's two rows once"
    );
    assert_eq!(epochs, (1..=kept as u32).collect::<BTreeSet<u32>>());
    let ckpt = candle_core::safetensors::load(
        dir.join("runs").join(&id).join("checkpoint.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let counters = ckpt["optim.step_epoch"].to_vec1::<i64>().unwrap();
    assert_eq!(
        counters[1], kept as i64,
        "the checkpoint holds the last kept epoch"
    );
}

/// An ASHA search as a job array prunes the runs a local sweep prunes, with the same recorded
/// decisions: each task judges its run against the runs before it, read from the shared folder.
#[test]
fn slurm_and_local_prune_the_same_runs_with_the_same_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "asha.toml",
        &format!(
            "[sweep]\nname = \"asha\"\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nlatent_dim = 4\nepochs = 4\ntrain_subset = 400\ntest_subset = 100\niw_samples = 5\niw_test_n = 20\n\n[search]\nmethod = \"random\"\ntrials = 6\nseed = 3\nlr = {{ log_uniform = [1e-4, 1e-2] }}\n\n[early_stop]\nrule = \"asha\"\nmin_epochs = 1\nreduction_factor = 2\n"
        ),
    );
    let (on_slurm, here) = (tmp.path().join("slurm"), tmp.path().join("local"));
    let out = slurm_sweep(&file, &on_slurm, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = local_sweep(&file, &here);
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (on_slurm.join("asha"), here.join("asha"));
    assert_same_tables(&a, &b);
    let runs = read(&b.join("runs.parquet"));
    let statuses = strings(&runs, "status");
    assert!(
        statuses.iter().any(|s| s == "pruned") && statuses.iter().any(|s| s == "done"),
        "{statuses:?}"
    );
    for id in strings(&runs, "run_id") {
        assert_eq!(
            manifest(&a, &id)["decisions"],
            manifest(&b, &id)["decisions"],
            "run {id}"
        );
    }
    // Pruned runs are finished: a second submission submits nothing.
    let out = slurm_sweep(&file, &on_slurm, &[]);
    assert!(
        stderr(&out).contains("nothing submitted"),
        "{}",
        stderr(&out)
    );
}
