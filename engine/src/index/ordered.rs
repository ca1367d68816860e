//! The keys of one index in byte order, for range and prefix scans (issue 14): the
//! index's slot numbers, sorted by the keys they name, in chunks.
//!
//! Memory is the point (the index's memory per key is a headline figure): a key costs
//! its 4-byte slot number, a 2-byte hint and a share of its chunk's slack and header,
//! about 6.7 bytes in all. No key bytes are copied: comparisons read the keys from the
//! index's arena through a function the index passes in, so the order never goes stale
//! when the arena is rebuilt (slot numbers stay).
//!
//! Reading a key from the arena costs two cache misses (its slot, then its bytes), and
//! a binary search is a chain of them; so a seek compares small integers kept here and
//! reads keys only to break ties:
//!
//! - **Chunks**: each holds 1..=[`CHUNK_MAX`] slot numbers in key order, every key of a
//!   chunk below every key of the next. A full chunk splits in two halves.
//! - **Capacity** grows by [`CHUNK_GROWTH`] slots at a time, so a chunk wastes at most
//!   that many (not half, as doubling would).
//! - **Fences**: 8 bytes of each chunk's first key, big-endian, in an array of their
//!   own, taken after the bytes every key shares (`prefix`, kept here: keys such as
//!   `user:000042` share their first bytes, and fences of those would all tie), so
//!   that finding the chunk compares integers in one contiguous array.
//! - **Hints**: beside each slot number, the two bytes of its key that follow what all
//!   keys of its chunk share (the chunk's `skip`), so that the place in a chunk is found
//!   among the few keys with the sought key's hint.
//! - **Cost**: an insert or a removal of a key finds its chunk by the fences, then its
//!   place in the chunk by the hints, and moves at most one chunk; replacing a key's
//!   value does not touch the order. A new first or last key that shares less than the
//!   others do re-reads the keys of its chunk (or every chunk's first key, for the
//!   fences): rare, since keys that share little are far apart.
//!
//! Invariants: every live slot of the index appears exactly once, in the position its
//! key gives it; every key starts with `prefix`, and every key of a chunk shares its
//! first `chunk.skip` bytes (at least `prefix.len()`) with the chunk's others; each
//! fence and hint is what [`fence`] and [`hint`] give for its key at those offsets.

use crate::scan::Direction;

/// Most slot numbers a chunk holds before it splits.
pub(crate) const CHUNK_MAX: usize = 256;
/// Slot numbers a chunk's capacity grows by.
const CHUNK_GROWTH: usize = 16;

/// The keys of an index in order: slot numbers in chunks.
#[derive(Debug, Default)]
pub(crate) struct Ordered {
    chunks: Vec<Chunk>,
    /// `fence(first key, prefix.len())` of each chunk.
    fences: Vec<u64>,
    /// Leading bytes every key shares (a few bytes, kept so that a seek compares a
    /// key's start without reading a key).
    prefix: Vec<u8>,
}

/// Slot numbers in key order, with their keys' hints.
#[derive(Debug)]
struct Chunk {
    ids: Vec<u32>,
    /// `hint(key, skip)` of each slot's key.
    hints: Vec<u16>,
    /// Leading bytes every key of the chunk shares.
    skip: usize,
}

/// 8 bytes of `key` from `skip` (zero-padded), big-endian: for keys that share their
/// first `skip` bytes, differing fences order the keys; equal fences say nothing.
fn fence(key: &[u8], skip: usize) -> u64 {
    let mut b = [0u8; 8];
    let tail = key.get(skip..).unwrap_or_default();
    let n = tail.len().min(8);
    b[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(b)
}

/// [`fence`]'s two-byte sibling, for the keys of one chunk.
fn hint(key: &[u8], skip: usize) -> u16 {
    let byte = |i: usize| key.get(skip + i).copied().unwrap_or(0);
    u16::from_be_bytes([byte(0), byte(1)])
}

/// How many leading bytes `a` and `b` share.
fn shared_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `key` against the `skip` leading bytes `prefix` of keys: `Equal` when the key
/// starts with them (then its fence or hint orders it among those keys).
fn against_prefix(key: &[u8], prefix: &[u8]) -> std::cmp::Ordering {
    let n = key.len().min(prefix.len());
    key[..n]
        .cmp(&prefix[..n])
        .then(if key.len() < prefix.len() {
            std::cmp::Ordering::Less
        } else {
            std::cmp::Ordering::Equal
        })
}

/// Where a key sits or would sit: chunk number and position in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) chunk: usize,
    pub(crate) pos: usize,
}

/// Slots per chunk when an order is built from scratch: room for a quarter more before
/// a split.
const CHUNK_BUILT: usize = CHUNK_MAX * 3 / 4;

impl Chunk {
    /// A chunk of `ids` (sorted), hinted after the bytes their keys share.
    fn of<'k>(ids: &[u32], key_of: &impl Fn(u32) -> &'k [u8]) -> Self {
        let (first, last) = (key_of(ids[0]), key_of(ids[ids.len() - 1]));
        let mut chunk = Self {
            ids: Vec::with_capacity(ids.len() + CHUNK_GROWTH),
            hints: Vec::with_capacity(ids.len() + CHUNK_GROWTH),
            skip: shared_len(first, last),
        };
        chunk.ids.extend_from_slice(ids);
        chunk.rehint(key_of);
        chunk
    }

    /// Recomputes every hint for the chunk's `skip`.
    fn rehint<'k>(&mut self, key_of: &impl Fn(u32) -> &'k [u8]) {
        self.hints.clear();
        (self.hints).extend(self.ids.iter().map(|&id| hint(key_of(id), self.skip)));
    }

    /// The first position whose key is not below `key`, a key that starts with the
    /// order's `skip` shared bytes and is at or after the chunk's first key (or the
    /// chunk is the first); `fence` is the chunk's. And whether `key` shares the
    /// chunk's own shared bytes (its `skip`).
    fn seek<'k>(
        &self,
        key: &[u8],
        fence: u64,
        skip: usize,
        key_of: &impl Fn(u32) -> &'k [u8],
    ) -> (usize, bool) {
        // The chunk's shared bytes past the order's are in its fence, when few.
        let more = self.skip - skip;
        let beyond = match more <= 8 {
            true => against_prefix(&key[skip..], &fence.to_be_bytes()[..more]),
            false => against_prefix(key, &key_of(self.ids[0])[..self.skip]),
        };
        match beyond {
            std::cmp::Ordering::Less => return (0, false),
            std::cmp::Ordering::Greater => return (self.ids.len(), false),
            std::cmp::Ordering::Equal => {}
        }
        let h = hint(key, self.skip);
        let lo = self.hints.partition_point(|&x| x < h);
        let ties = self.hints[lo..].partition_point(|&x| x == h);
        let pos = lo + self.ids[lo..lo + ties].partition_point(|&id| key_of(id) < key);
        (pos, true)
    }

    /// Inserts slot `id` (key `key`) at `pos`, first lowering the chunk's `skip` if the
    /// key shares less with the others; `shares`: the key is known to share the
    /// chunk's `skip` bytes (as its seek found), so its first key need not be read.
    fn insert<'k>(
        &mut self,
        pos: usize,
        id: u32,
        key: &[u8],
        shares: bool,
        key_of: &impl Fn(u32) -> &'k [u8],
    ) {
        let shared = match shares {
            true => self.skip,
            false => shared_len(key, key_of(self.ids[0])),
        };
        if self.ids.len() == self.ids.capacity() {
            self.ids.reserve_exact(CHUNK_GROWTH);
            self.hints.reserve_exact(CHUNK_GROWTH);
        }
        self.ids.insert(pos, id);
        if shared < self.skip {
            self.skip = shared;
            self.rehint(key_of);
        } else {
            self.hints.insert(pos, hint(key, self.skip));
        }
    }

    /// Splits off the upper half.
    fn split<'k>(&mut self, key_of: &impl Fn(u32) -> &'k [u8]) -> Self {
        let upper = Self::of(&self.ids[CHUNK_MAX / 2..], key_of);
        self.ids.truncate(CHUNK_MAX / 2);
        self.ids.shrink_to(CHUNK_MAX / 2 + CHUNK_GROWTH);
        *self = Self::of(&self.ids, key_of);
        upper
    }
}

impl Ordered {
    /// The order of `ids` (each slot once; `key_of` reads a slot's key).
    pub(crate) fn build<'k>(mut ids: Vec<u32>, key_of: &impl Fn(u32) -> &'k [u8]) -> Self {
        let Some(&any) = ids.first() else {
            return Self::default();
        };
        let any = key_of(any);
        let skip = ids
            .iter()
            .fold(any.len(), |n, &id| n.min(shared_len(any, key_of(id))));
        // Sorted by fence first: most comparisons never read the arena.
        ids.sort_unstable_by_key(|&id| fence(key_of(id), skip));
        for run in ids.chunk_by_mut(|&a, &b| fence(key_of(a), skip) == fence(key_of(b), skip)) {
            run.sort_unstable_by(|&a, &b| key_of(a).cmp(key_of(b)));
        }
        let chunks: Vec<Chunk> = (ids.chunks(CHUNK_BUILT))
            .map(|ids| Chunk::of(ids, key_of))
            .collect();
        let fences = (chunks.iter())
            .map(|c| fence(key_of(c.ids[0]), skip))
            .collect();
        Self {
            chunks,
            fences,
            prefix: any[..skip].to_vec(),
        }
    }

    /// The first position whose key is not below `key` (`key_of` reads a slot's key).
    pub(crate) fn seek<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> At {
        if self.chunks.is_empty() {
            return self.end();
        }
        match against_prefix(key, &self.prefix) {
            std::cmp::Ordering::Less => return At { chunk: 0, pos: 0 },
            std::cmp::Ordering::Greater => return self.end(),
            std::cmp::Ordering::Equal => {}
        }
        let (chunk, pos, _) = self.place(key, key_of);
        self.normalized(At { chunk, pos })
    }

    /// Where `key`, which starts with the shared bytes, sits or would: in the last
    /// chunk whose first key is at or below it (the first chunk, if none is); and
    /// whether it shares that chunk's own shared bytes.
    fn place<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> (usize, usize, bool) {
        let skip = self.prefix.len();
        let f = fence(key, skip);
        // "first key <= key": a fence below `f` is, one above is not, a tie reads.
        let lo = self.fences.partition_point(|&x| x < f);
        let ties = self.fences[lo..].partition_point(|&x| x == f);
        let at_or_below = self.chunks[lo..lo + ties].partition_point(|c| key_of(c.ids[0]) <= key);
        let chunk = (lo + at_or_below).saturating_sub(1);
        let (pos, shares) = self.chunks[chunk].seek(key, self.fences[chunk], skip, key_of);
        (chunk, pos, shares)
    }

    /// `at`, moved to the start of the next chunk when it is past the end of its own.
    fn normalized(&self, at: At) -> At {
        match self.chunks.get(at.chunk) {
            Some(c) if at.pos == c.ids.len() => At {
                chunk: at.chunk + 1,
                pos: 0,
            },
            _ => at,
        }
    }

    /// The slot at `at`, if `at` is not past the end.
    pub(crate) fn get(&self, at: At) -> Option<u32> {
        (self.chunks.get(at.chunk)).and_then(|c| c.ids.get(at.pos).copied())
    }

    /// The position after `at`.
    pub(crate) fn next(&self, at: At) -> At {
        self.normalized(At {
            chunk: at.chunk,
            pos: at.pos + 1,
        })
    }

    /// The position before `at`, if any.
    pub(crate) fn prev(&self, at: At) -> Option<At> {
        match at.pos {
            0 if at.chunk == 0 => None,
            0 => {
                let chunk = at.chunk - 1;
                Some(At {
                    chunk,
                    pos: self.chunks[chunk].ids.len() - 1,
                })
            }
            pos => Some(At {
                chunk: at.chunk,
                pos: pos - 1,
            }),
        }
    }

    /// Where a walk in `direction` starts: forward at the first key at or after `from`
    /// (the first key for `None`), in reverse at the last key before `from` (the last
    /// key for `None`); `None` if nothing is there.
    pub(crate) fn start<'k>(
        &self,
        from: Option<&[u8]>,
        direction: Direction,
        key_of: &impl Fn(u32) -> &'k [u8],
    ) -> Option<At> {
        match (direction, from) {
            (Direction::Forward, from) => Some(self.seek(from.unwrap_or_default(), key_of)),
            (Direction::Reverse, Some(end)) => self.prev(self.seek(end, key_of)),
            (Direction::Reverse, None) => self.prev(self.end()),
        }
    }

    /// The slots from `at` ([`Ordered::start`]) on in `direction`'s order.
    pub(crate) fn walk(
        &self,
        mut at: Option<At>,
        direction: Direction,
    ) -> impl Iterator<Item = u32> + '_ {
        std::iter::from_fn(move || {
            let here = at?;
            let id = self.get(here)?;
            at = match direction {
                Direction::Forward => Some(self.next(here)),
                Direction::Reverse => self.prev(here),
            };
            Some(id)
        })
    }

    /// The position past the last key.
    pub(crate) fn end(&self) -> At {
        At {
            chunk: self.chunks.len(),
            pos: 0,
        }
    }

    /// Adds slot `id`, whose key is `key` and not yet here.
    pub(crate) fn insert<'k>(&mut self, id: u32, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        if self.chunks.is_empty() {
            *self = Self::build(vec![id], &|_| key);
            return;
        }
        let shared = shared_len(key, &self.prefix);
        if shared < self.prefix.len() {
            self.prefix.truncate(shared);
            self.refence(key_of);
        }
        let (chunk, pos, shares) = self.place(key, key_of);
        let c = &mut self.chunks[chunk];
        debug_assert!(
            c.ids.get(pos).is_none_or(|&o| key_of(o) != key),
            "a key twice"
        );
        c.insert(pos, id, key, shares, key_of);
        let skip = self.prefix.len();
        if pos == 0 {
            self.fences[chunk] = fence(key, skip);
        }
        if c.ids.len() > CHUNK_MAX {
            let upper = c.split(key_of);
            self.fences
                .insert(chunk + 1, fence(key_of(upper.ids[0]), skip));
            self.chunks.insert(chunk + 1, upper);
        }
    }

    /// Recomputes every fence for the order's shared bytes.
    fn refence<'k>(&mut self, key_of: &impl Fn(u32) -> &'k [u8]) {
        let skip = self.prefix.len();
        self.fences = (self.chunks.iter())
            .map(|c| fence(key_of(c.ids[0]), skip))
            .collect();
    }

    /// Removes slot `id`, whose key is `key`.
    pub(crate) fn remove<'k>(&mut self, id: u32, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        let at = self.seek(key, key_of);
        assert_eq!(self.get(at), Some(id), "the order holds every live slot");
        let c = &mut self.chunks[at.chunk];
        c.ids.remove(at.pos);
        c.hints.remove(at.pos);
        if c.ids.is_empty() {
            self.chunks.remove(at.chunk);
            self.fences.remove(at.chunk);
            return;
        }
        if c.ids.capacity() - c.ids.len() > 2 * CHUNK_GROWTH {
            c.ids.shrink_to(c.ids.len() + CHUNK_GROWTH);
            c.hints.shrink_to(c.ids.len() + CHUNK_GROWTH);
        }
        if at.pos == 0 {
            self.fences[at.chunk] = fence(key_of(c.ids[0]), self.prefix.len());
        }
    }

    /// Heap bytes held (capacities).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.fences.capacity() * std::mem::size_of::<u64>()
            + self.prefix.capacity()
            + (self.chunks.iter())
                .map(|c| c.ids.capacity() * 4 + c.hints.capacity() * 2)
                .sum::<usize>()
    }

    /// Whether the slots are in strictly increasing key order, with every fence, hint
    /// and shared length right (for tests).
    #[cfg(test)]
    pub(crate) fn is_sorted<'k>(&self, key_of: &impl Fn(u32) -> &'k [u8]) -> bool {
        let keys: Vec<&[u8]> = (self.chunks.iter())
            .flat_map(|c| c.ids.iter().map(|&id| key_of(id)))
            .collect();
        let all_share = keys
            .iter()
            .all(|k| shared_len(&self.prefix, k) == self.prefix.len());
        let chunks_right = self.chunks.iter().all(|c| {
            let first = key_of(c.ids[0]);
            !c.ids.is_empty()
                && c.ids.len() <= CHUNK_MAX
                && c.ids.len() == c.hints.len()
                && (c.ids.iter()).all(|&id| shared_len(first, key_of(id)) >= c.skip)
                && (c.ids.iter().zip(&c.hints)).all(|(&id, &h)| hint(key_of(id), c.skip) == h)
        });
        let fences = (self.chunks.iter().zip(&self.fences))
            .all(|(c, &f)| fence(key_of(c.ids[0]), self.prefix.len()) == f);
        keys.windows(2).all(|w| w[0] < w[1])
            && chunks_right
            && fences
            && (keys.is_empty() || all_share)
            && self.fences.len() == self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Keys that share long prefixes, as `user:000042:name` keys do, and some that
    /// share little, so that both `skip`s move.
    fn key(n: u64) -> Vec<u8> {
        match n % 7 {
            0 => format!("a{n}").into_bytes(),
            1 => format!("user:{:08}", n % 5000).into_bytes(),
            2 => format!("user:{:08}:x{}", n % 3000, n % 3).into_bytes(),
            _ => format!("user:{:08}:name", n % 4000).into_bytes(),
        }
    }

    fn reader<'a>(arena: &'a [Vec<u8>]) -> impl Fn(u32) -> &'a [u8] {
        move |id| &arena[id as usize]
    }

    /// Keys that all share their first 10 bytes, and most their first 13.
    fn long_shared(n: u64) -> Vec<u8> {
        format!("user:0000{:08}:{}", n % 900 * 7, n % 5).into_bytes()
    }

    #[test]
    fn seeks_inserts_and_removals_agree_with_a_sorted_map() {
        run(key);
        run(long_shared);
    }

    fn run(key: fn(u64) -> Vec<u8>) {
        let mut arena: Vec<Vec<u8>> = Vec::new();
        let mut model: BTreeMap<Vec<u8>, u32> = BTreeMap::new();
        let mut order = Ordered::default();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..30_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let k = key(state % 20_000);
            match model.get(&k) {
                Some(&id) if state % 3 == 0 => {
                    order.remove(id, &k, &reader(&arena));
                    model.remove(&k);
                }
                Some(_) => {}
                None => {
                    let id = arena.len() as u32;
                    arena.push(k.clone());
                    order.insert(id, &k, &reader(&arena));
                    model.insert(k, id);
                }
            }
            let key_of = reader(&arena);
            if step % 1000 == 999 || step < 50 {
                assert!(order.is_sorted(&key_of), "step {step}");
            }
            {
                let k = key(state / 3);
                let mut bumped = k.clone();
                *bumped.last_mut().expect("keys are not empty") += 1;
                let at = (state % k.len() as u64) as usize;
                let cut = k[..at].to_vec();
                // Past every key that shares its first `at` bytes: between chunks, at times.
                let mut past = k[..=at].to_vec();
                past[at] = past[at].saturating_add(1);
                let probes = [
                    key(state),
                    k.clone(),
                    bumped,
                    cut,
                    past,
                    [&k[..], b"\xff"].concat(),
                ];
                for probe in probes.into_iter().chain([b"".to_vec(), b"zz".to_vec()]) {
                    let want = model.range(probe.clone()..).next().map(|(_, &id)| id);
                    assert_eq!(order.get(order.seek(&probe, &key_of)), want, "{probe:?}");
                }
            }
        }
        let key_of = reader(&arena);
        let rebuilt = Ordered::build(model.values().copied().collect(), &key_of);
        assert!(rebuilt.is_sorted(&key_of));
        assert_eq!(rebuilt.chunks.len(), model.len().div_ceil(CHUNK_BUILT));
    }

    #[test]
    fn a_key_between_chunks_that_share_more_than_the_order_lands_after_the_first() {
        // Two built chunks: "pA000".."pA191" (sharing "pA") and "pC000".."pC191".
        let arena: Vec<Vec<u8>> = (["pA", "pC"].iter())
            .flat_map(|p| (0..CHUNK_BUILT).map(move |n| format!("{p}{n:03}").into_bytes()))
            .collect();
        let key_of = reader(&arena);
        let order = Ordered::build((0..arena.len() as u32).collect(), &key_of);
        assert_eq!(
            (order.chunks.len(), order.prefix.as_slice()),
            (2, &b"p"[..])
        );
        for (probe, want) in [
            ("pB", "pC000"),
            ("pA2", "pC000"),
            ("pA", "pA000"),
            ("o", "pA000"),
        ] {
            let at = order.seek(probe.as_bytes(), &key_of);
            assert_eq!(order.get(at).map(&key_of), Some(want.as_bytes()), "{probe}");
        }
        assert_eq!(order.get(order.seek(b"pD", &key_of)), None);
    }
}
