//! Line plots with `plotters`, written as PNG and SVG.
//!
//! Text is drawn with plotters' `ttf` backend, which finds a sans-serif
//! font through fontconfig (DejaVu on this kind of machine).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::output::write_atomic;
use crate::XtaskError;

/// matplotlib's first five colours, as in the thesis's figure.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One curve.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Index into the palette.
    pub color: usize,
    /// `(x, y)` points in order.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, axis labels and its curves.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

/// Draws `panels` side by side to `stem.png` and `stem.svg`, with
/// logarithmic axes when `log` is set (every value must then be > 0).
pub fn lines(stem: &Path, panels: &[Panel], log: bool) -> Result<(), XtaskError> {
    let size = (800 * panels.len().max(1) as u32, 600);
    let plot_error = |e: String| XtaskError::Plot(format!("{}: {e}", stem.display()));

    // PNG: the bitmap backend encodes on `present`, into a temporary
    // file in the same folder (its extension picks the format).
    let png_path = stem.with_extension("png");
    if let Some(parent) = png_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| XtaskError::Io { path: parent.to_path_buf(), source })?;
    }
    let name = png_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary =
        png_path.with_file_name(format!(".{name}.{}.tmp.png", std::process::id()));
    let drawn = (|| {
        let root = BitMapBackend::new(&temporary, size).into_drawing_area();
        draw(&root, panels, log)?;
        root.present().map_err(|e| e.to_string())
    })();
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&temporary);
        return Err(plot_error(e));
    }
    std::fs::rename(&temporary, &png_path)
        .map_err(|source| XtaskError::Io { path: png_path.clone(), source })?;

    // SVG: draw into a string.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root, panels, log).map_err(plot_error)?;
        root.present().map_err(|e| plot_error(e.to_string()))?;
    }
    write_atomic(&stem.with_extension("svg"), svg.as_bytes())
}

/// The range of `values` with a margin of 5 % (or a factor for log axes).
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        (lo - pad, hi + pad)
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    log: bool,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let xs = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (x0, x1) = range(xs, log);
        let (y0, y1) = range(ys, log);
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&panel.title, ("sans-serif", 32))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70);
        if log {
            // Ticks on the measured x values (the hidden sizes).
            let mut keys: Vec<f64> =
                panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
            keys.sort_by(f64::total_cmp);
            keys.dedup();
            let mut chart = builder
                .build_cartesian_2d(
                    (x0..x1).log_scale().with_key_points(keys),
                    (y0..y1).log_scale(),
                )
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0e}"))
                .light_line_style(WHITE)
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 20))
                .draw()
                .map_err(|e| e.to_string())?;
            for series in &panel.series {
                let color = PALETTE[series.color % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(
                        series.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(&series.label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        series.points.iter().map(|&p| Circle::new(p, 3, color.filled())),
                    )
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 18))
                .draw()
                .map_err(|e| e.to_string())?;
        } else {
            // The x axis starts at 0, as the thesis's figure does.
            let mut chart = builder
                .build_cartesian_2d(0.0..x1.max(1.0), y0..y1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.2}"))
                .light_line_style(WHITE)
                .x_desc(&panel.x_label)
                .y_desc(&panel.y_label)
                .label_style(("sans-serif", 16))
                .axis_desc_style(("sans-serif", 20))
                .draw()
                .map_err(|e| e.to_string())?;
            for series in &panel.series {
                let color = PALETTE[series.color % PALETTE.len()];
                chart
                    .draw_series(LineSeries::new(
                        series.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?
                    .label(&series.label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 18))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
