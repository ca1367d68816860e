//! Reports: the table on the terminal, `.hgrm` percentile distributions (byte for byte
//! what HdrHistogram's reference `outputPercentileDistribution(out, 5, 1.0)` writes; the
//! golden test in `tests/golden.rs` holds us to it), an HdrHistogram interval log (one
//! histogram per second, engine, workload and operation), and `summary.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// One engine's figures for one operation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpSummary {
    pub engine: String,
    pub workload: String,
    pub op: String,
    pub operations: u64,
    pub throughput_ops: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// Throughput as a percentage of what the raw device does for the comparable access
    /// (reads: 4 KiB random reads at QD64; writes: sequential write bandwidth).
    pub percent_of_device: Option<f64>,
}

impl OpSummary {
    pub fn new(engine: &str, workload: &str, op: &str, h: &Histogram<u64>, seconds: f64) -> Self {
        Self {
            engine: engine.to_owned(),
            workload: workload.to_owned(),
            op: op.to_owned(),
            operations: h.len(),
            throughput_ops: h.len() as f64 / seconds.max(1e-9),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
            percent_of_device: None,
        }
    }
}

/// Raw-device figures.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DeviceSummary {
    pub dir: String,
    pub random_read_4k_qd1_iops: f64,
    pub random_read_4k_qd1_p50_us: u64,
    pub random_read_4k_qd1_p99_us: u64,
    pub random_read_4k_qd64_iops: f64,
    pub sequential_write_mib_s: f64,
    pub write_4k_fdatasync_p50_us: u64,
    pub write_4k_fdatasync_p99_us: u64,
    pub write_4k_fdatasync_ops: f64,
}

/// Everything a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub results: Vec<OpSummary>,
    /// The raw device under each data directory (`--dir` first), if measured.
    pub devices: Vec<DeviceSummary>,
    pub kvlog: Vec<crate::kvlog::KvlogSummary>,
    pub notes: Vec<String>,
}

/// The table printed at the end of a run.
pub fn table(results: &[OpSummary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "engine",
        "workload",
        "op",
        "ops/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9",
        "p99.99",
        "max us",
        "% dev"
    );
    for r in results {
        let device = r
            .percent_of_device
            .map_or("-".to_owned(), |p| format!("{p:.1}"));
        let _ = writeln!(
            out,
            "{:<8} {:<12} {:<7} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
            r.engine,
            r.workload,
            r.op,
            r.throughput_ops,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.p9999_us,
            r.max_us,
            device
        );
    }
    out
}

/// Sub-buckets per bucket for a precision: what the reference implementation prints as
/// `SubBuckets` (the Rust crate keeps it private).
fn sub_bucket_count(significant_digits: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(significant_digits));
    let magnitude = (largest_single_unit as f64).log2().ceil() as u32;
    1 << magnitude.max(1)
}

/// The rows of a percentile distribution: (value, percentile level in percent, count up
/// to the value), stepping as the reference implementation's `PercentileIterator` does.
/// The crate's own `iter_quantiles` steps in quantiles rather than percents, and its
/// float sums land on the other side of a level now and then (0.9 vs 0.9000000000000001
/// moves a row to the next value), so the reference's steps are followed here.
pub fn percentile_rows(h: &Histogram<u64>, ticks_per_half_distance: u64) -> Vec<(u64, f64, u64)> {
    let total = h.len();
    let mut rows = Vec::new();
    let mut level = 0.0_f64;
    let mut running = 0;
    let mut last_value = 0;
    for v in h.iter_recorded() {
        running += v.count_at_value();
        last_value = v.value_iterated_to();
        // The reference stops stepping once every count is behind it.
        while (100.0 * running as f64) / total as f64 >= level {
            rows.push((last_value, level, running));
            if running >= total {
                break;
            }
            // Fixed-size ticks within each half of the distance left to 100 %.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            let ticks = ticks_per_half_distance * 2f64.powi(halvings as i32 + 1) as u64;
            level += 100.0 / ticks as f64;
        }
    }
    if total > 0 {
        // One last step to 100 %.
        rows.push((last_value, 100.0, total));
    }
    rows
}

/// `x` with `decimals` digits after the point the way Java's `%.Nf` writes it: the
/// shortest decimal that reads back as `x`, rounded half up (Rust's `{:.N}` rounds the
/// exact binary value instead, so 0.9997802734375 gives ...437 here and ...438 there).
pub fn java_fixed(x: f64, decimals: usize) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let shortest = format!("{}", x.abs());
    let (int_part, frac_part) = shortest.split_once('.').unwrap_or((&shortest, ""));
    let mut digits: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).collect();
    let int_len = int_part.len();
    let keep = int_len + decimals;
    let round_up = digits.get(keep).is_some_and(|&d| d >= b'5');
    digits.resize(keep, b'0');
    let mut int_len = int_len;
    if round_up {
        let mut i = keep;
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                int_len += 1;
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let (int_digits, frac_digits) = digits.split_at(int_len);
    let mut out = String::new();
    if x.is_sign_negative() && digits.iter().any(|&d| d != b'0') {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(int_digits).expect("ascii digits"));
    if decimals > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(frac_digits).expect("ascii digits"));
    }
    out
}

/// A percentile distribution in HdrHistogram's text format (values in microseconds,
/// five ticks per half distance), as the reference implementation writes it: values with
/// as many decimals as the histogram has significant digits, no `1/(1-Percentile)` on
/// the last (100 %) row.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for (value, level, total) in percentile_rows(h, 5) {
        let q = level / 100.0;
        let value = java_fixed(value as f64, digits);
        let percentile = java_fixed(q, 12);
        if level != 100.0 {
            let inverse = java_fixed(1.0 / (1.0 - q), 2);
            let _ = writeln!(out, "{value:>12} {percentile:>2} {total:>10} {inverse:>14}");
        } else {
            let _ = writeln!(out, "{value:>12} {percentile:>2} {total:>10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12}, StdDeviation   = {:>12}]",
        java_fixed(h.mean(), digits),
        java_fixed(h.stdev(), digits)
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12}, Total count    = {:>12}]",
        java_fixed(h.max() as f64, digits),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    );
    out
}

/// A histogram as the reference implementation's tools exchange it: V2, deflated,
/// base64 (what interval logs hold and `Histogram.decodeFromCompressedByteBuffer` reads).
pub fn to_base64(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .expect("a histogram encodes into memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inverse of [`to_base64`] (also reads the uncompressed V2 encoding).
pub fn from_base64(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("histogram: {e:?}"))
}

/// One interval of the interval log.
#[derive(Clone, Debug)]
pub struct Interval {
    /// `engine/workload/op` (no spaces or commas: the log's tag syntax).
    pub tag: String,
    /// When the interval began, seconds since the Unix epoch.
    pub start_unix_s: f64,
    pub duration_s: f64,
    pub histogram: Histogram<u64>,
}

/// Writes `intervals` as an HdrHistogram interval log (the format of the reference
/// implementation's `HistogramLogWriter`): StartTime and BaseTime are the first interval's
/// start, interval timestamps are seconds after it, histograms V2-deflated and tagged.
pub fn interval_log(intervals: &[Interval]) -> Result<Vec<u8>, String> {
    let base = intervals
        .iter()
        .map(|i| i.start_unix_s)
        .fold(f64::INFINITY, f64::min);
    let base = if base.is_finite() { base } else { 0.0 };
    let base_time = std::time::UNIX_EPOCH + Duration::from_secs_f64(base);
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment("ringkv-bench interval log: latency in microseconds, tag engine/workload/op")
        .with_start_time(base_time)
        .with_base_time(base_time)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| e.to_string())?;
    for i in intervals {
        let tag = Tag::new(&i.tag).ok_or_else(|| format!("{:?} is not a log tag", i.tag))?;
        writer
            .write_histogram(
                &i.histogram,
                Duration::from_secs_f64((i.start_unix_s - base).max(0.0)),
                Duration::from_secs_f64(i.duration_s),
                Some(tag),
            )
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(out)
}

/// Reads an interval log back with the hdrhistogram crate's own parser (timestamps
/// made absolute again with the log's BaseTime).
pub fn read_interval_log(log: &[u8]) -> Result<Vec<Interval>, String> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(log) {
        match entry.map_err(|e| format!("{e:?}"))? {
            LogEntry::BaseTime(t) => base = t.as_secs_f64(),
            LogEntry::Interval(i) => out.push(Interval {
                tag: i.tag().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                start_unix_s: base + i.start_timestamp().as_secs_f64(),
                duration_s: i.duration().as_secs_f64(),
                histogram: from_base64(i.encoded_histogram())?,
            }),
            LogEntry::StartTime(_) => {}
        }
    }
    Ok(out)
}

/// Parses the value/percentile rows of an `.hgrm` text back (for tests and tools).
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let value = cols.next()?.parse().ok()?;
            let percentile = cols.next()?.parse().ok()?;
            Some((value, percentile))
        })
        .collect()
}

/// Writes `summary.json` and one `.hgrm` per engine and operation into `dir`.
pub fn write(
    dir: &Path,
    summary: &Summary,
    histograms: &[(String, Histogram<u64>)],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    for (name, h) in histograms {
        std::fs::write(dir.join(format!("{name}.hgrm")), hgrm(h))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_log_reads_back_with_the_crates_parser_and_adds_up() {
        let mut intervals = Vec::new();
        let mut total = Histogram::<u64>::new(3).unwrap();
        for second in 0..5u64 {
            for (engine, slow) in [("ringkv", 1), ("lmdb", 7)] {
                let mut h = crate::runner::new_histogram();
                for v in 0..(100 + second * 10) {
                    h.record(1 + v * slow).unwrap();
                }
                total.add(&h).unwrap();
                intervals.push(Interval {
                    tag: format!("{engine}/ycsb-c/read"),
                    start_unix_s: 1_700_000_000.0 + second as f64,
                    duration_s: 1.0,
                    histogram: h,
                });
            }
        }
        let log = interval_log(&intervals).unwrap();
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("#[StartTime: 1700000000.000"), "{text}");
        let back = read_interval_log(&log).unwrap();
        assert_eq!(back.len(), intervals.len());
        for (a, b) in intervals.iter().zip(&back) {
            assert_eq!(a.tag, b.tag);
            assert!((a.start_unix_s - b.start_unix_s).abs() < 1e-3);
            assert_eq!(a.duration_s, b.duration_s);
            assert_eq!(a.histogram, b.histogram);
        }
        let counted: u64 = back.iter().map(|i| i.histogram.len()).sum();
        assert_eq!(counted, total.len());
        // A tag the format cannot hold is refused, not written.
        let mut bad = intervals[0].clone();
        bad.tag = "ringkv ycsb".to_owned();
        assert!(interval_log(&[bad]).is_err());
    }

    #[test]
    fn java_fixed_rounds_the_shortest_decimal_half_up() {
        assert_eq!(java_fixed(0.9997802734375, 12), "0.999780273438");
        assert_eq!(java_fixed(0.5, 12), "0.500000000000");
        assert_eq!(java_fixed(2.5, 0), "3");
        assert_eq!(java_fixed(9.995, 2), "10.00");
        assert_eq!(java_fixed(99.999, 2), "100.00");
        assert_eq!(java_fixed(42.0, 3), "42.000");
        assert_eq!(java_fixed(1.0 / 3.0, 3), "0.333");
        assert_eq!(java_fixed(-1.25, 1), "-1.3");
        assert_eq!(java_fixed(1e-7, 3), "0.000");
    }

    #[test]
    fn hgrm_lists_increasing_percentiles_up_to_the_max() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let text = hgrm(&h);
        let rows = parse_hgrm(&text);
        assert!(rows.len() > 20, "{text}");
        assert!(
            rows.windows(2)
                .all(|w| w[0].1 <= w[1].1 && w[0].0 <= w[1].0)
        );
        let (last_value, last_percentile) = *rows.last().unwrap();
        assert_eq!(last_percentile, 1.0);
        assert!((last_value - 10_000.0).abs() <= 10.0);
        // The median row is where it should be.
        let median = rows.iter().find(|r| r.1 >= 0.5).unwrap().0;
        assert!((median - 5000.0).abs() < 50.0, "{median}");
        assert!(text.contains("#[Max     ="));
    }

    #[test]
    fn summary_json_has_the_fixed_fields() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        h.record(100).unwrap();
        let summary = Summary {
            results: vec![OpSummary::new("ringkv", "ycsb-a", "read", &h, 1.0)],
            devices: vec![DeviceSummary::default()],
            kvlog: vec![],
            notes: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &summary, &[("ringkv-read".into(), h)]).unwrap();
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        let r = &json["results"][0];
        for field in [
            "engine",
            "op",
            "throughput_ops",
            "p50_us",
            "p99_us",
            "p999_us",
            "p9999_us",
            "max_us",
        ] {
            assert!(!r[field].is_null(), "{field}");
        }
        assert!(json["devices"][0].is_object());
        assert!(dir.path().join("ringkv-read.hgrm").exists());
    }
}
