//! One core's share of an ordered scan (issue 14): a page of its live keys in byte
//! order within a range, merged over its leaves and the ancestors they read behind.
//! The database merges the cores' pages and reads their values (`crate::db::scan`),
//! except a snapshot's, which are read here at its cuts.
//!
//! A page is exact: every live key of the range on this core up to its last key (in
//! the scan's direction) is in it, as of when the keys were listed. Mostly a page is
//! listed from the core's one order of its leaves' keys (`KeyOrder`: one seek, then
//! exactly the page's keys; built by the first scan, built again when the leaves
//! change). A snapshot's page, or one while an ancestor lies behind a leaf, merges
//! sources instead: each (leaf or ancestor) lists a few keys at a time from its own
//! ordered index, and the sources are merged by their next keys until the page is
//! full; a source whose keys run out lists more after its last one. Either way the
//! keys go into one buffer (no allocation per key), with no I/O.
//!
//! Keys are listed in one step without awaiting, so no record moves from an ancestor
//! to a leaf meanwhile. Values, wherever they are read, are read as gets are (cache
//! first, after any batch holding the key lets go and, in `Sync` mode, once durable):
//! a key deleted in between is left out, one overwritten shows its newer value.

use std::ops::{Bound, Range};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_engine::Direction;
use ringkv_engine::hash::routing_hash;
use ringkv_engine::index::Entry;
use ringkv_engine::{KeyOrder, Substore};

use super::Core;
use super::leaf::LeafState;
use super::shared_order::{KeyList, OrderCopy, SharedOrder};
use crate::error::Result;
use crate::storage::LeafDevice;

/// Value bytes a page holds at most (a page always holds at least one key).
pub(super) const PAGE_VALUE_BYTES_MAX: u64 = 1 << 20;

/// Changes on a core's leaves past which a commit round brings its key order up to
/// date (about 0.1 ms of catching up at most).
const ORDER_CATCH_UP_CHANGES: usize = 256;

/// What a core is asked for: its keys within `start..end` (bounds in key order, for
/// either direction) after `resume`, in `direction`.
#[derive(Clone, Debug)]
pub(crate) struct ScanRequest {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    pub direction: Direction,
    /// Most keys the page holds.
    pub limit: usize,
    /// Who reads the values, if anyone.
    pub values: Values,
    /// The open snapshot the scan reads, if any (else the current state).
    pub snapshot: Option<u64>,
}

/// Who reads a page's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    /// Nobody: a scan of keys only.
    None,
    /// The core, with the keys (a snapshot's values, at its cuts).
    Here,
    /// The caller, from the cache on its own thread and then `Op::GetMany` for the
    /// misses: the work spreads over the callers' threads, and the core only lists.
    Caller,
}

/// A key on a page, with its value once read.
pub(crate) type Item = (Bytes, Option<Bytes>);

/// One page: keys in the scan's order with their values (`None` unless read here), and
/// whether the core has more keys in the range after the last one.
#[derive(Debug, Default)]
pub(crate) struct ScanPage {
    pub items: Vec<Item>,
    /// Where the next page starts (exclusive), if the range may hold more keys here.
    pub resume: Option<Vec<u8>>,
}

impl ScanRequest {
    /// Whether `key` lies before the range's far end, in the scan's direction.
    pub(super) fn before_end(&self, key: &[u8]) -> bool {
        match (self.direction, &self.end, &self.start) {
            (Direction::Forward, Bound::Included(e), _) => key <= e.as_slice(),
            (Direction::Forward, Bound::Excluded(e), _) => key < e.as_slice(),
            (Direction::Reverse, _, Bound::Included(s)) => key >= s.as_slice(),
            (Direction::Reverse, _, Bound::Excluded(s)) => key > s.as_slice(),
            (_, Bound::Unbounded, _) | (_, _, Bound::Unbounded) => true,
        }
    }

    /// Whether `key` lies at or after where the range starts, in the scan's direction
    /// (where a listing starts: [`ScanRequest::listing_from`]).
    fn after_start(&self, key: &[u8]) -> bool {
        self.listing_from().is_none_or(|from| match self.direction {
            Direction::Forward => key >= from.as_slice(),
            Direction::Reverse => key < from.as_slice(),
        })
    }

    /// Lays a put of `key` (`value`) over `items`, a page listed for this request from
    /// a state that may lack it (the caller's own queued put): the value given to the
    /// key if the page holds it, else the key put in its place, if it belongs on the
    /// page (in the range, and not past `last`, the page's last key when the range has
    /// more after it).
    pub(crate) fn lay_over(&self, items: &mut Vec<Item>, last: Option<&[u8]>, put: (&[u8], &[u8])) {
        let (key, value) = put;
        let on_page = match last {
            Some(last) => self.direction.order(key, last).is_le(),
            None => self.before_end(key),
        };
        if !on_page || !self.after_start(key) {
            return;
        }
        let place = items.binary_search_by(|(k, _)| self.direction.order(k, key));
        crate::spare::with_copier(|copier| match place {
            Ok(at) => items[at].1 = Some(copier.copy(value)),
            Err(at) => items.insert(at, (copier.copy(key), Some(copier.copy(value)))),
        });
    }

    /// Where a source's listing starts, as `Substore::scan_keys` takes it (forward:
    /// the first key at or after; reverse: the last key before).
    pub(super) fn listing_from(&self) -> Option<Vec<u8>> {
        let after = |k: &Vec<u8>| [k.as_slice(), &[0]].concat();
        match (self.direction, &self.start, &self.end) {
            (Direction::Forward, Bound::Included(s), _) => Some(s.clone()),
            (Direction::Forward, Bound::Excluded(s), _) => Some(after(s)),
            (Direction::Reverse, _, Bound::Excluded(e)) => Some(e.clone()),
            (Direction::Reverse, _, Bound::Included(e)) => Some(after(e)),
            (_, Bound::Unbounded, _) | (_, _, Bound::Unbounded) => None,
        }
    }

    /// Where a source's listing goes on after `key`, as `Substore::scan_keys` takes
    /// it.
    fn after(&self, key: &[u8]) -> Vec<u8> {
        match self.direction {
            Direction::Forward => [key, &[0]].concat(),
            Direction::Reverse => key.to_vec(),
        }
    }
}

/// Where a page ends, decided the same way wherever a page is listed (the core's key
/// order, a caller's copy of it): at the request's limit, before the first key past
/// the range's far end, or once its values pass [`PAGE_VALUE_BYTES_MAX`] (a page with
/// values always holds at least one key).
pub(super) struct PageFill<'r> {
    request: &'r ScanRequest,
    keys: usize,
    bytes: u64,
    /// The range's far end was reached.
    ended: bool,
}

impl<'r> PageFill<'r> {
    pub(super) fn new(request: &'r ScanRequest) -> Self {
        Self {
            request,
            keys: 0,
            bytes: 0,
            ended: false,
        }
    }

    /// Whether the page has room for another key (by count; [`PageFill::admits`]
    /// decides on the rest).
    pub(super) fn room(&self) -> bool {
        self.keys < self.request.limit
    }

    /// Whether `key`, the next in order, with a value of `value_len` bytes, goes on the
    /// page; if not, the page ends before it.
    pub(super) fn admits(&mut self, key: &[u8], value_len: u32) -> bool {
        self.bytes += u64::from(value_len);
        let full = self.keys > 0 && self.full();
        self.ended = !full && !self.request.before_end(key);
        if full || self.ended {
            return false;
        }
        self.keys += 1;
        true
    }

    fn full(&self) -> bool {
        self.request.values != Values::None && self.bytes > PAGE_VALUE_BYTES_MAX
    }

    /// Whether the range may hold more keys after the page's last one.
    pub(super) fn more(&self) -> bool {
        self.keys > 0 && !self.ended && (self.keys == self.request.limit || self.full())
    }
}

/// What became of a copy of the key order the core tried to publish.
enum Publication {
    /// Built from the order (once per order: not counted as upkeep) and published.
    Built,
    /// Brought up to date and published.
    Published,
    /// No order to copy (more leaves or slots than one order covers), or one that
    /// could not follow its leaves.
    Unavailable,
    /// Larger than the read cache may lend.
    TooLarge,
}

/// Bytes a key is assumed to take when a listing's buffer is sized.
const TYPICAL_KEY_BYTES: usize = 24;

/// The keys listed for a page, their bytes in one buffer.
#[derive(Default)]
struct Listed {
    bytes: Vec<u8>,
    /// Each key's place in `bytes` and its value's length.
    keys: Vec<(Range<usize>, u32)>,
}

impl Listed {
    /// Room for `keys` keys of a typical length, so that listing them does not grow
    /// the buffers again and again (each growth a copy, and a large block to allocate).
    fn with_capacity(keys: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(keys * TYPICAL_KEY_BYTES),
            keys: Vec::with_capacity(keys),
        }
    }

    fn key(&self, at: usize) -> &[u8] {
        &self.bytes[self.keys[at].0.clone()]
    }

    fn push(&mut self, key: &[u8], value_len: u32) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(key);
        self.keys.push((at..self.bytes.len(), value_len));
    }
}

/// One leaf or ancestor as a page lists it: its keys listed and not yet merged.
struct Source {
    leaf: Rc<LeafState>,
    /// An ancestor: its key counts only where its leaf holds none.
    behind: bool,
    /// The cut a snapshot reads it at.
    cut: Option<u64>,
    /// Listed keys not yet merged (indices into `Listed::keys`).
    batch: Range<usize>,
    /// Whether it may hold more keys in the range after its batch.
    more: bool,
}

/// A page's keys (indices into the listing, in the scan's order; `None`: the listing's
/// own order) and where the next page starts, if the core may have more.
struct Merged {
    listed: Listed,
    page: Option<Vec<usize>>,
    resume: Option<Vec<u8>>,
}

impl Core {
    /// This core's next page of the scan `request` asks for.
    pub(super) async fn scan_page(&self, request: &ScanRequest) -> Result<ScanPage> {
        if request.values != Values::Here {
            return self.scan_page_now(request);
        }
        let (keys, resume) = self.page_keys(request, |key| key)?;
        let reads = keys.iter().map(|key| async move {
            match request.snapshot {
                Some(id) => self.snapshot_get(id, routing_hash(key), key).await,
                None => self.get(routing_hash(key), key).await,
            }
        });
        let values = futures_util::future::join_all(reads).await;
        let mut items = Vec::with_capacity(keys.len());
        for (key, value) in keys.into_iter().zip(values) {
            if let Some(value) = value? {
                items.push((key, Some(value)));
            }
        }
        Ok(ScanPage { items, resume })
    }

    /// The page of a request whose values this core does not read: its keys alone,
    /// listed at once (no I/O, no waiting), so the serve loop answers it without a
    /// task of its own, as it does a cached get.
    pub(super) fn scan_page_now(&self, request: &ScanRequest) -> Result<ScanPage> {
        debug_assert_ne!(request.values, Values::Here);
        let (items, resume) = self.page_keys(request, |key| (key, None))?;
        Ok(ScanPage { items, resume })
    }

    /// A page's keys in order, each a slice of one buffer made into an item by `item`,
    /// and where the next page starts.
    fn page_keys<T>(
        &self,
        request: &ScanRequest,
        item: impl Fn(Bytes) -> T,
    ) -> Result<(Vec<T>, Option<Vec<u8>>)> {
        let Merged {
            listed,
            page,
            resume,
        } = self.list_keys(request)?;
        self.pages_listed.set(self.pages_listed.get() + 1);
        let bytes = Bytes::from(listed.bytes);
        let slice = |at: usize| item(bytes.slice(listed.keys[at].0.clone()));
        let items = match page {
            Some(page) => page.into_iter().map(slice).collect(),
            None => (0..listed.keys.len()).map(slice).collect(),
        };
        Ok((items, resume))
    }

    /// Up to `request.limit` live keys in order, and where the next page starts (see
    /// the module documentation). Synchronous: nothing changes while it lists.
    fn list_keys(&self, request: &ScanRequest) -> Result<Merged> {
        if let Some(merged) = self.list_in_order(request) {
            return Ok(merged);
        }
        let mut sources = self.scan_sources(request.snapshot)?;
        // Twice a fair share each (at least 8): a source rarely lists twice, which
        // costs a seek, dearer than listing a few keys more.
        let batch = (2 * request.limit).div_ceil(sources.len().max(1)).max(8);
        let mut listed = Listed::default();
        let from = request.listing_from();
        for source in &mut sources {
            source.list(&mut listed, request, from.as_deref(), batch);
        }
        // Sources with keys left, the one whose next key comes first last.
        let mut next: Vec<usize> = (0..sources.len())
            .filter(|&i| !sources[i].batch.is_empty())
            .collect();
        let head = |sources: &[Source], i: usize| sources[i].batch.start;
        next.sort_unstable_by(|&a, &b| {
            let (a, b) = (listed.key(head(&sources, a)), listed.key(head(&sources, b)));
            request.direction.order(b, a)
        });
        let (mut page, mut bytes) = (Vec::new(), 0u64);
        while let Some(i) = next.pop() {
            let at = sources[i].batch.start;
            sources[i].batch.start += 1;
            if sources[i].batch.is_empty() && sources[i].more {
                let after = request.after(listed.key(at));
                sources[i].list(&mut listed, request, Some(&after), batch);
            }
            if !sources[i].batch.is_empty() {
                let key = listed.key(sources[i].batch.start);
                let pos = next.partition_point(|&j| {
                    request
                        .direction
                        .order(listed.key(head(&sources, j)), key)
                        .is_gt()
                });
                next.insert(pos, i);
            }
            let key = listed.key(at);
            let repeated = page.last().is_some_and(|&last| listed.key(last) == key);
            if repeated || (sources[i].behind && self.leaf_holds(request.snapshot, key)?) {
                continue;
            }
            bytes += u64::from(listed.keys[at].1);
            if !page.is_empty() && request.values != Values::None && bytes > PAGE_VALUE_BYTES_MAX {
                let resume = page.last().map(|&last| listed.key(last).to_vec());
                return Ok(Merged {
                    listed,
                    page: Some(page),
                    resume,
                });
            }
            page.push(at);
            if page.len() == request.limit {
                break;
            }
        }
        let resume = match next.is_empty() {
            true => None,
            false => page.last().map(|&last| listed.key(last).to_vec()),
        };
        Ok(Merged {
            listed,
            page: Some(page),
            resume,
        })
    }

    /// The page from the core's one order of its leaves' keys (one seek, exactly the
    /// keys the page holds), when that order can answer: for the current state (a
    /// snapshot reads its cuts from each leaf), with no ancestor behind a leaf, and an
    /// order that covers the leaves (built here when none does, or when the one kept
    /// can no longer follow them). `None`: merge the leaves' own orders.
    fn list_in_order(&self, request: &ScanRequest) -> Option<Merged> {
        if request.snapshot.is_some() || !self.ancestors.borrow().is_empty() {
            return None;
        }
        // Borrowed, not cloned: listing is synchronous, so no split can change them.
        let leaves = self.leaves.borrow();
        let stores: Vec<&Substore<LeafDevice>> = leaves.values().map(|l| &l.store).collect();
        let mut kept = self.key_order.borrow_mut();
        let from = request.listing_from();
        for _ in 0..2 {
            let order = self.order_over(&mut kept, &stores)?;
            let mut listed = Listed::with_capacity(request.limit);
            let mut fill = PageFill::new(request);
            let visit = |key: &[u8], entry: Entry| {
                let admitted = fill.admits(key, entry.value_len);
                if admitted {
                    listed.push(key, entry.value_len);
                }
                admitted
            };
            if order.visit_keys(
                &stores,
                from.as_deref(),
                request.direction,
                request.limit,
                visit,
            ) {
                let n = listed.keys.len();
                let resume = fill.more().then(|| listed.key(n - 1).to_vec());
                return Some(Merged {
                    listed,
                    page: None,
                    resume,
                });
            }
            *kept = None;
        }
        None
    }

    /// The order kept in `kept` if it covers `stores`, else one built now.
    fn order_over<'k>(
        &self,
        kept: &'k mut Option<KeyOrder>,
        stores: &[&Substore<LeafDevice>],
    ) -> Option<&'k mut KeyOrder> {
        if !kept.as_ref().is_some_and(|o| o.covers(stores)) {
            *kept = KeyOrder::build(stores);
            (self.key_order_builds).set(self.key_order_builds.get() + u64::from(kept.is_some()));
        }
        kept.as_mut()
    }

    /// The leaves changed (a split or a hand-over): the key order no longer covers
    /// them, and dropping it now tells callers that the copy made from it is stale
    /// before any write reaches the new leaves.
    pub(super) fn leaves_changed(&self) {
        *self.key_order.borrow_mut() = None;
    }

    /// Publishes the copy of the key order that callers list pages from
    /// (`shared_order`) while they want one (`Upkeep::wanted`): built from the order
    /// when none follows it, else brought up to date with the changes the order caught
    /// up with. Its memory is lent from the read cache's budget. Withdrawn while an
    /// ancestor lies behind a leaf, when the order cannot be had, once unwanted, or
    /// given up (too large for the cache to lend its memory, or too costly to keep).
    pub(super) fn publish_order(&self) {
        let shared = &self.peers[self.index].order;
        let now = Instant::now();
        let mut upkeep = self.order_copy.borrow_mut();
        let wanted = upkeep.wanted(shared.take_wanted(), now);
        if !wanted && upkeep.copy.is_none() {
            return;
        }
        let outcome = match wanted && self.ancestors.borrow().is_empty() {
            true => self.publish_copy(&mut upkeep.copy, shared),
            false => Publication::Unavailable,
        };
        let pages = shared.pages();
        let kept = match outcome {
            Publication::Built => upkeep.published(Duration::ZERO, Instant::now(), pages),
            Publication::Published => upkeep.published(now.elapsed(), Instant::now(), pages),
            Publication::TooLarge => {
                upkeep.give_up(now);
                false
            }
            Publication::Unavailable => false,
        };
        if !kept && upkeep.copy.take().is_some() {
            OrderCopy::withdraw(shared);
            self.cache.lend(0);
            if let Some(order) = self.key_order.borrow_mut().as_mut() {
                order.feed_changes(false);
            }
        }
    }

    /// Publishes the copy again if a change made it stale (callers would take the trip
    /// until it is): called as the core's queue runs dry, so that a `Buffered` write,
    /// which no commit round publishes before it is acknowledged, does not send the
    /// next scans to the core.
    pub(super) fn publish_if_behind(&self) {
        let behind = (self.order_copy.borrow().copy.as_ref()).is_some_and(OrderCopy::behind);
        if behind {
            self.publish_order();
        }
    }

    /// [`Core::publish_order`]'s work: brings the copy in `copy` up to date (or builds
    /// it) and publishes it.
    fn publish_copy(&self, copy: &mut Option<OrderCopy>, shared: &SharedOrder) -> Publication {
        let leaves = self.leaves.borrow();
        let stores: Vec<&Substore<LeafDevice>> = leaves.values().map(|l| &l.store).collect();
        let mut kept = self.key_order.borrow_mut();
        let Some(order) = self.order_over(&mut kept, &stores) else {
            return Publication::Unavailable;
        };
        let count = order.change_count();
        let built = !copy.as_ref().is_some_and(|c| c.follows(&count));
        let followed = match copy {
            Some(copy) if copy.follows(&count) => {
                let caught_up = order.catch_up(&stores);
                if caught_up {
                    copy.follow(&order.take_fed());
                }
                caught_up
            }
            _ => {
                order.feed_changes(true);
                let mut base = KeyList::default();
                let listed = order.visit_every_key(&stores, |key, entry| {
                    base.push(key, entry.value_len);
                });
                order.take_fed(); // the base holds them
                *copy = listed.then(|| OrderCopy::new(base, count));
                listed
            }
        };
        let Some(copy) = copy.as_mut().filter(|_| followed) else {
            *kept = None; // it could not follow its leaves: the next scan builds one
            return Publication::Unavailable;
        };
        // Its memory comes out of the read cache's budget, up to a share of it.
        if !self.cache.lend(copy.heap_bytes() as u64) {
            return Publication::TooLarge;
        }
        copy.publish(shared);
        copy.merge_if_due();
        match built {
            true => Publication::Built,
            false => Publication::Published,
        }
    }

    /// Brings the key order up to date once its leaves' records of changes pass
    /// [`ORDER_CATCH_UP_CHANGES`] (as a commit round starts), so that neither a scan
    /// after a long run of writes nor a record that overflows (a rebuild) stalls the
    /// core. An order that no longer covers the leaves is dropped: the next scan builds
    /// one.
    pub(super) fn keep_order(&self) {
        let mut kept = self.key_order.borrow_mut();
        let Some(order) = kept.as_mut() else {
            return;
        };
        let leaves = self.leaf_list();
        let stores: Vec<&Substore<LeafDevice>> = leaves.iter().map(|l| &l.store).collect();
        let current = order.covers(&stores)
            && (KeyOrder::pending(&stores) < ORDER_CATCH_UP_CHANGES || order.catch_up(&stores));
        if !current {
            *kept = None;
        }
    }

    /// The leaves and ancestors a scan lists, with the cuts a snapshot reads them at.
    fn scan_sources(&self, snapshot: Option<u64>) -> Result<Vec<Source>> {
        let leaves = self.leaf_list().into_iter().map(|l| (l, false));
        let ancestors = self
            .ancestors
            .borrow()
            .clone()
            .into_iter()
            .map(|a| (a, true));
        (leaves.chain(ancestors))
            .map(|(leaf, behind)| {
                let cut = snapshot.map(|id| self.cut_of(id, &leaf)).transpose()?;
                Ok(Source {
                    leaf,
                    behind,
                    cut,
                    batch: 0..0,
                    more: true,
                })
            })
            .collect()
    }

    /// Whether `key`'s leaf holds it now, or held it at snapshot `id`'s cut.
    fn leaf_holds(&self, snapshot: Option<u64>, key: &[u8]) -> Result<bool> {
        let leaf = self.leaf(routing_hash(key));
        match snapshot {
            Some(id) => self.held_at(id, &leaf, key),
            None => Ok(leaf.store.holds(key)),
        }
    }
}

impl Source {
    /// Lists up to `n` more keys from `from` (as `Substore::scan_keys` takes it) into
    /// `listed`: its new batch. A key past the range's end ends the source.
    fn list(&mut self, listed: &mut Listed, request: &ScanRequest, from: Option<&[u8]>, n: usize) {
        let start = listed.keys.len();
        let mut ended = false;
        let mut visit = |key: &[u8], entry: Entry| {
            if !request.before_end(key) {
                ended = true;
                return false;
            }
            listed.push(key, entry.value_len);
            true
        };
        let store = &self.leaf.store;
        match self.cut {
            Some(cut) => store.visit_keys_at(from, request.direction, n, cut, &mut visit),
            None => store.visit_keys(from, request.direction, n, &mut visit),
        }
        self.batch = start..listed.keys.len();
        self.more = !ended && self.batch.len() == n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(start: Bound<&str>, end: Bound<&str>, direction: Direction) -> ScanRequest {
        let owned = |b: Bound<&str>| b.map(|k| k.as_bytes().to_vec());
        ScanRequest {
            start: owned(start),
            end: owned(end),
            direction,
            limit: 16,
            values: Values::Caller,
            snapshot: None,
        }
    }

    fn page(keys: &[&str]) -> Vec<Item> {
        let item = |k: &&str| (Bytes::copy_from_slice(k.as_bytes()), None);
        keys.iter().map(item).collect()
    }

    /// The page's keys, each with its value if it has one.
    fn shown(items: &[Item]) -> Vec<String> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let show = |(k, v): &Item| match v {
            Some(v) => format!("{}={}", text(k), text(v)),
            None => text(k),
        };
        items.iter().map(show).collect()
    }

    #[test]
    fn an_own_put_goes_in_its_place_or_gives_its_key_a_value() {
        let forward = request(
            Bound::Excluded("b"),
            Bound::Excluded("x"),
            Direction::Forward,
        );
        let mut items = page(&["c", "e", "g"]);
        for key in ["a", "b", "d", "e", "h", "y"] {
            forward.lay_over(&mut items, None, (key.as_bytes(), b"1"));
        }
        assert_eq!(shown(&items), ["c", "d=1", "e=1", "g", "h=1"]);
        // The range has more after the page's last key: nothing past it.
        let mut items = page(&["c", "e", "g"]);
        for key in ["g", "f", "h"] {
            forward.lay_over(&mut items, Some(b"g"), (key.as_bytes(), b"2"));
        }
        assert_eq!(shown(&items), ["c", "e", "f=2", "g=2"]);
    }

    #[test]
    fn an_own_put_is_laid_over_a_reverse_page_in_its_order() {
        let reverse = request(
            Bound::Included("b"),
            Bound::Included("m"),
            Direction::Reverse,
        );
        let mut items = page(&["k", "f", "c"]);
        for key in ["n", "m", "g", "a", "b"] {
            reverse.lay_over(&mut items, None, (key.as_bytes(), b"1"));
        }
        assert_eq!(shown(&items), ["m=1", "k", "g=1", "f", "c", "b=1"]);
        let mut items = page(&["k", "f"]);
        reverse.lay_over(&mut items, Some(b"f"), (b"c", b"2"));
        reverse.lay_over(&mut items, Some(b"f"), (b"h", b"2"));
        assert_eq!(shown(&items), ["k", "h=2", "f"]);
    }
}
