//! Drawing surfaces: one chart drawn twice, to PNG and SVG, with an embedded font so text
//! renders on a machine without system fonts.

use crate::ReportError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// DejaVu Sans (free license, see `assets/DejaVuSans.LICENSE`), compiled into the binary.
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family every chart asks for.
pub const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            // The bytes are a valid TrueType file compiled in; a failure here is a build defect.
            let _ = plotters::style::register_font(FONT, style, FONT_BYTES);
        }
    });
}

/// What drawing code returns: any backend's error, boxed.
pub type DrawResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    /// Pixel size of the PNG (and the SVG's view box).
    fn size(&self) -> (u32, u32);
    /// Draws onto a cleared white area.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// Writes `<dir>/<name>.png` and `<dir>/<name>.svg`; returns both paths.
pub fn save_png_svg<C: Chart>(
    dir: &Path,
    name: &str,
    chart: &C,
) -> Result<Vec<PathBuf>, ReportError> {
    let png = save_png(dir, name, chart)?;
    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, chart.size()).into_drawing_area();
        paint(&root, chart).map_err(|e| draw_err(name, e))?;
    }
    let svg = dir.join(format!("{name}.svg"));
    vaelab_track::write_atomic(&svg, svg_text.as_bytes())?;
    Ok(vec![png, svg])
}

/// Writes `<dir>/<name>.png` only (for image mosaics, whose SVG would be one rect per pixel),
/// through the atomic write, so a crash never leaves half a PNG.
pub fn save_png<C: Chart>(dir: &Path, name: &str, chart: &C) -> Result<PathBuf, ReportError> {
    register_font();
    let png = dir.join(format!("{name}.png"));
    let mut drawn = Ok(());
    vaelab_track::write_atomic_with(&png, |tmp| {
        // The temp file keeps `.png`: the bitmap backend picks its encoder by extension.
        let root = BitMapBackend::new(tmp, chart.size()).into_drawing_area();
        drawn = paint(&root, chart).map_err(|e| draw_err(name, e));
        drawn.as_ref().map(|_| ()).map_err(|e| e.to_string())
    })
    .map_err(|e| match drawn {
        Err(d) => d,
        Ok(()) => e.into(),
    })?;
    Ok(png)
}

fn paint<DB: DrawingBackend, C: Chart>(root: &DrawingArea<DB, Shift>, chart: &C) -> DrawResult
where
    DB::ErrorType: 'static,
{
    register_font();
    root.fill(&WHITE)?;
    chart.draw(root)?;
    root.present()?;
    Ok(())
}

fn draw_err(name: &str, e: Box<dyn std::error::Error + Send + Sync>) -> ReportError {
    ReportError::Draw {
        figure: name.to_string(),
        reason: e.to_string(),
    }
}

/// The index of `label` in `groups`, appending it when new: the colour index of a series.
pub fn group_of(groups: &mut Vec<String>, label: &str) -> usize {
    match groups.iter().position(|g| g == label) {
        Some(i) => i,
        None => {
            groups.push(label.to_string());
            groups.len() - 1
        }
    }
}

/// The label of category `x` on an axis of categories at 0, 1, …: empty between them and
/// outside `labels` (plotters asks for labels at fractional positions too).
pub fn index_label(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
        labels[i as usize].clone()
    } else {
        String::new()
    }
}

/// Draws a chart's legend in the house style (white, framed) at `position`.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    size: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(text(size))
        .position(position)
        .draw()?;
    Ok(())
}

/// Ten well-separated colours (matplotlib's tab10), for categories.
pub const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th category colour.
pub fn category(i: usize) -> RGBColor {
    TAB10[i % TAB10.len()]
}

/// A text style of the embedded font.
pub fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

/// (min, max) of the finite values, padded by 5% (or ±1 when flat); None when there are none.
pub fn padded_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 1.0 };
    Some((lo - pad, hi + pad))
}
