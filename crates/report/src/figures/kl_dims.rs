//! KL per latent dimension, sorted from largest to smallest: which units carry information
//! (active) and which collapsed to the prior.

use crate::canvas::{self, category, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use vaelab_vae::ACTIVE_UNIT_THRESHOLD;

pub const CAPTION: &str = "Final test KL of each latent dimension, sorted, one line per VAE run \
(log scale). Units above the dashed line carry information about x; those below have collapsed \
to the prior (the dashed line marks 0.01 nats; the tables count active units by the variance of the posterior mean instead, after Burda et al.). Larger β and larger latent sizes push more units down.";

/// Smallest KL drawn: the axis is logarithmic.
const FLOOR: f64 = 1e-5;

struct Line {
    group: usize,
    kl: Vec<f64>,
}

struct KlDims {
    lines: Vec<Line>,
    groups: Vec<String>,
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for r in sweep.ordered(sweep.done().filter(|r| r.is_vae())) {
        let Some(last) = sweep.curve(&r.id, "test").last().copied() else {
            continue;
        };
        let Some(kl) = &last.kl_per_dim else {
            continue;
        };
        let mut kl: Vec<f64> = kl.iter().map(|v| v.max(FLOOR)).collect();
        kl.sort_by(|a, b| b.total_cmp(a));
        let label = sweep.label(r, &[]);
        let group = canvas::group_of(&mut groups, &label);
        lines.push(Line { group, kl });
    }
    if lines.is_empty() {
        return Ok(Err(
            "no finished VAE run has per-dimension KL (AE runs have no KL)".into(),
        ));
    }
    Ok(Ok(canvas::save_png_svg(
        dir,
        "kl_per_dim",
        &KlDims { lines, groups },
    )?))
}

impl Chart for KlDims {
    fn size(&self) -> (u32, u32) {
        (1100, 750)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let dims = self.lines.iter().map(|l| l.kl.len()).max().unwrap_or(1);
        let top = self
            .lines
            .iter()
            .flat_map(|l| l.kl.iter().copied())
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .caption(
                "KL per latent dimension, sorted (test set, last epoch)",
                text(22.0),
            )
            .build_cartesian_2d(0.5f64..(dims as f64 + 0.5), (FLOOR..top * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("dimension, by rank of its KL")
            .y_desc("KL (nats, log scale)")
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            [
                (0.5, ACTIVE_UNIT_THRESHOLD),
                (dims as f64 + 0.5, ACTIVE_UNIT_THRESHOLD),
            ],
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))?;
        let mut labelled = vec![false; self.groups.len()];
        for line in &self.lines {
            let colour = category(line.group);
            let points: Vec<(f64, f64)> = line
                .kl
                .iter()
                .enumerate()
                .map(|(i, &v)| ((i + 1) as f64, v))
                .collect();
            let anno =
                chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
            if !labelled[line.group] {
                labelled[line.group] = true;
                anno.label(self.groups[line.group].as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )?;
        }
        canvas::legend(&mut chart, SeriesLabelPosition::UpperRight, 13.0)?;
        Ok(())
    }
}
