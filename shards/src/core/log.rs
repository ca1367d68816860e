//! The core's side of its commit log (ringkv_engine::commitlog; ARCHITECTURE.md, "Group
//! commit"): the journal its substores append to, the log file, and a commit round
//! through it — one write and one fdatasync, whatever number of substores the round
//! touched.
//!
//! - **Start.** Opening replays what the logs held into the substores and syncs them
//!   ([`Core::replay`]); the log file is started again (a new epoch) only at the first
//!   round after every core has done so (`ready`). Until then rounds sync the substores.
//! - **Round.** Takes the journal whole, writes it as one frame, syncs the log. The
//!   substores it wrote to are marked durable when the round and every round before it
//!   have ended ([`super::commit`]), as recovery keeps only a prefix of the frames.
//! - **Checkpoint.** When a frame does not fit (the log is full, or the frame is larger
//!   than the log), every substore is synced and the log starts a new generation. On
//!   close too, so that a clean open replays nothing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ringkv_engine::commitlog::Sealed;
use ringkv_engine::{CommitLog, Journal};

use crate::core::{Core, LeafState};
use crate::error::Result;
use crate::logs::{COMMIT_DIR, Records, file_name};
use crate::storage::LeafFile;

type Log = Rc<CommitLog<LeafFile>>;

/// A round writes a store's buffered records to its extents (unsynced) only once this
/// much is unwritten, or an extent is full: writing every round rewrites the tail's
/// last block each time and grows the file a little at a time (measured: 16 threads of
/// durable puts 25 k/s writing every round, 32 k/s without). The log holds the records
/// meanwhile; checkpoints and close write out everything.
const WRITE_OUT_MIN_BYTES: u64 = 64 << 10;

/// A core's commit log and journal.
pub(super) struct CoreLog {
    journal: Rc<RefCell<Journal>>,
    state: RefCell<State>,
    epoch: u64,
    /// Set once every core has replayed and synced what the logs held.
    ready: Arc<AtomicBool>,
    checkpoints: Cell<u64>,
}

enum State {
    /// `commit_log_bytes(0)`: rounds sync the substores.
    Off,
    NotStarted,
    Starting,
    On(Log),
}

/// What a commit round commits: the journal it took, and how far each substore it
/// covers becomes durable with it.
pub(super) struct RoundInput {
    pub(super) log: Option<Log>,
    pub(super) payload: Vec<u8>,
    pub(super) marks: Vec<(Rc<LeafState>, u64)>,
    /// Stores whose buffers go to their extents (unsynced) while the frame is written:
    /// written to since the last round, with a tail to seal or `WRITE_OUT_MIN_BYTES`
    /// to write.
    dirty: Vec<Rc<LeafState>>,
}

impl CoreLog {
    pub(super) fn new(enabled: bool, epoch: u64, ready: Arc<AtomicBool>) -> Self {
        Self {
            journal: Rc::default(),
            state: RefCell::new(if enabled {
                State::NotStarted
            } else {
                State::Off
            }),
            epoch,
            ready,
            checkpoints: Cell::new(0),
        }
    }

    /// The epoch this run's logs start with.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch
    }

    fn enabled(&self) -> bool {
        !matches!(*self.state.borrow(), State::Off)
    }

    fn on(&self) -> Option<Log> {
        match &*self.state.borrow() {
            State::On(log) => Some(log.clone()),
            _ => None,
        }
    }
}

impl Core {
    /// Replays into `leaf` the records the logs held for it and syncs them, then
    /// journals its writes from now on (if the log is on).
    pub(super) async fn replay(&self, leaf: &LeafState, records: &mut Records) -> Result<()> {
        if let Some(records) = records.remove(&leaf.id.id) {
            let source = self.data_dir.join(COMMIT_DIR).display().to_string();
            let n = leaf.store.replay(&records, &source)?;
            if n > 0 {
                leaf.store.flush().await?;
            }
        }
        self.adopt(leaf);
        Ok(())
    }

    /// Journals the writes of a store that now takes them (a leaf, an ancestor).
    pub(super) fn adopt(&self, leaf: &LeafState) {
        if self.log.enabled() {
            leaf.store.attach_journal(Some(self.log.journal.clone()));
        }
    }

    /// Bytes journaled since the last round took the journal.
    pub(super) fn journal_bytes(&self) -> usize {
        self.log.journal.borrow().len()
    }

    /// Whether the log should be started before the next round.
    pub(super) fn log_wants_start(&self) -> bool {
        matches!(*self.log.state.borrow(), State::NotStarted)
            && self.log.ready.load(Ordering::Acquire)
    }

    /// Starts this core's log file with the run's epoch: every record any log held is
    /// durable in its substore by now.
    pub(super) async fn start_log(&self) -> Result<()> {
        *self.log.state.borrow_mut() = State::Starting;
        let dir = self.data_dir.join(COMMIT_DIR);
        let started = async {
            let device = self.options.storage.device(&dir).await?;
            let name = file_name(self.index);
            let core = u32::try_from(self.index).expect("core numbers fit u32");
            let capacity = self.options.commit_log_bytes;
            CommitLog::start(&device, &name, core, self.log.epoch, capacity)
                .await
                .map_err(|e| self.failed(e))
        }
        .await;
        let (state, result) = match started {
            Ok(log) => (State::On(Rc::new(log)), Ok(())),
            Err(e) => (State::NotStarted, Err(e)),
        };
        *self.log.state.borrow_mut() = state;
        result
    }

    /// Takes what the next round commits, in one poll with its start.
    pub(super) fn round_input(&self) -> RoundInput {
        self.bound_summaries();
        self.keep_order();
        self.publish_order();
        let payload = self.log.journal.borrow_mut().take();
        let Some(log) = self.log.on() else {
            // The round syncs the dirty substores: what was journaled is covered.
            return RoundInput {
                log: None,
                payload: Vec::new(),
                marks: Vec::new(),
                dirty: Vec::new(),
            };
        };
        let stores = self.store_list();
        let marks = (stores.iter())
            .filter(|l| l.store.has_unsynced())
            .map(|l| (l.clone(), l.store.next_seq() - 1))
            .collect();
        let dirty = (stores.into_iter())
            .filter(|l| l.dirty.get() && l.store.write_out_due(WRITE_OUT_MIN_BYTES))
            .inspect(|l| l.dirty.set(false))
            .collect();
        RoundInput {
            log: Some(log),
            payload,
            marks,
            dirty,
        }
    }

    /// Makes what `input` holds durable: one frame of the log, or (log off, full, or
    /// the frame too large for it) a sync of the substores.
    pub(super) async fn round(&self, input: RoundInput) -> Result<()> {
        let Some(log) = input.log else {
            return self.flush_dirty().await;
        };
        let logged = async {
            if input.payload.is_empty() {
                return Ok(());
            }
            match log
                .append(&input.payload)
                .await
                .map_err(|e| self.failed(e))?
            {
                Ok(()) => Ok(()),
                Err(sealed) => self.checkpoint(&log, sealed).await,
            }
        };
        let (logged, written) =
            futures_util::future::join(logged, self.write_unsynced(input.dirty)).await;
        logged.and(written)
    }

    /// Writes the buffers of `stores` to their extents, unsynced. A store that could
    /// not be written (out of descriptors) stays dirty for the next round: the log
    /// holds its records.
    async fn write_unsynced(&self, stores: Vec<Rc<LeafState>>) -> Result<()> {
        let writes = stores.into_iter().map(|leaf| async move {
            match leaf.store.write_unsynced().await {
                Err(e) if e.is_out_of_descriptors() => {
                    leaf.dirty.set(true);
                    Ok(())
                }
                other => other.map_err(|e| self.failed(e)),
            }
        });
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .collect()
    }

    /// Syncs every substore, then starts the log's next generation. The log is sealed
    /// first (by `append`'s refusal, in the same poll, or here), so that every frame of
    /// the generation it resets holds records appended before the sync began.
    async fn checkpoint(&self, log: &Log, sealed: Sealed) -> Result<()> {
        self.flush_stores(self.store_list()).await?;
        self.log.checkpoints.set(self.log.checkpoints.get() + 1);
        log.reset(sealed).await.map_err(|e| self.failed(e))
    }

    /// (bytes in use, checkpoints since open) of the log.
    pub(super) fn log_figures(&self) -> (u64, u64) {
        let used = self.log.on().map_or(0, |log| log.used_bytes());
        (used, self.log.checkpoints.get())
    }

    /// On close, after the last round: the substores hold everything, the log nothing.
    pub(super) async fn close_log(&self) -> Result<()> {
        let Some(log) = self.log.on() else {
            return Ok(());
        };
        self.checkpoint(&log, log.seal()).await?;
        log.shrink().await.map_err(|e| self.failed(e))
    }
}
