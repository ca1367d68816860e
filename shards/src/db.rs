//! The handle services hold: `Db`. Cheap to clone, callable from any thread and from any
//! executor. Each call hashes its key, picks the core from the immutable routing table,
//! queues the request and waits for the reply (the async twins await it instead).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::{LocalExecutorBuilder, Placement};
use ringkv_engine::hash::routing_hash;
use ringkv_engine::{CompactionStats, check_limits};

use crate::core::{
    self, CoreShared, CoreStats, Health, Here, Op, Reply, Request, SpawnFn, Update, UpdateFn,
};
use crate::error::{Error, Result};
use crate::layout::{self, DirLock, ROUTE_BITS};
use crate::options::Options;

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

type CoreThread = glommio::ExecutorJoinHandle<()>;

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    cores: Vec<Arc<CoreShared>>,
    route: Box<[u16]>,
    health: Arc<Health>,
    closed: AtomicBool,
    threads: Mutex<Vec<CoreThread>>,
    lock: Mutex<Option<DirLock>>,
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

impl Db {
    /// Opens (or creates) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        options.validate()?;
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            op: "creating",
            path: path.clone(),
            source,
        })?;
        let lock = layout::lock(&path)?;
        let (leaves, ancestors) = layout::scan(&path)?;
        let cores = options.resolved_cores();
        let assignment = layout::assign(&leaves, &ancestors, cores);
        let mut ancestors = assignment.ancestors.into_iter();
        let cpus = allowed_cpus();
        let pin = cpus.len() >= cores;
        let health = Arc::new(Health::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut shared = Vec::with_capacity(cores);
        let mut threads = Vec::with_capacity(cores);
        let mut spawn_error = None;
        for (index, leaves) in assignment.per_core.into_iter().enumerate() {
            let ancestors = ancestors.next().unwrap_or_default();
            let (core_shared, doorbell) = core::channel(options.queue_depth)?;
            shared.push(core_shared.clone());
            let placement = if pin {
                Placement::Fixed(cpus[index])
            } else {
                Placement::Unbound
            };
            let (options, health, ready) = (options.clone(), health.clone(), ready_tx.clone());
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("ringkv-core-{index}"))
                .io_memory(options.io_memory_bytes)
                .spawn(move || async move {
                    let owned = core::Owned { leaves, ancestors };
                    core::run(index, owned, options, health, core_shared, doorbell, ready).await
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    spawn_error = Some(Error::Io {
                        op: "starting a core",
                        path: path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    });
                    break;
                }
            }
        }
        drop(ready_tx);
        let inner = Inner {
            path,
            cores: shared,
            route: assignment.route,
            health,
            closed: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            lock: Mutex::new(Some(lock)),
        };
        let started = threads.len();
        *inner.threads.lock().expect("not poisoned") = threads;
        let mut first_error = spawn_error;
        for _ in 0..started {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(Error::Closed);
                }
            }
        }
        let db = Db {
            inner: Arc::new(inner),
        };
        match first_error {
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

    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        futures_lite::future::block_on(self.put_async(key, value))
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        futures_lite::future::block_on(self.get_async(key))
    }

    /// Deletes a key; a missing key is not an error.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        futures_lite::future::block_on(self.delete_async(key))
    }

    pub fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        futures_lite::future::block_on(self.exists_async(key))
    }

    /// Makes everything acknowledged so far durable.
    pub fn flush(&self) -> Result<()> {
        futures_lite::future::block_on(self.flush_async())
    }

    /// Stores `value` under `key`; returns once durable (`Durability::Sync`) or once in
    /// memory (`Durability::Buffered`).
    pub async fn put_async(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        check_limits(key, value, &[])?;
        self.inner.health.check_writable()?;
        let op = Op::Put(key.to_vec(), value.to_vec());
        self.inner.call(routing_hash(key), op).await.map(drop)
    }

    pub async fn get_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        match self
            .inner
            .call(routing_hash(key), Op::Get(key.to_vec()))
            .await?
        {
            Reply::Value(v) => Ok(v),
            other => unreachable!("get answered {other:?}"),
        }
    }

    pub async fn delete_async(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        self.inner.health.check_writable()?;
        let op = Op::Delete(key.to_vec());
        self.inner.call(routing_hash(key), op).await.map(drop)
    }

    pub async fn exists_async(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        match self
            .inner
            .call(routing_hash(key), Op::Exists(key.to_vec()))
            .await?
        {
            Reply::Bool(b) => Ok(b),
            other => unreachable!("exists answered {other:?}"),
        }
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
        futures_lite::future::block_on(self.update_async(key, f))
    }

    pub async fn update_async(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        self.inner.health.check_writable()?;
        let op = Op::Update(key.to_vec(), UpdateFn(Box::new(f)));
        match self.inner.call(routing_hash(key), op).await? {
            Reply::Value(v) => Ok(v),
            other => unreachable!("update answered {other:?}"),
        }
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
            let local = Local { db, here };
            glommio::spawn_local(make(local)).detach();
        }));
        let reply = self.inner.send(core, 0, Op::Spawn(spawn))?;
        futures_lite::future::block_on(Inner::wait(reply)).map(drop)
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
                let Reply::Stats(s) = self.inner.call_core(core, 0, Op::Stats).await? else {
                    unreachable!("stats answers stats");
                };
                let mut s = s;
                s.queued = self.inner.cores[core].queued() as u64;
                stats.keys += s.totals.keys;
                stats.live_bytes += s.totals.live_bytes;
                stats.disk_bytes += s.totals.disk_bytes;
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
            let reply = self.inner.send(core, 0, Op::ForEach(sender))?;
            while let Ok(batch) = receiver.recv_blocking() {
                for (k, v) in &batch {
                    f(k, v);
                }
            }
            futures_lite::future::block_on(Inner::wait(reply))?;
        }
        Ok(())
    }

    /// Runs a full compaction pass on every core (every sealed extent with dead bytes)
    /// and returns when it is done.
    pub fn compact(&self) -> Result<CompactionStats> {
        futures_lite::future::block_on(async {
            let mut total = CompactionStats::default();
            for core in 0..self.inner.cores.len() {
                let Reply::Compacted(s) = self.inner.call_core(core, 0, Op::Compact).await? else {
                    unreachable!("compact answers compacted");
                };
                total.add(&s);
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

    async fn call(&self, key: &[u8], op: Op) -> Result<Reply> {
        let hash = routing_hash(key);
        let core = self.db.inner.core_of(hash);
        if core != self.here.index() {
            return self.db.inner.call_core(core, hash, op).await;
        }
        if self.db.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        self.here.call(hash, op).await
    }

    /// [`Db::get_async`], served in place when this core owns the key.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        match self.call(key, Op::Get(key.to_vec())).await? {
            Reply::Value(v) => Ok(v),
            other => unreachable!("get answered {other:?}"),
        }
    }

    /// [`Db::put_async`], served in place when this core owns the key.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        check_limits(key, value, &[])?;
        self.db.inner.health.check_writable()?;
        self.call(key, Op::Put(key.to_vec(), value.to_vec()))
            .await
            .map(drop)
    }

    /// [`Db::delete_async`], served in place when this core owns the key.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        self.db.inner.health.check_writable()?;
        self.call(key, Op::Delete(key.to_vec())).await.map(drop)
    }

    /// [`Db::exists_async`], served in place when this core owns the key.
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        match self.call(key, Op::Exists(key.to_vec())).await? {
            Reply::Bool(b) => Ok(b),
            other => unreachable!("exists answered {other:?}"),
        }
    }

    /// [`Db::update_async`], served in place when this core owns the key.
    pub async fn update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnOnce(Option<&[u8]>) -> Update + Send + 'static,
    ) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_limits(key, &[], &[])?;
        self.db.inner.health.check_writable()?;
        match self
            .call(key, Op::Update(key.to_vec(), UpdateFn(Box::new(f))))
            .await?
        {
            Reply::Value(v) => Ok(v),
            other => unreachable!("update answered {other:?}"),
        }
    }
}

impl Inner {
    fn core_of(&self, hash: u64) -> usize {
        usize::from(self.route[(hash >> (64 - u32::from(ROUTE_BITS))) as usize])
    }

    async fn call(&self, hash: u64, op: Op) -> Result<Reply> {
        self.call_core(self.core_of(hash), hash, op).await
    }

    async fn call_core(&self, core: usize, hash: u64, op: Op) -> Result<Reply> {
        let reply = self.send_async(core, hash, op).await?;
        Self::wait(reply).await
    }

    async fn wait(reply: oneshot::Receiver<Result<Reply>>) -> Result<Reply> {
        reply.await.map_err(|_| Error::Closed)?
    }

    fn request(&self, hash: u64, op: Op) -> Result<(Request, oneshot::Receiver<Result<Reply>>)> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        Ok((
            Request {
                hash,
                op,
                reply: tx,
            },
            rx,
        ))
    }

    /// Queues a request from a plain thread, waiting while the queue is full.
    fn send(&self, core: usize, hash: u64, op: Op) -> Result<oneshot::Receiver<Result<Reply>>> {
        let (mut request, rx) = self.request(hash, op)?;
        while let Err(back) = self.cores[core].push(request) {
            request = back;
            self.cores[core].ring();
            std::thread::yield_now();
        }
        Ok(rx)
    }

    /// Queues a request from async code, yielding while the queue is full.
    async fn send_async(
        &self,
        core: usize,
        hash: u64,
        op: Op,
    ) -> Result<oneshot::Receiver<Result<Reply>>> {
        let (mut request, rx) = self.request(hash, op)?;
        while let Err(back) = self.cores[core].push(request) {
            request = back;
            self.cores[core].ring();
            futures_lite::future::yield_now().await;
        }
        Ok(rx)
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let mut first_error = None;
        for core in &self.cores {
            let (tx, rx) = oneshot::channel();
            let mut request = Request {
                hash: 0,
                op: Op::Shutdown,
                reply: tx,
            };
            while let Err(back) = core.push(request) {
                request = back;
                core.ring();
                std::thread::yield_now();
            }
            if let Ok(Err(e)) = futures_lite::future::block_on(rx) {
                first_error.get_or_insert(e);
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("not poisoned"));
        for thread in threads {
            if let Err(e) = thread.join() {
                first_error.get_or_insert(Error::Io {
                    op: "stopping a core of",
                    path: self.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        }
        self.lock.lock().expect("not poisoned").take();
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.close();
    }
}
