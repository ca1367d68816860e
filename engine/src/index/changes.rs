//! The key-set changes of one index since a [`KeyOrder`](crate::KeyOrder) over several
//! indexes last caught up with it: the slots given a key, and the slots the order holds
//! whose key was removed (with a copy of that key, since the slot may be reused before
//! the order catches up, and the order finds a key's place by its bytes).
//!
//! Invariants, between two catch-ups: a slot in `added` is live and not in the order;
//! a slot in `removed` is in the order under the key kept for it, and is not live
//! unless it is also in `added`; every other slot the order holds is live under the
//! key it had at the last catch-up (a key's slot never changes while it lives).
//!
//! Every change, recorded or not (one that cancels an earlier one, one past the
//! bound), also counts in the order's shared change count, which other threads read to
//! learn whether a copy of the order made at a count is still current.
//!
//! Recording costs a set insert or a key copy per new or removed key; replacing a
//! value records nothing. Past [`CHANGES_MAX_SHARE`] of the index's keys (at least
//! [`CHANGES_MIN`]) the changes are dropped and `overflowed` set: catching up would
//! cost about as much as building the order again, which the order then does.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use hashbrown::HashSet;

/// Changes always kept before the record overflows.
const CHANGES_MIN: usize = 4096;
/// Past this share of the index's live keys (1/n), the record overflows.
const CHANGES_MAX_SHARE: usize = 4;

/// Changes since an order last caught up.
#[derive(Debug)]
pub(crate) struct Changes {
    /// The order they are kept for.
    pub(crate) token: u64,
    pub(crate) added: HashSet<u32, RandomState>,
    /// Slots removed and their keys' places in `removed_keys`.
    pub(crate) removed: Vec<(u32, Range<usize>)>,
    pub(crate) removed_keys: Vec<u8>,
    /// Too many changes: they were dropped, and the order must be built again.
    pub(crate) overflowed: bool,
    /// The order's count of changes, shared with every index it covers.
    count: Arc<AtomicU64>,
}

impl Changes {
    pub(crate) fn new(token: u64, count: Arc<AtomicU64>) -> Self {
        Self {
            token,
            added: HashSet::with_hasher(RandomState::new()),
            removed: Vec::new(),
            removed_keys: Vec::new(),
            overflowed: false,
            count,
        }
    }

    /// Counts a change before it is recorded (Release: a thread that learns of the
    /// change by other means, then reads the count, sees it counted).
    fn count(&self) {
        self.count.fetch_add(1, Ordering::Release);
    }

    /// Slot `id` was given a key; `live` keys are indexed.
    pub(crate) fn add(&mut self, id: u32, live: usize) {
        self.count();
        if !self.overflowed {
            self.added.insert(id);
            self.bound(live);
        }
    }

    /// Slot `id`'s key `key` was removed; `live` keys are indexed.
    pub(crate) fn remove(&mut self, id: u32, key: &[u8], live: usize) {
        self.count();
        if self.overflowed || self.added.remove(&id) {
            return;
        }
        let at = self.removed_keys.len();
        self.removed_keys.extend_from_slice(key);
        self.removed.push((id, at..self.removed_keys.len()));
        self.bound(live);
    }

    /// Drops everything once the changes pass their bound.
    fn bound(&mut self, live: usize) {
        let max = (live / CHANGES_MAX_SHARE).max(CHANGES_MIN);
        if self.len() > max {
            *self = Self {
                overflowed: true,
                ..Self::new(self.token, self.count.clone())
            };
        }
    }

    /// The changes so far, leaving none (the order has caught up).
    pub(crate) fn take(&mut self) -> Self {
        std::mem::replace(self, Self::new(self.token, self.count.clone()))
    }

    /// Changes recorded (none once overflowed).
    pub(crate) fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    /// The key removed from slot `removed[i]`.
    pub(crate) fn removed_key(&self, i: usize) -> &[u8] {
        &self.removed_keys[self.removed[i].1.clone()]
    }

    /// Heap bytes held (capacities).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.added.allocation_size()
            + self.removed.capacity() * std::mem::size_of::<(u32, Range<usize>)>()
            + self.removed_keys.capacity()
    }
}
