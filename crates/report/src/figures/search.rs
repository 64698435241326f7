//! Figures of a search (a sweep file with `[search]`): the best run so far against the epochs
//! trained, the trials as parallel coordinates, and each searched key's importance as its
//! Spearman rank correlation with test −ELBO.

use crate::canvas::{self, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::{Run, Sweep, Value};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub const PROGRESS_CAPTION: &str =
    "The best test −ELBO among the finished runs against the epochs \
trained so far, the runs taken in plan order (each run adds the epochs it trained, pruned runs \
too). A search whose early stopping prunes runs reaches its best run after fewer epochs; the \
curve's last point is the whole search's compute.";

pub const PARALLEL_CAPTION: &str =
    "One line per trial across the searched keys (each axis from its \
smallest to its largest value, on a log scale where the values span more than a factor of 10) \
and its test −ELBO, lower at the bottom. Finished runs are coloured by that −ELBO (dark: \
best); pruned runs are grey, at the −ELBO of their last epoch.";

pub const IMPORTANCE_CAPTION: &str = "Each searched key's Spearman rank correlation with test \
−ELBO, over every trial at the last epoch that all of them trained (the title says which): \
positive where larger values give a worse −ELBO. A rank correlation sees monotone effects only; \
a key whose best value is in the middle of its range can show ρ ≈ 0.";

/// Why a sweep gets no search figures, if it does not.
fn not_a_search(sweep_toml: &str, sweep: &Sweep) -> Option<String> {
    if !sweep_toml.lines().any(|l| l.trim() == "[search]") {
        return Some("not a search: the sweep file has no [search] table".into());
    }
    if sweep.numeric_varying().is_empty() {
        return Some("no searched key takes numeric values".into());
    }
    None
}

/// Epochs each run trained (its test rows).
fn epochs_of(sweep: &Sweep, run: &Run) -> usize {
    sweep.curve(&run.id, "test").len()
}

/// The best-so-far curve: (epochs trained, best finished test −ELBO), a point per run that
/// improved it, and the total.
pub fn progress(sweep: &Sweep) -> (Vec<(f64, f64)>, f64) {
    let (mut spent, mut best) = (0usize, f64::INFINITY);
    let mut points = Vec::new();
    for r in &sweep.runs {
        spent += epochs_of(sweep, r);
        if let (true, Some(v)) = (r.is_done(), r.metric("test_neg_elbo")) {
            if v < best {
                best = v;
                points.push((spent as f64, v));
            }
        }
    }
    (points, spent as f64)
}

struct Progress {
    points: Vec<(f64, f64)>,
    total: f64,
}

pub fn draw_progress(sweep: &Sweep, sweep_toml: &str, dir: &Path) -> Drawn {
    if let Some(why) = not_a_search(sweep_toml, sweep) {
        return Ok(Err(why));
    }
    let (points, total) = progress(sweep);
    if points.is_empty() {
        return Ok(Err("no finished VAE run with a test −ELBO yet".into()));
    }
    let chart = Progress { points, total };
    Ok(Ok(canvas::save_png_svg(dir, "search_progress", &chart)?))
}

impl Chart for Progress {
    fn size(&self) -> (u32, u32) {
        (1100, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (y0, y1) = padded_range(self.points.iter().map(|p| p.1)).unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .caption(
                format!("Best run so far ({} epochs trained in all)", self.total),
                text(24.0),
            )
            .build_cartesian_2d(0.0..self.total.max(1.0) * 1.03, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("epochs trained (runs in plan order)")
            .y_desc("best finished test −ELBO (nats)")
            .label_style(text(16.0))
            .axis_desc_style(text(18.0))
            .draw()?;
        // A step: the best stays until the next run that beats it.
        let mut steps = Vec::new();
        for (i, &(x, y)) in self.points.iter().enumerate() {
            if i > 0 {
                steps.push((x, self.points[i - 1].1));
            }
            steps.push((x, y));
        }
        if let Some(&(_, y)) = self.points.last() {
            steps.push((self.total, y));
        }
        chart.draw_series(LineSeries::new(steps, canvas::category(0).stroke_width(2)))?;
        chart.draw_series(
            self.points
                .iter()
                .map(|&p| Circle::new(p, 5, canvas::category(0).filled())),
        )?;
        Ok(())
    }
}

/// An axis of the parallel coordinates: a key's range, log where it spans more than 10×.
struct Axis {
    name: String,
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn of(name: &str, values: &[f64]) -> Axis {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Axis {
            name: name.to_string(),
            lo,
            hi,
            log: lo > 0.0 && hi / lo > 10.0,
        }
    }

    /// `v` on [0, 1].
    fn place(&self, v: f64) -> f64 {
        let f = |x: f64| if self.log { x.ln() } else { x };
        if self.hi <= self.lo {
            return 0.5;
        }
        (f(v) - f(self.lo)) / (f(self.hi) - f(self.lo))
    }
}

/// A trial's values on the axes, and for a finished run its rank among the finished (0 best)
/// and how many finished.
type Line = (Vec<f64>, Option<(usize, usize)>);

struct Parallel {
    axes: Vec<Axis>,
    lines: Vec<Line>,
}

/// The trials' last test −ELBO: the final one of a finished run, the last epoch's of the rest.
fn last_neg_elbo(sweep: &Sweep, run: &Run) -> Option<f64> {
    run.metric("test_neg_elbo")
        .or_else(|| sweep.curve(&run.id, "test").last().and_then(|r| r.neg_elbo))
}

pub fn draw_parallel(sweep: &Sweep, sweep_toml: &str, dir: &Path) -> Drawn {
    if let Some(why) = not_a_search(sweep_toml, sweep) {
        return Ok(Err(why));
    }
    let keys = sweep.numeric_varying();
    let trials: Vec<(&Run, f64)> = sweep
        .runs
        .iter()
        .filter_map(|r| last_neg_elbo(sweep, r).map(|v| (r, v)))
        .collect();
    if trials.len() < 2 {
        return Ok(Err("fewer than two trials with a test −ELBO".into()));
    }
    let num = |v: &Value| match v {
        Value::Num(x) => *x,
        _ => f64::NAN,
    };
    let mut axes: Vec<Axis> = keys
        .iter()
        .map(|k| {
            let values: Vec<f64> = trials.iter().map(|(r, _)| num(r.key(k))).collect();
            Axis::of(k, &values)
        })
        .collect();
    let elbos: Vec<f64> = trials.iter().map(|t| t.1).collect();
    axes.push(Axis {
        log: false,
        ..Axis::of("test −ELBO", &elbos)
    });
    let mut finished: Vec<f64> = trials
        .iter()
        .filter(|(r, _)| r.is_done())
        .map(|t| t.1)
        .collect();
    finished.sort_by(f64::total_cmp);
    let lines = trials
        .iter()
        .map(|(r, v)| {
            let mut at: Vec<f64> = keys
                .iter()
                .zip(&axes)
                .map(|(k, a)| a.place(num(r.key(k))))
                .collect();
            at.push(axes[axes.len() - 1].place(*v));
            let rank = r
                .is_done()
                .then(|| (finished.partition_point(|x| x < v), finished.len()));
            (at, rank)
        })
        .collect();
    let chart = Parallel { axes, lines };
    Ok(Ok(canvas::save_png_svg(dir, "search_parallel", &chart)?))
}

impl Chart for Parallel {
    fn size(&self) -> (u32, u32) {
        (1200, 750)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.axes.len();
        let mut chart = ChartBuilder::on(root)
            .margin(30)
            .x_label_area_size(70)
            .caption("Trials as parallel coordinates", text(24.0))
            .build_cartesian_2d(-0.3..(n as f64 - 0.7), -0.08..1.08)?;
        let labels: Vec<String> = self
            .axes
            .iter()
            .map(|a| {
                let scale = if a.log { ", log" } else { "" };
                format!("{} ({}–{}{scale})", a.name, short(a.lo), short(a.hi))
            })
            .collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_labels(n)
            .x_label_formatter(&|x| canvas::index_label(&labels, *x))
            .label_style(text(15.0))
            .draw()?;
        for i in 0..n {
            let x = i as f64;
            chart.draw_series(LineSeries::new(
                vec![(x, 0.0), (x, 1.0)],
                BLACK.stroke_width(2),
            ))?;
        }
        // Pruned runs first, so the finished ones are drawn on top.
        let mut order: Vec<&Line> = self.lines.iter().collect();
        order.sort_by_key(|l| l.1.map_or(0, |(rank, total)| 1 + total - rank));
        for (at, rank) in order {
            let points: Vec<(f64, f64)> =
                at.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect();
            let style = match rank {
                None => RGBColor(170, 170, 170).mix(0.6).stroke_width(1),
                Some((r, total)) => {
                    // Dark blue for the best, to light for the worst.
                    let t = if *total > 1 {
                        *r as f64 / (*total - 1) as f64
                    } else {
                        0.0
                    };
                    let c = |a: f64, b: f64| (a + (b - a) * t) as u8;
                    RGBColor(c(8.0, 158.0), c(48.0, 202.0), c(107.0, 225.0)).stroke_width(3)
                }
            };
            chart.draw_series(LineSeries::new(points, style))?;
        }
        Ok(())
    }
}

/// A bound as written on an axis: integers whole, other values to four significant digits.
fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{}", format!("{v:.3e}").parse::<f64>().unwrap_or(v))
    }
}

/// Ranks from 1, ties given their mean rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && values[idx[j + 1]] == values[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            out[k] = mean;
        }
        i = j + 1;
    }
    out
}

/// Spearman's ρ: Pearson's correlation of the ranks (`None` when either side is constant).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

struct Importance {
    bars: Vec<(String, f64)>,
    epoch: u32,
    trials: usize,
}

pub fn draw_importance(sweep: &Sweep, sweep_toml: &str, dir: &Path) -> Drawn {
    if let Some(why) = not_a_search(sweep_toml, sweep) {
        return Ok(Err(why));
    }
    // The last epoch every trial trained: all trials are compared at the same point.
    let curves: Vec<(&Run, Vec<&vaelab_track::MetricsRow>)> = sweep
        .runs
        .iter()
        .map(|r| (r, sweep.curve(&r.id, "test")))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let Some(epoch) = curves.iter().map(|(_, c)| c.len()).min() else {
        return Ok(Err("no trial has a test epoch yet".into()));
    };
    let at: Vec<(&Run, f64)> = curves
        .iter()
        .filter_map(|(r, c)| c[epoch - 1].neg_elbo.map(|v| (*r, v)))
        .collect();
    if at.len() < 3 {
        return Ok(Err("fewer than three trials with a test −ELBO".into()));
    }
    let y: Vec<f64> = at.iter().map(|t| t.1).collect();
    let bars: Vec<(String, f64)> = sweep
        .numeric_varying()
        .iter()
        .filter_map(|k| {
            let x: Vec<f64> = at
                .iter()
                .map(|(r, _)| match r.key(k) {
                    Value::Num(v) => *v,
                    _ => f64::NAN,
                })
                .collect();
            spearman(&x, &y).map(|rho| (k.to_string(), rho))
        })
        .collect();
    if bars.is_empty() {
        return Ok(Err("no searched key varies across the trials".into()));
    }
    let chart = Importance {
        bars,
        epoch: epoch as u32,
        trials: at.len(),
    };
    Ok(Ok(canvas::save_png_svg(dir, "search_importance", &chart)?))
}

impl Chart for Importance {
    fn size(&self) -> (u32, u32) {
        (1000, 150 + 80 * self.bars.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.bars.len();
        let labels: Vec<String> = self.bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(140)
            .caption(
                format!(
                    "Spearman ρ with test −ELBO at epoch {} ({} trials)",
                    self.epoch, self.trials
                ),
                text(22.0),
            )
            .build_cartesian_2d(-1.0..1.0, -0.5..(n as f64 - 0.5))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| canvas::index_label(&labels, *y))
            .x_desc("ρ (positive: larger values, worse −ELBO)")
            .label_style(text(16.0))
            .axis_desc_style(text(18.0))
            .draw()?;
        for (i, (_, rho)) in self.bars.iter().enumerate() {
            let y = i as f64;
            let colour = if *rho >= 0.0 {
                canvas::category(3)
            } else {
                canvas::category(0)
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(0.0, y - 0.3), (*rho, y + 0.3)],
                colour.filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{rho:+.2}"),
                (
                    if *rho >= 0.0 {
                        *rho + 0.02
                    } else {
                        *rho - 0.12
                    },
                    y + 0.1,
                ),
                text(16.0),
            )))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against values worked by hand: the ranks with a tie, ρ of a monotone pair, and
    /// 1 − 6Σd²/(n(n² − 1)) where no values tie.
    #[test]
    fn spearman_matches_hand_worked_values() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 30.0]), vec![1.0, 3.5, 2.0, 3.5]);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(spearman(&x, &[2.0, 4.0, 8.0, 16.0, 32.0]), Some(1.0));
        assert_eq!(spearman(&x, &[5.0, 3.0, 1.0, 0.0, -7.0]), Some(-1.0));
        // y's ranks 2, 1, 4, 3, 5: Σd² = 1 + 1 + 1 + 1 + 0 = 4, ρ = 1 − 24/120 = 0.8.
        let rho = spearman(&x, &[0.2, 0.1, 0.9, 0.5, 1.0]).unwrap();
        assert!((rho - 0.8).abs() < 1e-12, "{rho}");
        assert_eq!(spearman(&x, &[1.0; 5]), None);
    }

    #[test]
    fn log_axes_only_for_wide_positive_ranges() {
        assert!(Axis::of("lr", &[1e-4, 3e-3]).log);
        assert!(!Axis::of("beta", &[0.25, 2.0]).log);
        let a = Axis::of("lr", &[1e-4, 1e-2]);
        assert!((a.place(1e-3) - 0.5).abs() < 1e-12);
    }
}
