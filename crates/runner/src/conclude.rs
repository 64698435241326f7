//! The end of a sweep, the same on either backend: a line of counts, the report, and the exit
//! code.

use crate::failure::Failure;
use crate::output::note;
use crate::plan::Plan;
use crate::run::Outcome;
use anyhow::anyhow;
use std::path::Path;

/// Counts how the runs ended, draws the report and turns failed or diverged runs (listed) into
/// the exit code. `outcomes` pairs plan indices with how those runs ended.
pub fn conclude(
    plan: &Plan,
    sweep_dir: &Path,
    outcomes: &[(usize, Outcome)],
    already_done: usize,
    interrupted: bool,
) -> Result<(), Failure> {
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count();
    let (done, skipped) = (
        count(|o| *o == Outcome::Done),
        count(|o| *o == Outcome::Skipped) + already_done,
    );
    let bad: Vec<String> = outcomes
        .iter()
        .filter_map(|(i, o)| match o {
            Outcome::Failed(e) => Some(format!("  {} failed: {e}", plan.runs[*i].id)),
            Outcome::Diverged(e) => Some(format!("  {} diverged: {e}", plan.runs[*i].id)),
            _ => None,
        })
        .collect();
    note!(
        "{}: {done} trained, {skipped} already done, {} failed or diverged, {} interrupted -> {}",
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
    let report = crate::report::draw(sweep_dir);
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
