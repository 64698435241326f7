//! The rate–distortion plane: KL (rate) against recon (distortion), one point per run, with
//! lines of constant −ELBO = recon + KL. AE runs sit at rate 0, drawn as crosses.

use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub const CAPTION: &str = "One point per finished run: rate (test KL) across, distortion (test \
recon) up, coloured by the swept setting. Grey diagonals are lines of equal −ELBO = recon + KL; \
points further down-left have the better ELBO. Moving along a diagonal trades rate for distortion \
at the same ELBO (what β does). Autoencoders (crosses) sit at rate 0: their recon is not an ELBO.";

struct Point {
    rate: f64,
    distortion: f64,
    group: usize,
    vae: bool,
}

struct RateDistortion {
    points: Vec<Point>,
    groups: Vec<String>,
    colour_by: String,
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    if !sweep.done().any(|r| r.is_vae()) {
        return Ok(Err(
            "no finished VAE run: the rate (KL) exists only for VAEs".into(),
        ));
    }
    // Colour by the swept key (the first numeric one); the marker tells VAE from AE.
    let colour_key: Vec<&str> = match sweep.numeric_varying().first() {
        Some(k) => vec![*k],
        None => sweep
            .varying
            .iter()
            .map(String::as_str)
            .filter(|k| *k != "model")
            .collect(),
    };
    let colour_by = if colour_key.is_empty() {
        "seed".to_string()
    } else {
        colour_key.join(", ")
    };
    let mut groups: Vec<String> = Vec::new();
    let mut points = Vec::new();
    for r in sweep.ordered(sweep.done()) {
        let (Some(distortion), rate) = (r.metric("test_recon"), r.metric("test_kl")) else {
            continue;
        };
        let label = if colour_key.is_empty() {
            "all runs".to_string()
        } else {
            colour_key
                .iter()
                .map(|k| format!("{k}={}", r.key(k).label()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let group = canvas::group_of(&mut groups, &label);
        points.push(Point {
            rate: rate.unwrap_or(0.0),
            distortion,
            group,
            vae: r.is_vae(),
        });
    }
    let chart = RateDistortion {
        points,
        groups,
        colour_by,
    };
    Ok(Ok(canvas::save_png_svg(dir, "rate_distortion", &chart)?))
}

impl Chart for RateDistortion {
    fn size(&self) -> (u32, u32) {
        (1100, 850)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (_, x1) =
            padded_range(self.points.iter().map(|p| p.rate).chain([0.0])).unwrap_or((0.0, 1.0));
        let x0 = -0.03 * x1;
        let (y0, y1) = padded_range(self.points.iter().map(|p| p.distortion)).unwrap_or((0.0, 1.0));
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .caption(
                format!("Rate–distortion plane (colour: {})", self.colour_by),
                text(24.0),
            )
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("rate: test KL(q(z|x) ‖ p(z)) (nats)")
            .y_desc("distortion: test recon −log p(x|z) (nats)")
            .label_style(text(16.0))
            .axis_desc_style(text(18.0))
            .draw()?;
        // Iso-ELBO lines recon + KL = c, at round values of c across the visible range.
        let (c_lo, c_hi) = (y0 + x0, y1 + x1);
        let step = nice_step((c_hi - c_lo) / 8.0);
        let mut c = (c_lo / step).ceil() * step;
        while c <= c_hi {
            let line = vec![(x0, c - x0), (x1, c - x1)];
            chart.draw_series(LineSeries::new(line, BLACK.mix(0.25).stroke_width(1)))?;
            // Label where the line leaves the top or enters from the left.
            let (lx, ly) = if c - y1 > x0 {
                (c - y1, y1)
            } else {
                (x0, c - x0)
            };
            if ly <= y1 && ly >= y0 && lx <= x1 {
                chart.draw_series(std::iter::once(Text::new(
                    format!("−ELBO {c:.0}"),
                    (lx, ly),
                    text(13.0).color(&BLACK.mix(0.5)),
                )))?;
            }
            c += step;
        }
        for (g, label) in self.groups.iter().enumerate() {
            let colour = category(g);
            let mut labelled = false;
            let vae: Vec<(f64, f64)> = self
                .points
                .iter()
                .filter(|p| p.group == g && p.vae)
                .map(|p| (p.rate, p.distortion))
                .collect();
            let ae: Vec<(f64, f64)> = self
                .points
                .iter()
                .filter(|p| p.group == g && !p.vae)
                .map(|p| (p.rate, p.distortion))
                .collect();
            if !vae.is_empty() {
                chart
                    .draw_series(vae.iter().map(|&p| Circle::new(p, 7, colour.filled())))?
                    .label(label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 6, colour.filled()));
                labelled = true;
            }
            if !ae.is_empty() {
                let anno = chart
                    .draw_series(ae.iter().map(|&p| Cross::new(p, 8, colour.stroke_width(3))))?;
                if !labelled {
                    anno.label(label.as_str())
                        .legend(move |(x, y)| Cross::new((x + 10, y), 6, colour.stroke_width(3)));
                }
            }
        }
        // Marker key.
        if self.points.iter().any(|p| p.vae) {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("● VAE")
                .legend(|(x, y)| Circle::new((x + 10, y), 6, BLACK.filled()));
        }
        if self.points.iter().any(|p| !p.vae) {
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("✕ AE (no KL: drawn at rate 0)")
                .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(3)));
        }
        canvas::legend(&mut chart, SeriesLabelPosition::UpperRight, 14.0)?;
        Ok(())
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nice_steps_are_round() {
        assert_eq!(super::nice_step(3.2), 5.0);
        assert_eq!(super::nice_step(0.7), 1.0);
        assert_eq!(super::nice_step(12.0), 20.0);
    }
}
