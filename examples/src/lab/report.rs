//! `--report DIR`: an HTML page with the table, the recommendation and three SVG charts
//! drawn with plotters: open connections over time, opens per second, latency percentiles.

use std::path::Path;

use plotters::prelude::*;

use super::sweep::Recommendation;
use super::{Run, table};

const SIZE: (u32, u32) = (900, 420);

type ChartResult = Result<String, Box<dyn std::error::Error>>;

/// One part of a report: a heading, the workload, its runs and their recommendation.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// The part's heading (the target).
    pub heading: &'a str,
    /// The workload, in words.
    pub context: &'a str,
    /// The runs, side by side.
    pub runs: &'a [Run],
    /// What pool-lab recommends, for a sweep.
    pub recommendation: Option<&'a Recommendation>,
}

/// Writes `DIR/index.html` (and the charts beside it as `.svg` files): for each section its
/// table, its recommendation and three charts.
///
/// # Errors
/// The directory or a file could not be written, or a chart not drawn.
pub fn write(
    dir: &Path,
    title: &str,
    sections: &[Section<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.rec{{background:#eef6ee;padding:1em;border-left:4px solid #4a4}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n",
        title = escape(title),
    );
    for (i, section) in sections.iter().enumerate() {
        html.push_str(&format!(
            "<h2>{}</h2>\n<p>{}</p>\n",
            escape(section.heading),
            escape(section.context)
        ));
        if let Some(rec) = section.recommendation {
            html.push_str(&format!(
                "<div class=\"rec\"><b>Recommended: {}</b><p>{}</p></div>\n",
                escape(&rec.setting.label),
                escape(&rec.why)
            ));
        }
        html.push_str(&markdown_table_to_html(&table(section.runs)));
        let charts = [
            (
                "open",
                "Open connections over time",
                open_chart(section.runs)?,
            ),
            (
                "opens",
                "New connections per second",
                opens_chart(section.runs)?,
            ),
            ("latency", "Call latency", latency_chart(section.runs)?),
        ];
        for (name, heading, svg) in &charts {
            std::fs::write(dir.join(format!("{}-{name}.svg", i + 1)), svg)?;
            html.push_str(&format!("<h3>{heading}</h3>\n{svg}\n"));
        }
    }
    html.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), html)?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn markdown_table_to_html(md: &str) -> String {
    let mut html = String::from("<table>\n");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue; // the |---| line
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for c in cells {
            html.push_str(&format!("<{tag}>{}</{tag}>", escape(c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// One line per run, on a shared time axis.
fn line_chart(caption: &str, y_desc: &str, lines: Vec<(String, Vec<(f64, f64)>)>) -> ChartResult {
    let x_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(0.1, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw()?;
        for (i, (label, points)) in lines.into_iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(svg)
}

/// The legend every chart has, top right on a light background.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

fn open_chart(runs: &[Run]) -> ChartResult {
    let lines = runs
        .iter()
        .map(|r| {
            let points = r.timeline.iter().map(|s| (s.at, s.open as f64)).collect();
            (r.setting.label.clone(), points)
        })
        .collect();
    line_chart("Open connections", "open", lines)
}

/// Opens per second, counted in bins of a tenth of the run (at most 1 s, at least 50 ms),
/// plotted at each bin's end.
fn opens_chart(runs: &[Run]) -> ChartResult {
    let span = runs
        .iter()
        .filter_map(|r| r.timeline.last().map(|s| s.at))
        .fold(0.0, f64::max);
    let bin = (span / 10.0).clamp(0.05, 1.0);
    let lines = runs
        .iter()
        .map(|r| {
            let mut points = vec![(0.0, 0.0)];
            let (mut edge, mut before) = (bin, 0);
            for s in &r.timeline {
                while s.at >= edge {
                    points.push((edge, (s.created - before) as f64 / bin));
                    before = s.created;
                    edge += bin;
                }
            }
            (r.setting.label.clone(), points)
        })
        .collect();
    line_chart("Connections opened per second", "opens / s", lines)
}

/// p50, p99 and max per run, as horizontal bars (milliseconds), the settings named on the
/// left.
fn latency_chart(runs: &[Run]) -> ChartResult {
    let quantiles = [("p50", 0.50), ("p99", 0.99), ("max", 1.0)];
    let ms = |r: &Run, q: f64| {
        let d = if q >= 1.0 {
            r.max_latency()
        } else {
            r.latency(q)
        };
        d.as_secs_f64() * 1000.0
    };
    // Room on the right for the legend.
    let x_max = runs.iter().map(|r| ms(r, 1.0)).fold(1.0, f64::max) * 1.35;
    let n = runs.len().max(1);
    let labels: Vec<String> = runs.iter().map(|r| r.setting.label.clone()).collect();
    let height = 80 + 60 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
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
        let height = 0.8 / quantiles.len() as f64;
        for (k, (name, q)) in quantiles.into_iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(runs.iter().enumerate().map(|(i, r)| {
                    let y0 = (n - 1 - i) as f64 + 0.9 - (k as f64 + 1.0) * height;
                    Rectangle::new([(0.0, y0), (ms(r, q), y0 + height * 0.9)], color.filled())
                }))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart)?;
        root.present()?;
    }
    Ok(svg)
}
