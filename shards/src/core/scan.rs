//! One core's share of an ordered scan (issue 14): a page of its live keys in byte
//! order within a range, merged over its leaves and the ancestors they read behind,
//! with their values read together. The database merges the cores' pages
//! (`crate::db::scan`).
//!
//! A page is exact up to its `covered` key: every live key of the range on this core
//! up to that key (in the scan's direction) is in it, as of when the keys were listed.
//! Each source (leaf or ancestor) lists a quota of keys from its ordered index (no
//! I/O); the page ends where the first source that filled its quota ends, so that no
//! key of a source that was cut short can be missing before it.
//!
//! Keys are listed in one step without awaiting, so no record moves from an ancestor
//! to a leaf meanwhile. Values are then read as gets are (cache first, after any batch
//! holding the key lets go and, in `Sync` mode, once durable), all in flight together:
//! a key deleted in between is left out, one overwritten shows its newer value.

use std::ops::Bound;

use bytes::Bytes;
use ringkv_engine::Direction;
use ringkv_engine::hash::routing_hash;

use super::Core;
use crate::error::Result;

/// Value bytes a page holds at most (a page always holds at least one key).
const PAGE_VALUE_BYTES_MAX: u64 = 1 << 20;

/// What a core is asked for: its keys within `start..end` (bounds in key order, for
/// either direction) after `resume`, in `direction`.
#[derive(Clone, Debug)]
pub(crate) struct ScanRequest {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    pub direction: Direction,
    /// Most keys the page holds.
    pub limit: usize,
    /// Keys only: no value is read.
    pub keys_only: bool,
    /// The open snapshot the scan reads, if any (else the current state).
    pub snapshot: Option<u64>,
}

/// One page: keys in the scan's order with their values (`None` for keys only), and
/// whether the core has more keys in the range after the last one.
#[derive(Debug, Default)]
pub(crate) struct ScanPage {
    pub items: Vec<(Bytes, Option<Bytes>)>,
    /// Where the next page starts (exclusive), if the range may hold more keys here.
    pub resume: Option<Vec<u8>>,
}

impl ScanRequest {
    /// Whether `key` lies before the range's far end, in the scan's direction.
    fn before_end(&self, key: &[u8]) -> bool {
        match (self.direction, &self.end, &self.start) {
            (Direction::Forward, Bound::Included(e), _) => key <= e.as_slice(),
            (Direction::Forward, Bound::Excluded(e), _) => key < e.as_slice(),
            (Direction::Reverse, _, Bound::Included(s)) => key >= s.as_slice(),
            (Direction::Reverse, _, Bound::Excluded(s)) => key > s.as_slice(),
            (_, Bound::Unbounded, _) | (_, _, Bound::Unbounded) => true,
        }
    }

    /// Where a source's listing starts, as `Substore::scan_keys` takes it (forward:
    /// the first key at or after; reverse: the last key before).
    fn listing_from(&self) -> Option<Vec<u8>> {
        let after = |k: &Vec<u8>| [k.as_slice(), &[0]].concat();
        match (self.direction, &self.start, &self.end) {
            (Direction::Forward, Bound::Included(s), _) => Some(s.clone()),
            (Direction::Forward, Bound::Excluded(s), _) => Some(after(s)),
            (Direction::Reverse, _, Bound::Excluded(e)) => Some(e.clone()),
            (Direction::Reverse, _, Bound::Included(e)) => Some(after(e)),
            (_, Bound::Unbounded, _) | (_, _, Bound::Unbounded) => None,
        }
    }

    /// Whether `a` comes before `b` in the scan's direction.
    fn sooner(&self, a: &[u8], b: &[u8]) -> bool {
        match self.direction {
            Direction::Forward => a < b,
            Direction::Reverse => a > b,
        }
    }
}

/// A page's keys, and where the next page starts (if the core may have more).
type Listed = (Vec<Vec<u8>>, Option<Vec<u8>>);

impl Core {
    /// This core's next page of the scan `request` asks for.
    pub(super) async fn scan_page(&self, request: &ScanRequest) -> Result<ScanPage> {
        let (keys, resume) = self.list_keys(request)?;
        if request.keys_only {
            let items = keys.into_iter().map(|k| (Bytes::from(k), None)).collect();
            return Ok(ScanPage { items, resume });
        }
        // Cached values first, in this poll (as each get would answer them); only the
        // others become reads, all in flight together.
        let mut values: Vec<Option<Option<Bytes>>> = match request.snapshot {
            Some(_) => vec![None; keys.len()],
            None => (keys.iter())
                .map(|k| self.cache.peek(k).map(Some))
                .collect(),
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
        let reads = missing.iter().map(|&i| {
            let key = &keys[i];
            async move {
                match request.snapshot {
                    Some(id) => self.snapshot_get(id, routing_hash(key), key).await,
                    None => self.get(routing_hash(key), key).await,
                }
            }
        });
        let read = futures_util::future::join_all(reads).await;
        for (i, value) in missing.into_iter().zip(read) {
            values[i] = Some(value?);
        }
        let items = (keys.into_iter().zip(values))
            .filter_map(|(key, value)| Some((Bytes::from(key), Some(value.flatten()?))))
            .collect();
        Ok(ScanPage { items, resume })
    }

    /// Up to `request.limit` live keys in order, and where the next page starts (see
    /// the module documentation). Synchronous: nothing changes while it lists.
    fn list_keys(&self, request: &ScanRequest) -> Result<Listed> {
        let leaves = self.leaf_list();
        let ancestors = self.ancestors.borrow().clone();
        let sources = leaves.len() + ancestors.len();
        // Twice a fair share each: a page holds about `limit` keys when keys spread
        // evenly, and never fewer than the quota of the source that ends it.
        let quota = (2 * request.limit).div_ceil(sources.max(1)).max(8);
        let from = request.listing_from();
        let mut keys: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut covered: Option<Vec<u8>> = None;
        let all = (leaves.iter().map(|l| (l, false))).chain(ancestors.iter().map(|a| (a, true)));
        for (source, behind) in all {
            let (from, direction) = (from.as_deref(), request.direction);
            let listed = match request.snapshot {
                Some(id) => {
                    (source.store).scan_keys_at(from, direction, quota, self.cut_of(id, source)?)
                }
                None => (source.store).scan_keys(from, direction, quota),
            };
            let full = listed.len() == quota;
            // The source's last key listed: moved into `keys` (its index), or shadowed.
            let mut last: Option<std::result::Result<usize, Vec<u8>>> = None;
            for (key, entry) in listed {
                if !request.before_end(&key) {
                    last = None; // past the range: this source has nothing more in it
                    break;
                }
                last = Some(match behind && self.leaf_holds(request.snapshot, &key)? {
                    true => Err(key),
                    false => {
                        keys.push((key, entry.value_len));
                        Ok(keys.len() - 1)
                    }
                });
            }
            let last = last.filter(|_| full).map(|l| match l {
                Ok(at) => keys[at].0.clone(),
                Err(key) => key,
            });
            if let Some(last) = last
                && covered.as_ref().is_none_or(|c| request.sooner(&last, c))
            {
                covered = Some(last);
            }
        }
        keys.sort_unstable_by(|(a, _), (b, _)| match request.direction {
            Direction::Forward => a.cmp(b),
            Direction::Reverse => b.cmp(a),
        });
        keys.dedup_by(|a, b| a.0 == b.0);
        if let Some(c) = &covered {
            keys.retain(|(k, _)| !request.sooner(c, k));
        }
        let mut bytes = 0;
        let budget = (keys.iter()).position(|(_, len)| {
            bytes += u64::from(*len);
            bytes > PAGE_VALUE_BYTES_MAX && !request.keys_only
        });
        let keep = budget.unwrap_or(keys.len()).clamp(1, request.limit);
        if keys.len() > keep {
            keys.truncate(keep);
            covered = keys.last().map(|(k, _)| k.clone());
        }
        Ok((keys.into_iter().map(|(k, _)| k).collect(), covered))
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
