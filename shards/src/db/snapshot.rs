//! `Db::snapshot()`: a consistent, point-in-time view of the whole database for gets
//! and ordered scans while writes go on (ARCHITECTURE.md, "Checkpoints, read-only open,
//! snapshots"). Taken at one instant across the cores (`cut.rs`): every store pins a
//! cut (its next sequence), and while the snapshot is open each core keeps the versions
//! writes replace and runs no background step, so what the cut saw stays readable.
//! Dropping the snapshot (and every scan reading it) unpins the cuts and lets the
//! cores' background work go on.

use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::scan::{self, Range};
use super::{Db, Inner, cut, read_key};
use crate::core::{Op, Waits};
use crate::error::Result;

/// A point-in-time view of a database: what every get and scan through it sees is the
/// database as it was at one instant, whatever is written after. Cheap to clone (the
/// clones share the view); released when the last clone and scan are dropped. While
/// any snapshot is open no compaction, split or expiry sweep runs, so hold one for a
/// scan or a backup, not for ever: `Stats` shows what the open ones keep.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pinned: Arc<Pinned>,
}

/// A snapshot's cuts on every core; unpinned when dropped.
#[derive(Debug)]
pub(super) struct Pinned {
    inner: Arc<Inner>,
    pub(super) id: u64,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        for core in 0..self.inner.cores.len() {
            // Not waited for: a closed database has nothing pinned any more.
            let _ = self.inner.send(core, 0, |reply| Op::Unpin(self.id, reply));
        }
    }
}

impl Db {
    /// A snapshot of the database as it is now (see [`Snapshot`]). Writes wait for one
    /// flush of every substore while it is taken; reads never do.
    pub fn snapshot(&self) -> Result<Snapshot> {
        futures_lite::future::block_on(self.snapshot_async())
    }

    /// [`Db::snapshot`] for async code.
    pub async fn snapshot_async(&self) -> Result<Snapshot> {
        let inner = &self.inner;
        let id = inner.next_snapshot.fetch_add(1, Ordering::Relaxed);
        let instant = cut::at_one_instant(inner, Some(id)).await?;
        // Pinned on every core: from here the snapshot's drop unpins and lets go.
        instant.held.keep();
        let pinned = Pinned {
            inner: inner.clone(),
            id,
        };
        Ok(Snapshot {
            pinned: Arc::new(pinned),
        })
    }
}

impl Snapshot {
    /// `key`'s value in the snapshot.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.pinned.inner.block_on(Waits::Read, self.get_async(key))
    }

    /// [`Snapshot::get`] for async code.
    pub async fn get_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let hash = read_key(key)?;
        let id = self.pinned.id;
        let inner = &self.pinned.inner;
        inner
            .call(hash, |reply| Op::SnapshotGet(id, key.to_vec(), reply))
            .await
    }

    /// Every key live in the snapshot within `range`, with its value, in ascending
    /// order (a [`Range`], as [`Db::range`]'s).
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Range {
        let (start, end) = scan::bounds(range);
        Range::new(
            self.pinned.inner.clone(),
            start,
            end,
            Some(self.pinned.clone()),
        )
    }

    /// Every key live in the snapshot that starts with `prefix`, in ascending order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        let (start, end) = scan::prefix_bounds(prefix.as_ref());
        Range::new(
            self.pinned.inner.clone(),
            start,
            end,
            Some(self.pinned.clone()),
        )
    }
}
