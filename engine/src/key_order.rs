//! The keys of several substores in one byte order (issue 14): a core lists a scan's
//! page from it with one seek and exactly the keys the page holds, where merging its
//! leaves' own orders costs a seek in each and lists keys from every leaf.
//!
//! It holds each key as its store's place in the list (8 bits) and its slot number (24
//! bits), in the chunks of one index's order ([`crate::index::ordered`]): a key costs
//! the same 6.7 bytes, and the stores' own orders need not be built. Each store's
//! index records its key-set changes ([`crate::index::Index::take_changes`]) and the
//! order catches up with them before each listing, so a new key costs a write a set
//! insert, not a search of the order.
//!
//! An order covers at most 256 stores of at most 2^24 slots each: [`KeyOrder::build`]
//! answers `None` beyond, and [`KeyOrder::visit_keys`] `false` once a store outgrows
//! it, as it does when a store's record of changes overflowed or was replaced (then
//! the order is built again, or the caller merges the stores' own orders).
//!
//! Other threads may follow it through a copy (the `ringkv` crate's shared order): the
//! order counts every key-set change of its stores in a shared [`KeyOrder::change_count`]
//! (and once more when it is dropped, after which its stores no longer count into it),
//! and, once asked to ([`KeyOrder::feed_changes`]), keeps the keys each catch-up added
//! and removed for the copy to take ([`KeyOrder::take_fed`]).
//!
//! Invariants: once caught up, the order holds every live slot of every store exactly
//! once, at the place its key gives it; every store's index records changes under the
//! order's token and counts them in the order's count.

use std::cell::RefMut;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use hashbrown::HashMap;

use crate::device::Device;
use crate::format::SubstoreId;
use crate::index::Entry;
use crate::index::ordered::Ordered;
use crate::scan::Direction;
use crate::substore::{State, Substore, is_live};

/// Bits of a key's id that hold its slot number; the rest hold its store's place.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
/// Most stores one order covers.
const STORES_MAX: usize = 1 << (32 - SLOT_BITS);

/// Tokens of orders, each new one unique in the process.
static TOKENS: AtomicU64 = AtomicU64::new(1);

/// The id of slot `slot` of the store at `tag`.
fn id(tag: usize, slot: u32) -> u32 {
    (tag as u32) << SLOT_BITS | slot
}

/// The store's place and the slot number of an id.
fn parts(id: u32) -> (usize, u32) {
    ((id >> SLOT_BITS) as usize, id & SLOT_MASK)
}

/// Reads a key by its id from the stores' states.
fn key_reader<'a, F>(states: &'a [RefMut<'_, State<F>>]) -> impl Fn(u32) -> &'a [u8] + 'a {
    move |id| {
        let (tag, slot) = parts(id);
        states[tag].index.key_of(slot)
    }
}

/// Keys a listing reads together (see [`gather`]).
const GATHER: usize = 16;

/// Takes up to `n` ids from `walk` and reads their entries, then their keys, into
/// `entries` and `keys` (emptied first). Each loop's loads depend on none of the
/// others', so the cache misses of a batch (an index slot, then a key in the arena:
/// two a key, the second behind the first) overlap instead of queuing one behind
/// another as they do when each key is read and visited in turn.
fn gather<'a>(
    walk: &mut impl Iterator<Item = u32>,
    n: usize,
    entry_of: &impl Fn(u32) -> Entry,
    key_of: &impl Fn(u32) -> &'a [u8],
    entries: &mut Vec<(u32, Entry)>,
    keys: &mut Vec<&'a [u8]>,
) {
    entries.clear();
    entries.extend(walk.take(n).map(|id| (id, entry_of(id))));
    keys.clear();
    keys.extend(entries.iter().map(|&(id, _)| key_of(id)));
}

/// The live keys of several substores in byte order. See the module documentation.
#[derive(Debug)]
pub struct KeyOrder {
    order: Ordered,
    token: u64,
    /// The stores covered, in the order their places number them.
    stores: Vec<SubstoreId>,
    /// Key-set changes of the stores, counted as they happen.
    count: Arc<AtomicU64>,
    /// The changes caught up with since a copy last took them, if one follows.
    fed: Option<Fed>,
}

/// Keys a [`KeyOrder`] caught up with, in the order it did: each added (with its
/// value's length) or removed.
#[derive(Debug, Default)]
pub struct Fed {
    bytes: Vec<u8>,
    keys: Vec<(Range<usize>, Option<u32>)>,
}

impl Fed {
    /// Adds `key`, added (with its value's length) or removed (`None`).
    pub fn push(&mut self, key: &[u8], added: Option<u32>) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.keys.push((at..self.bytes.len(), added));
    }

    /// Each key, with its value's length if it was added (`None`: removed).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<u32>)> {
        (self.keys.iter()).map(|(at, added)| (&self.bytes[at.clone()], *added))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Drop for KeyOrder {
    /// Counts a change: a copy made from this order is no longer current.
    fn drop(&mut self) {
        self.count.fetch_add(1, Ordering::Release);
    }
}

impl KeyOrder {
    /// The order of every live key of `stores`, which record their changes for it from
    /// now on; `None` if it cannot cover them (more than 256, or a store with more
    /// than 2^24 slots).
    pub fn build<D: Device>(stores: &[&Substore<D>]) -> Option<Self> {
        if stores.len() > STORES_MAX {
            stores
                .iter()
                .for_each(|s| s.state.borrow_mut().index.stop_changes());
            return None;
        }
        let mut states: Vec<_> = stores.iter().map(|s| s.state.borrow_mut()).collect();
        let fits = |s: &RefMut<'_, State<_>>| s.index.slot_count() <= SLOT_MASK as usize + 1;
        if !states.iter().all(fits) {
            // No order follows them: an earlier one's records would only grow.
            states.iter_mut().for_each(|s| s.index.stop_changes());
            return None;
        }
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        let count = Arc::new(AtomicU64::new(0));
        for state in &mut states {
            state.index.track_changes(token, count.clone());
        }
        let ids = (states.iter().enumerate())
            .flat_map(|(tag, s)| s.index.live_ids().map(move |slot| id(tag, slot)))
            .collect();
        let order = Ordered::build(ids, &key_reader(&states));
        Some(Self {
            order,
            token,
            stores: stores.iter().map(|s| s.id).collect(),
            count,
            fed: None,
        })
    }

    /// The stores' key-set changes so far, counted as they happen (Release), and once
    /// more when this order is dropped.
    pub fn change_count(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }

    /// Keeps, from the next catch-up on, the keys each catch-up adds and removes (or,
    /// `false`, stops keeping them and drops those kept).
    pub fn feed_changes(&mut self, on: bool) {
        match on {
            true => _ = self.fed.get_or_insert_with(Fed::default),
            false => self.fed = None,
        }
    }

    /// The keys caught up with since the last call (see [`KeyOrder::feed_changes`]).
    pub fn take_fed(&mut self) -> Fed {
        self.fed.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Catches up, then visits every key the order holds, live or expired, in byte
    /// order with its index entry; `false` as for [`KeyOrder::visit_keys`].
    pub fn visit_every_key<D: Device>(
        &mut self,
        stores: &[&Substore<D>],
        mut visit: impl FnMut(&[u8], Entry),
    ) -> bool {
        debug_assert!(self.covers(stores));
        let mut states: Vec<_> = stores.iter().map(|s| s.state.borrow_mut()).collect();
        if !self.apply_changes(&mut states) {
            return false;
        }
        let key_of = key_reader(&states);
        let at = self.order.start(None, Direction::Forward, &key_of);
        for id in self.order.walk(at, Direction::Forward) {
            let (tag, slot) = parts(id);
            visit(key_of(id), states[tag].index.entry_of(slot));
        }
        true
    }

    /// Whether the order covers exactly `stores`, in this order.
    pub fn covers<D: Device>(&self, stores: &[&Substore<D>]) -> bool {
        self.stores.len() == stores.len() && self.stores.iter().zip(stores).all(|(a, b)| *a == b.id)
    }

    /// Catches up with the stores' changes, then visits up to `limit` live keys in
    /// byte order with their index entries, as [`Substore::visit_keys`] does for one
    /// store (`visit` answers `false` to stop). `false`, having visited nothing: the
    /// order can no longer follow the stores and must be built again.
    pub fn visit_keys<D: Device>(
        &mut self,
        stores: &[&Substore<D>],
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        mut visit: impl FnMut(&[u8], Entry) -> bool,
    ) -> bool {
        debug_assert!(self.covers(stores));
        let mut states: Vec<_> = stores.iter().map(|s| s.state.borrow_mut()).collect();
        if !self.apply_changes(&mut states) {
            return false;
        }
        let Some(first) = stores.first() else {
            return true;
        };
        let now = first.config.clock.now_unix_ms();
        let key_of = key_reader(&states);
        let at = self.order.start(from, direction, &key_of);
        let entry_of = |id: u32| {
            let (tag, slot) = parts(id);
            states[tag].index.entry_of(slot)
        };
        let mut walk = self.order.walk(at, direction);
        let mut entries = Vec::with_capacity(GATHER.min(limit));
        let mut keys = Vec::with_capacity(GATHER.min(limit));
        let mut left = limit;
        while left > 0 {
            gather(
                &mut walk,
                GATHER.min(left),
                &entry_of,
                &key_of,
                &mut entries,
                &mut keys,
            );
            if entries.is_empty() {
                break;
            }
            for (key, (_, entry)) in keys.drain(..).zip(entries.drain(..)) {
                if !is_live(&entry, now) {
                    continue;
                }
                left -= 1;
                if !visit(key, entry) || left == 0 {
                    return true;
                }
            }
        }
        true
    }

    /// Catches up with the stores' changes now (so that no listing pays for a long run
    /// of writes); `false`: the order must be built again, as for
    /// [`KeyOrder::visit_keys`].
    pub fn catch_up<D: Device>(&mut self, stores: &[&Substore<D>]) -> bool {
        debug_assert!(self.covers(stores));
        let mut states: Vec<_> = stores.iter().map(|s| s.state.borrow_mut()).collect();
        self.apply_changes(&mut states)
    }

    /// Changes the stores recorded that the order has not caught up with.
    pub fn pending<D: Device>(stores: &[&Substore<D>]) -> usize {
        (stores.iter())
            .map(|s| s.state.borrow().index.pending_changes())
            .sum()
    }

    /// Applies every store's changes since the last catch-up; `false` if one cannot be
    /// followed (its record overflowed or is another order's, or it outgrew the ids).
    fn apply_changes<F>(&mut self, states: &mut [RefMut<'_, State<F>>]) -> bool {
        let mut all = Vec::with_capacity(states.len());
        for state in states.iter_mut() {
            match state.index.take_changes(self.token) {
                Some(changes) if !changes.overflowed => all.push(changes),
                _ => return false,
            }
        }
        if all
            .iter()
            .any(|c| c.added.iter().any(|&slot| slot > SLOT_MASK))
        {
            return false;
        }
        // A removed key's slot may be free or hold another key by now: while removing,
        // the order reads each removed slot's key from the copy kept.
        let removed: HashMap<u32, &[u8], RandomState> = (all.iter().enumerate())
            .flat_map(|(tag, c)| {
                (0..c.removed.len()).map(move |i| (id(tag, c.removed[i].0), c.removed_key(i)))
            })
            .collect();
        let current = key_reader(states);
        let before = |id: u32| removed.get(&id).copied().unwrap_or_else(|| current(id));
        for (&id, key) in &removed {
            self.order.remove(id, key, &before);
            if let Some(fed) = &mut self.fed {
                fed.push(key, None);
            }
        }
        for (tag, changes) in all.iter().enumerate() {
            for &slot in &changes.added {
                let id = id(tag, slot);
                self.order.insert(id, current(id), &current);
                if let Some(fed) = &mut self.fed {
                    fed.push(
                        current(id),
                        Some(states[tag].index.entry_of(slot).value_len),
                    );
                }
            }
        }
        true
    }

    /// Heap bytes held (capacities), the stores' records of changes aside.
    pub fn heap_bytes(&self) -> usize {
        self.order.heap_bytes() + self.stores.capacity() * std::mem::size_of::<SubstoreId>()
    }
}
