//! One run from its keys to its folder: config, per-epoch metrics and checkpoint, manifest,
//! summary. Finished runs are skipped; interrupted ones resume from their last checkpoint.

use crate::config::RunKeys;
use crate::early_stop::Pruning;
use crate::manifest::{self, EpochFiles, Manifest, Provenance, Status, Verdict};
use anyhow::Context;
use candle_core::Device;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vaelab_data::{Dataset, SplitKind};
use vaelab_track::{self as track, Cell, MetricsRow, RunDir};
use vaelab_vae::{
    AisEstimate, Bdmc, EpochMetrics, GapSplit, IwaeEstimate, LogPxSource, TrainError, Trainer,
};

/// Everything one run needs.
pub struct RunJob<'a> {
    pub id: &'a str,
    /// How logs name the run.
    pub label: String,
    pub keys: &'a RunKeys,
    /// The file the run came from.
    pub source: &'a Path,
    pub dir: RunDir,
    pub data: &'a Dataset,
    /// Where the run's tensors live.
    pub device: &'a Device,
    /// Retrain even if the run is done.
    pub force: bool,
    /// Set by Ctrl-C or SIGTERM: stop at the next step, keeping the last finished epoch.
    pub cancel: &'a AtomicBool,
    /// When another process holds the run's lock: wait for it (true) or return `Busy`.
    pub wait_for_lock: bool,
    pub provenance: &'a Provenance,
    /// Whether, and against whom, the sweep's early stopping judges the run.
    pub pruning: Pruning<'a>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// Already done before this invocation.
    Skipped,
    Failed(String),
    Diverged(String),
    Interrupted,
    /// Stopped by the sweep's early stopping after this epoch.
    Pruned(usize),
    /// Another process is training it (its pid, when known); nothing was touched.
    Busy(Option<u32>),
}

impl Outcome {
    /// The manifest status it leaves (None: untouched).
    pub fn status(&self) -> Option<Status> {
        match self {
            Outcome::Done => Some(Status::Done),
            Outcome::Skipped | Outcome::Busy(_) => None,
            Outcome::Failed(_) => Some(Status::Failed),
            Outcome::Diverged(_) => Some(Status::Diverged),
            Outcome::Interrupted => Some(Status::Interrupted),
            Outcome::Pruned(_) => Some(Status::Pruned),
        }
    }
}

/// Called after every epoch with the train and test metrics.
pub type OnEpoch<'a> = &'a (dyn Fn(&EpochMetrics, &EpochMetrics) + Sync);

fn row(run_id: &str, m: &EpochMetrics) -> MetricsRow {
    MetricsRow {
        run_id: run_id.to_string(),
        epoch: m.epoch as u32,
        split: m.split.as_str(),
        loss: m.loss,
        neg_elbo: m.neg_elbo,
        recon: m.recon,
        kl: m.kl,
        kl_weighted: m.kl_weighted,
        beta: m.beta,
        kl_per_dim: m.kl_per_dim.clone(),
        active_units: m.active_units.map(|a| a as u32),
        active_by_layer: m
            .active_by_layer
            .as_ref()
            .map(|v| v.iter().map(|&a| a as u32).collect()),
        recon_bpd: m.recon_bpd,
        elbo_bpd: m.elbo_bpd,
        mi: m.mi,
        encoder_updates: m.encoder_updates,
        decoder_updates: m.decoder_updates,
        seconds: m.seconds,
        samples_per_sec: m.samples_per_sec,
    }
}

/// Runs `job` to its end; every outcome is also written to the run's manifest and summary.
pub fn execute(job: &RunJob, on_epoch: OnEpoch) -> Outcome {
    // One process per run at a time; the lock dies with its process, so a crash frees it.
    let lock_path = job.dir.file(track::LOCK);
    let lock = if job.wait_for_lock {
        track::Lock::acquire(&lock_path).map(Some)
    } else {
        track::Lock::try_acquire(&lock_path)
    };
    let _lock = match lock {
        Ok(Some(lock)) => lock,
        Ok(None) => return Outcome::Busy(track::holder(&lock_path)),
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    remove_stale_temp_files(job.dir.path());
    let manifest_path = job.dir.file(track::MANIFEST);
    let previous = if job.force {
        None
    } else {
        match Manifest::load(&manifest_path) {
            Ok(m) => m,
            // Nothing is written: the unreadable manifest stays for the user to look at.
            Err(e) => return Outcome::Failed(format!("{e:#}")),
        }
    };
    let resume_pruned = matches!(job.pruning, Pruning::Resume);
    if previous
        .as_ref()
        .is_some_and(|m| m.status.finished(resume_pruned) && m.id == job.id)
    {
        return Outcome::Skipped;
    }
    let start = Instant::now();
    let mut manifest = Manifest::new(job.id, job.keys, job.provenance);
    // A folder last written by another run (a run file's name reused with other keys) holds
    // that run's checkpoint: never resumed from.
    let resumable = !job.force && previous.as_ref().is_none_or(|m| m.id == job.id);
    // Kept until a resume is verified or the run starts over, so a refused resume is
    // refused again on the next try.
    if let (true, Some(previous)) = (resumable, previous) {
        manifest.checksums = previous.checksums;
        // Decided once: a resume reuses every decision (--force clears them with the run).
        manifest.decisions = previous.decisions;
    }
    let mut progress = Progress::default();
    let result = train(job, resumable, &mut manifest, &mut progress, on_epoch);
    let outcome = match result {
        Ok(Ended::Done) => Outcome::Done,
        Ok(Ended::Stopped) => Outcome::Interrupted,
        Ok(Ended::Pruned(epoch)) => Outcome::Pruned(epoch),
        Err(e) => match e.downcast_ref::<TrainError>() {
            Some(TrainError::Diverged { .. }) => Outcome::Diverged(format!("{e:#}")),
            _ => Outcome::Failed(format!("{e:#}")),
        },
    };
    if let Some(status) = outcome.status() {
        manifest.status = status;
        manifest.ended_at = Some(manifest::now());
        manifest.duration_seconds = Some(start.elapsed().as_secs_f64());
        if let Outcome::Failed(e) | Outcome::Diverged(e) = &outcome {
            manifest.error = Some(e.clone());
        }
        let cells = summary_cells(
            job,
            status,
            progress.last.as_ref(),
            &progress.estimates,
            progress.carried_seconds + start.elapsed().as_secs_f64(),
        );
        // Best effort: a run that failed writing its results may fail here again.
        let _ = track::write_summary(&job.dir.file(track::SUMMARY), &cells);
        for name in [track::SUMMARY, track::ESTEP] {
            if let Ok(sha) = track::sha256_of(&job.dir.file(name)) {
                manifest.sha256.insert(name.to_string(), sha);
            }
        }
        let _ = manifest.write(&manifest_path);
    }
    outcome
}

/// The final evaluation's estimates (each `None` where skipped or not reached).
#[derive(Default)]
pub struct Estimates {
    pub iw: Option<IwaeEstimate>,
    pub gap: Option<GapSplit>,
    pub ais: Option<AisEstimate>,
    pub bdmc: Option<Bdmc>,
}

/// What the summary needs from training, kept however training ends.
#[derive(Default)]
struct Progress {
    /// Train and test rows of the last epoch (set when every epoch ran).
    last: Option<(MetricsRow, MetricsRow)>,
    estimates: Estimates,
    /// Seconds that earlier, cut-short attempts spent on the epochs this one keeps.
    carried_seconds: f64,
}

impl Progress {
    /// Keeps the last epoch's train and test rows for the summary.
    fn keep_last(&mut self, rows: &[MetricsRow]) {
        if let [.., train, test] = rows {
            self.last = Some((train.clone(), test.clone()));
        }
    }
}

/// How training ended without an error.
enum Ended {
    /// Every epoch and the final evaluation ran.
    Done,
    /// Cancelled; the last finished epoch stands.
    Stopped,
    /// The sweep's early stopping stopped it after this epoch.
    Pruned(usize),
}

/// Trains, resuming from the folder's checkpoint when `resumable`.
fn train(
    job: &RunJob,
    resumable: bool,
    manifest: &mut Manifest,
    progress: &mut Progress,
    on_epoch: OnEpoch,
) -> anyhow::Result<Ended> {
    injected_panic(job.id);
    let dir = &job.dir;
    let header = format!(
        "# vaelab run {} (id {}), resolved from {}\n",
        job.label,
        job.id,
        job.source.display()
    );
    track::write_atomic(
        &dir.file(track::CONFIG),
        (header + &job.keys.to_toml()).as_bytes(),
    )?;
    manifest.write(&dir.file(track::MANIFEST))?;

    let cfg = job.keys.train_config();
    let mut trainer = Trainer::new(cfg.clone(), job.data, job.device.clone())?;
    trainer.stop_when(job.cancel);
    let (ckpt, metrics_path) = (dir.file(track::CHECKPOINT), dir.file(track::METRICS));
    let mut rows = Vec::new();
    let mut done = 0;
    if resumable && ckpt.exists() && metrics_path.exists() {
        verify_resume(manifest, dir)?;
        // Resume: the checkpoint says how many epochs are safely on disk; later rows are dropped.
        if let Ok(epochs) = trainer.load_checkpoint(&ckpt) {
            if let Ok(old) = track::read_metrics(&metrics_path) {
                rows = old
                    .into_iter()
                    .filter(|r| (r.epoch as usize) <= epochs)
                    .collect();
                done = epochs.min(cfg.epochs);
            }
        }
        if rows.len() != 2 * done {
            trainer = Trainer::new(cfg.clone(), job.data, job.device.clone())?;
            trainer.stop_when(job.cancel);
            rows.clear();
            done = 0;
        }
    }
    if done == 0 {
        manifest.checksums.clear();
    }
    progress.carried_seconds = rows.iter().map(|r| r.seconds).sum();
    manifest.epochs_done = done;
    manifest.last_good_epoch = done;
    // A run killed between a rung's epoch and its decision decides now, before training on.
    if let Some(end) = judge(job, manifest, &rows, done, progress)? {
        return Ok(end);
    }
    for epoch in done + 1..=cfg.epochs {
        if job.cancel.load(Ordering::SeqCst) {
            return Ok(Ended::Stopped);
        }
        let train = match trainer.train_epoch(epoch) {
            // Told to stop mid-epoch: the epoch is dropped, the last checkpoint stands.
            Err(TrainError::Stopped { .. }) => return Ok(Ended::Stopped),
            r => r?,
        };
        let test = trainer.evaluate(SplitKind::Test, epoch)?;
        if !test.loss.is_finite() {
            return Err(TrainError::Diverged { epoch, step: 0 }.into());
        }
        rows.push(row(job.id, &train));
        rows.push(row(job.id, &test));
        // Both files are staged (filled, synced), their hashes go into the manifest, and only
        // then do they replace the last epoch's: whenever a crash strikes, each file on disk
        // matches a hash the manifest holds (this epoch's or the one before).
        let metrics = track::stage_metrics(&metrics_path, &rows)?;
        let checkpoint = track::stage_with(&ckpt, |tmp| {
            trainer
                .save_checkpoint(tmp, epoch)
                .map_err(|e| e.to_string())
        })?;
        manifest.record_epoch(EpochFiles {
            epoch,
            checkpoint: checkpoint.sha256()?,
            metrics: metrics.sha256()?,
        });
        manifest.epochs_done = epoch;
        manifest.last_good_epoch = epoch;
        manifest.write(&dir.file(track::MANIFEST))?;
        metrics.commit()?;
        checkpoint.commit()?;
        on_epoch(&train, &test);
        if let Some(end) = judge(job, manifest, &rows, epoch, progress)? {
            return Ok(end);
        }
    }
    progress.keep_last(&rows);
    // The final evaluation stops at Ctrl-C too; every epoch stands and a resume redoes it.
    if cfg.iw_test_n > 0 {
        let Some(iw) = unless_stopped(trainer.iwae(), "IWAE bound")? else {
            return Ok(Ended::Stopped);
        };
        progress.estimates.iw = iw;
    }
    let est = &mut progress.estimates;
    if let Some(iw) = &est.iw {
        let Some(gap) = unless_stopped(trainer.gap_split(iw), "E-step gap split")? else {
            return Ok(Ended::Stopped);
        };
        est.gap = gap;
    }
    let Some(ais) = unless_stopped(trainer.ais(), "AIS")? else {
        return Ok(Ended::Stopped);
    };
    est.ais = ais;
    // AIS joins the gap split's candidates where it covers the split's images.
    if let (Some(gap), Some(ais)) = (&mut est.gap, &est.ais) {
        if ais.images >= gap.images && gap.images > 0 {
            let mean = ais.per_image[..gap.images].iter().sum::<f64>() / gap.images as f64;
            gap.tighten(mean, LogPxSource::Ais);
        }
    }
    let Some(bdmc) = unless_stopped(trainer.bdmc(), "BDMC")? else {
        return Ok(Ended::Stopped);
    };
    est.bdmc = bdmc;
    if let Some(gap) = &est.gap {
        track::write_estep_curve(&dir.file(track::ESTEP), &gap.curve)?;
    }
    Ok(Ended::Done)
}

/// The sweep's early stopping after `epoch`, when that epoch is one of the run's rungs: the
/// recorded decision if there is one, else a new one, recorded in the manifest before it takes
/// effect. `Some` when training ends here (pruned, or cancelled while waiting for peers).
fn judge(
    job: &RunJob,
    manifest: &mut Manifest,
    rows: &[MetricsRow],
    epoch: usize,
    progress: &mut Progress,
) -> anyhow::Result<Option<Ended>> {
    let Pruning::Judged(judging) = &job.pruning else {
        return Ok(None);
    };
    let rungs = judging.rule.pruner.rungs(job.keys.epochs);
    let Some(rung) = rungs.iter().position(|&r| r == epoch) else {
        return Ok(None);
    };
    let verdict = match manifest.decisions.iter().find(|d| d.epoch == epoch) {
        Some(d) => d.verdict,
        None => {
            injected_exit(job.id, epoch);
            let own = rows
                .iter()
                .find(|r| r.split == "test" && r.epoch as usize == epoch)
                .and_then(|r| judging.rule.metric.value(r));
            let Some(d) = judging.decide(rung, epoch, own, job.cancel) else {
                return Ok(Some(Ended::Stopped));
            };
            let verdict = d.verdict;
            manifest.decisions.push(d);
            manifest.write(&job.dir.file(track::MANIFEST))?;
            verdict
        }
    };
    if verdict == Verdict::Prune {
        progress.keep_last(rows);
        return Ok(Some(Ended::Pruned(epoch)));
    }
    Ok(None)
}

/// Fault injection (RELIABILITY.md): `VAELAB_FAULT_EXIT_BEFORE_DECISION=ID:EPOCH` ends the
/// process (exit 137, as if killed) after the run whose id starts with ID has written epoch
/// EPOCH, a rung, and before it is judged there.
fn injected_exit(id: &str, epoch: usize) {
    if let Ok(v) = std::env::var("VAELAB_FAULT_EXIT_BEFORE_DECISION") {
        if let Some((prefix, at)) = v.split_once(':') {
            if !prefix.is_empty() && id.starts_with(prefix) && at.parse() == Ok(epoch) {
                crate::output::note!(
                    "injected exit before the decision of run {id} at epoch {epoch}"
                );
                std::process::exit(137);
            }
        }
    }
}

/// Fault injection (RELIABILITY.md): `VAELAB_FAULT_PANIC_RUN=ID` panics inside the run whose
/// id starts with ID, so the tests can show that a panic stays inside its run.
fn injected_panic(id: &str) {
    if let Ok(prefix) = std::env::var("VAELAB_FAULT_PANIC_RUN") {
        if !prefix.is_empty() && id.starts_with(&prefix) {
            panic!("injected panic (VAELAB_FAULT_PANIC_RUN) in run {id}");
        }
    }
}

/// Marks a run whose training panicked `failed` in its manifest, with the panic's message (the
/// manifest would otherwise still say `running`).
pub fn mark_panicked(job: &RunJob, message: &str) {
    let path = job.dir.file(track::MANIFEST);
    let mut m = Manifest::read(&path)
        .filter(|m| m.id == job.id)
        .unwrap_or_else(|| Manifest::new(job.id, job.keys, job.provenance));
    m.status = Status::Failed;
    m.error = Some(message.to_string());
    m.ended_at = Some(manifest::now());
    let _ = m.write(&path);
}

/// Refuses to resume from a checkpoint or metrics file that matches none of the hashes the
/// last attempt recorded (truncated, corrupted, or copied from another run). Manifests written
/// before vaelab recorded hashes have none, and their runs resume unchecked.
fn verify_resume(manifest: &Manifest, dir: &RunDir) -> anyhow::Result<()> {
    if manifest.checksums.is_empty() {
        return Ok(());
    }
    let epochs: Vec<String> = manifest
        .checksums
        .iter()
        .map(|r| r.epoch.to_string())
        .collect();
    for name in [track::CHECKPOINT, track::METRICS] {
        let path = dir.file(name);
        let found =
            track::sha256_of(&path).with_context(|| format!("reading {}", path.display()))?;
        if !manifest.accepted_hashes(name).contains(&found.as_str()) {
            anyhow::bail!(
                "{} does not match the SHA-256 that {} recorded for epoch {}: the file changed \
                 after vaelab wrote it (truncated, corrupted or copied from another run), so the \
                 run does not train on from it; rerun with --force to train it from the start",
                path.display(),
                dir.file(track::MANIFEST).display(),
                epochs.join(" or ")
            );
        }
    }
    Ok(())
}

/// A final estimate, or `None` when the stop flag ended it.
fn unless_stopped<T>(r: Result<T, TrainError>, what: &'static str) -> anyhow::Result<Option<T>> {
    match r {
        Err(TrainError::StoppedEvaluating(_)) => Ok(None),
        r => r.map(Some).context(what),
    }
}

/// Removes temp files a crashed writer left in a run folder. Only called with the run's lock
/// held, so no live writer owns them.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One row: id, status, every config key, the final metrics (null where undefined).
pub fn summary_cells(
    job: &RunJob,
    status: Status,
    last: Option<&(MetricsRow, MetricsRow)>,
    est: &Estimates,
    wall: f64,
) -> Vec<(String, Cell)> {
    let mut cells = vec![
        ("run_id".to_string(), Cell::Str(Some(job.id.to_string()))),
        (
            "status".to_string(),
            Cell::Str(Some(status.as_str().to_string())),
        ),
    ];
    cells.extend(job.keys.cells());
    let cfg = job.keys.train_config();
    cells.extend(metric_cells(last, est, wall, &cfg, job.data.dim()));
    cells
}

/// The final metrics, named as in [`track::SUMMARY_METRICS`] (null where undefined).
fn metric_cells(
    last: Option<&(MetricsRow, MetricsRow)>,
    est: &Estimates,
    wall: f64,
    cfg: &vaelab_vae::TrainConfig,
    dims: usize,
) -> Vec<(String, Cell)> {
    let (iw, gap) = (est.iw.as_ref(), est.gap.as_ref());
    let (ais, bdmc) = (est.ais.as_ref(), est.bdmc.as_ref());
    let nll_bpd = iw
        .and_then(|i| i.log_px_mass)
        .map(|l| vaelab_vae::bits_per_dim(-l, dims));
    let levels = cfg.data_levels();
    let psis = iw.and_then(IwaeEstimate::reliability);
    let (train, test) = (last.map(|l| &l.0), last.map(|l| &l.1));
    let f = |v: Option<f64>| Cell::Float(v);
    [
        ("test_neg_elbo", f(test.and_then(|t| t.neg_elbo))),
        ("test_recon", f(test.map(|t| t.recon))),
        ("test_kl", f(test.and_then(|t| t.kl))),
        ("test_loss", f(test.map(|t| t.loss))),
        ("train_neg_elbo", f(train.and_then(|t| t.neg_elbo))),
        ("train_recon", f(train.map(|t| t.recon))),
        ("log_px_iw", f(iw.map(|i| i.log_px))),
        ("elbo_iw", f(iw.map(|i| i.elbo))),
        ("elbo_gap", f(iw.map(|i| i.gap))),
        ("iw_seconds", f(iw.map(|i| i.seconds))),
        ("elbo_star", f(gap.map(|g| g.elbo_star))),
        ("amortization_gap", f(gap.map(|g| g.amortization_gap))),
        ("approximation_gap", f(gap.map(|g| g.approximation_gap))),
        ("estep_seconds", f(gap.map(|g| g.seconds))),
        (
            "active_units",
            Cell::Int(test.and_then(|t| t.active_units).map(i64::from)),
        ),
        (
            "active_units_by_layer",
            Cell::Str(
                test.and_then(|t| t.active_by_layer.as_ref())
                    .map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join("+")),
            ),
        ),
        ("test_mi", f(test.and_then(|t| t.mi))),
        ("wall_seconds", f(Some(wall))),
        ("test_recon_bpd", f(test.and_then(|t| t.recon_bpd))),
        ("test_elbo_bpd", f(test.and_then(|t| t.elbo_bpd))),
        ("nll_bpd", f(nll_bpd)),
        ("data_levels", Cell::Int(Some(i64::from(levels)))),
        (
            "bpd_scored_as",
            Cell::Str(Some(cfg.likelihood.mass_label(levels))),
        ),
        ("iw_khat_bound", f(psis.map(|p| p.bound))),
        ("iw_khat_share", f(psis.map(|p| p.share_above))),
        ("iw_khat_max", f(psis.map(|p| p.max))),
        ("log_px_iw_star", f(gap.map(|g| g.log_px_star))),
        ("gap_log_px", f(gap.map(|g| g.log_px_split))),
        (
            "gap_log_px_from",
            Cell::Str(gap.map(|g| g.log_px_from.as_str().to_string())),
        ),
        ("log_px_ais", f(ais.map(|a| a.log_px))),
        ("ais_chain_sd", f(ais.map(|a| a.chain_sd))),
        ("ais_acceptance", f(ais.map(|a| a.acceptance))),
        ("ais_seconds", f(ais.map(|a| a.seconds))),
        ("bdmc_lower", f(bdmc.map(|b| b.lower.log_px))),
        ("bdmc_upper", f(bdmc.map(|b| b.upper.log_px))),
        ("bdmc_width", f(bdmc.map(Bdmc::width))),
        (
            "bdmc_seconds",
            f(bdmc.map(|b| b.lower.seconds + b.upper.seconds)),
        ),
        ("log_px_iw_se", f(iw.map(|i| i.standard_errors().0))),
        ("elbo_iw_se", f(iw.map(|i| i.standard_errors().1))),
        ("log_px_ais_se", f(ais.map(|a| a.se))),
        ("log_px_iw_star_se", f(gap.map(|g| g.star_se.0))),
        ("elbo_star_se", f(gap.map(|g| g.star_se.1))),
        ("bdmc_lower_se", f(bdmc.map(|b| b.lower.se))),
        ("bdmc_upper_se", f(bdmc.map(|b| b.upper.se))),
        ("estep_steps", f(gap.map(|g| g.estep_steps))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    /// The report tells metrics from config keys by this list, so it must name every metric.
    #[test]
    fn summary_metrics_are_the_listed_columns() {
        let cfg = crate::config::RunKeys::default().train_config();
        let names: Vec<String> =
            super::metric_cells(None, &super::Estimates::default(), 0.0, &cfg, 784)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        assert_eq!(names, vaelab_track::SUMMARY_METRICS);
    }
}
