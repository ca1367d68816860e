//! Compaction of one substore: a sealed extent whose records are mostly dead is rewritten
//! — its live records appended to the active extent with their original sequence
//! numbers — and deleted once the rewrite is durable.
//!
//! Steps, in order (ARCHITECTURE.md, "Compaction"):
//! 1. read the victim's key summary (or scan it if the summary is damaged);
//! 2. for each record, read it sequentially and, in one synchronous step with no await
//!    between the check and the append, re-check that the index still points at it and
//!    append it to the active extent (the index then points at the copy);
//! 3. tombstones and expired puts: dropped when no older extent exists (nothing older
//!    can hold the key), and a tombstone also when the key has a newer live value;
//!    otherwise rewritten (an expired put becomes a tombstone with its sequence);
//! 4. flush: the copies are durable (write + fdatasync, seals included);
//! 5. delete the victim file and sync the directory; forget the extent.
//!
//! A crash before step 5 completes leaves both copies: recovery replays them in log
//! order, the copy (later in the log, same sequence) wins, and the victim's bytes count
//! as dead, so nothing is lost, nothing deleted returns and nothing counts twice.

use std::rc::Rc;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::format::{self, EXTENT_HEADER_LEN, Kind, RecordHeader, extent_file_name};
use crate::recovery::{Scanner, sealed_footer, sealed_records};
use crate::substore::Substore;

/// Records rewritten between two yields to other tasks.
const RECORDS_PER_YIELD: usize = 64;
/// Rewritten records are written out (unsynced; the sync comes at the end) each time
/// this much has gathered in the tail buffer, which otherwise held up to a whole
/// victim's live bytes: a 35–45 MiB jump of the heap when a 64 MiB extent was compacted.
const WRITE_OUT_EVERY_BYTES: u64 = 1 << 20;

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub extents: u64,
    pub records_rewritten: u64,
    pub bytes_rewritten: u64,
    /// Bytes of extent files deleted.
    pub bytes_reclaimed: u64,
    pub tombstones_dropped: u64,
    pub expired_dropped: u64,
}

impl CompactionStats {
    /// The work done since `earlier`, a snapshot of the same running totals.
    pub fn since(&self, earlier: &CompactionStats) -> CompactionStats {
        CompactionStats {
            extents: self.extents - earlier.extents,
            records_rewritten: self.records_rewritten - earlier.records_rewritten,
            bytes_rewritten: self.bytes_rewritten - earlier.bytes_rewritten,
            bytes_reclaimed: self.bytes_reclaimed - earlier.bytes_reclaimed,
            tombstones_dropped: self.tombstones_dropped - earlier.tombstones_dropped,
            expired_dropped: self.expired_dropped - earlier.expired_dropped,
        }
    }

    pub fn add(&mut self, other: &CompactionStats) {
        self.extents += other.extents;
        self.records_rewritten += other.records_rewritten;
        self.bytes_rewritten += other.bytes_rewritten;
        self.bytes_reclaimed += other.bytes_reclaimed;
        self.tombstones_dropped += other.tombstones_dropped;
        self.expired_dropped += other.expired_dropped;
    }
}

impl<D: Device> Substore<D> {
    /// Sealed extents whose dead fraction is at least `garbage_ratio_min`, best victim
    /// first by the cost-benefit rule of LFS: (1 − u) · age / (1 + u), where u is the
    /// live fraction and age counts extents written since. None while a snapshot's cut
    /// is pinned: the versions it reads stay where they are.
    pub fn compaction_victims(&self, garbage_ratio_min: f64) -> Vec<u64> {
        let state = self.state.borrow();
        if state.versions.is_pinned() {
            return Vec::new();
        }
        let newest = state.extents.keys().next_back().copied().unwrap_or(0);
        let mut scored: Vec<(f64, u64)> = state
            .extents
            .iter()
            .filter(|(_, e)| e.tail.is_none() && e.sealed_len > 0)
            .filter_map(|(&seq, e)| {
                let total = e.records_end.saturating_sub(EXTENT_HEADER_LEN as u64);
                let live = if total == 0 {
                    0.0
                } else {
                    e.live_bytes as f64 / total as f64
                };
                let age = (newest - seq + 1) as f64;
                (1.0 - live >= garbage_ratio_min).then(|| ((1.0 - live) * age / (1.0 + live), seq))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|(_, seq)| seq).collect()
    }

    /// The dead fraction of the active extent's records (0 without one): what
    /// [`Substore::compaction_victims`] would judge it by once sealed.
    pub fn active_garbage_ratio(&self) -> f64 {
        let state = self.state.borrow();
        let Some(extent) = state.active.map(|seq| &state.extents[&seq]) else {
            return 0.0;
        };
        let total = extent.records_end.saturating_sub(EXTENT_HEADER_LEN as u64);
        match total {
            0 => 0.0,
            _ => 1.0 - extent.live_bytes as f64 / total as f64,
        }
    }

    /// Seals the active extent if it holds dead bytes, so that a full compaction can
    /// reach them too; the next write starts a new extent.
    pub async fn seal_active_if_dead(&self) -> Result<bool> {
        let dead = {
            let state = self.state.borrow();
            state.active.is_some_and(|seq| {
                let extent = &state.extents[&seq];
                extent.records_end - EXTENT_HEADER_LEN as u64 != extent.live_bytes
            })
        };
        if !dead || !self.retire_active() {
            return Ok(false);
        }
        self.flush().await?;
        Ok(true)
    }

    /// Compacts every extent past `garbage_ratio_min`, one at a time. The buffers are
    /// written out first: an extent that filled up is sealed (and so a victim) only
    /// once written.
    pub async fn compact(&self, garbage_ratio_min: f64) -> Result<CompactionStats> {
        self.write_unsynced().await?;
        let mut total = CompactionStats::default();
        for seq in self.compaction_victims(garbage_ratio_min) {
            total.add(&self.compact_extent(seq).await?);
        }
        Ok(total)
    }

    /// Rewrites the live records of sealed extent `seq` and deletes it. See the module
    /// documentation for the steps.
    pub async fn compact_extent(&self, seq: u64) -> Result<CompactionStats> {
        let _one_at_a_time = self.compaction_lock.lock().await;
        self.check_writable()?;
        let name = extent_file_name(seq);
        let path = self.device.path_of(&name);
        let (file, sealed_len) = {
            let state = self.state.borrow();
            let Some(extent) = state.extents.get(&seq) else {
                return Ok(CompactionStats::default()); // already gone
            };
            if state.versions.is_pinned() {
                return Ok(CompactionStats::default()); // a snapshot may read it
            }
            assert!(extent.tail.is_none(), "only sealed extents are compacted");
            (
                extent.file.clone().expect("sealed extents have files"),
                extent.sealed_len,
            )
        };
        let mut scanner = Scanner::new(Rc::clone(&file), path.clone());
        let footer = sealed_footer(&mut scanner, sealed_len).await?;
        let records = sealed_records(&mut scanner, &footer).await?;
        let mut stats = CompactionStats {
            extents: 1,
            bytes_reclaimed: sealed_len,
            ..CompactionStats::default()
        };
        let now = self.config.clock.now_unix_ms();
        let mut gathered = 0;
        for (i, listed) in records.iter().enumerate() {
            let (offset, header, key) = (&listed.offset, &listed.header, &listed.key);
            if gathered >= WRITE_OUT_EVERY_BYTES {
                self.write_unsynced().await?;
                gathered = 0;
            }
            if i % RECORDS_PER_YIELD == RECORDS_PER_YIELD - 1 {
                futures_lite::future::yield_now().await;
            }
            let live_put = |state: &crate::substore::State<D::File>| {
                state.index.get(key).is_some_and(|e| {
                    u64::from(e.extent) == seq && e.offset == *offset && e.seq == header.seq
                })
            };
            let expired = header.expiry_unix_ms.is_some_and(|at| at <= now);
            let needed = match header.kind {
                Kind::Put => live_put(&self.state.borrow()),
                Kind::Tombstone => self.state.borrow().index.get(key).is_none(),
            };
            if !needed {
                stats.tombstones_dropped += u64::from(header.kind == Kind::Tombstone);
                continue;
            }
            let oldest = self.state.borrow().extents.keys().next() == Some(&seq);
            if (expired || header.kind == Kind::Tombstone) && oldest {
                stats.tombstones_dropped += u64::from(header.kind == Kind::Tombstone);
                stats.expired_dropped += u64::from(expired);
                if expired {
                    // Nothing older can hold the key: forget it without a tombstone.
                    let mut state = self.state.borrow_mut();
                    if live_put(&state) {
                        let len = header.record_len() as u64;
                        state.index.remove(key);
                        state.extents.get_mut(&seq).expect("victim").live_bytes -= len;
                    }
                }
                continue;
            }
            let len = header.record_len() as u64;
            let bytes = scanner.bytes_at(u64::from(*offset), len).await?;
            let rec = format::decode_record(bytes).map_err(|e| {
                Error::corruption(
                    path.clone(),
                    u64::from(*offset),
                    format!("{e:?} while compacting"),
                )
            })?;
            let meta_differs = listed
                .meta
                .as_ref()
                .is_some_and(|m| m.as_slice() != rec.meta);
            if rec.key != key.as_slice() || rec.header != *header || meta_differs {
                return Err(Error::corruption(
                    path.clone(),
                    u64::from(*offset),
                    "record differs from its summary",
                ));
            }
            let (header, value) = if expired {
                let tombstone = RecordHeader {
                    kind: Kind::Tombstone,
                    expiry_unix_ms: None,
                    meta_len: 0,
                    value_len: 0,
                    ..*header
                };
                (tombstone, &[][..])
            } else {
                (*header, rec.value)
            };
            let meta = if expired { &[][..] } else { rec.meta };
            let mut state = self.state.borrow_mut();
            // Re-check with no await since: a write may have replaced the key meanwhile.
            let still_needed = match header.kind {
                Kind::Put => live_put(&state),
                Kind::Tombstone => {
                    expired && live_put(&state) || !expired && state.index.get(key).is_none()
                }
            };
            if !still_needed {
                continue;
            }
            self.append_record(&mut state, &header, meta, key, value)?;
            gathered += header.record_len() as u64;
            stats.records_rewritten += 1;
            stats.bytes_rewritten += header.record_len() as u64;
            stats.expired_dropped += u64::from(expired);
        }
        self.flush().await?;
        {
            let state = self.state.borrow();
            let victim = &state.extents[&seq];
            assert_eq!(
                victim.live_bytes, 0,
                "every live record of extent {seq} was rewritten"
            );
        }
        self.device
            .remove(&name)
            .await
            .map_err(|e| Error::io("removing", path.clone(), 0, e))?;
        self.device
            .sync_dir()
            .await
            .map_err(|e| Error::io("syncing the directory of", path, 0, e))?;
        self.state.borrow_mut().extents.remove(&seq);
        Ok(stats)
    }
}
