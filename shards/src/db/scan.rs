//! Ordered range and prefix scans over every core (issue 14): [`Db::range`],
//! [`Db::prefix`], forward or in reverse, with values or keys only, as a blocking
//! iterator or (`into_stream`) a `Stream` for async code.
//!
//! Keys are hashed to cores, so each core holds a scattered share of any range. A scan
//! keeps one cursor per core: a page of that core's keys in order (`core::scan`) and
//! where its next page starts. It yields the least key at the head of any cursor
//! (the greatest, in reverse), fetching a core's next page whenever its cursor runs dry
//! and it has more; pages of all the cores that need one are fetched together. Pages
//! grow from [`PAGE_FIRST`] to [`PAGE_MAX`] keys as a scan goes on, so that a short
//! scan reads little more than it yields and a long one takes few trips.
//!
//! Values are read here, on the caller's thread, once a page's keys arrive: from the
//! cores' caches (a peek, which leaves the cache's judgement of what is hot alone),
//! then the misses with one `GetMany` per core, all in flight together.
//!
//! Consistency: without a snapshot, each page's keys are a core's state at one moment,
//! their values read just after (a key deleted meanwhile is left out, one overwritten
//! shows its newer value); a key written during the scan may or may not appear, and
//! never twice. A scan of a [`Snapshot`](super::Snapshot) sees the
//! snapshot's instant only (and keeps the snapshot open until it is dropped). Expired
//! keys never appear.

use std::cell::RefCell;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use ringkv_engine::Direction;
use ringkv_engine::hash::routing_hash;

use super::snapshot::Pinned;
use super::{Db, Inner, Look};
use crate::cache::LOOKUP_GROUP;
use crate::core::{Item, Op, ScanRequest, Values, Waits};
use crate::error::Result;

/// Keys a core's first page holds.
const PAGE_FIRST: usize = 16;
/// Keys a core's page holds at most (pages double up to it).
const PAGE_MAX: usize = 1024;

/// An ordered scan: yields `(key, value)` in key order (see [`Range::reverse`]).
#[derive(Debug)]
#[must_use = "a scan does nothing until iterated"]
pub struct Range {
    inner: Arc<Inner>,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    direction: Direction,
    keys_only: bool,
    /// One per core, once the first pages are fetched.
    cursors: Vec<Cursor>,
    /// An error ended the scan (it was yielded).
    ended: bool,
    /// Items still to yield, when the caller said how many it wants.
    left: Option<usize>,
    /// The snapshot the scan reads, if any.
    snapshot: Option<Arc<Pinned>>,
}

/// A core's share of the scan.
#[derive(Debug)]
struct Cursor {
    /// Its current page, of which the first `taken` items were yielded (and left
    /// empty). Kept from page to page, so that its memory is allocated once.
    items: Vec<Item>,
    taken: usize,
    next: Next,
    /// Keys its next page may hold.
    page: usize,
    /// Its page's values are still to be read (by the caller).
    unread: bool,
}

impl Cursor {
    fn new(page: usize) -> Self {
        Self {
            items: Vec::new(),
            taken: 0,
            next: Next::Start,
            page,
            unread: false,
        }
    }

    /// Back at the start of a new scan (its items' memory kept).
    fn restart(&mut self, page: usize) {
        self.items.clear();
        (self.taken, self.next, self.page, self.unread) = (0, Next::Start, page, false);
    }

    fn head(&self) -> Option<&Item> {
        self.items.get(self.taken)
    }

    /// Whether it needs its next page: it holds no key and its core may have more.
    fn due(&self) -> bool {
        self.head().is_none() && !matches!(self.next, Next::Done)
    }

    fn pop(&mut self) -> Option<Item> {
        let item = std::mem::take(self.items.get_mut(self.taken)?);
        self.taken += 1;
        Some(item)
    }

    /// Starts on the page just put in `items`; `resume` is where the core's next page
    /// starts, if it may have more.
    fn turn(&mut self, resume: Option<Vec<u8>>, unread: bool) {
        self.taken = 0;
        self.unread = unread;
        self.next = resume.map_or(Next::Done, Next::After);
        self.page = (self.page * 2).min(PAGE_MAX);
    }
}

/// Sets of cursors a thread keeps from its finished scans, with their pages' memory
/// (up to [`SPARE_ITEMS`] items a cursor), for its next scans: a short scan otherwise
/// allocated its cursors and grew each page push by push, and the callers' threads
/// share one malloc arena (see `spare`).
const SPARE_CURSOR_SETS: usize = 2;
const SPARE_ITEMS: usize = 256;

thread_local! {
    static SPARE_CURSORS: RefCell<Vec<Vec<Cursor>>> = const { RefCell::new(Vec::new()) };
}

/// Cursors for a new scan over `cores` cores, each at the start with a first page of
/// `page` keys: a set this thread kept, if it has one.
fn spare_cursors(cores: usize, page: usize) -> Vec<Cursor> {
    let mut cursors = SPARE_CURSORS.with_borrow_mut(Vec::pop).unwrap_or_default();
    cursors.truncate(cores);
    cursors.iter_mut().for_each(|c| c.restart(page));
    cursors.resize_with(cores, || Cursor::new(page));
    cursors
}

/// Keeps a finished scan's cursors (emptied) for this thread's next scan.
fn keep_cursors(mut cursors: Vec<Cursor>) {
    if cursors.is_empty() {
        return;
    }
    for cursor in &mut cursors {
        cursor.items.clear();
        cursor.items.shrink_to(SPARE_ITEMS);
    }
    // A thread that is exiting has no use for them.
    let _ = SPARE_CURSORS.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_CURSOR_SETS {
            spare.push(cursors);
        }
    });
}

impl Drop for Range {
    fn drop(&mut self) {
        keep_cursors(std::mem::take(&mut self.cursors));
    }
}

/// Where a core's next page starts.
#[derive(Debug)]
enum Next {
    /// At the scan's own bound: no page was fetched yet.
    Start,
    /// After this key (exclusive).
    After(Vec<u8>),
    /// The core has no more keys in the range.
    Done,
}

impl Db {
    /// Every live key in `range` with its value, in ascending key order (see
    /// [`Range`] for reverse order, keys only and async use).
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Range {
        let (start, end) = bounds(range);
        Range::new(self.inner.clone(), start, end, None)
    }

    /// Every live key that starts with `prefix`, with its value, in ascending order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        let (start, end) = prefix_bounds(prefix.as_ref());
        Range::new(self.inner.clone(), start, end, None)
    }
}

/// A range's bounds, owned.
pub(super) fn bounds<K: AsRef<[u8]>>(
    range: impl RangeBounds<K>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let owned = |b: Bound<&K>| b.map(|k| k.as_ref().to_vec());
    (owned(range.start_bound()), owned(range.end_bound()))
}

/// The bounds of the keys that start with `prefix`.
pub(super) fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let end = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(prefix.to_vec()), end)
}

/// A core's first page for a scan limited to `n` items over `cores` cores: its share
/// of them (keys spread evenly over cores) and a quarter more, so that most short
/// scans take one page from each core and read few values they do not yield. A single
/// core's page is exact, so it gets `n`.
fn first_page(n: usize, cores: usize) -> usize {
    let page = match cores {
        0 | 1 => n,
        _ => n.div_ceil(cores) * 5 / 4 + 1,
    };
    page.clamp(1, PAGE_MAX)
}

/// The least key greater than every key that starts with `prefix`, if there is one
/// (none when the prefix is empty or all 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

impl Range {
    pub(super) fn new(
        inner: Arc<Inner>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        snapshot: Option<Arc<Pinned>>,
    ) -> Self {
        Self {
            snapshot,
            inner,
            start,
            end,
            direction: Direction::Forward,
            keys_only: false,
            cursors: Vec::new(),
            ended: false,
            left: None,
        }
    }

    /// The same scan in descending key order.
    ///
    /// # Panics
    /// Once the scan has started (an item was taken).
    pub fn reverse(mut self) -> Self {
        assert!(self.cursors.is_empty(), "a scan turns before it starts");
        self.direction = match self.direction {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        };
        self
    }

    /// At most `n` items: the scan stops there, and each core's first page is sized
    /// for its share of them (most short scans take one trip to each core, instead of
    /// pages growing from 16).
    ///
    /// # Panics
    /// Once the scan has started (an item was taken).
    pub fn limit(mut self, n: usize) -> Self {
        assert!(
            self.cursors.is_empty(),
            "a scan is limited before it starts"
        );
        self.left = Some(n);
        self
    }

    /// The keys alone, reading no value (answered from the cores' indexes).
    ///
    /// # Panics
    /// Once the scan has started (an item was taken).
    pub fn keys(mut self) -> Keys {
        assert!(self.cursors.is_empty(), "a scan turns before it starts");
        self.keys_only = true;
        Keys(self)
    }

    /// The next `(key, value)` for async code.
    pub async fn next_async(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        Some(with_value(self.next_item().await?))
    }

    /// The scan as a `Stream` of `(key, value)`.
    pub fn into_stream(self) -> impl Stream<Item = Result<(Bytes, Bytes)>> {
        futures_util::stream::unfold(self, |mut scan| async move {
            let item = scan.next_async().await?;
            Some((item, scan))
        })
    }

    /// The next item of any kind: fetches the pages it needs, then takes the head
    /// that comes first.
    async fn next_item(&mut self) -> Option<Result<Item>> {
        if self.finished() {
            return None;
        }
        let filled = self.fill().await;
        self.take(filled)
    }

    /// [`Range::next_item`] for a plain thread: one that needs a page spins for it
    /// before it parks (`Spinners::block_on`); one that does not runs no future.
    fn next_item_blocking(&mut self) -> Option<Result<Item>> {
        if self.finished() {
            return None;
        }
        let filled = match self.cursors.is_empty() || self.cursors.iter().any(Cursor::due) {
            true => Arc::clone(&self.inner).block_on(Waits::Read, self.fill()),
            false => Ok(()),
        };
        self.take(filled)
    }

    /// Whether the scan yields nothing more: it failed, or gave all it was limited to.
    fn finished(&self) -> bool {
        self.ended || self.left == Some(0)
    }

    /// The head that comes first, once `filled` (what filling the cursors gave).
    fn take(&mut self, filled: Result<()>) -> Option<Result<Item>> {
        if let Err(e) = filled {
            self.ended = true;
            return Some(Err(e));
        }
        // After the first fill, which sizes the first pages for all `left` items.
        if let Some(left) = &mut self.left {
            *left -= 1;
        }
        let sooner = |a: &Bytes, b: &Bytes| self.direction.order(a, b).is_lt();
        let mut first: Option<(usize, &Bytes)> = None;
        for (i, cursor) in self.cursors.iter().enumerate() {
            let Some((key, _)) = cursor.head() else {
                continue;
            };
            if first.is_none_or(|(_, f)| sooner(key, f)) {
                first = Some((i, key));
            }
        }
        let (first, _) = first?;
        Some(Ok(self.cursors[first].pop()?))
    }

    /// Fetches a page for every core whose cursor is dry and has more, until each
    /// holds a key or has none left.
    async fn fill(&mut self) -> Result<()> {
        if self.cursors.is_empty() {
            let cores = self.inner.cores.len();
            let page = self.left.map_or(PAGE_FIRST, |n| first_page(n, cores));
            self.cursors = spare_cursors(cores, page);
        }
        while self.cursors.iter().any(Cursor::due) {
            self.fetch().await?;
        }
        Ok(())
    }

    /// The request for a cursor's next page.
    fn request(&self, cursor: &Cursor) -> ScanRequest {
        let from = |bound: &Bound<Vec<u8>>| match &cursor.next {
            Next::After(key) => Bound::Excluded(key.clone()),
            Next::Start | Next::Done => bound.clone(),
        };
        let (start, end) = match self.direction {
            Direction::Forward => (from(&self.start), self.end.clone()),
            Direction::Reverse => (self.start.clone(), from(&self.end)),
        };
        let snapshot = self.snapshot.as_ref().map(|s| s.id);
        let values = match (self.keys_only, snapshot) {
            (true, _) => Values::None,
            (false, Some(_)) => Values::Here,
            (false, None) => Values::Caller,
        };
        ScanRequest {
            start,
            end,
            direction: self.direction,
            limit: cursor.page,
            values,
            snapshot,
        }
    }

    /// Takes the next page of every cursor that is due: from the cores' published key
    /// orders where they are current, else from the cores, all in flight together;
    /// then reads the values the caller reads.
    async fn fetch(&mut self) -> Result<()> {
        let mut trips = Vec::new();
        for core in 0..self.cursors.len() {
            if !self.cursors[core].due() {
                continue;
            }
            let request = self.request(&self.cursors[core]);
            let cursor = &mut self.cursors[core];
            match self
                .inner
                .published_page_into(core, &request, &mut cursor.items)
            {
                Some(resume) => cursor.turn(resume, true),
                None => trips.push((core, request)),
            }
        }
        let inner = &self.inner;
        let calls = trips.into_iter().map(|(core, request)| async move {
            let values = request.values;
            let page = inner.call_core(core, 0, |r| Op::Scan(Box::new(request), r));
            (core, values, page.await)
        });
        for (core, values, page) in futures_util::future::join_all(calls).await {
            let mut page = page?;
            let cursor = &mut self.cursors[core];
            cursor.items.clear();
            cursor.items.append(&mut page.items);
            cursor.turn(page.resume, values == Values::Caller);
        }
        self.read_values().await
    }

    /// Reads the values of the pages still unread: from the caches on this thread,
    /// then the misses with one request per core. A key deleted since it was listed
    /// is left out.
    async fn read_values(&mut self) -> Result<()> {
        let unread = |c: &Cursor| c.unread;
        for cursor in self.cursors.iter_mut().filter(|c| unread(c)) {
            fill_cached(&self.inner, &mut cursor.items);
        }
        let missed: Vec<(usize, usize)> = (self.cursors.iter().enumerate())
            .filter(|(_, c)| unread(c))
            .flat_map(|(core, c)| {
                let items = c.items.iter().enumerate();
                items
                    .filter(|(_, (_, value))| value.is_none())
                    .map(move |(at, _)| (core, at))
            })
            .collect();
        if !missed.is_empty() {
            let keys = missed.iter().map(|&(core, at)| {
                let key = &self.cursors[core].items[at].0;
                (&key[..], routing_hash(key))
            });
            let found = self.inner.read_from_cores(keys).await?;
            for ((core, at), value) in missed.into_iter().zip(found) {
                self.cursors[core].items[at].1 = value;
            }
        }
        for cursor in self.cursors.iter_mut().filter(|c| unread(c)) {
            cursor.items.retain(|(_, value)| value.is_some());
            cursor.unread = false;
        }
        Ok(())
    }
}

/// Fills in the values of `items` that have none and that the caches hold (left
/// `None`: ask the core).
fn fill_cached(inner: &Inner, items: &mut [Item]) {
    for group in items.chunks_mut(LOOKUP_GROUP) {
        let mut keys: [&[u8]; LOOKUP_GROUP] = [&[]; LOOKUP_GROUP];
        let mut hashes = [0u64; LOOKUP_GROUP];
        for (at, (key, _)) in group.iter().enumerate() {
            (keys[at], hashes[at]) = (key, routing_hash(key));
        }
        let mut values: [Option<Bytes>; LOOKUP_GROUP] = Default::default();
        let n = group.len();
        inner.cached_into(&keys[..n], &hashes[..n], Look::Peek, &mut values[..n]);
        for ((_, value), found) in group.iter_mut().zip(values) {
            if value.is_none() {
                *value = found; // a value already there is the caller's own put
            }
        }
    }
}

/// An item of a scan with values.
fn with_value(item: Result<Item>) -> Result<(Bytes, Bytes)> {
    item.map(|(k, v)| (k, v.expect("a scan with values")))
}

impl Iterator for Range {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(with_value(self.next_item_blocking()?))
    }
}

/// The keys of a [`Range`], in its order, with no value read.
#[derive(Debug)]
#[must_use = "a scan does nothing until iterated"]
pub struct Keys(Range);

impl Keys {
    /// The next key for async code.
    pub async fn next_async(&mut self) -> Option<Result<Bytes>> {
        Some(self.0.next_item().await?.map(|(k, _)| k))
    }

    /// The keys as a `Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> {
        futures_util::stream::unfold(self, |mut keys| async move {
            let item = keys.next_async().await?;
            Some((item, keys))
        })
    }
}

impl Iterator for Keys {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.0.next_item_blocking()?.map(|(k, _)| k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_cursors_start_empty_whatever_the_core_count() {
        let mut one = spare_cursors(1, 16);
        one[0].items.push((Bytes::from_static(b"k"), None));
        one[0].next = Next::Done;
        one[0].taken = 1;
        keep_cursors(one);
        let three = spare_cursors(3, 40);
        assert_eq!(three.len(), 3);
        for cursor in &three {
            assert!(cursor.items.is_empty() && cursor.taken == 0 && cursor.page == 40);
            assert!(matches!(cursor.next, Next::Start) && cursor.due());
        }
        keep_cursors(three);
        assert_eq!(spare_cursors(2, 8).len(), 2);
    }

    #[test]
    fn a_prefix_ends_before_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
