//! Puts acknowledged once queued (`Durability::Buffered`, from a plain thread): the
//! receipts that let the thread that queued them read its own writes, and the core's
//! half: appending a queued put before the serve loop takes the next request.
//!
//! A queued put returns to its caller as soon as it is in its core's queue; the core
//! appends it before it takes the next request (the queue is FIFO), so anything the
//! thread asks that core later sees the put. Only a read *beside* the core (a cache
//! hit on the caller's thread) could overtake it, so each thread keeps the puts its
//! cores have not yet applied, and a read of one of those keys skips the cache and
//! queues behind them.
//!
//! Invariants: a thread has at most [`PENDING_MAX`] puts queued and not yet applied (the
//! next one waits for the oldest); a receipt marks its put applied when the core drops
//! it, which the core does only after the put is appended (or failed, which latches
//! the database read-only) — or when the request is discarded by a stopped core.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::{CoreShared, commit};

/// Puts a thread may have queued and not yet applied.
pub(crate) const PENDING_MAX: usize = 16;

/// The last ticket applied in each of a thread's slots (ticket `t` uses slot
/// `t % PENDING_MAX`).
#[derive(Debug)]
struct Applied([AtomicU64; PENDING_MAX]);

/// Travels with a queued put; marks it applied when dropped.
#[derive(Debug)]
pub(crate) struct Receipt {
    applied: Arc<Applied>,
    ticket: u64,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        self.applied.0[slot(self.ticket)].store(self.ticket, Ordering::Release);
    }
}

/// A thread's queued puts, slot by slot: the key's hash, the ticket (0: none yet) and
/// the core of each.
struct Pending {
    applied: Arc<Applied>,
    issued: Cell<u64>,
    hashes: [Cell<u64>; PENDING_MAX],
    tickets: [Cell<u64>; PENDING_MAX],
    /// Weak: a thread must not keep a closed database's queues allocated.
    cores: [Cell<Weak<CoreShared>>; PENDING_MAX],
}

thread_local! {
    static PENDING: Pending = Pending {
        applied: Arc::new(Applied(std::array::from_fn(|_| AtomicU64::new(0)))),
        issued: Cell::new(0),
        hashes: std::array::from_fn(|_| Cell::new(0)),
        tickets: std::array::from_fn(|_| Cell::new(0)),
        cores: std::array::from_fn(|_| Cell::new(Weak::new())),
    };
}

fn slot(ticket: u64) -> usize {
    (ticket % PENDING_MAX as u64) as usize
}

impl Pending {
    fn waiting(&self, at: usize) -> bool {
        let ticket = self.tickets[at].get();
        ticket != 0 && self.applied.0[at].load(Ordering::Acquire) != ticket
    }

    /// Whether slot `at`'s put was queued on `core`.
    fn on(&self, at: usize, core: &Arc<CoreShared>) -> bool {
        let queued_on = self.cores[at].take();
        let on = std::ptr::eq(queued_on.as_ptr(), Arc::as_ptr(core));
        self.cores[at].set(queued_on);
        on
    }

    /// Waits until slot `at`'s put is applied, or its core no longer serves (a core
    /// that died may have lost the put with its executor).
    fn wait_for(&self, at: usize) {
        if let Some(core) = self.cores[at].take().upgrade() {
            while self.waiting(at) && core.serving() {
                core.wake();
                std::thread::yield_now();
            }
        }
    }
}

/// A receipt for a put of `hash` queued on `core`, recorded as this thread's newest
/// pending put; waits first while the thread already has [`PENDING_MAX`] of them.
pub(crate) fn issue(hash: u64, core: &Arc<CoreShared>) -> Receipt {
    PENDING.with(|pending| {
        let ticket = pending.issued.get() + 1;
        pending.issued.set(ticket);
        let at = slot(ticket);
        pending.wait_for(at);
        pending.hashes[at].set(hash);
        pending.tickets[at].set(ticket);
        pending.cores[at].set(Arc::downgrade(core));
        Receipt {
            applied: pending.applied.clone(),
            ticket,
        }
    })
}

/// Whether this thread has a put of `hash` queued that its core has not applied yet.
pub(crate) fn pending(hash: u64) -> bool {
    PENDING.with(|pending| {
        (0..PENDING_MAX).any(|at| pending.hashes[at].get() == hash && pending.waiting(at))
    })
}

/// Whether this thread has a put queued on `core` that it has not applied yet.
pub(crate) fn pending_on(core: &Arc<CoreShared>) -> bool {
    PENDING.with(|pending| (0..PENDING_MAX).any(|at| pending.waiting(at) && pending.on(at, core)))
}

impl super::Core {
    /// A put whose caller was answered when it queued it: appended (and cached) before
    /// the serve loop takes the next request, so the caller's later requests see it.
    /// Its caller was told it succeeded, so its failure latches the database read-only.
    ///
    /// Its callers do not wait for it, so the serve loop waits instead when the writes
    /// outrun the device (nothing else would bound the memory they take): for the
    /// write-out of a full write buffer, as a put's own task does, and for a commit
    /// round once the journal holds [`commit::QUEUED_BACKLOG_BYTES`].
    pub(super) async fn put_queued(
        self: &Rc<Self>,
        hash: u64,
        key: Vec<u8>,
        value: Vec<u8>,
        receipt: Receipt,
    ) {
        // Appended in the poll that finds the key unlocked and its leaf not frozen.
        let (mut value, mut receipt) = (value, receipt);
        loop {
            match self.defer_if_locked(hash, &key, value, receipt) {
                Ok(()) => return, // appended by the batch's unlock
                Err(back) => (value, receipt) = back,
            }
            if !self.leaf(hash).frozen.get() {
                break;
            }
            self.split_settled(hash).await;
        }
        self.put_now(hash, key, value, receipt).await;
    }

    /// [`Core::put_queued`] of a key no batch holds (or the one whose unlock this is).
    pub(super) async fn put_now(
        self: &Rc<Self>,
        hash: u64,
        key: Vec<u8>,
        value: Vec<u8>,
        receipt: Receipt,
    ) {
        let value = Bytes::from(value);
        let appended = self.append_in_memory(hash, &key, &value).await;
        drop(receipt);
        let (leaf, seq) = match appended {
            Ok(appended) => appended,
            Err(e) => {
                let cause = format!("a put acknowledged once queued could not be applied: {e}");
                return self.health.fail(cause);
            }
        };
        self.settle_buffered();
        self.admit(hash, &leaf, &key, seq, value, None);
        if let Err(e) = leaf.store.write_out_if_full().await {
            self.failed(e); // latched if it was a failed write
        }
        if self.journal_bytes() >= commit::QUEUED_BACKLOG_BYTES {
            let _ = self.commit().await; // a failure is latched in Health
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_is_pending_until_its_receipt_is_dropped() {
        let (core, other) = (
            Arc::new(CoreShared::new(0, 64, None)),
            Arc::new(CoreShared::new(1, 64, None)),
        );
        let first = issue(7, &core);
        let second = issue(8, &core);
        assert!(pending(7) && pending(8) && !pending(9) && pending_on(&core));
        assert!(!pending_on(&other), "nothing queued there");
        drop(first);
        assert!(!pending(7) && pending(8) && pending_on(&core));
        drop(second);
        assert!(!pending(8) && !pending_on(&core));
    }

    #[test]
    fn a_thread_waits_for_its_oldest_put_only_while_its_core_serves() {
        let core = Arc::new(CoreShared::new(0, 64, None));
        let held: Vec<Receipt> = (0..PENDING_MAX as u64).map(|h| issue(h, &core)).collect();
        core.stop(); // the held receipts will never be dropped by a core
        let next = issue(100, &core);
        assert!(pending(100));
        drop((held, next));
    }
}
