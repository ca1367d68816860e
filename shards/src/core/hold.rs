//! A core held still for a checkpoint or a snapshot (`crate::db::cut` drives every
//! core through these steps, in order, one step on all cores before the next):
//!
//! 1. **Hold**: take the compaction gate and keep it, so that no background step
//!    (compaction, split, record move, expiry sweep, idle seal) changes or removes a
//!    file until the release. Writes go on.
//!    For a checkpoint, open extents of 1 MiB or more are then sealed (writes go on,
//!    into new extents), so that the checkpoint links them instead of copying them.
//! 2. **Pause**: writes wait (as behind a frozen leaf) before they append; every store
//!    is flushed and synced; the answer lists each store's files, and a snapshot's
//!    cut is pinned on every store. With every core paused at once, the union of the
//!    listings (or of the cuts) is one state of the database.
//! 3. **Resume**: writes go on, once the caller says so through the pause's own
//!    channel (a request would queue behind `Buffered` puts that wait in the serve
//!    loop for the resume: a deadlock). The listed files stay valid: a sealed extent
//!    never changes, and an open one only grows past the listed end.
//! 4. **Release**: the gate goes back; background work goes on. A snapshot keeps its
//!    hold until it is dropped (its versions stay where they are meanwhile).
//!
//! Holds are counted (a checkpoint may run while snapshots are open, and `for_each`
//! holds the core too); a hold returns once the gate is kept, whichever hold took it.
//! Shutdown resumes and releases a core whatever step it is at, so that a checkpoint
//! that failed half way never leaves a core held.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use ringkv_engine::ExtentFile;

use super::{Core, LeafState, Op};
use crate::error::{Error, Result};

/// A checkpoint seals each open extent holding at least this many bytes of records
/// (once the core is held, before the pause), so that it links the extent instead of
/// copying it (a 1 GiB database copied 362 MiB of open extents before, and its
/// writers' p99 rose 27-fold meanwhile); smaller ones are copied, so that frequent
/// checkpoints do not leave many tiny extents behind.
const SEAL_AT_CHECKPOINT_MIN_BYTES: u64 = 1 << 20;

/// Resolves when a paused core's writes may go on: sent, or its sender dropped.
pub(crate) type Resume = futures_channel::oneshot::Receiver<()>;

/// How often a paused core looks at its [`Resume`] again even without a wake-up (a
/// wake from another thread may be lost in glommio's sleep path; see `serve`).
const RESUME_POLL: Duration = Duration::from_millis(1);

/// Waits for `resume` (sent or dropped).
async fn until_told(mut resume: Resume) {
    loop {
        let told = async { Some((&mut resume).await) };
        let timer = async {
            glommio::timer::sleep(RESUME_POLL).await;
            None
        };
        if futures_lite::future::or(told, timer).await.is_some() {
            return;
        }
    }
}

/// One store's files at a pause: what a checkpoint copies of it.
#[derive(Debug)]
pub(crate) struct StoreFiles {
    /// The store's directory.
    pub(crate) dir: PathBuf,
    /// Whether the store is a handed-over ancestor (its directory holds the marker).
    pub(crate) handed_over: bool,
    /// Its extents, oldest first, each durable up to the listed length.
    pub(crate) extents: Vec<ExtentFile>,
}

impl Core {
    /// Does a checkpoint's step and answers it.
    pub(super) async fn checkpoint_step(&self, op: Op) {
        match op {
            Op::Hold(reply) => {
                self.hold().await;
                reply.send(Ok(()));
            }
            Op::Pause(pin, resume, reply) => {
                let listed = self.pause(pin).await;
                let paused = listed.is_ok();
                reply.send(listed);
                if paused {
                    until_told(resume).await;
                    self.resume();
                }
            }
            Op::Release(reply) => {
                self.release();
                reply.send(Ok(()));
            }
            Op::Seal(reply) => reply.send(self.seal_open_extents().await),
            _ => unreachable!("not a checkpoint step: {op:?}"),
        }
    }

    /// Step 1: takes the compaction gate (once the background step in progress ends),
    /// unless a hold keeps it already. (Also `for_each`'s, so that no record moves from
    /// an ancestor while it lists.)
    pub(super) async fn hold(&self) {
        let holds = self.holds.get();
        self.holds.set(holds + 1);
        if holds == 0 {
            let gate = self.compaction_gate.lock_arc().await;
            *self.held.borrow_mut() = Some(gate);
            self.gate_kept.notify(usize::MAX);
        }
        // A later hold returns only once the first has the gate: a background step
        // still running could otherwise move or remove files under it.
        while self.held.borrow().is_none() && self.holds.get() > 0 {
            let listener = self.gate_kept.listen();
            if self.held.borrow().is_none() && self.holds.get() > 0 {
                listener.await;
            }
        }
    }

    /// Between steps 1 and 2, for a checkpoint: seals every open extent of
    /// [`SEAL_AT_CHECKPOINT_MIN_BYTES`] or more while writes go on (they start new
    /// extents), so that the checkpoint links it and the pause flushes only what came
    /// since.
    async fn seal_open_extents(&self) -> Result<()> {
        if self.options.read_only {
            return Ok(());
        }
        let large = |s: &Rc<LeafState>| s.store.active_bytes() >= SEAL_AT_CHECKPOINT_MIN_BYTES;
        let stores: Vec<_> = self.store_list().into_iter().filter(large).collect();
        for store in &stores {
            store.store.retire_active();
        }
        self.flush_stores(stores).await
    }

    /// Step 2: writes wait from now on; every store is made durable and listed, and
    /// snapshot `pin`'s cuts taken.
    async fn pause(&self, pin: Option<u64>) -> Result<Vec<StoreFiles>> {
        self.paused.set(true);
        let ancestors = self.ancestors.borrow().len();
        let stores = self.store_list();
        let leaves = stores.len() - ancestors;
        // Opened read-only, every store is as it was read from the disk.
        if !self.options.read_only {
            if let Err(e) = self.flush_stores(stores.clone()).await {
                self.resume();
                return Err(e);
            }
        }
        let listing = stores.iter().enumerate().map(|(at, store)| StoreFiles {
            dir: store.leaf.dir.clone(),
            handed_over: at >= leaves,
            extents: store.store.extent_files(),
        });
        let listing: Vec<StoreFiles> = listing.collect();
        let lost = listing
            .iter()
            .find(|s| s.extents.iter().any(|e| !e.durable));
        if let Some(store) = lost {
            // A store whose write failed earlier (the database is read-only since).
            self.resume();
            let cause = format!("{} holds writes its disk never got", store.dir.display());
            return Err(Error::ReadOnly { cause });
        }
        if let Some(id) = pin {
            self.pin(id, &stores);
        }
        Ok(listing)
    }

    /// Step 3 (once told): writes go on.
    pub(super) fn resume(&self) {
        self.paused.set(false);
        self.resumed.notify(usize::MAX);
    }

    /// Step 4: background work goes on once no other hold keeps it back.
    pub(super) fn release(&self) {
        let holds = self.holds.get().saturating_sub(1);
        self.holds.set(holds);
        if holds == 0 {
            self.held.borrow_mut().take();
        }
    }

    /// At shutdown: writes and background work go on, whatever holds them.
    pub(super) fn release_all(&self) {
        self.resume();
        self.holds.set(0);
        self.held.borrow_mut().take();
        self.gate_kept.notify(usize::MAX);
    }

    /// Resolves once no checkpoint has this core's writes paused.
    pub(super) async fn until_resumed(&self) {
        while self.paused.get() {
            let listener = self.resumed.listen();
            if self.paused.get() {
                listener.await;
            }
        }
    }
}
