//! Atomic write batches (`Db::write`): what they change, what readers see while they run
//! on several cores, and that a power cut at any point leaves each batch wholly
//! present or wholly absent, with every acknowledged one present.

mod support;

use support::batches::{WRITERS, Writer, batch_of, check, shared_key};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ringkv::{CrashMode, Db, Durability, Error, Options, PutOptions, SimDisk, Ttl, WriteBatch};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options() -> Options {
    Options::default()
        .cores(2)
        .durability(Durability::Sync)
        .io_memory_bytes(256 << 10)
}

#[test]
fn a_batch_puts_and_deletes_across_cores_and_survives_reopen() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    for i in 0..32 {
        db.put(format!("old-{i}"), "x").unwrap();
    }
    let mut batch = WriteBatch::new();
    for i in 0..32 {
        batch.put(format!("new-{i}"), format!("v{i}"));
        batch.delete(format!("old-{i}"));
    }
    batch.put("twice", "first").put("twice", "second");
    assert_eq!(batch.len(), 66);
    db.write(batch).unwrap();
    let check = |db: &Db| {
        for i in 0..32 {
            let value = db.get(format!("new-{i}")).unwrap();
            assert_eq!(value.as_deref(), Some(format!("v{i}").as_bytes()));
            assert_eq!(db.get(format!("old-{i}")).unwrap(), None);
        }
        assert_eq!(db.get("twice").unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(db.len().unwrap(), 33);
    };
    check(&db);
    db.write(WriteBatch::new()).unwrap(); // nothing to do
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    check(&db);
    db.close().unwrap();
}

#[test]
fn a_batch_put_keeps_its_expiry_and_metadata() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    let mut batch = WriteBatch::new();
    let hour = Duration::from_secs(3600);
    batch.put_with("session", "v", &PutOptions::new().ttl(hour).meta("m1"));
    batch.put("plain", "p");
    db.write(batch).unwrap();
    let head = db.head("session").unwrap().unwrap();
    assert_eq!((head.value_len, head.meta_len), (1, 2));
    match db.ttl("session").unwrap() {
        Some(Ttl::In(left)) => assert!(left <= hour && left > hour / 2, "{left:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.ttl("plain").unwrap(), Some(Ttl::Never));
    db.close().unwrap();
}

#[test]
fn a_batch_with_a_key_past_the_limit_changes_nothing() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("fine", "v");
    batch.put(vec![b'k'; ringkv::KEY_LEN_MAX + 1], "v");
    assert!(matches!(db.write(batch), Err(Error::KeyTooLarge { .. })));
    assert_eq!(db.get("fine").unwrap(), None);
    db.close().unwrap();
}

/// One writer applies batches that set every key of a group to the batch's number;
/// readers read the group key by key. A reader that has seen batch n on one key sees
/// n or later on every key it reads after: no key's read goes back.
#[test]
fn a_reader_that_saw_a_batch_sees_all_of_it() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options().cache_bytes(1 << 20)).unwrap();
    let keys: Vec<String> = (0..8).map(|i| format!("group-{i}")).collect();
    let stop = AtomicBool::new(false);
    let batches = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for n in 1..=300u64 {
                let mut batch = WriteBatch::new();
                for key in &keys {
                    batch.put(key, n.to_string());
                }
                db.write(batch).unwrap();
                batches.store(n, Ordering::SeqCst);
            }
            stop.store(true, Ordering::SeqCst);
        });
        for reader in 0..2 {
            let (db, keys, stop) = (&db, &keys, &stop);
            s.spawn(move || {
                let mut passes = 0;
                while !stop.load(Ordering::SeqCst) {
                    let mut seen = 0u64;
                    // Readers start at different keys, so both directions across the
                    // cores are read.
                    for i in 0..keys.len() {
                        let key = &keys[(i + reader * 3) % keys.len()];
                        let n = db.get(key).unwrap().map_or(0, |v| {
                            std::str::from_utf8(&v).unwrap().parse::<u64>().unwrap()
                        });
                        assert!(n >= seen, "{key} went back from batch {seen} to {n}");
                        seen = n;
                    }
                    passes += 1;
                }
                assert!(passes > 0);
            });
        }
    });
    assert_eq!(batches.load(Ordering::SeqCst), 300);
    db.close().unwrap();
}

/// Writers whose batches overlap (a shared group of keys, taken in different orders)
/// and single puts of the same keys never deadlock, and each batch lands whole.
#[test]
fn overlapping_batches_and_single_writes_of_their_keys_all_finish() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options().durability(Durability::Buffered)).unwrap();
    let shared: Vec<String> = (0..6).map(|i| format!("shared-{i}")).collect();
    std::thread::scope(|s| {
        for writer in 0..3u64 {
            let (db, shared) = (&db, &shared);
            s.spawn(move || {
                for n in 0..150u64 {
                    let mut batch = WriteBatch::new();
                    let value = format!("{writer}:{n}");
                    for i in 0..shared.len() {
                        // Each writer adds the keys in its own order.
                        let at = if writer % 2 == 1 {
                            shared.len() - 1 - i
                        } else {
                            i
                        };
                        let key = &shared[(at + writer as usize * 2) % shared.len()];
                        batch.put(key, &value);
                    }
                    db.write(batch).unwrap();
                }
            });
        }
        let (db, shared) = (&db, &shared);
        s.spawn(move || {
            for n in 0..300 {
                // A plain (queued, in Buffered mode) put of a key a batch may hold.
                db.put(&shared[n % shared.len()], "single").unwrap();
            }
        });
    });
    // Every batch writes every shared key, so a key whose last write was a batch's holds
    // the last batch's value: the keys not left with a single put's value all agree.
    let values: Vec<_> = shared.iter().map(|k| db.get(k).unwrap().unwrap()).collect();
    let from_batches: Vec<_> = values.iter().filter(|v| &v[..] != b"single").collect();
    assert!(from_batches.windows(2).all(|p| p[0] == p[1]), "{values:?}");
    db.close().unwrap();
}

const DB_PATH: &str = "/db";

/// Odd seeds run Buffered and have the smallest batch log, 64 KiB: about fifteen
/// frames a generation, so its seal, wait and reset run many times a round.
fn sim_options(disk: &SimDisk, durability: Durability) -> Options {
    let batch_log_bytes = match durability {
        Durability::Buffered => 64 << 10,
        _ => 64 << 20,
    };
    Options::default()
        .batch_log_bytes(batch_log_bytes)
        .cores(2)
        .durability(durability)
        .flush_interval(Duration::from_millis(5))
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(64 << 10)
        .simulated_disk(disk.clone())
}

/// The values a reader saw shared key 0 take, in order, while the writers ran (in a
/// `Sync` database, where a read shows only what is durable; nothing in `Buffered`).
fn observe(db: &Db, durability: Durability, done: &AtomicBool) -> Vec<ringkv::Bytes> {
    let mut seen: Vec<ringkv::Bytes> = Vec::new();
    while durability == Durability::Sync && !done.load(Ordering::SeqCst) {
        match db.get(shared_key(0)) {
            Ok(Some(v)) if seen.last() != Some(&v) => seen.push(v),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    seen
}

/// A value seen before another cannot come back after the cut: the later one's write
/// came after it, and a batch's replay must not undo it. Values are unique per batch.
fn not_undone(db: &Db, seen: Option<&Vec<ringkv::Bytes>>, seed: u64, round: u64) {
    let Some((last, earlier)) = seen.and_then(|s| s.split_last()) else {
        return;
    };
    let now = db.get(shared_key(0)).unwrap();
    assert!(
        now.as_ref().is_none_or(|v| !earlier.contains(v)),
        "seed {seed} round {round}: shared-0 went back to {now:?} after the reader saw {last:?}"
    );
}

/// Writers apply batches until the power cut armed before them falls (or they have
/// made `max` each); then the disk reboots, the database reopens and must hold each
/// batch whole or not at all, every acknowledged one.
#[test]
fn a_power_cut_leaves_every_batch_whole_or_absent() {
    support::raise_descriptor_limit();
    let seeds: u64 = std::env::var("RINGKV_BATCH_SEEDS").map_or(12, |s| s.parse().unwrap());
    let mut cuts_mid_batch_log = 0;
    for seed in 0..seeds {
        let mut rng = support::rng(seed + 1);
        let durability = match seed % 2 {
            0 => Durability::Sync,
            _ => Durability::Buffered,
        };
        let mut disk = SimDisk::new();
        let mut writers = vec![Writer::default(); WRITERS];
        let mut observed: Vec<Vec<ringkv::Bytes>> = Vec::new();
        for round in 0..4 {
            let db = Db::open(DB_PATH, sim_options(&disk, durability)).unwrap();
            let shown = check(&db, &writers, seed, round);
            not_undone(&db, observed.last(), seed, round);
            for (writer, n) in writers.iter_mut().zip(shown) {
                (writer.acked, writer.tried) = (n, n);
            }
            let mode = match rng() % 3 {
                0 => CrashMode::DropUnsynced,
                1 => CrashMode::TearLast { seed: rng() },
                _ => CrashMode::Random { seed: rng() },
            };
            if rng() % 2 == 0 {
                disk.power_cut_after_name("batch-", 1 + rng() % 200, mode);
                cuts_mid_batch_log += 1;
            } else {
                disk.power_cut_at(1 + rng() % 1500, mode);
            }
            let seeds: Vec<u64> = (0..WRITERS).map(|_| rng()).collect();
            let done = AtomicBool::new(false);
            let (results, seen): (Vec<Writer>, Vec<ringkv::Bytes>) = std::thread::scope(|s| {
                let reader = s.spawn(|| observe(&db, durability, &done));
                let handles: Vec<_> = (writers.iter().cloned().enumerate())
                    .zip(seeds)
                    .map(|((w, mut writer), seed)| {
                        let db = &db;
                        s.spawn(move || {
                            let mut rng = support::rng(seed);
                            for _ in 0..60 {
                                let n = writer.tried + 1;
                                let delete = rng() % 6 == 0;
                                let batch = batch_of(w, n, delete, rng() % 2 == 0);
                                writer.tried = n;
                                if delete {
                                    writer.deletes.insert(n);
                                }
                                // A Buffered batch is durable once a flush after it
                                // returns: every fourth is flushed.
                                match (db.write(batch), durability) {
                                    (Ok(()), Durability::Sync) => writer.acked = n,
                                    (Ok(()), _) if n % 4 != 0 => {}
                                    (Ok(()), _) => match db.flush() {
                                        Ok(()) => writer.acked = n,
                                        Err(_) => break,
                                    },
                                    (Err(_), _) => break,
                                }
                            }
                            writer
                        })
                    })
                    .collect();
                let results = handles.into_iter().map(|h| h.join().unwrap()).collect();
                done.store(true, Ordering::SeqCst);
                (results, reader.join().unwrap())
            });
            observed.push(seen);
            writers = results;
            if !disk.powered_off() {
                disk.clone().crash(mode);
            }
            let _ = db.close();
            disk = disk.reboot();
        }
        let db = Db::open(DB_PATH, sim_options(&disk, durability)).unwrap();
        check(&db, &writers, seed, 4);
        not_undone(&db, observed.last(), seed, 4);
        db.close().unwrap();
    }
    assert!(seeds == 0 || cuts_mid_batch_log > 0);
}
