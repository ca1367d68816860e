//! Compaction on a core: the best victim of one leaf per step (skipping extents whose
//! compaction met corruption), and `Db::compact`'s full pass.

use ringkv_engine::CompactionStats;

use crate::core::Core;
use crate::error::Result;

impl Core {
    /// One compaction of the best victim of the leaf with the best one, at `ratio`.
    /// Returns whether there was anything to do.
    pub(in crate::core) async fn compaction_step(&self, ratio: f64) -> Result<bool> {
        let _gate = self.compaction_gate.lock().await;
        if self.stopping.get() {
            return Ok(false);
        }
        for leaf in self.leaf_list() {
            let victims = leaf.store.compaction_victims(ratio);
            let damaged = |v: &u64| self.damaged_extents.borrow().contains(&(leaf.id, *v));
            if let Some(victim) = victims.into_iter().find(|v| !damaged(v)) {
                let compacted = leaf.store.compact_extent(victim).await;
                if let Err(e @ ringkv_engine::Error::Corruption { .. }) = &compacted {
                    // Reported (Stats, log) by the caller; other victims go on. Reads of
                    // the damaged records report it too.
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
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `Db::compact`: every extent with any dead byte, on every leaf of this core.
    pub(in crate::core) async fn compact_all(&self) -> Result<CompactionStats> {
        self.health.check_writable()?;
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
