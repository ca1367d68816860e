//! Expiry and metadata on a core: what a put stores besides its value ([`Extras`]),
//! changing a key's expiry in place ([`ExpiryChange`], Redis's EXPIRE family and
//! PERSIST), and HEAD ([`Head`]: what the index knows of a key and its metadata, with no
//! device read unless the metadata is longer than `Options::head_meta_bytes`).
//!
//! An expired key reads as absent everywhere at once (the engine, the cache, HEAD),
//! judged by the database's [`ringkv_engine::Clock`]. The **sweeper** (a task on the
//! low-share queue) then deletes it, so its space comes back without anyone reading it:
//! it sleeps until the earliest expiry on its core (at most [`SWEEP_WAIT_MAX`], or
//! until a write sets an earlier one), then deletes every expired key, at most
//! [`SWEEP_BATCH`] per store at a time. A delete is a tombstone, as for any delete, so
//! no older value of the key can come back after a crash. With no expiry on the core
//! the sweeper waits without a timer: an idle database stays idle. Changing an expiry rewrites the
//! record with the same value and metadata (a log-structured store has nowhere else to
//! keep it); an expiry set in the past deletes the key, as Redis does.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_engine::hash::routing_hash;
use ringkv_engine::{Clock, StoredRecord, WriteOptions};

use super::{Core, Here};
use crate::error::Result;
use crate::options::Durability;

/// What a put stores besides its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    /// Metadata bytes kept with the value.
    pub(crate) meta: Bytes,
    /// When the key expires (Unix ms), if ever.
    pub(crate) expiry_unix_ms: Option<u64>,
}

/// A plain put's extras: no metadata, no expiry.
pub(crate) static NO_EXTRAS: Extras = Extras::NONE;

impl Extras {
    /// A plain put's: no metadata, no expiry.
    pub(crate) const NONE: Extras = Extras {
        meta: Bytes::new(),
        expiry_unix_ms: None,
    };

    /// What a new value of a key keeps from its record (a read-modify-write).
    pub(crate) fn kept_from(record: &StoredRecord) -> Self {
        Self {
            meta: record.meta.clone(),
            expiry_unix_ms: record.expiry_unix_ms,
        }
    }

    pub(crate) fn options(&self) -> WriteOptions<'_> {
        WriteOptions {
            meta: &self.meta,
            expiry_unix_ms: self.expiry_unix_ms,
        }
    }
}

/// When an expiry change applies, as Redis's EXPIRE options say (a key without an
/// expiry counts as one that never expires).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ExpireIf {
    /// Always (a plain EXPIRE).
    #[default]
    Always,
    /// Only if the key has no expiry (NX).
    NoExpiry,
    /// Only if the key has an expiry (XX).
    HasExpiry,
    /// Only if the new expiry is later than the current one (GT): never for a key
    /// without one.
    Later,
    /// Only if the new expiry is earlier than the current one (LT): always for a key
    /// without one.
    Earlier,
    /// Only if the key has an expiry and the new one is earlier (XX and LT together).
    HasExpiryAndEarlier,
}

/// A change of a key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpiryChange {
    /// Expire at this Unix ms, if the condition holds.
    At(u64, ExpireIf),
    /// Remove the expiry (PERSIST): applies only to a key that has one.
    Persist,
}

/// What a change of a live key comes to: a new record (the same value, or another,
/// with these extras), or its deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Write(Bytes, Extras),
    Delete,
}

impl ExpiryChange {
    /// What the change does to `record` (`None`: nothing): a new expiry keeps its value
    /// and metadata; one already passed by `clock` deletes the key.
    pub(crate) fn apply(self, record: &StoredRecord, clock: &Clock) -> Option<Outcome> {
        let expiry = self.decide(record.expiry_unix_ms)?;
        if clock.has_passed(expiry) {
            return Some(Outcome::Delete);
        }
        let extras = Extras {
            meta: record.meta.clone(),
            expiry_unix_ms: expiry,
        };
        Some(Outcome::Write(record.value.clone(), extras))
    }

    /// The key's new expiry, given its current one; `None` when the change does not
    /// apply (the answer is then "nothing changed").
    pub(crate) fn decide(self, current: Option<u64>) -> Option<Option<u64>> {
        let (at, only_if) = match self {
            ExpiryChange::Persist => return current.map(|_| None),
            ExpiryChange::At(at, only_if) => (at, only_if),
        };
        only_if.allows(current, at).then_some(Some(at))
    }
}

impl ExpireIf {
    /// Whether a new expiry `at` (Unix ms) applies to a key whose expiry is `current`
    /// (`None`: it has none).
    pub fn allows(self, current: Option<u64>, at: u64) -> bool {
        match (self, current) {
            (ExpireIf::Always, _) => true,
            (ExpireIf::NoExpiry, current) => current.is_none(),
            (ExpireIf::HasExpiry, current) => current.is_some(),
            (ExpireIf::Later, current) => current.is_some_and(|c| at > c),
            (ExpireIf::Earlier, current) => current.is_none_or(|c| at < c),
            (ExpireIf::HasExpiryAndEarlier, current) => current.is_some_and(|c| at < c),
        }
    }
}

/// What the index knows of a live key: its value's length, its metadata, expiry and
/// sequence. Answered from memory, with no device read, unless the metadata is longer
/// than [`Options::head_meta_bytes`](crate::Options::head_meta_bytes) (255 by default,
/// so never) or was written by a build older than format version 2 and not compacted
/// since: then `head` reads the record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Head {
    /// The value's length in bytes.
    pub value_len: u32,
    /// The metadata's length in bytes (`meta.len()`).
    pub meta_len: u8,
    /// The metadata stored with the value ([`PutOptions::meta`](crate::PutOptions::meta)).
    pub meta: Bytes,
    /// When the key expires (Unix ms), if ever.
    pub expiry_unix_ms: Option<u64>,
    /// The sequence number of the key's record in its substore: it changes with every
    /// write of the key (compaction and splits keep it).
    pub seq: u64,
}

impl Core {
    /// Changes `key`'s expiry as `change` says, with no other write of the key in
    /// between; answers whether the key was live and the change applied.
    pub(super) async fn expire(
        self: &Rc<Self>,
        hash: u64,
        key: &[u8],
        change: ExpiryChange,
    ) -> Result<bool> {
        let Some(record) = self.read_unraced(hash, key).await? else {
            return Ok(false);
        };
        let Some(outcome) = change.apply(&record, &self.options.clock) else {
            return Ok(false);
        };
        self.write_outcome(hash, key, outcome).await?;
        Ok(true)
    }

    /// What the index knows of a live `key` and its metadata, once readable (durable, in
    /// `Sync` mode). Metadata the index does not hold is read from the record, again if
    /// a write of the key came in between.
    pub(super) async fn head(&self, hash: u64, key: &[u8]) -> Result<Option<Head>> {
        loop {
            self.batches.until_unlocked(key).await;
            self.wait_durable(hash, key).await?;
            let Some((entry, held)) = self.leaf(hash).head_with_meta(key) else {
                return Ok(None);
            };
            let meta = match held {
                Some(meta) => meta,
                None if entry.meta_len == 0 => Bytes::new(),
                None => {
                    let writes_before = self.writes.get();
                    let record = self.read(hash, key).await?;
                    if self.writes.get() != writes_before {
                        continue;
                    }
                    let Some(record) = record else {
                        return Ok(None);
                    };
                    record.meta
                }
            };
            return Ok(Some(Head {
                value_len: entry.value_len,
                meta_len: entry.meta_len,
                meta,
                expiry_unix_ms: entry.expiry_unix_ms,
                seq: entry.seq,
            }));
        }
    }
}

/// Expired keys a sweep collects from one store at a time.
pub(super) const SWEEP_BATCH: usize = 256;
/// Longest the sweeper sleeps before it looks again (the clock may have moved).
pub(super) const SWEEP_WAIT_MAX: Duration = Duration::from_secs(1);

impl Core {
    /// The expiry sweeper (see the module documentation). Ends at shutdown, or when the
    /// database turned read-only.
    pub(super) async fn expiry_sweeper(self: Rc<Self>) {
        let mut backoff = super::background::BACKGROUND_BACKOFF_MIN;
        loop {
            let listener = self.expiring.listen();
            if self.stopping.get() || self.health.check_writable().is_err() {
                return;
            }
            let next = (self.store_list().iter())
                .filter_map(|l| l.store.next_expiry())
                .min();
            let now = self.options.clock.now_unix_ms();
            match next {
                None => listener.await,
                Some(at) if at > now => {
                    let wait = Duration::from_millis(at - now).min(SWEEP_WAIT_MAX);
                    let timer = async { glommio::timer::sleep(wait).await };
                    futures_lite::future::or(listener, timer).await;
                }
                Some(_) => {
                    let purged = {
                        let _gate = self.compaction_gate.lock().await;
                        if self.stopping.get() {
                            return;
                        }
                        self.purge_expired().await
                    };
                    match purged {
                        // Expired entries it may not delete (an ancestor's, under a
                        // leaf's newer value) are looked at again later, not at once.
                        Ok(0) => {
                            let timer = async { glommio::timer::sleep(SWEEP_WAIT_MAX).await };
                            futures_lite::future::or(listener, timer).await;
                        }
                        Ok(_) => backoff = super::background::BACKGROUND_BACKOFF_MIN,
                        Err(e) => {
                            self.background_failed(&e, backoff);
                            glommio::timer::sleep(backoff).await;
                            backoff = (backoff * 2).min(super::background::BACKGROUND_BACKOFF_MAX);
                        }
                    }
                }
            }
        }
    }

    /// Deletes every key of this core whose expiry has passed; answers how many. The
    /// deletes of a batch are appended, then committed together.
    pub(super) async fn purge_expired(self: &Rc<Self>) -> Result<u64> {
        let mut purged = 0;
        loop {
            let keys: Vec<Vec<u8>> = (self.store_list().iter())
                .flat_map(|l| l.store.expired_keys(SWEEP_BATCH))
                .collect();
            let mut deleted = 0;
            for key in &keys {
                deleted += u64::from(self.delete_if_expired(routing_hash(key), key).await?);
            }
            if deleted > 0 {
                self.settle().await?;
                self.expired_purged.set(self.expired_purged.get() + deleted);
            }
            purged += deleted;
            if deleted == 0 {
                return Ok(purged);
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Appends a delete of `key` if the record that answers for it has expired, checked
    /// in the same poll as the append (so no write comes between); answers whether it
    /// did.
    async fn delete_if_expired(&self, hash: u64, key: &[u8]) -> Result<bool> {
        self.health.check_writable()?;
        let leaf = self.writable_leaf(hash, key, super::Locks::Wait).await;
        if !leaf.has_expired(key) {
            return Ok(false);
        }
        self.append(hash, key, None).await?;
        Ok(true)
    }
}

impl Here {
    /// A put with extras on this core (a `Local` call for a key it owns).
    pub(crate) async fn put_with(
        &self,
        hash: u64,
        key: &[u8],
        value: Bytes,
        extras: &Extras,
        durability: Durability,
    ) -> Result<()> {
        let put = Some((value, extras));
        self.counted(async |core| core.write_as(hash, key, put, durability).await)
            .await
    }

    pub(crate) async fn expire(&self, hash: u64, key: &[u8], change: ExpiryChange) -> Result<bool> {
        self.counted(async |core| core.expire(hash, key, change).await)
            .await
    }

    pub(crate) async fn head(&self, hash: u64, key: &[u8]) -> Result<Option<Head>> {
        self.counted(async |core| core.head(hash, key).await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_changes_follow_redis_conditions() {
        use ExpireIf::*;
        let at = |t, c| ExpiryChange::At(t, c);
        // (change, current expiry) -> new expiry, or None when it does not apply.
        let cases = [
            (at(50, Always), None, Some(Some(50))),
            (at(50, Always), Some(90), Some(Some(50))),
            (at(50, NoExpiry), None, Some(Some(50))),
            (at(50, NoExpiry), Some(90), None),
            (at(50, HasExpiry), None, None),
            (at(50, HasExpiry), Some(90), Some(Some(50))),
            (at(50, Later), None, None),
            (at(50, Later), Some(40), Some(Some(50))),
            (at(50, Later), Some(50), None),
            (at(50, Earlier), None, Some(Some(50))),
            (at(50, Earlier), Some(90), Some(Some(50))),
            (at(50, Earlier), Some(50), None),
            (at(50, HasExpiryAndEarlier), None, None),
            (at(50, HasExpiryAndEarlier), Some(90), Some(Some(50))),
            (at(50, HasExpiryAndEarlier), Some(50), None),
            (ExpiryChange::Persist, None, None),
            (ExpiryChange::Persist, Some(90), Some(None)),
        ];
        for (change, current, want) in cases {
            assert_eq!(change.decide(current), want, "{change:?} on {current:?}");
        }
    }
}
