//! `ringkv stats DIR`: keys, live and disk bytes, extents and garbage per core and per
//! substore (leaf), with totals; a table for people, `--json` for scripts.

use std::process::ExitCode;

use clap::Args;
use ringkv::{CompactionStats, CoreStats, SubstoreStats};
use serde::Serialize;

use super::text::{human_bytes, percent};
use super::{OpenArgs, Outcome, open_to_read};

/// Shows keys, live and disk bytes, extents and garbage per core and per substore.
///
/// Opens the database (recovering it if a process stopped without closing it) and prints
/// one line per substore (a leaf of the hash trie, a directory under substores/), grouped
/// by the core that serves it, then per-core and database totals. Garbage is disk bytes
/// minus live bytes: overwritten and deleted records, tombstones, key summaries and
/// padding, which compaction reclaims. The grouping by core depends on --cores; the
/// figures per substore do not.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv stats /var/lib/ringkv
  ringkv stats /var/lib/ringkv --json | jq '.totals.garbage_ratio'")]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// Prints one JSON object instead of a table: {path, substores, totals, cores: [{core,
    /// totals, splits, compaction, leaves: [{name, keys, live_bytes, ...}]}]}.
    #[arg(long)]
    json: bool,
}

/// The figures of a substore, a core or the database.
#[derive(Debug, Serialize)]
struct Figures {
    keys: u64,
    live_bytes: u64,
    disk_bytes: u64,
    extents: u64,
    /// Disk bytes not taken by live records.
    garbage_bytes: u64,
    /// `garbage_bytes / disk_bytes`, 0 for an empty substore.
    garbage_ratio: f64,
    /// Record bytes ever appended to the extents still on disk (live, dead, tombstones).
    record_bytes: u64,
    tombstone_bytes: u64,
}

impl From<&SubstoreStats> for Figures {
    fn from(s: &SubstoreStats) -> Self {
        let garbage_bytes = s.disk_bytes.saturating_sub(s.live_bytes);
        Figures {
            keys: s.keys,
            live_bytes: s.live_bytes,
            disk_bytes: s.disk_bytes,
            extents: s.extents,
            garbage_bytes,
            garbage_ratio: percent(garbage_bytes, s.disk_bytes) / 100.0,
            record_bytes: s.record_bytes,
            tombstone_bytes: s.tombstone_bytes,
        }
    }
}

#[derive(Debug, Serialize)]
struct Leaf {
    name: String,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Debug, Serialize)]
struct Compaction {
    extents: u64,
    records_rewritten: u64,
    bytes_rewritten: u64,
    bytes_reclaimed: u64,
    tombstones_dropped: u64,
    expired_dropped: u64,
}

impl From<&CompactionStats> for Compaction {
    fn from(c: &CompactionStats) -> Self {
        Compaction {
            extents: c.extents,
            records_rewritten: c.records_rewritten,
            bytes_rewritten: c.bytes_rewritten,
            bytes_reclaimed: c.bytes_reclaimed,
            tombstones_dropped: c.tombstones_dropped,
            expired_dropped: c.expired_dropped,
        }
    }
}

#[derive(Debug, Serialize)]
struct Core {
    core: usize,
    substores: u64,
    totals: Figures,
    /// Splits and compaction done since this command opened the database.
    splits: u64,
    compaction: Compaction,
    leaves: Vec<Leaf>,
}

impl From<&CoreStats> for Core {
    fn from(c: &CoreStats) -> Self {
        let mut leaves: Vec<Leaf> = c
            .leaves
            .iter()
            .map(|l| Leaf {
                name: l.name.clone(),
                figures: Figures::from(&l.stats),
            })
            .collect();
        leaves.sort_by(|a, b| a.name.cmp(&b.name));
        Core {
            core: c.core,
            substores: c.substores,
            totals: Figures::from(&c.totals),
            splits: c.splits,
            compaction: Compaction::from(&c.compaction),
            leaves,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    path: String,
    substores: u64,
    totals: Figures,
    cores: Vec<Core>,
}

pub(crate) fn run(args: &StatsArgs) -> Outcome {
    let db = open_to_read(&args.open)?;
    let stats = db.stats()?;
    db.close()?;
    let mut totals = SubstoreStats::default();
    for core in &stats.cores {
        totals.add(&core.totals);
    }
    let report = Report {
        path: args.open.dir.display().to_string(),
        substores: stats.substores,
        totals: Figures::from(&totals),
        cores: stats.cores.iter().map(Core::from).collect(),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report).expect("plain data serializes");
        println!("{json}");
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

const HEADER: &str = "keys        live        disk  extents     garbage  ratio";

fn row(name: &str, f: &Figures) -> String {
    format!(
        "{name:<24}{:>10}  {:>10}  {:>10}  {:>7}  {:>10}  {:>4.0}%\n",
        f.keys,
        human_bytes(f.live_bytes),
        human_bytes(f.disk_bytes),
        f.extents,
        human_bytes(f.garbage_bytes),
        f.garbage_ratio * 100.0
    )
}

fn table(report: &Report) -> String {
    let mut out = format!(
        "{}: {} substores on {} cores\n\n{:<24}      {HEADER}\n",
        report.path,
        report.substores,
        report.cores.len(),
        "substore"
    );
    for core in &report.cores {
        for leaf in &core.leaves {
            out += &row(&format!("  {}", leaf.name), &leaf.figures);
        }
        out += &row(&format!("core {}", core.core), &core.totals);
    }
    out += &row("total", &report.totals);
    out
}
