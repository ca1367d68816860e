//! What a core reports: its figures (`CoreStats`, one `LeafStats` per leaf and
//! ancestor) and the listing of every live entry (`Db::for_each`), which sees only
//! durable writes in `Sync` mode and each key once even while records move.

use ringkv_engine::hash::routing_hash;
use ringkv_engine::{CompactionStats, Salvaged, SubstoreStats};

use crate::core::{Core, FOR_EACH_BATCH_BYTES};
use crate::error::Result;

/// Figures of one core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    pub core: usize,
    pub substores: u64,
    pub totals: SubstoreStats,
    pub cache_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub commits: u64,
    /// Bytes of this core's commit log in use: records committed through it since its
    /// last checkpoint (their substores hold them too, not yet synced).
    pub log_bytes: u64,
    /// Times the commit log filled up and every substore was synced (checkpoints).
    pub log_checkpoints: u64,
    /// 16-way splits done since open.
    pub splits: u64,
    /// Compaction work done since open (background and `Db::compact`).
    pub compaction: CompactionStats,
    /// Keys deleted because their expiry passed (the sweep, `Db::purge_expired`).
    pub expired_purged: u64,
    /// Background steps (compaction, record moves, splits) that failed since open. Each
    /// is logged; the step is tried again after a back-off unless the database turned
    /// read-only.
    pub background_errors: u64,
    /// The cause of the last background failure, if any.
    pub background_error: Option<String>,
    /// Requests waiting in this core's queue when the figures were taken.
    pub queued: u64,
    /// Requests being served when the figures were taken.
    pub in_flight: u64,
    /// Snapshots open (`Db::snapshot`): while any is, this core runs no background
    /// step, and its stores keep the versions writes replace since the oldest one.
    pub snapshots: u64,
    /// Times the core built its one order of its leaves' keys for scans: the first
    /// scan, then one after the leaves changed (a split) or a leaf's record of changes
    /// overflowed. Each costs a sort of the core's keys.
    pub key_order_builds: u64,
    /// Scan pages callers listed from the copy of that order the core publishes,
    /// without a trip to the core.
    pub pages_from_copy: u64,
    /// Scan pages this core listed itself for callers (a trip to the core each).
    pub pages_listed: u64,
    /// Versions kept for the open snapshots, and the memory they take (the records
    /// they point at stay on disk too).
    pub snapshot_versions: u64,
    pub snapshot_version_bytes: u64,
    /// Each leaf (substore) this core owns.
    pub leaves: Vec<LeafStats>,
}

/// Figures of one leaf (substore).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeafStats {
    /// The leaf's directory name under `substores/`.
    pub name: String,
    /// A handed-over parent still read behind its children (`SplitMode::HandOver`); its
    /// `keys` and `live_bytes` count only what no child has overwritten yet.
    pub ancestor: bool,
    /// The substore's figures.
    pub stats: SubstoreStats,
    /// What opening salvaged in it ([`Recovery::Salvage`](ringkv_engine::Recovery)).
    pub salvaged: Vec<Salvaged>,
}

impl Core {
    pub(super) fn stats(&self) -> CoreStats {
        let mut stats = CoreStats {
            core: self.index,
            substores: self.leaves.borrow().len() as u64,
            splits: self.splits.get(),
            commits: self.commit.commits.get(),
            compaction: self.compaction.get(),
            expired_purged: self.expired_purged.get(),
            background_errors: self.background_errors.get(),
            background_error: self.background_error.borrow().clone(),
            snapshots: self.snapshots.borrow().len() as u64,
            key_order_builds: self.key_order_builds.get(),
            pages_from_copy: self.peers[self.index].order.pages(),
            pages_listed: self.pages_listed.get(),
            ..CoreStats::default()
        };
        for store in self.store_list() {
            let pinned = store.store.pinned_stats();
            stats.snapshot_versions += pinned.versions;
            stats.snapshot_version_bytes += pinned.bytes;
        }
        let cache = &self.cache;
        (stats.cache_bytes, stats.cache_hits, stats.cache_misses) =
            (cache.bytes(), cache.hits(), cache.misses());
        for leaf in self.leaf_list() {
            let figures = leaf.store.stats();
            stats.totals.add(&figures);
            stats.leaves.push(LeafStats {
                name: crate::layout::leaf_dir_name(&leaf.id),
                ancestor: false,
                stats: figures,
                salvaged: leaf.store.salvaged().to_vec(),
            });
        }
        for ancestor in self.ancestors.borrow().iter() {
            let mut figures = ancestor.store.stats();
            (figures.keys, figures.live_bytes) = (0, 0);
            ancestor.store.for_each_key(|key, len| {
                if !self.leaf(routing_hash(key)).store.exists(key) {
                    figures.keys += 1;
                    figures.live_bytes += len;
                }
            });
            stats.totals.add(&figures);
            stats.leaves.push(LeafStats {
                name: crate::layout::leaf_dir_name(&ancestor.id),
                ancestor: true,
                stats: figures,
                salvaged: ancestor.store.salvaged().to_vec(),
            });
        }
        if let Some(order) = &*self.key_order.borrow() {
            stats.totals.index_memory_bytes += order.heap_bytes() as u64;
        }
        if let Some(copy) = &self.order_copy.borrow().copy {
            stats.totals.index_memory_bytes += copy.heap_bytes() as u64;
        }
        (stats.log_bytes, stats.log_checkpoints) = self.log_figures();
        stats.in_flight = self.in_flight.get() as u64;
        stats
    }

    pub(super) async fn for_each(&self, sender: super::ForEachSender) -> Result<()> {
        // Ancestors first, each key only if no leaf has it now; then the leaves. No
        // record moves from an ancestor to a leaf meanwhile (the core is held), so a
        // key is seen twice only if it is written during the call.
        let behind = !self.ancestors.borrow().is_empty();
        if behind {
            self.hold().await; // counted: an open snapshot's hold does not block it
        }
        let sent = self.send_all(&sender).await;
        if behind {
            self.release();
        }
        sent
    }

    /// [`Core::for_each`]'s listing, in batches of about [`FOR_EACH_BATCH_BYTES`].
    async fn send_all(&self, sender: &super::ForEachSender) -> Result<()> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let ancestors = self.ancestors.borrow().clone();
        let sources = ancestors.into_iter().map(|a| (a, true));
        for (source, behind) in sources.chain(self.leaf_list().into_iter().map(|l| (l, false))) {
            source
                .store
                .for_each_async(async |k: &[u8], v: &[u8]| {
                    if behind && self.leaf(routing_hash(k)).store.exists(k) {
                        return;
                    }
                    bytes += k.len() + v.len();
                    batch.push((k.to_vec(), v.to_vec()));
                    if bytes >= FOR_EACH_BATCH_BYTES {
                        bytes = 0;
                        // A closed channel means the caller gave up; stop sending.
                        let _ = sender.send(std::mem::take(&mut batch)).await;
                    }
                })
                .await?;
        }
        if !batch.is_empty() {
            let _ = sender.send(batch).await;
        }
        Ok(())
    }
}
