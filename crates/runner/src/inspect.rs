//! Reading results back: `vaelab ls`, `vaelab show`, `vaelab compare`.

use anyhow::{bail, Context};
use polars::prelude::*;
use std::path::{Path, PathBuf};
use vaelab_track as track;

/// Final metrics shown by `ls` and aggregated by `compare`, when present.
const METRICS: &[&str] = &[
    "test_neg_elbo",
    "test_recon",
    "test_kl",
    "log_px_iw",
    "elbo_gap",
    "amortization_gap",
    "approximation_gap",
    "iw_khat_share",
    "test_elbo_bpd",
    "nll_bpd",
    "active_units",
    "test_mi",
    "wall_seconds",
];

fn cell(df: &DataFrame, col: &str, row: usize) -> String {
    match df.column(col).and_then(|c| c.get(row)) {
        Ok(AnyValue::Null) | Err(_) => "-".into(),
        // Bits/dim differ in the third decimal between good models; nats in the second.
        Ok(AnyValue::Float64(v)) if col.contains("bpd") => format!("{v:.3}"),
        Ok(AnyValue::Float64(v)) => format!("{v:.2}"),
        Ok(v) => v.str_value().into_owned(),
    }
}

/// Rows of text as aligned columns, one line each.
pub fn text_table(rows: &[Vec<String>]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let widths: Vec<usize> = (0..first.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints rows of text as aligned columns.
fn print_table(rows: &[Vec<String>]) -> anyhow::Result<()> {
    crate::output::print(format_args!("{}", text_table(rows)))
}

/// Config columns that take more than one value in `df` (nulls, keys that mean nothing for a
/// run such as the AE's β, do not count).
fn varying(df: &DataFrame) -> Vec<String> {
    crate::config::RUN_KEYS
        .iter()
        .filter(|k| **k != "name" && **k != "data_dir")
        .filter(|k| {
            df.column(k)
                .is_ok_and(|c| c.drop_nulls().n_unique().unwrap_or(1) > 1)
        })
        .map(|k| k.to_string())
        .collect()
}

/// Config keys other than `by` and `seed` that take two or more values inside one group of
/// `by`, each with the values it takes ("beta (1, 4)"); nulls (a key a run does not read) do
/// not count.
fn mixed_in_groups(done: &DataFrame, by: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for key in varying(done) {
        if key == "seed" || by.contains(&key) {
            continue;
        }
        let most = done
            .clone()
            .lazy()
            .group_by(by.iter().map(|k| col(k.as_str())).collect::<Vec<_>>())
            .agg([col(key.as_str()).drop_nulls().n_unique().alias("n")])
            .select([col("n").max()])
            .collect()?;
        let n = most
            .column("n")
            .ok()
            .and_then(|c| c.get(0).ok())
            .and_then(|v| v.extract::<u64>())
            .unwrap_or(0);
        if n > 1 {
            let values = done.column(&key)?.drop_nulls().unique_stable()?;
            let shown: Vec<String> = (0..values.len())
                .filter_map(|i| values.get(i).ok().map(|v| v.str_value().into_owned()))
                .collect();
            out.push(format!("{key} ({})", shown.join(", ")));
        }
    }
    Ok(out)
}

/// `vaelab ls`: the runs of a sweep folder (those `sel` keeps, in its order), or what a
/// results folder holds.
pub fn ls(dir: &Path, sel: &crate::query::Selection) -> anyhow::Result<()> {
    let runs = dir.join("runs.parquet");
    if runs.exists() {
        let df = crate::query::select(dir, sel)?;
        let mut cols = vec!["run_id".to_string(), "status".to_string()];
        cols.extend(varying(&df));
        cols.extend(
            METRICS
                .iter()
                .filter(|m| df.column(m).is_ok())
                .map(|m| m.to_string()),
        );
        let mut rows = vec![cols.clone()];
        rows.extend((0..df.height()).map(|i| cols.iter().map(|c| cell(&df, c, i)).collect()));
        print_table(&rows)?;
        return Ok(());
    }
    if !sel.is_all() {
        bail!(
            "{}: --where, --sort and --limit select the runs of one sweep folder (with runs.parquet)",
            dir.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    let mut rows = vec![vec![
        "folder".into(),
        "kind".into(),
        "status".into(),
        "test_neg_elbo".into(),
    ]];
    for p in entries {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Ok(df) = track::read_frame(&p.join("runs.parquet")) {
            let count = |status: &str| {
                df.column("status")
                    .map(|c| {
                        c.str()
                            .map(|s| s.iter().filter(|v| *v == Some(status)).count())
                            .unwrap_or(0)
                    })
                    .unwrap_or(0)
            };
            let pruned = match count("pruned") {
                0 => String::new(),
                n => format!(", {n} pruned"),
            };
            rows.push(vec![
                name,
                "sweep".into(),
                format!("{}/{} done{pruned}", count("done"), df.height()),
                "-".into(),
            ]);
        } else if let Ok(df) = track::read_frame(&p.join(track::SUMMARY)) {
            rows.push(vec![
                name,
                "run".into(),
                cell(&df, "status", 0),
                cell(&df, "test_neg_elbo", 0),
            ]);
        }
    }
    print_table(&rows)?;
    Ok(())
}

/// Folders of runs under `results`: single runs and the runs of every sweep.
fn run_folders(results: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(results).into_iter().flatten().flatten() {
        let p = e.path();
        if p.join(track::MANIFEST).exists() {
            out.push(p.clone());
        }
        for r in std::fs::read_dir(p.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(r.path());
        }
    }
    out
}

/// `vaelab show`: one run's manifest, config and last epoch.
pub fn show(results: &Path, id: &str) -> anyhow::Result<()> {
    let mut found: Vec<PathBuf> = Vec::new();
    for p in run_folders(results) {
        // A sweep's run folders are named by id: one that matches but whose manifest cannot
        // be read is named, not skipped.
        let named = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(id));
        match crate::manifest::Manifest::load(&p.join(track::MANIFEST)) {
            Ok(Some(m)) if m.id.starts_with(id) => found.push(p),
            Err(e) if named && !id.is_empty() => return Err(e),
            _ => {}
        }
    }
    let dir = match found.as_slice() {
        [one] => one,
        [] => bail!("no run with id {id} under {}", results.display()),
        many => bail!(
            "{} runs match {id}: {}",
            many.len(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let (manifest, config) = (read(track::MANIFEST)?, read(track::CONFIG)?);
    crate::output::print(format_args!("{}\n\n{manifest}\n{config}\n", dir.display()))?;
    if let Ok(m) = serde_json::from_str::<crate::manifest::Manifest>(&manifest) {
        crate::output::print(format_args!("{}\n", file_checks(dir, &m)))?;
    }
    if let Ok(df) = track::read_frame(&dir.join(track::SUMMARY)) {
        print_table(&final_metrics(&df))?;
        crate::output::print(format_args!("\n"))?;
    }
    if let Ok(m) = track::read_frame(&dir.join(track::METRICS)) {
        let cols = [
            "epoch",
            "split",
            "loss",
            "neg_elbo",
            "recon",
            "kl",
            "active_units",
            "mi",
            "encoder_updates",
            "decoder_updates",
            "elbo_bpd",
            "seconds",
        ];
        let mut rows = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
        rows.extend(
            (m.height().saturating_sub(4)..m.height())
                .map(|i| cols.iter().map(|c| cell(&m, c, i)).collect()),
        );
        print_table(&rows)?;
    }
    Ok(())
}

/// The run's final metrics that it has (non-null), one per row; the PSIS k̂ line says what
/// its share is measured against.
fn final_metrics(summary: &DataFrame) -> Vec<Vec<String>> {
    let mut rows = vec![vec!["final metric".to_string(), "value".to_string()]];
    for &col in track::SUMMARY_METRICS {
        let v = cell(summary, col, 0);
        if v != "-" {
            rows.push(vec![col.to_string(), v]);
        }
    }
    if let Some(row) = rows.iter_mut().find(|r| r[0] == "iw_khat_share") {
        let bound = cell(summary, "iw_khat_bound", 0);
        row[1] = format!(
            "{} (of test images with PSIS k̂ > {bound}: IWAE unreliable there)",
            row[1]
        );
    }
    rows
}

/// Each file the manifest holds a SHA-256 of, checked against the file now: `ok` or `CHANGED`
/// (truncated, corrupted or replaced since vaelab wrote it), one line each.
fn file_checks(dir: &Path, m: &crate::manifest::Manifest) -> String {
    let files = m.hashed_files();
    if files.is_empty() {
        return "files: no SHA-256 recorded (a vaelab before 2026-12 wrote this run)".into();
    }
    let mut out = String::from("files (SHA-256 against the manifest):");
    for name in files {
        let verdict = match track::sha256_of(&dir.join(name)) {
            Ok(h) if m.accepted_hashes(name).contains(&h.as_str()) => "ok".to_string(),
            Ok(_) => "CHANGED since vaelab wrote it".to_string(),
            Err(e) => format!("unreadable ({e})"),
        };
        out.push_str(&format!("\n  {name}: {verdict}"));
    }
    out
}

/// `vaelab compare`: mean ± std over seeds of the final metrics of done runs, by `by`.
pub fn compare(sweep_dir: &Path, by: &[String]) -> anyhow::Result<()> {
    let df = track::read_frame(&sweep_dir.join("runs.parquet"))?;
    for k in by {
        if df.column(k).is_err() {
            bail!(
                "--by {k}: no such column in {}; config keys are {}",
                sweep_dir.join("runs.parquet").display(),
                crate::config::RUN_KEYS.join(", ")
            );
        }
    }
    let metrics: Vec<&str> = METRICS
        .iter()
        .copied()
        .filter(|m| df.column(m).is_ok())
        .collect();
    // Bits/dim of 8-bit and of binarized images are different quantities: never one mean.
    let mut by = by.to_vec();
    let levels_vary = df
        .column("data_levels")
        .is_ok_and(|c| c.drop_nulls().n_unique().unwrap_or(1) > 1);
    if levels_vary && !by.iter().any(|k| k == "data_levels") {
        by.push("data_levels".into());
    }
    let by = by.as_slice();
    let done = df
        .clone()
        .lazy()
        .filter(col("status").eq(lit("done")))
        .collect()?;
    let mixed = mixed_in_groups(&done, by)?;
    if !mixed.is_empty() {
        let wanted: Vec<&str> = by
            .iter()
            .map(String::as_str)
            .chain(mixed.iter().map(|m| m.split(' ').next().unwrap_or(m)))
            .collect();
        bail!(
            "--by {}: runs in one group differ in {}, and compare averages over seeds only; \
             add them to --by (--by {})",
            by.join(","),
            mixed.join(", "),
            wanted.join(",")
        );
    }
    let mut aggs = vec![len().alias("runs")];
    for m in &metrics {
        aggs.push(
            col(*m)
                .cast(DataType::Float64)
                .mean()
                .alias(format!("{m}_mean")),
        );
        aggs.push(
            col(*m)
                .cast(DataType::Float64)
                .std(1)
                .alias(format!("{m}_std")),
        );
    }
    let keys: Vec<Expr> = by.iter().map(|k| col(k.as_str())).collect();
    let out = done
        .lazy()
        .group_by(keys)
        .agg(aggs)
        .sort(
            by.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
        .collect()?;
    let mut header: Vec<String> = by.to_vec();
    header.push("runs".into());
    header.extend(metrics.iter().map(|m| m.to_string()));
    let mut rows = vec![header];
    for i in 0..out.height() {
        let mut r: Vec<String> = by.iter().map(|k| cell(&out, k, i)).collect();
        r.push(cell(&out, "runs", i));
        for m in &metrics {
            let (mean, std) = (
                cell(&out, &format!("{m}_mean"), i),
                cell(&out, &format!("{m}_std"), i),
            );
            r.push(if mean == "-" {
                "-".into()
            } else {
                format!("{mean} ± {std}")
            });
        }
        rows.push(r);
    }
    print_table(&rows)?;
    Ok(())
}

/// `vaelab query`: prints the result of SQL over a sweep folder's `runs` and `metrics` tables.
pub fn query(dir: &Path, sql: &str) -> anyhow::Result<()> {
    let df = crate::query::query(dir, sql)?;
    let cols: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut rows = vec![cols.clone()];
    rows.extend((0..df.height()).map(|i| cols.iter().map(|c| cell(&df, c, i)).collect()));
    print_table(&rows)
}
