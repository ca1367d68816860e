//! Criterion micro-benchmarks of the engine: record encode and decode, index insert and
//! lookup at one million keys, and the listing one core does for a short ordered scan
//! over a new database's 16 leaves: a seek and a few keys in each leaf's own order
//! (as a core merges them when it cannot use one order), and a seek and 50 keys in one
//! `KeyOrder` over 16 substores (as a core lists a page); and what keeping that order
//! costs puts of new keys (`order-upkeep`).
//!
//! `index-baseline` runs the same insert and lookup on a plain `hashbrown::HashMap` from
//! key to `Entry` (same hasher): the speed of the obvious layout, which spends about
//! twice the index's memory per key, for context.
//!
//! `cargo bench -p ringkv-engine --bench engine`

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ringkv_engine::format::{Kind, RecordHeader, decode_record, encode_record};
use ringkv_engine::index::{Entry, Index};
use ringkv_engine::{Direction, KeyOrder, MemDevice, Substore, SubstoreId};

const INDEX_KEYS: u64 = 1_000_000;

fn key16(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k[8..].copy_from_slice(&i.to_le_bytes());
    k
}

fn entry(i: u64) -> Entry {
    Entry {
        extent: (i >> 16) as u32,
        offset: (i as u32) << 4,
        value_len: 100,
        seq: i,
        meta_len: 0,
        expiry_unix_ms: None,
    }
}

fn records(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for value_len in [100usize, 1024] {
        let key = key16(7);
        let value = vec![0xa5u8; value_len];
        let header = RecordHeader {
            kind: Kind::Put,
            seq: 42,
            expiry_unix_ms: None,
            meta_len: 0,
            key_len: 16,
            value_len: value_len as u32,
        };
        group.throughput(Throughput::Elements(1));
        let mut buf = Vec::with_capacity(header.record_len() * 2);
        group.bench_function(format!("encode/16B-key/{value_len}B-value"), |b| {
            b.iter(|| {
                buf.clear();
                encode_record(&mut buf, black_box(&header), &[], &key, &value);
                black_box(buf.len())
            })
        });
        let mut bytes = Vec::new();
        encode_record(&mut bytes, &header, &[], &key, &value);
        group.bench_function(format!("decode/16B-key/{value_len}B-value"), |b| {
            b.iter(|| black_box(decode_record(black_box(&bytes)).unwrap().value.len()))
        });
    }
    group.finish();
}

fn index(c: &mut Criterion) {
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.throughput(Throughput::Elements(INDEX_KEYS));
    group.bench_function("insert/1M-keys-of-16B", |b| {
        b.iter_batched(
            Index::new,
            |mut index| {
                for i in 0..INDEX_KEYS {
                    index.insert(&key16(i), entry(i), Some(b"")).unwrap();
                }
                index
            },
            BatchSize::PerIteration,
        )
    });
    // The same with the key order kept (as once a scan has built it): each new key
    // also takes its place in the order.
    group.bench_function("insert-ordered/1M-keys-of-16B", |b| {
        b.iter_batched(
            || {
                let mut index = Index::new();
                index.build_order();
                index
            },
            |mut index| {
                for i in 0..INDEX_KEYS {
                    index.insert(&key16(i), entry(i), Some(b"")).unwrap();
                }
                index
            },
            BatchSize::PerIteration,
        )
    });
    let mut full = Index::new();
    for i in 0..INDEX_KEYS {
        full.insert(&key16(i), entry(i), Some(b"")).unwrap();
    }
    group.bench_function("lookup-hit/1M-keys-of-16B", |b| {
        b.iter(|| {
            let mut found = 0u64;
            for i in 0..INDEX_KEYS {
                found += u64::from(
                    full.get(&key16(i.wrapping_mul(7919) % INDEX_KEYS))
                        .is_some(),
                );
            }
            black_box(found)
        })
    });
    group.bench_function("lookup-miss/1M-keys-of-16B", |b| {
        b.iter(|| {
            let mut found = 0u64;
            for i in INDEX_KEYS..2 * INDEX_KEYS {
                found += u64::from(full.get(&key16(i)).is_some());
            }
            black_box(found)
        })
    });
    group.finish();
}

/// The same operations on the obvious layout: keys and entries inline in the table.
fn index_baseline(c: &mut Criterion) {
    type Map = hashbrown::HashMap<[u8; 16], Entry, ahash::RandomState>;
    let mut group = c.benchmark_group("index-baseline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(INDEX_KEYS));
    group.bench_function("insert/1M-keys-of-16B", |b| {
        b.iter_batched(
            Map::default,
            |mut map| {
                for i in 0..INDEX_KEYS {
                    map.insert(key16(i), entry(i));
                }
                map
            },
            BatchSize::PerIteration,
        )
    });
    let full: Map = (0..INDEX_KEYS).map(|i| (key16(i), entry(i))).collect();
    group.bench_function("lookup-hit/1M-keys-of-16B", |b| {
        b.iter(|| {
            let mut found = 0u64;
            for i in 0..INDEX_KEYS {
                let key = key16(i.wrapping_mul(7919) % INDEX_KEYS);
                found += u64::from(full.get(&key).is_some());
            }
            black_box(found)
        })
    });
    group.finish();
}

/// Indexes a short scan lists from, as one core of a new database holds them.
const LEAVES: u64 = 16;
/// Keys over all of them (the rig's YCSB E default).
const SCAN_KEYS: u64 = 200_000;
/// Starts the benchmark's scans seek, each in every index.
const SCAN_STARTS: u64 = 1_000;

/// Keys as YCSB writes them: `user` and 12 digits.
fn user_key(i: u64) -> Vec<u8> {
    format!(
        "user{:012}",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_000_000_000
    )
    .into_bytes()
}

fn scan_listing(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Elements(SCAN_STARTS));
    let mut leaves: Vec<Index> = (0..LEAVES).map(|_| Index::new()).collect();
    for i in 0..SCAN_KEYS {
        let leaf = &mut leaves[(i % LEAVES) as usize];
        leaf.insert(&user_key(i), entry(i), Some(b"")).unwrap();
    }
    leaves.iter_mut().for_each(Index::build_order);
    group.bench_function("seek-and-list-8/16-indexes-of-12.5k-keys", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for start in 0..SCAN_STARTS {
                let from = user_key(start.wrapping_mul(7919) % SCAN_KEYS + SCAN_KEYS);
                for leaf in &leaves {
                    let keys = leaf.keys_from(Some(&from), Direction::Forward).take(8);
                    bytes += keys.map(|(k, _)| k.len()).sum::<usize>();
                }
            }
            black_box(bytes)
        })
    });
    let stores = loaded_stores();
    let stores: Vec<&Substore<MemDevice>> = stores.iter().collect();
    let mut order = KeyOrder::build(&stores).expect("16 small stores fit");
    group.bench_function("list-50/one-order-over-16-stores-of-12.5k-keys", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            for start in 0..SCAN_STARTS {
                let from = user_key(start.wrapping_mul(7919) % SCAN_KEYS + SCAN_KEYS);
                let visit = |key: &[u8], _| {
                    bytes += key.len();
                    true
                };
                assert!(order.visit_keys(&stores, Some(&from), Direction::Forward, 50, visit));
            }
            black_box(bytes)
        })
    });
    group.finish();
}

/// New keys put per measured run of `order_upkeep`.
const NEW_KEYS: u64 = 20_000;
/// Changes after which the order catches up, as a core's commit round does.
const CATCH_UP_EVERY: u64 = 256;

/// 16 substores holding `SCAN_KEYS` keys of 100-byte values between them.
fn loaded_stores() -> Vec<Substore<MemDevice>> {
    futures_lite::future::block_on(async {
        let mut stores = Vec::new();
        for n in 0..LEAVES {
            let config = ringkv_engine::Config::default();
            let id = SubstoreId::root(n);
            stores.push(
                Substore::create_or_open(MemDevice::new(), id, config)
                    .await
                    .unwrap(),
            );
        }
        for i in 0..SCAN_KEYS {
            let store = &stores[(i % LEAVES) as usize];
            store.put(&user_key(i), &[0xa5; 100]).await.unwrap();
        }
        stores
    })
}

/// What keeping a core's key order costs its writes: `NEW_KEYS` puts of new keys over
/// 16 loaded substores, with no order, and with one order that records each new key
/// and catches up every `CATCH_UP_EVERY` changes.
fn order_upkeep(c: &mut Criterion) {
    let mut group = c.benchmark_group("order-upkeep");
    group.sample_size(10);
    group.throughput(Throughput::Elements(NEW_KEYS));
    let put_new = |stores: &[Substore<MemDevice>], mut order: Option<KeyOrder>| {
        let refs: Vec<&Substore<MemDevice>> = stores.iter().collect();
        futures_lite::future::block_on(async {
            for i in SCAN_KEYS..SCAN_KEYS + NEW_KEYS {
                let store = &stores[(i % LEAVES) as usize];
                store.put(&user_key(i), &[0xa5; 100]).await.unwrap();
                if let Some(order) = order.as_mut().filter(|_| i % CATCH_UP_EVERY == 0) {
                    assert!(order.catch_up(&refs));
                }
            }
        });
        order
    };
    group.bench_function("put-new-keys/16-stores-of-12.5k-keys/no-order", |b| {
        b.iter_batched(
            loaded_stores,
            |s| (put_new(&s, None), s),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("put-new-keys/16-stores-of-12.5k-keys/order-kept", |b| {
        b.iter_batched(
            || {
                let stores = loaded_stores();
                let order = KeyOrder::build(&stores.iter().collect::<Vec<_>>());
                (stores, order.expect("16 small stores fit"))
            },
            |(s, order)| (put_new(&s, Some(order)), s),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    records,
    index,
    index_baseline,
    scan_listing,
    order_upkeep
);
criterion_main!(benches);
