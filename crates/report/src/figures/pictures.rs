//! Figures decoded from checkpoints: reconstructions, prior samples (VAE and AE side by side),
//! the decoded manifold of 2-d latents, the test set's posterior means coloured by label, and a
//! VampPrior's learned pseudo-inputs.

use crate::canvas::{self, category, padded_range, text, Chart, DrawResult};
use crate::figure::{Drawn, Inputs, ModelRef};
use crate::images::Restored;
use crate::sweep::{Run, Sweep};
use crate::ReportError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use vaelab_data::{Dataset, ImageShape, SplitKind};
use vaelab_vae::rng;

/// Runs shown at most, one per setting of the swept keys (its lowest seed).
const MAX_RUNS: usize = 6;
/// Test images reconstructed.
const RECON_IMAGES: usize = 10;
/// Prior samples per run: a square grid of this side.
const SAMPLE_SIDE: usize = 6;
/// The manifold grid's side.
const MANIFOLD_SIDE: usize = 15;
/// Test images in the latent scatter.
const SCATTER_IMAGES: usize = 2000;
/// Pseudo-inputs drawn per VampPrior run: a square grid of this side.
const PSEUDO_SIDE: usize = 8;

const RECON_CAPTION: &str = "Top row: test images. Each row below: one run's reconstructions, \
decoded from the posterior mean. Blurry rows trade recon for KL (large β, small latents); the \
AE's rows are the sharpest because nothing pulls its codes toward the prior.";
const SAMPLES_CAPTION: &str = "Images decoded from z ~ N(0, I), the same draws for every run. The \
VAE was trained so that the prior covers its codes, so its samples look like data. The AE was not: \
its codes live in a small, irregular region, so most prior draws land in holes and decode to \
smudges. This is the gap the KL term closes.";
const MANIFOLD_CAPTION: &str = "For 2-d latents: decoded pixel means over a 15 × 15 grid of z in \
[−2.5, 2.5]². A VAE gives a smooth, fully used map; an AE's grid shows regions that decode to \
nothing recognisable.";
const LATENT_CAPTION: &str = "Posterior means of 2000 test images, coloured by their class label \
(2-d latents as they are, larger ones projected onto their first two principal components). The \
VAE's codes fill a round N(0, I)-like blob; the AE's spread out at whatever scale it likes.";
const PSEUDO_CAPTION: &str = "The first 64 learned pseudo-inputs u_k of each VampPrior run, as \
pixels (clamped to [0, 1]). The prior is the mixture (1/K) Σ q(z | u_k): trained pseudo-inputs come \
to look like prototypes of the data, one per mode the prior covers; at initialisation they are \
near-uniform grey noise.";

/// (file stem, title, caption, files or why skipped).
pub type PictureOutcome = (String, String, &'static str, Result<Vec<PathBuf>, String>);

/// One restored run and the label it is shown under.
struct Shown {
    label: String,
    model: Restored,
    latent_dim: usize,
    data: usize,
}

pub fn draw_all(
    sweep: &Sweep,
    inputs: &Inputs,
    dir: &Path,
) -> Result<Vec<PictureOutcome>, ReportError> {
    let names = [
        ("reconstructions", "Test reconstructions", RECON_CAPTION),
        (
            "samples",
            "Samples from the prior, decoded",
            SAMPLES_CAPTION,
        ),
        (
            "manifold",
            "The decoded 2-d latent manifold",
            MANIFOLD_CAPTION,
        ),
        (
            "latent_space",
            "The latent space of the test set",
            LATENT_CAPTION,
        ),
        (
            "pseudo_inputs",
            "The VampPrior's pseudo-inputs",
            PSEUDO_CAPTION,
        ),
    ];
    let skip_all = |why: String| {
        names
            .iter()
            .map(|(n, t, c)| (n.to_string(), t.to_string(), *c, Err(why.clone())))
            .collect()
    };
    let (shown, datasets) = match restore(sweep, &inputs.models) {
        Ok(x) => x,
        Err(why) => return Ok(skip_all(why)),
    };
    if shown.is_empty() {
        return Ok(skip_all(
            "no finished run has a checkpoint to decode".into(),
        ));
    }
    let mut out = Vec::new();
    let mut push = |i: usize, drawn: Result<Vec<PathBuf>, String>| {
        let (n, t, c) = names[i];
        out.push((n.to_string(), t.to_string(), c, drawn));
    };
    push(0, reconstructions(&shown, &datasets, dir)?);
    push(1, samples(&shown, &datasets, dir)?);
    push(2, manifold(&shown, &datasets, dir)?);
    push(3, latent_space(&shown, &datasets, dir)?);
    push(4, pseudo_inputs(&shown, &datasets, dir)?);
    Ok(out)
}

/// The runs to show, restored, and the datasets they need (loaded once each).
fn restore(sweep: &Sweep, models: &[ModelRef]) -> Result<(Vec<Shown>, Vec<Dataset>), String> {
    let mut chosen: Vec<(String, &Run, &ModelRef)> = Vec::new();
    for r in sweep.ordered(sweep.done()) {
        let label = sweep.label(r, &[]);
        if chosen.iter().any(|(l, _, _)| *l == label) || chosen.len() == MAX_RUNS {
            continue;
        }
        if let Some(m) = models
            .iter()
            .find(|m| m.run_id == r.id && m.checkpoint.exists())
        {
            chosen.push((label, r, m));
        }
    }
    let mut sources = Vec::new();
    let mut datasets = Vec::new();
    let mut shown = Vec::new();
    for (label, _, m) in chosen {
        let data = match sources.iter().position(|s| *s == m.data) {
            Some(i) => i,
            None => {
                let d = vaelab_data::load(&m.data)
                    .map_err(|e| format!("loading the test images: {e}"))?;
                sources.push(m.data.clone());
                datasets.push(d);
                datasets.len() - 1
            }
        };
        let arch = m.config.architecture(&datasets[data]);
        shown.push(Shown {
            label,
            model: Restored::load(&m.checkpoint, arch)?,
            latent_dim: m.config.latent_dim,
            data,
        });
    }
    Ok((shown, datasets))
}

/// The first `n` test images of a dataset as one flat buffer.
fn test_images(d: &Dataset, n: usize) -> (Vec<f32>, Vec<u8>, usize) {
    let split = d.split(SplitKind::Test, vaelab_data::Binarize::None);
    let n = n.min(split.len());
    let idx: Vec<usize> = (0..n).collect();
    let mut buf = Vec::new();
    split.gather(&idx, None, &mut buf);
    (buf, split.labels()[..n].to_vec(), n)
}

fn candle_err(figure: &str) -> impl Fn(candle_core::Error) -> ReportError + '_ {
    move |e| ReportError::Draw {
        figure: figure.to_string(),
        reason: e.to_string(),
    }
}

fn reconstructions(shown: &[Shown], data: &[Dataset], dir: &Path) -> Drawn {
    let d = &data[shown[0].data];
    let (pixels, _, n) = test_images(d, RECON_IMAGES);
    let mut panels = vec![Panel {
        label: "test images".into(),
        images: pixels.chunks(d.dim()).map(<[f32]>::to_vec).collect(),
        cols: n,
    }];
    for s in shown.iter().filter(|s| s.data == shown[0].data) {
        panels.push(Panel {
            label: s.label.clone(),
            images: s
                .model
                .reconstruct(&pixels, n)
                .map_err(candle_err("reconstructions"))?,
            cols: n,
        });
    }
    let mosaic = Mosaic::new(
        "Test reconstructions (posterior mean → decoder mean)",
        panels,
        d,
        1,
        2,
    );
    Ok(Ok(vec![canvas::save_png(dir, "reconstructions", &mosaic)?]))
}

fn samples(shown: &[Shown], data: &[Dataset], dir: &Path) -> Drawn {
    let mut panels = Vec::new();
    for s in shown.iter().filter(|s| s.data == shown[0].data) {
        // The same draws for every run of the same latent size.
        let mut r = rng::stream(0, rng::Stream::Samples, 0);
        let n = SAMPLE_SIDE * SAMPLE_SIDE;
        let width = s.model.latent_width();
        let eps = rng::normals(&mut r, n * width);
        let eps: Vec<Vec<f32>> = eps.chunks(width).map(<[f32]>::to_vec).collect();
        panels.push(Panel {
            label: s.label.clone(),
            images: s.model.sample(&eps).map_err(candle_err("samples"))?,
            cols: SAMPLE_SIDE,
        });
    }
    let d = &data[shown[0].data];
    let mosaic = Mosaic::new("Decoded samples z ~ N(0, I)", panels, d, 2, 2);
    Ok(Ok(vec![canvas::save_png(dir, "samples", &mosaic)?]))
}

fn manifold(shown: &[Shown], data: &[Dataset], dir: &Path) -> Drawn {
    let two: Vec<&Shown> = shown
        .iter()
        .filter(|s| s.latent_dim == 2 && s.data == shown[0].data)
        .collect();
    if two.is_empty() {
        return Ok(Err(
            "no run has latent_dim = 2; the latent-space figure projects larger latents by PCA instead".into(),
        ));
    }
    let step = 5.0 / (MANIFOLD_SIDE - 1) as f32;
    let z: Vec<Vec<f32>> = (0..MANIFOLD_SIDE)
        .flat_map(|row| {
            (0..MANIFOLD_SIDE)
                .map(move |col| vec![-2.5 + col as f32 * step, 2.5 - row as f32 * step])
        })
        .collect();
    let mut panels = Vec::new();
    for s in two {
        panels.push(Panel {
            label: s.label.clone(),
            images: s.model.decode(&z).map_err(candle_err("manifold"))?,
            cols: MANIFOLD_SIDE,
        });
    }
    let d = &data[shown[0].data];
    let mosaic = Mosaic::new("Decoded grid of z over [−2.5, 2.5]²", panels, d, 2, 1);
    Ok(Ok(vec![canvas::save_png(dir, "manifold", &mosaic)?]))
}

fn latent_space(shown: &[Shown], data: &[Dataset], dir: &Path) -> Drawn {
    let mut panels = Vec::new();
    for s in shown {
        let d = &data[s.data];
        let (pixels, labels, n) = test_images(d, SCATTER_IMAGES);
        let mu = s
            .model
            .encode(&pixels, n)
            .map_err(candle_err("latent_space"))?;
        let (points, how) = if s.latent_dim == 2 {
            (
                mu.iter()
                    .map(|m| (f64::from(m[0]), f64::from(m[1])))
                    .collect(),
                "z".to_string(),
            )
        } else {
            let (p, explained) = pca2(&mu);
            (
                p,
                format!("PCA of z ({:.0}% of variance)", 100.0 * explained),
            )
        };
        panels.push(Scatter {
            label: s.label.clone(),
            how,
            points,
            labels,
        });
    }
    let chart = LatentSpace { panels };
    Ok(Ok(canvas::save_png_svg(dir, "latent_space", &chart)?))
}

fn pseudo_inputs(shown: &[Shown], data: &[Dataset], dir: &Path) -> Drawn {
    let mut panels = Vec::new();
    for s in shown.iter().filter(|s| s.data == shown[0].data) {
        let drawn = s
            .model
            .pseudo_inputs(PSEUDO_SIDE * PSEUDO_SIDE)
            .map_err(candle_err("pseudo_inputs"))?;
        if let Some(images) = drawn {
            panels.push(Panel {
                label: s.label.clone(),
                images,
                cols: PSEUDO_SIDE,
            });
        }
    }
    if panels.is_empty() {
        return Ok(Err(
            "no run has prior = \"vamp\"; only a VampPrior learns pseudo-inputs".into(),
        ));
    }
    let d = &data[shown[0].data];
    let mosaic = Mosaic::new("Learned pseudo-inputs of the VampPrior", panels, d, 2, 2);
    Ok(Ok(vec![canvas::save_png(dir, "pseudo_inputs", &mosaic)?]))
}

/// Projection onto the first two principal components, and the share of variance they hold.
pub fn pca2(rows: &[Vec<f32>]) -> (Vec<(f64, f64)>, f64) {
    let l = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mean: Vec<f64> = (0..l)
        .map(|j| rows.iter().map(|r| f64::from(r[j])).sum::<f64>() / n)
        .collect();
    let mut cov = vec![vec![0f64; l]; l];
    for r in rows {
        for i in 0..l {
            let a = f64::from(r[i]) - mean[i];
            for j in 0..l {
                cov[i][j] += a * (f64::from(r[j]) - mean[j]) / n;
            }
        }
    }
    let total: f64 = (0..l).map(|i| cov[i][i]).sum();
    let mut components = Vec::new();
    let mut captured = 0.0;
    for _ in 0..2.min(l) {
        // Power iteration, then deflation.
        let mut v: Vec<f64> = (0..l).map(|i| 1.0 + i as f64 * 0.01).collect();
        let mut lambda = 0.0;
        for _ in 0..500 {
            let w: Vec<f64> = (0..l)
                .map(|i| (0..l).map(|j| cov[i][j] * v[j]).sum())
                .collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = norm;
            v = w.into_iter().map(|x| x / norm).collect();
        }
        for i in 0..l {
            for j in 0..l {
                cov[i][j] -= lambda * v[i] * v[j];
            }
        }
        captured += lambda;
        components.push(v);
    }
    while components.len() < 2 {
        components.push(vec![0.0; l]);
    }
    let project = |r: &Vec<f32>, c: &Vec<f64>| -> f64 {
        (0..l).map(|j| (f64::from(r[j]) - mean[j]) * c[j]).sum()
    };
    let points = rows
        .iter()
        .map(|r| (project(r, &components[0]), project(r, &components[1])))
        .collect();
    (points, if total > 0.0 { captured / total } else { 0.0 })
}

/// A labelled grid of images.
struct Panel {
    label: String,
    images: Vec<Vec<f32>>,
    cols: usize,
}

/// Panels of image grids, `per_row` panels to a row.
struct Mosaic {
    title: String,
    panels: Vec<Panel>,
    shape: ImageShape,
    per_row: usize,
    scale: usize,
}

const TITLE_H: usize = 44;
const LABEL_H: usize = 26;
const GAP: usize = 14;

impl Mosaic {
    fn new(title: &str, panels: Vec<Panel>, d: &Dataset, per_row: usize, scale: usize) -> Self {
        let shape = d
            .split(SplitKind::Test, vaelab_data::Binarize::None)
            .shape();
        Self {
            title: title.into(),
            panels,
            shape,
            per_row,
            scale,
        }
    }

    fn panel_size(&self, p: &Panel) -> (usize, usize) {
        let (h, w) = (self.shape.height, self.shape.width);
        let rows = p.images.len().div_ceil(p.cols.max(1));
        (
            p.cols * (w * self.scale + 2),
            LABEL_H + rows * (h * self.scale + 2),
        )
    }
}

impl Chart for Mosaic {
    fn size(&self) -> (u32, u32) {
        let (mut width, mut height) = (0, TITLE_H);
        for row in self.panels.chunks(self.per_row) {
            let w: usize = row.iter().map(|p| self.panel_size(p).0 + GAP).sum();
            let h = row.iter().map(|p| self.panel_size(p).1).max().unwrap_or(0);
            width = width.max(w + GAP);
            height += h + GAP;
        }
        (width.max(600) as u32, height as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.draw(&Text::new(self.title.clone(), (GAP as i32, 10), text(22.0)))?;
        let (h, w) = (self.shape.height, self.shape.width);
        let s = self.scale as i32;
        let mut y0 = TITLE_H;
        for row in self.panels.chunks(self.per_row) {
            let mut x0 = GAP;
            for p in row {
                root.draw(&Text::new(
                    p.label.clone(),
                    (x0 as i32, y0 as i32 + 4),
                    text(15.0),
                ))?;
                for (k, img) in p.images.iter().enumerate() {
                    let ox = (x0 + (k % p.cols) * (w * self.scale + 2)) as i32;
                    let oy = (y0 + LABEL_H + (k / p.cols) * (h * self.scale + 2)) as i32;
                    for i in 0..self.shape.plane() {
                        let (px, py) = (ox + (i % w) as i32 * s, oy + (i / w) as i32 * s);
                        root.draw(&Rectangle::new(
                            [(px, py), (px + s, py + s)],
                            pixel_colour(img, i, self.shape).filled(),
                        ))?;
                    }
                }
                x0 += self.panel_size(p).0 + GAP;
            }
            y0 += row.iter().map(|p| self.panel_size(p).1).max().unwrap_or(0) + GAP;
        }
        Ok(())
    }
}

/// The colour of pixel `i` of a CHW image: RGB as it is, grey as dark ink on white.
fn pixel_colour(img: &[f32], i: usize, shape: ImageShape) -> RGBColor {
    let byte = |v: f32| (255.0 * v.clamp(0.0, 1.0)).round() as u8;
    let plane = shape.plane();
    match shape.channels {
        3 => RGBColor(byte(img[i]), byte(img[plane + i]), byte(img[2 * plane + i])),
        _ => {
            let g = 255 - byte(img[i]);
            RGBColor(g, g, g)
        }
    }
}

/// One run's posterior means in 2-d.
struct Scatter {
    label: String,
    how: String,
    points: Vec<(f64, f64)>,
    labels: Vec<u8>,
}

struct LatentSpace {
    panels: Vec<Scatter>,
}

impl Chart for LatentSpace {
    fn size(&self) -> (u32, u32) {
        let cols = self.panels.len().clamp(1, 3) as u32;
        let rows = self.panels.len().div_ceil(3).max(1) as u32;
        (cols * 520, rows * 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let cols = self.panels.len().clamp(1, 3);
        let rows = self.panels.len().div_ceil(3).max(1);
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(&self.panels) {
            let (x0, x1) = padded_range(p.points.iter().map(|q| q.0)).unwrap_or((-1.0, 1.0));
            let (y0, y1) = padded_range(p.points.iter().map(|q| q.1)).unwrap_or((-1.0, 1.0));
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .caption(format!("{} · {}", p.label, p.how), text(15.0))
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart.configure_mesh().label_style(text(12.0)).draw()?;
            chart.draw_series(
                p.points
                    .iter()
                    .zip(&p.labels)
                    .map(|(&q, &c)| Circle::new(q, 2, category(usize::from(c)).mix(0.7).filled())),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_pixels_come_from_three_planes_and_grey_is_ink() {
        let rgb = ImageShape {
            channels: 3,
            height: 1,
            width: 2,
        };
        let img = [1.0, 0.0, 0.0, 0.5, 0.0, 1.0];
        assert_eq!(pixel_colour(&img, 0, rgb), RGBColor(255, 0, 0));
        assert_eq!(pixel_colour(&img, 1, rgb), RGBColor(0, 128, 255));
        let grey = ImageShape::grey(1, 2);
        assert_eq!(pixel_colour(&[1.0, 0.0], 0, grey), RGBColor(0, 0, 0));
        assert_eq!(pixel_colour(&[1.0, 0.0], 1, grey), RGBColor(255, 255, 255));
    }

    #[test]
    fn pca_finds_the_long_axis() {
        // Points along (1, 1, 0) with a little spread on the third axis.
        let rows: Vec<Vec<f32>> = (0..200)
            .map(|i| {
                let t = i as f32 / 20.0 - 5.0;
                vec![t, t, 0.1 * ((i % 7) as f32 - 3.0)]
            })
            .collect();
        let (points, explained) = pca2(&rows);
        assert!(explained > 0.99, "{explained}");
        // The first coordinate is ±√2·(t − mean t), and mean t = −0.025.
        let (a, b) = (points[0].0, points[199].0);
        assert!((a.abs() - 4.975 * 2f64.sqrt()).abs() < 0.01, "{a}");
        assert!(a * b < 0.0);
    }
}
