//! Group commit and what it means for readers. A commit round writes one frame of the
//! core's commit log with one durable write ([`super::log`]), or, with the log off,
//! writes and fdatasyncs every dirty store of the core, all in flight together; every
//! write appended before the round began is durable when it and the rounds before it
//! have ended, and writers arriving meanwhile share the next round, which may start
//! while the first is still in flight (two at most). In `Sync` mode a reader waits for
//! the round that makes what it would read durable; in `Buffered` mode a round runs
//! within `flush_interval`, or at once when the journal holds `EARLY_ROUND_BYTES`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use event_listener::Event;

use crate::core::{Core, LeafState};
use crate::error::Result;
use crate::options::Durability;

/// Commit rounds a core keeps in flight at most: a second round takes the writes that
/// arrive while the first syncs, so the device always has syncs to overlap.
const COMMIT_ROUNDS_MAX: usize = 2;
/// In `Buffered` mode a round starts as soon as the journal holds this much, not only
/// every `flush_interval`: at a high write rate a 50 ms round took 8 MB frames, each
/// copied twice on its way out, and glibc's malloc, seeing such blocks freed, raised
/// its mmap threshold and kept the memory (a 400 k-key load: 363 MiB resident for a
/// 162 MiB cache).
const EARLY_ROUND_BYTES: usize = 1 << 20;
/// Journal bytes at which a core stops taking queued puts (acknowledged before they
/// reach it) until a round has made them durable: the bound on what writes that
/// outrun the device hold in memory.
pub(super) const QUEUED_BACKLOG_BYTES: usize = 4 * EARLY_ROUND_BYTES;

/// The group-commit state of a core: tickets handed out, rounds in flight, tickets made
/// durable.
///
/// Invariant: `durable` only ever covers rounds that succeeded with every round started
/// before them: a round takes the dirty flags set since the round before it took theirs,
/// so it vouches for its writes only if the rounds before it did too. A failed round
/// poisons the rounds started before it failed (they may have skipped a store it left
/// dirty); their writers commit again.
#[derive(Default)]
pub(super) struct Committer {
    requested: Cell<u64>,
    durable: Cell<u64>,
    /// Tickets up to this are in a round that may still make them durable.
    started: Cell<u64>,
    rounds: RefCell<VecDeque<Round>>,
    next_round: Cell<u64>,
    done: Event,
    pub(super) commits: Cell<u64>,
}

/// A commit round in flight (or done behind one that is not).
struct Round {
    id: u64,
    target: u64,
    outcome: Option<bool>,
    poisoned: bool,
    /// Substores and the sequence up to which the round makes them durable, marked
    /// once it and every round before it succeeded.
    marks: Vec<(Rc<LeafState>, u64)>,
}

impl Committer {
    /// Records a round's start; its id.
    fn start(&self, marks: Vec<(Rc<LeafState>, u64)>) -> u64 {
        let (id, target) = (self.next_round.get(), self.requested.get());
        self.next_round.set(id + 1);
        self.started.set(target);
        self.rounds.borrow_mut().push_back(Round {
            id,
            target,
            outcome: None,
            poisoned: false,
            marks,
        });
        id
    }

    /// Records a round's end and advances `durable` over the rounds done in order.
    fn finish(&self, id: u64, ok: bool) {
        let mut rounds = self.rounds.borrow_mut();
        let at = rounds
            .iter()
            .position(|r| r.id == id)
            .expect("a round in flight");
        rounds[at].outcome = Some(ok);
        if !ok {
            rounds
                .iter_mut()
                .skip(at + 1)
                .for_each(|r| r.poisoned = true);
        }
        while let Some(front) = rounds.front() {
            let Some(ok) = front.outcome else { break };
            if ok && !front.poisoned {
                self.durable.set(self.durable.get().max(front.target));
                for (leaf, seq) in &front.marks {
                    leaf.store.mark_durable(*seq);
                }
            }
            rounds.pop_front();
        }
        if !ok {
            // Tickets of the failed and poisoned rounds need a round again.
            self.started.set(self.durable.get());
        }
        self.commits.set(self.commits.get() + 1);
        self.done.notify(usize::MAX);
    }
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
        self.settle_as(self.options.durability).await
    }

    /// [`Core::settle`] for a write acknowledged as `durability` says. A `Buffered`
    /// write in a `Sync` database is answered at once, but a read of its key still
    /// waits until it is durable (a `Sync` database never shows what a crash could
    /// take back); a `Sync` write in a `Buffered` database waits for its commit.
    pub(super) async fn settle_as(self: &Rc<Self>, durability: Durability) -> Result<()> {
        match durability {
            Durability::Buffered => {
                self.settle_buffered();
                Ok(())
            }
            _ => self.commit().await,
        }
    }

    /// [`Core::settle`] in `Buffered` mode, which never waits: a round within
    /// `flush_interval`, or at once if the journal is large.
    pub(super) fn settle_buffered(self: &Rc<Self>) {
        if self.journal_bytes() >= EARLY_ROUND_BYTES {
            self.start_early_round();
        }
        self.schedule_flush();
    }

    /// Waits until everything appended on this core before the call is durable, sharing
    /// a round of syncs with every caller that arrives while it is in flight; up to
    /// `COMMIT_ROUNDS_MAX` rounds overlap.
    pub(super) async fn commit(&self) -> Result<()> {
        let c = &self.commit;
        let ticket = c.requested.get() + 1;
        c.requested.set(ticket);
        loop {
            self.health.check_writable()?;
            if c.durable.get() >= ticket {
                return Ok(());
            }
            let covered = c.started.get() >= ticket;
            if !covered && c.rounds.borrow().len() < COMMIT_ROUNDS_MAX {
                if self.log_wants_start() {
                    self.start_log().await?;
                    continue;
                }
                let mut input = self.round_input();
                let id = c.start(std::mem::take(&mut input.marks));
                let result = self.round(input).await;
                c.finish(id, result.is_ok());
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
        self.flush_stores(dirty).await
    }

    /// Writes and syncs each of `stores`, all in flight together.
    pub(super) async fn flush_stores(&self, stores: Vec<Rc<LeafState>>) -> Result<()> {
        let tasks: Vec<_> = stores
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

    /// Buffered mode: a round now, in a task of its own, unless one started this way
    /// is still running.
    fn start_early_round(self: &Rc<Self>) {
        if self.early_round.replace(true) {
            return;
        }
        let core = self.clone();
        glommio::spawn_local(async move {
            // A failure is recorded in Health; the next write reports it.
            let _ = core.commit().await;
            core.early_round.set(false);
        })
        .detach();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `n` tickets, as writers do before they commit.
    fn request(c: &Committer, n: u64) {
        c.requested.set(c.requested.get() + n);
    }

    #[test]
    fn a_round_that_ends_first_waits_for_the_round_before_it() {
        let c = Committer::default();
        request(&c, 3);
        let first = c.start(Vec::new());
        request(&c, 2);
        let second = c.start(Vec::new());
        assert_eq!(c.started.get(), 5);
        c.finish(second, true);
        assert_eq!(c.durable.get(), 0, "the first round has not ended");
        c.finish(first, true);
        assert_eq!(c.durable.get(), 5);
        assert!(c.rounds.borrow().is_empty());
        assert_eq!(c.commits.get(), 2);
    }

    #[test]
    fn a_failed_round_poisons_the_rounds_started_before_it_failed() {
        let c = Committer::default();
        request(&c, 1);
        let first = c.start(Vec::new());
        c.finish(first, true);
        request(&c, 2);
        let failing = c.start(Vec::new());
        request(&c, 2);
        let after = c.start(Vec::new());
        c.finish(failing, false);
        assert_eq!(c.durable.get(), 1);
        assert_eq!(c.started.get(), 1, "their tickets need a round again");
        c.finish(after, true);
        assert_eq!(
            c.durable.get(),
            1,
            "it may have skipped what the failed one left"
        );
        request(&c, 1);
        let retry = c.start(Vec::new());
        c.finish(retry, true);
        assert_eq!(
            c.durable.get(),
            6,
            "a round started afterwards vouches for all"
        );
    }
}
