//! Compaction on a core: the best victim of one leaf per step (skipping extents whose
//! compaction met corruption), and `Db::compact`'s full pass.

use ringkv_engine::CompactionStats;

use super::plan::{self, Step};
use crate::core::{Core, LeafState};
use crate::error::Result;

impl Core {
    /// One compaction of the best victim of the first leaf with one, at `ratio`.
    /// Returns whether there was anything to do.
    pub(in crate::core) async fn compaction_step(&self, ratio: f64) -> Result<bool> {
        let _gate = self.compaction_gate.lock().await;
        if self.stopping.get() {
            return Ok(false);
        }
        let leaves = self.leaf_list();
        match plan::victim(&self.view(&leaves, ratio, false).leaves) {
            Some(Step::Compact { leaf, extent }) => self.compact(&leaves[leaf], extent).await,
            _ => Ok(false),
        }
    }

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

    /// `Db::compact`: every extent with any dead byte, on every leaf of this core.
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
            leaf.store
                .seal_active_if_dead()
                .await
                .map_err(|e| self.failed(e))?;
        }
        while self.compaction_step(f64::MIN_POSITIVE).await? {}
        Ok(self.compaction.get().since(&before))
    }
}
