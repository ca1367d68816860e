//! Read-modify-write (`Db::update`), tasks on the cores (`Db::spawn_on_core`) and their
//! `Local` handle, and the per-leaf figures.

use std::sync::mpsc;

use ringkv::{Db, Durability, Options, Update};

fn tempdir() -> tempfile::TempDir {
    // On the work tree's disk: O_DIRECT needs a real file system, not tmpfs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn options(cores: usize) -> Options {
    Options::default()
        .cores(cores)
        .extent_size_bytes(64 << 10)
        .cache_bytes(1 << 20)
        .durability(Durability::Buffered)
}

/// Counters carry this much padding so that their records leave the write buffer for
/// the disk quickly and reads of them wait on I/O, which is where a non-atomic
/// read-modify-write would interleave.
const PAD: usize = 6000;

fn increment(old: Option<&[u8]>) -> Update {
    let n: u64 = old.map_or(0, count);
    let mut value = (n + 1).to_string().into_bytes();
    value.resize(PAD, b' ');
    Update::Put(value)
}

fn count(v: &[u8]) -> u64 {
    std::str::from_utf8(v).unwrap().trim_end().parse().unwrap()
}

#[test]
fn update_is_atomic_under_concurrent_increments_and_writes() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2)).unwrap();
    let threads = 8;
    let per_thread: u64 = 300;
    std::thread::scope(|s| {
        for t in 0..threads {
            let db = db.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    db.update("counter", increment).unwrap();
                    // Plain writes of other keys on the same cores race with the
                    // increments' reads and make them retry.
                    db.put(format!("noise-{t}-{}", i % 7), "x").unwrap();
                }
            });
        }
    });
    let total = threads * per_thread;
    assert_eq!(count(&db.get("counter").unwrap().unwrap()), total);
    db.close().unwrap();
    let db = Db::open(dir.path(), options(3)).unwrap();
    assert_eq!(count(&db.get("counter").unwrap().unwrap()), total);
}

#[test]
fn update_keep_delete_and_value_seen() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2)).unwrap();
    assert_eq!(
        db.update("k", |old| {
            assert_eq!(old, None);
            Update::Keep
        })
        .unwrap(),
        None
    );
    assert_eq!(db.get("k").unwrap(), None);
    assert_eq!(
        db.update("k", |_| Update::Put(b"v1".to_vec())).unwrap(),
        None
    );
    let seen = db.update("k", |_| Update::Keep).unwrap();
    assert_eq!(seen.as_deref(), Some(&b"v1"[..]));
    assert_eq!(
        db.update("k", |_| Update::Delete).unwrap().as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(db.get("k").unwrap(), None);
    let too_big = vec![0u8; ringkv::VALUE_LEN_MAX + 1];
    let err = db.update("k", move |_| Update::Put(too_big)).unwrap_err();
    assert!(
        matches!(err, ringkv::Error::ValueTooLarge { .. }),
        "{err:?}"
    );
    assert_eq!(db.get("k").unwrap(), None);
}

#[test]
fn tasks_on_every_core_use_local_handles() {
    let dir = tempdir();
    let cores = 3;
    let db = Db::open(dir.path(), options(cores)).unwrap();
    let (tx, rx) = mpsc::channel();
    for core in 0..cores {
        let tx = tx.clone();
        db.spawn_on_core(core, move |local| async move {
            assert_eq!(local.core(), core);
            let mut owned = 0;
            for i in 0..200 {
                let key = format!("c{core}-{i}");
                owned += usize::from(local.owns(&key));
                local.put(&key, key.as_bytes()).await.unwrap();
                assert_eq!(
                    local.get(&key).await.unwrap().as_deref(),
                    Some(key.as_bytes())
                );
                assert!(local.exists(&key).await.unwrap());
                local.update("shared", increment).await.unwrap();
            }
            local.delete(format!("c{core}-0")).await.unwrap();
            tx.send((core, owned)).unwrap();
        })
        .unwrap();
    }
    drop(tx);
    let mut owned_total = 0;
    for (_, owned) in rx.iter() {
        owned_total += owned;
    }
    // Keys hash to every core: some calls went in place, some crossed.
    assert!(
        owned_total > 0 && owned_total < cores * 200,
        "{owned_total}"
    );
    assert_eq!(count(&db.get("shared").unwrap().unwrap()), 600);
    assert_eq!(db.get("c1-0").unwrap(), None);
    assert_eq!(db.get("c2-199").unwrap().as_deref(), Some(&b"c2-199"[..]));
    let stats = db.stats().unwrap();
    assert_eq!(stats.keys, 3 * 199 + 1);
    let leaves: u64 = stats.cores.iter().map(|c| c.leaves.len() as u64).sum();
    assert_eq!(leaves, stats.substores);
    let keys: u64 = stats
        .cores
        .iter()
        .flat_map(|c| &c.leaves)
        .map(|l| l.stats.keys)
        .sum();
    assert_eq!(keys, stats.keys);
    assert!(db.spawn_on_core(cores, |_| async {}).is_err());
    db.close().unwrap();
}

#[test]
fn a_task_still_running_at_close_does_not_block_it() {
    let dir = tempdir();
    let db = Db::open(dir.path(), options(2)).unwrap();
    db.spawn_on_core(1, |local| async move {
        let mut i = 0u64;
        loop {
            if local.put(format!("k{}", i % 10), "v").await.is_err() {
                break; // closed
            }
            i += 1;
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    db.close().unwrap();
}
