//! Hand-over splits (`SplitMode::HandOver`): the parent becomes a read-behind ancestor
//! of 16 empty children at once (the `HANDED-OVER` marker is the commit point), and a
//! later step moves the records no child has overwritten, then retires the ancestor.

use std::rc::Rc;

use ringkv_engine::hash::routing_hash;

use crate::core::{Core, LeafState};
use crate::error::{Error, Result};

impl Core {
    /// `SplitMode::HandOver`: makes `parent` an ancestor of 16 new, empty children at
    /// once (ARCHITECTURE.md, "Splitting"). The marker file is the commit point and is
    /// durable before any write reaches a child.
    pub(in crate::core) async fn hand_over(&self, parent: &Rc<LeafState>) -> Result<()> {
        let stores: Vec<Rc<LeafState>> = self
            .open_children(parent)
            .await?
            .into_iter()
            .map(Rc::new)
            .collect();
        if let Err(e) = crate::layout::hand_over(&self.options.storage, &parent.leaf) {
            // Whether the marker is on disk is unknown: stop writing rather than guess.
            self.health.fail(e.to_string());
            return Err(e);
        }
        let mut leaves = self.leaves.borrow_mut();
        leaves.remove(&parent.id.hash_prefix);
        for child in stores {
            *child.ancestor.borrow_mut() = Some(parent.clone());
            self.adopt(&child);
            leaves.insert(child.id.hash_prefix, child);
        }
        self.ancestors.borrow_mut().push(parent.clone());
        self.leaves_changed();
        Ok(())
    }

    /// Moves the records of one ancestor that no child has overwritten into the
    /// children, makes them durable and retires the ancestor, holding the compaction
    /// gate. Returns whether there was an ancestor to work on.
    pub(in crate::core) async fn move_step(&self) -> Result<bool> {
        let _gate = self.compaction_gate.lock().await;
        if self.stopping.get() {
            return Ok(false);
        }
        self.move_first_ancestor().await
    }

    /// [`Core::move_step`] with the gate held: returns whether there was an ancestor.
    pub(in crate::core) async fn move_first_ancestor(&self) -> Result<bool> {
        let ancestor = self.ancestors.borrow().first().cloned();
        let Some(ancestor) = ancestor else {
            return Ok(false);
        };
        match self.move_ancestor(&ancestor).await {
            Ok(()) => Ok(true),
            Err(Error::Engine(e)) => Err(self.failed(e)),
            Err(e) => {
                self.health.fail(e.to_string());
                Err(e)
            }
        }
    }

    pub(in crate::core) async fn move_ancestor(&self, ancestor: &Rc<LeafState>) -> Result<()> {
        let mut put_failed = None;
        ancestor
            .store
            .for_each_record_async(async |key: &[u8], record: &ringkv_engine::StoredRecord| {
                if self.stopping.get() || put_failed.is_some() {
                    return; // resumed by the next open
                }
                let leaf = self.leaf(routing_hash(key));
                // Deleted since (the ancestor holds a tombstone) or overwritten in the
                // leaf: nothing to move. The check and the append share one poll.
                if ancestor.store.exists(key) && !leaf.store.exists(key) {
                    leaf.dirty.set(true);
                    let put = leaf
                        .store
                        .put_with(key, &record.value, record.write_options());
                    if let Err(e) = put.await {
                        put_failed = Some(e);
                    }
                }
                glommio::yield_if_needed().await;
            })
            .await?;
        if let Some(e) = put_failed {
            return Err(e.into());
        }
        if self.stopping.get() {
            return Ok(());
        }
        let children: Vec<Rc<LeafState>> = self
            .leaf_list()
            .into_iter()
            .filter(|l| l.ancestor().is_some_and(|a| Rc::ptr_eq(&a, ancestor)))
            .collect();
        for child in &children {
            child.store.flush().await?;
        }
        // Tombstones the ancestor took from deletes in flight become durable with it.
        ancestor.store.flush().await?;
        // Everything the ancestor held is durable in its children: it can go.
        crate::layout::retire(&self.options.storage, &ancestor.leaf)?;
        for child in &children {
            child.ancestor.borrow_mut().take();
        }
        self.ancestors
            .borrow_mut()
            .retain(|a| !Rc::ptr_eq(a, ancestor));
        Ok(())
    }
}
