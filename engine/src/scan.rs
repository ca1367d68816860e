//! Ordered scans of one substore (issue 14): its live keys in byte order, from the
//! index's key order ([`crate::index::Index::build_order`]: built by the first scan, a
//! sort of the substore's keys, then kept by every insert and removal). No I/O: the
//! caller reads the values it wants (`Substore::get_record`) and merges substores, or
//! lists several substores' keys from one order ([`crate::KeyOrder`]).

use crate::device::Device;
use crate::index::Entry;
use crate::substore::{Substore, is_live};

/// Which way a scan goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending byte order, from the first key at or after the bound.
    Forward,
    /// Descending byte order, from the last key before the bound.
    Reverse,
}

impl Direction {
    /// `a` against `b` in this direction's order (`Less`: `a` comes first).
    pub fn order(self, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        match self {
            Direction::Forward => a.cmp(b),
            Direction::Reverse => b.cmp(a),
        }
    }
}

impl<D: Device> Substore<D> {
    /// Up to `limit` live keys in byte order with their index entries: forward from the
    /// first key at or after `from` (every key for `None`), or in reverse from the last
    /// key before `from` (from the last key for `None`). A page ends at its last key:
    /// the next forward page starts at that key with a zero byte appended, the next
    /// reverse page before that key.
    pub fn scan_keys(
        &self,
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Vec<(Vec<u8>, Entry)> {
        collected(|visit| self.visit_keys(from, direction, limit, visit))
    }

    /// [`Substore::scan_keys`] without copying a key: `visit` sees each in place, and
    /// the listing stops early when it answers `false`.
    pub fn visit_keys(
        &self,
        from: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        mut visit: impl FnMut(&[u8], Entry) -> bool,
    ) {
        let state = &mut *self.state.borrow_mut();
        state.index.build_order();
        let now = self.config.clock.now_unix_ms();
        let keys = state.index.keys_from(from, direction);
        for (key, entry) in keys.filter(|(_, e)| is_live(e, now)).take(limit) {
            if !visit(key, entry) {
                return;
            }
        }
    }
}

/// The keys a listing visits, copied out with their entries.
pub(crate) fn collected(
    list: impl FnOnce(&mut dyn FnMut(&[u8], Entry) -> bool),
) -> Vec<(Vec<u8>, Entry)> {
    let mut keys = Vec::new();
    list(&mut |key, entry| {
        keys.push((key.to_vec(), entry));
        true
    });
    keys
}
