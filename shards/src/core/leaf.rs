//! One leaf (a substore) as its core holds it: the substore, whether a commit round
//! must flush it, the state a split keeps on it, and the handed-over ancestor it reads
//! behind. Reads fall through to the ancestor; deletes reach it first.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use bytes::Bytes;
use ringkv_engine::index::Entry;
use ringkv_engine::{Config, StoredRecord, Substore, SubstoreId};

use crate::error::Result;
use crate::layout::Leaf;
use crate::storage::{LeafDevice, Storage};

pub(super) struct LeafState {
    pub(super) id: SubstoreId,
    pub(super) leaf: Leaf,
    pub(super) store: Substore<LeafDevice>,
    pub(super) dirty: Cell<bool>,
    /// While a split copies this leaf: every key written since the copy began.
    pub(super) touched: RefCell<Option<HashSet<Vec<u8>>>>,
    /// While a split copies the last changes: writes wait for `split_done`.
    pub(super) frozen: Cell<bool>,
    /// The handed-over parent this leaf reads behind until its records have moved.
    pub(super) ancestor: RefCell<Option<Rc<LeafState>>>,
}

/// The store that answers for a key: the leaf's own, or its ancestor's (held here so
/// that the ancestor stays alive while it answers).
enum Answering<'a> {
    Here(&'a Substore<LeafDevice>),
    Behind(Rc<LeafState>),
}

impl Answering<'_> {
    fn store(&self) -> &Substore<LeafDevice> {
        match self {
            Answering::Here(store) => store,
            Answering::Behind(ancestor) => &ancestor.store,
        }
    }
}

impl LeafState {
    pub(super) fn ancestor(&self) -> Option<Rc<LeafState>> {
        self.ancestor.borrow().clone()
    }

    /// The store that answers for `key`: this leaf's if it holds the key (an expired
    /// record included: then the key is absent, whatever the ancestor has), else its
    /// ancestor's, if any.
    fn answering(&self, key: &[u8]) -> Option<Answering<'_>> {
        match self.store.holds(key) {
            true => Some(Answering::Here(&self.store)),
            false => self.ancestor().map(Answering::Behind),
        }
    }

    /// The value under `key`, its metadata and expiry, if it is live (from the store
    /// that answers for it).
    pub(super) async fn get(&self, key: &[u8]) -> ringkv_engine::Result<Option<StoredRecord>> {
        match self.answering(key) {
            Some(store) => store.store().get_record(key).await,
            None => Ok(None),
        }
    }

    /// The index entry of `key` if it is live, from the store that answers for it (no
    /// I/O).
    pub(super) fn head(&self, key: &[u8]) -> Option<Entry> {
        self.answering(key)?.store().head(key)
    }

    /// [`LeafState::head`] with the key's metadata when the index holds it (no I/O).
    pub(super) fn head_with_meta(&self, key: &[u8]) -> Option<(Entry, Option<Bytes>)> {
        self.answering(key)?.store().head_with_meta(key)
    }

    /// Which record answers for a live `key`: its store's id and its sequence (no I/O).
    pub(super) fn version(&self, key: &[u8]) -> Option<(u64, u64)> {
        let answering = self.answering(key)?;
        let entry = answering.store().head(key)?;
        let store = match &answering {
            Answering::Here(_) => self.id.id,
            Answering::Behind(ancestor) => ancestor.id.id,
        };
        Some((store, entry.seq))
    }

    /// Whether the record that answers for `key` has an expiry that passed.
    pub(super) fn has_expired(&self, key: &[u8]) -> bool {
        self.answering(key)
            .is_some_and(|store| store.store().has_expired(key))
    }

    pub(super) fn exists(&self, key: &[u8]) -> bool {
        self.head(key).is_some()
    }

    /// Deletes `key` from this leaf, which reads behind `ancestor`. The ancestor's tombstone
    /// goes first, so that until the leaf's lands too a read sees the leaf's value or
    /// nothing, never the ancestor's older one; and it is durable before this leaf's
    /// tombstone is appended, because a crash that kept the leaf's tombstone alone
    /// would bring the ancestor's older value back (the leaf's newer one gone).
    pub(super) async fn delete_behind(
        &self,
        ancestor: &LeafState,
        key: &[u8],
    ) -> ringkv_engine::Result<()> {
        ancestor.dirty.set(true);
        if ancestor.store.delete(key).await? {
            ancestor.store.flush().await?;
        }
        self.store.delete(key).await.map(drop)
    }

    pub(super) async fn open(fs: &Storage, leaf: Leaf, config: Config) -> Result<Self> {
        let device = match config.read_only {
            true => fs.device_read_only(&leaf.dir)?,
            false => fs.device(&leaf.dir).await?,
        };
        let store = Substore::create_or_open(device, leaf.id, config).await?;
        Ok(Self {
            id: leaf.id,
            leaf,
            store,
            dirty: Cell::new(false),
            touched: RefCell::new(None),
            frozen: Cell::new(false),
            ancestor: RefCell::new(None),
        })
    }
}

/// Which leaves should end their active extents early so that the key summaries held
/// for those extents fit `budget` bytes together: the largest first. `sizes[i]` is
/// leaf `i`'s summary bytes.
pub(super) fn over_summary_budget(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut total: usize = sizes.iter().sum();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut chosen = Vec::new();
    for i in order {
        if total <= budget || sizes[i] == 0 {
            break;
        }
        total -= sizes[i];
        chosen.push(i);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::over_summary_budget;

    #[test]
    fn the_largest_summaries_go_first_until_the_rest_fit() {
        assert_eq!(over_summary_budget(&[3, 9, 5, 1], 20), Vec::<usize>::new());
        assert_eq!(over_summary_budget(&[3, 9, 5, 1], 18), Vec::<usize>::new());
        assert_eq!(over_summary_budget(&[3, 9, 5, 1], 17), vec![1]);
        assert_eq!(over_summary_budget(&[3, 9, 5, 1], 4), vec![1, 2]);
        assert_eq!(over_summary_budget(&[3, 9, 5, 0], 0), vec![1, 2, 0]);
        assert_eq!(over_summary_budget(&[], 0), Vec::<usize>::new());
    }
}
