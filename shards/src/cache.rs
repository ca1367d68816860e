//! A core's read cache: values under a byte budget, scan-resistant, readable from any
//! thread. Direct I/O bypasses the page cache, so this is the only cache between a get
//! and the disk.
//!
//! - **Who touches it.** The owning core is the only writer (fills, write admission,
//!   removal on every write); callers' threads read it directly, so a cached get costs
//!   no hop to the core. `quick_cache` does the work: sharded, a read lock per lookup,
//!   no allocation on a hit, its tables grown only until they settle.
//! - **Policy.** quick_cache's CLOCK-Pro variant (close to S3-FIFO): a new entry starts
//!   cold and is promoted only if it is read again, and recently evicted keys are
//!   remembered as ghosts, so one pass over many keys (a scan, a bulk load) does not
//!   push out the values that are read over and over.
//! - **Invariant (the core keeps it).** An entry is always the key's newest value and is
//!   readable by any caller (durable in `Sync` mode): the core removes a key before it
//!   appends a write of it, and inserts only values that are still the newest. Removal
//!   happens before the write is acknowledged, so a caller that saw its write
//!   acknowledged never finds the older value here.
//! - **Expiry.** An entry keeps its key's expiry time; a lookup at or after it answers
//!   nothing (judged by the database's clock), as the index would.
//! - **Keys in place.** A key of up to [`INLINE_KEY_BYTES`] bytes is held in the entry
//!   itself ([`CacheKey`]): a lookup compares it without a cache miss on a separate
//!   allocation (a scan reads one value per key, so that miss was a large share of
//!   it), and caching it allocates nothing for the key.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use bytes::Bytes;
use quick_cache::sync::DefaultLifecycle;
use quick_cache::{OptionsBuilder, Weighter};
use ringkv_engine::Clock;

/// Bytes charged per entry on top of key and value: the cache's slot and hash entry
/// with its ghost allowance, the value's heap header and shared reference count, and
/// a boxed key's heap header. Measured (`tests/memory.rs`: a 4 MiB budget, 33-byte
/// keys, 750-byte values): about 980 bytes allocated per entry, 196 over key and
/// value; 96 had let the cache allocate 9.5 % over its budget.
const ENTRY_OVERHEAD_BYTES: u64 = 180;
/// An entry larger than a shard's share of the budget is not cached; eight shards means
/// a value over an eighth of the budget never is.
const SHARDS: usize = 8;
/// Bytes per entry assumed when sizing the tables (they grow if entries are smaller).
const SIZING_ENTRY_BYTES: u64 = 1024;

/// Longest key held in place: with its length and the variant's tag, as large as the
/// boxed form (24 bytes).
const INLINE_KEY_BYTES: usize = 22;

/// A cached key: in place when short, else boxed. Hashes and compares as its bytes, so
/// a lookup by `&[u8]` finds it.
#[derive(Clone, Debug)]
enum CacheKey {
    Inline(u8, [u8; INLINE_KEY_BYTES]),
    Boxed(Box<[u8]>),
}

impl From<&[u8]> for CacheKey {
    fn from(key: &[u8]) -> Self {
        match key.len() <= INLINE_KEY_BYTES {
            true => {
                let mut bytes = [0; INLINE_KEY_BYTES];
                bytes[..key.len()].copy_from_slice(key);
                Self::Inline(key.len() as u8, bytes)
            }
            false => Self::Boxed(key.into()),
        }
    }
}

impl Borrow<[u8]> for CacheKey {
    fn borrow(&self) -> &[u8] {
        match self {
            Self::Inline(len, bytes) => &bytes[..usize::from(*len)],
            Self::Boxed(key) => key,
        }
    }
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Borrow::<[u8]>::borrow(self).hash(state);
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        Borrow::<[u8]>::borrow(self) == Borrow::<[u8]>::borrow(other)
    }
}

impl Eq for CacheKey {}

#[derive(Clone, Copy, Debug, Default)]
struct Weigh;

/// A cached value and its key's expiry (Unix ms), if it has one.
#[derive(Clone, Debug)]
struct Cached {
    value: Bytes,
    expiry_unix_ms: Option<u64>,
}

impl Weighter<CacheKey, Cached> for Weigh {
    fn weight(&self, key: &CacheKey, cached: &Cached) -> u64 {
        cost(key.borrow(), &cached.value)
    }
}

fn cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

type Entries = quick_cache::sync::Cache<
    CacheKey,
    Cached,
    Weigh,
    RandomState,
    DefaultLifecycle<CacheKey, Cached>,
>;

#[derive(Debug)]
pub(crate) struct Cache {
    /// `None` with a budget of zero: nothing is cached.
    entries: Option<Entries>,
    budget_bytes: u64,
    /// Lookups without a cache (all misses).
    uncached: AtomicU64,
    clock: Clock,
}

impl Cache {
    pub(crate) fn new(budget_bytes: u64, clock: Clock) -> Self {
        let entries = (budget_bytes > 0).then(|| {
            let options = OptionsBuilder::new()
                .shards(SHARDS)
                .weight_capacity(budget_bytes)
                .estimated_items_capacity((budget_bytes / SIZING_ENTRY_BYTES).max(64) as usize)
                .build()
                .expect("capacity and item estimate are set");
            Entries::with_options(
                options,
                Weigh,
                RandomState::new(),
                DefaultLifecycle::default(),
            )
        });
        Self {
            entries,
            budget_bytes,
            uncached: AtomicU64::new(0),
            clock,
        }
    }

    /// A caller's lookup: counted as a hit or a miss.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Bytes> {
        match &self.entries {
            Some(entries) => self.live(entries.get(key)?),
            None => {
                self.uncached.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// The core's second look after a caller's miss: not counted again, and it leaves
    /// the entry's standing in the policy alone.
    pub(crate) fn peek(&self, key: &[u8]) -> Option<Bytes> {
        self.live(self.entries.as_ref()?.peek(key)?)
    }

    /// The value of an entry whose expiry has not passed.
    fn live(&self, cached: Cached) -> Option<Bytes> {
        (!self.clock.has_passed(cached.expiry_unix_ms)).then_some(cached.value)
    }

    /// Caches `value` itself, sharing its buffer, unless it would take more than a
    /// shard's share of the budget. The buffer must hold the value alone (a written
    /// value, or one the engine copied out of the blocks it read): a slice of a larger
    /// buffer would pin all of it while being charged for its own length.
    /// `expiry_unix_ms` is the key's expiry, if it has one.
    pub(crate) fn insert(&self, key: &[u8], value: Bytes, expiry_unix_ms: Option<u64>) {
        if let Some(entries) = self.entries_for(key, &value) {
            let cached = Cached {
                value,
                expiry_unix_ms,
            };
            entries.insert(key.into(), cached);
        }
    }

    /// The entries, if there is a cache and `key` with `value` fits a shard's share.
    fn entries_for(&self, key: &[u8], value: &[u8]) -> Option<&Entries> {
        let entries = self.entries.as_ref()?;
        (cost(key, value) <= self.budget_bytes / SHARDS as u64).then_some(entries)
    }

    pub(crate) fn remove(&self, key: &[u8]) {
        if let Some(entries) = &self.entries {
            entries.remove(key);
        }
    }

    /// Drops every entry (a closed database's cache answers no one).
    pub(crate) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// Bytes charged to the budget now.
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, Entries::weight)
    }
    pub(crate) fn hits(&self) -> u64 {
        self.entries.as_ref().map_or(0, Entries::hits)
    }
    pub(crate) fn misses(&self) -> u64 {
        (self.entries.as_ref()).map_or(self.uncached.load(Ordering::Relaxed), Entries::misses)
    }
}

#[cfg(test)]
mod tests;
