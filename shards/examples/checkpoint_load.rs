//! Issue 14's figure for checkpoints: the time and bytes to checkpoint a database of
//! about 1 GiB while writers load it, and the writers' latency before and during the
//! checkpoint. A load of 1 KiB values fills the database; then `WRITERS` threads
//! overwrite random keys with `Sync` puts for a baseline window, then again while one
//! checkpoint (and then a second, which shares what did not change) is taken.
//!
//! `cargo run --release -p ringkv --example checkpoint_load [DIR] [GIB]`
//! (DIR defaults to a fresh directory under ./ringkv-data, on a disk that does
//! O_DIRECT; GIB 1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringkv::{Db, Durability, Options};

const VALUE_BYTES: usize = 1024;
const WRITERS: usize = 2;
/// How long the writers run before the checkpoints, for the baseline.
const BASELINE: Duration = Duration::from_secs(10);

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Overwrites random keys of `keys` until `stop`, recording each put's latency.
fn writer(db: &Db, keys: u64, seed: u64, stop: &AtomicBool) -> Histogram<u64> {
    let mut histogram = Histogram::new(3).expect("3 significant figures");
    let mut state = seed | 1;
    let value = vec![0x5a; VALUE_BYTES];
    while !stop.load(Ordering::Relaxed) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let started = Instant::now();
        db.put(key(state % keys), &value).expect("put");
        let micros = started.elapsed().as_micros() as u64;
        histogram.record(micros.max(1)).expect("in range");
    }
    histogram
}

/// Runs the writers while `during` runs (or for `at_least`, whichever is longer); their
/// merged latencies.
fn with_writers(db: &Db, keys: u64, at_least: Duration, during: impl FnOnce()) -> Histogram<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..WRITERS as u64)
        .map(|seed| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || writer(&db, keys, seed + 1, &stop))
        })
        .collect();
    let started = Instant::now();
    during();
    std::thread::sleep(at_least.saturating_sub(started.elapsed()));
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::new(3).expect("3 significant figures");
    for thread in threads {
        all.add(thread.join().expect("writer"))
            .expect("same bounds");
    }
    all
}

fn report(what: &str, h: &Histogram<u64>, took: Duration) {
    println!(
        "{what}: {} puts in {:.1} s ({:.0}/s), p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        h.len(),
        took.as_secs_f64(),
        h.len() as f64 / took.as_secs_f64(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ringkv::tune_malloc();
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ringkv-data".to_owned());
    let gib: f64 = args.next().map_or(Ok(1.0), |s| s.parse())?;
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let keys = (gib * f64::from(1 << 30) / VALUE_BYTES as f64) as u64;
    let options = Options::default()
        .durability(Durability::Sync)
        .cache_bytes(64 << 20);
    let db = Db::open(dir.path().join("db"), options)?;
    let loading = Instant::now();
    let value = vec![0xa5; VALUE_BYTES];
    for chunk in (0..keys).collect::<Vec<_>>().chunks(256) {
        let entries: Vec<_> = chunk.iter().map(|&i| (key(i), value.as_slice())).collect();
        db.put_many(&entries)?;
    }
    db.flush()?;
    let stats = db.stats()?;
    println!(
        "loaded {keys} keys of {VALUE_BYTES} bytes in {:.1} s: {:.0} MiB live, {:.0} MiB on disk, {} substores",
        loading.elapsed().as_secs_f64(),
        mib(stats.live_bytes),
        mib(stats.disk_bytes),
        stats.substores
    );
    let started = Instant::now();
    let baseline = with_writers(&db, keys, BASELINE, || {});
    report("writers alone", &baseline, started.elapsed());
    for n in 1..=2 {
        let target = dir.path().join(format!("checkpoint-{n}"));
        let mut taken = None;
        let started = Instant::now();
        let during = with_writers(&db, keys, Duration::ZERO, || {
            taken = Some(db.checkpoint(&target));
        });
        let taken = taken.expect("ran")?;
        report(
            &format!("writers during checkpoint {n}"),
            &during,
            started.elapsed(),
        );
        println!(
            "checkpoint {n}: {:.2} s, writes paused {:.1} ms; {} files linked ({:.0} MiB), {} copied ({:.0} MiB)",
            taken.elapsed.as_secs_f64(),
            taken.paused.as_secs_f64() * 1e3,
            taken.linked_files,
            mib(taken.linked_bytes),
            taken.copied_files,
            mib(taken.copied_bytes)
        );
    }
    db.close()?;
    Ok(())
}
