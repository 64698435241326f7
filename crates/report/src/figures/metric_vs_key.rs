//! Test −ELBO, recon, KL and −log p(x) (IWAE) against one swept key: one line per setting of
//! the other varying keys, mean over seeds with ±1 std error bars.

use super::Drawn;
use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::sweep::{Sweep, Value};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

pub const CAPTION: &str =
    "Each panel is one final test metric against the swept key, one line per \
setting of the other swept keys, the mean over seeds with ±1 std bars. The ELBO splits into recon \
+ KL: watch which of the two buys the improvement, and how far −log p(x) (IWAE) sits below \
−ELBO. The AE has no KL, ELBO or log p(x): it appears in the recon panel only.";

const PANELS: [(&str, &str); 4] = [
    ("test_neg_elbo", "test −ELBO (nats)"),
    ("test_recon", "recon −log p(x|z) (nats)"),
    ("test_kl", "KL(q(z|x) ‖ p(z)) (nats)"),
    ("neg_log_px_iw", "−log p(x), IWAE (nats)"),
];

/// The keys to draw against: every numeric varying key, else the first varying key.
pub fn axes(sweep: &Sweep) -> Vec<String> {
    let numeric = sweep.numeric_varying();
    if !numeric.is_empty() {
        return numeric.into_iter().map(String::from).collect();
    }
    sweep.varying.first().cloned().into_iter().collect()
}

/// Mean and std of one series at one x position.
#[derive(Debug, Clone, Copy)]
struct Stat {
    mean: f64,
    std: f64,
}

fn stat(v: &[f64]) -> Stat {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Stat {
        mean,
        std: var.sqrt(),
    }
}

struct MetricVsKey {
    key: String,
    ticks: Vec<String>,
    /// Per panel: series label → (x index, stat).
    panels: Vec<BTreeMap<String, Vec<(usize, Stat)>>>,
    labels: Vec<String>,
}

fn metric(run: &crate::sweep::Run, name: &str) -> Option<f64> {
    match name {
        "neg_log_px_iw" => run.metric("log_px_iw").map(|v| -v),
        _ => run.metric(name),
    }
}

pub fn draw(sweep: &Sweep, key: &str, dir: &Path) -> Drawn {
    let values: Vec<Value> = sweep.values(key);
    let labels: Vec<String> = {
        let mut l: Vec<String> = sweep.done().map(|r| sweep.label(r, &[key])).collect();
        l.dedup();
        l.sort();
        l.dedup();
        l
    };
    let mut panels = Vec::new();
    for (name, _) in PANELS {
        let mut series: BTreeMap<String, Vec<(usize, Stat)>> = BTreeMap::new();
        for label in &labels {
            let mut points = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let ys: Vec<f64> = sweep
                    .done()
                    .filter(|r| r.key(key) == v && &sweep.label(r, &[key]) == label)
                    .filter_map(|r| metric(r, name))
                    .collect();
                if !ys.is_empty() {
                    points.push((i, stat(&ys)));
                }
            }
            if !points.is_empty() {
                series.insert(label.clone(), points);
            }
        }
        panels.push(series);
    }
    if panels.iter().all(|p| p.is_empty()) {
        return Ok(Err(format!(
            "no finished run has test metrics to draw against {key}"
        )));
    }
    let chart = MetricVsKey {
        key: key.to_string(),
        ticks: values.iter().map(Value::label).collect(),
        panels,
        labels,
    };
    Ok(Ok(canvas::save_png_svg(
        dir,
        &format!("elbo_vs_{key}"),
        &chart,
    )?))
}

impl Chart for MetricVsKey {
    fn size(&self) -> (u32, u32) {
        (1400, 1000)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (title, body) = root.split_vertically(50);
        title.titled(
            &format!("Final test metrics against {}", self.key),
            text(26.0),
        )?;
        for (area, ((_, ylabel), series)) in body
            .split_evenly((2, 2))
            .iter()
            .zip(PANELS.iter().zip(&self.panels))
        {
            self.panel(area, ylabel, series)?;
        }
        Ok(())
    }
}

impl MetricVsKey {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        ylabel: &str,
        series: &BTreeMap<String, Vec<(usize, Stat)>>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let Some((lo, hi)) = padded_range(
            series
                .values()
                .flatten()
                .flat_map(|(_, s)| [s.mean - s.std, s.mean + s.std]),
        ) else {
            area.titled(&format!("{ylabel}: no run has it"), text(18.0))?;
            return Ok(());
        };
        let n = self.ticks.len();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .caption(ylabel, text(20.0))
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)?;
        let ticks = self.ticks.clone();
        chart
            .configure_mesh()
            .x_labels(n.max(2) * 2 + 1)
            .x_label_formatter(&move |x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < ticks.len() {
                    ticks[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .x_desc(self.key.as_str())
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        for (label, points) in series {
            let color = category(self.labels.iter().position(|l| l == label).unwrap_or(0));
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(i, s)| (*i as f64, s.mean)),
                    color.stroke_width(2),
                ))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|(i, s)| {
                ErrorBar::new_vertical(
                    *i as f64,
                    s.mean - s.std,
                    s.mean,
                    s.mean + s.std,
                    color.filled(),
                    10,
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(text(14.0))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(())
    }
}
