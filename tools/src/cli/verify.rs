//! `ringkv verify DIR`: every checksum, and the index against the log, read-only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ringkv::{Finding, VerifyReport};
use serde::Serialize;

use super::text::human_bytes;
use super::{EXIT_NEGATIVE, Outcome, progress};

/// Checks every byte of a database that carries a checksum, and its index against its log.
///
/// Reads every file of every substore without opening the database and without changing
/// anything (no recovery, no truncation, no clean-up): extent headers, every record and
/// its checksum, key summaries and footers, the SUBSTORE files, the layout of the
/// substores. It also rebuilds each index the way opening would and checks that every
/// key points at its newest record. Each problem is printed with its file and byte
/// offset; the check goes on after one. Notes are what opening will clean up by design
/// (the torn end of a write interrupted by a crash, a half-finished split): not damage.
///
/// Refuses a directory that another process has open. Exits 0 when there is no problem,
/// 1 when there is any, 2 when the directory cannot be checked.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv verify /var/lib/ringkv
  ringkv verify /var/lib/ringkv --json > report.json || echo damaged")]
pub(crate) struct VerifyArgs {
    /// The database directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Prints one JSON object: {ok, problems: [{path, offset, what}], notes: [...],
    /// substores, extents, records, bytes, keys, live_bytes}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct JsonFinding<'a> {
    path: &'a str,
    offset: u64,
    what: &'a str,
}

impl<'a> From<&'a Finding> for JsonFinding<'a> {
    fn from(f: &'a Finding) -> Self {
        JsonFinding {
            path: &f.path,
            offset: f.offset,
            what: &f.what,
        }
    }
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    ok: bool,
    problems: Vec<JsonFinding<'a>>,
    notes: Vec<JsonFinding<'a>>,
    substores: usize,
    extents: u64,
    records: u64,
    bytes: u64,
    keys: u64,
    live_bytes: u64,
}

pub(crate) fn run(args: &VerifyArgs) -> Outcome {
    let started = Instant::now();
    let mut bar = None; // made once the total is known
    let report = ringkv::verify_with_progress(&args.dir, |done, total| {
        let bar = bar.get_or_insert_with(|| progress::bytes(total, "verifying"));
        bar.set_position(done);
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    if args.json {
        let json = JsonReport {
            ok: report.is_ok(),
            problems: report.problems().map(JsonFinding::from).collect(),
            notes: report.notes().map(JsonFinding::from).collect(),
            substores: report.leaves.len(),
            extents: report.extents(),
            records: report.records(),
            bytes: report.bytes(),
            keys: report.keys(),
            live_bytes: report.live_bytes(),
        };
        let json = serde_json::to_string_pretty(&json).expect("plain data serializes");
        println!("{json}");
    } else {
        print!("{}", text(&report, started.elapsed().as_secs_f64()));
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEGATIVE)
    })
}

fn text(report: &VerifyReport, seconds: f64) -> String {
    let mut out = String::new();
    for p in report.problems() {
        out += &format!("problem: {p}\n");
    }
    for n in report.notes() {
        out += &format!("note: {n}\n");
    }
    let problems = report.problems().count();
    let notes = report.notes().count();
    out += &format!(
        "{}: {} substores, {} extents, {} records, {} read in {seconds:.2} s; {} keys, {} live; \
         {problems} problem{}, {notes} note{}\n",
        report.path.display(),
        report.leaves.len(),
        report.extents(),
        report.records(),
        human_bytes(report.bytes()),
        report.keys(),
        human_bytes(report.live_bytes()),
        if problems == 1 { "" } else { "s" },
        if notes == 1 { "" } else { "s" },
    );
    out
}
