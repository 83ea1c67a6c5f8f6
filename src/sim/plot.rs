//! `sim run --plot`: byte hit ratio against cache size as SVG, one line per policy and the
//! bound, because an operator sizes a disk by reading where a curve flattens, which a table
//! of three columns hides.
//!
//! The x axis is the cache size. When every capacity was a percentage of the trace's
//! traffic, the axis is in percent (ticks at round percentages, each with its size in
//! bytes); otherwise it is in the binary unit of the largest capacity (ticks at round GiB,
//! say). Either way it starts at 0, where every ratio is 0. The y axis is BHR in percent, up
//! to the highest ratio rounded up to ten.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::run::{Report, Row};
use super::SimError;
use crate::size::human;

const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";
/// The margin right of the plot that holds the legend.
const LEGEND_WIDTH: u32 = 250;
/// Space around the plot.
const MARGIN: u32 = 16;
/// Marker radius in pixels.
const MARKER: u32 = 4;
/// Tableau's ten colours: distinct on white, none black (black is the bound's); a
/// policy past the tenth takes the first again.
const COLOURS: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The plot as an SVG file at `path`.
pub fn write_svg(r: &Report, path: &Path) -> Result<(), SimError> {
    let svg = render_svg(r)?;
    std::fs::write(path, svg).map_err(|source| SimError::Io {
        what: "writing",
        path: path.to_owned(),
        source,
    })
}

/// One line of the plot: a policy's (or the bound's) points, by increasing cache size.
struct Series<'a> {
    name: &'a str,
    bound: bool,
    colour: RGBColor,
    /// (x in axis units, BHR in percent).
    points: Vec<(f64, f64)>,
}

/// The x axis: what one unit of x is, and how a tick reads.
enum XAxis {
    /// Percent of the trace's requested bytes (every capacity was given as a percentage).
    Percent { traffic: u64 },
    /// Bytes in a binary unit (`unit` bytes, called `name`).
    Bytes { unit: u64, name: &'static str },
}

impl XAxis {
    fn of(r: &Report) -> XAxis {
        let all_percent = r.results.iter().all(|x| x.capacity.ends_with('%'));
        if all_percent && r.requested_bytes > 0 {
            return XAxis::Percent {
                traffic: r.requested_bytes,
            };
        }
        let max = r
            .results
            .iter()
            .map(|x| x.capacity_bytes)
            .max()
            .unwrap_or(0);
        // The largest unit not above the largest size, so the ticks are round in it.
        let (unit, name) = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ]
        .into_iter()
        .find(|(u, _)| max >= *u)
        .unwrap_or((1, "B"));
        XAxis::Bytes { unit, name }
    }

    fn x(&self, bytes: u64) -> f64 {
        match self {
            XAxis::Percent { traffic } => bytes as f64 * 100.0 / *traffic as f64,
            XAxis::Bytes { unit, .. } => bytes as f64 / *unit as f64,
        }
    }

    fn tick(&self, x: f64) -> String {
        match self {
            XAxis::Percent { traffic } => {
                format!(
                    "{}% ({})",
                    round(x),
                    human((x / 100.0 * *traffic as f64) as u64)
                )
            }
            XAxis::Bytes { name, .. } => format!("{} {name}", round(x)),
        }
    }

    fn desc(&self) -> String {
        match self {
            XAxis::Percent { traffic } => {
                format!("cache size (percent of the {} requested)", human(*traffic))
            }
            XAxis::Bytes { .. } => "cache size".into(),
        }
    }
}

/// A tick value without float noise: at most two decimals, no trailing zeros.
fn round(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The series in the report's order (policies as given, then the bound), each sorted by
/// cache size: the report lists rows by capacity as given, which need not be ascending.
fn series<'a>(r: &'a Report, axis: &XAxis) -> Vec<Series<'a>> {
    let mut groups: Vec<(&str, Vec<&Row>)> = Vec::new();
    for row in &r.results {
        match groups.iter_mut().find(|g| g.0 == row.policy) {
            Some(g) => g.1.push(row),
            None => groups.push((&row.policy, vec![row])),
        }
    }
    let mut palette = COLOURS.iter().cycle();
    groups
        .into_iter()
        .map(|(name, mut rows)| {
            rows.sort_by_key(|x| x.capacity_bytes);
            let bound = matches!(name, "bound" | "bound-demand");
            let colour = match palette.next() {
                Some(&c) if !bound => c,
                _ => BLACK,
            };
            Series {
                name,
                bound,
                colour,
                points: rows
                    .iter()
                    .map(|x| (axis.x(x.capacity_bytes), x.bhr * 100.0))
                    .collect(),
            }
        })
        .collect()
}

/// The legend's name for a series: the bound says what it is.
fn label(s: &Series) -> String {
    match s.name {
        "bound" => "bound (offline optimum)".into(),
        "bound-demand" => "bound-demand (demand paging)".into(),
        n => n.into(),
    }
}

/// The top of the y axis: the highest BHR rounded up to ten percent, so the curves fill
/// the plot, but never past 100.
fn y_max(series: &[Series]) -> f64 {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    ((top / 10.0).ceil() * 10.0).clamp(10.0, 100.0)
}

/// The SVG text of the plot.
pub fn render_svg(r: &Report) -> Result<String, SimError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(r, &root).map_err(|e| SimError::Invalid(format!("drawing the plot: {e}")))?;
        root.present()
            .map_err(|e| SimError::Invalid(format!("drawing the plot: {e}")))?;
    }
    Ok(svg)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The title across the top, the plot, and the legend right of it: plotters' own legend
/// sits inside the plot, where some corner always hides a curve.
fn draw<DB: DrawingBackend>(r: &Report, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let axis = XAxis::of(r);
    let series = series(r, &axis);
    let name = Path::new(&r.trace)
        .file_name()
        .map_or_else(|| "-".into(), |n| n.to_string_lossy());
    let title = format!(
        "Byte hit ratio against cache size: {name}, {} requests",
        r.requests
    );
    let body = root.margin(10, 0, 0, 0).titled(&title, (FONT, 22))?;
    let (width, _) = body.dim_in_pixel();
    let (plot, legend) = body.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let mut chart = chart(&plot, &axis, &series)?;
    for s in &series {
        draw_series(&mut chart, s)?;
    }
    draw_legend(&legend, &series)
}

/// The axes and the grid.
fn chart<'a, DB: DrawingBackend + 'a>(
    area: &DrawingArea<DB, Shift>,
    axis: &XAxis,
    series: &[Series],
) -> Result<Chart<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    // A margin right of the largest size, so its markers are not cut by the frame; a
    // positive range even when every size is 0.
    let x_max = if x_max > 0.0 { x_max * 1.05 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(MARGIN)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max(series))?;
    let tick = |x: &f64| axis.tick(*x);
    chart
        .configure_mesh()
        .x_desc(axis.desc())
        .y_desc("byte hit ratio (%)")
        .x_labels(6)
        .x_label_formatter(&tick)
        .y_label_formatter(&|y| round(*y))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    Ok(chart)
}

/// How a series is drawn: the bound thicker and black, so it reads as the ceiling, not as
/// one more policy.
fn line_style(s: &Series) -> ShapeStyle {
    s.colour.stroke_width(if s.bound { 3 } else { 2 })
}

/// One series: a line through its sizes (a line needs two; with one, the marker alone),
/// then filled markers on top, so the sizes simulated stand out from the interpolation.
fn draw_series<DB: DrawingBackend>(chart: &mut Chart<DB>, s: &Series) -> DrawResult<DB> {
    if s.points.len() >= 2 {
        chart.draw_series(LineSeries::new(s.points.iter().copied(), line_style(s)))?;
    }
    chart.draw_series(
        s.points
            .iter()
            .map(|&p| Circle::new(p, MARKER, s.colour.filled())),
    )?;
    Ok(())
}

/// One entry per series, in the order drawn: a stretch of its line with its marker (the
/// marker alone when there are no lines), and its name.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> DrawResult<DB> {
    let text = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, s) in series.iter().enumerate() {
        let y = MARGIN as i32 + 12 + 22 * i as i32;
        if s.points.len() >= 2 {
            area.draw(&PathElement::new(vec![(0, y), (24, y)], line_style(s)))?;
        }
        area.draw(&Circle::new((12, y), MARKER, s.colour.filled()))?;
        area.draw(&Text::new(label(s), (34, y), text.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_round_numbers() {
        assert_eq!(round(5.0), "5");
        assert_eq!(round(2.5), "2.5");
        assert_eq!(round(0.1 + 0.2), "0.3");
        assert_eq!(round(0.0), "0");
        let pct = XAxis::Percent { traffic: 1 << 30 };
        assert_eq!(pct.tick(50.0), "50% (512.0 MiB)");
        let gib = XAxis::Bytes {
            unit: 1 << 30,
            name: "GiB",
        };
        assert_eq!(gib.tick(1.5), "1.5 GiB");
    }

    fn report(rows: &[(&str, &str, u64, f64)]) -> Report {
        Report {
            requested_bytes: 1 << 30,
            results: rows
                .iter()
                .map(|&(policy, capacity, capacity_bytes, bhr)| Row {
                    policy: policy.into(),
                    capacity: capacity.into(),
                    capacity_bytes,
                    bhr,
                    ..Row::default()
                })
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn the_axis_is_in_percent_only_when_every_size_was() {
        let r = report(&[("lru", "10%", 1 << 26, 0.1), ("lru", "2GiB", 2 << 30, 0.5)]);
        assert!(matches!(XAxis::of(&r), XAxis::Bytes { name: "GiB", .. }));
        let r = report(&[("lru", "10%", 1 << 26, 0.1), ("lru", "50%", 1 << 29, 0.5)]);
        assert!(matches!(XAxis::of(&r), XAxis::Percent { .. }));
        let r = report(&[("lru", "100", 100, 0.0)]);
        assert!(matches!(XAxis::of(&r), XAxis::Bytes { name: "B", .. }));
    }

    #[test]
    fn series_are_sorted_by_size_and_the_bound_is_black() {
        let r = report(&[
            ("lru", "50%", 1 << 29, 0.5),
            ("lru", "10%", 1 << 26, 0.1),
            ("bound", "50%", 1 << 29, 0.65),
            ("bound", "10%", 1 << 26, 0.3),
        ]);
        let axis = XAxis::of(&r);
        let s = series(&r, &axis);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "lru");
        assert!(!s[0].bound && s[0].colour != BLACK);
        assert!(s[1].bound && s[1].colour == BLACK);
        let xs: Vec<f64> = s[0].points.iter().map(|p| p.0).collect();
        assert!(xs[0] < xs[1], "{xs:?}");
        assert!((s[1].points[0].1 - 30.0).abs() < 1e-9);
        // The highest BHR, 65%, rounded up to ten.
        assert_eq!(y_max(&s), 70.0);
        assert_eq!(label(&s[1]), "bound (offline optimum)");
    }

    #[test]
    fn an_empty_report_still_draws() {
        let svg = render_svg(&Report::default()).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
