//! 16-way splitting through the public API: several levels of splits while writes and
//! reads go on, checked against a `BTreeMap`, with reopens under other core counts.

use std::collections::BTreeMap;
use std::time::Duration;

use ringkv::{Db, Durability, Options};

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Buffered)
        .extent_size_bytes(64 << 10)
        .split_threshold_bytes(96 << 10)
        .compaction_interval(Duration::from_millis(1))
}

#[test]
fn substores_split_in_levels_and_nothing_is_lost() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut substores = 16;
    for (round, cores) in [2usize, 1, 3].into_iter().enumerate() {
        let db = Db::open(dir.path(), options(cores)).unwrap();
        assert_eq!(
            db.stats().unwrap().substores,
            substores,
            "round {round}: leaves survive a reopen"
        );
        for (k, v) in &model {
            assert_eq!(db.get(k).unwrap().as_deref(), Some(&v[..]), "round {round}");
        }
        let mut written = 0;
        for i in 0.. {
            let key = format!("r{round}-key{i}").into_bytes();
            // Round 1 writes only keys under one depth-2 prefix, so that leaf splits again.
            let hash = ringkv_engine::hash::routing_hash(&key);
            if round == 1 && hash >> 56 != 0x35 {
                continue;
            }
            written += 1;
            if written > 8000 || round == 1 && written > 1500 {
                break;
            }
            let value = vec![(i % 251) as u8; 300];
            db.put(&key, &value).unwrap();
            model.insert(key, value);
            if i % 9 == 0 {
                let old = format!("r{round}-key{}", i / 2).into_bytes();
                db.delete(&old).unwrap();
                model.remove(&old);
            }
            if i % 400 == 0 {
                let probe = format!("r{round}-key{}", i / 3).into_bytes();
                assert_eq!(
                    db.get(&probe).unwrap().as_deref(),
                    model.get(&probe).map(Vec::as_slice)
                );
            }
        }
        // Let the background task catch up with the splits the writes triggered: every
        // depth-1 leaf once in round 0, the crowded depth-2 leaf again in round 1.
        let expected = match round {
            0 => 256,
            1 => 256 + 15,
            _ => substores,
        };
        for _ in 0..1000 {
            if db.stats().unwrap().substores == expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = db.stats().unwrap();
        let splits: u64 = stats.cores.iter().map(|c| c.splits).sum();
        eprintln!(
            "round {round} ({cores} cores): {} substores, {splits} splits this open",
            stats.substores
        );
        assert_eq!(stats.substores, expected, "round {round}");
        substores = stats.substores;
        assert_eq!(stats.keys, model.len() as u64);
        let mut seen = BTreeMap::new();
        db.for_each(|k, v| {
            assert!(
                seen.insert(k.to_vec(), v.to_vec()).is_none(),
                "listed twice"
            );
        })
        .unwrap();
        assert!(
            seen == model,
            "round {round}: contents differ from the model"
        );
        db.close().unwrap();
    }
}
