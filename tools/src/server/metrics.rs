//! Per-core counters and latency histograms, and the Prometheus endpoint
//! (`--metrics-addr`) that shows them with the database's own figures.
//!
//! Each core records into its own `CoreMetrics` (atomics, and a mutex per histogram
//! that only a scrape contends for). Latencies are kept since start in HdrHistograms
//! (3 significant digits, 1 µs to 60 s) and exposed as summaries. The HTTP endpoint is
//! one plain thread: it answers `GET /metrics` and nothing else, one request at a time.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::shared::Shared;

/// What a command does, for counting and latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Other,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Read, "read"),
    (Kind::Write, "write"),
    (Kind::Other, "other"),
];

/// Longest latency a histogram tracks; longer ones count as this.
const LATENCY_MAX_US: u64 = 60_000_000;
const QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

#[derive(Debug)]
pub struct CoreMetrics {
    pub commands: [AtomicU64; 3],
    pub connections: AtomicU64,
    pub connections_total: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    latency_us: [Mutex<Histogram<u64>>; 3],
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Read => 0,
        Kind::Write => 1,
        Kind::Other => 2,
    }
}

impl CoreMetrics {
    pub fn new() -> CoreMetrics {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds"),
            )
        };
        CoreMetrics {
            commands: Default::default(),
            connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            latency_us: [histogram(), histogram(), histogram()],
        }
    }

    /// Counts one command of `kind` that took `elapsed`.
    pub fn record(&self, kind: Kind, elapsed: Duration) {
        let i = index(kind);
        self.commands[i].fetch_add(1, Ordering::Relaxed);
        let us = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        self.latency_us[i]
            .lock()
            .expect("not poisoned")
            .record(us)
            .expect("clamped into the histogram's range");
    }

    pub fn commands_total(&self) -> u64 {
        self.commands
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Serves `GET /metrics` on `listener` until the process exits.
pub fn serve(listener: TcpListener, shared: Arc<Shared>, db: ringkv::Db) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if let Err(e) = answer(stream, &shared, &db) {
            eprintln!("ringkv serve: metrics request: {e}");
        }
    }
}

fn answer(mut stream: TcpStream, shared: &Shared, db: &ringkv::Db) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = first_line.split(|&b| b == b' ');
    let (method, path) = (words.next(), words.next());
    let (status, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => match render(shared, db) {
            Ok(body) => ("200 OK", body),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        },
        _ => ("404 Not Found", "only GET /metrics is served here\n".into()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The Prometheus text exposition of the server and database figures.
pub fn render(shared: &Shared, db: &ringkv::Db) -> Result<String, ringkv::Error> {
    let stats = db.stats()?;
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, samples: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP ringkv_{name} {help}");
            let _ = writeln!(out, "# TYPE ringkv_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "ringkv_{name}{labels} {value}");
            }
        };
    let per_core = |f: &dyn Fn(&ringkv::CoreStats) -> u64| {
        stats
            .cores
            .iter()
            .map(|c| (format!("{{core=\"{}\"}}", c.core), f(c) as f64))
            .collect::<Vec<_>>()
            .into_iter()
    };
    let server = |f: &dyn Fn(&CoreMetrics) -> u64| {
        shared
            .metrics
            .iter()
            .enumerate()
            .map(|(core, m)| (format!("{{core=\"{core}\"}}"), f(m) as f64))
            .collect::<Vec<_>>()
            .into_iter()
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    family(
        "commands_total",
        "counter",
        "Commands served, by core and kind (read, write, other).",
        &mut shared.metrics.iter().enumerate().flat_map(|(core, m)| {
            KINDS.iter().map(move |&(kind, name)| {
                (
                    format!("{{core=\"{core}\",kind=\"{name}\"}}"),
                    load(&m.commands[index(kind)]) as f64,
                )
            })
        }),
    );
    let mut latency = Vec::new();
    for (core, m) in shared.metrics.iter().enumerate() {
        for &(kind, name) in &KINDS {
            let h = m.latency_us[index(kind)]
                .lock()
                .expect("not poisoned")
                .clone();
            for q in QUANTILES {
                latency.push((
                    format!("{{core=\"{core}\",kind=\"{name}\",quantile=\"{q}\"}}"),
                    h.value_at_quantile(q) as f64 / 1e6,
                ));
            }
            let sum_s = h.mean() * h.len() as f64 / 1e6;
            latency.push((format!("_sum{{core=\"{core}\",kind=\"{name}\"}}"), sum_s));
            latency.push((
                format!("_count{{core=\"{core}\",kind=\"{name}\"}}"),
                h.len() as f64,
            ));
        }
    }
    family(
        "command_latency_seconds",
        "summary",
        "Command latency from parse to reply, since start (HdrHistogram, 3 digits).",
        &mut latency.into_iter(),
    );
    family(
        "connections",
        "gauge",
        "Open client connections.",
        &mut server(&|m| load(&m.connections)),
    );
    family(
        "connections_accepted_total",
        "counter",
        "Client connections accepted.",
        &mut server(&|m| load(&m.connections_total)),
    );
    family(
        "net_input_bytes_total",
        "counter",
        "Bytes read from clients.",
        &mut server(&|m| load(&m.net_input_bytes)),
    );
    family(
        "net_output_bytes_total",
        "counter",
        "Bytes written to clients.",
        &mut server(&|m| load(&m.net_output_bytes)),
    );
    family(
        "queue_depth",
        "gauge",
        "Requests waiting in the core's queue.",
        &mut per_core(&|c| c.queued),
    );
    family(
        "in_flight",
        "gauge",
        "Requests the core is serving.",
        &mut per_core(&|c| c.in_flight),
    );
    family(
        "keys",
        "gauge",
        "Live keys.",
        &mut per_core(&|c| c.totals.keys),
    );
    family(
        "live_bytes",
        "gauge",
        "Bytes of live records.",
        &mut per_core(&|c| c.totals.live_bytes),
    );
    family(
        "disk_bytes",
        "gauge",
        "Bytes the extent files take.",
        &mut per_core(&|c| c.totals.disk_bytes),
    );
    family(
        "buffered_bytes",
        "gauge",
        "Appended bytes not yet written to the device.",
        &mut per_core(&|c| c.totals.buffered_bytes),
    );
    family(
        "substores",
        "gauge",
        "Leaves (substores) the core owns.",
        &mut per_core(&|c| c.substores),
    );
    family(
        "commits_total",
        "counter",
        "Group commits.",
        &mut per_core(&|c| c.commits),
    );
    family(
        "splits_total",
        "counter",
        "16-way substore splits.",
        &mut per_core(&|c| c.splits),
    );
    family(
        "background_errors_total",
        "counter",
        "Background steps (compaction, record moves, splits) that failed; each is logged.",
        &mut per_core(&|c| c.background_errors),
    );
    family(
        "compacted_extents_total",
        "counter",
        "Extents compacted.",
        &mut per_core(&|c| c.compaction.extents),
    );
    family(
        "compaction_bytes_rewritten_total",
        "counter",
        "Bytes compaction copied.",
        &mut per_core(&|c| c.compaction.bytes_rewritten),
    );
    family(
        "compaction_bytes_reclaimed_total",
        "counter",
        "Bytes of extent files compaction deleted.",
        &mut per_core(&|c| c.compaction.bytes_reclaimed),
    );
    family(
        "cache_hits_total",
        "counter",
        "Read-cache hits.",
        &mut per_core(&|c| c.cache_hits),
    );
    family(
        "cache_misses_total",
        "counter",
        "Read-cache misses.",
        &mut per_core(&|c| c.cache_misses),
    );
    family(
        "cache_bytes",
        "gauge",
        "Bytes in the read cache.",
        &mut per_core(&|c| c.cache_bytes),
    );
    Ok(out)
}
