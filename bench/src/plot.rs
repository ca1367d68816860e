//! Plots (plotters), each as SVG and PNG in the report directory:
//!
//! - `latency-WORKLOAD-OP`: latency by percentile, every engine overlaid. The x axis is
//!   HdrHistogram's: log10(1/(1-p)), labelled 50%, 90%, 99%, 99.9%, 99.99% …, so each
//!   step right is ten times rarer; the y axis is latency in µs, log-scaled because
//!   tails run orders of magnitude above medians.
//! - `throughput-WORKLOAD`: completed operations per second, second by second, per engine.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (the `dejavu` crate, through
//! plotters' `ab_glyph` feature), so the PNGs need no system fonts or libraries.

use std::path::{Path, PathBuf};
use std::sync::Once;

use hdrhistogram::Histogram;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{
    KeyPointHint, KeyPointWeight, NoDefaultFormatting, Ranged, ValueFormatter,
};
use plotters::prelude::*;

use crate::report::percentile_rows;

const SIZE: (u32, u32) = (1000, 620);
const FONT: &str = "sans-serif";
/// Rightmost percentile drawn at most: 99.9999 %.
const NINES_MAX: f64 = 6.0;

static FONTS: Once = Once::new();

fn register_fonts() {
    FONTS.call_once(|| {
        // DejaVu Sans parses (the crate ships the TTF); a failure here is a broken build.
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err()
        {
            panic!("the embedded DejaVu Sans font does not parse");
        }
    });
}

/// One engine's latency distribution for the plot.
#[derive(Debug)]
pub struct LatencySeries<'a> {
    pub engine: &'a str,
    pub histogram: &'a Histogram<u64>,
}

/// The points of a latency-by-percentile curve: (log10(1/(1-p)), µs), up to the last
/// percentile below 100 % (whose x would be infinite).
pub fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    percentile_rows(h, 5)
        .into_iter()
        .filter(|&(_, level, _)| level < 100.0)
        .map(|(value, level, _)| {
            let x = (1.0 / (1.0 - level / 100.0)).log10();
            (x.min(NINES_MAX), value.max(1) as f64)
        })
        .collect()
}

/// "50%", "90%", "99%", "99.9%" … for an x of log10(1/(1-p)).
pub fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let nines = x.round() as usize;
    if x < 0.01 {
        "0%".to_owned()
    } else if (x - x.round()).abs() < 1e-9 && nines >= 2 {
        format!("{percent:.*}%", nines - 2)
    } else {
        format!("{percent:.0}%")
    }
}

/// The x axis of a latency plot: log10(1/(1-p)) from 0 to `nines`, ticks at 0 %, 50 %,
/// and every added nine.
#[derive(Clone, Debug)]
struct PercentileAxis {
    nines: f64,
}

impl Ranged for PercentileAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let fraction = value / self.nines;
        limit.0 + (fraction * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The same ticks for the bold and the light mesh lines (however many allowed).
        if matches!(hint.weight(), KeyPointWeight::Any) && hint.max_num_points() == 0 {
            return Vec::new();
        }
        let mut points = vec![0.0, 2f64.log10()];
        points.extend((1..=self.nines as usize).map(|n| n as f64));
        points
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.nines
    }
}

impl ValueFormatter<f64> for PercentileAxis {
    fn format(value: &f64) -> String {
        percentile_label(*value)
    }
}

fn error<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing: {e:?}")
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    curves: &[(&str, Vec<(f64, f64)>)],
) -> Result<(), String> {
    area.fill(&WHITE).map_err(error)?;
    let points = curves.iter().flat_map(|(_, p)| p.iter());
    let x_max = points
        .clone()
        .map(|p| p.0)
        .fold(4.0_f64, f64::max)
        .ceil()
        .min(NINES_MAX);
    let y_min = points.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = points.map(|p| p.1).fold(1.0_f64, f64::max);
    let y_min = if y_min.is_finite() { y_min } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(16)
        .margin_right(40)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            PercentileAxis { nines: x_max },
            ((y_min * 0.8).max(0.5)..y_max * 1.25).log_scale(),
        )
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log scale)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(error)?;
    for (i, (engine, points)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(error)?
            .label(*engine)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(error)?;
    area.present().map_err(error)
}

fn draw_throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(&str, &[u64])],
) -> Result<(), String> {
    area.fill(&WHITE).map_err(error)?;
    let seconds = series
        .iter()
        .map(|(_, s)| s.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let top = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..seconds as f64, 0.0..top * 1.15)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("second of the measured phase")
        .y_desc("operations per second")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(error)?;
    for (i, (engine, per_second)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // Each second's count drawn at the middle of its second.
        let points = per_second
            .iter()
            .enumerate()
            .map(|(s, &ops)| (s as f64 + 0.5, ops as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(error)?
            .label(*engine)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(error)?;
    area.present().map_err(error)
}

/// Draws the latency-by-percentile plot of one workload and operation as `stem.svg` and
/// `stem.png`.
pub fn latency(stem: &Path, title: &str, series: &[LatencySeries]) -> Result<(), String> {
    register_fonts();
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|s| !s.histogram.is_empty())
        .map(|s| (s.engine, percentile_points(s.histogram)))
        .collect();
    let svg = stem.with_extension("svg");
    draw_latency(
        &SVGBackend::new(&svg, SIZE).into_drawing_area(),
        title,
        &curves,
    )?;
    let png = stem.with_extension("png");
    draw_latency(
        &BitMapBackend::new(&png, SIZE).into_drawing_area(),
        title,
        &curves,
    )
}

/// Draws the throughput-over-time plot of one workload as `stem.svg` and `stem.png`.
pub fn throughput(stem: &Path, title: &str, series: &[(&str, &[u64])]) -> Result<(), String> {
    register_fonts();
    let svg = stem.with_extension("svg");
    draw_throughput(
        &SVGBackend::new(&svg, SIZE).into_drawing_area(),
        title,
        series,
    )?;
    let png = stem.with_extension("png");
    draw_throughput(
        &BitMapBackend::new(&png, SIZE).into_drawing_area(),
        title,
        series,
    )
}

/// Everything measured, by (engine, workload, op) and (engine, workload).
#[derive(Debug, Default)]
pub struct PlotData {
    pub histograms: Vec<(String, String, String, Histogram<u64>)>,
    pub throughput: Vec<(String, String, Vec<u64>)>,
}

/// Writes every plot into `dir`; returns the stems written (without extension).
pub fn write_all(dir: &Path, data: &PlotData) -> Result<Vec<PathBuf>, String> {
    let mut stems = Vec::new();
    let mut keys: Vec<(&str, &str)> = data
        .histograms
        .iter()
        .map(|(_, w, o, _)| (w.as_str(), o.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for (workload, op) in keys {
        let series: Vec<LatencySeries> = data
            .histograms
            .iter()
            .filter(|(_, w, o, _)| w == workload && o == op)
            .map(|(engine, _, _, histogram)| LatencySeries { engine, histogram })
            .collect();
        let stem = dir.join(format!("latency-{workload}-{op}"));
        latency(
            &stem,
            &format!("{workload} {op}: latency by percentile"),
            &series,
        )?;
        stems.push(stem);
    }
    let mut workloads: Vec<&str> = data.throughput.iter().map(|(_, w, _)| w.as_str()).collect();
    workloads.sort_unstable();
    workloads.dedup();
    for workload in workloads {
        let series: Vec<(&str, &[u64])> = data
            .throughput
            .iter()
            .filter(|(_, w, _)| w == workload)
            .map(|(engine, _, s)| (engine.as_str(), s.as_slice()))
            .collect();
        let stem = dir.join(format!("throughput-{workload}"));
        throughput(&stem, &format!("{workload}: throughput over time"), &series)?;
        stems.push(stem);
    }
    Ok(stems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels_read_like_hdrhistogram() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2f64.log10()), "50%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn curve_points_rise_with_the_percentile_and_stop_before_100() {
        let mut h = crate::runner::new_histogram();
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let points = percentile_points(&h);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(points[0].0, 0.0);
        // The median is at x = log10(2) and about 50,000 µs.
        let median = points.iter().find(|p| p.0 >= 2f64.log10() - 1e-9).unwrap();
        assert!((median.1 - 50_000.0).abs() < 100.0, "{median:?}");
        assert!(points.iter().all(|p| p.0.is_finite() && p.0 <= NINES_MAX));
    }

    #[test]
    fn plots_are_written_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let mut fast = crate::runner::new_histogram();
        let mut slow = crate::runner::new_histogram();
        for v in 1..=10_000u64 {
            fast.record(20 + v % 50).unwrap();
            slow.record(100 + v * v % 9_000).unwrap();
        }
        let data = PlotData {
            histograms: vec![
                ("ringkv".into(), "ycsb-a".into(), "read".into(), fast),
                ("other".into(), "ycsb-a".into(), "read".into(), slow),
            ],
            throughput: vec![
                ("ringkv".into(), "ycsb-a".into(), vec![1000, 1100, 1050]),
                ("other".into(), "ycsb-a".into(), vec![500, 400, 450]),
            ],
        };
        let stems = write_all(dir.path(), &data).unwrap();
        if let Some(keep) = std::env::var_os("RINGKV_BENCH_KEEP_PLOTS") {
            write_all(Path::new(&keep), &data).unwrap();
        }
        assert_eq!(stems.len(), 2);
        for stem in stems {
            let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
            assert!(svg.contains("<svg") && svg.contains("ringkv") && svg.contains("other"));
            let png = std::fs::read(stem.with_extension("png")).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert!(png.len() > 10_000, "{} bytes", png.len());
        }
        let svg = std::fs::read_to_string(dir.path().join("latency-ycsb-a-read.svg")).unwrap();
        for label in ["50%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(
                svg.contains(&format!("\n{label}\n</text>")),
                "{label} missing"
            );
        }
    }
}
