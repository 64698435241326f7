//! The end of a sweep, the same on either backend: a line of counts, the report, and the exit
//! code.

use crate::failure::Failure;
use crate::output::note;
use crate::plan::Plan;
use crate::run::Outcome;
use anyhow::anyhow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Counts how the runs ended, draws the report and turns failed or diverged runs (listed) into
/// the exit code. `outcomes` pairs plan indices with how those runs ended; `cancel` is the
/// Ctrl-C flag of a local sweep (raised before or during the report: exit 130).
pub fn conclude(
    plan: &Plan,
    sweep_dir: &Path,
    outcomes: &[(usize, Outcome)],
    already_done: usize,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<(), Failure> {
    let interrupted = cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let (done, skipped) = (
        count(|o| *o == Outcome::Done),
        count(|o| *o == Outcome::Skipped) + already_done,
    );
    let pruned = count(|o| matches!(o, Outcome::Pruned(_)));
    let bad: Vec<String> = outcomes
        .iter()
        .filter_map(|(i, o)| match o {
            Outcome::Failed(e) => Some(format!("  {} failed: {e}", plan.runs[*i].id)),
            Outcome::Diverged(e) => Some(format!("  {} diverged: {e}", plan.runs[*i].id)),
            _ => None,
        })
        .collect();
    let pruned = match pruned {
        0 => String::new(),
        n => format!(", {n} pruned"),
    };
    note!(
        "{}: {done} trained{pruned}, {skipped} already done, {} failed or diverged, {} interrupted -> {}",
        plan.name,
        bad.len(),
        count(|o| *o == Outcome::Interrupted),
        sweep_dir.join("runs.parquet").display()
    );
    if interrupted {
        return Err(Failure::Interrupted(anyhow!(
            "sweep {} interrupted; run it again to resume",
            plan.name
        )));
    }
    note!("drawing the report of {}", plan.name);
    let report = crate::report::draw(sweep_dir, cancel);
    if let Err(e) = &report {
        if let Some(vaelab_report::ReportError::Stopped { drawn }) = e.downcast_ref() {
            return Err(Failure::Interrupted(anyhow!(
                "sweep {}: every run's results stand, but Ctrl-C stopped the report after \
                 {drawn} figures; `vaelab report {}` draws it",
                plan.name,
                sweep_dir.display()
            )));
        }
    }
    if !bad.is_empty() {
        return Err(Failure::Run(anyhow!(
            "{} run(s) did not finish:\n{}",
            bad.len(),
            bad.join("\n")
        )));
    }
    report
        .map(|_| ())
        .map_err(|e| Failure::Run(e.context("every run finished, but the report failed")))
}
