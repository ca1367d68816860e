//! Model-based tests: random sequences of put / delete / get / flush / reopen / crash /
//! injected faults against a `BTreeMap` that knows which writes were durable.
//!
//! The property after a crash (or a reopen without flush) is strong: the substore holds
//! exactly the durable state plus some prefix of the writes made after the last
//! successful flush — every durable write is present and nothing appears that was
//! never written, in an order that never existed.

use std::collections::BTreeMap;

use futures_lite::future::block_on;
use ringkv_engine::{Config, CrashMode, Error, Fault, FaultOn, SimDevice, Substore, SubstoreId};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

fn apply(map: &mut Map, op: &Op) {
    match op {
        Op::Put(k, v) => {
            map.insert(k.clone(), v.clone());
        }
        Op::Delete(k) => {
            map.remove(k);
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Model {
    /// State as of the last successful flush.
    durable: Map,
    /// Writes accepted since then, in order.
    since: Vec<Op>,
}

impl Model {
    fn current(&self) -> Map {
        let mut m = self.durable.clone();
        self.since.iter().for_each(|op| apply(&mut m, op));
        m
    }

    /// After a crash: the recovered map must be durable + a prefix of `since`.
    fn settle(&mut self, recovered: &Map, seed: u64) {
        let mut m = self.durable.clone();
        if &m == recovered {
            self.since.clear();
            return;
        }
        for op in &self.since {
            apply(&mut m, op);
            if &m == recovered {
                self.durable = m;
                self.since.clear();
                return;
            }
        }
        let missing: Vec<_> = self
            .durable
            .iter()
            .filter(|(k, v)| recovered.get(*k) != Some(v))
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .take(5)
            .collect();
        panic!(
            "seed {seed}: recovered state ({} keys) is not the durable state ({} keys) plus a \
             prefix of the {} later writes; durable keys that differ: {missing:?}",
            recovered.len(),
            self.durable.len(),
            self.since.len()
        );
    }
}

fn config() -> Config {
    Config {
        extent_size_bytes: 64 << 10,
        write_buffer_bytes: 8 << 10,
        ..Config::default()
    }
}

async fn contents(s: &Substore<SimDevice>) -> Map {
    let mut m = Map::new();
    s.for_each(|k, v| {
        assert!(
            m.insert(k.to_vec(), v.to_vec()).is_none(),
            "key listed twice"
        );
    })
    .await
    .unwrap();
    assert_eq!(m.len() as u64, s.len());
    m
}

/// Runs one sequence; returns how many power cuts (crashes followed by a recovery) it made.
fn run(seed: u64, steps: usize) -> u64 {
    block_on(async {
        let mut cuts = 0;
        let mut rng = Rng(seed);
        let mut dev = SimDevice::new();
        let id = SubstoreId::root(seed);
        let mut store = Some(
            Substore::create_or_open(dev.clone(), id, config())
                .await
                .unwrap(),
        );
        let mut model = Model {
            durable: Map::new(),
            since: Vec::new(),
        };
        let mut failed = false;
        for _ in 0..steps {
            let s = store.as_ref().unwrap();
            let key = format!("k{:03}", rng.below(60)).into_bytes();
            match rng.below(100) {
                0..=44 => {
                    let len = match rng.below(20) {
                        0 => 70_000 + rng.below(30_000) as usize, // larger than an extent
                        1..=4 => 0,
                        _ => rng.below(3000) as usize,
                    };
                    let value: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
                    match s.put(&key, &value).await {
                        Ok(()) => model.since.push(Op::Put(key, value)),
                        // The record is in memory (and indexed) but its write-out failed:
                        // it is a write made after the last flush.
                        Err(Error::Io { .. }) if failed => model.since.push(Op::Put(key, value)),
                        // Refused before anything changed.
                        Err(Error::ReadOnly { .. }) if failed => {}
                        Err(e) => panic!("seed {seed}: put failed: {e}"),
                    }
                }
                45..=59 => match s.delete(&key).await {
                    Ok(_) => model.since.push(Op::Delete(key)),
                    Err(Error::Io { .. }) if failed => model.since.push(Op::Delete(key)),
                    Err(Error::ReadOnly { .. }) if failed => {}
                    Err(e) => panic!("seed {seed}: delete failed: {e}"),
                },
                60..=79 => {
                    let got = s.get(&key).await.unwrap();
                    assert_eq!(
                        got.as_deref(),
                        model.current().get(&key).map(Vec::as_slice),
                        "seed {seed}: get {}",
                        String::from_utf8_lossy(&key)
                    );
                    assert_eq!(s.exists(&key), got.is_some());
                }
                80..=86 => match s.flush().await {
                    Ok(()) => {
                        assert!(!s.is_read_only(), "seed {seed}: flush succeeded read-only");
                        model.durable = model.current();
                        model.since.clear();
                    }
                    Err(_) if failed => {}
                    Err(e) => panic!("seed {seed}: flush failed: {e}"),
                },
                87..=89 => {
                    // Inject a fault into one of the next few writes or syncs.
                    let on = if rng.below(2) == 0 {
                        FaultOn::Write
                    } else {
                        FaultOn::Sync
                    };
                    let fault = if rng.below(2) == 0 {
                        Fault::Io
                    } else {
                        Fault::NoSpace
                    };
                    dev.inject(on, 1 + rng.below(3), fault);
                    failed = true; // from now on errors may come
                }
                90..=91 => {
                    // Compaction runs to the end: when it compacted anything, the copies
                    // and everything written before them are durable afterwards.
                    match s.compact(0.3).await {
                        Ok(stats) if stats.extents == 0 => {}
                        Ok(_) => {
                            model.durable = model.current();
                            model.since.clear();
                        }
                        Err(_) if failed => {}
                        Err(e) => panic!("seed {seed}: compaction failed: {e}"),
                    }
                }
                92..=93 => {
                    // A crash in the middle of a compaction: poll it a few steps, then
                    // pull the plug.
                    let steps = 1 + rng.below(6);
                    {
                        let mut compaction = std::pin::pin!(s.compact(0.2));
                        for _ in 0..steps {
                            if futures_lite::future::poll_once(compaction.as_mut())
                                .await
                                .is_some()
                            {
                                break;
                            }
                        }
                    }
                    drop(store.take());
                    dev.crash(CrashMode::Random { seed: rng.next() });
                    cuts += 1;
                    let s = Substore::create_or_open(dev.clone(), id, config())
                        .await
                        .unwrap();
                    model.settle(&contents(&s).await, seed);
                    store = Some(s);
                    failed = false;
                }
                94..=95 => {
                    // Reopen without a crash: unflushed writes may be partly written.
                    drop(store.take());
                    dev.crash(CrashMode::Random { seed: rng.next() });
                    cuts += 1;
                    let s = Substore::create_or_open(dev.clone(), id, config())
                        .await
                        .unwrap();
                    model.settle(&contents(&s).await, seed);
                    store = Some(s);
                    failed = false;
                }
                _ => {
                    drop(store.take());
                    let mode = match rng.below(3) {
                        0 => CrashMode::DropUnsynced,
                        1 => CrashMode::TearLast { seed: rng.next() },
                        _ => CrashMode::Random { seed: rng.next() },
                    };
                    dev.crash(mode);
                    cuts += 1;
                    let s = Substore::create_or_open(dev.clone(), id, config())
                        .await
                        .unwrap();
                    model.settle(&contents(&s).await, seed);
                    store = Some(s);
                    failed = false;
                }
            }
        }
        // A clean close keeps everything, unless a fault was pending.
        let s = store.take().unwrap();
        if !failed && s.flush().await.is_ok() {
            model.durable = model.current();
            model.since.clear();
        }
        drop(s);
        dev.crash(CrashMode::DropUnsynced);
        let s = Substore::create_or_open(dev.clone(), id, config())
            .await
            .unwrap();
        model.settle(&contents(&s).await, seed);
        for (k, v) in &model.durable {
            assert_eq!(
                s.get(k).await.unwrap().as_deref(),
                Some(&v[..]),
                "seed {seed}"
            );
        }
        cuts + 1
    })
}

#[test]
fn random_sequences_with_crashes_and_faults() {
    let seeds: u64 = std::env::var("RINGKV_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let started = std::time::Instant::now();
    let cuts: u64 = (0..seeds).map(|seed| run(seed, 400)).sum();
    eprintln!(
        "{seeds} seeds (RINGKV_MODEL_SEEDS), {cuts} power cuts checked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
