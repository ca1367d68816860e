//! A substore's ordered key scans against a `BTreeMap`: pages forward and in reverse,
//! through puts, overwrites, deletes and expiries, across sealed extents, compaction
//! and a reopen (the order is rebuilt by the first scan after it).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_lite::future::block_on;
use ringkv_engine::{Clock, Config, Direction, SimDevice, Substore, SubstoreId, WriteOptions};

const ID: SubstoreId = SubstoreId::root(4);
const T0: u64 = 1_700_000_000_000;

fn config(clock: &Clock) -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        clock: clock.clone(),
        ..Config::default()
    }
}

/// Every live key by pages of `page`, forward then in reverse.
fn pages(s: &Substore<SimDevice>, page: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut forward: Vec<Vec<u8>> = Vec::new();
    loop {
        let from = forward.last().map(|k| [k.as_slice(), &[0]].concat());
        let got = s.scan_keys(from.as_deref(), Direction::Forward, page);
        let done = got.len() < page;
        forward.extend(got.into_iter().map(|(k, _)| k));
        if done {
            break;
        }
    }
    let mut reverse: Vec<Vec<u8>> = Vec::new();
    loop {
        let from = reverse.last().cloned();
        let got = s.scan_keys(from.as_deref(), Direction::Reverse, page);
        let done = got.len() < page;
        reverse.extend(got.into_iter().map(|(k, _)| k));
        if done {
            break;
        }
    }
    (forward, reverse)
}

fn check(s: &Substore<SimDevice>, model: &BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>, now: u64) {
    let live: Vec<Vec<u8>> = (model.iter())
        .filter(|(_, (_, expiry))| expiry.is_none_or(|at| at > now))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(live.len() > 300, "{} live keys", live.len());
    for page in [1, 7, 1000] {
        let (forward, reverse) = pages(s, page);
        assert_eq!(forward, live, "forward by {page}");
        let mut backward = live.clone();
        backward.reverse();
        assert_eq!(reverse, backward, "reverse by {page}");
    }
    // From a bound in the middle, the entries point at the keys' values.
    let mid = &live[live.len() / 2];
    let got = s.scan_keys(Some(mid), Direction::Forward, 5);
    assert_eq!(got[0].0, *mid);
    for (key, entry) in got {
        let record = block_on(s.get_record(&key)).unwrap().unwrap();
        assert_eq!(record.value.as_ref(), model[&key].0.as_slice());
        assert_eq!(entry.value_len as usize, record.value.len());
    }
}

#[test]
fn scans_page_through_live_keys_in_order_forward_and_back() {
    block_on(async {
        let clock = Clock::manual(T0);
        let dev = SimDevice::new();
        let s = Substore::create_or_open(dev.clone(), ID, config(&clock))
            .await
            .unwrap();
        let mut model = BTreeMap::new();
        let mut state = 5u64;
        for step in 0..6000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{:04}", (state >> 33) % 2000).into_bytes();
            if step == 3000 {
                check(&s, &model, T0); // the first scan builds the order; later writes keep it
            }
            match (state >> 20) % 5 {
                0 => {
                    s.delete(&key).await.unwrap();
                    model.remove(&key);
                }
                1 => {
                    let expiry = T0 + 1000 + (state >> 40) % 1000;
                    let opts = WriteOptions {
                        meta: b"",
                        expiry_unix_ms: Some(expiry),
                    };
                    let value = format!("e{step}").into_bytes();
                    s.put_with(&key, &value, opts).await.unwrap();
                    model.insert(key, (value, Some(expiry)));
                }
                _ => {
                    let value = format!("v{step}").repeat(5).into_bytes();
                    s.put(&key, &value).await.unwrap();
                    model.insert(key, (value, None));
                }
            }
        }
        check(&s, &model, T0);
        clock.advance(Duration::from_millis(1500));
        check(&s, &model, T0 + 1500);
        s.compact(0.0).await.unwrap();
        check(&s, &model, T0 + 1500);
        s.close().await.unwrap();
        let s = Substore::create_or_open(dev.clone(), ID, config(&clock))
            .await
            .unwrap();
        check(&s, &model, T0 + 1500);
        assert!(s.scan_keys(Some(b"l"), Direction::Forward, 10).is_empty());
        assert!(s.scan_keys(Some(b"k"), Direction::Reverse, 10).is_empty());
        s.close().await.unwrap();
    });
}
