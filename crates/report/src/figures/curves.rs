//! Per-epoch curves of every run, overlaid, one colour per setting of the swept keys (seeds
//! share it): the learning curves (train and test −ELBO), and the EM view's mutual information
//! and active units.

use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use vaelab_track::MetricsRow;

pub const CAPTION: &str =
    "Train (left) and test (right) −ELBO per epoch for every run; seeds of one \
setting share a colour. A test curve that turns up while the train curve keeps falling is \
overfitting; a gap between colours that closes with epochs says the setting only changes speed. \
Autoencoders have no ELBO: their curves show the recon loss (dashed).";

struct Line {
    group: usize,
    vae: bool,
    points: Vec<(f64, f64)>,
}

/// Two side-by-side panels of per-epoch lines; the right one has the legend.
struct Curves {
    left: Panel,
    right: Panel,
    groups: Vec<String>,
}

/// One panel: its title, y axis and a line per run.
struct Panel {
    title: &'static str,
    y_desc: &'static str,
    lines: Vec<Line>,
}

/// What a panel plots: the split's rows of each run, and the value of a row (None: no point).
type Metric = (&'static str, fn(&MetricsRow) -> Option<f64>);

/// A line per run of `metric`, grouped by the run's setting.
fn lines(sweep: &Sweep, groups: &mut Vec<String>, (split, value): Metric) -> Vec<Line> {
    let mut out = Vec::new();
    for r in sweep.ordered(sweep.runs.iter()) {
        let group = canvas::group_of(groups, &sweep.label(r, &[]));
        let points: Vec<(f64, f64)> = sweep
            .curve(&r.id, split)
            .iter()
            .filter_map(|m| value(m).map(|y| (f64::from(m.epoch), y)))
            .filter(|(_, y)| y.is_finite())
            .collect();
        if !points.is_empty() {
            out.push(Line {
                group,
                vae: r.is_vae(),
                points,
            });
        }
    }
    out
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let elbo: fn(&MetricsRow) -> Option<f64> = |m| Some(m.neg_elbo.unwrap_or(m.recon));
    let train = lines(sweep, &mut groups, ("train", elbo));
    let test = lines(sweep, &mut groups, ("test", elbo));
    if train.is_empty() && test.is_empty() {
        return Ok(Err("no run has finished an epoch yet".into()));
    }
    let curves = Curves {
        left: Panel {
            title: "train −ELBO per epoch",
            y_desc: "nats (AE: recon)",
            lines: train,
        },
        right: Panel {
            title: "test −ELBO per epoch",
            y_desc: "nats (AE: recon)",
            lines: test,
        },
        groups,
    };
    Ok(Ok(canvas::save_png_svg(dir, "learning_curves", &curves)?))
}

pub const MI_CAPTION: &str =
    "Left: the mutual information I_q(x; z) between test images and their \
codes per epoch (He et al.'s estimator on 2000 test images, at most log 2000 = 7.6 nats). \
Right: active units per epoch (dimensions whose posterior mean varies across test images, \
Var > 0.01). He et al. report that the aggressive schedule mainly raises both; posterior \
collapse shows as flat, low lines.";

/// MI and active units per epoch, for sweeps that log MI (VAE runs).
pub fn draw_mi(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let mi = lines(sweep, &mut groups, ("test", |m| m.mi));
    let units = lines(
        sweep,
        &mut groups,
        ("test", |m| m.active_units.map(f64::from)),
    );
    if mi.is_empty() {
        return Ok(Err(
            "no run logs the mutual information (AE runs have none; tables from before it existed neither)".into(),
        ));
    }
    let curves = Curves {
        left: Panel {
            title: "mutual information I(x; z), test",
            y_desc: "nats",
            lines: mi,
        },
        right: Panel {
            title: "active units, test",
            y_desc: "units",
            lines: units,
        },
        groups,
    };
    Ok(Ok(canvas::save_png_svg(dir, "mi_active_units", &curves)?))
}

impl Chart for Curves {
    fn size(&self) -> (u32, u32) {
        (1400, 650)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (left, right) = root.split_horizontally(700);
        self.panel(&left, &self.left, false)?;
        self.panel(&right, &self.right, true)
    }
}

impl Curves {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        panel: &Panel,
        legend: bool,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (title, lines) = (panel.title, &panel.lines);
        let all = || lines.iter().flat_map(|l| l.points.iter());
        let (Some((x0, x1)), Some((y0, y1))) = (
            padded_range(all().map(|p| p.0)),
            padded_range(all().map(|p| p.1)),
        ) else {
            area.titled(&format!("{title}: no epochs"), text(18.0))?;
            return Ok(());
        };
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .caption(title, text(22.0))
            .build_cartesian_2d(x0.max(0.0)..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(panel.y_desc)
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        let mut labelled = vec![false; self.groups.len()];
        for line in lines {
            let colour = category(line.group);
            let style = colour.stroke_width(2);
            let series = if line.vae {
                chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?
            } else {
                chart.draw_series(DashedLineSeries::new(
                    line.points.iter().copied(),
                    8,
                    5,
                    style,
                ))?
            };
            if legend && !labelled[line.group] {
                labelled[line.group] = true;
                series
                    .label(self.groups[line.group].as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
        }
        if legend {
            canvas::legend(&mut chart, SeriesLabelPosition::UpperRight, 13.0)?;
        }
        Ok(())
    }
}
