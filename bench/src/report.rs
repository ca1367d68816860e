//! Reports: the table on the terminal, `.hgrm` percentile distributions (the format
//! HdrHistogram's `outputPercentileDistribution` writes), and `summary.json`.

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One engine's figures for one operation.
#[derive(Clone, Debug, Serialize, PartialEq)]
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
    pub device: Option<DeviceSummary>,
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

/// A percentile distribution in HdrHistogram's text format (values in microseconds).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0;
    for v in h.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".to_owned()
        };
        let _ = writeln!(
            out,
            "{:>12.3} {:>2.12} {:>10} {:>14}",
            v.value_iterated_to() as f64,
            q,
            total,
            inverse
        );
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean(),
        h.stdev()
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    out
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
            device: Some(DeviceSummary::default()),
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
        assert!(json["device"].is_object());
        assert!(dir.path().join("ringkv-read.hgrm").exists());
    }
}
