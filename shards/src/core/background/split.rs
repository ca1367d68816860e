//! 16-way copy splits (`SplitMode::Copy`): the children are created and filled while
//! writes go on to the parent; the parent is frozen only for the last few keys, and the
//! rename that retires it is the commit point (ARCHITECTURE.md, "Splitting"). A failure
//! before the commit point removes the children, so that the split can be tried again.

use std::collections::HashSet;
use std::rc::Rc;

use ringkv_engine::hash::routing_hash;

use crate::core::{Core, LeafState};
use crate::error::{Error, Result};
use crate::layout::Leaf;
use crate::options::SplitMode;

/// A split freezes writes to its parent only once at most this many keys written
/// during the copy are left to copy again.
const SPLIT_FREEZE_KEYS_MAX: usize = 64;
/// Catch-up rounds before a split freezes its parent regardless.
const SPLIT_CATCH_UP_ROUNDS_MAX: usize = 8;

impl Core {
    /// Splits `parent` (the planner chose it) as the split mode says. Returns true
    /// (there was work). Runs with the compaction gate held, so no compaction moves
    /// records meanwhile.
    pub(in crate::core) async fn split_leaf(&self, parent: &Rc<LeafState>) -> Result<bool> {
        match self.options.split_mode {
            SplitMode::HandOver => self.hand_over(parent).await?,
            _ => self.split(parent).await?,
        }
        self.splits.set(self.splits.get() + 1);
        Ok(true)
    }

    /// Splits `parent` into 16 children on this core (ARCHITECTURE.md, "Splitting"):
    /// copy while writes go on, freeze and copy the keys written meanwhile, make the
    /// children durable, retire the parent (the commit point), switch the leaf map.
    /// Creates and opens the 16 children of `parent`. When that fails, the children
    /// (uncommitted, empty) are removed again so that the split can be tried later.
    pub(in crate::core) async fn open_children(
        &self,
        parent: &LeafState,
    ) -> Result<Vec<LeafState>> {
        let fs = &self.options.storage;
        let dirs = self.data_dirs();
        let into = dirs.substores(dirs.for_children(fs, &parent.leaf.dir));
        let children = crate::layout::create_children(fs, &parent.leaf, &into)?;
        let mut stores = Vec::with_capacity(16);
        for child in &children {
            match LeafState::open(&self.options.storage, child.clone(), self.config.clone()).await {
                Ok(store) => stores.push(store),
                Err(e) => {
                    discard(&self.options.storage, stores, &children);
                    return Err(e);
                }
            }
        }
        Ok(stores)
    }

    pub(in crate::core) async fn split(&self, parent: &Rc<LeafState>) -> Result<()> {
        let stores = self.open_children(parent).await?;
        let child_of = |key: &[u8]| {
            let nibble =
                ringkv_engine::hash::child_nibble(routing_hash(key), parent.id.prefix_bits);
            &stores[usize::from(nibble)]
        };
        *parent.touched.borrow_mut() = Some(HashSet::new());
        let mut put_failed = None;
        let copied = parent
            .store
            .for_each_record_async(async |key: &[u8], record: &ringkv_engine::StoredRecord| {
                let child = child_of(key);
                let put = child
                    .store
                    .put_with(key, &record.value, record.write_options());
                if let Err(e) = put.await {
                    put_failed.get_or_insert(e);
                }
                // Requests on this core go first once the copy used its time slice.
                glommio::yield_if_needed().await;
            })
            .await
            .and(put_failed.map_or(Ok(()), Err));
        // Catch up with the keys written during the copy, without blocking writers, until
        // few are left; then freeze (writes to the parent wait until the switch) and copy
        // the rest.
        let copy_touched = async |keys: HashSet<Vec<u8>>| -> Result<()> {
            for key in keys {
                let child = child_of(&key);
                match parent.store.get_record(&key).await? {
                    Some(r) => {
                        child
                            .store
                            .put_with(&key, &r.value, r.write_options())
                            .await?
                    }
                    None => drop(child.store.delete(&key).await?),
                }
                glommio::yield_if_needed().await;
            }
            Ok(())
        };
        let take_touched = || {
            parent
                .touched
                .borrow_mut()
                .replace(HashSet::new())
                .unwrap_or_default()
        };
        let mut caught_up = copied.map_err(Error::from);
        let mut last = HashSet::new();
        for _ in 0..SPLIT_CATCH_UP_ROUNDS_MAX {
            if caught_up.is_err() {
                break;
            }
            last = take_touched();
            if last.len() <= SPLIT_FREEZE_KEYS_MAX {
                break;
            }
            caught_up = copy_touched(std::mem::take(&mut last)).await;
        }
        // The bulk of the children's bytes reach the disk before the freeze.
        for child in &stores {
            if caught_up.is_ok() {
                caught_up = child.store.flush().await.map_err(Error::from);
            }
        }
        parent.frozen.set(true);
        let copied = async {
            caught_up?;
            last.extend(parent.touched.borrow_mut().take().unwrap_or_default());
            copy_touched(last).await?;
            for child in &stores {
                child.store.flush().await?;
            }
            // Let any flush of the parent still in flight finish before its files go.
            parent.store.flush().await.map_err(Error::from)
        }
        .await;
        // Everything acknowledged on the parent is durable in the children now.
        let result = match copied {
            Ok(()) => crate::layout::retire(&self.options.storage, &parent.leaf),
            Err(e) => {
                // Before the commit point: the children only ever held copies. Remove
                // them so that the split can be tried again.
                let children: Vec<Leaf> = stores.iter().map(|s| s.leaf.clone()).collect();
                discard(&self.options.storage, stores, &children);
                parent.frozen.set(false);
                self.split_done.notify(usize::MAX);
                return Err(match e {
                    Error::Engine(e) => self.failed(e),
                    other => other,
                });
            }
        };
        if let Err(e) = result {
            // Whether the rename reached the disk is unknown: stop writing rather than
            // guess (open sorts it out).
            parent.frozen.set(false);
            self.split_done.notify(usize::MAX);
            self.health.fail(e.to_string());
            return Err(e);
        }
        {
            let mut leaves = self.leaves.borrow_mut();
            leaves.remove(&parent.id.hash_prefix);
            for child in stores {
                self.adopt(&child);
                leaves.insert(child.id.hash_prefix, Rc::new(child));
            }
        }
        self.leaves_changed();
        parent.frozen.set(false);
        self.split_done.notify(usize::MAX);
        Ok(())
    }
}

/// Closes the children of a split that failed before its commit point and removes them
/// (their files close before their directories go). A failure to remove is logged: the
/// next open removes uncommitted children anyway.
fn discard(fs: &crate::storage::Storage, stores: Vec<LeafState>, children: &[Leaf]) {
    drop(stores);
    if let Err(e) = crate::layout::discard_children(fs, children) {
        log::error!("ringkv: removing the children of a failed split: {e}");
    }
}
