//! Compaction on a core: the best victim of one leaf per step (skipping extents whose
//! compaction met corruption), and `Db::compact`'s full pass.

use ringkv_engine::{CompactionStats, SubstoreId};

use crate::core::{Core, LeafState};
use crate::error::Result;

impl Core {
    /// Compacts extent `victim` of `leaf`; a damaged one is not chosen again while open.
    /// Returns true (there was work).
    pub(in crate::core) async fn compact(&self, leaf: &LeafState, victim: u64) -> Result<bool> {
        let compacted = leaf.store.compact_extent(victim).await;
        if let Err(e @ ringkv_engine::Error::Corruption { .. }) = &compacted {
            // Reported (Stats, log) by the caller; other victims go on. Reads of the
            // damaged records report it too.
            self.damaged_extents.borrow_mut().insert((leaf.id, victim));
            log::error!(
                "ringkv core {}: compaction skips a damaged extent: {e}",
                self.index
            );
        }
        let stats = compacted.map_err(|e| self.failed(e))?;
        let mut total = self.compaction.get();
        total.add(&stats);
        self.compaction.set(total);
        Ok(true)
    }

    /// `Db::compact`: every extent with any dead byte when the pass starts, on every
    /// leaf of this core, once. Not until none is left: rewriting an extent can leave a
    /// few dead bytes where its records go (a tombstone is kept while older extents
    /// exist), so a pass that chased those rewrote the same records for ever.
    pub(in crate::core) async fn compact_all(&self) -> Result<CompactionStats> {
        self.health.check_writable()?;
        if !self.snapshots.borrow().is_empty() {
            // The open snapshots read versions compaction would remove: nothing moves
            // until they are dropped (waiting for them could wait for ever).
            return Ok(CompactionStats::default());
        }
        let before = self.compaction.get();
        while self.move_step().await? {}
        for leaf in self.leaf_list() {
            let store = &leaf.store;
            store
                .seal_active_if_dead()
                .await
                .map_err(|e| self.failed(e))?;
            // An extent that filled up is sealed when it is written out, which the
            // commit round after its last put may not have done yet: unsealed, it would
            // be no victim of this pass.
            store.write_unsynced().await.map_err(|e| self.failed(e))?;
        }
        let planned: Vec<(SubstoreId, u64)> = (self.leaf_list().iter())
            .flat_map(|l| {
                let victims = l.store.compaction_victims(f64::MIN_POSITIVE);
                victims.into_iter().map(|extent| (l.id, extent))
            })
            .collect();
        for (leaf, extent) in planned {
            self.compact_planned(leaf, extent).await?;
        }
        Ok(self.compaction.get().since(&before))
    }

    /// Compacts extent `extent` of leaf `id` if both are still there and it still has
    /// dead bytes (background steps may have run since it was planned).
    async fn compact_planned(&self, id: SubstoreId, extent: u64) -> Result<()> {
        let _gate = self.compaction_gate.lock().await;
        if self.stopping.get() || self.damaged_extents.borrow().contains(&(id, extent)) {
            return Ok(());
        }
        let leaves = self.leaf_list();
        let Some(leaf) = leaves.iter().find(|l| l.id == id) else {
            return Ok(()); // split since
        };
        if (leaf.store.compaction_victims(f64::MIN_POSITIVE)).contains(&extent) {
            self.compact(leaf, extent).await?;
        }
        Ok(())
    }
}
