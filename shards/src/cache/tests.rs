use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use std::time::Duration;

fn value(n: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    v[..4].copy_from_slice(&n.to_le_bytes());
    Bytes::from(v)
}

#[derive(Clone, Debug)]
enum Step {
    Insert(u8, u32, u16),
    Remove(u8),
    Get(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<u8>(), any::<u32>(), 4u16..2000).prop_map(|(k, n, len)| Step::Insert(k, n, len)),
        any::<u8>().prop_map(Step::Remove),
        any::<u8>().prop_map(Step::Get),
    ]
}

proptest! {
    /// Against a map of each key's newest value: a hit is always the newest value, a
    /// removed key is never found, and the charged bytes stay within the budget.
    #[test]
    fn answers_only_the_newest_value_within_budget(steps in proptest::collection::vec(step(), 1..400)) {
        let budget = 64 << 10;
        let cache = Cache::new(budget, Clock::system());
        let mut newest: HashMap<u8, Bytes> = HashMap::new();
        for s in steps {
            match s {
                Step::Insert(k, n, len) => {
                    let v = value(n, usize::from(len));
                    cache.insert(&[k], &v, None);
                    newest.insert(k, v);
                }
                Step::Remove(k) => {
                    cache.remove(&[k]);
                    newest.remove(&k);
                }
                Step::Get(k) => {
                    if let Some(hit) = cache.get(&[k]) {
                        prop_assert_eq!(Some(&hit), newest.get(&k));
                    }
                }
            }
            prop_assert!(cache.bytes() <= budget);
        }
    }
}

#[test]
fn counts_hits_and_misses_and_refuses_large_values() {
    let cache = Cache::new(80_000, Clock::system());
    cache.insert(b"a", &value(1, 100), None);
    assert_eq!(cache.get(b"a"), Some(value(1, 100)));
    assert_eq!(cache.get(b"b"), None);
    assert_eq!(cache.peek(b"b"), None, "a peek is not counted");
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
    cache.insert(b"big", &value(2, 20_000), None);
    assert_eq!(
        cache.get(b"big"),
        None,
        "values over an eighth of the budget are not cached"
    );
    let off = Cache::new(0, Clock::system());
    off.insert(b"a", &value(1, 10), None);
    assert_eq!((off.get(b"a"), off.bytes()), (None, 0));
    assert_eq!((off.hits(), off.misses()), (0, 1));
}

/// A value read again and again survives one pass over many more keys than fit (the
/// pass a scan or a bulk load makes); least-recently-used would have lost them all.
#[test]
fn a_single_pass_does_not_flush_the_values_read_often() {
    let cache = Cache::new(1 << 20, Clock::system());
    let hot: Vec<[u8; 4]> = (0..200u32).map(|i| i.to_be_bytes()).collect();
    for round in 0..4 {
        for k in &hot {
            if cache.get(k).is_none() {
                cache.insert(k, &value(round, 400), None);
            }
        }
    }
    for i in 0..50_000u32 {
        let k = (1_000_000 + i).to_be_bytes();
        if cache.get(&k).is_none() {
            cache.insert(&k, &value(i, 400), None);
        }
    }
    let kept = hot.iter().filter(|k| cache.peek(*k).is_some()).count();
    assert!(
        kept >= 180,
        "{kept} of 200 read-often values survived the pass"
    );
    assert!(cache.bytes() <= 1 << 20);
}

/// Readers on other threads while the owner overwrites: each hit is one of the values
/// the owner inserted, and after the owner's last remove (published to the readers by
/// the join) no reader finds the key.
#[test]
fn readers_on_other_threads_see_whole_values() {
    let cache = std::sync::Arc::new(Cache::new(1 << 20, Clock::system()));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut hits = 0u32;
                for _ in 0..20_000 {
                    if let Some(v) = cache.get(b"k") {
                        let n = u32::from_le_bytes(v[..4].try_into().unwrap());
                        assert!(v[4..].iter().all(|&b| b == 0) && n < 5_000);
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    for n in 0..5_000 {
        cache.insert(b"k", &value(n, 64), None);
    }
    cache.remove(b"k");
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(cache.get(b"k"), None);
}

/// An entry answers until its expiry, and nothing from then on (by the cache's clock),
/// for a caller's get and for the core's peek alike.
#[test]
fn an_entry_is_not_answered_once_its_expiry_passed() {
    let clock = Clock::manual(1_000_000);
    let cache = Cache::new(1 << 20, clock.clone());
    cache.insert(b"e", &value(1, 10), Some(1_000_050));
    cache.insert(b"p", &value(2, 10), None);
    assert_eq!(cache.get(b"e"), Some(value(1, 10)));
    clock.advance(Duration::from_millis(49));
    assert_eq!(cache.peek(b"e"), Some(value(1, 10)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(b"e"), None);
    assert_eq!(cache.peek(b"e"), None);
    assert_eq!(cache.get(b"p"), Some(value(2, 10)));
}

#[test]
fn keys_are_found_by_their_bytes_alone() {
    let cache = Cache::new(1 << 20, Clock::system());
    let lengths = [0, 1, 22 - 1, 22, 22 + 1, 300];
    // Keys that share a prefix and differ in length, or only in their last byte.
    let keys: Vec<Vec<u8>> = (lengths.iter())
        .flat_map(|&len| [vec![7u8; len], [vec![7u8; len], vec![8]].concat()])
        .collect();
    for (n, key) in keys.iter().enumerate() {
        cache.insert(key, &value(n as u32, 8), None);
    }
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(
            cache.get(key),
            Some(value(n as u32, 8)),
            "key of {} bytes",
            key.len()
        );
        assert_eq!(cache.peek(key), Some(value(n as u32, 8)));
    }
    cache.remove(&keys[3]);
    assert_eq!(cache.get(&keys[3]), None);
    assert_eq!(cache.get(&keys[2]), Some(value(2, 8)));
    assert_eq!(cache.get(&[7u8; 22 + 2]), None);
}

/// A value for key `k` at `version`: both written in, the rest filled from them, so a
/// reader can tell a whole value from a torn or freed one.
fn versioned(k: u8, version: u32, len: usize) -> Vec<u8> {
    let mut v = vec![k ^ version as u8; len];
    v[0] = k;
    v[1..5].copy_from_slice(&version.to_le_bytes());
    v
}

/// Readers batch-reading on other threads while the writer replaces, removes and (with
/// a small budget) evicts and sweeps: every hit is whole, is the key's own, and is newer
/// than any version the writer had removed before the reader looked.
#[test]
fn batched_readers_never_see_a_removed_or_torn_value() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32};
    const KEYS: usize = 64;
    let cache = Arc::new(Cache::new(16 << 10, Clock::system()));
    let floor: Arc<Vec<AtomicU32>> = Arc::new((0..KEYS).map(|_| AtomicU32::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (cache, floor, done) = (cache.clone(), floor.clone(), done.clone());
            std::thread::spawn(move || {
                let keys: Vec<[u8; 1]> = (0..KEYS as u8).map(|k| [k]).collect();
                let mut hits = 0u64;
                while !done.load(Ordering::Acquire) {
                    let floors: Vec<u32> =
                        floor.iter().map(|f| f.load(Ordering::Acquire)).collect();
                    let batch: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
                    for (k, hit) in read_many(&cache, &batch, r == 0).into_iter().enumerate() {
                        let Some(v) = hit else { continue };
                        let version = u32::from_le_bytes(v[1..5].try_into().unwrap());
                        assert_eq!(v[..], versioned(k as u8, version, v.len())[..]);
                        assert!(version > floors[k], "key {k}: {version} was removed");
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    let mut version = [0u32; KEYS];
    let mut state = 0x9e37_79b9_u64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let k = (state % KEYS as u64) as usize;
        cache.remove(&[k as u8]);
        floor[k].store(version[k], Ordering::Release);
        version[k] += 1;
        if state % 3 != 0 {
            let len = 5 + (state >> 8) as usize % 700;
            cache.insert(&[k as u8], &versioned(k as u8, version[k], len), None);
        }
        assert!(cache.bytes() <= 16 << 10);
    }
    done.store(true, Ordering::Release);
    let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(hits > 0, "the readers found something");
}

/// `Cache::read_into`, as a vector.
fn read_many(cache: &Cache, keys: &[&[u8]], counted: bool) -> Vec<Option<Bytes>> {
    let mut values = vec![Some(Bytes::from_static(b"stale")); keys.len()];
    cache.read_into(keys, counted, &mut values);
    values
}

/// A batch answers each key as a lookup of its own would, and counts its hits and
/// misses only when counted.
#[test]
fn a_batch_answers_as_single_lookups() {
    let clock = Clock::manual(1_000);
    let cache = Cache::new(1 << 20, clock.clone());
    cache.insert(b"a", &value(1, 10), None);
    cache.insert(b"b", &value(2, 300), Some(1_010));
    cache.insert(b"c", &value(3, 30), None);
    clock.advance(Duration::from_millis(10));
    let keys: [&[u8]; 5] = [b"c", b"b", b"x", b"a", b"a"];
    let want = vec![
        Some(value(3, 30)),
        None,
        None,
        Some(value(1, 10)),
        Some(value(1, 10)),
    ];
    assert_eq!(read_many(&cache, &keys, false), want);
    assert_eq!((cache.hits(), cache.misses()), (0, 0));
    assert_eq!(read_many(&cache, &keys, true), want);
    assert_eq!((cache.hits(), cache.misses()), (3, 2));
    assert_eq!(read_many(&cache, &[], true), Vec::<Option<Bytes>>::new());
}

/// Memory lent from the budget (the core's copy of its key order) comes out of what
/// the entries may take, at once and for later inserts, up to half the budget.
#[test]
fn lent_bytes_come_out_of_the_budget() {
    let budget: u64 = 256 << 10;
    let cache = Cache::new(budget, Clock::system());
    let charged = |cache: &Cache| cache.entries.as_ref().unwrap().writer().charged();
    let fill = |cache: &Cache| {
        for k in 0..2_000u32 {
            cache.insert(&k.to_le_bytes(), &value(k, 200), None);
        }
    };
    fill(&cache);
    let room = budget - cache.entries.as_ref().unwrap().table.bytes();
    assert!(charged(&cache) > room * 9 / 10, "the cache filled up");
    assert!(cache.lend(budget / 4));
    assert!(charged(&cache) <= room - budget / 4, "lending evicts");
    fill(&cache);
    assert!(
        charged(&cache) <= room - budget / 4,
        "later inserts fit what is left"
    );
    assert!(!cache.lend(budget / 2 + 1), "past half the budget");
    fill(&cache);
    assert!(
        charged(&cache) > room * 9 / 10,
        "a refused loan lends nothing"
    );
    assert!(cache.lend(0));
}
