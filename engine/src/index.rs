//! The in-memory index of one substore: key → where its newest live record is.
//!
//! Layout, chosen for memory per key (a headline figure):
//! - `keys`: one arena of `[len u16 LE][key bytes][metadata bytes, if held]`, so a key
//!   costs its length plus two, and the metadata the caller chose to hold (for HEAD) its
//!   length;
//! - `slots`: a `Vec` of 24-byte [`Slot`]s (location, value length, sequence, flags);
//! - `table`: a SwissTable of `u32` slot numbers, hashed with a per-index random ahash
//!   seed (keys can come from the network: a fixed seed would invite collision attacks).
//!
//! Expiry times are rare, so they live in a side map keyed by slot number, and again in
//! an ordered set by time (for the keys whose expiry has passed: `len` leaves them out,
//! the expiry sweep finds them): a key with an expiry costs about 70 bytes more. Freed slots
//! form a list threaded through `Slot::extent`; freed key bytes are garbage in the arena
//! until it is rebuilt, which happens when garbage passes half of it.
//!
//! For range and prefix scans the keys can also be kept in byte order ([`ordered`]:
//! slot numbers in sorted chunks with 2-byte hints, about 6.8 bytes a key). The order
//! is built by the first scan ([`Index::build_order`]) and kept from then on: keeping
//! it costs an insert of a new key about 0.3 µs more (a search of its chunk; before
//! the hints, 1 µs, which halved ringkv's load throughput when the order was always
//! kept), so an index that is never scanned does not pay it. A core orders the keys of
//! all its leaves together instead ([`crate::KeyOrder`]); then the index only records
//! which keys came and went ([`changes`]) for that order to catch up with.
//!
//! Only puts are indexed: a delete removes the key.
//!
//! The slot array and the arena grow by a sixteenth at a time, not by doubling: the
//! substores of a core fill at the same pace (keys are hashed across them), so doubling
//! would make all of them double at once and nearly double the core's index memory in
//! one step. Large reallocations are page remaps in the allocator, so the extra growth
//! steps copy little.

mod changes;
pub(crate) mod ordered;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ahash::RandomState;
use changes::Changes;
use hashbrown::HashTable;
use ordered::Ordered;

use crate::error::{Error, Result};
use crate::limits::{INDEX_KEY_BYTES_MAX, SEQ_MAX};
use crate::scan::Direction;

/// What the index knows about a key's newest record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Sequence of the extent that holds the record.
    pub extent: u32,
    /// Byte offset of the record inside the extent.
    pub offset: u32,
    pub value_len: u32,
    /// The record's sequence number (at most [`SEQ_MAX`]).
    pub seq: u64,
    pub meta_len: u8,
    pub expiry_unix_ms: Option<u64>,
}

const FREE: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX;
const FLAG_EXPIRY: u64 = 1;
/// The record's metadata follows the key in the arena.
const FLAG_META_HELD: u64 = 2;
const SEQ_SHIFT: u32 = 16;
const META_SHIFT: u32 = 8;
/// Heap bytes per entry of `by_expiry` (a B-tree of 12-byte entries, nodes about
/// two-thirds full), for `heap_bytes`.
const BTREE_BYTES_PER_EXPIRY: usize = 24;
/// Arena garbage below this is never worth a rebuild.
const ARENA_REBUILD_MIN_BYTES: usize = 64 << 10;
/// The slots and the arena grow by at least 1/`GROWTH_DIVISOR` of what they hold...
const GROWTH_DIVISOR: usize = 16;
/// ...and by at least this many bytes.
const GROWTH_MIN_BYTES: usize = 4 << 10;

/// Makes room for `more` elements, growing `v` by a sixteenth rather than doubling.
fn reserve_gradually<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() >= more {
        return;
    }
    let step = (v.len() / GROWTH_DIVISOR)
        .max(GROWTH_MIN_BYTES / std::mem::size_of::<T>())
        .max(more);
    v.reserve_exact(step);
}

#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Slot {
    /// Offset of the key's length prefix in the arena, or `FREE`.
    key_at: u32,
    /// Extent sequence; for a free slot, the next free slot.
    extent: u32,
    offset: u32,
    value_len: u32,
    /// seq (48 bits) << 16 | meta_len << 8 | flags.
    packed: u64,
}

impl Slot {
    fn meta_len(&self) -> usize {
        usize::from((self.packed >> META_SHIFT) as u8)
    }

    /// Bytes the slot's metadata takes in the arena after its key.
    fn held_meta_len(&self) -> usize {
        match self.packed & FLAG_META_HELD {
            0 => 0,
            _ => self.meta_len(),
        }
    }
}
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

/// The index of one substore.
#[derive(Debug)]
pub struct Index {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free_head: u32,
    keys: Vec<u8>,
    key_garbage: usize,
    expiries: hashbrown::HashMap<u32, u64, RandomState>,
    /// The same expiries, ordered by time: (expiry Unix ms, slot).
    by_expiry: BTreeSet<(u64, u32)>,
    /// The sum of every expiry in `by_expiry` (for the average time to live).
    expiry_sum: u128,
    hasher: RandomState,
    len: usize,
    /// The live slots in key order, once a scan asked for it.
    ordered: Option<Ordered>,
    /// Key-set changes since a [`KeyOrder`](crate::KeyOrder) over this index and
    /// others last caught up, while one follows it.
    changes: Option<Changes>,
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

fn key_len_at(keys: &[u8], at: u32) -> usize {
    let at = at as usize;
    usize::from(u16::from_le_bytes([keys[at], keys[at + 1]]))
}

fn key_at(keys: &[u8], at: u32) -> &[u8] {
    let start = at as usize + 2;
    &keys[start..start + key_len_at(keys, at)]
}

/// The arena bytes of a slot: length prefix, key and held metadata.
fn arena_len(keys: &[u8], slot: &Slot) -> usize {
    2 + key_len_at(keys, slot.key_at) + slot.held_meta_len()
}

impl Index {
    pub fn new() -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free_head: NO_SLOT,
            keys: Vec::new(),
            key_garbage: 0,
            expiries: hashbrown::HashMap::with_hasher(RandomState::new()),
            by_expiry: BTreeSet::new(),
            expiry_sum: 0,
            hasher: RandomState::new(),
            len: 0,
            ordered: None,
            changes: None,
        }
    }

    /// Live keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&id| {
                key_at(&self.keys, self.slots[id as usize].key_at) == key
            })
            .copied()
    }

    pub(crate) fn entry_of(&self, id: u32) -> Entry {
        let slot = &self.slots[id as usize];
        debug_assert_ne!(slot.key_at, FREE);
        Entry {
            extent: slot.extent,
            offset: slot.offset,
            value_len: slot.value_len,
            seq: slot.packed >> SEQ_SHIFT,
            meta_len: (slot.packed >> META_SHIFT) as u8,
            expiry_unix_ms: (slot.packed & FLAG_EXPIRY != 0).then(|| self.expiries[&id]),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.find(key).map(|id| self.entry_of(id))
    }

    /// The entry of `key` and its metadata, if the index holds it (see [`Index::insert`]).
    pub fn get_with_meta(&self, key: &[u8]) -> Option<(Entry, Option<&[u8]>)> {
        let id = self.find(key)?;
        let slot = &self.slots[id as usize];
        let held = slot.packed & FLAG_META_HELD != 0;
        let meta = held.then(|| {
            let at = slot.key_at as usize + 2 + key.len();
            &self.keys[at..at + slot.meta_len()]
        });
        Some((self.entry_of(id), meta))
    }

    fn store(&mut self, id: u32, entry: &Entry, meta_held: bool) {
        assert!(
            entry.seq <= SEQ_MAX,
            "sequence {} past the index's 48 bits",
            entry.seq
        );
        let slot = &mut self.slots[id as usize];
        slot.extent = entry.extent;
        slot.offset = entry.offset;
        slot.value_len = entry.value_len;
        slot.packed = entry.seq << SEQ_SHIFT
            | u64::from(entry.meta_len) << META_SHIFT
            | if meta_held { FLAG_META_HELD } else { 0 }
            | u64::from(entry.expiry_unix_ms.is_some());
        let old = match entry.expiry_unix_ms {
            Some(expiry) => self.expiries.insert(id, expiry),
            None => self.expiries.remove(&id),
        };
        if let Some(old) = old {
            self.by_expiry.remove(&(old, id));
            self.expiry_sum -= u128::from(old);
        }
        if let Some(expiry) = entry.expiry_unix_ms {
            self.by_expiry.insert((expiry, id));
            self.expiry_sum += u128::from(expiry);
        }
    }

    /// Inserts or replaces; returns the entry that was replaced. `meta`, when given, is
    /// the record's metadata (`entry.meta_len` bytes), kept with the key so that
    /// [`Index::get_with_meta`] answers it; the caller decides which to keep.
    pub fn insert(
        &mut self,
        key: &[u8],
        entry: Entry,
        meta: Option<&[u8]>,
    ) -> Result<Option<Entry>> {
        debug_assert!(meta.is_none_or(|m| m.len() == usize::from(entry.meta_len)));
        if let Some(id) = self.find(key) {
            let old = self.entry_of(id);
            self.place_key(id, key, meta)?;
            self.store(id, &entry, meta.is_some());
            self.rebuild_arena_if_wasteful();
            return Ok(Some(old));
        }
        let id = if self.free_head != NO_SLOT {
            let id = self.free_head;
            self.free_head = self.slots[id as usize].extent;
            id
        } else {
            if self.slots.len() >= (NO_SLOT - 1) as usize {
                return Err(Error::IndexFull { what: "slots" });
            }
            reserve_gradually(&mut self.slots, 1);
            self.slots.push(Slot {
                key_at: FREE,
                extent: 0,
                offset: 0,
                value_len: 0,
                packed: 0,
            });
            (self.slots.len() - 1) as u32
        };
        if let Err(e) = self.place_key(id, key, meta) {
            self.slots[id as usize].extent = self.free_head;
            self.free_head = id;
            return Err(e);
        }
        self.store(id, &entry, meta.is_some());
        let (keys, slots, hasher) = (&self.keys, &self.slots, &self.hasher);
        self.table.insert_unique(hasher.hash_one(key), id, |&id| {
            hasher.hash_one(key_at(keys, slots[id as usize].key_at))
        });
        if let Some(ordered) = &mut self.ordered {
            ordered.insert(id, key, &|id| key_at(keys, slots[id as usize].key_at));
        }
        self.len += 1;
        if let Some(changes) = &mut self.changes {
            changes.add(id, self.len);
        }
        Ok(None)
    }

    /// Puts `key` and `meta` in the arena for slot `id`: over its current bytes when the
    /// held metadata keeps its length, else at the arena's end (the old bytes become
    /// garbage). The slot's flags still describe what it held before.
    fn place_key(&mut self, id: u32, key: &[u8], meta: Option<&[u8]>) -> Result<()> {
        let meta = meta.unwrap_or_default();
        let slot = self.slots[id as usize];
        let was_held = slot.key_at != FREE && slot.packed & FLAG_META_HELD != 0;
        if slot.key_at != FREE && (was_held as usize * slot.meta_len()) == meta.len() {
            let at = slot.key_at as usize + 2 + key.len();
            self.keys[at..at + meta.len()].copy_from_slice(meta);
            return Ok(());
        }
        let len = 2 + key.len() + meta.len();
        if (self.keys.len() + len) as u64 > INDEX_KEY_BYTES_MAX {
            return Err(Error::IndexFull { what: "key arena" });
        }
        let key_len = u16::try_from(key.len()).expect("key length within limits");
        reserve_gradually(&mut self.keys, len);
        let new_key_at = self.keys.len() as u32;
        self.keys.extend_from_slice(&key_len.to_le_bytes());
        self.keys.extend_from_slice(key);
        self.keys.extend_from_slice(meta);
        if slot.key_at != FREE {
            self.key_garbage += arena_len(&self.keys, &slot);
        }
        self.slots[id as usize].key_at = new_key_at;
        Ok(())
    }

    /// Removes a key; returns its entry if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let hash = self.hasher.hash_one(key);
        let (keys, slots) = (&self.keys, &self.slots);
        let found = self
            .table
            .find_entry(hash, |&id| key_at(keys, slots[id as usize].key_at) == key)
            .ok()?;
        let (id, _) = found.remove();
        if let Some(ordered) = &mut self.ordered {
            ordered.remove(id, key, &|id| key_at(keys, slots[id as usize].key_at));
        }
        if let Some(changes) = &mut self.changes {
            changes.remove(id, key, self.len);
        }
        let old = self.entry_of(id);
        if let Some(expiry) = self.expiries.remove(&id) {
            self.by_expiry.remove(&(expiry, id));
            self.expiry_sum -= u128::from(expiry);
        }
        self.key_garbage += arena_len(&self.keys, &self.slots[id as usize]);
        let slot = &mut self.slots[id as usize];
        slot.key_at = FREE;
        slot.extent = self.free_head;
        self.free_head = id;
        self.len -= 1;
        self.rebuild_arena_if_wasteful();
        Some(old)
    }

    fn rebuild_arena_if_wasteful(&mut self) {
        if self.key_garbage > ARENA_REBUILD_MIN_BYTES && self.key_garbage * 2 > self.keys.len() {
            self.rebuild_arena();
        }
    }

    /// Copies the live keys into a fresh arena, dropping the garbage.
    fn rebuild_arena(&mut self) {
        let mut keys = Vec::with_capacity(self.keys.len() - self.key_garbage);
        for slot in self.slots.iter_mut().filter(|s| s.key_at != FREE) {
            let at = slot.key_at as usize;
            let len = arena_len(&self.keys, slot);
            slot.key_at = keys.len() as u32;
            keys.extend_from_slice(&self.keys[at..at + len]);
        }
        self.keys = keys;
        self.key_garbage = 0;
    }

    /// Every live key and its entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.key_at != FREE)
            .map(|(id, s)| (key_at(&self.keys, s.key_at), self.entry_of(id as u32)))
    }

    /// Keys whose expiry is at or before `now_unix_ms` (still indexed until deleted).
    pub fn expired_count(&self, now_unix_ms: u64) -> usize {
        self.by_expiry.range(..=(now_unix_ms, u32::MAX)).count()
    }

    /// Up to `limit` keys whose expiry is at or before `now_unix_ms`, earliest first.
    pub fn expired_keys(&self, now_unix_ms: u64, limit: usize) -> Vec<Vec<u8>> {
        let expired = self.by_expiry.range(..=(now_unix_ms, u32::MAX));
        let slots = expired
            .take(limit)
            .map(|&(_, id)| self.slots[id as usize].key_at);
        slots.map(|at| key_at(&self.keys, at).to_vec()).collect()
    }

    /// Keys whose expiry is still ahead of `now_unix_ms`, and the sum of the time they
    /// have left (ms). Costs as many steps as keys have expired and wait to be deleted.
    pub fn expiring_ahead(&self, now_unix_ms: u64) -> (usize, u128) {
        let expired = self.by_expiry.range(..=(now_unix_ms, u32::MAX));
        let (mut count, mut sum) = (self.by_expiry.len(), self.expiry_sum);
        for &(at, _) in expired {
            count -= 1;
            sum -= u128::from(at);
        }
        (count, sum - count as u128 * u128::from(now_unix_ms))
    }

    /// Keys with an expiry, passed or not.
    pub fn expiring_len(&self) -> usize {
        self.by_expiry.len()
    }

    /// The earliest expiry of any key, if one has one.
    pub fn next_expiry(&self) -> Option<u64> {
        self.by_expiry.first().map(|&(at, _)| at)
    }

    /// Heap bytes the index holds (capacities, not lengths).
    pub fn heap_bytes(&self) -> usize {
        self.table.allocation_size()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.keys.capacity()
            + self.expiries.allocation_size()
            + self.by_expiry.len() * BTREE_BYTES_PER_EXPIRY
            + self.ordered.as_ref().map_or(0, Ordered::heap_bytes)
            + self.changes.as_ref().map_or(0, Changes::heap_bytes)
    }

    /// Builds the key order, if no scan has yet (then inserts and removals keep it).
    pub fn build_order(&mut self) {
        if self.ordered.is_some() {
            return;
        }
        let live = self.live_ids().collect();
        self.ordered = Some(Ordered::build(live, &|id| self.key_of(id)));
    }

    /// The live slots (their numbers), in no particular order.
    pub(crate) fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (self.slots.iter().enumerate())
            .filter(|(_, s)| s.key_at != FREE)
            .map(|(id, _)| id as u32)
    }

    /// Slots in use or free: every slot number is below this.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Starts recording key-set changes for the order `token`, forgetting any recorded
    /// for another, and counting each in `count`.
    pub(crate) fn track_changes(&mut self, token: u64, count: Arc<AtomicU64>) {
        self.changes = Some(Changes::new(token, count));
    }

    /// Stops recording key-set changes.
    pub(crate) fn stop_changes(&mut self) {
        self.changes = None;
    }

    /// Key-set changes recorded and not yet taken.
    pub(crate) fn pending_changes(&self) -> usize {
        self.changes.as_ref().map_or(0, Changes::len)
    }

    /// The changes recorded for the order `token` since it last took them, if it is
    /// the order this index records for.
    pub(crate) fn take_changes(&mut self, token: u64) -> Option<Changes> {
        let changes = self.changes.as_mut().filter(|c| c.token == token)?;
        Some(changes.take())
    }

    /// The key order; [`Index::build_order`] must have run.
    fn order(&self) -> &Ordered {
        self.ordered
            .as_ref()
            .expect("build_order runs before a scan")
    }

    /// Live keys and their entries in `direction`'s order: forward from the first key
    /// at or after `from` (every key for `None`), in reverse from the last key before
    /// `from` (from the last key for `None`). [`Index::build_order`] must have run.
    pub fn keys_from<'a>(
        &'a self,
        from: Option<&[u8]>,
        direction: Direction,
    ) -> impl Iterator<Item = (&'a [u8], Entry)> {
        let order = self.order();
        let at = order.start(from, direction, &|id| self.key_of(id));
        let ids = order.walk(at, direction);
        ids.map(|id| (self.key_of(id), self.entry_of(id)))
    }

    pub(crate) fn key_of(&self, id: u32) -> &[u8] {
        key_at(&self.keys, self.slots[id as usize].key_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(seq: u64) -> Entry {
        Entry {
            extent: (seq % 7) as u32,
            offset: (seq * 13) as u32,
            value_len: (seq * 3) as u32,
            seq,
            meta_len: (seq % 256) as u8,
            expiry_unix_ms: (seq % 5 == 0).then_some(seq * 1000),
        }
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut index = Index::new();
        assert_eq!(index.insert(b"a", entry(1), None).unwrap(), None);
        assert_eq!(index.insert(b"", entry(2), None).unwrap(), None);
        assert_eq!(index.get(b"a"), Some(entry(1)));
        assert_eq!(index.insert(b"a", entry(5), None).unwrap(), Some(entry(1)));
        assert_eq!(index.get(b"a"), Some(entry(5)));
        assert_eq!(index.len(), 2);
        assert_eq!(index.remove(b"a"), Some(entry(5)));
        assert_eq!(index.remove(b"a"), None);
        assert_eq!(index.get(b"a"), None);
        assert_eq!(index.get(b""), Some(entry(2)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn matches_a_btreemap_through_churn_and_arena_rebuilds() {
        let mut index = Index::new();
        let mut model = BTreeMap::new();
        let mut state = 7u64;
        for step in 0..200_000u64 {
            if step == 50_000 {
                index.build_order(); // built from what is there, then kept
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("key-{:05}", (state >> 33) % 20_000).into_bytes();
            if (state >> 20) % 3 == 0 {
                let removed = model.remove(&key).map(|(e, _)| e);
                assert_eq!(index.remove(&key), removed);
            } else {
                let e = entry(step);
                // Held or not, and of every length (entry's meta_len is seq % 256), so
                // that a replacement's metadata sometimes keeps its length and sometimes
                // moves the key to the end of the arena.
                let meta = ((state >> 40) % 3 != 0)
                    .then(|| vec![(step % 251) as u8; usize::from(e.meta_len)]);
                let old = model.insert(key.clone(), (e, meta.clone())).map(|(e, _)| e);
                assert_eq!(index.insert(&key, e, meta.as_deref()).unwrap(), old);
            }
        }
        assert_eq!(index.len(), model.len());
        for (key, (e, meta)) in &model {
            assert_eq!(index.get_with_meta(key), Some((*e, meta.as_deref())));
        }
        assert!(index.order().is_sorted(&|id| index.key_of(id)));
        let in_order: Vec<(Vec<u8>, Entry)> = index
            .keys_from(None, Direction::Forward)
            .map(|(k, e)| (k.to_vec(), e))
            .collect();
        let want: Vec<(Vec<u8>, Entry)> = model.iter().map(|(k, (e, _))| (k.clone(), *e)).collect();
        assert_eq!(in_order, want, "every key in byte order");
        for start in [&b"key-0"[..], b"key-10000", b"key-12345x", b"key-2", b"zzz"] {
            let from: Vec<&[u8]> = index
                .keys_from(Some(start), Direction::Forward)
                .map(|(k, _)| k)
                .take(50)
                .collect();
            let want: Vec<&[u8]> = (model.range(start.to_vec()..).map(|(k, _)| k.as_slice()))
                .take(50)
                .collect();
            assert_eq!(from, want, "from {start:?}");
            let before: Vec<&[u8]> = (index
                .keys_from(Some(start), Direction::Reverse)
                .map(|(k, _)| k))
            .take(50)
            .collect();
            let want: Vec<&[u8]> = (model
                .range(..start.to_vec())
                .rev()
                .map(|(k, _)| k.as_slice()))
            .take(50)
            .collect();
            assert_eq!(before, want, "before {start:?}");
        }
        let last: Vec<&[u8]> = index
            .keys_from(None, Direction::Reverse)
            .map(|(k, _)| k)
            .take(3)
            .collect();
        let want: Vec<&[u8]> = model.keys().rev().map(Vec::as_slice).take(3).collect();
        assert_eq!(last, want);
        let model: BTreeMap<Vec<u8>, Entry> = model.into_iter().map(|(k, (e, _))| (k, e)).collect();
        // entry(seq) has an expiry of seq * 1000 when seq % 5 == 0.
        let now = 100_000_000;
        let expired: Vec<&Vec<u8>> = (model.iter())
            .filter(|(_, e)| e.expiry_unix_ms.is_some_and(|at| at <= now))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(index.expired_count(now), expired.len());
        let mut found = index.expired_keys(now, usize::MAX);
        found.sort();
        assert_eq!(found.iter().collect::<Vec<_>>(), expired);
        let earliest = model.values().filter_map(|e| e.expiry_unix_ms).min();
        assert_eq!(index.next_expiry(), earliest);
        let ahead: Vec<u64> = (model.values())
            .filter_map(|e| e.expiry_unix_ms.filter(|&at| at > now))
            .map(|at| at - now)
            .collect();
        let ttl_sum: u128 = ahead.iter().map(|&t| u128::from(t)).sum();
        assert_eq!(index.expiring_ahead(now), (ahead.len(), ttl_sum));
        let mut seen: Vec<(Vec<u8>, Entry)> = index.iter().map(|(k, e)| (k.to_vec(), e)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, model.into_iter().collect::<Vec<_>>());
    }

    /// Keys of 0 to 11 bytes over {0, 1, 255}: empty keys, keys that are prefixes of
    /// others and zero bytes where the fences pad with zeros.
    #[test]
    fn the_order_holds_for_short_and_binary_keys() {
        let mut index = Index::new();
        let mut model = std::collections::BTreeSet::new();
        let mut state = 11u64;
        for step in 0..60_000u64 {
            if step == 30_000 {
                index.build_order();
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = ((state >> 33) % 12) as usize;
            let key: Vec<u8> = (0..len)
                .map(|i| [0u8, 1, 255][((state >> (40 + i)) % 3) as usize])
                .collect();
            if (state >> 20) % 3 == 0 {
                assert_eq!(index.remove(&key).is_some(), model.remove(&key));
            } else {
                index.insert(&key, entry(step), None).unwrap();
                model.insert(key);
            }
        }
        assert!(index.order().is_sorted(&|id| index.key_of(id)));
        let keys: Vec<&[u8]> = index
            .keys_from(None, Direction::Forward)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, model.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for start in [
            &b""[..],
            b"\0",
            b"\x01\0",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\0",
        ] {
            let from: Vec<&[u8]> = index
                .keys_from(Some(start), Direction::Forward)
                .map(|(k, _)| k)
                .collect();
            let want: Vec<&[u8]> = model.range(start.to_vec()..).map(Vec::as_slice).collect();
            assert_eq!(from, want, "from {start:?}");
        }
    }

    #[test]
    fn capacity_stays_close_to_what_the_index_holds() {
        let mut index = Index::new();
        for i in 0..300_000u64 {
            let key = format!("user{i:029}");
            index.insert(key.as_bytes(), entry(i), None).unwrap();
            let slack = |len: usize| len / GROWTH_DIVISOR + GROWTH_MIN_BYTES + 64;
            let slot_bytes = index.slots.len() * std::mem::size_of::<Slot>();
            let slot_capacity = index.slots.capacity() * std::mem::size_of::<Slot>();
            assert!(
                slot_capacity <= slot_bytes + slack(slot_bytes),
                "slots at {i}"
            );
            let arena = index.keys.len();
            assert!(
                index.keys.capacity() <= arena + slack(arena),
                "arena at {i}"
            );
        }
    }
}
