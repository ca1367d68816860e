//! `Db::get_many` and `Db::put_many`: one request per core, answers in the caller's
//! order, later entries of one key winning, limits checked before anything is sent.

use std::collections::BTreeMap;

use ringkv::{Db, Durability, Error, Options};

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options(cores: usize, durability: Durability) -> Options {
    Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(1 << 20)
        .io_memory_bytes(64 << 10)
}

/// splitmix64, for a reproducible workload.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn batches_of_puts_and_gets_match_a_model_and_survive_reopening() {
    for (cores, durability) in [(3, Durability::Sync), (2, Durability::Buffered)] {
        let dir = tempdir();
        let db = Db::open(dir.path(), options(cores, durability)).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut rng = 7u64;
        for round in 0..40u64 {
            let n = 1 + next(&mut rng) % 64;
            let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                .map(|i| {
                    // Few enough keys that a batch often holds one key twice.
                    let key = format!("key-{}", next(&mut rng) % 300).into_bytes();
                    let value = format!("{round}-{i}-").repeat(1 + i as usize % 30);
                    (key, value.into_bytes())
                })
                .collect();
            db.put_many(&entries).unwrap();
            for (k, v) in entries {
                model.insert(k, v); // the later entry of a key wins
            }
            let asked: Vec<Vec<u8>> = (0..n)
                .map(|_| format!("key-{}", next(&mut rng) % 400).into_bytes())
                .collect();
            let got = db.get_many(&asked).unwrap();
            assert_eq!(got.len(), asked.len());
            for (key, value) in asked.iter().zip(got) {
                assert_eq!(value.as_deref(), model.get(key).map(Vec::as_slice));
            }
        }
        db.close().unwrap();
        let db = Db::open(dir.path(), options(cores, durability)).unwrap();
        let keys: Vec<&Vec<u8>> = model.keys().collect();
        let got = db.get_many(&keys).unwrap();
        for (key, value) in keys.iter().zip(got) {
            assert_eq!(value.as_deref(), model.get(*key).map(Vec::as_slice));
        }
        assert_eq!(db.len().unwrap(), model.len() as u64);
        db.close().unwrap();
    }
}

#[test]
fn an_entry_over_the_limits_fails_the_batch_before_anything_is_written() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2, Durability::Sync)).unwrap();
    let too_long = vec![b'k'; ringkv::KEY_LEN_MAX + 1];
    let entries = vec![
        (b"fine".to_vec(), b"v".to_vec()),
        (too_long.clone(), b"v".to_vec()),
    ];
    assert!(matches!(
        db.put_many(&entries),
        Err(Error::KeyTooLarge { .. })
    ));
    assert_eq!(
        db.get("fine").unwrap(),
        None,
        "nothing of the batch was written"
    );
    assert!(matches!(
        db.get_many(&[b"fine".to_vec(), too_long]),
        Err(Error::KeyTooLarge { .. })
    ));
    let none: [&[u8]; 0] = [];
    assert!(db.get_many(&none).unwrap().is_empty());
    db.put_many(&[] as &[(&[u8], &[u8])]).unwrap();
    db.close().unwrap();
}
