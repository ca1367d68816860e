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
                    cache.insert(&[k], v.clone(), None);
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
    cache.insert(b"a", value(1, 100), None);
    assert_eq!(cache.get(b"a"), Some(value(1, 100)));
    assert_eq!(cache.get(b"b"), None);
    assert_eq!(cache.peek(b"b"), None, "a peek is not counted");
    assert_eq!((cache.hits(), cache.misses()), (1, 1));
    cache.insert(b"big", value(2, 20_000), None);
    assert_eq!(
        cache.get(b"big"),
        None,
        "values over an eighth of the budget are not cached"
    );
    let off = Cache::new(0, Clock::system());
    off.insert(b"a", value(1, 10), None);
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
                cache.insert(k, value(round, 400), None);
            }
        }
    }
    for i in 0..50_000u32 {
        let k = (1_000_000 + i).to_be_bytes();
        if cache.get(&k).is_none() {
            cache.insert(&k, value(i, 400), None);
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
        cache.insert(b"k", value(n, 64), None);
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
    cache.insert(b"e", value(1, 10), Some(1_000_050));
    cache.insert(b"p", value(2, 10), None);
    assert_eq!(cache.get(b"e"), Some(value(1, 10)));
    clock.advance(Duration::from_millis(49));
    assert_eq!(cache.peek(b"e"), Some(value(1, 10)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get(b"e"), None);
    assert_eq!(cache.peek(b"e"), None);
    assert_eq!(cache.get(b"p"), Some(value(2, 10)));
}

#[test]
fn keys_in_place_and_boxed_are_found_by_their_bytes_alone() {
    let cache = Cache::new(1 << 20, Clock::system());
    let lengths = [
        0,
        1,
        INLINE_KEY_BYTES - 1,
        INLINE_KEY_BYTES,
        INLINE_KEY_BYTES + 1,
        300,
    ];
    // Keys that share a prefix and differ in length, or only in their last byte.
    let keys: Vec<Vec<u8>> = (lengths.iter())
        .flat_map(|&len| [vec![7u8; len], [vec![7u8; len], vec![8]].concat()])
        .collect();
    for (n, key) in keys.iter().enumerate() {
        cache.insert(key, value(n as u32, 8), None);
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
    assert_eq!(cache.get(&[7u8; INLINE_KEY_BYTES + 2]), None);
}
