//! The handle services hold: `Db`. Cheap to clone, callable from any thread and from any
//! executor. Each call hashes its key, picks the core from the immutable routing table,
//! queues the request and waits for the reply (the async twins await it instead).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use ringkv_engine::hash::routing_hash;
use ringkv_engine::{Clock, CompactionStats, check_limits};

use crate::batch::{self, BatchOp, WriteBatch};
use crate::cache::Cache;
use crate::core::{
    self, Answer, CoreShared, CoreStats, Health, Here, Op, Peers, ReplySlot, ReplyTo, Request,
    SpawnFn, Spinners, Update, UpdateFn, Waits,
};
use crate::error::{Error, Result};
use crate::layout::{self, DirLock, ROUTE_BITS};
use crate::logs;
use crate::options::{Durability, Options};

mod checkpoint;
mod cut;
mod expiry;
mod scan;
mod snapshot;
mod txn;
pub use checkpoint::CheckpointStats;
pub use expiry::{PutOptions, Ttl};
pub use scan::{Keys, Range};
pub use snapshot::Snapshot;
pub use txn::Transaction;

/// Figures of a whole database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Bytes of live records.
    pub live_bytes: u64,
    /// Bytes the extent files take.
    pub disk_bytes: u64,
    /// Bytes of the commit logs in use (records also in the extents, not yet synced
    /// there).
    pub log_bytes: u64,
    /// Leaves of the hash trie (substores).
    pub substores: u64,
    /// Per-core figures.
    pub cores: Vec<CoreStats>,
}

/// A ringkv database. See the crate documentation.
#[derive(Clone, Debug)]
pub struct Db {
    inner: Arc<Inner>,
}

type CoreThread = std::thread::JoinHandle<()>;

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    cores: Arc<Peers>,
    /// Each core's read cache (the core fills it; callers read it).
    caches: Vec<Arc<Cache>>,
    route: Box<[u16]>,
    health: Arc<Health>,
    closed: AtomicBool,
    /// The database's mode. Blocking `Buffered` puts are acknowledged once queued (see
    /// `core::receipt`).
    durability: Durability,
    /// Queued puts between their look at `closed` and their push: close waits for
    /// them, so that each is queued before the core's shutdown request.
    queueing: AtomicUsize,
    /// Each core's batch log size (`Options::batch_log_bytes`).
    batch_log_bytes: u64,
    /// Write batches called and not yet done with: close waits for them, so that no
    /// core a batch involves stops under it.
    batches: Arc<AtomicUsize>,
    /// Shared by every batch until its coordinator is done with it; a checkpoint takes
    /// it whole, so that it sees no batch half applied.
    batch_gate: Arc<async_lock::RwLock<()>>,
    /// The id the next snapshot takes.
    next_snapshot: std::sync::atomic::AtomicU64,
    /// Which blocking callers may spin for their answers, and how long.
    spinners: Spinners,
    threads: Mutex<Vec<CoreThread>>,
    /// The home's lock and those of the other data directories.
    lock: Mutex<Option<(DirLock, Vec<DirLock>)>>,
    /// Judges expiry times (the cores and caches hold clones).
    clock: Clock,
    /// The file system the database is on.
    storage: crate::storage::Storage,
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What every core thread is started with.
struct Start {
    /// The CPUs this process may run on, in order (cores are pinned to them).
    cpus: Vec<usize>,
    /// How long an executor spins for work before it parks, when it may.
    spin: Option<Duration>,
    options: Options,
    health: Arc<Health>,
    ready: core::Ready,
    path: PathBuf,
}

impl Start {
    /// Starts one thread per core, pinned when there are enough CPUs. Stops at the
    /// first thread that cannot be created: the cores after it are marked dead, so
    /// that close does not wait for them. Returns the threads started and that error.
    fn all(
        self,
        cores: impl Iterator<Item = (Arc<CoreShared>, core::Owned)>,
    ) -> (Vec<CoreThread>, Option<Error>) {
        let cpus = &self.cpus;
        let cores: Vec<_> = cores.collect();
        let pin = cpus.len() >= cores.len();
        let mut threads = Vec::with_capacity(cores.len());
        let mut cores = cores.into_iter().enumerate();
        while let Some((index, (shared, owned))) = cores.next() {
            let placement = match pin {
                true => Placement::Fixed(cpus[index]),
                false => Placement::Unbound,
            };
            match self.one(index, placement, shared.clone(), owned) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shared.die(format!("not started: {e}"));
                    for (_, (later, _)) in cores {
                        later.die(format!("not started: {e}"));
                    }
                    return (threads, Some(e));
                }
            }
        }
        (threads, None)
    }

    /// The thread of core `index`: its executor runs the core until shutdown. A panic
    /// anywhere on the executor (a request, the background task, a task spawned with
    /// `Db::spawn_on_core`) or an executor that cannot start marks the core dead and
    /// is reported on `ready`; it goes no further than this thread.
    fn one(
        &self,
        index: usize,
        placement: Placement,
        shared: Arc<CoreShared>,
        owned: core::Owned,
    ) -> Result<CoreThread> {
        let mut builder =
            LocalExecutorBuilder::new(placement).io_memory(self.options.io_memory_bytes);
        if let Some(spin) = self.spin {
            builder = builder.spin_before_park(spin);
        }
        let (options, health, ready) = (
            self.options.clone(),
            self.health.clone(),
            self.ready.clone(),
        );
        let thread = move || {
            let fail = |message: String| {
                shared.die(message);
                let _ = ready.send((index, Err(shared.gone())));
            };
            let executor = match make_executor(builder) {
                Ok(executor) => executor,
                Err(message) => return fail(message),
            };
            let main = core::run(index, owned, options, health, shared.clone(), ready.clone());
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| executor.run(main)));
            if let Err(panic) = run {
                fail(panic_message(&*panic));
            }
            // Dropped only now, once every caller has been released.
            drop(executor);
        };
        std::thread::Builder::new()
            .name(format!("ringkv-core-{index}"))
            .spawn(thread)
            .map_err(|source| Error::Io {
                op: "starting a core thread for",
                path: self.path.clone(),
                source,
            })
    }
}

/// A glommio executor on this thread, or why there is none (glommio returns some
/// failures and panics on others, e.g. when io_uring_setup is refused).
fn make_executor(builder: LocalExecutorBuilder) -> std::result::Result<LocalExecutor, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| builder.make())) {
        Ok(Ok(executor)) => Ok(executor),
        Ok(Err(e)) => Err(format!("its executor could not start: {e}")),
        Err(panic) => Err(format!(
            "its executor could not start: {}",
            panic_message(&*panic)
        )),
    }
}

/// The message a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(message), _) => (*message).to_owned(),
        (_, Some(message)) => message.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// Waits until each of the first `started` cores has reported whether it opened its
/// leaves; the first failure, if any. Each core thread reports at least once, even
/// when it panics or its executor never starts.
fn await_ready(
    ready: &std::sync::mpsc::Receiver<(usize, Result<()>)>,
    started: usize,
) -> Option<Error> {
    let mut reported = vec![false; started];
    let mut first_error = None;
    while reported.contains(&false) {
        match ready.recv() {
            Ok((index, outcome)) => {
                reported[index] = true;
                if let Err(e) = outcome {
                    first_error.get_or_insert(e);
                }
            }
            // Cannot happen while a core has not reported: its thread holds a sender.
            Err(_) => return first_error.or(Some(Error::Closed)),
        }
    }
    first_error
}

impl Db {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>, mut options: Options) -> Result<Db> {
        options.validate()?;
        crate::host::check(&options)?;
        let path = path.as_ref().to_path_buf();
        let read_only = options.read_only;
        let crate::opening::Found {
            lock,
            dirs,
            dir_locks,
            leaves,
            ancestors,
            logged,
            pending,
        } = crate::opening::find(&options.storage, &path, &options.data_dirs, read_only)?;
        options.data_dirs = dirs.others().to_vec();
        let cores = options.resolved_cores();
        let cpus = allowed_cpus();
        let spare_cpus = cpus.len().saturating_sub(cores);
        let spin = (spare_cpus > 0).then_some(SPIN_BEFORE_PARK);
        let assignment = layout::assign(&leaves, &ancestors, cores, &dirs);
        let shared: Vec<Arc<CoreShared>> = (0..cores)
            .map(|index| Arc::new(CoreShared::new(index, options.queue_depth, spin)))
            .collect();
        let peers = Arc::new(Peers::new(shared));
        let caches: Vec<Arc<Cache>> = (0..cores)
            .map(|_| {
                let budget = options.cache_bytes / cores as u64;
                Arc::new(Cache::new(budget, options.clock.clone()))
            })
            .collect();
        let health = Arc::new(Health::new(read_only));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stores: Vec<Vec<&layout::Leaf>> = (assignment.per_core.iter())
            .zip(&assignment.ancestors)
            .map(|(leaves, ancestors)| leaves.iter().chain(ancestors).collect())
            .collect();
        let replay = logs::route(&path, logged.records, &stores)?;
        let log_ready = Arc::new(AtomicBool::new(false));
        let owned = (assignment.per_core.into_iter())
            .zip(assignment.ancestors)
            .zip(replay)
            .zip(caches.iter().cloned())
            .map(|(((leaves, ancestors), replay), cache)| core::Owned {
                leaves,
                ancestors,
                replay,
                log_epoch: logged.next_epoch,
                log_ready: log_ready.clone(),
                dir: path.clone(),
                cache,
                peers: peers.clone(),
            });
        let storage = options.storage.clone();
        let durability = options.durability;
        let batch_log_bytes = options.batch_log_bytes;
        let clock = options.clock.clone();
        let start = Start {
            cpus,
            spin,
            options,
            health: health.clone(),
            ready: ready_tx,
            path: path.clone(),
        };
        let (threads, spawn_error) = start.all(peers.iter().cloned().zip(owned));
        let started = threads.len();
        let inner = Inner {
            path,
            cores: peers,
            caches,
            route: assignment.route,
            health,
            closed: AtomicBool::new(false),
            durability,
            queueing: AtomicUsize::new(0),
            batches: Arc::new(AtomicUsize::new(0)),
            batch_gate: Arc::new(async_lock::RwLock::new(())),
            next_snapshot: std::sync::atomic::AtomicU64::new(1),
            batch_log_bytes,
            spinners: Spinners::new(spare_cpus, SPIN_BEFORE_PARK, WRITE_SPIN_BEFORE_PARK),
            threads: Mutex::new(threads),
            lock: Mutex::new(Some((lock, dir_locks))),
            clock,
            storage: storage.clone(),
        };
        let db = Db {
            inner: Arc::new(inner),
        };
        // Every core replayed and synced its records: the logs go (each core starts its
        // own at its first commit), so that none is ever replayed twice. (Read-only, the
        // logs were found empty, and are left as they are.)
        let failed = spawn_error.or(await_ready(&ready_rx, started));
        let failed = failed.or_else(|| match read_only {
            true => None,
            false => logs::remove_replayed(&storage, &db.inner.path, &logged.files).err(),
        });
        let failed = failed.or_else(|| {
            log_ready.store(true, Ordering::Release);
            match read_only {
                true => None,
                false => db.inner.finish_batches(&storage, pending).err(),
            }
        });
        match failed {
            None => Ok(db),
            Some(e) => {
                let _ = db.inner.close();
                Err(e)
            }
        }
    }

    /// The directory this database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Number of cores (executor threads) serving this database.
    pub fn cores(&self) -> usize {
        self.inner.cores.len()
    }

    /// Stores `value` under `key`. With `Durability::Sync`, returns once durable. With
    /// `Durability::Buffered`, returns once the put is queued for its core: the core
    /// appends it before anything this thread asks it later, so this thread reads its
    /// own writes; other threads see it once the core has taken it (microseconds). A
    /// queued put that then fails turns the database read-only, as a failed flush does.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (hash, op) = self.inner.put_op(key, value)?;
        match self.inner.queues_puts() {
            true => self.inner.queue_put(hash, key, value),
            false => self.inner.call_blocking(hash, Waits::Write, op),
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        match self.inner.get_op(key)? {
            Get::Cached(value) => Ok(Some(value)),
            Get::Ask(hash, op) => self.inner.call_blocking(hash, Waits::Read, op),
        }
    }

    /// Deletes a key; a missing key is not an error.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.delete_with(key, self.inner.durability)
    }

    /// [`Db::delete`], acknowledged as `durability` says rather than as the database's
    /// mode does (see [`PutOptions::durability`] for what each means here).
    pub fn delete_with(&self, key: impl AsRef<[u8]>, durability: Durability) -> Result<()> {
        let (hash, op) = self.inner.delete_op(key.as_ref(), durability)?;
        self.inner.call_blocking(hash, Waits::Write, op)
    }

    pub fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (hash, op) = exists_op(key.as_ref())?;
        self.inner.call_blocking(hash, Waits::Read, op)
    }

    /// Reads many keys with one request per core they fall on (all cores, and all reads
    /// of a core, in flight together). Answers in the order of `keys`.
    pub fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        self.inner.block_on(Waits::Read, self.get_many_async(keys))
    }

    /// Stores many entries with one request per core they fall on; each core appends
    /// its share and makes it durable with one commit (`Durability::Sync`). Each entry
    /// is independent: after a crash in the middle, some may be stored and others not
    /// (atomic batches are a separate matter). Returns once all are acknowledged.
    pub fn put_many<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, entries: &[(K, V)]) -> Result<()> {
        self.inner
            .block_on(Waits::Write, self.put_many_async(entries))
    }

    /// Makes everything acknowledged so far durable.
    pub fn flush(&self) -> Result<()> {
        futures_lite::future::block_on(self.flush_async())
    }

    /// Stores `value` under `key`; returns once durable (`Durability::Sync`) or once in
    /// memory (`Durability::Buffered`).
    pub async fn put_async(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (hash, op) = self.inner.put_op(key.as_ref(), value.as_ref())?;
        self.inner.call(hash, op).await
    }

    pub async fn get_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        match self.inner.get_op(key.as_ref())? {
            Get::Cached(value) => Ok(Some(value)),
            Get::Ask(hash, op) => self.inner.call(hash, op).await,
        }
    }

    pub async fn delete_async(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.delete_with_async(key, self.inner.durability).await
    }

    pub async fn delete_with_async(
        &self,
        key: impl AsRef<[u8]>,
        durability: Durability,
    ) -> Result<()> {
        let (hash, op) = self.inner.delete_op(key.as_ref(), durability)?;
        self.inner.call(hash, op).await
    }

    /// Applies `batch` all or nothing: after a crash it is wholly present or wholly
    /// absent, on every core it touches. Acknowledged as the database's mode says: in
    /// `Sync` mode durable when it returns; in `Buffered` mode it returns once queued
    /// for its commit (a few hundred microseconds of the device later it is durable; a
    /// crash before that loses it whole), and [`Db::flush`] makes it durable. A read
    /// of one of its keys that starts after this returns sees the whole batch, and so
    /// does one that has seen any of its writes; a reader may see none of it while it
    /// is in flight. See [`Db::write_async`].
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_with(batch, self.inner.durability)
    }

    /// [`Db::write`], acknowledged as `durability` says rather than as the database's
    /// mode does (RocksDB's `WriteOptions::set_sync` for a `WriteBatch`).
    pub fn write_with(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        self.inner
            .block_on(Waits::Write, self.write_with_async(batch, durability))
    }

    /// [`Db::write`] for async callers. Dropping the future does not stop the batch: it
    /// is applied whole or not at all all the same.
    pub async fn write_async(&self, batch: WriteBatch) -> Result<()> {
        self.write_with_async(batch, self.inner.durability).await
    }

    pub async fn write_with_async(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let ops = batch.into_ops(|options| self.inner.extras_of(options))?;
        self.inner.run_batch(ops, Vec::new(), durability).await
    }

    /// A transaction: reads that see its own writes, then `commit` (all or nothing, as
    /// [`Db::write`]) or `rollback`. See [`Transaction`].
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    pub async fn exists_async(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let (hash, op) = exists_op(key.as_ref())?;
        self.inner.call(hash, op).await
    }

    pub async fn get_many_async<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let keys = keys.iter().map(AsRef::as_ref);
        self.inner.read_many(keys, Look::Counted).await
    }

    pub async fn put_many_async<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V)],
    ) -> Result<()> {
        let mut split = PerCore::new(self.inner.cores.len());
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            let hash = self.inner.write_key(key, value)?;
            split.add(
                self.inner.core_of(hash),
                (hash, key.to_vec(), value.to_vec()),
            );
        }
        split.call(&self.inner, Op::PutMany).await.map(drop)
    }

    pub async fn flush_async(&self) -> Result<()> {
        self.inner.health.check_writable()?;
        for core in 0..self.inner.cores.len() {
            self.inner.call_core(core, 0, Op::Flush).await?;
        }
        Ok(())
    }

    /// Atomically reads `key`, lets `f` decide what to do with the value it sees, and
    /// does it: no other write of the key comes between the read and the write (the
    /// building block of compare-and-set, increments, appends). `f` runs once, on the
    /// core that owns the key, and must not block. Returns the value `f` saw.
    pub fn update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        self.update_with(key, self.inner.durability, f)
    }

    /// [`Db::update`], acknowledged as `durability` says rather than as the database's
    /// mode does (see [`PutOptions::durability`] for what each means here).
    pub fn update_with(
        &self,
        key: impl AsRef<[u8]>,
        durability: Durability,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let hash = self.inner.write_key(key, &[])?;
        let op = update_op(key, UpdateFn(Box::new(f)), durability);
        self.inner.call_blocking(hash, Waits::Write, op)
    }

    pub async fn update_async(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        self.update_with_async(key, self.inner.durability, f).await
    }

    pub async fn update_with_async(
        &self,
        key: impl AsRef<[u8]>,
        durability: Durability,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let hash = self.inner.write_key(key, &[])?;
        let op = update_op(key, UpdateFn(Box::new(f)), durability);
        self.inner.call(hash, op).await
    }

    /// Runs `task` on core `core`'s executor thread: `make` is called there with a
    /// [`Local`] handle and the future it returns is spawned as a task of that core.
    /// This is how a server serves connections on every core (thread per core): calls
    /// made through the `Local` for keys the core owns skip the queue. The task runs
    /// until it ends or the database closes; it holds a clone of the `Db`, so close the
    /// database explicitly.
    pub fn spawn_on_core<F, Fut>(&self, core: usize, make: F) -> Result<()>
    where
        F: FnOnce(Local) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        if core >= self.inner.cores.len() {
            return Err(Error::InvalidOptions(format!(
                "core {core} does not exist (the database has {} cores)",
                self.inner.cores.len()
            )));
        }
        let db = self.clone();
        let spawn = SpawnFn(Box::new(move |here: Here| {
            let guest = here.guest();
            let task = make(Local { db, here });
            glommio::spawn_local(async move {
                task.await;
                drop(guest);
            })
            .detach();
        }));
        let reply = self.inner.send(core, 0, |reply| Op::Spawn(spawn, reply))?;
        futures_lite::future::block_on(self.inner.wait(core, reply))
    }

    /// Live keys.
    pub fn len(&self) -> Result<u64> {
        Ok(self.stats()?.keys)
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    pub fn stats(&self) -> Result<Stats> {
        futures_lite::future::block_on(async {
            let mut stats = Stats::default();
            for core in 0..self.inner.cores.len() {
                let mut s = self.inner.call_core(core, 0, Op::Stats).await?;
                s.queued = self.inner.cores[core].queued() as u64;
                stats.keys += s.totals.keys;
                stats.live_bytes += s.totals.live_bytes;
                stats.disk_bytes += s.totals.disk_bytes;
                stats.log_bytes += s.log_bytes;
                stats.substores += s.substores;
                stats.cores.push(s);
            }
            Ok(stats)
        })
    }

    /// Calls `f` with every live entry once, in no particular order, one core at a time.
    /// Writes made meanwhile may or may not be seen.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for core in 0..self.inner.cores.len() {
            let (sender, receiver) = async_channel::bounded(2);
            let reply = self
                .inner
                .send(core, 0, |reply| Op::ForEach(sender, reply))?;
            let next = || self.inner.block_unless_dead(core, receiver.recv());
            // A dead core's task may never drop its sender: stop waiting then.
            while let Ok(batch) = next()? {
                for (k, v) in &batch {
                    f(k, v);
                }
            }
            futures_lite::future::block_on(self.inner.wait(core, reply))?;
        }
        Ok(())
    }

    /// Runs a full compaction pass on every core (every extent with dead bytes when it
    /// starts, once) and returns when it is done. While a [`Snapshot`] is open it does
    /// nothing (the snapshot reads what compaction would remove).
    pub fn compact(&self) -> Result<CompactionStats> {
        futures_lite::future::block_on(async {
            let mut total = CompactionStats::default();
            for core in 0..self.inner.cores.len() {
                total.add(&self.inner.call_core(core, 0, Op::Compact).await?);
            }
            Ok(total)
        })
    }

    /// Flushes and stops the cores. Other clones get `Error::Closed` afterwards.
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

/// A handle for tasks running on one of the database's cores (see
/// [`Db::spawn_on_core`]). Calls for keys this core owns are served in place; others
/// cross to their core as [`Db`]'s do. Its futures are not `Send`: they stay on the
/// core's thread.
#[derive(Clone, Debug)]
pub struct Local {
    db: Db,
    here: Here,
}

impl Local {
    /// The core this task runs on.
    pub fn core(&self) -> usize {
        self.here.index()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether this core owns `key` (its calls are served without crossing cores).
    pub fn owns(&self, key: impl AsRef<[u8]>) -> bool {
        self.db.inner.core_of(routing_hash(key.as_ref())) == self.here.index()
    }

    /// Where a call for `hash` is served: `None` in place (this core owns it), else the
    /// core it crosses to.
    fn owner(&self, hash: u64) -> Result<Option<usize>> {
        let core = self.db.inner.core_of(hash);
        if core != self.here.index() {
            return Ok(Some(core));
        }
        if self.db.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(None)
    }

    /// [`Db::get_async`], served in place when this core owns the key.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let (hash, op) = match self.db.inner.get_op(key)? {
            Get::Cached(value) => return Ok(Some(value)),
            Get::Ask(hash, op) => (hash, op),
        };
        match self.owner(hash)? {
            None => self.here.get(hash, key).await,
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }

    /// [`Db::put_async`], served in place when this core owns the key.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (hash, op) = self.db.inner.put_op(key, value)?;
        match self.owner(hash)? {
            None => {
                let value = Bytes::copy_from_slice(value);
                self.here.write(hash, key, Some(value)).await
            }
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }

    /// [`Db::delete_async`], served in place when this core owns the key.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        let (hash, op) = self.db.inner.delete_op(key, self.db.inner.durability)?;
        match self.owner(hash)? {
            None => self.here.write(hash, key, None).await,
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }

    /// [`Db::exists_async`], served in place when this core owns the key.
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        let (hash, op) = exists_op(key)?;
        match self.owner(hash)? {
            None => self.here.exists(hash, key).await,
            Some(core) => self.db.inner.call_core(core, hash, op).await,
        }
    }

    /// [`Db::update_async`], served in place when this core owns the key.
    pub async fn update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let hash = self.db.inner.write_key(key, &[])?;
        let f = UpdateFn(Box::new(f));
        match self.owner(hash)? {
            None => self.here.update(hash, key, f).await,
            Some(core) => {
                let op = update_op(key, f, self.db.inner.durability);
                self.db.inner.call_core(core, hash, op).await
            }
        }
    }
}

/// How a caller looks a value up in a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// As a get: counted in the cache's hits and misses, and a hit counts towards
    /// keeping the entry.
    Counted,
    /// As a scan: uncounted, and leaving the entry's standing alone, so that one pass
    /// over many keys does not make them look hot.
    Peek,
}

/// A get, once checked: its value from the cache, or the request (with the key's hash)
/// for the key's core.
enum Get<F> {
    Cached(Bytes),
    Ask(u64, F),
}

/// Makes a request around the place its answer goes.
trait MakeOp<T: Send + 'static>: FnOnce(ReplyTo<T>) -> Op {}
impl<T: Send + 'static, F: FnOnce(ReplyTo<T>) -> Op> MakeOp<T> for F {}

impl Inner {
    /// Whether a blocking put is acknowledged once queued for its core.
    fn queues_puts(&self) -> bool {
        self.durability == Durability::Buffered
    }

    fn core_of(&self, hash: u64) -> usize {
        usize::from(self.route[(hash >> (64 - u32::from(ROUTE_BITS))) as usize])
    }

    /// A get of `key`, checked: answered from its core's cache, or the request to send.
    fn get_op<'k>(&self, key: &'k [u8]) -> Result<Get<impl MakeOp<Option<Bytes>> + 'k>> {
        let hash = read_key(key)?;
        Ok(match self.cached(hash, key) {
            Some(value) => Get::Cached(value),
            None => Get::Ask(hash, |reply| Op::Get(key.to_vec(), reply)),
        })
    }

    /// `key`'s value if its core's cache holds it: a get without a hop. `None` on a
    /// miss, and when the database is closed or the core no longer serves (a request
    /// then says why).
    fn cached(&self, hash: u64, key: &[u8]) -> Option<Bytes> {
        self.cached_as(hash, key, Look::Counted)
    }

    /// `key`'s value if its core's cache holds it and this thread may read it there
    /// (see `Inner::cached`), looked up as `look` says.
    fn cached_as(&self, hash: u64, key: &[u8], look: Look) -> Option<Bytes> {
        if !self.may_read_cached(hash) {
            return None;
        }
        let core = self.core_of(hash);
        let value = match look {
            Look::Counted => self.caches[core].get(key),
            Look::Peek => self.caches[core].peek(key),
        }?;
        self.cores[core].serving().then_some(value)
    }

    /// The values of `keys`, in their order: from the caches on this thread, then the
    /// misses with one request per core they fall on (all in flight together).
    pub(crate) async fn read_many<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        look: Look,
    ) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<&[u8]> = keys.collect();
        let hashes = (keys.iter().map(|k| read_key(k))).collect::<Result<Vec<u64>>>()?;
        let mut values = self.cached_many(&keys, &hashes, look);
        let missed: Vec<usize> = (0..keys.len()).filter(|&at| values[at].is_none()).collect();
        let found = (self.read_from_cores(missed.iter().map(|&at| (keys[at], hashes[at])))).await?;
        for (at, value) in missed.into_iter().zip(found) {
            values[at] = value;
        }
        Ok(values)
    }

    /// The values of `keys` (with their hashes) from their cores, in their order: one
    /// request per core they fall on, all in flight together.
    pub(crate) async fn read_from_cores<'k>(
        &self,
        keys: impl Iterator<Item = (&'k [u8], u64)>,
    ) -> Result<Vec<Option<Bytes>>> {
        let mut split = PerCore::new(self.cores.len());
        for (key, hash) in keys {
            split.add(self.core_of(hash), (hash, key.to_vec()));
        }
        if split.order.is_empty() {
            return Ok(Vec::new());
        }
        let answers = split.call(self, Op::GetMany).await?;
        let mut answers: Vec<std::vec::IntoIter<Option<Bytes>>> = answers
            .into_iter()
            .map(|values| values.unwrap_or_default().into_iter())
            .collect();
        let answer = |core: &usize| answers[*core].next().expect("one answer per key");
        Ok(split.order.iter().map(answer).collect())
    }

    /// Whether this thread may answer the key of `hash` from its core's cache: not once
    /// the database is closed, nor behind this thread's own queued put of the key (that
    /// is asked of the core instead, behind the put).
    fn may_read_cached(&self, hash: u64) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let behind_own_put = self.queues_puts() && core::put_pending(hash);
        !behind_own_put
    }

    /// Lists into `items` a scan's page from core `core`'s published key order,
    /// without a trip to the core, if that copy is current (`core::shared_order`),
    /// with this thread's own puts queued on that core and not yet applied laid over it
    /// (its own writes must show; not when one was too large for the thread to keep);
    /// not once the database is closed. `Some` holds where the core's next page
    /// starts, if it may have more.
    pub(crate) fn published_page_into(
        &self,
        core: usize,
        request: &core::ScanRequest,
        items: &mut Vec<core::Item>,
    ) -> Option<Option<Vec<u8>>> {
        if self.closed.load(Ordering::Acquire) || !self.cores[core].serving() {
            return None;
        }
        // Before the copy is judged current: a put applied after that could be in
        // neither.
        let own = match self.queues_puts() {
            true => core::own_puts_on(&self.cores[core]),
            false => core::OwnPuts::default(),
        };
        if !own.is_empty() && !own.kept() {
            return None;
        }
        let resume = self.cores[core].order.page_into(request, items)?;
        own.each(|key, value| request.lay_over(items, resume.as_deref(), (key, value)));
        Some(resume)
    }

    /// What the caches hold of `keys` (with their hashes), as [`Inner::cached_as`]
    /// would answer each; the keys of one core are looked up together, so that their
    /// memory loads overlap.
    fn cached_many(&self, keys: &[&[u8]], hashes: &[u64], look: Look) -> Vec<Option<Bytes>> {
        let mut values = vec![None; keys.len()];
        let mut by_core = vec![Vec::new(); self.cores.len()];
        for (at, &hash) in hashes.iter().enumerate() {
            by_core[self.core_of(hash)].push(at);
        }
        for ats in by_core.iter().filter(|ats| !ats.is_empty()) {
            let batch: Vec<&[u8]> = ats.iter().map(|&at| keys[at]).collect();
            let batch_hashes: Vec<u64> = ats.iter().map(|&at| hashes[at]).collect();
            let mut found = vec![None; ats.len()];
            self.cached_into(&batch, &batch_hashes, look, &mut found);
            for (&at, value) in ats.iter().zip(found) {
                values[at] = value;
            }
        }
        values
    }

    /// What the caches hold of `keys` (with their hashes), into `values`, as
    /// [`Inner::cached_as`] would answer each (`None`: ask the core). Keys in a row on
    /// one core are looked up together, so that their memory loads overlap.
    pub(crate) fn cached_into(
        &self,
        keys: &[&[u8]],
        hashes: &[u64],
        look: Look,
        values: &mut [Option<Bytes>],
    ) {
        let readable = |at: usize| self.may_read_cached(hashes[at]);
        let mut at = 0;
        while at < keys.len() {
            if !readable(at) {
                values[at] = None;
                at += 1;
                continue;
            }
            let core = self.core_of(hashes[at]);
            let together = |i: &usize| readable(*i) && self.core_of(hashes[*i]) == core;
            let end = (at + 1..keys.len())
                .find(|i| !together(i))
                .unwrap_or(keys.len());
            let counted = look == Look::Counted;
            self.caches[core].read_into(&keys[at..end], counted, &mut values[at..end]);
            if !self.cores[core].serving() {
                values[at..end].fill(None);
            }
            at = end;
        }
    }

    /// A `Buffered` put from a plain thread, acknowledged once queued (see
    /// `core::receipt` for how this thread still reads its own writes).
    fn queue_put(&self, hash: u64, key: &[u8], value: &[u8]) -> Result<()> {
        struct Queueing<'a>(&'a AtomicUsize);
        impl Drop for Queueing<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.queueing.fetch_add(1, Ordering::SeqCst);
        let _queueing = Queueing(&self.queueing);
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let core = &self.cores[self.core_of(hash)];
        if !core.serving() {
            return Err(core.gone());
        }
        let receipt = core::queue_receipt(hash, key, value, core);
        let op = Op::PutQueued(key.to_vec(), value.to_vec(), receipt);
        push_blocking(core, Request::Call { hash, op });
        Ok(())
    }

    async fn call<T: Send + 'static>(&self, hash: u64, op: impl MakeOp<T>) -> Result<T> {
        self.call_core(self.core_of(hash), hash, op).await
    }

    async fn call_core<T: Send + 'static>(
        &self,
        core: usize,
        hash: u64,
        op: impl MakeOp<T>,
    ) -> Result<T> {
        let reply = self.send_async(core, hash, op).await?;
        self.wait(core, reply).await
    }

    /// The reply of a request queued on `core`, or why there will be none.
    async fn wait<T>(&self, core: usize, reply: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.cores.wait(core, reply).await
    }

    /// A request for an async caller, and where its answer will come.
    fn request<T: Send + 'static>(
        &self,
        hash: u64,
        op: impl MakeOp<T>,
    ) -> Result<(Request, oneshot::Receiver<Result<T>>)> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (reply, rx) = ReplyTo::task();
        Ok((
            Request::Call {
                hash,
                op: op(reply),
            },
            rx,
        ))
    }

    /// [`Inner::call`] from a plain thread, without an allocation: the answer comes in
    /// the thread's own slot, which it spins on (when `spinners` lets it) and then
    /// parks on.
    fn call_blocking<T: Answer>(&self, hash: u64, waits: Waits, op: impl MakeOp<T>) -> Result<T> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let core = &self.cores[self.core_of(hash)];
        let (slot, reply) = ReplySlot::arm();
        push_blocking(
            core,
            Request::Call {
                hash,
                op: op(reply),
            },
        );
        slot.wait(core, &self.spinners, waits)
    }

    /// A write of `key` (with `value`) checked: its hash.
    fn write_key(&self, key: &[u8], value: &[u8]) -> Result<u64> {
        check_limits(key, value, &[])?;
        self.health.check_writable()?;
        Ok(routing_hash(key))
    }

    /// A put's request, checked.
    fn put_op<'k>(&self, key: &'k [u8], value: &'k [u8]) -> Result<(u64, impl MakeOp<()> + 'k)> {
        let hash = self.write_key(key, value)?;
        Ok((hash, |reply| Op::Put(key.to_vec(), value.to_vec(), reply)))
    }

    /// A delete's request, checked, acknowledged as `durability` says.
    fn delete_op<'k>(
        &self,
        key: &'k [u8],
        durability: Durability,
    ) -> Result<(u64, impl MakeOp<()> + 'k)> {
        let hash = self.write_key(key, &[])?;
        Ok((hash, move |reply| {
            Op::Delete(key.to_vec(), durability, reply)
        }))
    }

    /// Runs `future` on this plain thread, spinning for its wake-ups before parking
    /// (`Spinners::block_on`).
    fn block_on<F: Future>(&self, waits: Waits, future: F) -> F::Output {
        self.spinners.block_on(waits, future)
    }

    /// Blocks on `future` unless core `core` dies first.
    fn block_unless_dead<T>(&self, core: usize, future: impl Future<Output = T>) -> Result<T> {
        let shared = &self.cores[core];
        let died = async {
            shared.died().await;
            Err(shared.gone())
        };
        let done = async { Ok(future.await) };
        futures_lite::future::block_on(futures_lite::FutureExt::or(done, died))
    }

    /// Queues a request from a plain thread, waiting while the queue is full.
    fn send<T: Send + 'static>(
        &self,
        core: usize,
        hash: u64,
        op: impl MakeOp<T>,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (request, rx) = self.request(hash, op)?;
        push_blocking(&self.cores[core], request);
        Ok(rx)
    }

    /// Queues a request from async code, yielding while the queue is full.
    async fn send_async<T: Send + 'static>(
        &self,
        core: usize,
        hash: u64,
        op: impl MakeOp<T>,
    ) -> Result<oneshot::Receiver<Result<T>>> {
        let (request, rx) = self.request(hash, op)?;
        self.cores.push(core, request).await;
        Ok(rx)
    }

    /// Runs a batch (`ops`, and for a transaction the `reads` it checks) on its
    /// coordinator: the core of its first write (so that batches spread their frames
    /// over the cores' batch logs), or of its first read.
    pub(crate) async fn run_batch(
        &self,
        ops: Vec<BatchOp>,
        reads: Vec<core::Read>,
        durability: Durability,
    ) -> Result<()> {
        if ops.is_empty() && reads.is_empty() {
            return Ok(());
        }
        batch::check_frame(&ops, self.batch_log_bytes)?;
        self.health.check_writable()?;
        let gate = self.batch_gate.read_arc().await;
        let ticket = core::Ticket::new(&self.batches, gate);
        let first = ops.first().map_or_else(|| reads[0].hash, |op| op.hash);
        let coordinator = self.core_of(first);
        let parts = self.parts(ops, reads);
        let op = |reply| Op::Batch(parts, durability, ticket, reply);
        let reply = self.send_async(coordinator, 0, op).await?;
        self.wait(coordinator, reply).await
    }

    /// A transaction's read of `key`: its value and version.
    pub(crate) async fn get_versioned(
        &self,
        key: &[u8],
    ) -> Result<(core::Versioned, core::Version)> {
        let hash = read_key(key)?;
        self.call(hash, |reply| Op::GetVersioned(key.to_vec(), reply))
            .await
    }

    /// A batch's writes and reads split by core, in core order.
    fn parts(&self, ops: Vec<BatchOp>, reads: Vec<core::Read>) -> Vec<core::Part> {
        let mut parts: Vec<core::Part> = Vec::new();
        let mut part_of = |core: usize| -> usize {
            match parts.iter().position(|p| p.core == core) {
                Some(at) => at,
                None => {
                    parts.push(core::Part {
                        core,
                        ops: Vec::new(),
                        reads: Vec::new(),
                    });
                    parts.len() - 1
                }
            }
        };
        let mut placed: Vec<(usize, Option<BatchOp>, Option<core::Read>)> = Vec::new();
        for op in ops {
            placed.push((part_of(self.core_of(op.hash)), Some(op), None));
        }
        for read in reads {
            placed.push((part_of(self.core_of(read.hash)), None, Some(read)));
        }
        for (at, op, read) in placed {
            parts[at].ops.extend(op);
            parts[at].reads.extend(read);
        }
        parts.sort_by_key(|p| p.core);
        parts
    }

    /// At open, before any call: applies the batches whose frames had no done (every
    /// part again, durably), then removes the batch logs.
    fn finish_batches(&self, fs: &crate::storage::Storage, pending: batch::Pending) -> Result<()> {
        futures_lite::future::block_on(async {
            for ops in pending.batches {
                for part in self.parts(ops, Vec::new()) {
                    (self.cores)
                        .call(part.core, 0, |reply| Op::BatchApply(part.ops, reply))
                        .await?;
                }
            }
            Ok::<_, Error>(())
        })?;
        batch::remove(fs, &self.path, &pending.files)
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        while self.queueing.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now(); // a put being queued goes before the shutdown
        }
        // A batch on a core that died never ends (its task went with the executor).
        while self.batches.load(Ordering::SeqCst) > 0 && self.cores.iter().all(|c| c.serving()) {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        let mut first_error = None;
        for (index, core) in self.cores.iter().enumerate() {
            let (reply, rx) = ReplyTo::task();
            push_blocking(core, Request::Shutdown(reply));
            match futures_lite::future::block_on(self.wait(index, rx)) {
                Ok(_) | Err(Error::Closed) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("not poisoned"));
        for thread in threads {
            // A core thread catches its own panics (they kill only the core), so a
            // join error is a panic in marking it dead: report it all the same.
            if thread.join().is_err() {
                first_error.get_or_insert(Error::Io {
                    op: "stopping a core of",
                    path: self.path.clone(),
                    source: std::io::Error::other("a core thread panicked while stopping"),
                });
            }
        }
        self.lock.lock().expect("not poisoned").take();
        // The cores' state is gone with their threads; the caches go now rather than
        // with the last handle, and the freed memory goes back to the system.
        self.caches.iter().for_each(|cache| cache.clear());
        crate::malloc::give_back_free_memory();
        first_error.map_or(Ok(()), Err)
    }
}

/// A many-key call split by core: each core's share, and the core of each item in the
/// caller's order.
struct PerCore<T> {
    shares: Vec<Vec<T>>,
    order: Vec<usize>,
}

impl<T> PerCore<T> {
    fn new(cores: usize) -> Self {
        Self {
            shares: (0..cores).map(|_| Vec::new()).collect(),
            order: Vec::new(),
        }
    }

    fn add(&mut self, core: usize, item: T) {
        self.shares[core].push(item);
        self.order.push(core);
    }

    /// One request per core with a share, all in flight together; each core's reply
    /// (`None` for a core without a share).
    async fn call<A: Send + 'static>(
        &mut self,
        inner: &Inner,
        op: impl Fn(Vec<T>, ReplyTo<A>) -> Op,
    ) -> Result<Vec<Option<A>>> {
        let calls = std::mem::take(&mut self.shares)
            .into_iter()
            .enumerate()
            .map(|(core, share)| {
                let op = &op;
                async move {
                    match share.is_empty() {
                        false => inner.call_core(core, 0, |r| op(share, r)).await.map(Some),
                        true => Ok(None),
                    }
                }
            });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .collect()
    }
}

/// A read of `key` checked: its hash.
fn read_key(key: &[u8]) -> Result<u64> {
    check_limits(key, &[], &[])?;
    Ok(routing_hash(key))
}

/// An exists' request, checked.
fn exists_op(key: &[u8]) -> Result<(u64, impl MakeOp<bool> + '_)> {
    Ok((read_key(key)?, |reply| Op::Exists(key.to_vec(), reply)))
}

/// A read-modify-write's request around `f` (its key checked by the caller).
fn update_op(key: &[u8], f: UpdateFn, durability: Durability) -> impl MakeOp<Option<Bytes>> + '_ {
    move |reply| Op::Update(key.to_vec(), f, durability, reply)
}

/// Queues `request` on `core` from a plain thread, waiting while the queue is full.
fn push_blocking(core: &CoreShared, mut request: Request) {
    while let Err(back) = core.push(request) {
        request = back;
        core.wake();
        std::thread::yield_now();
    }
}

/// How long a core, its executor and a blocking caller waiting for a read spin before
/// they park, when the machine has CPUs the cores leave free (never when idle: they
/// park after it): about a device read (this VM's 4 KiB QD1 p50 is 64–71 µs, its p90
/// about 130 µs), so that neither side sleeps through one and pays two wake-ups.
/// Measured (one caller, one core, uncached 750-byte gets): p50 191–261 µs with 50 µs,
/// 86–94 µs with 250 µs; a core spinning 250 µs also took one thread's `Sync` put p50
/// from 328–348 to 215–250 µs.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(250);
/// A blocking caller waiting for a write spins less: a durable write needs the kernel's
/// own threads (io_uring's workers, the file system's journal) on a CPU, which a
/// spinning caller would take: one thread's `Sync` put p50 went from 215–250 µs to
/// 413–884 µs with callers spinning 250 µs.
const WRITE_SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
