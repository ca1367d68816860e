//! Optimistic transactions ([`Transaction`]), after RocksDB's optimistic transactions
//! and kv_log's: reads record the version of what they saw, writes are buffered, and
//! `commit` runs them as one write batch whose keys, and the keys read, are locked on
//! their cores before anything is written. If any key read has changed by then the
//! commit fails with [`crate::Error::Conflict`] and writes nothing; otherwise the writes are
//! applied all or nothing, as [`Db::write`] applies a batch.
//!
//! The read set is checked under the same locks that make the writes atomic, so a
//! committed transaction is serializable with every other write: none of its reads was
//! overwritten between the read and the commit. A key read as absent and then written
//! and deleted again by others in between has the same version (nothing): that commit
//! succeeds, as if it had read after the delete.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use ringkv_engine::hash::routing_hash;

use super::{Db, PutOptions};
use crate::batch::BatchOp;
use crate::core::{Extras, Read, Version, Versioned};
use crate::error::Result;

/// A transaction on a [`Db`] (see [`Db::transaction`]): `get` sees its own writes and
/// reads each other key once (a second `get` answers what the first saw); `put` and
/// `delete` are buffered until `commit`. Dropping it, or `rollback`, writes nothing.
#[derive(Debug)]
pub struct Transaction {
    db: Db,
    reads: HashMap<Vec<u8>, (Versioned, Version)>,
    writes: BTreeMap<Vec<u8>, Versioned>,
    /// The metadata of puts that have some.
    meta: HashMap<Vec<u8>, Bytes>,
}

impl Transaction {
    pub(super) fn new(db: Db) -> Self {
        Self {
            db,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            meta: HashMap::new(),
        }
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        futures_lite::future::block_on(self.get_async(key))
    }

    /// [`Transaction::get`] for async callers.
    pub async fn get_async(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.get_with_expiry(key).await?.map(|(value, _)| value))
    }

    /// The value of `key` as this transaction sees it, with its expiry (Unix ms).
    pub async fn get_with_expiry(
        &mut self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        let key = key.as_ref();
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        if let Some((value, _)) = self.reads.get(key) {
            return Ok(value.clone());
        }
        let (value, version) = self.db.inner.get_versioned(key).await?;
        self.reads.insert(key.to_vec(), (value.clone(), version));
        Ok(value)
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.put_with(key, value, &PutOptions::new());
    }

    /// A put with an expiry (a TTL counts from this call) and metadata; the options'
    /// durability is not used (a commit is durable when it returns).
    pub fn put_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) {
        let extras = self.db.inner.extras_of(options);
        let value = Bytes::copy_from_slice(value.as_ref());
        self.writes
            .insert(key.as_ref().to_vec(), Some((value, extras.expiry_unix_ms)));
        self.meta.insert(key.as_ref().to_vec(), extras.meta);
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.writes.insert(key.as_ref().to_vec(), None);
    }

    /// A transaction that starts with the reads of this one (their values and
    /// versions) and none of its writes: what a retry after a conflict on other keys
    /// starts from, as Redis's EXEC keeps its WATCHed keys.
    pub fn reads_only(&self) -> Transaction {
        Transaction {
            db: self.db.clone(),
            reads: self.reads.clone(),
            writes: BTreeMap::new(),
            meta: HashMap::new(),
        }
    }

    /// Writes everything this transaction wrote, all or nothing, if no key it read has
    /// changed since it read it; else `Error::Conflict` and nothing written. Durable
    /// when it returns.
    pub fn commit(self) -> Result<()> {
        futures_lite::future::block_on(self.commit_async())
    }

    /// [`Transaction::commit`] for async callers.
    pub async fn commit_async(mut self) -> Result<()> {
        let mut ops = Vec::with_capacity(self.writes.len());
        for (key, put) in std::mem::take(&mut self.writes) {
            let (value, extras) = match put {
                Some((value, expiry_unix_ms)) => {
                    let meta = self.meta.remove(&key).unwrap_or_default();
                    (
                        Some(value),
                        Extras {
                            meta,
                            expiry_unix_ms,
                        },
                    )
                }
                None => (None, Extras::NONE),
            };
            ops.push(BatchOp::new(key, value, extras)?);
        }
        let reads = (self.reads.into_iter())
            .map(|(key, (_, version))| Read {
                hash: routing_hash(&key),
                key,
                version,
            })
            .collect();
        self.db.inner.run_batch(ops, reads).await
    }

    /// Drops the transaction: nothing is written.
    pub fn rollback(self) {}
}
