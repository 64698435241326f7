//! Bits per dimension per setting: the discrete ELBO and the IWAE bound on the probability mass
//! of the quantized test images, mean ± std over seeds, against the uniform model's log2(levels).
//! One panel per data representation (8-bit, binarized): their bits/dim never share an axis.

use super::stats::{stat, Stat};
use crate::canvas::{self, category, text, Chart, DrawResult};
use crate::figure::Drawn;
use crate::sweep::Sweep;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

pub const CAPTION: &str = "For each setting of the swept keys (VAE runs; mean over seeds, ±1 std \
bars): the negative ELBO (circle) and the IWAE bound (triangle) on the probability mass of the \
quantized test image, in bits per pixel — lower is better, and unlike nats of densities these are \
comparable across likelihood families. Every continuous density is scored over the 8-bit bins of \
its pixel (end bins open), the Bernoulli by the discretized continuous Bernoulli of its λ. The \
dashed line is the uniform model (8 bits/dim on 256 levels, 1 on binarized pixels). Binarized \
runs are a different data representation and get their own panel.";

/// One setting of the swept keys on one panel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Setting {
    pub label: String,
    pub elbo: Option<Stat>,
    pub iwae: Option<Stat>,
    pub seeds: usize,
}

/// The settings of one data representation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Panel {
    pub levels: u32,
    pub settings: Vec<Setting>,
}

struct Bpd {
    panels: Vec<Panel>,
    /// What the x labels list: the swept keys.
    keys: String,
}

/// A setting's label with its runs' −ELBO and IWAE bits/dim, before they are summarized.
type Pooled = (String, Vec<f64>, Vec<f64>);

/// Groups the finished VAE runs by data levels, then by setting (seeds pooled), in sweep order.
pub(crate) fn panels(sweep: &Sweep) -> Vec<Panel> {
    let mut by_levels: BTreeMap<u32, Vec<Pooled>> = BTreeMap::new();
    for r in sweep.ordered(sweep.done().filter(|r| r.is_vae())) {
        let (Some(elbo), Some(levels)) = (r.metric("test_elbo_bpd"), r.metric("data_levels"))
        else {
            continue;
        };
        // Short labels: the values of the swept keys the run uses ("gaussian-learned true").
        let values: Vec<String> = sweep
            .varying
            .iter()
            .filter(|k| *k != "seed" && r.uses(k))
            .map(|k| r.key(k).label())
            .collect();
        let label = if values.is_empty() {
            sweep.name.clone()
        } else {
            values.join(" ")
        };
        let settings = by_levels.entry(levels as u32).or_default();
        let i = match settings.iter().position(|s| s.0 == label) {
            Some(i) => i,
            None => {
                settings.push((label, Vec::new(), Vec::new()));
                settings.len() - 1
            }
        };
        settings[i].1.push(elbo);
        settings[i].2.extend(r.metric("nll_bpd"));
    }
    by_levels
        .into_iter()
        .rev()
        .map(|(levels, settings)| Panel {
            levels,
            settings: settings
                .into_iter()
                .map(|(label, elbo, iwae)| Setting {
                    label,
                    seeds: elbo.len(),
                    elbo: (!elbo.is_empty()).then(|| stat(&elbo)),
                    iwae: (!iwae.is_empty()).then(|| stat(&iwae)),
                })
                .collect(),
        })
        .collect()
}

pub fn draw(sweep: &Sweep, dir: &Path) -> Drawn {
    let panels = panels(sweep);
    if panels.is_empty() {
        return Ok(Err(
            "no finished VAE run has bits/dim (runs from before vaelab scored masses, or AE runs only)"
                .into(),
        ));
    }
    Ok(Ok(canvas::save_png_svg(
        dir,
        "bits_per_dim",
        &Bpd {
            panels,
            keys: sweep
                .varying
                .iter()
                .filter(|k| *k != "seed")
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        },
    )?))
}

impl Chart for Bpd {
    fn size(&self) -> (u32, u32) {
        // Room for each setting's label written level.
        let n = self
            .panels
            .iter()
            .map(|p| p.settings.len())
            .max()
            .unwrap_or(1);
        (
            (230 * n as u32).clamp(1400, 2600),
            560 * self.panels.len() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let areas = root.split_evenly((self.panels.len(), 1));
        for (panel, area) in self.panels.iter().zip(areas) {
            draw_panel(panel, &self.keys, &area)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    keys: &str,
    area: &DrawingArea<DB, Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = panel.settings.len();
    let uniform = f64::from(panel.levels.max(2)).log2();
    // The axis stops at twice the uniform model: a setting that trained into nonsense (a
    // learned σ that collapsed) is drawn on the top edge with its value, not as the scale.
    let cap = 2.0 * uniform;
    let ends = panel
        .settings
        .iter()
        .flat_map(|s| [s.elbo, s.iwae])
        .flatten()
        .flat_map(|s| [s.mean - s.std, s.mean + s.std])
        .filter(|v| v.is_finite() && *v <= cap)
        .chain([0.0, uniform]);
    let top = ends.fold(0.0f64, f64::max) * 1.08;
    let what = if panel.levels == 256 {
        "8-bit images (256 levels)".to_string()
    } else {
        format!("{} levels (binarized)", panel.levels)
    };
    // The seed count goes in the title when every setting has the same, else on each label.
    let seeds: Vec<usize> = panel.settings.iter().map(|s| s.seeds).collect();
    let same_seeds = seeds.windows(2).all(|w| w[0] == w[1]);
    let labels: Vec<String> = panel
        .settings
        .iter()
        .map(|s| {
            if same_seeds {
                s.label.clone()
            } else {
                format!("{} (n={})", s.label, s.seeds)
            }
        })
        .collect();
    let n_seeds = if same_seeds {
        format!(", {} seeds each", seeds.first().copied().unwrap_or(0))
    } else {
        String::new()
    };
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(70)
        .y_label_area_size(80)
        .caption(
            format!("bits/dim of the test images, {what}: −ELBO and IWAE bound{n_seeds}"),
            text(22.0),
        )
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&move |x| canvas::index_label(&labels, *x))
        .label_style(text(14.0))
        .x_desc(keys)
        .y_desc("bits per dimension")
        .axis_desc_style(text(16.0))
        .draw()?;
    chart
        .draw_series(DashedLineSeries::new(
            [(-0.5, uniform), (n as f64 - 0.5, uniform)],
            8,
            6,
            BLACK.stroke_width(2),
        ))?
        .label(format!(
            "uniform over {} levels: {uniform} bits/dim",
            panel.levels
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, s) in panel.settings.iter().enumerate() {
        let colour = category(i);
        for (offset, stat, triangle, row) in
            [(-0.12, s.elbo, false, 0.9), (0.12, s.iwae, true, 0.84)]
        {
            let Some(stat) = stat else { continue };
            let x = i as f64 + offset;
            if stat.mean > top || stat.mean.is_nan() {
                let y = top * 0.97;
                chart.draw_series(std::iter::once(TriangleMarker::new(
                    (x, y),
                    9,
                    colour.filled(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{:.1e}", stat.mean),
                    (x - 0.3, top * row),
                    text(13.0),
                )))?;
                continue;
            }
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, stat.mean - stat.std), (x, stat.mean + stat.std)],
                colour.stroke_width(2),
            )))?;
            if triangle {
                chart.draw_series(std::iter::once(TriangleMarker::new(
                    (x, stat.mean),
                    8,
                    colour.filled(),
                )))?;
            } else {
                chart.draw_series(std::iter::once(Circle::new(
                    (x, stat.mean),
                    6,
                    colour.filled(),
                )))?;
            }
        }
    }
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("−ELBO (discrete mass)")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.filled()));
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label("−log p(x), IWAE (discrete mass)")
        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, BLACK.filled()));
    canvas::legend(&mut chart, SeriesLabelPosition::LowerRight, 14.0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{Run, Value};

    fn run(id: &str, lik: &str, seed: f64, levels: f64, elbo: f64) -> Run {
        Run::done_with(
            id,
            vec![
                ("model", Value::Text("vae".into())),
                ("likelihood", Value::Text(lik.into())),
                ("seed", Value::Num(seed)),
            ],
            vec![
                ("test_elbo_bpd", elbo),
                ("nll_bpd", elbo - 0.1),
                ("data_levels", levels),
            ],
        )
    }

    /// Seeds pool into one setting with their std; binarized runs get their own panel.
    #[test]
    fn settings_pool_seeds_and_levels_never_share_a_panel() {
        let sweep = Sweep {
            name: "s".into(),
            runs: vec![
                run("a", "gaussian", 0.0, 256.0, 4.0),
                run("b", "gaussian", 1.0, 256.0, 4.2),
                run("c", "bernoulli", 0.0, 256.0, 5.0),
                run("d", "bernoulli", 0.0, 2.0, 0.3),
            ],
            epochs: Vec::new(),
            varying: vec!["likelihood".into()],
            estep: Default::default(),
        };
        let p = panels(&sweep);
        assert_eq!(p.iter().map(|p| p.levels).collect::<Vec<_>>(), [256, 2]);
        let gauss = p[0]
            .settings
            .iter()
            .find(|s| s.label == "gaussian")
            .unwrap();
        assert_eq!(gauss.seeds, 2);
        let e = gauss.elbo.unwrap();
        assert!((e.mean - 4.1).abs() < 1e-12 && (e.std - 0.02f64.sqrt()).abs() < 1e-9);
        assert!((gauss.iwae.unwrap().mean - 4.0).abs() < 1e-12);
        assert_eq!(p[1].settings.len(), 1);
        assert_eq!(p[1].settings[0].elbo.unwrap().mean, 0.3);
    }
}
