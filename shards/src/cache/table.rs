//! The cache's entries and the table that finds them: a fixed array of buckets, each a
//! chain of entries, read by any thread without a lock and changed by one writer.
//!
//! - **Entries.** One allocation each: a header, then the key's bytes, then the
//!   value's, so that a lookup that found the header has the key (and the start of the
//!   value) on the same cache lines.
//! - **Readers** pin crossbeam's epoch, follow a bucket's chain with acquire loads and
//!   copy what they need out before unpinning. They write nothing but an entry's
//!   `freq` (relaxed), which only the policy reads.
//! - **The writer** (one at a time: the caller of the `&mut`-free methods holds the
//!   cache's writer lock) links an entry fully built (release store of the pointer to
//!   it), replaces one in place, or unlinks one. An entry unlinked is freed through the
//!   epoch ([`Table::retire`]) once no reader pinned before can still hold it, and only
//!   after the policy has let go of it too.
//! - **Link words.** A bucket, and an entry's `next`, hold a pointer to the entry they
//!   lead to with two facts in the bits an address leaves free: that entry's tag (its
//!   hash's top 16 bits, in the top 16 bits, which user-space addresses leave zero) and
//!   whether its own `next` may lead further (bit 0; entries are 8-byte aligned). So a
//!   lookup of a key that is not there usually stops at the bucket, without loading an
//!   entry. The "may lead further" bit is exact when set false: chains only grow at
//!   their head, and an unlinking that ends a chain early leaves a stale `true`, which
//!   costs a load, never an answer.
//! - **Invariant.** Every entry reachable from a bucket is allocated and fully written;
//!   a chain holds at most one entry per key.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

use crossbeam_epoch::Guard;

/// An entry's header; its key's and value's bytes follow it in the same allocation.
#[repr(C)]
pub(super) struct Entry {
    next: AtomicPtr<Entry>,
    pub(super) hash: u64,
    pub(super) expiry_unix_ms: Option<u64>,
    key_len: u32,
    value_len: u32,
    /// Reads since the policy last looked (saturating at [`FREQ_MAX`]).
    pub(super) freq: AtomicU8,
    /// Which queue of the policy holds the entry, and whether the table still does.
    pub(super) place: AtomicU8,
}

/// The most reads an entry's `freq` counts.
pub(super) const FREQ_MAX: u8 = 3;

/// A pointer to an entry, as the writer's structures hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EntryPtr(NonNull<Entry>);

// SAFETY: an entry's fields that anyone changes are atomics; the rest are written once
// before the entry is published and never again, so the pointer may move between
// threads (the writer lock serializes those that change the table).
unsafe impl Send for EntryPtr {}

impl EntryPtr {
    /// Allocates an entry for `key` and `value`, not yet linked.
    pub(super) fn new(hash: u64, key: &[u8], value: &[u8], expiry_unix_ms: Option<u64>) -> Self {
        let layout = layout_for(key.len() + value.len());
        // SAFETY: the layout has a non-zero size (the header's).
        let raw = unsafe { alloc(layout) }.cast::<Entry>();
        let Some(entry) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        assert_eq!(
            raw.addr() & !ADDRESS,
            0,
            "an address leaves a link word's tag bits"
        );
        let header = Entry {
            next: AtomicPtr::new(ptr::null_mut()),
            hash,
            expiry_unix_ms,
            key_len: key.len() as u32,
            value_len: value.len() as u32,
            freq: AtomicU8::new(0),
            place: AtomicU8::new(0),
        };
        // SAFETY: `raw` is a fresh allocation of the layout: the header, then room for
        // the key's and value's bytes, which do not overlap the slices copied from.
        unsafe {
            raw.write(header);
            let bytes = raw.cast::<u8>().add(size_of::<Entry>());
            ptr::copy_nonoverlapping(key.as_ptr(), bytes, key.len());
            ptr::copy_nonoverlapping(value.as_ptr(), bytes.add(key.len()), value.len());
        }
        Self(entry)
    }

    /// The header.
    pub(super) fn get(&self) -> &Entry {
        // SAFETY: an `EntryPtr` is held only while its entry is allocated (the writer
        // frees it through `Table::retire` and forgets the pointer).
        unsafe { self.0.as_ref() }
    }

    /// The key's bytes.
    pub(super) fn key(&self) -> &[u8] {
        // SAFETY: as in `get`.
        unsafe { key_of(self.0.as_ptr()) }
    }

    /// The key's and value's bytes together.
    pub(super) fn payload_len(&self) -> u64 {
        let e = self.get();
        u64::from(e.key_len) + u64::from(e.value_len)
    }

    fn as_ptr(self) -> *mut Entry {
        self.0.as_ptr()
    }

    /// Frees the entry at once.
    ///
    /// # Safety
    /// No one may use the entry again: no table links it, no reader holds it.
    unsafe fn free(self) {
        let e = self.get();
        let layout = layout_for(e.key_len as usize + e.value_len as usize);
        // SAFETY: allocated by `new` with this layout (the lengths never change); the
        // caller guarantees no later use.
        unsafe { dealloc(self.0.as_ptr().cast(), layout) }
    }
}

fn layout_for(bytes: usize) -> Layout {
    let bytes = Layout::array::<u8>(bytes).expect("an entry's length fits");
    let (layout, _) = Layout::new::<Entry>().extend(bytes).expect("fits");
    layout.pad_to_align()
}

/// The key's bytes of the entry at `e`.
///
/// # Safety
/// `e` points at a live entry, which outlives `'a`.
unsafe fn key_of<'a>(e: *const Entry) -> &'a [u8] {
    // SAFETY: the caller's; the key's bytes follow the header in its allocation.
    unsafe {
        let len = (*e).key_len as usize;
        std::slice::from_raw_parts(e.cast::<u8>().add(size_of::<Entry>()), len)
    }
}

/// The value's bytes of the entry at `e` (same contract as [`key_of`]).
unsafe fn value_of<'a>(e: *const Entry) -> &'a [u8] {
    // SAFETY: the caller's; the value's bytes follow the key's.
    unsafe {
        let start = e
            .cast::<u8>()
            .add(size_of::<Entry>() + (*e).key_len as usize);
        std::slice::from_raw_parts(start, (*e).value_len as usize)
    }
}

/// An entry a reader found, valid while the guard it was found under is held.
#[derive(Clone, Copy)]
pub(super) struct Found<'g> {
    at: NonNull<Entry>,
    entry: &'g Entry,
    value: &'g [u8],
}

impl<'g> Found<'g> {
    /// The entry, as the writer holds it.
    pub(super) fn ptr(&self) -> EntryPtr {
        EntryPtr(self.at)
    }
    pub(super) fn entry(&self) -> &'g Entry {
        self.entry
    }
    pub(super) fn value(&self) -> &'g [u8] {
        self.value
    }
}

/// The buckets.
pub(super) struct Table {
    buckets: Box<[AtomicPtr<Entry>]>,
    mask: u64,
}

impl Table {
    /// A table of `buckets` (a power of two) empty chains.
    pub(super) fn new(buckets: usize) -> Self {
        assert!(buckets.is_power_of_two());
        Self {
            buckets: (0..buckets).map(|_| AtomicPtr::default()).collect(),
            mask: buckets as u64 - 1,
        }
    }

    /// Bytes the bucket array takes.
    pub(super) fn bytes(&self) -> u64 {
        (self.buckets.len() * size_of::<AtomicPtr<Entry>>()) as u64
    }

    fn bucket(&self, hash: u64) -> &AtomicPtr<Entry> {
        &self.buckets[(hash & self.mask) as usize]
    }

    /// Asks the processor to start loading `hash`'s bucket, for a lookup soon after.
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch(self.bucket(hash).as_ptr().cast_const().cast());
    }

    /// `hash`'s bucket's link word, asking the processor to load the entry it leads to
    /// when the lookup will need it: the first step of a lookup, done for a batch of
    /// keys before any is finished.
    pub(super) fn head(&self, hash: u64, _guard: &Guard) -> *const Entry {
        let word = self.bucket(hash).load(Ordering::Acquire);
        if word.addr() & TAG == tag(hash) || word.addr() & MORE != 0 {
            prefetch(address(word).cast_const().cast());
        }
        word
    }

    /// The entry for `key` in the chain whose link word is `word` (from [`Table::head`]
    /// under the same guard).
    pub(super) fn find_from<'g>(
        &self,
        mut word: *const Entry,
        hash: u64,
        key: &[u8],
        _guard: &'g Guard,
    ) -> Option<Found<'g>> {
        loop {
            let at = NonNull::new(address(word.cast_mut()))?;
            // SAFETY: reached from a bucket under `_guard`: the entry was linked after
            // the guard was pinned or is retired no sooner than its unpinning, so it
            // stays allocated for 'g, and it was fully written before it was linked
            // (release store, acquire load).
            let entry = unsafe { at.as_ref() };
            // SAFETY: as above.
            let key_matches = || unsafe { key_of(at.as_ptr()) } == key;
            if word.addr() & TAG == tag(hash) && entry.hash == hash && key_matches() {
                // SAFETY: as above.
                let value = unsafe { value_of(at.as_ptr()) };
                return Some(Found { at, entry, value });
            }
            if word.addr() & MORE == 0 {
                return None;
            }
            word = entry.next.load(Ordering::Acquire);
        }
    }

    /// A reader's lookup of `key`.
    pub(super) fn find<'g>(&self, hash: u64, key: &[u8], guard: &'g Guard) -> Option<Found<'g>> {
        self.find_from(self.head(hash, guard), hash, key, guard)
    }

    /// The writer's lookup: the entry linked for `key`.
    pub(super) fn linked(&self, hash: u64, key: &[u8]) -> Option<EntryPtr> {
        let guard = crossbeam_epoch::pin();
        Some(self.find(hash, key, &guard)?.ptr())
    }

    /// Links `entry` (not linked anywhere) at the head of its chain. Writer only.
    pub(super) fn link(&self, entry: EntryPtr) {
        let bucket = self.bucket(entry.get().hash);
        entry
            .get()
            .next
            .store(bucket.load(Ordering::Relaxed), Ordering::Relaxed);
        bucket.store(word_for(entry), Ordering::Release);
    }

    /// Puts `new` (not linked) where `old` is linked, in one store. Writer only.
    pub(super) fn replace(&self, old: EntryPtr, new: EntryPtr) {
        let next = old.get().next.load(Ordering::Relaxed);
        new.get().next.store(next, Ordering::Relaxed);
        self.link_to(old).store(word_for(new), Ordering::Release);
    }

    /// Takes `entry` out of its chain; readers already on it still get through (its
    /// `next` is left as it was). If that ends the chain at the entry before it, the
    /// word leading there says so. Writer only.
    pub(super) fn unlink(&self, entry: EntryPtr) {
        let next = entry.get().next.load(Ordering::Relaxed);
        let (link, before) = self.links_to(entry);
        link.store(next, Ordering::Release);
        if let Some((before, leading)) = before.filter(|_| next.is_null()) {
            leading.store(word_for(before), Ordering::Release);
        }
    }

    fn link_to(&self, entry: EntryPtr) -> &AtomicPtr<Entry> {
        self.links_to(entry).0
    }

    /// The link word that leads to `entry` (its bucket or the `next` of the entry
    /// before it), and that entry before it with the word leading to it.
    fn links_to(
        &self,
        entry: EntryPtr,
    ) -> (&AtomicPtr<Entry>, Option<(EntryPtr, &AtomicPtr<Entry>)>) {
        let mut link = self.bucket(entry.get().hash);
        let mut before = None;
        loop {
            let at = address(link.load(Ordering::Relaxed));
            let at = NonNull::new(at).expect("a linked entry is in its chain");
            if at == entry.0 {
                return (link, before);
            }
            before = Some((EntryPtr(at), link));
            // SAFETY: linked entries are allocated; only the writer (us) frees them.
            link = unsafe { &(*at.as_ptr()).next };
        }
    }

    /// Unlinks every entry (the policy still holds them). Writer only.
    pub(super) fn unlink_all(&self) {
        for bucket in &self.buckets {
            bucket.store(ptr::null_mut(), Ordering::Release);
        }
    }
}

/// A link word's bits: the address, the tag of the entry it leads to, and whether that
/// entry's `next` may lead further.
const ADDRESS: usize = ((1 << 48) - 1) & !MORE;
const TAG: usize = !((1 << 48) - 1);
const MORE: usize = 1;

fn tag(hash: u64) -> usize {
    ((hash >> 48) as usize) << 48
}

fn address(word: *mut Entry) -> *mut Entry {
    word.map_addr(|a| a & ADDRESS)
}

/// The link word leading to `entry`, as its `next` is now.
fn word_for(entry: EntryPtr) -> *mut Entry {
    let more = !entry.get().next.load(Ordering::Relaxed).is_null();
    let bits = tag(entry.get().hash) | usize::from(more);
    entry.as_ptr().map_addr(|a| a | bits)
}

/// Frees `entry` (unlinked, and let go of by the policy) once no reader can hold it.
pub(super) fn retire(entry: EntryPtr) {
    let guard = crossbeam_epoch::pin();
    // SAFETY: the entry is unlinked, so readers pinned from now on cannot reach it;
    // the epoch runs this only after every reader pinned before has unpinned, and the
    // writer keeps no copy of the pointer.
    unsafe { guard.defer_unchecked(move || entry.free()) }
}

/// Frees `entry` at once: for a cache being dropped, which no reader can reach.
///
/// # Safety
/// No reader holds the entry and it will not be used again.
pub(super) unsafe fn free_now(entry: EntryPtr) {
    // SAFETY: the caller's.
    unsafe { entry.free() }
}

/// Cache lines of a found value that [`prefetch_bytes`] asks for: a value's first
/// lines, enough for the small values a scan copies by the dozen.
const PREFETCH_LINES: usize = 8;

/// Asks the processor to start loading the first lines of `bytes`, for a copy soon
/// after.
pub(super) fn prefetch_bytes(bytes: &[u8]) {
    for line in bytes.chunks(64).take(PREFETCH_LINES) {
        prefetch(line.as_ptr().cast());
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch(at: *const i8) {
    // SAFETY: a prefetch is a hint that never faults, whatever the address; SSE, which
    // it needs, is part of every x86-64 processor.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at) };
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch(_at: *const i8) {}
