//! The key operations the key commands run through ([`Keys`]): the connection's core
//! handle (`ringkv::Local`), or the transaction an EXEC runs its queued commands in
//! ([`TxKeys`]). Each command is written once and behaves the same inside MULTI.
//!
//! A `TxKeys` is used by one command at a time (`fanout` 1): its transaction is taken
//! out for each call and put back, so a call never holds it across another.

use std::cell::Cell;

use bytes::Bytes;
use ringkv::{ExpireIf, Local, PutOptions, Result, Transaction, Update};

/// What the key commands do to keys.
pub trait Keys {
    /// Most calls of one command in flight at once.
    fn fanout(&self) -> usize;
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;
    async fn exists(&self, key: &[u8]) -> Result<bool>;
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    async fn put_with(&self, key: &[u8], value: &[u8], options: &PutOptions) -> Result<()>;
    /// Reads `key`, lets `decide` choose, writes the outcome atomically; the value seen.
    async fn update(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>>;
    /// Sets the expiry of a live key to `at` (Unix ms; past: deletes it) if `only_if`
    /// allows it; whether it did.
    async fn expire_if(&self, key: &[u8], at: u64, only_if: ExpireIf) -> Result<bool>;
    /// Removes a live key's expiry; whether it had one.
    async fn persist(&self, key: &[u8]) -> Result<bool>;
    /// `None` for no live key; else its expiry (Unix ms), if any.
    async fn expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>>;
}

/// Most keys of one command in flight at once through a core's handle: a command with
/// a million keys does not queue a million requests at once.
const FANOUT_MAX: usize = 256;

impl Keys for Local {
    fn fanout(&self) -> usize {
        FANOUT_MAX
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Local::get(self, key).await
    }
    async fn exists(&self, key: &[u8]) -> Result<bool> {
        Local::exists(self, key).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Local::put(self, key, value).await
    }
    async fn put_with(&self, key: &[u8], value: &[u8], options: &PutOptions) -> Result<()> {
        Local::put_with(self, key, value, options).await
    }
    async fn update(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        Local::update(self, key, decide).await
    }
    async fn expire_if(&self, key: &[u8], at: u64, only_if: ExpireIf) -> Result<bool> {
        Local::expire_if(self, key, at, only_if).await
    }
    async fn persist(&self, key: &[u8]) -> Result<bool> {
        Local::persist(self, key).await
    }
    async fn expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>> {
        Ok(Local::head(self, key).await?.map(|h| h.expiry_unix_ms))
    }
}

/// An EXEC's transaction, with the database's clock.
pub struct TxKeys {
    tx: Cell<Option<Transaction>>,
    now_unix_ms: u64,
}

impl TxKeys {
    pub fn new(tx: Transaction, now_unix_ms: u64) -> TxKeys {
        TxKeys {
            tx: Cell::new(Some(tx)),
            now_unix_ms,
        }
    }

    pub fn into_inner(self) -> Transaction {
        self.tx.into_inner().expect("no call in flight")
    }

    /// Runs `f` on the transaction (taken out meanwhile: one call at a time).
    async fn with<T>(&self, f: impl AsyncFnOnce(&mut Transaction) -> T) -> T {
        let mut tx = self
            .tx
            .take()
            .expect("one call at a time on an EXEC's keys");
        let out = f(&mut tx).await;
        self.tx.set(Some(tx));
        out
    }

    async fn record(&self, key: &[u8]) -> Result<Option<(Bytes, Option<u64>)>> {
        self.with(async |tx| tx.get_with_expiry(key).await).await
    }

    /// Stores `value` with expiry `at` (`None`: none).
    async fn store(&self, key: &[u8], value: &[u8], at: Option<u64>) {
        let options = match at {
            Some(at) => PutOptions::new().expire_at_unix_ms(at),
            None => PutOptions::new(),
        };
        self.with(async |tx| tx.put_with(key, value, &options))
            .await;
    }
}

impl Keys for TxKeys {
    fn fanout(&self) -> usize {
        1
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.record(key).await?.map(|(value, _)| value))
    }
    async fn exists(&self, key: &[u8]) -> Result<bool> {
        Ok(self.record(key).await?.is_some())
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.store(key, value, None).await;
        Ok(())
    }
    async fn put_with(&self, key: &[u8], value: &[u8], options: &PutOptions) -> Result<()> {
        self.with(async |tx| tx.put_with(key, value, options)).await;
        Ok(())
    }
    async fn update(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let seen = self.record(key).await?;
        match decide(seen.as_ref().map(|(v, _)| &v[..])) {
            Update::Keep => {}
            Update::Put(value) => {
                self.store(key, &value, seen.as_ref().and_then(|s| s.1))
                    .await
            }
            Update::Set {
                value,
                expiry_unix_ms,
            } => self.store(key, &value, expiry_unix_ms).await,
            Update::Delete => self.with(async |tx| tx.delete(key)).await,
        }
        Ok(seen.map(|(value, _)| value))
    }
    async fn expire_if(&self, key: &[u8], at: u64, only_if: ExpireIf) -> Result<bool> {
        let Some((value, current)) = self.record(key).await? else {
            return Ok(false);
        };
        if !only_if.allows(current, at) {
            return Ok(false);
        }
        match at <= self.now_unix_ms {
            true => self.with(async |tx| tx.delete(key)).await,
            false => self.store(key, &value, Some(at)).await,
        }
        Ok(true)
    }
    async fn persist(&self, key: &[u8]) -> Result<bool> {
        match self.record(key).await? {
            Some((value, Some(_))) => {
                self.store(key, &value, None).await;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>> {
        Ok(self.record(key).await?.map(|(_, expiry)| expiry))
    }
}
