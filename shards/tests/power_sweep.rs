//! A power cut at every change of a short script, one after another: where `power.rs`
//! draws its cuts at random over long runs, a sweep cannot miss a window a few changes
//! wide. The database runs on a [`SimDisk`] with one core, so each cut point is visited
//! once per crash mode.
//!
//! Two scripts. One starts behind a hand-over ancestor (its marker on disk, no record
//! moved yet, as a crash right after the commit point leaves it), with no background
//! work, so its changes come in the same order on every run: writes that reach a key in
//! both the ancestor and a child, the move of the ancestor's records and its
//! retirement, compaction. The other writes while a background split of each mode runs
//! from its first child to the removal of its parent (the background task makes the
//! order of changes vary a little from run to run, so a cut point may be visited with
//! a slightly different history; each is still visited).
//!
//! After each cut the database is opened again and must hold, for every key, what was
//! acknowledged or what the operation in flight wrote; then pending moves finish and
//! the same holds after another reopen.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ringkv::{CrashMode, Db, Durability, Options, SimDisk, SplitMode};
use ringkv_engine::hash::routing_hash;

const DB_PATH: &str = "/db";
/// How long [`Step::Idle`] waits: long enough for the seals and compactions it starts.
const IDLE_PAUSE: Duration = Duration::from_millis(30);
const KEYS: u64 = 240;
/// The leaf that splits: the fourth of the sixteen a new database starts with.
const PARENT_NIBBLE: u64 = 3;
/// Keys (all in the parent, each with about 600 bytes) and the split threshold of the
/// split script: the parent holds about 120 KiB and no other leaf anything.
const SPLIT_KEYS: u64 = 200;
const SPLIT_VALUE_BYTES: usize = 600;
const SPLIT_THRESHOLD_BYTES: u64 = 64 << 10;

/// One core, no background work: what the checks after a cut open with.
fn options(disk: &SimDisk, durability: Durability) -> Options {
    Options::default()
        .cores(1)
        .durability(durability)
        .split_mode(SplitMode::HandOver)
        .background_compaction(false)
        .split_threshold_bytes(SPLIT_THRESHOLD_BYTES)
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

/// A disk holding `keys`, each with an "old" value of about `value_bytes`, written with
/// one core.
fn written(
    keys: impl Iterator<Item = Vec<u8>>,
    value_bytes: usize,
) -> (SimDisk, BTreeMap<Vec<u8>, Vec<u8>>) {
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk, Durability::Buffered)).unwrap();
    let mut model = BTreeMap::new();
    for (i, key) in keys.enumerate() {
        let mut value = format!("old-{i}-").into_bytes();
        value.resize(value_bytes + i % 9 * 8, b'.');
        db.put(&key, &value).unwrap();
        model.insert(key, value);
    }
    db.close().unwrap();
    (disk, model)
}

/// Every key written, then leaf 3 handed over by hand: its 16 children exist (empty)
/// and its marker is durable, as `layout::hand_over` leaves them.
fn handed_over() -> (SimDisk, BTreeMap<Vec<u8>, Vec<u8>>) {
    let (disk, model) = written((0..KEYS).map(key), 16);
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
    /// Puts to these keys in turn, each with a new value, until the background split of
    /// leaf 3 is done (its parent gone, its ancestor retired), so that writes are
    /// acknowledged between any two of its steps.
    WriteUntilSplit(Vec<Vec<u8>>),
    /// No writes for a while: the background task seals each dead active extent
    /// (`Options::idle_seal_after`) and compacts what that makes a victim.
    Idle,
}

fn new_value(n: u8) -> Vec<u8> {
    [b'n', n, b'-'].repeat(40)
}

/// Puts, deletes and overwrites of keys the ancestor holds (one the child takes over
/// first, then deletes: both substores get a tombstone), the move, and writes after it.
fn behind_script(model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Step> {
    let behind: Vec<Vec<u8>> = model.keys().filter(|k| behind_parent(k)).cloned().collect();
    assert!(behind.len() >= 8, "{} keys behind the parent", behind.len());
    let other = model.keys().find(|k| !behind_parent(k)).unwrap().clone();
    let new = new_value;
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

/// Keys that all fall in leaf 3, enough to make it split.
fn split_keys() -> impl Iterator<Item = Vec<u8>> {
    (0..)
        .map(key)
        .filter(|k| behind_parent(k))
        .take(SPLIT_KEYS as usize)
}

/// Writes while the split runs (overwrites, deletes, a key deleted after an
/// overwrite), then more once it is done, and compaction.
fn split_script(model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Step> {
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    vec![
        Step::Put(keys[0].clone(), new_value(0)),
        Step::Delete(keys[1].clone()),
        Step::WriteUntilSplit(keys[2..40].to_vec()),
        Step::Delete(keys[0].clone()),
        Step::Put(keys[40].clone(), new_value(40)),
        Step::Compact,
    ]
}

/// Overwrites that leave most of each active extent dead, a pause in which the idle
/// cores seal and compact them, and writes after it.
fn idle_script(model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Step> {
    // Four keys, each overwritten ten times: their leaves' active extents end up more
    // than half dead.
    let keys: Vec<Vec<u8>> = model.keys().take(4).cloned().collect();
    let mut steps: Vec<Step> = (0..40)
        .map(|n| Step::Put(keys[n % keys.len()].clone(), new_value(n as u8)))
        .collect();
    steps.push(Step::Delete(keys[0].clone()));
    steps.push(Step::Idle);
    steps.push(Step::Put(keys[1].clone(), new_value(99)));
    steps.push(Step::Delete(keys[2].clone()));
    steps.push(Step::Idle);
    steps
}

/// Whether leaf 3 has split: no leaf or ancestor of that name is left.
fn split_done(db: &Db) -> ringkv::Result<bool> {
    let parent = format!("04-{:016x}", PARENT_NIBBLE << 60);
    let stats = db.stats()?;
    let left = stats.cores.iter().flat_map(|c| &c.leaves);
    Ok(!left.into_iter().any(|l| l.name == parent))
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
            let cut = match step {
                Step::Put(k, v) => self.write(db, disk, k, Some(v)),
                Step::Delete(k) => self.write(db, disk, k, None),
                Step::Compact => db.compact().is_err_and(|e| cut_explains(disk, &e)),
                Step::WriteUntilSplit(keys) => self.write_until_split(db, disk, keys),
                Step::Idle => {
                    std::thread::sleep(IDLE_PAUSE);
                    disk.powered_off()
                }
            };
            if cut {
                return true;
            }
        }
        false
    }

    /// A put or delete; whether the power went during it.
    fn write(&mut self, db: &Db, disk: &SimDisk, key: &[u8], value: Option<&Vec<u8>>) -> bool {
        let outcome = match value {
            Some(v) => db.put(key, v),
            None => db.delete(key),
        };
        match outcome {
            Ok(()) => {
                self.apply(key, value.cloned());
                false
            }
            Err(e) => {
                self.in_flight = Some((key.to_vec(), value.cloned()));
                cut_explains(disk, &e)
            }
        }
    }

    fn write_until_split(&mut self, db: &Db, disk: &SimDisk, keys: &[Vec<u8>]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in 0.. {
            match split_done(db) {
                Ok(true) => return false,
                Ok(false) => {}
                Err(e) => return cut_explains(disk, &e),
            }
            assert!(
                Instant::now() < deadline,
                "the split did not end within 60 s"
            );
            let value = new_value(n as u8);
            if self.write(db, disk, &keys[n % keys.len()], Some(&value)) {
                return true;
            }
        }
        unreachable!()
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

/// An operation failed: only a power cut may explain it.
fn cut_explains(disk: &SimDisk, e: &ringkv::Error) -> bool {
    assert!(
        disk.powered_off(),
        "an operation failed without a power cut: {e}"
    );
    true
}

/// Where a sweep starts and what it runs.
struct Scenario {
    start: SimDisk,
    acked: BTreeMap<Vec<u8>, Vec<u8>>,
    steps: Vec<Step>,
    /// The options of the run that is cut (the checks after it use [`options`]).
    options: Box<dyn Fn(&SimDisk) -> Options>,
}

impl Scenario {
    fn behind_a_hand_over() -> Self {
        let (start, acked) = handed_over();
        Self {
            steps: behind_script(&acked),
            start,
            acked,
            options: Box::new(|disk| options(disk, Durability::Sync)),
        }
    }

    fn split(mode: SplitMode) -> Self {
        let (start, acked) = written(split_keys(), SPLIT_VALUE_BYTES);
        Self {
            steps: split_script(&acked),
            start,
            acked,
            options: Box::new(move |disk| {
                options(disk, Durability::Sync)
                    .split_mode(mode)
                    .background_compaction(true)
                    .compaction_interval(Duration::from_millis(1))
            }),
        }
    }

    fn idle_seal() -> Self {
        let (start, acked) = written((0..KEYS).map(key), 16);
        Self {
            steps: idle_script(&acked),
            start,
            acked,
            options: Box::new(|disk| {
                options(disk, Durability::Sync)
                    .background_compaction(true)
                    .compaction_interval(Duration::from_millis(1))
                    .idle_seal_after(Some(Duration::from_millis(1)))
            }),
        }
    }

    /// Cuts the power at each change of the script in turn, with `mode`; how many cuts.
    fn sweep(&self, mode: impl Fn(u64) -> CrashMode) -> u64 {
        for nth in 1.. {
            let disk = self.start.copy();
            let mut model = Model {
                acked: self.acked.clone(),
                in_flight: None,
            };
            let db = Db::open(DB_PATH, (self.options)(&disk)).unwrap();
            disk.power_cut_at(nth, mode(nth));
            let cut = model.run(&db, &disk, &self.steps);
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
            model.check(&db, &when("pending moves finished"));
            db.close().unwrap();
            let db = Db::open(DB_PATH, options(&disk, Durability::Sync)).unwrap();
            model.check(&db, &when("reopened after the moves"));
            db.close().unwrap();
        }
        unreachable!()
    }
}

type Mode = fn(u64) -> CrashMode;
const DROP_UNSYNCED: (&str, Mode) = ("drop unsynced", |_| CrashMode::DropUnsynced);
const TEAR_LAST: (&str, Mode) = ("tear the last write", |n| CrashMode::TearLast { seed: n });
const RANDOM: (&str, Mode) = ("keep at random", |n| CrashMode::Random { seed: n });

fn sweep_all(scenario: &Scenario, what: &str, modes: &[(&str, Mode)], changes_min: u64) {
    support::raise_descriptor_limit();
    for (name, mode) in modes {
        let cuts = scenario.sweep(mode);
        eprintln!("{what}, {name}: a cut at each of {cuts} changes");
        assert!(cuts >= changes_min, "the script makes only {cuts} changes");
    }
}

#[test]
fn a_cut_at_every_change_behind_a_hand_over_loses_nothing_acknowledged() {
    let scenario = Scenario::behind_a_hand_over();
    let modes = [DROP_UNSYNCED, TEAR_LAST, RANDOM];
    sweep_all(&scenario, "behind a hand-over", &modes, 100);
}

#[test]
fn a_cut_at_every_change_with_a_commit_log_that_fills_loses_nothing_acknowledged() {
    let mut scenario = Scenario::split(SplitMode::Copy);
    let split_options = std::mem::replace(&mut scenario.options, Box::new(|_| unreachable!()));
    scenario.options =
        Box::new(move |disk| split_options(disk).commit_log_bytes(ringkv::COMMIT_LOG_MIN_BYTES));
    sweep_all(
        &scenario,
        "a commit log that fills",
        &[DROP_UNSYNCED, RANDOM],
        100,
    );
}

#[test]
fn a_cut_at_every_change_of_a_copy_split_loses_nothing_acknowledged() {
    let scenario = Scenario::split(SplitMode::Copy);
    sweep_all(&scenario, "copy split", &[DROP_UNSYNCED, RANDOM], 100);
}

#[test]
fn a_cut_at_every_change_of_a_hand_over_split_loses_nothing_acknowledged() {
    let scenario = Scenario::split(SplitMode::HandOver);
    sweep_all(&scenario, "hand-over split", &[DROP_UNSYNCED, RANDOM], 100);
}

#[test]
fn a_cut_at_every_change_of_an_idle_seal_loses_nothing_acknowledged() {
    let scenario = Scenario::idle_seal();
    let modes = [DROP_UNSYNCED, TEAR_LAST, RANDOM];
    sweep_all(&scenario, "idle seal", &modes, 60);
}
