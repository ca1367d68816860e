//! Write batches across cores under SIGKILL: a child process runs writers whose batches
//! span both cores (their own keys, and half of the time a shared group that the
//! writers contend for) and prints every acknowledged batch; the parent kills it at a
//! random moment and reopens the directory, with 1, 2 and 3 cores in turn (a batch
//! the kill left pending is applied by whichever core owns its keys now). After each
//! kill every batch is whole or absent, every acknowledged one present.

mod support;

use std::time::Duration;

use ringkv::{Db, Durability, Options};
use support::batches::{WRITERS, Writer, batch_of, check};

const CHILD_DIR: &str = "RINGKV_BATCH_CHILD_DIR";
const CHILD_BASE: &str = "RINGKV_BATCH_CHILD_BASE";
const CHILD_DURABILITY: &str = "RINGKV_BATCH_CHILD_DURABILITY";

/// Buffered runs have the smallest batch log (64 KiB), so its resets run often.
fn options(cores: usize, durability: Durability) -> Options {
    let batch_log_bytes = match durability {
        Durability::Buffered => 64 << 10,
        _ => 64 << 20,
    };
    Options::default()
        .batch_log_bytes(batch_log_bytes)
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .flush_interval(Duration::from_millis(5))
}

/// Whether batch `n` of `writer` deletes its keys, and whether it takes the shared
/// ones: fixed by the numbers, so that the parent knows what the child tried.
fn shape(writer: usize, n: u64) -> (bool, bool) {
    let h = (n ^ (writer as u64) << 40).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 20) % 6 == 0, (h >> 30) % 2 == 0)
}

/// The child: writers apply batches `base + 1`, `base + 2`, … until killed, printing
/// `ack W N` after each one acknowledged durable (in Buffered mode, every fourth, by a
/// flush after it; `sent W N` after the others).
#[test]
fn batch_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // only runs when the parent starts it
    };
    let base: u64 = std::env::var(CHILD_BASE).unwrap().parse().unwrap();
    let durability = match std::env::var(CHILD_DURABILITY).unwrap().as_str() {
        "sync" => Durability::Sync,
        _ => Durability::Buffered,
    };
    let db = Db::open(&dir, options(2, durability)).unwrap();
    println!("ready");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let db = &db;
            s.spawn(move || {
                for n in base + 1.. {
                    let (delete, shared) = shape(w, n);
                    db.write(batch_of(w, n, delete, shared)).unwrap();
                    // A Buffered batch is acknowledged durable by a flush after it.
                    match durability {
                        Durability::Buffered if n % 4 != 0 => println!("sent {w} {n}"),
                        Durability::Buffered => {
                            db.flush().unwrap();
                            println!("ack {w} {n}");
                        }
                        _ => println!("ack {w} {n}"),
                    }
                }
            });
        }
    });
}

fn run_child(
    dir: &std::path::Path,
    base: u64,
    durability: &str,
    kill_after: Duration,
) -> Vec<String> {
    let envs = [
        (CHILD_DIR, dir.display().to_string()),
        (CHILD_BASE, base.to_string()),
        (CHILD_DURABILITY, durability.to_owned()),
    ];
    support::run_and_kill("batch_crash_child", &envs, kill_after)
}

/// What each writer of a round tried and had acknowledged, from the child's lines.
fn writers_after(lines: &[String], base: u64, before: &[Writer]) -> Vec<Writer> {
    let mut writers = before.to_vec();
    let (mut last_ack, mut last_sent) = ([None; WRITERS], [None; WRITERS]);
    for line in lines.iter() {
        let (last, line) = match (line.strip_prefix("ack "), line.strip_prefix("sent ")) {
            (Some(line), _) => (&mut last_ack, line),
            (_, Some(line)) => (&mut last_sent, line),
            _ => continue,
        };
        let (w, n) = line.split_once(' ').unwrap();
        let (w, n): (usize, u64) = (w.parse().unwrap(), n.parse().unwrap());
        last[w] = Some(n);
    }
    for (w, writer) in writers.iter_mut().enumerate() {
        if let Some(n) = last_ack[w] {
            writer.acked = n;
        }
        // The batch after the last one the writer was answered for was in flight.
        writer.tried = last_ack[w].max(last_sent[w]).unwrap_or(base) + 1;
        for n in base + 1..=writer.tried {
            if shape(w, n).0 {
                writer.deletes.insert(n);
            }
        }
    }
    writers
}

fn crash_rounds(durability: &str, rounds: u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut writers = vec![Writer::default(); WRITERS];
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("{durability}: kill times from seed {seed}");
    let mut acked = 0;
    for round in 1..=rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let base = round * 1_000_000;
        let lines = run_child(
            dir.path(),
            base,
            durability,
            Duration::from_millis(100 + seed % 300),
        );
        assert!(
            lines.iter().any(|l| l.ends_with("ready")),
            "the child did not start: {lines:?}"
        );
        acked += lines.iter().filter(|l| l.starts_with("ack ")).count();
        writers = writers_after(&lines, base, &writers);
        let cores = 1 + (round as usize % 3);
        let db = Db::open(dir.path(), options(cores, Durability::Sync)).unwrap();
        let shown = check(&db, &writers, seed, round);
        db.close().unwrap();
        for (writer, n) in writers.iter_mut().zip(shown) {
            writer.acked = n;
        }
    }
    assert!(acked > 0, "no batch was acknowledged before the kills");
    eprintln!("{durability}: {rounds} kills, {acked} batches acknowledged");
}

#[test]
fn killed_mid_batch_sync() {
    crash_rounds("sync", 6);
}

#[test]
fn killed_mid_batch_buffered() {
    crash_rounds("buffered", 6);
}
