//! Online checkpoints (`Db::checkpoint`): a checkpoint opens and holds exactly the
//! state it was taken at, whatever the database does afterwards (writes, deletes,
//! compaction removing the extents it shares); one taken under load from writers on
//! every core, with batches, splits and compaction running, is one instant (an
//! acknowledged sequence of `Sync` puts is a prefix, every batch all or nothing); and
//! it refuses a target that exists.

mod support;

use support::tempdir;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ringkv::{Db, Durability, Error, Options, SplitMode, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(cores: usize, durability: Durability) -> Options {
    Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
}

/// Random puts, overwrites and deletes over 400 keys, applied to `db` and `model`.
fn churn(db: &Db, model: &mut Model, seed: u64, ops: usize) {
    let mut next = support::rng(seed);
    for i in 0..ops {
        let key = format!("key-{:03}", next() % 400).into_bytes();
        if next() % 5 == 0 {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let value = vec![b'a' + (i % 26) as u8; 500 + (next() % 1_500) as usize];
            db.put(&key, &value).unwrap();
            model.insert(key, value);
        }
    }
}

/// Opens the checkpoint at `path` (after `ringkv::verify` finds it sound) and lists it.
fn open_checkpoint(path: &Path, cores: usize) -> Model {
    let report = ringkv::verify(path).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert!(problems.is_empty(), "{problems:?}");
    let db = Db::open(path, options(cores, Durability::Sync)).unwrap();
    let listed = support::listing(&db);
    db.close().unwrap();
    listed
}

#[test]
fn a_checkpoint_holds_the_state_it_was_taken_at() {
    for durability in [Durability::Sync, Durability::Buffered] {
        let dir = tempdir();
        let db = Db::open(dir.path().join("db"), options(2, durability)).unwrap();
        let mut model = Model::new();
        churn(&db, &mut model, 1, 6_000);
        // Records nothing overwrites, ~128 KiB a leaf: sealed extents compaction keeps
        // (churn alone can leave none, when compaction has just rewritten them all).
        for i in 0..2_000 {
            let (key, value) = (format!("kept-{i:05}").into_bytes(), vec![b'k'; 1_000]);
            db.put(&key, &value).unwrap();
            model.insert(key, value);
        }
        let target = dir.path().join("backups/one");
        let stats = db.checkpoint(&target).unwrap();
        assert!(stats.linked_files > 16, "{stats:?}"); // metadata files, sealed extents
        assert!(stats.copied_files > 0, "{stats:?}"); // open extents
        // The database goes on; compaction removes extents the checkpoint shares.
        let mut later = model.clone();
        churn(&db, &mut later, 2, 3_000);
        db.compact().unwrap();
        assert_eq!(support::listing(&db), later, "{durability:?}");
        assert_eq!(open_checkpoint(&target, 1), model, "{durability:?}");
        assert_eq!(open_checkpoint(&target, 3), model, "{durability:?}");
        db.close().unwrap();
        let db = Db::open(dir.path().join("db"), options(2, durability)).unwrap();
        assert_eq!(support::listing(&db), later, "{durability:?}");
    }
}

#[test]
fn open_extents_of_a_mebibyte_or_more_are_sealed_and_linked() {
    let dir = tempdir();
    let options = options(2, Durability::Buffered).extent_size_bytes(8 << 20);
    let db = Db::open(dir.path().join("db"), options.clone()).unwrap();
    let mut model = Model::new();
    for i in 0..32_000u32 {
        let key = format!("key-{i:05}").into_bytes();
        let value = vec![b'a' + (i % 26) as u8; 1_000];
        db.put(&key, &value).unwrap();
        model.insert(key, value);
    }
    let target = dir.path().join("cp");
    let stats = db.checkpoint(&target).unwrap();
    // About 2 MiB of records in each of the 16 open extents: all sealed and linked.
    assert_eq!(stats.copied_files, 0, "{stats:?}");
    assert!(stats.linked_bytes > 30 << 20, "{stats:?}");
    // The database goes on writing, into new extents.
    churn(&db, &mut model.clone(), 3, 1_000);
    assert_eq!(open_checkpoint(&target, 2), model);
}

#[test]
fn a_checkpoint_refuses_a_target_that_exists_and_a_partial_one() {
    let dir = tempdir();
    let db = Db::open(dir.path().join("db"), options(1, Durability::Sync)).unwrap();
    db.put("k", "v").unwrap();
    let exists = dir.path().join("exists");
    std::fs::create_dir(&exists).unwrap();
    let refused = db.checkpoint(&exists).unwrap_err();
    assert!(
        matches!(&refused, Error::Io { path, .. } if *path == exists),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_dir(&exists).unwrap().count(),
        0,
        "left untouched"
    );
    let target = dir.path().join("cp");
    std::fs::create_dir(dir.path().join("cp.partial")).unwrap();
    let refused = db.checkpoint(&target).unwrap_err();
    assert!(refused.to_string().contains("interrupted"), "{refused}");
    assert!(!target.exists());
    std::fs::remove_dir(dir.path().join("cp.partial")).unwrap();
    db.checkpoint(&target).unwrap();
    assert!(!dir.path().join("cp.partial").exists());
    assert_eq!(open_checkpoint(&target, 1).len(), 1);
}

/// Keys of the batch writer: each batch sets all of them to its number.
const BATCH_KEYS: usize = 8;

fn batch_key(i: usize) -> String {
    format!("batch-{i}")
}

fn seq_key(n: u64) -> String {
    format!("seq-{n:08}")
}

#[test]
fn a_checkpoint_under_load_is_one_instant() {
    for mode in [SplitMode::Copy, SplitMode::HandOver] {
        under_load(mode);
    }
}

/// One writer puts `seq-N` in order (each `Sync` put acknowledged before the next),
/// another writes batches over keys on every core, a third churns values big enough
/// to split leaves; checkpoints are taken meanwhile. Each must hold a prefix of the
/// sequence, every batch whole, and pass `verify`.
fn under_load(mode: SplitMode) {
    let dir = tempdir();
    let options = options(2, Durability::Sync)
        .split_mode(mode)
        .split_threshold_bytes(96 << 10)
        .compaction_interval(Duration::from_millis(1));
    let db = Db::open(dir.path().join("db"), options).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [0, 1, 2].map(|role| {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || write_until(&db, &stop, role))
    });
    let mut checkpoints = Vec::new();
    for n in 0..6 {
        std::thread::sleep(Duration::from_millis(150));
        let target = dir.path().join(format!("cp-{n}"));
        let stats = db.checkpoint(&target).unwrap();
        checkpoints.push((target, stats));
    }
    stop.store(true, Ordering::SeqCst);
    let written = writers.map(|w| w.join().unwrap());
    assert!(written.iter().all(|&n| n > 0), "{written:?}");
    for (target, stats) in &checkpoints {
        let state = open_checkpoint(target, 1);
        check_one_instant(&state, target, mode);
        assert!(stats.paused < stats.elapsed, "{stats:?}");
    }
    let substores = db.stats().unwrap().substores;
    assert!(substores > 16, "{mode:?}: no split happened ({substores})");
    db.close().unwrap();
}

#[test]
fn no_checkpoint_holds_part_of_a_batch() {
    let dir = tempdir();
    let db = Db::open(dir.path().join("db"), options(2, Durability::Sync)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [1, 1, 1].map(|role| {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || write_until(&db, &stop, role))
    });
    for n in 0..40 {
        std::thread::sleep(Duration::from_millis(5));
        let target = dir.path().join(format!("cp-{n}"));
        db.checkpoint(&target).unwrap();
        let state = open_checkpoint(&target, 2);
        check_one_instant(&state, &target, SplitMode::Copy);
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().unwrap();
    }
}

/// Writer `role`'s loop (see [`under_load`]); how many writes it made.
fn write_until(db: &Db, stop: &AtomicBool, role: usize) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        match role {
            0 => db.put(seq_key(n), n.to_string()).unwrap(),
            1 => {
                let mut batch = WriteBatch::new();
                for i in 0..BATCH_KEYS {
                    batch.put(batch_key(i), n.to_string());
                }
                db.write(batch).unwrap();
            }
            _ => {
                let keys = (0..50).map(|i| format!("big-{}", (n * 50 + i) % 4_000));
                let entries: Vec<_> = keys.map(|k| (k, vec![b'x'; 2_000])).collect();
                db.put_many(&entries).unwrap();
            }
        }
        n += 1;
    }
    n
}

fn check_one_instant(state: &Model, target: &Path, mode: SplitMode) {
    let seq: Vec<u64> = (state.keys())
        .filter_map(|k| k.strip_prefix(b"seq-"))
        .map(|n| std::str::from_utf8(n).unwrap().parse().unwrap())
        .collect();
    let prefix: Vec<u64> = (0..seq.len() as u64).collect();
    assert_eq!(
        seq, prefix,
        "{mode:?} {target:?}: puts acknowledged in order"
    );
    let batch: Vec<Option<&Vec<u8>>> = (0..BATCH_KEYS)
        .map(|i| state.get(batch_key(i).as_bytes()))
        .collect();
    assert!(
        batch.iter().all(|v| *v == batch[0]),
        "{mode:?} {target:?}: a batch seen in part: {batch:?}"
    );
}
