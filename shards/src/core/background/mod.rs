//! A core's background work, on its low-share task queue: one bounded step at a time,
//! in order of urgency (compact an extent, seal a dead active extent on an idle core,
//! move an ancestor's records, split a leaf), each holding the compaction gate so that
//! shutdown can wait for the step in progress.
//!
//! A pass runs shortly after writes. Once no write has come for
//! [`Options::idle_seal_after`](crate::Options::idle_seal_after) (1 s), one more
//! pass may also seal an active extent whose dead fraction has reached the garbage
//! ratio (expired keys swept, a burst of overwrites), so that its space comes back
//! without more writes to fill it; while writes go on, active extents fill and seal as
//! usual, so a hot key set does not make many small extents.
//!
//! - `plan.rs`: choosing the next step, a pure function of a [`plan::View`] of the core;
//! - `compaction.rs`: compacting victims (and `Db::compact`);
//! - `split.rs`: 16-way copy splits (`SplitMode::Copy`);
//! - `hand_over.rs`: hand-over splits and moving an ancestor's records
//!   (`SplitMode::HandOver`).
//!
//! A failed step is never silent: it is counted and named in `CoreStats`, logged, and
//! tried again after a back-off (100 ms doubling to 30 s), unless the database turned
//! read-only (a failed write or sync), which ends the task.

mod compaction;
mod hand_over;
mod plan;
mod split;

use std::rc::Rc;

use plan::{LeafView, Step, View};

use super::{Core, LeafState};
use crate::error::{Error, Result};
use crate::options::COMPACTION_GARBAGE_RATIO_PRESSURE;

/// First and longest wait before a failed background step is tried again.
pub(in crate::core) const BACKGROUND_BACKOFF_MIN: std::time::Duration =
    std::time::Duration::from_millis(100);
pub(in crate::core) const BACKGROUND_BACKOFF_MAX: std::time::Duration =
    std::time::Duration::from_secs(30);

impl Core {
    /// The background compaction task (low-share task queue): after writes, waits a
    /// little, then runs steps until none is left; once the core has been idle for
    /// `idle_seal_after` with a dead active extent, runs one idle pass.
    pub(in crate::core) async fn background_compaction(self: Rc<Self>) {
        // Writes up to `seen` are covered by a pass that started after them; any later
        // write (even one made during a pass) earns another pass. `idle_at` is the write
        // count an idle pass last covered.
        let (mut seen, mut idle_at) = (0, u64::MAX);
        loop {
            let listener = self.wrote.listen();
            if self.stopping.get() {
                return;
            }
            let mut idle = false;
            if self.writes.get() == seen {
                let idle_after = self.options.idle_seal_after;
                if let Some(after) =
                    idle_after.filter(|_| idle_at != seen && self.has_dead_active())
                {
                    let timer = async {
                        glommio::timer::sleep(after).await;
                        true
                    };
                    let wrote = async {
                        listener.await;
                        false
                    };
                    idle = futures_lite::future::or(wrote, timer).await;
                } else {
                    listener.await;
                }
            }
            if idle {
                idle_at = seen;
            } else {
                seen = self.writes.get();
                glommio::timer::sleep(self.options.compaction_interval).await;
            }
            if !self.background_pass(idle).await {
                return;
            }
        }
    }

    /// Runs background steps until none is left; false once the task must end.
    async fn background_pass(&self, idle: bool) -> bool {
        let mut backoff = BACKGROUND_BACKOFF_MIN;
        loop {
            if self.stopping.get() || self.health.check_writable().is_err() {
                return false;
            }
            match self.background_step(idle).await {
                Ok(true) => futures_lite::future::yield_now().await,
                Ok(false) => return true,
                Err(e) => {
                    self.background_failed(&e, backoff);
                    // A failed write or sync turned the database read-only (the
                    // check above ends the task); anything else is tried again.
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKGROUND_BACKOFF_MAX);
                }
            }
        }
    }

    /// Whether some leaf's active extent is as dead as a compaction victim.
    fn has_dead_active(&self) -> bool {
        let ratio = self.compaction_ratio();
        (self.leaf_list().iter()).any(|l| l.store.active_garbage_ratio() >= ratio)
    }

    /// One bounded step of background work, the one [`plan::choose`] picks (sealing a
    /// dead active extent only when `idle`). Returns whether there was work.
    pub(in crate::core) async fn background_step(&self, idle: bool) -> Result<bool> {
        let _gate = self.compaction_gate.lock().await;
        if self.stopping.get() {
            return Ok(false);
        }
        let leaves = self.leaf_list();
        match plan::choose(&self.view(&leaves, self.compaction_ratio(), idle)) {
            None => Ok(false),
            Some(Step::Compact { leaf, extent }) => self.compact(&leaves[leaf], extent).await,
            Some(Step::SealActive { leaf }) => {
                let store = &leaves[leaf].store;
                store
                    .seal_active_if_dead()
                    .await
                    .map_err(|e| self.failed(e))
            }
            Some(Step::Move) => self.move_first_ancestor().await,
            Some(Step::Split { leaf }) => self.split_leaf(&leaves[leaf]).await,
        }
    }

    /// What the planner sees of this core, compacting at `ratio`; `idle` lets it see
    /// dead active extents.
    fn view(&self, leaves: &[Rc<LeafState>], ratio: f64, idle: bool) -> View {
        let damaged = self.damaged_extents.borrow();
        let leaves = (leaves.iter())
            .map(|l| LeafView {
                victims: (l.store.compaction_victims(ratio).into_iter())
                    .filter(|&v| !damaged.contains(&(l.id, v)))
                    .collect(),
                live_bytes: l.store.stats().live_bytes,
                prefix_bits: l.id.prefix_bits,
                behind_ancestor: l.ancestor().is_some(),
                active_dead: idle && l.store.active_garbage_ratio() >= ratio,
            })
            .collect();
        View {
            leaves,
            ancestors: self.ancestors.borrow().len(),
            split_threshold_bytes: self.options.split_threshold_bytes,
        }
    }

    /// Records and logs a failed background step.
    pub(in crate::core) fn background_failed(&self, e: &Error, retry_in: std::time::Duration) {
        self.background_errors.set(self.background_errors.get() + 1);
        *self.background_error.borrow_mut() = Some(e.to_string());
        if self.health.check_writable().is_err() {
            log::error!(
                "ringkv core {}: background work stopped, the database is read-only: {e}",
                self.index
            );
        } else {
            log::error!(
                "ringkv core {}: background step failed, trying again in {retry_in:?}: {e}",
                self.index
            );
        }
    }

    /// The garbage ratio to compact at now: lower when the disk is filling up.
    pub(in crate::core) fn compaction_ratio(&self) -> f64 {
        let free = self.data_dirs().free_bytes_min(&self.options.storage);
        if free < self.options.compaction_free_space_min_bytes {
            COMPACTION_GARBAGE_RATIO_PRESSURE.min(self.options.compaction_garbage_ratio)
        } else {
            self.options.compaction_garbage_ratio
        }
    }
}
