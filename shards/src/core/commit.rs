//! Group commit and what it means for readers. A commit round writes and fdatasyncs
//! every dirty store of the core, all in flight together; every write appended before
//! the round began is durable when it ends, and writers arriving meanwhile share the
//! next round. In `Sync` mode a reader waits for the round that makes what it would
//! read durable; in `Buffered` mode a flush is scheduled within `flush_interval`.

use std::cell::Cell;
use std::rc::Rc;

use event_listener::Event;

use crate::core::{Core, LeafState};
use crate::error::Result;
use crate::options::Durability;

/// The group-commit state of a core: tickets handed out and made durable.
#[derive(Default)]
pub(super) struct Committer {
    pub(super) requested: Cell<u64>,
    pub(super) durable: Cell<u64>,
    pub(super) running: Cell<bool>,
    pub(super) done: Event,
    pub(super) commits: Cell<u64>,
}

impl Core {
    /// In `Sync` mode, waits until what a read of `key` would answer is durable: a put
    /// or delete of it appended but not yet committed is committed first, so no reader
    /// sees a write that a crash could take back. `Buffered` reads see every write at
    /// once.
    pub(super) async fn wait_durable(&self, hash: u64, key: &[u8]) -> Result<()> {
        if self.options.durability == Durability::Buffered {
            return Ok(());
        }
        loop {
            let leaf = self.leaf(hash);
            let behind = leaf.ancestor().is_none_or(|a| a.store.is_durable(key));
            if leaf.store.is_durable(key) && behind {
                return Ok(());
            }
            // Commits everything appended so far (joining a round in flight). The writer
            // marks its leaf dirty only after its append returns; mark it here too, or
            // the round could skip the record this read waits for.
            leaf.dirty.set(true);
            if let Some(ancestor) = leaf.ancestor() {
                ancestor.dirty.set(true);
            }
            self.commit().await?;
        }
    }

    /// In `Sync` mode, commits what was appended but not yet committed (writes in
    /// flight), so that a listing or a count sees only what is durable. Nothing to do
    /// when every store is durable, in `Buffered` mode, or once the database is
    /// read-only (nothing more can be made durable; figures must still be readable).
    pub(super) async fn commit_appended(&self) -> Result<()> {
        if self.options.durability == Durability::Buffered || self.health.check_writable().is_err()
        {
            return Ok(());
        }
        let mut pending = false;
        for leaf in self.store_list() {
            if leaf.store.has_unsynced() {
                leaf.dirty.set(true);
                pending = true;
            }
        }
        match pending {
            true => self.commit().await,
            false => Ok(()),
        }
    }

    /// The second half of writes: acknowledged per the durability mode.
    pub(super) async fn settle(self: &Rc<Self>) -> Result<()> {
        match self.options.durability {
            Durability::Buffered => {
                self.schedule_flush();
                Ok(())
            }
            _ => self.commit().await,
        }
    }

    /// Waits until everything appended on this core before the call is durable, sharing
    /// one round of syncs with every caller that arrives while one is in flight.
    pub(super) async fn commit(&self) -> Result<()> {
        let c = &self.commit;
        let ticket = c.requested.get() + 1;
        c.requested.set(ticket);
        loop {
            self.health.check_writable()?;
            if c.durable.get() >= ticket {
                return Ok(());
            }
            if !c.running.get() {
                c.running.set(true);
                let target = c.requested.get();
                let result = self.flush_dirty().await;
                c.running.set(false);
                c.commits.set(c.commits.get() + 1);
                if result.is_ok() {
                    c.durable.set(target);
                }
                c.done.notify(usize::MAX);
                result?;
                continue;
            }
            // Single-threaded: nothing can finish between the checks and listening.
            c.done.listen().await;
        }
    }

    /// One write + fdatasync per dirty substore, all in flight together.
    pub(super) async fn flush_dirty(&self) -> Result<()> {
        let dirty: Vec<Rc<LeafState>> = self
            .store_list()
            .into_iter()
            .filter(|l| l.dirty.replace(false))
            .collect();
        let tasks: Vec<_> = dirty
            .into_iter()
            .map(|leaf| {
                glommio::spawn_local(async move {
                    let flushed = leaf.store.flush().await;
                    if flushed.is_err() {
                        // Still holds what it could not write (out of descriptors, say):
                        // the next round tries again.
                        leaf.dirty.set(true);
                    }
                    flushed
                })
            })
            .collect();
        let mut first_error = None;
        for task in tasks {
            if let Err(e) = task.await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(self.failed(e)),
            None => Ok(()),
        }
    }

    /// Buffered mode: make sure a flush runs within the flush interval.
    pub(super) fn schedule_flush(self: &Rc<Self>) {
        if self.flush_scheduled.replace(true) {
            return;
        }
        // A weak hold: this task may still be sleeping when the core shuts down (close
        // flushes anyway), and glommio does not drop a pending task's future then.
        let core = Rc::downgrade(self);
        let interval = self.options.flush_interval;
        glommio::spawn_local(async move {
            glommio::timer::sleep(interval).await;
            let Some(core) = core.upgrade() else {
                return;
            };
            core.flush_scheduled.set(false);
            // A failure is recorded in Health; the next write reports it.
            let _ = core.commit().await;
        })
        .detach();
    }
}
