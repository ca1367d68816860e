//! A copy of a core's key order that callers list scan pages from on their own threads,
//! without a trip to the core (issue 14).
//!
//! A short scan's trip to its core cost more than its listing: two context switches
//! where callers outnumber spare CPUs, and the core's thread serves every caller's
//! pages in turn. So a core that is scanned publishes a read-only copy of its keys in
//! order: a base (every key of its one order, `KeyOrder`, in one sorted list) and the
//! keys added and removed since (small sorted lists, published again as they change;
//! past the square root of the base's keys they are merged into a new base). A caller that
//! finds the copy current lists its page from it exactly as the core would (the same
//! bounds, limit and value-bytes cap), then reads the values as for any page (cache,
//! then the core for misses: a key whose value is gone by then is left out, as
//! always).
//!
//! Current means: the copy was published at the order's change count that the count
//! still shows. Every key-set change of the leaves counts before its write is
//! acknowledged (`ringkv_engine::KeyOrder::change_count`), and so does dropping the
//! order (its leaves changed, or it could no longer follow them), so a caller that
//! saw a write acknowledged and then finds the copy current lists a state that holds
//! the write. A page from the copy is a state of the core at one moment, as a page
//! from the core is. A copy not current (or none) sends the caller to the core, which
//! publishes again after it answers (and at each commit round, before the round's
//! writes are acknowledged).
//!
//! Invariants: `added` holds keys not in the base, `removed` keys in the base, and no
//! key is in the base (not removed) and in `added`; all three are sorted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ringkv_engine::{Direction, Fed};

use super::scan::{Item, PageFill, ScanRequest, Values};
use crate::counter::Counter;
use crate::spare;

/// Changes past the square root of the base's keys (at least [`DELTA_MIN`]) are
/// merged into a new base. The lists of changes are copied once a publication (the
/// published copy shares them), the base once a merge (in runs between the changes,
/// not key by key): with `n` keys, about `2 √n` keys copied a change either way.
/// Measured (rig YCSB E, 200 k keys, 5 k inserts a second): rebuilding the lists from
/// a map of changes at every publication and merging key by key gave up the copy
/// within 4 s for its upkeep (see [`UPKEEP_SHARE`]).
const DELTA_MIN: usize = 256;

/// Keys in byte order, their bytes in one buffer, each with its value's length (as of
/// when it was listed: it only sizes pages).
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyList {
    bytes: Vec<u8>,
    /// Each key's end in `bytes` (its start is the previous key's end).
    ends: Vec<usize>,
    value_lens: Vec<u32>,
}

impl KeyList {
    fn with_capacity(keys: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(keys),
            value_lens: Vec::with_capacity(keys),
        }
    }

    pub(crate) fn push(&mut self, key: &[u8], value_len: u32) {
        debug_assert!(self.ends.is_empty() || self.key(self.len() - 1) < key);
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        self.value_lens.push(value_len);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where key `i` starts in `bytes`.
    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    /// Puts `key` in its place, or gives the key there `value_len`.
    fn set(&mut self, key: &[u8], value_len: u32) {
        match self.find(key) {
            Ok(at) => self.value_lens[at] = value_len,
            Err(at) => self.insert(at, key, value_len),
        }
    }

    /// Puts `key` at place `at` (where it sorts).
    fn insert(&mut self, at: usize, key: &[u8], value_len: u32) {
        let start = self.start(at);
        self.bytes.splice(start..start, key.iter().copied());
        self.ends.insert(at, start);
        self.ends[at..].iter_mut().for_each(|end| *end += key.len());
        self.value_lens.insert(at, value_len);
    }

    /// Takes `key` out, if the list holds it.
    fn take_out(&mut self, key: &[u8]) {
        let Ok(at) = self.find(key) else {
            return;
        };
        let start = self.start(at);
        self.bytes.drain(start..self.ends[at]);
        self.ends.remove(at);
        self.ends[at..].iter_mut().for_each(|end| *end -= key.len());
        self.value_lens.remove(at);
    }

    /// Appends the keys `range` of `other` (all after this list's last key), in bulk.
    fn extend_from(&mut self, other: &KeyList, range: std::ops::Range<usize>) {
        if range.is_empty() {
            return;
        }
        let (from, to) = (other.start(range.start), other.ends[range.end - 1]);
        let shift = self.bytes.len() as isize - from as isize;
        self.bytes.extend_from_slice(&other.bytes[from..to]);
        let ends = other.ends[range.clone()].iter();
        self.ends
            .extend(ends.map(|&end| end.wrapping_add_signed(shift)));
        self.value_lens.extend_from_slice(&other.value_lens[range]);
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    /// Whether the list holds `key`.
    fn holds(&self, key: &[u8]) -> bool {
        self.find(key).is_ok()
    }

    /// `key`'s place if the list holds it, else where it would go.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let at = self.before(key);
        match at < self.len() && self.key(at) == key {
            true => Ok(at),
            false => Err(at),
        }
    }

    /// How many keys come before `key`.
    fn before(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = (low + high) / 2;
            match self.key(mid) < key {
                true => low = mid + 1,
                false => high = mid,
            }
        }
        low
    }

    fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 8 + self.value_lens.capacity() * 4
    }
}

/// A walk over a [`KeyList`] in a scan's direction.
struct Walk<'a> {
    list: &'a KeyList,
    /// Forward: the next key's place; reverse: one past it.
    at: usize,
    direction: Direction,
}

impl<'a> Walk<'a> {
    /// From where a core's listing would start (`ScanRequest::listing_from`: forward
    /// the first key at or after `from`, reverse the last key before it).
    fn new(list: &'a KeyList, from: Option<&[u8]>, direction: Direction) -> Self {
        let at = match (direction, from) {
            (_, Some(from)) => list.before(from),
            (Direction::Forward, None) => 0,
            (Direction::Reverse, None) => list.len(),
        };
        Self {
            list,
            at,
            direction,
        }
    }

    /// The next key's place, if any.
    fn place(&self) -> Option<usize> {
        match self.direction {
            Direction::Forward => (self.at < self.list.len()).then_some(self.at),
            Direction::Reverse => self.at.checked_sub(1),
        }
    }

    fn peek(&self) -> Option<&'a [u8]> {
        self.place().map(|i| self.list.key(i))
    }

    fn advance(&mut self) {
        match self.direction {
            Direction::Forward => self.at += 1,
            Direction::Reverse => self.at -= 1,
        }
    }
}

/// A published copy (see the module documentation).
#[derive(Debug)]
pub(crate) struct Published {
    base: Arc<KeyList>,
    added: Arc<KeyList>,
    removed: Arc<KeyList>,
    /// The change count it was published at.
    version: u64,
    count: Arc<AtomicU64>,
}

impl Published {
    fn current(&self) -> bool {
        self.count.load(Ordering::Acquire) == self.version
    }

    /// Lists into `items` (emptied first) the page the core would list for `request`
    /// from the state this copy holds; where the next page starts, if the range may
    /// hold more keys.
    fn page_into(&self, request: &ScanRequest, items: &mut Vec<Item>) -> Option<Vec<u8>> {
        let (direction, from) = (request.direction, request.listing_from());
        let mut base = Walk::new(&self.base, from.as_deref(), direction);
        let mut removed = Walk::new(&self.removed, from.as_deref(), direction);
        let mut added = Walk::new(&self.added, from.as_deref(), direction);
        items.clear();
        let mut fill = PageFill::new(request);
        spare::with_copier(|copier| {
            while fill.room() {
                skip_removed(&mut base, &mut removed, direction);
                let from_added = match (base.peek(), added.peek()) {
                    (Some(b), Some(a)) => direction.order(a, b).is_lt(),
                    (None, Some(_)) => true,
                    (_, None) => false,
                };
                let (walk, list) = match from_added {
                    true => (&mut added, &*self.added),
                    false => (&mut base, &*self.base),
                };
                let Some(at) = walk.place() else {
                    break;
                };
                let key = list.key(at);
                if !fill.admits(key, list.value_lens[at]) {
                    break;
                }
                walk.advance();
                items.push((copier.copy(key), None));
            }
        });
        let last = || {
            items
                .last()
                .expect("a page with more keys holds one")
                .0
                .to_vec()
        };
        fill.more().then(last)
    }
}

/// Moves `base` past the keys `removed` holds (both walk in `direction`).
fn skip_removed(base: &mut Walk<'_>, removed: &mut Walk<'_>, direction: Direction) {
    while let Some(key) = base.peek() {
        while removed
            .peek()
            .is_some_and(|r| direction.order(r, key).is_lt())
        {
            removed.advance();
        }
        if removed.peek() != Some(key) {
            return;
        }
        base.advance();
        removed.advance();
    }
}

/// The part callers see: the copy last published, and whether callers want one.
#[derive(Debug, Default)]
pub(crate) struct SharedOrder {
    published: RwLock<Option<Arc<Published>>>,
    /// A caller looked for a copy since the core last asked.
    wanted: AtomicBool,
    /// Pages callers listed from copies.
    pages: Counter,
}

impl SharedOrder {
    /// Lists into `items` the page for `request` from the copy, if it is current
    /// (`None` if not); marks the copy wanted. `Some` holds where the next page
    /// starts, if the range may hold more keys.
    pub(crate) fn page_into(
        &self,
        request: &ScanRequest,
        items: &mut Vec<Item>,
    ) -> Option<Option<Vec<u8>>> {
        if request.values != Values::Caller || request.snapshot.is_some() {
            return None;
        }
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
        let published = self.published.read().ok()?.clone()?;
        if !published.current() {
            return None;
        }
        self.pages.add(1);
        Some(published.page_into(request, items))
    }

    /// Pages callers listed from copies.
    pub(super) fn pages(&self) -> u64 {
        self.pages.sum()
    }

    /// Whether a caller looked for a copy since the last call.
    pub(super) fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    fn set(&self, published: Option<Arc<Published>>) {
        if let Ok(mut slot) = self.published.write() {
            *slot = published;
        }
    }
}

/// How long a copy stays published after a caller last looked for one, and how long
/// the core waits before it builds one again after giving one up.
const IDLE: Duration = Duration::from_secs(10);
/// Keeping the copy up may take this share of the core's time (1/n), measured over
/// windows of [`WINDOW`], and [`TRIP_CORE_TIME`] more for each page callers listed
/// from it in the window (the trips it saved the core); past that the copy is given up
/// for [`IDLE`] (scans then take the trip). A load that adds keys fast costs a merge of
/// the base every `√n` keys, and a publication copies the `√n` changes: measured, rig
/// YCSB E, 200 k keys, 5 k inserts a second: past a tenth of the core's time within
/// 4 s, while callers listed 80 k pages a second from the copy.
const UPKEEP_SHARE: u32 = 10;
const WINDOW: Duration = Duration::from_secs(1);
/// The core's time a trip for a page takes, at the least (its listing, the hop, the
/// reply): the core thread took about 11 µs of CPU a trip in the run above.
const TRIP_CORE_TIME: Duration = Duration::from_micros(5);

/// The core's decisions about its copy: whether callers want one, whether it may be
/// built, and what its upkeep costs.
#[derive(Debug, Default)]
pub(super) struct Upkeep {
    pub(super) copy: Option<OrderCopy>,
    wanted_at: Option<Instant>,
    given_up_at: Option<Instant>,
    /// Time spent keeping the copy up since the window started.
    spent: Duration,
    /// When the window started, and the pages listed from copies by then.
    window: Option<(Instant, u64)>,
}

impl Upkeep {
    /// Whether a copy should be kept now: callers looked for one lately (`looked`:
    /// since the last call) and it was not given up lately.
    pub(super) fn wanted(&mut self, looked: bool, now: Instant) -> bool {
        if looked {
            self.wanted_at = Some(now);
        }
        let lately = |at: Option<Instant>| at.is_some_and(|at| now - at < IDLE);
        lately(self.wanted_at) && !lately(self.given_up_at)
    }

    /// Notes a publication that took `spent`, finished at `now`, with `pages` listed
    /// from copies so far; `false` (and the copy given up) once its upkeep passed its
    /// share of the window and the time the window's pages saved.
    pub(super) fn published(&mut self, spent: Duration, now: Instant, pages: u64) -> bool {
        let (start, _) = *self.window.get_or_insert((now, pages));
        if now - start >= WINDOW {
            (self.window, self.spent) = (Some((now, pages)), Duration::ZERO);
        }
        self.spent += spent;
        let saved = pages - self.window.map_or(pages, |(_, at_start)| at_start);
        let allowed =
            WINDOW / UPKEEP_SHARE + TRIP_CORE_TIME * saved.min(u64::from(u32::MAX)) as u32;
        let over = self.spent > allowed;
        if over {
            self.give_up(now);
        }
        !over
    }

    /// Gives the copy up for [`IDLE`] (too costly, or too large for the cache to lend
    /// its memory).
    pub(super) fn give_up(&mut self, now: Instant) {
        self.given_up_at = Some(now);
    }
}

/// The core's side: the base it published and the changes since.
#[derive(Debug)]
pub(super) struct OrderCopy {
    base: Arc<KeyList>,
    /// Keys not in the base added since, and keys of the base removed since; shared
    /// with the copy published last, and copied before they change (a few `√n` keys).
    added: Arc<KeyList>,
    removed: Arc<KeyList>,
    /// The count of the order it follows.
    count: Arc<AtomicU64>,
    /// The count it was last published at.
    published: Option<u64>,
}

impl OrderCopy {
    /// A copy whose base is `base`, following the order counting in `count`.
    pub(super) fn new(base: KeyList, count: Arc<AtomicU64>) -> Self {
        Self {
            base: Arc::new(base),
            added: Arc::default(),
            removed: Arc::default(),
            count,
            published: None,
        }
    }

    /// Whether it follows the order counting in `count`.
    pub(super) fn follows(&self, count: &Arc<AtomicU64>) -> bool {
        Arc::ptr_eq(&self.count, count)
    }

    /// Keys added and removed since the base.
    fn changes(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    /// Takes the keys the order caught up with, in order.
    pub(super) fn follow(&mut self, fed: &Fed) {
        if fed.is_empty() {
            return;
        }
        let (added, removed) = (
            Arc::make_mut(&mut self.added),
            Arc::make_mut(&mut self.removed),
        );
        for (key, now) in fed.iter() {
            match (now, self.base.holds(key)) {
                (Some(_), true) => removed.take_out(key),
                (None, false) => added.take_out(key),
                (Some(len), false) => added.set(key, len),
                (None, true) => removed.set(key, 0),
            }
        }
    }

    /// Merges the changes into a new base once they pass the square root of its keys;
    /// called after the copy is published, so that callers list from the published
    /// one (current) while the core merges.
    pub(super) fn merge_if_due(&mut self) {
        if self.changes() > self.base.len().isqrt().max(DELTA_MIN) {
            self.merge();
        }
    }

    /// A new base: the old one with the changes applied, copied in runs between them.
    fn merge(&mut self) {
        let (added, removed) = (
            std::mem::take(&mut self.added),
            std::mem::take(&mut self.removed),
        );
        let (base, keys) = (&*self.base, self.base.len() + added.len());
        let mut merged = KeyList::with_capacity(keys, base.bytes.len() + added.bytes.len());
        let (mut copied, mut next_removed) = (0, 0);
        for i in 0..added.len() {
            let key = added.key(i);
            let place = base.before(key);
            copy_skipping(
                &mut merged,
                base,
                copied..place,
                &removed,
                &mut next_removed,
            );
            merged.push(key, added.value_lens[i]);
            copied = place;
        }
        copy_skipping(
            &mut merged,
            base,
            copied..base.len(),
            &removed,
            &mut next_removed,
        );
        self.base = Arc::new(merged);
    }

    /// Whether a change counted since it was last published (callers find it stale).
    pub(super) fn behind(&self) -> bool {
        self.published != Some(self.count.load(Ordering::Acquire))
    }

    /// Publishes the copy into `shared` unless it was already at this count.
    pub(super) fn publish(&mut self, shared: &SharedOrder) {
        let version = self.count.load(Ordering::Acquire);
        if self.published == Some(version) {
            return;
        }
        shared.set(Some(Arc::new(Published {
            base: self.base.clone(),
            added: self.added.clone(),
            removed: self.removed.clone(),
            version,
            count: self.count.clone(),
        })));
        self.published = Some(version);
    }

    /// Withdraws any copy from `shared`.
    pub(super) fn withdraw(shared: &SharedOrder) {
        shared.set(None);
    }

    /// Heap bytes held (the lists of changes twice: the published ones and the copies
    /// about to change).
    pub(super) fn heap_bytes(&self) -> usize {
        self.base.heap_bytes() + 2 * (self.added.heap_bytes() + self.removed.heap_bytes())
    }
}

/// Appends the keys `range` of `base` to `merged` but those in `removed` (from its key
/// `next_removed` on, which it moves past them).
fn copy_skipping(
    merged: &mut KeyList,
    base: &KeyList,
    range: std::ops::Range<usize>,
    removed: &KeyList,
    next_removed: &mut usize,
) {
    let mut from = range.start;
    while *next_removed < removed.len() {
        let place = base.before(removed.key(*next_removed));
        if place >= range.end {
            break;
        }
        merged.extend_from(base, from..place);
        from = place + 1; // the removed key itself
        *next_removed += 1;
    }
    merged.extend_from(base, from..range.end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_kept_while_callers_look_and_its_upkeep_stays_cheap() {
        let (mut upkeep, t0) = (Upkeep::default(), Instant::now());
        assert!(!upkeep.wanted(false, t0), "nobody looked yet");
        assert!(upkeep.wanted(true, t0));
        assert!(upkeep.wanted(false, t0 + IDLE / 2), "looked lately");
        assert!(
            !upkeep.wanted(false, t0 + IDLE),
            "nobody looked for a while"
        );
        let t1 = t0 + IDLE * 2;
        assert!(upkeep.wanted(true, t1));
        let share = WINDOW / UPKEEP_SHARE;
        assert!(upkeep.published(share / 2, t1, 0));
        assert!(upkeep.published(share / 4, t1 + WINDOW / 2, 0));
        // A new window starts afresh.
        assert!(upkeep.published(share / 2, t1 + WINDOW, 0));
        // Pages listed from the copy in the window pay for more: here half a share.
        let t2 = t1 + WINDOW * 2;
        let pages = u64::try_from(share.as_micros() / 2 / TRIP_CORE_TIME.as_micros()).unwrap();
        assert!(upkeep.published(share / 2, t2, 1_000));
        assert!(upkeep.published(share, t2, 1_000 + pages));
        assert!(
            !upkeep.published(share / 4, t2, 1_000 + pages),
            "past its share and what its pages saved: given up"
        );
        assert!(!upkeep.wanted(true, t2), "given up for a while");
        assert!(upkeep.wanted(true, t2 + IDLE));
    }

    #[test]
    fn changes_cancel_against_the_base_and_merge_into_it() {
        let mut base = KeyList::default();
        for k in [b"b", b"d", b"f"] {
            base.push(k, 1);
        }
        let mut copy = OrderCopy::new(base, Arc::new(AtomicU64::new(0)));
        let keys = |list: &KeyList| (0..list.len()).map(|i| list.key(i).to_vec()).collect();
        let mut fed = ringkv_engine::Fed::default();
        // Removed then added again (back to the base), added then removed (nothing).
        fed.push(b"d", None);
        fed.push(b"d", Some(2));
        fed.push(b"a", Some(3));
        fed.push(b"c", Some(3));
        fed.push(b"c", None);
        fed.push(b"f", None);
        copy.follow(&fed);
        let (added, removed): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
            (keys(&copy.added), keys(&copy.removed));
        assert_eq!((added, removed), (vec![b"a".to_vec()], vec![b"f".to_vec()]));
        copy.merge();
        let got: Vec<Vec<u8>> = keys(&copy.base);
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
        assert_eq!(copy.changes(), 0);
    }

    /// The copy's keys (base, less removed, with added) are the model's after every
    /// round of changes, through merges, with value lengths kept.
    #[test]
    fn a_copy_follows_a_model_through_merges() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let key = |n: u64| format!("k{:05}", n % 3_000).into_bytes();
        let mut model = std::collections::BTreeMap::new();
        let mut base = KeyList::default();
        for n in (0..3_000).step_by(3) {
            base.push(&key(n), n as u32);
            model.insert(key(n), n as u32);
        }
        let mut copy = OrderCopy::new(base, Arc::new(AtomicU64::new(0)));
        let mut merges = 0;
        for _ in 0..200 {
            let mut fed = ringkv_engine::Fed::default();
            let mut batch = std::collections::BTreeMap::new();
            for _ in 0..(next() % 40) {
                let (k, add) = (key(next()), next() % 3 != 0);
                batch.insert(k, add.then(|| next() as u32 % 1_000));
            }
            for (k, len) in &batch {
                fed.push(k, *len);
                match len {
                    Some(len) => model.insert(k.clone(), *len),
                    None => model.remove(k),
                };
            }
            let before = copy.base.clone();
            copy.follow(&fed);
            copy.merge_if_due();
            merges += usize::from(!Arc::ptr_eq(&before, &copy.base));
            let mut listed = std::collections::BTreeMap::new();
            for i in 0..copy.base.len() {
                listed.insert(copy.base.key(i).to_vec(), copy.base.value_lens[i]);
            }
            for i in 0..copy.removed.len() {
                assert!(
                    listed.remove(copy.removed.key(i)).is_some(),
                    "removed from the base"
                );
            }
            for i in 0..copy.added.len() {
                let k = copy.added.key(i).to_vec();
                assert!(
                    listed.insert(k, copy.added.value_lens[i]).is_none(),
                    "added anew"
                );
            }
            // A key of the base added again keeps its listed length (it only sizes pages).
            let keys_of = |m: &std::collections::BTreeMap<Vec<u8>, u32>| {
                m.keys().cloned().collect::<Vec<_>>()
            };
            assert_eq!(keys_of(&listed), keys_of(&model));
        }
        assert!(merges > 1, "the changes were merged into new bases");
    }
}
