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

/// Columns that time a run: the only ones a resumed sweep may change.
const TIMING: &[&str] = &[
    "seconds",
    "samples_per_sec",
    "wall_seconds",
    "iw_seconds",
    "estep_seconds",
];

/// A finished sweep's two tables, every column but timing, sorted: what a resumed sweep must
/// reproduce bit for bit (IWAE, gap split, MI and bits/dim included).
fn tables_without_timing(
    sweep_dir: &Path,
) -> (polars::prelude::DataFrame, polars::prelude::DataFrame) {
    let runs = read(&sweep_dir.join("runs.parquet"))
        .drop_many(TIMING.iter().copied())
        .sort(["run_id"], Default::default())
        .unwrap();
    let metrics = read(&sweep_dir.join("metrics.parquet"))
        .drop_many(TIMING.iter().copied())
        .sort(["run_id", "epoch", "split"], Default::default())
        .unwrap();
    (runs, metrics)
}

/// Asserts a resumed sweep's tables equal the uninterrupted sweep's in every metric column.
fn assert_same_tables(
    sweep_dir: &Path,
    reference: &(polars::prelude::DataFrame, polars::prelude::DataFrame),
    what: &str,
) {
    let got = tables_without_timing(sweep_dir);
    for (name, a, b) in [
        ("runs.parquet", &got.0, &reference.0),
        ("metrics.parquet", &got.1, &reference.1),
    ] {
        assert_eq!(
            a.get_column_names(),
            b.get_column_names(),
            "{what}: {name} columns"
        );
        assert!(
            a.equals_missing(b),
            "{what}: {name} differs from the uninterrupted sweep:\n{a}\n{b}"
        );
    }
}

/// Where one crash struck, from the crashed process's own message and the folder it left.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct KillPoint {
    /// The kind of file being written (a run's metrics and the sweep's are told apart).
    kind: String,
    /// The struck file, relative to the sweep folder.
    file: String,
    /// The number of the struck write in its process (0 for a signal).
    write: usize,
    /// Epochs the struck run had on disk (its manifest), for run files.
    epoch: Option<usize>,
    /// How the process died and in which attempt of the sweep.
    how: String,
}

/// The kinds every crash test must strike at least three times.
const KINDS: &[&str] = &[
    "sweep.toml",
    "config.toml",
    "manifest.json",
    "metrics.parquet",
    "checkpoint.safetensors",
    "estep.parquet",
    "summary.parquet",
    "runs.parquet",
    "metrics.parquet (sweep)",
    "figure",
    "report.html",
];

/// The file kind and the run's epochs on disk, for a path a crash named.
fn kind_of(sweep_dir: &Path, path: &Path) -> (String, String, Option<usize>) {
    let rel = path
        .strip_prefix(sweep_dir)
        .unwrap_or(path)
        .display()
        .to_string();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let in_run = path
        .parent()
        .and_then(|p| p.parent())
        .is_some_and(|p| p.ends_with("runs"));
    let kind = match name.as_str() {
        _ if name.ends_with(".png") || name.ends_with(".svg") => "figure".to_string(),
        "metrics.parquet" if !in_run => "metrics.parquet (sweep)".to_string(),
        _ => name,
    };
    let epoch = in_run.then(|| {
        let m = path.parent().unwrap().join("manifest.json");
        std::fs::read(m)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["epochs_done"].as_u64())
            .unwrap_or(0) as usize
    });
    (kind, rel, epoch)
}

/// Whether a sweep folder still has work to do: a run not done, or a table or the report
/// missing.
fn unfinished(sweep_dir: &Path) -> bool {
    let runs = sweep_dir.join("runs");
    let manifests_done = std::fs::read_dir(&runs).is_ok_and(|d| {
        let dirs: Vec<_> = d.flatten().collect();
        dirs.len() == 2
            && dirs.iter().all(|r| {
                std::fs::read_to_string(r.path().join("manifest.json"))
                    .is_ok_and(|m| m.contains("\"status\": \"done\""))
            })
    });
    !(manifests_done
        && sweep_dir.join("runs.parquet").exists()
        && sweep_dir.join("metrics.parquet").exists()
        && sweep_dir.join("report.html").exists())
}

/// The write an injected crash names in its message: "... at write N: PATH".
fn struck(out: &Output) -> Option<(usize, PathBuf)> {
    let err = stderr(out);
    let line = err.lines().find(|l| l.contains("injected crash"))?;
    let (head, path) = line.split_once(": ")?.1.split_once(": ")?;
    let n = head.rsplit(' ').next()?.parse().ok()?;
    Some((n, PathBuf::from(path)))
}

/// The seed of the random kill moments: printed, and replayed with `VAELAB_KILL_SEED`.
fn kill_seed() -> u64 {
    let seed = std::env::var("VAELAB_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_202);
    eprintln!("kill seed {seed} (replay: VAELAB_KILL_SEED={seed})");
    seed
}

/// splitmix64, for the kill moments.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A VAE and an AE, 3 epochs each, one seed: every kind of file a sweep writes.
fn crash_sweep_file(dir: &Path) -> PathBuf {
    let p = dir.join("crash.toml");
    std::fs::write(
        &p,
        format!(
            "[sweep]\nname = \"crash\"\nseeds = [0]\njobs = 1\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nlatent_dim = 3\nepochs = 3\ntrain_subset = 300\ntest_subset = 100\niw_samples = 5\niw_test_n = 20\n\n[grid]\nmodel = [\"vae\", \"ae\"]\n"
        ),
    )
    .unwrap();
    p
}

fn sweep_1_thread(file: &Path, results: &Path, envs: &[(&str, &str)]) -> Output {
    let mut all = vec![("RAYON_NUM_THREADS", "1")];
    all.extend_from_slice(envs);
    output(&sweep_args(file, results), &all)
}

#[test]
fn crashes_at_every_write_and_at_random_moments_lose_nothing_and_resume_exactly() {
    let seed = kill_seed();
    let tmp = tempfile::tempdir().unwrap();
    let file = crash_sweep_file(tmp.path());

    // The reference: the same sweep, never interrupted, with every write it makes listed.
    let reference_dir = tmp.path().join("reference");
    let started = std::time::Instant::now();
    let out = sweep_1_thread(&file, &reference_dir, &[("VAELAB_FAULT_TRACE", "1")]);
    let reference_wall = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let writes = stderr(&out)
        .lines()
        .filter(|l| l.starts_with("vaelab: write "))
        .count();
    let reference = tables_without_timing(&reference_dir.join("crash"));
    assert!(writes >= 40, "{writes} writes in the reference sweep");

    // A: for every write n of a fresh sweep, a process dies at it (temp file filled, rename not
    // done); a second process resumes and dies at the first write of one kind (the kinds in
    // turn); a third finishes. Each finished sweep must equal the reference.
    let points = std::sync::Mutex::new(Vec::<KillPoint>::new());
    let lanes = 2;
    std::thread::scope(|scope| {
        for lane in 0..lanes {
            let (file, reference, points, tmp) = (&file, &reference, &points, tmp.path());
            scope.spawn(move || {
                for n in (1..=writes).filter(|n| n % lanes == lane) {
                    let results = tmp.join(format!("abort-{n}"));
                    let sweep_dir = results.join("crash");
                    let at = n.to_string();
                    let first = sweep_1_thread(file, &results, &[("VAELAB_FAULT_ABORT_AT", &at)]);
                    let (write, path) = struck(&first).unwrap_or_else(|| {
                        panic!("write {n}: no injected crash: {}", stderr(&first))
                    });
                    assert_eq!(write, n, "{}", stderr(&first));
                    assert!(
                        unfinished(&sweep_dir),
                        "write {n}: nothing left to do after the crash"
                    );
                    let (kind, rel, epoch) = kind_of(&sweep_dir, &path);
                    let mut mine = vec![KillPoint {
                        kind,
                        file: rel,
                        write,
                        epoch,
                        how: "abort, fresh sweep".into(),
                    }];
                    // The sweep's metrics.parquet shares its name with the runs' (written
                    // first), so the fresh sweeps' three table rewrites strike it instead.
                    let targets: Vec<&str> = KINDS
                        .iter()
                        .filter(|k| **k != "metrics.parquet (sweep)")
                        .map(|k| if *k == "figure" { ".png" } else { k })
                        .collect();
                    let target = format!("{}:1", targets[n % targets.len()]);
                    let second =
                        sweep_1_thread(file, &results, &[("VAELAB_FAULT_ABORT_AT", &target)]);
                    if let Some((write, path)) = struck(&second) {
                        let (kind, rel, epoch) = kind_of(&sweep_dir, &path);
                        assert!(
                            unfinished(&sweep_dir),
                            "resume of write {n}: nothing left to do"
                        );
                        mine.push(KillPoint {
                            kind,
                            file: rel,
                            write,
                            epoch,
                            how: format!("abort at {target}, resumed after write {n}"),
                        });
                    } else {
                        assert!(
                            second.status.success(),
                            "resume of write {n}: {}",
                            stderr(&second)
                        );
                    }
                    let last = sweep_1_thread(file, &results, &[]);
                    assert!(
                        last.status.success(),
                        "write {n}: the final resume failed: {}",
                        stderr(&last)
                    );
                    check_finished_two(&sweep_dir);
                    assert_same_tables(&sweep_dir, reference, &format!("crash at write {n}"));
                    points.lock().unwrap().extend(mine);
                    let _ = std::fs::remove_dir_all(&results);
                }
            });
        }
    });
    let mut points = points.into_inner().unwrap();

    // B: SIGKILL and Ctrl-C at moments drawn from the seed over the reference's wall time; a
    // kill counts when it left work undone, and the sweep is resumed to the end every time.
    // The span is a warm sweep's wall time (the first one also read the data from disk).
    let warm = tmp.path().join("warm");
    let started = std::time::Instant::now();
    assert!(sweep_1_thread(&file, &warm, &[]).status.success());
    let span = (started.elapsed().as_millis() as u64).max(100);
    eprintln!(
        "signals over 0–{span} ms (cold reference: {} ms)",
        reference_wall.as_millis()
    );
    let mut state = seed;
    for k in 0..15 {
        let results = tmp.path().join(format!("signal-{k}"));
        let sweep_dir = results.join("crash");
        let delay = Duration::from_millis(20 + splitmix(&mut state) % span);
        let mut child = vaelab()
            .args(sweep_args(&file, &results))
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let ctrl_c = k % 3 == 2;
        if child.try_wait().unwrap().is_none() {
            if ctrl_c {
                let _ = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
            } else {
                child.kill().unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let how = if ctrl_c { "Ctrl-C" } else { "SIGKILL" };
        let counted = unfinished(&sweep_dir) && !out.status.success();
        eprintln!(
            "{how} after {} ms: {}",
            delay.as_millis(),
            if counted {
                "work left undone"
            } else {
                "the sweep had finished"
            }
        );
        if counted {
            points.push(KillPoint {
                kind: how.into(),
                file: format!("{how} after {} ms", delay.as_millis()),
                write: 0,
                epoch: None,
                how: how.into(),
            });
        }
        let last = sweep_1_thread(&file, &results, &[]);
        assert!(
            last.status.success(),
            "{how} after {delay:?}: {}",
            stderr(&last)
        );
        check_finished_two(&sweep_dir);
        assert_same_tables(&sweep_dir, &reference, &format!("{how} after {delay:?}"));
    }

    points.sort();
    let distinct: BTreeSet<&KillPoint> = points.iter().collect();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &distinct {
        *by_kind.entry(p.kind.as_str()).or_default() += 1;
    }
    eprintln!(
        "kill points by file kind ({} distinct, seed {seed}):",
        distinct.len()
    );
    eprintln!("| file kind | kill points |\n|---|---|");
    for (kind, n) in &by_kind {
        eprintln!("| {kind} | {n} |");
    }
    assert!(
        distinct.len() >= 50,
        "{} distinct kill points",
        distinct.len()
    );
    for how in ["SIGKILL", "Ctrl-C"] {
        assert!(
            by_kind.contains_key(how),
            "no {how} left work undone: {by_kind:?}"
        );
    }
    for kind in KINDS {
        let n = by_kind.get(kind).copied().unwrap_or(0);
        assert!(n >= 3, "{kind}: struck {n} times; {by_kind:?}");
    }
}

/// Every run of the two-run crash sweep done, each epoch once, no temp file left in a run.
fn check_finished_two(sweep_dir: &Path) {
    let runs = read(&sweep_dir.join("runs.parquet"));
    assert_eq!(runs.height(), 2);
    assert!(
        strings(&runs, "status").iter().all(|s| s == "done"),
        "{:?}",
        strings(&runs, "status")
    );
    for id in strings(&runs, "run_id") {
        let dir = sweep_dir.join("runs").join(&id);
        let df = read(&dir.join("metrics.parquet"));
        assert_eq!(df.height(), 3 * 2, "{id}: each epoch's two rows once");
        for f in std::fs::read_dir(&dir).unwrap() {
            let name = f.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "{id}: left behind: {name}");
        }
    }
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

/// Copies a folder tree (results folders hold files and folders only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// What vaelab reads back from `results/` — the sweep tables, a run's summary, metrics,
/// manifest and checkpoint — truncated, emptied, replaced by a foreign file or by a valid file
/// of another schema: `ls`, `show`, `compare`, `report` and a resumed `sweep` never panic, and
/// every one that fails names the file.
#[test]
fn damaged_results_files_never_panic_and_failures_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = crash_sweep_file(tmp.path());
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("epochs = 3", "epochs = 1");
    std::fs::write(&file, text).unwrap();
    let template = tmp.path().join("template");
    let out = sweep_1_thread(&file, &template, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sweep = template.join("crash");
    let runs = strings(&read(&sweep.join("runs.parquet")), "run_id");
    let vae = runs
        .iter()
        .find(|id| sweep.join("runs").join(id).join("estep.parquet").exists())
        .unwrap()
        .clone();
    let foreign_png = std::fs::read_dir(sweep.join("figures"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    let other_schema = sweep.join("runs").join(&vae).join("estep.parquet");
    let targets = [
        "runs.parquet".to_string(),
        "metrics.parquet".to_string(),
        format!("runs/{vae}/summary.parquet"),
        format!("runs/{vae}/metrics.parquet"),
        format!("runs/{vae}/manifest.json"),
        format!("runs/{vae}/checkpoint.safetensors"),
    ];
    let mut tried = 0;
    let mut failures_named = 0;
    for target in &targets {
        for damage in ["truncated", "empty", "foreign", "other schema"] {
            let results = tmp.path().join(format!("case-{tried}"));
            copy_tree(&template, &results);
            let dir = results.join("crash");
            let path = dir.join(target);
            let bytes = std::fs::read(&path).unwrap();
            let damaged = match damage {
                "truncated" => bytes[..bytes.len() / 2].to_vec(),
                "empty" => Vec::new(),
                "foreign" => std::fs::read(&foreign_png).unwrap(),
                _ if target.ends_with(".json") => b"{\"id\": 7, \"status\": [\"done\"]}".to_vec(),
                _ => std::fs::read(&other_schema).unwrap(),
            };
            std::fs::write(&path, damaged).unwrap();
            let (d, r) = (dir.to_str().unwrap(), results.to_str().unwrap());
            let commands: Vec<Vec<&str>> = vec![
                vec!["ls", d],
                vec!["ls", r],
                vec!["show", &vae[..8], "--results-dir", r],
                vec!["compare", d, "--by", "model"],
                vec!["report", d],
                sweep_args(&file, &results),
            ];
            for args in commands {
                let out = output(&args, &[("RAYON_NUM_THREADS", "1")]);
                let err = stderr(&out);
                let what = format!("{target} {damage}, vaelab {}", args.join(" "));
                assert!(
                    matches!(out.status.code(), Some(0..=2)) && !err.contains("panicked"),
                    "{what}: {:?}\n{err}",
                    out.status
                );
                if !out.status.success() {
                    let name = Path::new(target).file_name().unwrap().to_string_lossy();
                    assert!(
                        err.contains(name.as_ref()),
                        "{what}: the error does not name {name}:\n{err}"
                    );
                    failures_named += 1;
                }
            }
            tried += 1;
        }
    }
    eprintln!("{tried} damaged results folders × 6 commands: no panic; {failures_named} failures, each naming its file");
}
