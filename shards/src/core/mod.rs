//! One core: a glommio executor on its own thread that owns a disjoint set of leaves
//! (substores) and serves the requests routed to it.
//!
//! - **Mailbox** ([`mailbox`]). Callers push onto a lock-free queue and wake the core
//!   only when it said it waits; a read the cache holds (filled since the caller
//!   looked) is answered in the serve loop, anything else in a task of its own. An
//!   idle core is parked in the kernel and burns no CPU.
//! - **Group commit** ([`commit`], [`log`]). In `Sync` mode a put appends to its
//!   substore (memory) and then waits for a commit round: if none is in flight it
//!   starts one (one frame of the core's commit log and one fdatasync; without a log,
//!   one write + fdatasync per dirty substore), otherwise it waits for the next. Every
//!   put that arrives while a round is in flight shares the next one.
//! - **Leaves** ([`leaf`]): each substore with its split state and the ancestor it
//!   reads behind; **figures and listings** in [`report`].
//! - **Failure.** A failed write or sync is never retried: the core records the cause in
//!   the database-wide [`Health`], every later write on any core is refused, reads go on.
//! - **Death.** A panic on the core's thread (a bug, an engine assertion, a panicking
//!   task spawned on it) ends the core: its thread catches the unwind and marks the
//!   core dead in [`CoreShared`], which releases every caller waiting on it, even one
//!   whose task glommio lost with the executor, with `Error::CoreFailed`.
//! - **Background work** (compaction, splits, record moves) lives in [`background`].
//! - **Read cache** ([`Cache`]). Values per core under a byte budget, read by callers'
//!   threads directly (a cached get never reaches the core) and written only here. A
//!   read fills it only if no write happened on this core while the read was in
//!   flight, so it never caches a value older than a write it raced with; a write
//!   removes the key before it appends and fills it once readable, if still the key's
//!   newest.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use ringkv_engine::{CompactionStats, Config, StoredRecord, SubstoreId};

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::layout::Leaf;
use crate::options::{Durability, Options};

mod background;
mod batch;
mod batch_log;
mod commit;
mod expiry;
mod hold;
mod leaf;
mod log;
mod mailbox;
mod receipt;
mod report;
mod scan;
mod shared_order;
mod snapshot;

pub(crate) use batch::{Part, Read, Ticket, Version, Versioned};
use commit::Committer;
pub use expiry::{ExpireIf, Head};
pub(crate) use expiry::{ExpiryChange, Extras, NO_EXTRAS, Outcome};
pub(crate) use hold::{Resume, StoreFiles};
use leaf::LeafState;
use log::CoreLog;
pub(crate) use mailbox::{Answer, CoreShared, Peers, ReplySlot, ReplyTo, Request, Spinners, Waits};
pub(crate) use receipt::{
    OwnPuts, Receipt, issue as queue_receipt, own_puts_on, pending as put_pending,
};
pub use report::{CoreStats, LeafStats};
pub(crate) use scan::{Item, ScanPage, ScanRequest, Values};

/// Requests handled before the core yields to the tasks it spawned.
const BATCH_MAX: usize = 256;
/// While requests keep a spinning core busy, how often it still lets the executor
/// poll for I/O and timers (and its other task queues run).
const REACTOR_POLL_INTERVAL: Duration = Duration::from_micros(200);
/// Longest a core waits for a request before it looks at its queue again, woken or not.
const ARRIVAL_WAIT_MAX: Duration = Duration::from_secs(1);
/// Bytes of entries `for_each` sends in one message.
const FOR_EACH_BATCH_BYTES: usize = 1 << 20;

/// What a caller asks of a core, each with where its answer goes.
#[derive(Debug)]
pub(crate) enum Op {
    Get(Vec<u8>, ReplyTo<Option<Bytes>>),
    Put(Vec<u8>, Vec<u8>, ReplyTo<()>),
    /// A put with metadata or an expiry.
    PutWith(Vec<u8>, Vec<u8>, Box<Extras>, Durability, ReplyTo<()>),
    /// Sets or removes a key's expiry, keeping its value and metadata; answers whether
    /// it changed anything.
    Expire(Vec<u8>, ExpiryChange, ReplyTo<bool>),
    /// What the index knows of a live key (no device read).
    Head(Vec<u8>, ReplyTo<Option<Head>>),
    /// Deletes every key of this core whose expiry has passed; answers how many.
    PurgeExpired(ReplyTo<u64>),
    /// A `Buffered` put its caller was told succeeded once it queued it; appended
    /// before the core takes the next request.
    PutQueued(Vec<u8>, Vec<u8>, Receipt),
    /// Gets of keys this core owns, each with its hash; answers their values in order.
    GetMany(Vec<(u64, Vec<u8>)>, ReplyTo<Vec<Option<Bytes>>>),
    /// Puts of keys this core owns (hash, key, value), made durable by one commit; each
    /// key independent (not atomic as a whole).
    PutMany(Vec<(u64, Vec<u8>, Vec<u8>)>, ReplyTo<()>),
    Delete(Vec<u8>, Durability, ReplyTo<()>),
    Exists(Vec<u8>, ReplyTo<bool>),
    /// Makes every write acknowledged on this core durable, and every batch it
    /// coordinates committed.
    Flush(ReplyTo<()>),
    Stats(ReplyTo<CoreStats>),
    ForEach(ForEachSender, ReplyTo<()>),
    Compact(ReplyTo<CompactionStats>),
    /// Atomic read-modify-write of one key; answers the value before.
    Update(Vec<u8>, UpdateFn, Durability, ReplyTo<Option<Bytes>>),
    /// Runs a closure on this core's executor (it spawns the caller's task).
    Spawn(SpawnFn, ReplyTo<()>),
    /// Coordinates a write batch, whose parts are sorted by core (see [`batch`]),
    /// answering when its durability says.
    Batch(Vec<Part>, Durability, Ticket, ReplyTo<()>),
    /// Locks a batch's keys on this core (see [`batch`]); answers whether the keys a
    /// transaction read there still have the versions it saw.
    BatchLock(Vec<Vec<u8>>, Vec<Read>, ReplyTo<bool>),
    /// A transaction's read: the value and its version.
    GetVersioned(Vec<u8>, ReplyTo<(Versioned, Version)>),
    /// Appends and commits a batch's part (its keys locked by it, or at open).
    BatchApply(Vec<crate::batch::BatchOp>, ReplyTo<()>),
    /// Unlocks a batch's keys.
    BatchUnlock(Vec<Vec<u8>>, ReplyTo<()>),
    /// The next page of an ordered scan of this core's keys.
    Scan(Box<ScanRequest>, ReplyTo<ScanPage>),
    /// A checkpoint's steps (see [`hold`]): holds background work still; pauses
    /// writes and lists every store's files; lets writes go on; lets everything go on.
    Hold(ReplyTo<()>),
    /// Writes wait until the receiver resolves (sent, or the sender dropped): not a
    /// request, which a `Buffered` put waiting in the serve loop would hold back.
    Pause(Option<u64>, Resume, ReplyTo<Vec<StoreFiles>>),
    Release(ReplyTo<()>),
    /// A checkpoint's, while held: seals the large open extents (writes go on).
    Seal(ReplyTo<()>),
    /// A read in an open snapshot (pinned at a `Pause`).
    SnapshotGet(u64, Vec<u8>, ReplyTo<Option<Bytes>>),
    /// Unpins a snapshot and lets go of its hold.
    Unpin(u64, ReplyTo<()>),
}

/// Whether a write waits while a batch holds its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Locks {
    Wait,
    /// The batch that holds it writes, or the caller checked.
    Held,
}

/// Where `for_each` sends a core's entries, a batch at a time.
pub(crate) type ForEachSender = async_channel::Sender<Vec<(Vec<u8>, Vec<u8>)>>;

/// What a read-modify-write does with the value it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Leave the key as it is.
    Keep,
    /// Store this value, keeping the key's metadata and expiry (as Redis's INCR and
    /// APPEND keep a TTL).
    Put(Vec<u8>),
    /// Store this value with this expiry (Unix ms; `None`: never) and no metadata, as
    /// Redis's SET does.
    Set {
        value: Vec<u8>,
        expiry_unix_ms: Option<u64>,
    },
    /// Delete the key.
    Delete,
}

impl Update {
    /// What this decision comes to for a key whose live record is `seen` (`None`: keep
    /// the key as it is).
    pub(crate) fn outcome(self, seen: Option<&StoredRecord>) -> Option<Outcome> {
        Some(match self {
            Update::Keep => return None,
            Update::Put(new) => {
                let extras = seen.map_or(Extras::NONE, Extras::kept_from);
                Outcome::Write(Bytes::from(new), extras)
            }
            Update::Set {
                value,
                expiry_unix_ms,
            } => {
                let extras = Extras {
                    meta: Bytes::new(),
                    expiry_unix_ms,
                };
                Outcome::Write(Bytes::from(value), extras)
            }
            Update::Delete => Outcome::Delete,
        })
    }
}

/// The function of a read-modify-write, run on the core that owns the key.
pub(crate) struct UpdateFn(pub(crate) Box<Decide>);
/// What an update runs on the value it saw.
type Decide = dyn FnOnce(Option<&[u8]>) -> Update + Send;
/// A closure that runs on a core's thread, handed that core.
pub(crate) struct SpawnFn(pub(crate) Box<dyn FnOnce(Here) + Send>);

impl std::fmt::Debug for UpdateFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpdateFn")
    }
}

impl std::fmt::Debug for SpawnFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpawnFn")
    }
}

/// A user's task on a core, counted while it lives.
pub(crate) struct Guest(Rc<Core>);

impl Drop for Guest {
    fn drop(&mut self) {
        self.0.guests.set(self.0.guests.get() - 1);
    }
}

/// A core, as seen by tasks running on its own thread: calls for keys it owns go
/// straight to it, without crossing a queue.
#[derive(Clone)]
pub(crate) struct Here(Rc<Core>);

impl std::fmt::Debug for Here {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Here").field(&self.0.index).finish()
    }
}

impl Here {
    pub(crate) fn index(&self) -> usize {
        self.0.index
    }

    /// Counts a user's task on this core until the guard drops (see `Core::guests`).
    pub(crate) fn guest(&self) -> Guest {
        let core = &self.0;
        core.guests.set(core.guests.get() + 1);
        Guest(core.clone())
    }

    pub(crate) async fn get(&self, hash: u64, key: &[u8]) -> Result<Option<Bytes>> {
        self.counted(async |core| core.get(hash, key).await).await
    }

    /// A put (`Some(value)`) or a delete (`None`).
    pub(crate) async fn write(&self, hash: u64, key: &[u8], value: Option<Bytes>) -> Result<()> {
        let put = value.map(|v| (v, &NO_EXTRAS));
        self.counted(async |core| core.write(hash, key, put).await)
            .await
    }

    pub(crate) async fn exists(&self, hash: u64, key: &[u8]) -> Result<bool> {
        self.counted(async |core| core.exists(hash, key).await)
            .await
    }

    pub(crate) async fn update(&self, hash: u64, key: &[u8], f: UpdateFn) -> Result<Option<Bytes>> {
        let durability = self.0.options.durability;
        self.counted(async |core| core.update(hash, key, f, durability).await)
            .await
    }

    /// Runs `call` on this core, counted as in flight so that shutdown waits for it.
    async fn counted<T>(&self, call: impl AsyncFnOnce(&Rc<Core>) -> Result<T>) -> Result<T> {
        let core = &self.0;
        if core.stopping.get() {
            return Err(Error::Closed);
        }
        // Counted down on drop as well, so a caller that drops the future mid-call
        // does not leave shutdown waiting for it.
        struct InFlight<'a>(&'a Core);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.count_out();
            }
        }
        core.in_flight.set(core.in_flight.get() + 1);
        let _counted = InFlight(core);
        call(core).await
    }
}

/// Whether the database still accepts writes; shared by every core and caller.
#[derive(Debug, Default)]
pub(crate) struct Health {
    read_only: OnceLock<String>,
    /// Opened with `Options::read_only`.
    opened_read_only: bool,
}

impl Health {
    pub(crate) fn new(opened_read_only: bool) -> Self {
        Self {
            opened_read_only,
            ..Self::default()
        }
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.opened_read_only {
            return Err(Error::OpenedReadOnly);
        }
        match self.read_only.get() {
            Some(cause) => Err(Error::ReadOnly {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn fail(&self, cause: String) {
        let _ = self.read_only.set(cause);
    }
}

/// What a core owns: its leaves and the ancestors behind some of them.
#[derive(Debug)]
pub(crate) struct Owned {
    pub(crate) leaves: Vec<Leaf>,
    pub(crate) ancestors: Vec<Leaf>,
    /// What the commit logs held for these leaves and ancestors.
    pub(crate) replay: crate::logs::Records,
    /// The epoch this run's commit logs start with.
    pub(crate) log_epoch: u64,
    /// Set once every core has replayed its records: logs may start again.
    pub(crate) log_ready: Arc<std::sync::atomic::AtomicBool>,
    /// The database directory.
    pub(crate) dir: std::path::PathBuf,
    /// This core's read cache, which callers read too.
    pub(crate) cache: Arc<Cache>,
    /// Every core's mailbox (a batch's coordinator calls its participants).
    pub(crate) peers: Arc<Peers>,
}

/// A core's state, on its own thread.
struct Core {
    index: usize,
    options: Options,
    health: Arc<Health>,
    leaves: RefCell<BTreeMap<u64, Rc<LeafState>>>,
    /// Handed-over parents whose records have not all moved to their children yet.
    ancestors: RefCell<Vec<Rc<LeafState>>>,
    /// Every leaf's keys in one byte order, once a scan asked for it (`scan.rs`).
    key_order: RefCell<Option<ringkv_engine::KeyOrder>>,
    key_order_builds: Cell<u64>,
    /// Scan pages listed here for callers (`CoreStats::pages_listed`).
    pages_listed: Cell<u64>,
    /// The copy of `key_order` published for callers, while they want one.
    order_copy: RefCell<shared_order::Upkeep>,
    config: Config,
    split_done: Event,
    splits: Cell<u64>,
    cache: Arc<Cache>,
    /// Bumped by every write on this core (guards cache fills).
    writes: Cell<u64>,
    commit: Committer,
    log: CoreLog,
    flush_scheduled: Cell<bool>,
    /// A `Buffered` round started because the journal grew large is running.
    early_round: Cell<bool>,
    in_flight: Cell<usize>,
    /// Tasks the database's user runs here (`Db::spawn_on_core`) that have not ended:
    /// while any lives, an idle core does not spin, which would hold the executor
    /// from them (a task here that sends this core a request waited out the spin).
    guests: Cell<usize>,
    idle: Event,
    /// Notified on every write, so an idle compaction task can sleep until one.
    wrote: Event,
    /// Notified by a write that sets an expiry (and at shutdown): the expiry sweeper
    /// sleeps until the earliest expiry or this.
    expiring: Event,
    /// Keys the expiry sweep (or `Db::purge_expired`) deleted since open.
    expired_purged: Cell<u64>,
    /// Held by a compaction step; shutdown takes it to wait for the step in progress.
    compaction_gate: Arc<async_lock::Mutex<()>>,
    /// The gate, while a checkpoint holds this core (see [`hold`]).
    held: RefCell<Option<async_lock::MutexGuardArc<()>>>,
    /// Holds in force (checkpoints, open snapshots, `for_each`).
    holds: Cell<usize>,
    /// Notified when the first hold has the gate (or at shutdown).
    gate_kept: Event,
    /// Open snapshots: each one's cut on every store of this core.
    snapshots: RefCell<snapshot::Snapshots>,
    /// Snapshots released early here (past the memory budget), until dropped.
    expired_snapshots: RefCell<std::collections::HashSet<u64>>,
    /// While a checkpoint lists the files, writes wait for `resumed`.
    paused: Cell<bool>,
    resumed: Event,
    compaction: Cell<CompactionStats>,
    /// Extents whose compaction met corruption: not chosen again while open.
    damaged_extents: RefCell<HashSet<(SubstoreId, u64)>>,
    /// Background steps (compaction, moves, splits) that failed, and the last cause.
    background_errors: Cell<u64>,
    background_error: RefCell<Option<String>>,
    stopping: Cell<bool>,
    /// The database directory.
    data_dir: std::path::PathBuf,
    /// Every core's mailbox.
    peers: Arc<Peers>,
    batches: batch::Batches,
    batch_log: batch_log::BatchLog,
}

/// Where each core reports, with its index, whether it opened its leaves (or why its
/// thread ended before it could).
pub(crate) type Ready = std::sync::mpsc::Sender<(usize, Result<()>)>;

/// Runs core `index` until it is told to shut down. Reports the outcome of opening its
/// leaves on `ready` before it serves anything.
pub(crate) async fn run(
    index: usize,
    owned: Owned,
    options: Options,
    health: Arc<Health>,
    shared: Arc<CoreShared>,
    ready: Ready,
) {
    let core = match Core::open(index, owned, options, health).await {
        Ok(core) => Rc::new(core),
        Err(e) => {
            shared.stop();
            let _ = ready.send((index, Err(e)));
            return;
        }
    };
    let _ = ready.send((index, Ok(())));
    drop(ready);
    // Kept, not detached: glommio does not drop the futures of tasks still pending when
    // the executor ends, so this task (which holds the core) is cancelled at shutdown.
    let shares = glommio::Shares::Static(core.options.compaction_shares);
    let queue = glommio::executor().create_task_queue(
        shares,
        glommio::Latency::NotImportant,
        "ringkv-compaction",
    );
    let mut background = Vec::new();
    let writable = !core.options.read_only;
    if core.options.compaction && writable {
        background
            .extend(glommio::spawn_local_into(core.clone().background_compaction(), queue).ok());
    }
    if writable {
        background.extend(glommio::spawn_local_into(core.clone().expiry_sweeper(), queue).ok());
    }
    let shutdown = core.serve(&shared).await;
    core.release_all(); // a checkpoint that never finished holds nothing back
    while core.in_flight.get() > 0 {
        let listener = core.idle.listen();
        if core.in_flight.get() > 0 {
            listener.await;
        }
    }
    core.release_all(); // a hold taken by a request that ended meanwhile
    core.stopping.set(true);
    core.wrote.notify(usize::MAX);
    core.expiring.notify(usize::MAX);
    let step = core.compaction_gate.lock().await; // the step in progress ends first
    for task in background {
        // No step is running (the gate is ours): each task waits or sleeps, and drops
        // its hold on the core here.
        task.cancel().await;
    }
    let result = core.close().await;
    drop(step);
    // Requests still queued are dropped: their callers see the reply channel close
    // and get Error::Closed.
    shared.stop();
    shutdown.send(result);
}

impl Core {
    /// Serves the requests queued for this core until one says shut down (returned).
    /// A request that can be answered without waiting (a cached read) is answered in
    /// the loop; any other gets a task of its own.
    ///
    /// Idle with nothing in flight and no user task here, a core that may spin polls
    /// its queue for a while before it waits (the executor's wake-up costs more than
    /// the request), and lets the executor poll for I/O and timers at least every
    /// `REACTOR_POLL_INTERVAL` while requests keep coming that way.
    async fn serve(self: &Rc<Self>, shared: &CoreShared) -> ReplyTo<()> {
        let mut polled = Instant::now();
        loop {
            let mut drained = 0;
            while let Some(request) = shared.pop() {
                match request {
                    Request::Shutdown(reply) => return reply,
                    Request::Call {
                        hash,
                        op: Op::PutQueued(key, value, receipt),
                    } => self.put_queued(hash, key, value, receipt).await,
                    Request::Call { hash, op } => self.take(hash, op),
                }
                drained += 1;
                if drained % BATCH_MAX == 0 {
                    futures_lite::future::yield_now().await;
                }
            }
            self.publish_if_behind();
            let alone = self.in_flight.get() == 0 && self.guests.get() == 0;
            if alone && shared.spin_for_arrival() {
                if polled.elapsed() >= REACTOR_POLL_INTERVAL {
                    // A timer, unlike a yield, makes the executor poll its rings.
                    glommio::timer::sleep(Duration::from_micros(1)).await;
                    polled = Instant::now();
                }
                continue;
            }
            // The wake-up that a push sends may be lost in glommio's sleep path (the
            // model test hung about once in ten runs with every core parked and a
            // Shutdown request queued): look at the queue at least every
            // ARRIVAL_WAIT_MAX even without one. An idle core wakes once a second.
            let timer = async { glommio::timer::sleep(ARRIVAL_WAIT_MAX).await };
            futures_lite::future::or(shared.arrivals(), timer).await;
            polled = Instant::now();
        }
    }

    /// Takes a request from the queue: answers it at once if that needs no I/O and no
    /// waiting (a read the cache holds, a scan's page of keys whose values the caller
    /// reads), else hands it to a task of its own, counted in flight.
    fn take(self: &Rc<Self>, hash: u64, op: Op) {
        let op = match op {
            Op::Get(key, reply) => match self.cache.peek(&key) {
                Some(value) => return reply.send(Ok(Some(value))),
                None => Op::Get(key, reply),
            },
            Op::Scan(request, reply) if request.values != Values::Here => {
                reply.send(self.scan_page_now(&request));
                if request.values == Values::Caller {
                    self.publish_order(); // so that the caller's next page needs no trip
                }
                return;
            }
            op => op,
        };
        let core = self.clone();
        self.spawn_counted(async move { core.handle(hash, op).await });
    }

    /// Runs `task` in a task of its own, counted in flight (shutdown waits for it).
    fn spawn_counted(self: &Rc<Self>, task: impl Future<Output = ()> + 'static) {
        let core = self.clone();
        core.in_flight.set(core.in_flight.get() + 1);
        glommio::spawn_local(async move {
            task.await;
            core.count_out();
        })
        .detach();
    }

    /// The directories holding the database's substores (the home first).
    pub(in crate::core) fn data_dirs(&self) -> crate::data_dirs::DataDirs {
        crate::data_dirs::DataDirs::new(&self.data_dir, &self.options.data_dirs)
    }

    /// A call in flight ended.
    fn count_out(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
        if self.in_flight.get() == 0 {
            self.idle.notify(usize::MAX);
        }
    }

    async fn open(
        index: usize,
        owned: Owned,
        options: Options,
        health: Arc<Health>,
    ) -> Result<Self> {
        let Owned {
            leaves,
            ancestors,
            mut replay,
            log_epoch,
            log_ready,
            dir: data_dir,
            cache,
            peers,
        } = owned;
        let config = Config {
            extent_size_bytes: options.extent_size_bytes,
            recovery: options.recovery,
            clock: options.clock.clone(),
            meta_in_index_max_bytes: options.head_meta_bytes,
            read_only: options.read_only,
            ..Config::default()
        };
        let mut map = BTreeMap::new();
        for leaf in leaves {
            let state = LeafState::open(&options.storage, leaf, config.clone()).await?;
            map.insert(state.id.hash_prefix, Rc::new(state));
        }
        let mut behind = Vec::with_capacity(ancestors.len());
        for ancestor in ancestors {
            let ancestor =
                Rc::new(LeafState::open(&options.storage, ancestor, config.clone()).await?);
            for leaf in map
                .values()
                .filter(|l| ancestor.id.covers(l.id.hash_prefix))
            {
                *leaf.ancestor.borrow_mut() = Some(ancestor.clone());
            }
            behind.push(ancestor);
        }
        let log = CoreLog::new(options.commit_log_bytes > 0, log_epoch, log_ready);
        let core = Self {
            index,
            cache,
            options,
            health,
            leaves: RefCell::new(map),
            ancestors: RefCell::new(behind),
            key_order: RefCell::new(None),
            key_order_builds: Cell::new(0),
            pages_listed: Cell::new(0),
            order_copy: RefCell::default(),
            config,
            split_done: Event::new(),
            splits: Cell::new(0),
            writes: Cell::new(0),
            commit: Committer::default(),
            log,
            flush_scheduled: Cell::new(false),
            early_round: Cell::new(false),
            in_flight: Cell::new(0),
            guests: Cell::new(0),
            idle: Event::new(),
            wrote: Event::new(),
            expiring: Event::new(),
            expired_purged: Cell::new(0),
            compaction_gate: Arc::new(async_lock::Mutex::new(())),
            held: RefCell::new(None),
            holds: Cell::new(0),
            gate_kept: Event::new(),
            snapshots: RefCell::default(),
            expired_snapshots: RefCell::default(),
            paused: Cell::new(false),
            resumed: Event::new(),
            compaction: Cell::new(CompactionStats::default()),
            damaged_extents: RefCell::default(),
            background_errors: Cell::new(0),
            background_error: RefCell::new(None),
            stopping: Cell::new(false),
            data_dir,
            peers,
            batches: batch::Batches::default(),
            batch_log: batch_log::BatchLog::default(),
        };
        for leaf in core.store_list() {
            core.replay(&leaf, &mut replay).await?;
        }
        assert!(
            replay.is_empty(),
            "open routes each core only its own records"
        );
        Ok(core)
    }

    fn leaf(&self, hash: u64) -> Rc<LeafState> {
        let leaves = self.leaves.borrow();
        let (_, leaf) = leaves
            .range(..=hash)
            .next_back()
            .expect("routing sends a core only hashes of its leaves");
        assert!(
            leaf.id.covers(hash),
            "hash {hash:#x} routed to the wrong core"
        );
        leaf.clone()
    }

    /// The leaves now (a split may change them while the caller awaits).
    fn leaf_list(&self) -> Vec<Rc<LeafState>> {
        self.leaves.borrow().values().cloned().collect()
    }

    /// Keeps the key summaries this core's leaves hold for their unsealed extents
    /// within `Options::summary_memory_bytes`: the largest end their extents early,
    /// sealed (and their summaries freed) by the round that follows.
    fn bound_summaries(&self) {
        let leaves = self.leaves.borrow();
        let total: usize = leaves
            .values()
            .map(|l| l.store.active_summary_bytes())
            .sum();
        if total <= self.options.summary_memory_bytes {
            return;
        }
        let leaves: Vec<&Rc<LeafState>> = leaves.values().filter(|l| !l.frozen.get()).collect();
        let sizes: Vec<usize> = leaves
            .iter()
            .map(|l| l.store.active_summary_bytes())
            .collect();
        for i in leaf::over_summary_budget(&sizes, self.options.summary_memory_bytes) {
            if leaves[i].store.retire_active() {
                leaves[i].dirty.set(true);
            }
        }
    }

    /// The leaves and the ancestors: every substore that takes writes.
    fn store_list(&self) -> Vec<Rc<LeafState>> {
        let mut all = self.leaf_list();
        all.extend(self.ancestors.borrow().iter().cloned());
        all
    }

    /// Does `op` and sends its answer.
    async fn handle(self: &Rc<Self>, hash: u64, op: Op) {
        match op {
            Op::Get(key, reply) => reply.send(self.get(hash, &key).await),
            Op::GetMany(keys, reply) => reply.send(self.get_many(&keys).await),
            Op::PutMany(entries, reply) => reply.send(self.put_many(entries).await),
            Op::Put(key, value, reply) => {
                let put = Some((Bytes::from(value), &NO_EXTRAS));
                reply.send(self.write(hash, &key, put).await);
            }
            Op::PutWith(key, value, extras, durability, reply) => {
                let put = Some((Bytes::from(value), &*extras));
                reply.send(self.write_as(hash, &key, put, durability).await);
            }
            Op::Expire(key, change, reply) => reply.send(self.expire(hash, &key, change).await),
            Op::Head(key, reply) => reply.send(self.head(hash, &key).await),
            Op::PurgeExpired(reply) => reply.send(self.purge_expired().await),
            Op::PutQueued(key, value, receipt) => {
                self.put_queued(hash, key, value, receipt).await;
            }
            Op::Delete(key, durability, reply) => {
                reply.send(self.write_as(hash, &key, None, durability).await);
            }
            Op::Exists(key, reply) => reply.send(self.exists(hash, &key).await),
            Op::Flush(reply) => reply.send(self.flush().await),
            Op::Stats(reply) => reply.send(self.commit_appended().await.map(|()| self.stats())),
            Op::ForEach(sender, reply) => {
                let result = match self.commit_appended().await {
                    Ok(()) => self.for_each(sender).await,
                    Err(e) => Err(e),
                };
                reply.send(result);
            }
            Op::Compact(reply) => reply.send(self.compact_all().await),
            Op::Update(key, f, durability, reply) => {
                reply.send(self.update(hash, &key, f, durability).await);
            }
            Op::Spawn(f, reply) => {
                (f.0)(Here(self.clone()));
                reply.send(Ok(()));
            }
            Op::Batch(parts, durability, ticket, reply) => {
                self.coordinate(parts, durability, reply).await;
                drop(ticket);
            }
            Op::BatchLock(keys, reads, reply) => reply.send(self.lock_keys(keys, reads).await),
            Op::GetVersioned(key, reply) => reply.send(self.get_versioned(hash, &key).await),
            Op::BatchApply(ops, reply) => reply.send(self.apply_part(ops).await),
            Op::BatchUnlock(keys, reply) => {
                self.unlock_keys(keys).await;
                reply.send(Ok(()));
            }
            Op::Scan(request, reply) => reply.send(self.scan_page(&request).await),
            op @ (Op::Hold(_) | Op::Pause(..) | Op::Release(_) | Op::Seal(_)) => {
                self.checkpoint_step(op).await
            }
            Op::SnapshotGet(id, key, reply) => {
                reply.send(self.snapshot_get(id, hash, &key).await);
            }
            Op::Unpin(id, reply) => {
                self.unpin(id);
                reply.send(Ok(()));
            }
        }
    }

    async fn exists(&self, hash: u64, key: &[u8]) -> Result<bool> {
        self.batches.until_unlocked(key).await;
        self.wait_durable(hash, key).await?;
        Ok(self.leaf(hash).exists(key))
    }

    async fn get(&self, hash: u64, key: &[u8]) -> Result<Option<Bytes>> {
        // A cached value is durable: every write of a key removes it from the cache.
        // Callers looked (and counted) before they asked: a second look is a peek.
        if let Some(value) = self.cache.peek(key) {
            return Ok(Some(value));
        }
        Ok(self.read(hash, key).await?.map(|record| record.value))
    }

    /// Reads the key's live record from its leaf, once readable (durable, in `Sync`
    /// mode), and caches its value unless a write on this core raced with the read.
    async fn read(&self, hash: u64, key: &[u8]) -> Result<Option<StoredRecord>> {
        self.batches.until_unlocked(key).await;
        self.wait_durable(hash, key).await?;
        let writes_before = self.writes.get();
        let record = self.leaf(hash).get(key).await?;
        if let Some(record) = &record
            && self.writes.get() == writes_before
        {
            (self.cache).insert(key, &record.value, record.expiry_unix_ms);
        }
        Ok(record)
    }

    /// A put (`Some` value and extras) or a delete (`None`), acknowledged per the
    /// durability mode.
    async fn write(
        self: &Rc<Self>,
        hash: u64,
        key: &[u8],
        put: Option<(Bytes, &Extras)>,
    ) -> Result<()> {
        self.write_as(hash, key, put, self.options.durability).await
    }

    /// [`Core::write`], acknowledged as `durability` says rather than as the
    /// database's mode does.
    async fn write_as(
        self: &Rc<Self>,
        hash: u64,
        key: &[u8],
        put: Option<(Bytes, &Extras)>,
        durability: Durability,
    ) -> Result<()> {
        let (leaf, seq) = (self.append(hash, key, put.as_ref().map(|(v, e)| (v, *e)))).await?;
        if put
            .as_ref()
            .is_some_and(|(_, e)| e.expiry_unix_ms.is_some())
        {
            self.expiring.notify(1);
        }
        self.settle_as(durability).await?;
        if let Some((value, extras)) = put {
            self.admit(hash, &leaf, key, seq, value, extras.expiry_unix_ms);
        }
        Ok(())
    }

    /// Puts of several keys of this core: appended one after another, then one commit
    /// (`Sync`) or one scheduled flush (`Buffered`) for all.
    async fn put_many(self: &Rc<Self>, entries: Vec<(u64, Vec<u8>, Vec<u8>)>) -> Result<()> {
        let mut appended = Vec::with_capacity(entries.len());
        for (hash, key, value) in entries {
            let value = Bytes::from(value);
            let (leaf, seq) = self.append(hash, &key, Some((&value, &NO_EXTRAS))).await?;
            appended.push((hash, key, value, leaf, seq));
        }
        self.settle().await?;
        for (hash, key, value, leaf, seq) in appended {
            self.admit(hash, &leaf, &key, seq, value, None);
        }
        Ok(())
    }

    /// Gets of several keys of this core, all in flight together.
    async fn get_many(&self, keys: &[(u64, Vec<u8>)]) -> Result<Vec<Option<Bytes>>> {
        let reads = keys.iter().map(|(hash, key)| self.get(*hash, key));
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    /// The first half of a put (`Some` value and extras) or delete (`None`): appended
    /// to the key's leaf (and its ancestor for a delete), in memory, once no batch
    /// holds the key. Returns the leaf and the sequence of the record appended to it.
    async fn append(
        &self,
        hash: u64,
        key: &[u8],
        put: Option<(&Bytes, &Extras)>,
    ) -> Result<(Rc<LeafState>, u64)> {
        self.append_as(hash, key, put, Locks::Wait).await
    }

    /// [`Core::append`], waiting for a batch's lock of the key as `locks` says.
    async fn append_as(
        &self,
        hash: u64,
        key: &[u8],
        put: Option<(&Bytes, &Extras)>,
        locks: Locks,
    ) -> Result<(Rc<LeafState>, u64)> {
        self.append_with(hash, key, locks, async |leaf| {
            match (put, leaf.ancestor()) {
                (Some((value, extras)), _) => {
                    leaf.store.put_with(key, value, extras.options()).await
                }
                (None, None) => leaf.store.delete(key).await.map(drop),
                (None, Some(ancestor)) => leaf.delete_behind(&ancestor, key).await,
            }
        })
        .await
    }

    /// The part of a queued put's [`Core::append`] that needs no I/O (it waits only for
    /// a split that froze the key's leaf; the caller checked the key's lock); the
    /// store's buffer may be left full.
    async fn append_in_memory(
        &self,
        hash: u64,
        key: &[u8],
        value: &Bytes,
    ) -> Result<(Rc<LeafState>, u64)> {
        self.append_with(hash, key, Locks::Held, async |leaf| {
            leaf.store.put_in_memory(key, value, Default::default())
        })
        .await
    }

    /// A write of `key`: `append` appends it to the leaf that takes writes of `hash`
    /// (in its first poll, so that its record gets the sequence noted before).
    async fn append_with(
        &self,
        hash: u64,
        key: &[u8],
        locks: Locks,
        append: impl AsyncFnOnce(&Rc<LeafState>) -> ringkv_engine::Result<()>,
    ) -> Result<(Rc<LeafState>, u64)> {
        self.health.check_writable()?;
        let leaf = self.writable_leaf(hash, key, locks).await;
        let seq = self.note_write(&leaf, key);
        let result = append(&leaf).await;
        leaf.dirty.set(true);
        match result {
            Ok(()) => {
                self.bound_snapshots();
                Ok((leaf, seq))
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// The leaf that takes writes of `hash`, once no checkpoint has writes paused, no
    /// split has the leaf frozen and (unless `locks` says the caller may write it) no
    /// batch holds `key`.
    async fn writable_leaf(&self, hash: u64, key: &[u8], locks: Locks) -> Rc<LeafState> {
        loop {
            if self.paused.get() {
                self.until_resumed().await;
                continue;
            }
            if locks == Locks::Wait && self.batches.holds(key) {
                self.batches.until_unlocked(key).await;
                continue;
            }
            let leaf = self.leaf(hash);
            if !leaf.frozen.get() {
                return leaf;
            }
            self.split_settled(hash).await;
        }
    }

    /// Resolves once no split has the leaf of `hash` frozen (a split is copying its
    /// last changes; then the key has a new leaf), or at once if none does.
    async fn split_settled(&self, hash: u64) {
        let listener = self.split_done.listen();
        if self.leaf(hash).frozen.get() {
            listener.await;
        }
    }

    /// Records a write of `key` about to be appended to `leaf` (for a split in
    /// progress, for the cache and its fills, for an idle compaction task); the
    /// sequence the record will get.
    fn note_write(&self, leaf: &LeafState, key: &[u8]) -> u64 {
        if let Some(touched) = leaf.touched.borrow_mut().as_mut() {
            touched.insert(key.to_vec());
        }
        self.writes.set(self.writes.get() + 1);
        self.wrote.notify(1);
        self.cache.remove(key);
        // The append happens before the next await, so its record gets this sequence.
        leaf.store.next_seq()
    }

    /// Caches a value just written (as the page cache keeps what the peers write), if
    /// it is still the key's newest, in the leaf that now owns the key, and readable
    /// (durable, in `Sync` mode: a cached value is answered without that check).
    fn admit(
        &self,
        hash: u64,
        leaf: &Rc<LeafState>,
        key: &[u8],
        seq: u64,
        value: Bytes,
        expiry_unix_ms: Option<u64>,
    ) {
        let newest = leaf.store.seq_of(key) == Some(seq) && Rc::ptr_eq(&self.leaf(hash), leaf);
        let readable = match self.options.durability {
            Durability::Buffered => true,
            _ => leaf.store.is_durable(key),
        };
        if newest && readable {
            self.cache.insert(key, &value, expiry_unix_ms);
        }
    }

    /// Reads `key`, lets `f` decide, and writes the outcome (a new value keeps the key's
    /// metadata and expiry), with no other write of the key in between (see
    /// [`Core::read_unraced`]). Answers the value `f` saw.
    async fn update(
        self: &Rc<Self>,
        hash: u64,
        key: &[u8],
        f: UpdateFn,
        durability: Durability,
    ) -> Result<Option<Bytes>> {
        let old = self.read_unraced(hash, key).await?;
        let value = old.as_ref().map(|r| r.value.clone());
        if let Some(outcome) = (f.0)(value.as_deref()).outcome(old.as_ref()) {
            self.write_outcome_as(hash, key, outcome, durability)
                .await?;
        }
        Ok(value)
    }

    /// Writes what a change of `key` came to, acknowledged as the database's mode says.
    async fn write_outcome(self: &Rc<Self>, hash: u64, key: &[u8], outcome: Outcome) -> Result<()> {
        let durability = self.options.durability;
        self.write_outcome_as(hash, key, outcome, durability).await
    }

    /// Writes what a change of `key` came to, acknowledged as `durability` says.
    async fn write_outcome_as(
        self: &Rc<Self>,
        hash: u64,
        key: &[u8],
        outcome: Outcome,
        durability: Durability,
    ) -> Result<()> {
        let put = match &outcome {
            Outcome::Write(value, extras) => Some((value.clone(), extras)),
            Outcome::Delete => None,
        };
        self.write_as(hash, key, put, durability).await
    }

    /// The key's live record, read so that a write appended in the same poll as this
    /// returns comes right after it: the read is retried until no write on this core
    /// raced with it, the leaf is not frozen by a split and no batch holds the key
    /// (appending never waits). Its
    /// value comes from the cache when the record has no metadata.
    async fn read_unraced(&self, hash: u64, key: &[u8]) -> Result<Option<StoredRecord>> {
        self.health.check_writable()?;
        loop {
            if self.leaf(hash).frozen.get() {
                self.split_settled(hash).await;
                continue;
            }
            if self.batches.holds(key) {
                self.batches.until_unlocked(key).await;
                continue;
            }
            let writes_before = self.writes.get();
            let old = match self.cached_record(hash, key) {
                Some(record) => Some(record),
                None => self.read(hash, key).await?,
            };
            if self.writes.get() == writes_before && !self.leaf(hash).frozen.get() {
                return Ok(old);
            }
        }
    }

    /// The key's record from the cache and the index, if the cache holds its value and
    /// it has no metadata (which only the record on disk holds).
    fn cached_record(&self, hash: u64, key: &[u8]) -> Option<StoredRecord> {
        let value = self.cache.peek(key)?;
        let head = self.leaf(hash).head(key).filter(|h| h.meta_len == 0)?;
        Some(StoredRecord {
            value,
            meta: Bytes::new(),
            expiry_unix_ms: head.expiry_unix_ms,
        })
    }

    /// Records a write failure (if it is one) and converts the error.
    ///
    /// Running out of file descriptors is a resource error, not a failed write: that
    /// operation fails and the database stays writable (nothing reached the disk).
    fn failed(&self, e: ringkv_engine::Error) -> Error {
        let final_failure = matches!(
            e,
            ringkv_engine::Error::Io { .. } | ringkv_engine::Error::ReadOnly { .. }
        );
        if final_failure && !e.is_out_of_descriptors() {
            self.health.fail(e.to_string());
        }
        e.into()
    }

    async fn close(&self) -> Result<()> {
        if self.health.check_writable().is_ok() {
            for leaf in self.store_list() {
                leaf.dirty.set(true);
            }
            self.commit().await?;
            self.close_log().await?;
        }
        Ok(())
    }
}
