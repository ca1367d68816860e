//! Ordered range and prefix scans through the public API, against a `BTreeMap` model:
//! every bound kind, forward and reverse, keys only, the async stream; across splits
//! (copy and hand-over, with an ancestor still holding records), reopen with another
//! core count, expiry on a moving clock, pages cut by value bytes, and writers running
//! during a scan.

mod support;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use futures_util::StreamExt;
use ringkv::{Clock, Db, Durability, Options, PutOptions, SplitMode};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Buffered)
        .extent_size_bytes(64 << 10)
        .cache_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
}

/// Keys over a small alphabet, so that prefixes and bounds hit real keys.
fn random_key(next: &mut impl FnMut() -> u64) -> Vec<u8> {
    let len = 1 + next() % 5;
    (0..len)
        .map(|_| b"abcd\xff\x00"[(next() % 6) as usize])
        .collect()
}

fn random_bound(next: &mut impl FnMut() -> u64) -> Bound<Vec<u8>> {
    match next() % 3 {
        0 => Bound::Unbounded,
        1 => Bound::Included(random_key(next)),
        _ => Bound::Excluded(random_key(next)),
    }
}

/// Random puts, overwrites and deletes, applied to the database and the model.
fn fill(db: &Db, model: &mut Model, seed: u64, ops: usize) {
    let mut next = support::rng(seed);
    for i in 0..ops {
        let key = random_key(&mut next);
        if next() % 4 == 0 {
            db.delete(&key).unwrap();
            model.remove(&key);
        } else {
            let value = format!("{seed}-{i}").into_bytes();
            db.put(&key, &value).unwrap();
            model.insert(key, value);
        }
    }
}

fn pairs(scan: ringkv::Range) -> Vec<(Vec<u8>, Vec<u8>)> {
    scan.map(|item| {
        let (k, v) = item.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// Every kind of scan over `bounds` agrees with the model.
fn check_range(db: &Db, model: &Model, bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>)) {
    if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
        &bounds
        && (s > e || (s == e && !matches!(bounds, (Bound::Included(_), Bound::Included(_)))))
    {
        // A BTreeMap panics on an empty or inverted range; the database yields nothing.
        assert!(db.range(bounds).next().is_none());
        return;
    }
    let want: Vec<(Vec<u8>, Vec<u8>)> = (model.range(bounds.clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(pairs(db.range(bounds.clone())), want, "{bounds:?}");
    let mut reversed = want.clone();
    reversed.reverse();
    assert_eq!(
        pairs(db.range(bounds.clone()).reverse()),
        reversed,
        "{bounds:?} reversed"
    );
    let keys: Vec<Vec<u8>> = (db.range(bounds.clone()).keys())
        .map(|k| k.unwrap().to_vec())
        .collect();
    let want_keys: Vec<Vec<u8>> = want.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, want_keys, "{bounds:?} keys");
}

fn check_prefix(db: &Db, model: &Model, prefix: &[u8]) {
    let want: Vec<(Vec<u8>, Vec<u8>)> = (model.iter())
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(pairs(db.prefix(prefix)), want, "prefix {prefix:?}");
    let mut reversed = want;
    reversed.reverse();
    assert_eq!(pairs(db.prefix(prefix).reverse()), reversed);
}

fn check_many(db: &Db, model: &Model, seed: u64) {
    let mut next = support::rng(seed);
    check_range(db, model, (Bound::Unbounded, Bound::Unbounded));
    for _ in 0..40 {
        let bounds = (random_bound(&mut next), random_bound(&mut next));
        check_range(db, model, bounds.clone());
        let n = (next() % 40) as usize;
        let limited: Vec<Vec<u8>> = (db.range(bounds.clone()).limit(n))
            .map(|item| item.unwrap().0.to_vec())
            .collect();
        let all: Vec<Vec<u8>> = (db.range(bounds).keys())
            .map(|k| k.unwrap().to_vec())
            .collect();
        assert_eq!(limited, all[..n.min(all.len())], "limit {n}");
        let prefix = random_key(&mut next);
        check_prefix(
            db,
            model,
            &prefix[..(next() % 3) as usize % (prefix.len() + 1)],
        );
    }
}

#[test]
fn scans_agree_with_a_sorted_map_for_every_bound_and_direction() {
    for cores in [1, 3] {
        let dir = tempdir();
        let db = Db::open(dir.path(), options(cores)).unwrap();
        let mut model = Model::new();
        check_many(&db, &model, 1);
        fill(&db, &mut model, 7, 3_000);
        check_many(&db, &model, 2);
        // From the device too: closed and reopened with another core count.
        db.close().unwrap();
        let db = Db::open(dir.path(), options(4 - cores)).unwrap();
        check_many(&db, &model, 3);
        fill(&db, &mut model, 8, 1_000);
        check_many(&db, &model, 4);
    }
}

#[test]
fn a_scan_reads_through_splits_and_an_ancestor_still_holding_records() {
    for mode in [SplitMode::Copy, SplitMode::HandOver] {
        let dir = tempdir();
        let options = || {
            options(2)
                .split_mode(mode)
                .split_threshold_bytes(96 << 10)
                .compaction_interval(Duration::from_millis(1))
        };
        let db = Db::open(dir.path(), options()).unwrap();
        let mut model = Model::new();
        for i in 0..3_000u32 {
            let key = format!("k{:05}", i * 7 % 3_000).into_bytes();
            let value = vec![b'v'; 1_000 + (i % 50) as usize];
            db.put(&key, &value).unwrap();
            model.insert(key, value);
            if i % 500 == 0 {
                // Mid-split at times: a leaf behind its ancestor, or copying.
                check_range(&db, &model, (Bound::Unbounded, Bound::Unbounded));
            }
        }
        check_many(&db, &model, 5);
        db.close().unwrap();
        let db = Db::open(dir.path(), options()).unwrap();
        let substores = db.stats().unwrap().substores;
        assert!(substores > 16, "{mode:?}: no split happened ({substores})");
        check_prefix(&db, &model, b"k01");
        check_range(&db, &model, (Bound::Unbounded, Bound::Unbounded));
    }
}

#[test]
fn expired_keys_never_appear_in_a_scan() {
    let dir = tempdir();
    let clock = Clock::manual(1_700_000_000_000);
    let db = Db::open(dir.path(), options(2).clock(clock.clone())).unwrap();
    let mut model = Model::new();
    for i in 0..200u32 {
        let key = format!("key-{i:03}").into_bytes();
        let value = format!("value-{i}").into_bytes();
        if i % 3 == 0 {
            let ttl = PutOptions::new().ttl(Duration::from_secs(10));
            db.put_with(&key, &value, &ttl).unwrap();
        } else {
            db.put(&key, &value).unwrap();
        }
        model.insert(key, value);
    }
    check_range(&db, &model, (Bound::Unbounded, Bound::Unbounded));
    clock.advance(Duration::from_secs(10));
    model.retain(|k, _| {
        std::str::from_utf8(&k[4..])
            .unwrap()
            .parse::<u32>()
            .unwrap()
            % 3
            != 0
    });
    check_range(&db, &model, (Bound::Unbounded, Bound::Unbounded));
    check_prefix(&db, &model, b"key-1");
}

#[test]
fn large_values_come_in_small_pages_and_all_arrive() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2).extent_size_bytes(8 << 20)).unwrap();
    let mut model = Model::new();
    for i in 0..24u8 {
        let value = vec![i; 400 << 10];
        db.put([b'L', i], &value).unwrap();
        model.insert(vec![b'L', i], value);
    }
    check_range(&db, &model, (Bound::Unbounded, Bound::Unbounded));
    // A limited scan stops at its limit, either way.
    let limited = |scan: ringkv::Range| scan.limit(5).count();
    assert_eq!(limited(db.prefix("L")), 5);
    assert_eq!(limited(db.range::<&[u8]>(..).reverse()), 5);
    assert_eq!(db.prefix("L").limit(100).count(), 24);
    // A scan dropped after three items reads little more than it yields.
    let taken: Vec<Vec<u8>> = (db.prefix("L").reverse().take(3))
        .map(|item| item.unwrap().0.to_vec())
        .collect();
    assert_eq!(taken, [[b'L', 23], [b'L', 22], [b'L', 21]]);
}

#[test]
fn the_async_stream_yields_what_the_iterator_does() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2)).unwrap();
    let mut model = Model::new();
    fill(&db, &mut model, 11, 1_000);
    let streamed: Vec<(Vec<u8>, Vec<u8>)> = futures_lite::future::block_on(
        db.range::<&[u8]>(..)
            .into_stream()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect(),
    );
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.into_iter().collect();
    assert_eq!(streamed, want);
    let keys: Vec<ringkv::Bytes> = futures_lite::future::block_on(
        db.prefix("a")
            .keys()
            .into_stream()
            .map(|k| k.unwrap())
            .collect(),
    );
    assert!(keys.iter().all(|k| k.starts_with(b"a")) && !keys.is_empty());
}

#[test]
fn keys_left_alone_appear_once_each_in_order_while_writers_run() {
    let dir = tempdir();
    let db = std::sync::Arc::new(Db::open(dir.path(), options(2)).unwrap());
    let stable: Vec<Vec<u8>> = (0..2_000u32)
        .map(|i| format!("s{i:05}").into_bytes())
        .collect();
    for key in &stable {
        db.put(key, b"stable").unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Churn between the stable keys: new keys, overwrites, deletes.
                let key = format!("s{:05}x{}", n % 2_000, n % 3).into_bytes();
                match n % 4 {
                    3 => db.delete(&key).unwrap(),
                    _ => db.put(&key, n.to_be_bytes()).unwrap(),
                }
                n += 1;
            }
        })
    };
    for round in 0..10 {
        let reverse = round % 2 == 1;
        let scan = db.prefix("s");
        let scan = if reverse { scan.reverse() } else { scan };
        let keys: Vec<Vec<u8>> = scan.keys().map(|k| k.unwrap().to_vec()).collect();
        let ordered = keys.windows(2).all(|w| match reverse {
            false => w[0] < w[1],
            true => w[0] > w[1],
        });
        assert!(ordered, "round {round}: out of order or repeated");
        let seen: Vec<&Vec<u8>> = keys.iter().filter(|k| k.len() == 6).collect();
        assert_eq!(
            seen.len(),
            stable.len(),
            "round {round}: a stable key went missing"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

/// A long run of writes between two scans is caught up with as commit rounds start:
/// the second scan lists every key, and the core built its key order once (a leaf's
/// record of changes would have overflowed past 4096 new keys, making it build again).
#[test]
fn the_key_order_keeps_up_with_a_long_run_of_writes_between_scans() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(1).durability(Durability::Sync)).unwrap();
    db.put(b"first", b"1").unwrap();
    assert_eq!(db.range::<&[u8]>(..).count(), 1);
    // 16 leaves on the one core: about 6000 new keys each, in rounds of 1000.
    let keys: Vec<(Vec<u8>, &[u8])> = (0..96_000u32)
        .map(|i| (format!("k{i:06}").into_bytes(), &b"v"[..]))
        .collect();
    for batch in keys.chunks(1000) {
        db.put_many(batch).unwrap();
    }
    let listed: Vec<_> = (db.range::<&[u8]>(..).keys()).map(Result::unwrap).collect();
    assert_eq!(listed.len(), keys.len() + 1);
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "in order");
    let stats = db.stats().unwrap();
    assert_eq!(
        stats.cores[0].key_order_builds, 1,
        "caught up, never built again"
    );
    db.close().unwrap();
}
