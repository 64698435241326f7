//! End-to-end tests of `[early_stop]`: the runs a sweep prunes are the ones an ASHA written
//! here, over the same trials trained to the end, says it should; the decisions do not depend
//! on `--jobs`, survive a kill between a rung's metrics and its decision, and `--no-prune`
//! trains pruned runs on to exactly the full runs' results.

mod common;

use common::{read, stderr, strings, FASHION};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCHS: usize = 6;
const ETA: usize = 2;

fn vaelab(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::require_fashion();
    Command::new(env!("CARGO_BIN_EXE_vaelab"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("vaelab runs")
}

/// Eight trials over lr, six epochs on a small subset; `early_stop` is appended as given.
fn search_file(dir: &Path, name: &str, early_stop: &str) -> PathBuf {
    let text = format!(
        "[sweep]\nname = \"asha\"\njobs = 2\n\n[base]\ndata_dir = \"{FASHION}\"\nhidden = [16]\nlatent_dim = 4\nepochs = {EPOCHS}\ntrain_subset = 400\ntest_subset = 100\niw_samples = 10\niw_test_n = 20\n\n[search]\nmethod = \"random\"\ntrials = 8\nseed = 3\nlr = {{ log_uniform = [1e-4, 1e-2] }}\n{early_stop}"
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const ASHA: &str = "\n[early_stop]\nrule = \"asha\"\nmin_epochs = 1\nreduction_factor = 2\n";

fn sweep(file: &Path, results: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "sweep",
        file.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
    ];
    args.extend(extra);
    vaelab(&args, env)
}

/// The plan's run ids, in plan order.
fn plan_order(file: &Path) -> Vec<String> {
    let out = vaelab(&["plan", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("sweep "))
        .map(|l| l[..12].to_string())
        .collect()
}

/// Each run's test −ELBO per epoch, from a sweep folder's metrics.parquet.
fn curves(sweep_dir: &Path) -> BTreeMap<String, Vec<f64>> {
    let m = read(&sweep_dir.join("metrics.parquet"));
    let ids = strings(&m, "run_id");
    let split = strings(&m, "split");
    let epoch: Vec<u32> = common::u32s(&m, "epoch");
    let elbo: Vec<f64> = m
        .column("neg_elbo")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for i in 0..ids.len() {
        if split[i] == "test" {
            let c = out.entry(ids[i].clone()).or_default();
            assert_eq!(c.len() + 1, epoch[i] as usize, "rows in epoch order");
            c.push(elbo[i]);
        }
    }
    out
}

/// ASHA over full curves, written plainly: run by run in plan order, at rungs 1, 2, 4, a run
/// goes on when it is among the best max(1, ⌊n/2⌋) of itself and the earlier runs that got
/// to the rung. Returns the epoch each run stops after (EPOCHS when it is not stopped).
fn expected_stops(order: &[String], full: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, usize> {
    let rungs = [1, 2, 4];
    let mut stop: BTreeMap<String, usize> = BTreeMap::new();
    for (i, id) in order.iter().enumerate() {
        let mut at = EPOCHS;
        for &r in &rungs {
            let mut values: Vec<f64> = order[..i]
                .iter()
                .filter(|p| stop[*p] >= r)
                .map(|p| full[p][r - 1])
                .collect();
            let own = full[id][r - 1];
            values.push(own);
            values.sort_by(f64::total_cmp);
            let top = (values.len() / ETA).max(1);
            if own > values[top - 1] {
                at = r;
                break;
            }
        }
        stop.insert(id.clone(), at);
    }
    stop
}

/// Each run's status and epochs done, from its manifest.
fn standing(sweep_dir: &Path) -> BTreeMap<String, (String, usize)> {
    let runs = read(&sweep_dir.join("runs.parquet"));
    strings(&runs, "run_id")
        .into_iter()
        .map(|id| {
            let m = manifest(sweep_dir, &id);
            let status = m["status"].as_str().unwrap().to_string();
            (id, (status, m["epochs_done"].as_u64().unwrap() as usize))
        })
        .collect()
}

fn manifest(sweep_dir: &Path, id: &str) -> serde_json::Value {
    let path = sweep_dir.join("runs").join(id).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Every run's recorded decisions.
fn decisions(sweep_dir: &Path, order: &[String]) -> Vec<serde_json::Value> {
    order
        .iter()
        .map(|id| manifest(sweep_dir, id)["decisions"].clone())
        .collect()
}

#[test]
fn asha_prunes_what_the_full_runs_say_on_any_jobs_and_no_prune_finishes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let full_file = search_file(tmp.path(), "full.toml", "");
    let asha_file = search_file(tmp.path(), "asha.toml", ASHA);
    let order = plan_order(&asha_file);
    assert_eq!(
        order,
        plan_order(&full_file),
        "[early_stop] leaves the ids alone"
    );
    assert!(String::from_utf8_lossy(&vaelab(&["plan", asha_file.to_str().unwrap()], &[]).stdout)
        .contains("early stop: asha on test neg_elbo (minimize, η = 2, grace 0), judged after epoch 1, 2, 4 of 6"));

    let out = sweep(&full_file, &tmp.path().join("full"), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let full = curves(&tmp.path().join("full/asha"));
    let want = expected_stops(&order, &full);
    let pruned = want.values().filter(|&&e| e < EPOCHS).count();
    assert!(
        (1..order.len()).contains(&pruned),
        "the trials must differ enough for ASHA to prune some: {want:?}"
    );

    for jobs in ["1", "3"] {
        let results = tmp.path().join(format!("jobs{jobs}"));
        let out = sweep(&asha_file, &results, &["--jobs", jobs], &[]);
        assert!(
            out.status.success(),
            "exit 0 with pruned runs: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("{pruned} pruned")),
            "{}",
            stderr(&out)
        );
        let dir = results.join("asha");
        let got = standing(&dir);
        for (id, &stop) in &want {
            let (status, epochs) = &got[id];
            assert_eq!(*epochs, stop, "run {id} (--jobs {jobs})");
            let expect = if stop < EPOCHS { "pruned" } else { "done" };
            assert_eq!(status, expect, "run {id} (--jobs {jobs})");
        }
        // A pruned run's epochs are the full run's first epochs, bit for bit.
        for (id, c) in curves(&dir) {
            assert_eq!(c[..], full[&id][..c.len()], "run {id}");
        }
        let runs = read(&dir.join("runs.parquet"));
        let statuses = strings(&runs, "status");
        assert_eq!(statuses.iter().filter(|s| *s == "pruned").count(), pruned);
    }
    let dir = tmp.path().join("jobs1/asha");
    let ls = vaelab(&["ls", tmp.path().join("jobs1").to_str().unwrap()], &[]);
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listed.contains(&format!("{}/8 done, {pruned} pruned", 8 - pruned)),
        "{listed}"
    );
    let recorded = decisions(&dir, &order);
    assert_eq!(recorded, decisions(&tmp.path().join("jobs3/asha"), &order));
    // A decision names its peers: the earlier runs that reached its epoch.
    let last = &recorded[order.len() - 1][0];
    assert_eq!(last["epoch"], 1);
    assert_eq!(last["peers"].as_array().unwrap().len(), order.len() - 1);

    // A rerun trains nothing and decides nothing again.
    let out = sweep(&asha_file, &tmp.path().join("jobs1"), &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 trained, 8 already done"),
        "{}",
        stderr(&out)
    );
    assert_eq!(decisions(&dir, &order), recorded);

    // --no-prune trains the pruned runs on, to the full runs' numbers; the decisions stay.
    let out = sweep(&asha_file, &tmp.path().join("jobs1"), &["--no-prune"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{pruned} trained, {} already done", 8 - pruned)),
        "{}",
        stderr(&out)
    );
    assert!(standing(&dir)
        .values()
        .all(|(s, e)| s == "done" && *e == EPOCHS));
    assert_eq!(curves(&dir), full);
    assert_eq!(decisions(&dir, &order), recorded);
    let a = read(&dir.join("runs.parquet"));
    let f = read(&tmp.path().join("full/asha/runs.parquet"));
    let sorted = |df: &DataFrame| {
        df.sort(["run_id"], Default::default())
            .unwrap()
            .column("log_px_iw")
            .unwrap()
            .clone()
    };
    assert_eq!(sorted(&a), sorted(&f), "the final IWAE bounds match too");
}

#[test]
fn a_sweep_killed_between_a_rungs_metrics_and_its_decision_resumes_to_the_same_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let file = search_file(tmp.path(), "asha.toml", ASHA);
    let order = plan_order(&file);
    let straight = tmp.path().join("straight");
    let out = sweep(&file, &straight, &["--jobs", "1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = decisions(&straight.join("asha"), &order);

    // The fifth run dies after writing epoch 2 (its second rung, if it gets there; else the
    // first, after epoch 1), before it is judged there.
    let victim = &order[4];
    let rung = if want[4].as_array().unwrap().len() > 1 {
        2
    } else {
        1
    };
    let killed = tmp.path().join("killed");
    let fault = format!("{victim}:{rung}");
    let out = sweep(
        &file,
        &killed,
        &["--jobs", "2"],
        &[("VAELAB_FAULT_EXIT_BEFORE_DECISION", &fault)],
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let m = manifest(&killed.join("asha"), victim);
    assert_eq!(m["epochs_done"], rung, "its rung's epoch is on disk");
    assert_eq!(
        m["decisions"].as_array().map_or(0, Vec::len),
        rung - 1,
        "and not yet judged"
    );
    let out = sweep(&file, &killed, &["--jobs", "2"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(decisions(&killed.join("asha"), &order), want);
    assert_eq!(
        standing(&killed.join("asha")),
        standing(&straight.join("asha"))
    );
}
