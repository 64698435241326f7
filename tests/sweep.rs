//! End-to-end tests of `vaelab plan` / `vaelab sweep` on Fashion-MNIST subsets.

mod common;

use common::{read, stderr, strings, FASHION};

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn vaelab(args: &[&str]) -> Command {
    common::require_fashion();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vaelab"));
    cmd.args(args);
    cmd
}

fn run(args: &[&str]) -> Output {
    vaelab(args).output().expect("vaelab runs")
}

/// `vaelab sweep FILE --results-dir RESULTS`, to its end.
fn sweep(file: &Path, results: &Path) -> Output {
    run(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ])
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The run ids of `vaelab plan`'s table: the first column of its rows, below the header and
/// above the summary lines.
fn planned_ids(plan: &str) -> Vec<String> {
    plan.lines()
        .skip(1)
        .take_while(|l| !l.starts_with("sweep "))
        .map(|l| l[..12].to_string())
        .collect()
}

/// A small grid: VAE and AE × 2 latent sizes × 2 betas × 2 seeds; the AE ignores β.
fn grid(epochs: usize, train: usize) -> String {
    format!(
        "[sweep]\nname = \"tiny\"\nseeds = [0, 1]\njobs = 2\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [32]\nepochs = {epochs}\ntrain_subset = {train}\ntest_subset = 200\niw_samples = 10\niw_test_n = 20\n\n[grid]\nmodel = [\"vae\", \"ae\"]\nlatent_dim = [2, 4]\nbeta = [1.0, 2.0]\n"
    )
}

#[test]
fn plan_sweep_and_a_second_invocation_that_trains_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "tiny.toml", &grid(2, 600));
    let plan = run(&["plan", file.to_str().unwrap()]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let out = String::from_utf8_lossy(&plan.stdout).into_owned();
    // VAE: 2 latents × 2 betas × 2 seeds = 8; AE: 2 latents × 2 seeds = 4 (β merged).
    assert!(out.contains("12 runs (4 identical runs merged"), "{out}");
    let planned = planned_ids(&out);
    assert_eq!(planned.len(), 12);

    let results = tmp.path().join("results");
    let r = results.to_str().unwrap();
    let first = run(&["sweep", file.to_str().unwrap(), "--results-dir", r]);
    assert!(first.status.success(), "{}", stderr(&first));
    let runs = read(&results.join("tiny/runs.parquet"));
    assert_eq!(runs.height(), 12);
    assert!(strings(&runs, "status").iter().all(|s| s == "done"));
    let mut ids = strings(&runs, "run_id");
    ids.sort();
    let mut want = planned.clone();
    want.sort();
    assert_eq!(ids, want, "the runs trained are the runs planned");
    let metrics = read(&results.join("tiny/metrics.parquet"));
    assert_eq!(
        metrics.height(),
        12 * 2 * 2,
        "12 runs × 2 epochs × 2 splits"
    );
    assert!(metrics.column("latent_dim").is_ok() && metrics.column("model").is_ok());

    let manifest = results
        .join("tiny/runs")
        .join(&ids[0])
        .join("manifest.json");
    let before = std::fs::read(&manifest).unwrap();
    let second = run(&["sweep", file.to_str().unwrap(), "--results-dir", r]);
    assert!(second.status.success());
    assert!(
        stderr(&second).contains("0 trained, 12 already done"),
        "{}",
        stderr(&second)
    );
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        before,
        "a done run is not touched"
    );

    // Grouping by model and latent size alone would average β = 1 with β = 2: refused.
    let sweep_dir = results.join("tiny");
    let mixed = run(&[
        "compare",
        sweep_dir.to_str().unwrap(),
        "--by",
        "model,latent_dim",
    ]);
    assert_eq!(mixed.status.code(), Some(2), "{}", stderr(&mixed));
    assert!(
        stderr(&mixed).contains("differ in beta (1.0, 2.0)")
            && stderr(&mixed).contains("--by model,latent_dim,beta"),
        "{}",
        stderr(&mixed)
    );
    // Without --by, the suggested command lists just the keys to group by.
    let bare = run(&["compare", sweep_dir.to_str().unwrap()]);
    assert_eq!(bare.status.code(), Some(2), "{}", stderr(&bare));
    assert!(stderr(&bare).contains("(--by model,"), "{}", stderr(&bare));
    let compare = run(&[
        "compare",
        sweep_dir.to_str().unwrap(),
        "--by",
        "model,latent_dim,beta",
    ]);
    assert!(compare.status.success(), "{}", stderr(&compare));
    let table = String::from_utf8_lossy(&compare.stdout).into_owned();
    // VAE: 2 latents × 2 betas; AE: 2 latents (β means nothing to it).
    assert_eq!(table.lines().count(), 7, "header + 6 groups: {table}");
    check_compare_values(&table, &runs);
}

/// Each printed mean ± std equals the mean and sample std of the group's seeds, computed here
/// by hand from `runs.parquet` (not by a polars group-by, as `compare` does).
fn check_compare_values(table: &str, runs: &DataFrame) {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..4],
        ["model", "latent_dim", "beta", "runs"],
        "{table}"
    );
    let f64s = |c: &str| -> Vec<Option<f64>> {
        runs.column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .iter()
            .collect()
    };
    let (model, latent, beta) = (strings(runs, "model"), f64s("latent_dim"), f64s("beta"));
    let mut checked = 0;
    for line in lines {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let members: Vec<usize> = (0..runs.height())
            .filter(|&i| {
                model[i] == toks[0]
                    && latent[i] == toks[1].parse().ok()
                    && beta[i].map_or("-".to_string(), |b| format!("{b:.2}")) == toks[2]
            })
            .collect();
        assert_eq!(toks[3], members.len().to_string(), "{line}");
        assert_eq!(members.len(), 2, "two seeds per group: {line}");
        let mut rest = &toks[4..];
        for metric in &header[4..] {
            if rest[0] == "-" {
                rest = &rest[1..];
                continue;
            }
            let (mean, std) = (rest[0], rest[2]);
            assert_eq!(rest[1], "±", "{line}");
            rest = &rest[3..];
            let v: Vec<f64> = members.iter().map(|&i| f64s(metric)[i].unwrap()).collect();
            let m = (v[0] + v[1]) / 2.0;
            let sd = ((v[0] - m).powi(2) + (v[1] - m).powi(2)).sqrt(); // n − 1 = 1
            let fmt = |x: f64| {
                if metric.contains("bpd") {
                    format!("{x:.3}")
                } else {
                    format!("{x:.2}")
                }
            };
            assert_eq!(mean, fmt(m), "{metric} mean in {line}");
            assert_eq!(std, fmt(sd), "{metric} std in {line}");
            checked += 1;
        }
    }
    assert!(checked >= 6 * 5, "{checked} values checked: {table}");
}

/// Per-run metrics without the timing columns, keyed by run id.
fn metrics_by_run(sweep: &Path) -> Vec<(String, DataFrame)> {
    let mut out: Vec<(String, DataFrame)> = std::fs::read_dir(sweep.join("runs"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let id = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                id,
                read(&p.join("metrics.parquet")).drop_many(["seconds", "samples_per_sec"]),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn kill_9_then_rerun_completes_every_run_exactly_as_if_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let text = grid(6, 3000).replace("beta = [1.0, 2.0]\n", "");
    let file = write(tmp.path(), "tiny.toml", &text);
    let killed = tmp.path().join("killed");
    let mut child = vaelab(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        killed.to_str().unwrap(),
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Kill as soon as some run has checkpointed an epoch, mid-sweep.
    let start = Instant::now();
    loop {
        let any_epoch = std::fs::read_dir(killed.join("tiny/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("manifest.json"))
                    .is_ok_and(|m| m.contains("\"epochs_done\": 2"))
            });
        if any_epoch {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120) && child.try_wait().unwrap().is_none(),
            "no run reached epoch 2 while the sweep ran: nothing to kill mid-run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The kill must leave work undone, or the rerun proves nothing.
    let undone = std::fs::read_dir(killed.join("tiny/runs"))
        .unwrap()
        .flatten()
        .filter(|e| {
            !std::fs::read_to_string(e.path().join("manifest.json"))
                .is_ok_and(|m| m.contains("\"status\": \"done\""))
        })
        .count();
    let started = std::fs::read_dir(killed.join("tiny/runs")).unwrap().count();
    assert!(
        started >= 1 && (undone >= 1 || started < 8),
        "the kill left nothing undone"
    );

    let rerun = sweep(&file, &killed);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let runs = read(&killed.join("tiny/runs.parquet"));
    assert_eq!(runs.height(), 8);
    assert!(
        strings(&runs, "status").iter().all(|s| s == "done"),
        "{:?}",
        strings(&runs, "status")
    );
    for (id, m) in metrics_by_run(&killed.join("tiny")) {
        assert_eq!(m.height(), 12, "{id}: 6 epochs × 2 splits");
        let keys = m.select(["epoch", "split"]).unwrap();
        assert_eq!(
            keys.is_unique().unwrap().sum(),
            Some(12),
            "{id}: duplicate epoch rows"
        );
    }

    let straight = tmp.path().join("straight");
    let out = sweep(&file, &straight);
    assert!(out.status.success());
    for ((id, a), (_, b)) in metrics_by_run(&killed.join("tiny"))
        .into_iter()
        .zip(metrics_by_run(&straight.join("tiny")))
    {
        assert!(
            a.equals_missing(&b),
            "{id}: resumed metrics differ from an uninterrupted run"
        );
    }
}

#[test]
fn a_diverging_run_is_marked_and_the_others_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[sweep]\nname = \"div\"\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [32]\nepochs = 3\ntrain_subset = 500\ntest_subset = 100\niw_test_n = 0\n\n[grid]\nlatent_dim = [2, 3]\n\n[[include]]\nlatent_dim = 4\nlr = 1e6\nlikelihood = \"gaussian-learned\"\n"
    );
    let file = write(tmp.path(), "div.toml", &text);
    let results = tmp.path().join("results");
    let out = sweep(&file, &results);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("diverged"), "{}", stderr(&out));
    let runs = read(&results.join("div/runs.parquet"));
    let mut status = strings(&runs, "status");
    status.sort();
    assert_eq!(status, ["diverged", "done", "done"]);
    let metrics = read(&results.join("div/metrics.parquet"));
    let finite = metrics
        .column("loss")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .all(|v| v.is_some_and(f64::is_finite));
    assert!(finite, "no NaN reaches the tables");
}

#[test]
fn bad_sweep_files_name_file_line_and_column_and_train_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let head =
        format!("[sweep]\nname = \"bad\"\n\n[base]\ndata_dir = \"{FASHION}\"\nepochs = 1\n\n");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "sweep_key",
            "[sweep]\nname = \"bad\"\nseedz = [1]\n".into(),
            ":3:",
            "seedz",
        ),
        (
            "base_key",
            format!("{head}[grid]\nbeta = [1.0]\n").replace("epochs = 1", "epoch = 1"),
            ":6:",
            "epoch",
        ),
        (
            "grid_key",
            format!("{head}[grid]\nlatent = [2, 3]\n"),
            ":9:",
            "unknown key `latent`",
        ),
        (
            "empty_list",
            format!("{head}[grid]\nlatent_dim = []\n"),
            ":9:",
            "empty list",
        ),
        (
            "type",
            format!("{head}[grid]\nlatent_dim = [2, \"big\"]\n"),
            ":9:",
            "integer",
        ),
        (
            "range",
            format!("{head}[grid]\nlatent_dim = [2, 0]\n"),
            ":9:",
            "from 1 to 1024",
        ),
        (
            "duplicate",
            format!("{head}[grid]\nbeta = [1.0]\nbeta = [2.0]\n"),
            ":10:",
            "duplicate",
        ),
        (
            "exclude_nothing",
            format!("{head}[grid]\nbeta = [1.0, 2.0]\n\n[[exclude]]\nbeta = 3.0\n"),
            ":11:",
            "matches no run",
        ),
        (
            "include_key",
            format!("{head}[[include]]\nlatnt_dim = 3\n"),
            ":8:",
            "latnt_dim",
        ),
        (
            "seed_in_grid",
            format!("{head}[grid]\nseed = [1, 2]\n"),
            ":9:",
            "seeds",
        ),
        (
            "search_method",
            format!("{head}[search]\nmethod = \"grid\"\ntrials = 4\nbeta = {{ uniform = [0.1, 4.0] }}\n"),
            ":9:",
            "\"random\", \"sobol\"",
        ),
        (
            "search_trials",
            format!("{head}[search]\nmethod = \"random\"\ntrials = 0\nbeta = {{ uniform = [0.1, 4.0] }}\n"),
            ":10:",
            "from 1 to 65536",
        ),
        (
            "search_dist",
            format!("{head}[search]\nmethod = \"random\"\ntrials = 4\nbeta = {{ normal = [0, 1] }}\n"),
            ":11:",
            "unknown distribution `normal`",
        ),
        (
            "search_range",
            format!("{head}[search]\nmethod = \"sobol\"\ntrials = 4\nlatent_dim = {{ int_uniform = [0, 64] }}\n"),
            ":11:",
            "from 1 to 1024",
        ),
        (
            "search_type",
            format!("{head}[search]\nmethod = \"sobol\"\ntrials = 4\nlatent_dim = {{ uniform = [2.0, 64.0] }}\n"),
            ":11:",
            "integer",
        ),
        (
            "search_key",
            format!("{head}[search]\nmethod = \"random\"\ntrials = 4\nlatnt_dim = {{ int_uniform = [2, 8] }}\n"),
            ":11:",
            "unknown key `latnt_dim` in [search]",
        ),
        (
            "search_and_grid",
            format!("{head}[grid]\nbeta = [1.0]\n\n[search]\nmethod = \"random\"\ntrials = 4\nbeta = {{ uniform = [0.1, 4.0] }}\n"),
            ":14:",
            "both in [grid] and in [search]",
        ),
        (
            "search_too_small",
            format!("{head}[search]\nmethod = \"random\"\ntrials = 5\nlatent_dim = {{ int_uniform = [2, 5] }}\n"),
            ":8:",
            "only 4 distinct configurations",
        ),
        (
            "early_stop_metric",
            format!("{head}[grid]\nbeta = [1.0]\n\n[early_stop]\nrule = \"asha\"\nmetric = \"log_px_iw\"\n"),
            ":13:",
            "measured once, at the end of a run, not per epoch",
        ),
        (
            "early_stop_rule",
            format!("{head}[grid]\nbeta = [1.0]\n\n[early_stop]\nrule = \"hyperband\"\n"),
            ":12:",
            "allowed: \"asha\", \"median\"",
        ),
        (
            "early_stop_ae",
            format!("{head}[grid]\nmodel = [\"vae\", \"ae\"]\n\n[early_stop]\nrule = \"median\"\n").replace("epochs = 1", "epochs = 4"),
            ":11:",
            "is an autoencoder",
        ),
        (
            "early_stop_epochs",
            format!("{head}[grid]\nbeta = [1.0]\n\n[early_stop]\nrule = \"asha\"\nmin_epochs = 2\n"),
            ":13:",
            "would judge no run",
        ),
    ];
    let results = tmp.path().join("results");
    for (name, text, line, needle) in cases {
        let file = write(tmp.path(), &format!("{name}.toml"), &text);
        for cmd in ["plan", "sweep"] {
            let out = run(&[
                cmd,
                file.to_str().unwrap(),
                "--results-dir",
                results.to_str().unwrap(),
            ]
            .map(|s| s)
            .iter()
            .take(if cmd == "plan" { 2 } else { 4 })
            .copied()
            .collect::<Vec<_>>());
            let msg = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} ({cmd}): {msg}");
            assert!(
                msg.contains(&format!("{name}.toml{line}")),
                "{name}: wanted {name}.toml{line} in: {msg}"
            );
            assert!(msg.contains(needle), "{name}: wanted {needle:?} in: {msg}");
        }
    }
    assert!(!results.exists(), "nothing was trained or written");
}

#[test]
fn conv_and_mlp_train_side_by_side_and_a_conv_that_does_not_fit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[sweep]\nname = \"arch\"\n\n[base]\ndata_dir = \"{FASHION}\"\nlatent_dim = 8\nhidden = [64]\nchannels = [8, 16]\nepochs = 2\ntrain_subset = 2000\ntest_subset = 200\niw_samples = 5\niw_test_n = 50\n\n[grid]\narchitecture = [\"mlp\", \"conv\"]\n"
    );
    let file = write(tmp.path(), "arch.toml", &text);
    let plan = run(&["plan", file.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(table.contains("architecture"), "{table}");
    let results = tmp.path().join("results");
    let out = sweep(&file, &results);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = read(&results.join("arch/runs.parquet"));
    let archs = strings(&runs, "architecture");
    let mut sorted = archs.clone();
    sorted.sort();
    assert_eq!(sorted, ["conv", "mlp"]);
    // Each architecture's own key is in its row; the other's is null.
    let channels = strings(&runs, "channels");
    let hidden = strings(&runs, "hidden");
    for ((a, c), h) in archs.iter().zip(&channels).zip(&hidden) {
        match a.as_str() {
            "conv" => assert_eq!((c.as_str(), h.as_str()), ("8,16", "")),
            _ => assert_eq!((c.as_str(), h.as_str()), ("", "64")),
        }
    }
    // Both learned: an untrained model scores about 784 ln 2 ≈ 543 nats; after 2 epochs on 2000
    // images the MLP measured 434.5 and the conv net 477.0.
    let elbo = runs.column("test_neg_elbo").unwrap().f64().unwrap();
    assert!(
        elbo.iter()
            .all(|v| v.is_some_and(|v| v.is_finite() && v < 500.0)),
        "{elbo:?}"
    );
    assert!(results.join("arch/figures/reconstructions.png").exists());

    // Three stride-2 layers cannot halve 28×28 three times: exit 2 naming the key.
    let bad = write(
        tmp.path(),
        "deep.toml",
        &text
            .replace("channels = [8, 16]", "channels = [8, 16, 32]")
            .replace("name = \"arch\"", "name = \"deep\""),
    );
    let out = sweep(&bad, &results);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deep.toml") && stderr(&out).contains("`channels`"),
        "{}",
        stderr(&out)
    );
    assert!(
        !results.join("deep/runs").exists()
            || std::fs::read_dir(results.join("deep/runs"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// `[[exclude]]` removes what it matches, `ls` lists every run, `show` finds a run by an id
/// prefix and refuses an ambiguous one, and `--jobs 1` trains the same numbers as `--jobs 2`.
#[test]
fn exclude_ls_show_and_jobs_do_what_they_say() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[sweep]\nname = \"cli\"\nseeds = [0]\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nepochs = 1\ntrain_subset = 300\ntest_subset = 100\niw_samples = 5\niw_test_n = 10\n\n[grid]\nmodel = [\"vae\", \"ae\"]\nlatent_dim = [2, 4]\n\n[[exclude]]\nmodel = \"ae\"\nlatent_dim = 4\n"
    );
    let file = write(tmp.path(), "cli.toml", &text);
    let plan = run(&["plan", file.to_str().unwrap()]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("3 runs"),
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );

    let two = tmp.path().join("two");
    let out = run(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        two.to_str().unwrap(),
        "--jobs",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = read(&two.join("cli/runs.parquet"));
    assert_eq!(runs.height(), 3);
    let pairs: Vec<(String, i64)> = strings(&runs, "model")
        .into_iter()
        .zip(
            runs.column("latent_dim")
                .unwrap()
                .i64()
                .unwrap()
                .iter()
                .map(Option::unwrap),
        )
        .collect();
    assert!(
        !pairs.contains(&("ae".to_string(), 4)),
        "excluded run trained: {pairs:?}"
    );

    let ids = strings(&runs, "run_id");
    let ls = run(&["ls", two.join("cli").to_str().unwrap()]);
    assert!(ls.status.success(), "{}", stderr(&ls));
    let listing = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert_eq!(listing.lines().count(), 4, "header + 3 runs: {listing}");
    for id in &ids {
        let line = listing
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not in {listing}"));
        assert!(line.contains("done"), "{line}");
    }
    check_queries(&two.join("cli"), &runs);

    let results = two.to_str().unwrap();
    let show = run(&["show", &ids[0][..6], "--results-dir", results]);
    assert!(show.status.success(), "{}", stderr(&show));
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        shown.contains(&format!("\"id\": \"{}\"", ids[0])) && shown.contains("latent_dim"),
        "{shown}"
    );
    let ambiguous = run(&["show", "", "--results-dir", results]);
    assert_eq!(ambiguous.status.code(), Some(2), "{}", stderr(&ambiguous));
    assert!(
        stderr(&ambiguous).contains("3 runs match"),
        "{}",
        stderr(&ambiguous)
    );
    let none = run(&["show", "zzzz", "--results-dir", results]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("no run with id zzzz"),
        "{}",
        stderr(&none)
    );

    let one = tmp.path().join("one");
    let out = run(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        one.to_str().unwrap(),
        "--jobs",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        metrics_by_run(&one.join("cli")),
        metrics_by_run(&two.join("cli")),
        "--jobs 1 and --jobs 2 train the same numbers"
    );
}

/// The first column of a printed table, header dropped.
fn first_column(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `ls --where/--sort/--limit` and `query` against the same selections made with polars'
/// DataFrame API on the same Parquet files; bad expressions exit 2 naming what is wrong.
fn check_queries(sweep: &Path, runs: &DataFrame) {
    let dir = sweep.to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    // Filter and limit: the VAE runs, lowest test −ELBO first, one of them.
    let out = ok(&[
        "ls",
        dir,
        "--where",
        "status = 'done' AND model = 'vae' AND latent_dim >= 2",
        "--sort",
        "test_neg_elbo",
        "--limit",
        "1",
    ]);
    let best = runs
        .clone()
        .lazy()
        .filter(col("model").eq(lit("vae")))
        .sort(["test_neg_elbo"], Default::default())
        .limit(1)
        .collect()
        .unwrap();
    assert_eq!(first_column(&out), strings(&best, "run_id"));
    // Descending order over every run, the AE's null −ELBO last.
    let out = ok(&["ls", dir, "--sort", "-test_neg_elbo"]);
    let order = runs
        .sort(
            ["test_neg_elbo"],
            SortMultipleOptions::default()
                .with_order_descending(true)
                .with_nulls_last(true),
        )
        .unwrap();
    assert_eq!(first_column(&out), strings(&order, "run_id"));
    // SQL over both tables: each run's best test −ELBO over its epochs.
    let metrics = read(&sweep.join("metrics.parquet"));
    let out = ok(&[
        "query", dir,
        "SELECT r.run_id, MIN(m.neg_elbo) AS best FROM runs r JOIN metrics m ON r.run_id = m.run_id WHERE m.split = 'test' GROUP BY r.run_id ORDER BY r.run_id",
    ]);
    let expected = metrics
        .lazy()
        .filter(col("split").eq(lit("test")))
        .group_by([col("run_id")])
        .agg([col("neg_elbo").min()])
        .sort(["run_id"], Default::default())
        .collect()
        .unwrap();
    // (The AE's −ELBO is null: "-" in the table.)
    let printed: Vec<(String, Option<f64>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let mut w = l.split_whitespace();
            (
                w.next().unwrap().to_string(),
                w.next().unwrap().parse().ok(),
            )
        })
        .collect();
    let want: Vec<(String, Option<f64>)> = strings(&expected, "run_id")
        .into_iter()
        .zip(expected.column("neg_elbo").unwrap().f64().unwrap().iter())
        .collect();
    assert_eq!(printed.len(), want.len());
    assert_eq!(want.iter().filter(|w| w.1.is_some()).count(), 2, "{want:?}");
    for ((id, v), (wid, w)) in printed.iter().zip(&want) {
        let close = match (v, w) {
            (Some(v), Some(w)) => (v - w).abs() < 0.006,
            (v, w) => v == w,
        };
        assert!(id == wid && close, "{id} {v:?} vs {wid} {w:?}");
    }
    // Errors name the column or token that is wrong.
    for (args, says) in [
        (vec!["ls", dir, "--where", "latnt_dim >= 3"], "latnt_dim"),
        (vec!["ls", dir, "--sort", "nope"], "no column \"nope\""),
        (vec!["query", dir, "SELEC run_id FROM runs"], "SELEC"),
        (vec!["query", dir, "SELECT * FROM nope"], "'nope'"),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

/// A run that panics is marked failed with the panic's message; the others finish, the sweep
/// exits 1, and a rerun without the fault finishes it.
#[test]
fn a_panicking_run_fails_alone_and_a_rerun_finishes_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let text = grid(1, 300)
        .replace("beta = [1.0, 2.0]\n", "")
        .replace("seeds = [0, 1]", "seeds = [0]");
    let file = write(tmp.path(), "tiny.toml", &text);
    let results = tmp.path().join("results");
    let plan = run(&["plan", file.to_str().unwrap()]);
    let planned = String::from_utf8_lossy(&plan.stdout).into_owned();
    let victim = planned
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .next()
                .filter(|w| w.len() == 12 && w.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .unwrap_or_else(|| panic!("no run id in {planned}"))
        .to_string();
    let out = vaelab(&[
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ])
    .env("VAELAB_FAULT_PANIC_RUN", &victim)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let runs = read(&results.join("tiny/runs.parquet"));
    assert_eq!(runs.height(), 4);
    for ((id, status), error) in strings(&runs, "run_id")
        .iter()
        .zip(strings(&runs, "status"))
        .zip(runs.column("error").unwrap().str().unwrap().iter())
    {
        if *id == victim {
            assert_eq!(status, "failed");
            assert!(
                error.is_some_and(|e| e.contains("injected panic")),
                "{error:?}"
            );
        } else {
            assert_eq!(status, "done", "{id}");
        }
    }
    let rerun = sweep(&file, &results);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert!(strings(&read(&results.join("tiny/runs.parquet")), "status")
        .iter()
        .all(|s| s == "done"));
}

/// A random search with a grid axis: `plan` draws the same trials every time, the sweep trains
/// exactly those (values inside their ranges, lr log-spaced), a rerun trains none, and a Sobol
/// search off a power of two is warned about.
#[test]
fn a_search_draws_the_same_trials_every_time_and_a_rerun_skips_them() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "[sweep]\nname = \"search\"\njobs = 2\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nepochs = 1\ntrain_subset = 300\ntest_subset = 100\niw_test_n = 0\n\n[grid]\nmodel = [\"vae\", \"ae\"]\n\n[search]\nmethod = \"random\"\ntrials = 3\nseed = 5\nlr = {{ log_uniform = [1e-4, 1e-2] }}\nlatent_dim = {{ int_log_uniform = [2, 32] }}\n"
    );
    let file = write(tmp.path(), "search.toml", &text);
    let plan = |file: &Path| {
        let out = run(&["plan", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = plan(&file);
    assert_eq!(first, plan(&file), "the same file draws the same trials");
    assert!(
        first.contains("6 runs")
            && first.contains(
                "search: 3 random trials over latent_dim, lr (seed 5), each on 2 grid combinations"
            ),
        "{first}"
    );
    let other = write(
        tmp.path(),
        "other.toml",
        &text.replace("seed = 5", "seed = 6"),
    );
    assert_ne!(plan(&other), first, "another seed draws other trials");
    let sobol = write(
        tmp.path(),
        "sobol.toml",
        &text.replace("\"random\"", "\"sobol\""),
    );
    assert!(plan(&sobol).contains("warning: [search] sobol with 3 trials"));

    let results = tmp.path().join("results");
    let out = sweep(&file, &results);
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = read(&results.join("search/runs.parquet"));
    assert_eq!(runs.height(), 6);
    let mut ids = strings(&runs, "run_id");
    ids.sort();
    let mut planned = planned_ids(&first);
    planned.sort();
    assert_eq!(ids, planned);
    let lr = runs.column("lr").unwrap().f64().unwrap();
    let dims = runs
        .column("latent_dim")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    let dims = dims.i64().unwrap();
    for i in 0..runs.height() {
        let (lr, k) = (lr.get(i).unwrap(), dims.get(i).unwrap());
        assert!((1e-4..=1e-2).contains(&lr), "{lr}");
        assert!((2..=32).contains(&k), "{k}");
    }
    // Each trial trains once as a VAE and once as an AE: three distinct lr values, twice each.
    let mut values: Vec<f64> = lr.into_no_null_iter().collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    assert_eq!(values.len(), 3, "{values:?}");
    let again = sweep(&file, &results);
    assert!(again.status.success());
    assert!(
        stderr(&again).contains("0 trained, 6 already done"),
        "{}",
        stderr(&again)
    );
}
