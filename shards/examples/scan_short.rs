//! Short ordered scans on one core, as YCSB E issues them: 200,000 keys of 16 bytes
//! with 256-byte values (all in the read cache), then 20,000 scans of 1..100 keys from
//! spread-out starts (SCANS of them: 20,000 by default), shared by THREADS threads (1 by
//! default). Prints the time a scan takes (wall time over scans: with 2 threads, what
//! the core can serve).
//!
//! `cargo run --release -p ringkv --example scan_short DIR [THREADS [SCANS]]` (DIR is
//! removed first).

use std::time::Instant;

use ringkv::{Db, Durability, Options};

const KEYS: u64 = 200_000;

fn key(i: u64) -> Vec<u8> {
    format!(
        "user{:012}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000_000
    )
    .into_bytes()
}

fn main() {
    ringkv::tune_malloc();
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("a directory"));
    let _ = std::fs::remove_dir_all(&dir);
    let options = Options::default()
        .cores(1)
        .durability(Durability::Buffered)
        .cache_bytes(256 << 20);
    let db = Db::open(&dir, options).unwrap();
    for i in 0..KEYS {
        db.put(key(i), vec![b'v'; 256]).unwrap();
    }
    db.flush().unwrap();
    let count = |n: usize, default: u64| {
        std::env::args()
            .nth(n)
            .map_or(default, |t| t.parse().expect("a count"))
    };
    let (threads, scans) = (count(2, 1), count(3, 20_000));
    let started = Instant::now();
    let items: u64 = std::thread::scope(|s| {
        let scanners: Vec<_> = (0..threads)
            .map(|t| {
                let db = &db;
                s.spawn(move || {
                    let mut items = 0;
                    for i in (t..scans).step_by(threads as usize) {
                        let len = 1 + (i * 7919 % 100) as usize;
                        for item in db.range(key(i * 31 % KEYS)..).limit(len) {
                            item.unwrap();
                            items += 1;
                        }
                    }
                    items
                })
            })
            .collect();
        scanners.into_iter().map(|t| t.join().unwrap()).sum()
    });
    let per_scan = started.elapsed().as_secs_f64() * 1e6 / scans as f64;
    println!("{scans} scans, {items} items, {per_scan:.1} µs a scan");
    db.close().unwrap();
}
