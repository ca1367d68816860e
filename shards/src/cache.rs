//! A core's read cache: values under a byte budget, scan-resistant, readable from any
//! thread. Direct I/O bypasses the page cache, so this is the only cache between a get
//! and the disk.
//!
//! - **Who touches it.** The owning core is the only writer (fills, write admission,
//!   removal on every write), serialized by an uncontended lock; callers' threads read
//!   it directly, so a cached get costs no hop to the core. A lookup takes no lock and
//!   writes nothing shared but a read count (`table`: a fixed array of chains, entries
//!   freed through crossbeam's epoch).
//! - **Batches.** A page of a scan looks up its keys together ([`Cache::read_into`]):
//!   the buckets and entries of every key are asked for before any is compared, so
//!   their cache misses overlap instead of coming one after another. The values found
//!   are copied into the thread's spare buffer (`spare`): no allocation a value (the
//!   callers' threads and the core share one malloc arena, whose lock they fought
//!   over).
//! - **Policy.** S3-FIFO (`policy`): a new entry is kept only if it is read again before
//!   the small queue lets it go, so one pass over many keys (a scan, a bulk load) does
//!   not push out the values read over and over. Scans peek: their reads do not count.
//! - **Invariant (the core keeps it).** An entry is always the key's newest value and is
//!   readable by any caller (durable in `Sync` mode): the core removes a key before it
//!   appends a write of it, and inserts only values that are still the newest. Removal
//!   happens before the write is acknowledged, so a caller that saw its write
//!   acknowledged never finds the older value here (its lookup starts after the
//!   unlinking store, which it sees).
//! - **Expiry.** An entry keeps its key's expiry time; a lookup at or after it answers
//!   nothing (judged by the database's clock), as the index would.
//! - **Memory.** An entry is one allocation (header, key, value), charged its key and
//!   value plus [`ENTRY_OVERHEAD_BYTES`]; the bucket array is charged from the start.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use ahash::RandomState;
use bytes::Bytes;
use ringkv_engine::Clock;

mod policy;
#[allow(
    unsafe_code,
    reason = "entries are raw allocations (header, key, value) that readers reach without a lock and the epoch frees"
)]
mod table;

use crate::counter::Counter;
use crate::spare;
use policy::Policy;
use table::{EntryPtr, FREQ_MAX, Found, Table};

/// Bytes charged per entry on top of key and value: its header (48) and the
/// allocator's (8 to 16 with rounding), its place in a queue (8, and the queue's slack),
/// a ghost's share (a hash in a ring and a set: about 24). Checked by `tests/memory.rs`.
const ENTRY_OVERHEAD_BYTES: u64 = 112;

/// Keys whose lookups [`Cache::read_into`] makes together.
pub(crate) const LOOKUP_GROUP: usize = 16;

/// At most this share of the budget (1/n) is lent ([`Cache::lend`]).
const LOAN_SHARE: u64 = 2;

/// An entry larger than this share of the budget is not cached.
const LARGEST_SHARE: u64 = 8;
/// Budget bytes per bucket: with values of a few hundred bytes or more, chains stay
/// about one entry long.
const BYTES_PER_BUCKET: u64 = 256;

/// What an entry of `payload` key and value bytes is charged.
fn charge(payload: u64) -> u64 {
    payload + ENTRY_OVERHEAD_BYTES
}

#[derive(Debug)]
pub(crate) struct Cache {
    /// `None` with a budget of zero: nothing is cached.
    entries: Option<Entries>,
    budget_bytes: u64,
    hits: Counter,
    misses: Counter,
    clock: Clock,
}

struct Entries {
    table: Table,
    hasher: RandomState,
    writer: Mutex<Policy>,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(budget_bytes: u64, clock: Clock) -> Self {
        let entries = (budget_bytes > 0).then(|| {
            let buckets = (budget_bytes / BYTES_PER_BUCKET)
                .next_power_of_two()
                .max(16);
            let table = Table::new(buckets as usize);
            let budget = budget_bytes.saturating_sub(table.bytes());
            Entries {
                table,
                hasher: RandomState::new(),
                writer: Mutex::new(Policy::new(budget)),
            }
        });
        Self {
            entries,
            budget_bytes,
            hits: Counter::default(),
            misses: Counter::default(),
            clock,
        }
    }

    /// A caller's lookup: counted as a hit or a miss, and a read for the policy.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        let value = self.lookup(key, true);
        self.count(1, u64::from(value.is_some()));
        value
    }

    /// The core's second look after a caller's miss: not counted, and it leaves the
    /// entry's standing in the policy alone.
    pub(crate) fn peek(&self, key: &[u8]) -> Option<Bytes> {
        self.lookup(key, false)
    }

    fn lookup(&self, key: &[u8], counted: bool) -> Option<Bytes> {
        let entries = self.entries.as_ref()?;
        let hash = entries.hasher.hash_one(key);
        let guard = crossbeam_epoch::pin();
        self.answer(entries.table.find(hash, key, &guard), counted)
    }

    /// The values of `keys` that the cache holds, into `values` (one per key, `None`
    /// for a miss); `counted` as [`Cache::get`], else as [`Cache::peek`] (a scan's
    /// reads). Keys are looked up [`LOOKUP_GROUP`] at a time: every key's bucket, then
    /// every chain's first entry, then every value found is asked for before any is
    /// compared or copied, so that their cache misses overlap. Nothing is allocated
    /// (the callers' threads share one malloc arena).
    pub(crate) fn read_into(&self, keys: &[&[u8]], counted: bool, values: &mut [Option<Bytes>]) {
        let Some(entries) = &self.entries else {
            if counted {
                self.count(keys.len() as u64, 0);
            }
            values.fill(None);
            return;
        };
        let mut hits = 0;
        for (keys, values) in keys
            .chunks(LOOKUP_GROUP)
            .zip(values.chunks_mut(LOOKUP_GROUP))
        {
            hits += self.read_group(entries, keys, counted, values);
        }
        if counted {
            self.count(keys.len() as u64, hits);
        }
    }

    /// [`Cache::read_into`] for at most [`LOOKUP_GROUP`] keys; how many it found.
    fn read_group(
        &self,
        entries: &Entries,
        keys: &[&[u8]],
        counted: bool,
        values: &mut [Option<Bytes>],
    ) -> u64 {
        let table = &entries.table;
        let mut hashes = [0u64; LOOKUP_GROUP];
        for (hash, key) in hashes.iter_mut().zip(keys) {
            *hash = entries.hasher.hash_one(key);
            table.prefetch(*hash);
        }
        let guard = crossbeam_epoch::pin();
        let mut heads = [std::ptr::null(); LOOKUP_GROUP];
        for (head, &hash) in heads.iter_mut().zip(&hashes) {
            *head = table.head(hash, &guard);
        }
        let mut found: [Option<&[u8]>; LOOKUP_GROUP] = [None; LOOKUP_GROUP];
        for (at, key) in keys.iter().enumerate() {
            found[at] = self.admit(table.find_from(heads[at], hashes[at], key, &guard), counted);
            if let Some(value) = found[at] {
                table::prefetch_bytes(value);
            }
        }
        spare::with_copier(|copier| {
            for (value, found) in values.iter_mut().zip(found) {
                *value = found.map(|v| copier.copy(v));
            }
        });
        found.iter().filter(|f| f.is_some()).count() as u64
    }

    /// Counts `hits` of `lookups` (counted lookups only).
    fn count(&self, lookups: u64, hits: u64) {
        self.hits.add(hits);
        self.misses.add(lookups - hits);
    }

    /// A copy of what a lookup found, unless its expiry passed; a read for the policy
    /// when `counted`.
    fn answer(&self, found: Option<Found<'_>>, counted: bool) -> Option<Bytes> {
        self.admit(found, counted).map(Bytes::copy_from_slice)
    }

    /// The value a lookup found, unless its expiry passed; a read for the policy when
    /// `counted`.
    fn admit<'g>(&self, found: Option<Found<'g>>, counted: bool) -> Option<&'g [u8]> {
        let found = found?;
        let entry = found.entry();
        if self.clock.has_passed(entry.expiry_unix_ms) {
            return None;
        }
        if counted {
            let reads = entry.freq.load(Ordering::Relaxed);
            if reads < FREQ_MAX {
                entry.freq.store(reads + 1, Ordering::Relaxed);
            }
        }
        Some(found.value())
    }

    /// Caches a copy of `value` unless it would take more than its share of the
    /// budget. `expiry_unix_ms` is the key's expiry, if it has one.
    pub(crate) fn insert(&self, key: &[u8], value: &[u8], expiry_unix_ms: Option<u64>) {
        let Some(entries) = &self.entries else {
            return;
        };
        let payload = (key.len() + value.len()) as u64;
        if charge(payload) > self.budget_bytes / LARGEST_SHARE {
            return;
        }
        let hash = entries.hasher.hash_one(key);
        let entry = EntryPtr::new(hash, key, value, expiry_unix_ms);
        entries.writer().insert(&entries.table, entry);
    }

    pub(crate) fn remove(&self, key: &[u8]) {
        if let Some(entries) = &self.entries {
            let hash = entries.hasher.hash_one(key);
            entries.writer().remove(&entries.table, hash, key);
        }
    }

    /// Lends `bytes` of the budget to the core's copy of its key order (replacing the
    /// last loan): the cache evicts to make room, so the two together stay within the
    /// budget. Refused (nothing lent, `false`) past [`LOAN_SHARE`] of the budget.
    pub(crate) fn lend(&self, bytes: u64) -> bool {
        let Some(entries) = &self.entries else {
            return false;
        };
        let max = self.budget_bytes / LOAN_SHARE;
        entries.writer().reserve(&entries.table, bytes, max)
    }

    /// Drops every entry (a closed database's cache answers no one).
    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.writer().clear(&entries.table);
        }
    }

    /// Bytes charged to the budget now: the entries and the bucket array.
    pub(crate) fn bytes(&self) -> u64 {
        (self.entries.as_ref()).map_or(0, |e| e.writer().charged() + e.table.bytes())
    }
    pub(crate) fn hits(&self) -> u64 {
        self.hits.sum()
    }
    pub(crate) fn misses(&self) -> u64 {
        self.misses.sum()
    }
}

impl Entries {
    /// The writer's side. A panic while it was held left the policy's figures at worst
    /// a little off; the table is consistent after every store, so carry on.
    fn writer(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
