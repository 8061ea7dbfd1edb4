//! Line plots of a CSV table as PNG (`rime plot`): the figures of paper/,
//! e.g. the cost of a cycle against the state size, on log-log axes with
//! the fitted power law of each curve in its legend.
//!
//! Drawn by `plotters` into a bitmap with an embedded font (DejaVu Sans), so
//! no system font library is needed, encoded as PNG and written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

/// What to plot from a CSV table.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    /// Column of the x values.
    pub x: String,
    /// Column of the y values.
    pub y: String,
    /// Column whose values name the curves (absent: one curve).
    pub group: Option<String>,
    /// Logarithmic axes (and a fitted power law per curve).
    pub log: bool,
    /// A logarithmic y axis only (e.g. loss curves against epochs).
    pub log_y: bool,
    /// Title.
    pub title: String,
}

/// One curve: its name, points sorted by x, and for log axes the fitted
/// exponent `b` of `y = a x^b` (least squares in log-log).
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// The group value.
    pub name: String,
    /// `(x, y)`, sorted by x.
    pub points: Vec<(f64, f64)>,
    /// Fitted exponent (log axes, at least two points).
    pub exponent: Option<f64>,
}

/// Why a plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The table: missing column, bad number, empty.
    #[error("{path}: {reason}")]
    Table {
        /// The CSV file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Drawing or writing the PNG.
    #[error("{path}: {reason}")]
    Output {
        /// The PNG file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The least-squares slope of `ln y` against `ln x`.
pub fn power_law_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let n = logs.len() as f64;
    let (mx, my) = logs
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxy: f64 = logs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = logs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Reads the curves of `spec` from the CSV text (header row, comma
/// separated; empty y values are skipped).
///
/// # Errors
/// A missing column or a value that is not a number, named with its row.
pub fn curves(csv: &str, spec: &PlotSpec, path: &str) -> Result<Vec<Curve>, PlotError> {
    let table = |reason: String| PlotError::Table {
        path: path.to_string(),
        reason,
    };
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| table("the table is empty".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            table(format!(
                "no column `{name}` (columns: {})",
                header.join(", ")
            ))
        })
    };
    let (ix, iy) = (column(&spec.x)?, column(&spec.y)?);
    let ig = spec.group.as_deref().map(column).transpose()?;
    let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (row, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        // A ragged row means a shifted column: its values would be read
        // under the wrong heading.
        if cells.len() != header.len() {
            return Err(table(format!(
                "row {}: {} cells, the header has {}",
                row + 2,
                cells.len(),
                header.len()
            )));
        }
        let cell = |i: usize| cells.get(i).copied().unwrap_or("");
        if cell(iy).is_empty() {
            continue;
        }
        let number = |i: usize, name: &str| {
            cell(i).parse::<f64>().map_err(|_| {
                table(format!(
                    "row {}: `{name}` = {:?} is not a number",
                    row + 2,
                    cell(i)
                ))
            })
        };
        let point = (number(ix, &spec.x)?, number(iy, &spec.y)?);
        // Logarithmic axes cannot show zero or negative values; flooring
        // them would draw a point that is not in the table.
        for (log, name, v) in [
            (spec.log, &spec.x, point.0),
            (spec.log || spec.log_y, &spec.y, point.1),
        ] {
            if log && !(v > 0.0) {
                return Err(table(format!(
                    "row {}: `{name}` = {v} cannot be drawn on a logarithmic axis (values must be positive)",
                    row + 2
                )));
            }
        }
        let name = ig.map_or(String::new(), |i| cell(i).to_string());
        groups.entry(name).or_default().push(point);
    }
    if groups.is_empty() {
        return Err(table("no rows with a value".into()));
    }
    Ok(groups
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let exponent = if spec.log {
                power_law_exponent(&points)
            } else {
                None
            };
            Curve {
                name,
                points,
                exponent,
            }
        })
        .collect())
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const WIDTH: u32 = 900;
const HEIGHT: u32 = 600;

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A tick label: compact numbers, and on log axes only at 1, 2 and 5 times
/// a power of ten (the other grid lines stay unlabelled, so that labels do
/// not run into each other).
fn tick(v: f64, log: bool) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if log {
        let power = v.abs().log10().floor();
        let mantissa = (v.abs() / 10f64.powf(power)).round() as i64;
        if ![1, 2, 5].contains(&mantissa) {
            return String::new();
        }
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        // Up to three significant digits: 1.5e5 is not 2e5.
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                format!("{m}e{e}")
            }
            None => s,
        }
    } else if a >= 1.0 && (v - v.round()).abs() < 1e-9 * a {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws `curves` and writes the PNG to `out` atomically.
///
/// # Errors
/// Drawing or writing the file.
pub fn draw(curves: &[Curve], spec: &PlotSpec, out: &Path) -> Result<(), PlotError> {
    register_font();
    let fail = |reason: String| PlotError::Output {
        path: out.display().to_string(),
        reason,
    };
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| c.points.clone()).collect();
    let range = |f: fn(&(f64, f64)) -> f64, log: bool| {
        let (lo, hi) = all
            .iter()
            .map(f)
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            return (1.0, 10.0);
        }
        if log {
            (lo / 1.5, hi * 1.5)
        } else {
            let pad = 0.05 * (hi - lo).max(hi.abs() * 1e-3).max(1e-12);
            (lo - pad, hi + pad)
        }
    };
    let log_y = spec.log || spec.log_y;
    let (x0, x1) = range(|p| p.0, spec.log);
    let (y0, y1) = range(|p| p.1, log_y);
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(&spec.title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70);
        let label = |name: &Curve| match name.exponent {
            Some(b) if name.name.is_empty() => format!("slope {b:.2}"),
            Some(b) => format!("{} (slope {b:.2})", name.name),
            None => name.name.clone(),
        };
        macro_rules! plot_on {
            ($chart:expr) => {{
                let mut chart = $chart.map_err(|e| fail(e.to_string()))?;
                chart
                    .configure_mesh()
                    .x_desc(spec.x.as_str())
                    .y_desc(spec.y.as_str())
                    .x_label_formatter(&|v| tick(*v, spec.log))
                    .y_label_formatter(&|v| tick(*v, log_y))
                    .label_style(("sans-serif", 15))
                    .draw()
                    .map_err(|e| fail(e.to_string()))?;
                for (k, curve) in curves.iter().enumerate() {
                    let color = Palette99::pick(k).to_rgba();
                    chart
                        .draw_series(LineSeries::new(
                            curve.points.iter().copied(),
                            color.stroke_width(2),
                        ))
                        .map_err(|e| fail(e.to_string()))?
                        .label(label(curve))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(
                            curve
                                .points
                                .iter()
                                .map(|&p| Circle::new(p, 4, color.filled())),
                        )
                        .map_err(|e| fail(e.to_string()))?;
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .label_font(("sans-serif", 15))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| fail(e.to_string()))?;
            }};
        }
        if spec.log {
            plot_on!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()));
        } else if log_y {
            plot_on!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()));
        } else {
            plot_on!(builder.build_cartesian_2d(x0..x1, y0..y1));
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    write_png(buffer, (WIDTH, HEIGHT), out)
}

/// Encodes an RGB bitmap of `size` as PNG and writes it to `out`
/// atomically.
fn write_png(buffer: Vec<u8>, size: (u32, u32), out: &Path) -> Result<(), PlotError> {
    let fail = |reason: String| PlotError::Output {
        path: out.display().to_string(),
        reason,
    };
    let image = image::RgbImage::from_raw(size.0, size.1, buffer)
        .ok_or_else(|| fail("bitmap of the wrong size".into()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| fail(e.to_string()))?;
    crate::io::write_atomic(out, png.get_ref()).map_err(|e| fail(e.to_string()))
}

/// Colour of `t` in [0, 1] on a piecewise-linear scale through `anchors`.
fn ramp(anchors: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (anchors.len() - 1) as f64;
    let k = (x.floor() as usize).min(anchors.len() - 2);
    let f = x - k as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (anchors[k], anchors[k + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Viridis, sampled at nine points.
const SEQUENTIAL: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// Blue, white, red.
const DIVERGING: [(u8, u8, u8); 5] = [
    (33, 102, 172),
    (103, 169, 207),
    (247, 247, 247),
    (239, 138, 98),
    (178, 24, 43),
];

/// Cell edges from cell centres.
fn edges(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    if n == 1 {
        return vec![c[0] - 0.5, c[0] + 0.5];
    }
    let mut e = Vec::with_capacity(n + 1);
    e.push(c[0] - 0.5 * (c[1] - c[0]));
    for k in 1..n {
        e.push(0.5 * (c[k - 1] + c[k]));
    }
    e.push(c[n - 1] + 0.5 * (c[n - 1] - c[n - 2]));
    e
}

/// The colour range of a map: `(low, high)` in the scale's units (log10
/// for a log scale).
fn map_range(values: &[f64], scale: crate::core::MapScale) -> (f64, f64) {
    use crate::core::MapScale;
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    match scale {
        MapScale::Linear => {
            if max - min > 1e-12 * max.abs().max(1e-300) {
                (min, max)
            } else {
                (
                    min - 0.5 * min.abs().max(1e-12),
                    max + 0.5 * max.abs().max(1e-12),
                )
            }
        }
        MapScale::Diverging => {
            // The 99th percentile of |v|, so that a few extreme cells do
            // not wash out the map.
            let mut a: Vec<f64> = finite.iter().map(|v| v.abs()).collect();
            a.sort_by(f64::total_cmp);
            let m = a[((a.len() - 1) as f64 * 0.99) as usize].max(1e-300);
            (-m, m)
        }
        MapScale::Log => {
            let top = if max > 0.0 { max.log10() } else { 0.0 };
            (top - 3.0, top)
        }
    }
}

/// Draws a 2-D field as a PNG map with a colour bar and writes it to `out`
/// atomically; coordinates in km when `km`.
///
/// # Errors
/// Drawing or writing the file.
pub fn map(
    field: &crate::core::MapField,
    title: &str,
    km: bool,
    out: &Path,
) -> Result<(), PlotError> {
    use crate::core::MapScale;
    register_font();
    let fail = |reason: String| PlotError::Output {
        path: out.display().to_string(),
        reason,
    };
    let (w, h) = (820u32, 680u32);
    let unit = if km { 1e-3 } else { 1.0 };
    let xe: Vec<f64> = edges(&field.x).iter().map(|v| v * unit).collect();
    let ye: Vec<f64> = edges(&field.y).iter().map(|v| v * unit).collect();
    let (nx, ny) = (field.x.len(), field.y.len());
    let active = |k: usize| field.mask.as_ref().is_none_or(|m| m[k]);
    let shown: Vec<f64> = (0..nx * ny)
        .filter(|&k| active(k))
        .map(|k| field.values[k])
        .collect();
    let (lo, hi) = map_range(&shown, field.scale);
    let colour = |v: f64| -> RGBColor {
        match field.scale {
            MapScale::Linear => ramp(&SEQUENTIAL, (v - lo) / (hi - lo)),
            MapScale::Diverging => ramp(&DIVERGING, (v - lo) / (hi - lo)),
            MapScale::Log => {
                let l = if v > 0.0 { v.log10() } else { lo };
                ramp(&SEQUENTIAL, (l - lo) / (hi - lo))
            }
        }
    };
    let mut buffer = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let (left, right) = root.split_horizontally(w - 130);
        let axis = if km { "km" } else { "" };
        let mut chart = ChartBuilder::on(&left)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(xe[0]..xe[nx], ye[0]..ye[ny])
            .map_err(|e| fail(e.to_string()))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(format!("x ({axis})"))
            .y_desc(format!("y ({axis})"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        let rects = (0..ny)
            .flat_map(|j| (0..nx).map(move |i| (j, i)))
            .map(|(j, i)| {
                let k = j * nx + i;
                let c = if active(k) {
                    colour(field.values[k])
                } else {
                    RGBColor(190, 190, 190)
                };
                Rectangle::new([(xe[i], ye[j]), (xe[i + 1], ye[j + 1])], c.filled())
            });
        chart.draw_series(rects).map_err(|e| fail(e.to_string()))?;
        // The colour bar.
        let label = match field.scale {
            MapScale::Log => format!("log10 {} ({})", field.name, field.units),
            _ => format!("{} ({})", field.name, field.units),
        };
        let mut bar = ChartBuilder::on(&right)
            .margin_top(45)
            .margin_bottom(52)
            .margin_right(10)
            .y_label_area_size(70)
            .caption(label, ("sans-serif", 13))
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(|e| fail(e.to_string()))?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_label_formatter(&|v| tick(*v, false))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        let steps = 100;
        let palette: &[(u8, u8, u8)] = if field.scale == MapScale::Diverging {
            &DIVERGING
        } else {
            &SEQUENTIAL
        };
        bar.draw_series((0..steps).map(|s| {
            let (a, b) = (s as f64 / steps as f64, (s + 1) as f64 / steps as f64);
            let (ya, yb) = (lo + a * (hi - lo), lo + b * (hi - lo));
            Rectangle::new(
                [(0.0, ya), (1.0, yb)],
                ramp(palette, 0.5 * (a + b)).filled(),
            )
        }))
        .map_err(|e| fail(e.to_string()))?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    write_png(buffer, (w, h), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_compact_and_sparse_on_log_axes() {
        assert_eq!(tick(200.0, true), "200");
        assert_eq!(tick(60.0, true), "");
        assert_eq!(tick(0.05, true), "0.05");
        assert_eq!(tick(100000.0, true), "1e5");
        assert_eq!(tick(150000.0, false), "1.5e5");
        assert_eq!(tick(-2.25e-5, false), "-2.25e-5");
        assert_eq!(tick(0.25, false), "0.25");
        assert_eq!(tick(3.0, false), "3");
    }

    #[test]
    fn curves_are_read_grouped_and_fitted() {
        let csv = "model,n,time\nl96,40,0.001\nl96,400,0.01\nl96,4000,0.1\nqg,4225,1.0\nqg,16641,4.0\nqg,66049,\n";
        let spec = PlotSpec {
            x: "n".into(),
            y: "time".into(),
            group: Some("model".into()),
            log: true,
            log_y: false,
            title: "t".into(),
        };
        let c = curves(csv, &spec, "t.csv").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "l96");
        assert!((c[0].exponent.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(c[1].points.len(), 2, "the empty value is skipped");
        let bad = curves(
            "n,time\n1,x\n",
            &PlotSpec {
                group: None,
                ..spec.clone()
            },
            "b.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("b.csv") && bad.contains("row 2"), "{bad}");
        let missing = curves(
            csv,
            &PlotSpec {
                y: "memory".into(),
                ..spec.clone()
            },
            "t.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("no column `memory`"), "{missing}");
        // Issue 31: a ragged row and a value a log axis cannot show are
        // refused, not shifted or floored.
        let ragged = curves("model,n,time\nl96,40\n", &spec, "r.csv")
            .unwrap_err()
            .to_string();
        assert!(
            ragged.contains("row 2: 2 cells, the header has 3"),
            "{ragged}"
        );
        let zero = curves("model,n,time\nl96,40,0\n", &spec, "z.csv")
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("row 2") && zero.contains("logarithmic"),
            "{zero}"
        );
        let linear = PlotSpec {
            log: false,
            ..spec.clone()
        };
        assert!(curves("model,n,time\nl96,40,0\n", &linear, "z.csv").is_ok());
        // A PNG comes out.
        let dir = std::env::temp_dir().join(format!("rime-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("t.png");
        draw(&c, &spec, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
