//! The whole database under simulated power cuts: layout and markers, splits (copy and
//! hand-over), compaction and reopening with another core count, all on a [`SimDisk`]
//! that loses what was not synced, tears sectors and keeps any prefix of each
//! directory's unsynced name changes.
//!
//! A chain (one seed) runs rounds on one disk. Each round opens the database with 1 to
//! 3 cores, a random split mode and, in two chains of three, one or two more data
//! directories (from the first round, or added one a round from the second), checks it
//! against the model, arms a power cut at a random change of the disk (or, one round in three, a
//! random number of changes after a split creates its first child, commits, or removes
//! its retired parent) and runs writer threads (each owns its keys: puts, deletes,
//! read-modify-writes, reads) until the cut falls. Sometimes the cut is armed
//! before the open, so that it falls inside recovery. Most keys share their first hash
//! byte, so their leaf fills, compacts and splits twice over a chain.
//!
//! The model, per key: the value last acknowledged or read (`Durability::Sync`: a read
//! sees only what is durable) and the one write in flight when the power went. After a
//! cut the database must hold one of the two for every key, list exactly what it holds,
//! and count it; the model then takes what it holds.
//!
//! `RINGKV_SIM_SEEDS=N` runs N chains (default: enough for 10,000 power cuts) from seed
//! `RINGKV_SIM_BASE` (default 0), on `RINGKV_SIM_THREADS` threads (default 2), in
//! batches of 40 chains, each batch in a child process (glommio leaks two eventfds per
//! executor it drops, so one process opening the database 10,000 times runs out of
//! descriptors); `RINGKV_SIM_SEED=S` replays chain S alone. Each failure names its seed
//! and round; `RINGKV_SIM_SPLIT_MODE=copy|handover` fixes the split mode. The writers'
//! interleaving across threads and cores is up to the OS scheduler, so a failing seed
//! does not always fail again on replay.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringkv::{CrashMode, Db, Durability, Options, SimDisk, SplitMode, Update};
use ringkv_engine::hash::routing_hash;

const DB_PATH: &str = "/db";
/// Other data directories a chain may use (`Options::data_dirs`), on the same disk.
const DATA_DIRS: [&str; 2] = ["/data-1", "/data-2"];
const WRITERS: u64 = 2;
const KEYS: u64 = 160;
/// Keys sharing the chain's hash byte (the rest spread over every leaf).
const HOT_KEYS: u64 = 120;
const ROUNDS: u64 = 8;
/// Writer operations in a round at most; the power goes out well before, mostly.
const ROUND_OPS_MAX: u64 = 400;
const POWER_CUTS_DEFAULT: u64 = 10_000;
/// A cut aimed at a name falls at most this many changes after it.
const NAMED_CUT_AFTER_MAX: u64 = 200;
/// Chains run side by side (`RINGKV_SIM_THREADS`): a chain mostly waits on its cores.
const CHAIN_THREADS: u64 = 2;
/// After a reopen, each key is also read with `get` with this odds (and every key that
/// had a write in flight).
const CHECK_GET_ONE_IN: u64 = 8;

/// splitmix64.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// What the model knows of one key.
#[derive(Clone, Debug, Default)]
struct Known {
    /// Acknowledged or read last: what a crash must keep (unless `in_flight` landed).
    value: Option<Vec<u8>>,
    /// A write that had not returned when the power went: it may have landed.
    in_flight: Option<Option<Vec<u8>>>,
    /// The last operations on the key and what each returned, for a failure's message.
    history: Vec<String>,
}

/// Operations a key's history keeps.
const HISTORY_LEN: usize = 16;

impl Known {
    fn note(&mut self, event: String) {
        if self.history.len() == HISTORY_LEN {
            self.history.remove(0);
        }
        self.history.push(event);
    }
}

/// Figures of a run, for the report.
#[derive(Debug, Default)]
struct Tally {
    power_cuts: u64,
    cuts_in_open: u64,
    rounds_without_cut: u64,
    /// Background steps the cut interrupted, by the operation named in their error.
    interrupted: BTreeMap<String, u64>,
    splits: u64,
    compactions: u64,
    /// What each power cut left for open to finish, found on the disk before the open.
    left: BTreeMap<&'static str, u64>,
    chains: u64,
    /// Opens that found leaves in another data directory than the home.
    opens_with_leaves_elsewhere: u64,
}

impl Tally {
    /// One line for a parent process: counts, then the two maps.
    fn encode(&self) -> String {
        let map = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        };
        let left = self.left.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        format!(
            "{} {} {} {} {} {} {}|{}|{}",
            self.power_cuts,
            self.cuts_in_open,
            self.rounds_without_cut,
            self.splits,
            self.compactions,
            self.chains,
            self.opens_with_leaves_elsewhere,
            map(&self.interrupted),
            map(&left)
        )
    }

    fn parse(line: &str) -> Tally {
        let mut parts = line.split('|');
        let n: Vec<u64> = parts
            .next()
            .unwrap()
            .split(' ')
            .map(|n| n.parse().unwrap())
            .collect();
        let map = |text: Option<&str>| -> BTreeMap<String, u64> {
            text.unwrap_or("")
                .split(';')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.rsplit_once('=').unwrap();
                    (k.to_owned(), v.parse().unwrap())
                })
                .collect()
        };
        let interrupted = map(parts.next());
        let left = map(parts.next())
            .into_iter()
            .map(|(k, v)| (&*k.leak(), v))
            .collect();
        Tally {
            power_cuts: n[0],
            cuts_in_open: n[1],
            rounds_without_cut: n[2],
            splits: n[3],
            compactions: n[4],
            chains: n[5],
            opens_with_leaves_elsewhere: n[6],
            interrupted,
            left,
        }
    }

    fn add(&mut self, other: Tally) {
        self.power_cuts += other.power_cuts;
        self.cuts_in_open += other.cuts_in_open;
        self.rounds_without_cut += other.rounds_without_cut;
        self.splits += other.splits;
        self.compactions += other.compactions;
        self.chains += other.chains;
        self.opens_with_leaves_elsewhere += other.opens_with_leaves_elsewhere;
        for (step, n) in other.interrupted {
            *self.interrupted.entry(step).or_default() += n;
        }
        for (what, n) in other.left {
            *self.left.entry(what).or_default() += n;
        }
    }
}

fn key_name(i: u64, hot_byte: u8) -> Vec<u8> {
    if i >= HOT_KEYS {
        return format!("cold-{i}").into_bytes();
    }
    (0u64..)
        .map(|n| format!("hot-{i}-{n}").into_bytes())
        .find(|k| (routing_hash(k) >> 56) as u8 == hot_byte)
        .expect("some name hashes there")
}

fn value_for(key: u64, version: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 16 + rng.below(1500) as usize;
    let mut v = format!("{key}:{version}:").into_bytes();
    v.resize(len, (key ^ version) as u8);
    v
}

/// What a test's chains do.
struct Profile {
    /// The test function (a child process runs it by name).
    test: &'static str,
    /// Every open's split mode; drawn per open (or `RINGKV_SIM_SPLIT_MODE`) when `None`.
    split_mode: Option<SplitMode>,
    /// Compaction's garbage ratio. 1.0 leaves only wholly dead extents to compact, so a
    /// core starts a split as soon as a leaf is over its threshold, while writes go on.
    garbage_ratio: f64,
    /// Every round's cut aimed at one of these names (drawn), on the change that makes
    /// it or at most this many changes later.
    aim: &'static [(&'static str, u64)],
    /// Power cuts a run makes unless `RINGKV_SIM_SEEDS` says how many chains.
    cuts: u64,
    /// Operations each writer makes in a round at most (it stops at the cut).
    round_ops: u64,
    /// Rounds of a chain.
    rounds: u64,
}

/// Everything at random: both split modes, compaction as configured by default.
const MIXED: Profile = Profile {
    test: "the_database_keeps_every_acknowledged_write_through_power_cuts",
    split_mode: None,
    garbage_ratio: ringkv::COMPACTION_GARBAGE_RATIO_DEFAULT,
    aim: &[],
    cuts: POWER_CUTS_DEFAULT,
    round_ops: ROUND_OPS_MAX,
    rounds: ROUNDS,
};

/// Cuts between a hand-over's commit point and the retirement of its ancestor, while
/// writes reach the children.
const HAND_OVER_WINDOW: Profile = Profile {
    test: "a_cut_right_after_a_hand_over_keeps_what_the_children_acknowledged",
    split_mode: Some(SplitMode::HandOver),
    garbage_ratio: 1.0,
    // After the marker, while records move; and the retirement's rename or just
    // before it, when every child has been flushed.
    aim: &[("HANDED-OVER", 60), (".retired", 2)],
    cuts: 500,
    // Long enough that writes go on while a split runs (requests have the larger
    // share of a core; a split waits for a lull).
    round_ops: 4 * ROUND_OPS_MAX,
    // The hot keys' leaf has split twice by then; later rounds have no split to cut.
    rounds: 5,
};

fn options(rng: &mut Rng, disk: &SimDisk, profile: &Profile) -> Options {
    let drawn = rng.below(2);
    let mode = match (
        profile.split_mode,
        std::env::var("RINGKV_SIM_SPLIT_MODE").as_deref(),
    ) {
        (Some(mode), _) => mode,
        (None, Ok("copy")) => SplitMode::Copy,
        (None, Ok("handover")) => SplitMode::HandOver,
        _ if drawn == 0 => SplitMode::Copy,
        _ => SplitMode::HandOver,
    };
    Options::default()
        .cores(1 + rng.below(3) as usize)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .split_threshold_bytes(64 << 10)
        .split_mode(mode)
        .cache_bytes(if rng.chance(2) { 0 } else { 64 << 10 })
        .compaction_interval(Duration::from_millis(1))
        // One open in eight seals dead active extents soon after writes pause, so that
        // power cuts fall inside those seals too (every pause for a commit then seals
        // an extent: in every open it made the test five times slower).
        .idle_seal_after(Some(match rng.chance(8) {
            true => Duration::from_millis(1 + rng.below(3)),
            false => ringkv::IDLE_SEAL_AFTER_DEFAULT,
        }))
        .compaction_garbage_ratio(profile.garbage_ratio)
        .io_memory_bytes(64 << 10)
        .queue_depth(64)
        // Half the runs end extents early to keep key summaries in memory small.
        .summary_memory_bytes(if rng.chance(2) { 1 << 10 } else { 16 << 20 })
        .commit_log_bytes(match rng.below(3) {
            0 => 0,                            // rounds sync the substores
            1 => ringkv::COMMIT_LOG_MIN_BYTES, // fills often: checkpoints, resets
            _ => ringkv::COMMIT_LOG_DEFAULT_BYTES,
        })
        .simulated_disk(disk.clone())
}

/// Runs `f` on its own thread; a hang is a failure that names the seed.
fn within<T: Send>(seed: u64, what: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let worker = s.spawn(f);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !worker.is_finished() {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: {what} did not return within 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        worker.join().expect("no panic")
    })
}

/// One chain of rounds from `seed`.
struct Chain {
    seed: u64,
    profile: &'static Profile,
    rng: Rng,
    disk: SimDisk,
    keys: Vec<Vec<u8>>,
    model: Vec<Known>,
    version: u64,
    /// Data directories beside the home the chain ends with.
    data_dirs: Vec<&'static str>,
    /// How many of them the first round opens with (all, so that cuts fall while the
    /// database is created across them, or none); each later round adds one.
    first_round_dirs: usize,
}

impl Chain {
    fn new(seed: u64, profile: &'static Profile) -> Self {
        let mut rng = Rng(seed);
        let hot_byte = rng.next() as u8;
        let data_dirs = DATA_DIRS[..rng.below(DATA_DIRS.len() as u64 + 1) as usize].to_vec();
        let first_round_dirs = if rng.chance(2) { data_dirs.len() } else { 0 };
        Self {
            seed,
            profile,
            keys: (0..KEYS).map(|i| key_name(i, hot_byte)).collect(),
            model: vec![Known::default(); KEYS as usize],
            disk: SimDisk::new(),
            rng,
            version: 0,
            data_dirs,
            first_round_dirs,
        }
    }

    fn run(&mut self, tally: &mut Tally) {
        for round in 0..self.profile.rounds {
            let db = self.open(round, tally);
            self.check(&db, round);
            self.power_cut_during_writes(db, round, tally);
        }
    }

    /// Opens the database, with a power cut armed inside the open now and then: each
    /// cut that falls there counts, and the open is tried again on the next boot.
    fn open(&mut self, round: u64, tally: &mut Tally) -> Db {
        loop {
            let dirs = (self.first_round_dirs + round as usize).min(self.data_dirs.len());
            let data_dirs = &self.data_dirs[..dirs];
            let options = options(&mut self.rng, &self.disk, self.profile).data_dirs(data_dirs);
            let cut_in_open = self.rng.chance(6);
            if cut_in_open {
                let mode = CrashMode::Random {
                    seed: self.rng.next(),
                };
                self.disk.power_cut_at(1 + self.rng.below(60), mode);
            }
            for what in unfinished(&self.disk) {
                *tally.left.entry(what).or_default() += 1;
            }
            let elsewhere = |dir: &&str| {
                let substores = Path::new(dir).join("substores");
                self.disk
                    .read_dir(substores)
                    .is_ok_and(|leaves| !leaves.is_empty())
            };
            if self.data_dirs.iter().any(elsewhere) {
                tally.opens_with_leaves_elsewhere += 1;
            }
            let seed = self.seed;
            let opened = within(seed, "open", || Db::open(DB_PATH, options));
            match opened {
                Ok(db) if !self.disk.powered_off() => {
                    // Not reached during the open: it must not fall later by surprise.
                    self.disk
                        .power_cut_at(u64::MAX / 2, CrashMode::DropUnsynced);
                    return db;
                }
                Ok(db) => drop(within(seed, "close", || db.close())),
                Err(e) => assert!(
                    self.disk.powered_off(),
                    "seed {seed} round {round}: open failed without a power cut: {e}"
                ),
            }
            tally.power_cuts += 1;
            tally.cuts_in_open += 1;
            self.disk = self.disk.reboot();
        }
    }

    /// Every key holds what the model allows, as listed, as read (a sample of keys,
    /// each in its own call) and as counted. The model then takes what the database
    /// holds.
    fn check(&mut self, db: &Db, round: u64) {
        let seed = self.seed;
        let mut listed = HashMap::new();
        db.for_each(|k, v| {
            let again = listed.insert(k.to_vec(), v.to_vec());
            assert!(again.is_none(), "seed {seed}: {k:?} listed twice");
        })
        .unwrap_or_else(|e| panic!("seed {seed} round {round}: for_each: {e}"));
        let mut live = 0;
        for (i, (key, known)) in self.keys.iter().zip(&mut self.model).enumerate() {
            let held = listed.remove(key.as_slice());
            let allowed = held == known.value || known.in_flight.as_ref() == Some(&held);
            assert!(
                allowed,
                "seed {seed} round {round}: key {i} holds {}, expected {} or the write in \
                 flight {}; its history: {:#?}; on the disk: {}",
                show(&held),
                show(&known.value),
                known.in_flight.as_ref().map_or("(none)".into(), show),
                known.history,
                where_is(&self.disk, key),
            );
            if self.rng.chance(CHECK_GET_ONE_IN) || known.in_flight.is_some() {
                let got = db
                    .get(key)
                    .unwrap_or_else(|e| panic!("seed {seed} round {round}: get: {e}"));
                assert_eq!(
                    got.map(|v| v.to_vec()),
                    held,
                    "seed {seed} round {round}: get disagrees with for_each on key {i}"
                );
            }
            live += u64::from(held.is_some());
            known.note(format!("round {round} opened: holds {}", show(&held)));
            known.value = held;
            known.in_flight = None;
        }
        assert!(
            listed.is_empty(),
            "seed {seed} round {round}: keys never written: {:?}",
            listed.keys().collect::<Vec<_>>()
        );
        assert_eq!(db.len().unwrap(), live, "seed {seed} round {round}: len");
    }

    /// Arms a cut a random number of changes ahead and writes until it falls (or
    /// crashes the disk at the end when it did not).
    fn power_cut_during_writes(&mut self, db: Db, round: u64, tally: &mut Tally) {
        let mode = match self.rng.below(3) {
            0 => CrashMode::DropUnsynced,
            1 => CrashMode::TearLast {
                seed: self.rng.next(),
            },
            _ => CrashMode::Random {
                seed: self.rng.next(),
            },
        };
        // Aimed at a split: its first child's creation, its commit point, or the removal
        // of the retired parent.
        let aims = self.profile.aim;
        let aim = match aims.len() {
            0 if self.rng.chance(3) => {
                let target = ["08-", "0c-", "HANDED-OVER", ".retired"][self.rng.below(4) as usize];
                Some((target, NAMED_CUT_AFTER_MAX))
            }
            0 => None,
            n => Some(aims[self.rng.below(n as u64) as usize]),
        };
        match aim {
            Some((target, after_max)) => {
                let after = 1 + self.rng.below(after_max);
                self.disk.power_cut_at(u64::MAX / 2, mode);
                self.disk.power_cut_after_name(target, after, mode);
            }
            None => {
                let changes_ahead = 1 + self.rng.below(ROUND_OPS_MAX * 2);
                self.disk.power_cut_at(changes_ahead, mode);
            }
        }
        let shared = Mutex::new(std::mem::take(&mut self.model));
        let seeds: Vec<u64> = (0..WRITERS).map(|_| self.rng.next()).collect();
        let first_version = self.version;
        std::thread::scope(|s| {
            for (writer, seed) in seeds.into_iter().enumerate() {
                let (db, keys, shared, disk) = (&db, &self.keys, &shared, &self.disk);
                let chain = self.seed;
                let ops = self.profile.round_ops;
                let version = first_version + writer as u64 * ops;
                s.spawn(move || {
                    let mut w = Writer {
                        db,
                        keys,
                        model: shared,
                        disk,
                        rng: Rng(seed),
                        writer: writer as u64,
                        version,
                        chain,
                        round,
                        ops,
                    };
                    w.run()
                });
            }
        });
        self.version += WRITERS * self.profile.round_ops;
        self.model = shared.into_inner().unwrap();
        if !self.disk.powered_off() {
            tally.rounds_without_cut += 1;
            let mut disk = self.disk.clone();
            disk.crash(mode);
        }
        tally.power_cuts += 1;
        // Figures need a commit unless the database turned read-only; after the cut that
        // commit can only fail, so they are not always there.
        let cores = db.stats().map(|s| s.cores).unwrap_or_default();
        for core in &cores {
            tally.splits += core.splits;
            tally.compactions += core.compaction.extents;
            if let Some(cause) = &core.background_error {
                *tally.interrupted.entry(step_of(cause)).or_default() += 1;
            }
        }
        let seed = self.seed;
        let _ = within(seed, "close after a power cut", || db.close());
        self.disk = self.disk.reboot();
    }
}

/// A value in a message: its `key:version:` prefix and length.
fn show(value: &Option<Vec<u8>>) -> String {
    match value {
        None => "nothing".into(),
        Some(v) => {
            let text = String::from_utf8_lossy(v);
            let prefix: String = text.split_inclusive(':').take(2).collect();
            format!("{prefix}… ({} bytes)", v.len())
        }
    }
}

/// What the layout on `disk` holds for open to finish: an unfinished creation, the
/// children of a split before its commit point, a retired parent not yet removed, an
/// ancestor whose records have not all moved.
fn unfinished(disk: &SimDisk) -> Vec<&'static str> {
    let root = Path::new(DB_PATH);
    let mut found = Vec::new();
    if disk
        .entry_kind(root.join("substores.tmp"))
        .unwrap()
        .is_some()
    {
        found.push("an unfinished creation");
    }
    let Ok(entries) = disk.read_dir(root.join("substores")) else {
        return found;
    };
    let mut leaves = Vec::new();
    for (name, _) in entries {
        if name.ends_with(".retired") {
            found.push("a retired parent not yet removed");
            continue;
        }
        let (bits, prefix) = name.split_once('-').expect("a leaf name");
        let bits = u32::from_str_radix(bits, 16).unwrap();
        let prefix = u64::from_str_radix(prefix, 16).unwrap();
        let marker = root.join("substores").join(&name).join("HANDED-OVER");
        let ancestor = disk.entry_kind(marker).unwrap().is_some();
        leaves.push((bits, prefix, ancestor));
    }
    let covers = |(bits, prefix, _): (u32, u64, bool), hash: u64| {
        bits == 0 || (prefix ^ hash) >> (64 - bits) == 0
    };
    for &(bits, prefix, ancestor) in &leaves {
        if ancestor {
            found.push("a hand-over ancestor whose records have not all moved");
        } else if leaves
            .iter()
            .any(|&outer| outer.0 < bits && !outer.2 && covers(outer, prefix))
        {
            found.push("children of a split before its commit point");
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Where `key` is on the disk: what each leaf directory's substore answers for it,
/// opened afresh (a failure's diagnosis; opening may cut torn tails).
fn where_is(disk: &SimDisk, key: &[u8]) -> String {
    let substores = Path::new(DB_PATH).join("substores");
    let Ok(entries) = disk.read_dir(&substores) else {
        return "no substores".into();
    };
    let mut found = Vec::new();
    for (name, _) in entries {
        let dir = substores.join(&name);
        let marker = disk.entry_kind(dir.join("HANDED-OVER")).ok().flatten();
        let answer = futures_lite::future::block_on(async {
            let device = disk.device(&dir).map_err(|e| e.to_string())?;
            let config = ringkv_engine::Config {
                extent_size_bytes: 64 << 10,
                ..Default::default()
            };
            let store = ringkv_engine::Substore::open(device, config)
                .await
                .map_err(|e| e.to_string())?;
            let record = store.get_record(key).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(record.map(|r| r.value.to_vec()))
        });
        match answer {
            Ok(None) => {}
            Ok(value) => found.push(format!(
                "{name}{}: {}",
                if marker.is_some() { " (ancestor)" } else { "" },
                show(&value)
            )),
            Err(e) => found.push(format!("{name}: {e}")),
        }
    }
    found.join("; ")
}

/// The operation a background error names ("I/O error while retiring …" → "retiring").
fn step_of(cause: &str) -> String {
    let op = cause
        .strip_prefix("I/O error while ")
        .unwrap_or(cause)
        .split([' ', ':'])
        .take_while(|w| !w.starts_with('/') && !w.starts_with("sim"))
        .collect::<Vec<_>>()
        .join(" ");
    op.chars().take(60).collect()
}

/// One writer thread: it owns the keys `i` with `i % WRITERS == writer`.
struct Writer<'a> {
    db: &'a Db,
    keys: &'a [Vec<u8>],
    model: &'a Mutex<Vec<Known>>,
    disk: &'a SimDisk,
    rng: Rng,
    writer: u64,
    version: u64,
    chain: u64,
    round: u64,
    ops: u64,
}

impl Writer<'_> {
    fn run(&mut self) {
        for _ in 0..self.ops {
            let slot = self.rng.below(KEYS / WRITERS) * WRITERS + self.writer;
            if !self.step(slot as usize) {
                return;
            }
        }
    }

    /// One operation on key `slot`; false once the power is out.
    fn step(&mut self, slot: usize) -> bool {
        let key = &self.keys[slot];
        self.version += 1;
        let planned = match self.rng.below(10) {
            0 => None,
            _ => Some(value_for(slot as u64, self.version, &mut self.rng)),
        };
        let kind = self.rng.below(10);
        let outcome = match kind {
            0..=4 => match &planned {
                Some(v) => self.db.put(key, v).map(|()| planned.clone()),
                None => self.db.delete(key).map(|()| None),
            },
            5..=6 => {
                let next = planned.clone();
                let decide = move |_: Option<&[u8]>| match next {
                    Some(v) => Update::Put(v),
                    None => Update::Delete,
                };
                self.db.update(key, decide).map(|_| planned.clone())
            }
            _ => self.db.get(key).map(|v| v.map(|v| v.to_vec())),
        };
        let mut model = self.model.lock().unwrap();
        let known = &mut model[slot];
        let op = match kind {
            0..=4 => "write",
            5..=6 => "update",
            _ => "read",
        };
        known.note(format!(
            "round {} writer {}: {op} {} -> {}",
            self.round,
            self.writer,
            if kind < 7 {
                show(&planned)
            } else {
                String::new()
            },
            match &outcome {
                Ok(v) => format!("ok {}", if kind < 7 { String::new() } else { show(v) }),
                Err(e) => format!("error {e}"),
            }
        ));
        match outcome {
            Ok(value) => {
                if kind >= 7 && value != known.value {
                    panic!(
                        "seed {} round {}: a read of key {slot} saw {}, the model holds {}",
                        self.chain,
                        self.round,
                        show(&value),
                        show(&known.value)
                    );
                }
                known.value = value;
                true
            }
            Err(e) => {
                assert!(
                    self.disk.powered_off(),
                    "seed {} round {}: an operation failed without a power cut: {e}",
                    self.chain,
                    self.round
                );
                if kind < 7 {
                    known.in_flight = Some(planned);
                }
                false
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

/// Stops the other chain threads when this one panics (a failed check).
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Chains one child process runs: glommio does not close two eventfds of each
/// executor it drops (about 17 descriptors a chain, measured), so the chains run in
/// batches, each in a child process whose descriptors go with it.
const CHAINS_PER_CHILD: u64 = 40;
const CHILD_BATCH: &str = "RINGKV_SIM_CHILD_BATCH";

/// Runs chains `base..base + count` in this process on `threads` threads.
fn run_chains(profile: &'static Profile, base: u64, count: u64, threads: u64) -> Tally {
    let next = AtomicU64::new(base);
    let failed = AtomicBool::new(false);
    let total = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let _stop = StopOnPanic(&failed);
                while !failed.load(Ordering::SeqCst) {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed - base >= count {
                        return;
                    }
                    let mut tally = Tally {
                        chains: 1,
                        ..Tally::default()
                    };
                    Chain::new(seed, profile).run(&mut tally);
                    total.lock().unwrap().add(tally);
                }
            });
        }
    });
    total.into_inner().unwrap()
}

/// Runs chains `base..base + count` in a child process; its figures.
fn run_child(profile: &Profile, base: u64, count: u64, threads: u64) -> Tally {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([profile.test, "--exact", "--nocapture"])
        .env(CHILD_BATCH, format!("{base}:{count}:{threads}"))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("TALLY "));
    match (out.status.success(), line) {
        (true, Some(line)) => Tally::parse(line),
        _ => panic!(
            "chains {base}..{}: {}",
            base + count,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn the_database_keeps_every_acknowledged_write_through_power_cuts() {
    run(&MIXED);
}

#[test]
fn a_cut_right_after_a_hand_over_keeps_what_the_children_acknowledged() {
    run(&HAND_OVER_WINDOW);
}

/// Creating a database across three directories with the power cut at each change of
/// the creation in turn: the next open (same options) finishes or redoes it, never
/// refuses, and the database then keeps a synced write through another cut.
#[test]
fn a_cut_anywhere_in_a_creation_across_directories_leaves_a_database_that_opens() {
    let options = |disk: &SimDisk| {
        Options::default()
            .cores(1)
            .durability(Durability::Sync)
            .io_memory_bytes(64 << 10)
            .data_dirs(DATA_DIRS)
            .simulated_disk(disk.clone())
    };
    let disk = SimDisk::new();
    let db = Db::open(DB_PATH, options(&disk)).unwrap();
    let creation = disk.changes();
    db.close().unwrap();
    for cut in 1..=creation {
        let disk = SimDisk::new();
        disk.power_cut_at(cut, CrashMode::Random { seed: cut });
        match Db::open(DB_PATH, options(&disk)) {
            Ok(db) => drop(db.close()),
            Err(e) => assert!(disk.powered_off(), "cut {cut}: {e}"),
        }
        assert!(disk.powered_off(), "cut {cut} of {creation} did not fall");
        let disk = disk.reboot();
        let reopened = Db::open(DB_PATH, options(&disk));
        let db = reopened.unwrap_or_else(|e| panic!("cut {cut} of {creation}: {e}"));
        db.put(b"key", b"value").unwrap();
        disk.power_cut_at(1, CrashMode::Random { seed: cut });
        drop(db.close());
        let disk = disk.reboot();
        let db = Db::open(DB_PATH, options(&disk)).unwrap();
        let value = db.get(b"key").unwrap();
        assert_eq!(value.as_deref(), Some(&b"value"[..]), "cut {cut}");
        db.close().unwrap();
    }
}

/// Every key and value of the database on `disk` at `path` (opened with `options`).
fn contents(path: &str, options: Options) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = Db::open(path, options).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut held = BTreeMap::new();
    db.for_each(|k, v| drop(held.insert(k.to_vec(), v.to_vec())))
        .unwrap();
    db.close().unwrap();
    held
}

/// A checkpoint with the power cut at each change it makes in turn, then right after
/// it returns: after the reboot the database holds what it held, and the checkpoint is
/// either absent (its `.partial` may be left) or a database holding exactly that;
/// once it returned, it is there.
#[test]
fn a_cut_anywhere_in_a_checkpoint_leaves_it_whole_or_absent() {
    const CHECKPOINT: &str = "/backup";
    let options = |disk: &SimDisk| {
        Options::default()
            .cores(2)
            .durability(Durability::Sync)
            .extent_size_bytes(64 << 10)
            .io_memory_bytes(64 << 10)
            .simulated_disk(disk.clone())
    };
    let base = SimDisk::new();
    let db = Db::open(DB_PATH, options(&base)).unwrap();
    let model: BTreeMap<Vec<u8>, Vec<u8>> = (0..400u64)
        .map(|i| {
            (
                format!("key-{i:04}").into_bytes(),
                vec![i as u8; 100 + i as usize * 3],
            )
        })
        .collect();
    for (k, v) in &model {
        db.put(k, v).unwrap();
    }
    db.close().unwrap();
    let counting = base.copy();
    let db = Db::open(DB_PATH, options(&counting)).unwrap();
    let before = counting.changes();
    db.checkpoint(CHECKPOINT).unwrap();
    let changes = counting.changes() - before;
    db.close().unwrap();
    assert_eq!(contents(CHECKPOINT, options(&counting)), model);
    let (mut whole, mut absent) = (0, 0);
    // One more: the cut falls after the checkpoint returned, which must then last.
    for cut in 1..=changes + 1 {
        let mut disk = base.copy();
        let db = Db::open(DB_PATH, options(&disk)).unwrap();
        let mode = CrashMode::Random { seed: cut };
        disk.power_cut_at(cut, mode);
        // Whether it says it failed or not, what the disk keeps decides.
        drop(db.checkpoint(CHECKPOINT));
        drop(db.close());
        match disk.powered_off() {
            true => disk = disk.reboot(),
            false => disk.crash(mode),
        }
        let has_checkpoint = disk.entry_kind(CHECKPOINT).unwrap().is_some();
        assert_eq!(
            contents(DB_PATH, options(&disk)),
            model,
            "cut {cut} of {changes}"
        );
        assert!(
            has_checkpoint || cut <= changes,
            "a checkpoint that returned was lost"
        );
        if has_checkpoint {
            let held = contents(CHECKPOINT, options(&disk));
            assert_eq!(held, model, "cut {cut} of {changes}: the checkpoint");
            whole += 1;
        } else {
            absent += 1;
        }
    }
    eprintln!(
        "checkpoint: {} power cuts: {whole} left it whole, {absent} absent",
        changes + 1
    );
    assert!(whole > 0 && absent > 0, "{whole} whole, {absent} absent");
}

/// Runs the chains of `profile`: a batch of them when this process is a child, else
/// every batch, each in a child, and the report.
fn run(profile: &'static Profile) {
    if let Ok(batch) = std::env::var(CHILD_BATCH) {
        let n: Vec<u64> = batch.split(':').map(|n| n.parse().unwrap()).collect();
        println!("TALLY {}", run_chains(profile, n[0], n[1], n[2]).encode());
        return;
    }
    let started = Instant::now();
    if let Some(seed) = env_u64("RINGKV_SIM_SEED") {
        let mut tally = Tally::default();
        Chain::new(seed, profile).run(&mut tally);
        eprintln!("seed {seed}: {tally:?}");
        return;
    }
    let chains = env_u64("RINGKV_SIM_SEEDS");
    let base = env_u64("RINGKV_SIM_BASE").unwrap_or(0);
    let threads = env_u64("RINGKV_SIM_THREADS").unwrap_or(CHAIN_THREADS);
    let mut total = Tally::default();
    let mut next = base;
    loop {
        let count = match chains {
            Some(n) => CHAINS_PER_CHILD.min(base + n - next),
            None if total.power_cuts < profile.cuts => CHAINS_PER_CHILD,
            None => 0,
        };
        if count == 0 {
            break;
        }
        total.add(run_child(profile, next, count, threads));
        next += count;
    }
    let tally = total;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} chains from seed {base} on {threads} threads: {} power cuts ({} inside an open, \
         {} rounds crashed at their end) in {secs:.1} s, {:.0} per minute; {} splits, {} \
         extents compacted; {} opens found leaves in another data directory; background \
         steps cut: {:?}; left for open to finish: {:?}",
        profile.test,
        tally.chains,
        tally.power_cuts,
        tally.cuts_in_open,
        tally.rounds_without_cut,
        tally.power_cuts as f64 * 60.0 / secs,
        tally.splits,
        tally.compactions,
        tally.opens_with_leaves_elsewhere,
        tally.interrupted,
        tally.left
    );
}
