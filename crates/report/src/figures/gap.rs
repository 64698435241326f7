//! The ELBO gap per run: log p(x) (IWAE, K samples) above the ELBO on the same test images;
//! the gap between them is KL(q(z|x) ‖ p(z|x)), how far the encoder is from the true posterior.

use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub const CAPTION: &str =
    "Top: for each VAE run, the ELBO (circle), the ELBO* of the best per-image Gaussian q found by \
the explicit E-step (cross), the IWAE estimate of log p(x) with the encoder's q as proposal \
(triangle) and with the E-step's q* (open circle), and AIS (square; on the first ais_test_n \
images), on the same test images; \
log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)), so the segment is the inference gap. Bottom: the gap split \
in two (Cremer et al. 2018) against the tightest of those lower bounds (the table's \
gap_log_px_from says which): the amortization gap ELBO* − ELBO (solid, what sharing one encoder \
across images costs) under the approximation gap log p(x) − ELBO* (pale, what the diagonal \
Gaussian family costs). Runs without an E-step show the whole gap solid.";

struct Bar {
    label: String,
    group: usize,
    elbo: f64,
    log_px: f64,
    elbo_star: Option<f64>,
    /// The IWAE bound with the E-step's q* as proposal.
    log_px_star: Option<f64>,
    /// The log p(x) the gap is split against (the tightest bound); `log_px` when absent.
    log_px_split: Option<f64>,
    /// The AIS estimate of log p(x).
    ais: Option<f64>,
}

impl Bar {
    /// The top of the gap: the log p(x) the split is against.
    fn top(&self) -> f64 {
        self.log_px_split.unwrap_or(self.log_px)
    }
}

/// The AIS marker: a square of 12 pixels around its point.
fn square(style: ShapeStyle) -> Rectangle<(i32, i32)> {
    Rectangle::new([(-6, -6), (6, 6)], style)
}

struct Gap {
    bars: Vec<Bar>,
    /// What the x labels list: the swept keys (but `model`) and the seed.
    x_desc: String,
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let mut groups: Vec<String> = Vec::new();
    let mut bars: Vec<Bar> = Vec::new();
    for r in sweep.ordered(sweep.done().filter(|r| r.is_vae())) {
        let (Some(elbo), Some(log_px)) = (r.metric("elbo_iw"), r.metric("log_px_iw")) else {
            continue;
        };
        let label = sweep.label(r, &[]);
        let group = canvas::group_of(&mut groups, &label);
        // Short x labels: the values of the swept keys (all runs here are VAEs) and the seed.
        let values: Vec<String> = sweep
            .varying
            .iter()
            .filter(|k| *k != "model")
            .map(|k| r.key(k).label())
            .chain([format!("s{}", r.key("seed").label())])
            .collect();
        bars.push(Bar {
            label: values.join(" "),
            group,
            elbo,
            log_px,
            elbo_star: r.metric("elbo_star"),
            log_px_star: r.metric("log_px_iw_star"),
            log_px_split: r.metric("gap_log_px"),
            ais: r.metric("log_px_ais"),
        });
    }
    if bars.is_empty() {
        return Ok(Err(
            "no finished VAE run has an IWAE estimate (AE runs have none; iw_samples = 0 skips it)"
                .into(),
        ));
    }
    let x_desc: Vec<&str> = sweep
        .varying
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "model")
        .chain(["seed (s)"])
        .collect();
    let chart = Gap {
        bars,
        x_desc: x_desc.join(", "),
    };
    Ok(Ok(canvas::save_png_svg(dir, "elbo_gap", &chart)?))
}

impl Chart for Gap {
    fn size(&self) -> (u32, u32) {
        (1400, 900)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.bars.len();
        let (top, bottom) = root.split_vertically(560);
        let (y0, y1) = padded_range(self.bars.iter().flat_map(|b| [b.elbo, b.log_px, b.top()]))
            .unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(&top)
            .margin(15)
            .x_label_area_size(10)
            .y_label_area_size(80)
            .caption(
                "log p(x) estimates and the ELBO per run, test images",
                text(22.0),
            )
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("nats per image")
            .label_style(text(15.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        for (i, b) in self.bars.iter().enumerate() {
            let colour = category(b.group);
            let x = i as f64;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, b.elbo), (x, b.top())],
                colour.stroke_width(3),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(
                (x, b.elbo),
                6,
                colour.filled(),
            )))?;
            chart.draw_series(std::iter::once(TriangleMarker::new(
                (x, b.log_px),
                8,
                colour.filled(),
            )))?;
            if let Some(ais) = b.ais {
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x, ais)) + square(colour.filled()),
                ))?;
            }
            if let Some(star) = b.log_px_star {
                chart.draw_series(std::iter::once(Circle::new(
                    (x, star),
                    7,
                    colour.stroke_width(2),
                )))?;
            }
            if let Some(star) = b.elbo_star {
                chart.draw_series(std::iter::once(Cross::new(
                    (x, star),
                    6,
                    colour.stroke_width(2),
                )))?;
            }
        }
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("ELBO")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.filled()));
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("ELBO*, E-step optimum")
            .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2)));
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("log p(x), IWAE with the encoder's q")
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, BLACK.filled()));
        if self.bars.iter().any(|b| b.ais.is_some()) {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("log p(x), AIS")
                .legend(|(x, y)| EmptyElement::at((x + 10, y)) + square(BLACK.filled()));
        }
        if self.bars.iter().any(|b| b.log_px_star.is_some()) {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("log p(x), IWAE with the E-step's q*")
                .legend(|(x, y)| Circle::new((x + 10, y), 6, BLACK.stroke_width(2)));
        }
        canvas::legend(&mut chart, SeriesLabelPosition::LowerRight, 14.0)?;

        let g1 = self
            .bars
            .iter()
            .map(|b| b.top() - b.elbo)
            .fold(0.0, f64::max);
        let mut gaps = ChartBuilder::on(&bottom)
            .margin(15)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .caption(
                "gap = log p(x) − ELBO: amortization (solid) + approximation (pale)",
                text(20.0),
            )
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..(g1 * 1.15).max(1e-3))?;
        let labels: Vec<String> = self.bars.iter().map(|b| b.label.clone()).collect();
        gaps.configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&move |x| canvas::index_label(&labels, *x))
            .x_desc(self.x_desc.as_str())
            .y_desc("nats")
            .label_style(text(14.0))
            .axis_desc_style(text(16.0))
            .draw()?;
        gaps.draw_series(self.bars.iter().enumerate().flat_map(|(i, b)| {
            let (x, colour) = (i as f64, category(b.group));
            let gap = b.top() - b.elbo;
            match b.elbo_star {
                Some(star) => {
                    let amortization = (star - b.elbo).clamp(0.0, gap.max(0.0));
                    vec![
                        Rectangle::new(
                            [(x - 0.35, 0.0), (x + 0.35, amortization)],
                            colour.filled(),
                        ),
                        Rectangle::new(
                            [(x - 0.35, amortization), (x + 0.35, gap)],
                            colour.mix(0.35).filled(),
                        ),
                    ]
                }
                None => vec![Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, gap)],
                    colour.filled(),
                )],
            }
        }))?;
        Ok(())
    }
}
