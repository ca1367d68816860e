//! SCAN's cursor, and Redis's glob patterns (MATCH, CONFIG GET).
//!
//! A scan works on a list of the keys, taken when a scan starts from a database
//! snapshot (`Db::snapshot`: every key live at one instant, listed without reading a
//! value; the database snapshot is dropped once listed, so an abandoned cursor holds
//! no compaction back), sorted by the top 48 bits of each key's routing hash (then by
//! key). The cursor is `position << 16 | snapshot id`: the
//! position is the hash prefix of the next key to return, the id names the snapshot in
//! a small server-wide cache. A page never splits keys that share a prefix.
//!
//! Guarantees (Redis's): a key present from the start to the end of a full iteration is
//! returned; a key is returned at most once unless the snapshot had to be rebuilt. A
//! key added after the start may or may not be returned; a key deleted since the
//! snapshot is filtered out when its page is served, but one deleted meanwhile may
//! still appear. When the snapshot is gone (evicted, restarted server, cursor from
//! elsewhere), a new one is taken and the scan resumes at the cursor's position: still
//! correct, because any snapshot taken after the scan started holds every key that was
//! present throughout. For the same reason a reused id (after 65,535 snapshots) is
//! harmless: the cache keeps only the newest snapshot of an id, which is newer than any
//! cursor carrying that id.
//!
//! Cost: a list takes a database snapshot (writes wait for one flush of every store)
//! and keeps every key in memory, once per started scan; at most `SNAPSHOTS_MAX` are
//! kept, each for `SNAPSHOT_IDLE` after its last use.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringkv_engine::hash::routing_hash;

/// Most snapshots kept at once.
pub const SNAPSHOTS_MAX: usize = 8;
/// A snapshot unused for this long is dropped.
pub const SNAPSHOT_IDLE: Duration = Duration::from_secs(60);
const ID_BITS: u32 = 16;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// Every key of the database at one moment, in cursor order.
#[derive(Debug, Default)]
pub struct Snapshot {
    arena: Vec<u8>,
    /// (hash prefix, offset in `arena`, length), sorted by prefix, then key.
    entries: Vec<(u64, usize, usize)>,
}

fn prefix(key: &[u8]) -> u64 {
    routing_hash(key) >> ID_BITS
}

impl Snapshot {
    /// Takes a snapshot of `db` (blocking: call it from a helper thread).
    pub fn take(db: &ringkv::Db) -> Result<Snapshot, ringkv::Error> {
        let mut snapshot = Snapshot::default();
        for key in db.snapshot()?.range::<&[u8]>(..).keys() {
            let key = key?;
            snapshot
                .entries
                .push((prefix(&key), snapshot.arena.len(), key.len()));
            snapshot.arena.extend_from_slice(&key);
        }
        let arena = &snapshot.arena;
        snapshot.entries.sort_unstable_by(|a, b| {
            (a.0, &arena[a.1..a.1 + a.2]).cmp(&(b.0, &arena[b.1..b.1 + b.2]))
        });
        Ok(snapshot)
    }

    fn key(&self, i: usize) -> &[u8] {
        let (_, offset, len) = self.entries[i];
        &self.arena[offset..offset + len]
    }

    /// At least `count` keys from `position` on (more when keys past the `count`th
    /// share its prefix), and the position after them (`None`: the end).
    pub fn page(&self, position: u64, count: usize) -> (Vec<Vec<u8>>, Option<u64>) {
        let start = self.entries.partition_point(|e| e.0 < position);
        let mut end = (start + count.max(1)).min(self.entries.len());
        while end < self.entries.len()
            && end > start
            && self.entries[end].0 == self.entries[end - 1].0
        {
            end += 1;
        }
        let keys = (start..end).map(|i| self.key(i).to_vec()).collect();
        (keys, self.entries.get(end).map(|e| e.0))
    }
}

/// Where a cursor points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub position: u64,
    pub id: u16,
}

impl Cursor {
    pub fn decode(cursor: u64) -> Cursor {
        Cursor {
            position: cursor >> ID_BITS,
            id: (cursor & ID_MASK) as u16,
        }
    }

    pub fn encode(self) -> u64 {
        (self.position << ID_BITS) | u64::from(self.id)
    }
}

#[derive(Debug)]
struct Entry {
    id: u16,
    snapshot: Arc<Snapshot>,
    used: Instant,
}

/// The server's snapshots.
#[derive(Debug, Default)]
pub struct ScanCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: Vec<Entry>,
    last_id: u16,
}

impl ScanCache {
    /// The snapshot with this id, if it is still kept.
    pub fn get(&self, id: u16) -> Option<Arc<Snapshot>> {
        let mut inner = self.inner.lock().expect("not poisoned");
        let now = Instant::now();
        inner.entries.retain(|e| now - e.used < SNAPSHOT_IDLE);
        let entry = inner.entries.iter_mut().find(|e| e.id == id && id != 0)?;
        entry.used = now;
        Some(entry.snapshot.clone())
    }

    /// Keeps `snapshot` and returns its new id (never 0).
    pub fn insert(&self, snapshot: Arc<Snapshot>) -> u16 {
        let mut inner = self.inner.lock().expect("not poisoned");
        let id = match inner.last_id.wrapping_add(1) {
            0 => 1,
            id => id,
        };
        inner.last_id = id;
        inner.entries.retain(|e| e.id != id);
        if inner.entries.len() >= SNAPSHOTS_MAX {
            let oldest = (0..inner.entries.len())
                .min_by_key(|&i| inner.entries[i].used)
                .expect("the cache is full, so not empty");
            inner.entries.swap_remove(oldest);
        }
        inner.entries.push(Entry {
            id,
            snapshot,
            used: Instant::now(),
        });
        id
    }

    /// Drops every snapshot (after FLUSHDB).
    pub fn clear(&self) {
        self.inner.lock().expect("not poisoned").entries.clear();
    }
}

/// Whether `text` matches the glob `pattern`: `*` any run, `?` one byte, `[abc]`,
/// `[^a-z]` classes, `\x` the byte x. Bytes, not characters, as Redis.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear in practice, and no
    // recursion for hostile patterns.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches byte `c` against the class starting at `pattern[open] == b'['`; returns
/// whether it matched and the offset after the class. An unclosed class runs to the
/// end of the pattern, as in Redis.
fn class(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    let next = (i + 1).min(pattern.len());
    Some((matched != negate, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let yes: &[(&str, &str)] = &[
            ("*", ""),
            ("*", "abc"),
            ("a*", "abc"),
            ("*c", "abc"),
            ("a?c", "abc"),
            ("h[ae]llo", "hello"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("key:*:x", "key:1:2:x"),
            ("\\*", "*"),
            ("*a*b*c*", "xxaxxbxxcxx"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p.as_bytes(), t.as_bytes()), "{p} {t}");
        }
        let no: &[(&str, &str)] = &[
            ("a*", "bac"),
            ("a?c", "ac"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("\\*", "a"),
            ("abc", "abcd"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p.as_bytes(), t.as_bytes()), "{p} {t}");
        }
    }

    #[test]
    fn pages_cover_every_key_once_in_cursor_order() {
        let mut snapshot = Snapshot::default();
        for i in 0..1000u32 {
            let key = format!("k{i}");
            snapshot
                .entries
                .push((prefix(key.as_bytes()), snapshot.arena.len(), key.len()));
            snapshot.arena.extend_from_slice(key.as_bytes());
        }
        let arena = &snapshot.arena;
        snapshot.entries.sort_unstable_by(|a, b| {
            (a.0, &arena[a.1..a.1 + a.2]).cmp(&(b.0, &arena[b.1..b.1 + b.2]))
        });
        let mut seen = std::collections::HashSet::new();
        let mut position = 0;
        loop {
            let (keys, next) = snapshot.page(position, 7);
            for k in keys {
                assert!(seen.insert(k));
            }
            match next {
                Some(n) => {
                    assert!(n > position || position == 0);
                    position = n;
                }
                None => break,
            }
        }
        assert_eq!(seen.len(), 1000);
        let c = Cursor {
            position: 1 << 40,
            id: 7,
        };
        assert_eq!(Cursor::decode(c.encode()), c);
    }

    #[test]
    fn the_cache_keeps_the_newest_snapshots() {
        let cache = ScanCache::default();
        let ids: Vec<u16> = (0..SNAPSHOTS_MAX + 2)
            .map(|_| cache.insert(Arc::new(Snapshot::default())))
            .collect();
        assert!(cache.get(ids[0]).is_none());
        assert!(cache.get(*ids.last().unwrap()).is_some());
        assert!(cache.get(0).is_none());
        cache.clear();
        assert!(cache.get(*ids.last().unwrap()).is_none());
    }
}
