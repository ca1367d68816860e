//! Runs a workload against an engine: load, warm-up, measured phase, with one
//! HdrHistogram per thread and operation merged at the end, and optional open-loop
//! pacing whose latency counts from each request's intended start time (so queueing
//! behind a slow request is not hidden: coordinated omission is corrected). Each thread
//! also cuts its measurements into one-second interval histograms (kept encoded, a few
//! hundred bytes each, so a long run does not grow the rig's memory), merged per
//! second and operation at the end: the interval log and the throughput plot.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

use hdrhistogram::Histogram;
use ringkv::{Db, Local, Options, WriteBatch};

use crate::workload::{KeyChooser, Op, Rng, SCAN_LENGTH_MAX, Workload, key};

/// What the rig needs of an engine. Peers implement it behind cargo features.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Stores many entries through the engine's batch API where it has one (one request
    /// or one transaction); by default, one put after another.
    fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        entries.iter().try_for_each(|(k, v)| self.put(k, v))
    }
    /// The value's length, if the key exists.
    fn get(&self, key: &[u8]) -> Result<Option<usize>, String>;
    fn flush(&self) -> Result<(), String>;
    /// Reads up to `count` records in key order from `start` (YCSB E) and returns how
    /// many it read; `None`: the engine has no ordered scan.
    fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
        let _ = (start, count);
        Ok(None)
    }
    /// Bytes the engine's files take on disk.
    fn disk_bytes(&self) -> u64;
    /// ringkv's database, for its async API (`None` for the peers, which have none).
    fn db(&self) -> Option<&Db> {
        None
    }
    /// What the engine's own figures say it holds in memory, where it reports them.
    fn memory(&self) -> Option<String> {
        let stats = self.db()?.stats().ok()?;
        let sum = |f: fn(&ringkv::CoreStats) -> u64| stats.cores.iter().map(f).sum::<u64>() >> 20;
        Some(format!(
            "{} keys; read cache {} MiB, index {} MiB, unsealed extents' buffers {} MiB and \
             key summaries {} MiB",
            stats.keys,
            sum(|c| c.cache_bytes),
            sum(|c| c.totals.index_memory_bytes),
            sum(|c| c.totals.buffer_memory_bytes),
            sum(|c| c.totals.summary_memory_bytes)
        ))
    }
    /// Makes everything durable and closes.
    fn close(self: Box<Self>) -> Result<(), String>;
}

/// ringkv through its public API.
#[derive(Debug)]
pub struct Ringkv {
    db: Db,
}

impl Ringkv {
    pub fn open(dir: &Path, options: Options) -> Result<Self, String> {
        let db = Db::open(dir, options).map_err(|e| e.to_string())?;
        Ok(Self { db })
    }
}

impl Engine for Ringkv {
    fn name(&self) -> &'static str {
        "ringkv"
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.db.put(key, value).map_err(|e| e.to_string())
    }
    fn put_batch(&self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        // Atomic, as the peers' batches are (and durable when it returns, in either mode).
        let mut batch = WriteBatch::new();
        for (k, v) in entries {
            batch.put(k, v);
        }
        self.db.write(batch).map_err(|e| e.to_string())
    }
    fn get(&self, key: &[u8]) -> Result<Option<usize>, String> {
        self.db
            .get(key)
            .map(|v| v.map(|v| v.len()))
            .map_err(|e| e.to_string())
    }
    fn flush(&self) -> Result<(), String> {
        self.db.flush().map_err(|e| e.to_string())
    }
    fn scan(&self, start: &[u8], count: usize) -> Result<Option<usize>, String> {
        crate::peers::count_scanned(self.db.range(start..).limit(count), count)
    }
    fn disk_bytes(&self) -> u64 {
        self.db
            .stats()
            .map(|s| s.disk_bytes + s.log_bytes)
            .unwrap_or(0)
    }
    fn db(&self) -> Option<&Db> {
        Some(&self.db)
    }
    fn close(self: Box<Self>) -> Result<(), String> {
        self.db.close().map_err(|e| e.to_string())
    }
}

/// How to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub keys: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub threads: u64,
    pub duration: Duration,
    pub warmup: Duration,
    /// Total operations per second across threads (open loop); `None`: closed loop.
    pub target_rate: Option<f64>,
    /// Requests in flight per client thread (closed loop).
    pub concurrency: u64,
    /// ringkv's clients run as tasks on its own cores (`Db::spawn_on_core`), threads ×
    /// concurrency of them, instead of on client threads.
    pub on_core: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub seconds: f64,
    pub histograms: HashMap<Op, Histogram<u64>>,
    /// Completed operations per second, second by second (whole measured seconds).
    pub per_second: Vec<u64>,
    /// One histogram per measured second (counted from `started_unix_s`) and operation,
    /// in order; together they hold exactly what `histograms` holds.
    pub intervals: Vec<(u64, Op, Histogram<u64>)>,
    /// When the measured phase began, seconds since the Unix epoch.
    pub started_unix_s: f64,
}

/// Latencies in microseconds, up to a minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// A histogram in HdrHistogram's V2 encoding (uncompressed).
pub fn encode(h: &Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("a histogram encodes into memory");
    bytes
}

/// The inverse of [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Histogram<u64>, String> {
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| format!("decoding a histogram: {e:?}"))
}

/// One thread's interval histograms: the current second's per operation, and the
/// finished ones encoded.
#[derive(Debug, Default)]
struct Intervals {
    current: HashMap<Op, (u64, Histogram<u64>)>,
    done: Vec<(u64, Op, Vec<u8>)>,
}

impl Intervals {
    fn record(&mut self, second: u64, op: Op, us: u64) {
        let (at, h) = self
            .current
            .entry(op)
            .or_insert_with(|| (second, new_histogram()));
        if *at != second {
            self.done.push((*at, op, encode(h)));
            h.reset();
            *at = second;
        }
        let _ = h.record(us.min(h.high()));
    }

    fn finish(mut self) -> Vec<(u64, Op, Vec<u8>)> {
        for (op, (at, h)) in self.current.drain() {
            self.done.push((at, op, encode(&h)));
        }
        self.done
    }
}

/// Inserts records 0..keys from `threads` threads; returns the fill histogram and the
/// seconds it took.
pub fn load(
    engine: &dyn Engine,
    config: &RunConfig,
    progress: &indicatif::ProgressBar,
) -> Result<(Histogram<u64>, f64), String> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    let histograms = std::thread::scope(|s| {
        let workers: Vec<_> = (0..config.threads)
            .map(|_| {
                s.spawn(|| {
                    let mut h = new_histogram();
                    let value = vec![0x5a; config.value_bytes];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= config.keys {
                            return Ok::<_, String>(h);
                        }
                        let t = Instant::now();
                        engine.put(&key(i, config.key_bytes), &value)?;
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        if i % 4096 == 0 {
                            progress.set_position(i);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("loader thread"))
            .collect::<Vec<_>>()
    });
    let mut merged = new_histogram();
    for h in histograms {
        merged.add(h?).map_err(|e| e.to_string())?;
    }
    engine.flush()?;
    Ok((merged, started.elapsed().as_secs_f64()))
}

/// One request a client sends.
enum Request {
    Get(Vec<u8>),
    Put(Vec<u8>),
    /// A get and then a put of the same key (YCSB F).
    ReadModifyWrite(Vec<u8>),
    Scan(Vec<u8>, usize),
    /// Puts of these keys as one atomic batch.
    Batch(Vec<Vec<u8>>),
}

/// What every client of a run shares.
struct Shared {
    workload: Workload,
    chooser: KeyChooser,
    config: RunConfig,
    /// Set when the warm-up ends: requests completing after it are measured.
    measuring: OnceLock<Instant>,
    stop: AtomicBool,
}

/// One client: its random stream and what it measured.
struct Client<'a> {
    shared: &'a Shared,
    rng: Rng,
    histograms: HashMap<Op, Histogram<u64>>,
    intervals: Intervals,
}

impl<'a> Client<'a> {
    fn new(seed: u64, shared: &'a Shared) -> Self {
        Self {
            shared,
            rng: Rng::new(0x5eed ^ seed),
            histograms: HashMap::new(),
            intervals: Intervals::default(),
        }
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// The next request of the workload's mix.
    fn next(&mut self) -> (Op, Request) {
        let op = self.shared.workload.pick(self.rng.next_u64());
        let key_bytes = self.shared.config.key_bytes;
        let chooser = &self.shared.chooser;
        let existing = |c: &mut Self| key(chooser.existing(&mut c.rng), key_bytes);
        let request = match op {
            Op::Read => Request::Get(existing(self)),
            Op::Update => Request::Put(existing(self)),
            Op::Insert => Request::Put(key(chooser.next_insert(), key_bytes)),
            Op::ReadModifyWrite => Request::ReadModifyWrite(existing(self)),
            Op::Scan => {
                let start = existing(self);
                Request::Scan(start, 1 + (self.rng.next_u64() % SCAN_LENGTH_MAX) as usize)
            }
            Op::Batch => {
                let n = self.shared.workload.batch_keys;
                Request::Batch((0..n).map(|_| existing(self)).collect())
            }
        };
        (op, request)
    }

    /// Records a request of `op` that started at `start` and is done now, if the
    /// warm-up is over.
    fn record(&mut self, op: Op, start: Instant) {
        let done = Instant::now();
        if let Some(measure_started) = self.shared.measuring.get() {
            let us = done.duration_since(start).as_micros().max(1) as u64;
            let h = self.histograms.entry(op).or_insert_with(new_histogram);
            let _ = h.record(us.min(h.high()));
            let second = done.saturating_duration_since(*measure_started);
            self.intervals.record(second.as_secs(), op, us);
        }
    }

    fn finish(self) -> ClientResult {
        (self.histograms, self.intervals.finish())
    }
}

type ClientResult = (HashMap<Op, Histogram<u64>>, Vec<(u64, Op, Vec<u8>)>);

/// Sends `request` through the engine's blocking API.
fn execute(engine: &dyn Engine, request: &Request, value: &[u8]) -> Result<(), String> {
    match request {
        Request::Get(k) => drop(engine.get(k)?),
        Request::Put(k) => engine.put(k, value)?,
        Request::ReadModifyWrite(k) => {
            engine.get(k)?;
            engine.put(k, value)?;
        }
        Request::Scan(start, count) => {
            if engine.scan(start, *count)?.is_none() {
                return Err(format!("{} has no ordered scan", engine.name()));
            }
        }
        Request::Batch(keys) => {
            let entries: Vec<_> = keys.iter().map(|k| (k.clone(), value.to_vec())).collect();
            engine.put_batch(&entries)?;
        }
    }
    Ok(())
}

/// ringkv's async API, from any thread ([`Db`]) or from a task on one of its cores
/// ([`Local`]).
trait AsyncKv {
    async fn get(&self, key: &[u8]) -> ringkv::Result<Option<bytes::Bytes>>;
    async fn put(&self, key: &[u8], value: &[u8]) -> ringkv::Result<()>;
    async fn write(&self, batch: WriteBatch) -> ringkv::Result<()>;
    /// Between two requests: a task on a core lets the core's other work run.
    async fn pause(&self);
    /// The database, for what has no shortcut here (scans).
    fn db(&self) -> &Db;
}

impl AsyncKv for Db {
    async fn get(&self, key: &[u8]) -> ringkv::Result<Option<bytes::Bytes>> {
        self.get_async(key).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> ringkv::Result<()> {
        self.put_async(key, value).await
    }
    async fn write(&self, batch: WriteBatch) -> ringkv::Result<()> {
        self.write_async(batch).await
    }
    async fn pause(&self) {}
    fn db(&self) -> &Db {
        self
    }
}

impl AsyncKv for Local {
    async fn get(&self, key: &[u8]) -> ringkv::Result<Option<bytes::Bytes>> {
        Local::get(self, key).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> ringkv::Result<()> {
        Local::put(self, key, value).await
    }
    async fn write(&self, batch: WriteBatch) -> ringkv::Result<()> {
        self.db().write_async(batch).await
    }
    fn db(&self) -> &Db {
        Local::db(self)
    }
    async fn pause(&self) {
        // A cached get never waits: without this a client would hold its core.
        glommio::yield_if_needed().await;
    }
}

/// Sends `request` through ringkv's async API.
async fn execute_async(kv: &impl AsyncKv, request: &Request, value: &[u8]) -> Result<(), String> {
    let failed = |e: ringkv::Error| e.to_string();
    match request {
        Request::Get(k) => drop(kv.get(k).await.map_err(failed)?),
        Request::Put(k) => kv.put(k, value).await.map_err(failed)?,
        Request::ReadModifyWrite(k) => {
            kv.get(k).await.map_err(failed)?;
            kv.put(k, value).await.map_err(failed)?;
        }
        Request::Scan(start, count) => {
            let mut scan = kv.db().range(start.as_slice()..).limit(*count);
            for _ in 0..*count {
                match scan.next_async().await {
                    Some(item) => drop(item.map_err(failed)?),
                    None => break,
                }
            }
        }
        Request::Batch(keys) => {
            let mut batch = WriteBatch::new();
            for k in keys {
                batch.put(k, value);
            }
            kv.write(batch).await.map_err(failed)?;
        }
    }
    Ok(())
}

/// A client thread's blocking loop, closed or open (paced every `gap`).
fn client_loop(
    engine: &dyn Engine,
    mut client: Client<'_>,
    value: &[u8],
    gap: Option<Duration>,
) -> Result<ClientResult, String> {
    let mut intended = Instant::now();
    while !client.stopped() {
        let start = match gap {
            Some(gap) => {
                intended += gap;
                if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                intended
            }
            None => Instant::now(),
        };
        let (op, request) = client.next();
        execute(engine, &request, value)?;
        client.record(op, start);
    }
    Ok(client.finish())
}

/// A closed-loop client of ringkv's async API (one of several a thread or a core
/// runs at once).
async fn client_loop_async(
    kv: &impl AsyncKv,
    mut client: Client<'_>,
    value: &[u8],
) -> Result<ClientResult, String> {
    while !client.stopped() {
        let start = Instant::now();
        let (op, request) = client.next();
        execute_async(kv, &request, value).await?;
        client.record(op, start);
        kv.pause().await;
    }
    Ok(client.finish())
}

/// Starts `count` closed-loop clients as tasks on `db`'s cores, spread evenly; each
/// sends what it measured on the channel returned.
fn spawn_on_cores(
    db: &Db,
    shared: &Arc<Shared>,
    count: u64,
) -> Result<std::sync::mpsc::Receiver<Result<ClientResult, String>>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    for seed in 0..count {
        let (shared, tx) = (shared.clone(), tx.clone());
        let core = (seed % db.cores() as u64) as usize;
        let spawned = db.spawn_on_core(core, move |local| async move {
            let value = vec![0xa5; shared.config.value_bytes];
            let result = client_loop_async(&local, Client::new(seed, &shared), &value).await;
            let _ = tx.send(result);
        });
        spawned.map_err(|e| format!("starting a client on core {core}: {e}"))?;
    }
    Ok(rx)
}

/// The results of `count` clients started by [`spawn_on_cores`], once they stop.
fn on_core_results(
    rx: &std::sync::mpsc::Receiver<Result<ClientResult, String>>,
    count: u64,
) -> Vec<Result<Vec<ClientResult>, String>> {
    (0..count)
        .map(|_| match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(result) => result.map(|r| vec![r]),
            Err(e) => Err(format!("a client on a core did not finish: {e}")),
        })
        .collect()
}

/// Runs `workload` for the warm-up and then the measured duration.
///
/// With `concurrency` above 1, ringkv's client threads each keep that many requests
/// in flight through its async API; a peer, which has none, gets the same number in
/// flight as that many blocking threads per client thread. With `on_core`, ringkv's
/// clients are threads × concurrency tasks on its own cores instead (the way a
/// thread-per-core service calls it), one request in flight each.
pub fn run(
    engine: &dyn Engine,
    workload: &Workload,
    config: &RunConfig,
    progress: &indicatif::ProgressBar,
) -> Result<RunResult, String> {
    let shared = Arc::new(Shared {
        workload: workload.clone(),
        chooser: KeyChooser::new(workload.distribution, config.keys),
        config: config.clone(),
        measuring: OnceLock::new(),
        stop: AtomicBool::new(false),
    });
    let origin = Instant::now();
    let in_flight = config.concurrency.max(1);
    assert!(
        in_flight == 1 || config.target_rate.is_none(),
        "the command line refuses open loop with requests in flight"
    );
    let on_core = engine.db().filter(|_| config.on_core);
    let async_db = engine.db().filter(|_| in_flight > 1 && !config.on_core);
    let threads = match (on_core, async_db) {
        (Some(_), _) => 0,
        (None, Some(_)) => config.threads,
        (None, None) => config.threads * in_flight,
    };
    let gap = config
        .target_rate
        .map(|rate| Duration::from_secs_f64(threads as f64 / rate));
    let on_core_clients = config.threads * in_flight;
    let on_core_rx = on_core
        .map(|db| spawn_on_cores(db, &shared, on_core_clients))
        .transpose()
        .inspect_err(|_| shared.stop.store(true, Ordering::Relaxed))?;
    let results = std::thread::scope(|s| {
        let shared = &*shared;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<Vec<ClientResult>, String> {
                    let value = vec![0xa5; config.value_bytes];
                    let Some(db) = async_db else {
                        return Ok(vec![client_loop(
                            engine,
                            Client::new(t, shared),
                            &value,
                            gap,
                        )?]);
                    };
                    let clients = (0..in_flight).map(|i| {
                        client_loop_async(db, Client::new(t * in_flight + i, shared), &value)
                    });
                    futures_lite::future::block_on(futures_util::future::join_all(clients))
                        .into_iter()
                        .collect()
                })
            })
            .collect();
        std::thread::sleep(config.warmup);
        let started_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let measure_started = *shared.measuring.get_or_init(Instant::now);
        while measure_started.elapsed() < config.duration {
            std::thread::sleep(Duration::from_millis(100).min(config.duration));
            progress.set_position(origin.elapsed().as_millis() as u64);
        }
        shared.stop.store(true, Ordering::Relaxed);
        let measured = measure_started.elapsed().as_secs_f64();
        let mut results: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect();
        if let Some(rx) = &on_core_rx {
            results.extend(on_core_results(rx, on_core_clients));
        }
        (measured, started_unix_s, results)
    });
    let (measured, started_unix_s, per_thread) = results;
    let mut histograms: HashMap<Op, Histogram<u64>> = HashMap::new();
    let mut intervals: BTreeMap<(u64, &'static str), (Op, Histogram<u64>)> = BTreeMap::new();
    for (thread_histograms, thread_intervals) in per_thread
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?
        .into_iter()
        .flatten()
    {
        for (op, h) in thread_histograms {
            histograms
                .entry(op)
                .or_insert_with(new_histogram)
                .add(h)
                .map_err(|e| e.to_string())?;
        }
        for (second, op, bytes) in thread_intervals {
            intervals
                .entry((second, op.name()))
                .or_insert_with(|| (op, new_histogram()))
                .1
                .add(decode(&bytes)?)
                .map_err(|e| e.to_string())?;
        }
    }
    let mut per_second = vec![0; config.duration.as_secs() as usize];
    for (&(second, _), (_, h)) in &intervals {
        if let Some(slot) = per_second.get_mut(second as usize) {
            *slot += h.len();
        }
    }
    Ok(RunResult {
        seconds: measured,
        histograms,
        per_second,
        intervals: intervals
            .into_iter()
            .map(|((second, _), (op, h))| (second, op, h))
            .collect(),
        started_unix_s,
    })
}

/// Shared handle so a closure can hold an engine.
pub type SharedEngine = Arc<dyn Engine>;
