//! The report's SVG charts, drawn with plotters, readable without colour: each series has an
//! Okabe-Ito colour, a marker for its `max_idle` and a dashed line when it is Go's behaviour;
//! legends sit beside the plot, never over it; counts are integers; the latency bars are
//! greys, so no colour means two things.

use plotters::coord::Shift;
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::Run;

/// Okabe and Ito's colour-blind-safe palette, yellow left out (too pale on white).
const OKABE_ITO: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// The latency bars' fills: greys, none of them a series colour.
const BARS: [(&str, RGBColor); 3] = [
    ("p50", RGBColor(200, 200, 200)),
    ("p99", RGBColor(110, 110, 110)),
    ("max", RGBColor(255, 255, 255)),
];

const WIDTH: u32 = 900;
const HEIGHT: u32 = 420;
/// The legend's column, right of the plot.
const LEGEND: u32 = 270;
const FONT: (&str, u32) = ("sans-serif", 16);

/// The result of drawing one chart: its SVG text.
pub type ChartResult = Result<String, Box<dyn std::error::Error>>;

type Plot<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordi64>>;

/// The marker shapes, one per `max_idle` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Ring,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
    Marker::Ring,
];

/// How one run's series looks.
#[derive(Debug, Clone, Copy)]
struct Look {
    color: RGBColor,
    marker: Marker,
    dashed: bool,
}

/// The looks of `runs` in order: colour by position, marker by `max_idle` (its rank among
/// the values measured), dashed for Go's behaviour. Two runs differ in marker or dash
/// whenever they differ in `max_idle` or behaviour, so no reader needs the colours.
fn looks(runs: &[Run]) -> Vec<Look> {
    let mut idles: Vec<usize> = runs.iter().map(|r| r.setting.max_idle).collect();
    idles.sort_unstable();
    idles.dedup();
    runs.iter()
        .enumerate()
        .map(|(i, r)| {
            let rank = idles.binary_search(&r.setting.max_idle).unwrap_or(0);
            Look {
                color: OKABE_ITO[i % OKABE_ITO.len()],
                marker: MARKERS[rank % MARKERS.len()],
                dashed: r.setting.go,
            }
        })
        .collect()
}

/// Open connections over time, as sampled every 10 ms.
pub fn open_chart(runs: &[Run]) -> ChartResult {
    let lines = runs
        .iter()
        .map(|r| r.timeline.iter().map(|s| (s.at, s.open as i64)).collect())
        .collect();
    line_chart(
        runs,
        "Open connections (sampled every 10 ms)",
        "open",
        lines,
    )
}

/// Connections opened so far, from the pool's counter: every connection counts, however
/// short it lived.
pub fn opens_chart(runs: &[Run]) -> ChartResult {
    let lines = runs
        .iter()
        .map(|r| {
            let mut points = vec![(0.0, 0)];
            points.extend(r.timeline.iter().map(|s| (s.at, s.created as i64)));
            points
        })
        .collect();
    line_chart(
        runs,
        "Connections opened so far (the pool's counter)",
        "opened",
        lines,
    )
}

/// One line per run on a shared time axis, integer counts up the side, the legend beside.
fn line_chart(
    runs: &[Run],
    caption: &str,
    y_desc: &str,
    lines: Vec<Vec<(f64, i64)>>,
) -> ChartResult {
    let x_max = lines
        .iter()
        .flat_map(|p| p.iter().map(|&(x, _)| x))
        .fold(0.1, f64::max);
    let top = lines
        .iter()
        .flat_map(|p| p.iter().map(|&(_, y)| y))
        .fold(1, i64::max);
    let y_max = top + (top / 10).max(1);
    let looks = looks(runs);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(WIDTH - LEGEND);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0i64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .y_labels((y_max as usize + 1).min(11))
            .y_label_formatter(&|y| y.to_string())
            .draw()?;
        for (i, (points, look)) in lines.iter().zip(&looks).enumerate() {
            let style = look.color.stroke_width(2);
            if look.dashed {
                chart.draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?;
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style))?;
            }
            markers(&mut chart, &marker_points(points, i, lines.len()), *look)?;
        }
        let labels: Vec<(String, Look)> = runs
            .iter()
            .map(|r| r.setting.label.clone())
            .zip(looks)
            .collect();
        legend(&legend_area, &labels)?;
        root.present()?;
    }
    Ok(svg)
}

/// About eight points of a line to mark, staggered by series so marks of lines that lie on
/// each other do not hide each other.
fn marker_points(points: &[(f64, i64)], series: usize, count: usize) -> Vec<(f64, i64)> {
    const MARKS: usize = 8;
    if points.is_empty() {
        return Vec::new();
    }
    let step = (points.len() / MARKS).max(1);
    let offset = step * series / count.max(1);
    points.iter().skip(offset).step_by(step).copied().collect()
}

fn markers(
    chart: &mut Plot<'_>,
    at: &[(f64, i64)],
    look: Look,
) -> Result<(), Box<dyn std::error::Error>> {
    let (c, at) = (look.color, at.iter().copied());
    match look.marker {
        Marker::Circle => chart.draw_series(at.map(|p| Circle::new(p, 4, c.filled())))?,
        Marker::Triangle => chart.draw_series(at.map(|p| TriangleMarker::new(p, 6, c.filled())))?,
        Marker::Square => chart.draw_series(
            at.map(|p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], c.filled())),
        )?,
        Marker::Cross => chart.draw_series(at.map(|p| Cross::new(p, 5, c.stroke_width(2))))?,
        Marker::Ring => chart.draw_series(at.map(|p| Circle::new(p, 5, c.stroke_width(2))))?,
    };
    Ok(())
}

/// One marker in pixels, for the legend.
fn marker_at(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    p: (i32, i32),
    look: Look,
) -> Result<(), Box<dyn std::error::Error>> {
    let c = look.color;
    match look.marker {
        Marker::Circle => area.draw(&Circle::new(p, 4, c.filled()))?,
        Marker::Triangle => area.draw(&TriangleMarker::new(p, 6, c.filled()))?,
        Marker::Square => area.draw(&Rectangle::new(
            [(p.0 - 4, p.1 - 4), (p.0 + 4, p.1 + 4)],
            c.filled(),
        ))?,
        Marker::Cross => area.draw(&Cross::new(p, 5, c.stroke_width(2)))?,
        Marker::Ring => area.draw(&Circle::new(p, 5, c.stroke_width(2)))?,
    }
    Ok(())
}

/// The legend in its own column: a line sample (dashed for Go), the marker, the label.
fn legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    series: &[(String, Look)],
) -> Result<(), Box<dyn std::error::Error>> {
    let font = FONT.into_font();
    for (i, (label, look)) in series.iter().enumerate() {
        let y = 48 + 22 * i as i32;
        let line = vec![(4, y), (40, y)];
        let style = look.color.stroke_width(2);
        if look.dashed {
            area.draw(&DashedPathElement::new(line, 8, 5, style))?;
        } else {
            area.draw(&PathElement::new(line, style))?;
        }
        marker_at(area, (22, y), *look)?;
        area.draw(&Text::new(label.clone(), (48, y - 7), font.clone()))?;
    }
    let y = 48 + 22 * series.len() as i32 + 8;
    let note = "dashed: Go's behaviour (no grace)";
    area.draw(&Text::new(note, (4, y), font.color(&BLACK.mix(0.7))))?;
    Ok(())
}

/// p50, p99 (with its 95 % interval as a whisker) and max per run, as horizontal grey bars
/// (milliseconds), the settings named on the left, the legend beside.
pub fn latency_chart(runs: &[Run]) -> ChartResult {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let value = |r: &Run, k: usize| match k {
        0 => ms(r.latency(0.50)),
        1 => ms(r.latency(0.99)),
        _ => ms(r.max_latency()),
    };
    let x_max = runs.iter().map(|r| value(r, 2)).fold(1.0, f64::max) * 1.05;
    let n = runs.len().max(1);
    let labels: Vec<String> = runs.iter().map(|r| r.setting.label.clone()).collect();
    let height = 80 + 60 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(WIDTH - 150);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption("Latency per setting", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(230)
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|y| {
                // Bars of run i span i..i+1 from the top; label the middle of each.
                let i = y.floor() as usize;
                if (y - i as f64 - 0.5).abs() < 0.01 && i < n {
                    labels[n - 1 - i].clone()
                } else {
                    String::new()
                }
            })
            .x_desc("milliseconds")
            .draw()?;
        let bar = 0.8 / BARS.len() as f64;
        let y0 = |i: usize, k: usize| (n - 1 - i) as f64 + 0.9 - (k as f64 + 1.0) * bar;
        for (k, (_, fill)) in BARS.iter().enumerate() {
            chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                let rect = [(0.0, y0(i, k)), (value(r, k), y0(i, k) + bar * 0.9)];
                Rectangle::new(rect, fill.filled())
            }))?;
            chart.draw_series(runs.iter().enumerate().map(|(i, r)| {
                let rect = [(0.0, y0(i, k)), (value(r, k), y0(i, k) + bar * 0.9)];
                Rectangle::new(rect, BLACK.stroke_width(1))
            }))?;
        }
        // The p99's interval: a whisker across its bar, open-ended when too few calls.
        for (i, r) in runs.iter().enumerate() {
            let (lo, hi) = r.latency_interval(0.99);
            let Some(lo) = lo else { continue };
            let y = y0(i, 1) + bar * 0.45;
            let hi = hi.map_or(x_max, ms);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(ms(lo), y), (hi, y)],
                BLACK.stroke_width(2),
            )))?;
        }
        let font = FONT.into_font();
        for (k, (name, fill)) in BARS.iter().enumerate() {
            let y = 48 + 22 * k as i32;
            legend_area.draw(&Rectangle::new([(4, y - 6), (24, y + 6)], fill.filled()))?;
            legend_area.draw(&Rectangle::new(
                [(4, y - 6), (24, y + 6)],
                BLACK.stroke_width(1),
            ))?;
            legend_area.draw(&Text::new(*name, (32, y - 7), font.clone()))?;
        }
        let y = 48 + 22 * BARS.len() as i32;
        legend_area.draw(&PathElement::new(
            vec![(4, y), (24, y)],
            BLACK.stroke_width(2),
        ))?;
        legend_area.draw(&Text::new("p99, 95% interval", (32, y - 7), font.clone()))?;
        root.present()?;
    }
    Ok(svg)
}
