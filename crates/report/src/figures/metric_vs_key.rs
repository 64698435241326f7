//! Test −ELBO, recon, KL and −log p(x) (IWAE) against one swept key: one line per setting of
//! the other varying keys, mean over seeds with ±1 std error bars.

use super::stats::{stat, Stat};
use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::{Sweep, Value};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

pub const CAPTION: &str =
    "Each panel is one final test metric against the swept key, one line per \
setting of the other swept keys, the mean over seeds with ±1 std bars. The ELBO splits into recon \
+ KL: watch which of the two buys the improvement, and how far −log p(x) (IWAE) sits below \
−ELBO. The AE has no KL, ELBO or log p(x): it appears in the recon panel only, and on an axis that means \
nothing for it (β, warm-up, free bits, IWAE keys) as a flat dashed line. When the sweep varies the \
likelihood family, whose nats are not one quantity, −ELBO, recon and log p(x) are shown as bits/dim \
of the 8-bit image's mass (the KL stays in nats), and values past 16 bits/dim fall off the axis.";

/// The panels (column, axis label) in nats: one likelihood family throughout.
const NATS: [(&str, &str); 4] = [
    ("test_neg_elbo", "test −ELBO (nats)"),
    ("test_recon", "recon −log p(x|z) (nats)"),
    ("test_kl", "KL(q(z|x) ‖ p(z)) (nats)"),
    ("neg_log_px_iw", "−log p(x), IWAE (nats)"),
];

/// The panels when the likelihood family varies: its nats are not one quantity across families,
/// the mass of the 8-bit image is. The KL, a divergence between latent distributions, stays in
/// nats: it means the same whatever the likelihood.
const BITS: [(&str, &str); 4] = [
    ("test_elbo_bpd", "test −ELBO (bits/dim of the 8-bit mass)"),
    ("test_recon_bpd", "recon −log P(x|z) (bits/dim)"),
    ("test_kl", "KL(q(z|x) ‖ p(z)) (nats)"),
    ("nll_bpd", "−log p(x), IWAE (bits/dim)"),
];

/// Bits/dim above this are drawn off the axis (a run that trained into nonsense), so that
/// they do not flatten every other line: twice the 8-bit uniform model.
const BITS_AXIS_MAX: f64 = 16.0;

/// NATS, or BITS when the sweep varies the likelihood family.
fn panels_of(sweep: &Sweep) -> &'static [(&'static str, &'static str); 4] {
    if sweep
        .varying
        .iter()
        .any(|k| k == "likelihood" || k == "discretized")
    {
        &BITS
    } else {
        &NATS
    }
}

/// The keys to draw against: every numeric varying key, else the first varying key.
pub fn axes(sweep: &Sweep) -> Vec<String> {
    let numeric = sweep.numeric_varying();
    if !numeric.is_empty() {
        return numeric.into_iter().map(String::from).collect();
    }
    sweep.varying.first().cloned().into_iter().collect()
}

struct MetricVsKey {
    key: String,
    /// (column, axis label) of each panel.
    spec: &'static [(&'static str, &'static str); 4],
    ticks: Vec<String>,
    /// Per panel: series label → (x index, stat).
    panels: Vec<BTreeMap<String, Vec<(usize, Stat)>>>,
    /// Per panel: runs the key means nothing for (the AE on a β axis), as flat reference lines.
    flat: Vec<BTreeMap<String, Stat>>,
    labels: Vec<String>,
}

fn metric(run: &crate::sweep::Run, name: &str) -> Option<f64> {
    match name {
        "neg_log_px_iw" => run.metric("log_px_iw").map(|v| -v),
        _ => run.metric(name),
    }
}

pub fn draw(sweep: &Sweep, key: &str, dir: &Path) -> Drawn {
    match build(sweep, key) {
        Ok(chart) => Ok(Ok(canvas::save_png_svg(
            dir,
            &format!("elbo_vs_{key}"),
            &chart,
        )?)),
        Err(why) => Ok(Err(why)),
    }
}

/// The chart's data: per panel, one series per setting of the other keys, and flat lines for
/// runs the key means nothing for.
fn build(sweep: &Sweep, key: &str) -> Result<MetricVsKey, String> {
    // Non-null values only: runs the key means nothing for hold null and are drawn flat.
    let values: Vec<Value> = sweep.values(key);
    let labels: Vec<String> = {
        let mut l: Vec<String> = sweep.done().map(|r| sweep.label(r, &[key])).collect();
        l.dedup();
        l.sort();
        l.dedup();
        l
    };
    let series_of = SeriesOf::new(sweep, key);
    let mut panels = Vec::new();
    let mut flat = Vec::new();
    let spec = panels_of(sweep);
    for (name, _) in spec {
        let mut lines: BTreeMap<String, Stat> = BTreeMap::new();
        for label in &labels {
            let ys: Vec<f64> = sweep
                .done()
                .filter(|r| !r.uses(key) && &sweep.label(r, &[key]) == label)
                .filter_map(|r| metric(r, name))
                .collect();
            if !ys.is_empty() {
                lines.insert(label.clone(), stat(&ys));
            }
        }
        flat.push(lines);
        let mut series: BTreeMap<String, Vec<(usize, Stat)>> = BTreeMap::new();
        for label in series_of.reps.keys() {
            let mut points = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let ys: Vec<f64> = sweep
                    .done()
                    .filter(|r| r.uses(key) && r.key(key) == v && series_of.member(r, label))
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
    if panels.iter().all(|p| p.is_empty()) && flat.iter().all(|p| p.is_empty()) {
        return Err(format!(
            "no finished run has test metrics to draw against {key}"
        ));
    }
    Ok(MetricVsKey {
        key: key.to_string(),
        spec,
        ticks: values.iter().map(Value::label).collect(),
        panels,
        flat,
        labels,
    })
}

/// The lines of a chart against `key`: one per setting of the other varying keys. A run that
/// does not read one of those keys (the IWAE bound's k = 1 run is the ELBO's, and reads no
/// `objective`) joins every line it agrees with on the keys it does read, so both
/// objectives' lines start at their shared k = 1 point; a run that agrees with none is a line
/// of its own.
struct SeriesOf<'a> {
    sweep: &'a Sweep,
    key: &'a str,
    /// Label → the first run of that line.
    reps: BTreeMap<String, &'a crate::sweep::Run>,
}

impl<'a> SeriesOf<'a> {
    fn new(sweep: &'a Sweep, key: &'a str) -> Self {
        let mut this = Self {
            sweep,
            key,
            reps: BTreeMap::new(),
        };
        let full: Vec<&crate::sweep::Run> = sweep.done().filter(|r| this.is_full(r)).collect();
        for r in &full {
            this.reps.entry(sweep.label(r, &[key])).or_insert(r);
        }
        let alone: Vec<&crate::sweep::Run> = sweep
            .done()
            .filter(|r| !this.is_full(r) && !full.iter().any(|s| this.fits(r, s)))
            .collect();
        for r in alone {
            this.reps.entry(sweep.label(r, &[key])).or_insert(r);
        }
        this
    }

    fn others(&self) -> impl Iterator<Item = &str> {
        let key = self.key;
        self.sweep
            .varying
            .iter()
            .map(String::as_str)
            .filter(move |k| *k != key)
    }

    /// Reads every varying key but the axis.
    fn is_full(&self, r: &crate::sweep::Run) -> bool {
        self.others().all(|k| r.uses(k))
    }

    /// `r` agrees with `s` on every other varying key `r` reads.
    fn fits(&self, r: &crate::sweep::Run, s: &crate::sweep::Run) -> bool {
        self.others()
            .all(|k| !r.uses(k) || (s.uses(k) && r.key(k) == s.key(k)))
    }

    fn member(&self, r: &crate::sweep::Run, label: &str) -> bool {
        if self.sweep.label(r, &[self.key]) == label {
            return true;
        }
        let rep = self.reps[label];
        !self.is_full(r) && self.is_full(rep) && self.fits(r, rep)
    }
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
        for (area, (((_, ylabel), series), flat)) in body
            .split_evenly((2, 2))
            .iter()
            .zip(self.spec.iter().zip(&self.panels).zip(&self.flat))
        {
            self.panel(area, ylabel, series, flat)?;
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
        flat: &BTreeMap<String, Stat>,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let cap = if ylabel.contains("bits/dim") {
            BITS_AXIS_MAX
        } else {
            f64::INFINITY
        };
        let Some((lo, hi)) = padded_range(
            series
                .values()
                .flatten()
                .map(|(_, s)| s)
                .chain(flat.values())
                .filter(|s| s.mean <= cap)
                .flat_map(|s| [s.mean - s.std, (s.mean + s.std).min(cap)]),
        ) else {
            area.titled(&format!("{ylabel}: no run has it"), text(18.0))?;
            return Ok(());
        };
        let n = self.ticks.len();
        // Headroom for the legend, which sits in the upper right.
        let hi = hi + 0.12 * (hi - lo) * (series.len() + flat.len()) as f64;
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
            .x_label_formatter(&move |x| canvas::index_label(&ticks, *x))
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
        for (label, s) in flat {
            let color = category(self.labels.iter().position(|l| l == label).unwrap_or(0));
            let style = color.stroke_width(2);
            let y = s.mean;
            chart
                .draw_series(DashedLineSeries::new(
                    [(-0.5, y), (n as f64 - 0.5, y)],
                    10,
                    6,
                    style,
                ))?
                .label(format!("{label} (no {}: flat)", self.key))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        canvas::legend(&mut chart, SeriesLabelPosition::UpperRight, 14.0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Run;

    /// A finished run as `runs.parquet` holds it: the AE's β is null (it has none).
    fn run(id: &str, model: &str, beta: f64, seed: f64, recon: f64) -> Run {
        let beta = if model == "vae" {
            Value::Num(beta)
        } else {
            Value::Null
        };
        let mut metrics = vec![("test_recon", recon)];
        if model == "vae" {
            metrics.extend([
                ("test_kl", 10.0 / seed.max(1.0)),
                ("test_neg_elbo", recon + 10.0),
            ]);
        }
        let config = vec![
            ("model", Value::Text(model.into())),
            ("beta", beta),
            ("seed", Value::Num(seed)),
        ];
        Run::done_with(id, config, metrics)
    }

    /// On a β axis the VAE gives one line (mean and std over seeds at each β) and the AE, which
    /// has no β, a flat reference line instead of a point at its reset default.
    #[test]
    fn beta_axis_averages_seeds_and_draws_the_autoencoder_flat() {
        let sweep = Sweep {
            name: "b".into(),
            runs: vec![
                run("a", "vae", 1.0, 0.0, 100.0),
                run("b", "vae", 1.0, 1.0, 102.0),
                run("c", "vae", 4.0, 0.0, 110.0),
                run("d", "ae", 1.0, 0.0, 90.0),
            ],
            epochs: vec![],
            varying: vec!["model".into(), "beta".into()],
            estep: Default::default(),
        };
        let chart = build(&sweep, "beta").unwrap();
        assert_eq!(chart.ticks, ["1", "4"]);
        let recon = &chart.panels[1]["model=vae"];
        assert_eq!(recon.len(), 2);
        assert_eq!((recon[0].0, recon[0].1.mean), (0, 101.0));
        assert!((recon[0].1.std - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(recon[1].1.mean, 110.0);
        assert!(!chart.panels[1].contains_key("model=ae"));
        assert_eq!(chart.flat[1]["model=ae"].mean, 90.0);
        // The AE has no ELBO: nothing of it in that panel.
        assert!(chart.flat[0].is_empty());
    }

    /// A run that does not read a series key (k = 1 reads no `objective`) starts every line it
    /// agrees with, instead of a line of its own.
    #[test]
    fn a_run_without_a_series_key_joins_every_line() {
        let k = |id: &str, objective: Option<&str>, samples: f64, recon: f64| {
            let objective = objective.map_or(Value::Null, |o| Value::Text(o.into()));
            let config = vec![
                ("objective", objective),
                ("train_samples", Value::Num(samples)),
                ("seed", Value::Num(0.0)),
            ];
            Run::done_with(id, config, vec![("test_recon", recon)])
        };
        let sweep = Sweep {
            name: "bounds".into(),
            runs: vec![
                k("a", None, 1.0, 100.0),
                k("b", Some("elbo"), 5.0, 95.0),
                k("c", Some("iwae"), 5.0, 97.0),
            ],
            epochs: vec![],
            varying: vec!["objective".into(), "train_samples".into()],
            estep: Default::default(),
        };
        let chart = build(&sweep, "train_samples").unwrap();
        let recon = &chart.panels[1];
        assert_eq!(
            recon.keys().collect::<Vec<_>>(),
            ["objective=elbo", "objective=iwae"]
        );
        let means = |l: &str| {
            recon[l]
                .iter()
                .map(|(i, s)| (*i, s.mean))
                .collect::<Vec<_>>()
        };
        assert_eq!(means("objective=elbo"), [(0, 100.0), (1, 95.0)]);
        assert_eq!(means("objective=iwae"), [(0, 100.0), (1, 97.0)]);
    }

    /// Across likelihood families the panels are bits/dim (and the KL nats), never the
    /// families' own nats.
    #[test]
    fn a_likelihood_axis_is_drawn_in_bits_per_dim() {
        let fam = |id: &str, lik: &str, nats: f64, bpd: f64| {
            let mut r = run(id, "vae", 1.0, 0.0, nats);
            r.config
                .insert("likelihood".into(), Value::Text(lik.into()));
            r.metrics.insert("test_elbo_bpd".into(), bpd);
            r.metrics.insert("test_recon_bpd".into(), bpd - 0.1);
            r.metrics.insert("nll_bpd".into(), bpd - 0.05);
            r
        };
        let sweep = Sweep {
            name: "l".into(),
            runs: vec![
                fam("a", "bernoulli", 240.0, 6.5),
                fam("b", "gaussian", -600.0, 4.3),
            ],
            epochs: vec![],
            varying: vec!["likelihood".into()],
            estep: Default::default(),
        };
        let chart = build(&sweep, "likelihood").unwrap();
        assert_eq!(chart.spec[0].0, "test_elbo_bpd");
        let elbo: Vec<f64> = chart.panels[0]
            .values()
            .flatten()
            .map(|(_, s)| s.mean)
            .collect();
        assert_eq!(elbo, [6.5, 4.3]);
        assert_eq!(chart.spec[2].0, "test_kl");
        // One family: nats, as before.
        let one = Sweep {
            varying: vec!["beta".into()],
            ..sweep
        };
        assert_eq!(build(&one, "beta").unwrap().spec[0].0, "test_neg_elbo");
    }
}
