//! Issue 4's figures: get and put latency (p50, p99, p99.9) while compaction and
//! splitting run, next to the same run with both paused; space amplification after an
//! overwrite-heavy run and after `Db::compact`; write amplification.
//!
//! Three runs on fresh directories, one after the other: background work paused,
//! running with `SplitMode::Copy`, running with `SplitMode::HandOver`.
//!
//! `cargo run --release -p ringkv --example background [DIR] [SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringkv::{Db, Durability, Options, SplitMode};

const KEYS: u64 = 200_000;
const VALUE_BYTES: usize = 200;
const THREADS: u64 = 2;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k
}

/// Bytes this process has caused to be written to storage (/proc/self/io).
fn storage_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

struct Run {
    put: Histogram<u64>,
    get: Histogram<u64>,
    puts: u64,
}

/// Two threads for `seconds`: 45 % overwrites, 5 % new keys, 50 % gets.
fn run(db: &Db, seconds: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut put = Histogram::<u64>::new(3).unwrap();
                let mut get = Histogram::<u64>::new(3).unwrap();
                let mut state = 0x2545_f491_4f6c_dd1d ^ t;
                let mut fresh = KEYS + t * (1 << 32);
                let value = vec![0x5a; VALUE_BYTES];
                while !stop.load(Ordering::Relaxed) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let started = Instant::now();
                    match state % 100 {
                        0..=44 => {
                            db.put(key(state % KEYS), &value).unwrap();
                            put.record(started.elapsed().as_micros() as u64).unwrap();
                        }
                        45..=49 => {
                            fresh += 1;
                            db.put(key(fresh), &value).unwrap();
                            put.record(started.elapsed().as_micros() as u64).unwrap();
                        }
                        _ => {
                            db.get(key(state % KEYS)).unwrap();
                            get.record(started.elapsed().as_micros() as u64).unwrap();
                        }
                    }
                }
                (put, get)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut out = Run {
        put: Histogram::new(3).unwrap(),
        get: Histogram::new(3).unwrap(),
        puts: 0,
    };
    for h in handles {
        let (put, get) = h.join().unwrap();
        out.puts += put.len();
        out.put.add(&put).unwrap();
        out.get.add(&get).unwrap();
    }
    out
}

fn line(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "{name:<4} n={:>8} p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>7} us",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ringkv-data".to_owned());
    let seconds: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let record_bytes = (VALUE_BYTES + 16 + 20) as u64;
    let runs = [
        ("paused", false, SplitMode::Copy),
        ("running, split by copy", true, SplitMode::Copy),
        ("running, split by hand-over", true, SplitMode::HandOver),
    ];
    for (name, background, split_mode) in runs {
        let options = Options::default()
            .split_mode(split_mode)
            .durability(Durability::Buffered)
            .extent_size_bytes(1 << 20)
            .split_threshold_bytes(2 << 20)
            .cache_bytes(8 << 20)
            .background_compaction(background);
        let db = Db::open(dir.path().join(name.replace([' ', ','], "-")), options)?;
        let value = vec![0x5a; VALUE_BYTES];
        for i in 0..KEYS {
            db.put(key(i), &value)?;
        }
        db.flush()?;
        let written_before = storage_write_bytes();
        let r = run(&db, seconds);
        db.flush()?;
        let written = storage_write_bytes() - written_before;
        let stats = db.stats()?;
        let compacted: u64 = stats.cores.iter().map(|c| c.compaction.extents).sum();
        let leaves = stats.cores.iter().flat_map(|c| &c.leaves);
        let ancestors = leaves.filter(|l| l.ancestor).count();
        let splits: u64 = stats.cores.iter().map(|c| c.splits).sum();
        println!("== compaction and splitting {name} ({seconds} s, {THREADS} threads, 50 % puts)");
        println!("{}", line("put", &r.put));
        println!("{}", line("get", &r.get));
        println!(
            "extents compacted {compacted}, splits {splits}, substores {} ({ancestors} ancestors \
             not yet moved); space amplification \
             {:.2} (disk {} MiB / live {} MiB); write amplification {:.2} ({} MiB written for {} MiB of records)",
            stats.substores,
            stats.disk_bytes as f64 / stats.live_bytes as f64,
            stats.disk_bytes >> 20,
            stats.live_bytes >> 20,
            written as f64 / (r.puts * record_bytes) as f64,
            written >> 20,
            (r.puts * record_bytes) >> 20
        );
        let started = Instant::now();
        let done = db.compact()?;
        let after = db.stats()?;
        println!(
            "compact(): {} extents in {:?}; space amplification now {:.2}",
            done.extents,
            started.elapsed(),
            after.disk_bytes as f64 / after.live_bytes as f64
        );
        db.close()?;
    }
    Ok(())
}
