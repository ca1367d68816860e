//! The keys of one index in byte order, for range and prefix scans (issue 14): the
//! index's slot numbers, sorted by the keys they name, in chunks.
//!
//! Memory is the point (the index's memory per key is a headline figure): a key costs
//! its 4-byte slot number and a share of its chunk's slack and header, about 4.3 bytes
//! in all. No key bytes are copied: comparisons read the keys from the index's arena
//! through a function the index passes in, so the order never goes stale when the
//! arena is rebuilt (slot numbers stay).
//!
//! - **Chunks**: each holds 1..=[`CHUNK_MAX`] slot numbers in key order, every key of a
//!   chunk below every key of the next. A full chunk splits in two halves.
//! - **Capacity** grows by [`CHUNK_GROWTH`] slots at a time, so a chunk wastes at most
//!   that many (not half, as doubling would).
//! - **Fences**: the first 8 bytes of each chunk's first key, big-endian, in an array of
//!   their own, so that finding the chunk compares integers in one contiguous array and
//!   reads a key from the arena only on a tie.
//! - **Cost**: an insert or a removal of a key finds its chunk by the fences, then its
//!   place in the chunk by a binary search (about log2([`CHUNK_MAX`]) comparisons, each
//!   reading a key from the arena), and moves at most one chunk; replacing a key's
//!   value does not touch the order.
//!
//! Invariant: every live slot of the index appears exactly once, in the position its
//! key gives it.

/// Most slot numbers a chunk holds before it splits.
pub(crate) const CHUNK_MAX: usize = 256;
/// Slot numbers a chunk's capacity grows by.
const CHUNK_GROWTH: usize = 16;

/// The keys of an index in order: slot numbers in chunks.
#[derive(Debug, Default)]
pub(crate) struct Ordered {
    chunks: Vec<Vec<u32>>,
    /// `fence(first key)` of each chunk.
    fences: Vec<u64>,
}

/// A key's first 8 bytes (zero-padded), big-endian: if two keys' fences differ, the
/// keys are in the same order; equal fences say nothing.
fn fence(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
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

impl Ordered {
    /// The order of `ids` (each slot once; `key_of` reads a slot's key).
    pub(crate) fn build<'k>(mut ids: Vec<u32>, key_of: &impl Fn(u32) -> &'k [u8]) -> Self {
        // Sorted by fence first: most comparisons never read the arena.
        ids.sort_unstable_by_key(|&id| fence(key_of(id)));
        for run in ids.chunk_by_mut(|&a, &b| fence(key_of(a)) == fence(key_of(b))) {
            run.sort_unstable_by(|&a, &b| key_of(a).cmp(key_of(b)));
        }
        let chunks: Vec<Vec<u32>> = ids.chunks(CHUNK_BUILT).map(chunk_with).collect();
        let fences = chunks.iter().map(|c| fence(key_of(c[0]))).collect();
        Self { chunks, fences }
    }

    /// The first position whose key is not below `key` (`key_of` reads a slot's key).
    pub(crate) fn seek<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> At {
        let chunk = self.chunk_for(key, key_of);
        let Some(ids) = self.chunks.get(chunk) else {
            return At { chunk: 0, pos: 0 };
        };
        let pos = ids.partition_point(|&id| key_of(id) < key);
        self.normalized(At { chunk, pos })
    }

    /// The chunk that holds `key` or would: the last whose first key is at or below it
    /// (the first chunk, if none is).
    fn chunk_for<'k>(&self, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) -> usize {
        let f = fence(key);
        let mut lo = 0;
        let mut hi = self.fences.len();
        // partition_point over the chunks: "first key <= key".
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at_or_below = match self.fences[mid].cmp(&f) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => key_of(self.chunks[mid][0]) <= key,
            };
            if at_or_below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.saturating_sub(1)
    }

    /// `at`, moved to the start of the next chunk when it is past the end of its own.
    fn normalized(&self, at: At) -> At {
        match self.chunks.get(at.chunk) {
            Some(ids) if at.pos == ids.len() => At {
                chunk: at.chunk + 1,
                pos: 0,
            },
            _ => at,
        }
    }

    /// The slot at `at`, if `at` is not past the end.
    pub(crate) fn get(&self, at: At) -> Option<u32> {
        self.chunks
            .get(at.chunk)
            .and_then(|c| c.get(at.pos))
            .copied()
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
                    pos: self.chunks[chunk].len() - 1,
                })
            }
            pos => Some(At {
                chunk: at.chunk,
                pos: pos - 1,
            }),
        }
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
            self.chunks.push(chunk_with(&[id]));
            self.fences.push(fence(key));
            return;
        }
        let chunk = self.chunk_for(key, key_of);
        let ids = &mut self.chunks[chunk];
        let pos = ids.partition_point(|&other| key_of(other) < key);
        debug_assert!(
            ids.get(pos).is_none_or(|&o| key_of(o) != key),
            "a key twice"
        );
        if ids.len() == ids.capacity() {
            ids.reserve_exact(CHUNK_GROWTH);
        }
        ids.insert(pos, id);
        if pos == 0 {
            self.fences[chunk] = fence(key);
        }
        if ids.len() > CHUNK_MAX {
            let upper = chunk_with(&ids[CHUNK_MAX / 2..]);
            ids.truncate(CHUNK_MAX / 2);
            ids.shrink_to(CHUNK_MAX / 2 + CHUNK_GROWTH);
            self.fences.insert(chunk + 1, fence(key_of(upper[0])));
            self.chunks.insert(chunk + 1, upper);
        }
    }

    /// Removes slot `id`, whose key is `key`.
    pub(crate) fn remove<'k>(&mut self, id: u32, key: &[u8], key_of: &impl Fn(u32) -> &'k [u8]) {
        let at = self.seek(key, key_of);
        assert_eq!(self.get(at), Some(id), "the order holds every live slot");
        let ids = &mut self.chunks[at.chunk];
        ids.remove(at.pos);
        if ids.is_empty() {
            self.chunks.remove(at.chunk);
            self.fences.remove(at.chunk);
            return;
        }
        if ids.capacity() - ids.len() > 2 * CHUNK_GROWTH {
            ids.shrink_to(ids.len() + CHUNK_GROWTH);
        }
        if at.pos == 0 {
            self.fences[at.chunk] = fence(key_of(ids[0]));
        }
    }

    /// Heap bytes held (capacities).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.fences.capacity() * std::mem::size_of::<u64>()
            + (self.chunks.iter())
                .map(|c| c.capacity() * std::mem::size_of::<u32>())
                .sum::<usize>()
    }

    /// Whether the slots are in strictly increasing key order (for tests).
    #[cfg(test)]
    pub(crate) fn is_sorted<'k>(&self, key_of: &impl Fn(u32) -> &'k [u8]) -> bool {
        let keys: Vec<&[u8]> = self.chunks.iter().flatten().map(|&id| key_of(id)).collect();
        let fences = (self.chunks.iter().zip(&self.fences)).all(|(c, &f)| fence(key_of(c[0])) == f);
        keys.windows(2).all(|w| w[0] < w[1])
            && self
                .chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= CHUNK_MAX)
            && fences
            && self.fences.len() == self.chunks.len()
    }
}

fn chunk_with(ids: &[u32]) -> Vec<u32> {
    let mut chunk = Vec::with_capacity(ids.len() + CHUNK_GROWTH);
    chunk.extend_from_slice(ids);
    chunk
}
