//! A power cut at every change of a short script, one after another: where `power.rs`
//! draws its cuts at random over long runs, a sweep cannot miss a window a few changes
//! wide. The database runs on a [`SimDisk`] with one core and no background work, so
//! the changes come in the same order on every run and each cut point is visited once
//! per crash mode.
//!
//! The script starts behind a hand-over ancestor (its marker on disk, no record moved
//! yet, as a crash right after the commit point leaves it): writes that reach a key in
//! both the ancestor and a child, the move of the ancestor's records and its retirement.
//! After each cut the database is opened again and must hold, for every key, what was
//! acknowledged or what the operation in flight wrote; then the move is finished and
//! the same holds after another reopen.

use std::collections::BTreeMap;
use std::path::Path;

use ringkv::{CrashMode, Db, Durability, Options, SimDisk, SplitMode};
use ringkv_engine::hash::routing_hash;

const DB_PATH: &str = "/db";
const KEYS: u64 = 240;
/// The leaf handed over: the fourth of the sixteen a new database starts with.
const PARENT_NIBBLE: u64 = 3;

fn options(disk: &SimDisk, durability: Durability) -> Options {
    Options::default()
        .cores(1)
        .durability(durability)
        .split_mode(SplitMode::HandOver)
        .background_compaction(false)
        .extent_size_bytes(64 << 10)
        .cache_bytes(0)
        .io_memory_bytes(64 << 10)
        .queue_depth(64)
        .simulated_disk(disk.clone())
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn behind_parent(key: &[u8]) -> bool {
    routing_hash(key) >> 60 == PARENT_NIBBLE
}

/// Every key written, then leaf 3 handed over by hand: its 16 children exist (empty)
/// and its marker is durable, as `layout::hand_over` leaves them.
fn prepared() -> (SimDisk, BTreeMap<Vec<u8>, Vec<u8>>) {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..KEYS {
        let value = format!("old-{i}-").repeat(1 + i as usize % 5).into_bytes();
        db.put(key(i), &value).unwrap();
        model.insert(key(i), value);
    }
    db.close().unwrap();
    let substores = Path::new(DB_PATH).join("substores");
    for nibble in 0..16u64 {
        let prefix = ((PARENT_NIBBLE << 4) | nibble) << 56;
        disk.create_dir(substores.join(format!("08-{prefix:016x}")))
            .unwrap();
    }
    disk.sync_dir(&substores).unwrap();
    let parent = substores.join(format!("04-{:016x}", PARENT_NIBBLE << 60));
    disk.create_file(parent.join("HANDED-OVER")).unwrap();
    disk.sync_file(parent.join("HANDED-OVER")).unwrap();
    disk.sync_dir(&parent).unwrap();
    (disk, model)
}

#[derive(Clone, Debug)]
enum Step {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Finishes the move: the ancestor's records reach the children, then it retires.
    Compact,
}

/// Puts, deletes and overwrites of keys the ancestor holds (one the child takes over
/// first, then deletes: both substores get a tombstone), the move, and writes after it.
fn script(model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Step> {
    let behind: Vec<Vec<u8>> = model.keys().filter(|k| behind_parent(k)).cloned().collect();
    assert!(behind.len() >= 8, "{} keys behind the parent", behind.len());
    let other = model.keys().find(|k| !behind_parent(k)).unwrap().clone();
    let new = |n: u8| [b'n', n, b'-'].repeat(40);
    vec![
        Step::Put(behind[0].clone(), new(0)),
        Step::Delete(behind[0].clone()),
        Step::Delete(behind[1].clone()),
        Step::Put(behind[2].clone(), new(2)),
        Step::Put(behind[3].clone(), new(3)),
        Step::Put(behind[3].clone(), new(4)),
        Step::Put(other.clone(), new(5)),
        Step::Compact,
        Step::Delete(behind[2].clone()),
        Step::Put(behind[4].clone(), new(6)),
        Step::Delete(other),
        Step::Compact,
    ]
}

/// What the database must hold after a cut: every key's acknowledged value, or the one
/// the write in flight would have left.
#[derive(Clone)]
struct Model {
    acked: BTreeMap<Vec<u8>, Vec<u8>>,
    in_flight: Option<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Model {
    fn apply(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match value {
            Some(v) => self.acked.insert(key.to_vec(), v),
            None => self.acked.remove(key),
        };
    }

    /// Runs `steps` until the power goes; whether it went.
    fn run(&mut self, db: &Db, disk: &SimDisk, steps: &[Step]) -> bool {
        for step in steps {
            let (outcome, write) = match step {
                Step::Put(k, v) => (db.put(k, v), Some((k.clone(), Some(v.clone())))),
                Step::Delete(k) => (db.delete(k), Some((k.clone(), None))),
                Step::Compact => (db.compact().map(drop), None),
            };
            match outcome {
                Ok(()) => {
                    if let Some((k, v)) = write {
                        self.apply(&k, v);
                    }
                }
                Err(e) => {
                    assert!(disk.powered_off(), "{step:?} failed without a cut: {e}");
                    self.in_flight = write;
                    return true;
                }
            }
        }
        false
    }

    /// The database holds what the model allows; afterwards the model takes it.
    fn check(&mut self, db: &Db, when: &str) {
        let mut listed = BTreeMap::new();
        db.for_each(|k, v| assert!(listed.insert(k.to_vec(), v.to_vec()).is_none()))
            .unwrap();
        if let Some((k, v)) = self.in_flight.take()
            && listed.get(&k) == v.as_ref()
        {
            self.apply(&k, v);
        }
        for (k, v) in &self.acked {
            let got = db.get(k).unwrap();
            assert_eq!(got.as_deref(), Some(v.as_slice()), "{when}: get {k:?}");
        }
        assert!(
            listed == self.acked,
            "{when}: the listing differs from the model"
        );
        assert_eq!(db.len().unwrap(), self.acked.len() as u64, "{when}: len");
    }
}

/// Cuts the power at every change of the script in turn, with `mode`; how many cuts.
fn sweep(mode: impl Fn(u64) -> CrashMode) -> u64 {
    let (start, acked) = prepared();
    let steps = script(&acked);
    for nth in 1.. {
        let disk = start.copy();
        let mut model = Model {
            acked: acked.clone(),
            in_flight: None,
        };
        let db = Db::open(DB_PATH, options(&disk, Durability::Sync)).unwrap();
        disk.power_cut_at(nth, mode(nth));
        let cut = model.run(&db, &disk, &steps);
        let _ = db.close();
        if !cut {
            return nth - 1;
        }
        let when = |what: &str| format!("cut {nth} ({:?}), {what}", mode(nth));
        let disk = disk.reboot();
        let db = Db::open(DB_PATH, options(&disk, Durability::Sync))
            .unwrap_or_else(|e| panic!("{}: {e}", when("reopening")));
        model.check(&db, &when("reopened"));
        db.compact().unwrap();
        model.check(&db, &when("the move finished"));
        db.close().unwrap();
        let db = Db::open(DB_PATH, options(&disk, Durability::Sync)).unwrap();
        model.check(&db, &when("reopened after the move"));
        db.close().unwrap();
    }
    unreachable!()
}

#[test]
fn a_cut_at_every_change_behind_a_hand_over_loses_nothing_acknowledged() {
    type Mode = fn(u64) -> CrashMode;
    let modes: [(&str, Mode); 3] = [
        ("drop unsynced", |_| CrashMode::DropUnsynced),
        ("tear the last write", |n| CrashMode::TearLast { seed: n }),
        ("keep at random", |n| CrashMode::Random { seed: n }),
    ];
    for (name, mode) in modes {
        let cuts = sweep(mode);
        eprintln!("{name}: a cut at each of {cuts} changes");
        assert!(cuts > 40, "the script makes {cuts} changes");
    }
}
