//! Sweep files: `[sweep]`, `[base]`, `[grid]`, `[search]`, `[[include]]`, `[[exclude]]` → a
//! checked plan.
//!
//! Every error names the file, line and column, and all checks run before anything trains.

use crate::config::{is_safe_name, validate, RunKeys, RUN_KEYS};
use crate::early_stop::EarlyStop;
use crate::plan::{Plan, PlannedRun};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::{Spanned, Table, Value};
use vaelab_search::{Dist, Method, Space, MAX_TRIALS};

/// A sweep file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{col}: {message}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    sweep: SweepHeader,
    base: Option<Spanned<RunKeys>>,
    #[serde(default)]
    grid: BTreeMap<String, Spanned<Vec<Spanned<Value>>>>,
    search: Option<Spanned<Table>>,
    early_stop: Option<Spanned<Table>>,
    #[serde(default)]
    include: Vec<Spanned<Table>>,
    #[serde(default)]
    exclude: Vec<Spanned<Table>>,
    slurm: Option<Spanned<vaelab_slurm::Settings>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepHeader {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default = "default_seeds")]
    seeds: Spanned<Vec<u64>>,
    jobs: Option<Spanned<usize>>,
}

fn default_seeds() -> Spanned<Vec<u64>> {
    Spanned::new(0..0, vec![0])
}

/// Reads, checks and expands a sweep file.
pub fn load_sweep_file(path: &Path) -> Result<Plan, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read {
        path: path.into(),
        source,
    })?;
    let at = |span: Range<usize>, message: String| {
        let (line, col) = line_col(&text, span.start);
        SweepError::At {
            path: path.into(),
            line,
            col,
            message,
        }
    };
    let file: SweepFile = toml::from_str(&text).map_err(|e| {
        let msg = crate::config::plain_types(e.message());
        at(e.span().unwrap_or(0..0), msg)
    })?;
    expand(file, &text, path, &at)
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Run keys that a sweep may vary: every run key but `name` (the sweep names runs by id) and
/// `seed` (set by `[sweep] seeds`, or per `[[include]]`).
fn check_keys(
    table: &Table,
    span: &Range<usize>,
    what: &str,
    allow_seed: bool,
    at: &dyn Fn(Range<usize>, String) -> SweepError,
) -> Result<(), SweepError> {
    for key in table.keys() {
        let ok = RUN_KEYS.contains(&key.as_str()) && key != "name" && (allow_seed || key != "seed");
        if !ok {
            let hint = match key.as_str() {
                "name" => "runs in a sweep are named by their id; the sweep's name goes in [sweep]"
                    .to_string(),
                "seed" => "seeds come from `seeds = [...]` in [sweep]".to_string(),
                _ => format!(
                    "allowed: {}",
                    RUN_KEYS
                        .iter()
                        .filter(|k| **k != "name")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(at(
                span.clone(),
                format!("unknown key `{key}` in {what}; {hint}"),
            ));
        }
    }
    Ok(())
}

/// `base` with `overrides` on top, checked like a run file.
fn resolve(base: &Table, overrides: &Table) -> Result<RunKeys, String> {
    let mut merged = base.clone();
    merged.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    let keys: RunKeys = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| crate::config::plain_types(e.message()))?;
    validate(&keys).map_err(|(key, value, allowed)| {
        format!("key `{key}` = {value} is not allowed; allowed: {allowed}")
    })?;
    Ok(keys)
}

/// Whether every key of `pattern` has the same value in `keys` (1 and 1.0 are equal).
fn matches(pattern: &Table, keys: &Table) -> bool {
    pattern.iter().all(|(k, v)| match (keys.get(k), v) {
        (Some(Value::Float(a)), Value::Integer(b)) | (Some(Value::Integer(b)), Value::Float(a)) => {
            *a == *b as f64
        }
        (Some(a), b) => a == b,
        (None, _) => false,
    })
}

fn to_table(keys: &RunKeys) -> Table {
    Table::try_from(keys).unwrap_or_default()
}

fn expand(
    file: SweepFile,
    text: &str,
    path: &Path,
    at: &dyn Fn(Range<usize>, String) -> SweepError,
) -> Result<Plan, SweepError> {
    let SweepFile {
        sweep,
        base,
        grid,
        search,
        early_stop,
        include,
        exclude,
        slurm,
    } = file;
    let slurm = match slurm {
        Some(table) => {
            let span = table.span();
            let settings = table.into_inner();
            if let Err((key, value, allowed)) = settings.validate() {
                let span = key_span(text, key, span.start).unwrap_or(span);
                return Err(at(
                    span,
                    format!("key `{key}` = {value} in [slurm] is not allowed; allowed: {allowed}"),
                ));
            }
            settings
        }
        None => vaelab_slurm::Settings::default(),
    };
    if !is_safe_name(sweep.name.get_ref()) {
        return Err(at(sweep.name.span(), format!("key `name` = {:?} is not allowed; allowed: letters, digits, `.`, `_` and `-` (the folder results/<name>/)", sweep.name.get_ref())));
    }
    if sweep.seeds.get_ref().is_empty() {
        return Err(at(
            sweep.seeds.span(),
            "key `seeds` is an empty list; allowed: one or more seeds, e.g. seeds = [0, 1, 2]"
                .into(),
        ));
    }
    if let Some(jobs) = &sweep.jobs {
        if *jobs.get_ref() == 0 {
            return Err(at(
                jobs.span(),
                "key `jobs` = 0 is not allowed; allowed: an integer ≥ 1 (runs trained at once)"
                    .into(),
            ));
        }
    }
    let (base, base_span) = match base {
        Some(b) => {
            let span = b.span();
            (b.into_inner(), span)
        }
        None => (RunKeys::default(), 0..0),
    };
    if base.name.is_some() {
        return Err(at(base_span, "key `name` in [base]: runs in a sweep are named by their id; the sweep's name goes in [sweep]".into()));
    }
    if let Err((key, value, allowed)) = validate(&base) {
        let span = key_span(text, key, base_span.start).unwrap_or(base_span);
        return Err(at(
            span,
            format!("key `{key}` = {value} in [base] is not allowed; allowed: {allowed}"),
        ));
    }
    let base_table = to_table(&base);

    // Every grid value on its own, so an error points at the value itself.
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    for (key, values) in &grid {
        let single = Table::from_iter([(key.clone(), Value::Boolean(true))]);
        check_keys(&single, &values.span(), "[grid]", false, at)?;
        if values.get_ref().is_empty() {
            return Err(at(
                values.span(),
                format!("[grid] key `{key}` is an empty list; allowed: one or more values"),
            ));
        }
        for v in values.get_ref() {
            let one = Table::from_iter([(key.clone(), v.get_ref().clone())]);
            resolve(&base_table, &one).map_err(|m| at(v.span(), format!("[grid] `{key}`: {m}")))?;
        }
        axes.push((
            key.clone(),
            values
                .get_ref()
                .iter()
                .map(|v| v.get_ref().clone())
                .collect(),
        ));
    }
    let grid_span = grid.values().next().map(|v| v.span()).unwrap_or(0..0);
    let search = match search {
        Some(table) => Some(search_space(table, text, &base_table, &grid, at)?),
        None => None,
    };

    // The cartesian product, minus the excluded combinations.
    let mut combos: Vec<Table> = vec![Table::new()];
    for (key, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(key.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    // Every grid combination takes every trial (the same drawn values for each); without a
    // search, one empty trial.
    let trials = match &search {
        Some((space, span)) => space
            .draw()
            .map_err(|e| at(span.clone(), format!("[search]: {e}")))?,
        None => vec![Table::new()],
    };
    let mut resolved: Vec<(RunKeys, bool)> = Vec::new();
    for combo in &combos {
        for (i, trial) in trials.iter().enumerate() {
            let mut both = combo.clone();
            both.extend(trial.iter().map(|(k, v)| (k.clone(), v.clone())));
            let keys = resolve(&base_table, &both).map_err(|m| match &search {
                Some((_, span)) => at(
                    span.clone(),
                    format!("[search] trial {} ({}): {m}", i + 1, inline(&both)),
                ),
                None => at(
                    grid_span.clone(),
                    format!("[grid] combination {combo}: {m}"),
                ),
            })?;
            resolved.push((keys, false));
        }
    }
    let mut notes = Vec::new();
    if let Some((space, _)) = &search {
        let keys: Vec<&str> = space.keys.iter().map(|(k, _)| k.as_str()).collect();
        let on_grid = match combos.len() {
            1 => String::new(),
            n => format!(", each on {n} grid combinations"),
        };
        notes.push(format!(
            "search: {} {} trials over {} (seed {}){on_grid}",
            space.trials,
            space.method.name(),
            keys.join(", "),
            space.seed,
        ));
        notes.extend(
            space
                .warnings()
                .into_iter()
                .map(|w| format!("warning: {w}")),
        );
    }
    let mut hits = vec![0usize; exclude.len()];
    resolved.retain(|(keys, _)| {
        let table = to_table(keys);
        let mut keep = true;
        for (i, pattern) in exclude.iter().enumerate() {
            if matches(pattern.get_ref(), &table) {
                hits[i] += 1;
                keep = false;
            }
        }
        keep
    });
    for (pattern, n) in exclude.iter().zip(&hits) {
        check_keys(pattern.get_ref(), &pattern.span(), "[[exclude]]", true, at)?;
        if *n == 0 {
            return Err(at(
                pattern.span(),
                format!(
                    "[[exclude]] {{ {} }} matches no run of the grid; remove it or fix its values",
                    pattern.get_ref().to_string().trim().replace('\n', ", ")
                ),
            ));
        }
    }
    for extra in &include {
        check_keys(extra.get_ref(), &extra.span(), "[[include]]", true, at)?;
        let keys = resolve(&base_table, extra.get_ref())
            .map_err(|m| at(extra.span(), format!("[[include]]: {m}")))?;
        resolved.push((keys, extra.get_ref().contains_key("seed")));
    }

    // Seeds, then identity: runs that would train the same model are trained once.
    let mut runs = Vec::new();
    let mut seen = HashSet::new();
    let mut merged = 0;
    for (keys, has_seed) in resolved {
        let seeds = if has_seed {
            vec![keys.seed]
        } else {
            sweep.seeds.get_ref().clone()
        };
        for seed in seeds {
            // Keys the run does not read are reset, so runs that train the same model merge.
            let keys = RunKeys {
                seed,
                ..keys.clone()
            }
            .canonical();
            let id = keys.run_id();
            if seen.insert(id.clone()) {
                runs.push(PlannedRun { id, keys });
            } else {
                merged += 1;
            }
        }
    }
    let early_stop = match early_stop {
        Some(table) => {
            let rule = early_stop_rule(table, text, &runs, at)?;
            let epochs = runs.iter().map(|r| r.keys.epochs).max().unwrap_or(0);
            notes.push(rule.describe(epochs));
            Some(rule)
        }
        None => None,
    };
    Ok(Plan {
        name: sweep.name.into_inner(),
        description: sweep.description,
        jobs: sweep.jobs.map(|j| j.into_inner()),
        runs,
        merged,
        excluded: hits.iter().sum(),
        source: path.into(),
        slurm,
        notes,
        early_stop,
    })
}

/// The `[early_stop]` table, checked against the planned runs: its metric must be one every
/// run records, and some run must have an epoch to judge.
fn early_stop_rule(
    table: Spanned<Table>,
    text: &str,
    runs: &[PlannedRun],
    at: &dyn Fn(Range<usize>, String) -> SweepError,
) -> Result<EarlyStop, SweepError> {
    let span = table.span();
    let key_at = |key: &str| key_span(text, key, span.start).unwrap_or(span.clone());
    let rule = EarlyStop::parse(table.get_ref()).map_err(|e| at(key_at(&e.key), e.message))?;
    if rule.metric.vae_only() {
        if let Some(ae) = runs
            .iter()
            .find(|r| r.keys.train_config().model == vaelab_vae::ModelKind::Ae)
        {
            return Err(at(
                key_at("metric"),
                format!(
                    "key `metric` = {:?} in [early_stop]: run {} is an autoencoder (model = \"ae\"), which has no {0}; allowed for sweeps with autoencoders: loss, recon, recon_bpd",
                    rule.metric.name(),
                    ae.id
                ),
            ));
        }
    }
    if runs
        .iter()
        .all(|r| rule.pruner.rungs(r.keys.epochs).is_empty())
    {
        let epochs = runs.iter().map(|r| r.keys.epochs).max().unwrap_or(0);
        return Err(at(
            key_at("min_epochs"),
            format!(
                "[early_stop] would judge no run: the first judgement comes after epoch {} and no run trains past epoch {epochs}; allowed: min_epochs below the runs' epochs",
                rule.pruner.min_epochs
            ),
        ));
    }
    Ok(rule)
}

/// A table's entries on one line, `k = v, …`.
fn inline(table: &Table) -> String {
    table
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `[search]` table as a checked space: `method`, `trials`, `seed`, and a distribution per
/// run key, each of whose extreme values must be a value the key allows.
fn search_space(
    table: Spanned<Table>,
    text: &str,
    base: &Table,
    grid: &BTreeMap<String, Spanned<Vec<Spanned<Value>>>>,
    at: &dyn Fn(Range<usize>, String) -> SweepError,
) -> Result<(Space, Range<usize>), SweepError> {
    let span = table.span();
    let mut table = table.into_inner();
    let key_at = |key: &str| key_span(text, key, span.start).unwrap_or(span.clone());
    let method = match table.remove("method") {
        Some(Value::String(m)) => Method::parse(&m).ok_or_else(|| {
            at(
                key_at("method"),
                format!("key `method` = {m:?} in [search] is not allowed; allowed: \"random\", \"sobol\""),
            )
        })?,
        other => {
            return Err(at(
                other.map_or(span.clone(), |_| key_at("method")),
                "key `method` in [search] is missing or not a string; allowed: \"random\", \"sobol\"".into(),
            ))
        }
    };
    let trials = match table.remove("trials") {
        Some(Value::Integer(n)) if n >= 1 && n as usize <= MAX_TRIALS => n as usize,
        other => {
            return Err(at(
                other.map_or(span.clone(), |_| key_at("trials")),
                format!("key `trials` in [search] is missing or out of range; allowed: an integer from 1 to {MAX_TRIALS}"),
            ))
        }
    };
    let seed = match table.remove("seed") {
        None => 0,
        Some(Value::Integer(n)) if n >= 0 => n as u64,
        Some(v) => {
            return Err(at(
                key_at("seed"),
                format!("key `seed` = {v} in [search] is not allowed; allowed: an integer ≥ 0 (the seed of the draws; the runs' seeds come from [sweep] seeds)"),
            ))
        }
    };
    let mut keys = Vec::new();
    for (key, value) in table {
        let single = Table::from_iter([(key.clone(), Value::Boolean(true))]);
        check_keys(&single, &key_at(&key), "[search]", false, at)?;
        if grid.contains_key(&key) {
            return Err(at(
                key_at(&key),
                format!("key `{key}` is both in [grid] and in [search]; keep it in one"),
            ));
        }
        let dist =
            Dist::parse(&value).map_err(|m| at(key_at(&key), format!("[search] `{key}`: {m}")))?;
        for v in dist.extremes() {
            let one = Table::from_iter([(key.clone(), v)]);
            resolve(base, &one).map_err(|m| at(key_at(&key), format!("[search] `{key}`: {m}")))?;
        }
        keys.push((key, dist));
    }
    let space = Space {
        method,
        trials,
        seed,
        keys,
    };
    space
        .check()
        .map_err(|e| at(span.clone(), format!("[search]: {e}")))?;
    Ok((space, span))
}

/// The span of `key = …` at or after `from`, for errors about a key of a table.
fn key_span(text: &str, key: &str, from: usize) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if start < from {
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
        {
            let col = line.len() - trimmed.len();
            return Some(start + col..start + col + key.len());
        }
    }
    None
}
