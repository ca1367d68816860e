//! What the cache keeps: S3-FIFO (Yang et al., SOSP 2023), run by the writer alone.
//!
//! - **Queues.** A new entry goes to the small queue (a tenth of the budget). Leaving
//!   it, an entry read since it came moves to the main queue; one never read is dropped
//!   and its hash remembered as a ghost. A key that comes back while its ghost is
//!   remembered goes straight to the main queue. Leaving the main queue, an entry read
//!   since its last turn goes round again (its count of reads lowered by one); else it
//!   is dropped. So one pass over many keys (a scan, a bulk load) pushes out only
//!   entries that are themselves read once, never the values read over and over.
//! - **Dead entries.** An entry removed or replaced is unlinked at once but stays in
//!   its queue, charged, until the queue reaches it or a sweep (once dead entries take
//!   a quarter of the budget) drops them all; the queue is what frees it.
//! - **Invariant.** Every entry allocated and not yet retired is in exactly one queue;
//!   `small_bytes + main_bytes` is what those entries are charged, at most the budget
//!   after every call.

use std::collections::{HashSet, VecDeque};

use super::table::{EntryPtr, FREQ_MAX, Table, free_now, retire};

/// `Entry::place` bits: in the main queue (else the small one); linked in the table.
const MAIN: u8 = 1;
const LINKED: u8 = 2;

#[derive(Debug)]
pub(super) struct Policy {
    small: VecDeque<EntryPtr>,
    main: VecDeque<EntryPtr>,
    small_bytes: u64,
    main_bytes: u64,
    /// Charged bytes of the queued entries no longer linked.
    dead_bytes: u64,
    /// Bytes the entries may be charged, with `reserved`.
    budget: u64,
    /// Bytes of the budget lent to something else (the core's copy of its key order).
    reserved: u64,
    ghosts: Ghosts,
}

impl Policy {
    pub(super) fn new(budget: u64) -> Self {
        Self {
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_bytes: 0,
            main_bytes: 0,
            dead_bytes: 0,
            budget,
            reserved: 0,
            ghosts: Ghosts::default(),
        }
    }

    /// Lends `bytes` of the budget elsewhere (replacing the last loan), evicting until
    /// the entries fit what is left; whether it was at most `max`, else nothing is
    /// lent.
    pub(super) fn reserve(&mut self, table: &Table, bytes: u64, max: u64) -> bool {
        let fits = bytes <= max;
        self.reserved = if fits { bytes } else { 0 };
        self.evict(table);
        fits
    }

    /// Bytes the entries are charged now.
    pub(super) fn charged(&self) -> u64 {
        self.small_bytes + self.main_bytes
    }

    /// Links `new` (fresh) in place of `key`'s entry, or as a new key, then evicts
    /// until the charges fit the budget again.
    pub(super) fn insert(&mut self, table: &Table, new: EntryPtr) {
        let hash = new.get().hash;
        match table.linked(hash, new.key()) {
            Some(old) => {
                table.replace(old, new);
                let reads = old.get().freq.load(relaxed());
                new.get().freq.store(reads, relaxed());
                let main = old.get().place.load(relaxed()) & MAIN != 0;
                // Last use of `old`: a sweep may retire it.
                self.mark_dead(old);
                self.push(new, main);
            }
            None => {
                table.link(new);
                let returning = self.ghosts.take(hash);
                self.push(new, returning);
            }
        }
        self.evict(table);
    }

    /// Unlinks `key`'s entry, if there is one.
    pub(super) fn remove(&mut self, table: &Table, hash: u64, key: &[u8]) {
        if let Some(old) = table.linked(hash, key) {
            table.unlink(old);
            self.mark_dead(old);
        }
    }

    /// Unlinks and retires every entry.
    pub(super) fn clear(&mut self, table: &Table) {
        table.unlink_all();
        for entry in self.small.drain(..).chain(self.main.drain(..)) {
            retire(entry);
        }
        (self.small_bytes, self.main_bytes, self.dead_bytes) = (0, 0, 0);
        self.ghosts = Ghosts::default();
    }

    fn push(&mut self, entry: EntryPtr, main: bool) {
        let place = LINKED | if main { MAIN } else { 0 };
        entry.get().place.store(place, relaxed());
        let cost = super::charge(entry.payload_len());
        match main {
            true => (self.main.push_back(entry), self.main_bytes += cost),
            false => (self.small.push_back(entry), self.small_bytes += cost),
        };
    }

    /// Notes that `entry`, still queued, is no longer linked; sweeps the queues once
    /// such entries take a quarter of the budget.
    fn mark_dead(&mut self, entry: EntryPtr) {
        entry.get().place.fetch_and(!LINKED, relaxed());
        self.dead_bytes += super::charge(entry.payload_len());
        if self.dead_bytes > self.budget / 4 {
            self.sweep();
        }
    }

    fn sweep(&mut self) {
        for (queue, bytes) in [
            (&mut self.small, &mut self.small_bytes),
            (&mut self.main, &mut self.main_bytes),
        ] {
            queue.retain(|&entry| {
                let keep = is_linked(entry);
                if !keep {
                    *bytes -= super::charge(entry.payload_len());
                    retire(entry);
                }
                keep
            });
        }
        self.dead_bytes = 0;
    }

    fn evict(&mut self, table: &Table) {
        while self.charged() + self.reserved > self.budget && self.charged() > 0 {
            if self.small_bytes > self.budget / 10 || self.main.is_empty() {
                self.evict_small(table);
            } else {
                self.evict_main(table);
            }
        }
    }

    fn evict_small(&mut self, table: &Table) {
        let Some(entry) = self.small.pop_front() else {
            return;
        };
        let cost = super::charge(entry.payload_len());
        self.small_bytes -= cost;
        if !is_linked(entry) {
            self.dead_bytes -= cost;
            retire(entry);
        } else if entry.get().freq.load(relaxed()) > 0 {
            entry.get().freq.store(0, relaxed());
            self.push(entry, true);
        } else {
            table.unlink(entry);
            self.ghosts.add(entry.get().hash, self.main.len());
            retire(entry);
        }
    }

    fn evict_main(&mut self, table: &Table) {
        let Some(entry) = self.main.pop_front() else {
            return;
        };
        let cost = super::charge(entry.payload_len());
        self.main_bytes -= cost;
        let reads = entry.get().freq.load(relaxed());
        if !is_linked(entry) {
            self.dead_bytes -= cost;
            retire(entry);
        } else if reads > 0 {
            entry.get().freq.store(reads.min(FREQ_MAX) - 1, relaxed());
            self.push(entry, true);
        } else {
            table.unlink(entry);
            retire(entry);
        }
    }
}

impl Drop for Policy {
    #[allow(unsafe_code, reason = "frees the entries the queues own")]
    fn drop(&mut self) {
        for entry in self.small.drain(..).chain(self.main.drain(..)) {
            // SAFETY: the policy is dropped with its cache, which no reader can be
            // looking up in any more (they borrow it); the queues hold each entry once.
            unsafe { free_now(entry) };
        }
    }
}

fn is_linked(entry: EntryPtr) -> bool {
    entry.get().place.load(relaxed()) & LINKED != 0
}

/// The writer alone changes `place` and reads it; readers' `freq` counts are hints.
fn relaxed() -> std::sync::atomic::Ordering {
    std::sync::atomic::Ordering::Relaxed
}

/// Hashes of keys lately dropped from the small queue, at most as many as the main
/// queue holds entries. A hash taken back leaves a stale place in the ring, which may
/// later forget the same hash added again: a ghost is a hint.
#[derive(Debug, Default)]
struct Ghosts {
    set: HashSet<u64, ahash::RandomState>,
    ring: VecDeque<u64>,
}

impl Ghosts {
    fn add(&mut self, hash: u64, keep: usize) {
        if self.set.insert(hash) {
            self.ring.push_back(hash);
        }
        while self.ring.len() > keep.max(1) {
            if let Some(old) = self.ring.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    /// Whether `hash` was a ghost (it is not any more).
    fn take(&mut self, hash: u64) -> bool {
        self.set.remove(&hash)
    }
}
