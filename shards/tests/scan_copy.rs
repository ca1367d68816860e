//! Scan pages that callers list from the copy of a core's key order the core publishes
//! (no trip to the core): every write acknowledged before a scan starts shows in it,
//! on this thread or another, through overwrites, deletes, splits of both kinds and
//! the copy's merges; and the copy is really used (`CoreStats::pages_from_copy`).
//!
//! `Sync` writes are acknowledged after a commit round, which publishes the copy
//! first; `Buffered` ones are applied without a round (a get of the key, queued behind
//! the put, waits for it here), so only the copy's change count keeps a caller from
//! listing a stale copy.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use ringkv::{Db, Durability, Options, SplitMode};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options(cores: usize, mode: SplitMode, durability: Durability) -> Options {
    Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(256 << 10)
        .io_memory_bytes(256 << 10)
        .split_mode(mode)
        .split_threshold_bytes(96 << 10)
        .compaction_interval(Duration::from_millis(1))
        // Rounds (which publish the copy and drop a stale order) only when Buffered
        // writes fill the journal: so that nothing else covers for a stale copy.
        .flush_interval(Duration::from_secs(600))
}

fn pages_from_copy(db: &Db) -> u64 {
    db.stats()
        .unwrap()
        .cores
        .iter()
        .map(|c| c.pages_from_copy)
        .sum()
}

fn pages_listed(db: &Db) -> u64 {
    db.stats()
        .unwrap()
        .cores
        .iter()
        .map(|c| c.pages_listed)
        .sum()
}

/// A xorshift generator: the same run every time.
fn generator(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// Scans `bounds` (limited to `limit`, forward or in reverse) and checks it against
/// the model.
fn check(db: &Db, model: &Model, from: &[u8], limit: usize, reverse: bool) {
    let bounds = (Bound::Included(from.to_vec()), Bound::Unbounded);
    let (got, want): (Vec<_>, Vec<_>) = match reverse {
        false => (
            db.range(bounds.clone()).limit(limit).collect(),
            model.range(bounds).take(limit).collect(),
        ),
        true => {
            let bounds = (Bound::Unbounded, Bound::Excluded(from.to_vec()));
            (
                db.range(bounds.clone()).reverse().limit(limit).collect(),
                model.range(bounds).rev().take(limit).collect(),
            )
        }
    };
    let got: Vec<(Vec<u8>, Vec<u8>)> = (got.into_iter())
        .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = (want.into_iter())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, want, "from {from:?}, limit {limit}, reverse {reverse}");
}

#[test]
fn every_write_acknowledged_before_a_scan_shows_in_it() {
    // One core: its leaves grow alike and split about together, after which most
    // writes reach leaves the order did not cover.
    let runs = [
        (2, SplitMode::Copy, Durability::Sync),
        (2, SplitMode::HandOver, Durability::Buffered),
        (1, SplitMode::Copy, Durability::Buffered),
        (1, SplitMode::HandOver, Durability::Buffered),
    ];
    for (cores, mode, durability) in runs {
        let dir = tempdir();
        let db = Db::open(dir.path(), options(cores, mode, durability)).unwrap();
        let (mut model, mut next) = (Model::new(), generator(0x5eed));
        for step in 0..2_500u64 {
            let key = format!("k{:06}", next() % 100_000).into_bytes();
            match next() % 4 {
                0 => {
                    db.delete(&key).unwrap();
                    model.remove(&key);
                }
                _ => {
                    let value = format!("{step}:{}", "v".repeat((next() % 3_000) as usize));
                    db.put(&key, value.as_bytes()).unwrap();
                    model.insert(key.clone(), value.into_bytes());
                }
            }
            db.get(&key).unwrap(); // a Buffered write applied
            check(&db, &model, &key, 3, false); // where the write was
            let from = format!("k{:06}", next() % 101_000).into_bytes();
            let limit = 1 + (next() % 60) as usize;
            check(&db, &model, &from, limit, next() % 3 == 0);
            check(&db, &model, &from, limit, false); // again: mostly from the copy
        }
        let stats = db.stats().unwrap();
        assert!(
            stats.substores > 16,
            "{mode:?}: no split happened ({})",
            stats.substores
        );
        let pages = pages_from_copy(&db);
        assert!(
            pages > 1_000,
            "{mode:?} {durability:?}: the copy was not used"
        );
        db.close().unwrap();
    }
}

#[test]
fn a_write_acknowledged_on_another_thread_shows_in_a_scan() {
    for durability in [Durability::Sync, Durability::Buffered] {
        written_on_one_thread_scanned_on_another(durability);
    }
}

/// Over 2,000 old keys `k00000`, `k00002`, ...: puts a new key between two old ones,
/// puts a new value to an old one (`k00000`, `k00004`, ...), or deletes an old one
/// (`k00002`, `k00006`, ...); the key, and whether it is there now (with the value
/// `new`). Each key only ever goes one way, so a check made after later writes (on
/// another thread) still holds.
fn write_between(db: &Db, next: &mut impl FnMut() -> u64) -> (String, bool) {
    let i = next() % 2_000;
    let (key, present) = match next() % 3 {
        0 => (format!("k{:05}", 2 * i + 1), true),
        1 => (format!("k{:05}", 2 * (i & !1)), true),
        _ => (format!("k{:05}", 2 * (i | 1)), false),
    };
    match present {
        true => db.put(&key, NEW).unwrap(),
        false => db.delete(&key).unwrap(),
    }
    (key, present)
}

/// The value [`write_between`] puts.
const NEW: &[u8] = b"new";

/// Whether a scan's first item is `key` with the value [`write_between`] puts.
fn first_is_new(first: Option<(Bytes, Bytes)>, key: &[u8]) -> bool {
    first.is_some_and(|(k, v)| k.as_ref() == key && v.as_ref() == NEW)
}

fn written_on_one_thread_scanned_on_another(durability: Durability) {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2, SplitMode::Copy, durability)).unwrap();
    for i in 0..2_000u32 {
        db.put(format!("k{:05}", 2 * i), b"old").unwrap();
    }
    let (told, heard) = mpsc::channel::<(Vec<u8>, bool)>();
    std::thread::scope(|s| {
        let db = &db;
        s.spawn(move || {
            let mut next = generator(7);
            for _ in 0..1_500 {
                let (key, present) = write_between(db, &mut next);
                db.get(&key).unwrap(); // a Buffered write applied
                told.send((key.into_bytes(), present)).unwrap();
            }
        });
        for (key, present) in heard {
            let first = db.range(key.clone()..).limit(1).next().map(|i| i.unwrap());
            let found = first_is_new(first, &key);
            assert_eq!(found, present, "{:?}", String::from_utf8_lossy(&key));
        }
    });
    assert!(
        pages_from_copy(&db) > 300,
        "{durability:?}: the copy was not used"
    );
    db.close().unwrap();
}

/// A thread's own `Buffered` write shows in its next scan at once, though the write
/// returned before its core applied it: the thread lays its own queued puts over a
/// page it lists from a copy (a new key, a new value), and a delete waits for its
/// core. The copy is used.
#[test]
fn a_thread_scans_its_own_queued_writes() {
    let dir = tempdir();
    let db = Db::open(
        dir.path(),
        options(2, SplitMode::Copy, Durability::Buffered),
    )
    .unwrap();
    for i in 0..2_000u32 {
        db.put(format!("k{:05}", 2 * i), b"old").unwrap();
    }
    let mut next = generator(11);
    for _ in 0..3_000 {
        let (key, present) = write_between(&db, &mut next);
        let first = db
            .range(key.as_bytes()..)
            .limit(1)
            .next()
            .map(|i| i.unwrap());
        assert_eq!(first_is_new(first, key.as_bytes()), present, "{key}");
    }
    assert!(pages_from_copy(&db) > 300, "the copy was not used");
    db.close().unwrap();
}

/// A `Buffered` write, which no commit round publishes before it is acknowledged, does
/// not leave the copy stale until a scan takes the trip: the core publishes it again
/// as its queue runs dry, so the scans after it list from the copy.
#[test]
fn a_buffered_write_is_published_without_a_scan_to_ask() {
    let dir = tempdir();
    let db = Db::open(
        dir.path(),
        options(1, SplitMode::Copy, Durability::Buffered),
    )
    .unwrap();
    for i in 0..2_000u32 {
        db.put(format!("k{:05}", 2 * i), b"old").unwrap();
    }
    while pages_from_copy(&db) == 0 {
        assert_eq!(db.prefix("k").limit(1).count(), 1);
        std::thread::sleep(Duration::from_millis(1));
    }
    let (listed, rounds) = (pages_listed(&db), 100);
    for i in 0..rounds {
        let key = format!("k{:05}", 2 * i + 1);
        db.put(&key, NEW).unwrap();
        db.get(&key).unwrap(); // applied
        std::thread::sleep(Duration::from_millis(2));
        let first = db.range(key.as_bytes()..).limit(1).next();
        assert!(first_is_new(first.map(|i| i.unwrap()), key.as_bytes()));
    }
    let trips = pages_listed(&db) - listed;
    assert!(
        trips < rounds / 2,
        "{trips} of {rounds} scans took the trip"
    );
    db.close().unwrap();
}
