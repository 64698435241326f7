//! Learning curves: train and test −ELBO per epoch for every run, overlaid, one colour per
//! setting of the swept keys (seeds share it).

use super::Drawn;
use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

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

struct Curves {
    train: Vec<Line>,
    test: Vec<Line>,
    groups: Vec<String>,
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for r in sweep.ordered(sweep.runs.iter()) {
        let label = sweep.label(r, &[]);
        let group = canvas::group_of(&mut groups, &label);
        for (split, out) in [("train", &mut train), ("test", &mut test)] {
            let points: Vec<(f64, f64)> = sweep
                .curve(&r.id, split)
                .iter()
                .map(|m| (f64::from(m.epoch), m.neg_elbo.unwrap_or(m.recon)))
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
    }
    if train.is_empty() && test.is_empty() {
        return Ok(Err("no run has finished an epoch yet".into()));
    }
    Ok(Ok(canvas::save_png_svg(
        dir,
        "learning_curves",
        &Curves {
            train,
            test,
            groups,
        },
    )?))
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
        self.panel(&left, "train −ELBO per epoch", &self.train, false)?;
        self.panel(&right, "test −ELBO per epoch", &self.test, true)
    }
}

impl Curves {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        title: &str,
        lines: &[Line],
        legend: bool,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
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
            .y_desc("nats (AE: recon)")
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
