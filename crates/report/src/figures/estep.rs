//! The explicit E-step's convergence: per VAE run, the mean ELBO of the per-image optimized q
//! against Adam steps, as the gain over the encoder's q (step 0).

use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub const CAPTION: &str = "For each VAE run, the mean over the gap-split test images of the ELBO \
of the per-image optimized Gaussian q (decoder frozen, Adam on each image's μ and log σ², a \
4-sample estimate per step), minus its value at step 0, the encoder's q. Where the curve flattens \
the E-step has converged; its height is the amortization gap (the table's value is re-estimated \
with K samples).";

struct Line {
    group: usize,
    gain: Vec<f64>,
}

struct EStepCurves {
    lines: Vec<Line>,
    groups: Vec<String>,
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for r in sweep.ordered(sweep.done().filter(|r| r.is_vae())) {
        let Some(curve) = sweep.estep.get(&r.id).filter(|c| c.len() > 1) else {
            continue;
        };
        let gain = curve.iter().map(|e| e - curve[0]).collect();
        let group = canvas::group_of(&mut groups, &sweep.label(r, &[]));
        lines.push(Line { group, gain });
    }
    if lines.is_empty() {
        return Ok(Err(
            "no finished VAE run has an E-step curve (gap_test_n = 0 or iw_samples = 0 skip it; AE runs have none)"
                .into(),
        ));
    }
    Ok(Ok(canvas::save_png_svg(
        dir,
        "estep_curve",
        &EStepCurves { lines, groups },
    )?))
}

impl Chart for EStepCurves {
    fn size(&self) -> (u32, u32) {
        (1100, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let steps = self.lines.iter().map(|l| l.gain.len()).max().unwrap_or(2) - 1;
        let (y0, y1) = padded_range(self.lines.iter().flat_map(|l| l.gain.iter().copied()))
            .unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .caption(
                "E-step: ELBO of the optimized q minus the encoder's, test images",
                text(22.0),
            )
            .build_cartesian_2d(0f64..steps as f64, y0.min(0.0)..y1)?;
        chart
            .configure_mesh()
            .x_desc("Adam steps on each image's (μ, log σ²)")
            .y_desc("ELBO gain (nats per image)")
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        let mut labelled = vec![false; self.groups.len()];
        for line in &self.lines {
            let colour = category(line.group);
            let points = line.gain.iter().enumerate().map(|(t, &g)| (t as f64, g));
            let anno = chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
            if !labelled[line.group] {
                labelled[line.group] = true;
                anno.label(self.groups[line.group].as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
            }
        }
        canvas::legend(&mut chart, SeriesLabelPosition::LowerRight, 13.0)?;
        Ok(())
    }
}
