//! Random operation sequences against a `BTreeMap`, with reopens under other core counts
//! and durability modes.

mod support;

use std::collections::BTreeMap;

use ringkv::{Db, Durability, Options};

fn options(cores: usize, durability: Durability) -> Options {
    Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(256 << 10)
        // Small enough that extents also end early to bound their key summaries.
        .summary_memory_bytes(2 << 10)
}

fn run(seed: u64, steps: usize) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut next = support::rng(seed);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut db = Db::open(dir.path(), options(2, Durability::Sync)).unwrap();
    for step in 0..steps {
        let r = next();
        let key = format!("k{}", r % 97).into_bytes();
        match (r >> 8) % 100 {
            0..=39 => {
                let len = ((r >> 20) % 5000) as usize;
                let value: Vec<u8> = (0..len).map(|i| (i as u64 ^ r) as u8).collect();
                db.put(&key, &value).unwrap();
                model.insert(key, value);
            }
            40..=54 => {
                db.delete(&key).unwrap();
                model.remove(&key);
            }
            55..=84 => {
                let got = db.get(&key).unwrap();
                assert_eq!(
                    got.as_deref(),
                    model.get(&key).map(Vec::as_slice),
                    "seed {seed} step {step}"
                );
            }
            85..=89 => assert_eq!(db.exists(&key).unwrap(), model.contains_key(&key)),
            90..=93 => assert_eq!(
                db.len().unwrap(),
                model.len() as u64,
                "seed {seed} step {step}"
            ),
            94..=95 => db.flush().unwrap(),
            _ => {
                db.close().unwrap();
                let cores = 1 + (r >> 40) as usize % 3;
                let durability = if (r >> 50) % 2 == 0 {
                    Durability::Sync
                } else {
                    Durability::Buffered
                };
                db = Db::open(dir.path(), options(cores, durability)).unwrap();
            }
        }
    }
    let seen = support::listing(&db);
    assert!(
        seen == model,
        "seed {seed}: for_each differs from the model"
    );
}

#[test]
fn random_sequences_with_reopens_match_a_btreemap() {
    for seed in 0..6 {
        run(seed, 1500);
    }
}
