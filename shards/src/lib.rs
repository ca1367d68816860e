//! ringkv: a thread-per-core, io_uring, direct-I/O key-value database.
//!
//! [`Db::open`] starts one glommio executor per core (pinned when there are enough
//! CPUs). Each core owns a disjoint set of substores (the leaves of a 16-ary trie over
//! a stable hash of the key) in their own files. A call hashes its key, picks the core
//! from a routing table fixed at open, and crosses to it over a lock-free queue; the
//! core is woken only when it is parked. Writers on a core share group commits.
//!
//! The synchronous methods block the calling thread; the `_async` twins return futures
//! that any executor (tokio, glommio, a plain `block_on`) can await. Do not call the
//! blocking methods from inside a glommio task of the same process's cores.
//!
//! Open checks the host first: a locked-memory limit glommio refuses, or io_uring
//! denied (seccomp, the `kernel.io_uring_disabled` sysctl), is an
//! [`Error::Unsupported`] that says what to change. A panic on a core (a bug, or a
//! task given to [`Db::spawn_on_core`] that panics) ends that core only: every request
//! routed to it fails with [`Error::CoreFailed`] and `close` returns that error after
//! stopping the others.
//!
//! ```
//! use ringkv::{Db, Durability, Options};
//!
//! let dir = tempfile::tempdir_in(".")?; // any directory on a disk that does O_DIRECT
//! let db = Db::open(dir.path(), Options::default().cores(2).durability(Durability::Sync))?;
//! db.put("hello", "world")?;                 // durable when it returns
//! assert_eq!(db.get("hello")?.as_deref(), Some(&b"world"[..]));
//! assert!(db.exists("hello")?);
//! db.delete("hello")?;
//! assert_eq!(db.len()?, 0);
//! db.close()?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod batch;
mod cache;
mod core;
mod counter;
mod data_dirs;
mod db;
mod error;
mod host;
mod layout;
mod logs;
mod malloc;
mod opening;
mod options;
mod sizing;
mod spare;
mod storage;
mod verify;

pub use batch::WriteBatch;
pub use bytes::Bytes;
pub use core::{CoreStats, ExpireIf, Head, LeafStats, Update};
pub use db::{
    CheckpointStats, Db, Keys, Local, PutOptions, Range, Snapshot, Stats, Transaction, Ttl,
};
pub use error::{Error, Result};
pub use malloc::tune_malloc;
pub use options::{
    COMMIT_LOG_DEFAULT_BYTES, COMMIT_LOG_MIN_BYTES, COMPACTION_FREE_SPACE_MIN_DEFAULT_BYTES,
    COMPACTION_GARBAGE_RATIO_DEFAULT, COMPACTION_INTERVAL_DEFAULT, COMPACTION_SHARES_DEFAULT,
    CORES_MAX, Durability, FLUSH_INTERVAL_DEFAULT, IDLE_SEAL_AFTER_DEFAULT,
    IO_MEMORY_DEFAULT_BYTES, Options, QUEUE_DEPTH_DEFAULT, SNAPSHOT_MEMORY_DEFAULT_BYTES,
    SPLIT_THRESHOLD_DEFAULT_BYTES, SUMMARY_MEMORY_DEFAULT_BYTES, SplitMode,
};
pub use ringkv_engine::limits::{KEY_LEN_MAX, META_LEN_MAX, VALUE_LEN_MAX};
pub use ringkv_engine::verify::{Finding, SubstoreReport};
pub use ringkv_engine::{
    Clock, CompactionStats, CrashMode, Fault, FaultOn, Recovery, Salvaged, SimDisk, SubstoreStats,
};
pub use sizing::{CACHE_DEFAULT_MIN_BYTES, cache_default_bytes};
pub use verify::{LeafReport, VerifyReport, verify, verify_with_progress};

/// The README's examples compile and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
