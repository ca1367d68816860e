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
//! A scan page listed beside the core (from its published key order) could miss them
//! the same way, so the thread keeps a copy of each queued put's key and value (up to
//! [`KEPT_BYTES_MAX`]) and lays its own puts over such a page ([`own_puts_on`]); a page
//! of a core where one of them was too large to keep takes the trip instead.
//!
//! Invariants: a thread has at most [`PENDING_MAX`] puts queued and not yet applied (the
//! next one waits for the oldest); a receipt marks its put applied when the core drops
//! it, which the core does only after the put is appended (or failed, which latches
//! the database read-only) — or when the request is discarded by a stopped core. A
//! slot's kept key and value are rewritten only by this thread's next put in the slot.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;

use super::{CoreShared, commit};

/// Puts a thread may have queued and not yet applied.
pub(crate) const PENDING_MAX: usize = 16;

/// Bytes of key and value a thread keeps of each queued put for its scans (so at most
/// 16 times this a thread).
const KEPT_BYTES_MAX: usize = 2048;

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

/// A thread's queued puts, slot by slot: the key's hash, the ticket (0: none yet), the
/// core, and the key and value of each.
struct Pending {
    applied: Arc<Applied>,
    issued: Cell<u64>,
    hashes: [Cell<u64>; PENDING_MAX],
    tickets: [Cell<u64>; PENDING_MAX],
    /// Weak: a thread must not keep a closed database's queues allocated.
    cores: [Cell<Weak<CoreShared>>; PENDING_MAX],
    kept: [RefCell<Kept>; PENDING_MAX],
}

/// A queued put's key and value, one after the other, if they were small enough to
/// keep (the buffer is reused slot by slot).
#[derive(Debug, Default)]
struct Kept {
    bytes: Vec<u8>,
    key_len: usize,
    whole: bool,
}

impl Kept {
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.clear();
        self.whole = key.len() + value.len() <= KEPT_BYTES_MAX;
        if self.whole {
            self.bytes.extend_from_slice(key);
            self.bytes.extend_from_slice(value);
            self.key_len = key.len();
        }
    }
}

thread_local! {
    static PENDING: Pending = Pending {
        applied: Arc::new(Applied(std::array::from_fn(|_| AtomicU64::new(0)))),
        issued: Cell::new(0),
        hashes: std::array::from_fn(|_| Cell::new(0)),
        tickets: std::array::from_fn(|_| Cell::new(0)),
        cores: std::array::from_fn(|_| Cell::new(Weak::new())),
        kept: std::array::from_fn(|_| RefCell::default()),
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

/// A receipt for a put of `key` (its `hash`) queued on `core`, recorded as this
/// thread's newest pending put; waits first while the thread already has
/// [`PENDING_MAX`] of them.
pub(crate) fn issue(hash: u64, key: &[u8], value: &[u8], core: &Arc<CoreShared>) -> Receipt {
    PENDING.with(|pending| {
        let ticket = pending.issued.get() + 1;
        pending.issued.set(ticket);
        let at = slot(ticket);
        pending.wait_for(at);
        pending.hashes[at].set(hash);
        pending.tickets[at].set(ticket);
        pending.cores[at].set(Arc::downgrade(core));
        pending.kept[at].borrow_mut().set(key, value);
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

/// This thread's puts queued on one core and not applied yet when it looked, oldest
/// first (by slot): what a scan lays over a page it lists beside the core.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OwnPuts {
    slots: [u8; PENDING_MAX],
    len: usize,
    /// Every one's key and value was kept.
    kept: bool,
}

/// This thread's puts queued on `core` that it has not applied yet.
pub(crate) fn own_puts_on(core: &Arc<CoreShared>) -> OwnPuts {
    PENDING.with(|pending| {
        let mut own = OwnPuts {
            kept: true,
            ..OwnPuts::default()
        };
        let newest = pending.issued.get();
        for ticket in newest.saturating_sub(PENDING_MAX as u64 - 1)..=newest {
            let at = slot(ticket);
            if pending.waiting(at) && pending.on(at, core) {
                own.slots[own.len] = at as u8;
                own.len += 1;
                own.kept &= pending.kept[at].borrow().whole;
            }
        }
        own
    })
}

impl OwnPuts {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every one of them can be laid over a page ([`OwnPuts::each`] gives them
    /// all).
    pub(crate) fn kept(&self) -> bool {
        self.kept
    }

    /// Calls `f` with each one's key and value, oldest first (the kept ones).
    pub(crate) fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        PENDING.with(|pending| {
            for &at in &self.slots[..self.len] {
                let kept = pending.kept[at as usize].borrow();
                if kept.whole {
                    let (key, value) = kept.bytes.split_at(kept.key_len);
                    f(key, value);
                }
            }
        });
    }
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
        let first = issue(7, b"k7", b"v7", &core);
        let second = issue(8, b"k8", b"v8", &core);
        assert!(pending(7) && pending(8) && !pending(9));
        assert_eq!(
            own(&core),
            [
                (b"k7".to_vec(), b"v7".to_vec()),
                (b"k8".to_vec(), b"v8".to_vec())
            ]
        );
        assert!(own_puts_on(&other).is_empty(), "nothing queued there");
        drop(first);
        assert!(!pending(7) && pending(8));
        assert_eq!(own(&core), [(b"k8".to_vec(), b"v8".to_vec())]);
        drop(second);
        assert!(!pending(8) && own_puts_on(&core).is_empty());
    }

    /// This thread's kept puts on `core`, oldest first.
    fn own(core: &Arc<CoreShared>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut puts = Vec::new();
        own_puts_on(core).each(|k, v| puts.push((k.to_vec(), v.to_vec())));
        puts
    }

    #[test]
    fn a_put_too_large_to_keep_is_pending_but_not_laid_over() {
        let core = Arc::new(CoreShared::new(0, 64, None));
        let small = issue(1, b"a", b"1", &core);
        let large = issue(2, b"b", &[0; KEPT_BYTES_MAX], &core);
        let own_puts = own_puts_on(&core);
        assert!(!own_puts.is_empty() && !own_puts.kept() && pending(2));
        assert_eq!(own(&core), [(b"a".to_vec(), b"1".to_vec())]);
        drop((small, large));
        assert!(own_puts_on(&core).kept());
    }

    #[test]
    fn a_thread_waits_for_its_oldest_put_only_while_its_core_serves() {
        let core = Arc::new(CoreShared::new(0, 64, None));
        let held: Vec<Receipt> = (0..PENDING_MAX as u64)
            .map(|h| issue(h, b"k", b"v", &core))
            .collect();
        core.stop(); // the held receipts will never be dropped by a core
        let next = issue(100, b"k", b"v", &core);
        assert!(pending(100));
        drop((held, next));
    }
}
