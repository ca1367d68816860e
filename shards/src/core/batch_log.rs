//! A core's batch log (`commit/batch-N.log`, [`crate::batch`]): the frames of the batches
//! this core coordinates and their done marks, written with group commit.
//!
//! - **Group commit.** An append queues its entries and takes a ticket; whoever finds no
//!   write in flight writes everything queued (up to a quarter of the log) as one frame,
//!   one durable write, for all the appends it holds. Under concurrent batches this is
//!   one device flush for many, not one each.
//! - **Pending frames.** `pending` counts the batches whose frame is durable in the
//!   current generation and whose done mark is not. A done mark counts only once
//!   written: until then its batch's frame may still be applied again by open.
//! - **A full log** is sealed by the append that does not fit. Its writer then counts
//!   every queued done mark as written (the reset about to come drops their frames),
//!   waits until no frame of the generation is pending (each such batch is being
//!   applied and queues its done mark), resets the log, and writes what it held into
//!   the new generation. Done marks of a dropped generation are harmless there.
//!
//! Invariant: a batch's keys are unlocked only once its done mark's ticket is written
//! (in its frame's generation, or after that generation's reset), so no later write of
//! them can coexist with a frame open would apply.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use event_listener::Event;
use ringkv_engine::CommitLog;

use super::Core;
use crate::batch::file_name;
use crate::error::Result;
use crate::logs::COMMIT_DIR;
use crate::storage::LeafFile;

/// How often a writer waiting for the pending batches of a full log to retire looks
/// whether the database failed meanwhile.
const RETIRE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// One queued append.
struct Queued {
    ticket: u64,
    payload: Vec<u8>,
    /// A done mark (else a batch's frame).
    done: bool,
    /// A done mark already counted as written (by a seal).
    counted: bool,
}

/// A core's batch log and its group commit.
#[derive(Default)]
pub(super) struct BatchLog {
    file: RefCell<Option<Rc<CommitLog<LeafFile>>>>,
    starting: async_lock::Mutex<()>,
    queue: RefCell<VecDeque<Queued>>,
    issued: Cell<u64>,
    /// Every ticket up to here is written.
    written: Cell<u64>,
    /// Every ticket up to here was in a write that failed (the database is read-only).
    failed: Cell<u64>,
    writing: Cell<bool>,
    pending: Cell<usize>,
    /// Notified when tickets are written or fail, a done mark is queued, or `pending`
    /// falls.
    changed: Event,
}

impl Core {
    /// Appends a batch's frame (`done` false) or done mark, durably.
    pub(super) async fn batch_log_append(&self, payload: Vec<u8>, done: bool) -> Result<()> {
        let ticket = self.batch_log_enqueue(payload, done)?;
        self.batch_log_written(ticket).await
    }

    /// Queues a batch's frame (`done` false) or done mark; answers its ticket.
    pub(super) fn batch_log_enqueue(&self, payload: Vec<u8>, done: bool) -> Result<u64> {
        self.health.check_writable()?;
        let bl = &self.batch_log;
        let ticket = bl.issued.get() + 1;
        bl.issued.set(ticket);
        bl.queue.borrow_mut().push_back(Queued {
            ticket,
            payload,
            done,
            counted: false,
        });
        if done {
            bl.changed.notify(usize::MAX); // a writer waiting for `pending` looks again
        }
        Ok(ticket)
    }

    /// Appends queued and not yet written.
    pub(super) fn batch_log_unwritten(&self) -> u64 {
        let bl = &self.batch_log;
        bl.issued.get() - bl.written.get().max(bl.failed.get())
    }

    /// `Db::flush` on this core: everything appended before the call is durable, and
    /// so is every batch frame queued here (a `Buffered` batch answered before it).
    pub(super) async fn flush(&self) -> Result<()> {
        self.batch_log_written(self.batch_log.issued.get()).await?;
        self.commit().await
    }

    /// Resolves once `ticket` is written, durably (writing the queue if no one is).
    pub(super) async fn batch_log_written(&self, ticket: u64) -> Result<()> {
        let bl = &self.batch_log;
        loop {
            if bl.written.get() >= ticket {
                return Ok(());
            }
            if bl.failed.get() >= ticket {
                self.health.check_writable()?;
                unreachable!("a failed write latches the database read-only");
            }
            if !bl.writing.get() {
                self.write_batch_log().await;
                continue;
            }
            let listener = bl.changed.listen();
            if bl.writing.get() && bl.written.get() < ticket && bl.failed.get() < ticket {
                listener.await;
            }
        }
    }

    /// Writes what is queued (up to a quarter of the log, at least one append) as one
    /// frame.
    async fn write_batch_log(&self) {
        let bl = &self.batch_log;
        bl.writing.set(true);
        let limit = self.options.batch_log_bytes / 4;
        let mut group = Vec::new();
        let mut bytes = 0u64;
        {
            let mut queue = bl.queue.borrow_mut();
            while let Some(next) = queue.front() {
                if !group.is_empty() && bytes + next.payload.len() as u64 > limit {
                    break;
                }
                bytes += next.payload.len() as u64;
                group.push(queue.pop_front().expect("looked at"));
            }
        }
        let upto = group.last().map_or(bl.written.get(), |q| q.ticket);
        match self.write_group(&mut group).await {
            Ok(()) => bl.written.set(upto),
            Err(_) => bl.failed.set(upto), // latched in Health by `failed`
        }
        bl.writing.set(false);
        bl.changed.notify(usize::MAX);
    }

    async fn write_group(&self, group: &mut [Queued]) -> Result<()> {
        let bl = &self.batch_log;
        let log = self.batch_log_file().await?;
        let payload: Vec<u8> = group
            .iter()
            .flat_map(|q| q.payload.iter().copied())
            .collect();
        loop {
            match log.append(&payload).await.map_err(|e| self.failed(e))? {
                Ok(()) => {
                    let frames = group.iter().filter(|q| !q.done).count();
                    let dones = group.iter().filter(|q| q.done && !q.counted).count();
                    bl.pending.set(bl.pending.get() + frames - dones);
                    return Ok(());
                }
                Err(sealed) => {
                    // Every done mark queued now retires its batch: the reset drops
                    // the frame it marks.
                    loop {
                        // A batch whose apply failed never retires: the database is
                        // read-only then (its frame is applied at the next open).
                        self.health.check_writable()?;
                        let queued = count_dones(bl.queue.borrow_mut().iter_mut());
                        let dones = count_dones(group.iter_mut()) + queued;
                        bl.pending.set(bl.pending.get() - dones);
                        if bl.pending.get() == 0 {
                            break;
                        }
                        let listener = bl.changed.listen();
                        let more = bl.queue.borrow().iter().any(|q| q.done && !q.counted);
                        if !more {
                            // Bounded: a failure on another core notifies no one here.
                            let timer = glommio::timer::sleep(RETIRE_CHECK_INTERVAL);
                            futures_lite::future::or(listener, timer).await;
                        }
                    }
                    log.reset(sealed).await.map_err(|e| self.failed(e))?;
                }
            }
        }
    }

    /// This core's batch log, started at its first batch (open removed the last run's).
    async fn batch_log_file(&self) -> Result<Rc<CommitLog<LeafFile>>> {
        let _one = self.batch_log.starting.lock().await;
        if let Some(log) = &*self.batch_log.file.borrow() {
            return Ok(log.clone());
        }
        let dir = self.data_dir.join(COMMIT_DIR);
        let device = self.options.storage.device(&dir).await?;
        let core = u32::try_from(self.index).expect("core numbers fit u32");
        let name = file_name(self.index);
        let (epoch, capacity) = (self.log.epoch(), self.options.batch_log_bytes);
        let log = CommitLog::start(&device, &name, core, epoch, capacity).await;
        let log = Rc::new(log.map_err(|e| self.failed(e))?);
        *self.batch_log.file.borrow_mut() = Some(log.clone());
        Ok(log)
    }
}

/// Marks the done marks among `queued` counted; how many were not yet.
fn count_dones<'a>(queued: impl IntoIterator<Item = &'a mut Queued>) -> usize {
    let mut n = 0;
    for q in queued.into_iter().filter(|q| q.done && !q.counted) {
        q.counted = true;
        n += 1;
    }
    n
}
