//! Options of a database, with documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use ringkv_engine::{Clock, Recovery, SimDisk};

use crate::error::{Error, Result};
use crate::storage::Storage;
use ringkv_engine::limits::{EXTENT_SIZE_MAX_BYTES, EXTENT_SIZE_MIN_BYTES, META_LEN_MAX};

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// After the write and everything it depends on are on stable storage. Writes that
    /// arrive while a sync is in flight share the next one (group commit).
    #[default]
    Sync,
    /// From memory; written within [`Options::flush_interval`] and on `flush`/`close`.
    Buffered,
}

/// How a substore that passed `split_threshold_bytes` becomes 16 children
/// (ARCHITECTURE.md, "Splitting").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SplitMode {
    /// Copy every live record into the children while writes go on, catch up with the
    /// keys written meanwhile, freeze the parent briefly for the last ones, then retire
    /// it. The parent's bytes are written twice before the split is done.
    #[default]
    Copy,
    /// Hand the parent over at once: it stops taking puts and stays behind the children
    /// as a read-only ancestor (deletes still reach it as tombstones); a background
    /// task later moves only the records that no child has overwritten, then retires
    /// it. No freeze; records overwritten before the move are never copied.
    HandOver,
}

/// How a database is opened. Builder methods take and return `Self`.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub(crate) cores: usize,
    pub(crate) durability: Durability,
    pub(crate) cache_bytes: u64,
    pub(crate) extent_size_bytes: u64,
    pub(crate) split_threshold_bytes: u64,
    pub(crate) split_mode: SplitMode,
    pub(crate) flush_interval: Duration,
    pub(crate) io_memory_bytes: usize,
    pub(crate) queue_depth: usize,
    pub(crate) compaction: bool,
    pub(crate) compaction_garbage_ratio: f64,
    pub(crate) compaction_free_space_min_bytes: u64,
    pub(crate) compaction_shares: usize,
    pub(crate) compaction_interval: Duration,
    pub(crate) idle_seal_after: Option<Duration>,
    pub(crate) recovery: Recovery,
    pub(crate) read_only: bool,
    pub(crate) commit_log_bytes: u64,
    pub(crate) batch_log_bytes: u64,
    pub(crate) summary_memory_bytes: usize,
    pub(crate) head_meta_bytes: usize,
    pub(crate) storage: Storage,
    pub(crate) clock: Clock,
    /// The data directories besides the database's own; resolved (absolute, as
    /// `DATA-DIRS` lists them) once the database is open.
    pub(crate) data_dirs: Vec<PathBuf>,
    pub(crate) snapshot_memory_bytes: u64,
}

/// Default flush interval of [`Durability::Buffered`]: 50 ms.
pub const FLUSH_INTERVAL_DEFAULT: Duration = Duration::from_millis(50);
/// Default split threshold of a substore: 1 GiB.
pub const SPLIT_THRESHOLD_DEFAULT_BYTES: u64 = 1 << 30;
/// Default io_uring-registered memory per core: 1 MiB (the locked-memory limit is
/// often 8 MiB for the whole process).
pub const IO_MEMORY_DEFAULT_BYTES: usize = 1 << 20;
/// Default capacity of each core's request queue; callers wait when it is full.
pub const QUEUE_DEPTH_DEFAULT: usize = 4096;
/// Default dead fraction at which a sealed extent is compacted: one half.
pub const COMPACTION_GARBAGE_RATIO_DEFAULT: f64 = 0.5;
/// Default free space below which compaction turns aggressive: 1 GiB.
pub const COMPACTION_FREE_SPACE_MIN_DEFAULT_BYTES: u64 = 1 << 30;
/// Default share of a core's time the compaction task queue gets against the
/// foreground queue's 1000: 50 (about 5 % when both are busy).
pub const COMPACTION_SHARES_DEFAULT: usize = 50;
/// Default pause between background compaction passes: 100 ms.
pub const COMPACTION_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// Default time without writes after which a core seals a dead active extent: 1 s.
pub const IDLE_SEAL_AFTER_DEFAULT: Duration = Duration::from_secs(1);
/// Shares of the foreground (request) task queue.
pub(crate) const FOREGROUND_SHARES: usize = 1000;
/// Dead fraction used under free-space pressure.
pub(crate) const COMPACTION_GARBAGE_RATIO_PRESSURE: f64 = 0.1;

/// Default size of each core's commit log file: 64 MiB.
pub const COMMIT_LOG_DEFAULT_BYTES: u64 = 64 << 20;
/// Default memory per core for the key summaries of extents not yet sealed: 16 MiB.
pub const SUMMARY_MEMORY_DEFAULT_BYTES: usize = 16 << 20;
/// Smallest commit log file (when it is on).
pub const COMMIT_LOG_MIN_BYTES: u64 = 64 << 10;

/// Default memory the open snapshots may keep versions in: 256 MiB (shared by the cores).
pub const SNAPSHOT_MEMORY_DEFAULT_BYTES: u64 = 256 << 20;
/// Most cores a database runs.
pub const CORES_MAX: usize = 256;

impl Default for Options {
    fn default() -> Self {
        Self {
            cores: 0,
            durability: Durability::Sync,
            cache_bytes: crate::sizing::cache_default_bytes(),
            extent_size_bytes: ringkv_engine::limits::EXTENT_SIZE_DEFAULT_BYTES,
            split_threshold_bytes: SPLIT_THRESHOLD_DEFAULT_BYTES,
            split_mode: SplitMode::default(),
            flush_interval: FLUSH_INTERVAL_DEFAULT,
            io_memory_bytes: IO_MEMORY_DEFAULT_BYTES,
            queue_depth: QUEUE_DEPTH_DEFAULT,
            compaction: true,
            compaction_garbage_ratio: COMPACTION_GARBAGE_RATIO_DEFAULT,
            compaction_free_space_min_bytes: COMPACTION_FREE_SPACE_MIN_DEFAULT_BYTES,
            compaction_shares: COMPACTION_SHARES_DEFAULT,
            compaction_interval: COMPACTION_INTERVAL_DEFAULT,
            idle_seal_after: Some(IDLE_SEAL_AFTER_DEFAULT),
            recovery: Recovery::Strict,
            read_only: false,
            commit_log_bytes: COMMIT_LOG_DEFAULT_BYTES,
            batch_log_bytes: COMMIT_LOG_DEFAULT_BYTES,
            summary_memory_bytes: SUMMARY_MEMORY_DEFAULT_BYTES,
            head_meta_bytes: META_LEN_MAX,
            storage: Storage::Real,
            clock: Clock::system(),
            data_dirs: Vec::new(),
            snapshot_memory_bytes: SNAPSHOT_MEMORY_DEFAULT_BYTES,
        }
    }
}

impl Options {
    /// Directories besides the database's own that hold its substores, one per
    /// device (RocksDB's `db_paths`, Aerospike's devices): the 16 first leaves are
    /// spread over all of them and the database's own round-robin, a split's children
    /// go to the directory with clearly the most free space (else beside their
    /// parent), and cores are assigned so that each serves mostly one directory. The
    /// database's own directory keeps its commit logs, `LOCK` and the list
    /// (`DATA-DIRS`), so that later opens (and `ringkv stats`, `verify`, ...) find
    /// them with this option left empty.
    ///
    /// Reopening with more directories adds them (nothing moves; new leaves go
    /// there); leaving out one that holds substores is refused, as is a listed
    /// directory that lost its `RINGKV-DATA` marker (an unmounted device). Default:
    /// none. Real file systems only.
    pub fn data_dirs<P: Into<PathBuf>>(mut self, dirs: impl IntoIterator<Item = P>) -> Self {
        self.data_dirs = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// Memory the open snapshots may take for the versions writes replace while they
    /// are open (key and index entry per key written since the oldest), shared equally
    /// by the cores. Past a core's share, the oldest snapshot open there is released on
    /// that core: its reads of the keys the core owns, and its scans, fail with
    /// `Error::SnapshotTooOld`, and the core's background work (held back while
    /// snapshots are open) may go on once no other snapshot is. `CoreStats` shows what
    /// the snapshots keep. Default 256 MiB.
    pub fn snapshot_memory_bytes(mut self, n: u64) -> Self {
        self.snapshot_memory_bytes = n;
        self
    }

    /// Executors (one thread each). Default (0): half the CPUs available to the process,
    /// at least one. The other half is left to the threads that call the database: with
    /// a CPU to spare, a core and its callers spin instead of sleeping between requests,
    /// which makes a request's trip to its core about a microsecond instead of tens
    /// (ARCHITECTURE.md, "Spinning"). Pinned one per CPU when there are enough CPUs,
    /// unpinned otherwise.
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = n;
        self
    }

    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Read-cache budget in bytes, split evenly between cores (direct I/O bypasses the
    /// page cache, so this cache is the only one). 0 disables the cache. Default: a
    /// quarter of the memory the process may use (its memory cgroup's limit when it has
    /// one, else the machine's), at least 64 MiB ([`crate::cache_default_bytes`]).
    pub fn cache_bytes(mut self, n: u64) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Largest extent file before it is sealed. Default 64 MiB.
    pub fn extent_size_bytes(mut self, n: u64) -> Self {
        self.extent_size_bytes = n;
        self
    }

    /// Size past which a substore splits 16 ways. Default 1 GiB.
    pub fn split_threshold_bytes(mut self, n: u64) -> Self {
        self.split_threshold_bytes = n;
        self
    }

    /// How soon [`Durability::Buffered`] writes reach the disk. Default 50 ms.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// io_uring-registered buffer memory per core. Default 1 MiB.
    pub fn io_memory_bytes(mut self, n: usize) -> Self {
        self.io_memory_bytes = n;
        self
    }

    /// Capacity of each core's request queue. Default 4096.
    pub fn queue_depth(mut self, n: usize) -> Self {
        self.queue_depth = n;
        self
    }

    /// Whether cores compact in the background. Default on; `Db::compact` works either
    /// way.
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.compaction = on;
        self
    }

    /// Dead fraction (0..=1) at which a sealed extent becomes a compaction victim.
    /// Default 0.5.
    pub fn compaction_garbage_ratio(mut self, ratio: f64) -> Self {
        self.compaction_garbage_ratio = ratio;
        self
    }

    /// Free space on the data directory's file system below which compaction takes any
    /// extent with a tenth of dead bytes. Default 1 GiB.
    pub fn compaction_free_space_min_bytes(mut self, n: u64) -> Self {
        self.compaction_free_space_min_bytes = n;
        self
    }

    /// The background I/O budget: shares of each core's time for compaction against
    /// 1000 for requests (glommio task-queue shares). Default 50.
    pub fn compaction_shares(mut self, shares: usize) -> Self {
        self.compaction_shares = shares;
        self
    }

    /// How substores split: [`SplitMode::Copy`] (default) or [`SplitMode::HandOver`].
    pub fn split_mode(mut self, mode: SplitMode) -> Self {
        self.split_mode = mode;
        self
    }

    /// Pause between background compaction passes after writes. Default 100 ms.
    pub fn compaction_interval(mut self, d: Duration) -> Self {
        self.compaction_interval = d;
        self
    }

    /// How long a core goes without writes before it seals an active extent whose dead
    /// fraction has reached the garbage ratio (expired or overwritten keys), so that
    /// compaction can give that space back without more writes to fill the extent.
    /// `None` never seals early. Default 1 s.
    pub fn idle_seal_after(mut self, after: Option<Duration>) -> Self {
        self.idle_seal_after = after;
        self
    }

    /// What opening does about damage it cannot prove to be the torn end of a crash: by
    /// default ([`Recovery::Strict`]) it refuses with `Error::Corruption`, changing
    /// nothing; [`Recovery::Salvage`] keeps every intact record of a damaged newest
    /// extent, moves the damaged bytes into a quarantine file beside it and reports it
    /// in [`LeafStats::salvaged`](crate::LeafStats::salvaged) (`ringkv salvage`).
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = recovery;
        self
    }

    /// Opens the database without changing anything on disk: with a shared lock (a
    /// process that has it open writable refuses it, and other read-only opens share
    /// it), no background work, and every write refused with `Error::OpenedReadOnly`.
    /// A directory where a writable open would first change something (commit logs or
    /// batch logs to replay, a torn tail to cut, a split to clean up) is refused with
    /// `Error::NeedsWritableOpen`. Meant for checkpoints ([`Db::checkpoint`]
    /// (crate::Db::checkpoint)) and for looking at a database no process has open.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Size of each core's commit log file. A commit round writes what it commits as one
    /// frame of this log and syncs that one file, instead of every substore it touched;
    /// the substores are synced when the log is full (it then starts again) and on close
    /// (ARCHITECTURE.md, "Group commit"). 0 turns the log off: each round syncs every
    /// substore it touched. Default 64 MiB; at least 64 KiB when on.
    pub fn commit_log_bytes(mut self, n: u64) -> Self {
        self.commit_log_bytes = n;
        self
    }

    /// Size of each core's batch log file (the write batches it coordinates; ARCHITECTURE.md,
    /// "Atomic write batches"): a batch must fit in one frame of it, so this bounds a
    /// batch's size (`Error::BatchTooLarge`). Default 64 MiB; at least 64 KiB.
    pub fn batch_log_bytes(mut self, n: u64) -> Self {
        self.batch_log_bytes = n;
        self
    }

    /// Memory per core for the key summaries of extents not yet sealed (an extent's
    /// summary is written when it is sealed, and held in memory until then; about 30
    /// bytes plus the key and the metadata per record). When a core's summaries pass
    /// this, the substore with the largest ends its extent early, so memory stays
    /// bounded however many substores a core owns, at the price of smaller extents.
    /// Default 16 MiB.
    pub fn summary_memory_bytes(mut self, n: usize) -> Self {
        self.summary_memory_bytes = n;
        self
    }

    /// Metadata ([`PutOptions::meta`](crate::PutOptions::meta)) up to `n` bytes long is
    /// kept in memory beside its key, so that [`Db::head`](crate::Db::head) answers it
    /// without a device read; it costs its length in index memory per key, and nothing
    /// for a key without metadata. Longer metadata stays on the device only, and `head`
    /// reads the record for it. 0 keeps none in memory. Default 255, the longest
    /// metadata a record can carry: all of it.
    pub fn head_meta_bytes(mut self, n: usize) -> Self {
        self.head_meta_bytes = n;
        self
    }

    /// Runs the database on a simulated disk instead of the file system: the path
    /// given to [`Db::open`](crate::Db::open) names a directory of `disk`. For tests of
    /// what survives a power cut ([`SimDisk::power_cut_at`], [`SimDisk::crash`]) and
    /// of failing operations ([`SimDisk::inject`]): nothing reaches a real file, and a
    /// `Db` whose disk lost power fails every operation that touches the disk, as a
    /// process would not outlive the cut. Open a new `Db` on [`SimDisk::reboot`].
    pub fn simulated_disk(mut self, disk: SimDisk) -> Self {
        self.storage = Storage::Sim(disk);
        self
    }

    /// The clock expiry times are judged by: the system's by default; a
    /// [`Clock::manual`] lets a test move time (every clone moves together).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The cores the database will run: the count set with [`Options::cores`], or for
    /// `cores(0)` (the default) half this machine's CPUs, at least one.
    pub fn resolved_cores(&self) -> usize {
        if self.cores > 0 {
            return self.cores;
        }
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidOptions(what));
        if self.read_only && self.recovery == Recovery::Salvage {
            return bad("a salvage writes: it cannot be asked of a read-only open".into());
        }
        if self.resolved_cores() > CORES_MAX {
            return bad(format!("cores {} is more than {CORES_MAX}", self.cores));
        }
        if !(EXTENT_SIZE_MIN_BYTES..=EXTENT_SIZE_MAX_BYTES).contains(&self.extent_size_bytes) {
            return bad(format!(
                "extent_size_bytes {} is outside {EXTENT_SIZE_MIN_BYTES}..={EXTENT_SIZE_MAX_BYTES}",
                self.extent_size_bytes
            ));
        }
        if self.split_threshold_bytes < self.extent_size_bytes {
            return bad(format!(
                "split_threshold_bytes {} is below extent_size_bytes {}",
                self.split_threshold_bytes, self.extent_size_bytes
            ));
        }
        if self.queue_depth == 0 {
            return bad("queue_depth must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.compaction_garbage_ratio) {
            return bad(format!(
                "compaction_garbage_ratio {} is outside 0..=1",
                self.compaction_garbage_ratio
            ));
        }
        if self.compaction_shares == 0 || self.compaction_shares > FOREGROUND_SHARES {
            return bad(format!(
                "compaction_shares {} is outside 1..={FOREGROUND_SHARES}",
                self.compaction_shares
            ));
        }
        if self.commit_log_bytes != 0 && self.commit_log_bytes < COMMIT_LOG_MIN_BYTES {
            return bad(format!(
                "commit_log_bytes {} is below {COMMIT_LOG_MIN_BYTES} (0 turns the log off)",
                self.commit_log_bytes
            ));
        }
        if self.batch_log_bytes < COMMIT_LOG_MIN_BYTES {
            return bad(format!(
                "batch_log_bytes {} is below {COMMIT_LOG_MIN_BYTES}",
                self.batch_log_bytes
            ));
        }
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be positive".into());
        }
        Ok(())
    }
}
