//! Snapshots of one substore: cuts, and the versions writes replaced since.
//!
//! A cut ([`Substore::pin`]) is the substore's next sequence number at that moment: a
//! read at the cut sees every record with a lower sequence and none other. The index
//! keeps only each key's newest record, so while any cut is pinned, a write keeps what
//! it replaces: the key's index entry just before it (`None`: the key was absent),
//! tagged with the write's sequence. For a cut `c`, a key's state is the one kept by the
//! first write at or after `c`, or, when none wrote it since, its current entry.
//!
//! A write keeps the old state only if no write since the newest cut kept one: every
//! cut then finds the first write after it. The records kept entries point at stay
//! where they are as long as nothing rewrites or removes extents: compaction refuses to
//! run while a cut is pinned (the owner of the substore holds it back). An unpin
//! forgets the versions no remaining cut can read (those kept before the oldest one);
//! the last unpin forgets them all.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::device::Device;
use crate::error::Result;
use crate::index::{Entry, Index};
use crate::scan::Direction;
use crate::substore::{StoredRecord, Substore, is_live};

/// The cuts pinned on a substore and the versions kept for them.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    /// Pinned cuts, each with how many pins it has.
    cuts: BTreeMap<u64, usize>,
    /// For each key written since the oldest cut: (the write's sequence, the key's
    /// entry just before it), oldest first.
    kept: BTreeMap<Vec<u8>, Vec<(u64, Option<Entry>)>>,
    /// Bytes `kept` holds (keys and versions), for the owner's figures.
    bytes: usize,
}

/// What a substore's snapshots hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinnedStats {
    pub cuts: u64,
    /// Versions kept for them, and the memory they take.
    pub versions: u64,
    pub bytes: u64,
}

const VERSION_BYTES: usize = std::mem::size_of::<(u64, Option<Entry>)>();

impl Versions {
    pub(crate) fn is_pinned(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// Before the write of `key` with sequence `seq`: keeps the key's state, `index`'s
    /// entry, if a cut needs it.
    pub(crate) fn note_write(&mut self, index: &Index, key: &[u8], seq: u64) {
        let Some((&newest, _)) = self.cuts.last_key_value() else {
            return;
        };
        let kept = self.kept.get(key).and_then(|v| v.last());
        if kept.is_some_and(|&(at, _)| at >= newest) {
            return; // kept since the newest cut: every cut has its version
        }
        let before = index.get(key);
        if !self.kept.contains_key(key) {
            self.bytes += key.len();
        }
        self.bytes += VERSION_BYTES;
        self.kept
            .entry(key.to_vec())
            .or_default()
            .push((seq, before));
    }

    /// Forgets the versions kept before the oldest cut: a cut reads the first version
    /// kept at or after it, so no cut reads those.
    fn trim(&mut self) {
        let Some((&oldest, _)) = self.cuts.first_key_value() else {
            *self = Versions::default();
            return;
        };
        let mut freed = 0;
        self.kept.retain(|key, versions| {
            let stale = versions.partition_point(|&(at, _)| at < oldest);
            versions.drain(..stale);
            freed += stale * VERSION_BYTES;
            if versions.is_empty() {
                freed += key.len();
            }
            !versions.is_empty()
        });
        self.bytes -= freed;
    }

    /// `key`'s entry at `cut`, given its current one.
    fn entry_at(&self, key: &[u8], current: Option<Entry>, cut: u64) -> Option<Entry> {
        let first_after = self
            .kept
            .get(key)
            .and_then(|v| v.iter().find(|(at, _)| *at >= cut));
        match first_after {
            Some((_, before)) => *before,
            None => current,
        }
    }
}

impl<D: Device> Substore<D> {
    /// Pins a cut now: reads at it ([`Substore::get_at`], [`Substore::scan_keys_at`])
    /// see exactly the records written before. Compaction refuses to run until every
    /// cut is unpinned.
    pub fn pin(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        let cut = state.next_seq;
        *state.versions.cuts.entry(cut).or_default() += 1;
        cut
    }

    /// Unpins `cut`, forgetting the versions no remaining cut reads (all of them with
    /// the last unpin).
    pub fn unpin(&self, cut: u64) {
        let mut state = self.state.borrow_mut();
        let versions = &mut state.versions;
        if let Some(pins) = versions.cuts.get_mut(&cut) {
            *pins -= 1;
            if *pins == 0 {
                versions.cuts.remove(&cut);
                versions.trim();
            }
        }
    }

    /// Bytes the versions kept for the pinned cuts take (see [`Substore::pinned_stats`]).
    pub fn pinned_bytes(&self) -> u64 {
        self.state.borrow().versions.bytes as u64
    }

    /// The cuts pinned and the versions kept for them.
    pub fn pinned_stats(&self) -> PinnedStats {
        let state = self.state.borrow();
        let v = &state.versions;
        PinnedStats {
            cuts: v.cuts.values().sum::<usize>() as u64,
            versions: v.kept.values().map(|k| k.len() as u64).sum(),
            bytes: v.bytes as u64,
        }
    }

    /// `key`'s index entry at `cut` (an expired record included), if it had one.
    pub fn entry_at(&self, key: &[u8], cut: u64) -> Option<Entry> {
        let state = self.state.borrow();
        state.versions.entry_at(key, state.index.get(key), cut)
    }

    /// `key`'s live record at `cut`, if any.
    pub async fn get_at(&self, key: &[u8], cut: u64) -> Result<Option<StoredRecord>> {
        self.check_pinned(cut);
        match self.entry_at(key, cut) {
            Some(entry) if !self.config.clock.has_passed(entry.expiry_unix_ms) => {
                self.read_entry(key, &entry).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// [`Substore::scan_keys`] at `cut`: the keys live at the cut, with their entries
    /// then, merging the current key order with the keys kept since.
    pub fn scan_keys_at(
        &self,
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        cut: u64,
    ) -> Vec<(Vec<u8>, Entry)> {
        crate::scan::collected(|visit| self.visit_keys_at(from, direction, limit, cut, visit))
    }

    /// [`Substore::scan_keys_at`] without copying a key, as [`Substore::visit_keys`].
    pub fn visit_keys_at(
        &self,
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        cut: u64,
        mut visit: impl FnMut(&[u8], Entry) -> bool,
    ) {
        let state = &mut *self.state.borrow_mut();
        state.index.build_order();
        let (index, versions) = (&state.index, &state.versions);
        let now = self.config.clock.now_unix_ms();
        let kept_range = match (direction, from) {
            (Direction::Forward, Some(f)) => (Bound::Included(f.to_vec()), Bound::Unbounded),
            (Direction::Reverse, Some(f)) => (Bound::Unbounded, Bound::Excluded(f.to_vec())),
            (_, None) => (Bound::Unbounded, Bound::Unbounded),
        };
        let kept = versions.kept.range(kept_range).map(|(k, _)| k.as_slice());
        let kept: Box<dyn Iterator<Item = &[u8]>> = match direction {
            Direction::Forward => Box::new(kept),
            Direction::Reverse => Box::new(kept.rev()),
        };
        let current = index.keys_from(from, direction).map(|(k, _)| k);
        let live = merged(current, kept, direction).filter_map(|key| {
            let entry = versions.entry_at(key, index.get(key), cut)?;
            is_live(&entry, now).then_some((key, entry))
        });
        for (key, entry) in live.take(limit) {
            if !visit(key, entry) {
                return;
            }
        }
    }

    fn check_pinned(&self, cut: u64) {
        let pinned = self.state.borrow().versions.cuts.contains_key(&cut);
        assert!(pinned, "a read at cut {cut}, which is not pinned");
    }
}

/// The union of two key sequences sorted in `direction`, each key once.
fn merged<'a>(
    a: impl Iterator<Item = &'a [u8]>,
    b: impl Iterator<Item = &'a [u8]>,
    direction: Direction,
) -> impl Iterator<Item = &'a [u8]> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || {
        let sooner = |x: &[u8], y: &[u8]| direction.order(x, y).is_le();
        match (a.peek(), b.peek()) {
            (Some(&x), Some(&y)) if x == y => {
                b.next();
                a.next()
            }
            (Some(&x), Some(&y)) if sooner(x, y) => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        }
    })
}
