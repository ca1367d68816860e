//! A put's own durability (`PutOptions::durability`) against the database's mode, on a
//! simulated disk whose power is cut with everything unsynced dropped: a `Sync` put
//! in a `Buffered` database survives the cut, a `Buffered` put in a `Sync` database
//! need not, and neither changes what the other writes are promised.

use std::time::Duration;

use ringkv::{CrashMode, Db, Durability, Options, PutOptions, SimDisk};

const DB_PATH: &str = "/db";

fn options(disk: &SimDisk, durability: Durability) -> Options {
    Options::default()
        .cores(2)
        .durability(durability)
        // No background round falls inside a test: only what a put itself waits for
        // is durable at the cut.
        .flush_interval(Duration::from_secs(3600))
        .extent_size_bytes(64 << 10)
        .cache_bytes(0)
        .io_memory_bytes(64 << 10)
        .simulated_disk(disk.clone())
}

/// Cuts the power under an open database, then opens what the disk kept (through a
/// handle of the new boot: the old ones, the database's, fail from the cut on).
fn cut_and_reopen(disk: &SimDisk, db: Db, durability: Durability) -> Db {
    let mut rebooted = disk.clone();
    rebooted.crash(CrashMode::DropUnsynced);
    drop(db);
    Db::open(DB_PATH, options(&rebooted, durability)).unwrap()
}

#[test]
fn a_sync_put_in_a_buffered_database_survives_a_power_cut() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    db.put("plain", "buffered").unwrap();
    let sync = PutOptions::new().durability(Durability::Sync);
    db.put_with("synced", "kept", &sync).unwrap();
    // Read back before the cut: both are visible at once in a Buffered database.
    assert_eq!(db.get("plain").unwrap().as_deref(), Some(&b"buffered"[..]));
    let db = cut_and_reopen(&disk, db, Durability::Buffered);
    assert_eq!(db.get("synced").unwrap().as_deref(), Some(&b"kept"[..]));
    db.close().unwrap();
}

#[test]
fn a_buffered_put_in_a_sync_database_is_acknowledged_before_it_is_durable() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Sync)).unwrap();
    db.put("plain", "synced").unwrap();
    let buffered = PutOptions::new().durability(Durability::Buffered);
    // Keys on both cores, so that the test does not depend on where one key lands.
    for i in 0..8 {
        db.put_with(format!("fast-{i}"), "maybe", &buffered)
            .unwrap();
    }
    let db = cut_and_reopen(&disk, db, Durability::Sync);
    assert_eq!(db.get("plain").unwrap().as_deref(), Some(&b"synced"[..]));
    for i in 0..8 {
        // Nothing made them durable before the cut: no commit ran after them.
        assert_eq!(db.get(format!("fast-{i}")).unwrap(), None, "fast-{i}");
    }
    db.close().unwrap();
}

#[test]
fn a_read_in_a_sync_database_waits_until_a_buffered_put_is_durable() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Sync)).unwrap();
    let buffered = PutOptions::new().durability(Durability::Buffered);
    db.put_with("k", "v", &buffered).unwrap();
    // The read shows the put, so the put must now be durable.
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    let db = cut_and_reopen(&disk, db, Durability::Sync);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
}

#[test]
fn a_delete_can_choose_its_durability_too() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    let sync = PutOptions::new().durability(Durability::Sync);
    db.put_with("gone", "v", &sync).unwrap();
    db.put_with("kept", "v", &sync).unwrap();
    db.delete_with("gone", Durability::Sync).unwrap();
    db.delete("kept").unwrap(); // Buffered, like the database: lost at the cut
    let db = cut_and_reopen(&disk, db, Durability::Buffered);
    assert_eq!(db.get("gone").unwrap(), None);
    assert_eq!(db.get("kept").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
}

#[test]
fn an_update_can_choose_its_durability_too() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    let sync = PutOptions::new().durability(Durability::Sync);
    db.put_with("synced", "1", &sync).unwrap();
    db.put_with("plain", "1", &sync).unwrap();
    let add_one = |v: Option<&[u8]>| {
        let n: u64 = std::str::from_utf8(v.unwrap()).unwrap().parse().unwrap();
        ringkv::Update::Put((n + 1).to_string().into_bytes())
    };
    db.update_with("synced", Durability::Sync, add_one).unwrap();
    db.update("plain", add_one).unwrap(); // Buffered, like the database: lost at the cut
    let db = cut_and_reopen(&disk, db, Durability::Buffered);
    assert_eq!(db.get("synced").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get("plain").unwrap().as_deref(), Some(&b"1"[..]));
    db.close().unwrap();
}

#[test]
fn a_batch_can_choose_its_durability_too() {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    let mut synced = ringkv::WriteBatch::new();
    for i in 0..8 {
        synced.put(format!("synced-{i}"), "kept");
    }
    db.write_with(synced, Durability::Sync).unwrap();
    let mut flushed = ringkv::WriteBatch::new();
    for i in 0..8 {
        flushed.put(format!("flushed-{i}"), "kept");
    }
    db.write(flushed).unwrap(); // Buffered, like the database, then flushed
    db.flush().unwrap();
    let db = cut_and_reopen(&disk, db, Durability::Buffered);
    for i in 0..8 {
        assert_eq!(
            db.get(format!("synced-{i}")).unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert_eq!(
            db.get(format!("flushed-{i}")).unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    }
    db.close().unwrap();
}
