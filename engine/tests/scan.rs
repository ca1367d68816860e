//! Ordered key scans against a `BTreeMap`, pages forward and in reverse: one
//! substore's own order, and one `KeyOrder` over several substores; through puts,
//! overwrites, deletes and expiries, across sealed extents, compaction and a reopen
//! (an order is built again by the first scan after it).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_lite::future::block_on;
use ringkv_engine::{
    Clock, Config, Direction, KeyOrder, SimDevice, Substore, SubstoreId, WriteOptions,
};

const ID: SubstoreId = SubstoreId::root(4);
const T0: u64 = 1_700_000_000_000;

fn config(clock: &Clock) -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        clock: clock.clone(),
        ..Config::default()
    }
}

/// Lists up to `limit` keys and their value lengths from a bound as `scan_keys` takes
/// it.
type List<'a> = dyn FnMut(Option<&[u8]>, Direction, usize) -> Vec<(Vec<u8>, u32)> + 'a;

/// Every live key by pages of `page`, forward then in reverse.
fn pages(list: &mut List<'_>, page: usize) -> [Vec<Vec<u8>>; 2] {
    [Direction::Forward, Direction::Reverse].map(|direction| {
        let mut all: Vec<Vec<u8>> = Vec::new();
        loop {
            let from = all.last().map(|k| match direction {
                Direction::Forward => [k.as_slice(), &[0]].concat(),
                Direction::Reverse => k.clone(),
            });
            let got = list(from.as_deref(), direction, page);
            let done = got.len() < page;
            all.extend(got.into_iter().map(|(k, _)| k));
            if done {
                return all;
            }
        }
    })
}

/// Each key's value and expiry.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// A listing against the model's live keys at `now`: by pages of every size in both
/// directions, then from a bound in the middle with each key's value length. Returns
/// the middle page's keys.
fn check_listing(list: &mut List<'_>, model: &Model, now: u64) -> Vec<Vec<u8>> {
    let live: Vec<Vec<u8>> = (model.iter())
        .filter(|(_, (_, expiry))| expiry.is_none_or(|at| at > now))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(live.len() > 300, "{} live keys", live.len());
    for page in [1, 7, 1000] {
        let [forward, reverse] = pages(list, page);
        assert_eq!(forward, live, "forward by {page}");
        let backward: Vec<Vec<u8>> = live.iter().rev().cloned().collect();
        assert_eq!(reverse, backward, "reverse by {page}");
    }
    let mid = &live[live.len() / 2];
    let got = list(Some(mid), Direction::Forward, 5);
    assert_eq!(got[0].0, *mid);
    for (key, value_len) in &got {
        let len = model[key].0.len();
        assert_eq!(*value_len as usize, len, "the entry is the key's");
    }
    got.into_iter().map(|(k, _)| k).collect()
}

fn check(s: &Substore<SimDevice>, model: &Model, now: u64) {
    let mut list = |from: Option<&[u8]>, direction, limit| {
        let got = s.scan_keys(from, direction, limit);
        got.into_iter().map(|(k, e)| (k, e.value_len)).collect()
    };
    // The entries point at the keys' values.
    for key in check_listing(&mut list, model, now) {
        let record = block_on(s.get_record(&key)).unwrap().unwrap();
        assert_eq!(record.value.as_ref(), model[&key].0.as_slice());
    }
}

/// One write drawn from `draw`: a delete, a put with an expiry or a plain put.
async fn write(s: &Substore<SimDevice>, model: &mut Model, draw: u64, key: Vec<u8>, step: u64) {
    match (draw >> 20) % 5 {
        0 => {
            s.delete(&key).await.unwrap();
            model.remove(&key);
        }
        1 => {
            let expiry = T0 + 1000 + (draw >> 40) % 1000;
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
            write(&s, &mut model, state, key, step).await;
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

// One order over several stores (`KeyOrder`): pages forward and in reverse after puts
// of new keys, overwrites, deletes (slots freed and reused before the order catches
// up), expiries, compaction, a record of changes that overflows, and a reopen (the
// reopened stores record nothing for the old order).

const STORES: u64 = 5;

async fn open(devices: &[SimDevice], clock: &Clock) -> Vec<Substore<SimDevice>> {
    let mut stores = Vec::new();
    for (n, dev) in devices.iter().enumerate() {
        let id = SubstoreId::root(n as u64);
        stores.push(
            Substore::create_or_open(dev.clone(), id, config(clock))
                .await
                .unwrap(),
        );
    }
    stores
}

/// The store a key lives in (any fixed spread will do).
fn store_of(key: &[u8]) -> usize {
    (key.iter().map(|&b| u64::from(b)).sum::<u64>() % STORES) as usize
}

/// Lists up to `limit` keys, building the order again when it can no longer follow
/// the stores; counts the builds.
struct Lister {
    order: Option<KeyOrder>,
    builds: usize,
}

impl Lister {
    fn list(
        &mut self,
        stores: &[&Substore<SimDevice>],
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Vec<(Vec<u8>, u32)> {
        loop {
            if !self.order.as_ref().is_some_and(|o| o.covers(stores)) {
                self.order = KeyOrder::build(stores);
                self.builds += 1;
            }
            let order = self.order.as_mut().expect("five small stores fit");
            let mut got = Vec::new();
            let visit = |key: &[u8], entry: ringkv_engine::index::Entry| {
                got.push((key.to_vec(), entry.value_len));
                true
            };
            if order.visit_keys(stores, from, direction, limit, visit) {
                return got;
            }
            self.order = None;
        }
    }

    fn check(&mut self, stores: &[Substore<SimDevice>], model: &Model, now: u64) {
        let stores: Vec<&Substore<SimDevice>> = stores.iter().collect();
        let mut list =
            |from: Option<&[u8]>, direction, limit| self.list(&stores, from, direction, limit);
        check_listing(&mut list, model, now);
    }
}

/// `steps` random writes over 3000 keys spread across the stores.
async fn churn(stores: &[Substore<SimDevice>], model: &mut Model, seed: &mut u64, steps: u64) {
    for step in 0..steps {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("k{:05}", (*seed >> 33) % 3000).into_bytes();
        write(&stores[store_of(&key)], model, *seed, key, step).await;
    }
}

#[test]
fn one_order_over_several_stores_pages_through_their_live_keys() {
    block_on(async {
        let clock = Clock::manual(T0);
        let devices: Vec<SimDevice> = (0..STORES).map(|_| SimDevice::new()).collect();
        let stores = open(&devices, &clock).await;
        let (mut model, mut seed) = (Model::new(), 7u64);
        let mut lister = Lister {
            order: None,
            builds: 0,
        };
        churn(&stores, &mut model, &mut seed, 3000).await;
        lister.check(&stores, &model, T0);
        // Small rounds of changes between listings: caught up, never built again.
        for _ in 0..20 {
            churn(&stores, &mut model, &mut seed, 150).await;
            lister.check(&stores, &model, T0);
        }
        assert_eq!(lister.builds, 1, "the order caught up with every round");
        clock.advance(Duration::from_millis(1500));
        lister.check(&stores, &model, T0 + 1500);
        for s in &stores {
            s.compact(0.0).await.unwrap();
        }
        lister.check(&stores, &model, T0 + 1500);
        assert_eq!(lister.builds, 1, "compaction moves records, not keys");
        // Past its bound (4096 changes, or a quarter of the store's keys) a store's
        // record of changes overflows: built again.
        for n in 0..30_000u32 {
            let key = format!("n{n:06}").into_bytes();
            stores[store_of(&key)].put(&key, b"new").await.unwrap();
            model.insert(key, (b"new".to_vec(), None));
        }
        lister.check(&stores, &model, T0 + 1500);
        assert_eq!(
            lister.builds, 2,
            "an overflowed record makes the order build again"
        );
        for s in stores {
            s.close().await.unwrap();
        }
        let stores = open(&devices, &clock).await;
        lister.check(&stores, &model, T0 + 1500);
        assert_eq!(
            lister.builds, 3,
            "reopened stores record nothing for the old order"
        );
        churn(&stores, &mut model, &mut seed, 500).await;
        lister.check(&stores, &model, T0 + 1500);
        assert_eq!(lister.builds, 3);
        for s in stores {
            s.close().await.unwrap();
        }
    });
}
