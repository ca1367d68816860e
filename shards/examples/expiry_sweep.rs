//! Issue 13's figure for TTL: the space of expired keys coming back over time, with no
//! one reading them. Three keys in four are written with a time to live, the fourth
//! without, interleaved (so every extent holds both and compaction must copy the live
//! quarter; with half expiring, extents would sit at the default garbage ratio of 0.5
//! and stay, as any extent half dead does);
//! then nothing is read or written, and once a second the database's keys, live bytes
//! and disk bytes are printed while the expiry sweepers delete the expired keys and
//! compaction reclaims their extents.
//!
//! `cargo run --release -p ringkv --example expiry_sweep [DIR] [KEYS] [TTL_SECONDS]`
//! (DIR defaults to a fresh directory under ./ringkv-data, on a disk that does
//! O_DIRECT; KEYS 200000 of 1000 bytes; TTL 10 s).

use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Options, PutOptions};

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
    let ttl = Duration::from_secs(args.next().map_or(Ok(10), |s| s.parse())?);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::tempdir_in(&base)?;
    // Buffered, so that loading takes a small part of the TTL.
    let db = Db::open(
        dir.path(),
        Options::default().durability(Durability::Buffered),
    )?;
    let value = vec![0x5au8; VALUE_BYTES];
    let expiring = PutOptions::new().ttl(ttl);
    let started = Instant::now();
    for i in 0..keys {
        match i % 4 {
            3 => db.put(key(i), &value)?,
            _ => db.put_with(key(i), &value, &expiring)?,
        }
    }
    db.flush()?;
    let written = started.elapsed();
    println!(
        "{keys} keys of {VALUE_BYTES} B written in {written:.1?}, 3 in 4 with a {ttl:?} \
         TTL; {} cores",
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
        let cores = stats.cores.iter();
        let swept: u64 = cores.clone().map(|c| c.expired_purged).sum();
        let compacted: u64 = cores.clone().map(|c| c.compaction.extents).sum();
        let errors: u64 = cores.map(|c| c.background_errors).sum();
        println!(
            "{t:>6.1} {:>9} {:>10.1} {:>10.1} {swept:>8} {compacted:>9} {errors:>8}",
            stats.keys,
            mib(stats.live_bytes),
            mib(stats.disk_bytes)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    db.close()?;
    Ok(())
}
