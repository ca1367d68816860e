//! Optimistic transactions (`Db::transaction`): reads that see their own writes, commit
//! all or nothing, and `Error::Conflict` when a key read changed, so that racing
//! read-modify-writes never lose an update.

use std::sync::atomic::{AtomicU64, Ordering};

use ringkv::{Db, Durability, Error, Options};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn open(dir: &tempfile::TempDir, durability: Durability) -> Db {
    let options = Options::default()
        .cores(2)
        .durability(durability)
        .io_memory_bytes(256 << 10);
    Db::open(dir.path(), options).unwrap()
}

fn number(value: Option<ringkv::Bytes>) -> u64 {
    value.map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

#[test]
fn a_transaction_reads_its_own_writes_and_commits_them_together() {
    let dir = tempdir();
    let db = open(&dir, Durability::Sync);
    db.put("a", "1").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    tx.put("a", "2");
    tx.put("b", "3");
    tx.delete("gone");
    assert_eq!(tx.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(tx.get("b").unwrap().as_deref(), Some(&b"3"[..]));
    // Nothing is visible before the commit.
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("b").unwrap(), None);
    tx.commit().unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"3"[..]));

    let mut tx = db.transaction();
    tx.put("a", "rolled back");
    tx.rollback();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    db.close().unwrap();
}

#[test]
fn a_commit_after_a_read_key_changed_is_a_conflict_and_writes_nothing() {
    let dir = tempdir();
    let db = open(&dir, Durability::Buffered);
    db.put("watched", "1").unwrap();
    let mut tx = db.transaction();
    assert_eq!(tx.get("watched").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(tx.get("absent").unwrap(), None);
    tx.put("other", "x");
    db.put("watched", "changed").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));
    assert_eq!(db.get("other").unwrap(), None);

    // A key read as absent and created since is a conflict too.
    let mut tx = db.transaction();
    assert_eq!(tx.get("absent").unwrap(), None);
    tx.put("other", "y");
    db.put("absent", "now here").unwrap();
    assert!(matches!(tx.commit(), Err(Error::Conflict)));

    // Unchanged reads commit, a read-only transaction too.
    let mut tx = db.transaction();
    tx.get("watched").unwrap();
    tx.put("other", "z");
    tx.commit().unwrap();
    assert_eq!(db.get("other").unwrap().as_deref(), Some(&b"z"[..]));
    let mut tx = db.transaction();
    tx.get("other").unwrap();
    tx.commit().unwrap();
    db.close().unwrap();
}

/// Threads increment shared counters (on both cores) through transactions, retrying on
/// conflict: no increment is lost. Transfers between two accounts on different cores
/// keep their sum, and read-only transactions that commit always see that sum.
#[test]
fn racing_transactions_lose_no_update() {
    let dir = tempdir();
    let db = open(&dir, Durability::Sync);
    let counters = ["counter-a", "counter-b", "counter-c"];
    let accounts = ["account-1", "account-2"];
    db.put(accounts[0], "1000").unwrap();
    db.put(accounts[1], "1000").unwrap();
    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 40;
    let conflicts = AtomicU64::new(0);
    let retry = |f: &mut dyn FnMut() -> ringkv::Result<()>| loop {
        match f() {
            Ok(()) => return,
            Err(Error::Conflict) => drop(conflicts.fetch_add(1, Ordering::Relaxed)),
            Err(e) => panic!("{e}"),
        }
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, retry) = (&db, &retry);
            s.spawn(move || {
                for i in 0..INCREMENTS {
                    let key = counters[((t + i) % 3) as usize];
                    retry(&mut || {
                        let mut tx = db.transaction();
                        let n = number(tx.get(key)?);
                        tx.put(key, (n + 1).to_string());
                        tx.commit()
                    });
                    let (from, to) = match (t + i) % 2 {
                        0 => (accounts[0], accounts[1]),
                        _ => (accounts[1], accounts[0]),
                    };
                    retry(&mut || {
                        let mut tx = db.transaction();
                        let (a, b) = (number(tx.get(from)?), number(tx.get(to)?));
                        tx.put(from, (a - 1).to_string());
                        tx.put(to, (b + 1).to_string());
                        tx.commit()
                    });
                    retry(&mut || {
                        let mut tx = db.transaction();
                        let sum = number(tx.get(accounts[0])?) + number(tx.get(accounts[1])?);
                        tx.commit()?;
                        assert_eq!(sum, 2000, "a committed read saw half a transfer");
                        Ok(())
                    });
                }
            });
        }
    });
    let total: u64 = counters.iter().map(|k| number(db.get(k).unwrap())).sum();
    assert_eq!(total, THREADS * INCREMENTS, "increments lost");
    let sum = number(db.get(accounts[0]).unwrap()) + number(db.get(accounts[1]).unwrap());
    assert_eq!(sum, 2000);
    eprintln!("{} conflicts retried", conflicts.load(Ordering::Relaxed));
    db.close().unwrap();
}

/// `update`, `expire_if` and `persist` in a transaction decide as their `Db` twins: a
/// new value keeps the key's metadata and expiry, an expiry already past deletes.
#[test]
fn transaction_updates_and_expiries_decide_as_the_database_does() {
    use ringkv::{ExpireIf, PutOptions, Ttl, Update};
    use std::time::Duration;
    let dir = tempdir();
    let db = open(&dir, Durability::Sync);
    let hour = Duration::from_secs(3600);
    db.put_with("k", "1", &PutOptions::new().ttl(hour).meta("m"))
        .unwrap();
    db.put("gone", "x").unwrap();
    db.put("plain", "p").unwrap();
    let mut tx = db.transaction();
    let seen = futures_lite::future::block_on(tx.update("k", |v| {
        assert_eq!(v, Some(&b"1"[..]));
        Update::Put(b"2".to_vec())
    }));
    assert_eq!(seen.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(
        futures_lite::future::block_on(tx.expire_if("gone", 1, ExpireIf::Always)).unwrap(),
        "a past time deletes"
    );
    assert!(
        !futures_lite::future::block_on(tx.persist("plain")).unwrap(),
        "no expiry to remove"
    );
    assert!(
        !futures_lite::future::block_on(tx.expire_if("plain", u64::MAX, ExpireIf::HasExpiry))
            .unwrap()
    );
    assert_eq!(tx.get("gone").unwrap(), None);
    tx.commit().unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.head("k").unwrap().unwrap().meta_len, 1, "metadata kept");
    assert!(
        matches!(db.ttl("k").unwrap(), Some(Ttl::In(_))),
        "expiry kept"
    );
    assert_eq!(db.get("gone").unwrap(), None);
    let mut tx = db.transaction();
    assert!(futures_lite::future::block_on(tx.persist("k")).unwrap());
    tx.commit().unwrap();
    assert_eq!(db.ttl("k").unwrap(), Some(Ttl::Never));
    db.close().unwrap();
}
