//! A core's side of atomic write batches ([`crate::batch`]; ARCHITECTURE.md, "Atomic
//! write batches"): the keys batches hold locked here, the batch log of the batches
//! this core coordinates, and the coordinator's steps.
//!
//! A batch runs on its coordinator (the core of its first write), in a task of its own:
//!
//! 1. **Lock**, one participant after another in core order (so two batches never wait
//!    for each other): each core locks its keys of the batch once none of them is
//!    locked. A locked key takes no write but the batch's own; a read of it waits;
//!    a `Buffered` put queued for it is deferred (kept in order) until the unlock.
//! 2. **Commit**: the batch's frame, durable in the coordinator's batch log
//!    ([`super::batch_log`], group-committed).
//!    A `Sync` batch's caller is answered here: the batch is durable (open would apply
//!    it). A `Buffered` batch's caller was answered as soon as its frame was queued,
//!    unless [`BUFFERED_UNWRITTEN_MAX`] appends were already waiting to be written (then
//!    here too): a crash may lose it until a flush, whole (its frame is all there is).
//! 3. **Apply**, on every participant together: its writes appended, then a commit
//!    round (durable whatever the database's mode).
//! 4. **Done**: a frame saying so, durable (or, when the log is full, the reset of the
//!    frame's generation once no batch of it is pending).
//! 5. **Unlock** everywhere: deferred puts first, then waiting writers and readers.
//!
//! The coordinator's own part is locked, applied and unlocked in place; the others
//! through their cores' queues.
//!
//! A reader that saw one key of a batch sees all of it: keys are unlocked only after
//! every part is applied. A committed batch that could not be applied everywhere
//! latches the database read-only: the next open applies it (its frame has no done).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_listener::Event;
use ringkv_engine::StoredRecord;

use super::{Core, Op, Receipt, ReplyTo};
use crate::batch::{BatchOp, done_frame, frame};
use crate::error::{Error, Result};
use crate::options::Durability;

/// Appends a coordinator's batch log may hold queued, not yet written, before a
/// `Buffered` batch's caller waits for its commit like a `Sync` one's (so callers that
/// outpace the device slow to its pace instead of queueing without bound).
pub(super) const BUFFERED_UNWRITTEN_MAX: u64 = 256;

/// A batch's writes on one core, and the keys a transaction read there with the
/// versions it saw (checked once the keys are locked).
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) core: usize,
    pub(crate) ops: Vec<BatchOp>,
    pub(crate) reads: Vec<Read>,
}

impl Part {
    /// The keys the part locks: those it writes and those it read.
    fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.ops.iter().map(|op| op.key.clone()).collect();
        let written: std::collections::HashSet<&[u8]> =
            self.ops.iter().map(|op| op.key.as_slice()).collect();
        (self.reads.iter())
            .filter(|r| !written.contains(r.key.as_slice()))
            .for_each(|r| keys.push(r.key.clone()));
        keys
    }
}

/// A key a transaction read, and the version of its value it saw.
#[derive(Clone, Debug)]
pub(crate) struct Read {
    pub(crate) hash: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) version: Version,
}

/// A live record (value, metadata, expiry), as a transaction reads it.
pub(crate) type Versioned = Option<StoredRecord>;

/// Which record a read saw: the answering store's id and the record's sequence;
/// `None` for no live value. Any write of the key changes it (a split moving the key
/// does too: a conflict the caller retries, never a missed one).
pub(crate) type Version = Option<(u64, u64)>;

/// Counts a batch from its call until its coordinator is done with it (close waits),
/// and holds the database's batch gate meanwhile (a checkpoint waits for it, so that
/// no batch is half applied in a checkpoint).
#[derive(Debug)]
pub(crate) struct Ticket(
    Arc<AtomicUsize>,
    #[allow(dead_code, reason = "held")] BatchGate,
);

/// A batch's share of the database's batch gate (a checkpoint takes all of it).
pub(crate) type BatchGate = async_lock::RwLockReadGuardArc<()>;

impl Ticket {
    pub(crate) fn new(in_flight: &Arc<AtomicUsize>, gate: BatchGate) -> Self {
        in_flight.fetch_add(1, Ordering::SeqCst);
        Self(in_flight.clone(), gate)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A `Buffered` put that was queued for a locked key.
struct Deferred {
    hash: u64,
    value: Vec<u8>,
    receipt: Receipt,
}

/// A value a batch wrote, cached at its unlock (caching it earlier would let a
/// caller's thread read one core's part before the others are applied).
struct Written {
    hash: u64,
    leaf: Rc<super::LeafState>,
    seq: u64,
    value: bytes::Bytes,
    expiry_unix_ms: Option<u64>,
}

/// What a core keeps for batches.
#[derive(Default)]
pub(super) struct Batches {
    /// Keys locked by a batch in flight, each with the puts deferred behind it.
    locks: RefCell<HashMap<Vec<u8>, Vec<Deferred>>>,
    /// Values of locked keys the batch holding them wrote.
    written: RefCell<HashMap<Vec<u8>, Written>>,
    unlocked: Event,
    next_id: Cell<u64>,
}

impl Batches {
    pub(super) fn holds(&self, key: &[u8]) -> bool {
        let locks = self.locks.borrow();
        !locks.is_empty() && locks.contains_key(key)
    }

    /// Resolves once no batch holds `key`.
    pub(super) async fn until_unlocked(&self, key: &[u8]) {
        while self.holds(key) {
            let listener = self.unlocked.listen();
            if self.holds(key) {
                listener.await;
            }
        }
    }
}

impl Core {
    /// Runs a batch whose parts (sorted by core) are `parts`: locks, checks what a
    /// transaction read (`Error::Conflict` if any changed), commits, answers `reply`
    /// once the batch is committed (its frame durable: open applies it whatever
    /// happens next), then applies it, marks it done and unlocks. A read of its keys
    /// waits for the unlock, so no reader can tell the early answer.
    pub(super) async fn coordinate(
        self: &Rc<Self>,
        parts: Vec<Part>,
        durability: Durability,
        reply: ReplyTo<()>,
    ) {
        let keys: Vec<(usize, Vec<Vec<u8>>)> = parts.iter().map(|p| (p.core, p.keys())).collect();
        for (at, (part, (core, part_keys))) in parts.iter().zip(&keys).enumerate() {
            let lock = self.on(
                *core,
                (part_keys.clone(), part.reads.clone()),
                async |c, (keys, reads)| c.lock_keys(keys, reads).await,
                |(keys, reads), r| Op::BatchLock(keys, reads, r),
            );
            let refused = match lock.await {
                Ok(true) => continue,
                Ok(false) => (at + 1, Error::Conflict),
                Err(e) => (at, e),
            };
            self.unlock(&keys[..refused.0]).await;
            return reply.send(Err(refused.1));
        }
        let parts: Vec<Part> = parts.into_iter().filter(|p| !p.ops.is_empty()).collect();
        if parts.is_empty() {
            reply.send(Ok(())); // a transaction that only read: its reads held
        } else {
            self.commit_locked(parts, durability, reply).await;
        }
        self.unlock(&keys).await;
    }

    /// Commits (answering `reply`: see the module documentation for when), applies and
    /// marks done a batch whose keys are locked.
    async fn commit_locked(
        self: &Rc<Self>,
        parts: Vec<Part>,
        durability: Durability,
        reply: ReplyTo<()>,
    ) {
        let id = self.batches.next_id.get();
        self.batches.next_id.set(id + 1);
        let payload: Vec<u8> = parts.iter().flat_map(|p| frame(id, &p.ops)).collect();
        let early = durability == Durability::Buffered
            && self.batch_log_unwritten() < BUFFERED_UNWRITTEN_MAX;
        let ticket = match self.batch_log_enqueue(payload, false) {
            Ok(ticket) => ticket,
            Err(e) => return reply.send(Err(e)),
        };
        let reply = match early {
            true => {
                reply.send(Ok(()));
                None
            }
            false => Some(reply),
        };
        match (self.batch_log_written(ticket).await, reply) {
            (Ok(()), reply) => reply.into_iter().for_each(|r| r.send(Ok(()))),
            (Err(e), Some(reply)) => return reply.send(Err(e)),
            // Answered already: the failed write latched the database read-only, as a
            // failed flush does after `Buffered` puts; the batch is absent, whole.
            (Err(_), None) => return,
        }
        let applies = parts.into_iter().map(|p| {
            self.on(
                p.core,
                p.ops,
                async |c, ops| c.apply_part(ops).await,
                Op::BatchApply,
            )
        });
        let applied: Result<Vec<()>> = futures_util::future::join_all(applies)
            .await
            .into_iter()
            .collect();
        let done = match applied {
            Ok(_) => self.batch_log_append(done_frame(id), true).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let cause = format!("a committed write batch could not be applied ({e})");
            self.health.fail(cause);
        }
    }

    async fn unlock(self: &Rc<Self>, keys: &[(usize, Vec<Vec<u8>>)]) {
        let unlocks = (keys.iter()).map(|(core, keys)| {
            self.on(
                *core,
                keys.clone(),
                async |c, keys| {
                    c.unlock_keys(keys).await;
                    Ok(())
                },
                Op::BatchUnlock,
            )
        });
        // A core that cannot answer has stopped or died: its locks went with it.
        let _ = futures_util::future::join_all(unlocks).await;
    }

    /// Runs a step of a batch with `arg` on core `core`: here, directly (`here`), or
    /// through its queue (`op`).
    async fn on<A, T: Send + 'static>(
        self: &Rc<Self>,
        core: usize,
        arg: A,
        here: impl AsyncFnOnce(&Rc<Core>, A) -> Result<T>,
        op: impl FnOnce(A, ReplyTo<T>) -> Op,
    ) -> Result<T> {
        match core == self.index {
            true => here(self, arg).await,
            false => self.peers.call(core, 0, |reply| op(arg, reply)).await,
        }
    }

    /// Locks `keys` for a batch, once no other batch holds any of them; then answers
    /// whether every key of `reads` still has the version it had. Reads in flight do
    /// not cache what they read (a write counts).
    pub(super) async fn lock_keys(&self, keys: Vec<Vec<u8>>, reads: Vec<Read>) -> Result<bool> {
        loop {
            self.health.check_writable()?;
            let free = {
                let locks = self.batches.locks.borrow();
                keys.iter().all(|k| !locks.contains_key(k))
            };
            if free {
                let mut locks = self.batches.locks.borrow_mut();
                for key in keys {
                    self.cache.remove(&key);
                    locks.insert(key, Vec::new());
                }
                self.writes.set(self.writes.get() + 1);
                let held = |r: &Read| self.leaf(r.hash).version(&r.key) == r.version;
                return Ok(reads.iter().all(held));
            }
            let listener = self.batches.unlocked.listen();
            let held = {
                let locks = self.batches.locks.borrow();
                keys.iter().any(|k| locks.contains_key(k))
            };
            if held {
                listener.await;
            }
        }
    }

    /// A transaction's read: `key`'s value and expiry (once readable) and the version
    /// they are.
    pub(super) async fn get_versioned(
        &self,
        hash: u64,
        key: &[u8],
    ) -> Result<(Versioned, Version)> {
        loop {
            let before = self.leaf(hash).version(key);
            let record = self.read(hash, key).await?;
            if self.leaf(hash).version(key) == before {
                return Ok((record, before));
            }
        }
    }

    /// Appends a batch's writes on this core (its keys locked by it) and commits them.
    pub(super) async fn apply_part(self: &Rc<Self>, ops: Vec<BatchOp>) -> Result<()> {
        let mut written = Vec::new();
        for op in ops {
            let put = op.value.as_ref().map(|v| (v, &op.extras));
            let (leaf, seq) = (self.append_as(op.hash, &op.key, put, super::Locks::Held)).await?;
            if let Some(value) = op.value {
                let expiry_unix_ms = op.extras.expiry_unix_ms;
                let (hash, key) = (op.hash, op.key);
                written.push((
                    key,
                    Written {
                        hash,
                        leaf,
                        seq,
                        value,
                        expiry_unix_ms,
                    },
                ));
            }
        }
        self.commit().await?;
        self.batches.written.borrow_mut().extend(written);
        Ok(())
    }

    /// Unlocks `keys`: the puts deferred behind each are appended first, in order; the
    /// values the batch wrote are cached (if still the keys' newest).
    pub(super) async fn unlock_keys(self: &Rc<Self>, keys: Vec<Vec<u8>>) {
        for key in keys {
            let written = self.batches.written.borrow_mut().remove(&key);
            if let Some(w) = written {
                self.admit(w.hash, &w.leaf, &key, w.seq, w.value, w.expiry_unix_ms);
            }
            loop {
                let deferred = match self.batches.locks.borrow_mut().get_mut(&key) {
                    Some(deferred) => std::mem::take(deferred),
                    None => break,
                };
                if deferred.is_empty() {
                    self.batches.locks.borrow_mut().remove(&key);
                    break;
                }
                for put in deferred {
                    self.put_now(put.hash, key.clone(), put.value, put.receipt)
                        .await;
                }
            }
        }
        self.batches.unlocked.notify(usize::MAX);
    }

    /// Defers a queued put of a locked key until its unlock; gives the put back if no
    /// batch holds the key.
    pub(super) fn defer_if_locked(
        &self,
        hash: u64,
        key: &[u8],
        value: Vec<u8>,
        receipt: Receipt,
    ) -> std::result::Result<(), (Vec<u8>, Receipt)> {
        let mut locks = self.batches.locks.borrow_mut();
        let Some(deferred) = locks.get_mut(key) else {
            return Err((value, receipt));
        };
        deferred.push(Deferred {
            hash,
            value,
            receipt,
        });
        self.cache.remove(key);
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
}
