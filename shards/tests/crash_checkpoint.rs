//! Checkpoints killed half way, with real processes: a child writes `Sync` puts in
//! order and takes checkpoints in a loop; the parent kills it with SIGKILL at a random
//! moment. Then every checkpoint directory that exists (finished, even if the child
//! died before saying so) passes `ringkv::verify`, opens read-only and holds a prefix
//! of the puts; what an interrupted one left is only `NAME.partial`; and the database
//! itself reopens with every acknowledged put.

mod support;

use std::path::Path;
use std::time::Duration;

use ringkv::{Db, Durability, Options};

const CHILD_DIR: &str = "RINGKV_CHECKPOINT_CHILD_DIR";
const CHILD_ROUND: &str = "RINGKV_CHECKPOINT_CHILD_ROUND";
const ROUNDS: u64 = 4;

fn options() -> Options {
    Options::default()
        .cores(2)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
}

fn seq_key(n: u64) -> String {
    format!("seq-{n:08}")
}

/// The child: one thread puts `seq-N` (printing `ack N` once acknowledged), the test
/// thread takes checkpoints `r{round}-{k}` (printing `done K` after each) until killed.
#[test]
fn checkpoint_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // only runs when the parent starts it
    };
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let dir = Path::new(&dir);
    let db = Db::open(dir.join("db"), options()).unwrap();
    let first = support::listing(&db).len() as u64;
    let writer = db.clone();
    std::thread::spawn(move || {
        for n in first.. {
            writer.put(seq_key(n), vec![b'v'; 500]).unwrap();
            println!("ack {n}");
        }
    });
    println!("ready");
    for k in 0.. {
        db.checkpoint(dir.join(format!("checkpoints/r{round}-{k}")))
            .unwrap();
        println!("done {k}");
    }
}

#[test]
fn a_killed_checkpoint_leaves_a_partial_directory_and_every_finished_one_opens() {
    support::raise_descriptor_limit();
    let dir = support::tempdir();
    let mut next = support::rng(7);
    let mut acked = 0;
    for round in 0..ROUNDS {
        let envs = [
            (CHILD_DIR, dir.path().display().to_string()),
            (CHILD_ROUND, round.to_string()),
        ];
        let kill_after = Duration::from_millis(100 + next() % 400);
        let lines = support::run_and_kill("checkpoint_child", &envs, kill_after);
        let acks = lines.iter().filter_map(|l| l.strip_prefix("ack "));
        if let Some(last) = acks.map(|n| n.parse::<u64>().unwrap()).max() {
            acked = acked.max(last + 1);
        }
        let done = lines.iter().filter(|l| l.starts_with("done ")).count();
        check_checkpoints(&dir.path().join("checkpoints"), round, done);
        let db = Db::open(dir.path().join("db"), options()).unwrap();
        let listed = support::listing(&db);
        let held = (0..acked).filter(|&n| listed.contains_key(seq_key(n).as_bytes()));
        assert_eq!(
            held.count() as u64,
            acked,
            "round {round}: acknowledged puts lost"
        );
        db.close().unwrap();
    }
}

/// Every finished checkpoint of `round` opens and holds a prefix of the puts; at least
/// `done` of them finished; anything else is an interrupted one's `.partial`.
fn check_checkpoints(dir: &Path, round: u64, done: usize) {
    let mut finished = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with(&format!("r{round}-")) {
            continue;
        }
        if name.ends_with(".partial") {
            continue; // what the kill interrupted: never opened as a checkpoint
        }
        finished += 1;
        let report = ringkv::verify(&path).unwrap();
        let problems: Vec<_> = report.problems().collect();
        assert!(problems.is_empty(), "{name}: {problems:?}");
        let db = Db::open(&path, options().read_only()).unwrap();
        let listed = support::listing(&db);
        let n = listed.len() as u64;
        assert!(
            (0..n).all(|i| listed.contains_key(seq_key(i).as_bytes())),
            "{name}: not a prefix"
        );
        db.close().unwrap();
    }
    assert!(
        finished >= done,
        "round {round}: {finished} checkpoints, {done} reported"
    );
}
