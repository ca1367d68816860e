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

/// An EXEC's transaction.
pub struct TxKeys {
    tx: Cell<Option<Transaction>>,
}

impl TxKeys {
    pub fn new(tx: Transaction) -> TxKeys {
        TxKeys {
            tx: Cell::new(Some(tx)),
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
}

impl Keys for TxKeys {
    fn fanout(&self) -> usize {
        1
    }
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.with(async |tx| tx.get_async(key).await).await
    }
    async fn exists(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.with(async |tx| tx.put(key, value)).await;
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
        self.with(async |tx| tx.update(key, decide).await).await
    }
    async fn expire_if(&self, key: &[u8], at: u64, only_if: ExpireIf) -> Result<bool> {
        self.with(async |tx| tx.expire_if(key, at, only_if).await)
            .await
    }
    async fn persist(&self, key: &[u8]) -> Result<bool> {
        self.with(async |tx| tx.persist(key).await).await
    }
    async fn expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>> {
        let record = self.with(async |tx| tx.get_with_expiry(key).await).await?;
        Ok(record.map(|(_, expiry)| expiry))
    }
}
