//! Snapshots on one core: each open snapshot's cut on every store (leaf and ancestor)
//! of the core, pinned at a pause (`hold.rs`) and unpinned when the snapshot is
//! dropped, and reads at those cuts (`ringkv_engine`'s kept versions). While a snapshot
//! is open the core stays held: no split, record move or compaction runs, so the
//! leaves and ancestors are the ones the cuts were taken on, and every record a kept
//! version points at stays where it is.
//!
//! What the snapshots keep is bounded: past the core's share of
//! `Options::snapshot_memory_bytes`, the oldest snapshot open here is released here
//! (its cuts unpinned, its hold let go) and remembered as expired, so that its reads
//! fail with `Error::SnapshotTooOld` until it is dropped.
//!
//! A snapshot read never uses the cache (it may hold newer values), waits for no batch
//! (none was in flight at the cut, and later ones are after it) and for no commit
//! (every store was synced at the pause).

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use super::{Core, LeafState};
use crate::error::{Error, Result};

/// Open snapshots by id: each store's cut, by store id.
pub(super) type Snapshots = HashMap<u64, HashMap<u64, (Rc<LeafState>, u64)>>;

impl Core {
    /// Pins snapshot `id`'s cut on every one of `stores` (while paused).
    pub(super) fn pin(&self, id: u64, stores: &[Rc<LeafState>]) {
        let cuts = (stores.iter()).map(|s| (s.id.id, (s.clone(), s.store.pin())));
        self.snapshots.borrow_mut().insert(id, cuts.collect());
    }

    /// Snapshot `id` was dropped: unpins it (unless it was released early) and lets go
    /// of its hold.
    pub(super) fn unpin(&self, id: u64) {
        if !self.expired_snapshots.borrow_mut().remove(&id) {
            self.release_snapshot(id);
        }
    }

    /// Unpins snapshot `id`'s cuts here and lets go of its hold.
    fn release_snapshot(&self, id: u64) {
        let cuts = self.snapshots.borrow_mut().remove(&id);
        let Some(cuts) = cuts else {
            return; // never pinned here (the snapshot failed while being taken)
        };
        for (store, cut) in cuts.into_values() {
            store.store.unpin(cut);
        }
        self.release();
    }

    /// After a write while snapshots are open: past this core's share of the budget,
    /// releases the oldest snapshots here until the versions kept fit.
    pub(super) fn bound_snapshots(&self) {
        if self.snapshots.borrow().is_empty() {
            return;
        }
        let budget = self.snapshot_budget_bytes();
        while self.kept_version_bytes() > budget {
            let oldest = self.snapshots.borrow().keys().min().copied();
            let Some(id) = oldest else {
                return;
            };
            self.release_snapshot(id);
            self.expired_snapshots.borrow_mut().insert(id);
        }
    }

    fn snapshot_budget_bytes(&self) -> u64 {
        let cores = self.peers.len() as u64;
        self.options.snapshot_memory_bytes / cores.max(1)
    }

    /// Bytes of the versions kept for the open snapshots on every store here.
    fn kept_version_bytes(&self) -> u64 {
        let stores = self.store_list();
        stores.iter().map(|s| s.store.pinned_bytes()).sum()
    }

    /// `store`'s cut in snapshot `id`.
    pub(super) fn cut_of(&self, id: u64, store: &LeafState) -> Result<u64> {
        if self.expired_snapshots.borrow().contains(&id) {
            let budget_bytes = self.snapshot_budget_bytes();
            return Err(Error::SnapshotTooOld { budget_bytes });
        }
        let snapshots = self.snapshots.borrow();
        let cut = snapshots.get(&id).and_then(|cuts| cuts.get(&store.id.id));
        // Only a snapshot already dropped has no cut (or a core that was restarted).
        cut.map(|(_, cut)| *cut).ok_or(Error::Closed)
    }

    /// Whether `leaf` held `key` (an expired record included) at snapshot `id`'s cut.
    pub(super) fn held_at(&self, id: u64, leaf: &LeafState, key: &[u8]) -> Result<bool> {
        Ok(leaf.store.entry_at(key, self.cut_of(id, leaf)?).is_some())
    }

    /// `key`'s value in snapshot `id`: its leaf's if the leaf held the key at the cut,
    /// else its ancestor's, if it reads behind one.
    pub(super) async fn snapshot_get(
        &self,
        id: u64,
        hash: u64,
        key: &[u8],
    ) -> Result<Option<Bytes>> {
        let leaf = self.leaf(hash);
        let store = match (self.held_at(id, &leaf, key)?, leaf.ancestor()) {
            (true, _) => leaf,
            (false, Some(ancestor)) => ancestor,
            (false, None) => return Ok(None),
        };
        let cut = self.cut_of(id, &store)?;
        Ok(store.store.get_at(key, cut).await?.map(|r| r.value))
    }
}
