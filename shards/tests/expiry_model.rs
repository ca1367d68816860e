//! Random operations with expiries against a `BTreeMap` of (value, expiry), on a clock
//! the test moves: puts with and without a TTL, deletes, EXPIRE with each condition,
//! PERSIST, updates, time passing, purges, compaction, and reopens under other core
//! counts, half of them after a power cut (on the simulated disk, everything unsynced
//! dropped) when the database acknowledged every write durably. After every step the
//! database must answer what the model says is live.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ringkv::{
    Clock, CrashMode, Db, Durability, ExpireIf, Options, PutOptions, SimDisk, Ttl, Update,
};

const T0: u64 = 1_700_000_000_000;

type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

const DB_PATH: &str = "/db";

fn options(disk: &SimDisk, clock: &Clock, cores: usize, durability: Durability) -> Options {
    Options::default()
        .cores(cores)
        .durability(durability)
        .extent_size_bytes(64 << 10)
        .cache_bytes(256 << 10)
        .io_memory_bytes(256 << 10)
        .clock(clock.clone())
        .simulated_disk(disk.clone())
}

/// The model's live value of `key` at `now`.
fn live<'m>(model: &'m Model, key: &[u8], now: u64) -> Option<&'m (Vec<u8>, Option<u64>)> {
    model
        .get(key)
        .filter(|(_, expiry)| expiry.is_none_or(|at| at > now))
}

/// What EXPIRE with `only_if` does to an expiry, as Redis says.
fn applies(only_if: ExpireIf, current: Option<u64>, at: u64) -> bool {
    match only_if {
        ExpireIf::Always => true,
        ExpireIf::NoExpiry => current.is_none(),
        ExpireIf::HasExpiry => current.is_some(),
        ExpireIf::Later => current.is_some_and(|c| at > c),
        ExpireIf::Earlier => current.is_none_or(|c| at < c),
        ExpireIf::HasExpiryAndEarlier => current.is_some_and(|c| at < c),
    }
}

/// Runs one seed; answers how many power cuts it made.
fn run(seed: u64, steps: usize) -> u64 {
    let mut disk = SimDisk::new();
    let mut next = support::rng(seed);
    let clock = Clock::manual(T0);
    let mut model = Model::new();
    let mut durability = Durability::Sync;
    let mut cuts = 0;
    let mut db = Db::open(DB_PATH, options(&disk, &clock, 2, durability)).unwrap();
    for step in 0..steps {
        let r = next();
        let now = clock.now_unix_ms();
        let key = format!("k{}", r % 61).into_bytes();
        let at = now + (r >> 24) % 5_000;
        let ctx = format!("seed {seed} step {step}");
        match (r >> 8) % 100 {
            0..=19 => {
                let value = vec![(r >> 16) as u8; ((r >> 32) % 700) as usize];
                db.put(&key, &value).unwrap();
                model.insert(key, (value, None));
            }
            20..=34 => {
                let value = vec![(r >> 16) as u8; ((r >> 32) % 700) as usize];
                db.put_with(&key, &value, &PutOptions::new().expire_at_unix_ms(at))
                    .unwrap();
                model.insert(key, (value, Some(at)));
            }
            35..=39 => {
                db.delete(&key).unwrap();
                model.remove(&key);
            }
            40..=47 => {
                let only_if = [
                    ExpireIf::Always,
                    ExpireIf::NoExpiry,
                    ExpireIf::HasExpiry,
                    ExpireIf::Later,
                    ExpireIf::Earlier,
                    ExpireIf::HasExpiryAndEarlier,
                ][(r >> 40) as usize % 6];
                let changed = db.expire_if(&key, at, only_if).unwrap();
                let want = match live(&model, &key, now) {
                    Some((_, current)) => applies(only_if, *current, at),
                    None => false,
                };
                assert_eq!(changed, want, "{ctx}: expire {only_if:?}");
                if want {
                    model.get_mut(&key).unwrap().1 = Some(at);
                }
            }
            48..=51 => {
                let changed = db.persist(&key).unwrap();
                let want = live(&model, &key, now).is_some_and(|(_, e)| e.is_some());
                assert_eq!(changed, want, "{ctx}: persist");
                if want {
                    model.get_mut(&key).unwrap().1 = None;
                }
            }
            52..=55 => {
                // An append through update keeps the expiry.
                db.update(&key, |old| {
                    let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                    v.push(b'+');
                    Update::Put(v)
                })
                .unwrap();
                let entry = match live(&model, &key, now) {
                    Some((v, e)) => (v.clone(), *e),
                    None => (Vec::new(), None),
                };
                let (mut value, expiry) = entry;
                value.push(b'+');
                model.insert(key, (value, expiry));
            }
            56..=74 => {
                let want = live(&model, &key, now).map(|(v, _)| v.as_slice());
                assert_eq!(db.get(&key).unwrap().as_deref(), want, "{ctx}: get");
            }
            75..=79 => {
                let want = live(&model, &key, now).map(|(_, e)| match e {
                    None => Ttl::Never,
                    Some(at) => Ttl::In(Duration::from_millis(at - now)),
                });
                assert_eq!(db.ttl(&key).unwrap(), want, "{ctx}: ttl");
                assert_eq!(db.exists(&key).unwrap(), want.is_some(), "{ctx}: exists");
            }
            80..=84 => {
                let want = model.keys().filter(|k| live(&model, k, now).is_some());
                assert_eq!(db.len().unwrap(), want.count() as u64, "{ctx}: len");
            }
            85..=91 => clock.advance(Duration::from_millis((r >> 20) % 3_000)),
            92..=93 => {
                db.purge_expired().unwrap();
            }
            94 => {
                db.compact().unwrap();
            }
            95..=97 => db.flush().unwrap(),
            _ => {
                // Every write so far was acknowledged durable in a Sync database (one
                // thread, nothing in flight), so a power cut must keep all of them.
                if durability == Durability::Sync && (r >> 45) % 2 == 0 {
                    disk.crash(CrashMode::DropUnsynced);
                    drop(db);
                    cuts += 1;
                } else {
                    db.close().unwrap();
                }
                let cores = 1 + (r >> 40) as usize % 3;
                durability = match (r >> 50) % 2 {
                    0 => Durability::Sync,
                    _ => Durability::Buffered,
                };
                db = Db::open(DB_PATH, options(&disk, &clock, cores, durability)).unwrap();
            }
        }
    }
    let now = clock.now_unix_ms();
    let seen = support::listing(&db);
    let want: BTreeMap<Vec<u8>, Vec<u8>> = (model.iter())
        .filter(|(k, _)| live(&model, k, now).is_some())
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect();
    assert!(seen == want, "seed {seed}: for_each differs from the model");
    db.close().unwrap();
    cuts
}

#[test]
fn expiries_match_a_model_through_time_compaction_and_reopens() {
    support::raise_descriptor_limit();
    let seeds: u64 = std::env::var("RINGKV_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let cuts: u64 = (0..seeds).map(|seed| run(seed, 1_500)).sum();
    assert!(
        cuts >= seeds,
        "{cuts} power cuts in {seeds} seeds: too few to test them"
    );
}
