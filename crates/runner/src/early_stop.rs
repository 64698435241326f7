//! A sweep's `[early_stop]` table, and the decisions it makes: at each rung a run is judged
//! against the runs before it in plan order, read from their manifests and `metrics.parquet`
//! in the sweep folder. The peers are fixed by the plan, not by who got there first, so every
//! backend, every `--jobs` and every resume reaches the same decisions; the price is that a run
//! at a rung waits for the earlier runs to get there (or end short of it).

use crate::manifest::{Decision, Manifest, Status, Verdict};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use toml::{Table, Value};
use vaelab_search::{Direction, Pruner, Rule};
use vaelab_track::{self as track, MetricsRow};

/// A per-epoch test metric (a column of `metrics.parquet`) a rule may judge by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochMetric {
    Loss,
    NegElbo,
    Recon,
    Kl,
    ReconBpd,
    ElboBpd,
    Mi,
    ActiveUnits,
}

/// One per-epoch metric: its column, the direction that is better (`None`: the file must
/// say), whether only a VAE records it, and how to read it from a test row.
struct MetricEntry {
    metric: EpochMetric,
    name: &'static str,
    direction: Option<Direction>,
    vae_only: bool,
    read: fn(&MetricsRow) -> Option<f64>,
}

const fn entry(
    metric: EpochMetric,
    name: &'static str,
    direction: Option<Direction>,
    vae_only: bool,
    read: fn(&MetricsRow) -> Option<f64>,
) -> MetricEntry {
    MetricEntry {
        metric,
        name,
        direction,
        vae_only,
        read,
    }
}

const MIN: Option<Direction> = Some(Direction::Minimize);
const MAX: Option<Direction> = Some(Direction::Maximize);

/// Every metric a rule may judge by, once.
const METRICS: &[MetricEntry] = &[
    entry(EpochMetric::NegElbo, "neg_elbo", MIN, true, |r| r.neg_elbo),
    entry(EpochMetric::Loss, "loss", MIN, false, |r| Some(r.loss)),
    entry(EpochMetric::Recon, "recon", MIN, false, |r| Some(r.recon)),
    entry(EpochMetric::Kl, "kl", None, true, |r| r.kl),
    entry(EpochMetric::ReconBpd, "recon_bpd", MIN, false, |r| {
        r.recon_bpd
    }),
    entry(EpochMetric::ElboBpd, "elbo_bpd", MIN, true, |r| r.elbo_bpd),
    entry(EpochMetric::Mi, "mi", MAX, true, |r| r.mi),
    entry(EpochMetric::ActiveUnits, "active_units", MAX, true, |r| {
        r.active_units.map(f64::from)
    }),
];

impl EpochMetric {
    fn entry(self) -> &'static MetricEntry {
        METRICS
            .iter()
            .find(|e| e.metric == self)
            .expect("every metric has an entry")
    }

    /// The column name.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Whether only a VAE run records it (an autoencoder's row is null).
    pub fn vae_only(self) -> bool {
        self.entry().vae_only
    }

    /// Its value in a test row of `metrics.parquet` (`None` where null).
    pub fn value(self, row: &MetricsRow) -> Option<f64> {
        (self.entry().read)(row)
    }
}

/// The checked `[early_stop]` table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStop {
    pub pruner: Pruner,
    pub metric: EpochMetric,
}

/// A key of `[early_stop]` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    /// The key (the table itself when empty).
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: String) -> KeyError {
    KeyError {
        key: key.to_string(),
        message,
    }
}

const KEYS: &str = "rule, metric, direction, min_epochs, reduction_factor, grace";

fn int(table: &Table, key: &str, min: i64, default: i64, what: &str) -> Result<usize, KeyError> {
    match table.get(key) {
        None => Ok(default as usize),
        Some(Value::Integer(n)) if *n >= min => Ok(*n as usize),
        Some(v) => Err(bad(
            key,
            format!("key `{key}` = {v} in [early_stop] is not allowed; allowed: an integer ≥ {min} ({what})"),
        )),
    }
}

impl EarlyStop {
    /// Checks an `[early_stop]` table.
    pub fn parse(table: &Table) -> Result<EarlyStop, KeyError> {
        if let Some(key) = table.keys().find(|k| !KEYS.split(", ").any(|a| a == *k)) {
            return Err(bad(
                key,
                format!("unknown key `{key}` in [early_stop]; allowed: {KEYS}"),
            ));
        }
        let rule_name = match table.get("rule") {
            Some(Value::String(s)) if s == "asha" || s == "median" => s.as_str(),
            other => {
                return Err(bad(
                    "rule",
                    format!(
                    "key `rule`{} in [early_stop] is not allowed; allowed: \"asha\", \"median\"",
                    other.map_or(" is missing".into(), |v| format!(" = {v}"))
                ),
                ))
            }
        };
        let names: Vec<&str> = METRICS.iter().map(|e| e.name).collect();
        let metric = match table.get("metric") {
            None => EpochMetric::NegElbo,
            Some(Value::String(s)) => match METRICS.iter().find(|e| e.name == s) {
                Some(e) => e.metric,
                None => {
                    let why = if track::SUMMARY_METRICS.contains(&s.as_str()) {
                        "is measured once, at the end of a run, not per epoch"
                    } else {
                        "is not a per-epoch test metric"
                    };
                    return Err(bad(
                        "metric",
                        format!(
                            "key `metric` = {s:?} in [early_stop] {why}; allowed: {}",
                            names.join(", ")
                        ),
                    ));
                }
            },
            Some(v) => {
                return Err(bad(
                    "metric",
                    format!(
                        "key `metric` = {v} in [early_stop] is not a string; allowed: {}",
                        names.join(", ")
                    ),
                ))
            }
        };
        let direction = match table.get("direction") {
            None => metric.entry().direction.ok_or_else(|| {
                bad(
                    "metric",
                    format!(
                        "key `metric` = {:?} in [early_stop] has no better direction of its own; add direction = \"minimize\" or \"maximize\"",
                        metric.name()
                    ),
                )
            })?,
            Some(Value::String(s)) => Direction::parse(s).ok_or_else(|| {
                bad(
                    "direction",
                    format!("key `direction` = {s:?} in [early_stop] is not allowed; allowed: \"minimize\", \"maximize\""),
                )
            })?,
            Some(v) => {
                return Err(bad(
                    "direction",
                    format!("key `direction` = {v} in [early_stop] is not allowed; allowed: \"minimize\", \"maximize\""),
                ))
            }
        };
        let min_epochs = int(
            table,
            "min_epochs",
            1,
            1,
            "epochs before the first judgement",
        )?;
        let grace = int(
            table,
            "grace",
            0,
            0,
            "peers a rung needs before it stops anyone",
        )?;
        let rule = if rule_name == "asha" {
            Rule::Asha {
                reduction_factor: int(
                    table,
                    "reduction_factor",
                    2,
                    3,
                    "ASHA's η: rungs at min_epochs·η^k, and the best 1/η of each goes on",
                )?,
            }
        } else {
            if table.contains_key("reduction_factor") {
                return Err(bad(
                    "reduction_factor",
                    "key `reduction_factor` in [early_stop] belongs to rule = \"asha\"; the median rule judges every epoch from min_epochs".into(),
                ));
            }
            Rule::Median
        };
        Ok(EarlyStop {
            pruner: Pruner {
                rule,
                min_epochs,
                grace,
                direction,
            },
            metric,
        })
    }

    /// One line for `plan`: the rule, the metric and the epochs judged.
    pub fn describe(&self, epochs: usize) -> String {
        let p = &self.pruner;
        let rungs: Vec<String> = p.rungs(epochs).iter().map(usize::to_string).collect();
        let eta = match p.rule {
            Rule::Asha { reduction_factor } => format!(", η = {reduction_factor}"),
            Rule::Median => String::new(),
        };
        format!(
            "early stop: {} on test {} ({}{eta}, grace {}), judged after epoch {} of {epochs}",
            p.rule.name(),
            self.metric.name(),
            p.direction.name(),
            p.grace,
            if rungs.is_empty() {
                "none".into()
            } else {
                rungs.join(", ")
            }
        )
    }
}

/// What early stopping does to one run.
pub enum Pruning<'a> {
    /// Nothing is judged (no `[early_stop]`, or `vaelab run`); a pruned run stays pruned.
    Off,
    /// Judged at its rungs.
    Judged(Judging<'a>),
    /// `--no-prune`: a pruned run trains on to its last epoch, and nothing is judged.
    Resume,
}

impl<'a> Pruning<'a> {
    /// What a sweep's early stopping (its plan's `[early_stop]`, if any) does to the run with
    /// plan index `index`: `--no-prune` (`resume_pruned`) trains pruned runs on, a rule judges
    /// the run against the runs before it, and no rule judges nothing.
    pub fn for_run(
        early_stop: Option<&'a EarlyStop>,
        index: usize,
        ids: &'a [String],
        runs_dir: &'a Path,
        resume_pruned: bool,
        say: &'a (dyn Fn(String) + Sync),
    ) -> Pruning<'a> {
        match (early_stop, resume_pruned) {
            (_, true) => Pruning::Resume,
            (None, false) => Pruning::Off,
            (Some(rule), false) => Pruning::Judged(Judging {
                rule,
                runs_dir,
                earlier: &ids[..index],
                say,
            }),
        }
    }
}

/// A run's part in its sweep's early stopping.
pub struct Judging<'a> {
    pub rule: &'a EarlyStop,
    /// The sweep's `runs/` folder.
    pub runs_dir: &'a Path,
    /// The runs before this one in plan order: the only runs it is judged against.
    pub earlier: &'a [String],
    /// Told, now and then, which run a decision is waiting for.
    pub say: &'a (dyn Fn(String) + Sync),
}

/// An earlier run's standing at an epoch.
#[derive(Debug, Clone, Copy)]
enum Peer {
    /// It reached the epoch (and was not stopped before it): its value there.
    Reached(Option<f64>),
    /// It ended, or was stopped, short of the epoch.
    Out,
    /// Not there yet.
    Pending,
}

impl Judging<'_> {
    /// Where `id` stands at `epoch`.
    fn peer(&self, id: &str, epoch: usize) -> Peer {
        let dir = self.runs_dir.join(id);
        let Some(m) = Manifest::read(&dir.join(track::MANIFEST)).filter(|m| m.id == id) else {
            return Peer::Pending;
        };
        let stopped_before = m
            .decisions
            .iter()
            .any(|d| d.epoch < epoch && d.verdict == Verdict::Prune);
        if stopped_before {
            return Peer::Out;
        }
        if m.epochs_done >= epoch {
            // The manifest is written before its epoch's metrics replace the last: until they
            // do, the row is not there yet.
            let rows = track::read_metrics(&dir.join(track::METRICS)).unwrap_or_default();
            return match rows
                .iter()
                .find(|r| r.split == "test" && r.epoch as usize == epoch)
            {
                Some(row) => Peer::Reached(self.rule.metric.value(row)),
                None => Peer::Pending,
            };
        }
        match m.status {
            Status::Done | Status::Pruned | Status::Failed | Status::Diverged => Peer::Out,
            Status::Running | Status::Interrupted => Peer::Pending,
        }
    }

    /// Judges a run whose metric after `epoch` (rung `rung`) is `own`, once every earlier run
    /// has reached that epoch or ended short of it; `None` when `cancel` is raised first.
    pub fn decide(
        &self,
        rung: usize,
        epoch: usize,
        own: Option<f64>,
        cancel: &AtomicBool,
    ) -> Option<Decision> {
        let mut standing: Vec<Peer> = vec![Peer::Pending; self.earlier.len()];
        // A wait shorter than a second goes unsaid; a longer one is said once a minute.
        let started = Instant::now();
        let mut last_said: Option<Instant> = None;
        loop {
            for (id, peer) in self.earlier.iter().zip(&mut standing) {
                if matches!(peer, Peer::Pending) {
                    *peer = self.peer(id, epoch);
                }
            }
            let Some(first) = standing.iter().position(|p| matches!(p, Peer::Pending)) else {
                break;
            };
            if cancel.load(Ordering::SeqCst) {
                return None;
            }
            let due = last_said.map_or(started.elapsed() >= Duration::from_secs(1), |t| {
                t.elapsed() >= Duration::from_secs(60)
            });
            if due {
                (self.say)(format!(
                    "waiting for run {} to reach epoch {epoch} (runs are judged against the runs before them)",
                    self.earlier[first]
                ));
                last_said = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let (peers, values): (Vec<String>, Vec<Option<f64>>) = self
            .earlier
            .iter()
            .zip(&standing)
            .filter_map(|(id, p)| match p {
                Peer::Reached(v) => Some((id.clone(), *v)),
                _ => None,
            })
            .unzip();
        let verdict = self.rule.pruner.judge(own, &values);
        Some(Decision {
            rung,
            epoch,
            metric: self.rule.metric.name().to_string(),
            value: own,
            peers,
            peer_values: values,
            threshold: verdict.threshold,
            verdict: if verdict.keep {
                Verdict::Continue
            } else {
                Verdict::Prune
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EarlyStop, KeyError> {
        EarlyStop::parse(&text.parse::<Table>().unwrap())
    }

    #[test]
    fn defaults_and_every_bad_key_named() {
        let e = parse("rule = \"asha\"").unwrap();
        assert_eq!(e.metric, EpochMetric::NegElbo);
        assert_eq!(e.pruner.direction, Direction::Minimize);
        assert_eq!(e.pruner.rungs(20), vec![1, 3, 9]);
        let m = parse("rule = \"median\"\nmetric = \"mi\"\nmin_epochs = 3").unwrap();
        assert_eq!(m.pruner.direction, Direction::Maximize);
        assert_eq!(m.pruner.rungs(5), vec![3, 4]);
        for (text, key, needle) in [
            (
                "rule = \"hyperband\"",
                "rule",
                "allowed: \"asha\", \"median\"",
            ),
            ("metric = \"loss\"", "rule", "is missing"),
            (
                "rule = \"asha\"\nmetric = \"log_px_iw\"",
                "metric",
                "not per epoch",
            ),
            (
                "rule = \"asha\"\nmetric = \"elbo\"",
                "metric",
                "neg_elbo, loss",
            ),
            ("rule = \"asha\"\nmetric = \"kl\"", "metric", "direction"),
            (
                "rule = \"asha\"\nreduction_factor = 1",
                "reduction_factor",
                "≥ 2",
            ),
            ("rule = \"asha\"\nmin_epochs = 0", "min_epochs", "≥ 1"),
            ("rule = \"asha\"\ngrace = -1", "grace", "≥ 0"),
            (
                "rule = \"asha\"\ndirection = \"up\"",
                "direction",
                "\"maximize\"",
            ),
            (
                "rule = \"median\"\nreduction_factor = 3",
                "reduction_factor",
                "asha",
            ),
            ("rule = \"asha\"\neta = 3", "eta", "unknown key"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "{text}");
            assert!(e.message.contains(needle), "{text}: {}", e.message);
        }
    }
}
