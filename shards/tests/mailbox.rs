//! How requests reach a core and answers come back: reads from the cache in the
//! caller's own thread, answers in the serve loop, reply slots of blocking callers, the
//! core's spin. A one-core database is the case that spins (it leaves a CPU for
//! callers); each test runs it beside one with a core per CPU, which does not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ringkv::{Db, Durability, Options};

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn open(dir: &std::path::Path, cores: usize, durability: Durability) -> Db {
    let options = Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(4 << 20)
        .io_memory_bytes(64 << 10);
    Db::open(dir, options).unwrap()
}

/// Each write is seen by the next read of the same thread, whether the read is answered
/// from the cache in the serve loop or by a task, and deletes too.
#[test]
fn a_thread_reads_its_own_writes() {
    for (cores, durability) in [
        (1, Durability::Buffered),
        (1, Durability::Sync),
        (cpus(), Durability::Buffered),
    ] {
        let dir = tempdir();
        let db = open(dir.path(), cores, durability);
        for round in 0..3u32 {
            for i in 0..300u32 {
                let key = format!("key-{}", i % 40);
                let value = format!("{round}-{i}");
                db.put(&key, &value).unwrap();
                // Twice: the second read may come from the cache the first one filled.
                for _ in 0..2 {
                    let got = db.get(&key).unwrap();
                    assert_eq!(got.as_deref(), Some(value.as_bytes()), "{cores} cores");
                }
                if i % 7 == 0 {
                    db.delete(&key).unwrap();
                    assert_eq!(db.get(&key).unwrap(), None);
                    assert!(!db.exists(&key).unwrap());
                }
            }
        }
        db.close().unwrap();
    }
}

/// Writes of one key queued without waiting for each other land in the order they were
/// queued: the last one queued is the one that stays.
#[test]
fn writes_queued_together_keep_their_order() {
    for cores in [1, cpus()] {
        let dir = tempdir();
        let db = open(dir.path(), cores, Durability::Buffered);
        for round in 0..20u32 {
            let writes: Vec<_> = (0..64u32)
                .map(|i| db.put_async("key", format!("{round}-{i}")))
                .collect();
            futures_lite::future::block_on(async {
                for write in writes {
                    write.await.unwrap();
                }
            });
            let last = format!("{round}-63");
            assert_eq!(db.get("key").unwrap().as_deref(), Some(last.as_bytes()));
        }
        db.close().unwrap();
    }
}

/// Threads hammering the same core all make progress: none is starved by the others.
#[test]
fn every_caller_gets_answers_while_others_hammer_the_core() {
    for cores in [1, cpus()] {
        let dir = tempdir();
        let db = open(dir.path(), cores, Durability::Buffered);
        for i in 0..100u32 {
            db.put(format!("key-{i}"), "value").unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
        let threads: Vec<_> = (0..4usize)
            .map(|t| {
                let (db, stop, counts) = (db.clone(), stop.clone(), counts.clone());
                std::thread::spawn(move || {
                    let mut i = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("key-{}", (i * 7 + t as u32) % 100);
                        assert!(db.get(&key).unwrap().is_some());
                        counts[t].fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let counts: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert!(counts.iter().all(|&n| n > 0), "{cores} cores: {counts:?}");
        db.close().unwrap();
    }
}

/// A value just written is read from memory (the cache), in both durability modes, and
/// a newer write or a delete replaces it there.
#[test]
fn a_value_just_written_is_read_from_the_cache() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let dir = tempdir();
        let db = open(dir.path(), 1, durability);
        let figures = |db: &Db| {
            let stats = db.stats().unwrap();
            let hits: u64 = stats.cores.iter().map(|c| c.cache_hits).sum();
            let misses: u64 = stats.cores.iter().map(|c| c.cache_misses).sum();
            (hits, misses)
        };
        for i in 0..200u32 {
            db.put(format!("key-{i}"), format!("value-{i}")).unwrap();
        }
        let before = figures(&db);
        for i in 0..200u32 {
            let got = db.get(format!("key-{i}")).unwrap();
            assert_eq!(got.as_deref(), Some(format!("value-{i}").as_bytes()));
        }
        let after = figures(&db);
        assert_eq!(after.0 - before.0, 200, "{durability:?}: every read a hit");
        assert_eq!(after.1, before.1, "{durability:?}: no read missed");
        db.put("key-7", "newer").unwrap();
        assert_eq!(db.get("key-7").unwrap().as_deref(), Some(&b"newer"[..]));
        db.delete("key-8").unwrap();
        assert_eq!(db.get("key-8").unwrap(), None);
        db.close().unwrap();
    }
}

/// Callers read the cache without the core while writers overwrite and delete: a writer
/// reads back each write it saw acknowledged (never the value before it), and a reader
/// never sees a key's counter go back.
#[test]
fn reads_beside_the_core_never_go_back() {
    for (cores, durability) in [(1, Durability::Sync), (2, Durability::Buffered)] {
        let dir = tempdir();
        let db = open(dir.path(), cores, durability);
        let keys = 16u32;
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (db, stop) = (db.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = vec![0u64; keys as usize];
                    while !stop.load(Ordering::Relaxed) {
                        for k in 0..keys {
                            let Some(v) = db.get(format!("key-{k}")).unwrap() else {
                                continue;
                            };
                            let n = u64::from_le_bytes(v[..8].try_into().unwrap());
                            assert!(
                                n >= seen[k as usize],
                                "key-{k}: {n} after {}",
                                seen[k as usize]
                            );
                            seen[k as usize] = n;
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..2u32)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for n in 1..=1_500u64 {
                        let key = format!("key-{}", (n as u32 * 2 + w) % keys);
                        if n % 7 == 0 {
                            db.delete(&key).unwrap();
                            assert_eq!(db.get(&key).unwrap(), None, "{key} after its delete");
                        } else {
                            let value = [n.to_le_bytes(), [w as u8; 8]].concat();
                            db.put(&key, &value).unwrap();
                            let got = db.get(&key).unwrap();
                            assert_eq!(got.as_deref(), Some(&value[..]), "{key} after put {n}");
                        }
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|t| t.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        readers.into_iter().for_each(|t| t.join().unwrap());
        let handle = db.clone();
        db.close().unwrap();
        assert!(
            matches!(handle.get("key-1"), Err(ringkv::Error::Closed)),
            "a closed database answers no read, not even from its cache"
        );
    }
}

/// `Buffered` puts return once queued; closing the database while threads keep putting
/// loses none that returned `Ok`: each is taken by its core before the shutdown, and a
/// reopen finds it. Many short rounds, so that some close lands between a put's look
/// at the database and its push.
#[test]
fn puts_acknowledged_once_queued_survive_a_close_that_races_them() {
    for round in 0..24 {
        let cores = [1, cpus()][round % 2];
        let dir = tempdir();
        let db = open(dir.path(), cores, Durability::Buffered);
        let writers: Vec<_> = (0..3u32)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut acked = 0u64;
                    loop {
                        let key = format!("w{w}-{acked}");
                        // Large: the copy made between the put's look at the database
                        // and its push widens the window a close can land in.
                        let mut value = vec![w as u8; 16 << 10];
                        value[..8].copy_from_slice(&acked.to_le_bytes());
                        match db.put(&key, &value) {
                            Ok(()) => acked += 1,
                            Err(ringkv::Error::Closed) => return acked,
                            Err(e) => panic!("{key}: {e}"),
                        }
                        // Its own write, whether or not the core has taken it yet.
                        let got = db.get(&key);
                        if !matches!(got, Err(ringkv::Error::Closed)) {
                            let got = got.unwrap().expect("a thread reads its own put");
                            assert_eq!(got[..8], (acked - 1).to_le_bytes());
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        db.close().unwrap();
        let acked: Vec<u64> = writers.into_iter().map(|t| t.join().unwrap()).collect();
        let db = open(dir.path(), cores, Durability::Buffered);
        for (w, &acked) in acked.iter().enumerate() {
            for n in 0..acked {
                let got = db.get(format!("w{w}-{n}")).unwrap().expect("acknowledged");
                assert_eq!(got[..8], n.to_le_bytes(), "w{w}-{n}");
            }
        }
        db.close().unwrap();
    }
}
