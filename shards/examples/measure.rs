//! The figures issue 3 asks for, from one run on this machine:
//! single-thread `put` latency with `Sync`; `put` throughput with 16 writer threads
//! against 1 (group commit); `get` throughput from 2 threads, cached and uncached; one
//! thread's cached `get` latency (the hop) on one core and on every CPU; CPU used by an
//! idle open database over 10 seconds; `head` against an uncached `get` (issue 13: HEAD
//! answers from the index, no device read).
//!
//! `cargo run --release -p ringkv --example measure [DIR [head]]` (DIR defaults to a
//! fresh directory under ./ringkv-data; it must be on a disk that does O_DIRECT; `head`
//! runs the HEAD comparison alone).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringkv::{Db, Durability, Options};

const VALUE_BYTES: usize = 100;
const PHASE: Duration = Duration::from_secs(3);

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
    k
}

fn cpu_time() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Runs `threads` threads calling `op(thread, i)` for PHASE; returns operations/s.
fn throughput(threads: u64, op: impl Fn(u64, u64) + Send + Sync + 'static) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i);
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(PHASE);
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().for_each(|h| h.join().unwrap());
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ringkv-data".to_owned());
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    if std::env::args().nth(2).as_deref() == Some("head") {
        return head_against_get(dir.path());
    }
    let value = vec![0xa5u8; VALUE_BYTES];
    println!(
        "ringkv measure: {} ({} CPUs)",
        dir.path().display(),
        std::thread::available_parallelism()?
    );

    // 1. Single-thread Sync put latency.
    let db = Db::open(dir.path().join("sync"), Options::default())?;
    let mut latency = Histogram::<u64>::new(3)?;
    for i in 0..3000 {
        let started = Instant::now();
        db.put(key(i), &value)?;
        latency.record(started.elapsed().as_micros() as u64)?;
    }
    println!(
        "put, Sync, 1 thread, {VALUE_BYTES} B values: p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us ({} puts)",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.9),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max(),
        latency.len()
    );

    // 2. Group commit: 1 writer thread against 16.
    let mut rates = Vec::new();
    for threads in [1u64, 16] {
        let db2 = db.clone();
        let value = value.clone();
        let rate = throughput(threads, move |t, i| {
            db2.put(key(t << 40 | i), &value).unwrap();
        });
        rates.push(rate);
        println!("put, Sync, {threads:>2} threads: {rate:>9.0} puts/s");
    }
    println!(
        "group commit: 16 threads / 1 thread = {:.1}x",
        rates[1] / rates[0]
    );
    db.close()?;

    // 3. Gets from 2 threads: cached (everything fits) and uncached (cache off).
    const KEYS: u64 = 100_000;
    for (name, cache_bytes) in [("cached", 256u64 << 20), ("uncached", 0)] {
        let path = dir.path().join("gets");
        let options = Options::default()
            .durability(Durability::Buffered)
            .cache_bytes(cache_bytes);
        let db = Db::open(&path, options)?;
        if db.len()? == 0 {
            for i in 0..KEYS {
                db.put(key(i), &value)?;
            }
            db.flush()?;
        }
        if cache_bytes > 0 {
            for i in 0..KEYS {
                db.get(key(i))?; // warm the cache
            }
        }
        let db2 = db.clone();
        let rate = throughput(2, move |t, i| {
            let k = (i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ t) % KEYS;
            assert!(db2.get(key(k)).unwrap().is_some());
        });
        let stats = db.stats()?;
        let hits: u64 = stats.cores.iter().map(|c| c.cache_hits).sum();
        let misses: u64 = stats.cores.iter().map(|c| c.cache_misses).sum();
        println!(
            "get, 2 threads, {name:>8}: {rate:>9.0} gets/s (cache hits {hits}, misses {misses})"
        );
        db.close()?;
    }

    // 4. One thread's cached get, one at a time: the hop alone. On one core (a CPU left
    // for the caller) and on every CPU.
    let cpus = std::thread::available_parallelism()?.get();
    for cores in [1, cpus] {
        let options = Options::default()
            .cores(cores)
            .durability(Durability::Buffered)
            .cache_bytes(64 << 20);
        let db = Db::open(dir.path().join(format!("hop-{cores}")), options)?;
        for i in 0..10_000 {
            db.put(key(i), &value)?;
        }
        db.flush()?;
        let summary = latency_of(|n| {
            let k = key(n.wrapping_mul(0x2545_f491_4f6c_dd1d) % 10_000);
            assert!(db.get(k).unwrap().is_some());
        });
        println!("get, cached, 1 thread, {cores} cores: {summary}");
        db.close()?;
    }

    // 5. An idle open database, on one core (which spins after work) and on every CPU.
    for cores in [1, cpus] {
        let db = Db::open(
            dir.path().join(format!("idle-{cores}")),
            Options::default().cores(cores),
        )?;
        db.put("k", "v")?;
        db.get("k")?;
        let before = cpu_time();
        std::thread::sleep(Duration::from_secs(10));
        let used = cpu_time() - before;
        println!("idle open database, 10 s: {used:?} of CPU time ({cores} cores)");
        db.close()?;
    }

    head_against_get(dir.path())?;
    Ok(())
}

/// Part 6, HEAD against GET, one thread, the cache off. Each of 10,000 keys has a 4000-byte
/// value and 24 bytes of metadata; the database is reopened first, so the index (and
/// the metadata it holds) is rebuilt from the key summaries. A head answers from the
/// index (the hop alone), a get reads the device.
fn head_against_get(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let options = || Options::default().cache_bytes(0);
    let db = Db::open(dir.join("head"), options())?;
    let meta = |i: u64| format!("etag-{i:019}").into_bytes();
    for i in 0..10_000 {
        let with_meta = ringkv::PutOptions::new().meta(meta(i));
        db.put_with(key(i), vec![7u8; 4000], &with_meta)?;
    }
    db.close()?;
    let db = Db::open(dir.join("head"), options())?;
    let spread = |n: u64| n.wrapping_mul(0x2545_f491_4f6c_dd1d) % 10_000;
    let head = latency_of(|n| {
        let i = spread(n);
        assert_eq!(db.head(key(i)).unwrap().unwrap().meta, meta(i));
    });
    let get = latency_of(|n| assert!(db.get(key(spread(n))).unwrap().is_some()));
    println!("head, 1 thread, uncached, 24 B metadata: {head}");
    println!("get,  1 thread, uncached:                 {get}");
    db.close()?;
    Ok(())
}

/// Calls `op(n)` with n = 0, 1, 2 … for [`PHASE`]; its latency percentiles and rate.
fn latency_of(mut op: impl FnMut(u64)) -> String {
    let mut latency = Histogram::<u64>::new(3).expect("3 significant figures");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < PHASE {
        let t = Instant::now();
        op(n);
        latency
            .record(t.elapsed().as_nanos() as u64)
            .expect("in range");
        n += 1;
    }
    let us = |q| latency.value_at_quantile(q) as f64 / 1e3;
    format!(
        "p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, {:.0} ops/s",
        us(0.5),
        us(0.99),
        us(0.999),
        n as f64 / started.elapsed().as_secs_f64()
    )
}
