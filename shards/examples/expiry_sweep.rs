//! Issue 13's figure for TTL: the space of expired keys coming back over time, with no
//! one reading them. Half of the keys are written with a time to live, half without,
//! interleaved (so every extent holds both and compaction must copy the live half);
//! then nothing is read or written, and once a second the database's keys, live bytes
//! and disk bytes are printed while the expiry sweepers delete the expired keys and
//! compaction reclaims their extents.
//!
//! `cargo run --release -p ringkv --example expiry_sweep [DIR] [KEYS] [TTL_SECONDS]`
//! (DIR defaults to a fresh directory under ./ringkv-data, on a disk that does
//! O_DIRECT; KEYS 200000 of 1000 bytes; TTL 5 s).

use std::time::{Duration, Instant};

use ringkv::{Db, Options, PutOptions};

const VALUE_BYTES: usize = 1000;
/// How long the database is watched after the expiry.
const WATCH_AFTER_EXPIRY: Duration = Duration::from_secs(40);

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    k
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ringkv-data".to_owned());
    let keys: u64 = args.next().map_or(Ok(200_000), |s| s.parse())?;
    let ttl = Duration::from_secs(args.next().map_or(Ok(5), |s| s.parse())?);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    let db = Db::open(dir.path(), Options::default())?;
    let value = vec![0x5au8; VALUE_BYTES];
    let expiring = PutOptions::new().ttl(ttl);
    let started = Instant::now();
    for i in 0..keys {
        match i % 2 {
            0 => db.put_with(key(i), &value, &expiring)?,
            _ => db.put(key(i), &value)?,
        }
    }
    db.flush()?;
    let written = started.elapsed();
    println!(
        "{keys} keys of {VALUE_BYTES} B written in {written:.1?}, every other one with a \
         {ttl:?} TTL; {} cores",
        db.cores()
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10}",
        "t (s)", "keys", "live MiB", "disk MiB"
    );
    let expires = started + ttl;
    let end = expires + WATCH_AFTER_EXPIRY;
    while Instant::now() < end {
        let stats = db.stats()?;
        let t = Instant::now().duration_since(started).as_secs_f64();
        println!(
            "{t:>6.1} {:>9} {:>10.1} {:>10.1}",
            stats.keys,
            mib(stats.live_bytes),
            mib(stats.disk_bytes)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    db.close()?;
    Ok(())
}
