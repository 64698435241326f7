//! Queries over a sweep folder's tables through polars' SQL context (no engine of our own):
//! `vaelab ls DIR --where … --sort … --limit …` and `vaelab query DIR "SQL"`, with `runs`
//! (runs.parquet) and `metrics` (metrics.parquet) as tables.

use anyhow::{anyhow, bail};
use polars::prelude::*;
use polars::sql::SQLContext;
use std::path::Path;
use vaelab_track as track;

/// `ls`'s row filter, order and count.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// A SQL boolean expression over runs.parquet's columns.
    pub filter: Option<String>,
    /// A column to sort by, ascending; `-column` sorts descending. Nulls last.
    pub sort: Option<String>,
    pub limit: Option<usize>,
}

impl Selection {
    /// Whether it keeps every row in table order.
    pub fn is_all(&self) -> bool {
        self.filter.is_none() && self.sort.is_none() && self.limit.is_none()
    }
}

/// The sweep folder's tables, registered by name.
fn context(sweep_dir: &Path) -> anyhow::Result<SQLContext> {
    let runs = sweep_dir.join("runs.parquet");
    if !runs.exists() {
        bail!(
            "{}: not a sweep folder (no runs.parquet; `vaelab report` rewrites it)",
            sweep_dir.display()
        );
    }
    let ctx = SQLContext::new();
    ctx.register("runs", track::read_frame(&runs)?.lazy());
    let metrics = sweep_dir.join("metrics.parquet");
    if metrics.exists() {
        ctx.register("metrics", track::read_frame(&metrics)?.lazy());
    }
    Ok(ctx)
}

/// polars' error, first line, after what the user wrote.
fn sql_error(what: &str, e: PolarsError) -> anyhow::Error {
    let text = e.to_string();
    anyhow!("{what}: {}", text.lines().next().unwrap_or_default())
}

/// The rows of runs.parquet that `sel` keeps, in its order.
pub fn select(sweep_dir: &Path, sel: &Selection) -> anyhow::Result<DataFrame> {
    let mut ctx = context(sweep_dir)?;
    let columns = ctx
        .execute("SELECT * FROM runs LIMIT 0")
        .and_then(|lf| lf.collect())
        .map_err(|e| sql_error("runs.parquet", e))?;
    let mut sql = "SELECT * FROM runs".to_string();
    if let Some(f) = &sel.filter {
        sql.push_str(&format!(" WHERE {f}"));
    }
    if let Some(s) = &sel.sort {
        let (col, order) = match s.strip_prefix('-') {
            Some(c) => (c, "DESC"),
            None => (s.as_str(), "ASC"),
        };
        if columns.column(col).is_err() {
            bail!(
                "--sort {s:?}: runs.parquet has no column {col:?}; it has {}",
                columns
                    .get_column_names()
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        sql.push_str(&format!(" ORDER BY \"{col}\" {order} NULLS LAST"));
    }
    if let Some(n) = sel.limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    let what = match &sel.filter {
        Some(f) => format!("--where {f:?}"),
        None => "the selection".into(),
    };
    ctx.execute(&sql)
        .and_then(|lf| lf.collect())
        .map_err(|e| sql_error(&what, e))
}

/// `vaelab query DIR SQL`: the result of `sql` over the folder's `runs` and `metrics`.
pub fn query(sweep_dir: &Path, sql: &str) -> anyhow::Result<DataFrame> {
    let mut ctx = context(sweep_dir)?;
    ctx.execute(sql)
        .and_then(|lf| lf.collect())
        .map_err(|e| sql_error(&format!("query {sql:?}"), e))
}
