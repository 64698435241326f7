//! Reliability (RELIABILITY.md): crashes at many points lose nothing and resume exactly, two
//! sweeps on one folder train each run once, bad input is refused clearly before anything
//! trains, a full disk names its cause and damages nothing, and a run is reproducible alone or
//! inside a parallel sweep.

mod common;

use common::{read, stderr, strings, FASHION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn vaelab() -> Command {
    common::require_fashion();
    Command::new(env!("CARGO_BIN_EXE_vaelab"))
}

fn output(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = vaelab();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("vaelab runs")
}

/// A small sweep: VAE and AE × 2 seeds, 3 epochs on Fashion-MNIST subsets.
fn sweep_file(dir: &Path, name: &str, jobs: usize) -> PathBuf {
    sweep_file_with(dir, name, jobs, 300)
}

/// As [`sweep_file`], training on the first `train` images.
fn sweep_file_with(dir: &Path, name: &str, jobs: usize, train: usize) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[sweep]\nname = \"{name}\"\nseeds = [0, 1]\njobs = {jobs}\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nlatent_dim = 3\nepochs = 3\ntrain_subset = {train}\ntest_subset = 100\niw_samples = 5\niw_test_n = 20\n\n[grid]\nmodel = [\"vae\", \"ae\"]\n"
        ),
    )
    .unwrap();
    p
}

fn sweep_args<'a>(file: &'a Path, results: &'a Path) -> Vec<&'a str> {
    vec![
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ]
}

/// Every metric of every run, keyed by (run, epoch, split); timing columns left out.
type Curves = BTreeMap<(String, u32, String), Vec<Option<f64>>>;

/// Checks a finished sweep folder and returns its metrics: every run done, every table
/// readable, epochs 1..=3 of both splits exactly once per run, checkpoints loadable at epoch 3.
fn check_finished(sweep_dir: &Path) -> Curves {
    let runs = read(&sweep_dir.join("runs.parquet"));
    assert_eq!(runs.height(), 4);
    assert!(
        strings(&runs, "status").iter().all(|s| s == "done"),
        "{:?}",
        strings(&runs, "status")
    );
    let table = read(&sweep_dir.join("metrics.parquet"));
    assert_eq!(table.height(), 4 * 3 * 2, "sweep metrics rows");
    let mut curves = Curves::new();
    for id in strings(&runs, "run_id") {
        let dir = sweep_dir.join("runs").join(&id);
        let df = read(&dir.join("metrics.parquet"));
        let summary = read(&dir.join("summary.parquet"));
        // A resumed run's wall time covers every epoch it kept, not only its last attempt.
        let wall = summary
            .column("wall_seconds")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        let epoch_seconds: f64 = df
            .column("seconds")
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .flatten()
            .sum();
        assert!(
            wall >= epoch_seconds,
            "{id}: wall {wall} < its epochs' {epoch_seconds}"
        );
        let epochs: Vec<u32> = df
            .column("epoch")
            .unwrap()
            .u32()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let splits = strings(&df, "split");
        let keys: BTreeSet<(u32, String)> = epochs.iter().copied().zip(splits.clone()).collect();
        assert_eq!(keys.len(), df.height(), "{id}: duplicate rows");
        let want: BTreeSet<(u32, String)> = (1..=3)
            .flat_map(|e| [(e, "train".to_string()), (e, "test".to_string())])
            .collect();
        assert_eq!(keys, want, "{id}: epochs");
        let cols: Vec<Vec<Option<f64>>> = ["loss", "neg_elbo", "recon", "kl"]
            .iter()
            .map(|c| df.column(c).unwrap().f64().unwrap().iter().collect())
            .collect();
        for (i, (e, s)) in epochs.iter().zip(&splits).enumerate() {
            curves.insert(
                (id.clone(), *e, s.clone()),
                cols.iter().map(|c| c[i]).collect(),
            );
        }
        let ckpt = candle_core::safetensors::load(
            dir.join("checkpoint.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{id}: checkpoint unreadable: {e}"));
        let counters = ckpt["optim.step_epoch"].to_vec1::<i64>().unwrap();
        assert_eq!(counters[1], 3, "{id}: checkpoint epoch");
    }
    curves
}

#[test]
fn crashes_at_many_points_lose_nothing_and_resume_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "crash", 1);

    // The reference: the same sweep, never interrupted.
    let reference_dir = tmp.path().join("reference");
    let out = output(&sweep_args(&file, &reference_dir), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = check_finished(&reference_dir.join("crash"));

    // A: abort at the Nth atomic write of each new process, N = 1, 2, 3, …: after the temp file
    // is filled, before its rename, which lands in checkpoints, metrics, manifests, the sweep
    // tables and the report alike. Each process gets one write further than the last.
    let aborted = tmp.path().join("aborted");
    let mut kill_points = 0;
    let mut finished = false;
    for n in 1..=300 {
        let at = n.to_string();
        let out = output(
            &sweep_args(&file, &aborted),
            &[("VAELAB_FAULT_ABORT_AT", &at)],
        );
        if out.status.success() {
            finished = true;
            break;
        }
        assert!(
            stderr(&out).contains("injected crash"),
            "write {n}: failed for another reason: {}",
            stderr(&out)
        );
        kill_points += 1;
    }
    assert!(
        finished,
        "the sweep never finished between injected crashes"
    );
    let aborts = kill_points;
    let after_aborts = check_finished(&aborted.join("crash"));
    assert_eq!(after_aborts, reference, "metrics after injected crashes");

    // B: SIGKILL at pseudo-random times (deterministic, so a failure reproduces), then finish.
    let results = tmp.path().join("results");
    for delay_ms in [150u64, 420, 700, 260, 900, 530, 1100, 350] {
        let mut child = vaelab()
            .args(sweep_args(&file, &results))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kill_points += 1;
        }
        child.wait().unwrap();
    }
    let out = output(&sweep_args(&file, &results), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!(
        "kill points survived: {kill_points} ({aborts} injected aborts at successive writes, {} SIGKILLs)",
        kill_points - aborts
    );
    assert!(
        kill_points >= 20,
        "only {kill_points} kill points were tried"
    );

    let resumed = check_finished(&results.join("crash"));
    // Temp files of killed writers are cleaned when a run folder is next locked.
    for dir in [&aborted, &results] {
        for run in std::fs::read_dir(dir.join("crash").join("runs")).unwrap() {
            for f in std::fs::read_dir(run.unwrap().path()).unwrap() {
                let name = f.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(".tmp-"), "left behind: {name}");
            }
        }
    }
    // Same seed, same draws: a resumed run's metrics equal the uninterrupted run's, bit for bit.
    assert_eq!(resumed, reference);
}

#[test]
fn ctrl_c_stops_marks_runs_interrupted_and_a_rerun_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that Ctrl-C lands mid-sweep: 3 epochs of 20000 images per run.
    let file = sweep_file_with(tmp.path(), "sigint", 1, 20000);
    let results = tmp.path().join("results");
    let child = vaelab()
        .args(sweep_args(&file, &results))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first epoch on disk, then send SIGINT, as Ctrl-C in a terminal does.
    let runs = results.join("sigint").join("runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !std::fs::read_dir(&runs).is_ok_and(|d| {
        d.flatten()
            .any(|r| r.path().join("checkpoint.safetensors").exists())
    }) {
        assert!(std::time::Instant::now() < deadline, "no epoch finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = common::interrupt(child);
    let msg = stderr(&out);
    assert!(msg.contains("interrupted"), "{msg}");
    let table = read(&results.join("sigint").join("runs.parquet"));
    let statuses = strings(&table, "status");
    // The run in progress is `interrupted`; one not started yet stays `pending`.
    assert!(!statuses.iter().all(|s| s == "done"), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| ["done", "interrupted", "pending"].contains(&s.as_str())),
        "{statuses:?}"
    );
    // Rerun: everything finishes, every epoch once.
    let out = output(&sweep_args(&file, &results), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    check_finished(&results.join("sigint"));
}

#[test]
fn two_sweeps_at_once_train_each_run_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Runs long enough (about a second each) that the two processes overlap.
    let file = sweep_file_with(tmp.path(), "twice", 1, 40000);
    let results = tmp.path().join("results");
    let spawn = || {
        vaelab()
            .args(sweep_args(&file, &results))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let sweep_dir = results.join("twice");
    let runs = read(&sweep_dir.join("runs.parquet"));
    let ids = strings(&runs, "run_id");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 4, "{ids:?}");
    // Each run was trained by exactly one of the two processes: "<id> …: done" in one log.
    for id in &ids {
        let trained = [&a, &b]
            .iter()
            .map(|o| {
                stderr(o)
                    .lines()
                    .filter(|l| l.contains(id.as_str()) && l.ends_with(": done"))
                    .count()
            })
            .sum::<usize>();
        assert_eq!(
            trained,
            1,
            "run {id} trained {trained} times:\n{}\n---\n{}",
            stderr(&a),
            stderr(&b)
        );
    }
    check_finished(&sweep_dir);
}

#[test]
fn a_full_disk_names_the_cause_and_damages_nothing_finished() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "full", 1);
    let results = tmp.path().join("results");
    // The 30th write of the process fails as a full disk would: past the first run (about 15
    // writes with its table rewrite), inside the second.
    let out = output(
        &sweep_args(&file, &results),
        &[("VAELAB_FAULT_ENOSPC_AT", "30")],
    );
    let msg = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(
        msg.contains(results.to_str().unwrap()),
        "the error names no path: {msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    let sweep_dir = results.join("full");
    let runs = read(&sweep_dir.join("runs.parquet"));
    let statuses = strings(&runs, "status");
    let done = statuses.iter().filter(|s| *s == "done").count();
    assert!((1..4).contains(&done), "{statuses:?}");
    for (id, status) in strings(&runs, "run_id").iter().zip(&statuses) {
        if status == "done" {
            let dir = sweep_dir.join("runs").join(id);
            assert_eq!(read(&dir.join("metrics.parquet")).height(), 6, "{id}");
        }
    }
    // Space back: the rerun finishes everything.
    let out = output(&sweep_args(&file, &results), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    check_finished(&sweep_dir);
}

#[test]
fn a_run_gives_identical_metrics_alone_and_inside_a_parallel_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let file = sweep_file(tmp.path(), "repro", 2);
    let results = tmp.path().join("results");
    let out = output(&sweep_args(&file, &results), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let in_sweep = check_finished(&results.join("repro"));

    // The VAE with seed 1, alone, with both cores for itself.
    let run = tmp.path().join("alone.toml");
    std::fs::write(
        &run,
        format!("name = \"alone\"\nseed = 1\ndata_dir = \"{FASHION}\"\nhidden = [16]\nlatent_dim = 3\nepochs = 3\ntrain_subset = 300\ntest_subset = 100\niw_samples = 5\niw_test_n = 20\n"),
    )
    .unwrap();
    let out = output(
        &[
            "run",
            run.to_str().unwrap(),
            "--results-dir",
            results.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let df = read(&results.join("alone").join("metrics.parquet"));
    let id = strings(&df, "run_id")[0].clone();
    let loss: Vec<Option<f64>> = df.column("loss").unwrap().f64().unwrap().iter().collect();
    let epochs: Vec<u32> = df
        .column("epoch")
        .unwrap()
        .u32()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let splits = strings(&df, "split");
    assert_eq!(df.height(), 6);
    for i in 0..df.height() {
        let swept = &in_sweep[&(id.clone(), epochs[i], splits[i].clone())];
        assert_eq!(
            loss[i], swept[0],
            "epoch {} {}: alone vs in the sweep",
            epochs[i], splits[i]
        );
    }
}

#[test]
fn bad_input_is_refused_before_training_naming_file_key_and_what_is_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = |name: &str| tmp.path().join(name).display().to_string();
    common::idx_folder(&tmp.path().join("mismatch"), (20, 28), (10, 20));
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    common::idx_folder(&tmp.path().join("magic"), (20, 28), (10, 28));
    let magic = tmp.path().join("magic").join("t10k-images-idx3-ubyte");
    let mut bytes = std::fs::read(&magic).unwrap();
    bytes[2] = 0x0d; // float64 elements: not an image file
    std::fs::write(&magic, bytes).unwrap();
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "malformed",
            "latent_dim = [3\n".into(),
            vec!["TOML parse error".into(), "line 2".into()],
        ),
        (
            "latent_big",
            "latent_dim = 2000\n".into(),
            vec!["`latent_dim`".into(), "from 1 to 1024".into()],
        ),
        (
            "lr_zero",
            "lr = 0.0\n".into(),
            vec!["`lr`".into(), "> 0".into()],
        ),
        (
            "batch_zero",
            "batch_size = 0\n".into(),
            vec!["`batch_size`".into(), "from 1".into()],
        ),
        (
            "epochs_zero",
            "epochs = 0\n".into(),
            vec!["`epochs`".into(), "from 1".into()],
        ),
        (
            "sigma_zero",
            "likelihood = \"gaussian\"\nsigma = 0.0\n".into(),
            vec!["`sigma`".into(), "> 0".into()],
        ),
        (
            "iw_zero",
            "iw_samples = 0\n".into(),
            vec!["`iw_samples`".into(), "from 1".into()],
        ),
        (
            "bad_model",
            "model = \"gan\"\n".into(),
            vec!["gan".into(), "vae".into(), "ae".into()],
        ),
        (
            "empty_dir",
            format!("data_dir = \"{}\"\n", data("empty")),
            vec!["`data_dir`".into(), data("empty")],
        ),
        (
            "wrong_magic",
            format!("data_dir = \"{}\"\n", data("magic")),
            vec![
                "`data_dir`".into(),
                "t10k-images-idx3-ubyte".into(),
                "magic".into(),
            ],
        ),
        (
            "sizes_disagree",
            format!("data_dir = \"{}\"\n", data("mismatch")),
            vec!["`data_dir`".into(), "disagree".into()],
        ),
        (
            "dotdot",
            "name = \"../escape\"\n".into(),
            vec!["`name`".into(), "inside the results folder".into()],
        ),
        (
            "absolute",
            "name = \"/tmp/escape\"\n".into(),
            vec!["`name`".into(), "inside the results folder".into()],
        ),
        (
            "separator",
            "name = \"a/b\"\n".into(),
            vec!["`name`".into(), "inside the results folder".into()],
        ),
    ];
    let results = tmp.path().join("results");
    for (case, body, needles) in &cases {
        let file = tmp.path().join(format!("{case}.toml"));
        // A name line first unless the case sets its own.
        let text = if body.starts_with("name") {
            body.clone()
        } else {
            format!("name = \"{case}\"\n{body}")
        };
        std::fs::write(&file, text).unwrap();
        let out = output(
            &[
                "run",
                file.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
            ],
            &[],
        );
        common::assert_refused(case, &out, needles);
        assert!(
            !results.exists() || std::fs::read_dir(&results).unwrap().count() == 0,
            "{case}: something was written"
        );
    }
    assert!(!tmp.path().join("escape").exists() && !Path::new("/tmp/escape").exists());

    // A results folder that cannot be made: a file in the way, and a read-only filesystem.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, format!("name = \"good\"\ndata_dir = \"{FASHION}\"\nepochs = 1\ntrain_subset = 100\ntest_subset = 50\niw_test_n = 0\n")).unwrap();
    for dir in [
        blocker.join("results"),
        PathBuf::from("/proc/vaelab-results"),
    ] {
        let out = output(
            &[
                "run",
                good.to_str().unwrap(),
                "--results-dir",
                dir.to_str().unwrap(),
            ],
            &[],
        );
        let msg = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {msg}", dir.display());
        assert!(
            msg.contains(dir.to_str().unwrap()) && msg.contains("--results-dir"),
            "{msg}"
        );
    }
}
