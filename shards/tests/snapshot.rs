//! Snapshots (`Db::snapshot`): a snapshot's gets and scans see the database as it was
//! when it was taken, while writers overwrite and delete (every key of a batch or
//! none, a prefix of acknowledged `Sync` puts); several snapshots at once each see
//! their own instant; background work waits while one is open and resumes when the
//! last is dropped; scans keep their snapshot open; past the memory budget the oldest
//! snapshot is released (its reads fail with `Error::SnapshotTooOld`), the others
//! read on.

mod support;

use support::tempdir;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ringkv::{Db, Durability, Error, Options, SplitMode, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Buffered)
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
        .compaction_interval(Duration::from_millis(1))
}

/// Random puts, overwrites and deletes over 300 keys, applied to `db` and `model`.
fn churn(db: &Db, model: &mut Model, seed: u64, ops: usize) {
    let mut next = support::rng(seed);
    for i in 0..ops {
        let key = format!("key-{:03}", next() % 300).into_bytes();
        if next() % 4 == 0 {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let value = format!("{seed}-{i}-").repeat(1 + (next() % 40) as usize);
            db.put(&key, value.as_bytes()).unwrap();
            model.insert(key, value.into_bytes());
        }
    }
}

/// Asserts `seen` is `expected`, naming the first key where they differ.
fn same(seen: &Model, expected: &Model) {
    let keys = seen.keys().chain(expected.keys());
    let differs = keys.into_iter().find(|k| seen.get(*k) != expected.get(*k));
    if let Some(key) = differs {
        let show = |v: Option<&Vec<u8>>| v.map(|v| String::from_utf8_lossy(v).into_owned());
        panic!(
            "{:?}: {:?} where {:?} was expected ({} keys seen, {} expected)",
            String::from_utf8_lossy(key),
            show(seen.get(key)),
            show(expected.get(key)),
            seen.len(),
            expected.len()
        );
    }
}

/// Everything the snapshot holds, by a full scan; and each key of `model` (and some
/// absent ones) by a get.
fn check(snapshot: &ringkv::Snapshot, model: &Model) {
    let scanned: Model = (snapshot.range::<&[u8]>(..))
        .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
        .collect::<ringkv::Result<_>>()
        .unwrap();
    same(&scanned, model);
    let reversed: Vec<Vec<u8>> = (snapshot.range::<&[u8]>(..).reverse().keys())
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert!(reversed.iter().rev().eq(model.keys()));
    for i in 0..300 {
        let key = format!("key-{i:03}");
        let value = snapshot.get(&key).unwrap();
        assert_eq!(
            value.as_deref(),
            model.get(key.as_bytes()).map(Vec::as_slice),
            "{key}"
        );
    }
    let prefix: Vec<Vec<u8>> = (snapshot.prefix("key-01").keys())
        .map(|k| k.unwrap().to_vec())
        .collect();
    let expected: Vec<Vec<u8>> = (model.keys())
        .filter(|k| k.starts_with(b"key-01"))
        .cloned()
        .collect();
    assert_eq!(prefix, expected);
}

#[test]
fn a_snapshot_keeps_its_instant_while_writes_and_compaction_go_on() {
    for cores in [1, 3] {
        let dir = tempdir();
        let db = Db::open(dir.path(), options(cores)).unwrap();
        let mut model = Model::new();
        churn(&db, &mut model, 1, 4_000);
        let first = db.snapshot().unwrap();
        let at_first = model.clone();
        churn(&db, &mut model, 2, 4_000);
        let second = db.snapshot().unwrap();
        let at_second = model.clone();
        churn(&db, &mut model, 3, 4_000);
        // Nothing moves while they are open, even on demand.
        assert_eq!(db.compact().unwrap().extents, 0);
        check(&first, &at_first);
        check(&second, &at_second);
        same(&support::listing(&db), &model);
        let stats = db.stats().unwrap();
        assert!(stats.cores.iter().all(|c| c.snapshots == 2), "{stats:?}");
        let kept: u64 = stats.cores.iter().map(|c| c.snapshot_versions).sum();
        assert!(kept > 100, "{kept}");
        // A scan keeps its snapshot open after the handle goes.
        let scan = first.range::<&[u8]>(..);
        drop(first);
        let scanned: Model = scan
            .map(|i| i.unwrap())
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        same(&scanned, &at_first);
        drop(second);
        // Unpinning is sent, not awaited: the stats request queues behind it.
        let stats = db.stats().unwrap();
        assert!(
            stats
                .cores
                .iter()
                .all(|c| c.snapshots == 0 && c.snapshot_versions == 0)
        );
        assert!(db.compact().unwrap().extents > 0, "compaction runs again");
        same(&support::listing(&db), &model);
    }
}

#[test]
fn past_the_memory_budget_the_oldest_snapshot_is_released_and_the_others_read_on() {
    let dir = tempdir();
    // One core: its share is the whole budget, ~40 versions of 300 keys.
    let budget = 3 << 10;
    let db = Db::open(dir.path(), options(1).snapshot_memory_bytes(budget)).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 1, 2_000);
    let old = db.snapshot().unwrap();
    let scan = old.range::<&[u8]>(..);
    // Writes past the budget release the old one; the young one's versions fit.
    churn(&db, &mut model, 2, 200);
    let young = db.snapshot().unwrap();
    let at_young = model.clone();
    churn(&db, &mut model, 3, 30);
    let kept = db.stats().unwrap().cores[0].snapshot_version_bytes;
    assert!(kept <= budget, "{kept} bytes kept");
    for key in at_young.keys().take(20) {
        match old.get(key) {
            Err(Error::SnapshotTooOld { budget_bytes }) => assert_eq!(budget_bytes, budget),
            other => panic!("{other:?}"),
        }
    }
    let scanned: Vec<_> = scan.collect();
    assert!(matches!(
        scanned.last(),
        Some(Err(Error::SnapshotTooOld { .. }))
    ));
    check(&young, &at_young);
    assert_eq!(db.stats().unwrap().cores[0].snapshots, 1);
    // Writes go on past the budget: the young one goes too, and work resumes.
    churn(&db, &mut model, 4, 2_000);
    assert!(matches!(
        young.get(b"key-001"),
        Err(Error::SnapshotTooOld { .. })
    ));
    let stats = db.stats().unwrap();
    assert_eq!(
        (stats.cores[0].snapshots, stats.cores[0].snapshot_versions),
        (0, 0)
    );
    assert!(db.compact().unwrap().extents > 0, "compaction runs again");
    drop((old, young));
    let later = db.snapshot().unwrap();
    check(&later, &model);
    drop(later);
    same(&support::listing(&db), &model);
}

#[test]
fn snapshots_see_one_instant_under_load_through_splits() {
    for mode in [SplitMode::Copy, SplitMode::HandOver] {
        let dir = tempdir();
        let options = options(2)
            .durability(Durability::Sync)
            .split_mode(mode)
            .split_threshold_bytes(96 << 10);
        let db = Db::open(dir.path(), options).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writers = [0, 1, 2].map(|role| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || write_until(&db, &stop, role))
        });
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(40));
            let snapshot = db.snapshot().unwrap();
            let seen: Model = (snapshot.range::<&[u8]>(..))
                .map(|i| i.unwrap())
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            check_one_instant(&seen);
            // Gets agree with the scan, however long after it they come.
            for (key, value) in seen.iter().step_by(37) {
                assert_eq!(snapshot.get(key).unwrap().as_deref(), Some(&value[..]));
            }
        }
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            assert!(writer.join().unwrap() > 0);
        }
        let substores = db.stats().unwrap().substores;
        assert!(substores > 16, "{mode:?}: no split happened ({substores})");
    }
}

const BATCH_KEYS: usize = 8;

/// Writer `role`: 0 puts `seq-N` in order, 1 writes batches setting every `batch-i` to
/// its number, 2 overwrites and deletes big values (splits and compaction).
fn write_until(db: &Db, stop: &AtomicBool, role: usize) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match role {
            0 => db.put(format!("seq-{n:08}"), n.to_string()).unwrap(),
            1 => {
                let mut batch = WriteBatch::new();
                for i in 0..BATCH_KEYS {
                    batch.put(format!("batch-{i}"), n.to_string());
                }
                db.write(batch).unwrap();
            }
            _ => {
                let key = format!("big-{}", n % 2_000);
                match n % 5 {
                    4 => db.delete(key).unwrap(),
                    _ => db.put(key, vec![b'x'; 1_500]).unwrap(),
                }
            }
        }
        n += 1;
    }
    n
}

fn check_one_instant(state: &Model) {
    let seq: Vec<u64> = (state.keys())
        .filter_map(|k| k.strip_prefix(b"seq-"))
        .map(|n| std::str::from_utf8(n).unwrap().parse().unwrap())
        .collect();
    assert!(
        seq.iter().copied().eq(0..seq.len() as u64),
        "acknowledged puts in order"
    );
    let batch: Vec<Option<&Vec<u8>>> = (0..BATCH_KEYS)
        .map(|i| state.get(format!("batch-{i}").as_bytes()))
        .collect();
    assert!(
        batch.iter().all(|v| *v == batch[0]),
        "a batch seen in part: {batch:?}"
    );
}

/// `for_each` (which holds a core while ancestors are read behind), snapshots and
/// checkpoints, all at once on a database with hand-over ancestors: each takes its
/// hold in turn and every one finishes (a watchdog fails the test after 60 s).
#[test]
fn holds_of_for_each_snapshots_and_checkpoints_share_the_cores() {
    let dir = tempdir();
    let options = options(2)
        .split_mode(SplitMode::HandOver)
        .split_threshold_bytes(96 << 10);
    let db = Db::open(dir.path().join("db"), options).unwrap();
    let mut model = Model::new();
    churn(&db, &mut model, 9, 2_000);
    // Values enough to split every leaf while the holds come and go.
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..4_000 {
                db.put(format!("big-{i:04}"), vec![b'b'; 1_000]).unwrap();
            }
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let lister = {
        let (db, done) = (db.clone(), done_tx.clone());
        std::thread::spawn(move || {
            for _ in 0..20 {
                support::listing(&db);
            }
            done.send(()).unwrap();
        })
    };
    let taker = {
        let (db, base, keys) = (db.clone(), dir.path().to_path_buf(), model.len());
        std::thread::spawn(move || {
            for n in 0..10 {
                let snapshot = db.snapshot().unwrap();
                db.checkpoint(base.join(format!("cp-{n}"))).unwrap();
                assert!(snapshot.range::<&[u8]>(..).keys().count() >= keys);
            }
            done_tx.send(()).unwrap();
        })
    };
    for _ in 0..2 {
        let waited = done_rx.recv_timeout(Duration::from_secs(60));
        assert!(waited.is_ok(), "a hold never came back");
    }
    lister.join().unwrap();
    taker.join().unwrap();
    writer.join().unwrap();
    let listed = support::listing(&db);
    assert_eq!(listed.len(), model.len() + 4_000);
    let ours: Model = listed
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"key-"))
        .collect();
    same(&ours, &model);
    assert!(db.stats().unwrap().substores > 16, "no split happened");
}
