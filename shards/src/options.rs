//! Options of a database, with documented defaults.

use std::time::Duration;

use crate::error::{Error, Result};
use ringkv_engine::limits::{EXTENT_SIZE_MAX_BYTES, EXTENT_SIZE_MIN_BYTES};

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

/// How a database is opened. Builder methods take and return `Self`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub(crate) cores: usize,
    pub(crate) durability: Durability,
    pub(crate) cache_bytes: u64,
    pub(crate) extent_size_bytes: u64,
    pub(crate) split_threshold_bytes: u64,
    pub(crate) flush_interval: Duration,
    pub(crate) io_memory_bytes: usize,
    pub(crate) queue_depth: usize,
}

/// Default read-cache budget, shared by all cores: 64 MiB.
pub const CACHE_DEFAULT_BYTES: u64 = 64 << 20;
/// Default flush interval of [`Durability::Buffered`]: 50 ms.
pub const FLUSH_INTERVAL_DEFAULT: Duration = Duration::from_millis(50);
/// Default split threshold of a substore: 1 GiB.
pub const SPLIT_THRESHOLD_DEFAULT_BYTES: u64 = 1 << 30;
/// Default io_uring-registered memory per core: 1 MiB (the locked-memory limit is
/// often 8 MiB for the whole process).
pub const IO_MEMORY_DEFAULT_BYTES: usize = 1 << 20;
/// Default capacity of each core's request queue; callers wait when it is full.
pub const QUEUE_DEPTH_DEFAULT: usize = 4096;
/// Most cores a database runs.
pub const CORES_MAX: usize = 256;

impl Default for Options {
    fn default() -> Self {
        Self {
            cores: 0,
            durability: Durability::Sync,
            cache_bytes: CACHE_DEFAULT_BYTES,
            extent_size_bytes: ringkv_engine::limits::EXTENT_SIZE_DEFAULT_BYTES,
            split_threshold_bytes: SPLIT_THRESHOLD_DEFAULT_BYTES,
            flush_interval: FLUSH_INTERVAL_DEFAULT,
            io_memory_bytes: IO_MEMORY_DEFAULT_BYTES,
            queue_depth: QUEUE_DEPTH_DEFAULT,
        }
    }
}

impl Options {
    /// Executors (one thread each). Default (0): the CPUs available to the process.
    /// Pinned one per CPU when there are enough CPUs, unpinned otherwise.
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = n;
        self
    }

    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Read-cache budget in bytes, split evenly between cores (direct I/O bypasses the
    /// page cache). 0 disables the cache.
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

    /// The core count this machine gives for `cores(0)`.
    pub(crate) fn resolved_cores(&self) -> usize {
        if self.cores > 0 {
            return self.cores;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidOptions(what));
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
        if self.flush_interval.is_zero() {
            return bad("flush_interval must be positive".into());
        }
        Ok(())
    }
}
