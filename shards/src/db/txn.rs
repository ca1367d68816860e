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
use ringkv_engine::StoredRecord;
use ringkv_engine::hash::routing_hash;

use super::{Db, PutOptions};
use crate::batch::BatchOp;
use crate::core::{ExpireIf, ExpiryChange, Extras, Outcome, Read, Update, Version, Versioned};
use crate::error::Result;

/// A transaction on a [`Db`] (see [`Db::transaction`]): reads see its own writes and
/// read each other key once (a second read answers what the first saw); writes are
/// buffered until `commit`. Dropping it, or `rollback`, writes nothing.
#[derive(Debug)]
pub struct Transaction {
    db: Db,
    reads: HashMap<Vec<u8>, (Versioned, Version)>,
    /// Each key's last write: its value and extras, or `None` for a delete.
    writes: BTreeMap<Vec<u8>, Option<(Bytes, Extras)>>,
}

impl Transaction {
    pub(super) fn new(db: Db) -> Self {
        Self {
            db,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
        }
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        futures_lite::future::block_on(self.get_async(key))
    }

    /// [`Transaction::get`] for async callers.
    pub async fn get_async(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.record(key.as_ref()).await?.map(|r| r.value))
    }

    /// The value of `key` as this transaction sees it, with its expiry (Unix ms).
    pub async fn get_with_expiry(
        &mut self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<(Bytes, Option<u64>)>> {
        let record = self.record(key.as_ref()).await?;
        Ok(record.map(|r| (r.value, r.expiry_unix_ms)))
    }

    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.put_with(key, value, &PutOptions::new());
    }

    /// A put with an expiry (a TTL counts from this call) and metadata; the options'
    /// durability is not used (a commit is acknowledged as a whole, as
    /// [`Db::write`](crate::Db::write) is).
    pub fn put_with(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) {
        let extras = self.db.inner.extras_of(options);
        let value = Bytes::copy_from_slice(value.as_ref());
        self.write(key.as_ref(), Outcome::Write(value, extras));
    }

    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.write(key.as_ref(), Outcome::Delete);
    }

    /// Reads `key`, lets `decide` choose, and writes the outcome in the transaction, as
    /// [`Db::update`] does on its own; answers the value `decide` saw.
    pub async fn update(
        &mut self,
        key: impl AsRef<[u8]>,
        decide: impl FnOnce(Option<&[u8]>) -> Update,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let seen = self.record(key).await?;
        let value = seen.as_ref().map(|r| r.value.clone());
        if let Some(outcome) = decide(value.as_deref()).outcome(seen.as_ref()) {
            self.write(key, outcome);
        }
        Ok(value)
    }

    /// [`Db::expire_if`] in the transaction: whether the key is live and the change
    /// applies.
    pub async fn expire_if(
        &mut self,
        key: impl AsRef<[u8]>,
        at_unix_ms: u64,
        only_if: ExpireIf,
    ) -> Result<bool> {
        self.change_expiry(key.as_ref(), ExpiryChange::At(at_unix_ms, only_if))
            .await
    }

    /// [`Db::persist`] in the transaction: whether the key is live and had an expiry.
    pub async fn persist(&mut self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.change_expiry(key.as_ref(), ExpiryChange::Persist)
            .await
    }

    async fn change_expiry(&mut self, key: &[u8], change: ExpiryChange) -> Result<bool> {
        let Some(record) = self.record(key).await? else {
            return Ok(false);
        };
        let Some(outcome) = change.apply(&record, &self.db.inner.clock) else {
            return Ok(false);
        };
        self.write(key, outcome);
        Ok(true)
    }

    /// The live record of `key` as this transaction sees it: its own write, what it
    /// read before, or a read now (recorded with its version).
    async fn record(&mut self, key: &[u8]) -> Result<Option<StoredRecord>> {
        if let Some(written) = self.writes.get(key) {
            let record = written.as_ref().map(|(value, extras)| StoredRecord {
                value: value.clone(),
                meta: extras.meta.clone(),
                expiry_unix_ms: extras.expiry_unix_ms,
            });
            let clock = &self.db.inner.clock;
            return Ok(record.filter(|r| !clock.has_passed(r.expiry_unix_ms)));
        }
        if let Some((record, _)) = self.reads.get(key) {
            return Ok(record.clone());
        }
        let (record, version) = self.db.inner.get_versioned(key).await?;
        self.reads.insert(key.to_vec(), (record.clone(), version));
        Ok(record)
    }

    fn write(&mut self, key: &[u8], outcome: Outcome) {
        let write = match outcome {
            Outcome::Write(value, extras) => Some((value, extras)),
            Outcome::Delete => None,
        };
        self.writes.insert(key.to_vec(), write);
    }

    /// A transaction that starts with the reads of this one (their values and
    /// versions) and none of its writes: what a retry after a conflict on other keys
    /// starts from, as Redis's EXEC keeps its WATCHed keys.
    pub fn reads_only(&self) -> Transaction {
        Transaction {
            db: self.db.clone(),
            reads: self.reads.clone(),
            writes: BTreeMap::new(),
        }
    }

    /// Writes everything this transaction wrote, all or nothing, if no key it read has
    /// changed since it read it; else `Error::Conflict` and nothing written.
    /// Acknowledged as the database's mode says, as [`Db::write`](crate::Db::write).
    pub fn commit(self) -> Result<()> {
        futures_lite::future::block_on(self.commit_async())
    }

    /// [`Transaction::commit`] for async callers.
    pub async fn commit_async(self) -> Result<()> {
        let mut ops = Vec::with_capacity(self.writes.len());
        for (key, write) in self.writes {
            let (value, extras) = match write {
                Some((value, extras)) => (Some(value), extras),
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
        let durability = self.db.inner.durability;
        self.db.inner.run_batch(ops, reads, durability).await
    }

    /// Drops the transaction: nothing is written.
    pub fn rollback(self) {}
}
