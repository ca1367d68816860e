//! Crash tests with real processes: a child writes from several threads and prints every
//! acknowledged write; the parent kills it with SIGKILL at a random moment, reopens the
//! directory and checks. Repeated on the same directory.
//!
//! - `Durability::Sync`: every acknowledged write is present, with its value or a later
//!   one written by the same thread (never an older one, never an invented one).
//! - `Durability::Buffered`: the database opens cleanly and every value it holds is one
//!   that was written (well formed for its key and version).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkv::{Db, Durability, Options};

const CHILD_DIR: &str = "RINGKV_CRASH_CHILD_DIR";
const CHILD_MODE: &str = "RINGKV_CRASH_CHILD_MODE";
const CHILD_ROUND: &str = "RINGKV_CRASH_CHILD_ROUND";
const THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 64;

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

/// The child: writes until killed, printing `ack KEY VERSION` after each acknowledged put.
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
    let keys_per_thread = if mode == "split" {
        1024
    } else {
        KEYS_PER_THREAD
    };
    if mode == "split" {
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
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let key = format!("t{t}-k{}", i % keys_per_thread);
                    // Versions grow across rounds so that later rounds overwrite.
                    let version = round * 1_000_000 + i;
                    db.put(&key, value(&key, version)).unwrap();
                    println!("ack {key} {version}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn run_child(dir: &std::path::Path, mode: &str, round: u64, kill_after: Duration) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // The kill lands `kill_after` into the writes (opening many substores takes a while).
    let started = ready_rx.recv_timeout(Duration::from_secs(60)).is_ok();
    if started {
        std::thread::sleep(kill_after);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

fn crash_rounds(mode: &str, durability: Durability, rounds: u64) -> u64 {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
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
        for line in lines.iter().filter_map(|l| l.strip_prefix("ack ")) {
            let (key, version) = line.split_once(' ').unwrap();
            let version: u64 = version.parse().unwrap();
            let slot = acked.entry(key.to_owned()).or_default();
            *slot = (*slot).max(version);
            total_acks += 1;
        }
        let started = Instant::now();
        let db = Db::open(dir.path(), options(durability)).unwrap();
        let reopen = started.elapsed();
        let mut found = 0;
        db.for_each(|k, v| {
            let key = std::str::from_utf8(k).unwrap();
            version_of(key, v);
            found += 1;
        })
        .unwrap();
        if durability == Durability::Sync {
            for (key, &version) in &acked {
                let stored = db.get(key).unwrap().unwrap_or_else(|| {
                    panic!("round {round}: acknowledged {key} v{version} is missing")
                });
                let got = version_of(key, &stored);
                assert!(
                    got >= version,
                    "round {round}: {key} went back from v{version} to v{got}"
                );
            }
            // A put in flight on each writer thread may have landed without its line.
            assert!(
                found <= acked.len() + THREADS as usize,
                "round {round}: {found} keys but only {} acknowledged",
                acked.len()
            );
        }
        let substores = db.stats().unwrap().substores;
        eprintln!(
            "{mode} round {round}: killed after {kill_after:?}, {total_acks} acks so far, \
             {found} keys in {substores} substores, reopened in {reopen:?}"
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
fn sigkill_during_compaction_loses_no_acknowledged_write() {
    // The same checks as the Sync test, while compaction runs non-stop in the child.
    crash_rounds("compact", Durability::Sync, 6);
}
