//! The `Db` calls for expiry, metadata and HEAD: puts with [`PutOptions`], changing a
//! key's expiry ([`Db::expire`] and its kin, Redis's EXPIRE family and PERSIST), what
//! the index knows of a key ([`Db::head`], [`Db::ttl`]) without reading its value, and
//! deleting expired keys now ([`Db::purge_expired`]; each core's sweeper does it on
//! its own).
//!
//! Times are judged by the database's clock ([`crate::Options::clock`]): a TTL becomes
//! an absolute expiry (Unix ms) when the call is made, as Redis does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringkv_engine::check_limits;
use ringkv_engine::hash::routing_hash;

use super::{Db, Inner, Local, MakeOp, read_key};
use crate::core::{ExpireIf, ExpiryChange, Extras, Head, Op, Waits};
use crate::error::Result;
use crate::options::Durability;

/// When a put's key expires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Expiry {
    #[default]
    Never,
    In(Duration),
    AtUnixMs(u64),
}

/// What a put stores besides its key and value (an expiry and metadata bytes) and how
/// it is acknowledged. `PutOptions::default()` is a plain put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    expiry: Expiry,
    meta: Bytes,
    durability: Option<Durability>,
}

impl PutOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key expires this long after the put is made (by the database's clock).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.expiry = Expiry::In(ttl);
        self
    }

    /// The key expires at `at`.
    pub fn expire_at(self, at: SystemTime) -> Self {
        self.expire_at_unix_ms(unix_ms(at))
    }

    /// The key expires at this Unix time in milliseconds.
    pub fn expire_at_unix_ms(mut self, at: u64) -> Self {
        self.expiry = Expiry::AtUnixMs(at);
        self
    }

    /// Metadata bytes kept with the value (at most [`crate::META_LEN_MAX`]); [`Db::head`]
    /// gives their length.
    pub fn meta(mut self, meta: impl Into<Bytes>) -> Self {
        self.meta = meta.into();
        self
    }

    /// When this put is acknowledged, instead of as [`crate::Options::durability`]
    /// says (RocksDB's `WriteOptions::set_sync`). `Sync`: once it and everything it
    /// depends on are durable, also in a `Buffered` database. `Buffered`: once its
    /// core has appended it, also in a `Sync` database, where a read of the key still
    /// waits until the put is durable (a `Sync` database never shows a write a crash
    /// could take back), so a thread that reads what it just wrote pays the commit.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }
}

/// How long a key has to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The key has no expiry.
    Never,
    /// The key expires after this long (zero: within the millisecond).
    In(Duration),
}

/// Unix milliseconds of `at` (0 before the epoch).
fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Db {
    /// [`Db::put`] with an expiry, metadata and a durability of its own. A `Buffered`
    /// put with options returns once its core has appended it (a plain `put` in a
    /// `Buffered` database returns once queued).
    pub fn put_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (hash, extras, durability) = self.inner.checked_put(key, value, options)?;
        let op = put_with_op(key, value, extras, durability);
        (self.inner).call_blocking(hash, Waits::Write, op)
    }

    pub async fn put_with_async(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (hash, extras, durability) = self.inner.checked_put(key, value, options)?;
        (self
            .inner
            .call(hash, put_with_op(key, value, extras, durability)))
        .await
    }

    /// Makes `key` expire `ttl` from now, keeping its value and metadata. Answers
    /// whether the key exists (and so got the expiry). A zero `ttl` deletes it.
    pub fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        let at = self.inner.after(ttl);
        self.expire_if(key, at, ExpireIf::Always)
    }

    /// Makes `key` expire at `at`; a time already past deletes it. Answers whether the
    /// key exists.
    pub fn expire_at(&self, key: impl AsRef<[u8]>, at: SystemTime) -> Result<bool> {
        self.expire_if(key, unix_ms(at), ExpireIf::Always)
    }

    /// Makes `key` expire at `at_unix_ms` if `only_if` holds (Redis's NX, XX, GT, LT).
    /// Answers whether the expiry was set (or, for a time already past, the key
    /// deleted).
    pub fn expire_if(
        &self,
        key: impl AsRef<[u8]>,
        at_unix_ms: u64,
        only_if: ExpireIf,
    ) -> Result<bool> {
        let change = ExpiryChange::At(at_unix_ms, only_if);
        let (hash, op) = self.inner.expire_op(key.as_ref(), change)?;
        self.inner.call_blocking(hash, Waits::Write, op)
    }

    pub async fn expire_if_async(
        &self,
        key: impl AsRef<[u8]>,
        at_unix_ms: u64,
        only_if: ExpireIf,
    ) -> Result<bool> {
        let change = ExpiryChange::At(at_unix_ms, only_if);
        let (hash, op) = self.inner.expire_op(key.as_ref(), change)?;
        self.inner.call(hash, op).await
    }

    /// Removes `key`'s expiry. Answers whether it had one.
    pub fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (hash, op) = self.inner.expire_op(key.as_ref(), ExpiryChange::Persist)?;
        self.inner.call_blocking(hash, Waits::Write, op)
    }

    pub async fn persist_async(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (hash, op) = self.inner.expire_op(key.as_ref(), ExpiryChange::Persist)?;
        self.inner.call(hash, op).await
    }

    /// What the index knows of a live key (value length, metadata, expiry, sequence),
    /// answered from memory with no device read (see [`Head`] for the one exception).
    pub fn head(&self, key: impl AsRef<[u8]>) -> Result<Option<Head>> {
        let (hash, op) = head_op(key.as_ref())?;
        self.inner.call_blocking(hash, Waits::Read, op)
    }

    pub async fn head_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Head>> {
        let (hash, op) = head_op(key.as_ref())?;
        self.inner.call(hash, op).await
    }

    /// How long a live key has to live; `None` for a missing (or expired) key.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Option<Ttl>> {
        Ok(self.head(key)?.map(|head| self.inner.ttl_of(&head)))
    }

    pub async fn ttl_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Ttl>> {
        Ok(self
            .head_async(key)
            .await?
            .map(|head| self.inner.ttl_of(&head)))
    }

    /// Deletes, on every core, every key whose expiry has passed, and answers how many.
    /// The cores' sweepers do this on their own soon after each expiry; this is for a
    /// caller that wants it done now (and for tests on a manual clock).
    pub fn purge_expired(&self) -> Result<u64> {
        futures_lite::future::block_on(self.purge_expired_async())
    }

    pub async fn purge_expired_async(&self) -> Result<u64> {
        self.inner.health.check_writable()?;
        let mut purged = 0;
        for core in 0..self.inner.cores.len() {
            purged += self.inner.call_core(core, 0, Op::PurgeExpired).await?;
        }
        Ok(purged)
    }

    /// Now by the database's clock, in Unix milliseconds.
    pub fn now_unix_ms(&self) -> u64 {
        self.inner.clock.now_unix_ms()
    }
}

impl Local {
    /// [`Db::put_with_async`], served in place when this core owns the key.
    pub async fn put_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: &PutOptions,
    ) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (hash, extras, durability) = self.db.inner.checked_put(key, value, options)?;
        match self.owner(hash)? {
            None => {
                let value = Bytes::copy_from_slice(value);
                (self.here.put_with(hash, key, value, &extras, durability)).await
            }
            Some(core) => {
                let op = put_with_op(key, value, extras, durability);
                self.db.inner.call_core(core, hash, op).await
            }
        }
    }

    /// [`Db::expire_if_async`], served in place when this core owns the key.
    pub async fn expire_if(
        &self,
        key: impl AsRef<[u8]>,
        at_unix_ms: u64,
        only_if: ExpireIf,
    ) -> Result<bool> {
        self.change_expiry(key.as_ref(), ExpiryChange::At(at_unix_ms, only_if))
            .await
    }

    /// [`Db::persist_async`], served in place when this core owns the key.
    pub async fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.change_expiry(key.as_ref(), ExpiryChange::Persist)
            .await
    }

    async fn change_expiry(&self, key: &[u8], change: ExpiryChange) -> Result<bool> {
        let (hash, op) = self.db.inner.expire_op(key, change)?;
        match self.owner(hash)? {
            None => self.here.expire(hash, key, change).await,
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }

    /// [`Db::head_async`], served in place when this core owns the key.
    pub async fn head(&self, key: impl AsRef<[u8]>) -> Result<Option<Head>> {
        let key = key.as_ref();
        let (hash, op) = head_op(key)?;
        match self.owner(hash)? {
            None => self.here.head(hash, key).await,
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }
}

impl Inner {
    /// `ttl` from now by the database's clock, in Unix ms.
    fn after(&self, ttl: Duration) -> u64 {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.clock.now_unix_ms().saturating_add(ms)
    }

    fn ttl_of(&self, head: &Head) -> Ttl {
        match head.expiry_unix_ms {
            None => Ttl::Never,
            Some(at) => Ttl::In(Duration::from_millis(
                at.saturating_sub(self.clock.now_unix_ms()),
            )),
        }
    }

    /// A put with options checked: its hash and what it stores besides the value.
    /// A put with options, checked: its hash, what it stores, how it is acknowledged.
    fn checked_put(
        &self,
        key: &[u8],
        value: &[u8],
        options: &PutOptions,
    ) -> Result<(u64, Extras, Durability)> {
        check_limits(key, value, &options.meta)?;
        self.health.check_writable()?;
        let durability = options.durability.unwrap_or(self.durability);
        Ok((routing_hash(key), self.extras_of(options), durability))
    }

    /// What a put with `options` stores besides its value, its TTL counted from now.
    pub(crate) fn extras_of(&self, options: &PutOptions) -> Extras {
        let expiry_unix_ms = match options.expiry {
            Expiry::Never => None,
            Expiry::In(ttl) => Some(self.after(ttl)),
            Expiry::AtUnixMs(at) => Some(at),
        };
        Extras {
            meta: options.meta.clone(),
            expiry_unix_ms,
        }
    }

    /// An expiry change, checked.
    fn expire_op<'k>(
        &self,
        key: &'k [u8],
        change: ExpiryChange,
    ) -> Result<(u64, impl MakeOp<bool> + 'k)> {
        let hash = self.write_key(key, &[])?;
        Ok((hash, move |reply| Op::Expire(key.to_vec(), change, reply)))
    }
}

/// A put's request with its extras.
fn put_with_op<'k>(
    key: &'k [u8],
    value: &'k [u8],
    extras: Extras,
    durability: Durability,
) -> impl MakeOp<()> + 'k {
    move |reply| {
        Op::PutWith(
            key.to_vec(),
            value.to_vec(),
            Box::new(extras),
            durability,
            reply,
        )
    }
}

/// A HEAD's request, checked.
fn head_op(key: &[u8]) -> Result<(u64, impl MakeOp<Option<Head>> + '_)> {
    Ok((read_key(key)?, |reply| Op::Head(key.to_vec(), reply)))
}
