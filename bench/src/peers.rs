//! Peer engines, each behind its cargo feature (`rocksdb`, `fjall`, `redb`, `lmdb`),
//! configured as fairly as the rig can:
//!
//! - **durability**: `sync` → each write is on stable storage when acknowledged (RocksDB
//!   `WriteOptions::set_sync(true)`, fjall `persist(SyncData)` after the write, redb
//!   `Durability::Immediate`, LMDB's default: fdatasync at every commit);
//!   `buffered` → acknowledged from memory (RocksDB WAL without sync, fjall without
//!   persist, redb `Durability::None`, LMDB `MDB_NOSYNC`, which also skips the meta-page
//!   sync; `MDB_MAPASYNC` only matters with `MDB_WRITEMAP`, which is not used) and made
//!   durable by a background thread every [`BUFFERED_SYNC_INTERVAL`] (RocksDB
//!   `flush_wal(true)`, fjall `persist(SyncData)`, redb an empty `Immediate` commit,
//!   LMDB `mdb_env_sync(force)`), which is what ringkv's `Durability::Buffered` promises
//!   (written within its 50 ms `flush_interval`);
//! - **memory**: the rig's budget is each engine's cache (RocksDB block cache, fjall
//!   cache, redb cache; LMDB has none of its own: it reads through the page cache). The
//!   OS page cache is limited only where the rig can put each engine in a memory cgroup
//!   (see `memory.rs`); otherwise the report says so;
//! - **LMDB**: one named database, map size [`LMDB_MAP_SIZE_BYTES`] (an upper bound of
//!   address space, not preallocated: no `MDB_WRITEMAP`), `MDB_NORDAHEAD` because every
//!   workload here reads single random keys (LMDB's own advice for random access to a
//!   database larger than memory), reads in their own read transaction;
//! - **compression** off (fjall: data blocks and journal, which it compresses with LZ4 by
//!   default); everything else at the engine's defaults.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::runner::Engine;

/// How often a buffered peer is made durable: ringkv's default `flush_interval`.
pub const BUFFERED_SYNC_INTERVAL: Duration = Duration::from_millis(50);

/// LMDB's map size: the largest the database may grow (address space, not disk).
pub const LMDB_MAP_SIZE_BYTES: usize = 256 << 30;

/// The peers this build knows of (built in or not).
pub const PEERS: [&str; 4] = ["rocksdb", "fjall", "redb", "lmdb"];

/// Bytes of every file below `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Whether peer `name` was built into this binary (its cargo feature).
pub fn built_in(name: &str) -> bool {
    (name == "rocksdb" && cfg!(feature = "rocksdb"))
        || (name == "fjall" && cfg!(feature = "fjall"))
        || (name == "redb" && cfg!(feature = "redb"))
        || (name == "lmdb" && cfg!(feature = "lmdb"))
}

/// Opens peer `name` in `dir`, or says why it cannot.
pub fn open(
    name: &str,
    dir: &Path,
    sync: bool,
    memory_bytes: u64,
) -> Result<Box<dyn Engine>, String> {
    let _ = (dir, sync, memory_bytes);
    match name {
        #[cfg(feature = "rocksdb")]
        "rocksdb" => rocks::Rocks::open(dir, sync, memory_bytes).map(|e| buffered(e, sync)),
        #[cfg(feature = "fjall")]
        "fjall" => fjall_peer::Fjall::open(dir, sync, memory_bytes).map(|e| buffered(e, sync)),
        #[cfg(feature = "redb")]
        "redb" => redb_peer::Redb::open(dir, sync, memory_bytes).map(|e| buffered(e, sync)),
        #[cfg(feature = "lmdb")]
        "lmdb" => lmdb_peer::Lmdb::open(dir, sync).map(|e| buffered(e, sync)),
        #[allow(unreachable_patterns, reason = "reachable for the peers not built in")]
        "rocksdb" | "fjall" | "redb" | "lmdb" => Err(format!(
            "engine {name} is not built in: cargo run --release -p ringkv-bench --features {name} -- …"
        )),
        other => Err(format!(
            "unknown engine {other} (ringkv, rocksdb, fjall, redb, lmdb)"
        )),
    }
}

/// How many of up to `count` scanned records read without error (an engine's `scan`).
pub(crate) fn count_scanned<T, E: std::fmt::Display>(
    items: impl Iterator<Item = Result<T, E>>,
    count: usize,
) -> Result<Option<usize>, String> {
    let mut read = 0;
    for item in items.take(count) {
        item.map_err(|e| e.to_string())?;
        read += 1;
    }
    Ok(Some(read))
}

/// A buffered engine gets a background thread that makes it durable every
/// [`BUFFERED_SYNC_INTERVAL`]; a synchronous one is returned as it is.
pub fn buffered<E: Engine + 'static>(engine: E, sync: bool) -> Box<dyn Engine> {
    if sync {
        Box::new(engine)
    } else {
        Box::new(PeriodicSync::start(engine, BUFFERED_SYNC_INTERVAL))
    }
}

/// Stop flag and the first error the syncing thread met.
#[derive(Debug, Default)]
struct SyncState {
    stop: bool,
    error: Option<String>,
}

/// An engine whose `flush` a thread calls every `interval` until it is closed. A failed
/// flush is remembered and returned by every later write and by `close`.
#[derive(Debug)]
pub struct PeriodicSync<E: Engine + 'static> {
    engine: Arc<E>,
    state: Arc<(Mutex<SyncState>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl<E: Engine + 'static> PeriodicSync<E> {
    pub fn start(engine: E, interval: Duration) -> Self {
        let engine = Arc::new(engine);
        let state = Arc::new((Mutex::new(SyncState::default()), Condvar::new()));
        let thread = {
            let (engine, state) = (Arc::clone(&engine), Arc::clone(&state));
            std::thread::spawn(move || {
                let (lock, wake) = &*state;
                let mut guard = lock.lock().expect("sync state");
                loop {
                    guard = wake.wait_timeout(guard, interval).expect("sync state").0;
                    if guard.stop || guard.error.is_some() {
                        return;
                    }
                    drop(guard);
                    let flushed = engine.flush();
                    guard = lock.lock().expect("sync state");
                    if let Err(e) = flushed {
                        guard.error = Some(format!("background sync: {e}"));
                    }
                }
            })
        };
        Self {
            engine,
            state,
            thread: Some(thread),
        }
    }

    fn failed(&self) -> Result<(), String> {
        match &self.state.0.lock().expect("sync state").error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stops the thread; the engine is then held only here.
    fn stop(&mut self) -> Result<(), String> {
        self.state.0.lock().expect("sync state").stop = true;
        self.state.1.notify_all();
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| "the background sync thread panicked".to_owned())?;
        }
        self.failed()
    }
}

impl<E: Engine + 'static> Drop for PeriodicSync<E> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl<E: Engine + 'static> Engine for PeriodicSync<E> {
    fn name(&self) -> &'static str {
        self.engine.name()
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.failed()?;
        self.engine.put(key, value)
    }
    fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        self.failed()?;
        self.engine.put_batch(entries)
    }
    fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
        self.engine.get(key)
    }
    fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
        self.engine.scan(start, count)
    }
    fn flush(&self) -> Result<(), String> {
        self.failed()?;
        self.engine.flush()
    }
    fn disk_bytes(&self) -> u64 {
        self.engine.disk_bytes()
    }
    fn close(mut self: Box<Self>) -> Result<(), String> {
        self.stop()?;
        let engine = Arc::clone(&self.engine);
        drop(self);
        match Arc::try_unwrap(engine) {
            Ok(engine) => Box::new(engine).close(),
            Err(_) => Err("engine still shared after its sync thread stopped".to_owned()),
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocks {
    use std::path::{Path, PathBuf};

    use crate::runner::Engine;

    pub struct Rocks {
        db: rocksdb::DB,
        write: rocksdb::WriteOptions,
        dir: PathBuf,
    }

    impl Rocks {
        pub fn open(dir: &Path, sync: bool, memory_bytes: u64) -> Result<Self, String> {
            let mut options = rocksdb::Options::default();
            options.create_if_missing(true);
            options.set_compression_type(rocksdb::DBCompressionType::None);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&rocksdb::Cache::new_lru_cache(memory_bytes as usize));
            options.set_block_based_table_factory(&table);
            options.increase_parallelism(2);
            let db = rocksdb::DB::open(&options, dir).map_err(|e| e.to_string())?;
            let mut write = rocksdb::WriteOptions::default();
            write.set_sync(sync);
            Ok(Self {
                db,
                write,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Engine for Rocks {
        fn name(&self) -> &'static str {
            "rocksdb"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.db
                .put_opt(key, value, &self.write)
                .map_err(|e| e.to_string())
        }
        fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
            let mut batch = rocksdb::WriteBatch::default();
            for (key, value) in entries {
                batch.put(key, value);
            }
            self.db
                .write_opt(batch, &self.write)
                .map_err(|e| e.to_string())
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            Ok(self
                .db
                .get_pinned(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.len()))
        }
        fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
            let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
            super::count_scanned(self.db.iterator(mode), count)
        }
        fn flush(&self) -> Result<(), String> {
            self.db.flush_wal(true).map_err(|e| e.to_string())
        }
        fn disk_bytes(&self) -> u64 {
            super::dir_bytes(&self.dir)
        }
        fn close(self: Box<Self>) -> Result<(), String> {
            self.flush()
        }
    }
}

#[cfg(feature = "fjall")]
mod fjall_peer {
    use std::path::{Path, PathBuf};

    use crate::runner::Engine;

    pub struct Fjall {
        db: fjall::Database,
        items: fjall::Keyspace,
        sync: bool,
        dir: PathBuf,
    }

    impl Fjall {
        pub fn open(dir: &Path, sync: bool, memory_bytes: u64) -> Result<Self, String> {
            let db = fjall::Database::builder(dir)
                .cache_size(memory_bytes)
                .journal_compression(fjall::CompressionType::None)
                .open()
                .map_err(|e| e.to_string())?;
            // fjall compresses data blocks of level 2 and below with LZ4 by default.
            let uncompressed = || {
                fjall::KeyspaceCreateOptions::default().data_block_compression_policy(
                    fjall::config::CompressionPolicy::all(fjall::CompressionType::None),
                )
            };
            let items = db
                .keyspace("bench", uncompressed)
                .map_err(|e| e.to_string())?;
            Ok(Self {
                db,
                items,
                sync,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Fjall {
        fn persist_if_sync(&self) -> Result<(), String> {
            if self.sync {
                self.db
                    .persist(fjall::PersistMode::SyncData)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }

    impl Engine for Fjall {
        fn name(&self) -> &'static str {
            "fjall"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.items.insert(key, value).map_err(|e| e.to_string())?;
            self.persist_if_sync()
        }
        fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
            let mut batch = self.db.batch();
            for (key, value) in entries {
                batch.insert(&self.items, key.as_slice(), value.as_slice());
            }
            batch.commit().map_err(|e| e.to_string())?;
            self.persist_if_sync()
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            Ok(self
                .items
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.len()))
        }
        fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
            let items = self.items.range(start..).map(|guard| guard.into_inner());
            super::count_scanned(items, count)
        }
        fn flush(&self) -> Result<(), String> {
            self.db
                .persist(fjall::PersistMode::SyncData)
                .map_err(|e| e.to_string())
        }
        fn disk_bytes(&self) -> u64 {
            super::dir_bytes(&self.dir)
        }
        fn close(self: Box<Self>) -> Result<(), String> {
            self.flush()
        }
    }
}

#[cfg(feature = "redb")]
mod redb_peer {
    use std::path::{Path, PathBuf};

    use redb::ReadableDatabase;

    use crate::runner::Engine;

    const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");

    pub struct Redb {
        db: redb::Database,
        sync: bool,
        dir: PathBuf,
    }

    impl Redb {
        pub fn open(dir: &Path, sync: bool, memory_bytes: u64) -> Result<Self, String> {
            let db = redb::Database::builder()
                .set_cache_size(memory_bytes as usize)
                .create(dir.join("bench.redb"))
                .map_err(|e| e.to_string())?;
            Ok(Self {
                db,
                sync,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Redb {
        /// Inserts `entries` in one write transaction.
        fn write(&self, entries: &[(&[u8], &[u8])]) -> Result<(), String> {
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            let durability = if self.sync {
                redb::Durability::Immediate
            } else {
                redb::Durability::None
            };
            txn.set_durability(durability).map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
                for &(key, value) in entries {
                    table.insert(key, value).map_err(|e| e.to_string())?;
                }
            }
            txn.commit().map_err(|e| e.to_string())
        }

        /// The table in a read transaction of its own; `None` before the first write.
        fn read_table(
            &self,
        ) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>, String> {
            let txn = self.db.begin_read().map_err(|e| e.to_string())?;
            match txn.open_table(TABLE) {
                Ok(table) => Ok(Some(table)),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        }
    }

    impl Engine for Redb {
        fn name(&self) -> &'static str {
            "redb"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.write(&[(key, value)])
        }
        fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
            let entries: Vec<_> = entries.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            self.write(&entries)
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            let Some(table) = self.read_table()? else {
                return Ok(None);
            };
            Ok(table
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.value().len()))
        }
        fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
            let Some(table) = self.read_table()? else {
                return Ok(Some(0));
            };
            let items = table.range(start..).map_err(|e| e.to_string())?;
            super::count_scanned(items, count)
        }
        fn flush(&self) -> Result<(), String> {
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            txn.set_durability(redb::Durability::Immediate)
                .map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        }
        fn disk_bytes(&self) -> u64 {
            super::dir_bytes(&self.dir)
        }
        fn close(self: Box<Self>) -> Result<(), String> {
            self.flush()
        }
    }
}

#[cfg(feature = "lmdb")]
mod lmdb_peer {
    use std::path::{Path, PathBuf};

    use heed::types::Bytes;

    use crate::runner::Engine;

    pub struct Lmdb {
        env: heed::Env,
        db: heed::Database<Bytes, Bytes>,
        dir: PathBuf,
    }

    fn text(e: heed::Error) -> String {
        format!("lmdb: {e}")
    }

    impl Lmdb {
        pub fn open(dir: &Path, sync: bool) -> Result<Self, String> {
            let mut options = heed::EnvOpenOptions::new();
            options.map_size(super::LMDB_MAP_SIZE_BYTES).max_dbs(1);
            let mut flags = heed::EnvFlags::NO_READ_AHEAD;
            if !sync {
                flags |= heed::EnvFlags::NO_SYNC;
            }
            // SAFETY: NO_SYNC trades durability of the last commits after a machine crash
            // (never memory safety): the periodic sync thread bounds that window, which is
            // the buffered mode being measured. NO_READ_AHEAD only changes madvise.
            unsafe { options.flags(flags) };
            // SAFETY: the directory is this engine's alone (a fresh one per run), no other
            // process maps it, and a reopen waits until the previous Env has closed
            // (`close` below), so the map is never modified behind LMDB's back.
            let env = unsafe { options.open(dir) }.map_err(text)?;
            let mut txn = env.write_txn().map_err(text)?;
            let db = env.create_database(&mut txn, Some("bench")).map_err(text)?;
            txn.commit().map_err(text)?;
            Ok(Self {
                env,
                db,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Engine for Lmdb {
        fn name(&self) -> &'static str {
            "lmdb"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            let mut txn = self.env.write_txn().map_err(text)?;
            self.db.put(&mut txn, key, value).map_err(text)?;
            txn.commit().map_err(text)
        }
        fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
            let mut txn = self.env.write_txn().map_err(text)?;
            for (key, value) in entries {
                self.db.put(&mut txn, key, value).map_err(text)?;
            }
            txn.commit().map_err(text)
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            let txn = self.env.read_txn().map_err(text)?;
            Ok(self.db.get(&txn, key).map_err(text)?.map(<[u8]>::len))
        }
        fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
            use std::ops::Bound;
            let txn = self.env.read_txn().map_err(text)?;
            let range = (Bound::Included(start), Bound::Unbounded);
            let items = self.db.range(&txn, &range).map_err(text)?;
            super::count_scanned(items.map(|item| item.map_err(text)), count)
        }
        fn flush(&self) -> Result<(), String> {
            self.env.force_sync().map_err(text)
        }
        fn disk_bytes(&self) -> u64 {
            super::dir_bytes(&self.dir)
        }
        fn close(self: Box<Self>) -> Result<(), String> {
            self.flush()?;
            let Self { env, .. } = *self;
            env.prepare_for_closing().wait();
            Ok(())
        }
    }
}
