//! A core's read cache: least-recently-used values under a byte budget. Direct I/O
//! bypasses the page cache, so this is the only cache between a get and the disk.

use bytes::Bytes;
use lru::LruCache;

/// Bytes charged per entry on top of key and value (list links, hash slot, `Bytes`).
const ENTRY_OVERHEAD_BYTES: u64 = 96;

#[derive(Debug)]
pub(crate) struct Cache {
    entries: LruCache<Vec<u8>, Bytes>,
    budget_bytes: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
}

fn cost(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

impl Cache {
    pub(crate) fn new(budget_bytes: u64) -> Self {
        Self {
            entries: LruCache::unbounded(),
            budget_bytes,
            bytes: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub(crate) fn get(&mut self, key: &[u8]) -> Option<Bytes> {
        let hit = self.hit(key);
        if hit.is_none() {
            self.misses += 1;
        }
        hit
    }

    /// [`Cache::get`] that counts only a hit: a miss is counted by the `get` that
    /// follows it.
    pub(crate) fn hit(&mut self, key: &[u8]) -> Option<Bytes> {
        let hit = self.entries.get(key).cloned();
        self.hits += u64::from(hit.is_some());
        hit
    }

    /// Caches a copy of `value` (a read's buffer may be larger than the value), unless it
    /// would take more than an eighth of the budget.
    pub(crate) fn insert(&mut self, key: &[u8], value: &Bytes) {
        if cost(key, value) <= self.budget_bytes / 8 {
            self.insert_owned(key, Bytes::copy_from_slice(value));
        }
    }

    /// Caches `value` itself (a written value: nothing else shares its buffer), unless
    /// it would take more than an eighth of the budget.
    pub(crate) fn insert_owned(&mut self, key: &[u8], value: Bytes) {
        let cost = cost(key, &value);
        if cost > self.budget_bytes / 8 {
            return;
        }
        self.remove(key);
        self.entries.put(key.to_vec(), value);
        self.bytes += cost;
        while self.bytes > self.budget_bytes {
            let (k, v) = self.entries.pop_lru().expect("bytes > 0 means entries");
            self.bytes -= self::cost(&k, &v);
        }
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        if let Some(v) = self.entries.pop(key) {
            self.bytes -= cost(key, &v);
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }
    pub(crate) fn misses(&self) -> u64 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_budget_and_evicts_least_recent() {
        let mut c = Cache::new(10_000);
        for i in 0..100u32 {
            c.insert(&i.to_be_bytes(), &Bytes::from(vec![0u8; 100]));
            assert!(c.bytes() <= 10_000);
        }
        assert!(c.get(&99u32.to_be_bytes()).is_some());
        assert!(c.get(&0u32.to_be_bytes()).is_none());
        c.remove(&99u32.to_be_bytes());
        assert!(c.get(&99u32.to_be_bytes()).is_none());
        c.insert(b"big", &Bytes::from(vec![0u8; 5000]));
        assert!(
            c.get(b"big").is_none(),
            "values over an eighth of the budget are not cached"
        );
    }
}
