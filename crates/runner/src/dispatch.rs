//! Trains the runs of a plan side by side: `jobs` workers, each in its own rayon pool of
//! `threads` threads, sharing the loaded datasets read-only. A run that fails or diverges is
//! recorded and the others go on; the sweep tables are rewritten as each run ends.

use crate::early_stop::Pruning;
use crate::manifest::Provenance;
use crate::output::note;
use crate::plan::Plan;
use crate::run::{execute, Outcome, RunJob};
use crate::tables::write_sweep_tables;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use vaelab_data::{DataSource, Dataset};
use vaelab_track::RunDir;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// Runs trained at once.
    pub jobs: usize,
    /// Threads of each run's kernels.
    pub threads: usize,
    /// Retrain finished runs.
    pub force: bool,
    /// Where every run trains.
    pub device: candle_core::Device,
    /// `--no-prune`: pruned runs train on to their last epoch, and nothing is judged.
    pub resume_pruned: bool,
}

impl Dispatch {
    /// The measured default on this kind of machine: one run per core, one thread each
    /// (4 runs x 3 epochs: 13.6 s against 16.3 s for one run at a time on 2 threads).
    pub fn default_for(runs: usize, jobs: Option<usize>, threads: Option<usize>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = jobs.unwrap_or(cores).clamp(1, runs.max(1));
        let threads = threads.unwrap_or((cores / jobs).max(1));
        Self {
            jobs,
            threads,
            force: false,
            device: candle_core::Device::Cpu,
            resume_pruned: false,
        }
    }
}

/// Progress: bars on a terminal, plain lines otherwise.
pub(crate) struct Reporter {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
}

impl Reporter {
    pub(crate) fn new(total: usize, jobs: usize) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bars: None };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let main = multi.add(ProgressBar::new(total as u64));
        main.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs  {elapsed} elapsed, ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let workers = (0..jobs)
            .map(|_| {
                let b = multi.add(ProgressBar::new_spinner());
                b.enable_steady_tick(Duration::from_millis(200));
                b
            })
            .collect();
        Self {
            bars: Some((multi, main, workers)),
        }
    }

    fn line(&self, worker: usize, text: String) {
        match &self.bars {
            Some((_, _, w)) => w[worker].set_message(text),
            None => note!("{text}"),
        }
    }

    /// A run ended: its line, and the bar advances.
    pub(crate) fn finished(&self, text: String) {
        self.note(text);
        if let Some((_, main, _)) = &self.bars {
            main.inc(1);
        }
    }

    /// A line above the bars that is not a finished run (the bar does not advance).
    pub(crate) fn note(&self, text: String) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(text);
            }
            None => note!("{text}"),
        }
    }

    /// The text beside the bar (on a terminal only: plain output gets the finished lines).
    pub(crate) fn status(&self, text: String) {
        if let Some((_, main, _)) = &self.bars {
            main.set_message(text);
        }
    }

    pub(crate) fn close(&self) {
        if let Some((_, main, workers)) = &self.bars {
            workers.iter().for_each(|w| w.finish_and_clear());
            main.finish();
        }
    }
}

/// A short name for logs: the id and the keys that vary in the sweep.
pub fn label(plan: &Plan, i: usize, varying: &[&str]) -> String {
    let mut s = plan.runs[i].id.clone();
    for k in varying.iter().filter(|k| plan.runs[i].keys.uses(k)) {
        s.push_str(&format!(" {k}={}", plan.value(i, k)));
    }
    s
}

/// Trains every run of `plan` under `sweep_dir`; returns each run's outcome, in plan order.
pub fn run_plan(
    plan: &Plan,
    sweep_dir: &Path,
    data: &HashMap<DataSource, Dataset>,
    how: &Dispatch,
    cancel: &AtomicBool,
) -> anyhow::Result<Vec<Outcome>> {
    let provenance = Provenance::detect();
    let varying = plan.varying();
    let reporter = Reporter::new(plan.runs.len(), how.jobs);
    // Runs in plan order; a run another process holds goes to `waiting`, taken (and waited
    // for) once nothing else is left, so two sweeps on one folder share the work.
    let queue = Mutex::new((0..plan.runs.len()).collect::<std::collections::VecDeque<usize>>());
    let waiting = Mutex::new(std::collections::VecDeque::<usize>::new());
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; plan.runs.len()]);
    let tables = Mutex::new(());
    let ids: Vec<String> = plan.runs.iter().map(|r| r.id.clone()).collect();
    let runs_dir = sweep_dir.join("runs");
    let worker = |w: usize| -> anyhow::Result<()> {
        vaelab_vae::threads::in_pool(how.threads, || -> anyhow::Result<()> {
            loop {
                if cancel.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let popped = queue.lock().ok().and_then(|mut q| q.pop_front());
                let (i, wait_for_lock) = match popped {
                    Some(i) => (i, false),
                    None => match waiting.lock().ok().and_then(|mut q| q.pop_front()) {
                        Some(i) => (i, true),
                        None => return Ok(()),
                    },
                };
                let run = &plan.runs[i];
                let name = label(plan, i, &varying);
                let dataset = data
                    .get(&run.keys.data_source())
                    .ok_or_else(|| anyhow::anyhow!("no dataset loaded for run {}", run.id))?;
                let say = |text: String| reporter.line(w, format!("{name}: {text}"));
                let pruning = Pruning::for_run(
                    plan.early_stop.as_ref(),
                    i,
                    &ids,
                    &runs_dir,
                    how.resume_pruned,
                    &say,
                );
                let job = RunJob {
                    id: &run.id,
                    label: name.clone(),
                    keys: &run.keys,
                    source: &plan.source,
                    dir: RunDir::create(&sweep_dir.join("runs"), &run.id)?,
                    data: dataset,
                    device: &how.device,
                    force: how.force,
                    cancel,
                    wait_for_lock,
                    provenance: &provenance,
                    pruning,
                };
                reporter.line(w, format!("{name}: starting"));
                let epochs = run.keys.epochs;
                let on_epoch = |train: &vaelab_vae::EpochMetrics,
                                test: &vaelab_vae::EpochMetrics| {
                    let score = test
                        .neg_elbo
                        .map_or(format!("test recon {:.2}", test.recon), |e| {
                            format!("test -ELBO {e:.2}")
                        });
                    reporter.line(
                        w,
                        format!(
                            "{name}: epoch {}/{epochs}, {score} ({:.1} s)",
                            train.epoch, train.seconds
                        ),
                    );
                };
                // A panic in one run must not take the sweep down.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    execute(&job, &on_epoch)
                }))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                    let msg = format!("panicked: {}", msg.unwrap_or_default());
                    crate::run::mark_panicked(&job, &msg);
                    Outcome::Failed(msg)
                });
                if let Outcome::Busy(pid) = outcome {
                    let by = pid.map_or(String::new(), |p| format!(" (pid {p})"));
                    reporter.line(
                        w,
                        format!("{name}: another process{by} is training it; later"),
                    );
                    if let Ok(mut q) = waiting.lock() {
                        q.push_back(i);
                    }
                    continue;
                }
                let verdict = match &outcome {
                    Outcome::Done => "done".to_string(),
                    Outcome::Skipped => "already done".to_string(),
                    Outcome::Interrupted => "interrupted".to_string(),
                    Outcome::Pruned(e) => format!("pruned after epoch {e}"),
                    Outcome::Failed(e) => format!("FAILED: {e}"),
                    Outcome::Diverged(e) => format!("DIVERGED: {e}"),
                    Outcome::Busy(_) => "busy".to_string(),
                };
                reporter.finished(format!("{name}: {verdict}"));
                if let Ok(mut o) = outcomes.lock() {
                    o[i] = Some(outcome);
                }
                if let Ok(_guard) = tables.lock() {
                    if let Err(e) = write_sweep_tables(sweep_dir, plan) {
                        reporter.note(format!("warning: cannot rewrite the sweep tables: {e:#}"));
                    }
                }
            }
        })?
    };
    std::thread::scope(|s| -> anyhow::Result<()> {
        let worker = &worker;
        let handles: Vec<_> = (0..how.jobs).map(|w| s.spawn(move || worker(w))).collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a sweep worker panicked"))??;
        }
        Ok(())
    })?;
    reporter.close();
    write_sweep_tables(sweep_dir, plan)?;
    let outcomes = outcomes
        .into_inner()
        .map_err(|_| anyhow::anyhow!("outcome lock poisoned"))?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Interrupted))
        .collect())
}
