//! Peer engines, each behind its cargo feature (`rocksdb`, `fjall`, `redb`), configured
//! as fairly as the rig can:
//!
//! - **durability**: `sync` → each write is on stable storage when acknowledged (RocksDB
//!   `WriteOptions::set_sync(true)`, fjall `persist(SyncData)` after the write, redb
//!   `Durability::Immediate`); `buffered` → acknowledged from memory (RocksDB WAL without
//!   sync, fjall without persist, redb `Durability::None`), flushed at the end;
//! - **memory**: the rig's budget is each engine's cache (RocksDB block cache, fjall
//!   cache, redb cache). The OS page cache is not limited (peers use buffered I/O,
//!   ringkv does not): the rig says so in the report's notes;
//! - **compression** off; everything else at the engine's defaults.

use std::path::Path;

use crate::runner::Engine;

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
        "rocksdb" => {
            rocks::Rocks::open(dir, sync, memory_bytes).map(|e| Box::new(e) as Box<dyn Engine>)
        }
        #[cfg(feature = "fjall")]
        "fjall" => {
            fjall_peer::Fjall::open(dir, sync, memory_bytes).map(|e| Box::new(e) as Box<dyn Engine>)
        }
        #[cfg(feature = "redb")]
        "redb" => {
            redb_peer::Redb::open(dir, sync, memory_bytes).map(|e| Box::new(e) as Box<dyn Engine>)
        }
        #[allow(unreachable_patterns, reason = "reachable for the peers not built in")]
        "rocksdb" | "fjall" | "redb" => Err(format!(
            "engine {name} is not built in: cargo run --release -p ringkv-bench --features {name} -- …"
        )),
        other => Err(format!(
            "unknown engine {other} (ringkv, rocksdb, fjall, redb)"
        )),
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
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            Ok(self
                .db
                .get_pinned(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.len()))
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
                .open()
                .map_err(|e| e.to_string())?;
            let items = db
                .keyspace("bench", fjall::KeyspaceCreateOptions::default)
                .map_err(|e| e.to_string())?;
            Ok(Self {
                db,
                items,
                sync,
                dir: dir.to_path_buf(),
            })
        }
    }

    impl Engine for Fjall {
        fn name(&self) -> &'static str {
            "fjall"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.items.insert(key, value).map_err(|e| e.to_string())?;
            if self.sync {
                self.db
                    .persist(fjall::PersistMode::SyncData)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            Ok(self
                .items
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.len()))
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

    impl Engine for Redb {
        fn name(&self) -> &'static str {
            "redb"
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
            let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
            let durability = if self.sync {
                redb::Durability::Immediate
            } else {
                redb::Durability::None
            };
            txn.set_durability(durability).map_err(|e| e.to_string())?;
            {
                let mut table = txn.open_table(TABLE).map_err(|e| e.to_string())?;
                table.insert(key, value).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())
        }
        fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
            let txn = self.db.begin_read().map_err(|e| e.to_string())?;
            let table = match txn.open_table(TABLE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            Ok(table
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.value().len()))
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
