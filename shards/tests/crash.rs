//! Crash tests with real processes: a child writes from several threads and prints every
//! acknowledged write; the parent kills it with SIGKILL at a random moment, reopens the
//! directory and checks. Repeated on the same directory.
//!
//! - `Durability::Sync`: the database holds exactly the acknowledged puts and deletes,
//!   except that the one write each thread had in flight may have landed too: no
//!   acknowledged write missing, no deleted key back, nothing invented. Reader threads
//!   print every value they see (`saw KEY VERSION`): a value a reader saw before the
//!   kill is there after it, or overwritten or deleted by a later write that landed.
//! - `Durability::Buffered`: the database opens cleanly and every value it holds is one
//!   that was written (well formed for its key and version).
//!
//! After each kill `ringkv::verify` must find no problem (a kill leaves only what open
//! cleans up by design), and the parent reopens with 1, 2 or 3 cores in turn.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Options, SplitMode};

const CHILD_DIR: &str = "RINGKV_CRASH_CHILD_DIR";
const CHILD_MODE: &str = "RINGKV_CRASH_CHILD_MODE";
const CHILD_ROUND: &str = "RINGKV_CRASH_CHILD_ROUND";
const THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 64;
/// Reader threads of the child (Sync modes).
const READERS: u64 = 2;

fn options(durability: Durability) -> Options {
    Options::default()
        .cores(2)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .flush_interval(Duration::from_millis(5))
}

fn value(key: &str, version: u64) -> Vec<u8> {
    let len = (version * 37 % 3000) as usize;
    let mut v = format!("{key}:{version}:").into_bytes();
    v.extend((0..len).map(|i| (i as u64 ^ version) as u8));
    v
}

/// Parses and checks a stored value; returns its version.
fn version_of(key: &str, stored: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stored);
    let mut parts = text.splitn(3, ':');
    let (k, version) = (parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(k, key, "value stored under the wrong key");
    let version: u64 = version.parse().expect("a version number");
    assert!(
        stored == value(key, version).as_slice(),
        "{key} holds a value never written"
    );
    version
}

/// What thread `t` does as its `i`-th write of a round: a put, or every fifth a delete.
fn op_of(t: u64, round: u64, i: u64, keys_per_thread: u64) -> (String, u64, bool) {
    let key = format!("t{t}-k{}", i % keys_per_thread);
    (key, round * 1_000_000 + i, i % 5 != 4)
}

fn keys_per_thread(mode: &str) -> u64 {
    if mode == "split" || mode == "handover" {
        1024
    } else {
        KEYS_PER_THREAD
    }
}

/// The child: writes until killed, printing `ack T I` after each acknowledged write.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // only runs when the parent starts it
    };
    let mode = std::env::var(CHILD_MODE).unwrap_or_default();
    let durability = match mode.as_str() {
        "buffered" => Durability::Buffered,
        _ => Durability::Sync,
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let mut opts = options(durability);
    let keys_per_thread = keys_per_thread(&mode);
    if mode == "handover" {
        opts = opts.split_mode(SplitMode::HandOver);
    }
    if mode == "split" || mode == "handover" {
        // Leaves pass the threshold within the first round, so splits run while the
        // writes go on and the kill lands in the middle of some.
        opts = opts
            .split_threshold_bytes(64 << 10)
            .compaction_interval(Duration::from_millis(1));
    }
    if mode == "compact" {
        // Compaction everywhere, all the time: background passes right after writes,
        // and a thread running full passes.
        opts = opts
            .compaction_garbage_ratio(0.05)
            .compaction_interval(Duration::from_millis(1));
    }
    let db = Db::open(&dir, opts).unwrap();
    if mode == "compact" {
        let db = db.clone();
        std::thread::spawn(move || {
            loop {
                db.compact().unwrap();
            }
        });
    }
    println!("ready");
    if durability == Durability::Sync {
        for r in 0..READERS {
            let db = db.clone();
            std::thread::spawn(move || read_and_report(&db, r, keys_per_thread));
        }
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    // Versions grow across rounds so that later rounds overwrite.
                    let (key, version, put) = op_of(t, round, i, keys_per_thread);
                    if put {
                        db.put(&key, value(&key, version)).unwrap();
                    } else {
                        db.delete(&key).unwrap();
                    }
                    println!("ack {t} {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A reader of the child: gets random keys, printing `saw KEY VERSION` for each value.
fn read_and_report(db: &Db, reader: u64, keys_per_thread: u64) {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ reader;
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("t{}-k{}", x % THREADS, (x >> 8) % keys_per_thread);
        if let Some(v) = db.get(&key).unwrap() {
            println!("saw {key} {}", version_of(&key, &v));
        }
    }
}

/// Every value a reader saw must still be there after the kill, or have been replaced by
/// a later write that landed (acknowledged, or the one in flight).
fn check_reads(
    lines: &[String],
    held: &HashMap<String, u64>,
    last_acked: &HashMap<String, (u64, bool)>,
    in_flight: &HashMap<String, (u64, bool)>,
) -> usize {
    let mut newest_seen: HashMap<&str, u64> = HashMap::new();
    for line in lines.iter().filter_map(|l| l.strip_prefix("saw ")) {
        let (key, version) = line.split_once(' ').unwrap();
        let seen = newest_seen.entry(key).or_default();
        *seen = (*seen).max(version.parse().unwrap());
    }
    for (&key, &seen) in &newest_seen {
        let later = |op: Option<&(u64, bool)>| op.is_some_and(|&(v, _)| v > seen);
        let replaced = later(last_acked.get(key)) || later(in_flight.get(key));
        let still = held.get(key).is_some_and(|&v| v >= seen);
        assert!(
            still || replaced,
            "{key}: a reader saw version {seen} before the kill; after it the key holds \
             {:?} and no later write landed",
            held.get(key)
        );
    }
    newest_seen.len()
}

fn run_child(dir: &std::path::Path, mode: &str, round: u64, kill_after: Duration) -> Vec<String> {
    let envs = [
        (CHILD_DIR, dir.display().to_string()),
        (CHILD_MODE, mode.to_owned()),
        (CHILD_ROUND, round.to_string()),
    ];
    support::run_and_kill("crash_child", &envs, kill_after)
}

/// The seed of the kill times: RINGKV_CRASH_SEED, or drawn from the clock; printed so
/// that a failing run can be replayed.
fn kill_seed(mode: &str) -> u64 {
    let seed = std::env::var("RINGKV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64 | 1
        });
    eprintln!("{mode}: kill times from RINGKV_CRASH_SEED={seed}");
    seed
}

fn crash_rounds(mode: &str, durability: Durability, rounds: u64) -> u64 {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let keys = keys_per_thread(mode);
    // What the database must hold: key -> version of its value (absent: no value).
    let mut expected: HashMap<String, u64> = HashMap::new();
    let mut seed = kill_seed(mode);
    let mut total_acks = 0;
    for round in 1..=rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = Duration::from_millis(150 + seed % 400);
        let lines = run_child(dir.path(), mode, round, kill_after);
        let started = lines.iter().any(|l| l.ends_with("ready"));
        assert!(
            started,
            "the child did not start ({} lines of output)",
            lines.len()
        );
        // Each thread acknowledges its writes in order; the one after its last ack may
        // have landed without a line.
        let mut next_op: HashMap<u64, u64> = (0..THREADS).map(|t| (t, 0)).collect();
        let mut last_acked: HashMap<String, (u64, bool)> = HashMap::new();
        for line in lines.iter().filter_map(|l| l.strip_prefix("ack ")) {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (u64, u64) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(next_op[&t], i, "thread {t} acknowledged out of order");
            next_op.insert(t, i + 1);
            let (key, version, put) = op_of(t, round, i, keys);
            last_acked.insert(key.clone(), (version, put));
            if put {
                expected.insert(key, version);
            } else {
                expected.remove(&key);
            }
            total_acks += 1;
        }
        let in_flight: HashMap<String, (u64, bool)> = next_op
            .iter()
            .map(|(&t, &i)| {
                let (key, version, put) = op_of(t, round, i, keys);
                (key, (version, put))
            })
            .collect();
        // What the kill left is what a crash leaves: verify finds no damage (its notes
        // are the torn tails and unfinished splits open cleans up).
        let report = ringkv::verify(dir.path()).unwrap();
        let problems: Vec<_> = report.problems().collect();
        assert!(
            problems.is_empty(),
            "round {round}: verify after the kill: {problems:?}"
        );
        // Reopened with another core count each round: leaves are reassigned, not moved.
        let cores = 1 + (round as usize % 3);
        let started = Instant::now();
        let db = Db::open(dir.path(), options(durability).cores(cores)).unwrap();
        let reopen = started.elapsed();
        let mut held: HashMap<String, u64> = HashMap::new();
        db.for_each(|k, v| {
            let key = std::str::from_utf8(k).unwrap();
            let version = version_of(key, v);
            assert!(
                held.insert(key.to_owned(), version).is_none(),
                "{key} listed twice"
            );
        })
        .unwrap();
        if durability == Durability::Sync {
            let mut all: Vec<&String> = expected.keys().chain(held.keys()).collect();
            all.sort();
            all.dedup();
            for key in all {
                let (want, got) = (expected.get(key).copied(), held.get(key).copied());
                let landed = in_flight.get(key).map(|&(v, put)| put.then_some(v));
                assert!(
                    got == want || landed == Some(got),
                    "round {round}: {key} holds {got:?}; acknowledged {want:?}, in flight {:?}",
                    in_flight.get(key)
                );
                assert_eq!(db.get(key).unwrap().map(|v| version_of(key, &v)), got);
            }
            let checked = check_reads(&lines, &held, &last_acked, &in_flight);
            eprintln!("{mode} round {round}: {checked} keys read before the kill checked");
            // What landed is the new baseline.
            expected = held.clone();
        }
        let stats = db.stats().unwrap();
        let ancestors = stats.cores.iter().flat_map(|c| &c.leaves);
        let ancestors = ancestors.filter(|l| l.ancestor).count();
        eprintln!(
            "{mode} round {round}: killed after {kill_after:?}, {total_acks} acks so far, \
             {} keys in {} substores ({ancestors} ancestors), reopened in {reopen:?}",
            held.len(),
            stats.substores
        );
        db.close().unwrap();
    }
    if durability == Durability::Sync {
        assert!(total_acks > 0, "no write was acknowledged before the kills");
    }
    let db = Db::open(dir.path(), options(durability)).unwrap();
    let stats = db.stats().unwrap();
    db.close().unwrap();
    stats.disk_bytes
}

#[test]
fn sigkill_during_sync_writes_loses_no_acknowledged_write() {
    crash_rounds("sync", Durability::Sync, 6);
}

#[test]
fn sigkill_during_buffered_writes_leaves_a_clean_database() {
    crash_rounds("buffered", Durability::Buffered, 4);
}

#[test]
fn sigkill_during_splits_loses_no_acknowledged_write() {
    // The same checks as the Sync test, while leaves split 16 ways in the child.
    crash_rounds("split", Durability::Sync, 6);
}

#[test]
fn sigkill_during_hand_over_splits_loses_no_acknowledged_write() {
    // The same checks while leaves are handed over to their children and the records
    // move behind live traffic (SplitMode::HandOver).
    crash_rounds("handover", Durability::Sync, 6);
}

#[test]
fn sigkill_during_compaction_loses_no_acknowledged_write() {
    // The same checks as the Sync test, while compaction runs non-stop in the child.
    crash_rounds("compact", Durability::Sync, 6);
}
