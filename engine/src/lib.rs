//! `ringkv-engine`: one ringkv substore, single-threaded.
//!
//! A substore is an append-only log of fixed-maximum-size extent files plus a compact
//! in-memory index, owned and driven by exactly one core. It knows nothing about cores
//! or channels: the `ringkv` crate builds the thread-per-core database on top.
//!
//! - [`format`]: every byte on disk (the code side of `engine/FORMAT.md`);
//! - [`hash`]: the stable routing hash;
//! - [`device`]: the I/O seam (glommio DMA files, memory, a simulated faulty disk);
//! - [`index`]: the in-memory index;
//! - [`KeyOrder`]: the keys of several substores in one byte order, for scans;
//! - [`commitlog`]: a core's commit log, one fdatasync per commit round;
//! - [`Substore`]: writes, reads, flush, recovery (strict, or a [`Recovery::Salvage`]
//!   that keeps every intact record and quarantines damaged bytes);
//! - [`verify`]: a read-only check of every checksum and of the index against the log.
//!
//! ```
//! use ringkv_engine::{Config, MemDevice, Substore, SubstoreId};
//!
//! futures_lite::future::block_on(async {
//!     let store = Substore::create_or_open(MemDevice::new(), SubstoreId::root(0), Config::default())
//!         .await?;
//!     store.put(b"hello", b"world").await?;
//!     store.flush().await?;
//!     assert_eq!(store.get(b"hello").await?.as_deref(), Some(&b"world"[..]));
//!     Ok::<_, ringkv_engine::Error>(())
//! })
//! .unwrap();
//! ```

mod clock;
pub mod commitlog;
mod compaction;
pub mod device;
mod diagnose;
mod error;
pub mod format;
pub mod hash;
pub mod index;
mod key_order;
pub mod limits;
mod listing;
mod recovery;
mod salvage;
pub mod scan;
mod substore;
pub mod verify;
mod versions;

pub use bytes::Bytes;
pub use clock::Clock;
pub use commitlog::{CommitLog, Journal, LogContents};
pub use compaction::CompactionStats;
pub use device::{CrashMode, DmaDevice, EntryKind, Fault, FaultOn, MemDevice, SimDevice, SimDisk};
pub use error::{Error, Result};
pub use format::SubstoreId;
pub use key_order::{Fed, KeyOrder};
pub use listing::ExtentFile;
pub use salvage::{Recovery, Salvaged};
pub use scan::Direction;
pub use substore::{Config, StoredRecord, Substore, SubstoreStats, WriteOptions, check_limits};
pub use versions::PinnedStats;
