//! A commit log an earlier run left behind must never bring back what was deleted since.
//!
//! Run A (one core) puts a key and loses power: the put is durable in core 0's commit
//! log only. Run B opens with two cores, replays the put into its leaf, which core 1
//! now owns, deletes the key and compacts the leaf: the put and the tombstone both go,
//! since no older extent could hold the key, after more writes on core 1 filled its log
//! (which then starts again, without the tombstones). Core 0 commits nothing in run B,
//! which ends with another power cut. Run C must not find the put again in core 0's old log.

use ringkv::{
    COMMIT_LOG_DEFAULT_BYTES, COMMIT_LOG_MIN_BYTES, CrashMode, Db, Durability, Options, SimDisk,
};
use ringkv_engine::hash::routing_hash;

const DB_PATH: &str = "/db";

fn options(disk: &SimDisk, cores: usize, log_bytes: u64) -> Options {
    Options::default()
        .cores(cores)
        .durability(Durability::Sync)
        .background_compaction(false)
        .commit_log_bytes(log_bytes)
        .extent_size_bytes(64 << 10)
        .cache_bytes(0)
        .io_memory_bytes(64 << 10)
        .simulated_disk(disk.clone())
}

/// One key for each of the sixteen leaves a new database starts with.
fn key_of_leaf(nibble: u64) -> Vec<u8> {
    (0u64..)
        .map(|n| format!("key-{n}").into_bytes())
        .find(|k| routing_hash(k) >> 60 == nibble)
        .expect("some key hashes there")
}

/// The leaves (by first hash nibble) core `core` owns.
fn nibbles_of(db: &Db, core: usize) -> Vec<u64> {
    let stats = db.stats().unwrap();
    (stats.cores[core].leaves.iter())
        .map(|l| u64::from_str_radix(&l.name[3..4], 16).unwrap())
        .collect()
}

#[test]
fn a_delete_compacted_away_stays_deleted_though_an_old_log_holds_the_put() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, 1, COMMIT_LOG_DEFAULT_BYTES)).unwrap();
    for nibble in 0..16 {
        db.put(key_of_leaf(nibble), b"from run A").unwrap();
    }
    let mut rebooted = disk.clone();
    rebooted.crash(CrashMode::DropUnsynced);
    drop(db);

    let db = Db::open(DB_PATH, options(&rebooted, 2, COMMIT_LOG_MIN_BYTES)).unwrap();
    let core1 = nibbles_of(&db, 1);
    assert!(core1.len() >= 2, "core 1 owns {core1:?}");
    // One key deleted; the other leaves of core 1 take the filler.
    let deleted = vec![core1[0]];
    for &nibble in &deleted {
        db.delete(key_of_leaf(nibble)).unwrap();
    }
    // Enough more on core 1's other leaves to fill its log: the substores are synced
    // and the log starts again, so the tombstone is in its extent alone, and nothing
    // newer than the put is left in its leaf once compaction drops both.
    let filler = vec![b'f'; 1024];
    let fillers = (0u64..).map(|n| format!("filler-{n}").into_bytes());
    let ours = fillers.filter(|k| core1[1..].contains(&(routing_hash(k) >> 60)));
    for key in ours.take(200) {
        db.put(key, &filler).unwrap();
    }
    let compacted = db.compact().unwrap();
    assert!(compacted.tombstones_dropped >= deleted.len() as u64);
    // A power cut, not a close: a close would start core 0's log again.
    let mut rebooted = rebooted.clone();
    rebooted.crash(CrashMode::DropUnsynced);
    drop(db);

    for cores in [2, 1, 3] {
        let db = Db::open(DB_PATH, options(&rebooted, cores, COMMIT_LOG_DEFAULT_BYTES)).unwrap();
        for nibble in 0..16 {
            let got = db.get(key_of_leaf(nibble)).unwrap();
            let want = (!deleted.contains(&nibble)).then_some(&b"from run A"[..]);
            assert_eq!(got.as_deref(), want, "leaf {nibble:x}, {cores} cores");
        }
        db.close().unwrap();
    }
}
