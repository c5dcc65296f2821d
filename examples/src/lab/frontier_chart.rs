//! The frontier chart: one point per setting at (opens, idle connection-seconds), the
//! frontier of the fixed settings drawn as the linear mix between them (a curve on the
//! logarithmic opens axis, see [`frontier_path`]), the legend beside the plot (never over
//! it). Colours are the Okabe-Ito palette, readable with every common colour-vision
//! deficiency, and the marker's shape says the kind of setting (circle: Go's way,
//! triangle: a grace period, square: any other), so the chart reads in grey too. Each
//! point carries its number in the legend (settings that measured the same share a label).
//! A dashed line joins the points that cost as much as the cheapest at B: every point below
//! it would be cheaper.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frontier::{Analysis, Row, frontier_cell};

/// Okabe and Ito's colour-blind-safe palette, without its yellow (too pale on white).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 0, 0),       // black
];

const SIZE: (u32, u32) = (960, 480);
/// The plot's width; the legend takes the rest.
const PLOT_WIDTH: u32 = 620;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Failed = Box<dyn std::error::Error>;

#[derive(Clone, Copy)]
enum Mark {
    Circle,
    Triangle,
    Square,
}

fn mark(r: &Row) -> Mark {
    match (r.fixed, r.measured.label.starts_with("go")) {
        (true, true) => Mark::Circle,
        (true, false) => Mark::Triangle,
        (false, _) => Mark::Square,
    }
}

fn draw_mark(area: &Area<'_>, m: Mark, (x, y): (i32, i32), c: RGBColor) -> Result<(), Failed> {
    match m {
        Mark::Circle => area.draw(&Circle::new((x, y), 6, c.filled()))?,
        Mark::Triangle => area.draw(&TriangleMarker::new((x, y), 8, c.filled()))?,
        Mark::Square => area.draw(&Rectangle::new(
            [(x - 6, y - 6), (x + 6, y + 6)],
            c.filled(),
        ))?,
    }
    Ok(())
}

/// The chart as an SVG document.
///
/// # Errors
/// plotters failed to draw (it writes into a string, so only on a bug of ours or its).
pub fn svg(a: &Analysis, caption: &str) -> Result<String, Failed> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, side) = root.split_horizontally(PLOT_WIDTH);
        // Opens span orders of magnitude (Go's way with max_idle 0 opens one per call): a
        // logarithmic axis keeps the settings that reuse apart.
        let opens = a.rows.iter().map(|r| r.measured.opens.max(1) as f64);
        let x_min = opens.clone().fold(f64::INFINITY, f64::min).min(1e12) / 1.5;
        let x_max = opens.fold(1.0, f64::max) * 1.5;
        // At least 0..5, and at most one tick per whole number: ticks are integers, never
        // "0 0 0 1 1 1".
        let y_max = (a
            .rows
            .iter()
            .map(|r| r.measured.idle_conn_s)
            .fold(0.0, f64::max)
            * 1.1)
            .max(5.0);
        let y_ticks = (y_max.floor() as usize + 1).min(10);
        let mut chart = ChartBuilder::on(&plot)
            .caption(caption, ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .max_light_lines(2)
            .x_desc("physical opens (handshakes), logarithmic")
            .y_desc("idle connection-seconds")
            .x_label_formatter(&|x| number(*x))
            .y_labels(y_ticks)
            .y_label_formatter(&|y| y_label(*y))
            .draw()?;
        let corners: Vec<(f64, f64)> = a
            .frontier()
            .iter()
            .map(|r| (r.measured.opens.max(1) as f64, r.measured.idle_conn_s))
            .collect();
        chart.draw_series(LineSeries::new(
            frontier_path(&corners),
            RGBColor(120, 120, 120).stroke_width(2),
        ))?;
        if let Some(best) = a.cheapest() {
            // The settings on this line cost the same at B as the cheapest one.
            let cost = best.measured.cost(a.b);
            let b = a.b.as_secs_f64().max(1e-9);
            // A straight line in linear units: sampled along the logarithmic axis.
            let end = (cost / b).min(x_max);
            let curve: Vec<(f64, f64)> = (0..=100)
                .map(|k| x_min * (end / x_min).powf(f64::from(k) / 100.0))
                .map(|x| (x, (cost - b * x).max(0.0)))
                .collect();
            chart.draw_series(DashedLineSeries::new(
                curve,
                6,
                4,
                RGBColor(120, 120, 120).stroke_width(1),
            ))?;
        }
        let at: Vec<(i32, i32)> = a
            .rows
            .iter()
            .map(|r| chart.backend_coord(&(r.measured.opens.max(1) as f64, r.measured.idle_conn_s)))
            .collect();
        for (i, r) in a.rows.iter().enumerate() {
            draw_mark(&root, mark(r), at[i], PALETTE[i % PALETTE.len()])?;
        }
        for near in label_groups(&at, 8) {
            let (x, y) = at[near[0]];
            let numbers: Vec<String> = near.iter().map(|j| (j + 1).to_string()).collect();
            // To the right, level with the marker: its own height, however close the next.
            root.draw(&Text::new(
                numbers.join(", "),
                (x + 9, y - 7),
                ("sans-serif", 13),
            ))?;
        }
        legend(&side, a)?;
        root.present()?;
    }
    Ok(out)
}

/// How many samples each frontier segment is drawn with.
const SAMPLES: usize = 48;

/// The frontier through `corners` (sorted by opens) as the chart draws it: each segment is
/// the linear interpolation the cost arithmetic uses (a point between two settings is a mix
/// of them), sampled at 48 opens spaced evenly on the logarithmic axis, so that on
/// that axis it is the curve it really is, not a straight line a point with "gap +0%" could
/// sit above.
pub fn frontier_path(corners: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut path: Vec<(f64, f64)> = corners.first().copied().into_iter().collect();
    for w in corners.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if !(x0 > 0.0 && x1 > x0) {
            path.push((x1, y1));
            continue;
        }
        for k in 1..=SAMPLES {
            let x = x0 * (x1 / x0).powf(k as f64 / SAMPLES as f64);
            let x = if k == SAMPLES { x1 } else { x };
            path.push((x, y0 + (y1 - y0) * (x - x0) / (x1 - x0)));
        }
    }
    path
}

/// The points' labels: groups of points closer than `radius` pixels to the group's first
/// (in order), so that points in a cluster share one label ("4, 5, 8") drawn by the first,
/// and every point is in exactly one group.
pub fn label_groups(at: &[(i32, i32)], radius: i32) -> Vec<Vec<usize>> {
    let mut taken = vec![false; at.len()];
    let mut groups = Vec::new();
    for i in 0..at.len() {
        if taken[i] {
            continue;
        }
        let (x, y) = at[i];
        let group: Vec<usize> = (i..at.len())
            .filter(|&j| !taken[j] && (at[j].0 - x).abs() < radius && (at[j].1 - y).abs() < radius)
            .collect();
        for &j in &group {
            taken[j] = true;
        }
        groups.push(group);
    }
    groups
}

/// A label of the idle axis: whole numbers only (none at a fraction).
pub fn y_label(y: f64) -> String {
    if (y - y.round()).abs() < 1e-6 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// An axis label: `800`, `12k`, `1.5M`.
fn number(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// The legend on the right: the frontier line, then each point's number, marker and label.
fn legend(side: &Area<'_>, a: &Analysis) -> Result<(), Failed> {
    let font = ("sans-serif", 13);
    let grey = RGBColor(120, 120, 120);
    side.draw(&PathElement::new(
        vec![(10, 30), (34, 30)],
        grey.stroke_width(2),
    ))?;
    side.draw(&Text::new("frontier of the fixed settings", (42, 24), font))?;
    side.draw(&PathElement::new(
        vec![(10, 50), (16, 50)],
        grey.stroke_width(1),
    ))?;
    side.draw(&PathElement::new(
        vec![(22, 50), (28, 50)],
        grey.stroke_width(1),
    ))?;
    side.draw(&Text::new(
        format!(
            "equal cost at B = {} as the cheapest",
            humantime::format_duration(a.b)
        ),
        (42, 44),
        font,
    ))?;
    for (i, r) in a.rows.iter().enumerate() {
        let y = 80 + 24 * i as i32;
        draw_mark(side, mark(r), (22, y), PALETTE[i % PALETTE.len()])?;
        let tag = if r.fixed && !r.on_frontier {
            String::new()
        } else {
            format!(" [{}]", frontier_cell(r).replace("yes", "frontier"))
        };
        side.draw(&Text::new(
            format!("{} {}{tag}", i + 1, r.measured.label),
            (36, y - 7),
            font,
        ))?;
    }
    Ok(())
}
